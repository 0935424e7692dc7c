"""Relationship memory over Redis with two processes (two Fleets, each with its own client, on one
real redis-server), and erasure during a Redis outage."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

from bots.app import make_llm
from bots.config import FleetConfig
from bots.core.brain import Brain
from bots.core.events import Command, Message
from bots.core.fleet import Fleet
from bots.core.memory.notes import Note, NoteBook
from bots.persona import Persona
from bots.state.redis import open_redis_state
from tests.conftest import Clock, RecordingAdapter, persona
from tests.fakes.openai_server import FakeOpenAI
from tests.redis_server import RedisServer
from tests.test_memory import ALICE, DAY, replies_of, summaries_of, summariser_or_persona

PERSONAS = [persona("skeptic", name="The Skeptic"), persona("stoic", name="The Stoic")]


class Process:
    """One botfleet process: its own Redis client, fleet and platform stand-in; a shared clock."""

    def __init__(self, url: str, prefix: str, llm: FakeOpenAI, clock: Clock, personas: list[Persona]) -> None:
        data = {
            "store": url,
            "llm": {"provider": "openai", "model": "fake-gpt", "timeout_seconds": 5, "max_retries": 0},
            "fleet": {"reply_delay_seconds": [0, 0]},
        }
        self.cfg = FleetConfig.model_validate(data)
        store, limiter = open_redis_state(self.cfg, prefix=prefix)
        store.health.backoff = (0.05, 0.4)
        client = make_llm(self.cfg, {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "k"})
        self.fleet = Fleet(
            self.cfg,
            personas,
            store=store,
            limiter=limiter,
            brain=Brain(client, self.cfg.llm),
            clock=clock,
            rng=random.Random(1),
        )
        self.adapter = RecordingAdapter()
        self.fleet.attach(self.adapter)
        self.store = store

    async def say(self, n: int, text: str, channel: str, mention: str) -> None:
        msg = Message("test", f"m{n}", channel, ALICE, text, mentions=frozenset({mention}), channel_name=channel)
        await self.fleet.dispatch(msg)
        await self.fleet.drain()

    async def command(self, n: int, name: str, args: str = "") -> str:
        before = len(self.adapter.notices)
        await self.fleet.dispatch(Command("test", f"c{n}", "general", ALICE, name, args))
        await self.fleet.drain()
        return "\n".join(x.text for x in self.adapter.notices[before:])


async def test_two_processes_share_memory_and_its_erasure(redis_url: str, redis_prefix: str) -> None:
    clock = Clock()
    async with FakeOpenAI(reply=summariser_or_persona) as llm:
        a = Process(redis_url, redis_prefix, llm, clock, PERSONAS)
        b = Process(redis_url, redis_prefix, llm, clock, PERSONAS)
        try:
            # Day 1 in #general, handled by process A, which writes the note once the talk goes quiet.
            await a.say(1, "@skeptic I'm thinking of quitting my job to open a bakery", "general", "skeptic")
            clock.advance(700)
            assert [d.outcome for d in await a.fleet.memory.tick(clock())] == ["written"]
            assert await b.fleet.memory.tick(clock()) == []  # B had no conversation to summarise
            # Day 3 in #kitchen, handled by process B: its request holds A's note.
            clock.advance(2 * DAY)
            await b.say(2, "@skeptic any thoughts?", "kitchen", "skeptic")
            assert "open a bakery" in replies_of(llm)[-1]["messages"][0]["content"]
            assert "open a bakery" in await b.command(3, "memory")
            # Erased through A, gone for B.
            assert "Erased The Skeptic's notes" in await a.command(4, "memory", "forget skeptic")
            await b.say(5, "@skeptic still there?", "kitchen", "skeptic")
            assert "bakery" not in replies_of(llm)[-1]["messages"][0]["content"]
        finally:
            await a.fleet.stop(grace=0)
            await b.fleet.stop(grace=0)


async def test_two_processes_due_at_once_write_the_notes_once(redis_url: str, redis_prefix: str) -> None:
    clock = Clock()
    async with FakeOpenAI(reply=summariser_or_persona) as llm:
        a = Process(redis_url, redis_prefix, llm, clock, PERSONAS)
        b = Process(redis_url, redis_prefix, llm, clock, PERSONAS)
        try:
            # One conversation whose turns were handled by both processes: both have it pending.
            await a.say(1, "@skeptic I want to open a bakery", "general", "skeptic")
            await b.say(2, "@skeptic a small one, downtown", "general", "skeptic")
            clock.advance(700)
            done = await asyncio.gather(a.fleet.memory.tick(clock()), b.fleet.memory.tick(clock()))
            outcomes = sorted(d.outcome for ds in done for d in ds)
            assert outcomes.count("written") == 1 and len(outcomes) == 2
            assert set(outcomes) <= {"written", "conflict", "nothing"}
            books = await a.store.notes("test:alice-1")
            assert books["skeptic"].version == 1
            assert len(summaries_of(llm)) in (1, 2)
        finally:
            await a.fleet.stop(grace=0)
            await b.fleet.stop(grace=0)


async def test_memory_erasure_during_an_outage_reaches_redis(redis_servers: Callable[[], RedisServer]) -> None:
    server = redis_servers()
    async with FakeOpenAI(reply=summariser_or_persona) as llm:
        p = Process(server.url, "mem:", llm, Clock(), PERSONAS)
        try:
            note = Note("plans a bakery", 1.0, "test:general", "skeptic", open=True)
            assert await p.store.write_notes("test:alice-1", "skeptic", NoteBook((note,), 1, 1.0))
            server.freeze()
            # Reads go without notes and a prompt without them; the erasure is journaled.
            assert await p.store.notes("test:alice-1") == {}
            assert "Deleted" in await p.command(1, "forget")
            assert len(p.store.journal) >= 1
            server.thaw()
            deadline = time.monotonic() + 10
            while not p.store.health.up or len(p.store.journal):
                assert time.monotonic() < deadline, "the journal never reached redis"
                await asyncio.sleep(0.02)
            assert await p.store.primary.notes("test:alice-1") == {}
        finally:
            await p.fleet.stop(grace=0)
