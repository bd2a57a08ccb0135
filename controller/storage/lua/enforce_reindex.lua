-- Move a person in the global due index after the enforcer looked at them, unless the
-- entry changed meanwhile (accounting only ever moves it earlier, ZADD LT: that earlier
-- time must stand). One key: the index has its own slot.
-- KEYS[1] due index (zset pid -> epoch)
-- ARGV[1] pid   ARGV[2] score the enforcer acted on   ARGV[3] new score, '' to remove
-- Returns 1 if changed, 0 if the entry had moved (left alone)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) ~= tonumber(ARGV[2]) then
  return 0
end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
