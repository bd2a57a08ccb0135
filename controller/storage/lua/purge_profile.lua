-- PIPL Art. 19 retention: delete a person's phone profile unless they were seen since the
-- cutoff (a login between the index read and this call refreshed 'seen': kept).
-- KEYS[1] profile hash (cw:{pid}:p)   ARGV[1] cutoff epoch (profiles last seen at or before it go)
-- Returns 1 if deleted, 0 if kept or absent.
local seen = tonumber(redis.call('HGET', KEYS[1], 'seen') or '-1')
if seen < 0 then
  return 0
end
if seen <= tonumber(ARGV[1]) then
  return redis.call('DEL', KEYS[1])
end
return 0
