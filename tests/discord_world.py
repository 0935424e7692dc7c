"""The Discord world the end-to-end tests run in: the real Fleet and real discord.py clients against
the fake Discord, and the real openai SDK against the fake OpenAI endpoint. Nothing of ours is replaced.

The world: a host bot ("Botfleet"), own accounts for the skeptic and the optimist, a guild with
#general and the forum #questions, and the human alice. The realist and the nerd have no token and
speak through the host's webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp import web

from adapters.discord import DiscordAdapter
from bots.app import build_fleet
from bots.config import FleetConfig
from bots.core.fleet import Fleet
from bots.llm.openai import OpenAIClient
from bots.persona import Persona
from tests.fakes.discord import Call, FakeDiscord, point_discord_py_at
from tests.fakes.openai_server import FakeOpenAI, Truncated, _sse

HOST_TOKEN = "host-token"
TOKENS = {"skeptic": "skeptic-token", "optimist": "optimist-token"}
AVATAR = "https://example.invalid/realist.png"
JsonDict = dict[str, Any]


def make_persona(pid: str, name: str, *, token: str = "", **extra: Any) -> Persona:
    data: JsonDict = {
        "id": pid,
        "name": name,
        "prompt": f"You are {pid}.",
        "bio": f"the {pid}",
        "triggers": [{"mention": True}, {"reply": True}, {"command": True}],
        **extra,
    }
    if token:
        data["platforms"] = {"discord": {"token": token}}
    return Persona.model_validate(data)


def default_personas() -> list[Persona]:
    return [
        make_persona("skeptic", "Skeptic", token=TOKENS["skeptic"]),
        make_persona(
            "optimist", "Optimist", token=TOKENS["optimist"], reactions=[{"keywords": ["great"], "emoji": "🎉"}]
        ),
        make_persona("realist", "The Realist", avatar=AVATAR, reactions=[{"keywords": ["hmm"], "emoji": "🤔"}]),
        make_persona("nerd", "Discord Nerd"),
    ]


def speaker(body: JsonDict) -> str:
    """Which persona a request is for: its system prompt starts with "You are <id>."."""
    found = re.match(r"You are ([a-z_-]+)\.", body["messages"][0]["content"])
    return found.group(1) if found else "someone"


def says(body: JsonDict) -> str:
    return f"{speaker(body)} here: noted."


class TimedDiscord(FakeDiscord):
    """The fake, with the arrival time of each request (to check edit pacing)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[int, float] = {}

    async def _record(self, request: web.Request) -> Call:
        call = await super()._record(request)
        self.arrived[id(call)] = time.monotonic()
        return call


class SlowOpenAI(FakeOpenAI):
    """Streams word by word with a pause between words, as a real model does (the base fake sends all
    at once). A Truncated behaviour stops halfway without a finish reason."""

    gap = 0.2

    async def _stream(self, request: web.Request, call: Any, cut: Truncated | None) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        words = re.findall(r"\S+\s*", call.text)
        if cut is not None:
            words = words[: len(words) // 2]
        for n, word in enumerate(words):
            finish = "stop" if cut is None and n == len(words) - 1 else None
            choice = {"index": 0, "delta": {"content": word}, "logprobs": None, "finish_reason": finish}
            await resp.write(_sse(call.chunk([choice])))
            await asyncio.sleep(self.gap)
        if cut is None:
            await resp.write(_sse("[DONE]"))
        await resp.write_eof()
        return resp


@dataclass
class World:
    fake: FakeDiscord
    llm: FakeOpenAI
    tmp: Path

    def __post_init__(self) -> None:
        fake = self.fake
        self.host = fake.add_bot(HOST_TOKEN, "Botfleet")
        self.bots = {pid: fake.add_bot(token, pid.title()) for pid, token in TOKENS.items()}
        self.guild = fake.add_guild("Test Server")
        self.general = fake.add_channel(self.guild, "general")
        self.forum = fake.add_channel(self.guild, "questions", type=15)
        self.alice = fake.add_user("alice")

    def bot_id(self, pid: str) -> str:
        return str(self.bots[pid]["id"])

    def persona_messages(self, channel: JsonDict | str) -> list[JsonDict]:
        """What personas said there: own accounts' messages and webhook messages (not command answers)."""
        own = {b["id"] for b in self.bots.values()}
        return [
            m
            for m in self.fake.messages(channel)
            if m["author"]["id"] in own or (m.get("webhook_id") and "interaction_metadata" not in m)
        ]

    def author_of(self, message: JsonDict) -> str:
        """The persona behind a message: an own account's id, or the webhook's override name."""
        if message.get("webhook_id"):
            return f"hook:{message['author']['username']}"
        return next((pid for pid, bot in self.bots.items() if bot["id"] == message["author"]["id"]), "host")


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """A fresh fake Discord and fake OpenAI (answering with :func:`says`); import it to use it."""
    async with FakeDiscord() as fake, FakeOpenAI(reply=says) as llm:
        yield World(fake, llm, tmp_path)


@contextlib.asynccontextmanager
async def running(
    world: World,
    personas: list[Persona] | None = None,
    *,
    discord: JsonDict | None = None,
    fleet: JsonDict | None = None,
    feeds: JsonDict | None = None,
    llm: JsonDict | None = None,
    about: JsonDict | None = None,
    seed: int = 7,
    command_state: Path | None = None,
) -> AsyncIterator[tuple[Fleet, DiscordAdapter]]:
    """A fleet built as bots.app builds it, with the Discord adapter pointed at the fake by config."""
    fake = world.fake
    cfg = FleetConfig.model_validate(
        {
            "llm": {"provider": "openai", "model": "fake-gpt", "timeout_seconds": 5, "max_retries": 0, **(llm or {})},
            "fleet": {"reply_delay_seconds": [0, 0], **(fleet or {})},
            "adapters": {
                "discord": {
                    "token": HOST_TOKEN,
                    "api_base_url": fake.api_base,
                    "gateway_url": fake.gateway_url,
                    **(discord or {}),
                }
            },
            "feeds": {"discord": [], **(feeds or {})},
            # The disclosure line would end every first reply; the tests compare exact words.
            "about": {"disclosure": "", **(about or {})},
        }
    )
    personas = default_personas() if personas is None else personas
    client = OpenAIClient(
        api_key="test-key", base_url=world.llm.base_url, timeout=5, max_retries=0, streaming=cfg.llm.stream
    )
    fleet_ = build_fleet(cfg, personas, llm=client, rng=random.Random(seed))
    adapter = DiscordAdapter(
        cfg.adapters.discord,
        personas,
        command_state=command_state or world.tmp / "commands.json",
        guild_ready_timeout=0.05,
    )
    fleet_.attach(adapter)
    # The adapter sets discord.py's process-wide URLs from its config; this puts them back afterwards.
    with point_discord_py_at(fake):
        await fleet_.start()
        try:
            yield fleet_, adapter
        finally:
            await fleet_.stop(2)


async def settle(seconds: float = 0.4) -> None:
    """Give replies that should NOT happen the time they would need to show up."""
    await asyncio.sleep(seconds)


def writes(fake: FakeDiscord) -> list[Call]:
    """Every request that creates or edits a message, through an account or a webhook."""
    pattern = re.compile(r"^/channels/\d+/messages(/\d+)?$|^/webhooks/\d+/[^/]+(/messages/\d+)?$")
    return [c for c in fake.calls if c.method in ("POST", "PATCH") and pattern.search(c.path)]
