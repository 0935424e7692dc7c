"""Discord end to end, what personas write: bot chains stop, model output pings nobody, long replies
split, streamed replies are paced and marked when cut, webhook names. The world is in tests/discord_world.py."""

from __future__ import annotations

import itertools
from pathlib import Path

from adapters.discord import CUT_MARK, webhook_username
from tests.discord_world import SlowOpenAI, TimedDiscord, World, running, settle, speaker, world, writes
from tests.fakes.discord import FakeDiscord
from tests.fakes.openai_server import Truncated

__all__ = ["world"]  # the fixture, from discord_world.py


async def test_two_own_account_personas_naming_each_other_stop_at_max_bot_chain(world: World) -> None:
    fake = world.fake
    world.llm.reply = lambda body: "Optimist, surely not?" if speaker(body) == "skeptic" else "Skeptic, cheer up!"
    async with running(world, fleet={"max_bot_chain": 2}):
        await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> thoughts?")
        await fake.wait_for(lambda: len(world.persona_messages(world.general)) >= 3)
        await settle(0.8)
        said = [world.author_of(m) for m in world.persona_messages(world.general)]
        assert said == ["skeptic", "optimist", "skeptic"]


async def test_model_output_pings_nobody_on_sends_edits_and_webhook_sends(tmp_path: Path) -> None:
    loud = "@everyone look <@&123> <@456> " + " ".join(f"word{i}" for i in range(10))
    async with FakeDiscord() as fake, SlowOpenAI(reply=lambda body: loud) as llm:
        world = World(fake, llm, tmp_path)
        async with running(world):
            await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> and realist: news?")
            await fake.wait_for(lambda: len([c for c in writes(fake) if c.method == "PATCH"]) >= 4, timeout=10)
            await fake.wait_for(lambda: all(len(m["content"]) > 60 for m in world.persona_messages(world.general)))
        calls = writes(fake)
        kinds = {(c.method, "webhooks" in c.path) for c in calls}
        assert kinds == {("POST", False), ("PATCH", False), ("POST", True), ("PATCH", True)}
        for call in calls:
            assert call.json["allowed_mentions"] == {"parse": []}, call
        for m in world.persona_messages(world.general):
            assert m["mentions"] == [] and m["mention_roles"] == [] and m["mention_everyone"] is False
            assert "<@" not in m["content"].split("\n", 1)[-1]  # the words are defused as well


async def test_a_2500_character_reply_arrives_as_two_messages(world: World) -> None:
    fake = world.fake
    long = " ".join(f"Sentence number {i} makes the answer longer." for i in range(60))
    assert 2400 < len(long) < 2900
    world.llm.reply = lambda body: long
    async with running(world):
        posted = await fake.post_message(world.general, world.alice, f"<@{world.bot_id('skeptic')}> explain")
        said = await fake.wait_for(lambda: (m := world.persona_messages(world.general)) and len(m) == 2 and m)
        assert said  # narrows the type: wait_for returns the first truthy value
        first, second = said
        assert len(first["content"]) <= 2000 and len(second["content"]) <= 2000
        assert f"{first['content']} {second['content']}" == long
        assert first["message_reference"]["message_id"] == posted["id"] and "message_reference" not in second


async def test_streaming_edits_at_most_once_a_second_and_a_cut_off_stream_is_marked(tmp_path: Path) -> None:
    text = " ".join(f"step{i}" for i in range(14))
    async with TimedDiscord() as fake, SlowOpenAI(reply=lambda body: text) as llm:
        world = World(fake, llm, tmp_path)
        async with running(world) as (fleet, _):
            skeptic = world.bot_id("skeptic")
            await fake.post_message(world.general, world.alice, f"<@{skeptic}> go slowly")
            await fake.wait_for(
                lambda: (m := world.persona_messages(world.general)) and m[0]["content"] == text, timeout=10
            )
            (message,) = world.persona_messages(world.general)
            shown = [c for c in writes(fake) if c.bot_id == int(skeptic)]
            assert [c.method for c in shown][:2] == ["POST", "PATCH"] and len(shown) >= 3
            times = [fake.arrived[id(c)] for c in shown]
            assert all(b - a >= 0.9 for a, b in itertools.pairwise(times)), times
            # Fed back as the persona's turn once the last edit is done.
            await fake.wait_for(lambda: fleet.persona_of("discord", message["id"]) == "skeptic")

            llm.script(Truncated())
            await fake.post_message(world.general, world.alice, f"<@{skeptic}> again")
            cut = await fake.wait_for(
                lambda: (m := world.persona_messages(world.general)[1:]) and m[0]["content"].endswith(CUT_MARK) and m,
                timeout=10,
            )
            assert cut[0]["content"].startswith("step0 step1")
            # What was shown stays in the conversation, without the mark (the model must not learn to write it).
            await fake.wait_for(lambda: fleet.persona_of("discord", cut[0]["id"]) == "skeptic")
            history = await fleet.store.history(f"discord:{world.general['id']}", 20)
            (turn,) = [t for t in history if t.message_id == cut[0]["id"]]
            assert turn.text == cut[0]["content"].removesuffix(f" {CUT_MARK}")


def test_webhook_names_are_adjusted_to_what_discord_accepts() -> None:
    assert webhook_username("Discord Nerd") == "Dis-cord Nerd"
    assert webhook_username("clyde's DISCORD pal") == "cly-de's DIS-CORD pal"
    assert webhook_username("x" * 100) == "x" * 80
    assert webhook_username("  ", "nerd") == "nerd"


async def test_a_streamed_reply_that_turns_abusive_is_deleted_before_the_words_show(tmp_path: Path) -> None:
    text = "Well, let me think about that for a moment. Honestly, you are worthless."
    async with TimedDiscord() as fake, SlowOpenAI(reply=lambda body: text) as llm:
        world = World(fake, llm, tmp_path)
        async with running(world):
            skeptic = world.bot_id("skeptic")
            await fake.post_message(world.general, world.alice, f"<@{skeptic}> what about me?")
            # Its first words are on screen while the model writes on; the stream never shows the rest.
            await fake.wait_for(lambda: writes(fake), timeout=10)
            await fake.wait_for(lambda: any(c.method == "DELETE" for c in fake.calls), timeout=15)
            await settle(0.3)
            assert world.persona_messages(world.general) == []
            shown = [c.json.get("content", "") for c in writes(fake) if c.json]
            assert shown and not any("worthless" in s for s in shown)
