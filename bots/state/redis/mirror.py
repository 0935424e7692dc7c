"""Every process's local copy of every opt-out, mute and follower choice, kept current.

While Redis is away, FallbackStore answers "is this person opted out?", "who is muted here?" and "whom
does this person follow?" from its local store. A copy holding only what this process happened to
read is not enough: only the process that wins a message's dedupe reads the opt-out, and during an
outage dedupe lets every message through on every process, so a process that never won one of a
person's messages would answer them. So each process loads every choice from Redis when it starts,
applies every change as it is made anywhere (published on `<prefix>choices` with the choice's write,
store.py), and reloads when it finds it missed one.

Missing one is detectable: every choice write counts `choices-version` and publishes its new value
with the change, so a process whose received versions go up one at a time has seen them all. A watch
reads the version every `interval` seconds (one GET) and reloads when it moved past the last change
seen, at most every `min_reload` seconds: a load scans the keyspace (three SCANs), and pub/sub loses
only what is published while a subscriber reconnects.

A load is bounded (`cap` choices, opt-outs first; logged when reached). It adds what Redis has, and
removes what Redis no longer has only when the load can be trusted: Redis's data kept its epoch
throughout (a Redis that lost its data lacks choices the mirror must write back, epoch.py), the cap
was not reached, and neither a change received during the load nor a journaled write not yet in
Redis (journal.py) concerns that choice, since either is newer than what the load read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bots.state.memory import Choices, MemoryStore
from bots.state.redis.client import FAILURES, stop_task
from bots.state.redis.epoch import EpochGuard
from bots.state.redis.health import RedisHealth
from bots.state.redis.journal import Journal
from bots.state.redis.store import RedisStore

log = logging.getLogger("botfleet.redis")

# A choice, flat: ("optout", platform, user) -> True, ("mute", conversation, persona) -> True,
# ("follow", platform, user) -> persona ids. A choice undone is absent.
Key = tuple[str, str, str]


def flat(choices: Choices) -> dict[Key, object]:
    out: dict[Key, object] = {("optout", platform, user): True for platform, user in choices.opted_out}
    out |= {("mute", conv, pid): True for conv, pids in choices.muted for pid in pids}
    out |= {("follow", platform, user): tuple(chosen) for platform, user, chosen in choices.followers}
    return out


def pending(journal: Journal) -> set[Key]:
    """The choices with a write not yet in Redis: newer than anything a load reads."""
    keys: set[Key] = {("optout", *k) for k in journal.opt_out}
    keys |= {("mute", *k) for k in journal.muted}
    return keys | {("follow", *k) for k in journal.followers}


async def apply(local: MemoryStore, key: Key, value: object) -> None:
    """Set one choice in the local store; a falsy value undoes it."""
    kind, a, b = key
    if kind == "optout":
        await local.set_opt_out(a, b, bool(value))
    elif kind == "mute":
        await local.set_muted(a, b, bool(value))
    elif kind == "follow":
        await local.set_followers(a, b, tuple(value) if isinstance(value, (list, tuple)) else None)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Scan:
    """One load of every choice in Redis, stopping at `cap` choices."""

    def __init__(self, store: RedisStore, cap: int) -> None:
        self.client = store.client
        self.prefix = store.prefix
        self.left = cap
        self.capped = False

    def _take(self) -> bool:
        if self.left <= 0:
            self.capped = True
            return False
        self.left -= 1
        return True

    async def _keys(self, kind: str) -> AsyncIterator[list[str]]:
        # The prefix is the operator's: glob characters in it must match only themselves.
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", f"{self.prefix}{kind}:") + "*"
        batch: list[str] = []
        async for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(_text(key))
            if len(batch) >= 500:
                yield batch
                batch = []
        if batch:
            yield batch

    async def run(self) -> dict[Key, object]:
        out: dict[Key, object] = {}
        for kind in ("optout", "mute", "follow"):  # opt-outs first: they matter most when capped
            start = len(self.prefix) + len(kind) + 1
            async for batch in self._keys(kind):
                if kind == "optout":
                    await self._opted_out(batch, start, out)
                else:
                    await self._batch(kind, batch, start, out)
                if self.capped:
                    return out
        return out

    async def _opted_out(self, keys: list[str], start: int, out: dict[Key, object]) -> None:
        # One set per platform, possibly large: read in pages.
        for key in keys:
            async for member in self.client.sscan_iter(key, count=1000):
                if not self._take():
                    return
                out[("optout", key[start:], _text(member))] = True

    async def _batch(self, kind: str, keys: list[str], start: int, out: dict[Key, object]) -> None:
        # Many small keys (one per conversation or person): one round trip per batch.
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.smembers(key) if kind == "mute" else pipe.get(key)
            values = await pipe.execute()
        for key, value in zip(keys, values, strict=True):
            name = key[start:]
            if kind == "mute":
                entries: list[tuple[Key, object]] = [(("mute", name, _text(pid)), True) for pid in value or ()]
            else:
                platform, _, user = name.partition(":")
                entries = [] if value is None else [(("follow", platform, user), _followers(value))]
            for choice, chosen in entries:
                if not self._take():
                    return
                out[choice] = chosen


def _followers(raw: Any) -> tuple[str, ...]:
    try:
        chosen = json.loads(raw)
    except ValueError:
        return ()
    return tuple(str(p) for p in chosen) if isinstance(chosen, list) else ()


class ChoiceMirror:
    """Keeps `local`'s opt-outs, mutes and follower choices equal to Redis's (see the module doc)."""

    def __init__(
        self,
        primary: RedisStore,
        health: RedisHealth,
        local: MemoryStore,
        epochs: EpochGuard,
        journal: Callable[[], Journal],
        *,
        interval: float = 1.0,
        min_reload: float = 10.0,
        cap: int = 200_000,
        load_timeout: float = 30.0,
    ) -> None:
        self.primary = primary
        self.health = health
        self.local = local
        self.epochs = epochs
        self.journal = journal
        self.interval = interval
        self.min_reload = min_reload
        self.cap = cap
        self.load_timeout = load_timeout
        # The version of the last change the mirror holds (None: never loaded).
        self.version: int | None = None
        self.loads = 0
        self.capped = False
        self._touched: set[Key] | None = None  # choices changed while a load runs
        self._last_attempt = -float("inf")
        # A version the watch saw in Redis that no received change has reached yet.
        self._target: int | None = None
        self._watch: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the watch. The caller subscribes `changed` to `primary.choices_channel` (one
        subscription for all of a store's channels: each holds a pooled connection for good)."""
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_loop(), name="botfleet-choices")

    async def changed(self, data: bytes) -> None:
        head, _, body = _text(data).partition(" ")
        kind, a, b, value = json.loads(body)
        key: Key = (str(kind), str(a), str(b))
        await apply(self.local, key, value)
        if self._touched is not None:
            self._touched.add(key)
        if self.version is not None and int(head) == self.version + 1:
            self.version += 1
        # Otherwise one was missed (or this one is already in a load): the watch sees the version
        # differ and reloads.

    async def _watch_loop(self) -> None:
        while True:
            if self.health.usable:
                try:
                    async with asyncio.timeout(max(self.health.timeout, 1.0)):
                        raw = await self.primary.client.get(self.primary.version_key)
                    if self._due(0 if raw is None else int(raw)):
                        await self.load()
                except FAILURES as exc:
                    log.debug("keeping the choices mirror current failed: %r", exc)
            await asyncio.sleep(self.interval * random.uniform(0.8, 1.2))

    def _due(self, current: int) -> bool:
        if self.version is None or current < self.version:
            # Never loaded, or the version went back: Redis lost its data (epoch.py writes it back).
            return self._spaced()
        if current == self.version:
            self._target = None
            return False
        # A change not received yet may still be on its way through pub/sub: it gets one tick.
        behind = self._target is not None and self.version < self._target
        if not behind:
            self._target = current
        return behind and self._spaced()

    def _spaced(self) -> bool:
        return time.monotonic() - self._last_attempt >= self.min_reload

    async def _state(self) -> tuple[int, str | None]:
        async with self.primary.client.pipeline(transaction=False) as pipe:
            pipe.get(self.primary.version_key)
            pipe.get(self.primary.epoch_key)
            version, epoch = await pipe.execute()
        return 0 if version is None else int(version), None if epoch is None else _text(epoch)

    async def load(self) -> None:
        """Read every choice from Redis into the local store (see the module doc for what is kept)."""
        self._last_attempt = time.monotonic()
        self._touched = set()
        scan = _Scan(self.primary, self.cap)
        try:
            async with asyncio.timeout(self.load_timeout):
                version, before = await self._state()
                found = await scan.run()
                _, after = await self._state()
            touched = self._touched
        finally:
            self._touched = None
        trusted = not scan.capped and before is not None and before == after == self.epochs.epoch
        await self._apply(found, touched | pending(self.journal()), trusted)
        self.version = version
        self._target = None
        self.loads += 1
        if scan.capped and not self.capped:
            log.warning("choices mirror capped at %d choices: beyond them, an outage forgets some", self.cap)
        self.capped = scan.capped

    async def _apply(self, found: dict[Key, object], newer: set[Key], trusted: bool) -> None:
        have = flat(self.local.choices())
        for key, value in found.items():
            if key not in newer and have.get(key) != value:
                await apply(self.local, key, value)
        if not trusted:
            return
        for key in have.keys() - found.keys() - newer:
            await apply(self.local, key, None)

    async def close(self) -> None:
        if self._watch is not None:
            await stop_task(self._watch)
