"""Account leases between processes: a fair split, never two receivers on one account, takeover within
the lease time when a holder dies, immediate handover on a clean stop, and the lease status. Redis
faults are in test_leases_faults.py, two real `botfleet run` processes in test_leases_runs.py."""

from __future__ import annotations

import time
from collections.abc import Callable

from bots.ops.leases import LeaseManager
from bots.ops.leasestatus import format_status, read_leases, status
from bots.state.redis import make_client
from tests.lease_world import ACCOUNTS, LEASE, FakeAdapter, Platform, eventually, managers

__all__ = ["managers"]  # the fixture, from lease_world.py


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


async def test_a_crashing_loop_stops_receiving_and_recovers(managers: Callable[..., LeaseManager]) -> None:
    """An unexpected error in the lease loop must never leave the process receiving without renewals."""
    world = Platform()
    a = managers(FakeAdapter(world, "a", ACCOUNTS))
    await a.start()
    await eventually(lambda: len(a.connected) == 4, 2, "a connects all")
    real = a._tick_once

    async def broken(*, member: bool) -> float:
        raise RuntimeError("injected")

    a._tick_once = broken  # type: ignore[method-assign]
    await eventually(lambda: not a.connected and not any(world.holder(x) for x in ACCOUNTS), 2, "a stops receiving")
    assert a._task is not None and not a._task.done()
    a._tick_once = real  # type: ignore[method-assign]
    await eventually(lambda: len(a.connected) == 4, 3, "a takes them again")
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
