-- Close a session without a Stop (Accounting-On/Off, disconnect confirmed, NAK 503):
-- usage stays what the last report counted; the stop time is that report's time.
-- 'shut' says why (account.lua reads it: after 'nas' a report begun later is a new
-- session; after 'gone' a report of progress re-opens the session), 'shut_at' when.
-- KEYS[1] session hash   KEYS[2] person's open-sessions hash
-- ARGV[1] field naming the session in the open hash   ARGV[2] terminate cause
-- ARGV[3] session TTL   ARGV[4] shut: 'nas' | 'gone'   ARGV[5] epoch of the close
-- Returns 1 if this call closed it, 0 if it was already closed or unknown
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'closed') == 1 then
  return 0
end
local last = redis.call('HGET', KEYS[1], 'last') or '0'
redis.call('HSET', KEYS[1], 'closed', last, 'cause', ARGV[2], 'shut', ARGV[4],
           'shut_at', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
