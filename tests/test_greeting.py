"""A persona's greeting (a card's first_mes) opens its first reply in each channel, once."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.events import Author
from bots.core.fleet import Fleet
from bots.core.greeting import fill_macros
from bots.core.ports import Chunk, LLMError, LLMRequest
from bots.llm.canned import CannedClient
from bots.state.memory import MemoryRateLimiter
from bots.state.redis import RedisStore, make_client
from tests.conftest import Clock, RecordingAdapter, make_fleet, msg, persona

BOB = Author(id="u2", name="bob")
QUIET = {"about": {"disclosure": ""}}  # the AI notice of first contacts is checked elsewhere


async def say(fleet, text: str, **kw) -> None:  # type: ignore[no-untyped-def]
    await fleet.dispatch(msg(text, **kw))
    await fleet.drain()


async def test_the_greeting_opens_the_first_reply_in_a_channel_only() -> None:
    mira = persona("mira", name="Mira", greeting="*waves* Hello {{user}}, I'm {{char}}.")
    fleet, adapter, _ = make_fleet([mira], config=QUIET)
    await say(fleet, "@mira hi", mentions=frozenset({"mira"}))
    await say(fleet, "@mira again", mentions=frozenset({"mira"}), author=BOB)
    await say(fleet, "@mira hi", mentions=frozenset({"mira"}), author=BOB, channel="harbour")
    texts = [(r.channel, text) for r, text in adapter.replies]
    assert texts == [
        ("general", "*waves* Hello alice, I'm Mira.\n\nok"),
        ("general", "ok"),
        ("harbour", "*waves* Hello bob, I'm Mira.\n\nok"),
    ]
    # What was said is part of the conversation the model sees next.
    history = await fleet.store.history("test:general", 10)
    assert "*waves* Hello alice, I'm Mira.\n\nok" in [t.text for t in history]


async def test_a_persona_without_a_greeting_replies_as_before_and_greetings_are_defused() -> None:
    plain = persona("plain")
    loud = persona("loud", greeting="@everyone look at me <@123>")
    fleet, adapter, _ = make_fleet([plain, loud], config=QUIET)
    await say(fleet, "@plain @loud hi", mentions=frozenset({"plain", "loud"}))
    by = {r.persona_id: text for r, text in adapter.replies}
    assert by["plain"] == "ok"
    assert "@everyone" not in by["loud"] and "<@123>" not in by["loud"] and by["loud"].endswith("\n\nok")


async def test_each_persona_greets_once_per_channel_even_when_its_replies_race() -> None:
    mira = persona("mira", greeting="Hello.", triggers=[{"keywords": ["lamp"]}])
    fleet, adapter, _ = make_fleet([mira], config=QUIET)
    for n in range(3):
        await fleet.dispatch(msg(f"lamp {n}", author=Author(id=f"u{n}", name=f"p{n}")))
    await fleet.drain()
    assert sum(text.startswith("Hello.") for _, text in adapter.replies) == 1
    assert len(adapter.replies) == 3


def test_macros_fill_in_every_spelling() -> None:
    assert fill_macros("{{Char}} <BOT> {{USER}} <user>", "Mira", "bob") == "Mira Mira bob bob"


async def test_after_greeting_a_channel_the_process_asks_the_store_no_more() -> None:
    mira = persona("mira", greeting="Hello.")
    fleet, adapter, _ = make_fleet([mira], config=QUIET)
    asked: list[str] = []
    first_contact = fleet.store.first_contact

    async def counting(platform: str, persona_id: str, user_id: str, now: float) -> bool:
        asked.append(user_id)
        return await first_contact(platform, persona_id, user_id, now)

    fleet.store.first_contact = counting  # type: ignore[method-assign]
    for _ in range(3):
        await say(fleet, "@mira hi", mentions=frozenset({"mira"}), author=Author(id=f"u{len(asked)}", name="x"))
    assert [text for _, text in adapter.replies] == ["Hello.\n\nok", "ok", "ok"]
    assert [u for u in asked if u.startswith("channel:")] == ["channel:general"]


class DownOnce:
    """An endpoint that fails the first reply (after retries) and answers the next ones."""

    name = "down-once"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        self.calls += 1
        if self.calls == 1:
            raise LLMError("http_500")
        yield Chunk(text="ok", finish_reason="stop")

    async def close(self) -> None:
        return None


async def test_a_reply_dropped_before_the_model_wrote_anything_leaves_the_greeting_for_the_next() -> None:
    mira = persona("mira", greeting="Hello.")
    fleet, adapter, _ = make_fleet([mira], llm=DownOnce(), config={**QUIET, "llm": {"max_retries": 0}})
    await say(fleet, "@mira hi", mentions=frozenset({"mira"}))
    assert adapter.replies == []
    await say(fleet, "@mira still there?", mentions=frozenset({"mira"}), author=BOB)
    assert [text for _, text in adapter.replies] == ["Hello.\n\nok"]


async def test_processes_sharing_a_redis_store_greet_a_channel_once(redis_url: str, redis_prefix: str) -> None:
    mira = persona("mira", greeting="Hello.")
    cfg = FleetConfig.model_validate({**QUIET, "fleet": {"reply_delay_seconds": [0, 0]}})
    client = make_client(redis_url)
    adapters = []
    try:
        for n in range(2):
            store = RedisStore(client, prefix=redis_prefix)
            brain = Brain(CannedClient("ok"), cfg.llm)
            limiter = MemoryRateLimiter()
            fleet = Fleet(cfg, [mira], store=store, limiter=limiter, brain=brain, clock=Clock(), rng=random.Random(n))
            adapters.append(RecordingAdapter())
            fleet.attach(adapters[-1])
            await say(fleet, "@mira hi", id=f"p{n}", mentions=frozenset({"mira"}))
    finally:
        await client.aclose()
    assert [text for a in adapters for _, text in a.replies] == ["Hello.\n\nok", "ok"]
