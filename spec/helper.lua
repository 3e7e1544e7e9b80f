-- Shared helpers for coru's specs. They run both inside the host
-- (busted --lua=build/coru) and under plain luajit with the module.
local coru = require "coru"
local M = {}

-- Run fn as a task until it ends (coru.run spawns+awaits inside the host).
M.run = coru.run

-- Count the live handles Lua can still reach (collecting garbage first).
function M.live_handles()
  collectgarbage("collect")
  collectgarbage("collect")
  local n = 0
  coru.walk(function() n = n + 1 end)
  return n
end

-- Collect errors reported to on_error while fn runs; restores the handler.
function M.capture_errors(fn)
  local errs = {}
  local prev = coru.on_error(function(err, tb) errs[#errs + 1] = {err = err, tb = tb} end)
  local ok, e = pcall(fn)
  coru.on_error(prev)
  if not ok then error(e, 0) end
  return errs
end

-- Run a shell command, return its stdout and exit status.
function M.sh(cmd)
  local f = io.popen(cmd .. "; echo \"__status=$?\"")
  local out = f:read("*a")
  f:close()
  local status = tonumber(out:match("__status=(%d+)%s*$"))
  return out:gsub("__status=%d+%s*$", ""), status
end

M.bin = os.getenv("CORU_BIN") or "build/coru"

return M
