"""The seam between the fleet and a platform."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from bots.config import FleetConfig
from bots.events import Event, Notice, React, Reply, Sent
from bots.persona import Persona


class FleetView(Protocol):
    """What an adapter may see of the fleet: the personas, and where to hand events."""

    @property
    def personas(self) -> Mapping[str, Persona]: ...

    @property
    def config(self) -> FleetConfig:
        """The fleet's configuration (adapters read their feed channels from it)."""
        ...

    async def dispatch(self, event: Event) -> None: ...

    def persona_of(self, platform: str, message_id: str) -> str | None:
        """The persona that wrote a platform message the fleet sent (reply triggers)."""
        ...


class Adapter(Protocol):
    platform: str
    # Characters per message on this platform; replies are split to fit.
    text_limit: int

    async def start(self, fleet: FleetView) -> None:
        """Get ready to send (log in, build clients). Receiving starts per account with `connect`."""
        ...

    def accounts(self) -> list[str]:
        """The platform accounts whose connection receives events, e.g. "telegram:host", "discord:skeptic".

        Only one process may hold an account's receiving connection at a time (Telegram allows one
        getUpdates consumer per token; two Discord gateway sessions would answer twice), so with a shared
        Redis store the fleet leases accounts and connects only those it holds. Any process may send
        as any account.
        """
        ...

    async def connect(self, account: str) -> bool:
        """Start receiving on one account; False (logged) if the platform refused it, e.g. a bad token."""
        ...

    async def disconnect(self, account: str) -> None: ...

    async def stop(self) -> None: ...

    async def deliver(self, reply: Reply, persona: Persona, snapshots: AsyncIterator[str]) -> Sent:
        """Post a reply. `snapshots` yields the whole sanitised text so far each time more arrives; the
        last one is final. It raises bots.brain.IncompleteReply if the model stopped without finishing:
        whatever was already shown must then be marked as cut off or removed."""
        ...

    async def react(self, react: React, persona: Persona) -> None: ...

    async def notify(self, notice: Notice) -> None: ...
