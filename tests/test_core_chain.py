"""max_bot_chain counts persona-to-persona replies per human message, over every branch."""

from __future__ import annotations

import asyncio

from bots.core.events import Author, Message, Reply
from bots.llm.canned import CannedClient
from tests.conftest import make_fleet, msg, persona


def chatty(n: int = 3) -> list:
    # Each answers any message, its own excepted: every reply invites every other persona.
    return [persona(p, triggers=[{"chance": 1.0}]) for p in "abcdefg"[:n]]


async def test_a_fan_out_stops_after_max_bot_chain_persona_replies_in_all() -> None:
    fleet, adapter, _ = make_fleet(chatty(3), max_responders=3, max_bot_chain=2)
    await fleet.dispatch(msg("hello everyone"))
    await fleet.drain()
    to_human = [r for r, _ in adapter.replies if r.chain == 0]
    to_personas = [r for r, _ in adapter.replies if r.chain > 0]
    assert len(to_human) == 3
    assert len(to_personas) == 2


async def test_each_human_message_has_its_own_allowance() -> None:
    fleet, adapter, _ = make_fleet(chatty(2), max_responders=2, max_bot_chain=1)
    for text in ("one", "two"):
        await fleet.dispatch(msg(text))
        await fleet.drain()
    assert sum(1 for r, _ in adapter.replies if r.chain > 0) == 2
    assert len({r.root for r, _ in adapter.replies}) == 2


async def test_max_bot_chain_zero_means_no_persona_answers_a_persona() -> None:
    fleet, adapter, _ = make_fleet(chatty(3), max_responders=3, max_bot_chain=0)
    await fleet.dispatch(msg("hello"))
    await fleet.drain()
    assert [r.chain for r, _ in adapter.replies] == [0, 0, 0]


async def test_concurrent_branches_cannot_overshoot() -> None:
    fleet, _, _ = make_fleet(chatty(4), max_responders=3, max_bot_chain=2, llm=CannedClient("ok"))
    root = "test:h1"

    def echo(pid: str, n: int) -> Message:
        author = Author(id=f"persona:{pid}", name=pid.title(), is_bot=True, persona_id=pid)
        return Message("test", f"e{n}", "general", author, "ok", chain=0, channel_name="general", root=root)

    plans = await asyncio.gather(*(fleet.handle(echo(p, n)) for n, p in enumerate("abcd")))
    granted = [a for plan in plans for a in plan.actions if isinstance(a, Reply)]
    assert len(granted) == 2 and all(r.root == root for r in granted)
    assert any(d.reason == "max_bot_chain" for plan in plans for d in plan.decisions)
