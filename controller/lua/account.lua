-- Apply one Accounting-Request to a person's session and day counters, atomically.
-- Usage is the increase of Acct-Session-Time over the highest value seen for the session,
-- split at local midnight with the day boundaries computed by controller.quota: a
-- retransmitted, duplicated, reordered or replayed report never counts twice.
-- KEYS[1] session hash   KEYS[2] person's open-sessions hash
-- KEYS[3 .. 2+n] day usage counters, oldest first (n = ARGV[10])
-- KEYS[3+n] closing hash   KEYS[4+n] block key (read for the enforcer's snapshot)
-- ARGV[1] status (1 Start, 2 Stop, 3 Interim-Update)
-- ARGV[2] reported Acct-Session-Time   ARGV[3] event epoch (arrival - Acct-Delay-Time)
-- ARGV[4] day counter TTL   ARGV[5] session TTL
-- ARGV[6] input octets   ARGV[7] output octets   ARGV[8] terminate cause ('' if none)
-- ARGV[9] field naming the session in the open hash   ARGV[10] n (day boundaries)
-- ARGV[11 .. 10+n] day start epochs, oldest first (the first may be earlier: absorbs all before)
-- ARGV[11+n ..] field/value pairs describing the session, written only when first seen
-- Writes d:<YYYYMMDD> on the session hash: its seconds per local day (the archive's split).
-- Returns {delta applied, usage of the newest day, open sessions, 1 if closed by this call,
--          then the person as the quota enforcer sees them (as enforce_state.lua):
--          {sid, "mac|last", ...} open, {sid, epoch, ...} closing, block or ''}
local status = tonumber(ARGV[1])
local reported = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local n = tonumber(ARGV[10])
local sess = KEYS[1]

local seen = tonumber(redis.call('HGET', sess, 'seen') or '-1')
local closed = redis.call('HEXISTS', sess, 'closed') == 1
local applied = 0
if reported > seen then
  local delta = reported - math.max(seen, 0)
  local s, e = now - delta, now
  for i = 1, n do
    local lo = tonumber(ARGV[10 + i])
    local hi = e
    if i < n then hi = tonumber(ARGV[11 + i]) end
    if i == 1 then lo = math.min(lo, s) end
    local part = math.min(e, hi) - math.max(s, lo)
    if part > 0 then
      redis.call('INCRBY', KEYS[2 + i], part)
      redis.call('EXPIRE', KEYS[2 + i], ARGV[4])
      -- the same share on the session record, d:<YYYYMMDD> (the counter key's suffix),
      -- so the archived session splits per day exactly as the quota counted it
      redis.call('HINCRBY', sess, 'd:' .. string.sub(KEYS[2 + i], -8), part)
      applied = applied + part
    end
  end
  redis.call('HSET', sess, 'seen', reported,
             'in', ARGV[6], 'out', ARGV[7], 'last', now)
elseif seen < 0 then
  redis.call('HSET', sess, 'seen', 0, 'in', ARGV[6], 'out', ARGV[7], 'last', now)
end

if redis.call('HEXISTS', sess, 'start') == 0 then
  redis.call('HSET', sess, 'start', now - reported, unpack(ARGV, 11 + n))
end

local closed_now = 0
if status == 2 then
  if not closed then
    redis.call('HSET', sess, 'closed', now, 'cause', ARGV[8])
    closed_now = 1
  end
  redis.call('HDEL', KEYS[2], ARGV[9])
elseif not closed then
  local mac = redis.call('HGET', sess, 'mac') or ''
  redis.call('HSET', KEYS[2], ARGV[9], mac .. '|' .. now)
end
redis.call('EXPIRE', sess, ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
local used = tonumber(redis.call('GET', KEYS[2 + n]) or '0')
local open = redis.call('HGETALL', KEYS[2])
return {applied, used, #open / 2, closed_now,
        open, redis.call('HGETALL', KEYS[3 + n]), redis.call('GET', KEYS[4 + n]) or ''}
