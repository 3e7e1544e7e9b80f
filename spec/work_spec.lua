-- the thread pool (coru.work, new_work/queue_work), async and poll handles.
local coru = require "coru"
local helper = require "helper"
local ffi = require "ffi"

pcall(ffi.cdef, [[
int pipe(int fds[2]);
long write(int fd, const void *buf, unsigned long n);
int close(int fd);
]])
pcall(ffi.cdef, "int ioctl(int, unsigned long, ...);")

local run, wait_until = helper.run, helper.wait_until

-- bytes waiting in a pipe (FIONREAD)
local function pending_bytes(fd)
  local n = ffi.new("int[1]")
  assert(ffi.C.ioctl(fd, 0x541B, n) == 0)
  return n[0]
end

-- A pool function that blocks: it says it started (a byte on started_fd),
-- then waits up to 10 s for a byte on release_fd, then writes a byte to
-- finished_fd if given. It returns n * 2, or "not released".
local function blocker(started_fd, release_fd, n, finished_fd)
  local ffi = require "ffi"
  pcall(ffi.cdef, "long write(int, const void *, unsigned long); long read(int, void *, unsigned long);")
  pcall(ffi.cdef, "struct coru_pollfd { int fd; short events; short revents; };")
  pcall(ffi.cdef, "int poll(struct coru_pollfd *, unsigned long, int);")
  ffi.C.write(started_fd, "s", 1)
  local p = ffi.new("struct coru_pollfd[1]")
  p[0].fd, p[0].events = release_fd, 1   -- POLLIN
  if ffi.C.poll(p, 1, 10000) ~= 1 then return "not released" end
  ffi.C.read(release_fd, ffi.new("char[1]"), 1)
  if finished_fd then ffi.C.write(finished_fd, "f", 1) end
  return n * 2
end

local function new_pipe()
  local fds = ffi.new("int[2]")
  assert(ffi.C.pipe(fds) == 0)
  return fds[0], fds[1]
end

describe("work", function()
  it("runs a function in the pool and returns its results", function()
    run(function()
      local a, b, c, d = coru.work(function(x, y, t)
        return x + y, {sum = t[1] + t[2], nested = {s = "ok", flag = true}}, nil, "end"
      end, 1, 2, {10, 20})
      assert.equal(3, a)
      assert.same({sum = 30, nested = {s = "ok", flag = true}}, b)
      assert.is_nil(c)
      assert.equal("end", d)
    end)
  end)

  it("runs in parallel on several threads and the loop goes on", function()
    -- four functions that block until released: all four must be in the
    -- pool at once (a one-thread pool would run one and leave three queued),
    -- and the loop must go on meanwhile
    local started_r, started_w = new_pipe()
    local release_r, release_w = new_pipe()
    run(function()
      local tasks = {}
      for i = 1, 4 do tasks[i] = coru.spawn(coru.work, blocker, started_w, release_r, i) end
      local all_in = pcall(wait_until, function() return pending_bytes(started_r) >= 4 end, 5000)
      local running = pending_bytes(started_r)
      local ticks = 0
      local ticker = coru.spawn(function()
        for _ = 1, 5 do coru.sleep(1) ticks = ticks + 1 end
      end)
      ticker:await()                      -- timers fire while the pool is busy
      local busy = {tasks[1]:status(), tasks[2]:status(), tasks[3]:status(), tasks[4]:status()}
      ffi.C.write(release_w, "rrrr", 4)
      local res = coru.all(tasks)
      assert.is_true(all_in, running .. " of 4 pool functions ran at once")
      assert.same({"suspended", "suspended", "suspended", "suspended"}, busy)
      assert.equal(5, ticks)
      assert.same({2, 4, 6, 8}, {res[1][1], res[2][1], res[3][1], res[4][1]})
    end)
    for _, fd in ipairs{started_r, started_w, release_r, release_w} do ffi.C.close(fd) end
  end)

  it("globals set by fn do not outlive the call", function()
    run(function()
      for _ = 1, 8 do
        assert.is_nil(coru.work(function() local old = leaked_global leaked_global = 1 return old end))
      end
      assert.is_nil(rawget(_G, "leaked_global"))
    end)
  end)

  it("an error in fn is raised in the task with its message", function()
    run(function()
      local ok, err = pcall(coru.work, function(x) error("bad value " .. x) end, 7)
      assert.is_false(ok)
      assert.matches("bad value 7", err)
      local ok2, err2 = pcall(coru.work, function() error({}) end)
      assert.is_false(ok2)
      assert.matches("error object is not a string", err2)
      -- the pooled state is still usable
      assert.equal(1, coru.work(function() return 1 end))
    end)
  end)

  it("a function with upvalues is a clear error", function()
    local up = 42
    run(function()
      assert.has_error(function() coru.work(function() return up end) end,
        "coru.work: the function has upvalues (first: 'up'); it runs in another Lua state, so it may use only its arguments and globals")
      assert.has_error(function() coru.work(print) end, "coru.work: a C function cannot run in the thread pool")
      assert.has_error(function() coru.work(42) end, "bad argument #1 to 'coru.work' (function expected, got number)")
    end)
  end)

  it("arguments and results it cannot copy are clear errors", function()
    run(function()
      assert.has_error(function() coru.work(function() end, coroutine.create(print)) end,
        "coru.work: argument #2: a thread value cannot cross Lua states (only nil, booleans, numbers, strings, plain tables, async handles and thread ids)")
      assert.has_error(function() coru.work(function() end, setmetatable({}, {})) end,
        "coru.work: argument #2: a table with a metatable cannot cross Lua states")
      local cyc = {} cyc.self = cyc
      assert.has_error(function() coru.work(function() end, cyc) end,
        "coru.work: argument #2: tables nested too deep (a cycle?)")
      local ok, err = pcall(coru.work, function() return io.stdout end)
      assert.is_false(ok)
      assert.matches("coru.work: result #1: a userdata value cannot cross Lua states", err)
    end)
  end)

  it("needs a task or a callback", function()
    assert.has_error(function() helper.outside_task(coru.work, function() end) end,
      "coru.work: needs a running task or a callback")
  end)

  it("callback mode: cb(err, results...); luv's new_work/queue_work", function()
    local got, after, failed = {}, {}, nil
    run(function()
      coru.work(function(a) return a * 2 end, 21, function(err, v) got = {err, v} end)
      coru.work(function() error("oops", 0) end, function(err) failed = err end)
      local ctx = coru.new_work(function(a, b) return a .. b end, function(r) after[#after + 1] = r end)
      assert.is_true(coru.queue_work(ctx, "x", "y"))
      assert.is_true(ctx:queue("p", "q"))
      wait_until(function() return #after == 2 and failed and got[2] end)
    end)
    assert.same({nil, 42}, {got[1], got[2]})
    assert.equal("oops", failed)
    table.sort(after)
    assert.same({"pq", "xy"}, after)
  end)

  it("leaves no registry reference behind", function()
    run(function()
      coru.work(function() return 1 end)   -- warm up
      local before = helper.registry_refs()
      local n = 0
      coru.work(function() return 1 end, function() n = n + 1 end)
      coru.work(function() error("x") end, function() n = n + 1 end)
      pcall(coru.work, function() error("y") end)
      local t = coru.spawn(coru.work, function() return 2 end)
      t:cancel()
      pcall(t.await, t)
      helper.wait_until(function() return n == 2 end)
      helper.settle(function() return helper.registry_refs() <= before end)
      local after = helper.registry_refs()
      assert.is_true(after <= before, ("registry references grew from %d to %d"):format(before, after))
    end)
  end)

  it("cancelling a task waiting on work discards the late result", function()
    local started_r, started_w = new_pipe()
    local release_r, release_w = new_pipe()
    local finished_r, finished_w = new_pipe()
    run(function()
      local done = false
      local t = coru.spawn(function()
        coru.work(blocker, started_w, release_r, 1, finished_w)
        done = true
      end)
      wait_until(function() return pending_bytes(started_r) >= 1 end, 5000, "the function to start")
      t:cancel()                             -- while it runs in the pool
      assert.is_false(pcall(t.await, t))
      ffi.C.write(release_w, "r", 1)         -- now it returns: the late result
      wait_until(function() return pending_bytes(finished_r) >= 1 end, 5000, "the function to end")
      -- its completion reaches the loop in a moment: two more round trips
      -- through the pool give it the time, then it must have been dropped
      assert.equal(1, coru.work(function() return 1 end))
      assert.equal(1, coru.work(function() return 1 end))
      assert.is_false(done)
      assert.equal("cancelled", t:status())
    end)
    for _, fd in ipairs{started_r, started_w, release_r, release_w, finished_r, finished_w} do ffi.C.close(fd) end
  end)
end)

describe("async", function()
  it("send wakes the loop with the values of the last send", function()
    run(function()
      local got = {}
      local a
      a = coru.new_async(function(...) got[#got + 1] = {...} a:close() end)
      a:send("x", 1, {k = true})
      wait_until(function() return #got > 0 end)
      assert.same({{"x", 1, {k = true}}}, got)
    end)
  end)
end)

describe("async from another thread", function()
  it("a coru.work function wakes the loop through uv_async_send (FFI)", function()
    run(function()
      local n = 0
      local a = coru.new_async(function() n = n + 1 end)
      local r = coru.work(function(addr)
        local ffi = require "ffi"
        pcall(ffi.cdef, "int uv_async_send(void *async);")
        local h = ffi.cast("void *", addr)
        -- the host exports libuv's symbols; plain LuaJIT loaded it privately
        local ok, uv = pcall(function() return ffi.C.uv_async_send and ffi.C end)
        if not ok then uv = ffi.load("libuv.so.1") end
        local rc = uv.uv_async_send(h)
        return rc
      end, a:address())
      assert.equal(0, r)
      assert.is_true(wait_until(function() return n >= 1 end))
      a:close()
    end)
  end)
end)

describe("poll", function()
  it("reports fd readiness", function()
    local fds = ffi.new("int[2]")
    assert.equal(0, ffi.C.pipe(fds))
    run(function()
      local p = coru.new_poll(fds[0])
      local seen
      p:start("r", function(err, events) seen = {err, events} p:stop() end)
      coru.pass() coru.pass()   -- poll phases went by: nothing to read yet
      assert.is_nil(seen)
      ffi.C.write(fds[1], "x", 1)
      wait_until(function() return seen end)
      assert.same({nil, "r"}, {seen[1], seen[2]})
      assert.has_error(function() p:start("rz", function() end) end,
        "bad argument #2 to 'poll_start' (invalid events 'rz': use r, w, d, p)")
      p:close()
    end)
    ffi.C.close(fds[0])
    ffi.C.close(fds[1])
  end)
end)

describe("coru.poll.wait", function()
  it("suspends until the descriptor is ready; cancellation stops the handle", function()
    local fds = ffi.new("int[2]")
    assert.equal(0, ffi.C.pipe(fds))
    run(function()
      local p = coru.new_poll(fds[0])
      local t = coru.spawn(coru.poll.wait, p, "r")
      coru.pass() coru.pass()   -- poll phases went by: nothing to read yet
      assert.equal("suspended", t:status())
      ffi.C.write(fds[1], "x", 1)
      assert.equal("r", t:await())
      assert.is_false(p:is_active())
      local w = coru.new_poll(fds[1])
      assert.equal("w", coru.poll.wait(w, "w"))
      local t2 = coru.spawn(coru.poll.wait, w, "d")   -- never comes
      t2:cancel()
      assert.is_false(pcall(t2.await, t2))
      assert.is_false(w:is_active())
      p:close() w:close()
    end)
    ffi.C.close(fds[0])
    ffi.C.close(fds[1])
  end)
end)

describe("closed handles", function()
  it("raise \"handle is closed\" instead of crashing", function()
    local fds = ffi.new("int[2]")
    assert.equal(0, ffi.C.pipe(fds))
    local cases = {
      {coru.new_fs_event(), function(h) h:start("/tmp", {}, function() end) end, "coru.fs_event"},
      {coru.new_fs_poll(), function(h) h:start("/tmp", 100, function() end) end, "coru.fs_poll"},
      {coru.new_signal(), function(h) h:start("sigusr1", function() end) end, "coru.signal"},
      {coru.new_async(function() end), function(h) h:send(1) end, "coru.async"},
      {coru.new_poll(fds[0]), function(h) h:start("r", function() end) end, "coru.poll"},
    }
    for _, c in ipairs(cases) do
      c[1]:close()
      assert.has_error(function() c[2](c[1]) end, c[3] .. ": handle is closed")
    end
    ffi.C.close(fds[0])
    ffi.C.close(fds[1])
    run(function()
      local h = coru.spawn_process("true", {stdio = {}}, function() end)
      helper.wait_until(function() return not h:is_active() end)
      h:close()
      assert.has_error(function() h:kill() end, "coru.process: handle is closed")
    end)
  end)
end)
