"""Rate limits in Redis.

Rate limits are GCRA (generic cell rate algorithm, the same as bots.state.gcra): one timestamp, the
"theoretical arrival time" (tat), per key; a rate of N per P seconds has emission interval T = P/N; a
request of weight c is allowed when max(tat, now) + c*T - now <= P, and the answer when it is not is
retry_after = max(tat, now) + c*T - P - now. One Lua script takes a whole routing decision (every key
of every candidate persona), reads the clock with TIME so that processes with skewed clocks agree,
consumes only for the candidates it admits, and gives every key an expiry equal to how long its tat
still matters. Concurrent decisions are coalesced into one EVALSHA (`batch.Batcher`), so a decision costs
one round trip at most and usually a fraction of one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence

from redis.asyncio import Redis

from bots.core.ports import ALLOWED, CAPPED, Rate, Verdict
from bots.state.redis.batch import Batcher, LimiterOverloaded, LimitJob, encode_rates  # noqa: F401  (re-exported)
from bots.state.redis.client import CALL_TIMEOUT, PREFIX

# The GCRA pass as a Lua function, shared with the admission script (admission.py): `keys` the batch's
# distinct keys, `limits` and `d` as ARGV[2] and ARGV[3] below, `now` in microseconds. Returns the
# verdicts (two numbers per candidate) and every key read with its tat (false: absent).
GCRA_LUA = """
local function gcra(keys, limits, d, now)
  local call, fmt, ceil, max = redis.call, string.format, math.ceil, math.max
  -- Per distinct rate: its key's slot, its period and the increment of one grant, in whole
  -- microseconds, the increment rounded down so that `limit` grants fit the period exactly.
  local slot, span, step = {}, {}, {}
  for l = 0, #limits / 4 - 1 do
    local b = l * 4
    local period = limits[b + 3]
    slot[l] = limits[b + 1] + 1
    span[l] = period
    step[l] = math.floor(period * (limits[b + 4] / 1000000) / limits[b + 2])
  end
  -- Keys are read when a check first needs them: capped candidates, and the keys after the one that
  -- blocks a candidate, are never read. false marks a key that was read and found absent.
  local tat = {}
  local dirty = {}
  local out, o = {}, 0
  -- Scratch for one candidate (its keys and would-be tats), reused to spare the allocator.
  local ck, cv = {}, {}
  local p, total = 1, #d
  while p <= total do
    local max_grants, candidates = d[p], d[p + 1]
    p = p + 2
    local granted = 0
    for _ = 1, candidates do
      local rates = d[p]
      local first = p + 1
      p = first + rates
      if granted >= max_grants then
        out[o + 1] = -1
        out[o + 2] = 0
      else
        local blocked, retry = 0, 0
        local m = 0
        for r = 1, rates do
          local l = d[first + r - 1]
          local k = slot[l]
          local period = span[l]
          local cur = tat[k]
          if cur == nil then
            local v = call('GET', keys[k])
            cur = v and tonumber(v) or false
            tat[k] = cur
          end
          -- The same key twice in one candidate sees its own first consumption.
          for q = 1, m do
            if ck[q] == k then cur = cv[q] end
          end
          local base = now
          if cur and cur > now then base = cur end
          local new = base + step[l]
          if new - period > now then
            blocked = r
            retry = new - period - now
            break
          end
          m = m + 1
          ck[m] = k
          cv[m] = new
        end
        if blocked == 0 then
          for q = 1, m do
            tat[ck[q]] = cv[q]
            dirty[ck[q]] = true
          end
          granted = granted + 1
          out[o + 1] = 0
          out[o + 2] = 0
        else
          out[o + 1] = blocked
          out[o + 2] = retry
        end
      end
      o = o + 2
    end
  end
  for k in pairs(dirty) do
    local v = tat[k]
    -- Past its tat a key says nothing more than an absent one: that is exactly its lifetime.
    call('PSETEX', keys[k], max(1, ceil((v - now) / 1000)), fmt('%d', v))
  end
  return out, tat
end
"""

# ARGV[1]: JSON list of the batch's distinct keys. ARGV[2]: JSON flat [key_index, limit, period_us,
# cost_millionths, ...], one quadruple per distinct (key, rate) pair. ARGV[3]: JSON flat decisions:
# per decision max_grants and the number of candidates, then per candidate the number of its rates
# and their indexes into ARGV[2]'s quadruples (all indexes 0-based). ARGV[4]: "" to use the server's
# clock, or a time in microseconds that tests pin it to. ARGV[5]: "1" to also return, after the
# verdicts, (key_index, microseconds its tat is ahead of now) for every key the script read.
# Returns JSON: per candidate two numbers, (0, 0) admitted, (-1, 0) capped by max_grants, or
# (k, retry_us) blocked by the k-th rate of that candidate.
# Both sides' CPU time per rate matters (see bench/limits.py): the client numbers the distinct keys,
# so the script reads and writes each once per batch, and sends flat arrays, which decode without a
# table per candidate; the server does the arithmetic, once per distinct key. Keys travel in ARGV
# rather than KEYS because redis-py packs each KEYS entry on its own, which at thousands of keys per
# batch costs more than the script; a single Redis (not a cluster) does not mind where a script's
# key names come from.
LIMIT_LUA = (
    GCRA_LUA
    + """
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[4])
end
local out, tat = gcra(cjson.decode(ARGV[1]), cjson.decode(ARGV[2]), cjson.decode(ARGV[3]), now)
local o = #out
-- On request, every key read or written with how far its tat is ahead of now (0: no longer
-- matters): what a local fallback needs to go on from where Redis was.
if ARGV[5] == '1' then
  for k, v in pairs(tat) do
    out[o + 1] = k - 1
    out[o + 2] = (v and v > now) and (v - now) or 0
    o = o + 2
  end
end
return cjson.encode(out)
"""
)


class RedisRateLimiter:
    """GCRA in Redis: one script call per batch of concurrent routing decisions, time from the server.

    `acquire`'s `now` is ignored: the server's TIME is the one clock all processes share. A decision
    that gets no answer within `timeout` raises TimeoutError (and is not charged if it was still
    waiting to be sent). Tests may set `pinned_time` (seconds) to run the script on a virtual clock.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = PREFIX,
        timeout: float | None = CALL_TIMEOUT,
        max_batch: int = 128,
        max_in_flight: int = 2,
        max_pending: int = 10_000,
    ) -> None:
        self._client = client
        self._prefix = prefix + "rl:"
        self._script = client.register_script(LIMIT_LUA)
        self._batcher = Batcher[LimitJob](
            self._send, timeout=timeout, max_batch=max_batch, max_in_flight=max_in_flight, max_pending=max_pending
        )
        self.pinned_time: float | None = None
        # Told, after each script call, how far ahead of `now` (seconds) the tat of every key the call
        # read is, `now` being the caller's clock of the batch's last decision (FallbackRateLimiter).
        self.on_tats: Callable[[float, dict[str, float]], None] | None = None
        # Script calls and decisions carried, for the benchmark's round trips per decision.
        self.calls = 0
        self.decisions = 0

    async def acquire(self, candidates: Sequence[Sequence[Rate]], max_grants: int, now: float) -> list[Verdict]:
        if not candidates:
            return []
        future: asyncio.Future[list[Verdict]] = asyncio.get_running_loop().create_future()
        self._batcher.submit(LimitJob(candidates, max_grants, future, now))
        return await future

    async def _send(self, jobs: list[LimitJob]) -> None:
        keys, limits, flat = encode_rates(self._prefix, jobs)
        self.calls += 1
        self.decisions += len(jobs)
        dumps = json.dumps
        pinned = "" if self.pinned_time is None else str(round(self.pinned_time * 1e6))
        on_tats = self.on_tats
        raw = await self._script(args=[dumps(keys), dumps(limits), dumps(flat), pinned, "1" if on_tats else ""])
        out = json.loads(raw)
        pos = _settle(jobs, out)
        if on_tats is not None:
            cut = len(self._prefix)
            on_tats(jobs[-1].now, {keys[out[i]][cut:]: out[i + 1] / 1e6 for i in range(pos, len(out), 2)})

    async def close(self) -> None:
        await self._batcher.close()


def _settle(jobs: list[LimitJob], out: list[int]) -> int:
    """Hands each job its verdicts from the script's flat answer (two numbers per candidate); returns
    where the verdicts end."""
    pos = 0
    for job in jobs:
        verdicts: list[Verdict] = []
        for rates in job.candidates:
            code = out[pos]
            if code == 0:
                verdicts.append(ALLOWED)
            elif code < 0:
                verdicts.append(CAPPED)
            else:
                verdicts.append(Verdict(False, rates[code - 1].label, out[pos + 1] / 1e6))
            pos += 2
        if not job.future.done():
            job.future.set_result(verdicts)
    return pos
