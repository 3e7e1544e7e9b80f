-- Shared helpers for coru's specs. They run both inside the host
-- (busted --lua=build/coru) and under plain luajit with the module.
local coru = require "coru"
local M = {}
-- Loaded once, before busted insulates the spec files: insulation drops
-- what a file required, and a file that loaded coru.fs would leave coru's
-- cached coru.fs different from the next file's require "coru.fs".
require "coru.fs"

-- CORU_GC_STRESS=1: a full collection at every allocation step, to shake
-- out lifetime bugs (a userdata freed while libuv or a task still uses it).
if os.getenv("CORU_GC_STRESS") then
  collectgarbage("setpause", 0)
  collectgarbage("setstepmul", 1000)
end

-- CORU_VALGRIND=1 (set by make valgrind): the specs run under memcheck,
-- 20 to 50 times slower. Deadlines a spec waits for scale by M.SLOW
-- (40, or CORU_VALGRIND's value when that is a number above 1): helper.ms
-- does it, and wait_until, settle and the leak gate's grace apply it
-- themselves. Durations a spec measures or asserts do not scale. A spec
-- whose purpose cannot run there (a thousand connections, a timing
-- comparison) is pending under valgrind, saying why.
local vg = tonumber(os.getenv("CORU_VALGRIND") or "") or 0
M.valgrind = vg > 0
M.SLOW = vg > 1 and vg or (M.valgrind and 40 or 1)
function M.ms(ms) return ms * M.SLOW end

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

-- Inside a task: live_handles() once it is down to n, or when ms (5000,
-- scaled) passed: closes end on later loop turns, later still under
-- valgrind. The caller asserts: assert.equal(n, H.handles_back_to(n)).
function M.handles_back_to(n, ms)
  M.settle(function() return M.live_handles() <= n end, ms)
  return M.live_handles()
end

-- Run a shell command, return its stdout and exit status. The command is
-- bounded: one that has not ended after SH_LIMIT seconds (900, scaled;
-- longer than any bound a spec sets inside, such as exit_spec's) is killed
-- with its whole process group, status 124 (timeout's), so a child host
-- that hangs fails its spec instead of hanging the file (reading the
-- output waits for every process holding the pipe). Its stdin is
-- /dev/null unless the command gives one: timeout runs it in a process
-- group of its own, which a terminal would stop on a read.
local SH_LIMIT = M.ms(tonumber(os.getenv("CORU_SH_LIMIT") or "") or 900)
function M.sh(cmd)
  local f = io.popen(("timeout -k 5 %d sh -c %s </dev/null; echo \"__status=$?\""):format(SH_LIMIT, M.shq(cmd)))
  local out = f:read("*a")
  f:close()
  local status = tonumber(out:match("__status=(%d+)%s*$"))
  return out:gsub("__status=%d+%s*$", ""), status
end

-- How long wait_until and settle wait, in ms: what the spec asked, but at
-- least WAIT_FLOOR (scaled). Those deadlines only tell a hang from a slow
-- run; they assert no speed, and on a loaded machine (CI's, or 2 cores
-- running 3 suites) work a spec bounded at 2 s or 10 s took longer: 1,000
-- dropped connections, a handshake. A passing spec does not wait longer;
-- a failing one fails later.
local WAIT_FLOOR = tonumber(os.getenv("CORU_WAIT_FLOOR") or "") or 30000
local function bound(ms) return M.ms(math.max(ms or 5000, WAIT_FLOOR)) end
-- The same for a spec's own waits for a peer (floo_helper's replies).
M.bound = bound

-- Inside a task: poll cond() every few ms until true; fail after ms
-- (bound(ms): at least 30 s).
function M.wait_until(cond, ms, what)
  local ok = coru.timeout(bound(ms), function()
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
-- disturbed) until it holds or ms pass (bound(ms), as wait_until).
-- Returns whether it held; the caller asserts on the value with a message
-- of its own.
function M.settle(cond, ms)
  local deadline = coru.now() + bound(ms)
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

-- A new file (os.tmpname) holding content; returns its name.
function M.tmpfile(content)
  local name = os.tmpname()
  local f = assert(io.open(name, "w"))
  f:write(content)
  f:close()
  return name
end

-- Run src as a script in a fresh host process (shell_suffix: arguments or
-- redirections after the script's name); returns its output (stdout and
-- stderr) and exit status.
function M.host_script(src, shell_suffix)
  local path = M.tmpfile(src)
  local out, status = M.sh(M.qbin .. " " .. M.shq(path) .. " " .. (shell_suffix or "") .. " 2>&1")
  os.remove(path)
  return out, status
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

-- ------------------------------------------------------------ the leak gate

-- What a spec could leave behind: handles, registry references, fs
-- requests, TLS engines, tasks that have not ended.
local function census()
  collectgarbage("collect")
  collectgarbage("collect")
  local c = {handles = {}, tasks = {}}
  coru.walk(function(h) c.handles[#c.handles + 1] = tostring(h) end)
  c.refs, c.reflist = 0, {}
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "number" and type(v) ~= "number" then c.refs = c.refs + 1; c.reflist[k] = v end
  end
  c.fs = coru._fs_live_requests()
  local tls = rawget(coru, "_tls")
  c.tls = tls and tls.live() or 0
  for _, e in ipairs(coru.tasks()) do c.tasks[e.task] = e end
  return c
end

-- Let closes and late completions finish: a few loop iterations.
local function settle()
  coru.run(function() for _ = 1, 3 do coru.pass() end end)
end

local function leftovers(before, now)
  local problems = {}
  if #now.handles > #before.handles then
    problems[#problems + 1] = ("%d handle(s) left open: %s"):format(
      #now.handles - #before.handles, table.concat(now.handles, ", "))
  end
  if now.refs > before.refs then
    local new = {}
    for k, v in pairs(now.reflist) do
      if before.reflist[k] ~= v then new[#new + 1] = ("[%d] = %s"):format(k, tostring(v)) end
    end
    problems[#problems + 1] = ("%d registry reference(s) left (%s)"):format(
      now.refs - before.refs, table.concat(new, ", "))
  end
  if now.fs > before.fs then problems[#problems + 1] = ("%d fs request(s) live"):format(now.fs - before.fs) end
  if now.tls > before.tls then problems[#problems + 1] = ("%d TLS engine(s) live"):format(now.tls - before.tls) end
  for t, e in pairs(now.tasks) do
    if not before.tasks[t] and e.status ~= "running" then
      problems[#problems + 1] = ("a task left suspended in %s: %s"):format(tostring(e.waits), tostring(t))
    end
  end
  return problems
end

-- After a spec: what is still there once background work had up to
-- GATE_GRACE ms (5000) to end (a handler finishing its last write, a close
-- callback) fails the spec. The gate looks again every 5 ms: a clean spec
-- waits for nothing; 1 s was too short for a handler's last turn with 3
-- suites sharing one core.
local GRACE = M.ms(tonumber(os.getenv("CORU_GATE_GRACE") or "") or 5000)
local function check(before)
  settle()
  local problems = leftovers(before, census())
  local t0 = coru.now()
  while #problems > 0 and coru.now() - t0 < GRACE do
    coru.run(coru.sleep, 5)       -- the census is taken outside any task of ours
    problems = leftovers(before, census())
  end
  if #problems > 0 then
    error("leak gate: the spec left behind " .. table.concat(problems, "; "), 0)
  end
end

-- ------------------------------------------------------------ child processes

-- The children spawned through M.spawn that the current spec has not yet
-- seen reaped.
local children = {}

-- Inside a task: coru.process.spawn(cmd, args, opts), raising its error;
-- the child belongs to the current spec. A spec ends its children itself
-- (the leak gate counts a live one's handles); one that fails half way
-- leaves that to the gate, which kills (SIGKILL), reaps and closes what is
-- still there when the spec ends, passed or failed: a failing assertion
-- leaves no server or Node process running.
function M.spawn(cmd, args, opts)
  return M.adopt(coru.process.spawn(cmd, args, opts))
end

-- The same for a child spawned otherwise (coru.floo.testing.launch):
-- adopt(p, ...) raises assert's error when p is nil, else returns p, ....
function M.adopt(p, ...)
  children[#children + 1] = assert(p, ...)
  return p, ...
end

-- Kill (unless it has exited), reap and close a child of M.spawn.
function M.reap(p)
  coru.run(function()
    if not p.exited then p:kill("sigkill") end
    p:wait()
    p:close()
  end)
end

local function reap_children()
  local list = children
  children = {}
  for _, p in ipairs(list) do M.reap(p) end
end

-- ------------------------------------------------------------ sanitizer reports of children

-- Whether this process runs under ASan/UBSan (make test SANITIZE=1: the
-- sanitized host, or luajit with libasan preloaded for the sanitized
-- coru.so). Its children (the host a spec runs, coru.so in a luajit) are
-- sanitized too.
local function sanitized()
  local f = io.open("/proc/self/maps")
  if not f then return false end
  local maps = f:read("*a")
  f:close()
  return maps:find("libasan", 1, true) ~= nil
end

-- Under a sanitizer, every child process writes its sanitizer reports
-- (ASan, UBSan, LeakSanitizer) to files in san_dir instead of its stderr,
-- wherever that stderr goes (a pipe a spec ignores, /dev/null): the
-- ASAN_OPTIONS and UBSAN_OPTIONS this process passes on name the
-- directory in log_path. The gate fails the spec during which a report
-- appeared, quoting it. A command that sets ASAN_OPTIONS itself extends
-- "$ASAN_OPTIONS" to keep this.
local san_dir
local function watch_child_reports()
  if not sanitized() then return end
  -- mktemp, not fs_mkdtemp: busted requires this file from a C function
  san_dir = assert(M.sh("mktemp -d \"${TMPDIR:-/tmp}/coru-san-XXXXXX\""):match("[^\n]+"))
  pcall(ffi.cdef, "int setenv(const char *name, const char *value, int overwrite);")
  for _, var in ipairs({"ASAN_OPTIONS", "UBSAN_OPTIONS"}) do
    local old = os.getenv(var)
    local v = (old and old ~= "" and old .. ":" or "") .. "log_path=" .. san_dir .. "/report"
    assert(ffi.C.setenv(var, v, 1) == 0, "setenv " .. var)
  end
end

-- The reports children wrote since the last look, removed; nil if none.
local function child_reports()
  if not san_dir then return nil end
  local p = io.popen("ls " .. M.shq(san_dir))
  local names = p:read("*a")
  p:close()
  local out = {}
  for name in names:gmatch("[^\n]+") do
    local path = san_dir .. "/" .. name
    local f = io.open(path, "rb")
    if f then
      local text = f:read("*a")
      f:close()
      -- the first 60 lines: the report's kind, frames and summary
      local stop = 0
      for _ = 1, 60 do stop = text:find("\n", stop + 1, true) or #text if stop == #text then break end end
      out[#out + 1] = name .. ":\n" .. text:sub(1, stop)
    end
    os.remove(path)
  end
  return #out > 0 and table.concat(out, "\n") or nil
end

M.child_reports = child_reports
function M.watching_child_reports() return san_dir ~= nil end

local function fail_on_child_reports(when)
  local r = child_reports()
  if r then error("sanitizer report of a child process " .. when .. ":\n" .. r, 0) end
end

-- Install the gate (spec/gate.lua, busted's helper): each spec's body is
-- wrapped so that what it leaves behind fails that spec, and so does a
-- sanitizer report of a child process; at the end of every spec, the
-- children of M.spawn still there are reaped.
function M.gate()
  local busted = require "busted"
  watch_child_reports()
  busted.subscribe({"test", "start"}, function(element)
    local run = element.run
    element.run = function(...)
      -- a report left by an earlier spec that failed before its own look
      fail_on_child_reports("written before this spec began")
      settle()
      local before = census()
      run(...)
      check(before)
      fail_on_child_reports("during this spec")
    end
    return nil, true
  end)
  busted.subscribe({"test", "end"}, function()
    reap_children()
    return nil, true
  end)
  busted.subscribe({"suite", "end"}, function()
    if san_dir then
      local r = child_reports()
      if r then io.stderr:write("sanitizer report of a child process after the last spec:\n", r, "\n") end
      os.remove(san_dir)
    end
    return nil, true
  end)
end

return M
