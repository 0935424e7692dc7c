"""The Telegram world the end-to-end tests run in: the real Fleet and real PTB bots against the fake
Bot API, the real openai SDK against the fake endpoint. Nothing of ours is replaced.

The world: a host bot (admin of the group, so it reads everything), @skeptic_bot (privacy mode off)
and @optimist_bot (privacy mode on) as persona bots, and "Sage", a persona without a token that
speaks through the host bot.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.telegram import TelegramAdapter
from bots.app import build_fleet, make_adapters, make_llm
from bots.config import FleetConfig, TelegramConfig
from bots.core.fleet import Fleet
from bots.core.plan import Plan
from bots.persona import Persona, load_personas
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.telegram import FakeTelegram, JSONDict, SentMessage

TOKENS = {
    "host": "5000:host-secret-AAAAAAAAAAAAAAAA",
    "skeptic": "5001:skeptic-secret-BBBBBBBBBBBBBBBB",
    "optimist": "5002:optimist-secret-CCCCCCCCCCCCCCCC",
}
BAD_TOKEN = "5002:rejected-secret-DDDDDDDDDDDDDDDD"

PERSONAS = {
    "skeptic": """id: skeptic
name: The Skeptic
prompt: You doubt things.
triggers: [{mention: true}, {reply: true}, {command: true}, {dm: true}]
reactions:
  - keywords: [scam]
    emoji: "🤨"
platforms: {telegram: {token: "${SKEPTIC_TELEGRAM_TOKEN}"}}
""",
    "optimist": """id: optimist
name: The Optimist
prompt: You look on the bright side.
triggers: [{mention: true}, {reply: true}, {command: true}]
platforms: {telegram: {token: "${OPTIMIST_TELEGRAM_TOKEN}"}}
""",
    "sage": """id: sage
name: Sage
prompt: You are calm and wise.
triggers: [{mention: true}, {reply: true}, {command: true}]
reactions:
  - keywords: [soup]
    emoji: "👍"
""",
}
MARKERS = {"You doubt things.": "skeptic", "You look on the bright side.": "optimist", "calm and wise": "sage"}


class Voices:
    """What each persona's model says; tests change the lines."""

    def __init__(self) -> None:
        self.lines = {"skeptic": "I doubt that.", "optimist": "It will work out!", "sage": "Patience brings answers."}

    def __call__(self, body: dict[str, Any]) -> str:
        system = body["messages"][0]["content"]
        return next(self.lines[pid] for marker, pid in MARKERS.items() if marker in system)


@dataclass
class World:
    fake: FakeTelegram
    ai: FakeOpenAI
    voices: Voices
    fleet: Fleet
    group: JSONDict
    alice: JSONDict
    bob: JSONDict
    channel: JSONDict

    @property
    def gid(self) -> int:
        return int(self.group["id"])

    def sent_by(self, username: str, chat: int | None = None) -> list[SentMessage]:
        return [s for s in self.fake.sent(chat or self.gid) if s.bot_username == username]

    async def handled(self, message: JSONDict, dm_with: str = "", thread: int = 0) -> Plan:
        """Wait until the fleet has decided about a message and carried everything out.

        A private chat's channel names its bot too ("<user id>@host"): each bot has its own chat; a
        thread's names the thread ("<chat id>/<thread>").
        """
        channel = str(message["chat"]["id"])
        channel += f"@{dm_with}" if dm_with else f"/{thread}" if thread else ""
        key = f"telegram:{channel}:{message['message_id']}"
        await self.fake.wait_for(lambda: key in self.fleet.audit)
        await self.fleet.drain()
        return self.fleet.audit[key]


MakeAdapter = Callable[[FakeTelegram, TelegramConfig, list[Persona]], TelegramAdapter]


@asynccontextmanager
async def telegram_fleet(
    tmp_path: Path,
    *,
    bad_optimist: bool = False,
    stream_edits: bool = False,
    feed: bool = False,
    topic_feed: int | None = None,
    make_adapter: MakeAdapter | None = None,
    base_url: str | None = None,
    sleep: Callable[[float], Awaitable[object]] | None = None,
    clock: Callable[[], float] | None = None,
    llm: dict[str, Any] | None = None,
    **rules: Any,
) -> AsyncIterator[World]:
    """The world above, running. `make_adapter` builds the adapter (as a harness would, say a subclass),
    `base_url` overrides where the config points the bots, `sleep` and `clock` replace the fleet's sleep and clock."""
    voices = Voices()
    async with FakeTelegram() as fake, FakeOpenAI(reply=voices) as ai:
        host = fake.add_bot(TOKENS["host"], "fleet_host_bot", "Fleet")
        skeptic = fake.add_bot(TOKENS["skeptic"], "skeptic_bot", "Skeptic", can_read_all_group_messages=True)
        optimist = fake.add_bot(TOKENS["optimist"], "optimist_bot", "Optimist")
        alice, bob = fake.add_user("Alice", "alice"), fake.add_user("Bob", "bob")
        group = fake.add_group(
            "Lounge", admins=[host["id"], bob["id"]], members=[skeptic["id"], optimist["id"], alice["id"]]
        )
        channel = fake.add_channel("News", discussion_group=group)
        (tmp_path / "personas").mkdir()
        for pid, text in PERSONAS.items():
            (tmp_path / "personas" / f"{pid}.yaml").write_text(text)
        env = {
            "SKEPTIC_TELEGRAM_TOKEN": TOKENS["skeptic"],
            "OPTIMIST_TELEGRAM_TOKEN": BAD_TOKEN if bad_optimist else TOKENS["optimist"],
        }
        personas = load_personas(tmp_path / "personas", env)
        cfg = FleetConfig.model_validate(
            {
                "llm": {
                    "provider": "openai",
                    "model": "fake-gpt",
                    "timeout_seconds": 5,
                    "max_retries": 0,
                    **(llm or {}),
                },
                "fleet": {"reply_delay_seconds": [0, 0], **rules},
                "feeds": {"telegram": [{"channel": str(channel["id"]), "comments": 2, "window_seconds": 0}]}
                if feed
                else {"telegram": [{"channel": f"{group['id']}/{topic_feed}", "comments": 2, "window_seconds": 0}]}
                if topic_feed
                else {},
                "adapters": {
                    "telegram": {
                        "token": TOKENS["host"],
                        "base_url": fake.base_url if base_url is None else base_url,
                        "stream_edits": stream_edits,
                    }
                },
            }
        )
        llm = make_llm(cfg, {"OPENAI_BASE_URL": ai.base_url, "OPENAI_API_KEY": "test-key"})
        fleet = build_fleet(cfg, personas, llm=llm, rng=random.Random(7))
        if sleep is not None:
            fleet.sleep = sleep
        if clock is not None:
            fleet.clock = clock
        if make_adapter is not None:
            fleet.attach(make_adapter(fake, cfg.adapters.telegram, personas))
        else:
            for adapter in make_adapters(cfg, personas, ["telegram"]):
                fleet.attach(adapter)
        try:
            await fleet.start()
            yield World(fake, ai, voices, fleet, group, alice, bob, channel)
        finally:
            await fleet.stop()
