-- Close a session as stale, but only if it still is: no accounting since ARGV[2]. A report
-- that arrived after the sweep read the index wins. Like close_session.lua, usage stays
-- what the last report counted and the stop time is that report's time.
-- KEYS[1] session hash   KEYS[2] open-sessions hash   KEYS[3] closing hash
-- ARGV[1] sid   ARGV[2] stale before (epoch)   ARGV[3] terminate cause   ARGV[4] session TTL
-- Returns {1, last} closed now; {0, last report} still fresh; {-1, 0} closed already/unknown
local open = redis.call('HGET', KEYS[2], ARGV[1])
if not open or redis.call('HEXISTS', KEYS[1], 'closed') == 1 then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return {-1, 0}
end
local reported = tonumber(string.sub(open, string.find(open, '|', 1, true) + 1))
if reported >= tonumber(ARGV[2]) then
  return {0, reported}
end
local last = redis.call('HGET', KEYS[1], 'last') or tostring(reported)
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'closed', last, 'cause', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, tonumber(last)}
