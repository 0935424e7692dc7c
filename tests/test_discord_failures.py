"""Discord end to end, where something goes wrong or used to go subtly wrong (issue 12): failed and
half-failed deliveries, private notices after a public deferral, feeds added by a reload, and slash
commands offered where they make no sense. Real Fleet, real discord.py and openai SDK, the fakes."""

from __future__ import annotations

from adapters.discord import CUT_MARK
from bots.config import FeedConfig
from bots.core.commands import COMMANDS
from bots.core.events import Action, Reply
from bots.core.fleet import Fleet
from bots.ops.reload import apply
from tests.discord_world import HOST_TOKEN, World, default_personas, make_persona, running, settle, world

__all__ = ["world"]  # the fixture, from discord_world.py

DISCLOSURE = "— AI persona · /about"


def reply_outcomes(fleet: Fleet) -> list[str]:
    """The fleet's outcome for each reply it carries out, in order."""
    seen: list[str] = []

    def listen(outcome: str, action: Action) -> None:
        if isinstance(action, Reply):
            seen.append(outcome)

    fleet.outcomes.append(listen)
    return seen


async def test_a_reply_discord_refused_is_not_sent_and_the_disclosure_comes_with_the_next_one(world: World) -> None:
    fake, skeptic = world.fake, world.bot_id("skeptic")
    async with running(world, about={"disclosure": DISCLOSURE}) as (fleet, _):
        outcomes = reply_outcomes(fleet)
        fake.fail_next("POST", rf"^/channels/{world.general['id']}/messages$", 400, code=50035, message="Bad")
        await fake.post_message(world.general, world.alice, f"<@{skeptic}> hello?")
        await fake.wait_for(lambda: outcomes)
        assert outcomes[0] != "sent" and world.persona_messages(world.general) == []

        await fake.post_message(world.general, world.alice, f"<@{skeptic}> hello again?")
        (said,) = await fake.wait_for(lambda: world.persona_messages(world.general))
        # The first reply that reached alice is the one that tells her what the persona is.
        assert said["content"].endswith(DISCLOSURE)
        await fake.wait_for(lambda: len(outcomes) == 2)
        assert outcomes[1] == "sent"


async def test_a_split_reply_whose_second_part_fails_is_marked_cut_off_and_kept_as_shown(world: World) -> None:
    fake, skeptic = world.fake, world.bot_id("skeptic")
    long = " ".join(f"Sentence number {i} makes the answer longer." for i in range(60))
    world.llm.reply = lambda body: long
    async with running(world) as (fleet, _):
        outcomes = reply_outcomes(fleet)
        # The first part goes out; Discord refuses the second.
        fake.fail_next("POST", rf"^/channels/{world.general['id']}/messages$", 400, code=50035, skip=1)
        await fake.post_message(world.general, world.alice, f"<@{skeptic}> explain")
        await fake.wait_for(lambda: outcomes)
        assert outcomes == ["cut_off"]
        (first,) = world.persona_messages(world.general)
        assert first["content"].endswith(CUT_MARK) and len(first["content"]) <= 2000
        shown = first["content"].removesuffix(f" {CUT_MARK}")
        assert long.startswith(shown)
        # What alice saw is what the conversation remembers the persona said.
        await fake.wait_for(lambda: fleet.persona_of("discord", first["id"]) == "skeptic")
        history = await fleet.store.history(f"discord:{world.general['id']}", 20)
        assert [t.text for t in history if t.persona_id == "skeptic"] == [shown]


async def test_private_notices_after_a_public_deferral_stay_private(world: World) -> None:
    fake = world.fake
    stoic = make_persona("stoic", "The Stoic", triggers=[{"mention": True}])  # no /ask
    async with running(world, [*default_personas(), stoic]):
        options = [{"name": "question", "type": 3, "value": "Why?"}, {"name": "persona", "type": 3, "value": "stoic"}]
        ask = await fake.send_interaction(HOST_TOKEN, world.general, world.alice, "ask", options)
        await fake.wait_for(lambda: ask.callbacks)
        assert ask.callback_types == [5] and not (ask.callbacks[0].get("data") or {}).get("flags")  # a public deferral
        answer = await fake.wait_for(lambda: [m for m in fake.messages(world.general) if "can't be" in m["content"]])
        await settle()
        assert [m["flags"] & 64 for m in answer] == [64]
        assert ask.original_message_id in fake.deleted_message_ids  # no public "thinking…" left behind
        public = [m for m in fake.messages(world.general) if not m["flags"] & 64]
        assert not any("The Stoic" in m["content"] for m in public)
        assert world.persona_messages(world.general) == []


async def test_a_feed_added_by_a_reload_gets_comments(world: World) -> None:
    fake = world.fake
    ideas = fake.add_channel(world.guild, "ideas")
    async with running(world) as (fleet, _):
        assert not fleet.config.feeds.discord
        feed = FeedConfig.model_validate({"channel": "ideas", "comments": 2, "window_seconds": 1, "reactions": False})
        feeds = fleet.config.feeds.model_copy(update={"discord": (feed,)})
        apply(fleet, fleet.config.model_copy(update={"feeds": feeds}), list(fleet.personas.values()))
        post = await fake.post_message(ideas, world.alice, "I'm thinking of learning Rust this summer")
        (thread,) = await fake.wait_for(lambda: fake.threads(ideas), timeout=5)
        assert thread["id"] == post["id"]
        await fake.wait_for(lambda: len(world.persona_messages(thread)) >= 2, timeout=10)
        comments = world.persona_messages(thread)
        assert len({world.author_of(m) for m in comments}) == 2


async def test_commands_are_offered_in_dms_only_where_the_table_says_so(world: World) -> None:
    async with running(world):
        synced = {c["name"]: c for c in world.fake.commands[(int(world.host["id"]), None)]}
    assert set(synced) == set(COMMANDS)
    for name, spec in COMMANDS.items():
        command = synced[name]
        assert command["dm_permission"] is spec.in_private_chats, name
        if spec.in_private_chats:
            assert command.get("contexts") in (None, [0, 1, 2]), name
        else:
            assert command["contexts"] == [0], name  # guild only
    assert not COMMANDS["mute"].in_private_chats and synced["mute"]["contexts"] == [0]
    assert int(synced["mute"]["default_member_permissions"]) == 1 << 13  # admin: Manage Messages


async def test_a_webhook_reply_whose_answer_was_lost_after_posting_is_posted_once(world: World) -> None:
    fake = world.fake
    async with running(world) as (fleet, _):
        outcomes = reply_outcomes(fleet)
        # Discord creates the message, then answers 500: discord.py would post it again.
        fake.fail_next("POST", r"^/webhooks/\d+/[^/]+$", 500, after=True)
        await fake.post_message(world.general, world.alice, "realist, what do you make of it?")
        await fake.wait_for(lambda: outcomes)
        await settle(1.5)  # past discord.py's 1 s pause before a retry
        (said,) = world.persona_messages(world.general)
        assert said["author"]["username"] == "The Realist"
        assert outcomes == ["sent"]
        # The message found in the channel is the one the fleet remembers the persona said.
        await fake.wait_for(lambda: fleet.persona_of("discord", said["id"]) == "realist")


async def test_a_webhook_reply_lost_before_posting_is_sent_again_once(world: World) -> None:
    fake = world.fake
    async with running(world) as (fleet, _):
        outcomes = reply_outcomes(fleet)
        # Discord answers 500 without creating anything: the reply must still arrive, once.
        fake.fail_next("POST", r"^/webhooks/\d+/[^/]+$", 500)
        await fake.post_message(world.general, world.alice, "realist, what do you make of it?")
        await fake.wait_for(lambda: outcomes)
        await settle()
        (said,) = world.persona_messages(world.general)
        assert outcomes == ["sent"]
        await fake.wait_for(lambda: fleet.persona_of("discord", said["id"]) == "realist")
