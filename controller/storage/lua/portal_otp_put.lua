-- A new SMS code's digest replaces the phone's pending code on this device, atomically
-- with its expiry (a code without a TTL would stay valid past its 5 minutes).
-- KEYS[1] the phone's OTP hash (otp_attempt.lua reads it)
-- ARGV[1] digest   ARGV[2] now (s)   ARGV[3] ttl (s)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'h', ARGV[1], 'tries', 0, 'sent', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
