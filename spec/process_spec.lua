-- processes: coru.spawn_process (luv's shape), coru.process.spawn/exec.
local coru = require "coru"
local helper = require "helper"
local P = coru.process

local run, wait_until = helper.run, helper.wait_until

local ffi = require "ffi"
pcall(ffi.cdef, "int ioctl(int, unsigned long, ...); int fcntl(int, int, ...);")
-- bytes waiting in a pipe, and its capacity (Linux: FIONREAD, F_GETPIPE_SZ)
local function pipe_fill(fd)
  local n = ffi.new("int[1]")
  assert(ffi.C.ioctl(fd, 0x541B, n) == 0)
  return n[0], ffi.C.fcntl(fd, 1032)
end

-- a PATH every user may search (a PATH entry that denies search turns
-- execvp's ENOENT into EACCES)
local SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

-- children of this process (zombies only, unless all), from /proc
local function zombies(all)
  local n = 0
  local me = coru.getpid()
  local req = coru.fs_scandir("/proc")
  while true do
    local name = coru.fs_scandir_next(req)
    if not name then break end
    if name:match("^%d+$") then
      local f = io.open("/proc/" .. name .. "/stat")
      local s = f and f:read("*a")
      if f then f:close() end
      local state, ppid = s and s:match("^%d+ %b() (%a) (%d+)")
      if (all or state == "Z") and tonumber(ppid) == me then n = n + 1 end
    end
  end
  return n
end

describe("process", function()
  it("exec collects stdout, stderr, code, signal", function()
    local out, err, code, sig = run(P.exec, "sh", {"-c", "echo out; echo err >&2; exit 3"})
    assert.equal("out\n", out)
    assert.equal("err\n", err)
    assert.equal(3, code)
    assert.equal(0, sig)
  end)

  it("exec writes its input to the child", function()
    local input = string.rep("line\n", 10000)
    local out, _, code = run(P.exec, "cat", {}, {input = input})
    assert.equal(input, out)
    assert.equal(0, code)
  end)

  it("exec honours cwd and env", function()
    local out = run(P.exec, "sh", {"-c", "pwd; echo $CORU_X"}, {cwd = "/", env = {CORU_X = "yes", PATH = os.getenv("PATH")}})
    assert.equal("/\nyes\n", out)
    local out2 = run(P.exec, "sh", {"-c", "echo $A$B"}, {env = {"A=1", "B=2"}})
    assert.equal("12\n", out2)
  end)

  it("a missing program: nil, ENOENT message, ENOENT, and no zombie", function()
    local before = zombies()
    local p, msg, name = run(P.spawn, "/nonexistent/program", {})
    assert.is_nil(p)
    assert.equal("ENOENT: no such file or directory: /nonexistent/program", msg)
    assert.equal("ENOENT", name)
    local out, msg2, name2 = run(P.exec, "no-such-program-coru", {}, {env = {PATH = SAFE_PATH}})
    assert.is_nil(out)
    assert.equal("ENOENT: no such file or directory: no-such-program-coru", msg2)
    assert.equal("ENOENT", name2)
    run(wait_until, function() return zombies() <= before end, 5000, "no zombie")
    assert.equal(before, zombies())
    -- a file without execute permission: EACCES, even for root
    local d = coru.fs_mkdtemp("/tmp/coru-proc-XXXXXX")
    coru.fs.write_file(d .. "/x", "#!/bin/sh\necho no\n")
    local _, _, name3 = run(P.spawn, d .. "/x", {})
    assert.equal("EACCES", name3)
    coru.fs.rmtree(d)
  end)

  it("a child that prints megabytes: no deadlock", function()
    local out, err, code = run(P.exec, "sh", {"-c", "head -c 20000000 /dev/zero; head -c 3000000 /dev/zero >&2"})
    assert.equal(20000000, #out)
    assert.equal(3000000, #err)
    assert.equal(0, code)
  end)

  it("exec max_output bounds what it collects", function()
    local out, msg, name, sofar = run(P.exec, "sh", {"-c", "head -c 100000000 /dev/zero"}, {max_output = 1000000})
    assert.is_nil(out)
    assert.equal("output too large", msg)
    assert.equal("too large", name)
    assert.equal(1000000, #sofar)          -- at most max_output bytes are kept
  end)

  it("an unread pipe blocks the child instead of buffering without bound", function()
    run(function()
      local p = helper.spawn("sh", {"-c", "head -c 50000000 /dev/zero; echo done >&2"}, {stdio = {"ignore", "pipe", "pipe"}})
      -- the kernel's pipe fills up (coru does not drain it into memory)
      -- and the child, with megabytes left to write, cannot end
      local fd = p.stdout:fileno()
      wait_until(function() local n, size = pipe_fill(fd) return n >= size end, 5000, "the child's stdout pipe to fill")
      assert.is_false(p.exited)            -- blocked on its full pipe
      local total = 0
      while true do
        local chunk = p.stdout:read()
        if not chunk then break end
        total = total + #chunk
      end
      assert.equal(50000000, total)
      assert.equal("done\n", p.stderr:read_line() .. "\n")
      assert.same({0, 0}, {p:wait()})
      p:close()
    end)
  end)

  it("a child killed by a signal: code, signal", function()
    run(function()
      local p = helper.spawn("sleep", {"10"})
      assert.equal("sleep\0" .. "10\0", coru.fs.read_file("/proc/" .. p.pid .. "/cmdline"))
      assert.is_true(p:kill("sigkill"))
      local code, sig = p:wait()
      assert.equal(9, sig)
      assert.equal(0, code)
      assert.equal("ESRCH", select(3, p:kill()))
      local _, _, c2, s2 = P.exec("sh", {"-c", "kill -TERM $$"})
      assert.equal(15, s2)
      assert.equal(0, c2)
    end)
  end)

  it("exec timeout kills the child", function()
    local t0 = coru.hrtime()
    local out, msg, name = run(P.exec, "sh", {"-c", "echo partial; exec sleep 10"}, {timeout = 200})
    assert.is_nil(out)
    assert.equal("timeout", msg)
    assert.equal("timeout", name)
    assert.is_true((coru.hrtime() - t0) / 1e6 < 3000)
  end)

  it("a cancelled exec takes its child down", function()
    local children = zombies(true)
    run(function()
      local r, why = coru.timeout(100, function()
        local o = P.exec("sh", {"-c", "echo $$; exec sleep 10"})
        return o
      end)
      assert.is_nil(r)
      assert.equal("timeout", why)
      wait_until(function() return zombies(true) <= children end, 5000, "the child to be killed and reaped")
    end)
    assert.equal(children, zombies(true))   -- killed and reaped
  end)

  it("stdio: pipes are coru streams; inherit, ignore, a descriptor, a stream", function()
    run(function()
      local p = P.spawn("sh", {"-c", "read x; echo got:$x; echo line2"}, {stdio = {"pipe", "pipe", "inherit"}})
      assert.is_true(p.stdin:write("hello\n"))
      assert.equal("got:hello", p.stdout:read_line())
      assert.equal("line2", p.stdout:read_line())
      assert.is_nil(p.stdout:read())
      assert.same({0, 0}, {p:wait()})
      p:close()

      local d = coru.fs_mkdtemp("/tmp/coru-proc-XXXXXX")
      local fd = coru.fs_open(d .. "/out", "w")
      local q = P.spawn("echo", {"to a file"}, {stdio = {"ignore", fd, "ignore"}})
      q:wait()
      coru.fs_close(fd)
      assert.equal("to a file\n", coru.fs.read_file(d .. "/out"))
      coru.fs.rmtree(d)

      -- a stream as stdio: echo | tr
      local a = P.spawn("echo", {"hello"}, {stdio = {"ignore", "pipe", "inherit"}})
      local b = P.spawn("tr", {"a-z", "A-Z"}, {stdio = {a.stdout, "pipe", "inherit"}})
      a.stdout:close()
      assert.equal("HELLO", b.stdout:read_line())
      a:wait() b:wait()
      b:close()
    end)
  end)

  it("wait in callback mode, and luv's spawn_process shape", function()
    local got
    run(function()
      local h, pid = coru.spawn_process("sh", {args = {"-c", "exit 7"}, stdio = {}}, function(code, sig)
        got = {code, sig}
      end)
      assert.is_true(pid > 1)
      assert.equal(pid, h:get_pid())
      wait_until(function() return got end)
      h:close()
      local p = P.spawn("true", {})
      local cbres
      p:wait(function(err, code) cbres = {err, code} end)
      wait_until(function() return cbres end)
      assert.same({nil, 0}, {cbres[1], cbres[2]})
    end)
    assert.same({7, 0}, got)
  end)

  it("leaves no registry reference behind", function()
    run(function()
      P.exec("true")   -- warm up
      collectgarbage("collect")
      local before = helper.registry_refs()
      for _ = 1, 5 do   -- a leak per call would show 5 times
      P.exec("sh", {"-c", "echo x; echo y >&2"}, {input = "in"})
      P.exec("sleep", {"5"}, {timeout = 50})
      P.exec("/nonexistent")
      local p = P.spawn("true", {}, {stdio = {"pipe", "pipe", "pipe"}})
      p:wait()
      p:close()
      p = nil
      end
      -- what the scheduler releases on its next turns
      helper.settle(function() return helper.registry_refs() <= before end)
      local after = helper.registry_refs()
      assert.is_true(after <= before, ("registry references grew from %d to %d"):format(before, after))
    end)
  end)

  it("bad arguments are argument errors", function()
    assert.has_error(function() coru.spawn_process("sh", {stdio = {"bogus"}}) end,
      "bad argument #2 to 'spawn_process' (stdio[1]: \"pipe\", \"inherit\", \"ignore\", a descriptor or a stream expected, got bogus)")
    assert.has_error(function() coru.spawn_process("sh", {args = {"-c", {}}}) end,
      "bad argument #2 to 'spawn_process' (args[2]: string expected, got table)")
    assert.has_error(function() P.spawn(42) end, "bad argument #1 to 'process.spawn' (string expected, got number)")
    run(function()
      local p = helper.spawn("sleep", {"5"})
      assert.has_error(function() p:kill("sigbogus") end, "bad argument #2 to 'process_kill' (invalid signal sigbogus)")
      p:kill()
      p:wait()
    end)
  end)
end)
