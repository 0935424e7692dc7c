"""The Admission port in Redis: a whole message decision in one script call.

One script takes every message that arrived while earlier calls were out (`batch.Batcher`): per
message the claim (the dedupe key and, with shared claims, the pending entry), the author's opt-out,
the history append, the author's care end for the conversation (care.py's hash, read for the safety
desk), the mutes of the channel and its parent, and then the GCRA pass over every candidate that is
not muted (limiter.GCRA_LUA), all on one `TIME`. So a busy process pays a fraction
of a round trip per message, and a message nobody is triggered by costs its share of the same call.

The script runs only against the data epoch this process trusts (epoch.py): a changed or missing
epoch means Redis lost data, and the message is decided step by step instead (`PortAdmission` over
the fallback store, limiter and claims), whose reads notice the loss and write the choices back.
When Redis is away or slow the same step-by-step path answers from local state; a call that timed
out may have landed, so its message is let through unchecked, as the store's dedupe does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from redis.exceptions import RedisError

from bots.core.admission import DUPLICATE_ENTRY, PortAdmission
from bots.core.claims import StoreDedupe
from bots.core.ports import ALLOWED, CAPPED, MUTED, Admitted, Claims, Entry, Rate, Verdict
from bots.state.claims import MemoryClaims
from bots.state.redis.admissionscript import ADMIT_LUA
from bots.state.redis.batch import Batcher, LimiterOverloaded, encode_rates
from bots.state.redis.client import CALL_TIMEOUT, FAULTS

if TYPE_CHECKING:
    from bots.state.redis.fallback import FallbackRateLimiter, FallbackStore


@runtime_checkable
class LayeredClaims(Protocol):
    """Claims with a local layer in front of Redis (claims.FallbackClaims)."""

    shared: bool
    local: MemoryClaims

    async def claim_shared(self, key: str, payload: str, owner: str, lease: float, keep: float, now: float) -> bool: ...


@dataclass(slots=True)
class _AdmitJob:
    entry: Entry
    settle: bool
    future: asyncio.Future[Admitted | None]
    now: float

    @property
    def candidates(self) -> Sequence[Sequence[Rate]]:
        return self.entry.rates

    @property
    def max_grants(self) -> int:
        return self.entry.max_grants


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisAdmission:
    """One script call per batch of concurrent messages; the step-by-step fallback path otherwise."""

    def __init__(
        self,
        store: FallbackStore,
        limiter: FallbackRateLimiter,
        claims: Claims,
        *,
        timeout: float | None = CALL_TIMEOUT,
        max_batch: int = 128,
        max_in_flight: int = 2,
        max_pending: int = 10_000,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.health = store.health
        # Shared claims leave a pending entry for others to take over; a dedupe-only fleet does not.
        self.claims = claims if isinstance(claims, LayeredClaims) else None
        self.pieces = PortAdmission(claims if self.claims else StoreDedupe(store), store, limiter)
        primary = store.primary
        self._p = primary.prefix
        self._script = primary.client.register_script(ADMIT_LUA)
        self._batcher = Batcher[_AdmitJob](
            self._send, timeout=timeout, max_batch=max_batch, max_in_flight=max_in_flight, max_pending=max_pending
        )
        # Script calls and messages carried, for bench/pipeline.py.
        self.calls = 0
        self.entries = 0

    async def admit(self, entry: Entry, now: float) -> Admitted:
        if not await self._claim_local(entry, now):
            return DUPLICATE_ENTRY  # this process saw it already: nobody else needs asking
        store = self.store
        store.listen()
        if not self.health.usable or store.epochs.epoch is None:
            return await self._step_by_step(entry, now)
        started = time.monotonic()
        future: asyncio.Future[Admitted | None] = asyncio.get_running_loop().create_future()
        try:
            self._batcher.submit(_AdmitJob(entry, entry.settle or self.claims is None, future, now))
            got = await future
        except LimiterOverloaded:
            return await self.pieces.admit_claimed(entry, now)
        except FAULTS as exc:
            self.health.failed(exc, started)
            # It may have landed, or not: answered unchecked, from local state (Redis is not usable now).
            if self.health.up:
                self.store.dedupe_unchecked += 1
            return await self.pieces.admit_claimed(entry, now)
        except RedisError as exc:
            self.health.bad_command(exc)
            return await self.pieces.admit_claimed(entry, now)
        self.health.last_ok = time.monotonic()
        if got is None:
            return await self._step_by_step(entry, now)
        return await self._mirror(entry, got, now)

    async def close(self) -> None:
        await self._batcher.close()

    async def _claim_local(self, entry: Entry, now: float) -> bool:
        if self.claims is not None:
            return await self.claims.local.claim(entry.key, entry.payload, entry.owner, entry.lease, entry.keep, now)
        return await self.store.local.first_seen(entry.key, entry.keep, now)

    async def _step_by_step(self, entry: Entry, now: float) -> Admitted:
        if self.claims is not None:
            e = entry
            claimed = await self.claims.claim_shared(e.key, e.payload, e.owner, e.lease, e.keep, now)
        else:
            claimed = await self.store.first_seen_shared(entry.key, entry.keep, now)
        if not claimed:
            return DUPLICATE_ENTRY
        return await self.pieces.admit_claimed(entry, now)

    async def _mirror(self, entry: Entry, got: Admitted, now: float) -> Admitted:
        """Keep the local copy of the choices and care Redis just answered with, as the store's reads
        do; the care end is the later of the two (fallback_care.py: a write still journaled counts)."""
        local = self.store.local
        if entry.care and entry.user and got.claimed and not got.opted_out:
            shared = got.care_until
            mine = await local.care_until(entry.platform, entry.user, entry.conversation, now)
            if shared is not None and (mine is None or shared > mine):
                await local.set_care(entry.platform, entry.user, entry.conversation, shared, now)
            elif shared != mine:
                got = dataclasses.replace(got, care_until=mine)
        if got.claimed and entry.user and await local.is_opted_out(entry.platform, entry.user) != got.opted_out:
            await local.set_opt_out(entry.platform, entry.user, got.opted_out)
        if got.claimed and not got.opted_out and not entry.settle and not entry.parent:
            mirror = await local.muted(entry.conversation)
            for pid in mirror ^ got.muted:
                await local.set_muted(entry.conversation, pid, pid in got.muted)
        return got

    async def _send(self, jobs: list[_AdmitJob]) -> None:
        store = self.store.primary
        rl = self._p + "rl:"
        keys, limits, flat = encode_rates(rl, jobs)
        msgs = []
        for job in jobs:
            e = job.entry
            turn = e.turn
            msgs.append(
                [
                    e.key,
                    e.payload,
                    e.owner,
                    _ms(e.lease),
                    _ms(e.keep),
                    1 if job.settle else 0,
                    e.platform,
                    e.user,
                    e.conversation,
                    e.parent,
                    "" if turn is None else json.dumps(turn.to_dict(), separators=(",", ":")),
                    "" if turn is None else turn.user_id,
                    "0" if turn is None else repr(turn.at - store.retention_seconds),
                    list(e.candidates),
                    1 if e.settle else 0,
                    1 if e.settle_unless_granted else 0,
                    1 if e.care and e.user else 0,
                ]
            )
        self.calls += 1
        self.entries += len(jobs)
        primary = self.limiter.primary
        pinned = "" if primary.pinned_time is None else str(round(primary.pinned_time * 1e6))
        on_tats = primary.on_tats
        dumps = json.dumps
        args = [
            self._p,
            self.store.epochs.epoch or "",
            pinned,
            "1" if on_tats else "",
            dumps(msgs),
            dumps(keys),
            dumps(limits),
            dumps(flat),
            store.history_size,
            int(store.retention_seconds * 1000),
        ]
        out = json.loads(await self._script(args=args))
        if out == "stale":
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(None)
            return
        pos = _settle(jobs, out)
        if on_tats is not None:
            cut = len(rl)
            on_tats(jobs[-1].now, {keys[out[i]][cut:]: out[i + 1] / 1e6 for i in range(pos, len(out), 2)})


def _care_end(stored: str, now: float) -> float | None:
    """A care end as the script read it, dropped once lapsed (care.py's care_until, on our clock)."""
    if not stored:
        return None
    until = float(stored)
    return until if until > now else None


def _settle(jobs: list[_AdmitJob], out: list[int | str]) -> int:
    """Hands each job its answer from the script's flat reply; returns where the answers end."""
    pos = 0
    for job in jobs:
        status = int(out[pos])
        care = str(out[pos + 1])
        n = int(out[pos + 2])
        muted = frozenset(str(m) for m in out[pos + 3 : pos + 3 + n])
        pos += 3 + n
        ncand = int(out[pos])
        pos += 1
        verdicts: list[Verdict] = []
        rates = job.entry.rates
        for c in range(ncand):
            code, retry = int(out[pos]), int(out[pos + 1])
            pos += 2
            if code == 0:
                verdicts.append(ALLOWED)
            elif code == -1:
                verdicts.append(CAPPED)
            elif code == -2:
                verdicts.append(MUTED)
            else:
                verdicts.append(Verdict(False, rates[c][code - 1].label, retry / 1e6))
        got = Admitted(
            claimed=status != 0,
            opted_out=status == 2,
            muted=muted,
            verdicts=tuple(verdicts),
            settled=status in (2, 3) or (status == 1 and job.entry.settle),
            care_until=_care_end(care, job.now),
        )
        if not job.future.done():
            job.future.set_result(got)
    return pos
