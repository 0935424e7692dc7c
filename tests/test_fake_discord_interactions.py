"""The fake Discord against the real discord.py: webhooks, application commands and interactions."""

from __future__ import annotations

import asyncio

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.fake_discord_clients import HOST_TOKEN, PERSONA_TOKEN, World, collect, running, text_channel, world

__all__ = ["world"]  # the fixture, from fake_discord_clients.py


@pytest.mark.asyncio
async def test_webhook_send_with_persona_name_and_thread(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host, running(PERSONA_TOKEN) as persona:
        persona_inbox = collect(persona, "message")
        channel = text_channel(host, world.general_id)
        created = await channel.create_webhook(name="botfleet")
        assert created.token is not None and len(fake.channel_webhooks(world.general)) == 1

        hook = discord.Webhook.from_url(created.url, client=host)
        sent = await hook.send(
            "Have you considered the opposite?",
            username="Skeptic",
            avatar_url="https://example.invalid/skeptic.png",
            allowed_mentions=discord.AllowedMentions.none(),
            wait=True,
        )
        assert sent.webhook_id == created.id and sent.author.name == "Skeptic"
        (call,) = fake.calls_to("POST", rf"^/webhooks/{created.id}/")
        assert call.query["wait"] == "1" and call.webhook_id == created.id
        assert call.json["username"] == "Skeptic"
        assert call.json["avatar_url"] == "https://example.invalid/skeptic.png"

        seen = await fake.wait_for(lambda: [m for m in persona_inbox if m.id == sent.id])
        assert seen[0].webhook_id == created.id and seen[0].author.name == "Skeptic" and seen[0].author.bot

        # A webhook can post into a thread of its channel; a bare aiohttp session works too.
        thread = await channel.get_partial_message(sent.id).create_thread(name="discussion")
        assert thread.id == sent.id  # Discord gives a thread started from a message that message's id
        async with aiohttp.ClientSession() as session:
            partial = discord.Webhook.partial(created.id, created.token, session=session)
            in_thread = await partial.send("in the thread", username="Realist", thread=thread, wait=True)
        assert in_thread.channel.id == thread.id
        assert fake.calls_to("POST", rf"^/webhooks/{created.id}/")[-1].query["thread_id"] == str(thread.id)
        assert [m["content"] for m in fake.messages(thread.id)] == ["in the thread"]

        # Edits through the webhook reach the bots as MESSAGE_UPDATE.
        edits = collect(persona, "message_edit")
        await hook.edit_message(sent.id, content="Edited.", allowed_mentions=discord.AllowedMentions.none())
        before, after = (await fake.wait_for(lambda: edits))[0]
        assert before.content == "Have you considered the opposite?" and after.content == "Edited."


@pytest.mark.asyncio
async def test_webhook_name_rules_and_limit(world: World) -> None:
    async with running(HOST_TOKEN) as host:
        channel = text_channel(host, world.general_id)
        with pytest.raises(discord.HTTPException) as excinfo:
            await channel.create_webhook(name="Clyde helper")
        assert excinfo.value.status == 400 and excinfo.value.code == 50035
        for n in range(15):
            await channel.create_webhook(name=f"hook {n}")
        with pytest.raises(discord.HTTPException) as excinfo:
            await channel.create_webhook(name="one too many")
        assert excinfo.value.code == 30007
        assert len(await channel.webhooks()) == 15


@pytest.mark.asyncio
async def test_deleted_webhook_gives_not_found_10015(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host:
        created = await text_channel(host, world.general_id).create_webhook(name="botfleet")
        fake.delete_webhook(created.id)
        hook = discord.Webhook.from_url(created.url, client=host)
        with pytest.raises(discord.NotFound) as excinfo:
            await hook.send("anyone there?", username="Optimist", wait=True)
        assert excinfo.value.code == 10015
        assert fake.messages(world.general) == []


@pytest.mark.asyncio
async def test_command_sync_and_deferred_interaction_with_followup(world: World) -> None:
    fake = world.fake
    trees: list[app_commands.CommandTree[discord.Client]] = []

    def setup(client: discord.Client) -> None:
        tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)

        @tree.command(name="ask", description="Ask the panel")
        async def ask(interaction: discord.Interaction, question: str) -> None:
            await interaction.response.defer(thinking=True)
            await interaction.followup.send(f"panel on: {question}")
            await interaction.edit_original_response(content=f"panel answered: {question}")

        trees.append(tree)

    async with running(HOST_TOKEN, setup=setup), running(PERSONA_TOKEN) as persona:
        synced = await trees[0].sync()
        assert [c.name for c in synced] == ["ask"]
        app_id = int(world.host["id"])
        assert fake.command_syncs == {(app_id, None): 1}
        assert fake.commands[(app_id, None)][0]["options"][0]["name"] == "question"
        assert [c.name for c in await trees[0].fetch_commands()] == ["ask"]

        persona_edits = collect(persona, "message_edit")
        interaction = await fake.send_interaction(
            HOST_TOKEN,
            world.general,
            world.alice,
            "ask",
            options=[{"name": "question", "type": 3, "value": "why"}],
        )
        await fake.wait_for(lambda: len(persona_edits) >= 2)

        assert interaction.callback_types == [5]
        callback = fake.calls_to("POST", rf"^/interactions/{interaction.id}/")[0]
        assert callback.query.get("with_response") == "1"
        followup = fake.calls_to("POST", rf"^/webhooks/{app_id}/{interaction.token}$")
        assert followup and followup[0].json["content"] == "panel on: why"
        original = fake.message(interaction.original_message_id or 0)
        assert original["content"] == "panel answered: why" and original["flags"] & 128 == 0
        assert original["interaction_metadata"]["user"]["id"] == world.alice["id"]
        # The first follow-up after a defer replaces the "thinking" message rather than adding one.
        assert interaction.followup_ids == []
        assert [m["id"] for m in fake.messages(world.general)] == [str(interaction.original_message_id)]


@pytest.mark.asyncio
async def test_autocomplete_and_late_callback(world: World) -> None:
    fake = world.fake
    trees: list[app_commands.CommandTree[discord.Client]] = []
    slow_done = asyncio.Event()
    errors: list[BaseException] = []

    def setup(client: discord.Client) -> None:
        tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)

        async def personas(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            names = ["skeptic", "supporter", "realist"]
            return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

        @tree.command(name="panel", description="Summon personas")
        @app_commands.autocomplete(persona=personas)
        async def panel(interaction: discord.Interaction, persona: str) -> None:
            await asyncio.sleep(0.3)
            try:
                await interaction.response.send_message("too late")
            except discord.NotFound as exc:
                errors.append(exc)
            slow_done.set()

        trees.append(tree)

    async with running(HOST_TOKEN, setup=setup):
        await trees[0].sync()
        option = {"name": "persona", "type": 3, "value": "s", "focused": True}
        auto = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "panel", [option], type=4)
        await fake.wait_for(lambda: auto.callbacks)
        assert auto.callback_types == [8]
        assert [c["value"] for c in auto.callbacks[0]["data"]["choices"]] == ["skeptic", "supporter"]

        # Discord's 3 s answer window, shrunk so the command's 0.3 s nap overruns it.
        fake.interaction_timeout = 0.05
        await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "panel", [{**option, "value": "x"}])
        await asyncio.wait_for(slow_done.wait(), 5)
        assert isinstance(errors[0], discord.NotFound) and errors[0].code == 10062


@pytest.mark.asyncio
async def test_guild_command_and_ephemeral_answer_stay_private(world: World) -> None:
    fake = world.fake
    guild = discord.Object(int(world.guild["id"]))
    trees: list[app_commands.CommandTree[discord.Client]] = []

    def setup(client: discord.Client) -> None:
        tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)

        @tree.command(name="optout", description="Stop the personas answering you", guild=guild)
        async def optout(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("Done, you are opted out.", ephemeral=True)
            await interaction.followup.send("alice opted out")

        trees.append(tree)

    async with running(HOST_TOKEN, setup=setup), running(PERSONA_TOKEN) as persona:
        inbox = collect(persona, "message")
        await trees[0].sync(guild=guild)
        app_id = int(world.host["id"])
        assert fake.command_syncs == {(app_id, guild.id): 1}

        interaction = await fake.send_interaction(world.host, world.general, world.alice, "optout")
        assert interaction.payload["data"]["guild_id"] == world.guild["id"]
        await fake.wait_for(lambda: inbox)

        assert interaction.callback_types == [4]
        original = fake.message(interaction.original_message_id or 0)
        assert original["content"] == "Done, you are opted out." and original["flags"] & 64
        assert [m.content for m in inbox] == ["alice opted out"]  # the ephemeral answer is never dispatched
