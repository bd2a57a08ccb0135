-- Close a session without a Stop (Accounting-On/Off, stale, disconnect confirmed):
-- usage stays what the last report counted; the stop time is that report's time.
-- KEYS[1] session hash   KEYS[2] person's open-sessions hash
-- ARGV[1] field naming the session in the open hash   ARGV[2] terminate cause
-- ARGV[3] session TTL
-- Returns 1 if this call closed it, 0 if it was already closed or unknown
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'closed') == 1 then
  return 0
end
local last = redis.call('HGET', KEYS[1], 'last') or '0'
redis.call('HSET', KEYS[1], 'closed', last, 'cause', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
