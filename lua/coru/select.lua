-- coru.select(cases [, timeout_ms]): the first of several channel
-- operations that can proceed, as Go's select and Trio users expect.
--   cases: an array of {ch, "recv"} and {ch, "send", value}
--   returns i, v          case i received v (i, nil, "closed": ch is closed)
--           i, true       case i sent its value (i, nil, "closed")
--           nil, "timeout"  nothing could proceed within timeout_ms
--                           (0: only what can proceed at once)
-- Exactly one case happens: no value is taken or given by the others.
-- Cases ready at once are tried in the order given (a priority, docs/api.md). Task only.
-- How: each waiting case is a task blocked in its channel; the channel's
-- first transfer to one of them claims the select (src/chan.c: pop_live),
-- the others are skipped and cancelled.
local coru = require "coru"
local new_flag, as_case, claim = coru._select_flag, coru._select_case, coru._select_claim
local spawn, yield, current = coru.spawn, coroutine.yield, coru.current
local type, ipairs, pcall, error = type, ipairs, pcall, error

local function check(cases, timeout)
  if type(cases) ~= "table" or #cases == 0 then
    error("bad argument #1 to 'coru.select' (non-empty array of cases expected, got " .. type(cases) .. ")", 3)
  end
  for i, c in ipairs(cases) do
    local ok = type(c) == "table" and type(c[1]) == "userdata" and type(c[1].try_recv) == "function"
               and (c[2] == "recv" or c[2] == "send")
    if not ok then
      error(("bad argument #1 to 'coru.select' (case %d: {channel, \"recv\"} or {channel, \"send\", value} expected)"):format(i), 3)
    end
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout < 0) then
    error("bad argument #2 to 'coru.select' (milliseconds >= 0 expected, got " .. tostring(timeout) .. ")", 3)
  end
  if not current() then error("coru.select: needs a running task", 3) end
end

-- What can proceed now, in order.
local function at_once(cases)
  for i, c in ipairs(cases) do
    if c[2] == "recv" then
      local ok, v = c[1]:try_recv()
      if ok then return i, v end
      if ok == nil then return i, nil, "closed" end
    else
      local ok = c[1]:try_send(c[3])
      if ok then return i, true end
      if ok == nil then return i, nil, "closed" end
    end
  end
end

local function finish(children, timer)
  if timer and not timer:is_closing() then timer:close() end
  for _, t in ipairs(children) do
    if t:status() == "suspended" then t:cancel() end
  end
end

return function(cases, timeout)
  check(cases, timeout)
  local i, v, err = at_once(cases)
  if i then
    if err then return i, v, err end
    return i, v
  end
  if timeout == 0 then return nil, "timeout" end
  local flag, children, timer, done, late = new_flag(), {}, nil, false, nil
  local ok, a, b, c = pcall(yield, function(resume)
    local function deliver(...)
      if done then late = {...} return end    -- the select was cancelled meanwhile: keep it
      done = true
      resume(...)
    end
    for i, cs in ipairs(cases) do
      children[i] = spawn(function()
        as_case(flag)
        if cs[2] == "recv" then
          local v, err = cs[1]:recv()
          if err == "skipped" then return end
          deliver(i, v, err)
        else
          local sent, err = cs[1]:send(cs[3])
          if err == "skipped" then return end
          deliver(i, sent, err)
        end
      end)
    end
    if timeout then
      timer = coru.new_timer()
      timer:start(timeout, 0, function()
        timer:close()
        if claim(flag) then deliver(nil, "timeout") end
      end)
    end
  end)
  local fired = not claim(flag)        -- a case (or the timeout) happened first
  done = true
  finish(children, timer)
  if not ok then
    -- Cancelled while waiting. A case that had already happened (its
    -- channel handed it the value) still completes: as with ch:recv, the
    -- select returns it and the cancellation comes at the next suspension,
    -- so no value is lost.
    if fired and coru.is_cancelled(a) then
      for _, t in ipairs(children) do pcall(t.await, t) end
      if late and late[1] ~= nil then
        current():cancel(a.reason)
        return unpack(late, 1, late[3] ~= nil and 3 or 2)
      end
    end
    error(a, 0)
  end
  if a == nil then return nil, "timeout" end
  if c then return a, b, c end
  return a, b
end
