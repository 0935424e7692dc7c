"""Whether the per-message path uses Redis: one RedisHealth shared by the store and the limiter."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from bots.state.redis.client import CALL_TIMEOUT, FAULTS, QueueingPool, stop_task

log = logging.getLogger("botfleet.redis")

T = TypeVar("T")

# A probe also fails on a server still loading its data (BUSY, LOADING): keep probing.
_PROBE_ERRORS: tuple[type[BaseException], ...] = (*FAULTS, ResponseError)


class RedisHealth:
    """Whether the per-message path uses Redis, shared by the store and the limiter.

    The first fault flips both to local state and starts one probe task; the probe pings with
    exponential backoff, runs the recovery hooks (replaying what must not be lost), then flips back.
    Each transition is logged once, whatever the message rate.

    A call that times out while other calls keep completing is overload (a burst queued for the
    bounded pool), not an outage: that call is decided locally, and for `slow_seconds` after it every
    call except dedupe goes local at once (`usable` is False), so one message never waits the budget
    on each of several calls in a row. Redis stays in use for everything else.
    """

    def __init__(
        self,
        client: Redis,
        *,
        timeout: float = CALL_TIMEOUT,
        backoff: tuple[float, float] = (0.25, 10.0),
        owns_client: bool = True,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.backoff = backoff
        self.up = True
        self.outages = 0
        self._owns_client = owns_client
        self._down_since = 0.0
        self._probe: asyncio.Task[None] | None = None
        self._recover_hooks: list[Callable[[], Awaitable[None]]] = []
        self._users = 0
        self._last_error_log = 0.0
        self._last_overload_log = 0.0
        self.overloaded = 0
        # When a Redis call last succeeded (monotonic): tells a slow queue from a silent server.
        self.last_ok = 0.0
        self.slow_seconds = 1.0
        self._slow_until = 0.0

    @property
    def usable(self) -> bool:
        """Up, and no call timed out on a queue lately: worth waiting for."""
        return self.up and time.monotonic() >= self._slow_until

    def on_recover(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._recover_hooks.append(hook)

    async def call(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation within the time budget; raises on a fault after flipping to local."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                result = await op()
        except FAULTS as exc:
            self.failed(exc, started)
            raise
        except RedisError as exc:
            self.bad_command(exc)
            raise
        self.last_ok = time.monotonic()
        return result

    def failed(self, exc: BaseException, started: float | None = None) -> None:
        """A call failed; `started` is when it began (monotonic), if the caller knows."""
        now = time.monotonic()
        # Our own timeout, yet Redis is alive and we are queued, when: answers arrived in the last half
        # of the budget, or any answer arrived since this call began (a busy event loop may read those
        # late, so "lately" alone misjudges a burst), or callers are queued for a pooled connection. A
        # frozen server gives no answer after the calls that began once it froze.
        alive = now - self.last_ok < self.timeout / 2 or (started is not None and self.last_ok >= started)
        queued = _queued(self.client)
        if type(exc) is TimeoutError and (alive or queued):
            self.overloaded += 1
            self._slow_until = now + self.slow_seconds
            if now - self._last_overload_log > 60:
                self._last_overload_log = now
                log.warning("redis calls queue beyond %.0f ms: deciding some messages locally", self.timeout * 1000)
            return
        self.down(exc)

    def bad_command(self, exc: RedisError) -> None:
        # A rejected command is a bug, not an outage: say so (rarely), and decide locally this once.
        now = time.monotonic()
        if now - self._last_error_log > 60:
            self._last_error_log = now
            log.error("redis rejected a command, deciding locally: %s", exc)

    def down(self, exc: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        self.outages += 1
        self._down_since = time.monotonic()
        log.warning(
            "redis unreachable (%s): using local limits and history until it answers again",
            type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}",
        )
        self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        delay, cap = self.backoff
        while True:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, cap)
            try:
                # Idle pooled connections may lead to a server that has since restarted: each would
                # fail once on first use and look like a new outage. Start the pool afresh instead.
                await self.client.connection_pool.disconnect(inuse_connections=False)
                async with asyncio.timeout(max(self.timeout, 1.0)):
                    await self.client.ping()
                for hook in self._recover_hooks:
                    async with asyncio.timeout(max(self.timeout * 10, 3.0)):
                        await hook()
            except _PROBE_ERRORS as exc:
                log.debug("redis still away: %s", exc)
                continue
            self.up = True
            log.warning(
                "redis is back after %.1fs: shared limits and history resumed", time.monotonic() - self._down_since
            )
            return

    def acquire_user(self) -> None:
        self._users += 1

    async def release_user(self) -> None:
        """The last of the store and the limiter to close closes the shared client."""
        self._users -= 1
        if self._users > 0:
            return
        if self._probe is not None:
            await stop_task(self._probe)
        if self._owns_client:
            await self.client.aclose()


def _queued(client: Redis) -> bool:
    """Callers are waiting for a pooled connection: the pool, not Redis, is what made a call late.

    Asked after the timed-out call gave its own connection back, so "every connection busy" alone
    misses the burst that matters most: on a cold pool and a loaded machine the first calls time out
    before any answer is read, hundreds more queue for those very connections, and each timeout
    (which closes its connection) keeps the pool cold. QueueingPool counts the queue itself.
    """
    pool = client.connection_pool
    return not pool.can_get_connection() or (isinstance(pool, QueueingPool) and pool.waiting > 0)
