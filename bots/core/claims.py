"""The fleet's side of claims: a message is claimed when it arrives and done only when every action
of its plan has an outcome, so a process that dies mid-answer leaves it to another one.

With a shared store (Redis) the keeper records the decided actions in the claim, renews the claims
of the plans still being carried out, and takes over the claims of processes that stopped renewing
theirs (they died): their events are answered here, from the actions they had decided (or decided
afresh, when they died before deciding). A clean shutdown hands back what it could not finish.
Without a shared store a claim is only the store's dedupe: nobody else could take anything over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from bots.core.codec import BadPayload, decode_claim, encode_claim
from bots.core.events import Action, Event
from bots.core.plan import Plan
from bots.core.ports import Claims, Store

if TYPE_CHECKING:
    from bots.core.fleet import Fleet

log = logging.getLogger("botfleet.claims")

# Claims taken over per tick: a burst left by a dead process is answered over a few ticks.
TAKE_BATCH = 20
# How long a shutdown waits for the last claim writes (each is bounded by the store's own timeout).
CLOSE_SECONDS = 5.0
# The note of a plan for an event already claimed (Fleet.handle).
DUPLICATE = "duplicate"


class StoreDedupe:
    """Claims that are only the store's dedupe, for a fleet that shares its store with nobody."""

    shared = False

    def __init__(self, store: Store) -> None:
        self.store = store

    async def claim(self, key: str, payload: str, owner: str, lease: float, keep: float, now: float) -> bool:
        return await self.store.first_seen(key, keep, now)

    async def update(self, key: str, owner: str, payload: str) -> None:
        return None

    async def renew(self, keys: Sequence[str], owner: str, lease: float, now: float) -> list[str]:
        return []

    async def done(self, key: str, owner: str) -> None:
        return None

    async def release(self, key: str, owner: str) -> None:
        return None

    async def take_expired(self, owner: str, lease: float, now: float, limit: int) -> list[tuple[str, str]]:
        return []

    async def close(self) -> None:
        return None


@dataclass(slots=True)
class _Open:
    """A claimed event whose plan is being carried out."""

    event: Event
    # Actions without a final outcome: still running, or cancelled by a shutdown (handed back).
    left: list[Action]
    running: int
    # Cancelled by a shutdown: handed back for another process instead of done.
    cancelled: bool = False
    lost: bool = False


class ClaimKeeper:
    def __init__(self, fleet: Fleet, claims: Claims) -> None:
        self.fleet = fleet
        self.claims = claims
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._open: dict[str, _Open] = {}
        # The newest write of each claim: writes of one claim run in order (update before done).
        self._last: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.taken_over = 0

    @property
    def lease(self) -> float:
        # The account lease time: a message is taken over about as soon as the account it came in on.
        return self.fleet.config.fleet.lease_seconds

    async def claim(self, event: Event, now: float) -> bool:
        keep = self.fleet.config.fleet.dedupe_seconds
        return await self.claims.claim(event.key, encode_claim(event), self.owner, self.lease, keep, now)

    def abandon(self, key: str) -> None:
        """Handling failed: done, or every process in turn would take it over and fail the same way."""
        if self.claims.shared:
            self._write(key, partial(self.claims.done, key, self.owner))

    def opened(self, plan: Plan) -> None:
        """The plan is about to be carried out: record its actions, or finish at once if it has none."""
        if not self.claims.shared or plan.note == DUPLICATE or plan.settled:
            return  # a duplicate's claim is somebody else's business (or this process's, elsewhere)
        key = plan.event.key
        if not plan.actions:
            self._write(key, partial(self.claims.done, key, self.owner))
            return
        entry = self._open[key] = _Open(plan.event, list(plan.actions), len(plan.actions))
        self._save(key, entry)

    def settled(self, key: str, action: Action, outcome: str) -> None:
        """One action has an outcome; the claim is done (or handed back) when the last one has."""
        entry = self._open.get(key)
        if entry is None:
            return
        entry.running -= 1
        if outcome == "cancelled":
            entry.cancelled = True
        else:
            entry.left.remove(action)
        if entry.running > 0:
            if outcome != "cancelled":
                self._save(key, entry)
            return
        del self._open[key]
        if entry.cancelled:
            self._save(key, entry)
            self._write(key, partial(self.claims.release, key, self.owner))
        else:
            self._write(key, partial(self.claims.done, key, self.owner))

    def _save(self, key: str, entry: _Open) -> None:
        payload = encode_claim(entry.event, entry.left)
        self._write(key, partial(self.claims.update, key, self.owner, payload))

    def _write(self, key: str, op: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(self._after(self._last.get(key), op))
        self._last[key] = task
        task.add_done_callback(lambda t: self._last.pop(key) if self._last.get(key) is t else None)

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None, op: Callable[[], Awaitable[None]]) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await op()
        except Exception:
            log.exception("writing a claim failed")

    # --- renewing and taking over -----------------------------------------------------------------

    def start(self) -> None:
        if self.claims.shared and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="botfleet-claims")

    async def _run(self) -> None:
        while True:
            await self.fleet.sleep(self.lease / 4)
            try:
                await self.tick()
            except Exception:
                log.exception("claims tick failed")

    async def tick(self) -> None:
        """Renew the claims being answered; take over those of dead processes (unless stopping)."""
        now = self.fleet.clock()
        if self._open:
            for key in await self.claims.renew(list(self._open), self.owner, self.lease, now):
                entry = self._open.get(key)
                if entry is not None and not entry.lost:
                    entry.lost = True
                    log.warning("claim on %s lapsed and another process took it over", key)
        if not self.fleet.accepting:
            return
        for key, payload in await self.claims.take_expired(self.owner, self.lease, now, TAKE_BATCH):
            await self._take_over(key, payload)

    async def _take_over(self, key: str, payload: str) -> None:
        if key in self._open:
            return  # its own claim, whose renewal came late: it is being answered here already
        try:
            event, actions = decode_claim(payload)
        except BadPayload as exc:
            log.warning("claim on %s has a payload this version cannot read (%s): dropped", key, exc)
            self.abandon(key)
            return
        self.taken_over += 1
        log.warning("taking over %s: the process answering it died or handed it back", key)
        try:
            await self.fleet.resume(event, actions)
        except Exception:
            log.exception("answering %s (taken over) failed", key)
            self.abandon(key)

    async def close(self) -> None:
        """Stop renewing; wait for the last writes; hand back whatever is still open."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for key in list(self._open):
            self._write(key, partial(self.claims.release, key, self.owner))
        self._open.clear()
        if self._last:
            await asyncio.wait(list(self._last.values()), timeout=CLOSE_SECONDS)
        await self.claims.close()
