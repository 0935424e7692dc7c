"""The world the account-lease tests run in: a stand-in for the platform that records any account with two
receivers, an adapter whose connects take a little while, and LeaseManagers on the test Redis with a
~1 s lease, so the tests run in real (short) time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest_asyncio
import redis

from bots.core.events import Notice, React, Reply, Sent
from bots.core.ports import FleetView
from bots.ops.leases import LeaseManager
from bots.persona import Persona

LEASE = 1.0
ROOT = Path(__file__).resolve().parent.parent


class Platform:
    """Stands in for the platform's side: who receives on which account, and any overlap."""

    def __init__(self) -> None:
        self.receivers: dict[str, set[str]] = {}
        self.overlaps: list[tuple[str, frozenset[str]]] = []
        self.refuse: set[str] = set()

    def join(self, account: str, who: str) -> bool:
        if account in self.refuse:
            return False
        got = self.receivers.setdefault(account, set())
        got.add(who)
        if len(got) > 1:
            self.overlaps.append((account, frozenset(got)))
        return True

    def leave(self, account: str, who: str) -> None:
        self.receivers.get(account, set()).discard(who)

    def holder(self, account: str) -> set[str]:
        return set(self.receivers.get(account, ()))


class FakeAdapter:
    """The Adapter surface LeaseManager uses; connecting takes a little while, as on a real platform."""

    platform = "fake"
    text_limit = 1000

    def __init__(self, platform: Platform, name: str, accounts: Iterable[str], delay: float = 0.02) -> None:
        self.world = platform
        self.name = name
        self._accounts = list(accounts)
        self.delay = delay
        self.connects = 0
        self.disconnects = 0

    async def start(self, fleet: FleetView) -> None:
        return None

    def accounts(self) -> list[str]:
        return list(self._accounts)

    async def connect(self, account: str) -> bool:
        self.connects += 1
        await asyncio.sleep(self.delay)
        return self.world.join(account, self.name)

    async def disconnect(self, account: str) -> None:
        self.disconnects += 1
        await asyncio.sleep(self.delay)
        self.world.leave(account, self.name)

    async def stop(self) -> None:
        return None

    async def deliver(self, reply: Reply, persona: Persona, snapshots: object) -> Sent:
        raise NotImplementedError

    async def react(self, react: React, persona: Persona) -> None:
        raise NotImplementedError

    async def notify(self, notice: Notice) -> None:
        raise NotImplementedError


ACCOUNTS = ["fake:host", "fake:skeptic", "fake:nerd", "fake:stoic"]


async def eventually(cond: Callable[[], bool], within: float, what: str) -> float:
    """Poll until cond holds; returns how long it took."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


@pytest_asyncio.fixture
async def managers(redis_url: str, redis_prefix: str) -> AsyncIterator[Callable[..., LeaseManager]]:
    made: list[LeaseManager] = []

    def make(
        adapter: FakeAdapter,
        url: str = redis_url,
        connect_backoff: tuple[float, float] = (5.0, 300.0),
        established: bool = True,
    ) -> LeaseManager:
        if established:
            # A Redis that has held leases for long, not one that just lost its data: no grace.
            with redis.Redis.from_url(url) as settle:
                settle.set(f"{redis_prefix}epoch", 0, nx=True)
        m = LeaseManager(
            url,
            [adapter],
            lease_seconds=LEASE,
            prefix=redis_prefix,
            identity=adapter.name,
            connect_backoff=connect_backoff,
        )
        made.append(m)
        return m

    yield make
    for m in made:
        await m.stop(grace=2)
