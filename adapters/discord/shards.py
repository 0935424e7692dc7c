"""Sharding the host bot: one gateway connection per shard, each leased like an account.

A bot in more than 2,500 guilds must shard: each gateway session identifies as shard `i` of `n` and
receives the events of the guilds with `(guild_id >> 22) % n == i` (direct messages come to shard 0).
Each shard is a receiving account of its own, named `discord:host#i/n`, so the fleet's account leases
(bots/ops/leases.py) split the shards between processes exactly as they split accounts; sending stays
with the host account, which every process has logged in.

Discord also limits how fast a token may IDENTIFY: shards fall into `max_concurrency` buckets
(`shard_id % max_concurrency`, from `GET /gateway/bot`'s session_start_limit) and each bucket may
identify once per 5 seconds. `IdentifyTurns` spaces this process's identifies per bucket; across
processes it also asks a shared turn-taker (Redis, bots/ops/identifyturns.py) when one is offered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from adapters.discord.common import HOST

log = logging.getLogger("botfleet.discord")

# Discord: one IDENTIFY per max_concurrency bucket per 5 seconds.
IDENTIFY_INTERVAL = 5.0

# (bucket key, interval seconds) -> 0 when the turn is ours (and taken), else seconds until asking again.
SharedTurns = Callable[[str, float], Awaitable[float]]


def shard_name(shard_id: int, count: int, account: str = HOST) -> str:
    return f"{account}#{shard_id}/{count}"


def base_account(account: str) -> str:
    """The account a shard belongs to (`discord:host#2/4` -> `discord:host`); others unchanged."""
    return account.partition("#")[0]


class IdentifyTurns:
    """Waits for a shard's turn to IDENTIFY: one per bucket per `interval`, here and, with a shared
    turn-taker, across every process on the same token."""

    def __init__(
        self,
        *,
        interval: float = IDENTIFY_INTERVAL,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.interval = interval
        self.max_concurrency = 1
        self.shared: SharedTurns | None = None
        self._clock = clock
        self._sleep = sleep
        self._next: dict[tuple[str, int], float] = {}  # (account, bucket) -> earliest next identify here
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    def bucket(self, shard_id: int) -> int:
        return shard_id % max(1, self.max_concurrency)

    async def wait(self, account: str, shard_id: int) -> None:
        key = (account, self.bucket(shard_id))
        async with self._locks.setdefault(key, asyncio.Lock()):
            while True:
                wait = max(0.0, self._next.get(key, 0.0) - self._clock())
                if wait <= 0 and self.shared is not None:
                    wait = await self.shared(f"{account}:{key[1]}", self.interval)
                if wait <= 0:
                    break
                log.debug("%s shard %d waits %.2fs for its identify turn", account, shard_id, wait)
                await self._sleep(wait)
            self._next[key] = self._clock() + self.interval
