-- Count one verification attempt of a pending SMS code (at most ARGV[1] per code) and
-- hand back its digest; the caller compares digests in constant time and deletes the key
-- on a match (DEL returning 1 makes the code single-use even under concurrent attempts).
-- KEYS[1] the phone's OTP hash {h = digest, tries = attempts so far}
-- ARGV[1] maximum attempts
-- Returns {'gone', '', 0} (expired, used or never sent), {'locked', '', tries} (over the
-- limit: stays locked until it expires) or {'check', digest, tries}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'gone', '', 0}
end
local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
if tries > tonumber(ARGV[1]) then
  return {'locked', '', tries}
end
return {'check', redis.call('HGET', KEYS[1], 'h') or '', tries}
