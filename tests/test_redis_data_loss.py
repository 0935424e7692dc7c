"""Redis losing its data (FLUSHALL, or a restart without persistence) must not lose people's choices:
opt-outs, mutes and follower choices come back from what the processes have seen (issue 11.8)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import bots.state.redis as package
from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.events import Author, Message
from bots.core.fleet import Fleet
from bots.llm.canned import CannedClient
from bots.persona import load_personas
from bots.state.memory import Choices
from bots.state.redis import FAULTS, FallbackStore, RedisHealth, RedisStore, make_client, open_redis_state
from bots.state.redis.store import PERMANENT_KEYS
from tests.redis_server import RedisServer

PERSONAS = load_personas(Path(__file__).resolve().parent.parent / "personas")


class Process:
    """One fleet process on the shared Redis: its own store, limiter and fleet."""

    def __init__(self, url: str, prefix: str) -> None:
        cfg = FleetConfig(store=url)
        self.store, limiter = open_redis_state(cfg, prefix=prefix)
        self.store.health.backoff = (0.05, 0.4)
        self.store.epochs.interval = 0.1
        self.fleet = Fleet(cfg, PERSONAS, store=self.store, limiter=limiter, brain=Brain(CannedClient(), cfg.llm))
        self.n = 0

    async def message(self, user: str, channel: str = "g1") -> str:
        """A message from `user` mentioning a persona; the plan's note ("" when it was handled)."""
        self.n += 1
        persona = PERSONAS[0]
        msg = Message(
            platform="tg",
            id=f"{id(self)}-{self.n}",
            channel=channel,
            author=Author(id=user, name=user),
            text=f"@{persona.id} are you there?",
            mentions=frozenset({persona.id}),
        )
        return (await self.fleet.handle(msg)).note

    async def close(self) -> None:
        await self.fleet.stop(grace=0)


@pytest_asyncio.fixture
async def server(redis_servers: Callable[[], RedisServer]) -> AsyncIterator[RedisServer]:
    yield redis_servers()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if await check():
                return
        except FAULTS:
            pass  # a pooled connection to the server before its restart fails once
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.02)


async def flushall(url: str) -> None:
    client = make_client(url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def make_choices(store: FallbackStore) -> None:
    await store.set_opt_out("tg", "ann", True)
    await store.set_muted("tg:g1", "skeptic", True)
    await store.set_followers("tg", "bob", ("nerd",))


async def assert_choices_in(store: RedisStore | FallbackStore) -> None:
    assert await store.is_opted_out("tg", "ann")
    assert await store.muted("tg:g1") == frozenset({"skeptic"})
    assert await store.followers("tg", "bob") == ("nerd",)


async def test_opted_out_person_is_not_answered_after_flushall(server: RedisServer) -> None:
    proc = Process(server.url, "p:")
    try:
        assert await proc.message("ann") == ""
        await make_choices(proc.store)
        assert await proc.message("ann") == "opted_out"
        await flushall(server.url)
        # The very next message already sees the loss (the epoch comes back with the opt-out read).
        assert await proc.message("ann") == "opted_out"
        assert await proc.store.muted("tg:g1") == frozenset({"skeptic"})
        assert await proc.store.followers("tg", "bob") == ("nerd",)
        # And Redis has them again, for every other process.
        await eventually(lambda: proc.store.primary.is_opted_out("tg", "ann"))
        await assert_choices_in(proc.store.primary)
        assert proc.store.epochs.restores == 1
    finally:
        await proc.close()


async def test_choices_come_back_after_a_restart_without_persistence(server: RedisServer) -> None:
    proc = Process(server.url, "r:")
    try:
        await proc.message("ann")
        await make_choices(proc.store)
        await asyncio.to_thread(server.restart)
        await eventually(lambda: proc.store.primary.is_opted_out("tg", "ann"), within=10)
        await assert_choices_in(proc.store.primary)
        assert await proc.message("ann") == "opted_out"
    finally:
        await proc.close()


async def test_an_idle_process_writes_back_what_another_one_needs(server: RedisServer) -> None:
    """A saw Ann opt out; after the loss only B receives her messages, and B never knew her choice.
    A's watch notices the loss without any traffic of its own and writes the choice back for B."""
    a, b = Process(server.url, "i:"), Process(server.url, "i:")
    try:
        await make_choices(a.store)
        assert await b.message("carl") == ""
        await flushall(server.url)
        await eventually(lambda: b.store.is_opted_out("tg", "ann"))
        await assert_choices_in(b.store)
        assert await b.message("ann") == "opted_out"
    finally:
        await a.close()
        await b.close()


async def test_a_choice_changed_after_the_loss_is_not_overwritten(server: RedisServer) -> None:
    """A follower choice made on the fresh data is newer than the mirror's: the write-back keeps it."""
    a, b = Process(server.url, "c:"), Process(server.url, "c:")
    try:
        await a.store.set_followers("tg", "bob", ("nerd",))
        await b.message("carl")
        b.store.epochs.interval = 60.0  # b only notices through its own reads
        await asyncio.sleep(0.3)  # a's watch sees the epoch before the loss
        a.store.epochs.interval = 60.0
        await asyncio.sleep(0.3)
        await flushall(server.url)
        await b.store.set_followers("tg", "bob", ("stoic",))
        assert await a.store.followers("tg", "bob") == ("stoic",)
        await eventually(lambda: _restored(a.store))
        assert await b.store.followers("tg", "bob") == ("stoic",)
    finally:
        await a.close()
        await b.close()


async def _restored(store: FallbackStore) -> bool:
    return store.epochs.restores == 1 and store.epochs.epoch == await store.primary.state_epoch()


async def test_every_key_expires_or_is_a_documented_choice(server: RedisServer) -> None:
    """Every key the store writes has a TTL, except the permanent ones the package docstring lists."""
    proc = Process(server.url, "k:")
    try:
        await proc.message("ann")
        await make_choices(proc.store)
        await proc.store.first_contact("tg", "skeptic", "carl", time.time())
        await proc.store.add_usage("2026-01-01", {"fleet": 1})
        await eventually(lambda: _has_epoch(proc.store))
        client = make_client(server.url)
        try:
            keys = [k.decode() async for k in client.scan_iter(match="k:*")]
            kinds = set()
            for key in keys:
                name = key.removeprefix("k:")
                if await client.pttl(key) < 0:
                    assert name.startswith(PERMANENT_KEYS), key
                    kinds.add(next(p for p in PERMANENT_KEYS if name.startswith(p)))
            assert kinds == set(PERMANENT_KEYS)
        finally:
            await client.aclose()
        for kind in PERMANENT_KEYS:
            assert f"`{kind}" in (package.__doc__ or ""), f"{kind} is not documented"
    finally:
        await proc.close()


async def _has_epoch(store: FallbackStore) -> bool:
    return await store.primary.state_epoch() is not None


@pytest.mark.parametrize("lost", ["flushall", "restart"])
async def test_journal_of_an_outage_wins_over_the_mirror(server: RedisServer, lost: str) -> None:
    """Ann opted back in while Redis was away; Redis then came back empty. The mirror knows her
    opt-in (the local state saw it), so the write-back does not opt her out again."""
    proc = Process(server.url, "j:")
    try:
        await proc.message("ann")
        await proc.store.set_opt_out("tg", "ann", True)
        await asyncio.sleep(0.3)  # a silent server, not a slow one: the next call finds it frozen
        server.freeze()
        await proc.store.set_opt_out("tg", "ann", False)
        assert not proc.store.health.up
        assert proc.store.journal.opt_out == {("tg", "ann"): False}
        server.thaw()
        if lost == "flushall":
            await flushall(server.url)
        else:
            await asyncio.to_thread(server.restart)
        await eventually(lambda: _up(proc.store), within=10)
        assert not await proc.store.primary.is_opted_out("tg", "ann")
        assert await proc.message("ann") == ""
    finally:
        await proc.close()


async def _up(store: FallbackStore) -> bool:
    return store.health.up


class HeldRedisStore(RedisStore):
    """A RedisStore whose write-back and opt-out reads can be held at chosen points: it stages the
    interleaving a loaded event loop produces only sometimes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.restoring = asyncio.Event()
        self.finish_restore = asyncio.Event()
        self.read_answered = asyncio.Event()
        self.deliver_read = asyncio.Event()

    async def restore(self, choices: Choices, batch: int = 500) -> None:
        self.restoring.set()
        await self.finish_restore.wait()
        await super().restore(choices, batch)

    async def is_opted_out_at(self, platform: str, user_id: str) -> tuple[bool, str | None]:
        got = await super().is_opted_out_at(platform, user_id)
        self.read_answered.set()
        await self.deliver_read.wait()
        return got


async def test_a_read_from_before_the_write_back_is_not_trusted_after_it(server: RedisServer) -> None:
    """The write-back claims the new epoch, then writes the mirror. A read Redis answered in between
    carries the new epoch but lacks the choices; if its answer is looked at only after the write-back
    finished, it must still count as a read of lost data, or Ann is answered and the local mirror
    forgets her opt-out. (This interleaving made test_opted_out_person_... fail now and then.)"""
    client = make_client(server.url)
    primary = HeldRedisStore(client, prefix="h:")
    health = RedisHealth(client, timeout=10.0, owns_client=False)
    store = FallbackStore(primary, health)
    store.epochs.interval = 60.0  # only this test's calls look at the epoch
    try:
        primary.finish_restore.set()
        primary.deliver_read.set()
        await store.epochs.restore()  # the data's first epoch, which the (empty) mirror agrees with
        await store.set_opt_out("tg", "ann", True)
        await flushall(server.url)
        for event in (primary.restoring, primary.finish_restore, primary.read_answered, primary.deliver_read):
            event.clear()
        write_back = asyncio.create_task(store.epochs.restore())
        await primary.restoring.wait()  # the new epoch is claimed; the mirror is not written yet
        read = asyncio.create_task(store.is_opted_out("tg", "ann"))
        await primary.read_answered.wait()
        primary.finish_restore.set()
        await write_back
        primary.deliver_read.set()
        assert await read
        assert await store.local.is_opted_out("tg", "ann")
        assert await store.is_opted_out("tg", "ann")
    finally:
        await store.close()
        await client.aclose()
