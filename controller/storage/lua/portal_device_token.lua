-- Honour a remembered-device token until its expiry; drop expired tokens and all but
-- the newest few (one key, so one call is atomic on a Cluster too).
-- KEYS[1] the person's zset of token id -> expiry (s)
-- ARGV[1] token id   ARGV[2] expires (s)   ARGV[3] now (s)   ARGV[4] tokens kept
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[4]) - 1)
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return 1
