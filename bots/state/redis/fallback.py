"""The fallback that keeps the fleet answering while Redis is away.

`open_redis_state(cfg)` wraps the Redis store and limiter in `FallbackStore`/`FallbackRateLimiter`:
each Redis call is bounded (`CALL_TIMEOUT`); on a timeout or connection error the fleet switches to
the in-memory implementations (logged once), probes Redis with backoff, and switches back when it
answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from redis.exceptions import RedisError

from bots.config import FleetConfig
from bots.core.ports import Claims, Rate, RateLimiter, Turn, Verdict
from bots.state.memory import MemoryRateLimiter, MemoryStore
from bots.state.redis.admission import RedisAdmission
from bots.state.redis.client import FAILURES, FAULTS, PREFIX, make_client, stop_task, subscribe_all
from bots.state.redis.epoch import EpochGuard
from bots.state.redis.fallback_care import FallbackCare
from bots.state.redis.fallback_notes import FallbackNotes
from bots.state.redis.health import RedisHealth
from bots.state.redis.journal import Journal
from bots.state.redis.limiter import LimiterOverloaded, RedisRateLimiter
from bots.state.redis.mirror import ChoiceMirror
from bots.state.redis.store import RedisStore

log = logging.getLogger("botfleet.redis")

# How long the background replay of a slow Redis's journal may take, all entries together.
DRAIN_TIMEOUT = 30.0

T = TypeVar("T")


class FallbackRateLimiter:
    """Redis limits while Redis answers within budget; the in-memory GCRA otherwise.

    Local limits start from the tats Redis last reported for every key this process asked about (its
    grants, and keys it found blocked by other processes' grants), so a cooldown granted before an
    outage holds during it. Keys only other processes used are unknown here, so during an outage N
    processes together allow up to N times a limit: the price of answering at all, for the length of
    the outage only.
    """

    def __init__(self, primary: RedisRateLimiter, health: RedisHealth, local: MemoryRateLimiter | None = None) -> None:
        self.primary = primary
        self.local = local or MemoryRateLimiter()
        self.health = health
        self._overload_log = 0.0
        # The local limiter mirrors every tat Redis reports (bounded by its max_keys), so an outage
        # starts from the cooldowns and limits already granted instead of from nothing.
        primary.on_tats = self.local.remember
        health.acquire_user()

    async def acquire(self, candidates: Sequence[Sequence[Rate]], max_grants: int, now: float) -> list[Verdict]:
        if not candidates:
            return []
        if self.health.usable:
            started = time.monotonic()
            try:
                verdicts = await self.primary.acquire(candidates, max_grants, now)
                self.health.last_ok = time.monotonic()
                return verdicts
            except LimiterOverloaded as exc:
                # Too much queued is local overload, not an outage: decide this one locally.
                t = time.monotonic()
                if t - self._overload_log > 60:
                    self._overload_log = t
                    log.warning("rate limiter overloaded, deciding locally: %s", exc)
            except FAULTS as exc:
                self.health.failed(exc, started)
            except RedisError as exc:
                self.health.bad_command(exc)
        return self.local.acquire_now(candidates, max_grants, now)

    async def close(self) -> None:
        await self.primary.close()
        await self.local.close()
        await self.health.release_user()


class FallbackStore(FallbackNotes, FallbackCare):
    """The Redis store, with local state that answers while Redis is away.

    The local store holds every opt-out, mute and follower choice in Redis, whichever process made
    it: loaded at start and kept current by `mirror` (mirror.py), and updated by every such read and
    write here. During an outage it answers those reads, so an opted-out person stays opted out and a
    muted persona stays muted on every process, also one that never handled them before. Opt-outs,
    forgets, mutes, follower choices and token usage that did not reach Redis are journaled
    (journal.py): replayed before Redis is used again after an outage, or drained in the background
    when Redis was only slow.

    History is different, because /forget must reach it in every process. Mirroring every turn
    locally would keep a copy that a forget handled by another process never touches, and the next
    outage would put the forgotten words back into prompts. So the mirror (`_turns`) holds only
    turns that did not reach Redis, written while Redis was marked down, and it starts empty at each
    outage: nothing from before the current outage can come back from it. A forget reaches other
    processes' mirrors too: it is published on `<prefix>forget`, which every FallbackStore applies
    to its local state (first-contact records included). Pub/sub may miss a message while a
    subscriber reconnects; the per-outage mirror bounds what such a miss can expose to turns written
    in the same outage. History written during an outage stays local (it is only context for prompts).
    """

    def __init__(self, primary: RedisStore, health: RedisHealth, local: MemoryStore | None = None) -> None:
        self.primary = primary
        self.local = local or MemoryStore(
            history_size=primary.history_size, retention_seconds=primary.retention_seconds
        )
        self.health = health
        self.journal = Journal()
        self._journal_lock = asyncio.Lock()
        self._drainer: asyncio.Task[None] | None = None
        self._turns = self._new_mirror()
        self._turns_outage = health.outages
        self.forget_channel = f"{primary.prefix}forget"
        self._listener: asyncio.Task[None] | None = None
        # Writes back the mirror of choices (self.local) when Redis has lost its data.
        self.epochs = EpochGuard(primary, health, self.local.choices)
        self.epochs.also_restore.append(self.restore_care)
        # Loads every choice into self.local and applies the changes other processes make.
        self.mirror = ChoiceMirror(primary, health, self.local, self.epochs, lambda: self.journal)
        # Messages let through unchecked because dedupe timed out while Redis was up (see first_seen).
        self.dedupe_unchecked = 0
        # The day's totals as Redis last gave them: the base for budgets while it is away.
        self._usage_seen: dict[str, dict[str, int]] = {}
        health.acquire_user()
        health.on_recover(self._replay)

    def _new_mirror(self) -> MemoryStore:
        return MemoryStore(history_size=self.primary.history_size, retention_seconds=self.primary.retention_seconds)

    def _mirror(self) -> MemoryStore:
        """The turns of the current outage only: a new outage starts an empty mirror."""
        if self._turns_outage != self.health.outages:
            self._turns = self._new_mirror()
            self._turns_outage = self.health.outages
        return self._turns

    def admission_for(self, claims: Claims, limiter: RateLimiter) -> RedisAdmission | None:
        """One script call per message decision, when the limiter is Redis's on the same health."""
        if not isinstance(limiter, FallbackRateLimiter) or limiter.health is not self.health:
            return None
        return RedisAdmission(self, limiter, claims)

    def listen(self) -> None:
        """Start following other processes' choices and forgets (every store call does)."""
        self._listen()

    def _listen(self) -> None:
        if self._listener is None:
            self.epochs.start()
            self.mirror.start()
            self._listener = asyncio.get_running_loop().create_task(
                subscribe_all(
                    self.primary.client,
                    {self.forget_channel: self._forgotten, self.primary.choices_channel: self.mirror.changed},
                    backoff=self.health.backoff,
                ),
                name="botfleet-store-channels",
            )

    async def _forgotten(self, data: bytes) -> None:
        platform, user_id = json.loads(data)
        await self.local.forget_user(str(platform), str(user_id))
        await self._turns.forget_user(str(platform), str(user_id))

    async def _forget_everywhere(self, platform: str, user_id: str) -> int:
        removed = await self.primary.forget_user(platform, user_id)
        await self.primary.client.publish(self.forget_channel, json.dumps([platform, user_id]))
        return removed

    async def _try(self, op: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        self._listen()
        if not self.health.usable:
            return False, None
        try:
            return True, await self.health.call(op)
        except FAILURES:
            return False, None

    async def first_seen(self, key: str, ttl: float, now: float) -> bool:
        self._listen()
        if not await self.local.first_seen(key, ttl, now):
            return False  # this process saw it already: nobody else needs asking
        return await self.first_seen_shared(key, ttl, now)

    async def first_seen_shared(self, key: str, ttl: float, now: float) -> bool:
        """Dedupe in Redis, for a key this process has just seen for the first time."""
        # Not skipped when Redis is merely slow: dedupe comes first in a handler, so this is its one wait.
        if not self.health.up:
            return True
        try:
            return bool(await self.health.call(lambda: self.primary.first_seen(key, ttl, now)))
        except FAILURES:
            # Unchecked across processes (Redis slow, or going away). Letting the message through
            # risks a second reply if another process received it too; treating it as a duplicate
            # silently drops a message somebody is waiting for, which is worse.
            if self.health.up:
                self.dedupe_unchecked += 1
                log.debug("dedupe of %s timed out while redis is up: answering it unchecked", key)
            return True

    async def append(self, conversation: str, turn: Turn) -> None:
        ok, _ = await self._try(lambda: self.primary.append(conversation, turn))
        # A timed-out write with Redis up may well have landed: only an outage's turns stay local.
        if not ok and not self.health.up:
            await self._mirror().append(conversation, turn)

    async def history(self, conversation: str, limit: int) -> list[Turn]:
        ok, turns = await self._try(lambda: self.primary.history(conversation, limit))
        if ok and turns is not None:
            return turns
        if self.health.up:
            return []  # slow, not away: no mirror of this outage to offer
        return await self._mirror().history(conversation, limit)

    async def prune(self, now: float) -> int:
        local = await self._turns.prune(now)
        if not self.health.up:
            return local
        try:
            # A scan, not a per-message call: it gets more time than CALL_TIMEOUT.
            async with asyncio.timeout(30):
                return await self.primary.prune(now)
        except FAILURES as exc:
            log.warning("pruning old history in redis failed: %s", exc)
            return local

    async def forget_user(self, platform: str, user_id: str) -> int:
        local = await self.local.forget_user(platform, user_id) + await self._turns.forget_user(platform, user_id)
        ok, removed = await self._try(lambda: self._forget_everywhere(platform, user_id))
        if ok and removed is not None:
            return removed
        self._journal(lambda j: j.forget.add((platform, user_id)))
        return local

    async def set_opt_out(self, platform: str, user_id: str, opted_out: bool) -> None:
        await self.local.set_opt_out(platform, user_id, opted_out)
        ok, _ = await self._try(lambda: self.primary.set_opt_out(platform, user_id, opted_out))
        if not ok or (platform, user_id) in self.journal.opt_out:
            self._journal(lambda j: j.opt_out.__setitem__((platform, user_id), opted_out))

    async def _read_at(self, op: Callable[[], Awaitable[tuple[T, str | None]]]) -> tuple[T, bool] | None:
        """Redis's answer to a read that also returns the epoch, and whether the data it came from may
        lack what this process remembers; None when Redis did not answer in time."""
        before = self.epochs.epoch
        ok, got = await self._try(op)
        if not ok or got is None:
            return None
        value, epoch = got
        return value, self.epochs.seen(epoch, before)

    async def is_opted_out(self, platform: str, user_id: str) -> bool:
        got = await self._read_at(lambda: self.primary.is_opted_out_at(platform, user_id))
        mirror = await self.local.is_opted_out(platform, user_id)
        if got is None:
            return mirror
        out, lost = got
        if lost:
            # Redis lost its data since the mirror last agreed with it: an opt-out either knows holds.
            out = out or mirror
        if out != mirror:
            await self.local.set_opt_out(platform, user_id, out)
        return out

    async def set_muted(self, conversation: str, persona_id: str, muted: bool) -> None:
        await self.local.set_muted(conversation, persona_id, muted)
        ok, _ = await self._try(lambda: self.primary.set_muted(conversation, persona_id, muted))
        if not ok or (conversation, persona_id) in self.journal.muted:
            self._journal(lambda j: j.muted.__setitem__((conversation, persona_id), muted))

    async def muted(self, conversation: str) -> frozenset[str]:
        got = await self._read_at(lambda: self.primary.muted_at(conversation))
        mirror = await self.local.muted(conversation)
        if got is None:
            return mirror
        out, lost = got
        if lost:
            out |= mirror
        if out != mirror:
            for pid in mirror - out:
                await self.local.set_muted(conversation, pid, False)
            for pid in out - mirror:
                await self.local.set_muted(conversation, pid, True)
        return out

    async def followers(self, platform: str, user_id: str) -> tuple[str, ...] | None:
        got = await self._read_at(lambda: self.primary.followers_at(platform, user_id))
        if got is None:
            return await self.local.followers(platform, user_id)
        out, lost = got
        if lost and out is None:
            out = await self.local.followers(platform, user_id)
        await self.local.set_followers(platform, user_id, out)
        return out

    async def set_followers(self, platform: str, user_id: str, persona_ids: tuple[str, ...] | None) -> None:
        await self.local.set_followers(platform, user_id, persona_ids)
        ok, _ = await self._try(lambda: self.primary.set_followers(platform, user_id, persona_ids))
        if not ok or (platform, user_id) in self.journal.followers:
            self._journal(lambda j: j.followers.__setitem__((platform, user_id), persona_ids))

    async def first_contact(self, platform: str, persona_id: str, user_id: str, now: float) -> bool:
        ok, first = await self._try(lambda: self.primary.first_contact(platform, persona_id, user_id, now))
        local_first = await self.local.first_contact(platform, persona_id, user_id, now)
        # While Redis is away, "first" is as far as this process knows: at worst someone is told twice.
        return bool(first) if ok else local_first

    async def first_told(self, platform: str, persona_id: str, user_id: str) -> float | None:
        ok, at = await self._try(lambda: self.primary.first_told(platform, persona_id, user_id))
        return at if ok else await self.local.first_told(platform, persona_id, user_id)

    async def add_usage(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        ok, totals = await self._try(lambda: self.primary.add_usage(day, deltas))
        if ok and totals is not None:
            self._usage_seen = {day: totals}
            return totals

        def add(j: Journal) -> None:
            pending = j.usage.setdefault(day, {})
            for key, n in deltas.items():
                pending[key] = pending.get(key, 0) + n

        self._journal(add)
        # The shared totals last seen plus what this process spent since: the best guess at budgets.
        merged = dict(self._usage_seen.get(day, {}))
        for key, n in self.journal.usage.get(day, {}).items():
            merged[key] = merged.get(key, 0) + n
        return merged

    async def add_daily(self, day: str, key: str, deltas: Mapping[str, int]) -> dict[str, int]:
        ok, counters = await self._try(lambda: self.primary.add_daily(day, key, deltas))
        if ok and counters is not None:
            return counters
        # Healthy-use counters are a courtesy, not a promise: during an outage they count locally
        # and are not replayed (a nudge a little late or early is no loss).
        return await self.local.add_daily(day, key, deltas)

    def _journal(self, write: Callable[[Journal], object]) -> None:
        if len(self.journal) >= self.journal.limit:
            log.error("redis outage journal full (%d entries): dropping a write", len(self.journal))
            return
        write(self.journal)
        if self.health.up and (self._drainer is None or self._drainer.done()):
            # Slow, not down: no recovery will replay this, so it is drained in the background.
            self._drainer = asyncio.get_running_loop().create_task(self._drain(), name="botfleet-journal")

    async def _drain(self) -> None:
        """Replay what was journaled while Redis was up but slow, once it is usable again; an outage
        hands the journal over to the recovery hook (`_replay`)."""
        delay, cap = self.health.backoff
        while len(self.journal):
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            if not self.health.up:
                return
            if not self.health.usable:
                continue
            try:
                # Off the message path: it may take longer than a handler's budget.
                async with asyncio.timeout(DRAIN_TIMEOUT):
                    await self._replay_journal()
            except FAILURES as exc:
                log.debug("replaying the journal failed, retrying: %r", exc)
                delay = min(delay * 2, cap)

    async def _replay_journal(self) -> None:
        # One replay at a time: the drain and the recovery hook must not add the same usage twice.
        async with self._journal_lock:
            await self.journal.replay(self.primary, self._forget_everywhere, self._saw_usage)

    def _saw_usage(self, day: str, totals: dict[str, int]) -> None:
        self._usage_seen = {day: totals}

    async def _replay(self) -> None:
        """Runs before Redis is trusted again; an entry leaves the journal only once Redis has it."""
        # A restarted Redis without persistence has lost every choice: those known here go back first,
        # then the outage's own writes, which are newer.
        await self.epochs.restore()
        await self._replay_journal()
        # The outage's turns are not needed once Redis is back (history reads Redis then).
        self._turns = self._new_mirror()

    async def close(self) -> None:
        for task in (self._listener, self._drainer):
            if task is not None:
                await stop_task(task)
        await self.epochs.close()
        await self.mirror.close()
        await self.primary.close()
        await self.local.close()
        await self.health.release_user()


def open_redis_state(cfg: FleetConfig, *, prefix: str = PREFIX) -> tuple[FallbackStore, FallbackRateLimiter]:
    """The fleet's store and limiter on the Redis at cfg.store, each falling back to local state."""
    client = make_client(cfg.store)
    health = RedisHealth(client)
    store = FallbackStore(
        RedisStore(
            client,
            prefix=prefix,
            history_size=cfg.fleet.history_size,
            retention_seconds=cfg.retention_days * 86400.0,
        ),
        health,
    )
    limiter = FallbackRateLimiter(RedisRateLimiter(client, prefix=prefix), health)
    return store, limiter
