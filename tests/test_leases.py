"""Account leases between processes: a fair split, never two receivers on one account, takeover within
the lease time when a holder dies, immediate handover on a clean stop, and fail-closed when Redis
cannot be reached. Lease times are ~1 s here, so these tests run in real (short) time."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import pytest_asyncio

from adapters.base import FleetView
from bots.events import Notice, React, Reply, Sent
from bots.leases import LeaseManager, format_status, read_leases, status
from bots.persona import Persona
from bots.redis_backend import make_client
from tests.redis_server import RedisServer

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

    async def start(self, fleet: FleetView) -> None:
        return None

    def accounts(self) -> list[str]:
        return list(self._accounts)

    async def connect(self, account: str) -> bool:
        self.connects += 1
        await asyncio.sleep(self.delay)
        return self.world.join(account, self.name)

    async def disconnect(self, account: str) -> None:
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

    def make(adapter: FakeAdapter, url: str = redis_url, **kw: object) -> LeaseManager:
        m = LeaseManager(url, [adapter], lease_seconds=LEASE, prefix=redis_prefix, identity=adapter.name, **kw)  # type: ignore[arg-type]
        made.append(m)
        return m

    yield make
    for m in made:
        await m.stop(grace=2)


async def test_one_process_takes_every_account(managers: Callable[..., LeaseManager]) -> None:
    world = Platform()
    a = managers(FakeAdapter(world, "a", ACCOUNTS))
    await a.start()
    await eventually(lambda: a.connected == frozenset(ACCOUNTS), 2, "a connects all")
    assert all(world.holder(acc) == {"a"} for acc in ACCOUNTS)


async def test_two_processes_split_and_never_overlap(managers: Callable[..., LeaseManager]) -> None:
    world = Platform()
    a = managers(FakeAdapter(world, "a", ACCOUNTS))
    b = managers(FakeAdapter(world, "b", ACCOUNTS))
    await a.start()
    await eventually(lambda: len(a.connected) == 4, 2, "a alone takes all four")
    await b.start()
    # a hands two over (disconnecting first), b picks them up: two each.
    await eventually(lambda: len(a.connected) == 2 and len(b.connected) == 2, 3 * LEASE, "a 2/2 split")
    assert a.connected.isdisjoint(b.connected)
    assert world.overlaps == []


async def test_takeover_within_the_lease_when_a_holder_dies(managers: Callable[..., LeaseManager]) -> None:
    world = Platform()
    a = managers(FakeAdapter(world, "a", ACCOUNTS))
    b = managers(FakeAdapter(world, "b", ACCOUNTS))
    await a.start()
    await b.start()
    await eventually(lambda: len(a.connected) == 2 and len(b.connected) == 2, 3 * LEASE, "split")
    # "a" dies: no more renewals and no goodbye. Its connections die with it.
    assert a._task is not None
    a._task.cancel()
    for account in a.connected:
        world.leave(account, "a")
    took = await eventually(lambda: len(b.connected) == 4, LEASE + 0.5, "b takes a's accounts")
    assert took <= LEASE + 0.3
    assert world.overlaps == []


async def test_clean_stop_hands_over_at_once(managers: Callable[..., LeaseManager]) -> None:
    world = Platform()
    a = managers(FakeAdapter(world, "a", ACCOUNTS))
    b = managers(FakeAdapter(world, "b", ACCOUNTS))
    await a.start()
    await b.start()
    await eventually(lambda: len(a.connected) == 2 and len(b.connected) == 2, 3 * LEASE, "split")
    start = time.monotonic()
    await a.stop()
    assert a.connected == frozenset()
    await eventually(lambda: len(b.connected) == 4, LEASE, "b takes over")
    # Much faster than waiting for leases to lapse: b wakes when a's membership is gone.
    assert time.monotonic() - start < LEASE
    assert world.overlaps == []


async def test_refused_account_is_handed_back(managers: Callable[..., LeaseManager]) -> None:
    world = Platform()
    world.refuse.add("fake:nerd")
    a = managers(FakeAdapter(world, "a", ACCOUNTS), connect_backoff=(60.0, 60.0))
    await a.start()
    await eventually(lambda: len(a.connected) == 3, 2, "a connects the other three")
    await eventually(lambda: a.holders.get("fake:nerd", ("?",))[0] == "", 2, "the refused lease is free again")
    assert "fake:nerd" not in a.held


async def test_status_shows_holders(managers: Callable[..., LeaseManager], redis_url: str, redis_prefix: str) -> None:
    world = Platform()
    a = managers(FakeAdapter(world, "host-a:11:aa", ACCOUNTS[:2]))
    await a.start()
    await eventually(lambda: len(a.connected) == 2, 2, "a connects")
    client = make_client(redis_url)
    try:
        leases, members = await read_leases(client, redis_prefix)
    finally:
        await client.aclose()
    assert {(x.account, x.holder) for x in leases} == {("fake:host", "host-a:11:aa"), ("fake:skeptic", "host-a:11:aa")}
    assert all(0 < x.expires_in <= LEASE for x in leases)
    assert [m.identity for m in members] == ["host-a:11:aa"]
    text = await status(redis_url, redis_prefix)
    assert "fake:skeptic" in text and "host-a:11:aa" in text and "processes: 1" in text
    await a.stop()
    client = make_client(redis_url)
    try:
        leases, members = await read_leases(client, redis_prefix)
    finally:
        await client.aclose()
    assert [x.holder for x in leases] == ["", ""] and members == []
    assert "(nobody)" in format_status(leases, members)


# --- Redis faults -------------------------------------------------------------------------------


async def test_fails_closed_when_redis_freezes(
    managers: Callable[..., LeaseManager], redis_servers: Callable[[], RedisServer]
) -> None:
    """Cannot renew: the holder stops receiving by itself, before its lease could lapse."""
    server = redis_servers()
    world = Platform()
    a = managers(FakeAdapter(world, "a", ACCOUNTS), url=server.url)
    await a.start()
    await eventually(lambda: len(a.connected) == 4, 2, "a connects")
    frozen_at = time.monotonic()
    server.freeze()
    try:
        took = await eventually(lambda: not a.connected, 2 * LEASE, "a stops its accounts")
        # Stopped (disconnect finished) before the last renewal's lease ran out.
        assert took < LEASE
        assert all(not world.holder(acc) for acc in ACCOUNTS)
    finally:
        server.thaw()
    await eventually(lambda: len(a.connected) == 4, 3 * LEASE, "a takes its accounts back after the thaw")
    assert time.monotonic() - frozen_at > 0


async def test_survives_a_redis_restart(
    managers: Callable[..., LeaseManager], redis_servers: Callable[[], RedisServer]
) -> None:
    """A quick restart loses every lease key; the holder re-takes its own without dropping them."""
    server = redis_servers()
    world = Platform()
    adapter = FakeAdapter(world, "a", ACCOUNTS)
    a = managers(adapter, url=server.url)
    await a.start()
    await eventually(lambda: len(a.connected) == 4, 2, "a connects")
    connects = adapter.connects
    await asyncio.to_thread(server.restart)
    client = make_client(server.url)
    try:

        async def held_again() -> bool:
            return all([await client.get(f"{a.prefix}lease:{acc}") == b"a" for acc in ACCOUNTS])

        deadline = time.monotonic() + 2 * LEASE
        while not await held_again():
            assert time.monotonic() < deadline, "leases not re-taken"
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    assert a.connected == frozenset(ACCOUNTS)
    assert adapter.connects == connects, "no reconnect: the leases were never lost"


# --- real processes -----------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from bots.leases import LeaseManager

    class Adapter:
        platform = "fake"
        def accounts(self):
            return sys.argv[3].split(",")
        async def connect(self, account):
            print("connected", account, flush=True)
            return True
        async def disconnect(self, account):
            print("disconnected", account, flush=True)

    async def main():
        m = LeaseManager(sys.argv[1], [Adapter()], lease_seconds=float(sys.argv[4]), prefix=sys.argv[2],
                         identity="child")
        await m.start()
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_killed_process_accounts_taken_over(
    managers: Callable[..., LeaseManager], redis_url: str, redis_prefix: str
) -> None:
    """A real second process holds half the accounts; SIGKILL it, and this one has them all within
    the lease time, never both receiving."""
    accounts = ACCOUNTS[:2]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        redis_url,
        redis_prefix,
        ",".join(accounts),
        str(LEASE),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        first = await asyncio.wait_for(child.stdout.readline(), 10)
        assert first.startswith(b"connected")
        world = Platform()
        me = managers(FakeAdapter(world, "parent", accounts))
        await me.start()
        await eventually(lambda: len(me.connected) == 1, 3 * LEASE, "the child hands one account over")
        child.send_signal(signal.SIGKILL)
        await child.wait()
        took = await eventually(lambda: len(me.connected) == 2, LEASE + 0.5, "takeover")
        assert took <= LEASE + 0.3
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
