"""Care mode behind the fallback: a mixin of FallbackStore.

Care records are kept locally as well as in Redis: every one this process writes or reads from Redis.
While Redis is away the local copy answers, and a care record that did not reach Redis is journaled
and written through when Redis is back, as opt-outs are. A read takes the later of Redis's answer and
the local one, so a Redis that lost its data (a restart without persistence) does not end a quiet time
this process knows about, and every process gets the records back: the write-back of choices after
such a loss (epoch.py) writes this process's care records back too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from bots.state.memory import MemoryStore
from bots.state.redis.journal import Journal
from bots.state.redis.store import RedisStore

T = TypeVar("T")

log = logging.getLogger("botfleet.redis")


class FallbackCare:
    primary: RedisStore
    local: MemoryStore

    if TYPE_CHECKING:  # FallbackStore provides these

        async def _try(self, op: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]: ...

        def _journal(self, write: Callable[[Journal], object]) -> None: ...

    async def set_care(self, platform: str, user_id: str, conversation: str, until: float, now: float) -> None:
        await self.local.set_care(platform, user_id, conversation, until, now)
        ok, _ = await self._try(lambda: self.primary.set_care(platform, user_id, conversation, until, now))
        if not ok:
            self._journal(lambda j: j.add_care((platform, user_id, conversation), until, now))

    async def care_until(self, platform: str, user_id: str, conversation: str, now: float) -> float | None:
        ok, shared = await self._try(lambda: self.primary.care_until(platform, user_id, conversation, now))
        mine = await self.local.care_until(platform, user_id, conversation, now)
        if ok and shared is not None and (mine is None or shared > mine):
            # Kept here too: an outage that starts later still knows this person is in care.
            await self.local.set_care(platform, user_id, conversation, shared, now)
            return shared
        return mine

    async def restore_care(self) -> int:
        """Write the care records this process knows back into a Redis that lost its data."""
        records = self.local.care_records()
        for platform, user_id, conversation, until, at in records:
            await self.primary.set_care(platform, user_id, conversation, until, at)
        if records:
            log.warning("redis lost its data: wrote back %d care records", len(records))
        return len(records)
