"""Relationship memory end to end on virtual time: the real openai client against the fake endpoint,
the real Fleet, store and commands; only the platform is a RecordingAdapter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from bots.app import make_llm
from bots.core.events import Author, Command, Message
from bots.core.fleet import Fleet
from bots.core.memory.summarise import MARKER
from bots.core.ports import Chunk, LLMRequest
from bots.persona import Persona
from tests.conftest import Clock, RecordingAdapter, make_fleet, persona
from tests.fakes.openai_server import FakeOpenAI

DAY = 86400.0
ALICE = Author(id="alice-1", name="alice")
BAKERY = "[open] Thinking of quitting their office job to open a bakery"


def summariser_or_persona(body: dict[str, Any]) -> str:
    """The endpoint: memory updates get notes about the bakery, replies a skeptic's question."""
    system = body["messages"][0]["content"]
    if system.startswith(MARKER):
        return f"- {BAKERY}\n- Has saved for a year"
    return "Have you costed the ovens?"


def replies_of(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r for r in fake.requests if not r["messages"][0]["content"].startswith(MARKER)]


def summaries_of(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["messages"][0]["content"].startswith(MARKER)]


class World:
    def __init__(self, fleet: Fleet, adapter: RecordingAdapter, clock: Clock, llm: FakeOpenAI) -> None:
        self.fleet, self.adapter, self.clock, self.llm = fleet, adapter, clock, llm
        self.n = 0

    async def say(
        self,
        text: str,
        channel: str,
        author: Author = ALICE,
        mentions: frozenset[str] = frozenset(),
        platform: str = "test",
    ) -> None:
        self.n += 1
        msg = Message(platform, f"m{self.n}", channel, author, text, mentions=mentions, channel_name=channel)
        await self.fleet.dispatch(msg)
        await self.fleet.drain()

    async def command(
        self, name: str, args: str = "", author: Author = ALICE, channel: str = "general", platform: str = "test"
    ) -> str:
        self.n += 1
        adapter = self.fleet.adapters[platform]
        assert isinstance(adapter, RecordingAdapter)
        before = len(adapter.notices)
        await self.fleet.dispatch(Command(platform, f"c{self.n}", channel, author, name, args))
        await self.fleet.drain()
        notices = adapter.notices[before:]
        assert notices and all(n.private for n in notices)
        return "\n".join(n.text for n in notices)

    def last_reply_system(self) -> str:
        return str(replies_of(self.llm)[-1]["messages"][0]["content"])


async def world_of(personas: list[Persona], llm: FakeOpenAI, **memory: Any) -> World:
    config = {
        "llm": {"provider": "openai", "model": "fake-gpt", "timeout_seconds": 5, "max_retries": 0},
        "memory": memory,
    }
    client = make_llm(make_fleet([], config=config)[0].config, {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "k"})
    fleet, adapter, clock = make_fleet(personas, llm=client, config=config)
    return World(fleet, adapter, clock, llm)


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    async with FakeOpenAI(reply=summariser_or_persona) as llm:
        w = await world_of([persona("skeptic", name="The Skeptic"), persona("stoic", name="The Stoic")], llm)
        yield w
        await w.fleet.stop(grace=0)


async def test_a_persona_remembers_a_person_across_channels_until_told_to_forget(world: World) -> None:
    skeptic = frozenset({"skeptic"})
    # Day 1, #general: the bakery plan, told to the Skeptic.
    await world.say("@skeptic I'm thinking of quitting my job to open a bakery", "general", mentions=skeptic)
    assert "bakery" not in world.last_reply_system()
    # The conversation is not quiet yet: no update, no call.
    assert await world.fleet.memory.tick(world.clock() + 60) == []
    world.clock.advance(700)
    done = await world.fleet.memory.tick(world.clock())
    assert [(d.persona_id, d.outcome, d.notes) for d in done] == [("skeptic", "written", 2)]
    summary = summaries_of(world.llm)[-1]
    assert "bakery" in summary["messages"][1]["content"]  # it read the conversation
    assert "never write down" in summary["messages"][0]["content"].lower()

    # Day 3, #kitchen: the Skeptic is mentioned elsewhere, and its prompt holds the note.
    world.clock.advance(2 * DAY)
    await world.say("@skeptic any thoughts on my week?", "kitchen", mentions=skeptic)
    system = world.last_reply_system()
    assert "quitting their office job to open a bakery" in system and "(still open)" in system
    # Another persona keeps its own notes: the Stoic knows nothing of it.
    await world.say("@stoic and you?", "kitchen", mentions=frozenset({"stoic"}))
    assert "bakery" not in world.last_reply_system()

    shown = await world.command("memory")
    assert "The Skeptic (skeptic) remembers:" in shown and "open a bakery" in shown
    assert "test:general" in shown  # where it came from, and when:
    day1 = shown.split("- ")[1][:10]
    assert day1.count("-") == 2 and day1[:2] == "19"  # a date (the virtual clock starts in 1970)

    assert "Erased The Skeptic's notes about you (2 note(s))" in await world.command("memory", "forget skeptic")
    assert await world.command("memory") == "No persona remembers anything about you."
    await world.say("@skeptic still there?", "kitchen", mentions=skeptic)
    assert "bakery" not in world.last_reply_system()
    # Talking on in #general, where the bakery is still in the history: what was said before the
    # erasure is not summarised again.
    world.clock.advance(60)
    await world.say("@skeptic how is the weather?", "general", mentions=skeptic)
    world.clock.advance(700)
    done = await world.fleet.memory.tick(world.clock())
    assert sorted((d.persona_id, d.outcome) for d in done) == [("skeptic", "written"), ("stoic", "written")]
    for summary in summaries_of(world.llm)[-2:]:
        assert "bakery" not in summary["messages"][1]["content"]


async def test_forget_and_optout_erase_notes_and_nothing_is_written_for_an_opted_out_person(world: World) -> None:
    skeptic = frozenset({"skeptic"})
    await world.say("@skeptic I want to open a bakery", "general", mentions=skeptic)
    world.clock.advance(700)
    await world.fleet.memory.tick(world.clock())
    assert "bakery" in await world.command("memory")
    assert "and 2 memory note(s)" in await world.command("forget")
    assert await world.command("memory") == "No persona remembers anything about you."

    # Talk again, then opt out before the conversation goes quiet: no update is made, nothing kept.
    await world.say("@skeptic the bakery again", "general", mentions=skeptic)
    calls = len(summaries_of(world.llm))
    await world.command("optout")
    world.clock.advance(700)
    done = await world.fleet.memory.tick(world.clock())
    assert all(d.outcome != "written" for d in done)
    assert len(summaries_of(world.llm)) == calls
    assert await world.command("memory") == "No persona remembers anything about you."


async def test_optout_erases_what_was_remembered(world: World) -> None:
    await world.say("@skeptic I want to open a bakery", "general", mentions=frozenset({"skeptic"}))
    world.clock.advance(700)
    await world.fleet.memory.tick(world.clock())
    await world.command("optout")
    assert await world.fleet.store.notes("test:alice-1") == {}


async def test_a_sponsored_persona_never_writes_memory() -> None:
    async with FakeOpenAI(reply=summariser_or_persona) as llm:
        brand = persona("brand", name="Brand Bot", sponsor="Acme")
        w = await world_of([brand], llm)
        try:
            await w.say("@brand I want to open a bakery", "general", mentions=frozenset({"brand"}))
            assert replies_of(llm)  # it did answer
            w.clock.advance(700)
            assert await w.fleet.memory.tick(w.clock()) == []
            assert summaries_of(llm) == []
            assert await w.fleet.store.notes("test:alice-1") == {}
        finally:
            await w.fleet.stop(grace=0)


async def test_memory_off_for_a_persona_or_the_fleet() -> None:
    async with FakeOpenAI(reply=summariser_or_persona) as llm:
        w = await world_of([persona("quiet", memory=False), persona("skeptic")], llm)
        try:
            await w.say("@quiet bakery plans", "general", mentions=frozenset({"quiet"}))
            w.clock.advance(700)
            assert await w.fleet.memory.tick(w.clock()) == []
        finally:
            await w.fleet.stop(grace=0)
        w = await world_of([persona("skeptic")], llm, enabled=False)
        try:
            await w.say("@skeptic bakery plans", "general", mentions=frozenset({"skeptic"}))
            w.clock.advance(700)
            assert await w.fleet.memory.tick(w.clock()) == []
            assert summaries_of(llm) == []
        finally:
            await w.fleet.stop(grace=0)


async def test_updates_count_against_the_personas_budget_not_the_persons(world: World) -> None:
    await world.say("@skeptic I want to open a bakery", "general", mentions=frozenset({"skeptic"}))
    usage = world.fleet.usage.totals
    before = (usage["fleet"], usage["p:skeptic"], usage["u:test:alice-1"])
    world.clock.advance(700)
    await world.fleet.memory.tick(world.clock())
    after = (usage["fleet"], usage["p:skeptic"], usage["u:test:alice-1"])
    assert after[0] > before[0] and after[1] > before[1]
    assert after[2] == before[2]


async def test_a_persona_over_budget_updates_later(world: World) -> None:
    await world.say("@skeptic I want to open a bakery", "general", mentions=frozenset({"skeptic"}))
    world.fleet.usage.totals["fleet"] = 10**9
    world.fleet.config = world.fleet.config.model_copy(
        update={"llm": world.fleet.config.llm.model_copy(update={"daily_token_budget": 1000})}
    )
    world.clock.advance(700)
    done = await world.fleet.memory.tick(world.clock())
    assert [d.outcome for d in done] == ["later:budget:fleet"]
    assert summaries_of(world.llm) == []
    assert len(world.fleet.memory.pending) == 1


@pytest.mark.parametrize("shared", [True])
async def test_shared_notes_reach_every_persona(shared: bool) -> None:
    async with FakeOpenAI(reply=summariser_or_persona) as llm:
        w = await world_of([persona("skeptic"), persona("stoic")], llm, shared=shared)
        try:
            await w.say("@skeptic I want to open a bakery", "general", mentions=frozenset({"skeptic"}))
            w.clock.advance(700)
            assert [d.owner for d in await w.fleet.memory.tick(w.clock())] == ["shared"]
            await w.say("@stoic hello", "other", mentions=frozenset({"stoic"}))
            assert "open a bakery" in w.last_reply_system()
            assert "All personas (shared notes) remember:" in await w.command("memory")
        finally:
            await w.fleet.stop(grace=0)


async def test_link_lets_notes_follow_a_person_to_another_platform(world: World) -> None:
    other_platform = RecordingAdapter(platform="chat")
    world.fleet.attach(other_platform)
    await world.say("@skeptic I want to open a bakery", "general", mentions=frozenset({"skeptic"}))
    world.clock.advance(700)
    await world.fleet.memory.tick(world.clock())
    offered = await world.command("link")
    code = offered.split("Your link code: ")[1].split(".")[0]
    there = Author(id="alice-elsewhere", name="alice")
    assert "Linked" in await world.command("link", code, author=there, platform="chat")
    assert "open a bakery" in await world.command("memory", author=there, platform="chat")
    await world.say("@skeptic hi from the other app", "dm", there, frozenset({"skeptic"}), platform="chat")
    assert "open a bakery" in world.last_reply_system()
    # A code is used once, and only within its minutes.
    assert "unknown or expired" in await world.command("link", code, author=Author(id="mallory", name="m"))
    late = await world.command("link")
    world.clock.advance(11 * 60)
    code = late.split("Your link code: ")[1].split(".")[0]
    assert "unknown or expired" in await world.command("link", code, author=Author(id="bob", name="b"), platform="chat")
    # /forget on the linked account undoes the link (and erases the notes it shares).
    assert "memory note(s)" in await world.command("forget", author=there, platform="chat")
    assert await world.fleet.store.person_of("chat", "alice-elsewhere") == "chat:alice-elsewhere"
    assert await world.command("memory") == "No persona remembers anything about you."


async def test_a_persona_follows_up_on_an_open_dilemma_days_later_once() -> None:
    async with FakeOpenAI(reply=summariser_or_persona) as llm:
        w = await world_of([persona("skeptic", name="The Skeptic"), persona("stoic")], llm, follow_up_chance=1.0)
        try:
            await w.say("@skeptic I'm thinking of opening a bakery", "general", mentions=frozenset({"skeptic"}))
            w.clock.advance(700)
            await w.fleet.memory.tick(w.clock())
            # A day later it is too soon to ask.
            w.clock.advance(DAY)
            before = len(w.adapter.replies)
            await w.say("morning all", "kitchen")
            assert len(w.adapter.replies) == before
            # Three days on, a message that names nobody: the Skeptic asks how it went.
            w.clock.advance(3 * DAY)
            await w.say("morning all", "kitchen")
            reply, _ = w.adapter.replies[-1]
            assert (reply.persona_id, reply.reason) == ("skeptic", "memory:follow_up")
            assert "open a bakery" in reply.instruction and "how it turned out" in reply.instruction
            # Once per note: the next message is left alone.
            before = len(w.adapter.replies)
            w.clock.advance(600)
            await w.say("anyone around?", "kitchen")
            assert len(w.adapter.replies) == before
        finally:
            await w.fleet.stop(grace=0)


async def test_no_follow_up_after_forget_or_with_chance_zero() -> None:
    async with FakeOpenAI(reply=summariser_or_persona) as llm:
        w = await world_of([persona("skeptic")], llm, follow_up_chance=1.0)
        try:
            await w.say("@skeptic a bakery?", "general", mentions=frozenset({"skeptic"}))
            w.clock.advance(700)
            await w.fleet.memory.tick(w.clock())
            await w.command("memory", "forget all")
            w.clock.advance(4 * DAY)
            before = len(w.adapter.replies)
            await w.say("morning all", "kitchen")
            assert len(w.adapter.replies) == before
        finally:
            await w.fleet.stop(grace=0)
        w = await world_of([persona("skeptic")], llm, follow_up_chance=0.0)
        try:
            await w.say("@skeptic a bakery?", "general", mentions=frozenset({"skeptic"}))
            w.clock.advance(700)
            await w.fleet.memory.tick(w.clock())
            w.clock.advance(4 * DAY)
            before = len(w.adapter.replies)
            await w.say("morning all", "kitchen")
            assert len(w.adapter.replies) == before
        finally:
            await w.fleet.stop(grace=0)


class HeldSummaries:
    """An LLM whose memory updates wait until released; replies come at once."""

    name = "held"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def stream(self, request: LLMRequest) -> AsyncIterator[Chunk]:
        if request.messages[0]["content"].startswith(MARKER):
            self.started.set()
            await self.release.wait()
            yield Chunk(text=f"- {BAKERY}", finish_reason="stop")
        else:
            yield Chunk(text="Hm.", finish_reason="stop")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("erase", [("memory", "forget skeptic"), ("forget", "")])
async def test_an_erasure_during_an_update_wins(erase: tuple[str, str]) -> None:
    llm = HeldSummaries()
    fleet, _, clock = make_fleet([persona("skeptic")], llm=llm)
    author = Author(id="alice-1", name="alice")
    await fleet.dispatch(Message("test", "m1", "general", author, "@skeptic a bakery?", frozenset({"skeptic"})))
    await fleet.drain()
    clock.advance(700)
    update = asyncio.create_task(fleet.memory.tick(clock()))
    await llm.started.wait()
    await fleet.dispatch(Command("test", "c1", "general", author, erase[0], erase[1]))
    await fleet.drain()
    llm.release.set()
    done = await update
    assert [d.outcome for d in done] == ["skipped:forgotten"]
    books = await fleet.store.notes("test:alice-1")
    assert all(not b.notes for b in books.values())


async def test_forgetting_before_anything_was_noted_keeps_that_talk_unnoted(world: World) -> None:
    skeptic = frozenset({"skeptic"})
    await world.say("@skeptic I'm thinking of opening a bakery", "general", mentions=skeptic)
    await world.command("memory", "forget skeptic")  # before the conversation went quiet
    world.clock.advance(60)
    await world.say("@skeptic nice weather today", "general", mentions=skeptic)
    world.clock.advance(700)
    assert [d.outcome for d in await world.fleet.memory.tick(world.clock())] == ["written"]
    said = summaries_of(world.llm)[-1]["messages"][1]["content"]
    assert "nice weather" in said and "bakery" not in said
