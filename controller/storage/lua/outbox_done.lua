-- Let archived entries leave the outbox stream: XACK them, then drop them from the
-- stream by trimming it (XTRIM MINID) instead of an XDEL of each. XDEL finds every id by
-- scanning its stream node's listpack from the node's start (2.3-3.8 µs of Redis CPU per
-- login record, about a tenth of a MAC login's Redis cost) and copies every id to the
-- AOF; a trim frees whole nodes and is one short command (issue 16).
-- The trim point: with nothing pending in the group, just above its last-delivered id;
-- else the oldest pending entry. Safe because every entry below it has been delivered
-- (it is at most the last-delivered id) and is not pending, so it was acknowledged, and
-- an entry is acknowledged only here, after its archive file is durable
-- (controller.services.archiver). Entries acknowledged here above an older pending one
-- (another consumer's round still being written, or a dead consumer's, waiting for
-- XAUTOCLAIM) are XDELed as before, so the stream never keeps an acknowledged entry and
-- XLEN stays the backlog.
-- KEYS[1] the outbox stream   ARGV[1] its consumer group   ARGV[2 ..] the archived ids
-- Returns the number of entries that left the stream (trimmed + deleted).
local stream, group = KEYS[1], ARGV[1]
local CHUNK = 1000 -- ids per command: Lua's unpack stops at ~8,000 values (a round: 10,000)
for i = 2, #ARGV, CHUNK do
  redis.call('XACK', stream, group, unpack(ARGV, i, math.min(i + CHUNK - 1, #ARGV)))
end
local function id_of(text) -- "ms-seq" -> ms, seq (ms < 2^53: exact as a Lua number)
  local ms, seq = string.match(text, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local pending = redis.call('XPENDING', stream, group) -- {count, oldest, newest, consumers}
if pending[1] == 0 then -- the common case: no id needs a look
  local delivered
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local name, last
    for i = 1, #info, 2 do
      if info[i] == 'name' then name = info[i + 1] end
      if info[i] == 'last-delivered-id' then last = info[i + 1] end
    end
    if name == group then delivered = last end
  end
  local ms, seq = id_of(delivered)
  return redis.call('XTRIM', stream, 'MINID', string.format('%d-%d', ms, seq + 1))
end
local floor_ms, floor_seq = id_of(pending[2])
local above = {} -- acknowledged here, above the oldest pending entry: deleted one by one
for i = 2, #ARGV do
  local ms, seq = id_of(ARGV[i])
  if ms > floor_ms or (ms == floor_ms and seq >= floor_seq) then
    above[#above + 1] = ARGV[i]
  end
end
local gone = redis.call('XTRIM', stream, 'MINID', pending[2])
for i = 1, #above, CHUNK do
  gone = gone + redis.call('XDEL', stream, unpack(above, i, math.min(i + CHUNK - 1, #above)))
end
return gone
