"""Account leases when things break: fail-closed when Redis freezes, a Redis restart or data loss, and a
real second process SIGKILLed while it holds accounts."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable

from bots.ops.leases import LeaseManager
from bots.state.redis import make_client
from tests.lease_world import ACCOUNTS, LEASE, ROOT, FakeAdapter, Platform, eventually, managers
from tests.redis_server import RedisServer

__all__ = ["managers"]  # the fixture, from lease_world.py


async def test_fails_closed_when_redis_freezes(
    redis_servers: Callable[[], RedisServer], managers: Callable[..., LeaseManager]
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
    redis_servers: Callable[[], RedisServer], managers: Callable[..., LeaseManager]
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


async def test_after_redis_loses_its_data_nobody_takes_a_receiving_account(
    redis_servers: Callable[[], RedisServer], managers: Callable[..., LeaseManager]
) -> None:
    """Every lease key is gone, but "a" still receives: a newcomer must not take those accounts."""
    server = redis_servers()
    world = Platform()
    a = managers(FakeAdapter(world, "a", ACCOUNTS), url=server.url)
    await a.start()
    await eventually(lambda: len(a.connected) == 4, 3 * LEASE, "a connects")
    await asyncio.to_thread(server.restart)
    b = managers(FakeAdapter(world, "b", ACCOUNTS), url=server.url, established=False)
    await b.start()
    # a re-asserts its leases and later hands two over; b only ever gets what a let go.
    await eventually(lambda: len(a.connected) == 2 and len(b.connected) == 2, 4 * LEASE, "a 2/2 split")
    assert world.overlaps == []


# --- real processes -----------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from bots.ops.leases import LeaseManager

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
