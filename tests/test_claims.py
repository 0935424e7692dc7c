"""The Claims contract, held to the memory and the Redis implementations alike; the event codec; and
the fleet's side (bots.core.claims): a claim is done only when every action has an outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.codec import BadPayload, decode_claim, encode_claim
from bots.core.events import Action, Author, Command, Message, Notice, React, Reply
from bots.core.fleet import Fleet
from bots.core.ports import Chunk, Claims, LLMClient, LLMRequest
from bots.llm.canned import CannedClient
from bots.state.claims import MemoryClaims
from bots.state.memory import MemoryRateLimiter, MemoryStore
from bots.state.redis import RedisHealth, make_client
from bots.state.redis.claims import FallbackClaims, RedisClaims
from tests.conftest import RecordingAdapter, msg, persona

LEASE = 0.3
KEEP = 60.0


@dataclass
class Backend:
    claims: Claims
    # Redis keeps its own time; memory takes `now` from the caller, so both move with the wall clock.
    name: str

    @property
    def now(self) -> float:
        return time.time()


@pytest_asyncio.fixture(params=["memory", "redis", "fallback"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield Backend(MemoryClaims(), "memory")
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    # Patient timeouts: the contract is under test here, not the budget of a loaded machine.
    client = make_client(url, connect_timeout=5.0, socket_timeout=5.0)
    if request.param == "redis":
        yield Backend(RedisClaims(client, prefix=prefix), "redis")
        await client.aclose()
        return
    claims = FallbackClaims(RedisClaims(client, prefix=prefix), RedisHealth(client, timeout=2.0))
    yield Backend(claims, "fallback")
    await claims.close()


async def test_first_claim_wins_and_a_second_arrival_is_a_duplicate(backend: Backend) -> None:
    c = backend.claims
    assert await c.claim("tg:1", "p1", "a", LEASE, KEEP, backend.now)
    assert not await c.claim("tg:1", "p1", "b", LEASE, KEEP, backend.now)
    assert not await c.claim("tg:1", "p1", "a", LEASE, KEEP, backend.now)
    assert await c.claim("tg:2", "p2", "b", LEASE, KEEP, backend.now)


async def test_concurrent_claims_admit_one(backend: Backend) -> None:
    got = await asyncio.gather(
        *(backend.claims.claim("tg:race", "p", f"o{i}", LEASE, KEEP, backend.now) for i in range(20))
    )
    assert sum(got) == 1


async def test_a_done_claim_stays_a_duplicate_and_is_never_taken_over(backend: Backend) -> None:
    c = backend.claims
    assert await c.claim("tg:1", "p1", "a", LEASE, KEEP, backend.now)
    await c.done("tg:1", "a")
    await asyncio.sleep(LEASE + 0.1)
    assert await c.take_expired("b", LEASE, backend.now, 10) == []
    assert not await c.claim("tg:1", "p1", "b", LEASE, KEEP, backend.now)


async def test_a_lapsed_claim_is_taken_over_once_with_its_latest_payload(backend: Backend) -> None:
    c = backend.claims
    assert await c.claim("tg:1", "p1", "a", LEASE, KEEP, backend.now)
    await c.update("tg:1", "a", "p1 with actions")
    # Nobody but its owner may change it.
    await c.update("tg:1", "b", "forged")
    await c.done("tg:1", "b")
    assert await c.take_expired("b", LEASE, backend.now, 10) == []
    await asyncio.sleep(LEASE + 0.1)
    assert await c.take_expired("b", LEASE, backend.now, 10) == [("tg:1", "p1 with actions")]
    # b owns it now: nobody else takes it while b renews, and the old owner lost it.
    assert await c.take_expired("c", LEASE, backend.now, 10) == []
    assert await c.renew(["tg:1"], "a", LEASE, backend.now) == ["tg:1"]
    assert await c.renew(["tg:1"], "b", LEASE, backend.now) == []
    await c.done("tg:1", "b")
    await asyncio.sleep(LEASE + 0.1)
    assert await c.take_expired("c", LEASE, backend.now, 10) == []


async def test_renewing_keeps_a_claim(backend: Backend) -> None:
    c = backend.claims
    assert await c.claim("tg:1", "p1", "a", LEASE, KEEP, backend.now)
    for _ in range(4):
        await asyncio.sleep(LEASE / 3)
        assert await c.renew(["tg:1"], "a", LEASE, backend.now) == []
        assert await c.take_expired("b", LEASE, backend.now, 10) == []


async def test_a_released_claim_is_taken_over_at_once(backend: Backend) -> None:
    c = backend.claims
    assert await c.claim("tg:1", "p1", "a", 30, KEEP, backend.now)
    await c.release("tg:1", "a")
    assert await c.take_expired("b", 30, backend.now, 10) == [("tg:1", "p1")]


async def test_a_redelivery_of_a_lapsed_claim_is_claimed_again(backend: Backend) -> None:
    c = backend.claims
    assert await c.claim("tg:1", "p1", "a", LEASE, KEEP, backend.now)
    await asyncio.sleep(LEASE + 0.1)
    assert await c.claim("tg:1", "p1", "b", LEASE, KEEP, backend.now)
    assert await c.take_expired("c", LEASE, backend.now, 10) == []


async def test_take_expired_honours_its_limit(backend: Backend) -> None:
    c = backend.claims
    for i in range(5):
        assert await c.claim(f"tg:{i}", f"p{i}", "a", LEASE, KEEP, backend.now)
    await asyncio.sleep(LEASE + 0.1)
    first = await c.take_expired("b", LEASE, backend.now, 3)
    rest = await c.take_expired("b", LEASE, backend.now, 3)
    assert len(first) == 3 and len(rest) == 2
    assert {k for k, _ in first + rest} == {f"tg:{i}" for i in range(5)}


async def test_past_its_dedupe_window_a_claim_is_not_taken_over(backend: Backend) -> None:
    c = backend.claims
    assert await c.claim("tg:1", "p1", "a", LEASE / 2, LEASE, backend.now)
    await asyncio.sleep(LEASE + 0.1)
    assert await c.take_expired("b", LEASE, backend.now, 10) == []


async def test_every_redis_key_expires(redis_url: str, redis_prefix: str) -> None:
    client = make_client(redis_url)
    try:
        c = RedisClaims(client, prefix=redis_prefix)
        assert await c.claim("tg:1", "p1", "a", LEASE, KEEP, 0)
        assert await c.claim("tg:2", "p2", "a", LEASE, KEEP, 0)
        await c.done("tg:1", "a")
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
        assert len(keys) == 4  # two dedupe keys, the pending zset, the payloads
        for key in keys:
            assert 0 < await client.pttl(key) <= KEEP * 1000
        assert await client.zcard(f"{redis_prefix}claims") == 1
        assert await client.hlen(f"{redis_prefix}claims:payload") == 1
    finally:
        await client.aclose()


async def test_a_redis_outage_lets_messages_through(redis_url: str, redis_prefix: str) -> None:
    """Like dedupe: a message may be answered twice while Redis is away, but never dropped."""
    client = make_client("redis://127.0.0.1:1")
    health = RedisHealth(client, timeout=0.2)
    claims = FallbackClaims(RedisClaims(client, prefix=redis_prefix), health)
    try:
        assert await claims.claim("tg:1", "p1", "a", LEASE, KEEP, time.time())
        assert not health.up
        # Within this process it is still a duplicate.
        assert not await claims.claim("tg:1", "p1", "a", LEASE, KEEP, time.time())
        assert await claims.renew(["tg:1"], "a", LEASE, time.time()) == []
        assert await claims.take_expired("b", LEASE, time.time(), 10) == []
        await claims.done("tg:1", "a")
    finally:
        await claims.close()


# --- the codec --------------------------------------------------------------------------------------


def test_events_and_actions_survive_the_codec() -> None:
    alice = Author(id="7", name="Alice", is_admin=True)
    msg = Message(
        platform="telegram",
        id="-100:5",
        channel="-100",
        author=alice,
        text="héllo @skeptic",
        mentions=frozenset({"skeptic", "nerd"}),
        reply_to_persona="stoic",
        chain=2,
        parent_channel="lounge",
        root="telegram:-100:4",
    )
    actions: list[Action] = [
        Reply("skeptic", "telegram", "-100", "5", "mention", delay=1.5, to_user="7", footer="(AI)", queue="q"),
        React("nerd", "telegram", "-100", "5", "👍", "keyword"),
        Notice("telegram", "-100", "done", reply_to="5", private=True, to_user="7", command_id="c1"),
    ]
    assert decode_claim(encode_claim(msg)) == (msg, None)
    assert decode_claim(encode_claim(msg, actions)) == (msg, actions)
    cmd = Command("discord", "9", "general", alice, "ask", "why?", persona="sage", is_dm=False)
    assert decode_claim(encode_claim(cmd, [])) == (cmd, [])


def test_the_codec_ignores_unknown_fields_and_refuses_garbage() -> None:
    raw = encode_claim(Message("console", "1", "room", Author("u", "U"), "hi"))
    newer = raw.replace('"text":"hi"', '"text":"hi","from_the_future":1')
    event, _ = decode_claim(newer)
    assert isinstance(event, Message) and event.text == "hi"
    for bad in ("", "[]", '{"event": {"type": "Nope"}, "actions": null}', '{"event": {"type": "Message"}}'):
        with pytest.raises(BadPayload):
            decode_claim(bad)


# --- the fleet's side: in-process fleets sharing Redis claims ---------------------------------------


class GatedLLM:
    """Writes "ok" once `go` is set: a reply stays in flight for as long as a test wants."""

    name = "gated"

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.asked = 0

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        self.asked += 1
        await self.go.wait()
        yield Chunk(text="ok", finish_reason="stop")

    async def close(self) -> None:
        return None


def claiming_fleet(client: Redis, prefix: str, llm: LLMClient, **rules: Any) -> tuple[Fleet, RecordingAdapter]:
    cfg = FleetConfig.model_validate({"fleet": {"reply_delay_seconds": [0, 0], "lease_seconds": 1, **rules}})
    fleet = Fleet(
        cfg,
        [persona("skeptic")],
        store=MemoryStore(),
        limiter=MemoryRateLimiter(),
        brain=Brain(llm, cfg.llm),
        claims=RedisClaims(client, prefix=prefix),
    )
    adapter = RecordingAdapter()
    fleet.attach(adapter)
    return fleet, adapter


async def until(cond: Callable[[], object], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = make_client(redis_url)
    yield client
    await client.aclose()


async def pending(client: Redis, prefix: str) -> list[str]:
    return [k.decode() if isinstance(k, bytes) else str(k) for k in await client.zrange(f"{prefix}claims", 0, -1)]


async def test_a_claim_stays_pending_and_renewed_until_the_reply_is_sent(
    redis_client: Redis, redis_prefix: str
) -> None:
    llm = GatedLLM()
    a, sent = claiming_fleet(redis_client, redis_prefix, llm)
    b, _ = claiming_fleet(redis_client, redis_prefix, CannedClient("ok"))
    await a.start(connect=False)
    await b.start(connect=False)
    try:
        event = msg("@skeptic hello?")
        await a.dispatch(event)
        # The same message arriving again (a second bot account received it) is a duplicate, and
        # must not finish the claim of the first arrival.
        await a.dispatch(event)
        await b.dispatch(event)
        await until(lambda: llm.asked)
        # Two lease times: A renews, so nobody takes it over.
        await asyncio.sleep(2.0)
        assert await pending(redis_client, redis_prefix) == [event.key]
        assert b.keeper.taken_over == 0
        llm.go.set()
        await until(lambda: sent.replies)
        # Done once replied; its echo (the persona's own message) has no actions and is done at once.
        for _ in range(100):
            if not await pending(redis_client, redis_prefix):
                break
            await asyncio.sleep(0.02)
        assert await pending(redis_client, redis_prefix) == []
        assert len(sent.replies) == 1
    finally:
        await a.stop(0)
        await b.stop(0)


async def test_a_clean_stop_hands_back_what_it_had_not_started(redis_client: Redis, redis_prefix: str) -> None:
    a, sent_a = claiming_fleet(redis_client, redis_prefix, CannedClient("from a"), reply_delay_seconds=[30, 30])
    b, sent_b = claiming_fleet(redis_client, redis_prefix, CannedClient("from b"))
    await a.start(connect=False)
    try:
        event = msg("@skeptic anyone?")
        await a.dispatch(event)
        await until(lambda: a.replying == 0 and a._tasks)
        # Shutting down with the reply still waiting out its delay: cancelled, so handed back.
        await a.stop(0)
        assert sent_a.replies == []
        await b.start(connect=False)
        await until(lambda: sent_b.replies, within=5)
        ((reply, text),) = sent_b.replies
        assert reply.reply_to == event.id and text.startswith("from b")
        # B carried out the action A had decided (not deciding afresh), without A's delay again.
        plan = b.audit[event.key]
        assert plan.note == "taken over" and plan.decisions == []
        assert reply.delay == 0
    finally:
        await b.stop(0)
