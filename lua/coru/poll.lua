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
  if not coru.current() then error("poll.wait: needs a running task", 2) end
  local ok, ev, msg = pcall(coru.await, function(cb)
    p:start(events or "r", function(err, got)
      if not p:is_closing() then p:stop() end
      if err then cb(nil, nil, err) else cb(nil, got) end
    end)
  end)
  if not ok then
    if not p:is_closing() then p:stop() end
    error(ev, 0)
  end
  if ev == nil then return nil, msg, msg and msg:match("^(%u+):") end
  return ev
end

return M
