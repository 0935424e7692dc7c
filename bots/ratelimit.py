"""Rate limits as GCRA (generic cell rate algorithm): one "theoretical arrival time" per key.

A limit of N per period P has emission interval T = P/N and lets a burst of N through. A request
of cost c at time now is allowed when max(tat, now) + c*T - now <= P; allowing it stores the new
tat. A cooldown of S seconds is simply 1 per S. The limiter decides for several candidates at
once: each candidate is a list of keys that must all have room, candidates are admitted in order,
only admitted ones consume, and at most `max_grants` are admitted. That is the whole routing
decision in one atomic step (one Redis round trip in the Redis implementation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Rate:
    key: str
    limit: int
    period: float
    # What the limit is called in decision reasons (per_minute, cooldown, channel_per_minute ...).
    label: str
    cost: float = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    # The limit that blocked, or "max_responders" when the cap on grants was reached first.
    blocked_by: str = ""
    retry_after: float = 0.0


ALLOWED = Verdict(True)
CAPPED = Verdict(False, "max_responders")


class RateLimiter(Protocol):
    async def acquire(self, candidates: Sequence[Sequence[Rate]], max_grants: int, now: float) -> list[Verdict]:
        """Admit candidates in order while every key has room and fewer than max_grants were admitted."""
        ...

    async def close(self) -> None: ...


def gcra_check(tat: float | None, rate: Rate, now: float) -> tuple[bool, float, float]:
    """Returns (allowed, new_tat, retry_after) for one key; new_tat is only stored when allowed."""
    interval = rate.period / rate.limit
    base = now if tat is None or tat < now else tat
    new_tat = base + interval * rate.cost
    allow_at = new_tat - rate.period
    if allow_at <= now + 1e-9:
        return True, new_tat, 0.0
    return False, tat if tat is not None else now, allow_at - now


class MemoryRateLimiter:
    """In-process GCRA; atomic because nothing awaits between check and consume."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._expiry_sweep = 0.0

    async def acquire(self, candidates: Sequence[Sequence[Rate]], max_grants: int, now: float) -> list[Verdict]:
        return self.acquire_now(candidates, max_grants, now)

    def acquire_now(self, candidates: Sequence[Sequence[Rate]], max_grants: int, now: float) -> list[Verdict]:
        tat = self._tat
        out: list[Verdict] = []
        granted = 0
        for rates in candidates:
            if granted >= max_grants:
                out.append(CAPPED)
                continue
            updates: dict[str, float] = {}
            verdict = ALLOWED
            for rate in rates:
                ok, new_tat, retry = gcra_check(updates.get(rate.key, tat.get(rate.key)), rate, now)
                if not ok:
                    verdict = Verdict(False, rate.label, retry)
                    break
                updates[rate.key] = new_tat
            if verdict.allowed:
                tat.update(updates)
                granted += 1
            out.append(verdict)
        if now - self._expiry_sweep > 300:
            self._sweep(now)
        return out

    def _sweep(self, now: float) -> None:
        # A tat in the past carries no information: dropping it keeps memory bounded by active keys.
        self._expiry_sweep = now
        for key in [k for k, v in self._tat.items() if v < now]:
            del self._tat[key]

    async def close(self) -> None:
        return None
