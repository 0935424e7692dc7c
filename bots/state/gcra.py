"""Rate limits as GCRA (generic cell rate algorithm): one "theoretical arrival time" per key.

A limit of N per period P has emission interval T = P/N and lets a burst of N through. A request
of cost c at time now is allowed when max(tat, now) + c*T - now <= P; allowing it stores the new
tat. A cooldown of S seconds is simply 1 per S. The limiter decides for several candidates at
once: each candidate is a list of keys that must all have room, candidates are admitted in order,
only admitted ones consume, and at most `max_grants` are admitted. That is the whole routing
decision in one atomic step (one Redis round trip in the Redis implementation)."""

from __future__ import annotations

from bots.core.ports import Rate


def gcra_check(tat: float | None, rate: Rate, now: float) -> tuple[bool, float, float]:
    """Returns (allowed, new_tat, retry_after) for one key; new_tat is only stored when allowed."""
    interval = rate.period / rate.limit
    base = now if tat is None or tat < now else tat
    new_tat = base + interval * rate.cost
    allow_at = new_tat - rate.period
    if allow_at <= now + 1e-9:
        return True, new_tat, 0.0
    return False, tat if tat is not None else now, allow_at - now
