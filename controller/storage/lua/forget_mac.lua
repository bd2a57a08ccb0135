-- Portal logout: stop MAC re-authentication of a device, but only if it is still
-- remembered for this person (another person may have logged in on it since).
-- KEYS[1] MAC memory key   ARGV[1] person id
-- Returns 1 if forgotten, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
