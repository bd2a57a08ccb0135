-- Sliding-window log rate limits of one portal request, every dimension in one call.
-- Each key is one dimension's log; with ARGV[3] = 1 the event is recorded in every key
-- if every rule of every key still allows it (all or nothing: a request refused for
-- one dimension, an IP flooding, never starts another's cooldown, a phone); with 0 it is
-- only checked. One key a call is the same for a Redis Cluster, where the logs live in
-- other slots (the store then checks every key first, then records in each).
-- Reference model: controller.services.portal.ratelimit.wait_ms (same arithmetic, tested together).
-- KEYS[1 .. n] sorted sets of admitted event times (ms), one per phone / MAC / NAS / source
-- ARGV[1] now (ms)   ARGV[2] unique member for this event   ARGV[3] record (1) or check (0)
-- ARGV[4] n keys     ARGV[5 ..] per key: its number of rules r, then limit_1, window_ms_1,
--                    ..., limit_r, window_ms_r
-- Returns per key 0 when allowed (and recorded if asked), else the ms until it would be.
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[4])
local waits, longests = {}, {}
local any = false
local at = 5
for k = 1, n do
  local r = tonumber(ARGV[at])
  local longest = 0
  for i = 1, r do
    local window = tonumber(ARGV[at + 2 * i])
    if window > longest then longest = window end
  end
  -- An event counts while now - t < window; older than the longest window it never will.
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now - longest)
  local wait = 0
  for i = 1, r do
    local limit = tonumber(ARGV[at + 2 * i - 1])
    local window = tonumber(ARGV[at + 2 * i])
    local since = '(' .. tostring(now - window)
    local count = redis.call('ZCOUNT', KEYS[k], since, '+inf')
    if count >= limit then
      -- allowed again once the (count - limit + 1)-th oldest event in the window leaves it
      local oldest = redis.call('ZRANGEBYSCORE', KEYS[k], since, '+inf', 'WITHSCORES',
                                'LIMIT', count - limit, 1)
      local leaves = tonumber(oldest[2]) + window - now
      if leaves > wait then wait = leaves end
    end
  end
  waits[k], longests[k] = wait, longest
  if wait > 0 then any = true end
  at = at + 1 + 2 * r
end
if any or ARGV[3] ~= '1' then
  return waits
end
for k = 1, n do
  redis.call('ZADD', KEYS[k], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[k], longests[k])
end
return waits
