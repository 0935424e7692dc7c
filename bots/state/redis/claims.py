"""The Claims protocol in Redis, and its fallback while Redis is away.

Keys, under the prefix (listed with the others in bots/state/redis/__init__.py):

- `seen:<platform>:<event>` (string, fleet.dedupe_seconds): the dedupe key the store's `first_seen`
  writes too, here holding the claim's owner, so processes that only dedupe and processes that claim
  agree on what is a duplicate.
- `claims` (zset): pending claims, scored by when their owner's lease lapses (ms, Redis time).
- `claims:payload` (hash): a pending claim's event and actions (bots.core.codec).

Both collections expire dedupe_seconds after the last claim, and every entry leaves them when it is
done, or when a takeover finds its dedupe key gone (too old to answer). Every script reads the
time from Redis (`TIME`), so processes with skewed clocks agree on whose lease lapsed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from redis.asyncio import Redis

from bots.state.claims import MemoryClaims
from bots.state.redis.batch import UNCAPPED, Batcher
from bots.state.redis.client import FAILURES, PREFIX
from bots.state.redis.fallback import FallbackStore
from bots.state.redis.health import RedisHealth

log = logging.getLogger("botfleet.redis")

T = TypeVar("T")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: seen key, pending zset, payload hash. ARGV: event key, payload, owner, lease ms, keep ms.
CLAIM_LUA = (
    _NOW
    + """
if not redis.call('SET', KEYS[1], ARGV[3], 'NX', 'PX', ARGV[5]) then
  local lapses = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if not lapses or tonumber(lapses) > now then return 0 end
  -- Offered again (a redelivery) while its owner is dead: the claimer answers it.
  redis.call('SET', KEYS[1], ARGV[3], 'KEEPTTL')
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return 1
"""
)

# KEYS: pending zset, payload hash. ARGV: seen key prefix, then per claim its event key, owner, what
# ("update", "done", "release") and payload (update only): every claim settled while earlier calls
# were out, in one call. Only the owner of a pending claim may change it.
SETTLE_MANY_LUA = """
for i = 2, #ARGV, 4 do
  local key, owner, what = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('GET', ARGV[1] .. key) == owner and redis.call('ZSCORE', KEYS[1], key) then
    if what == 'update' then
      redis.call('HSET', KEYS[2], key, ARGV[i + 3])
    elseif what == 'release' then
      redis.call('ZADD', KEYS[1], 0, key)
    else
      redis.call('ZREM', KEYS[1], key)
      redis.call('HDEL', KEYS[2], key)
    end
  end
end
return 1
"""

# KEYS: pending zset. ARGV: owner, lease ms, seen key prefix, then event keys. Returns the keys that
# are no longer this owner's (taken over, done or gone). Seen keys are derived here, like the history
# keys of FORGET_LUA (fine on a single Redis; a cluster would need hash tags).
RENEW_LUA = (
    _NOW
    + """
local lost = {}
for i = 4, #ARGV do
  local key = ARGV[i]
  if redis.call('GET', ARGV[3] .. key) == ARGV[1] and redis.call('ZSCORE', KEYS[1], key) then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), key)
  else
    lost[#lost + 1] = key
  end
end
return lost
"""
)

# KEYS: pending zset, payload hash. ARGV: owner, lease ms, limit, seen key prefix. Returns key,
# payload pairs of the claims re-owned.
TAKE_LUA = (
    _NOW
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, key in ipairs(due) do
  local seen = ARGV[4] .. key
  local payload = redis.call('HGET', KEYS[2], key)
  if payload and redis.call('EXISTS', seen) == 1 then
    redis.call('SET', seen, ARGV[1], 'KEEPTTL')
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), key)
    out[#out + 1] = key
    out[#out + 1] = payload
  else
    -- Past its dedupe window: a redelivery would count as new, so answering it now could answer twice.
    redis.call('ZREM', KEYS[1], key)
    redis.call('HDEL', KEYS[2], key)
  end
end
return out
"""
)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisClaims:
    """Claims in Redis; `now` arguments are ignored (Redis keeps the time)."""

    shared = True

    def __init__(self, client: Redis, *, prefix: str = PREFIX) -> None:
        self._client = client
        self._p = prefix
        self._claim = client.register_script(CLAIM_LUA)
        self._settle_many = client.register_script(SETTLE_MANY_LUA)
        # Claims settled while earlier settle calls are out share the next call. The caller's budget
        # (RedisHealth.call) bounds the wait, and nothing caps the queue: a shutdown hands back every
        # open claim at once, and a settle refused here would leave its claim to be taken over.
        self._settles = Batcher[_Settle](self._send_settles, timeout=None, max_pending=UNCAPPED)
        self._renew = client.register_script(RENEW_LUA)
        self._take = client.register_script(TAKE_LUA)

    def _keys(self, key: str) -> list[str]:
        return [f"{self._p}seen:{key}", f"{self._p}claims", f"{self._p}claims:payload"]

    async def claim(self, key: str, payload: str, owner: str, lease: float, keep: float, now: float) -> bool:
        got = await self._claim(keys=self._keys(key), args=[key, payload, owner, _ms(lease), _ms(keep)])
        return bool(int(got))

    async def _settle_as(self, key: str, owner: str, what: str, payload: str = "") -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settles.submit(_Settle(key, owner, what, payload, future))
        await future

    async def _send_settles(self, jobs: list[_Settle]) -> None:
        args = [f"{self._p}seen:"]
        for job in jobs:
            args += (job.key, job.owner, job.what, job.payload)
        await self._settle_many(keys=[f"{self._p}claims", f"{self._p}claims:payload"], args=args)
        for job in jobs:
            if not job.future.done():
                job.future.set_result(None)

    async def update(self, key: str, owner: str, payload: str) -> None:
        await self._settle_as(key, owner, "update", payload)

    async def done(self, key: str, owner: str) -> None:
        await self._settle_as(key, owner, "done")

    async def release(self, key: str, owner: str) -> None:
        await self._settle_as(key, owner, "release")

    async def renew(self, keys: Sequence[str], owner: str, lease: float, now: float) -> list[str]:
        if not keys:
            return []
        lost = await self._renew(keys=[f"{self._p}claims"], args=[owner, _ms(lease), f"{self._p}seen:", *keys])
        return [_text(k) for k in lost]

    async def take_expired(self, owner: str, lease: float, now: float, limit: int) -> list[tuple[str, str]]:
        keys = [f"{self._p}claims", f"{self._p}claims:payload"]
        raw = await self._take(keys=keys, args=[owner, _ms(lease), limit, f"{self._p}seen:"])
        return [(_text(raw[i]), _text(raw[i + 1])) for i in range(0, len(raw), 2)]

    async def close(self) -> None:
        await self._settles.close()


@dataclass(slots=True)
class _Settle:
    key: str
    owner: str
    what: str
    payload: str
    future: asyncio.Future[None]


class FallbackClaims:
    """Redis claims, with a local layer that answers while Redis is away or slow.

    A claim asks the local layer first (a duplicate within this process needs no round trip), then
    Redis within the time budget. When Redis cannot answer, the message is let through, as the store's
    dedupe does: a possible second reply beats a message nobody answers. Such a claim lives only
    here, so if this process dies before answering it, nobody takes it over. Renewals, settling and
    takeovers while Redis is away are skipped: the leases lapse, and another process (or this one)
    takes the claims over once Redis is back, which the owner's renewals then report as lost.
    """

    shared = True

    def __init__(self, primary: RedisClaims, health: RedisHealth, local: MemoryClaims | None = None) -> None:
        self.primary = primary
        self.health = health
        self.local = local or MemoryClaims()
        health.acquire_user()

    async def _try(self, op: Callable[[], Awaitable[T]], default: T) -> T:
        if not self.health.usable:
            return default
        try:
            return await self.health.call(op)
        except FAILURES as exc:
            log.debug("claims: redis call failed: %r", exc)
            return default

    async def claim(self, key: str, payload: str, owner: str, lease: float, keep: float, now: float) -> bool:
        if not await self.local.claim(key, payload, owner, lease, keep, now):
            return False
        return await self.claim_shared(key, payload, owner, lease, keep, now)

    async def claim_shared(self, key: str, payload: str, owner: str, lease: float, keep: float, now: float) -> bool:
        """The claim in Redis, for a key the local layer has just claimed."""
        if not self.health.up:
            return True
        # Not skipped when Redis is merely slow: like dedupe, this is a handler's one wait.
        try:
            return await self.health.call(lambda: self.primary.claim(key, payload, owner, lease, keep, now))
        except FAILURES:
            return True

    async def update(self, key: str, owner: str, payload: str) -> None:
        await self.local.update(key, owner, payload)
        await self._try(lambda: self.primary.update(key, owner, payload), None)

    async def renew(self, keys: Sequence[str], owner: str, lease: float, now: float) -> list[str]:
        await self.local.renew(keys, owner, lease, now)
        return await self._try(lambda: self.primary.renew(keys, owner, lease, now), [])

    async def done(self, key: str, owner: str) -> None:
        await self.local.done(key, owner)
        await self._try(lambda: self.primary.done(key, owner), None)

    async def release(self, key: str, owner: str) -> None:
        await self.local.done(key, owner)
        await self._try(lambda: self.primary.release(key, owner), None)

    async def take_expired(self, owner: str, lease: float, now: float, limit: int) -> list[tuple[str, str]]:
        return await self._try(lambda: self.primary.take_expired(owner, lease, now, limit), [])

    async def close(self) -> None:
        await self.primary.close()
        await self.health.release_user()


def claims_beside(store: FallbackStore) -> FallbackClaims:
    """Claims on the store's Redis, sharing its client, prefix and health (one outage, one switch)."""
    return FallbackClaims(RedisClaims(store.primary.client, prefix=store.primary.prefix), store.health)
