-- Consume a one-time credential after the password checked out (single use, atomic).
-- A retry from the same device within ARGV[3] seconds (a NAS that lost our Accept and
-- sent a fresh Access-Request) is still accepted.
-- KEYS[1] credential hash
-- ARGV[1] now (epoch seconds)   ARGV[2] calling-station MAC   ARGV[3] reuse grace (s)
-- Returns 'ok', 'gone' (expired meanwhile) or 'used'
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'gone'
end
local used_at = redis.call('HGET', KEYS[1], 'used_at')
if used_at then
  local used_mac = redis.call('HGET', KEYS[1], 'used_mac') or ''
  if used_mac ~= ARGV[2] or tonumber(ARGV[1]) - tonumber(used_at) > tonumber(ARGV[3]) then
    return 'used'
  end
  return 'ok'
end
redis.call('HSET', KEYS[1], 'used_at', ARGV[1], 'used_mac', ARGV[2])
return 'ok'
