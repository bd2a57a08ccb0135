-- Apply one Accounting-Request to a person's session and day counters, atomically.
-- Usage is the increase of Acct-Session-Time over the highest value seen for the session,
-- split at local midnight with the day boundaries computed by controller.domain.quota: a
-- retransmitted, duplicated, reordered or replayed report never counts twice.
--
-- Generations (a NAS reuses Acct-Session-Ids, e.g. after a reboot): the caller names the
-- generation g it believes current (controller.storage.keys.session_id); the generation-1 record
-- holds the current one in field 'gen'. A report that cannot belong to the current
-- generation's closed session (a Start begun after its start; anything begun after an
-- Accounting-On closed it; a smaller Acct-Session-Time begun after its last report; each
-- with TOLERANCE s of rounding, so a late retransmitted Start is the old one) asks for a new
-- generation: nothing is written, {'new', g+1} is returned and the caller repeats with
-- ARGV[12] = 1 (create), which is refused with {'moved', current} when another request
-- created it first. A wrong g gets {'moved', current} too. A report begun before
-- generation g started is a late one of g-1 (KEYS[6+n]): counted there, nothing else.
-- A session closed only because it looked stale (or its NAS said it had no such session)
-- that reports progress is re-opened: counted, in the open hash, enforced again.
-- Each report's gap since the one before (the lesser of the increase of Acct-Session-Time
-- and the time passed) keeps the session's largest ('gap', at most ARGV[15]: the cadence
-- its NAS reports at), and its stale slack = floor(grace x (gap - interim) / interim) when
-- gap > interim (controller.domain.quota.StaleRule) rides in the open hash: "mac|last|slack".
--
-- KEYS[1] session hash of generation g   KEYS[2] person's open-sessions hash
-- KEYS[3 .. 2+n] day usage counters, oldest first (n = ARGV[10])
-- KEYS[3+n] closing hash   KEYS[4+n] block key (read for the enforcer's snapshot)
-- KEYS[5+n] generation-1 session hash (holds 'gen')   KEYS[6+n] generation g-1's hash
-- ARGV[1] status (1 Start, 2 Stop, 3 Interim-Update)
-- ARGV[2] reported Acct-Session-Time   ARGV[3] event epoch (arrival - Acct-Delay-Time)
-- ARGV[4] day counter TTL   ARGV[5] session TTL
-- ARGV[6] input octets   ARGV[7] output octets   ARGV[8] terminate cause ('' if none)
-- ARGV[9] field naming the session in the open hash (its sid)   ARGV[10] n (day boundaries)
-- ARGV[11] generation g   ARGV[12] 1: create generation g   ARGV[13] stale grace (s)
-- ARGV[14] interim interval asked for (s)   ARGV[15] largest gap believed (s)
-- ARGV[16 .. 15+n] day start epochs, oldest first (the first may be earlier: absorbs all before)
-- ARGV[16+n ..] field/value pairs describing the session, written only when first seen;
--   none: the caller believes the session recorded (an Interim or Stop after its Start).
--   If it is not, nothing is written and {'fields'} returned: repeat with them.
-- Writes d:<YYYYMMDD> on the session hash: its seconds per local day (the archive's split).
-- Returns {delta applied, usage of the newest day, open sessions, 1 if closed by this call,
--          then the person as the quota enforcer sees them (as enforce_state.lua):
--          {sid, "mac|last|slack", ...} open, {sid, epoch, ...} closing, block or '',
--          1 if this call re-opened the session, 1 if it went to generation g-1,
--          the session's largest gap between reports}
--         or {'new', g + 1} / {'moved', current generation} / {'fields'}: nothing
--         written, repeat
local status = tonumber(ARGV[1])
local reported = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local n = tonumber(ARGV[10])
local g = tonumber(ARGV[11])
local grace, interim, cap = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local B = 15 -- ARGV[B+1 .. B+n]: day starts
local sess = KEYS[1]
local TOLERANCE = 2 -- seconds of rounding between our clock and the NAS's session time

-- true if this report cannot be of the closed session in hash `key`: the id is reused
local function succeeded(key)
  local r = redis.call('HMGET', key, 'closed', 'start', 'seen', 'last', 'shut', 'shut_at')
  if not r[1] then
    return false
  end
  local began = now - reported
  if status == 1 and began > tonumber(r[2] or '0') + TOLERANCE then
    return true
  end
  if r[5] == 'nas' and began >= tonumber(r[6] or '0') - TOLERANCE then
    return true
  end
  return reported < tonumber(r[3] or '0') and began > tonumber(r[4] or '0') + TOLERANCE
end

local current = tonumber(redis.call('HGET', KEYS[5 + n], 'gen') or '1')
local earlier = 0 -- 1: a late report of generation g-1, begun before g started
if ARGV[12] == '1' then
  if current ~= g - 1 or not succeeded(KEYS[6 + n]) then
    return {'moved', current}
  end
  redis.call('HSET', KEYS[5 + n], 'gen', g)
  redis.call('DEL', sess)
elseif current ~= g then
  return {'moved', current}
else
  local began = tonumber(redis.call('HGET', sess, 'start') or '-1')
  if g > 1 and began >= 0 and now - reported < began - TOLERANCE then
    sess = KEYS[6 + n] -- counted there (if it adds anything); never re-opened
    earlier = 1
  elseif succeeded(sess) then
    return {'new', g + 1}
  end
end
if #ARGV == B + n and redis.call('HEXISTS', sess, 'start') == 0 then
  return {'fields'} -- not recorded yet (expired, or first seen by another worker)
end
if g > 1 then
  redis.call('EXPIRE', KEYS[5 + n], ARGV[5]) -- the pointer lives as long as its newest
end

local rec = redis.call('HMGET', sess, 'seen', 'closed', 'shut', 'last', 'gap', 'slack')
local seen = tonumber(rec[1] or '-1')
local closed = rec[2] ~= false
local reopened = 0
if closed and earlier == 0 and (rec[3] == 'stale' or rec[3] == 'gone') and reported > seen then
  redis.call('HDEL', sess, 'closed', 'cause', 'shut', 'shut_at')
  closed = false
  reopened = 1
end
local slack = tonumber(rec[6] or '0')
local gap = tonumber(rec[5] or '0')
local applied = 0
if reported > seen then
  local delta = reported - math.max(seen, 0)
  local s, e = now - delta, now
  for i = 1, n do
    local lo = tonumber(ARGV[B + i])
    local hi = e
    if i < n then hi = tonumber(ARGV[B + 1 + i]) end
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
  if seen >= 0 and rec[4] then
    -- the NAS's cadence: the lesser of the session time and the time that passed between
    -- the two reports (neither our downtime nor a jump of Acct-Session-Time inflates it)
    gap = math.max(gap, math.min(delta, now - tonumber(rec[4]), cap))
  end
  if gap > interim then
    slack = math.floor(grace * (gap - interim) / interim)
  end
  redis.call('HSET', sess, 'seen', reported, 'in', ARGV[6], 'out', ARGV[7], 'last', now,
             'gap', gap, 'slack', slack)
end

if redis.call('HEXISTS', sess, 'start') == 0 then
  redis.call('HSET', sess, 'start', now - reported, unpack(ARGV, B + 1 + n))
end

local closed_now = 0
if earlier == 1 then
  closed = true -- a superseded generation: the open hash is the current one's
elseif status == 2 then
  if not closed then
    redis.call('HSET', sess, 'closed', now, 'cause', ARGV[8], 'shut', 'stop')
    closed_now = 1
  end
  redis.call('HDEL', KEYS[2], ARGV[9])
elseif not closed then
  local mac = redis.call('HGET', sess, 'mac') or ''
  redis.call('HSET', KEYS[2], ARGV[9], mac .. '|' .. now .. '|' .. slack)
end
redis.call('EXPIRE', sess, ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
local used = tonumber(redis.call('GET', KEYS[2 + n]) or '0')
local open = redis.call('HGETALL', KEYS[2])
return {applied, used, #open / 2, closed_now,
        open, redis.call('HGETALL', KEYS[3 + n]), redis.call('GET', KEYS[4 + n]) or '',
        reopened, earlier, gap}
