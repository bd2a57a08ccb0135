-- The device-counting rule, written once (included by auth_state.lua, commit_login.lua and
-- mac_login.lua; its Python twin is controller.domain.enforcement.other_devices, tested
-- against it).
-- count_devices(open, holds, mac, stale_before, now): the person's devices other than `mac`:
-- the MACs of open sessions (HGETALL of the open hash, sid -> "mac|last|slack",
-- account.lua) with accounting plus stale slack since `stale_before`, each MAC once (a
-- session without a MAC counts alone), plus the device holds (HGETALL of the holds hash,
-- MAC -> epoch the hold ends) that have not ended at `now` (nil: every hold counts) and
-- are neither `mac` nor the MAC of such a session.
-- Returns the count and the names of the holds that are over (ended, or their device's
-- session is open and counted), which commit_login.lua deletes.
local function count_devices(open, holds, mac, stale_before, now)
  local others = 0
  local busy = {}
  for i = 2, #open, 2 do
    local m, last, slack = string.match(open[i], '^([^|]*)|(%d+)|?(%d*)$')
    if tonumber(last) + (tonumber(slack) or 0) >= stale_before then
      if m == '' or (m ~= mac and not busy[m]) then others = others + 1 end
      if m ~= '' then busy[m] = true end
    end
  end
  local over = {}
  for i = 1, #holds, 2 do
    local m = holds[i]
    if (now ~= nil and tonumber(holds[i + 1]) <= now) or busy[m] then
      over[#over + 1] = m
    elseif m ~= mac then
      others = others + 1
    end
  end
  return others, over
end
