"""Redis implementations of the RateLimiter and Store protocols, and the fallback that keeps the
fleet answering while Redis is away.

Rate limits are GCRA (generic cell rate algorithm, the same as bots.ratelimit): one timestamp, the
"theoretical arrival time" (tat), per key; a rate of N per P seconds has emission interval T = P/N; a
request of weight c is allowed when max(tat, now) + c*T - now <= P, and the answer when it is not is
retry_after = max(tat, now) + c*T - P - now. One Lua script takes a whole routing decision (every key
of every candidate persona), reads the clock with TIME so that processes with skewed clocks agree,
consumes only for the candidates it admits, and gives every key an expiry equal to how long its tat
still matters. Concurrent decisions are coalesced into one EVALSHA (`_Batcher`), so a decision costs
one round trip at most and usually a fraction of one.

The store keeps per conversation a capped list of JSON turns that also ages out after the retention
period, dedupe keys set with SET NX PX, sets for opt-outs and mutes, a hash of first contacts per
user, and a hash of token usage per day. Appends and /forget are Lua scripts, so an opted-out user's
turn can never slip in between the opt-out check and the write, and /forget sees a consistent
history; a per-user index of conversations lets /forget find every one of them without a scan.

`open_redis_state(cfg)` wraps both in `FallbackStore`/`FallbackRateLimiter`: each Redis call is bounded
(`CALL_TIMEOUT`); on a timeout or connection error the fleet switches to the in-memory
implementations (logged once), probes Redis with backoff, and switches back when it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from bots.config import FleetConfig
from bots.core.ports import ALLOWED, CAPPED, Rate, Turn, Verdict
from bots.state.memory import MemoryRateLimiter, MemoryStore

log = logging.getLogger("botfleet.redis")

T = TypeVar("T")

PREFIX = "botfleet:"
# The longest a message handler waits for Redis before deciding locally.
CALL_TIMEOUT = 0.3
# The default for how long history is kept (config: retention_days).
RETENTION_SECONDS = 30 * 86400.0
# What counts as "Redis is away": the server, the network or our own timeout, not a bad command.
FAULTS: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


def make_client(
    url: str,
    *,
    max_connections: int = 32,
    socket_timeout: float = 1.0,
    connect_timeout: float = CALL_TIMEOUT,
    pool_timeout: float = 1.0,
) -> Redis:
    """A client for the per-message path: bounded pool, short timeouts, and no silent retries.

    redis-py would retry a timed-out EVALSHA or RPUSH on its own, applying it twice; callers here
    decide what a failure means instead. The pool blocks rather than raising when full, so a burst
    waits its turn instead of failing; callers bound the wait (CALL_TIMEOUT) below `pool_timeout`.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return Redis.from_pool(pool)


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait for it, cancelling again if a cancellation gets swallowed.

    On Python 3.11 a cancel() that lands while an asyncio.timeout() is expiring can come out as the
    TimeoutError a loop then catches and survives; asking again until the task ends is the fix.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        log.debug("task %s ended with %r", task.get_name(), task.exception())


async def subscribe(
    client: Redis,
    channel: str,
    handle: Callable[[bytes], Awaitable[None]],
    *,
    backoff: tuple[float, float] = (0.25, 10.0),
) -> None:
    """Call `handle` with every message published on `channel`, for as long as the task runs.

    Reconnects with backoff when Redis goes away. Pub/sub is at most once: whatever is published while
    this is reconnecting is lost, so every use must tolerate a missed message.
    """
    delay = backoff[0]
    while True:
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(channel)
            delay = backoff[0]
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None or message.get("type") != "message":
                    continue
                try:
                    await handle(message["data"])
                except Exception:
                    log.exception("handling a message on %s failed", channel)
        except (*FAULTS, RedisError) as exc:
            log.debug("subscription to %s lost: %r", channel, exc)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        await asyncio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, backoff[1])


# --- rate limits --------------------------------------------------------------------------------

# ARGV[1]: JSON list of the batch's distinct keys. ARGV[2]: JSON flat [key_index, limit, period_us,
# cost_millionths, ...], one quadruple per distinct (key, rate) pair. ARGV[3]: JSON flat decisions:
# per decision max_grants and the number of candidates, then per candidate the number of its rates
# and their indexes into ARGV[2]'s quadruples (all indexes 0-based). ARGV[4]: "" to use the server's
# clock, or a time in microseconds that tests pin it to.
# Returns JSON: per candidate two numbers, (0, 0) admitted, (-1, 0) capped by max_grants, or
# (k, retry_us) blocked by the k-th rate of that candidate.
# Both sides' CPU time per rate matters (see bench/limits.py): the client numbers the distinct keys,
# so the script reads and writes each once per batch, and sends flat arrays, which decode without a
# table per candidate; the server does the arithmetic, once per distinct key. Keys travel in ARGV
# rather than KEYS because redis-py packs each KEYS entry on its own, which at thousands of keys per
# batch costs more than the script; a single Redis (not a cluster) does not mind where a script's
# key names come from.
LIMIT_LUA = """
-- GCRA over whole routing decisions: one tat (theoretical arrival time) per key, in microseconds;
-- a rate of `limit` per `period` has interval period/limit and lets a burst of `limit` through.
local call, fmt, ceil, max = redis.call, string.format, math.ceil, math.max
local now
if ARGV[4] == '' then
  local t = call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[4])
end
local keys = cjson.decode(ARGV[1])
local limits = cjson.decode(ARGV[2])
local d = cjson.decode(ARGV[3])
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
return cjson.encode(out)
"""


class LimiterOverloaded(RuntimeError):
    """More decisions are waiting for Redis than the batcher may queue."""


@dataclass(slots=True)
class _Job:
    candidates: Sequence[Sequence[Rate]]
    max_grants: int
    future: asyncio.Future[list[Verdict]]


class _Batcher:
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
        send: Callable[[list[_Job]], Awaitable[None]],
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
        self._pending: deque[_Job] = deque()
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadlines: deque[tuple[float, asyncio.Future[list[Verdict]]]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def submit(self, job: _Job) -> None:
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
            batch: list[_Job] = []
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

    async def _run(self, batch: list[_Job]) -> None:
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
        self._batcher = _Batcher(
            self._send, timeout=timeout, max_batch=max_batch, max_in_flight=max_in_flight, max_pending=max_pending
        )
        self.pinned_time: float | None = None
        # Script calls and decisions carried, for the benchmark's round trips per decision.
        self.calls = 0
        self.decisions = 0

    async def acquire(self, candidates: Sequence[Sequence[Rate]], max_grants: int, now: float) -> list[Verdict]:
        if not candidates:
            return []
        future: asyncio.Future[list[Verdict]] = asyncio.get_running_loop().create_future()
        self._batcher.submit(_Job(candidates, max_grants, future))
        return await future

    async def _send(self, jobs: list[_Job]) -> None:
        prefix = self._prefix
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
        self.calls += 1
        self.decisions += len(jobs)
        dumps = json.dumps
        pinned = "" if self.pinned_time is None else str(round(self.pinned_time * 1e6))
        raw = await self._script(args=[dumps(keys), dumps(limits), dumps(flat), pinned])
        out = json.loads(raw)
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

    async def close(self) -> None:
        await self._batcher.close()


# --- store --------------------------------------------------------------------------------------

# KEYS: history list, opt-out set of the platform, the user's conversation index.
# ARGV: turn JSON, user id ("" for personas), conversation, history size, retention ms, cutoff (turn.at
# minus retention, seconds). The opt-out check and the write are one step, so a turn can never land
# after the user opted out, even when another process handled their message.
APPEND_LUA = """
local user = ARGV[2]
if user ~= '' and redis.call('SISMEMBER', KEYS[2], user) == 1 then return 0 end
local retention = tonumber(ARGV[5])
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[4]), -1)
-- Turns are appended in time order, so the expired ones are all at the head.
local cutoff = tonumber(ARGV[6])
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local ok, turn = pcall(cjson.decode, head)
  if ok and type(turn) == 'table' and tonumber(turn.at) and tonumber(turn.at) < cutoff then
    redis.call('LPOP', KEYS[1])
  else
    break
  end
end
redis.call('PEXPIRE', KEYS[1], retention)
if user ~= '' then
  redis.call('SADD', KEYS[3], ARGV[3])
  -- Twice the retention: a turn lives at most one retention past the conversation's last write,
  -- which is at most one retention past the user's own turn; so the index always covers it.
  redis.call('PEXPIRE', KEYS[3], 2 * retention)
end
return 1
"""

# KEYS: the user's conversation index, their first-contact record. ARGV: user id, history key prefix.
# History keys are derived inside the script (fine on a single Redis; a cluster would need hash tags).
FORGET_LUA = """
local convs = redis.call('SMEMBERS', KEYS[1])
local removed = 0
for _, conv in ipairs(convs) do
  local key = ARGV[2] .. conv
  local items = redis.call('LRANGE', key, 0, -1)
  local kept = {}
  for _, raw in ipairs(items) do
    local ok, turn = pcall(cjson.decode, raw)
    if ok and type(turn) == 'table' and turn.user_id == ARGV[1] then
      removed = removed + 1
    else
      kept[#kept + 1] = raw
    end
  end
  if #kept ~= #items then
    local ttl = redis.call('PTTL', key)
    redis.call('DEL', key)
    for i = 1, #kept, 1000 do
      redis.call('RPUSH', key, unpack(kept, i, math.min(i + 999, #kept)))
    end
    if #kept > 0 and ttl > 0 then redis.call('PEXPIRE', key, ttl) end
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
return removed
"""

# KEYS: history lists. ARGV: cutoff (seconds). Drops expired turns from each list's head.
PRUNE_LUA = """
local removed = 0
local cutoff = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  while true do
    local head = redis.call('LINDEX', key, 0)
    if not head then break end
    local ok, turn = pcall(cjson.decode, head)
    if ok and type(turn) == 'table' and tonumber(turn.at) and tonumber(turn.at) < cutoff then
      redis.call('LPOP', key)
      removed = removed + 1
    else
      break
    end
  end
end
return removed
"""

# KEYS: the day's usage hash. ARGV: expiry ms, then key/delta pairs. Returns every total of the day.
USAGE_LUA = """
for i = 2, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""

# Usage totals matter for today and (around midnight) yesterday; three days is plenty.
USAGE_TTL_MS = 3 * 86400 * 1000


def _platform_of(conversation: str) -> str:
    return conversation.partition(":")[0]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore:
    """The Store protocol in Redis. `now` arguments are ignored where Redis keeps the time (dedupe)."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = PREFIX,
        history_size: int = 50,
        retention_seconds: float = RETENTION_SECONDS,
    ) -> None:
        self._client = client
        self._p = prefix
        self.history_size = history_size
        self.retention_seconds = retention_seconds
        self._append = client.register_script(APPEND_LUA)
        self._forget = client.register_script(FORGET_LUA)
        self._prune = client.register_script(PRUNE_LUA)
        self._usage = client.register_script(USAGE_LUA)

    @property
    def client(self) -> Redis:
        return self._client

    @property
    def prefix(self) -> str:
        return self._p

    def _history_key(self, conversation: str) -> str:
        return f"{self._p}h:{conversation}"

    def _index_key(self, platform: str, user_id: str) -> str:
        return f"{self._p}uc:{platform}:{user_id}"

    def _told_key(self, platform: str, user_id: str) -> str:
        return f"{self._p}told:{platform}:{user_id}"

    async def first_seen(self, key: str, ttl: float, now: float) -> bool:
        ok = await self._client.set(f"{self._p}seen:{key}", b"1", nx=True, px=max(1, int(ttl * 1000)))
        return bool(ok)

    async def append(self, conversation: str, turn: Turn) -> None:
        platform = _platform_of(conversation)
        await self._append(
            keys=[
                self._history_key(conversation),
                f"{self._p}optout:{platform}",
                self._index_key(platform, turn.user_id),
            ],
            args=[
                json.dumps(turn.to_dict(), separators=(",", ":")),
                turn.user_id,
                conversation,
                self.history_size,
                int(self.retention_seconds * 1000),
                repr(turn.at - self.retention_seconds),
            ],
        )

    async def history(self, conversation: str, limit: int) -> list[Turn]:
        if limit <= 0:
            return []
        raw = await self._client.lrange(self._history_key(conversation), -limit, -1)
        return [Turn.from_dict(json.loads(item)) for item in raw]

    async def prune(self, now: float, batch: int = 200) -> int:
        """Delete turns older than the retention period, also in conversations nobody writes to.

        A conversation's key expires a retention period after its last write anyway; this is for the
        turns before that, and costs one scan of the history keys, so run it rarely (hourly)."""
        removed = 0
        cutoff = repr(now - self.retention_seconds)
        keys: list[str] = []
        async for key in self._client.scan_iter(match=f"{self._p}h:*", count=1000):
            keys.append(_text(key))
            if len(keys) >= batch:
                removed += int(await self._prune(keys=keys, args=[cutoff]))
                keys = []
        if keys:
            removed += int(await self._prune(keys=keys, args=[cutoff]))
        return removed

    async def forget_user(self, platform: str, user_id: str) -> int:
        if not user_id:
            return 0
        keys = [self._index_key(platform, user_id), self._told_key(platform, user_id)]
        return int(await self._forget(keys=keys, args=[user_id, f"{self._p}h:"]))

    async def set_opt_out(self, platform: str, user_id: str, opted_out: bool) -> None:
        key = f"{self._p}optout:{platform}"
        if opted_out:
            await self._client.sadd(key, user_id)
        else:
            await self._client.srem(key, user_id)

    async def is_opted_out(self, platform: str, user_id: str) -> bool:
        return bool(await self._client.sismember(f"{self._p}optout:{platform}", user_id))

    async def set_muted(self, conversation: str, persona_id: str, muted: bool) -> None:
        key = f"{self._p}mute:{conversation}"
        if muted:
            await self._client.sadd(key, persona_id)
        else:
            await self._client.srem(key, persona_id)

    async def muted(self, conversation: str) -> frozenset[str]:
        return frozenset(_text(m) for m in await self._client.smembers(f"{self._p}mute:{conversation}"))

    async def followers(self, platform: str, user_id: str) -> tuple[str, ...] | None:
        raw = await self._client.get(f"{self._p}follow:{platform}:{user_id}")
        return None if raw is None else tuple(json.loads(raw))

    async def set_followers(self, platform: str, user_id: str, persona_ids: tuple[str, ...] | None) -> None:
        key = f"{self._p}follow:{platform}:{user_id}"
        if persona_ids is None:
            await self._client.delete(key)
        else:
            await self._client.set(key, json.dumps(list(persona_ids)))

    async def first_contact(self, platform: str, persona_id: str, user_id: str, now: float) -> bool:
        key = self._told_key(platform, user_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, persona_id, repr(now))
            # Kept as long as history: after that the person is told again, which errs the right way.
            pipe.pexpire(key, int(self.retention_seconds * 1000))
            first, _ = await pipe.execute()
        return bool(first)

    async def first_told(self, platform: str, persona_id: str, user_id: str) -> float | None:
        raw = await self._client.hget(self._told_key(platform, user_id), persona_id)
        return None if raw is None else float(raw)

    async def add_usage(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        args: list[str | int] = [USAGE_TTL_MS]
        for key, n in deltas.items():
            args += (key, int(n))
        raw = await self._usage(keys=[f"{self._p}usage:{day}"], args=args)
        return {_text(raw[i]): int(raw[i + 1]) for i in range(0, len(raw), 2)}

    async def close(self) -> None:
        return None


# --- falling back while Redis is away -----------------------------------------------------------


class RedisHealth:
    """Whether the per-message path uses Redis, shared by the store and the limiter.

    The first fault flips both to local state and starts one probe task; the probe pings with
    exponential backoff, runs the recovery hooks (replaying what must not be lost), then flips back.
    Each transition is logged once, whatever the message rate.

    A call that times out while other calls keep completing is overload (a burst queued for the
    bounded pool), not an outage: that call is decided locally, and for `slow_seconds` after it every
    call except dedupe goes local at once (`usable` is False), so one message never waits the budget
    on each of several calls in a row. Redis stays in use for everything else.
    """

    def __init__(
        self,
        client: Redis,
        *,
        timeout: float = CALL_TIMEOUT,
        backoff: tuple[float, float] = (0.25, 10.0),
        owns_client: bool = True,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.backoff = backoff
        self.up = True
        self.outages = 0
        self._owns_client = owns_client
        self._down_since = 0.0
        self._probe: asyncio.Task[None] | None = None
        self._recover_hooks: list[Callable[[], Awaitable[None]]] = []
        self._users = 0
        self._last_error_log = 0.0
        self._last_overload_log = 0.0
        self.overloaded = 0
        # When a Redis call last succeeded (monotonic): tells a slow queue from a silent server.
        self.last_ok = 0.0
        self.slow_seconds = 1.0
        self._slow_until = 0.0

    @property
    def usable(self) -> bool:
        """Up, and no call timed out on a queue lately: worth waiting for."""
        return self.up and time.monotonic() >= self._slow_until

    def on_recover(self, hook: Callable[[], Awaitable[None]]) -> None:
        self._recover_hooks.append(hook)

    async def call(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation within the time budget; raises on a fault after flipping to local."""
        try:
            async with asyncio.timeout(self.timeout):
                result = await op()
        except FAULTS as exc:
            self.failed(exc)
            raise
        except RedisError as exc:
            self.bad_command(exc)
            raise
        self.last_ok = time.monotonic()
        return result

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        # Our own timeout with answers arriving in the last half of it: Redis is alive, we are queued.
        if type(exc) is TimeoutError and now - self.last_ok < self.timeout / 2:
            self.overloaded += 1
            self._slow_until = now + self.slow_seconds
            if now - self._last_overload_log > 60:
                self._last_overload_log = now
                log.warning("redis calls queue beyond %.0f ms: deciding some messages locally", self.timeout * 1000)
            return
        self.down(exc)

    def bad_command(self, exc: RedisError) -> None:
        # A rejected command is a bug, not an outage: say so (rarely), and decide locally this once.
        now = time.monotonic()
        if now - self._last_error_log > 60:
            self._last_error_log = now
            log.error("redis rejected a command, deciding locally: %s", exc)

    def down(self, exc: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        self.outages += 1
        self._down_since = time.monotonic()
        log.warning(
            "redis unreachable (%s): using local limits and history until it answers again",
            type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}",
        )
        self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _probe_until_up(self) -> None:
        delay, cap = self.backoff
        while True:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, cap)
            try:
                # Idle pooled connections may lead to a server that has since restarted: each would
                # fail once on first use and look like a new outage. Start the pool afresh instead.
                await self.client.connection_pool.disconnect(inuse_connections=False)
                async with asyncio.timeout(max(self.timeout, 1.0)):
                    await self.client.ping()
                for hook in self._recover_hooks:
                    async with asyncio.timeout(max(self.timeout * 10, 3.0)):
                        await hook()
            except (*FAULTS, ResponseError) as exc:
                log.debug("redis still away: %s", exc)
                continue
            self.up = True
            log.warning(
                "redis is back after %.1fs: shared limits and history resumed", time.monotonic() - self._down_since
            )
            return

    def acquire_user(self) -> None:
        self._users += 1

    async def release_user(self) -> None:
        """The last of the store and the limiter to close closes the shared client."""
        self._users -= 1
        if self._users > 0:
            return
        if self._probe is not None:
            await stop_task(self._probe)
        if self._owns_client:
            await self.client.aclose()


class FallbackRateLimiter:
    """Redis limits while Redis answers within budget; the in-memory GCRA otherwise.

    Local limits are per process, so during an outage N processes together allow up to N times a
    limit: the price of answering at all, for the length of the outage only.
    """

    def __init__(self, primary: RedisRateLimiter, health: RedisHealth, local: MemoryRateLimiter | None = None) -> None:
        self.primary = primary
        self.local = local or MemoryRateLimiter()
        self.health = health
        self._overload_log = 0.0
        health.acquire_user()

    async def acquire(self, candidates: Sequence[Sequence[Rate]], max_grants: int, now: float) -> list[Verdict]:
        if not candidates:
            return []
        if self.health.usable:
            try:
                verdicts = await self.primary.acquire(candidates, max_grants, now)
                self.health.last_ok = time.monotonic()
                return verdicts
            except LimiterOverloaded as exc:
                # Too much queued is local overload, not an outage: decide this one locally.
                t = time.monotonic()
                if t - self._overload_log > 60:
                    self._overload_log = t
                    log.warning("rate limiter overloaded, deciding locally: %s", exc)
            except FAULTS as exc:
                self.health.failed(exc)
            except RedisError as exc:
                self.health.bad_command(exc)
        return self.local.acquire_now(candidates, max_grants, now)

    async def close(self) -> None:
        await self.primary.close()
        await self.local.close()
        await self.health.release_user()


@dataclass(slots=True)
class _Journal:
    """Writes made while Redis was away that must reach it: privacy and moderation choices, and token
    usage (budgets are shared). Replayed when Redis is back, before it is trusted again.

    Latest state wins per key and usage is summed per key, so the journal is bounded by the users,
    conversations and usage keys touched during the outage, never by the number of writes.
    """

    opt_out: dict[tuple[str, str], bool] = field(default_factory=dict)
    forget: set[tuple[str, str]] = field(default_factory=set)
    muted: dict[tuple[str, str], bool] = field(default_factory=dict)
    followers: dict[tuple[str, str], tuple[str, ...] | None] = field(default_factory=dict)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    limit: int = 100_000

    def __len__(self) -> int:
        sizes = (self.opt_out, self.forget, self.muted, self.followers)
        return sum(len(x) for x in sizes) + sum(len(d) for d in self.usage.values())


class FallbackStore:
    """The Redis store, with local state that answers while Redis is away.

    The local store caches what Redis answered about opt-outs, mutes and followers, and sees every
    such write, so during an outage an opted-out user stays opted out and a muted persona stays muted
    as far as this process has seen. Opt-outs, forgets, mutes, follower choices and token usage made
    during an outage are journaled and replayed into Redis before it is used again.

    History is different, because /forget must reach it in every process. Mirroring every turn
    locally would keep a copy that a forget handled by another process never touches, and the next
    outage would put the forgotten words back into prompts. So the mirror (`_turns`) holds only
    turns that did not reach Redis, written while Redis was marked down, and it starts empty at each
    outage: nothing from before the current outage can come back from it. A forget reaches other
    processes' mirrors too: it is published on `<prefix>forget`, which every FallbackStore applies
    to its local state (first-contact records included). Pub/sub may miss a message while a
    subscriber reconnects; the per-outage mirror bounds what such a miss can expose to turns written
    in the same outage. History written during an outage stays local (it is only context for prompts).
    """

    def __init__(self, primary: RedisStore, health: RedisHealth, local: MemoryStore | None = None) -> None:
        self.primary = primary
        self.local = local or MemoryStore(
            history_size=primary.history_size, retention_seconds=primary.retention_seconds
        )
        self.health = health
        self.journal = _Journal()
        self._turns = self._new_mirror()
        self._turns_outage = health.outages
        self.forget_channel = f"{primary.prefix}forget"
        self._listener: asyncio.Task[None] | None = None
        # Messages skipped because dedupe timed out while Redis was up (see first_seen).
        self.dedupe_skipped = 0
        # The day's totals as Redis last gave them: the base for budgets while it is away.
        self._usage_seen: dict[str, dict[str, int]] = {}
        health.acquire_user()
        health.on_recover(self._replay)

    def _new_mirror(self) -> MemoryStore:
        return MemoryStore(history_size=self.primary.history_size, retention_seconds=self.primary.retention_seconds)

    def _mirror(self) -> MemoryStore:
        """The turns of the current outage only: a new outage starts an empty mirror."""
        if self._turns_outage != self.health.outages:
            self._turns = self._new_mirror()
            self._turns_outage = self.health.outages
        return self._turns

    def _listen(self) -> None:
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(
                subscribe(self.primary.client, self.forget_channel, self._forgotten, backoff=self.health.backoff),
                name="botfleet-forget",
            )

    async def _forgotten(self, data: bytes) -> None:
        platform, user_id = json.loads(data)
        await self.local.forget_user(str(platform), str(user_id))
        await self._turns.forget_user(str(platform), str(user_id))

    async def _forget_everywhere(self, platform: str, user_id: str) -> int:
        removed = await self.primary.forget_user(platform, user_id)
        await self.primary.client.publish(self.forget_channel, json.dumps([platform, user_id]))
        return removed

    async def _try(self, op: Callable[[], Awaitable[T]]) -> tuple[bool, T | None]:
        self._listen()
        if not self.health.usable:
            return False, None
        try:
            return True, await self.health.call(op)
        except (*FAULTS, RedisError):
            return False, None

    async def first_seen(self, key: str, ttl: float, now: float) -> bool:
        self._listen()
        local_first = await self.local.first_seen(key, ttl, now)
        # Not skipped when Redis is merely slow: dedupe comes first in a handler, so this is its one wait.
        if not self.health.up:
            return local_first
        try:
            return bool(await self.health.call(lambda: self.primary.first_seen(key, ttl, now)))
        except FAULTS:
            if not self.health.up:
                return local_first  # the start of an outage: local dedupe from now on
            # Redis is up but did not answer in time, and another process may have it already:
            # dropping one reply is better than two processes both answering.
            self.dedupe_skipped += 1
            log.debug("dedupe of %s timed out while redis is up: skipping it", key)
            return False
        except RedisError:
            return local_first

    async def append(self, conversation: str, turn: Turn) -> None:
        ok, _ = await self._try(lambda: self.primary.append(conversation, turn))
        # A timed-out write with Redis up may well have landed: only an outage's turns stay local.
        if not ok and not self.health.up:
            await self._mirror().append(conversation, turn)

    async def history(self, conversation: str, limit: int) -> list[Turn]:
        ok, turns = await self._try(lambda: self.primary.history(conversation, limit))
        if ok and turns is not None:
            return turns
        if self.health.up:
            return []  # slow, not away: no mirror of this outage to offer
        return await self._mirror().history(conversation, limit)

    async def prune(self, now: float) -> int:
        local = await self._turns.prune(now)
        if not self.health.up:
            return local
        try:
            # A scan, not a per-message call: it gets more time than CALL_TIMEOUT.
            async with asyncio.timeout(30):
                return await self.primary.prune(now)
        except (*FAULTS, RedisError) as exc:
            log.warning("pruning old history in redis failed: %s", exc)
            return local

    async def forget_user(self, platform: str, user_id: str) -> int:
        local = await self.local.forget_user(platform, user_id) + await self._turns.forget_user(platform, user_id)
        ok, removed = await self._try(lambda: self._forget_everywhere(platform, user_id))
        if ok and removed is not None:
            return removed
        self._journal(lambda j: j.forget.add((platform, user_id)))
        return local

    async def set_opt_out(self, platform: str, user_id: str, opted_out: bool) -> None:
        await self.local.set_opt_out(platform, user_id, opted_out)
        ok, _ = await self._try(lambda: self.primary.set_opt_out(platform, user_id, opted_out))
        if not ok:
            self._journal(lambda j: j.opt_out.__setitem__((platform, user_id), opted_out))

    async def is_opted_out(self, platform: str, user_id: str) -> bool:
        ok, out = await self._try(lambda: self.primary.is_opted_out(platform, user_id))
        if ok:
            if out != await self.local.is_opted_out(platform, user_id):
                await self.local.set_opt_out(platform, user_id, bool(out))
            return bool(out)
        return await self.local.is_opted_out(platform, user_id)

    async def set_muted(self, conversation: str, persona_id: str, muted: bool) -> None:
        await self.local.set_muted(conversation, persona_id, muted)
        ok, _ = await self._try(lambda: self.primary.set_muted(conversation, persona_id, muted))
        if not ok:
            self._journal(lambda j: j.muted.__setitem__((conversation, persona_id), muted))

    async def muted(self, conversation: str) -> frozenset[str]:
        ok, out = await self._try(lambda: self.primary.muted(conversation))
        if ok and out is not None:
            mirror = await self.local.muted(conversation)
            for pid in mirror - out:
                await self.local.set_muted(conversation, pid, False)
            for pid in out - mirror:
                await self.local.set_muted(conversation, pid, True)
            return out
        return await self.local.muted(conversation)

    async def followers(self, platform: str, user_id: str) -> tuple[str, ...] | None:
        ok, out = await self._try(lambda: self.primary.followers(platform, user_id))
        if ok:
            await self.local.set_followers(platform, user_id, out)
            return out
        return await self.local.followers(platform, user_id)

    async def set_followers(self, platform: str, user_id: str, persona_ids: tuple[str, ...] | None) -> None:
        await self.local.set_followers(platform, user_id, persona_ids)
        ok, _ = await self._try(lambda: self.primary.set_followers(platform, user_id, persona_ids))
        if not ok:
            self._journal(lambda j: j.followers.__setitem__((platform, user_id), persona_ids))

    async def first_contact(self, platform: str, persona_id: str, user_id: str, now: float) -> bool:
        ok, first = await self._try(lambda: self.primary.first_contact(platform, persona_id, user_id, now))
        local_first = await self.local.first_contact(platform, persona_id, user_id, now)
        # While Redis is away, "first" is as far as this process knows: at worst someone is told twice.
        return bool(first) if ok else local_first

    async def first_told(self, platform: str, persona_id: str, user_id: str) -> float | None:
        ok, at = await self._try(lambda: self.primary.first_told(platform, persona_id, user_id))
        return at if ok else await self.local.first_told(platform, persona_id, user_id)

    async def add_usage(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        ok, totals = await self._try(lambda: self.primary.add_usage(day, deltas))
        if ok and totals is not None:
            self._usage_seen = {day: totals}
            return totals

        def add(j: _Journal) -> None:
            pending = j.usage.setdefault(day, {})
            for key, n in deltas.items():
                pending[key] = pending.get(key, 0) + n

        self._journal(add)
        # The shared totals last seen plus what this process spent since: the best guess at budgets.
        merged = dict(self._usage_seen.get(day, {}))
        for key, n in self.journal.usage.get(day, {}).items():
            merged[key] = merged.get(key, 0) + n
        return merged

    def _journal(self, write: Callable[[_Journal], object]) -> None:
        if len(self.journal) >= self.journal.limit:
            log.error("redis outage journal full (%d entries): dropping a write", len(self.journal))
            return
        write(self.journal)

    async def _replay(self) -> None:
        """Runs before Redis is trusted again; an entry leaves the journal only once Redis has it."""
        j = self.journal
        for (platform, user), opted in list(j.opt_out.items()):
            await self.primary.set_opt_out(platform, user, opted)
            del j.opt_out[(platform, user)]
        for platform, user in list(j.forget):
            await self._forget_everywhere(platform, user)
            j.forget.discard((platform, user))
        for (conversation, pid), muted in list(j.muted.items()):
            await self.primary.set_muted(conversation, pid, muted)
            del j.muted[(conversation, pid)]
        for (platform, user), chosen in list(j.followers.items()):
            await self.primary.set_followers(platform, user, chosen)
            del j.followers[(platform, user)]
        for day, deltas in list(j.usage.items()):
            self._usage_seen = {day: await self.primary.add_usage(day, deltas)}
            del j.usage[day]
        # The outage's turns are not needed once Redis is back (history reads Redis then).
        self._turns = self._new_mirror()

    async def close(self) -> None:
        if self._listener is not None:
            await stop_task(self._listener)
        await self.primary.close()
        await self.local.close()
        await self.health.release_user()


def open_redis_state(cfg: FleetConfig, *, prefix: str = PREFIX) -> tuple[FallbackStore, FallbackRateLimiter]:
    """The fleet's store and limiter on the Redis at cfg.store, each falling back to local state."""
    client = make_client(cfg.store)
    health = RedisHealth(client)
    store = FallbackStore(
        RedisStore(
            client,
            prefix=prefix,
            history_size=cfg.fleet.history_size,
            retention_seconds=cfg.retention_days * 86400.0,
        ),
        health,
    )
    limiter = FallbackRateLimiter(RedisRateLimiter(client, prefix=prefix), health)
    return store, limiter
