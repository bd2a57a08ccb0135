-- Add one flush to one NAS health target (a configured client, or a scope: the city or
-- an operator): its totals, its minute ring and its 30-minute ring, in one call instead
-- of one HINCRBY per field sent (controller.storage.nas_stats; the layout is described
-- in controller.domain.nas_health). The three keys share the target's hash tag.
-- KEYS[1] hash of totals   KEYS[2] the hour's minute ring   KEYS[3] the day's 30-minute ring
-- ARGV[1] seconds the minute ring lives   ARGV[2] seconds the 30-minute ring lives
-- ARGV[3] JSON {"t": {field: n}, "m": {field: n}, "b": {field: n}}: the increments of each
-- Returns the number of fields incremented.
local add = cjson.decode(ARGV[3])
local done = 0
for k, part in ipairs({'t', 'm', 'b'}) do
  local any = false
  for field, n in pairs(add[part] or {}) do
    redis.call('HINCRBY', KEYS[k], field, n)
    done = done + 1
    any = true
  end
  if any and k > 1 then
    redis.call('EXPIRE', KEYS[k], ARGV[k - 1])
  end
end
return done
