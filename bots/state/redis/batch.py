"""Coalescing concurrent Redis decisions into one script call, and the flat encoding of their rates.

Shared by the limiter (limiter.py) and the admission step (admission.py): both send every decision
that arrives while earlier calls are out in one EVALSHA, so a busy process pays a fraction of a round
trip per decision.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from bots.core.ports import Rate, Verdict
from bots.state.redis.client import CALL_TIMEOUT, stop_task

# max_pending for writes that must not be refused (claim settling, first contacts).
UNCAPPED = 1 << 62


class LimiterOverloaded(RuntimeError):
    """More decisions are waiting for Redis than the batcher may queue."""


class Job(Protocol):
    """What the batcher needs of a decision: the future its caller awaits."""

    @property
    def future(self) -> asyncio.Future[Any]: ...


class Rated(Protocol):
    """A decision with rates to encode: per candidate its rates, and how many may be admitted."""

    @property
    def candidates(self) -> Sequence[Sequence[Rate]]: ...

    @property
    def max_grants(self) -> int: ...


J = TypeVar("J", bound=Job)


@dataclass(slots=True)
class LimitJob:
    candidates: Sequence[Sequence[Rate]]
    max_grants: int
    future: asyncio.Future[list[Verdict]]
    now: float = 0.0


class Batcher(Generic[J]):
    """Coalesces concurrent decisions into one script call each.

    The first decision after a quiet spell goes out on the next loop iteration (no added latency); the
    ones that arrive while `max_in_flight` calls are out ride together on the next call. Waiting jobs
    are capped, and a job whose caller gave up is dropped before it is sent, so nobody is charged for
    a decision that was made elsewhere.

    Every job gets the same `timeout`, so deadlines arrive in submission order and one timer, set for
    the oldest, serves them all: cheaper than a timer (or asyncio.timeout) per decision.
    """

    def __init__(
        self,
        send: Callable[[list[J]], Awaitable[None]],
        *,
        timeout: float | None = CALL_TIMEOUT,
        max_batch: int = 128,
        max_in_flight: int = 2,
        max_pending: int = 10_000,
    ) -> None:
        self._send = send
        self.timeout = timeout
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.max_pending = max_pending
        self._pending: deque[J] = deque()
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadlines: deque[tuple[float, asyncio.Future[Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def submit(self, job: J) -> None:
        if len(self._pending) >= self.max_pending:
            raise LimiterOverloaded(f"{len(self._pending)} decisions already waiting for Redis")
        self._pending.append(job)
        loop = asyncio.get_running_loop()
        if self.timeout is not None:
            deadline = loop.time() + self.timeout
            self._deadlines.append((deadline, job.future))
            if self._timer is None:
                self._timer = loop.call_at(deadline, self._expire)
        if not self._scheduled and self._in_flight < self.max_in_flight:
            self._scheduled = True
            loop.call_soon(self._flush)

    def _expire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue = self._deadlines
        while queue:
            deadline, future = queue[0]
            if future.done():
                queue.popleft()
            elif deadline <= now:
                queue.popleft()
                future.set_exception(TimeoutError())
            else:
                self._timer = loop.call_at(deadline, self._expire)
                return

    def _flush(self) -> None:
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._pending and self._in_flight < self.max_in_flight:
            batch: list[J] = []
            while self._pending and len(batch) < self.max_batch:
                job = self._pending.popleft()
                if not job.future.done():
                    batch.append(job)
            if not batch:
                continue
            self._in_flight += 1
            task = loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[J]) -> None:
        try:
            await self._send(batch)
        except Exception as exc:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
        finally:
            self._in_flight -= 1
            if self._pending and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            await stop_task(task)
        for job in self._pending:
            if not job.future.done():
                job.future.cancel()
        self._pending.clear()
        self._deadlines.clear()


def encode_rates(prefix: str, jobs: Sequence[Rated]) -> tuple[list[str], list[int], list[int]]:
    """The batch as the limit script's three flat arrays (see limiter.LIMIT_LUA); `prefix` goes in
    front of every key."""
    keys: list[str] = []
    limits: list[int] = []
    flat: list[int] = []
    # The hot loop of the Redis path, so it is written for speed. A key nearly always carries one
    # rate: a key seen before in the batch costs a lookup and an identity or value check, and only
    # a key used with two different rates takes the slow path through `other`.
    first: dict[str, tuple[int, Rate, int]] = {}
    other: dict[tuple[str, int, float, float], int] = {}
    append = flat.append
    for job in jobs:
        candidates = job.candidates
        flat += (job.max_grants, len(candidates))
        for rates in candidates:
            append(len(rates))
            for r in rates:
                key = r.key
                seen = first.get(key)
                if seen is None:
                    k = len(keys)
                    keys.append(prefix + key)
                    li = len(limits) >> 2
                    limits += (k, r.limit, int(r.period * 1e6 + 0.5), int(r.cost * 1e6 + 0.5))
                    first[key] = (li, r, k)
                    append(li)
                    continue
                s = seen[1]
                if s is r or (s.limit == r.limit and s.period == r.period and s.cost == r.cost):
                    append(seen[0])
                    continue
                spec = (key, r.limit, r.period, r.cost)
                li = other.get(spec, -1)
                if li < 0:
                    li = other[spec] = len(limits) >> 2
                    limits += (seen[2], r.limit, int(r.period * 1e6 + 0.5), int(r.cost * 1e6 + 0.5))
                append(li)
    return keys, limits, flat
