"""Rate limits: the RateLimiter contract on memory and Redis, the two agreeing decision for decision,
exact limits under a flood from several clients, clock skew, and one round trip per decision."""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from bots.core.ports import Rate, RateLimiter, Verdict
from bots.state.memory import MemoryRateLimiter
from bots.state.redis import FallbackRateLimiter, RedisHealth, RedisRateLimiter, make_client
from tests.redis_server import RedisServer

START = 10_000.0


@dataclass
class Limiter:
    name: str
    limiter: RateLimiter
    # Set the limiter's clock to a virtual instant: `now` for memory, the script's time offset for Redis.
    at: Callable[[float], Awaitable[float]]


def redis_clock(limiter: RedisRateLimiter) -> Callable[[float], Awaitable[float]]:
    """Pin the script's clock to the virtual instant, so boundaries are as exact as in memory."""

    async def at(virtual: float) -> float:
        limiter.pinned_time = virtual
        return virtual

    return at


@pytest_asyncio.fixture(params=["memory", "redis", "redis+fallback"])
async def lim(request: pytest.FixtureRequest) -> AsyncIterator[Limiter]:
    if request.param == "memory":

        async def same(virtual: float) -> float:
            return virtual

        memory = MemoryRateLimiter()
        yield Limiter("memory", memory, same)
        await memory.close()
        return
    client = make_client(request.getfixturevalue("redis_url"))
    raw = RedisRateLimiter(client, prefix=request.getfixturevalue("redis_prefix"), timeout=5.0)
    limiter: RateLimiter = raw
    if request.param == "redis+fallback":
        limiter = FallbackRateLimiter(raw, RedisHealth(client, timeout=5.0, owns_client=False))
    yield Limiter(request.param, limiter, redis_clock(raw))
    await limiter.close()
    await client.aclose()


def per_min(key: str, n: int, label: str = "per_minute", cost: float = 1.0) -> Rate:
    return Rate(key, n, 60.0, label, cost)


async def decide(lim: Limiter, t: float, candidates: Sequence[Sequence[Rate]], max_grants: int = 10) -> list[Verdict]:
    now = await lim.at(t)
    return await lim.limiter.acquire(candidates, max_grants, now)


def allowed(verdicts: Sequence[Verdict]) -> list[bool]:
    return [v.allowed for v in verdicts]


# --- the contract -------------------------------------------------------------------------------


async def test_burst_then_blocked_with_retry_after(lim: Limiter) -> None:
    rate = per_min("p:a", 3)
    for _ in range(3):
        assert allowed(await decide(lim, START, [[rate]])) == [True]
    [v] = await decide(lim, START, [[rate]])
    assert not v.allowed and v.blocked_by == "per_minute"
    assert v.retry_after == pytest.approx(20.0, abs=0.01)


async def test_refills_at_the_emission_interval(lim: Limiter) -> None:
    rate = per_min("p:a", 3)
    for _ in range(3):
        await decide(lim, START, [[rate]])
    assert allowed(await decide(lim, START + 19.9, [[rate]])) == [False]
    assert allowed(await decide(lim, START + 20.0, [[rate]])) == [True]
    assert allowed(await decide(lim, START + 20.0, [[rate]])) == [False]
    # A long pause gives back the whole burst, never more.
    assert allowed(await decide(lim, START + 1000, [[rate]] * 5)) == [True, True, True, False, False]


async def test_candidates_share_keys_in_order(lim: Limiter) -> None:
    chan = per_min("chan:tg:1", 2, "channel_per_minute")
    verdicts = await decide(lim, START, [[chan, per_min(f"p:{p}", 5)] for p in "abc"])
    assert allowed(verdicts) == [True, True, False]
    assert verdicts[2].blocked_by == "channel_per_minute"


async def test_blocked_candidate_consumes_nothing(lim: Limiter) -> None:
    roomy, full = per_min("p:roomy", 2), per_min("p:full", 1)
    assert allowed(await decide(lim, START, [[full]])) == [True]
    # Blocked by its second key: its first key must not have been charged.
    assert allowed(await decide(lim, START, [[roomy, full]])) == [False]
    assert allowed(await decide(lim, START, [[roomy], [roomy]])) == [True, True]


async def test_max_grants_caps_and_capped_consume_nothing(lim: Limiter) -> None:
    rates = [[per_min(f"p:{p}", 1)] for p in "abcd"]
    verdicts = await decide(lim, START, rates, max_grants=2)
    assert allowed(verdicts) == [True, True, False, False]
    assert [v.blocked_by for v in verdicts[2:]] == ["max_responders", "max_responders"]
    # c and d were capped, not charged: they still have their one grant.
    assert allowed(await decide(lim, START, rates[2:], max_grants=5)) == [True, True]


async def test_weighted_cost(lim: Limiter) -> None:
    heavy = per_min("p:w", 4, cost=2.0)
    assert allowed(await decide(lim, START, [[heavy]] * 3)) == [True, True, False]
    [v] = await decide(lim, START, [[heavy]])
    assert v.retry_after == pytest.approx(30.0, abs=0.01)
    assert allowed(await decide(lim, START, [[per_min("p:w", 4)]])) == [False]


async def test_cooldown_is_one_per_period(lim: Limiter) -> None:
    cd = Rate("cd:a:tg:1", 1, 45.0, "cooldown")
    assert allowed(await decide(lim, START, [[cd]])) == [True]
    [v] = await decide(lim, START + 5, [[cd]])
    assert (v.allowed, v.blocked_by) == (False, "cooldown")
    assert v.retry_after == pytest.approx(40.0, abs=0.01)
    assert allowed(await decide(lim, START + 45, [[cd]])) == [True]


async def test_same_key_twice_in_one_candidate(lim: Limiter) -> None:
    rate = per_min("p:dup", 3)
    assert allowed(await decide(lim, START, [[rate, rate]])) == [True]
    [v] = await decide(lim, START, [[rate, rate]])
    assert not v.allowed
    assert allowed(await decide(lim, START, [[rate]])) == [True]


async def test_one_key_under_two_rates(lim: Limiter) -> None:
    """Unusual (a config change mid-flight), but the key's one tat is checked against each rate."""
    tight, loose = Rate("p:k", 2, 60.0, "tight"), Rate("p:k", 4, 60.0, "loose")
    verdicts = await decide(lim, START, [[tight], [loose], [tight], [loose]])
    assert allowed(verdicts) == [True, True, False, True]
    assert verdicts[2].blocked_by == "tight"
    assert verdicts[2].retry_after == pytest.approx(15.0, abs=0.01)


async def test_no_candidates_and_no_limits(lim: Limiter) -> None:
    assert await decide(lim, START, []) == []
    assert allowed(await decide(lim, START, [[], []], max_grants=1)) == [True, False]


async def test_agrees_with_memory_decision_for_decision(lim: Limiter) -> None:
    """A random workload on virtual time: every backend gives the memory limiter's exact verdicts."""
    if lim.name == "memory":
        pytest.skip("the reference itself")
    rng = random.Random(7)
    reference = MemoryRateLimiter()
    t = START
    for _ in range(150):
        t += rng.choice([0.0, 0.0, 1.0, 3.0, 7.0, 20.0])
        candidates = []
        for p in rng.sample("abcde", rng.randint(1, 4)):
            chan = rng.choice("xy")
            candidates.append(
                [
                    Rate(f"chan:{chan}", 6, 60.0, "channel_per_minute"),
                    Rate(f"p:{p}", 3, 60.0, "per_minute"),
                    Rate(f"pc:{p}:{chan}", 2, 30.0, "per_channel_per_minute"),
                    Rate(f"cd:{p}:{chan}", 1, 10.0, "cooldown"),
                ]
            )
        grants = rng.randint(1, 3)
        want = reference.acquire_now(candidates, grants, t)
        got = await decide(lim, t, candidates, grants)
        assert [(v.allowed, v.blocked_by) for v in got] == [(v.allowed, v.blocked_by) for v in want], t
        assert [v.retry_after for v in got] == pytest.approx([v.retry_after for v in want], abs=0.005)


# --- Redis only ---------------------------------------------------------------------------------


async def test_flood_from_several_clients_is_exact(redis_url: str, redis_prefix: str) -> None:
    """Five independent clients (own pools, like processes) fire 1,500 decisions at once; the shared
    channel admits exactly its limit and each persona at most its own."""
    clients = [make_client(redis_url) for _ in range(5)]
    limiters = [RedisRateLimiter(c, prefix=redis_prefix, timeout=10.0, max_batch=32) for c in clients]
    try:
        chan = Rate("chan:tg:flood", 100, 3600.0, "channel_per_minute")
        personas = {p: Rate(f"p:{p}", 45, 3600.0, "per_minute") for p in "abc"}
        user_cost = {p: Rate(f"pu:{p}:heavy", 40, 3600.0, "per_user_per_minute", cost=2.0) for p in "abc"}
        candidates = [[chan, personas[p], user_cost[p]] if p == "c" else [chan, personas[p]] for p in "abc"]
        results = await asyncio.gather(
            *(limiters[i % 5].acquire(candidates, 2, 0.0) for i in range(1500)),
        )
        grants: Counter[str] = Counter()
        for verdicts in results:
            for p, v in zip("abc", verdicts, strict=True):
                grants[p] += v.allowed
        assert sum(grants.values()) == 100
        assert grants["a"] == 45 and grants["b"] == 45
        assert grants["c"] == 10  # cost 2 of 40 would allow twenty: the channel had ten left
        assert sum(lim.calls for lim in limiters) < 1500
    finally:
        for lim, c in zip(limiters, clients, strict=True):
            await lim.close()
            await c.aclose()


async def test_client_clock_skew_has_no_effect(redis_url: str, redis_prefix: str) -> None:
    """Two processes an hour apart on their own clocks still share one limit: time is Redis's."""
    a_client, b_client = make_client(redis_url), make_client(redis_url)
    a = RedisRateLimiter(a_client, prefix=redis_prefix, timeout=5.0)
    b = RedisRateLimiter(b_client, prefix=redis_prefix, timeout=5.0)
    try:
        rate = per_min("p:skew", 4)
        ahead, behind = START + 3600, START - 3600
        got = [
            (await a.acquire([[rate]], 1, ahead))[0].allowed,
            (await b.acquire([[rate]], 1, behind))[0].allowed,
            (await a.acquire([[rate]], 1, ahead))[0].allowed,
            (await b.acquire([[rate]], 1, behind))[0].allowed,
        ]
        assert got == [True] * 4
        [va] = await a.acquire([[rate]], 1, ahead)
        [vb] = await b.acquire([[rate]], 1, behind)
        assert not va.allowed and not vb.allowed
        assert va.retry_after == pytest.approx(15.0, abs=0.5)
        assert vb.retry_after == pytest.approx(va.retry_after, abs=0.5)
    finally:
        for lim, c in ((a, a_client), (b, b_client)):
            await lim.close()
            await c.aclose()


async def test_every_key_gets_an_expiry(redis_url: str, redis_prefix: str) -> None:
    client = make_client(redis_url)
    lim = RedisRateLimiter(client, prefix=redis_prefix, timeout=5.0)
    try:
        await lim.acquire([[per_min("p:e", 10), Rate("cd:e", 1, 30.0, "cooldown")]], 1, 0.0)
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}rl:*")]
        assert len(keys) == 2
        for key in keys:
            ttl = await client.pttl(key)
            # Exactly as long as the key's tat is in the future: 6 s for 10/min, 30 s for the cooldown.
            assert 0 < ttl <= 30_000
        assert 5_000 < await client.pttl(f"{redis_prefix}rl:p:e") <= 6_000
    finally:
        await lim.close()
        await client.aclose()


async def _evalsha_calls(client: Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_one_round_trip_per_decision_at_most(redis_url: str, redis_prefix: str) -> None:
    """A lone decision is one EVALSHA whatever its candidates and keys, and concurrent decisions share
    calls. Counted by the client, and by the server too when the server is ours alone."""
    own_server = not os.environ.get("REDIS_URL")
    client = make_client(redis_url)
    lim = RedisRateLimiter(client, prefix=redis_prefix, timeout=5.0)
    try:
        ten = [
            [per_min(f"p:{i}", 100), per_min("chan:c", 1000), Rate(f"cd:{i}", 1, 1.0, "cooldown")] for i in range(10)
        ]
        await lim.acquire(ten, 3, 0.0)  # loads the script
        before, calls = await _evalsha_calls(client), lim.calls
        for _ in range(20):
            await lim.acquire(ten, 3, 0.0)
        assert lim.calls - calls == 20
        if own_server:
            assert await _evalsha_calls(client) - before == 20
        before, calls = await _evalsha_calls(client), lim.calls
        await asyncio.gather(*(lim.acquire(ten, 3, 0.0) for _ in range(200)))
        assert lim.calls - calls <= 10
        if own_server:
            assert await _evalsha_calls(client) - before == lim.calls - calls
    finally:
        await lim.close()
        await client.aclose()


# --- the fallback starts from what Redis granted (issue 11.10) -----------------------------------


async def open_fallback(url: str, prefix: str) -> tuple[FallbackRateLimiter, Redis]:
    client = make_client(url)
    return FallbackRateLimiter(RedisRateLimiter(client, prefix=prefix), RedisHealth(client, owns_client=False)), client


async def test_cooldown_granted_on_redis_holds_while_redis_is_frozen(redis_servers: Callable[[], RedisServer]) -> None:
    """A persona with a 40 s cooldown answered on Redis; Redis freezes; 9 s later the local fallback
    still refuses, with the cooldown's remaining time."""
    server = redis_servers()
    lim, client = await open_fallback(server.url, "cd:")
    try:
        cooldown = Rate("cd:skeptic:tg:g1", 1, 40.0, "cooldown")
        other = Rate("cd:nerd:tg:g1", 1, 40.0, "cooldown")
        assert allowed(await lim.acquire([[cooldown]], 1, START)) == [True]
        server.freeze()
        [v] = await lim.acquire([[cooldown]], 1, START + 9)
        assert (v.allowed, v.blocked_by) == (False, "cooldown")
        assert v.retry_after == pytest.approx(31.0, abs=0.5)
        # Decided locally, and a key never granted is still free there.
        assert allowed(await lim.acquire([[other]], 1, START + 9.5)) == [True]
        assert allowed(await lim.acquire([[cooldown]], 1, START + 41)) == [True]
    finally:
        server.thaw()
        await lim.close()
        await client.aclose()


async def test_a_limit_another_process_used_up_holds_while_redis_is_away(
    redis_servers: Callable[[], RedisServer],
) -> None:
    """B granted the channel's whole budget; A was refused once on Redis, and so knows the tat: when
    Redis dies, A's fallback refuses too instead of granting the budget again."""
    server = redis_servers()
    a, a_client = await open_fallback(server.url, "ch:")
    b, b_client = await open_fallback(server.url, "ch:")
    try:
        chan = Rate("chan:tg:g1", 3, 60.0, "channel_per_minute")
        assert allowed(await b.acquire([[chan]] * 3, 3, START)) == [True] * 3
        assert allowed(await a.acquire([[chan]], 1, START)) == [False]
        server.kill()
        [v] = await a.acquire([[chan]], 1, START + 5)
        assert (v.allowed, v.blocked_by) == (False, "channel_per_minute")
        assert allowed(await a.acquire([[chan]], 1, START + 21)) == [True]
    finally:
        for lim, c in ((a, a_client), (b, b_client)):
            await lim.close()
            await c.aclose()


async def test_the_mirror_is_bounded() -> None:
    local = MemoryRateLimiter(max_keys=100)
    local.remember(START, {f"k{i}": float(i + 1) for i in range(250)})
    assert len(local._tat) <= 100
    # The keys that matter longest are the ones kept.
    assert allowed(local.acquire_now([[Rate("k249", 1, 1000.0, "cooldown")]], 1, START)) == [False]
    local.remember(START, {"k249": 0.0})
    assert allowed(local.acquire_now([[Rate("k249", 1, 1000.0, "cooldown")]], 1, START)) == [True]
