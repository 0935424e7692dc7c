"""Feed mode in the core: a post gets a cascade of comments from the poster's followers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.cli import main
from bots.core.events import Author, Command, Notice, React, Reply
from bots.core.ports import Chunk, LLMRequest
from tests.conftest import HUMAN, make_fleet, msg, persona

FEED = {"feeds": {"console": [], "discord": [], "telegram": [{"channel": "feed", "comments": 3, "window_seconds": 60}]}}


def fleet_with(n: int = 6, **kw):
    ps = [persona(f"p{i}", bio=f"outlook {i}", triggers=[{"mention": True}, {"reply": True}]) for i in range(n)]
    fleet, adapter, clock = make_fleet(ps, config=FEED, reply_delay_seconds=[1, 5], **kw)
    return fleet, adapter, clock


def post(text: str, author: Author = HUMAN, channel: str = "feed"):
    m = msg(text, author=author, channel=channel, is_post=True)
    return m.__class__(**{**{f: getattr(m, f) for f in m.__slots__}, "platform": "telegram"})


def cmd(name: str, args: str = "", author: Author = HUMAN, channel: str = "feed") -> Command:
    msg.counter += 1
    return Command("telegram", f"c{msg.counter}", channel, author, name, args, channel_name=channel)


async def test_a_post_gets_comments_from_three_different_followers_spread_over_the_window() -> None:
    fleet, _, _ = fleet_with()
    plan = await fleet.handle(post("I'm thinking of moving to Lisbon"))
    comments = [a for a in plan.actions if isinstance(a, Reply)]
    assert len(comments) == 3 and len({c.persona_id for c in comments}) == 3
    delays = [c.delay for c in comments]
    assert delays == sorted(delays) and 1 <= delays[0] <= 5 and delays[-1] <= 60
    assert all(c.reason == "feed:post" and "different angle" in c.instruction for c in comments)
    likes = [a for a in plan.actions if isinstance(a, React)]
    assert {a.persona_id for a in likes}.isdisjoint({c.persona_id for c in comments})


async def test_a_plain_message_in_the_feed_channel_and_posts_elsewhere_use_normal_routing() -> None:
    fleet, _, _ = fleet_with()
    assert not (await fleet.handle(msg("just chatting", channel="feed"))).actions
    assert not [a for a in (await fleet.handle(post("hello", channel="other"))).actions if isinstance(a, Reply)]


async def test_followers_choose_who_comments_on_the_next_post() -> None:
    fleet, _, _ = fleet_with()
    too_few = await fleet.handle(cmd("followers", "p1 p2"))
    assert "at least 3" in too_few.actions[0].text
    await fleet.handle(cmd("followers", "p3 p4 p5"))
    shown = await fleet.handle(cmd("followers"))
    assert "your choice" in shown.actions[0].text and "P3" in shown.actions[0].text
    plan = await fleet.handle(post("new job offer!"))
    assert sorted(a.persona_id for a in plan.actions if isinstance(a, Reply)) == ["p3", "p4", "p5"]
    await fleet.handle(cmd("followers", "reset"))
    assert await fleet.store.followers("telegram", HUMAN.id) is None


async def test_more_asks_two_followers_who_have_not_spoken() -> None:
    class Echo:
        name = "echo"

        async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
            yield Chunk(text="a comment", finish_reason="stop")

        async def close(self) -> None:
            return None

    fleet, adapter, _ = fleet_with(llm=Echo())
    fleet.sleep = lambda s: asyncio.sleep(0)  # type: ignore[assignment]
    fleet.adapters["telegram"] = adapter
    await fleet.dispatch(post("should I adopt a dog?"))
    await fleet.drain()
    first = {r.persona_id for r, _ in adapter.replies}
    assert len(first) == 3
    plan = await fleet.handle(cmd("more"))
    more = [a.persona_id for a in plan.actions if isinstance(a, Reply)]
    assert len(more) == 2 and not set(more) & first


async def test_feed_comments_follow_limits_opt_outs_and_mutes() -> None:
    fleet, _, _ = fleet_with(n=4)
    await fleet.handle(Command("telegram", "m1", "feed", Author("mod", "mod", is_admin=True), "mute", "p0"))
    plan = await fleet.handle(post("first post"))
    assert "p0" not in [a.persona_id for a in plan.actions]
    await fleet.handle(cmd("optout"))
    assert (await fleet.handle(post("second"))).note == "opted_out"


def test_simulate_shows_feed_decisions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "personas").mkdir()
    for i in range(5):
        (tmp_path / "personas" / f"p{i}.yaml").write_text(f"id: p{i}\nname: P{i}\nprompt: x\n")
    (tmp_path / "config.yaml").write_text(
        "personas_dir: personas\nfeeds:\n  discord:\n    - {channel: feed, comments: 3, reactions: false}\n"
    )
    transcript = tmp_path / "t.jsonl"
    transcript.write_text(json.dumps({"at": 0, "channel": "feed", "author": "ana", "text": "big news", "post": True}))
    assert main(["simulate", str(transcript), "--config", str(tmp_path / "config.yaml"), "--all"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len([r for r in out if r["action"] == "reply" and r["reason"] == "feed:post"]) == 3
    assert len([r for r in out if r["action"] == "skip" and r["reason"] == "feed:not_chosen"]) == 2


async def test_comments_are_written_in_turn_so_each_prompt_holds_the_earlier_ones() -> None:
    prompts: list[str] = []

    class Slow:
        name = "slow"

        async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
            prompts.append("\n".join(m["content"] for m in request.messages))
            await asyncio.sleep(0.02)  # a slow model: without the queue, all three would start at once
            yield Chunk(text=f"comment {len(prompts)}", finish_reason="stop")

        async def close(self) -> None:
            return None

    ps = [persona(f"p{i}", triggers=[{"mention": True}]) for i in range(3)]
    cfg = {"feeds": {"telegram": [{"channel": "feed", "comments": 3, "window_seconds": 0, "reactions": False}]}}
    fleet, adapter, _ = make_fleet(ps, llm=Slow(), config=cfg)
    fleet.adapters["telegram"] = adapter
    await fleet.dispatch(post("big news"))
    await fleet.drain()
    assert len(prompts) == 3
    assert "comment 1" in prompts[1] and "comment 1" in prompts[2] and "comment 2" in prompts[2]


async def test_a_reply_to_a_comment_gets_that_personas_answer_despite_its_cooldown() -> None:
    ps = [
        persona(
            "p0",
            triggers=[{"mention": True}],
            limits={"cooldown_seconds": 60, "per_channel_per_minute": 1, "per_user_per_minute": 1},
        )
    ]
    cfg = {"feeds": {"telegram": [{"channel": "feed", "comments": 1, "window_seconds": 0, "reactions": False}]}}
    fleet, _, clock = make_fleet(ps, config=cfg)
    assert [a.persona_id for a in (await fleet.handle(post("my post"))).actions] == ["p0"]
    clock.advance(5)
    # p0 has no reply trigger and is inside every per-channel limit, yet the conversation goes on.
    reply = msg("why do you say that?", channel="feed", reply_to_persona="p0")
    reply = reply.__class__(**{**{f: getattr(reply, f) for f in reply.__slots__}, "platform": "telegram"})
    plan = await fleet.handle(reply)
    assert [a.persona_id for a in plan.actions if isinstance(a, Reply)] == ["p0"]
    assert plan.decisions[0].reason == "reply:feed"


async def test_a_mute_in_a_channel_covers_its_threads() -> None:
    fleet, _, _ = make_fleet([persona("a", triggers=[{"keywords": ["x"]}])])
    admin = Author("mod", "mod", is_admin=True)
    await fleet.handle(Command("test", "mute1", "forum", admin, "mute", "a"))
    plan = await fleet.handle(msg("x", channel="thread-1", parent_channel="forum"))
    assert [d.reason for d in plan.decisions] == ["muted"]


async def test_more_only_works_in_a_feed() -> None:
    fleet, _, _ = fleet_with()
    plan = await fleet.handle(cmd("more", channel="general"))
    assert "feed post's thread" in plan.actions[0].text
    # In a feed, but before any post: nobody comments on nothing.
    plan = await fleet.handle(cmd("more"))
    assert [type(a) for a in plan.actions] == [Notice] and "Nothing to comment on" in plan.actions[0].text
