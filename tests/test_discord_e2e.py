"""Discord end to end, receiving and replying: mentions, replies, webhook personas, threads, reactions,
reply pings, accounts coming and going, and direct messages. The world is in tests/discord_world.py."""

from __future__ import annotations

import json

from bots.persona import Persona
from tests.discord_world import AVATAR, TOKENS, World, make_persona, running, settle, world, writes

__all__ = ["world"]  # the fixture, from discord_world.py


async def test_a_mention_gets_one_reply_from_that_account_referencing_the_message(world: World) -> None:
    fake, skeptic = world.fake, world.bot_id("skeptic")
    async with running(world) as (fleet, _):
        posted = await fake.post_message(world.general, world.alice, f"<@{skeptic}> is this legit?")
        (reply,) = await fake.wait_for(lambda: world.persona_messages(world.general))
        assert reply["author"]["id"] == skeptic and reply["content"] == "skeptic here: noted."
        assert reply["message_reference"]["message_id"] == posted["id"]
        assert reply["mentions"] == []  # reply_ping is off: not even alice is pinged
        typing = fake.calls_to("POST", rf"^/channels/{world.general['id']}/typing$")
        assert typing and typing[0].bot_id == int(skeptic)
        # Four clients saw the message and the echo of the reply; one answer, and the echo is not a turn.
        await settle()
        assert len(world.persona_messages(world.general)) == 1
        assert fleet.persona_of("discord", reply["id"]) == "skeptic"

        # A reply to the persona's message, with no mention at all, still reaches it.
        await fake.post_message(world.general, world.alice, "why though", reply_to=reply, mentions=[])
        second = await fake.wait_for(lambda: world.persona_messages(world.general)[1:])
        assert second[0]["author"]["id"] == skeptic
        assert "alice: why though" in json.dumps(world.llm.requests[-1]["messages"])


async def test_webhook_personas_speak_with_name_and_avatar_and_survive_a_deleted_webhook(world: World) -> None:
    fake = world.fake
    async with running(world):
        posted = await fake.post_message(world.general, world.alice, "realist, what do you make of it?")
        (said,) = await fake.wait_for(lambda: world.persona_messages(world.general))
        (hook,) = fake.channel_webhooks(world.general)
        assert said["webhook_id"] == hook["id"] and said["author"]["username"] == "The Realist"
        (call,) = fake.calls_to("POST", rf"^/webhooks/{hook['id']}/")
        assert call.json["username"] == "The Realist" and call.json["avatar_url"] == AVATAR
        assert call.json["allowed_mentions"] == {"parse": []}
        # Webhooks cannot reply: the answer names who it answers, without pinging them.
        assert said["content"] == f"-# ↪ <@{world.alice['id']}>\nrealist here: noted."
        assert said["mentions"] == [] and posted["id"] != said["id"]

        # A name Discord refuses on webhooks is adjusted, not dropped.
        await fake.post_message(world.general, world.alice, "nerd, your take?")
        await fake.wait_for(lambda: len(world.persona_messages(world.general)) == 2)
        assert world.persona_messages(world.general)[1]["author"]["username"] == "Dis-cord Nerd"

        # Replying to a webhook persona's message reaches that persona.
        await fake.post_message(world.general, world.alice, "go on", reply_to=said, mentions=[])
        await fake.wait_for(lambda: len(world.persona_messages(world.general)) == 3)
        assert world.persona_messages(world.general)[2]["author"]["username"] == "The Realist"

        # Someone deletes the webhook: the next send makes a new one and still arrives.
        fake.delete_webhook(hook["id"])
        await fake.post_message(world.general, world.alice, "realist, still there?")
        await fake.wait_for(lambda: len(world.persona_messages(world.general)) == 4)
        (new_hook,) = fake.channel_webhooks(world.general)
        assert new_hook["id"] != hook["id"]
        assert world.persona_messages(world.general)[3]["webhook_id"] == new_hook["id"]
        await settle()
        assert len(world.persona_messages(world.general)) == 4  # webhook echoes are not answered


async def test_threads_get_answers_through_the_parents_webhook(world: World) -> None:
    fake = world.fake
    async with running(world):
        thread, _ = await fake.create_forum_post(world.forum, world.alice, "Boats", "realist, should I buy a boat?")
        (said,) = await fake.wait_for(lambda: world.persona_messages(thread))
        assert said["author"]["username"] == "The Realist"
        (hook,) = fake.channel_webhooks(world.forum)
        (call,) = fake.calls_to("POST", rf"^/webhooks/{hook['id']}/")
        assert call.query["thread_id"] == thread["id"]
        # The forum post's starter is the thread itself: no "replying to" line there.
        assert said["content"] == "realist here: noted."


async def test_keyword_reactions_land_on_the_message_from_the_right_account(world: World) -> None:
    fake = world.fake
    async with running(world):
        posted = await fake.post_message(world.general, world.alice, "great news everyone, hmm")
        await fake.wait_for(lambda: len(fake.reactions) == 2)
        got = {(r.emoji, r.user_id) for r in fake.reactions if r.message_id == int(posted["id"])}
        # Own accounts react as themselves; webhook personas' reactions come from the host bot.
        assert got == {("🎉", int(world.bot_id("optimist"))), ("🤔", int(world.host["id"]))}


async def test_reply_ping_pings_only_the_person_answered(world: World) -> None:
    fake, alice = world.fake, world.alice["id"]
    async with running(world, discord={"reply_ping": True}):
        await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> and realist, ping me")
        said = await fake.wait_for(lambda: (m := world.persona_messages(world.general)) and len(m) == 2 and m)
        assert said  # narrows the type: wait_for returns the first truthy value
        assert [[u["id"] for u in m["mentions"]] for m in said] == [[alice], [alice]]
        assert all(m["mention_everyone"] is False and m["mention_roles"] == [] for m in said)


async def test_accounts_connect_and_disconnect_and_any_account_can_still_send(world: World) -> None:
    fake = world.fake
    everyone = {int(world.host["id"]), *(int(b["id"]) for b in world.bots.values())}
    async with running(world) as (_, adapter):
        assert sorted(adapter.accounts()) == ["discord:host", "discord:optimist", "discord:skeptic"]
        assert fake.connected_bot_ids() == everyone
        # Another process holds the skeptic's gateway lease: this one only sends as it.
        await adapter.disconnect("discord:skeptic")
        assert fake.connected_bot_ids() == everyone - {int(world.bot_id("skeptic"))}
        await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> are you there?")
        (said,) = await fake.wait_for(lambda: world.persona_messages(world.general))
        assert said["author"]["id"] == world.bot_id("skeptic")
        assert await adapter.connect("discord:skeptic") and fake.connected_bot_ids() == everyone

        # Bots outside the fleet are not answered.
        other = fake.add_bot("other-token", "Stranger")
        await fake.post_message(world.general, other, f"<@{world.bot_id('skeptic')}> hello fellow bot")
        await settle()
        assert len(world.persona_messages(world.general)) == 1
    assert fake.connected_bot_ids() == set()  # stop() closed every client


def dm_personas() -> list[Persona]:
    """The skeptic (own account) and the realist (webhook persona) answer DMs; the optimist does not."""
    dm = [{"mention": True}, {"reply": True}, {"dm": True}]
    return [
        make_persona("skeptic", "Skeptic", token=TOKENS["skeptic"], triggers=dm),
        make_persona("optimist", "Optimist", token=TOKENS["optimist"]),
        make_persona("realist", "The Realist", avatar=AVATAR, triggers=dm),
    ]


async def test_a_dm_to_a_personas_own_account_is_answered_there_by_that_account(world: World) -> None:
    fake, skeptic = world.fake, world.bot_id("skeptic")
    async with running(world, dm_personas()):
        posted = await fake.post_dm(skeptic, world.alice, "between us, is it legit?")
        dm = fake.dm_channel(skeptic, world.alice)
        (said,) = await fake.wait_for(lambda: fake.messages(dm, author=skeptic))
        assert said["content"] == "skeptic here: noted."
        assert said["message_reference"]["message_id"] == posted["id"] and said["mentions"] == []
        (call,) = [c for c in writes(fake) if c.method == "POST"]
        assert call.path == f"/channels/{dm['id']}/messages" and call.bot_id == int(skeptic)
        assert call.json["allowed_mentions"] == {"parse": []}
        await settle()
        # Nobody else saw it, so nobody else answered; and the echo of the answer is not a turn.
        assert [m["author"]["id"] for m in fake.messages(dm)] == [world.alice["id"], skeptic]
        assert not fake.channel_webhooks(world.general) and not fake.unhandled

        # A DM to an account whose persona takes no DMs is not answered.
        optimist = world.bot_id("optimist")
        await fake.post_dm(optimist, world.alice, "and you?")
        await settle()
        assert not fake.messages(fake.dm_channel(optimist, world.alice), author=optimist)


async def test_a_dm_to_the_host_is_answered_through_the_host_by_the_dm_personas(world: World) -> None:
    fake, host = world.fake, world.host["id"]
    async with running(world, dm_personas()):
        await fake.post_dm(host, world.alice, "anyone around?")
        dm = fake.dm_channel(host, world.alice)
        said = await fake.wait_for(lambda: (m := fake.messages(dm, author=host)) and len(m) == 2 and m)
        assert said  # narrows the type: wait_for returns the first truthy value
        await settle()
        # Webhooks do not exist in DMs, and an own account cannot write in the host's DM: both
        # personas answer as the host, each with its name in bold.
        assert sorted(m["content"] for m in fake.messages(dm, author=host)) == [
            "**Skeptic:** skeptic here: noted.",
            "**The Realist:** realist here: noted.",
        ]
        assert all(m["mentions"] == [] and "webhook_id" not in m for m in said)
        posts = [c for c in writes(fake) if c.method == "POST"]
        assert {(c.path, c.bot_id) for c in posts} == {(f"/channels/{dm['id']}/messages", int(host))}
        assert all(c.json["allowed_mentions"] == {"parse": []} for c in posts) and len(posts) == 2
        # No account but the host touched the DM, and no webhook was looked for.
        assert {c.bot_id for c in fake.calls if dm["id"] in c.path} == {int(host)}
        assert not fake.channel_webhooks(world.general) and not fake.denied and not fake.unhandled
