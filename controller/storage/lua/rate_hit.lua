-- Sliding-window log rate limit (the portal's SMS-code requests). With ARGV[3] = 1 the
-- event is recorded if every rule still allows it; with 0 it is only checked (the portal
-- checks every dimension first, then records in all, so a refused request costs nothing).
-- Reference model: controller.services.portal.ratelimit.wait_ms (same arithmetic, tested together).
-- KEYS[1] sorted set of admitted event times (ms) for one phone / MAC / NAS / source IP
-- ARGV[1] now (ms)   ARGV[2] unique member for this event   ARGV[3] record (1) or check (0)
-- ARGV[4] n rules    ARGV[5 ..] limit_1, window_ms_1, ..., limit_n, window_ms_n
-- Returns 0 when allowed (and recorded if asked), else the ms until it would be allowed.
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[4])
local longest = 0
for i = 1, n do
  local window = tonumber(ARGV[4 + 2 * i])
  if window > longest then longest = window end
end
-- An event counts while now - t < window; older than the longest window it never will.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - longest)
local wait = 0
for i = 1, n do
  local limit = tonumber(ARGV[3 + 2 * i])
  local window = tonumber(ARGV[4 + 2 * i])
  local since = '(' .. tostring(now - window)
  local count = redis.call('ZCOUNT', KEYS[1], since, '+inf')
  if count >= limit then
    -- allowed again once the (count - limit + 1)-th oldest event in the window leaves it
    local oldest = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES',
                              'LIMIT', count - limit, 1)
    local leaves = tonumber(oldest[2]) + window - now
    if leaves > wait then wait = leaves end
  end
end
if wait > 0 or ARGV[3] ~= '1' then
  return wait
end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], longest)
return 0
