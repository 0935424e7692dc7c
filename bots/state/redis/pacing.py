"""The Pacer (bots.core.ports) in Redis: platform pacing and 429 pauses shared by every process.

The rules are bots.state.pacing's (a sliding window of booked slots per key, one slot booked on all
of a reservation's keys), run by one Lua script per call so that two processes can never book the
same slot. The script reads the server's clock (TIME), so processes whose clocks disagree still
keep the spacing; times are whole milliseconds. Per key, `<prefix>pace:<key>` is a list of the
booked slots (newest last, at most `burst`) and `<prefix>pause:<key>` the end of a 429 pause; both
expire once they no longer matter.

`FallbackPacer` is what the fleet uses: it shares the store's client and RedisHealth, so a Redis
outage is noticed and logged once for everything, and paces in memory (per process) until Redis
answers again.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from bots.core.ports import Pace, Pacer, Store
from bots.state.pacing import MemoryPacer
from bots.state.redis.client import FAULTS
from bots.state.redis.fallback import FallbackStore
from bots.state.redis.health import RedisHealth

# A fault (health decides whether Redis is away) or a rejected command: pace locally this once.
ERRORS: tuple[type[BaseException], ...] = (*FAULTS, RedisError)

# KEYS: per pace its slot list and its pause key. ARGV[1]: "" for the server's clock, or a time in
# ms that tests pin it to; then per pace its interval in ms and its burst. Returns the wait in ms.
RESERVE_LUA = """
local call, ceil = redis.call, math.ceil
local now
if ARGV[1] == '' then
  local t = call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local n = #KEYS / 2
local slot = now
for i = 1, n do
  local booked, interval, burst = KEYS[2 * i - 1], tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local paused = tonumber(call('GET', KEYS[2 * i]))
  if paused and paused > slot then slot = paused end
  if interval > 0 then
    local last = tonumber(call('LINDEX', booked, -1))
    if last and last > slot then slot = last end
    local nth = tonumber(call('LINDEX', booked, -burst))
    if nth and nth + burst * interval > slot then slot = nth + burst * interval end
  end
end
slot = ceil(slot)
for i = 1, n do
  local booked, interval, burst = KEYS[2 * i - 1], tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  if interval > 0 then
    call('RPUSH', booked, slot)
    call('LTRIM', booked, -burst, -1)
    call('PEXPIRE', booked, ceil(slot - now + burst * interval) + 1000)
  end
end
return slot - now
"""

# KEYS[1]: the pause key. ARGV[1]: as above; ARGV[2]: the pause in ms. A shorter pause never cuts a
# longer one.
PAUSE_LUA = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local untl = now + math.ceil(tonumber(ARGV[2]))
local cur = tonumber(redis.call('GET', KEYS[1]))
if not cur or cur < untl then
  redis.call('SET', KEYS[1], untl, 'PX', untl - now + 1000)
end
return untl - now
"""


def _ms(seconds: float) -> str:
    return repr(round(seconds * 1000.0, 3))


class RedisPacer:
    """`server_clock=False` makes the scripts use the `now` callers pass (tests pin time with it)."""

    def __init__(self, client: Redis, *, prefix: str, server_clock: bool = True) -> None:
        self.client = client
        self.prefix = prefix
        self.server_clock = server_clock
        self._reserve = client.register_script(RESERVE_LUA)
        self._pause = client.register_script(PAUSE_LUA)

    def _now(self, now: float) -> str:
        return "" if self.server_clock else str(round(now * 1000.0))

    async def reserve(self, paces: Sequence[Pace], now: float) -> float:
        keys: list[str] = []
        args: list[str] = [self._now(now)]
        for pace in paces:
            keys += [f"{self.prefix}pace:{pace.key}", f"{self.prefix}pause:{pace.key}"]
            args += [_ms(pace.interval), str(pace.burst)]
        wait_ms = await self._reserve(keys=keys, args=args)
        return max(0.0, float(wait_ms) / 1000.0)

    async def pause(self, key: str, seconds: float, now: float) -> None:
        await self._pause(keys=[f"{self.prefix}pause:{key}"], args=[self._now(now), _ms(seconds)])


class FallbackPacer:
    """The Redis pacer while Redis answers within budget; the in-memory one otherwise.

    During an outage each process paces only its own sends, as before there was a shared pacer: two
    processes posting as one account in one chat may then come closer than a second apart, for the
    length of the outage only. The client and RedisHealth are the store's: this closes neither.
    """

    def __init__(self, primary: RedisPacer, health: RedisHealth, local: MemoryPacer | None = None) -> None:
        self.primary = primary
        self.health = health
        self.local = local or MemoryPacer()

    async def reserve(self, paces: Sequence[Pace], now: float) -> float:
        if self.health.usable:
            try:
                return await self.health.call(lambda: self.primary.reserve(paces, now))
            except ERRORS:
                pass  # health logged it (once per outage) and probes for the way back
        return self.local.reserve_now(paces, now)

    async def pause(self, key: str, seconds: float, now: float) -> None:
        # Locally too: should Redis go away during the pause, this process still keeps it.
        await self.local.pause(key, seconds, now)
        if self.health.usable:
            try:
                await self.health.call(lambda: self.primary.pause(key, seconds, now))
            except ERRORS:
                pass


def pacer_for(store: Store) -> Pacer | None:
    """The shared pacer on a Redis store's client and health; None for any other store."""
    if not isinstance(store, FallbackStore):
        return None
    return FallbackPacer(RedisPacer(store.primary.client, prefix=store.primary.prefix), store.health)
