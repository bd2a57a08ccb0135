-- A MAC re-authentication decided and committed in one call (issue 16): the person's
-- state read once, decided in the order and by the rules of
-- controller.domain.access.decide_access for a MAC login (its reference model; held
-- against it by tests/test_mac_login_lua.py), and on acceptance the device's slot held as
-- commit_login.lua holds it (the device rule: lib/devices.lua). Outcomes, in order:
-- 'unknown_device' (the MAC has no owner), 'blocked', 'exhausted' (the Session-Timeout
-- would be below the minimum grant), 'device_limit', 'accept'. Time-zone arithmetic is
-- the caller's: it passes the seconds to the next local midnight; here only integers.
-- The Session-Timeout (controller.domain.quota.session_timeout): the time left today, or,
-- when that reaches past midnight, the seconds to midnight plus tomorrow's allowance.
-- On one Redis (or Sentinel) the MAC's owner is read here (the person's keys are then
-- named here: head .. pid .. tail, from controller.storage.keys through ARGV) and the
-- login's audit record is XADDed here with its pid and result: one round trip for the
-- whole login, the record in Redis before the answer. On a Redis Cluster the owner and
-- the outbox live in other slots: the caller looks the owner up first, passes the pid,
-- and queues the record after the reply.
-- KEYS[1] the MAC's owner key (ARGV[1] ''); with a pid: a key of the person's slot, unread
-- KEYS[2] the outbox stream (`record` 1), else unread (a key of the person's slot)
-- ARGV[1] pid ('': the owner of KEYS[1])   ARGV[2] key head (before the pid)
-- ARGV[3] open-sessions tail   ARGV[4] device holds tail   ARGV[5] today's usage tail
-- ARGV[6] block tail   ARGV[7] the MAC (a MAC login always has one)
-- ARGV[8] nonce for a new login
-- ARGV[9] the numbers, little-endian doubles read by one struct.unpack (as account.lua's
--   packed numbers, issue 16: no strtod, one argument): now (epoch s), stale before
--   (epoch, as commit_login.lua), daily allowance (s), seconds to the next local
--   midnight, minimum grant (s, at least 1), max devices, hold (s), record (1: XADD the
--   audit record to KEYS[2] here)
-- ARGV[10 ..] the record's field/value pairs but pid and result (added here)
-- Returns {outcome, pid ('' unknown), Session-Timeout (0 unless accepted), nonce ('' unless
--          accepted), block ('' unless blocked)}
-- #include devices.lua
local now, stale_before, daily, to_midnight, min_grant, max_devices, hold, record =
  struct.unpack('<dddddddd', ARGV[9])
local pid = ARGV[1]
if pid == '' then
  pid = redis.call('GET', KEYS[1]) or ''
end

local function decide()
  if pid == '' then
    return 'unknown_device', 0, ''
  end
  local head = ARGV[2] .. pid
  local blocked = redis.call('GET', head .. ARGV[6])
  if blocked and blocked ~= '' then
    return 'blocked', 0, blocked
  end
  local left = daily - tonumber(redis.call('GET', head .. ARGV[5]) or '0')
  local timeout = 0
  if left > 0 then
    if left >= to_midnight then timeout = to_midnight + daily else timeout = left end
  end
  if timeout < min_grant then
    return 'exhausted', 0, ''
  end
  local mac, holds = ARGV[7], head .. ARGV[4]
  local others, over = count_devices(redis.call('HGETALL', head .. ARGV[3]),
                                     redis.call('HGETALL', holds), mac, stale_before, now)
  for _, m in ipairs(over) do
    redis.call('HDEL', holds, m) -- ended, or its session is open (counted above)
  end
  if others >= max_devices then
    return 'device_limit', 0, ''
  end
  return 'accept', timeout, ''
end

local outcome, timeout, blocked = decide()
if record == 1 then -- no tables built: each is garbage for Lua's collector
  local result = outcome
  if outcome ~= 'accept' then result = 'reject:' .. outcome end
  -- first: a failing XADD (an error ends the script, its writes so far stay) holds nothing
  redis.call('XADD', KEYS[2], '*', 'pid', pid, 'result', result, unpack(ARGV, 10))
end
local nonce = ''
if outcome == 'accept' then
  local holds = ARGV[2] .. pid .. ARGV[4]
  redis.call('HSET', holds, ARGV[7], string.format('%d', now + hold))
  redis.call('EXPIRE', holds, string.format('%d', hold))
  nonce = ARGV[8]
end
return {outcome, pid, timeout, nonce, blocked}
