-- Give up a person's enforcer lease, but only if this process still holds it (a lease that
-- expired and was taken by another process is not ours to delete).
-- KEYS[1] lease key   ARGV[1] token of the holder
-- Returns 1 if released, 0 otherwise
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
