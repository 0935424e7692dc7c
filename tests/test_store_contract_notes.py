"""The Store contract for relationship memory (notes, compare-and-set, links, erasure, retention),
run like tests/test_store_contract.py against memory, Redis and Redis behind the fallback."""

from __future__ import annotations

import asyncio

from bots.core.memory.notes import Note, NoteBook
from bots.state.redis import RedisStore, make_client
from tests.test_store_contract import RETENTION, Backend, backend

__all__ = ["backend"]  # the fixture, shared with the main contract suite


def book(*texts: str, version: int = 1, at: float = 1_000.0, owner: str = "skeptic") -> NoteBook:
    return NoteBook(tuple(Note(t, at, "tg:general", owner, open=t.endswith("?")) for t in texts), version, at)


async def test_notes_round_trip_per_owner(backend: Backend) -> None:
    s = backend.store
    assert await s.notes("tg:u1") == {}
    assert await s.write_notes("tg:u1", "skeptic", book("plans a bakery?", "has two kids"))
    assert await s.write_notes("tg:u1", "stoic", book("likes running", owner="stoic"))
    got = await s.notes("tg:u1")
    assert got["skeptic"] == book("plans a bakery?", "has two kids")
    assert [n.text for n in got["stoic"].notes] == ["likes running"]
    assert await s.notes("tg:u2") == {}


async def test_write_is_compare_and_set(backend: Backend) -> None:
    s = backend.store
    assert await s.write_notes("tg:u1", "skeptic", book("first", version=1))
    # A second writer that read the empty book too loses: the first update is not undone.
    assert not await s.write_notes("tg:u1", "skeptic", book("racing", version=1))
    assert not await s.write_notes("tg:u1", "skeptic", book("from the future", version=3))
    assert await s.write_notes("tg:u1", "skeptic", book("second", version=2))
    assert [n.text for n in (await s.notes("tg:u1"))["skeptic"].notes] == ["second"]


async def test_concurrent_writers_one_wins(backend: Backend) -> None:
    s = backend.store
    results = await asyncio.gather(*(s.write_notes("tg:u1", "skeptic", book(f"w{i}")) for i in range(8)))
    assert sum(results) == 1


async def test_forget_one_owner_or_all(backend: Backend) -> None:
    s = backend.store
    await s.write_notes("tg:u1", "skeptic", book("a", "b"))
    await s.write_notes("tg:u1", "stoic", book("c", owner="stoic"))
    assert await s.forget_notes("tg:u1", "skeptic") == 2
    assert list(await s.notes("tg:u1")) == ["stoic"]
    assert await s.forget_notes("tg:u1") == 1
    assert await s.notes("tg:u1") == {}
    assert await s.forget_notes("tg:nobody") == 0
    # Erased notes start again from version 1.
    assert await s.write_notes("tg:u1", "skeptic", book("again", version=1))


async def test_link_code_joins_an_account_to_a_person_once(backend: Backend) -> None:
    s = backend.store
    assert await s.person_of("dc", "42") == "dc:42"
    assert await s.offer_link("CODE1234", "tg:u1", 60, backend.now)
    assert await s.redeem_link("CODE1234", "dc", "42", backend.now) == "tg:u1"
    assert await s.person_of("dc", "42") == "tg:u1"
    assert await s.redeem_link("CODE1234", "dc", "43", backend.now) is None  # used once
    assert await s.person_of("dc", "43") == "dc:43"
    await s.unlink("dc", "42")
    assert await s.person_of("dc", "42") == "dc:42"


async def test_link_code_expires(backend: Backend) -> None:
    s = backend.store
    await s.offer_link("SHORT111", "tg:u1", 0.2, backend.now)
    await backend.elapse(0.4)
    assert await s.redeem_link("SHORT111", "dc", "42", backend.now) is None
    assert await s.person_of("dc", "42") == "dc:42"


async def test_prune_drops_notes_past_retention(backend: Backend) -> None:
    s = backend.store
    old = Note("old news", 1_000.0, "tg:general", "skeptic")
    fresh = Note("fresh news", 1_900.0, "tg:general", "skeptic")
    await s.write_notes("tg:u1", "skeptic", NoteBook((old, fresh), 1, 1_900.0))
    await s.write_notes("tg:u2", "skeptic", NoteBook((old,), 1, 1_000.0))
    assert await backend.full.prune(1_000.0 + RETENTION + 50) == 2
    assert [n.text for n in (await s.notes("tg:u1"))["skeptic"].notes] == ["fresh news"]
    assert await s.notes("tg:u2") == {}


async def test_redis_notes_keys_expire(redis_url: str, redis_prefix: str) -> None:
    client = make_client(redis_url)
    try:
        s = RedisStore(client, prefix=redis_prefix, retention_seconds=3600)
        await s.write_notes("tg:u1", "skeptic", book("x"))
        await s.offer_link("CODE9999", "tg:u1", 60, 0)
        await s.offer_link("CODE8888", "tg:u1", 60, 0)
        await s.redeem_link("CODE8888", "dc", "42", 0)
        keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
        assert len(keys) == 3
        for key in keys:
            assert 0 < await client.pttl(key) <= 3600 * 1000, key
    finally:
        await client.aclose()
