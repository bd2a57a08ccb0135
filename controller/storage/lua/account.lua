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
-- create = 1 (ARGV[11]), which is refused with {'moved', current} when another request
-- created it first. A wrong g gets {'moved', current} too. A report begun before
-- generation g started is a late one of g-1 (KEYS[6+n]): counted there, nothing else.
-- A session closed only because it looked stale (or its NAS said it had no such session)
-- that reports progress is re-opened: counted, in the open hash, enforced again.
-- Each report's gap since the one before (the lesser of the increase of Acct-Session-Time
-- and the time passed) keeps the session's largest ('gap', at most the cap in ARGV[11]:
-- the cadence its NAS reports at), and its stale slack = floor(grace x (gap - interim) / interim) when
-- gap > interim (controller.domain.quota.StaleRule) rides in the open hash: "mac|last|slack".
--
-- KEYS[1] session hash of generation g   KEYS[2] person's open-sessions hash
-- KEYS[3 .. 2+n] day usage counters, oldest first (n: the day starts in ARGV[11])
-- KEYS[3+n] closing hash   KEYS[4+n] block key (read for the enforcer's snapshot)
-- KEYS[5+n] generation-1 session hash (holds 'gen')   KEYS[6+n] generation g-1's hash
-- KEYS[7+n] due index   KEYS[8+n] open-session index   KEYS[9+n] the NAS's session set
-- KEYS[10+n] outbox: the global indexes, written here when `inside` is 1 (one Redis, or
--   Sentinel); on a Cluster they live in other slots: placeholders of this slot, unread,
--   and the caller writes them in the same pipeline
-- The strings Redis stores as they are: ARGV[1] reported Acct-Session-Time
-- ARGV[2] event epoch (arrival - Acct-Delay-Time)   ARGV[3] day counter TTL
-- ARGV[4] session TTL   ARGV[5] input octets   ARGV[6] output octets
-- ARGV[7] terminate cause ('' if none)   ARGV[8] field naming the session in the open hash
--   (its sid)   ARGV[9] the session's member in the global indexes ("pid|sid")
-- ARGV[10] pid
-- ARGV[11] the numbers the script computes with, little-endian doubles (Redis's struct
--   library; one unpack instead of a strtod per number, and one argument instead of 14+n:
--   issue 16), in this order (NUMBERS below): status (1 Start, 2 Stop, 3 Interim-Update),
--   reported Acct-Session-Time, event epoch, generation g, create (1: create generation g),
--   inside (1: write the global indexes KEYS[7+n .. 10+n] here, else the caller does),
--   stale grace (s), interim interval asked for (s), largest gap believed (s), daily
--   allowance (s; -1: return the snapshot for the caller to plan), next local midnight,
--   stale before (epoch), retry after (s), max devices (0: no limit; with a daily
--   allowance the enforcer's due time is computed here, lib/due.lua, and with inside = 1
--   ZADDed LT to the due index), then the n day start epochs, oldest first (the first
--   may be earlier: absorbs all before)
-- ARGV[12 ..] field/value pairs describing the session, written only when first seen;
--   none: the caller believes the session recorded (an Interim or Stop after its Start).
--   If it is not, nothing is written and {'fields'} returned: repeat with them.
-- Writes d:<YYYYMMDD> on the session hash: its seconds per local day (the archive's split).
-- Redis CPU (issue 16, docs/performance.md): numbers go to redis.call as strings (ARGV's
-- own, or '%d'; a Lua number costs a '%.17g' snprintf there), numbers come in packed, the
-- session hash is read for 7 fields ('shut'/'shut_at'/'gen' only of a closed one: a
-- missing field scans the whole hash), 'gap'/'slack' are written when they change, and
-- 'seen'... in one HSET with a new record's start and fields or a Stop's close (each
-- redis.call'd write is a call and a command propagated to the AOF). Lua allocates for
-- a table it builds and for a function's upvalues, on every call, and Redis pays for that
-- and its GC: arguments are spelt out, and the functions read no local of the script.
-- Returns {delta applied, usage of the newest day, open sessions, 1 if closed by this call,
--          then the person as the quota enforcer sees them (as enforce_state.lua):
--          {sid, "mac|last|slack", ...} open, {sid, epoch, ...} closing, block or '',
--          1 if this call re-opened the session, 1 if it went to generation g-1,
--          the session's largest gap between reports,
--          the due time ('' not computed: no daily allowance or generation g-1; -1: none),
--          1 if the snapshot (open, closing, block) is in the reply: always without a
--          due time, and on a Start (the enforcer's CoA of a new session needs it);
--          else 0, 0, ''}
--         or {'new', g + 1} / {'moved', current generation} / {'fields'}: nothing
--         written, repeat
-- #include due.lua
local FIXED = 14 -- the numbers before the day starts in ARGV[11]
local n = #ARGV[11] / 8 - FIXED
local status, reported, now, g, create, inside, grace, interim, cap, daily, midnight,
      stale_before, retry_after, max_devices = struct.unpack('<dddddddddddddd', ARGV[11])
local B = 12 -- ARGV[B ..]: the session's fields
local function day_start(i) -- the epoch day i starts (i = 1 .. n): 1 + 8 * (FIXED + i - 1)
  return (struct.unpack('<d', ARGV[11], 105 + 8 * i))
end
local sess = KEYS[1]
local TOLERANCE = 2 -- seconds of rounding between our clock and the NAS's session time
local fmt = string.format
-- what is read of a session hash: one HMGET (R[i] below); SHUT, SHUT_AT and GEN, only
-- ever set on a closed session, are read in a second one only when it is closed. (GEN:
-- the generation-1 record gets 'gen' only when it is closed, by the create below, and is
-- not re-opened after, its reports being 'moved'; so an open one is generation 1's own.)
local CLOSED, START, SEEN, LAST, GAP, SLACK, MAC, GEN, SHUT, SHUT_AT = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
local function record(key) -- (r[1] CLOSED; r[8], r[9], r[10] GEN, SHUT, SHUT_AT)
  local r = redis.call('HMGET', key, 'closed', 'start', 'seen', 'last', 'gap', 'slack', 'mac')
  if r[1] then
    local shut = redis.call('HMGET', key, 'shut', 'shut_at', 'gen')
    r[9], r[10], r[8] = shut[1], shut[2], shut[3]
  end
  return r
end

-- true if a report (status, reported Acct-Session-Time, the epoch it began) cannot be of
-- the closed session of record r: the id is reused (r[1 .. 4], r[9], r[10]: CLOSED,
-- START, SEEN, LAST, SHUT, SHUT_AT; 2: TOLERANCE)
local function succeeded(r, status, reported, began)
  if not r[1] then
    return false
  end
  if status == 1 and began > tonumber(r[2] or '0') + 2 then
    return true
  end
  if r[9] == 'nas' and began >= tonumber(r[10] or '0') - 2 then
    return true
  end
  return reported < tonumber(r[3] or '0') and began > tonumber(r[4] or '0') + 2
end

local R -- the record of `sess`
local current
if g == 1 then -- KEYS[5+n] is this very hash: one read for both
  R = record(sess)
  current = R[GEN] and tonumber(R[GEN]) or 1
else
  current = tonumber(redis.call('HGET', KEYS[5 + n], 'gen') or '1')
end
local earlier = 0 -- 1: a late report of generation g-1, begun before g started
if create == 1 then
  if current ~= g - 1 or not succeeded(record(KEYS[6 + n]), status, reported, now - reported) then
    return {'moved', current}
  end
  redis.call('HSET', KEYS[5 + n], 'gen', g)
  redis.call('DEL', sess)
  R = {}
elseif current ~= g then
  return {'moved', current}
else
  R = R or record(sess)
  if g > 1 and R[START] and now - reported < tonumber(R[START]) - TOLERANCE then
    sess = KEYS[6 + n] -- counted there (if it adds anything); never re-opened
    earlier = 1
    R = record(sess)
  elseif succeeded(R, status, reported, now - reported) then
    return {'new', g + 1}
  end
end
if #ARGV < B and not R[START] then
  return {'fields'} -- not recorded yet (expired, or first seen by another worker)
end
if g > 1 then
  redis.call('EXPIRE', KEYS[5 + n], ARGV[4]) -- the pointer lives as long as its newest
end

local seen = tonumber(R[SEEN] or '-1')
local last = R[LAST] and tonumber(R[LAST])
local closed = R[CLOSED] ~= nil and R[CLOSED] ~= false
local reopened = 0
if closed and earlier == 0 and (R[SHUT] == 'stale' or R[SHUT] == 'gone') and reported > seen then
  redis.call('HDEL', sess, 'closed', 'cause', 'shut', 'shut_at')
  closed = false
  reopened = 1
end
local slack = R[SLACK] or '0' -- strings as stored; numbers only when they change
local gap = R[GAP] or '0'
local widest = nil -- the gap as a number, when this call compared it
local applied = 0
local used -- the newest day's usage, when this call counted on it
local described = false -- true: the HSET below wrote the new record's start and fields
local close = false -- true: the HSET below closed the session (this Stop's)
if reported > seen then
  local delta = reported - math.max(seen, 0)
  local s, e = now - delta, now
  for i = 1, n do
    local lo = day_start(i)
    local hi = e
    if i < n then hi = day_start(i + 1) end
    if i == 1 then lo = math.min(lo, s) end
    local part = math.min(e, hi) - math.max(s, lo)
    if part > 0 then
      local share = fmt('%d', part)
      local total = redis.call('INCRBY', KEYS[2 + i], share)
      if i == n then used = total end
      if total == part then -- created now: it lives ARGV[3] from its day's first report
        redis.call('EXPIRE', KEYS[2 + i], ARGV[3])
      end
      -- the same share on the session record, d:<YYYYMMDD> (the counter key's suffix),
      -- so the archived session splits per day exactly as the quota counted it
      redis.call('HINCRBY', sess, 'd:' .. string.sub(KEYS[2 + i], -8), share)
      applied = applied + part
    end
  end
  local was = tonumber(gap)
  local wide = was
  if seen >= 0 and last then
    -- the NAS's cadence: the lesser of the session time and the time that passed between
    -- the two reports (neither our downtime nor a jump of Acct-Session-Time inflates it)
    wide = math.max(was, math.min(delta, now - last, cap))
  end
  widest = wide
  if wide > interim then
    slack = fmt('%d', math.floor(grace * (wide - interim) / interim))
  end
  local changed = wide ~= was or slack ~= R[SLACK] -- (also when not stored yet)
  if changed then
    gap = fmt('%d', wide)
  end
  -- one HSET of 'seen'... with what else this report writes on the record: a new one's
  -- start and fields, or a Stop's close (each in the order two HSETs wrote them; every
  -- redis.call'd write costs Redis its call and its propagated command). A new record
  -- has no 'gap'/'slack' yet, so they are always "changed" there; a Stop writes them
  -- only if changed (always writing them measured ~5 k more instructions per Stop).
  local a1, a2, a5, a6 = ARGV[1], ARGV[2], ARGV[5], ARGV[6]
  if not R[START] then
    described = true
    redis.call('HSET', sess, 'seen', a1, 'in', a5, 'out', a6, 'last', a2, 'gap', gap,
               'slack', slack, 'start', fmt('%d', now - reported), unpack(ARGV, B))
  elseif status == 2 and earlier == 0 and not closed then
    close = true
    if changed then
      redis.call('HSET', sess, 'seen', a1, 'in', a5, 'out', a6, 'last', a2, 'gap', gap,
                 'slack', slack, 'closed', a2, 'cause', ARGV[7], 'shut', 'stop')
    else
      redis.call('HSET', sess, 'seen', a1, 'in', a5, 'out', a6, 'last', a2, 'closed', a2,
                 'cause', ARGV[7], 'shut', 'stop')
    end
  elseif changed then
    redis.call('HSET', sess, 'seen', a1, 'in', a5, 'out', a6, 'last', a2, 'gap', gap,
               'slack', slack)
  else
    redis.call('HSET', sess, 'seen', a1, 'in', a5, 'out', a6, 'last', a2)
  end
end

local mac = R[MAC]
if not R[START] then
  if not described then
    redis.call('HSET', sess, 'start', fmt('%d', now - reported), unpack(ARGV, B))
  end
  mac = nil
  for i = B, #ARGV - 1, 2 do
    if ARGV[i] == 'mac' then
      mac = ARGV[i + 1]
      break
    end
  end
end

local closed_now = 0
if earlier == 1 then
  closed = true -- a superseded generation: the open hash is the current one's
elseif status == 2 then
  if close then -- closed by the HSET above
    closed_now = 1
  elseif not closed then
    redis.call('HSET', sess, 'closed', ARGV[2], 'cause', ARGV[7], 'shut', 'stop')
    closed_now = 1
  end
  redis.call('HDEL', KEYS[2], ARGV[8])
elseif not closed then
  redis.call('HSET', KEYS[2], ARGV[8], (mac or '') .. '|' .. ARGV[2] .. '|' .. slack)
end
-- the records live ARGV[4] after their last report; refreshed once a day (and on a
-- session's first and last report), not on every Interim: each refresh is a write
if not last or status ~= 3 or math.floor(last / 86400) ~= math.floor(now / 86400) then
  redis.call('EXPIRE', sess, ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
if inside == 1 then -- the global indexes, as the caller would write them after us
  local ref = ARGV[9]
  if status == 2 then
    redis.call('ZREM', KEYS[8 + n], ref)
    redis.call('SREM', KEYS[9 + n], ref)
    redis.call('XADD', KEYS[10 + n], '*', 'k', 'close', 'ref', ref) -- to the archive
  else
    redis.call('ZADD', KEYS[8 + n], ARGV[2], ref)
    redis.call('SADD', KEYS[9 + n], ref) -- (repairs a lost entry: no write if there)
  end
end
if used == nil then
  used = tonumber(redis.call('GET', KEYS[2 + n]) or '0')
end
local open = redis.call('HGETALL', KEYS[2])
local block = redis.call('GET', KEYS[4 + n]) or ''
local due = ''
if daily >= 0 and earlier == 0 then
  local at = due_at(open, block, used, now, daily, midnight,
                    stale_before, retry_after, max_devices,
                    function() return redis.call('HGETALL', KEYS[3 + n]) end)
  if at == nil then
    due = -1
  else
    due = at
    if inside == 1 then
      redis.call('ZADD', KEYS[7 + n], 'LT', fmt('%d', at), ARGV[10])
    end
  end
end
if due == '' or status == 1 then
  return {applied, used, #open / 2, closed_now, open, redis.call('HGETALL', KEYS[3 + n]), block,
          reopened, earlier, widest or tonumber(gap), due, 1}
end
return {applied, used, #open / 2, closed_now, 0, 0, '', reopened, earlier, widest or tonumber(gap),
        due, 0}
