"""AI disclosure at first contact: a persona's first reply to each person says what it is.

Decided at plan time, like the sponsor line, and carried in `Reply.footer`, so it is never left
to the model. "First" is per platform, persona and person, and is recorded in the Store (shared
by every process on a Redis store, kept across restarts); this process also remembers whom it
has seen told, so a conversation costs one store call per persona and person, not per reply.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from bots.core.events import Reply


class Disclosure:
    def __init__(self, remember: int = 100_000) -> None:
        self.remember = remember
        # (platform, user) -> personas known to have told them; LRU-bounded.
        self._told: OrderedDict[tuple[str, str], set[str]] = OrderedDict()
        # (platform, user, persona) whose disclosing reply was planned but never delivered.
        self._owed: set[tuple[str, str, str]] = set()

    async def footer(self, store: Any, text: str, reply: Reply, now: float) -> str:
        """The reply's footer with the disclosure in front when this is the first contact."""
        if not text or not reply.to_user:
            return reply.footer
        who = (reply.platform, reply.to_user)
        owed = (reply.platform, reply.to_user, reply.persona_id)
        if owed in self._owed:
            self._owed.discard(owed)
            return _disclosed(text, reply.footer)
        told = self._told.get(who)
        if told is not None and reply.persona_id in told:
            self._told.move_to_end(who)
            return reply.footer
        first = await self._first_contact(store, reply, now)
        if told is None:
            told = self._told[who] = set()
            while len(self._told) > self.remember:
                self._told.popitem(last=False)
        told.add(reply.persona_id)
        if not first:
            return reply.footer
        return _disclosed(text, reply.footer)

    async def _first_contact(self, store: Any, reply: Reply, now: float) -> bool:
        assert reply.to_user is not None
        return bool(await store.first_contact(reply.platform, reply.persona_id, reply.to_user, now))

    def owe(self, reply: Reply, text: str) -> None:
        """A reply that carried the disclosure was dropped or cut: the store already counts the person
        as told, so this process makes sure the persona's next reply to them carries it instead."""
        if text and reply.to_user and reply.footer.startswith(text) and len(self._owed) < self.remember:
            self._owed.add((reply.platform, reply.to_user, reply.persona_id))

    def forget(self, platform: str, user_id: str) -> None:
        """After /forget the store has no record either: the next reply discloses again."""
        self._told.pop((platform, user_id), None)


def _disclosed(text: str, footer: str) -> str:
    # The disclosure goes first so a sponsor line stays the last line of every reply.
    return f"{text}\n{footer}" if footer else text
