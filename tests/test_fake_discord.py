"""The fake Discord must satisfy the real discord.py, or every end-to-end test built on it lies."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import discord
import pytest
import pytest_asyncio
from discord import app_commands

from tests.fakes.discord import FakeDiscord, point_discord_py_at

HOST_TOKEN = "host-token"
PERSONA_TOKEN = "persona-token"


class World:
    """The fake plus the handles the tests reach for."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.host = fake.add_bot(HOST_TOKEN, "Host")
        self.persona = fake.add_bot(PERSONA_TOKEN, "Skeptic")
        self.guild = fake.add_guild("Test Server")
        self.general = fake.add_channel(self.guild, "general")
        self.forum = fake.add_channel(self.guild, "questions", type=15)
        self.alice = fake.add_user("alice")

    @property
    def general_id(self) -> int:
        return int(self.general["id"])


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    async with FakeDiscord() as fake:
        with point_discord_py_at(fake):
            yield World(fake)


@contextlib.asynccontextmanager
async def running(
    token: str, *, message_content: bool = True, setup: Callable[[discord.Client], Any] | None = None
) -> AsyncIterator[discord.Client]:
    """A real client connected to the fake, closed on the way out so no task or socket leaks."""
    intents = discord.Intents.default()
    intents.message_content = message_content
    # guild_ready_timeout is how long discord.py waits after the last GUILD_CREATE before on_ready.
    client = discord.Client(intents=intents, guild_ready_timeout=0.05)
    if setup is not None:
        setup(client)
    await client.login(token)
    task = asyncio.create_task(client.connect())
    try:
        await asyncio.wait_for(client.wait_until_ready(), 5)
        yield client
    finally:
        await client.close()
        await task


def collect(client: discord.Client, event: str) -> list[Any]:
    """Record every ``event`` the client dispatches (single-argument events as the object itself)."""
    seen: list[Any] = []

    async def handler(*args: Any) -> None:
        seen.append(args[0] if len(args) == 1 else args)

    handler.__name__ = f"on_{event}"
    client.event(handler)
    return seen


def text_channel(client: discord.Client, channel_id: int) -> discord.TextChannel:
    channel = client.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


@pytest.mark.asyncio
async def test_two_bots_both_receive_a_human_message(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host, running(PERSONA_TOKEN) as persona:
        host_inbox, persona_inbox = collect(host, "message"), collect(persona, "message")
        assert fake.connected_bot_ids() == {int(world.host["id"]), int(world.persona["id"])}

        posted = await fake.post_message(world.general, world.alice, f"hi <@{world.persona['id']}>")
        await fake.wait_for(lambda: host_inbox and persona_inbox)

        for inbox, me in ((host_inbox, host), (persona_inbox, persona)):
            message = inbox[0]
            assert message.id == int(posted["id"])
            assert message.content == f"hi <@{world.persona['id']}>"
            assert message.author.name == "alice"
            assert isinstance(message.author, discord.Member)
            assert isinstance(message.channel, discord.TextChannel)
            assert message.guild is not None and me.user is not None and message.guild.me.id == me.user.id
            assert [u.id for u in message.mentions] == [int(world.persona["id"])]
            perms = message.channel.permissions_for(message.guild.me)
            assert perms.send_messages and perms.add_reactions and perms.manage_webhooks


@pytest.mark.asyncio
async def test_reply_records_reference_and_allowed_mentions(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host, running(PERSONA_TOKEN) as persona:
        persona_inbox, host_inbox = collect(persona, "message"), collect(host, "message")
        await fake.post_message(world.general, world.alice, "what do you think?")
        await fake.wait_for(lambda: persona_inbox)

        reply = await persona_inbox[0].reply("I doubt it.", allowed_mentions=discord.AllowedMentions.none())

        assert reply.reference is not None and reply.reference.message_id == persona_inbox[0].id
        (call,) = fake.calls_to("POST", rf"^/channels/{world.general_id}/messages$")
        assert call.bot_id == int(world.persona["id"])
        assert call.json["message_reference"]["message_id"] == persona_inbox[0].id
        assert call.json["allowed_mentions"] == {"parse": []}
        stored = fake.messages(world.general)[-1]
        assert stored["type"] == 19 and stored["mentions"] == []
        assert stored["referenced_message"]["content"] == "what do you think?"

        # Other bots see bot messages too, with the reply resolved.
        seen = await fake.wait_for(lambda: [m for m in host_inbox if m.id == reply.id])
        assert seen[0].author.bot
        assert seen[0].reference is not None and isinstance(seen[0].reference.resolved, discord.Message)


@pytest.mark.asyncio
async def test_reply_that_pings_only_the_author(world: World) -> None:
    fake = world.fake
    async with running(PERSONA_TOKEN) as persona:
        inbox = collect(persona, "message")
        await fake.post_message(world.general, world.alice, "ping me back")
        await fake.wait_for(lambda: inbox)
        mentions = discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True)
        await inbox[0].reply(f"@everyone <@{world.host['id']}> sure", allowed_mentions=mentions)
        stored = fake.messages(world.general)[-1]
        assert [u["id"] for u in stored["mentions"]] == [world.alice["id"]]
        assert stored["mention_everyone"] is False


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
async def test_bot_adds_a_reaction(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host, running(PERSONA_TOKEN) as persona:
        persona_inbox = collect(persona, "message")
        raw_reactions = collect(host, "raw_reaction_add")
        posted = await fake.post_message(world.general, world.alice, "great news")
        await fake.wait_for(lambda: persona_inbox)

        await persona_inbox[0].add_reaction("👍")

        assert [(r.message_id, r.emoji, r.user_id) for r in fake.reactions] == [
            (int(posted["id"]), "👍", int(world.persona["id"]))
        ]
        event = (await fake.wait_for(lambda: raw_reactions))[0]
        assert str(event.emoji) == "👍" and event.user_id == int(world.persona["id"])


@pytest.mark.asyncio
async def test_invalid_token_raises_login_failure(world: World) -> None:
    client = discord.Client(intents=discord.Intents.default())
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-a-registered-token")
    finally:
        await client.close()
    assert world.fake.calls[-1].status == 401


@pytest.mark.asyncio
async def test_gateway_bot_reports_each_bots_session_start_limit_and_identify_spends_one(world: World) -> None:
    fake = world.fake
    fake.set_session_start_limit(world.persona, total=1000, remaining=3, reset_after=60_000, max_concurrency=1)
    async with running(PERSONA_TOKEN) as persona:
        _, url, limit = await persona.http.get_bot_gateway()
        assert url == fake.gateway_url
        assert limit == {"total": 1000, "remaining": 2, "reset_after": 60_000, "max_concurrency": 1}
    async with running(PERSONA_TOKEN):
        pass
    async with running(PERSONA_TOKEN), running(PERSONA_TOKEN):
        pass
    assert fake.session_start_limit(world.persona)["remaining"] == 0  # never below zero
    # Per bot: the host's budget is untouched by the persona's connects.
    assert fake.session_start_limit(world.host) == {
        "total": 1000,
        "remaining": 1000,
        "reset_after": 0,
        "max_concurrency": 1,
    }


@pytest.mark.asyncio
async def test_denied_channel_raises_forbidden_and_is_recorded(world: World) -> None:
    fake = world.fake
    fake.deny_channel(world.general, world.persona)
    async with running(PERSONA_TOKEN) as persona, running(HOST_TOKEN) as host:
        with pytest.raises(discord.Forbidden) as excinfo:
            await text_channel(persona, world.general_id).send("let me in")
        assert excinfo.value.code == 50013
        assert [c.bot_id for c in fake.denied] == [int(world.persona["id"])]
        # The denial is per bot: the host still posts.
        await text_channel(host, world.general_id).send("fine here")
        assert [m["content"] for m in fake.messages(world.general)] == ["fine here"]


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
async def test_forum_post_arrives_as_thread_then_message(world: World) -> None:
    fake = world.fake
    async with running(PERSONA_TOKEN) as persona:
        threads, inbox = collect(persona, "thread_create"), collect(persona, "message")
        thread, message = await fake.create_forum_post(world.forum, world.alice, "Should I quit?", "Details...")
        await fake.wait_for(lambda: threads and inbox)

        assert threads[0].id == int(thread["id"]) and threads[0].parent_id == int(world.forum["id"])
        assert isinstance(inbox[0].channel, discord.Thread)
        assert inbox[0].id == int(message["id"]) == int(thread["id"])  # a forum post's starter shares its id
        assert inbox[0].content == "Details..."

        reply = await inbox[0].channel.send("Quit what, exactly?")
        assert [m["content"] for m in fake.messages(thread["id"])] == ["Details...", reply.content]

        # Bots can open forum posts too; webhooks need thread_name or thread_id there.
        forum = persona.get_channel(int(world.forum["id"]))
        assert isinstance(forum, discord.ForumChannel)
        created = await forum.create_thread(name="Bot post", content="Opening question")
        assert created.message.id == created.thread.id
        assert len(fake.threads(world.forum)) == 2


@pytest.mark.asyncio
async def test_without_message_content_intent_only_mentions_carry_text(world: World) -> None:
    fake = world.fake
    async with running(PERSONA_TOKEN, message_content=False) as persona:
        inbox = collect(persona, "message")
        await fake.post_message(world.general, world.alice, "plain chatter")
        await fake.post_message(world.general, world.alice, f"<@{world.persona['id']}> over to you")
        await fake.wait_for(lambda: len(inbox) == 2)
        assert [m.content for m in inbox] == ["", f"<@{world.persona['id']}> over to you"]


@pytest.mark.asyncio
async def test_rate_limit_is_retried_only_with_via_header(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host:
        channel = text_channel(host, world.general_id)
        fake.fail_next("POST", r"/messages$", 429, retry_after=0.01)
        await channel.send("after a pause")
        assert [c.status for c in fake.calls_to("POST", r"/messages$")] == [429, 200]

        fake.fail_next("POST", r"/messages$", 429, retry_after=0.01, via=False)
        with pytest.raises(discord.HTTPException) as excinfo:
            await channel.send("looks like a ban")
        assert excinfo.value.status == 429
        assert [m["content"] for m in fake.messages(world.general)] == ["after a pause"]


@pytest.mark.asyncio
async def test_same_nonce_posts_once(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host:
        channel = text_channel(host, world.general_id)
        first = await channel.send("only once", nonce="reply-42")
        second = await channel.send("only once", nonce="reply-42")
        assert first.id == second.id
        assert len(fake.messages(world.general)) == 1


@pytest.mark.asyncio
async def test_message_limits_are_enforced(world: World) -> None:
    async with running(HOST_TOKEN) as host:
        channel = text_channel(host, world.general_id)
        with pytest.raises(discord.HTTPException) as excinfo:
            await channel.send("x" * 2001)
        assert excinfo.value.code == 50035
        await channel.send("x" * 2000)


@pytest.mark.asyncio
async def test_client_resumes_after_dropped_connection(world: World) -> None:
    fake = world.fake
    async with running(PERSONA_TOKEN) as persona:
        inbox, resumed = collect(persona, "message"), collect(persona, "resumed")
        await fake.drop_connections(PERSONA_TOKEN)
        # Posted while the socket is down: RESUME must replay it.
        await fake.post_message(world.general, world.alice, "did you miss me?")
        await fake.wait_for(lambda: resumed and inbox)
        assert [m.content for m in inbox] == ["did you miss me?"]


@pytest.mark.asyncio
async def test_multipart_upload_is_parsed(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host:
        file = discord.File(io.BytesIO(b"notes"), filename="notes.txt")
        sent = await text_channel(host, world.general_id).send("see attached", file=file)
        (call,) = fake.calls_to("POST", r"/messages$")
        assert call.json["content"] == "see attached" and call.files == ["notes.txt"]
        assert [a.filename for a in sent.attachments] == ["notes.txt"]


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


@pytest.mark.asyncio
async def test_world_changes_after_connect_reach_bots(world: World) -> None:
    fake = world.fake
    async with running(PERSONA_TOKEN) as persona:
        channels, guilds = collect(persona, "guild_channel_create"), collect(persona, "guild_join")
        inbox, deleted = collect(persona, "message"), collect(persona, "message_delete")

        room = fake.add_channel(world.guild, "late-room")
        fake.add_guild("Second Server")
        await fake.wait_for(lambda: channels and guilds)
        assert channels[0].id == int(room["id"]) and guilds[0].name == "Second Server"

        first = await fake.post_message(room, world.alice, "first")
        await fake.post_message(room, world.alice, "second", reply_to=first)
        await fake.wait_for(lambda: len(inbox) == 2)
        reference = inbox[1].reference
        assert reference is not None and reference.message_id == int(first["id"])
        assert isinstance(reference.resolved, discord.Message) and reference.resolved.content == "first"

        own = await inbox[1].channel.send("gone soon")
        await fake.wait_for(lambda: len(inbox) == 3)
        await own.delete()
        await fake.wait_for(lambda: deleted)
        assert [m["content"] for m in fake.messages(room)] == ["first", "second"]


@pytest.mark.asyncio
async def test_a_dm_reaches_only_its_bot_which_answers_in_it(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host, running(PERSONA_TOKEN, message_content=False) as persona:
        host_inbox, persona_inbox = collect(host, "message"), collect(persona, "message")
        posted = await fake.post_dm(world.persona, world.alice, "psst, a secret")
        dm = fake.dm_channel(world.persona, world.alice)
        assert dm["type"] == 1 and dm["recipients"] == [world.alice] and posted["channel_id"] == dm["id"]
        (received,) = await fake.wait_for(lambda: persona_inbox)
        # No CHANNEL_CREATE: discord.py builds the DM channel from the message, and DMs carry their
        # text without the Message Content intent.
        assert isinstance(received.channel, discord.DMChannel) and received.guild is None
        assert received.content == "psst, a secret" and isinstance(received.author, discord.User)

        answer = await received.channel.send("my lips are sealed", allowed_mentions=discord.AllowedMentions.none())
        (call,) = fake.calls_to("POST", rf"^/channels/{dm['id']}/messages$")
        assert call.bot_id == int(world.persona["id"]) and call.json["allowed_mentions"] == {"parse": []}
        assert [m["content"] for m in fake.messages(dm)] == ["psst, a secret", "my lips are sealed"]
        await fake.wait_for(lambda: [m for m in persona_inbox if m.id == answer.id])

        # The same pair reuses the channel; the REST route opens it too, and the host's DM is another.
        assert fake.dm_channel(world.persona, world.alice) is dm
        fetched = await persona.fetch_channel(int(dm["id"]))
        assert isinstance(fetched, discord.DMChannel) and fetched.recipient is not None
        assert fetched.recipient.id == int(world.alice["id"])
        user = await host.fetch_user(int(world.alice["id"]))
        host_dm = await user.create_dm()
        assert host_dm.id != int(dm["id"]) and fake.dm_channel(world.host, world.alice)["id"] == str(host_dm.id)
        await host_dm.send("hello from the host")
        await fake.wait_for(lambda: host_inbox)

        # DMs are private: the host saw only its own DM, and may not read or write the persona's.
        assert [m.content for m in host_inbox] == ["hello from the host"]
        assert len(persona_inbox) == 2
        with pytest.raises(discord.Forbidden) as denied:
            await host.get_partial_messageable(int(dm["id"])).send("let me in")
        assert denied.value.code == 50001
        with pytest.raises(discord.Forbidden) as no_hooks:
            await host.http.create_webhook(host_dm.id, name="hook")
        assert no_hooks.value.code == 50003
