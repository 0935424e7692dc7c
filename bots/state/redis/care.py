"""Care mode and the healthy-use counters in Redis: a mixin of RedisStore, kept in its own module.

Keys (under the store prefix; also listed in bots/state/redis/__init__.py):
- `care:<platform>:<user>` hash, conversation -> until when the personas stay quiet toward that
  person there (seconds, the fleet's clock). It lives as long as the latest quiet time
  (safety.care.quiet_minutes); lapsed conversations are dropped whenever the person is put in care.
- `daily:<day>:<key>` hash, the counters of `add_daily` (healthy use: `use:<platform>:<user>`), and
  `daily-days:<key>` set, the days that key has counters on, so /forget finds them without a scan.
  Both live three days.

One key per person (not per conversation) is what lets one read answer for a conversation and
/forget find everything of that person, and keeps the care write and its expiry one script.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from bots.state.redis.batch import UNCAPPED, Batcher

# KEYS: the person's care hash. ARGV: conversation, until, now (seconds), ttl ms.
# The expiry only ever grows: a shorter quiet time elsewhere must not end a longer one here.
SET_CARE_LUA = """
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
if held == nil or held < tonumber(ARGV[2]) then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
local now = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) == nil or tonumber(all[i + 1]) <= now then redis.call('HDEL', KEYS[1], all[i]) end
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1
"""

# Many add_daily calls in one (batch.Batcher): ARGV: expiry ms, then per call the day's counters
# hash, the key's index of days, the day, the number of pairs, the name/delta pairs. Each call's
# counters are read right after its own increments, so a batch answers as the calls one by one would
# (of two nudges counted for one person in a batch, only the first sees 1). Returns per call HGETALL.
DAILY_LUA = """
local ttl = ARGV[1]
local out = {}
local i = 2
while i <= #ARGV do
  local counters, days, day, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  i = i + 4
  for j = i, i + 2 * n - 1, 2 do
    redis.call('HINCRBY', counters, ARGV[j], ARGV[j + 1])
  end
  i = i + 2 * n
  redis.call('PEXPIRE', counters, ttl)
  redis.call('SADD', days, day)
  redis.call('PEXPIRE', days, ttl)
  out[#out + 1] = redis.call('HGETALL', counters)
end
return out
"""

# KEYS: the key's index of days. ARGV: the daily key prefix, the key. Returns how many days went.
FORGET_DAILY_LUA = """
local days = redis.call('SMEMBERS', KEYS[1])
for _, day in ipairs(days) do
  redis.call('DEL', ARGV[1] .. day .. ':' .. ARGV[2])
end
redis.call('DEL', KEYS[1])
return #days
"""

# Daily counters matter for today and (around midnight) yesterday; three days is plenty.
DAILY_TTL_MS = 3 * 86400 * 1000


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(slots=True)
class _Daily:
    day: str
    key: str
    deltas: Mapping[str, int]
    future: asyncio.Future[dict[str, int]]


def daily_batcher(send: Callable[[list[_Daily]], Awaitable[None]]) -> Batcher[_Daily]:
    """As first contacts: the caller's budget (RedisHealth.call) bounds the wait, the queue is not
    capped (the calls were not before), and a call whose caller gave up is not sent."""
    return Batcher[_Daily](send, timeout=None, max_pending=UNCAPPED)


class RedisCare:
    _client: Redis
    _p: str
    _dailies: Batcher[_Daily]

    def _care_script(self, name: str, source: str) -> AsyncScript:
        scripts: dict[str, AsyncScript] = self.__dict__.setdefault("_care_scripts", {})
        if name not in scripts:
            scripts[name] = self._client.register_script(source)
        return scripts[name]

    def _care_key(self, platform: str, user_id: str) -> str:
        return f"{self._p}care:{platform}:{user_id}"

    async def set_care(self, platform: str, user_id: str, conversation: str, until: float, now: float) -> None:
        if until <= now:
            return
        ttl_ms = max(1, math.ceil((until - now) * 1000))
        script = self._care_script("care", SET_CARE_LUA)
        await script(keys=[self._care_key(platform, user_id)], args=[conversation, repr(until), repr(now), ttl_ms])

    async def care_until(self, platform: str, user_id: str, conversation: str, now: float) -> float | None:
        raw = await self._client.hget(self._care_key(platform, user_id), conversation)
        if raw is None:
            return None
        until = float(raw)
        return until if until > now else None

    async def add_daily_indexed(self, day: str, key: str, deltas: Mapping[str, int]) -> dict[str, int]:
        """Counted together with every other message's counters that are asked meanwhile: one call."""
        future: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        self._dailies.submit(_Daily(day, key, deltas, future))
        return await future

    async def _send_dailies(self, jobs: list[_Daily]) -> None:
        args: list[str | int] = [DAILY_TTL_MS]
        for job in jobs:
            args += (f"{self._p}daily:{job.day}:{job.key}", f"{self._p}daily-days:{job.key}", job.day, len(job.deltas))
            for name, n in job.deltas.items():
                args += (name, int(n))
        script = self._care_script("daily", DAILY_LUA)
        replies = await script(args=args)
        for job, raw in zip(jobs, replies, strict=True):
            if not job.future.done():
                job.future.set_result({_text(raw[i]): int(raw[i + 1]) for i in range(0, len(raw), 2)})

    async def forget_daily(self, key: str) -> int:
        """Delete every day's counters of `key` (a person's healthy-use counters on /forget)."""
        script = self._care_script("forget_daily", FORGET_DAILY_LUA)
        return int(await script(keys=[f"{self._p}daily-days:{key}"], args=[f"{self._p}daily:", key]))
