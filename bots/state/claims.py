"""The Claims protocol in memory: one process, so a claim's owner lives as long as the claims do.

Nothing here is taken over in practice (no other process shares it); it is the local layer of the
Redis claims (bots/state/redis/claims.py) and the reference the contract tests hold both to.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(slots=True)
class _Claim:
    owner: str
    keep_until: float
    # When the owner's lease lapses; None once done.
    lease_until: float | None
    payload: str


class MemoryClaims:
    shared = False

    def __init__(self, max_claims: int = 100_000) -> None:
        self.max_claims = max_claims
        # In order of claiming, so the ones whose dedupe window passed first are at the front.
        self._claims: OrderedDict[str, _Claim] = OrderedDict()
        self._pending: dict[str, None] = {}

    def _owned(self, key: str, owner: str) -> _Claim | None:
        c = self._claims.get(key)
        return c if c is not None and c.owner == owner and c.lease_until is not None else None

    async def claim(self, key: str, payload: str, owner: str, lease: float, keep: float, now: float) -> bool:
        self._sweep(now)
        c = self._claims.get(key)
        if c is not None and c.keep_until > now:
            if c.lease_until is None or c.lease_until > now:
                return False
            # Its owner stopped renewing: whoever offers it now answers it.
            c.owner, c.lease_until, c.payload = owner, now + lease, payload
            return True
        self._claims.pop(key, None)
        self._claims[key] = _Claim(owner, now + keep, now + lease, payload)
        self._pending[key] = None
        # A flood of distinct events must not grow memory without bound: the oldest claims go first.
        while len(self._claims) > self.max_claims:
            old, _ = self._claims.popitem(last=False)
            self._pending.pop(old, None)
        return True

    def _sweep(self, now: float) -> None:
        while self._claims:
            key, c = next(iter(self._claims.items()))
            if c.keep_until > now:
                return
            del self._claims[key]
            self._pending.pop(key, None)

    async def update(self, key: str, owner: str, payload: str) -> None:
        if (c := self._owned(key, owner)) is not None:
            c.payload = payload

    async def renew(self, keys: Sequence[str], owner: str, lease: float, now: float) -> list[str]:
        lost = []
        for key in keys:
            if (c := self._owned(key, owner)) is not None:
                c.lease_until = now + lease
            else:
                lost.append(key)
        return lost

    async def done(self, key: str, owner: str) -> None:
        if (c := self._owned(key, owner)) is not None:
            c.lease_until, c.payload = None, ""
            self._pending.pop(key, None)

    async def release(self, key: str, owner: str) -> None:
        if (c := self._owned(key, owner)) is not None:
            c.lease_until = -math.inf

    async def take_expired(self, owner: str, lease: float, now: float, limit: int) -> list[tuple[str, str]]:
        self._sweep(now)
        taken: list[tuple[str, str]] = []
        for key in list(self._pending):
            if len(taken) >= limit:
                break
            c = self._claims[key]
            if c.lease_until is not None and c.lease_until <= now:
                c.owner, c.lease_until = owner, now + lease
                taken.append((key, c.payload))
        return taken

    async def close(self) -> None:
        return None
