-- Everything an Access-Request decision needs about one person, in one round trip.
-- KEYS[1] credential hash (may not exist: MAC authentication)
-- KEYS[2] today's usage counter
-- KEYS[3] open-sessions hash (sid -> "mac|last accounting epoch|stale slack", account.lua)
-- KEYS[4] block key
-- ARGV[1] calling-station MAC of this request ("" if none)
-- ARGV[2] open sessions whose last accounting + slack is older than this epoch are not counted
-- Returns {password, bound_mac, used_at, used_mac, used_today, other_devices, block}
local cred = redis.call('HMGET', KEYS[1], 'pw', 'mac', 'used_at', 'used_mac')
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local stale_before = tonumber(ARGV[2])
local others = 0
local open = redis.call('HGETALL', KEYS[3])
for i = 2, #open, 2 do
  local sep = string.find(open[i], '|', 1, true)
  local mac = string.sub(open[i], 1, sep - 1)
  local sep2 = string.find(open[i], '|', sep + 1, true) or (#open[i] + 1)
  local last = tonumber(string.sub(open[i], sep + 1, sep2 - 1))
  last = last + (tonumber(string.sub(open[i], sep2 + 1)) or 0)
  if last >= stale_before and (mac == '' or mac ~= ARGV[1]) then
    others = others + 1
  end
end
local blocked = redis.call('GET', KEYS[4]) or ''
return {cred[1] or '', cred[2] or '', cred[3] or '', cred[4] or '', used, others, blocked}
