-- coru.signal: wait for a signal inside a task.
--   local name = coru.signal.wait("sigint")
local coru = require "coru"

local M = {}

-- The message of a C argument error, without its position and function.
local function reason(err)
  return tostring(err):match("%((.*)%)$") or tostring(err)
end

-- wait(sig) -> signal name ("sigint"); sig is a name or a number.
function M.wait(sig)
  if type(sig) ~= "string" and type(sig) ~= "number" then
    error("bad argument #1 to 'signal.wait' (signal name or number expected, got " .. type(sig) .. ")", 2)
  end
  if not coru.current() then error("signal.wait: needs a running task", 2) end
  local h = coru.new_signal()
  local got, waiting
  -- started here, not in the awaited function: a bad signal is an error at
  -- the caller's line
  local started, err = pcall(h.start_oneshot, h, sig, function(n)
    got = n
    if waiting then local w = waiting waiting = nil w(nil, n) end
  end)
  if not started then
    h:close()
    error("bad argument #1 to 'signal.wait' (" .. reason(err) .. ")", 2)
  end
  local ok, name = pcall(coru.await, function(cb)
    if got then cb(nil, got) else waiting = cb end
  end)
  if not h:is_closing() then h:close() end
  if not ok then error(name, 0) end
  return name
end

M.kill = coru.kill
return M
