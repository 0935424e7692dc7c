"""Opt-outs, mutes and follower choices made through one process hold on every other process while
Redis is away, also on a process that never handled the person or the conversation before.

Only the process that wins a message's dedupe reads the opt-out; during an outage dedupe lets every
message through on every process, so each process needs every choice in its local copy beforehand
(bots/state/redis/mirror.py). Two fleets on one real redis-server, frozen with SIGSTOP.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.events import Author, Message, Reply
from bots.core.fleet import Fleet
from bots.core.plan import Plan
from bots.llm.canned import CannedClient
from bots.persona import load_personas
from bots.state.redis import FAULTS, FallbackStore, make_client, open_redis_state
from tests.redis_server import RedisServer

PERSONAS = load_personas(Path(__file__).resolve().parent.parent / "personas")
SKEPTIC = PERSONAS[0].id


class Process:
    """One fleet process on the shared Redis: its own store, limiter and fleet."""

    def __init__(self, url: str, prefix: str) -> None:
        cfg = FleetConfig(store=url)
        store, limiter = open_redis_state(cfg, prefix=prefix)
        self.store: FallbackStore = store
        self.store.health.backoff = (0.05, 0.4)
        self.store.mirror.interval = 0.05
        self.store.mirror.min_reload = 0.1
        self.fleet = Fleet(cfg, PERSONAS, store=self.store, limiter=limiter, brain=Brain(CannedClient(), cfg.llm))
        self.n = 0

    async def message(self, user: str, channel: str = "g1", persona: str = SKEPTIC) -> Plan:
        self.n += 1
        msg = Message(
            platform="tg",
            id=f"{id(self)}-{self.n}",
            channel=channel,
            author=Author(id=user, name=user),
            text=f"@{persona} are you there?",
            mentions=frozenset({persona}),
        )
        return await self.fleet.handle(msg)

    async def started(self) -> None:
        """The first message starts the store's background tasks; wait for the first load of choices."""
        await self.message("someone", channel="warmup")
        await eventually(lambda: _loaded(self.store))

    async def close(self) -> None:
        await self.fleet.stop(grace=0)


async def _loaded(store: FallbackStore) -> bool:
    return store.mirror.loads >= 1


def replies(plan: Plan) -> set[str]:
    return {d.persona_id for d in plan.decisions if d.action == "reply"}


def skipped(plan: Plan, persona: str) -> str:
    return next((d.reason for d in plan.decisions if d.persona_id == persona and d.action == "skip"), "")


@pytest_asyncio.fixture
async def server(redis_servers: Callable[[], RedisServer]) -> AsyncIterator[RedisServer]:
    yield redis_servers()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if await check():
                return
        except FAULTS:
            pass
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)


async def frozen(server: RedisServer, proc: Process) -> None:
    """Freeze Redis, and let `proc` notice (its first call waits the budget, then goes local)."""
    server.freeze()
    await proc.message("bystander", channel="notice")
    assert not proc.store.health.up


async def test_opt_out_and_mute_through_a_hold_on_b_while_redis_is_frozen(server: RedisServer) -> None:
    a, b = Process(server.url, "c:"), Process(server.url, "c:")
    try:
        await a.started()
        await b.started()
        # Both processes see Cy and the channel before; only A handles the opt-out and the mute.
        assert SKEPTIC in replies(await b.message("cy"))
        await a.store.set_opt_out("tg", "cy", True)
        await a.store.set_muted("tg:g2", SKEPTIC, True)
        await eventually(lambda: b.store.local.is_opted_out("tg", "cy"))
        await eventually(lambda: _has_mute(b.store, "tg:g2"))
        await frozen(server, b)
        plan = await b.message("cy")
        assert plan.note == "opted_out" and not plan.actions
        plan = await b.message("u1", channel="g2")
        # (The person is told privately that the persona is muted here: no reply goes out.)
        assert skipped(plan, SKEPTIC) == "muted" and not [x for x in plan.actions if isinstance(x, Reply)]
        # Another person and another channel are still answered: the copy is of choices, not a block.
        assert SKEPTIC in replies(await b.message("u1", channel="g3"))
    finally:
        server.thaw()
        await a.close()
        await b.close()


async def _has_mute(store: FallbackStore, conversation: str) -> bool:
    return SKEPTIC in await store.local.muted(conversation)


async def test_choices_made_before_a_process_starts_hold_in_an_outage(server: RedisServer) -> None:
    a = Process(server.url, "s:")
    await a.started()
    await a.store.set_opt_out("tg", "cy", True)
    await a.store.set_muted("tg:g2", SKEPTIC, True)
    await a.store.set_followers("tg", "bob", ("nerd",))
    b = Process(server.url, "s:")
    try:
        await b.started()
        await frozen(server, b)
        assert (await b.message("cy")).note == "opted_out"
        assert skipped(await b.message("u1", channel="g2"), SKEPTIC) == "muted"
        assert await b.store.followers("tg", "bob") == ("nerd",)
    finally:
        server.thaw()
        await a.close()
        await b.close()


async def test_an_undone_choice_reaches_the_other_process(server: RedisServer) -> None:
    a, b = Process(server.url, "u:"), Process(server.url, "u:")
    try:
        await a.started()
        await b.started()
        await a.store.set_opt_out("tg", "cy", True)
        await a.store.set_followers("tg", "bob", ("nerd",))
        await eventually(lambda: b.store.local.is_opted_out("tg", "cy"))
        await a.store.set_opt_out("tg", "cy", False)
        await a.store.set_followers("tg", "bob", None)
        await eventually(lambda: _not(b.store.local.is_opted_out("tg", "cy")))
        await eventually(lambda: _is_none(b.store.local.followers("tg", "bob")))
        await frozen(server, b)
        assert SKEPTIC in replies(await b.message("cy"))
    finally:
        server.thaw()
        await a.close()
        await b.close()


async def _not(check: Awaitable[bool]) -> bool:
    return not await check


async def _is_none(check: Awaitable[object]) -> bool:
    return await check is None


async def test_a_missed_change_is_found_by_the_version_and_reloaded(server: RedisServer) -> None:
    """A change whose publication B never received (as while its subscription reconnects)."""
    b = Process(server.url, "m:")
    client = make_client(server.url)
    try:
        await b.started()
        loads = b.store.mirror.loads
        # Written as the store writes it, minus the publication: only the version says it happened.
        await client.sadd("m:optout:tg", "cy")
        await client.incr("m:choices-version")
        await eventually(lambda: b.store.local.is_opted_out("tg", "cy"))
        assert b.store.mirror.loads == loads + 1
        # A removal made behind its back is found the same way (the epoch held throughout).
        await client.srem("m:optout:tg", "cy")
        await client.incr("m:choices-version")
        await eventually(lambda: _not(b.store.local.is_opted_out("tg", "cy")))
        # With nothing missed, the version matches and nothing is reloaded.
        await b.store.set_opt_out("tg", "dee", True)
        loads = b.store.mirror.loads
        await asyncio.sleep(0.5)
        assert b.store.mirror.loads == loads
    finally:
        await client.aclose()
        await b.close()


async def test_the_load_is_bounded_and_says_so(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="botfleet.redis")
    a = Process(server.url, "b:")
    b = Process(server.url, "b:")
    b.store.mirror.cap = 3
    try:
        await a.started()
        for i in range(5):
            await a.store.set_opt_out("tg", f"p{i}", True)
        await a.store.set_muted("tg:g2", SKEPTIC, True)
        await b.started()
        choices = b.store.local.choices()
        # Opt-outs come first; the cap counts choices, so the mute did not fit.
        assert len(choices.opted_out) == 3 and not choices.muted
        assert b.store.mirror.capped
        assert sum("choices mirror capped" in r.getMessage() for r in caplog.records) == 1
    finally:
        await a.close()
        await b.close()
