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

import math
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

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

# KEYS: the day's counters hash, the key's index of days. ARGV: expiry ms, day, then name/delta pairs.
DAILY_LUA = """
for i = 3, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
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


class RedisCare:
    _client: Redis
    _p: str

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
        args: list[str | int] = [DAILY_TTL_MS, day]
        for name, n in deltas.items():
            args += (name, int(n))
        script = self._care_script("daily", DAILY_LUA)
        raw = await script(keys=[f"{self._p}daily:{day}:{key}", f"{self._p}daily-days:{key}"], args=args)
        return {_text(raw[i]): int(raw[i + 1]) for i in range(0, len(raw), 2)}

    async def forget_daily(self, key: str) -> int:
        """Delete every day's counters of `key` (a person's healthy-use counters on /forget)."""
        script = self._care_script("forget_daily", FORGET_DAILY_LUA)
        return int(await script(keys=[f"{self._p}daily-days:{key}"], args=[f"{self._p}daily:", key]))
