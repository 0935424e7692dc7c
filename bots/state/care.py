"""Care mode in process: until when the personas stay quiet toward a person in one conversation.

A mixin of MemoryStore, kept apart so care has one small module of its own. It is also the local
copy the Redis fallback keeps (bots/state/redis/fallback_care.py)."""

from __future__ import annotations

from collections import OrderedDict

# People in care at once that one process remembers; past it the oldest record goes first.
MAX_CARE = 100_000

CareKey = tuple[str, str, str]  # (platform, user id, conversation)


class MemoryCare:
    # key -> (until, when it was written): the write time lets a write-back give Redis a TTL.
    _care: OrderedDict[CareKey, tuple[float, float]]
    _care_now: float

    def _care_table(self) -> OrderedDict[CareKey, tuple[float, float]]:
        # Created on first use so MemoryStore's constructor needs no change.
        table: OrderedDict[CareKey, tuple[float, float]] | None = getattr(self, "_care", None)
        if table is None:
            table = self._care = OrderedDict()
            self._care_now = 0.0
        return table

    async def set_care(self, platform: str, user_id: str, conversation: str, until: float, now: float) -> None:
        table = self._care_table()
        self._care_now = max(self._care_now, now)
        if until <= now:
            return
        key = (platform, user_id, conversation)
        held = table.get(key)
        # Never earlier: two processes (or a replayed journal) writing in any order keep the latest.
        if held is None or until > held[0]:
            table[key] = (until, now)
        table.move_to_end(key)
        while len(table) > MAX_CARE:
            table.popitem(last=False)

    async def care_until(self, platform: str, user_id: str, conversation: str, now: float) -> float | None:
        table = self._care_table()
        self._care_now = max(self._care_now, now)
        key = (platform, user_id, conversation)
        held = table.get(key)
        if held is None:
            return None
        if held[0] <= now:
            del table[key]
            return None
        return held[0]

    def care_records(self) -> list[tuple[str, str, str, float, float]]:
        """(platform, user, conversation, until, written at) of every care record not known to be over."""
        table = self._care_table()
        return [(*key, until, at) for key, (until, at) in table.items() if until > self._care_now]
