"""The Store protocol in Redis.

The store keeps per conversation a capped list of JSON turns that also ages out after the retention
period, dedupe keys set with SET NX PX, sets for opt-outs and mutes, a hash of first contacts per
user, and a hash of token usage per day. Appends and /forget are Lua scripts, so an opted-out user's
turn can never slip in between the opt-out check and the write, and /forget sees a consistent
history; a per-user index of conversations lets /forget find every one of them without a scan.

Opt-outs, mutes and follower choices are the only state that must never be lost, yet a Redis without
persistence loses them on a restart (and FLUSHALL loses them anywhere). So the store marks its data
with an epoch (`state-epoch`, a random token), and the `*_at` reads return the epoch along with the
answer in the same round trip: a missing or changed epoch tells the caller (FallbackStore) that Redis
lost its data, and `restore` writes back what the caller remembers. Every key and its lifetime is
listed in bots/state/redis/__init__.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from bots.core.ports import Turn
from bots.state.memory import Choices
from bots.state.redis.batch import UNCAPPED, Batcher
from bots.state.redis.care import RedisCare, daily_batcher
from bots.state.redis.client import PREFIX
from bots.state.redis.notes import RedisNotes

# Keys kept without an expiry, each for the reason given in bots/state/redis/__init__.py.
PERMANENT_KEYS = ("optout:", "mute:", "follow:", "state-epoch", "choices-version")

# The default for how long history is kept (config: retention_days).
RETENTION_SECONDS = 30 * 86400.0

# KEYS: the choice's key, the choices version. ARGV: operation, value, channel, the change as JSON.
# Every write of a choice counts a version and is published with it, in one step: a process that sees
# the versions of the changes it receives go up one at a time knows it missed none (mirror.py).
CHOICE_LUA = """
local op = ARGV[1]
if op == 'sadd' then redis.call('SADD', KEYS[1], ARGV[2])
elseif op == 'srem' then redis.call('SREM', KEYS[1], ARGV[2])
elseif op == 'set' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('DEL', KEYS[1]) end
local version = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], version .. ' ' .. ARGV[4])
return version
"""

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
# The fleet's replies to the user's turns go too (they may quote them), and replies to those: turns are
# in time order, so one pass that remembers the removed message ids finds them all.
FORGET_LUA = """
local function is_str(v) return type(v) == 'string' and v ~= '' end
local convs = redis.call('SMEMBERS', KEYS[1])
local removed = 0
for _, conv in ipairs(convs) do
  local key = ARGV[2] .. conv
  local items = redis.call('LRANGE', key, 0, -1)
  local kept = {}
  local gone = {}
  for _, raw in ipairs(items) do
    local ok, turn = pcall(cjson.decode, raw)
    local drop = ok and type(turn) == 'table' and (turn.user_id == ARGV[1]
      or (is_str(turn.persona_id) and is_str(turn.reply_to) and gone[turn.reply_to]))
    if drop then
      removed = removed + 1
      if is_str(turn.message_id) then gone[turn.message_id] = true end
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

# ARGV: the records' expiry ms, then per first contact the told key, persona id and time. Returns
# per contact 1 when it was the first (HSETNX): every first contact asked while earlier calls were out.
FIRST_CONTACT_LUA = """
local out = {}
for i = 2, #ARGV, 3 do
  out[#out + 1] = redis.call('HSETNX', ARGV[i], ARGV[i + 1], ARGV[i + 2])
  -- Kept as long as history: after that the person is told again, which errs the right way.
  redis.call('PEXPIRE', ARGV[i], ARGV[1])
end
return out
"""

# Usage totals matter for today and (around midnight) yesterday; three days is plenty.
USAGE_TTL_MS = 3 * 86400 * 1000


def _platform_of(conversation: str) -> str:
    return conversation.partition(":")[0]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore(RedisNotes, RedisCare):
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
        self._choice = client.register_script(CHOICE_LUA)
        self._first_contact = client.register_script(FIRST_CONTACT_LUA)
        # First contacts asked while earlier ones are out share the next call (the caller's budget,
        # RedisHealth.call, bounds the wait; the queue is not capped, as the calls were not before).
        self._contacts = Batcher[_Contact](self._send_contacts, timeout=None, max_pending=UNCAPPED)
        self._dailies = daily_batcher(self._send_dailies)  # healthy-use counters, batched alike

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
        return removed + await self.prune_notes(now, batch)

    async def forget_user(self, platform: str, user_id: str) -> int:
        if not user_id:
            return 0
        keys = [self._index_key(platform, user_id), self._told_key(platform, user_id)]
        removed = int(await self._forget(keys=keys, args=[user_id, f"{self._p}h:"]))
        await self.forget_daily(f"use:{platform}:{user_id}")  # healthy-use counters (care.py)
        return removed

    @property
    def choices_channel(self) -> str:
        return f"{self._p}choices"

    @property
    def version_key(self) -> str:
        return f"{self._p}choices-version"

    async def _write_choice(self, key: str, op: str, value: str, change: list[object]) -> None:
        note = json.dumps(change, separators=(",", ":"))
        await self._choice(keys=[key, self.version_key], args=[op, value, self.choices_channel, note])

    async def set_opt_out(self, platform: str, user_id: str, opted_out: bool) -> None:
        key = f"{self._p}optout:{platform}"
        await self._write_choice(
            key, "sadd" if opted_out else "srem", user_id, ["optout", platform, user_id, opted_out]
        )

    async def is_opted_out(self, platform: str, user_id: str) -> bool:
        return bool(await self._client.sismember(f"{self._p}optout:{platform}", user_id))

    async def set_muted(self, conversation: str, persona_id: str, muted: bool) -> None:
        key = f"{self._p}mute:{conversation}"
        change: list[object] = ["mute", conversation, persona_id, muted]
        await self._write_choice(key, "sadd" if muted else "srem", persona_id, change)

    async def muted(self, conversation: str) -> frozenset[str]:
        return frozenset(_text(m) for m in await self._client.smembers(f"{self._p}mute:{conversation}"))

    async def followers(self, platform: str, user_id: str) -> tuple[str, ...] | None:
        raw = await self._client.get(f"{self._p}follow:{platform}:{user_id}")
        return None if raw is None else tuple(json.loads(raw))

    async def set_followers(self, platform: str, user_id: str, persona_ids: tuple[str, ...] | None) -> None:
        key = f"{self._p}follow:{platform}:{user_id}"
        chosen = None if persona_ids is None else list(persona_ids)
        change: list[object] = ["follow", platform, user_id, chosen]
        if chosen is None:
            await self._write_choice(key, "del", "", change)
        else:
            await self._write_choice(key, "set", json.dumps(chosen), change)

    # --- reads that also say whether Redis still holds its data ---------------------------------

    @property
    def epoch_key(self) -> str:
        return f"{self._p}state-epoch"

    async def state_epoch(self) -> str | None:
        raw = await self._client.get(self.epoch_key)
        return None if raw is None else _text(raw)

    async def claim_epoch(self, token: str) -> str:
        """Mark the data with `token` unless another process already did; returns the epoch in force."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self.epoch_key, token, nx=True)
            pipe.get(self.epoch_key)
            _, raw = await pipe.execute()
        return _text(raw)

    async def is_opted_out_at(self, platform: str, user_id: str) -> tuple[bool, str | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.sismember(f"{self._p}optout:{platform}", user_id)
            pipe.get(self.epoch_key)
            member, epoch = await pipe.execute()
        return bool(member), None if epoch is None else _text(epoch)

    async def muted_at(self, conversation: str) -> tuple[frozenset[str], str | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.smembers(f"{self._p}mute:{conversation}")
            pipe.get(self.epoch_key)
            members, epoch = await pipe.execute()
        return frozenset(_text(m) for m in members), None if epoch is None else _text(epoch)

    async def followers_at(self, platform: str, user_id: str) -> tuple[tuple[str, ...] | None, str | None]:
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.get(f"{self._p}follow:{platform}:{user_id}")
            pipe.get(self.epoch_key)
            raw, epoch = await pipe.execute()
        return None if raw is None else tuple(json.loads(raw)), None if epoch is None else _text(epoch)

    async def restore(self, choices: Choices, batch: int = 500) -> None:
        """Write back choices Redis lost. Opt-outs and mutes are added (a stale one errs on the side of
        silence); a follower choice made since the loss is newer than ours and is kept (SET NX)."""
        ops: list[tuple[str, str, str]] = [
            ("sadd", f"{self._p}optout:{platform}", user) for platform, user in choices.opted_out
        ]
        ops += [("sadd", f"{self._p}mute:{conv}", pid) for conv, pids in choices.muted for pid in pids]
        ops += [
            ("setnx", f"{self._p}follow:{platform}:{user}", json.dumps(list(chosen)))
            for platform, user, chosen in choices.followers
        ]
        for i in range(0, len(ops), batch):
            async with self._client.pipeline(transaction=False) as pipe:
                for op, key, value in ops[i : i + batch]:
                    if op == "sadd":
                        pipe.sadd(key, value)
                    else:
                        pipe.set(key, value, nx=True)
                await pipe.execute()
        # Other processes see the version move and reload their mirrors (mirror.py).
        await self._client.incr(self.version_key)

    # --- first contacts and usage ----------------------------------------------------------------

    async def first_contact(self, platform: str, persona_id: str, user_id: str, now: float) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._contacts.submit(_Contact(self._told_key(platform, user_id), persona_id, now, future))
        return await future

    async def _send_contacts(self, jobs: list[_Contact]) -> None:
        args: list[str | int] = [int(self.retention_seconds * 1000)]
        for job in jobs:
            args += (job.key, job.persona_id, repr(job.now))
        firsts = await self._first_contact(args=args)
        for job, first in zip(jobs, firsts, strict=True):
            if not job.future.done():
                job.future.set_result(bool(first))

    async def first_told(self, platform: str, persona_id: str, user_id: str) -> float | None:
        raw = await self._client.hget(self._told_key(platform, user_id), persona_id)
        return None if raw is None else float(raw)

    async def add_usage(self, day: str, deltas: Mapping[str, int]) -> dict[str, int]:
        args: list[str | int] = [USAGE_TTL_MS]
        for key, n in deltas.items():
            args += (key, int(n))
        raw = await self._usage(keys=[f"{self._p}usage:{day}"], args=args)
        return {_text(raw[i]): int(raw[i + 1]) for i in range(0, len(raw), 2)}

    async def add_daily(self, day: str, key: str, deltas: Mapping[str, int]) -> dict[str, int]:
        return await self.add_daily_indexed(day, key, deltas)  # care.py: indexed so /forget finds them

    async def close(self) -> None:
        await self._contacts.close()
        await self._dailies.close()


@dataclass(slots=True)
class _Contact:
    key: str
    persona_id: str
    now: float
    future: asyncio.Future[bool]
