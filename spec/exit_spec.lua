-- Exit closes everything: os.exit / coru.exit (from the main chunk, a task,
-- a callback, a __gc) and the host's normal end close every handle, the
-- loop and the Lua state, so that LeakSanitizer (sanitizer build) or
-- valgrind reports nothing. Subprocesses: the same in both faces.
local H = require "helper"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local root = here .. "../"
local asan = H.sh("ldd " .. H.qbin .. " 2>/dev/null | grep -c libasan"):match("^%s*[1-9]") ~= nil
local valgrind = not asan and H.sh("command -v valgrind"):match("%S") ~= nil

-- The script of every case: a jsonl encoder (its coru.json codec's buffer,
-- freed only by its __gc), a codec kept in a coru.work pooled state (freed
-- when exit closes the pool), a server, a connection that has read a line,
-- then the exit of arg[1].
local script = [[
local j = require "coru.jsonl" j.encode({a = 1})
coru.work(function() local c = require("coru.json").new() c.encode({("x"):rep(1000)}) package.loaded.kept = c end)
local srv = coru.tcp.listen("127.0.0.1", 0, function(c) c:write("hello\n") c:read() c:close() end)
local c = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
print(c:read_line())
local a = arg[1]
local function on_gc(f) local p = newproxy(true) getmetatable(p).__gc = f return p end
if a == "main" then os.exit(3)
elseif a == "task" then coru.spawn(function() os.exit(4) end) coru.sleep(10000)
elseif a == "callback" then coru.new_timer():start(1, 0, function() coru.exit(5) end) coru.sleep(10000)
elseif a == "gc" then on_gc(function() os.exit(6) end) collectgarbage() collectgarbage() coru.sleep(10000)
elseif a == "closegc" then keep = on_gc(function() os.exit(7) print("not reached") end) os.exit(2)
elseif a == "endgc" then keep = on_gc(function() os.exit(8) end) srv:close() c:close()
elseif a == "end" then srv:close() c:close()
elseif a == "false" then os.exit(false, false)
elseif a == "flush" then
  -- a write still queued at exit (8 MB into a pipe): exit flushes it, cat reads it
  local p = coru.process.spawn("sh", {"-c", "cat > /dev/null"}, {stdio = {"pipe", "inherit", "inherit"}})
  p.stdin:write(string.rep("x", 8 * 1024 * 1024), function() end)
  os.exit(11)
elseif a == "signal" or a == "sigterm" then
  -- timers in use and pooled: a read waiting with its timeout, a finished coru.timeout
  c:settimeouts(nil, nil, 10000)
  coru.spawn(function() c:read() end)
  coru.timeout(1000, coru.sleep, 1)
  if a == "signal" then coru.new_signal():start("sigusr1", function() os.exit(10) end) end
  local pid = io.open("/proc/self/stat"):read("*l"):match("^%d+")
  coru.kill(tonumber(pid), a == "signal" and "sigusr1" or "sigterm")   -- the host's default: 143
  coru.sleep(10000)
end
]]

-- The module face: coru.exit(status, true) closes plain LuaJIT's state.
local module_script = [[
local coru = require "coru"
require("coru.jsonl").encode({a = 1})
coru.run(function()
  coru.new_timer():start(10000, 0, function() end)
  print("hello")
  coru.exit(9, true)
end)
]]

local function write(path, s)
  local f = assert(io.open(path, "w"))
  f:write(s)
  f:close()
end

-- The environment of a child (the host or plain LuaJIT with coru.so):
-- this tree's Lua files and module, and the sanitizer's runtime with leak
-- detection in a sanitizer build.
local function child_env()
  local env = "LUA_PATH=" .. H.shq(root .. "lua/?.lua;" .. root .. "lua/?/init.lua;;")
              .. " LUA_CPATH=" .. H.shq(H.bin:gsub("/coru$", "/?.so") .. ";;")
  if asan then
    local rt = H.sh("cc -print-file-name=libasan.so"):match("%S+")
    env = env .. " ASAN_OPTIONS=detect_leaks=1 LD_PRELOAD=" .. H.shq(rt)
  end
  return env
end

-- Runs every case at once (valgrind is slow); returns {name = {out, status}}.
-- Each is bounded by CASE_LIMIT seconds, a hang detector: twelve valgrind
-- runs at once on a loaded machine took more than 60 s to print "hello".
local CASE_LIMIT = H.ms(600)
local function run_all(cases)
  local dir = assert(H.sh("mktemp -d"):match("%S+"))
  write(dir .. "/exit.lua", script)
  write(dir .. "/module.lua", module_script)
  local env = child_env()
  local wrap = valgrind and ("valgrind --quiet --error-exitcode=99 --leak-check=full"
    .. " --errors-for-leak-kinds=definite --suppressions=" .. H.shq(root .. "tools/luajit.supp") .. " ") or ""
  local cmds = {}
  for _, c in ipairs(cases) do
    local prog = c.module and ("luajit " .. H.shq(dir .. "/module.lua"))
                 or (H.qbin .. " " .. H.shq(dir .. "/exit.lua") .. " " .. c.arg)
    cmds[#cmds + 1] = ("(%s timeout %d %s%s > %s/%s.out 2>&1; echo $? > %s/%s.rc) &"):format(
      env, CASE_LIMIT, wrap, prog, dir, c.arg, dir, c.arg)
  end
  H.sh(table.concat(cmds, "\n") .. "\nwait")
  local res = {}
  for _, c in ipairs(cases) do
    local f = io.open(dir .. "/" .. c.arg .. ".out")
    local g = io.open(dir .. "/" .. c.arg .. ".rc")
    res[c.arg] = {out = f:read("*a"), status = tonumber(g:read("*a"))}
    f:close() g:close()
  end
  H.sh("rm -rf " .. H.shq(dir))
  return res
end

describe("exit", function()
  it("closes every handle, the loop and the Lua state: nothing leaks, whatever exits", function()
    if not asan and not valgrind then
      pending("neither a sanitizer build (make test SANITIZE=1) nor valgrind: no leak checker to ask")
      return
    end
    local cases = {
      {arg = "main", status = 3},       -- os.exit in the main chunk
      {arg = "task", status = 4},       -- in another task
      {arg = "callback", status = 5},   -- coru.exit in a timer callback
      {arg = "gc", status = 6},         -- in a __gc during a collection
      {arg = "closegc", status = 7},    -- in a __gc run by exit's own close: its status wins
      {arg = "endgc", status = 8},      -- in a __gc at the host's normal end
      {arg = "end", status = 0},        -- the normal end
      {arg = "false", status = 1},      -- os.exit(false, false): the host closes anyway
      {arg = "flush", status = 11},     -- with a write queued: exit's flush runs the loop first
      {arg = "signal", status = 10},    -- in a signal watcher (libuv's dispatch never returns)
      {arg = "sigterm", status = 143},  -- the host's SIGTERM default, timers in use and pooled
      {arg = "module", status = 9, module = true},
    }
    local res = run_all(cases)
    for _, c in ipairs(cases) do
      local r = res[c.arg]
      assert(r.out:find("hello", 1, true), c.arg .. " (status " .. tostring(r.status) .. "): no hello in " .. r.out)
      assert.not_matches("not reached", r.out, nil, true)
      assert.not_matches("LeakSanitizer", r.out, nil, true)
      assert.not_matches("AddressSanitizer", r.out, nil, true)
      assert.not_matches("definitely lost", r.out, nil, true)
      assert.not_matches("Invalid ", r.out, nil, true)
      assert.are.equal(c.status, r.status, c.arg .. ": " .. r.out)
    end
  end)
end)

-- A request libuv cannot cancel (a pool thread blocked in open() of a FIFO
-- that nobody writes) kept the exit waiting for ever: in the loop's last
-- run, then in libuv's destructor joining its threads. The exit is bounded
-- and keeps its status (nothing is checked for leaks here: the blocked
-- request is left behind on purpose).
-- Runs a host whose exit leaves an fs_open of a FIFO without a writer
-- behind, with env before the command; returns its output and status.
local function exit_with_blocked_open(env)
  local dir = H.tmpdir("coru-exit-fifo")
  local fifo = dir .. "/fifo"
  assert.equal(0, select(2, H.sh("mkfifo " .. H.shq(fifo))))
  local script = H.tmpfile(string.format([[
    coru.fs_open(%q, "r", 0, function() end)
    coru.sleep(20)
    print("exiting")
    coru.exit(3)
  ]], fifo))
  local out, status = H.sh(env .. " timeout " .. CASE_LIMIT .. " " .. H.qbin .. " " .. H.shq(script) .. " 2>&1")   -- 124: it hung
  os.remove(script)
  os.remove(fifo)
  H.sh("rm -rf " .. H.shq(dir))
  return out, status
end

describe("exit with a request that never completes", function()
  it("ends the process with its status", function()
    local out, status = exit_with_blocked_open("")
    assert.matches("exiting", out)
    assert.not_matches("still alive", out)
    assert.equal(3, status)
  end)

  it("names what kept the loop alive under CORU_DEBUG_EXIT=1", function()
    local out, status = exit_with_blocked_open("CORU_DEBUG_EXIT=1")
    assert.matches("coru: exit: the loop was still alive 2000 ms after every close was asked: "
      .. "0 active handle%(s%), 1 active request%(s%) %(1 of coru's fs requests live%)", out)
    assert.matches("coru: exit:   async      active 1 ref 0 closing 0", out)   -- libuv's own: the pool's wake-up
    assert.equal(3, status)
  end)
end)

-- An exit from a task that the first of a batch of pool completions woke:
-- libuv hands the batch's other completions to their callbacks only once
-- that callback returns (the API fuzzer's seed 2039362109 hung there
-- before the 2 s bound). The exit unwinds first (docs/internals.md): the
-- loop's last runs see the batch finish, the 2 s guard never fires (with
-- CORU_DEBUG_EXIT=1 it would say so) and the process exits through exit(),
-- LeakSanitizer included. The same from a callback-mode call.
describe("exit from inside a batch of pool completions", function()
  local function batch_exit(call)
    local script = H.tmpfile([[
      for i = 1, 4 do
        ]] .. call .. [[
      end
      local t = os.clock() while os.clock() - t < 0.2 do end   -- the pool ends all four meanwhile
    ]])
    -- a sanitizer build: ASan's exit stats print from its atexit handler,
    -- which runs only if the process ends with exit() (LeakSanitizer's too)
    local env = asan and 'ASAN_OPTIONS="$ASAN_OPTIONS:atexit=1:log_path=stderr" ' or ""
    local out, status = H.sh(env .. "CORU_DEBUG_EXIT=1 timeout " .. CASE_LIMIT .. " " .. H.qbin .. " "
                             .. H.shq(script) .. " 2>&1")   -- 124: it hung
    os.remove(script)
    if asan then
      local at = out:find("AddressSanitizer exit stats", 1, true)
      assert.is_not_nil(at, "exited without running the atexit handlers: " .. out)
      out = out:sub(1, at - 1)
    end
    return out, status
  end

  it("from a task: unwinds, ends with its status before any guard", function()
    local out, status = batch_exit([[coru.spawn(function()
          coru.fs_stat(".")
          print("exiting")
          coru.exit(7)
          print("resumed after exit")
        end)]])
    assert.equal("exiting\n", out)   -- no "coru: exit: the loop was still alive", nothing after the exit
    assert.equal(7, status)
  end)

  it("from a callback: the callback ends there, unreported", function()
    local out, status = batch_exit([[coru.fs_stat(".", function()
          print("exiting")
          coru.exit(8)
          print("went on after exit")
        end)]])
    assert.equal("exiting\n", out)   -- no "unhandled error: exit", no guard line
    assert.equal(8, status)
  end)
end)

-- A write queued at exit to a peer that never reads: the flush gives up
-- after its 5 s (docs/api.md, coru.exit) and closes everything. Its own
-- timer was closed twice then (libuv's assertion in uv_close, abort, 134):
-- seen in the full suite under load, where the 8 MB of the "flush" case
-- above took valgrind more than 5 s. Both faces: it runs in a child host.
describe("exit with a write the peer never reads", function()
  it("gives the flush up after its time and ends with its status", function()
    local out, status = H.host_script([[
      local p = coru.process.spawn("sleep", {"60"}, {stdio = {"pipe", "ignore", "ignore"}})
      print("child " .. p.pid)
      p.stdin:write(string.rep("x", 1024 * 1024), function() end)
      os.exit(12)
    ]])
    local pid = out:match("child (%d+)")
    if pid then H.sh("kill " .. pid) end
    assert.is_not_nil(pid, out)
    assert.not_matches("Assertion", out, nil, true)
    assert.equal(12, status, out)
  end)
end)

-- coru.work's pooled states are closed when the runtime ends, whatever
-- ends it: a userdata a call left in its state (package.loaded keeps it)
-- has its __gc run, which appends "closed" to the file arg[1]. A state
-- still busy in a pool thread when the exit gives up on it ("busy": a call
-- sleeping 30 s) is left to the process's end: its __gc never runs, and
-- the exit neither waits for it nor loses its status.
describe("exit and coru.work's pooled states", function()
  local keep = [[
local function keep(path, what)
  local x = newproxy(true)
  getmetatable(x).__gc = function() local f = io.open(path, "a") f:write(what, "\n") f:close() end
  package.loaded["exit_spec.keep"] = x
end
]]
  local host = keep .. [[
local a = arg[2]
if a == "busy" then
  coru.work(function(path) ]] .. keep:gsub("\n", " ") .. [[ keep(path, "busy closed") require("luv").sleep(30000) end,
            arg[1], function() end)
  coru.sleep(50)   -- the busy state is taken: the next call gets another
end
coru.work(keep, arg[1], "closed")
if a == "main" then os.exit(3)
elseif a == "task" then coru.spawn(function() coru.exit(4) end) coru.sleep(10000)
elseif a == "busy" then coru.exit(5) end
]]
  local module = keep .. [[
local coru = require "coru"
coru.run(function() coru.work(keep, arg[1], "closed") end)
if arg[2] == "exit" then coru.exit(6) end   -- without closing the Lua state
]]

  it("closes them: every __gc of a pooled state runs, a busy state does not hang the exit", function()
    local dir = H.tmpdir("coru-exit-pool")
    local hostf, modf = dir .. "/host.lua", dir .. "/module.lua"
    write(hostf, host)
    write(modf, module)
    local env = child_env()
    local cases = {
      {"end", 0, H.qbin .. " " .. H.shq(hostf)}, {"main", 3, H.qbin .. " " .. H.shq(hostf)},
      {"task", 4, H.qbin .. " " .. H.shq(hostf)}, {"busy", 5, H.qbin .. " " .. H.shq(hostf)},
      {"modend", 0, "luajit " .. H.shq(modf)}, {"exit", 6, "luajit " .. H.shq(modf)},
    }
    local cmds = {}
    for _, c in ipairs(cases) do   -- at once: "busy" takes the exit's two bounded runs (4 s)
      local gc = dir .. "/" .. c[1] .. ".gc"
      cmds[#cmds + 1] = ("(%s timeout %d %s %s %s >/dev/null 2>&1; echo $? > %s.rc) &")
        :format(env, CASE_LIMIT, c[3], H.shq(gc), c[1], H.shq(gc))
    end
    H.sh(table.concat(cmds, "\n") .. "\nwait")
    for _, c in ipairs(cases) do
      local gc = dir .. "/" .. c[1] .. ".gc"
      local f = io.open(gc .. ".rc")
      assert.equal(c[2], tonumber(f:read("*a")), c[1])   -- 124: it hung
      f:close()
      f = io.open(gc)
      assert.equal("closed\n", f and f:read("*a"), c[1])
      if f then f:close() end
    end
    H.sh("rm -rf " .. H.shq(dir))
  end)
end)
