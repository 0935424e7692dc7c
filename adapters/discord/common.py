"""What every part of the Discord adapter shares: limits, names Discord accepts, small caches."""

from __future__ import annotations

import asyncio
import os
import re
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import discord

PLATFORM = "discord"
LIMIT = 2000
HOST = f"{PLATFORM}:host"
HOOK_NAME = "botfleet"
CUT_MARK = "… *(reply cut off)*"
UNKNOWN_WEBHOOK = 10015
THREAD_EXISTS = 160004
ARCHIVE_MINUTES: Final = 1440


def nobody(replied_user: bool = False) -> discord.AllowedMentions:
    # discord.py's default allows every ping, and webhooks do not inherit a client's setting.
    return discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=replied_user)


def webhook_username(name: str, fallback: str = "Persona") -> str:
    """A name Discord accepts on a webhook message: no "clyde" or "discord", 1-80 characters."""
    out = name.strip() or fallback
    for banned in ("clyde", "discord"):
        out = re.sub(banned, lambda m: f"{m.group(0)[:3]}-{m.group(0)[3:]}", out, flags=re.IGNORECASE)
    return out[:80]


def thread_title(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or "Post"
    return line if len(line) <= 90 else line[:89] + "…"


def default_command_state() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "botfleet" / "discord-commands.json"


def gateway_intents() -> discord.Intents:
    intents = discord.Intents.default()
    # Privileged: without it guild messages arrive empty unless they mention the receiving bot.
    intents.message_content = True
    return intents


def snowflake(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


class Bounded(OrderedDict[Any, Any]):
    """A dict that forgets its oldest entries past `size`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Where:
    """What the adapter knows about a channel: threads post through their parent's webhook."""

    kind: str  # text | thread | forum | dm | other
    parent: int | None = None
    name: str = ""
    account: str | None = None  # for a DM: the account it is with, once a message there was seen


class Tasks:
    """Background work the adapter started, so `stop` can end it."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
