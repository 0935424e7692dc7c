"""Relationship memory in Redis: a mixin of RedisStore, kept in its own module.

Keys (under the store prefix; also listed in bots/state/redis/__init__.py):
- `notes:<person>` hash, owner (persona id or "shared") -> the NoteBook as JSON; it expires
  retention_days after its last write, and `prune` drops notes older than that from books still live.
- `link:<platform>:<user>` string, the person an account was linked to; retention_days after linking.
- `linkcode:<code>` string, the person a one-time /link code joins; its ttl (minutes).

Writes are compare-and-set on the book's version in one script, so of two processes that summarise
the same person at once only the first write lands.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from bots.core.memory.notes import NoteBook

# KEYS: the person's notes hash. ARGV: owner, the version the stored book must have, book JSON, ttl ms.
WRITE_LUA = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local held = 0
if raw then
  local ok, book = pcall(cjson.decode, raw)
  if ok and type(book) == 'table' and tonumber(book.version) then held = tonumber(book.version) end
end
if held ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: the person's notes hash. ARGV: owner ("" for every owner). Returns how many notes went.
FORGET_LUA = """
local owners
if ARGV[1] == '' then owners = redis.call('HKEYS', KEYS[1]) else owners = {ARGV[1]} end
local removed = 0
for _, owner in ipairs(owners) do
  local raw = redis.call('HGET', KEYS[1], owner)
  if raw then
    local ok, book = pcall(cjson.decode, raw)
    if ok and type(book) == 'table' and type(book.notes) == 'table' then removed = removed + #book.notes end
    redis.call('HDEL', KEYS[1], owner)
  end
end
return removed
"""

# KEYS: the code's key, the account's link key. ARGV: the account's own person, link ttl ms.
# Taking the code and linking are one step: a code is used once, even by two processes at once.
REDEEM_LUA = """
local person = redis.call('GET', KEYS[1])
if not person then return false end
redis.call('DEL', KEYS[1])
if person ~= ARGV[1] then redis.call('SET', KEYS[2], person, 'PX', ARGV[2]) end
return person
"""

# KEYS: notes hashes. ARGV: cutoff (seconds). Drops notes written before it; returns how many.
PRUNE_LUA = """
local cutoff = tonumber(ARGV[1])
local removed = 0
for _, key in ipairs(KEYS) do
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local ok, book = pcall(cjson.decode, all[i + 1])
    if ok and type(book) == 'table' and type(book.notes) == 'table' then
      local kept = {}
      for _, note in ipairs(book.notes) do
        if tonumber(note.at) and tonumber(note.at) < cutoff then removed = removed + 1 else kept[#kept + 1] = note end
      end
      if #kept == 0 then
        redis.call('HDEL', key, all[i])
      elseif #kept ~= #book.notes then
        book.notes = kept
        redis.call('HSET', key, all[i], cjson.encode(book))
      end
    end
  end
end
return removed
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisNotes:
    _client: Redis
    _p: str
    retention_seconds: float

    def _script(self, name: str, source: str) -> AsyncScript:
        scripts: dict[str, AsyncScript] = self.__dict__.setdefault("_note_scripts", {})
        if name not in scripts:
            scripts[name] = self._client.register_script(source)
        return scripts[name]

    def _notes_key(self, person: str) -> str:
        return f"{self._p}notes:{person}"

    @property
    def _retention_ms(self) -> int:
        return int(self.retention_seconds * 1000)

    async def notes(self, person: str) -> dict[str, NoteBook]:
        raw = await self._client.hgetall(self._notes_key(person))
        return {_text(k): NoteBook.from_dict(json.loads(v)) for k, v in raw.items()}

    async def write_notes(self, person: str, owner: str, book: NoteBook) -> bool:
        data = json.dumps(book.to_dict(), separators=(",", ":"))
        script = self._script("write", WRITE_LUA)
        return bool(
            await script(keys=[self._notes_key(person)], args=[owner, book.version - 1, data, self._retention_ms])
        )

    async def forget_notes(self, person: str, owner: str | None = None) -> int:
        script = self._script("forget", FORGET_LUA)
        return int(await script(keys=[self._notes_key(person)], args=[owner or ""]))

    async def person_of(self, platform: str, user_id: str) -> str:
        raw = await self._client.get(f"{self._p}link:{platform}:{user_id}")
        return f"{platform}:{user_id}" if raw is None else _text(raw)

    async def offer_link(self, code: str, person: str, ttl: float, now: float) -> bool:
        await self._client.set(f"{self._p}linkcode:{code}", person, px=max(1, int(ttl * 1000)))
        return True

    async def redeem_link(self, code: str, platform: str, user_id: str, now: float) -> str | None:
        script = self._script("redeem", REDEEM_LUA)
        keys = [f"{self._p}linkcode:{code}", f"{self._p}link:{platform}:{user_id}"]
        raw = await script(keys=keys, args=[f"{platform}:{user_id}", self._retention_ms])
        return None if raw is None else _text(raw)

    async def unlink(self, platform: str, user_id: str) -> None:
        await self._client.delete(f"{self._p}link:{platform}:{user_id}")

    async def prune_notes(self, now: float, batch: int = 200) -> int:
        script = self._script("prune", PRUNE_LUA)
        cutoff = repr(now - self.retention_seconds)
        removed = 0
        keys: list[str] = []
        async for key in self._client.scan_iter(match=f"{self._p}notes:*", count=1000):
            keys.append(_text(key))
            if len(keys) >= batch:
                removed += int(await script(keys=keys, args=[cutoff]))
                keys = []
        if keys:
            removed += int(await script(keys=keys, args=[cutoff]))
        return removed
