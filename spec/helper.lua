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

-- Quote a string for /bin/sh: the checkout's path may hold spaces or quotes.
function M.shq(s)
  return "'" .. tostring(s):gsub("'", [['\'']]) .. "'"
end
M.qbin = M.shq(M.bin)

-- Run fn(...) from a loop callback, where no task is running (the host
-- runs every spec inside a task, plain luajit on the main thread): the
-- "needs a running task or a callback" errors are then checked in both
-- faces. Returns fn's results or raises its error in the caller.
local function pack(...) return {n = select("#", ...), ...} end
function M.outside_task(fn, ...)
  local args = pack(...)
  local r = M.run(function()
    local done = coru.channel(1)
    local t = coru.new_timer()
    t:start(0, 0, function()
      t:close()
      if coru.current() then
        done:send({n = 2, false, "outside_task: a task is running in a timer callback"})
      else
        done:send(pack(pcall(fn, unpack(args, 1, args.n))))
      end
    end)
    return done:recv()
  end)
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

-- Inside a task: poll cond() in the caller's own task (no subtask, no
-- timer armed while cond runs, so counts of references or handles are not
-- disturbed) until it holds or ms pass. Returns whether it held; the
-- caller asserts on the value with a message of its own.
function M.settle(cond, ms)
  local deadline = coru.now() + (ms or 5000)
  while not cond() do
    if coru.now() >= deadline then return false end
    coru.sleep(2)
  end
  return true
end

-- Whether the IPv6 loopback can be bound (containers and namespaces often
-- have no ::1): true, or false and the reason.
function M.ipv6_loopback()
  local ok, u = pcall(coru.new_udp, "inet6")
  if not ok or not u then return false, tostring(u) end
  local r, err = u:bind("::1", 0)
  u:close()
  if r ~= 0 then return false, tostring(err) end
  return true
end

local ffi = require "ffi"
pcall(ffi.cdef, "unsigned int getuid(void);")
-- The real user id of this process.
function M.getuid() return tonumber(ffi.C.getuid()) end

-- A fresh directory under TMPDIR (or /tmp) that every user may search.
function M.tmpdir(prefix)
  local d = assert(coru.fs_mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/" .. (prefix or "coru-spec") .. "-XXXXXX"))
  assert(coru.fs_chmod(d, "755"))
  return d
end

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
