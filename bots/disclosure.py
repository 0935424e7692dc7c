"""AI disclosure at first contact: a persona's first reply to each person says what it is.

Decided at plan time, like the sponsor line, and carried in `Reply.footer`, so it is never left
to the model. "First" is per platform, persona and person, and is recorded in the Store (shared
by every process on a Redis store, kept across restarts); this process also remembers whom it
has seen told, so a conversation costs one store call per persona and person, not per reply.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from bots.events import Reply

log = logging.getLogger("botfleet.disclosure")


class Disclosure:
    def __init__(self, remember: int = 100_000) -> None:
        self.remember = remember
        # (platform, user) -> personas known to have told them; LRU-bounded.
        self._told: OrderedDict[tuple[str, str], set[str]] = OrderedDict()
        self._warned = False

    async def footer(self, store: Any, text: str, reply: Reply, now: float) -> str:
        """The reply's footer with the disclosure in front when this is the first contact."""
        if not text or not reply.to_user:
            return reply.footer
        who = (reply.platform, reply.to_user)
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
        # The disclosure goes first so a sponsor line stays the last line of every reply.
        return f"{text}\n{reply.footer}" if reply.footer else text

    async def _first_contact(self, store: Any, reply: Reply, now: float) -> bool:
        record = getattr(store, "first_contact", None)
        if record is None:
            # A store from before first contacts were stored: tell once per process rather than never.
            if not self._warned:
                self._warned = True
                log.warning("the store does not record first contacts; disclosure is per process")
            return True
        assert reply.to_user is not None
        return bool(await record(reply.platform, reply.persona_id, reply.to_user, now))

    def forget(self, platform: str, user_id: str) -> None:
        """After /forget the store has no record either: the next reply discloses again."""
        self._told.pop((platform, user_id), None)
