"""The in-process Pacer (bots.core.ports): platform pacing and 429 pauses for one process.

Each key keeps the slots booked on it, newest last, at most `burst` of them. A new slot on a key may
not come before its newest slot (slots of a key are booked in order, which keeps the window check
below exact), nor within `burst * interval` seconds after the `burst`-th newest one: so any window of
that length holds at most `burst` slots, and with burst 1 slots are `interval` apart. That is a
sliding window rather than GCRA on purpose: GCRA with a burst of 20 per minute lets up to 39 through
in some minute, and Telegram counts per minute. One reservation books the same slot on all its keys,
so a send that one budget pushes later is never closer than `interval` to the next send on another.

bots.state.redis.pacing runs the same rules in one Lua script, for every process at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from bots.core.ports import Pace

# Reservations between sweeps of keys whose slots and pauses no longer matter.
SWEEP_EVERY = 1000


def earliest(booked: Sequence[float], pace: Pace) -> float | None:
    """The first time `pace` allows a new slot after `booked` (oldest first); None: any time."""
    if pace.interval <= 0 or not booked:
        return None
    bound = booked[-1]
    if len(booked) >= pace.burst:
        bound = max(bound, booked[-pace.burst] + pace.burst * pace.interval)
    return bound


class MemoryPacer:
    def __init__(self) -> None:
        self._booked: dict[str, deque[float]] = {}
        # Per key: when its newest slot stops mattering (slot + burst * interval).
        self._expires: dict[str, float] = {}
        self._paused: dict[str, float] = {}
        self._since_sweep = 0

    async def reserve(self, paces: Sequence[Pace], now: float) -> float:
        return self.reserve_now(paces, now)

    def reserve_now(self, paces: Sequence[Pace], now: float) -> float:
        slot = now
        for pace in paces:
            slot = max(slot, self._paused.get(pace.key, now))
            bound = earliest(self._booked.get(pace.key, ()), pace)
            if bound is not None:
                slot = max(slot, bound)
        for pace in paces:
            if pace.interval > 0:
                self._booked.setdefault(pace.key, deque(maxlen=pace.burst)).append(slot)
                self._expires[pace.key] = slot + pace.burst * pace.interval
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self._sweep(now)
        return slot - now

    async def pause(self, key: str, seconds: float, now: float) -> None:
        self._paused[key] = max(self._paused.get(key, now), now + seconds)

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        for key in [k for k, until in self._expires.items() if until <= now]:
            del self._expires[key], self._booked[key]
        for key in [k for k, until in self._paused.items() if until <= now]:
            del self._paused[key]
