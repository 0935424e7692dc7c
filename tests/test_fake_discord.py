"""The fake Discord must satisfy the real discord.py, or every end-to-end test built on it lies.

This file: messages, replies, mentions, reactions, forum posts, intents, nonces, limits, uploads, DMs.
The world is in tests/fake_discord_clients.py; webhooks and interactions, and connections and
faults, have files of their own."""

from __future__ import annotations

import io

import discord
import pytest

from tests.fake_discord_clients import HOST_TOKEN, PERSONA_TOKEN, World, collect, running, text_channel, world

__all__ = ["world"]  # the fixture, from fake_discord_clients.py


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
async def test_multipart_upload_is_parsed(world: World) -> None:
    fake = world.fake
    async with running(HOST_TOKEN) as host:
        file = discord.File(io.BytesIO(b"notes"), filename="notes.txt")
        sent = await text_channel(host, world.general_id).send("see attached", file=file)
        (call,) = fake.calls_to("POST", r"/messages$")
        assert call.json["content"] == "see attached" and call.files == ["notes.txt"]
        assert [a.filename for a in sent.attachments] == ["notes.txt"]


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
