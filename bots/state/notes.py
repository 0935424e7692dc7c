"""Relationship memory in process: notes per (person, owner), account links and link codes.

A mixin of MemoryStore, kept apart so the notes have one small module of their own."""

from __future__ import annotations

from bots.core.memory.notes import NoteBook


class MemoryNotes:
    retention_seconds: float | None
    _books: dict[str, dict[str, NoteBook]]
    _links: dict[tuple[str, str], str]
    _codes: dict[str, tuple[str, float]]

    def _notebooks(self) -> dict[str, dict[str, NoteBook]]:
        # Created on first use so MemoryStore's constructor needs no change.
        books: dict[str, dict[str, NoteBook]] | None = getattr(self, "_books", None)
        if books is None:
            books = self._books = {}
            self._links = {}
            self._codes = {}
        return books

    async def notes(self, person: str) -> dict[str, NoteBook]:
        return dict(self._notebooks().get(person, {}))

    async def write_notes(self, person: str, owner: str, book: NoteBook) -> bool:
        books = self._notebooks().setdefault(person, {})
        held = books.get(owner)
        if (held.version if held else 0) != book.version - 1:
            return False
        books[owner] = book
        return True

    async def forget_notes(self, person: str, owner: str | None = None) -> int:
        books = self._notebooks().get(person)
        if not books:
            return 0
        owners = list(books) if owner is None else [owner]
        removed = sum(len(books.pop(o).notes) for o in owners if o in books)
        if not books:
            del self._notebooks()[person]
        return removed

    async def person_of(self, platform: str, user_id: str) -> str:
        self._notebooks()
        return self._links.get((platform, user_id), f"{platform}:{user_id}")

    async def offer_link(self, code: str, person: str, ttl: float, now: float) -> bool:
        self._notebooks()
        for old in [c for c, (_, until) in self._codes.items() if until <= now]:
            del self._codes[old]
        self._codes[code] = (person, now + ttl)
        return True

    async def redeem_link(self, code: str, platform: str, user_id: str, now: float) -> str | None:
        self._notebooks()
        held = self._codes.pop(code, None)
        if held is None or held[1] <= now:
            return None
        person = held[0]
        if person != f"{platform}:{user_id}":
            self._links[(platform, user_id)] = person
        return person

    async def unlink(self, platform: str, user_id: str) -> None:
        self._notebooks()
        self._links.pop((platform, user_id), None)

    def prune_notes(self, now: float) -> int:
        """Drop notes written before the retention period; returns how many went."""
        if self.retention_seconds is None:
            return 0
        cutoff = now - self.retention_seconds
        removed = 0
        books = self._notebooks()
        for person in list(books):
            for owner, book in list(books[person].items()):
                kept = book.without_before(cutoff)
                removed += len(book.notes) - len(kept.notes)
                if kept.notes:
                    books[person][owner] = kept
                else:
                    del books[person][owner]
            if not books[person]:
                del books[person]
        return removed
