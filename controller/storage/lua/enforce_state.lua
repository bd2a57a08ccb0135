-- What the quota enforcer needs to know about one person, read atomically (one slot).
-- Read-only: runs in the accounting pipeline right after account.lua, and at due time.
-- KEYS[1] open-sessions hash (sid -> "mac|last accounting epoch")
-- KEYS[2] usage counter of the day the projection is for
-- KEYS[3] closing hash (sid -> epoch the NAS acknowledged a Disconnect-Request)
-- KEYS[4] block key ("until|reason")
-- Returns {used, {sid, "mac|last", ...}, {sid, epoch, ...}, block or ''}
return {
  tonumber(redis.call('GET', KEYS[2]) or '0'),
  redis.call('HGETALL', KEYS[1]),
  redis.call('HGETALL', KEYS[3]),
  redis.call('GET', KEYS[4]) or '',
}
