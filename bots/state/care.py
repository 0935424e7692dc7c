"""Care mode in process: until when the personas stay quiet toward a person in one conversation.

A mixin of MemoryStore, kept apart so care has one small module of its own. It is also the local
copy the Redis fallback keeps (bots/state/redis/fallback_care.py)."""

from __future__ import annotations

from collections import OrderedDict

# People in care at once that one process remembers; past it the oldest record goes first.
MAX_CARE = 100_000

CareKey = tuple[str, str, str]  # (platform, user id, conversation)


class MemoryCare:
    _care: OrderedDict[CareKey, float]

    def _care_table(self) -> OrderedDict[CareKey, float]:
        # Created on first use so MemoryStore's constructor needs no change.
        table: OrderedDict[CareKey, float] | None = getattr(self, "_care", None)
        if table is None:
            table = self._care = OrderedDict()
        return table

    async def set_care(self, platform: str, user_id: str, conversation: str, until: float, now: float) -> None:
        if until <= now:
            return
        table = self._care_table()
        key = (platform, user_id, conversation)
        # Never earlier: two processes (or a replayed journal) writing in any order keep the latest.
        table[key] = max(until, table.get(key, until))
        table.move_to_end(key)
        while len(table) > MAX_CARE:
            table.popitem(last=False)

    async def care_until(self, platform: str, user_id: str, conversation: str, now: float) -> float | None:
        table = self._care_table()
        key = (platform, user_id, conversation)
        until = table.get(key)
        if until is None:
            return None
        if until <= now:
            del table[key]
            return None
        return until
