-- coru.signal: wait for a signal inside a task.
--   local name = coru.signal.wait("sigint")
local coru = require "coru"

local M = {}

-- wait(sig) -> signal name ("sigint"); sig is a name or a number.
function M.wait(sig)
  if not coru.current() then error("signal.wait: needs a running task", 2) end
  local h = coru.new_signal()
  local ok, name = pcall(coru.await, function(cb)
    h:start_oneshot(sig, function(n) cb(nil, n) end)
  end)
  if not h:is_closing() then h:close() end
  if not ok then error(name, 0) end
  return name
end

M.kill = coru.kill
return M
