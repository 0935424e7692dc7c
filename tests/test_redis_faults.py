"""Redis faults: frozen, restarted, absent. No handler waits on a frozen Redis for more than about
300 ms, the fleet keeps answering on local state (saying so once, not per message), and goes back to Redis when
it answers again, without losing opt-outs made in between."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.events import Author, Message
from bots.core.fleet import Fleet
from bots.core.ports import Rate, Turn
from bots.llm.canned import CannedClient
from bots.persona import load_personas
from bots.state.memory import MemoryRateLimiter
from bots.state.redis import (
    CALL_TIMEOUT,
    FallbackRateLimiter,
    FallbackStore,
    RedisHealth,
    RedisRateLimiter,
    RedisStore,
    make_client,
    open_redis_state,
    stop_task,
)
from bots.state.redis.admission import RedisAdmission
from tests.redis_server import RedisServer, SlowProxy, free_port

PERSONAS = load_personas(Path(__file__).resolve().parent.parent / "personas")
# A handler may wait CALL_TIMEOUT once per outage; the rest is slack for a loaded test machine.
BOUND = CALL_TIMEOUT + 0.25


class Rig:
    def __init__(self, url: str, prefix: str) -> None:
        self.cfg = FleetConfig(store=url)
        store, limiter = open_redis_state(self.cfg, prefix=prefix)
        self.store: FallbackStore = store
        self.limiter: FallbackRateLimiter = limiter
        # Probe quickly: the tests wait for recovery in real time.
        self.store.health.backoff = (0.05, 0.4)
        self.fleet = Fleet(self.cfg, PERSONAS, store=store, limiter=limiter, brain=Brain(CannedClient(), self.cfg.llm))
        assert isinstance(self.fleet.admission, RedisAdmission)  # the one-call path is the one under test
        self.admission = self.fleet.admission
        self.n = 0
        self.latencies: list[float] = []

    @property
    def health(self) -> RedisHealth:
        return self.store.health

    async def say(self, channel: str = "g1") -> float:
        """A message mentioning one persona (in turn, so per-persona limits leave room to answer)."""
        self.n += 1
        persona = PERSONAS[self.n % len(PERSONAS)]
        msg = Message(
            platform="tg",
            id=str(self.n),
            channel=f"{channel}-{self.n % 7}",
            author=Author(id=f"u{self.n % 13}", name="someone"),
            text=f"@{persona.id} what do you think?",
            mentions=frozenset({persona.id}),
        )
        start = time.perf_counter()
        await self.fleet.handle(msg)
        took = time.perf_counter() - start
        self.latencies.append(took)
        return took

    async def wait_up(self, within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not self.health.up:
            assert time.monotonic() < deadline, "redis never came back"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.fleet.stop(grace=0)


@pytest_asyncio.fixture
async def server(redis_servers: Callable[[], RedisServer]) -> AsyncIterator[RedisServer]:
    yield redis_servers()


def outage_logs(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    down = sum("redis unreachable" in r.getMessage() for r in caplog.records)
    back = sum("redis is back" in r.getMessage() for r in caplog.records)
    return down, back


async def test_frozen_redis_bounds_every_handler(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="botfleet.redis")
    rig = Rig(server.url, "f:")
    try:
        for _ in range(5):
            await rig.say()
        assert rig.health.up
        server.freeze()
        # Twenty handlers at once while Redis is frozen: each waits once at most, none hangs.
        took = await asyncio.gather(*(rig.say() for _ in range(20)))
        assert max(took) < BOUND
        assert not rig.health.up
        # Later messages do not wait on Redis at all, and still get answered locally.
        later = [await rig.say(channel=f"new{i}") for i in range(20)]
        assert max(later) < 0.05
        assert any(p.actions for p in list(rig.fleet.audit.values())[-20:])
        server.thaw()
        await rig.wait_up()
        # Shared state again: a dedupe key written now is in Redis.
        await rig.say()
        client = make_client(server.url)
        try:
            assert await client.exists(f"f:seen:tg:{rig.n}")
        finally:
            await client.aclose()
        assert outage_logs(caplog) == (1, 1)
    finally:
        server.thaw() if server.pid else None
        await rig.close()


async def test_restart_during_traffic(server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="botfleet.redis")
    rig = Rig(server.url, "r:")
    stop = asyncio.Event()
    errors: list[BaseException] = []

    async def traffic() -> None:
        while not stop.is_set():
            try:
                await rig.say()
            except Exception as exc:  # the test fails on any, but keeps the traffic going to see all
                errors.append(exc)
            await asyncio.sleep(0.002)

    workers = [asyncio.create_task(traffic()) for _ in range(8)]
    try:
        await asyncio.sleep(0.2)
        server.kill()
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.start)
        await rig.wait_up()
        sent_before = rig.admission.calls
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*workers)
        assert not errors
        assert max(rig.latencies) < BOUND
        # The decision script was loaded again on the fresh server (EVALSHA's NOSCRIPT), and used once
        # the data epoch was written back (until then messages are decided step by step).
        assert rig.admission.calls > sent_before
        assert rig.health.outages == 1
        assert outage_logs(caplog) == (1, 1)
        # Answered throughout: some replies before, during and after the outage.
        assert sum(1 for p in rig.fleet.audit.values() if p.actions) > 3
    finally:
        stop.set()
        await asyncio.gather(*workers, return_exceptions=True)
        await rig.close()


async def test_no_redis_at_startup_still_answers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="botfleet.redis")
    rig = Rig(f"redis://127.0.0.1:{free_port()}/0", "n:")
    try:
        took = [await rig.say(channel=f"c{i}") for i in range(10)]
        assert max(took) < BOUND
        assert sum(took[1:]) < 0.2
        assert all(p.actions for p in rig.fleet.audit.values())
        assert outage_logs(caplog) == (1, 0)
    finally:
        await rig.close()


async def test_opt_out_and_forget_during_outage_reach_redis(server: RedisServer) -> None:
    rig = Rig(server.url, "o:")
    try:
        store = rig.store
        now = time.time()
        await store.append("tg:g1", Turn(speaker="Ann", text="remember me", at=now, user_id="ann"))
        assert await store.is_opted_out("tg", "bob") is False
        assert await store.add_usage("2026-01-01", {"fleet": 100}) == {"fleet": 100}
        server.freeze()
        await store.set_opt_out("tg", "ann", True)
        # Locally only this outage's turns exist: the one from before is Redis's to delete.
        await store.append("tg:g1", Turn(speaker="Ann", text="said meanwhile", at=now, user_id="ann"))
        assert await store.forget_user("tg", "ann") == 1
        await store.set_muted("tg:g1", "skeptic", True)
        await store.set_followers("tg", "bob", ("skeptic",))
        # Budgets go on from the shared total last seen, plus what this process spends meanwhile.
        assert await store.add_usage("2026-01-01", {"fleet": 7}) == {"fleet": 107}
        # Locally it all holds at once.
        assert await store.is_opted_out("tg", "ann")
        assert await store.history("tg:g1", 10) == []
        assert await store.muted("tg:g1") == frozenset({"skeptic"})
        assert await store.followers("tg", "bob") == ("skeptic",)
        server.thaw()
        await rig.wait_up()
        # And Redis got the journal before it was trusted again.
        assert await store.primary.is_opted_out("tg", "ann")
        assert await store.primary.history("tg:g1", 10) == []
        assert await store.primary.muted("tg:g1") == frozenset({"skeptic"})
        assert await store.primary.followers("tg", "bob") == ("skeptic",)
        assert await store.primary.add_usage("2026-01-01", {}) == {"fleet": 107}
        assert len(store.journal) == 0
    finally:
        await rig.close()


async def test_opt_out_known_before_the_outage_holds_during_it(server: RedisServer) -> None:
    """Another process opted Ann out; this one saw that once, and remembers it while Redis is away."""
    rig = Rig(server.url, "k:")
    other = make_client(server.url)
    try:
        await other.sadd("k:optout:tg", "ann")
        assert await rig.store.is_opted_out("tg", "ann")
        server.freeze()
        assert await rig.store.is_opted_out("tg", "ann")
    finally:
        server.thaw()
        await other.aclose()
        await rig.close()


async def test_pool_is_bounded_under_a_burst(server: RedisServer) -> None:
    """500 handlers at once share a 32-connection pool: they queue briefly, none fails or waits long."""
    rig = Rig(server.url, "b:")
    try:
        took = await asyncio.gather(*(rig.say(channel=f"c{i}") for i in range(500)))
        assert rig.health.up, "a burst is not an outage"
        assert max(took) < 2.0
        client = rig.store.primary._client
        assert client.connection_pool.max_connections == 32
    finally:
        await rig.close()


async def test_a_timeout_while_callers_wait_for_the_pool_is_a_queue(redis_url: str) -> None:
    """No answer was ever read, yet callers are queued for the pool: the late call was late because of
    our queue, not a silent server (a cold pool's burst on a loaded machine looks exactly like this).
    The timed-out call gives its connection back before the health is asked, so "no free connection"
    alone said outage."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    async with SlowProxy(port, 0.0) as proxy:
        client = make_client(proxy.url, max_connections=2)
        health = RedisHealth(client)
        proxy.hold(b"held")
        holders = [asyncio.ensure_future(health.call(lambda: client.get("held"))) for _ in range(2)]
        await asyncio.sleep(0.05)  # both connections taken and their requests held
        # Queued for the pool (up to its 1 s): more of them than connections, so some still wait after
        # both held calls have given theirs back, whichever order the loop runs things in.
        waiters = [asyncio.ensure_future(client.get("free")) for _ in range(3)]
        results = await asyncio.gather(*holders, return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results)
        assert health.up and health.overloaded == 2 and health.outages == 0
        proxy.release()
        assert await asyncio.gather(*waiters) == [None] * 3
        await client.aclose()


async def test_script_reloads_after_restart(server: RedisServer) -> None:
    client = make_client(server.url)
    lim = RedisRateLimiter(client, timeout=5.0)
    try:
        rate = Rate("p:x", 1, 60.0, "per_minute")
        assert (await lim.acquire([[rate]], 1, 0.0))[0].allowed
        server.restart()
        # The first call after a restart may hit a dead pooled connection; the next one must work.
        for _ in range(3):
            try:
                verdicts = await lim.acquire([[rate]], 1, 0.0)
                break
            except Exception:
                await asyncio.sleep(0.05)
        assert verdicts[0].allowed  # a fresh server forgot the tat, and the script was loaded again
    finally:
        await lim.close()
        await client.aclose()


async def test_forget_in_one_process_stays_forgotten_in_another_during_an_outage(server: RedisServer) -> None:
    """Process A wrote Ann's turn to Redis; B handled her /forget. When Redis later goes away, A's
    local history must not bring her words back into prompts."""
    a, b = Rig(server.url, "x:"), Rig(server.url, "x:")
    try:
        now = time.time()
        await a.store.append("tg:g1", Turn(speaker="Ann", text="my secret", at=now, user_id="ann"))
        await a.store.append("tg:g1", Turn(speaker="Bob", text="hello", at=now, user_id="bob"))
        assert await b.store.forget_user("tg", "ann") == 1
        server.freeze()
        texts = [t.text for t in await a.store.history("tg:g1", 10)]
        assert not a.health.up
        assert "my secret" not in texts
    finally:
        server.thaw()
        await a.close()
        await b.close()


async def test_forget_reaches_another_process_that_is_in_an_outage(redis_url: str, redis_prefix: str) -> None:
    """A cannot reach Redis for its calls (marked down) and keeps this outage's turns locally; B can,
    and handles Ann's /forget: the forget is published, and A drops her turns and first contacts."""
    a, b = Rig(redis_url, redis_prefix), Rig(redis_url, redis_prefix)
    try:
        await a.store.is_opted_out("tg", "ann")  # both start listening for forgets
        await b.store.is_opted_out("tg", "ann")
        channel = f"{redis_prefix}forget"
        client = make_client(redis_url)
        try:
            deadline = time.monotonic() + 5
            while dict(await client.pubsub_numsub(channel)).get(channel.encode(), 0) < 2:
                assert time.monotonic() < deadline, "the stores never subscribed"
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()
        a.health.backoff = (60.0, 60.0)  # stays down for the test
        a.health.down(OSError("partitioned"))
        now = time.time()
        await a.store.append("tg:g1", Turn(speaker="Ann", text="my secret", at=now, user_id="ann"))
        await a.store.first_contact("tg", "skeptic", "ann", now)
        assert [t.text for t in await a.store.history("tg:g1", 10)] == ["my secret"]
        await b.store.forget_user("tg", "ann")
        deadline = time.monotonic() + 5
        while await a.store.history("tg:g1", 10):
            assert time.monotonic() < deadline, "the forget never reached the other process"
            await asyncio.sleep(0.02)
        assert await a.store.first_told("tg", "skeptic", "ann") is None
    finally:
        await a.close()
        await b.close()


class SlowStore(RedisStore):
    """A Redis store whose named calls hang while every other call answers at once: Redis up but slow."""

    def __init__(self, *args: Any, slow: set[str], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.slow = slow

    async def _maybe_hang(self, name: str) -> None:
        if name in self.slow:
            await asyncio.sleep(5)

    async def first_seen(self, key: str, ttl: float, now: float) -> bool:
        await self._maybe_hang("first_seen")
        return await super().first_seen(key, ttl, now)

    async def is_opted_out(self, platform: str, user_id: str) -> bool:
        await self._maybe_hang("is_opted_out")
        return await super().is_opted_out(platform, user_id)

    async def append(self, conversation: str, turn: Turn) -> None:
        await self._maybe_hang("append")
        await super().append(conversation, turn)

    async def muted(self, conversation: str) -> frozenset[str]:
        await self._maybe_hang("muted")
        return await super().muted(conversation)


async def slow_store(url: str, prefix: str, slow: set[str]) -> tuple[FallbackStore, asyncio.Task[None]]:
    client = make_client(url)
    health = RedisHealth(client)
    store = FallbackStore(SlowStore(client, prefix=prefix, slow=slow), health)

    async def others_answer() -> None:
        # Other calls keep completing, so a timeout means a queue, not an outage.
        while True:
            await client.ping()
            health.last_ok = time.monotonic()
            await asyncio.sleep(0.01)

    return store, asyncio.create_task(others_answer())


async def test_dedupe_timeout_with_redis_up_lets_the_message_through(redis_url: str, redis_prefix: str) -> None:
    """Unchecked across processes, the message is answered; this process still sees it only once."""
    store, alive = await slow_store(redis_url, redis_prefix, {"first_seen"})
    try:
        await asyncio.sleep(0.05)
        assert await store.first_seen("tg:1", 60, time.time()) is True
        assert store.health.up
        assert store.dedupe_unchecked == 1
        assert await store.first_seen("tg:1", 60, time.time()) is False
        assert store.dedupe_unchecked == 1
    finally:
        await stop_task(alive)
        await store.close()


async def test_slow_redis_costs_a_handler_one_wait_at_most(redis_url: str, redis_prefix: str) -> None:
    store, alive = await slow_store(redis_url, redis_prefix, {"is_opted_out", "append", "muted"})
    cfg = FleetConfig(store=redis_url)
    fleet = Fleet(cfg, PERSONAS, store=store, limiter=MemoryRateLimiter(), brain=Brain(CannedClient(), cfg.llm))
    try:
        await asyncio.sleep(0.05)
        persona = PERSONAS[0]
        msg = Message(
            platform="tg",
            id="1",
            channel="g1",
            author=Author(id="u1", name="someone"),
            text=f"@{persona.id} hi",
            mentions=frozenset({persona.id}),
        )
        start = time.perf_counter()
        plan = await fleet.handle(msg)
        assert time.perf_counter() - start < BOUND
        assert store.health.up
        assert plan.actions
    finally:
        await stop_task(alive)
        await fleet.stop(grace=0)
