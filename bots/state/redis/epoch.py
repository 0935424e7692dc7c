"""Noticing that Redis lost its data, and writing back the choices this process remembers.

A Redis without persistence forgets everything on a restart, and FLUSHALL does the same to any Redis;
the fleet would then answer people who opted out. Redis's data carries an epoch (a random token under
`state-epoch`, set by whichever process first finds it missing). Each process remembers the epoch its
local mirror of choices belongs to; when a read comes back with another epoch, or none, Redis lost
data since, and the process writes its mirror back (`RedisStore.restore`) and adopts the new epoch.

Every process that holds a mirror does this, not only the first to notice: the first one to notice
sets a new epoch, which every other process sees as a change on its next read or watch. Until the
mirror is written back, readers merge Redis's answer with the mirror (see FallbackStore).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable

from bots.state.memory import Choices
from bots.state.redis.client import FAILURES, stop_task
from bots.state.redis.health import RedisHealth
from bots.state.redis.store import RedisStore

log = logging.getLogger("botfleet.redis")


class EpochGuard:
    """Keeps one process's mirror of choices and Redis's data on the same epoch.

    `seen(epoch, before)` is called with the epoch a read returned, on the message path: it never
    waits on Redis, it only starts the write-back. A watch task checks the epoch every `interval`
    seconds too, so an idle process still writes back what it knows for the others' sake.

    A read is judged against the epoch trusted when it was sent (`before`), not when its answer is
    looked at: the write-back claims the new epoch before it writes the mirror, so a read Redis
    answered in between carries the new epoch without the choices, and on a busy event loop its answer
    may be looked at only after the write-back finished and the new epoch became trusted.
    """

    def __init__(
        self,
        primary: RedisStore,
        health: RedisHealth,
        choices: Callable[[], Choices],
        *,
        interval: float = 1.0,
        restore_timeout: float = 30.0,
    ) -> None:
        self.primary = primary
        self.health = health
        self.choices = choices
        self.interval = interval
        self.restore_timeout = restore_timeout
        # The epoch of the data the mirror agrees with (None: not known yet).
        self.epoch: str | None = None
        # More state to write back after the choices (care records: fallback_care.py).
        self.also_restore: list[Callable[[], Awaitable[int]]] = []
        # How many times this process wrote its mirror back into a Redis that had lost it.
        self.restores = 0
        self._lock = asyncio.Lock()
        self._restoring: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_loop(), name="botfleet-epoch")

    def seen(self, epoch: str | None, before: str | None) -> bool:
        """True when Redis's answer may lack what this process knows (its data was lost since).

        `epoch` is the one the answer carried, `before` the one trusted when the read was sent."""
        if epoch is not None and epoch == before:
            return False
        if epoch is not None and before is None and self.epoch is None:
            # First sight of a Redis that has an epoch: nothing says it lost anything we know.
            self.epoch = epoch
            return False
        if self._restoring is None or self._restoring.done():
            self._restoring = asyncio.get_running_loop().create_task(self._restore_logged(), name="botfleet-restore")
        return True

    async def _restore_logged(self) -> None:
        try:
            async with asyncio.timeout(self.restore_timeout):
                await self.restore()
        except FAILURES as exc:
            log.warning("writing choices back into redis failed (retried on the next read): %r", exc)

    async def restore(self) -> None:
        """Write the mirror back unless Redis is on our epoch; runs once at a time."""
        async with self._lock:
            current = await self.primary.state_epoch()
            if current is not None and current == self.epoch:
                return
            if current is None:
                current = await self.primary.claim_epoch(secrets.token_hex(8))
            choices = self.choices()
            await self.primary.restore(choices)
            for write_back in self.also_restore:
                await write_back()
            if self.epoch is not None:
                self.restores += 1
                log.warning(
                    "redis lost its data: wrote back %d opt-outs, %d muted conversations and %d follower choices",
                    len(choices.opted_out),
                    len(choices.muted),
                    len(choices.followers),
                )
            self.epoch = current

    async def _watch_loop(self) -> None:
        while True:
            if self.health.usable:
                try:
                    before = self.epoch
                    async with asyncio.timeout(max(self.health.timeout, 1.0)):
                        self.seen(await self.primary.state_epoch(), before)
                except FAILURES as exc:
                    log.debug("epoch check failed: %r", exc)
            await asyncio.sleep(self.interval * random.uniform(0.8, 1.2))

    async def close(self) -> None:
        for task in (self._watch, self._restoring):
            if task is not None:
                await stop_task(task)
