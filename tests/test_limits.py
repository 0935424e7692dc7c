import pytest

from bots.core.ports import Rate
from bots.state.memory import MemoryRateLimiter


async def test_gcra_allows_a_burst_then_spaces_requests() -> None:
    lim = MemoryRateLimiter()
    rate = [Rate("k", 3, 60.0, "per_minute")]
    now = 1000.0
    results = [(await lim.acquire([rate], 1, now))[0] for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert results[3].blocked_by == "per_minute"
    assert results[3].retry_after == pytest.approx(20.0)
    assert (await lim.acquire([rate], 1, now + 19.9))[0].allowed is False
    assert (await lim.acquire([rate], 1, now + 20.0))[0].allowed is True


async def test_cooldown_is_one_per_period() -> None:
    lim = MemoryRateLimiter()
    rate = [Rate("cd", 1, 30.0, "cooldown")]
    assert (await lim.acquire([rate], 1, 0.0))[0].allowed
    blocked = (await lim.acquire([rate], 1, 10.0))[0]
    assert not blocked.allowed and blocked.blocked_by == "cooldown" and blocked.retry_after == pytest.approx(20.0)
    assert (await lim.acquire([rate], 1, 30.0))[0].allowed


async def test_a_blocked_candidate_consumes_nothing() -> None:
    lim = MemoryRateLimiter()
    shared = Rate("channel", 5, 60.0, "channel_per_minute")
    tight = Rate("p1", 1, 60.0, "per_minute")
    await lim.acquire([[tight]], 1, 0.0)
    # p1 is out of budget: the shared channel key must not be spent on its behalf.
    verdicts = await lim.acquire([[shared, tight], [shared]], 5, 0.0)
    assert [v.allowed for v in verdicts] == [False, True]
    assert [v.allowed for v in await lim.acquire([[shared]] * 5, 5, 0.0)] == [True, True, True, True, False]


async def test_grants_stop_at_max_and_later_candidates_do_not_consume() -> None:
    lim = MemoryRateLimiter()
    verdicts = await lim.acquire([[Rate("a", 1, 60, "x")], [Rate("b", 1, 60, "x")], [Rate("c", 1, 60, "x")]], 2, 0.0)
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert verdicts[2].blocked_by == "max_responders"
    assert (await lim.acquire([[Rate("c", 1, 60, "x")]], 1, 0.0))[0].allowed
