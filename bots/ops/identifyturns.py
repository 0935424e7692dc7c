"""Identify turns shared by every process on one Redis: platforms that limit how fast a token may open
gateway sessions (Discord: one IDENTIFY per `max_concurrency` bucket per 5 s) take turns here.

An adapter that wants them has an optional method, found with getattr like `connect_budget`:

    def share_identify_turns(self, turns: Callable[[str, float], Awaitable[float]]) -> None

and calls `turns(bucket, interval)` before each identify: 0 means the turn is this process's (and is
taken), anything else is how many seconds to wait before asking again. The turn is a key set only if
absent with the interval as its expiry, on the server's clock, so two processes never identify in one
bucket within the interval. When Redis cannot answer, the answer is 0: the adapter's own spacing in
the process still holds, and the platform refuses (and the client retries) an identify that is too early.

Redis keys (prefix `botfleet:` by default):
- `identify-turn:{account}:{bucket}`: string, the process that took the turn; PX the interval.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bots.state.redis import FAULTS

log = logging.getLogger("botfleet.leases")

# KEYS[1]: the bucket's turn key. ARGV: this process, the interval in ms. Returns 0 when the turn is
# taken now, else ms until the current holder's turn ends.
TURN_LUA = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
return math.max(1, redis.call('PTTL', KEYS[1]))
"""

ASK_TIMEOUT = 2.0
TURN_FAULTS: tuple[type[BaseException], ...] = (*FAULTS, RedisError)


class RedisIdentifyTurns:
    """`turns(bucket, interval)` for adapters, on the lease manager's Redis client."""

    def __init__(self, client: Redis, prefix: str, identity: str) -> None:
        self._script = client.register_script(TURN_LUA)
        self.prefix = prefix
        self.identity = identity

    async def __call__(self, bucket: str, interval: float) -> float:
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                ms: Any = await self._script(
                    keys=[f"{self.prefix}identify-turn:{bucket}"], args=[self.identity, max(1, int(interval * 1000))]
                )
        except TURN_FAULTS as exc:
            log.warning("identify turn for %s not shared (%s): spacing identifies in this process only", bucket, exc)
            return 0.0
        return int(ms) / 1000


def offer(adapters: Any, turns: RedisIdentifyTurns) -> None:
    """Hand the shared turns to every adapter that takes them."""
    for adapter in adapters:
        share = getattr(adapter, "share_identify_turns", None)
        if share is not None:
            share(turns)
