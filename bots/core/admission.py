"""The Admission port composed from the other ports: claim, opt-out, append, mutes, limits in turn.

This is what a fleet on memory state uses, and what the Redis admission falls back to when Redis is
away or slow: the same calls the pipeline made one after another before the step was one script.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import cast

from bots.core.ports import MUTED, Admission, Admitted, Claims, Entry, RateLimiter, Store, Verdict

DUPLICATE_ENTRY = Admitted(claimed=False)

log = logging.getLogger("botfleet.admission")


def shared_admission(store: Store, claims: Claims, limiter: RateLimiter) -> Admission | None:
    """The store's own one-call admission, if it has one (the Redis store does, for its own limiter)."""
    make = getattr(store, "admission_for", None)
    return None if make is None else cast("Admission | None", make(claims, limiter))


class PortAdmission:
    def __init__(self, claims: Claims, store: Store, limiter: RateLimiter) -> None:
        self.claims = claims
        self.store = store
        self.limiter = limiter

    async def admit(self, entry: Entry, now: float) -> Admitted:
        claimed = await self.claims.claim(entry.key, entry.payload, entry.owner, entry.lease, entry.keep, now)
        if not claimed:
            return DUPLICATE_ENTRY
        return await self.admit_claimed(entry, now)

    async def admit_claimed(self, entry: Entry, now: float) -> Admitted:
        """The rest of the step, for a claim already won (or let through unchecked)."""
        got = await self._admit_claimed(entry, now)
        if entry.care and entry.user and not got.opted_out:
            until = await self._care_until(entry, now)
            if until is not None:  # most people are not in care: no copy for them
                got = dataclasses.replace(got, care_until=until)
        return got

    async def _admit_claimed(self, entry: Entry, now: float) -> Admitted:
        if entry.user and await self.store.is_opted_out(entry.platform, entry.user):
            return Admitted(claimed=True, opted_out=True, settled=await self._settle(entry.key, entry.owner))
        if entry.turn is not None:
            await self.store.append(entry.conversation, entry.turn)
        settled = await self._settle(entry.key, entry.owner) if entry.settle else False
        if not entry.candidates and entry.settle:
            return Admitted(claimed=True, settled=settled)
        muted = await self.store.muted(entry.conversation)
        if entry.parent and entry.parent != entry.conversation:
            muted |= await self.store.muted(entry.parent)
        verdicts = await self._limit(entry, muted, now)
        if entry.settle_unless_granted and not any(v.allowed for v in verdicts):
            settled = await self._settle(entry.key, entry.owner)
        return Admitted(claimed=True, muted=muted, verdicts=verdicts, settled=settled)

    async def close(self) -> None:
        return None  # the ports it is made of are closed by their owner

    async def _care_until(self, entry: Entry, now: float) -> float | None:
        try:
            return await self.store.care_until(entry.platform, entry.user, entry.conversation, now)
        except Exception:
            # Unknown counts as in care: at worst a persona keeps quiet, or adds care to its prompt.
            log.exception("care mode could not be read; treating the person as in care")
            return math.inf

    async def _settle(self, key: str, owner: str) -> bool:
        # Nothing will come of this message: its claim is done now, not when a plan is carried out.
        if self.claims.shared:
            await self.claims.done(key, owner)
        return True

    async def _limit(self, entry: Entry, muted: frozenset[str], now: float) -> tuple[Verdict, ...]:
        """A muted candidate takes no slot: only the others go to the limiter, in the order given."""
        open_ = [i for i, pid in enumerate(entry.candidates) if pid not in muted]
        got = await self.limiter.acquire([entry.rates[i] for i in open_], entry.max_grants, now) if open_ else []
        verdicts = [MUTED] * len(entry.candidates)
        for i, verdict in zip(open_, got, strict=True):
            verdicts[i] = verdict
        return tuple(verdicts)
