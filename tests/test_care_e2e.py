"""Care mode across processes and restarts: fleets on one real redis-server, each with its own store,
limiter and recording adapter, as separate `botfleet run` processes would have. A person put in care
by one process gets no persona banter from another, nor from a process started afterwards; a direct
address is answered with the care instruction in the prompt. Also: /forget erases the healthy-use
counters, in memory and on Redis."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.events import Author, Command
from bots.core.fleet import Fleet
from bots.core.safety.rules import CARE_INSTRUCTION
from bots.core.usage import utc_day
from bots.state.memory import MemoryRateLimiter, MemoryStore
from bots.state.redis import open_redis_state
from bots.state.redis.admission import RedisAdmission
from tests.conftest import HUMAN, Clock, RecordingAdapter, msg
from tests.redis_sent import Sent
from tests.test_safety_e2e import NO_FOOTER, SKEPTIC, Scripted, mention, run

CALM = "I'm here with you. Please call 988 or someone you trust."
BOB = Author(id="u2", name="bob")


class Process:
    """One fleet process on the shared Redis."""

    def __init__(self, url: str, prefix: str, clock: Clock, config: dict[str, Any] | None = None) -> None:
        cfg = FleetConfig.model_validate(
            {**NO_FOOTER, **(config or {}), "store": url, "fleet": {"reply_delay_seconds": [0, 0]}}
        )
        store, limiter = open_redis_state(cfg, prefix=prefix)
        self.llm = Scripted(CALM)
        self.fleet = Fleet(
            cfg,
            [SKEPTIC],
            store=store,
            limiter=limiter,
            brain=Brain(self.llm, cfg.llm),
            clock=clock,
            rng=random.Random(1),
        )
        self.adapter = RecordingAdapter()
        self.fleet.attach(self.adapter)
        self.store = store

    @property
    def prompt(self) -> str:
        return str(self.llm.requests[-1].messages[0]["content"])

    async def close(self) -> None:
        await self.fleet.stop(grace=0)


@pytest_asyncio.fixture
async def processes(redis_url: str, redis_prefix: str) -> AsyncIterator[Callable[[], Process]]:
    clock = Clock()
    started: list[Process] = []

    def start() -> Process:
        started.append(Process(redis_url, redis_prefix, clock))
        return started[-1]

    yield start
    for p in started:
        await p.close()


def reasons(plan: Any) -> list[str]:
    return [d.reason for d in plan.decisions]


async def test_care_given_by_one_process_holds_on_another_and_after_a_restart(
    processes: Callable[[], Process],
) -> None:
    a, b = processes(), processes()
    # Before: process B answers alice's coffee talk like anyone's.
    await run(b.fleet, msg("coffee first"))
    assert len(b.adapter.replies) == 1

    crisis = await run(a.fleet, msg("coffee... I don't want to live anymore"))
    assert reasons(crisis) == ["safety:care"] and a.adapter.replies == []
    [notice] = a.adapter.notices
    assert notice.private and notice.to_user == HUMAN.id and "988" in notice.text

    # Her next message reaches B: no banter from it.
    quiet = await run(b.fleet, msg("coffee again"))
    assert reasons(quiet) == ["safety:care_quiet"] and len(b.adapter.replies) == 1
    # Addressed directly, B answers, with the care instruction in the prompt.
    await run(b.fleet, mention("are you there?"))
    assert len(b.adapter.replies) == 2 and CARE_INSTRUCTION in b.prompt
    # Bob in the same channel is answered as usual.
    await run(b.fleet, msg("coffee for me", author=BOB))
    assert len(b.adapter.replies) == 3 and CARE_INSTRUCTION not in b.prompt

    # Both processes stop; one started afterwards still keeps quiet toward her.
    await a.close()
    await b.close()
    c = processes()
    assert reasons(await run(c.fleet, msg("coffee once more"))) == ["safety:care_quiet"]
    assert c.adapter.replies == []
    # Once the quiet time is over, she is answered as before.
    c.fleet.clock.advance(31 * 60)  # type: ignore[attr-defined]
    await run(c.fleet, msg("coffee now"))
    assert len(c.adapter.replies) == 1 and CARE_INSTRUCTION not in c.prompt


async def test_care_given_by_one_process_keeps_another_quiet_through_its_one_call_admission(
    processes: Callable[[], Process],
) -> None:
    a, b = processes(), processes()
    for p in (a, b):
        await p.store.epochs.restore()  # both trust the data epoch: messages take the one-call path
    crisis = await run(a.fleet, msg("coffee... I don't want to live anymore"))
    assert reasons(crisis) == ["safety:care"]

    admission = b.fleet.admission
    assert isinstance(admission, RedisAdmission)
    sent = Sent(b.store.primary.client)
    quiet = await run(b.fleet, msg("coffee again"))
    assert reasons(quiet) == ["safety:care_quiet"] and b.adapter.replies == []
    # B learnt of A's care record in the admission call itself, not from a read of its own.
    assert admission.calls == 1 and sent.count("HGET") == 0
    # Bob is not in care: the same path answers him.
    await run(b.fleet, msg("coffee for me", author=BOB))
    assert len(b.adapter.replies) == 1 and sent.count("HGET") == 0


def forget() -> Command:
    msg.counter += 1  # type: ignore[attr-defined]
    return Command(platform="test", id=f"c{msg.counter}", channel="general", author=HUMAN, name="forget")  # type: ignore[attr-defined]


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_forget_erases_the_healthy_use_counters(store: str, request: pytest.FixtureRequest) -> None:
    config = {**NO_FOOTER, "safety": {"healthy_use": {"messages_per_day": 3}}}
    clock = Clock()
    if store == "redis":
        p = Process(request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"), clock, config)
        fleet, adapter = p.fleet, p.adapter
    else:
        cfg = FleetConfig.model_validate({**config, "fleet": {"reply_delay_seconds": [0, 0]}})
        fleet = Fleet(
            cfg,
            [SKEPTIC],
            store=MemoryStore(),
            limiter=MemoryRateLimiter(),
            brain=Brain(Scripted(CALM), cfg.llm),
            clock=clock,
        )
        adapter = RecordingAdapter()
        fleet.attach(adapter)
    try:
        key, day = f"use:test:{HUMAN.id}", utc_day(clock())
        for _ in range(4):
            await run(fleet, mention("and this?"))
            clock.advance(10)
        assert (await fleet.store.add_daily(day, key, {}))["messages"] == 4
        assert len(adapter.notices) == 1  # the nudge
        await run(fleet, forget())
        assert await fleet.store.add_daily(day, key, {}) == {}
        # Counting starts again from nothing: when they last wrote was forgotten too, so the ten
        # seconds since are not counted as time spent.
        await run(fleet, mention("hello again"))
        assert await fleet.store.add_daily(day, key, {}) == {"messages": 1, "seconds": 0}
    finally:
        await fleet.stop(grace=0)
