-- Admit one login, atomically: count the person's devices, hold this device's slot, and
-- for a credential login consume the credential (single use).
-- Devices other than this MAC: the MACs of open sessions with accounting (+ their stale
-- slack, account.lua: "mac|last|slack") since ARGV[9]
-- (a session without a MAC counts alone), plus holds: an Access-Accept holds a slot for
-- its MAC until that MAC's accounting arrives (Store.account deletes the hold in the same
-- round trip; a session seen open here releases it too) or the hold ends (ARGV[10] s);
-- without a MAC the hold is named '?<authenticator>' and simply ends. The rule is
-- lib/devices.lua, shared with auth_state.lua (which counts alike, read-only); its Python
-- model is controller.domain.enforcement.other_devices. 6 concurrent requests for 6 MACs
-- with max_devices 2 therefore admit exactly 2.
-- A consumed credential admits again only a NAS retry of the same login: same client,
-- MAC and NAS session (Acct-Session-Id), within ARGV[7] s, and a new Request Authenticator
-- unless from the same source address and port (the NAS retransmitting a request we did
-- not answer); identical bytes from another source are a replay (RFC 5080 §2.2.2
-- duplicate detection is per source).
-- KEYS[1] credential hash (unused for a MAC login)   KEYS[2] open-sessions hash
-- KEYS[3] device holds hash (MAC -> epoch the hold ends)
-- ARGV[1] 'c' credential | 'm' MAC login   ARGV[2] now (epoch s)   ARGV[3] MAC ('' if none)
-- ARGV[4] client id   ARGV[5] NAS session id   ARGV[6] Request Authenticator (hex)
-- ARGV[7] reuse grace (s)   ARGV[8] max devices   ARGV[9] stale before (epoch)
-- ARGV[10] hold (s)   ARGV[11] nonce for a new login   ARGV[12] keep a used credential (s)
-- ARGV[13] source "host:port" of this request
-- Returns {'ok' | 'gone' (expired meanwhile) | 'used' | 'device_limit', nonce of the login}
-- #include devices.lua
local now = tonumber(ARGV[2])
local mac = ARGV[3]
local nonce = ARGV[11]
local cred = KEYS[1]
local credential = ARGV[1] == 'c'

if credential then
  if redis.call('EXISTS', cred) == 0 then
    return {'gone', ''}
  end
  local u = redis.call('HMGET', cred, 'used_at', 'used_mac', 'used_client', 'used_session',
                       'used_auth', 'nonce', 'used_src')
  if u[1] then
    if mac == '' or u[2] ~= mac or u[3] ~= ARGV[4] or u[4] ~= ARGV[5]
        or (u[5] == ARGV[6] and u[7] ~= ARGV[13])
        or now - tonumber(u[1]) > tonumber(ARGV[7]) then
      return {'used', ''}
    end
    nonce = u[6] or nonce
  end
end

local stale_before = tonumber(ARGV[9])
local others, over = count_devices(redis.call('HGETALL', KEYS[2]),
                                   redis.call('HGETALL', KEYS[3]), mac, stale_before, now)
for _, m in ipairs(over) do
  redis.call('HDEL', KEYS[3], m) -- ended, or its session is open (counted above)
end
if others >= tonumber(ARGV[8]) then
  return {'device_limit', ''}
end

local slot = mac
if slot == '' then slot = '?' .. ARGV[6] end
redis.call('HSET', KEYS[3], slot, now + tonumber(ARGV[10]))
redis.call('EXPIRE', KEYS[3], ARGV[10])
if credential and not redis.call('HGET', cred, 'used_at') then
  redis.call('HSET', cred, 'used_at', now, 'used_mac', mac, 'used_client', ARGV[4],
             'used_session', ARGV[5], 'used_auth', ARGV[6], 'used_src', ARGV[13],
             'nonce', nonce)
  -- kept for the accounting fallback (User-Name when the NAS drops Class)
  if redis.call('TTL', cred) < tonumber(ARGV[12]) then
    redis.call('EXPIRE', cred, ARGV[12])
  end
end
return {'ok', nonce}
