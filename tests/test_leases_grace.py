"""Lease renewals that are late but not lost: a Redis that freezes for a while (shorter than the lease)
must not make the holder disconnect and reconnect (each Discord reconnect spends a gateway identify
from a daily budget), while a process cut off for longer than the lease still stops receiving before
its lease can lapse, and another process takes over. A real redis-server; lease times of a second or two."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest_asyncio
import redis
import redis.asyncio

from bots.ops.leases import LeaseManager
from tests.lease_world import ACCOUNTS, FakeAdapter, Platform, eventually
from tests.redis_server import RedisServer


class Relay:
    """A TCP relay to Redis that can be cut: bytes stop flowing both ways (held, not dropped), as in a
    network partition, while other clients still reach Redis directly."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.open = asyncio.Event()
        self.open.set()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.open.wait()
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True)
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self.open.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest_asyncio.fixture
async def managers() -> AsyncIterator[Callable[..., LeaseManager]]:
    made: list[LeaseManager] = []

    def make(adapter: FakeAdapter, url: str, lease: float) -> LeaseManager:
        m = LeaseManager(url, [adapter], lease_seconds=lease, identity=adapter.name)
        made.append(m)
        return m

    yield make
    for m in made:
        await m.stop(grace=2)


def established(server: RedisServer) -> None:
    """A Redis that has held leases for long, not one that just lost its data: no takeover grace."""
    with redis.Redis.from_url(server.url) as client:
        client.set("botfleet:epoch", 0)


async def renewal(client: redis.asyncio.Redis, key: str) -> None:
    """Returns just after the lease at key was renewed (its time to live went up)."""
    last = await client.pttl(key)
    while (now := await client.pttl(key)) <= last:
        last = now
        await asyncio.sleep(0.005)


async def test_redis_freezes_shorter_than_the_lease_cost_no_reconnect(
    redis_servers: Callable[[], RedisServer], managers: Callable[..., LeaseManager]
) -> None:
    """Three freezes of 60% of the lease time, each starting 18% of the lease after a renewal landed
    (so renewals may be up to that late when it starts): the holder keeps every account connected
    throughout (each reconnect would be a new Discord identify)."""
    lease = 2.0
    server = redis_servers()
    established(server)
    adapter = FakeAdapter(Platform(), "a", ACCOUNTS)
    a = managers(adapter, server.url, lease)
    await a.start()
    await eventually(lambda: a.connected == frozenset(ACCOUNTS), 3 * lease, "a connects all")
    connects, disconnects = adapter.connects, adapter.disconnects
    watcher = redis.asyncio.Redis.from_url(server.url)
    with redis.Redis.from_url(server.url) as control:
        for _ in range(3):
            await renewal(watcher, f"botfleet:lease:{ACCOUNTS[0]}")
            await asyncio.sleep(lease * 0.18)
            # CLIENT PAUSE ALL: the server takes no command from anyone, as when it stalls.
            control.execute_command("CLIENT", "PAUSE", int(lease * 600), "ALL")
            await asyncio.sleep(lease * 0.6)
            await asyncio.sleep(lease / 2)
            assert a.connected == frozenset(ACCOUNTS)
    await watcher.aclose()
    assert (adapter.connects - connects, adapter.disconnects - disconnects) == (0, 0)


async def test_cut_off_longer_than_the_lease_stops_receiving_and_another_takes_over(
    redis_servers: Callable[[], RedisServer], managers: Callable[..., LeaseManager]
) -> None:
    """Fail closed still holds: "a" cannot reach Redis (a partition; "b" can) for longer than the lease.
    It stops receiving before its leases lapse, "b" takes them over, never both receiving; once "a" is
    back it takes its share again."""
    lease = 1.0
    server = redis_servers()
    established(server)
    relay = Relay(server.port)
    await relay.start()
    try:
        world = Platform()
        ad_a, ad_b = FakeAdapter(world, "a", ACCOUNTS), FakeAdapter(world, "b", ACCOUNTS)
        a = managers(ad_a, relay.url, lease)
        b = managers(ad_b, server.url, lease)
        await a.start()
        await b.start()
        await eventually(lambda: len(a.connected) == 2 and len(b.connected) == 2, 4 * lease, "a 2/2 split")
        # (Before the split settled, "a" may have taken and handed over more: count from here.)
        disconnects = ad_a.disconnects
        relay.open.clear()
        await eventually(lambda: len(b.connected) == 4, 3 * lease, "b takes a's accounts over")
        assert a.connected == frozenset() and ad_a.disconnects - disconnects == 2
        assert world.overlaps == []
        relay.open.set()
        await eventually(lambda: len(a.connected) == 2 and len(b.connected) == 2, 6 * lease, "a takes its share again")
        assert world.overlaps == []
    finally:
        await relay.close()
