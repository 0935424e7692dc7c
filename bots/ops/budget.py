"""Connect budgets: platforms that limit how many sessions an account may start in a window.

Discord allows each bot a number of gateway identifies per day (`session_start_limit` in
GET /gateway/bot: total, remaining, reset_after). Spending them all locks the bot out until the
window resets, so a fleet that reconnects too eagerly (lease churn, crash loops) must stop early and
keep a reserve for recovery. An adapter opts in with an optional method, found with getattr so that
adapters without such a limit need nothing:

    async def connect_budget(self, account: str) -> tuple[int, int, float] | None

returning (remaining, total, seconds until the window resets) as the platform reports them, or None
when the platform has no such limit.

With Redis, connects are also counted in `{prefix}identify:{account}`, a hash (`used`: connects made
by any process in the window, at least what the platform reports as used; `warned`: set once the
refusal has been logged) whose TTL is the platform's reset_after when the window's first count is
made, so the count and the one log line per window expire with the platform's window. Counting
ourselves keeps the decision right when the platform's figure lags behind our own connects. The
counting lives with the leases (bots/ops/leases.py, the Redis side): this module imports no Redis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

log = logging.getLogger("botfleet.budget")

# Kept back for recovery: this share of the platform's total, but at least RESERVE_FLOOR (never more
# than half the total, so that a small limit still allows connecting).
RESERVE_FRACTION = 0.05
RESERVE_FLOOR = 10
# How long asking the platform may take before connecting goes ahead without an answer.
ASK_TIMEOUT = 10.0


class ConnectBudget(NamedTuple):
    remaining: int
    total: int
    reset_after: float  # seconds until the platform's window resets


class Decision(NamedTuple):
    allow: bool
    used: int
    total: int
    reserve: int
    reset_after: float
    first_refusal: bool


def budget_key(account: str) -> str:
    """The account whose budget a connect spends: shards of one token (`discord:host#2/4`) share it."""
    return account.partition("#")[0]


def reserve_for(total: int, fraction: float = RESERVE_FRACTION, floor: int = RESERVE_FLOOR) -> int:
    return min(total // 2, max(floor, math.ceil(total * fraction)))


async def ask(adapter: object, account: str) -> ConnectBudget | None:
    """The platform's budget for the account, or None (no such limit, or no answer: connect anyway,
    since the platform itself refuses a connect over the limit; this check only keeps a reserve)."""
    hook: Callable[[str], Any] | None = getattr(adapter, "connect_budget", None)
    if hook is None:
        return None
    try:
        async with asyncio.timeout(ASK_TIMEOUT):
            got = await hook(account)
        if got is None:
            return None
        remaining, total, reset_after = got
        return ConnectBudget(int(remaining), int(total), float(reset_after))
    except Exception as exc:
        log.warning("%s: could not read its connect budget (%s); connecting without it", account, exc)
        return None


def until(seconds: float, now: Callable[[], float] = time.time) -> str:
    return datetime.fromtimestamp(now() + seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def refusal_line(account: str, d: Decision) -> str:
    return (
        f"{account}: {d.used} of {d.total} session starts (gateway identifies) used in this window; "
        f"not connecting until {until(d.reset_after)} to keep the last {d.reserve} for recovery"
    )


# Counts a connect fleet-wide and decides: (account, the platform's budget, reserve) -> the decision, or
# None when the count is unavailable (then the platform's figures alone decide).
Counter = Callable[[str, ConnectBudget, int], Awaitable["Decision | None"]]


class ConnectGate:
    """Decides whether an account may start a session now: with a counter, counting connects
    fleet-wide (see the module docstring); without one, from the platform's figures alone."""

    def __init__(
        self,
        counter: Counter | None = None,
        *,
        reserve_fraction: float = RESERVE_FRACTION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counter = counter
        self.reserve_fraction = reserve_fraction
        self.clock = clock
        self._warned: dict[str, float] = {}  # without Redis: account -> when its window resets

    async def check(self, adapter: object, account: str) -> float | None:
        """None when the account may connect now (the connect is counted); else how many seconds to
        wait before asking again. Logs one line per account per window when it refuses."""
        budget = await ask(adapter, account)
        if budget is None:
            return None
        decision = await self._decide(account, budget)
        if decision.allow:
            return None
        if decision.first_refusal:
            log.warning("%s", refusal_line(account, decision))
        return max(decision.reset_after, 1.0)

    async def _decide(self, account: str, b: ConnectBudget) -> Decision:
        reserve = reserve_for(b.total, self.reserve_fraction)
        if self._counter is not None and (counted := await self._counter(account, b, reserve)) is not None:
            return counted
        return self._local(account, b, reserve)

    def _local(self, account: str, b: ConnectBudget, reserve: int) -> Decision:
        used = b.total - b.remaining
        if b.remaining > reserve:
            return Decision(True, used + 1, b.total, reserve, b.reset_after, False)
        now = self.clock()
        first = self._warned.get(account, 0.0) <= now
        if first:
            self._warned[account] = now + b.reset_after
        return Decision(False, used, b.total, reserve, b.reset_after, first)
