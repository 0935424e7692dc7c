"""A platform stand-in with no platform behind it, for unit tests and benchmarks: no accounts to
receive on, nothing to start or stop, reactions and notices taken and dropped. Subclasses say what
they record; `final_text` reads a reply's snapshots to the last one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bots.core.events import Notice, React
from bots.persona import Persona


class Headless:
    async def start(self, fleet: Any) -> None:
        return None

    def accounts(self) -> list[str]:
        return []

    async def connect(self, account: str) -> bool:
        return True

    async def disconnect(self, account: str) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def react(self, react: React, persona: Persona) -> None:
        return None

    async def notify(self, notice: Notice) -> None:
        return None


async def final_text(snapshots: AsyncIterator[str]) -> str:
    """The whole reply (its last snapshot); raises IncompleteReply as the snapshots do."""
    text = ""
    async for snapshot in snapshots:
        text = snapshot
    return text
