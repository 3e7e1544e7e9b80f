-- Shared helpers for coru's specs. They run both inside the host
-- (busted --lua=build/coru) and under plain luajit with the module.
local coru = require "coru"
local M = {}

-- CORU_GC_STRESS=1: a full collection at every allocation step, to shake
-- out lifetime bugs (a userdata freed while libuv or a task still uses it).
if os.getenv("CORU_GC_STRESS") then
  collectgarbage("setpause", 0)
  collectgarbage("setstepmul", 1000)
end

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

-- Inside a task: poll cond() every few ms until true; fail after ms.
function M.wait_until(cond, ms, what)
  local ok = coru.timeout(ms or 5000, function()
    while not cond() do coru.sleep(2) end
    return true
  end)
  assert(ok, "timed out waiting for " .. (what or "a condition"))
  return true
end

M.bin = os.getenv("CORU_BIN") or "build/coru"



-- Count the registry's live references (luaL_ref slots hold values; free
-- slots hold the number of the next free one).
function M.registry_refs()
  collectgarbage("collect")
  local n = 0
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "number" and type(v) ~= "number" then n = n + 1 end
  end
  return n
end
return M
