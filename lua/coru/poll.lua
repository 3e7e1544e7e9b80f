-- coru.poll: wait for a descriptor's readiness inside a task, on top of
-- luv's poll handles (work.c).
--   local p = coru.new_poll(fd)
--   local events = coru.poll.wait(p, "r")   -- "r", "w", "rw", ...
local coru = require "coru"

local M = {}

-- wait(handle [, events = "r"]) -> the events that happened ("r", "rw"...),
-- or nil, msg, name. The handle is stopped again before it returns (also
-- when the task is cancelled).
function M.wait(p, events)
  if type(p) ~= "userdata" then
    error("bad argument #1 to 'poll.wait' (coru.poll expected, got " .. type(p) .. ")", 2)
  end
  if not coru.current() then error("poll.wait: needs a running task", 2) end
  local result, waiting
  -- started here, not in the awaited function: a bad handle or event set is
  -- an error at the caller's line
  local started, serr = pcall(p.start, p, events or "r", function(err, got)
    p:stop()
    result = {err, got}
    if waiting then local w = waiting waiting = nil w() end
  end)
  if not started then
    error("bad argument to 'poll.wait' (" .. (tostring(serr):match("%((.*)%)$") or tostring(serr)) .. ")", 2)
  end
  local ok, ev, msg = pcall(coru.await, function(cb)
    local function finish()
      if result[1] then cb(nil, nil, result[1]) else cb(nil, result[2]) end
    end
    if result then finish() else waiting = finish end
  end)
  if not ok then
    if not p:is_closing() then p:stop() end
    error(ev, 0)
  end
  if ev == nil then return nil, msg, msg and msg:match("^(%u+):") end
  return ev
end

return M
