"""The Redis client for the per-message path, pub/sub, and what every Redis module shares: the key
prefix, the per-call time budget, and which exceptions mean "Redis is away"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

log = logging.getLogger("botfleet.redis")

PREFIX = "botfleet:"
# The longest a message handler waits for Redis before deciding locally.
CALL_TIMEOUT = 0.3
# What counts as "Redis is away": the server, the network or our own timeout, not a bad command.
FAULTS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)
# Any failure of a Redis call, a rejected command included: what a caller that decides locally catches.
FAILURES: tuple[type[BaseException], ...] = (*FAULTS, RedisError)


class QueueingPool(BlockingConnectionPool):
    """A blocking pool that knows how many callers are waiting for a connection slot right now.

    A call that times out has already given its connection back by the time anyone asks, so the pool
    then looks free even while hundreds of callers queue for it: `waiting` tells a queue of ours from
    a silent server (RedisHealth.failed). Callers establishing a connection they hold do not count.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._getting = 0
        self._connecting = 0

    @property
    def waiting(self) -> int:
        return self._getting - self._connecting

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        self._getting += 1
        try:
            return await super().get_connection(*args, **kwargs)
        finally:
            self._getting -= 1

    async def ensure_connection(self, connection: Any) -> None:
        self._connecting += 1
        try:
            await super().ensure_connection(connection)
        finally:
            self._connecting -= 1


def make_client(
    url: str,
    *,
    max_connections: int = 32,
    socket_timeout: float = 1.0,
    connect_timeout: float = CALL_TIMEOUT,
    pool_timeout: float = 1.0,
) -> Redis:
    """A client for the per-message path: bounded pool, short timeouts, and no silent retries.

    redis-py would retry a timed-out EVALSHA or RPUSH on its own, applying it twice; callers here
    decide what a failure means instead. The pool blocks rather than raising when full, so a burst
    waits its turn instead of failing; callers bound the wait (CALL_TIMEOUT) below `pool_timeout`.
    """
    pool = QueueingPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        # A new connection then costs no round trips of its own (no HELLO, no CLIENT SETINFO): over a
        # slow link the handshake alone took three, more than a handler's whole budget.
        protocol=2,
        driver_info=None,
    )
    return Redis.from_pool(pool)


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait for it, cancelling again if a cancellation gets swallowed.

    On Python 3.11 a cancel() that lands while an asyncio.timeout() is expiring can come out as the
    TimeoutError a loop then catches and survives; asking again until the task ends is the fix.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r", task.get_name(), task.exception())


async def subscribe(
    client: Redis,
    channel: str,
    handle: Callable[[bytes], Awaitable[None]],
    *,
    backoff: tuple[float, float] = (0.25, 10.0),
) -> None:
    """Call `handle` with every message published on `channel`, for as long as the task runs."""
    await subscribe_all(client, {channel: handle}, backoff=backoff)


async def subscribe_all(
    client: Redis,
    handlers: Mapping[str, Callable[[bytes], Awaitable[None]]],
    *,
    backoff: tuple[float, float] = (0.25, 10.0),
) -> None:
    """Call each channel's handler with every message published on it, for as long as the task runs.

    One subscription holds one connection of the client's pool for good: several channels share it.
    Reconnects with backoff when Redis goes away. Pub/sub is at most once: whatever is published while
    this is reconnecting is lost, so every use must tolerate a missed message.
    """
    delay = backoff[0]
    while True:
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(*handlers)
            delay = backoff[0]
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                try:
                    await handlers[channel](message["data"])
                except Exception:
                    log.exception("handling a message on %s failed", channel)
        except FAILURES as exc:
            log.debug("subscription to %s lost: %r", ", ".join(handlers), exc)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, backoff[1])
