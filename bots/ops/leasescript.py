"""The lease loop's Lua scripts (bots/ops/leases.py explains the leases, bots/ops/budget.py the connect
budgets): each one round trip, atomic, on the server's clock."""

# KEYS[1]: the pool's member zset (score: expiry, ms). KEYS[2]: zset of known accounts (for status).
# KEYS[3]: the epoch: when this Redis started holding leases. KEYS[4..]: one lease key per account,
# in this process's order of preference.
# ARGV[1]: this process, ARGV[2]: lease ms, ARGV[3]: "1" to stay a member, "0" to leave,
# ARGV[4..]: per account, 0 = take if free and under the share, 1 = hold (renew), 2 = release,
# 3 = leave alone; then the lease key prefix. Returns {share, ms until another member's entry expires
# (-1: none), ms until free accounts may be taken (<= 0: now), then per account the holder ("" if
# free) and its lease's remaining ms}.
TICK_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, ttl = ARGV[1], tonumber(ARGV[2])
local members = KEYS[1]
-- A Redis that lost its data (restarted without persistence) has forgotten every lease, but the
-- processes that held them may still be receiving. For one lease time nobody takes a free account;
-- holders re-assert theirs (flag 1) in that time, or have stopped by then (they fail closed).
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = now
  redis.call('SET', KEYS[3], now)
end
local grace = tonumber(epoch) + ttl - now
redis.call('ZREMRANGEBYSCORE', members, '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZADD', members, now + ttl, me)
else
  redis.call('ZREM', members, me)
end
redis.call('PEXPIRE', members, 2 * ttl)
local list = redis.call('ZRANGE', members, 0, -1, 'WITHSCORES')
local count = #list / 2
local soonest = -1
for i = 1, #list, 2 do
  if list[i] ~= me then
    local left = tonumber(list[i + 1]) - now
    if soonest < 0 or left < soonest then soonest = left end
  end
end
local n = #KEYS - 3
local share = n
if count > 0 then share = math.ceil(n / count) end
local prefix_len = #ARGV[4 + n]
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local held = 0
local holder = {}
for i = 1, n do
  local key, flag = KEYS[i + 3], ARGV[i + 3]
  if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], now + 2 * ttl, string.sub(key, prefix_len + 1)) end
  local cur = redis.call('GET', key)
  -- Our own lease gone missing can only mean lost data (we stop before a lease can lapse): re-assert.
  if flag == '1' and (cur == me or not cur) then
    redis.call('SET', key, me, 'PX', ttl)
    held = held + 1
    cur = me
  elseif flag == '2' and cur == me then
    redis.call('DEL', key)
    cur = false
  end
  holder[i] = cur
end
if grace <= 0 then
  for i = 1, n do
    if held >= share then break end
    if ARGV[i + 3] == '0' and not holder[i] then
      redis.call('SET', KEYS[i + 3], me, 'PX', ttl)
      holder[i] = me
      held = held + 1
    end
  end
end
redis.call('PEXPIRE', KEYS[2], 2 * ttl)
local out = {share, soonest, grace}
for i = 1, n do
  if holder[i] then
    out[#out + 1] = holder[i]
    out[#out + 1] = redis.call('PTTL', KEYS[i + 3])
  else
    out[#out + 1] = ''
    out[#out + 1] = -2
  end
end
return out
"""

# KEYS[1]: the account's counter hash. ARGV: total, remaining, reserve, reset_after ms.
# Returns {1 if the connect may go ahead (and is counted), connects used, 1 if this refusal is the
# window's first, ms until the window resets}.
COUNT_LUA = """
local total, remaining, reserve = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local key, reset = KEYS[1], tonumber(ARGV[4])
local used = math.max(tonumber(redis.call('HGET', key, 'used') or '0'), total - remaining)
local allow = total - used > reserve
local first = 0
if allow then
  used = used + 1
  redis.call('HSET', key, 'used', used)
else
  first = redis.call('HSETNX', key, 'warned', 1)
end
if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, math.max(reset, 1)) end
return {allow and 1 or 0, used, first, redis.call('PTTL', key)}
"""
