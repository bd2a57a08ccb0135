-- The enforcer's due time, written once in Lua (included by account.lua; its Python model
-- is controller.domain.enforcement.plan_person(...).index_at(now) without force and
-- without session starts, as the enforcer plans after each accounting report; tested
-- against it on random persons, tests/test_due_lua.py).
-- due_at(open, block, used, now, daily, midnight, stale_before, retry_after, max_devices,
--        closing): open is HGETALL of the open hash (sid -> "mac|last|slack"), block the
-- block key's value (false or ''), used the seconds of now's day; closing() returns the
-- HGETALL of the closing hash (sid -> epoch its Disconnect-Request was acknowledged),
-- called only when a disconnect is planned. Returns the epoch the enforcer should look at
-- the person (now: something to do now) or nil (nothing running: no entry).
-- a disconnect is planned for sids (a list, or every sid of the open HGETALL when
-- `every`): now if one of them is to be asked now, else the earliest of due and the
-- acknowledged ones' retry times (nil: none)
local function due_disconnecting(sids, every, due, now, retry_after, closing)
  local marks = {}
  local flat = closing()
  for i = 1, #flat, 2 do marks[flat[i]] = tonumber(flat[i + 1]) end
  local wake = due
  local step, first = 1, 1
  if every then step = 2 end
  for i = first, #sids, step do
    local acked = marks[sids[i]]
    if acked == nil or now >= acked + retry_after then
      return now -- someone to disconnect now
    end
    if wake == nil or acked + retry_after < wake then wake = acked + retry_after end
  end
  return wake
end

local function due_at(open, block, used, now, daily, midnight, stale_before, retry_after,
                      max_devices, closing)
  if #open == 0 then
    return nil
  end
  if block and block ~= '' then
    return due_disconnecting(open, true, nil, now, retry_after, closing)
  end
  -- the running sessions (accounting since stale_before, their slack included)
  local sum, running = 0, 0
  local lives = nil -- the running sessions' MACs, kept only when devices are limited
  if max_devices > 0 then lives = {} end
  for i = 2, #open, 2 do
    local m, last, slack = string.match(open[i], '^([^|]*)|(%d*)|?(%d*)$')
    last = tonumber(last) or 0
    if last + (tonumber(slack) or 0) >= stale_before then
      sum = sum + last
      running = running + 1
      if lives then
        if m == nil or m == '' then m = '?' .. open[i - 1] end
        lives[#lives + 1] = m
        lives[#lives + 1] = open[i - 1]
      end
    end
  end
  if running == 0 then
    return nil -- only stale sessions: the sweep's
  end
  -- ceil((daily - used + sum) / running), exactly in integers
  local x = daily - used + sum
  local due = math.floor(x / running)
  while due * running < x do due = due + 1 end
  while (due - 1) * running >= x do due = due - 1 end
  if due >= midnight then
    local share = math.floor(daily / running)
    if share * running < daily then share = share + 1 end
    due = midnight + share
  end
  if due <= now then
    return due_disconnecting(open, true, nil, now, retry_after, closing)
  end
  if lives == nil or running <= max_devices then
    return due -- (fewer sessions than the limit: fewer devices too)
  end
  local devices, names = {}, {}
  for i = 1, #lives, 2 do
    local d = lives[i]
    if devices[d] == nil then
      devices[d] = {}
      names[#names + 1] = d
    end
    local list = devices[d]
    list[#list + 1] = lives[i + 1]
  end
  if #names <= max_devices then
    return due
  end
  -- the devices beyond the limit, newest first; without start times: by name, descending
  table.sort(names, function(a, b) return a > b end)
  local excess = {}
  for i = 1, #names - max_devices do
    for _, sid in ipairs(devices[names[i]]) do excess[#excess + 1] = sid end
  end
  return due_disconnecting(excess, false, due, now, retry_after, closing)
end
