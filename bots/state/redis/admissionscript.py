"""The admission script: one Lua call decides every message of a batch (see admission.py). Kept apart
from its caller as leasescript.py is from leases.py; the two change together, since the reply is read
by position."""

from __future__ import annotations

from bots.state.redis.limiter import GCRA_LUA

# ARGV: 1 prefix, 2 the trusted epoch, 3 "" or a pinned limiter time (us), 4 "1" to return tats,
# 5 JSON messages, 6-8 the rates as limiter.LIMIT_LUA's ARGV 1-3 (one decision per message, in
# order), 9 history size, 10 retention ms. A message: [key, payload, owner, lease ms, keep ms,
# settle (1: no pending entry), platform, user whose opt-out counts, conversation, parent
# conversation, turn JSON, the turn's user id, retention cutoff, [candidate persona ids], 1 when
# nothing can come of it (no mutes or limits needed), 1 when nothing but a granted reply can (the
# claim is done at once if no candidate is granted), 1 to read the user's care end for the
# conversation].
# Returns JSON "stale" (epoch changed: nothing done), or flat per message: status (0 duplicate,
# 1 admitted, 2 opted out, 3 admitted with nobody granted and the claim done at once), the care end
# as stored ("" when none or not read: the caller drops a lapsed one, as care.py does), the number
# of muted personas and their ids, the number of candidates and per candidate (code, retry us):
# 0 admitted, -1 capped, -2 muted, k blocked by its k-th rate; then, on request, (key index, us its
# tat is ahead) pairs as LIMIT_LUA gives them.
ADMIT_LUA = (
    GCRA_LUA
    + """
local call = redis.call
local P = ARGV[1]
if (call('GET', P .. 'state-epoch') or '') ~= ARGV[2] then return '"stale"' end
local t = call('TIME')
local clock = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(clock / 1000)
local now = clock
if ARGV[3] ~= '' then now = tonumber(ARGV[3]) end
local msgs = cjson.decode(ARGV[5])
local flat = cjson.decode(ARGV[8])
local size, retention = tonumber(ARGV[9]), tonumber(ARGV[10])
local pending, payloads = P .. 'claims', P .. 'claims:payload'

local function append(conv, turn, user, platform, cutoff)
  local h = P .. 'h:' .. conv
  call('RPUSH', h, turn)
  call('LTRIM', h, -size, -1)
  -- Turns are appended in time order, so the expired ones are all at the head.
  while true do
    local head = call('LINDEX', h, 0)
    if not head then break end
    local ok, old = pcall(cjson.decode, head)
    if ok and type(old) == 'table' and tonumber(old.at) and tonumber(old.at) < cutoff then
      call('LPOP', h)
    else
      break
    end
  end
  call('PEXPIRE', h, retention)
  if user ~= '' then
    local index = P .. 'uc:' .. platform .. ':' .. user
    call('SADD', index, conv)
    call('PEXPIRE', index, 2 * retention)
  end
end

local d, dn = {}, 0
local info = {}
-- The pending claims live dedupe_seconds past the batch's last claim: one expiry per batch.
local keep = nil
local p = 1
for i = 1, #msgs do
  local m = msgs[i]
  local key, owner, platform, user = m[1], m[3], m[7], m[8]
  local max_grants, ncand = flat[p], flat[p + 1]
  p = p + 2
  local starts = {}
  for c = 1, ncand do
    starts[c] = p
    p = p + 1 + flat[p]
  end
  local status = 1
  local seen = P .. 'seen:' .. key
  if not call('SET', seen, owner, 'NX', 'PX', m[5]) then
    local lapses = call('ZSCORE', pending, key)
    if not lapses or tonumber(lapses) > now_ms then
      status = 0
    else
      -- Offered again (a redelivery) while its owner is dead: the claimer answers it.
      call('SET', seen, owner, 'KEEPTTL')
    end
  end
  local mlist, open, care = {}, {}, ''
  if status == 1 then
    if user ~= '' and call('SISMEMBER', P .. 'optout:' .. platform, user) == 1 then status = 2 end
    if status == 2 or m[6] == 1 then
      -- Nothing will come of it: the claim is done as it is taken (a takeover's entry goes too).
      call('ZREM', pending, key)
      call('HDEL', payloads, key)
    else
      call('ZADD', pending, now_ms + m[4], key)
      call('HSET', payloads, key, m[2])
      keep = m[5]
    end
  end
  if status == 1 and m[11] ~= '' then
    local writer = m[12]
    if writer == '' or writer == user or call('SISMEMBER', P .. 'optout:' .. platform, writer) == 0 then
      append(m[9], m[11], writer, platform, tonumber(m[13]))
    end
  end
  if status == 1 and m[17] == 1 then
    care = call('HGET', P .. 'care:' .. platform .. ':' .. user, m[9]) or ''
  end
  if status == 1 and m[15] ~= 1 then
    local muted = {}
    for _, conv in ipairs({m[9], m[10]}) do
      if conv ~= '' then
        for _, pid in ipairs(call('SMEMBERS', P .. 'mute:' .. conv)) do
          if not muted[pid] then
            muted[pid] = true
            mlist[#mlist + 1] = pid
          end
        end
      end
    end
    local cands = m[14]
    for c = 1, ncand do
      if not muted[cands[c]] then open[#open + 1] = c end
    end
    if #open > 0 then
      d[dn + 1] = max_grants
      d[dn + 2] = #open
      dn = dn + 2
      for _, c in ipairs(open) do
        local q = starts[c]
        for j = 0, flat[q] do
          dn = dn + 1
          d[dn] = flat[q + j]
        end
      end
    end
  end
  info[i] = {status, mlist, open, status == 1 and ncand or 0, care}
end
if keep then
  call('PEXPIRE', pending, keep)
  call('PEXPIRE', payloads, keep)
end
local out, tat = gcra(cjson.decode(ARGV[6]), cjson.decode(ARGV[7]), d, now)
local res, r, v = {}, 0, 0
for i = 1, #msgs do
  local status, mlist, open, ncand = info[i][1], info[i][2], info[i][3], info[i][4]
  local at = r + 1
  res[r + 1] = status
  res[r + 2] = info[i][5]
  res[r + 3] = #mlist
  r = r + 3
  for _, pid in ipairs(mlist) do
    r = r + 1
    res[r] = pid
  end
  r = r + 1
  res[r] = ncand
  local code = {}
  for c = 1, ncand do code[c] = -2 end
  for _, c in ipairs(open) do
    code[c] = v + 1
    v = v + 2
  end
  local granted = false
  for c = 1, ncand do
    if code[c] == -2 then
      res[r + 1] = -2
      res[r + 2] = 0
    else
      res[r + 1] = out[code[c]]
      res[r + 2] = out[code[c] + 1]
      if out[code[c]] == 0 then granted = true end
    end
    r = r + 2
  end
  local m = msgs[i]
  if status == 1 and m[6] ~= 1 and m[16] == 1 and not granted then
    -- Refused all round and nothing else can come of it: done now, not after an empty plan.
    call('ZREM', pending, m[1])
    call('HDEL', payloads, m[1])
    res[at] = 3
  end
end
if ARGV[4] == '1' then
  for k, val in pairs(tat) do
    res[r + 1] = k - 1
    res[r + 2] = (val and val > now) and (val - now) or 0
    r = r + 2
  end
end
return cjson.encode(res)
"""
)
