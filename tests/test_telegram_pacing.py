"""Pacing shared between processes (issue 11 item 12).

Any process may send as any account, so Telegram's "about 1 message per second per chat", "20 per
minute per group" and a 429's retry_after must hold for all processes together. The pacers are tested
against one contract (in memory, and in Redis with a pinned clock); then two fleets, each with its
own Telegram adapter and Redis client, post as one bot into one chat of the fake Bot API, which
records when each request arrived. The limits are scaled down (TelegramAdapter.limits) to keep the
test short; the rules are the same.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from adapters.telegram import TelegramAdapter
from adapters.telegram.lanes import Limits
from bots.app import build_fleet, make_llm
from bots.config import FleetConfig
from bots.core.events import Notice
from bots.core.ports import Pace, Pacer
from bots.state.pacing import MemoryPacer
from bots.state.redis import RedisHealth, make_client, open_redis_state
from bots.state.redis.pacing import FallbackPacer, RedisPacer
from tests.fakes.telegram import Call, FakeTelegram
from tests.redis_server import RedisServer
from tests.telegram_world import TOKENS

NOW = 1_700_000_000.0  # a realistic epoch: the Redis pacer keeps whole milliseconds of it exactly


# --- the contract both pacers keep ----------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def pacer(request: pytest.FixtureRequest) -> AsyncIterator[Pacer]:
    if request.param == "memory":
        yield MemoryPacer()
        return
    client = make_client(request.getfixturevalue("redis_url"))
    try:
        yield RedisPacer(client, prefix=request.getfixturevalue("redis_prefix"), server_clock=False)
    finally:
        await client.aclose()


async def waits(pacer: Pacer, paces: list[Pace], n: int, now: float = NOW) -> list[float]:
    return [round(await pacer.reserve(paces, now), 3) for _ in range(n)]


def most_in_window(slots: list[float], window: float) -> int:
    slots = sorted(slots)
    return max(sum(1 for t in slots if s <= t < s + window - 1e-9) for s in slots)


async def test_slots_on_a_key_are_an_interval_apart(pacer: Pacer) -> None:
    assert await waits(pacer, [Pace("chat", 1.0)], 3) == [0.0, 1.0, 2.0]
    # Time passing frees the key; other keys never waited.
    assert await waits(pacer, [Pace("chat", 1.0)], 1, NOW + 10) == [0.0]
    assert await waits(pacer, [Pace("other", 1.0)], 1) == [0.0]


async def test_a_burst_holds_at_most_burst_slots_in_any_window(pacer: Pacer) -> None:
    got = await waits(pacer, [Pace("group", 3.0, 20)], 45)
    assert got == [0.0] * 20 + [60.0] * 20 + [120.0] * 5
    assert most_in_window(got, 60.0) == 20


async def test_chat_spacing_and_group_budget_hold_together(pacer: Pacer) -> None:
    got = await waits(pacer, [Pace("chat", 1.0), Pace("group", 3.0, 20)], 25)
    assert got == [float(k) for k in range(20)] + [60.0 + k for k in range(5)]
    assert most_in_window(got, 60.0) == 20


async def test_one_slot_is_booked_on_every_key_of_a_reservation(pacer: Pacer) -> None:
    both = [Pace("chat", 1.0), Pace("slow", 10.0)]
    assert await waits(pacer, both, 2) == [0.0, 10.0]  # the slow budget pushed the chat's slot too
    assert await waits(pacer, [Pace("chat", 1.0)], 1) == [11.0]


async def test_a_pause_pushes_every_reservation_on_its_key(pacer: Pacer) -> None:
    await pacer.pause("chat", 5.0, NOW)
    await pacer.pause("chat", 2.0, NOW)  # a shorter pause does not cut the longer one
    assert await waits(pacer, [Pace("chat", 0.0)], 2) == [5.0, 5.0]  # interval 0: waits, books nothing
    assert await waits(pacer, [Pace("chat", 1.0), Pace("group", 3.0, 20)], 2) == [5.0, 6.0]
    assert await waits(pacer, [Pace("other", 1.0)], 1) == [0.0]
    assert await waits(pacer, [Pace("chat", 1.0)], 1, NOW + 30) == [0.0]


async def test_redis_pacers_share_the_servers_clock(redis_url: str, redis_prefix: str) -> None:
    """Two processes whose clocks disagree by a day still keep the spacing: Redis reads its own."""
    a, b = make_client(redis_url), make_client(redis_url)
    try:
        first = await RedisPacer(a, prefix=redis_prefix).reserve([Pace("chat", 5.0)], NOW)
        second = await RedisPacer(b, prefix=redis_prefix).reserve([Pace("chat", 5.0)], NOW - 86400)
        await RedisPacer(a, prefix=redis_prefix).pause("paused", 30.0, NOW)
        third = await RedisPacer(b, prefix=redis_prefix).reserve([Pace("paused", 0.0)], NOW + 86400)
    finally:
        await a.aclose()
        await b.aclose()
    assert first == 0.0
    assert 4.0 < second <= 5.0
    assert 29.0 < third <= 30.0


async def test_the_fallback_paces_locally_while_redis_is_away(
    redis_servers: Callable[[], RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_servers()
    client = make_client(server.url)
    health = RedisHealth(client, backoff=(5.0, 5.0))
    health.acquire_user()
    fallback = FallbackPacer(RedisPacer(client, prefix="pacing:"), health)
    try:
        assert await fallback.reserve([Pace("chat", 1.0)], NOW) == 0.0
        server.kill()
        # Local from here: spacing per process, no error, and the outage logged once.
        got = [await fallback.reserve([Pace("chat", 1.0)], NOW) for _ in range(3)]
        assert got == [0.0, 1.0, 2.0]
        await fallback.pause("chat", 10.0, NOW)
        assert await fallback.reserve([Pace("chat", 0.0)], NOW) == 10.0
    finally:
        await health.release_user()
    assert sum("redis unreachable" in r.getMessage() for r in caplog.records) == 1


# --- two processes, one bot, one chat --------------------------------------------------------------


@asynccontextmanager
async def process(fake: FakeTelegram, redis_url: str, prefix: str, limits: Limits) -> AsyncIterator[TelegramAdapter]:
    """One botfleet process: its own fleet, Redis client and Telegram adapter, built as the app does."""
    cfg = FleetConfig.model_validate(
        {"store": redis_url, "adapters": {"telegram": {"token": TOKENS["host"], "base_url": fake.base_url}}}
    )
    fleet = build_fleet(cfg, [], llm=make_llm(cfg, canned=True), state=open_redis_state(cfg, prefix=prefix))
    adapter = TelegramAdapter(cfg.adapters.telegram, [])
    adapter.limits = limits
    fleet.attach(adapter)
    # Sending only: one process at a time receives (leases); any process may send as any bot.
    await fleet.start(connect=False)
    try:
        yield adapter
    finally:
        await fleet.stop()


@asynccontextmanager
async def two_processes(
    redis_url: str, prefix: str, limits: Limits
) -> AsyncIterator[tuple[FakeTelegram, int, TelegramAdapter, TelegramAdapter]]:
    async with FakeTelegram() as fake:
        host = fake.add_bot(TOKENS["host"], "fleet_host_bot", "Fleet")
        group = fake.add_group("Lounge", admins=[host["id"]])
        async with (
            process(fake, redis_url, prefix, limits) as a,
            process(fake, redis_url, prefix, limits) as b,
        ):
            yield fake, int(group["id"]), a, b


def notice(chat: int, text: str) -> Notice:
    return Notice(platform="telegram", channel=str(chat), text=text)


def posted(fake: FakeTelegram) -> list[Call]:
    return sorted((c for c in fake.calls_to("sendMessage") if c.ok), key=lambda c: c.at)


async def test_two_processes_keep_one_message_a_second_and_the_group_budget(redis_url: str, redis_prefix: str) -> None:
    # Scaled: 1 per 0.5 s per chat, 4 per 3 s per group (Telegram: 1 per second, 20 per minute).
    limits = Limits(chat_seconds=0.5, group_messages=4, group_seconds=3.0)
    async with two_processes(redis_url, redis_prefix, limits) as (fake, chat, a, b):
        await asyncio.gather(
            *(p.notify(notice(chat, f"{name}{i}")) for i in range(4) for name, p in (("A", a), ("B", b)))
        )
        calls = posted(fake)
    assert sorted(c.params["text"] for c in calls) == sorted(f"{n}{i}" for i in range(4) for n in "AB")
    at = [c.at for c in calls]
    # Arrival jitters by milliseconds (more on a busy machine); sends paced per process only come
    # microseconds apart, and 8 of them within about a second.
    slack = 0.25
    assert min(b - a for a, b in itertools.pairwise(at)) >= limits.chat_seconds - slack
    assert min(at[i + 4] - at[i] for i in range(len(at) - 4)) >= limits.group_seconds - slack


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter() warns in 22.x
async def test_a_429_one_process_sees_makes_the_other_wait(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "botfleet.telegram")
    limits = Limits(chat_seconds=0.05, group_messages=100, group_seconds=1.0)
    async with two_processes(redis_url, redis_prefix, limits) as (fake, chat, a, b):
        fake.fail_next("sendMessage", chat_id=chat, retry_after=1, bot="fleet_host_bot")
        first = asyncio.create_task(a.notify(notice(chat, "from A")))
        await fake.wait_for(lambda: any("flood control" in r.getMessage() for r in caplog.records))
        await b.notify(notice(chat, "from B"))
        await first
        [flood] = [c for c in fake.calls_to("sendMessage") if c.error_code == 429]
        calls = posted(fake)
    assert sorted(c.params["text"] for c in calls) == ["from A", "from B"]  # each once
    [by_b] = [c for c in calls if c.params["text"] == "from B"]
    assert by_b.at - flood.at >= 1.0 - 0.08  # B waited out the retry_after that A was told
