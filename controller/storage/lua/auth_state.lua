-- Everything an Access-Request decision needs about one person, in one round trip (read-only).
-- KEYS[1] credential hash (may not exist: MAC authentication)
-- KEYS[2] today's usage counter
-- KEYS[3] open-sessions hash (sid -> "mac|last accounting epoch|stale slack", account.lua)
-- KEYS[4] block key
-- KEYS[5] device holds hash (MAC -> epoch the hold ends), see commit_login.lua
-- ARGV[1] calling-station MAC of this request ("" if none)
-- ARGV[2] open sessions whose last accounting + slack is older than this epoch are not counted
-- ARGV[3] now (epoch seconds; "" = every hold still in the hash counts)
-- Returns {password, client, bound_mac, used_at, used_mac, used_client, used_session,
--          used_auth, used_src, used_today, other_devices, block}
-- other_devices is counted exactly as commit_login.lua counts it (which decides).
-- #include devices.lua
local cred = redis.call('HMGET', KEYS[1], 'pw', 'client', 'mac', 'used_at', 'used_mac',
                        'used_client', 'used_session', 'used_auth', 'used_src')
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local mac = ARGV[1]
local stale_before = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local others = count_devices(redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[5]),
                             mac, stale_before, now)
local blocked = redis.call('GET', KEYS[4]) or ''
return {cred[1] or '', cred[2] or '', cred[3] or '', cred[4] or '', cred[5] or '',
        cred[6] or '', cred[7] or '', cred[8] or '', cred[9] or '', used, others, blocked}
