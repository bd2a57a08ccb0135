-- Mark a session "closing": its NAS acknowledged our Disconnect-Request (RFC 5176 §3),
-- so the enforcer waits for the Stop instead of asking again. Entries of sessions that
-- are no longer open are dropped on the way.
-- KEYS[1] session hash   KEYS[2] open-sessions hash   KEYS[3] closing hash
-- ARGV[1] sid   ARGV[2] now (epoch)   ARGV[3] TTL of the closing hash
-- Returns 1 if marked, 0 if the session is no longer open
local marks = redis.call('HKEYS', KEYS[3])
for _, sid in ipairs(marks) do
  if redis.call('HEXISTS', KEYS[2], sid) == 0 then
    redis.call('HDEL', KEYS[3], sid)
  end
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[1], 'closing', ARGV[2])
return 1
