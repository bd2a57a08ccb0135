-- Close a session as stale, but only if it still is: no accounting since ARGV[2], its
-- own cadence slack included (the third field of "mac|last|slack", account.lua). A report
-- that arrived after the sweep read the index wins. Like close_session.lua, usage stays
-- what the last report counted and the stop time is that report's time; shut = 'stale',
-- so that a later report of progress re-opens it (account.lua).
-- KEYS[1] session hash   KEYS[2] open-sessions hash   KEYS[3] closing hash
-- ARGV[1] sid   ARGV[2] stale before (epoch)   ARGV[3] terminate cause   ARGV[4] session TTL
-- ARGV[5] epoch of the sweep   ARGV[6] slack of its NAS's observed cadence (a session
-- with less of its own, e.g. no interim yet, gets this one, kept in its open-hash entry)
-- Returns {1, last} closed now; {0, last report + slack} still fresh (the index score to
-- keep); {-1, 0} closed already/unknown
local open = redis.call('HGET', KEYS[2], ARGV[1])
if not open or redis.call('HEXISTS', KEYS[1], 'closed') == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return {-1, 0}
end
local sep = string.find(open, '|', 1, true)
local sep2 = string.find(open, '|', sep + 1, true)
local reported, slack
if sep2 then
  reported = tonumber(string.sub(open, sep + 1, sep2 - 1))
  slack = tonumber(string.sub(open, sep2 + 1)) or 0
else
  reported, slack = tonumber(string.sub(open, sep + 1)), 0
end
local prior = tonumber(ARGV[6] or '0')
if reported + math.max(slack, prior) >= tonumber(ARGV[2]) then
  if prior > slack then
    redis.call('HSET', KEYS[2], ARGV[1], string.sub(open, 1, sep) .. reported .. '|' .. prior)
    redis.call('HSET', KEYS[1], 'slack', prior)
    slack = prior
  end
  return {0, reported + slack}
end
local last = redis.call('HGET', KEYS[1], 'last') or tostring(reported)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'closed', last, 'cause', ARGV[3], 'shut', 'stale',
           'shut_at', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, tonumber(last)}
