"""The Store contract for care mode and the erasure of healthy-use counters, run like
tests/test_store_contract.py against memory, Redis and Redis behind the fallback; then what only
Redis and the fallback promise (expiry, an outage's care records written through)."""

from __future__ import annotations

import asyncio

from bots.state.redis import RedisStore, make_client
from tests.redis_sent import Sent
from tests.redis_server import RedisServer
from tests.test_redis_choices import eventually
from tests.test_redis_faults import Rig, server
from tests.test_store_contract import Backend, backend

__all__ = ["backend", "server"]  # the fixtures, shared with the other suites

NOW = 1_000.0


async def test_nobody_is_in_care_at_first(backend: Backend) -> None:
    assert await backend.store.care_until("tg", "u1", "tg:g1", NOW) is None


async def test_care_holds_per_person_conversation_and_platform(backend: Backend) -> None:
    s = backend.store
    await s.set_care("tg", "u1", "tg:g1", NOW + 60, NOW)
    assert await s.care_until("tg", "u1", "tg:g1", NOW + 1) == NOW + 60
    # Another conversation, another person, the same id on another platform: not in care.
    assert await s.care_until("tg", "u1", "tg:g2", NOW + 1) is None
    assert await s.care_until("tg", "u2", "tg:g1", NOW + 1) is None
    assert await s.care_until("dc", "u1", "tg:g1", NOW + 1) is None
    await s.set_care("tg", "u1", "tg:g2", NOW + 90, NOW)
    assert await s.care_until("tg", "u1", "tg:g2", NOW + 1) == NOW + 90
    assert await s.care_until("tg", "u1", "tg:g1", NOW + 1) == NOW + 60


async def test_care_ends_when_its_time_is_up(backend: Backend) -> None:
    s = backend.store
    await s.set_care("tg", "u1", "tg:g1", NOW + 60, NOW)
    assert await s.care_until("tg", "u1", "tg:g1", NOW + 59.9) == NOW + 60
    assert await s.care_until("tg", "u1", "tg:g1", NOW + 60) is None
    # A quiet time already over when written puts nobody in care.
    await s.set_care("tg", "u2", "tg:g1", NOW - 1, NOW)
    assert await s.care_until("tg", "u2", "tg:g1", NOW) is None


async def test_care_is_never_cut_short_by_an_earlier_end(backend: Backend) -> None:
    """Two processes may write the same person's care in any order: the later end wins."""
    s = backend.store
    await s.set_care("tg", "u1", "tg:g1", NOW + 600, NOW)
    await s.set_care("tg", "u1", "tg:g1", NOW + 60, NOW)
    assert await s.care_until("tg", "u1", "tg:g1", NOW + 120) == NOW + 600
    await s.set_care("tg", "u1", "tg:g1", NOW + 900, NOW + 300)
    assert await s.care_until("tg", "u1", "tg:g1", NOW + 700) == NOW + 900


async def test_care_lapses_in_real_time(backend: Backend) -> None:
    """Redis expires the record on its own clock: the key's TTL is the quiet time."""
    s = backend.store
    await s.set_care("tg", "u1", "tg:g1", backend.now + 0.3, backend.now)
    assert await s.care_until("tg", "u1", "tg:g1", backend.now) is not None
    await backend.elapse(0.5)
    assert await s.care_until("tg", "u1", "tg:g1", backend.now) is None


async def test_forget_erases_the_healthy_use_counters_of_every_day(backend: Backend) -> None:
    s = backend.store
    for day in ("2026-01-01", "2026-01-02"):
        await s.add_daily(day, "use:tg:u1", {"messages": 3, "nudged": 1})
        await s.add_daily(day, "use:tg:u2", {"messages": 1})
        await s.add_daily(day, "use:dc:u1", {"messages": 2})
    await s.forget_user("tg", "u1")
    for day in ("2026-01-01", "2026-01-02"):
        assert await s.add_daily(day, "use:tg:u1", {}) == {}
        # Somebody else's, and the same id's on another platform, stay.
        assert await s.add_daily(day, "use:tg:u2", {}) == {"messages": 1}
        assert await s.add_daily(day, "use:dc:u1", {}) == {"messages": 2}
    # Counting starts afresh, and a second forget finds that too.
    assert await s.add_daily("2026-01-02", "use:tg:u1", {"messages": 1}) == {"messages": 1}
    await s.forget_user("tg", "u1")
    assert await s.add_daily("2026-01-02", "use:tg:u1", {}) == {}


async def test_concurrent_daily_counts_answer_as_if_made_one_by_one(backend: Backend) -> None:
    s = backend.store
    day = "2026-01-01"
    counted = await asyncio.gather(*(s.add_daily(day, "use:tg:u1", {"messages": 1, "seconds": 2}) for _ in range(10)))
    # Each call sees the totals right after its own count, whatever shared its round trip.
    assert sorted(c["messages"] for c in counted) == list(range(1, 11))
    assert all(c["seconds"] == 2 * c["messages"] for c in counted)
    # Three processes' nudges counted at once: exactly one sees it first, so one nudge goes out.
    nudges = await asyncio.gather(*(s.add_daily(day, "use:tg:u1", {"nudged": 1}) for _ in range(3)))
    assert sorted(n["nudged"] for n in nudges) == [1, 2, 3]
    assert await s.add_daily(day, "use:tg:u2", {}) == {}


async def test_forget_leaves_care_to_lapse(backend: Backend) -> None:
    """/forget erases what they wrote, not the fleet's promise to keep quiet for the quiet time: the
    record holds no text and is gone when the time is up."""
    s = backend.store
    await s.set_care("tg", "u1", "tg:g1", NOW + 60, NOW)
    await s.forget_user("tg", "u1")
    assert await s.care_until("tg", "u1", "tg:g1", NOW + 1) == NOW + 60


# --- Redis specifics ----------------------------------------------------------------------------


async def test_redis_care_and_day_index_keys_expire(redis_url: str, redis_prefix: str) -> None:
    client = make_client(redis_url)
    try:
        s = RedisStore(client, prefix=redis_prefix)
        await s.set_care("tg", "u1", "tg:g1", NOW + 1800, NOW)
        await s.set_care("tg", "u1", "tg:g2", NOW + 60, NOW)
        ttl = await client.pttl(f"{redis_prefix}care:tg:u1")
        # The longest quiet time of the person: a shorter one written later does not shorten it.
        assert 1790_000 < ttl <= 1800_000
        await s.add_daily("2026-01-01", "use:tg:u1", {"messages": 1})
        for key in [k async for k in client.scan_iter(match=f"{redis_prefix}*")]:
            assert 0 < await client.pttl(key) <= 3 * 86400 * 1000, key
    finally:
        await client.aclose()


async def test_redis_daily_counts_of_many_messages_share_one_script_call(redis_url: str, redis_prefix: str) -> None:
    client = make_client(redis_url)
    s = RedisStore(client, prefix=redis_prefix)
    try:
        await s.add_daily("2026-01-01", "use:tg:u0", {"messages": 1})  # the script is loaded
        sent = Sent(client)
        people = [f"use:tg:u{i}" for i in range(1, 31)]
        counted = await asyncio.gather(*(s.add_daily("2026-01-01", key, {"messages": 1}) for key in people))
        assert counted == [{"messages": 1}] * 30
        # Batched as first contacts are: at most two calls out at once, the rest ride along.
        assert 1 <= sent.count("EVALSHA") <= 3 and len(sent.names) == sent.count("EVALSHA")
        # Each person's counters are still their own, findable by /forget.
        await s.forget_user("tg", "u7")
        assert await s.add_daily("2026-01-01", "use:tg:u7", {}) == {}
        assert await s.add_daily("2026-01-01", "use:tg:u8", {}) == {"messages": 1}
    finally:
        await s.close()
        await client.aclose()


async def test_redis_drops_lapsed_conversations_of_a_person(redis_url: str, redis_prefix: str) -> None:
    client = make_client(redis_url)
    try:
        s = RedisStore(client, prefix=redis_prefix)
        await s.set_care("tg", "u1", "tg:g1", NOW + 60, NOW)
        await s.set_care("tg", "u1", "tg:g2", NOW + 600, NOW + 100)
        assert set(await client.hkeys(f"{redis_prefix}care:tg:u1")) == {b"tg:g2"}
    finally:
        await client.aclose()


# --- the fallback: care while Redis is away -----------------------------------------------------


async def test_care_given_during_an_outage_holds_then_reaches_redis(server: RedisServer) -> None:
    rig = Rig(server.url, "c:")
    try:
        store = rig.store
        assert await store.care_until("tg", "ann", "tg:g1", NOW) is None
        server.freeze()
        await store.set_care("tg", "ann", "tg:g1", NOW + 1800, NOW)
        assert await store.care_until("tg", "ann", "tg:g1", NOW + 1) == NOW + 1800
        assert len(store.journal) == 1
        server.thaw()
        await rig.wait_up()
        # Written through before Redis was trusted again: other processes read it there now.
        assert await store.primary.care_until("tg", "ann", "tg:g1", NOW + 1) == NOW + 1800
        assert len(store.journal) == 0
    finally:
        server.thaw()
        await rig.close()


async def test_care_read_from_redis_holds_through_an_outage(server: RedisServer) -> None:
    """Another process put Bob in care; this one read it once, and keeps it while Redis is away."""
    rig = Rig(server.url, "d:")
    other = RedisStore(make_client(server.url), prefix="d:")
    try:
        await other.set_care("tg", "bob", "tg:g1", NOW + 1800, NOW)
        assert await rig.store.care_until("tg", "bob", "tg:g1", NOW + 1) == NOW + 1800
        server.freeze()
        assert await rig.store.care_until("tg", "bob", "tg:g1", NOW + 2) == NOW + 1800
    finally:
        server.thaw()
        await other.client.aclose()
        await rig.close()


async def test_care_outlives_a_redis_that_lost_its_data(server: RedisServer) -> None:
    """Redis restarted empty: this process still keeps quiet toward Ann, and writes her care record
    back along with the choices it remembers, so the other processes keep quiet too."""
    rig = Rig(server.url, "e:")
    rig.store.epochs.interval = 0.05
    other = RedisStore(make_client(server.url), prefix="e:")
    try:
        await rig.store.set_care("tg", "ann", "tg:g1", NOW + 1800, NOW)
        await rig.store.set_care("tg", "ann", "tg:g2", NOW + 60, NOW)
        await eventually(lambda: _has_epoch(rig))
        await other.client.flushall()
        assert await rig.store.care_until("tg", "ann", "tg:g1", NOW + 100) == NOW + 1800
        await eventually(lambda: _in_care(other, "tg:g1", NOW + 100))
        # A record this process knows to be over is not written back.
        assert await other.care_until("tg", "ann", "tg:g2", NOW + 30) is None
    finally:
        await other.client.aclose()
        await rig.close()


async def _has_epoch(rig: Rig) -> bool:
    return rig.store.epochs.epoch is not None


async def _in_care(store: RedisStore, conversation: str, now: float) -> bool:
    return await store.care_until("tg", "ann", conversation, now) is not None
