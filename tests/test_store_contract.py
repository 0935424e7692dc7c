"""The Store contract, run against every implementation: memory, Redis, and Redis behind the
fallback wrapper the fleet actually uses. Whatever passes here may be swapped for the other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.events import Author, Command, Message
from bots.core.fleet import Fleet
from bots.core.ports import Store, Turn
from bots.llm.canned import CannedClient
from bots.persona import load_personas
from bots.state.memory import MemoryRateLimiter, MemoryStore
from bots.state.redis import FallbackStore, RedisHealth, RedisStore, make_client

HISTORY = 5
RETENTION = 1000.0
PERSONAS = load_personas(Path(__file__).resolve().parent.parent / "personas")
BACKENDS = ["memory", "redis", "redis+fallback"]


@dataclass
class Backend:
    name: str
    store: Store
    # Let `seconds` pass for the store's expiries: virtual for memory, real (and short) for Redis,
    # whose key TTLs run on the server's clock.
    elapse: Callable[[float], Awaitable[None]]
    now: float = 1_000.0

    @property
    def full(self) -> MemoryStore | RedisStore | FallbackStore:
        """The store with what every implementation has beyond the protocol (first_told, prune)."""
        assert isinstance(self.store, MemoryStore | RedisStore | FallbackStore)
        return self.store


async def open_backend(name: str, url: str, prefix: str) -> tuple[Backend, Redis | None]:
    if name == "memory":
        backend = Backend(name, MemoryStore(history_size=HISTORY, retention_seconds=RETENTION), asyncio.sleep)

        async def elapse_virtual(seconds: float) -> None:
            backend.now += seconds

        backend.elapse = elapse_virtual
        return backend, None
    client = make_client(url)
    raw = RedisStore(client, prefix=prefix, history_size=HISTORY, retention_seconds=RETENTION)
    store: Store = raw
    if name == "redis+fallback":
        store = FallbackStore(raw, RedisHealth(client, owns_client=False))
    backend = Backend(name, store, asyncio.sleep)

    async def elapse_real(seconds: float) -> None:
        # Both clocks move: Redis's for its key TTLs, the caller's for the fallback's local state.
        await asyncio.sleep(seconds)
        backend.now += seconds

    backend.elapse = elapse_real
    return backend, client


@pytest_asyncio.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    name = request.param
    url = request.getfixturevalue("redis_url") if name != "memory" else ""
    prefix = request.getfixturevalue("redis_prefix") if name != "memory" else ""
    b, client = await open_backend(name, url, prefix)
    yield b
    await b.store.close()
    if client is not None:
        await client.aclose()


def turn(text: str, user: str = "u1", at: float = 1_000.0) -> Turn:
    return Turn(speaker=user or "persona", text=text, at=at, user_id=user)


# --- dedupe -------------------------------------------------------------------------------------


async def test_first_seen_once_within_ttl(backend: Backend) -> None:
    s = backend.store
    assert await s.first_seen("tg:1", 60, backend.now)
    assert not await s.first_seen("tg:1", 60, backend.now)
    assert not await s.first_seen("tg:1", 60, backend.now + 1)
    assert await s.first_seen("tg:2", 60, backend.now)


async def test_first_seen_again_after_ttl(backend: Backend) -> None:
    s = backend.store
    assert await s.first_seen("tg:1", 0.05, backend.now)
    await backend.elapse(0.12)
    assert await s.first_seen("tg:1", 0.05, backend.now)


async def test_first_seen_concurrent_offers_admit_one(backend: Backend) -> None:
    results = await asyncio.gather(*(backend.store.first_seen("tg:race", 60, backend.now) for _ in range(20)))
    assert results.count(True) == 1


# --- history ------------------------------------------------------------------------------------


async def test_history_oldest_first_and_bounded(backend: Backend) -> None:
    s = backend.store
    for i in range(HISTORY + 3):
        await s.append("tg:c1", turn(f"m{i}", at=1000.0 + i))
    turns = await s.history("tg:c1", 100)
    assert [t.text for t in turns] == [f"m{i}" for i in range(3, HISTORY + 3)]
    assert [t.text for t in await s.history("tg:c1", 2)] == [f"m{HISTORY + 1}", f"m{HISTORY + 2}"]
    assert await s.history("tg:nowhere", 10) == []


async def test_history_round_trips_every_field(backend: Backend) -> None:
    s = backend.store
    human = Turn(speaker="Ann ✨", text="line 1\nline 2 «ü»", at=1234.5678, user_id="42", message_id="m-1")
    own = Turn(speaker="The Skeptic", text="Really?", at=1235.0, persona_id="skeptic", message_id="m-2", reply_to="m-1")
    await s.append("tg:c1", human)
    await s.append("tg:c1", own)
    assert await s.history("tg:c1", 10) == [human, own]


async def test_conversations_are_separate(backend: Backend) -> None:
    s = backend.store
    await s.append("tg:a", turn("in a"))
    await s.append("tg:b", turn("in b"))
    assert [t.text for t in await s.history("tg:a", 10)] == ["in a"]
    assert [t.text for t in await s.history("tg:b", 10)] == ["in b"]


async def test_concurrent_appends_keep_the_bound(backend: Backend) -> None:
    s = backend.store
    await asyncio.gather(*(s.append("tg:busy", turn(f"m{i}", at=1000.0 + i)) for i in range(40)))
    assert len(await s.history("tg:busy", 100)) == HISTORY


# --- forget -------------------------------------------------------------------------------------


async def test_forget_removes_the_user_everywhere_on_that_platform(backend: Backend) -> None:
    s = backend.store
    await s.append("tg:a", turn("mine 1", "u1"))
    await s.append("tg:a", turn("theirs", "u2"))
    await s.append("tg:b", turn("mine 2", "u1"))
    await s.append("tg:a", Turn(speaker="Skeptic", text="persona turn", at=1001.0, persona_id="skeptic"))
    await s.append("dc:x", turn("same id, other platform", "u1"))
    assert await s.forget_user("tg", "u1") == 2
    assert [t.text for t in await s.history("tg:a", 10)] == ["theirs", "persona turn"]
    assert await s.history("tg:b", 10) == []
    assert [t.text for t in await s.history("dc:x", 10)] == ["same id, other platform"]
    assert await s.forget_user("tg", "u1") == 0


async def test_forget_then_talk_again(backend: Backend) -> None:
    s = backend.store
    await s.append("tg:a", turn("before", "u1"))
    assert await s.forget_user("tg", "u1") == 1
    await s.append("tg:a", turn("after", "u1"))
    assert [t.text for t in await s.history("tg:a", 10)] == ["after"]
    assert await s.forget_user("tg", "u1") == 1


def said(text: str, message_id: str, user: str = "", persona: str | None = None, reply_to: str = "") -> Turn:
    return Turn(speaker=user or persona or "?", text=text, at=1000.0, user_id=user, persona_id=persona,
                message_id=message_id, reply_to=reply_to)  # fmt: skip


async def test_forget_removes_the_fleets_replies_to_the_user(backend: Backend) -> None:
    """A reply may quote the person ("your PIN-4242..."): it goes with their message, and so does a
    reply to that reply. Replies to others, and another conversation's turns with the same ids, stay."""
    s = backend.store
    await s.append("tg:a", said("my PIN-4242", "1", user="u1"))
    await s.append("tg:a", said("PIN-4242, noted", "3", persona="skeptic", reply_to="1"))
    await s.append("tg:a", said("hi u2", "4", persona="nerd", reply_to="2"))
    await s.append("tg:a", said("4242? really?", "5", persona="nerd", reply_to="3"))
    await s.append("tg:a", said("quoting u1 myself", "6", user="u2", reply_to="1"))
    await s.append("tg:b", said("same id elsewhere", "3", persona="skeptic", reply_to="1"))
    assert await s.forget_user("tg", "u1") == 3
    assert [t.text for t in await s.history("tg:a", 10)] == ["hi u2", "quoting u1 myself"]
    assert [t.text for t in await s.history("tg:b", 10)] == ["same id elsewhere"]


async def test_forget_of_nobody(backend: Backend) -> None:
    assert await backend.store.forget_user("tg", "ghost") == 0


# --- opt-outs and mutes -------------------------------------------------------------------------


async def test_opt_out_per_platform(backend: Backend) -> None:
    s = backend.store
    assert not await s.is_opted_out("tg", "u1")
    await s.set_opt_out("tg", "u1", True)
    await s.set_opt_out("tg", "u1", True)
    assert await s.is_opted_out("tg", "u1")
    assert not await s.is_opted_out("dc", "u1")
    assert not await s.is_opted_out("tg", "u2")
    await s.set_opt_out("tg", "u1", False)
    assert not await s.is_opted_out("tg", "u1")
    await s.set_opt_out("tg", "u1", False)


async def test_mutes_per_conversation(backend: Backend) -> None:
    s = backend.store
    assert await s.muted("tg:a") == frozenset()
    await s.set_muted("tg:a", "skeptic", True)
    await s.set_muted("tg:a", "nerd", True)
    await s.set_muted("tg:b", "stoic", True)
    assert await s.muted("tg:a") == frozenset({"skeptic", "nerd"})
    await s.set_muted("tg:a", "skeptic", False)
    await s.set_muted("tg:a", "never-muted", False)
    assert await s.muted("tg:a") == frozenset({"nerd"})
    assert await s.muted("tg:b") == frozenset({"stoic"})


# --- followers, first contacts, usage -----------------------------------------------------------


async def test_followers(backend: Backend) -> None:
    s = backend.store
    assert await s.followers("tg", "u1") is None
    await s.set_followers("tg", "u1", ("skeptic", "nerd"))
    assert await s.followers("tg", "u1") == ("skeptic", "nerd")
    assert await s.followers("dc", "u1") is None
    await s.set_followers("tg", "u1", ())
    assert await s.followers("tg", "u1") == ()
    await s.set_followers("tg", "u1", None)
    assert await s.followers("tg", "u1") is None


async def test_first_contact_once_per_persona_and_again_after_forget(backend: Backend) -> None:
    s = backend.store
    assert await s.first_contact("tg", "skeptic", "u1", 1000.0)
    assert not await s.first_contact("tg", "skeptic", "u1", 1001.0)
    assert await s.first_contact("tg", "nerd", "u1", 1002.0)
    assert await s.first_contact("tg", "skeptic", "u2", 1003.0)
    assert await s.first_contact("dc", "skeptic", "u1", 1004.0)
    assert await backend.full.first_told("tg", "skeptic", "u1") == 1000.0
    await s.forget_user("tg", "u1")
    assert await backend.full.first_told("tg", "skeptic", "u1") is None
    assert await s.first_contact("tg", "skeptic", "u1", 1005.0)
    assert not await s.first_contact("tg", "skeptic", "u2", 1006.0)


async def test_usage_totals_per_day(backend: Backend) -> None:
    s = backend.store
    assert await s.add_usage("2026-01-01", {"fleet": 10, "p:skeptic": 10}) == {"fleet": 10, "p:skeptic": 10}
    assert await s.add_usage("2026-01-01", {"fleet": 5, "u:tg:1": 5}) == {"fleet": 15, "p:skeptic": 10, "u:tg:1": 5}
    assert await s.add_usage("2026-01-02", {"fleet": 1}) == {"fleet": 1}
    assert await s.add_usage("2026-01-01", {}) == {"fleet": 15, "p:skeptic": 10, "u:tg:1": 5}


async def test_daily_counters_per_key(backend: Backend) -> None:
    s = backend.store
    assert await s.add_daily("2026-01-01", "use:tg:1", {"messages": 1, "seconds": 30}) == {"messages": 1, "seconds": 30}
    assert await s.add_daily("2026-01-01", "use:tg:1", {"messages": 1, "seconds": 0}) == {"messages": 2, "seconds": 30}
    # Another person, another day: counters of their own.
    assert await s.add_daily("2026-01-01", "use:tg:2", {"messages": 1}) == {"messages": 1}
    assert await s.add_daily("2026-01-02", "use:tg:1", {"nudged": 1}) == {"nudged": 1}
    assert await s.add_daily("2026-01-01", "use:tg:1", {"nudged": 1}) == {"messages": 2, "seconds": 30, "nudged": 1}
    await asyncio.gather(*(s.add_daily("2026-01-03", "use:tg:1", {"messages": 1}) for _ in range(20)))
    assert await s.add_daily("2026-01-03", "use:tg:1", {}) == {"messages": 20}


async def test_concurrent_usage_adds_up(backend: Backend) -> None:
    s = backend.store
    await asyncio.gather(*(s.add_usage("2026-01-01", {"fleet": 3}) for _ in range(30)))
    assert (await s.add_usage("2026-01-01", {}))["fleet"] == 90


# --- retention ----------------------------------------------------------------------------------


async def test_old_turns_age_out_when_the_conversation_moves_on(backend: Backend) -> None:
    s = backend.store
    await s.append("tg:a", turn("ancient", "u1", at=1000.0))
    await s.append("tg:a", turn("old", "u2", at=1500.0))
    await s.append("tg:a", turn("new", "u2", at=1000.0 + RETENTION + 100))
    assert [t.text for t in await s.history("tg:a", 10)] == ["old", "new"]


async def test_prune_clears_idle_conversations(backend: Backend) -> None:
    s = backend.store
    await s.append("tg:idle", turn("stale 1", "u1", at=1000.0))
    await s.append("tg:idle", turn("stale 2", "u1", at=1100.0))
    await s.append("tg:busy", turn("fresh", "u2", at=1900.0))
    assert await backend.full.prune(1000.0 + RETENTION + 50) == 1
    assert [t.text for t in await s.history("tg:idle", 10)] == ["stale 2"]
    assert await backend.full.prune(3000.0) == 2
    assert await s.history("tg:idle", 10) == [] and await s.history("tg:busy", 10) == []


# --- through the fleet: /optout and /forget -----------------------------------------------------


async def test_fleet_forget_and_opt_out(backend: Backend) -> None:
    cfg = FleetConfig()
    fleet = Fleet(cfg, PERSONAS, store=backend.store, limiter=MemoryRateLimiter(), brain=Brain(CannedClient(), cfg.llm))
    ann = Author(id="ann", name="Ann")
    bob = Author(id="bob", name="Bob")
    n = 0

    def msg(author: Author, channel: str, text: str) -> Message:
        nonlocal n
        n += 1
        return Message(platform="tg", id=str(n), channel=channel, author=author, text=text)

    def cmd(author: Author, channel: str, name: str) -> Command:
        nonlocal n
        n += 1
        return Command(platform="tg", id=str(n), channel=channel, author=author, name=name)

    await fleet.handle(msg(ann, "g1", "hello from ann"), now=1000.0)
    await fleet.handle(msg(bob, "g1", "hello from bob"), now=1001.0)
    await fleet.handle(msg(ann, "g2", "ann elsewhere"), now=1002.0)
    await fleet.handle(cmd(ann, "g1", "optout"), now=1003.0)
    await fleet.handle(cmd(ann, "g1", "forget"), now=1004.0)
    plan = await fleet.handle(msg(ann, "g1", "still here?"), now=1005.0)
    assert plan.note == "opted_out"
    texts = {c: [t.text for t in await backend.store.history(f"tg:{c}", 50)] for c in ("g1", "g2")}
    assert texts == {"g1": ["hello from bob"], "g2": []}
    # The same message offered twice (two accounts received it) is handled once.
    again = msg(bob, "g1", "twice")
    await fleet.handle(again, now=1006.0)
    assert (await fleet.handle(again, now=1006.5)).note == "duplicate"
    assert [t.text for t in await backend.store.history("tg:g1", 50)] == ["hello from bob", "twice"]


# --- Redis specifics ----------------------------------------------------------------------------


async def test_redis_append_skips_opted_out_user_atomically(redis_url: str, redis_prefix: str) -> None:
    """Another process may have passed the opt-out check before the opt-out landed: the write still
    refuses the turn, because check and write are one script."""
    client = make_client(redis_url)
    try:
        s = RedisStore(client, prefix=redis_prefix, history_size=HISTORY)
        await s.set_opt_out("tg", "u1", True)
        await s.append("tg:a", turn("late", "u1"))
        await s.append("tg:a", turn("fine", "u2"))
        assert [t.text for t in await s.history("tg:a", 10)] == ["fine"]
    finally:
        await client.aclose()


async def test_redis_keys_all_expire(redis_url: str, redis_prefix: str) -> None:
    client = make_client(redis_url)
    try:
        s = RedisStore(client, prefix=redis_prefix, history_size=HISTORY, retention_seconds=3600)
        await s.first_seen("tg:1", 60, 0)
        await s.append("tg:a", turn("hi", "u1"))
        for key in [k async for k in client.scan_iter(match=f"{redis_prefix}*")]:
            ttl = await client.pttl(key)
            assert 0 < ttl <= 2 * 3600 * 1000, key
    finally:
        await client.aclose()


async def test_two_redis_clients_share_one_store(redis_url: str, redis_prefix: str) -> None:
    a_client, b_client = make_client(redis_url), make_client(redis_url)
    try:
        a = RedisStore(a_client, prefix=redis_prefix, history_size=HISTORY)
        b = RedisStore(b_client, prefix=redis_prefix, history_size=HISTORY)
        await a.append("tg:a", turn("from a", "u1"))
        await b.append("tg:a", turn("from b", "u2"))
        assert [t.text for t in await a.history("tg:a", 10)] == ["from a", "from b"]
        assert await a.first_seen("tg:9", 60, 0)
        assert not await b.first_seen("tg:9", 60, 0)
        await a.set_opt_out("tg", "u3", True)
        assert await b.is_opted_out("tg", "u3")
        assert await b.forget_user("tg", "u1") == 1
        assert [t.text for t in await a.history("tg:a", 10)] == ["from b"]
    finally:
        await a_client.aclose()
        await b_client.aclose()
