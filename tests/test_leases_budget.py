"""Session-start budgets: platforms such as Discord allow an account a number of new sessions (gateway
identifies) per window. Connects are counted fleet-wide in Redis and stop, with one clear log line per
account per window, before the platform's budget is spent, keeping a reserve for recovery; the
account connects again once the window resets. A real redis-server; the platform side is a stub
adapter with the optional `connect_budget` hook."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import pytest
import pytest_asyncio
import redis

from bots.app import App
from bots.config import FleetConfig
from bots.llm.canned import CannedClient
from bots.ops.budget import reserve_for
from bots.ops.leases import LeaseManager
from tests.conftest import RecordingAdapter, persona
from tests.lease_world import FakeAdapter, Platform, eventually

ACCOUNT = "fake:skeptic"


class Budget:
    """The platform's session-start budget for every account: each connect spends one start (whether
    or not the session then works); the window resets `window` seconds after it began."""

    def __init__(self, total: int, remaining: int, window: float = 3600.0) -> None:
        self.total, self.start_remaining, self.window = total, remaining, window
        self.remaining = remaining
        self.resets_at = time.monotonic() + window

    def _roll(self) -> None:
        if time.monotonic() >= self.resets_at:
            self.remaining = self.total
            self.resets_at = time.monotonic() + self.window

    def report(self) -> tuple[int, int, float]:
        self._roll()
        return self.remaining, self.total, max(0.0, self.resets_at - time.monotonic())

    def spend(self) -> None:
        self._roll()
        self.remaining -= 1


class BudgetAdapter(FakeAdapter):
    """A fake platform adapter that also reports its session budget, as the Discord adapter does."""

    def __init__(self, world: Platform, name: str, accounts: Iterable[str], budget: Budget, stale: bool = False):
        super().__init__(world, name, accounts)
        self.budget = budget
        # stale: report the figures as first read (an adapter that caches them), not live ones.
        self._first = budget.report() if stale else None

    async def connect_budget(self, account: str) -> tuple[int, int, float] | None:
        return self._first or self.budget.report()

    async def connect(self, account: str) -> bool:
        self.budget.spend()
        return await super().connect(account)


@pytest_asyncio.fixture
async def managers(redis_url: str, redis_prefix: str) -> AsyncIterator[Callable[[FakeAdapter], LeaseManager]]:
    made: list[LeaseManager] = []
    with redis.Redis.from_url(redis_url) as settle:
        settle.set(f"{redis_prefix}epoch", 0, nx=True)

    def make(adapter: FakeAdapter) -> LeaseManager:
        # Connects that fail are retried after 50 ms: a crash loop, the worst case for the budget.
        m = LeaseManager(
            redis_url, [adapter], lease_seconds=1.0, prefix=redis_prefix, identity=adapter.name,
            connect_backoff=(0.05, 0.05),
        )  # fmt: skip
        made.append(m)
        return m

    yield make
    for m in made:
        await m.stop(grace=2)


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "session starts" in r.getMessage()]


def test_reserve_is_five_percent_but_at_least_ten_and_at_most_half() -> None:
    assert [reserve_for(n) for n in (1000, 100, 10, 1)] == [50, 10, 5, 0]


async def test_a_crash_loop_across_two_processes_stops_before_the_reserve(
    managers: Callable[[FakeAdapter], LeaseManager], caplog: pytest.LogCaptureFixture
) -> None:
    """Every connect fails and the two processes take turns retrying: they stop together after
    spending down to the reserve (40 - 13 used, reserve 10: three more), saying so once."""
    caplog.set_level(logging.WARNING)
    world, budget = Platform(), Budget(total=40, remaining=13)
    world.refuse.add(ACCOUNT)
    adapters = [BudgetAdapter(world, name, [ACCOUNT], budget) for name in ("a", "b")]
    for adapter in adapters:
        await managers(adapter).start()
    await eventually(lambda: bool(refusals(caplog)), 10, "the refusal is logged")
    await asyncio.sleep(1.0)  # a few more lease rounds: nobody connects again
    assert budget.remaining == 10
    assert sum(a.connects for a in adapters) == 3
    assert len(refusals(caplog)) == 1
    line = refusals(caplog)[0]
    assert line.startswith(f"{ACCOUNT}: 30 of 40 session starts") and "keep the last 10 for recovery" in line


async def test_the_shared_count_stops_connects_a_stale_platform_figure_would_allow(
    managers: Callable[[FakeAdapter], LeaseManager],
    caplog: pytest.LogCaptureFixture,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """The adapter keeps reporting the figures it read first (13 of 40 left); the fleet's own count in
    Redis still stops after three connects, and expires with the platform's window."""
    caplog.set_level(logging.WARNING)
    world, budget = Platform(), Budget(total=40, remaining=13)
    world.refuse.add(ACCOUNT)
    adapter = BudgetAdapter(world, "a", [ACCOUNT], budget, stale=True)
    await managers(adapter).start()
    await eventually(lambda: bool(refusals(caplog)), 10, "the refusal is logged")
    await asyncio.sleep(0.5)
    assert adapter.connects == 3 and len(refusals(caplog)) == 1
    with redis.Redis.from_url(redis_url) as client:
        key = f"{redis_prefix}identify:{ACCOUNT}"
        assert client.hget(key, "used") == b"30"
        assert 0 < client.pttl(key) <= 3600 * 1000


async def test_the_account_connects_again_when_the_window_resets(
    managers: Callable[[FakeAdapter], LeaseManager], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    world, budget = Platform(), Budget(total=40, remaining=10, window=1.5)
    adapter = BudgetAdapter(world, "a", [ACCOUNT], budget)
    m = managers(adapter)
    await m.start()
    await eventually(lambda: bool(refusals(caplog)), 5, "the refusal is logged")
    assert adapter.connects == 0
    await eventually(lambda: m.connected == {ACCOUNT}, 6, "connected in the new window")
    assert adapter.connects == 1 and budget.remaining == 39
    assert len(refusals(caplog)) == 1


@dataclass
class MemoryModeAdapter(RecordingAdapter):
    budgets: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    receiving: set[str] = field(default_factory=set)

    def accounts(self) -> list[str]:
        return [*sorted(self.budgets), "test:unlimited"]

    async def connect_budget(self, account: str) -> tuple[int, int, float] | None:
        return self.budgets.get(account)

    async def connect(self, account: str) -> bool:
        self.receiving.add(account)
        return True


async def test_memory_store_app_keeps_the_reserve_too(caplog: pytest.LogCaptureFixture) -> None:
    """Without Redis (one process, no leases) the platform's figures alone decide."""
    caplog.set_level(logging.WARNING)
    cfg = FleetConfig.model_validate({"pid_file": None, "metrics": {"port": 0}})
    adapter = MemoryModeAdapter(budgets={"test:low": (10, 40, 3600.0), "test:ok": (11, 40, 3600.0)})
    app = App(cfg, [persona("skeptic")], llm=CannedClient("ok"), adapters=[adapter], signals=False)
    await app.start()
    try:
        assert adapter.receiving == {"test:ok", "test:unlimited"}
        assert [line.split(":", 2)[:2] for line in refusals(caplog)] == [["test", "low"]]
    finally:
        await app.stop()


async def test_shards_of_one_token_spend_one_shared_budget(
    managers: Callable[[FakeAdapter], LeaseManager],
    caplog: pytest.LogCaptureFixture,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """Two shards of one bot token (`fake:host#0/2`, `#1/2`) are leased as accounts of their own, but
    Discord counts their identifies against the one token: the fleet's count is the token's, so the
    crash loop stops after three connects in all, not three per shard."""
    caplog.set_level(logging.WARNING)
    shards = ["fake:host#0/2", "fake:host#1/2"]
    world, budget = Platform(), Budget(total=40, remaining=13)
    world.refuse.update(shards)
    adapter = BudgetAdapter(world, "a", shards, budget, stale=True)
    await managers(adapter).start()
    await eventually(lambda: bool(refusals(caplog)), 10, "the refusal is logged")
    await asyncio.sleep(0.5)
    assert adapter.connects == 3
    with redis.Redis.from_url(redis_url) as client:
        assert client.hget(f"{redis_prefix}identify:fake:host", "used") == b"30"
        assert not client.exists(f"{redis_prefix}identify:{shards[0]}", f"{redis_prefix}identify:{shards[1]}")
