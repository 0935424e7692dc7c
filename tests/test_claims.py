"""The Claims contract, held to the memory and the Redis implementations alike; the event codec; and
the fleet's side (bots.core.claims): a claim is done only when every action has an outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from bots.core.codec import BadPayload, decode_claim, encode_claim
from bots.core.events import Author, Command, Message, Notice, React, Reply
from bots.core.ports import Claims
from bots.state.claims import MemoryClaims
from bots.state.redis import RedisHealth, make_client
from bots.state.redis.claims import FallbackClaims, RedisClaims

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
    client = make_client(url)
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
    got = await asyncio.gather(*(backend.claims.claim("tg:race", "p", f"o{i}", LEASE, KEEP, backend.now) for i in range(20)))
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
    actions = [
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
