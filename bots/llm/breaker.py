"""Protection for the LLM endpoint: a circuit breaker and a retry budget.

When the endpoint fails again and again, queueing more calls only lengthens the outage for
everyone (and the bill, where failures are billed). The breaker opens after `failures`
consecutive failed calls: for `open_seconds` no call is made and personas stay quiet at plan
time. Then exactly one trial call goes through (half-open); its success closes the breaker, its
failure opens it again. The retry budget keeps retries a small share of calls (the Finagle /
gRPC "retry budget"), so a struggling endpoint is not hit with a multiple of the normal load.

Only endpoint faults count against the breaker: a 400 for one user's words (a content filter) or a
local error says nothing about the endpoint, and counting it would let one user silence the fleet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("botfleet.llm")

# The error kinds that say the endpoint itself is unwell. Every other outcome but success (a 4xx,
# insufficient_quota, a local error, a reply cut off, no free slot) is neutral: neither counts.
_FAULTS = frozenset({"timeout", "connection", "rate_limited"})


def endpoint_fault(kind: str) -> bool:
    """True for 5xx answers, timeouts, connection errors and 429s other than insufficient_quota."""
    return kind in _FAULTS or (kind.startswith("http_5") and kind[5:].isdigit())


@dataclass(frozen=True, slots=True)
class Permit:
    trial: bool


NORMAL = Permit(False)
TRIAL = Permit(True)


class Breaker:
    """Consecutive-failure circuit breaker; `clock` is injectable so tests need not sleep."""

    def __init__(
        self,
        failures: int = 5,
        open_seconds: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.open_seconds = open_seconds
        self.clock = clock
        self._streak = 0
        self._opened_at: float | None = None
        self._trial = False
        self.opened = 0  # times it opened, for metrics and tests

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self.clock() - self._opened_at < self.open_seconds:
            return "open"
        return "half_open"

    def resting(self) -> bool:
        """True while no call may be made: the plan-time check, so no reply is queued for nothing."""
        state = self.state
        return state == "open" or (state == "half_open" and self._trial)

    def allow(self) -> Permit | None:
        """A permit for one call now, or None; in half-open only the one trial call gets one."""
        state = self.state
        if state == "closed":
            return NORMAL
        if state == "open" or self._trial:
            return None
        self._trial = True
        return TRIAL

    def record(self, permit: Permit, kind: str | None) -> None:
        """The outcome of a permitted call: None for success, else the LLMError kind."""
        if permit.trial:
            self._trial = False
        if kind is not None and not endpoint_fault(kind):
            return
        if kind is None:
            if self._opened_at is not None:
                log.info("llm circuit closed: the endpoint answers again")
            self._streak = 0
            self._opened_at = None
            return
        self._streak += 1
        # A call that started before the breaker opened and fails late does not extend the rest.
        if permit.trial or (self._opened_at is None and self._streak >= self.failures):
            self._opened_at = self.clock()
            self.opened += 1
            log.warning(
                "llm circuit open after %d failed call(s) (last: %s): no calls for %.0fs",
                self._streak,
                kind,
                self.open_seconds,
            )


class RetryBudget:
    """Each call earns `ratio` of a retry, each retry spends one whole credit.

    The balance starts empty, so from the first call on retries <= ratio * calls: a burst against an
    endpoint that is down at start-up is not retried wholesale. `reserve` caps the credit saved up in
    good times, so a long quiet stretch cannot fund a retry storm later either.
    """

    def __init__(self, ratio: float = 0.1, reserve: float = 10.0) -> None:
        self.ratio = ratio
        self.reserve = reserve
        self._balance = 0.0
        self.calls = 0
        self.retries = 0
        self.denied = 0

    def on_call(self) -> None:
        self.calls += 1
        self._balance = min(self.reserve, self._balance + self.ratio)

    def try_retry(self) -> bool:
        if self._balance < 1.0:
            self.denied += 1
            return False
        self._balance -= 1.0
        self.retries += 1
        return True
