"""Relationship memory behind the fallback: a mixin of FallbackStore.

Notes are not mirrored locally. While Redis is away a prompt goes without them and a summary is not
written (the scheduler tries again later), while an erasure (/memory forget, /forget, /optout) is
journaled and replayed before Redis is trusted again: a person's request to be forgotten must land.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from bots.core.memory.notes import NoteBook
from bots.state.redis.journal import Journal
from bots.state.redis.store import RedisStore

T = TypeVar("T")


class FallbackNotes:
    primary: RedisStore

    if TYPE_CHECKING:  # FallbackStore provides these

        async def _try(self, op: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]: ...

        def _journal(self, write: Callable[[Journal], object]) -> None: ...

    async def notes(self, person: str) -> dict[str, NoteBook]:
        ok, books = await self._try(lambda: self.primary.notes(person))
        return books if ok and books is not None else {}

    async def write_notes(self, person: str, owner: str, book: NoteBook) -> bool:
        ok, written = await self._try(lambda: self.primary.write_notes(person, owner, book))
        if not ok:
            # Not a lost compare-and-set: the caller keeps the update for later.
            raise ConnectionError("redis is away: notes not written")
        return bool(written)

    async def forget_notes(self, person: str, owner: str | None = None) -> int:
        ok, removed = await self._try(lambda: self.primary.forget_notes(person, owner))
        if ok and removed is not None:
            return removed
        self._journal(lambda j: j.notes_forget.add((person, owner or "")))
        return 0

    async def person_of(self, platform: str, user_id: str) -> str:
        ok, person = await self._try(lambda: self.primary.person_of(platform, user_id))
        return person if ok and person is not None else f"{platform}:{user_id}"

    async def offer_link(self, code: str, person: str, ttl: float, now: float) -> bool:
        ok, _ = await self._try(lambda: self.primary.offer_link(code, person, ttl, now))
        return ok

    async def redeem_link(self, code: str, platform: str, user_id: str, now: float) -> str | None:
        ok, person = await self._try(lambda: self.primary.redeem_link(code, platform, user_id, now))
        return person if ok else None

    async def unlink(self, platform: str, user_id: str) -> None:
        ok, _ = await self._try(lambda: self.primary.unlink(platform, user_id))
        if not ok:
            self._journal(lambda j: j.unlinks.add((platform, user_id)))
