-- the thread pool (coru.work, new_work/queue_work), async and poll handles.
local coru = require "coru"
local helper = require "helper"
local ffi = require "ffi"

pcall(ffi.cdef, [[
int pipe(int fds[2]);
long write(int fd, const void *buf, unsigned long n);
int close(int fd);
]])

local run, wait_until = helper.run, helper.wait_until

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
    run(function()
      local tasks = {}
      local t0 = coru.hrtime()
      for i = 1, 4 do
        tasks[i] = coru.spawn(coru.work, function(n)
          local t = os.clock()
          while os.clock() - t < 0.2 do end   -- busy 200 ms of CPU
          return n * 2
        end, i)
      end
      local ticks = 0
      local ticker = coru.spawn(function()
        for _ = 1, 5 do coru.sleep(10) ticks = ticks + 1 end
      end)
      local res = coru.all(tasks)
      ticker:await()
      assert.same({2, 4, 6, 8}, {res[1][1], res[2][1], res[3][1], res[4][1]})
      assert.equal(5, ticks)
      assert.is_true((coru.hrtime() - t0) / 1e6 < 4 * 200 + 300, "not serialized on one thread")
    end)
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
        "coru.work: argument #2: a thread value cannot cross Lua states (only nil, booleans, numbers, strings and plain tables)")
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
      coru.sleep(50)
      assert.is_true(helper.registry_refs() <= before)
    end)
  end)

  it("cancelling a task waiting on work discards the late result", function()
    run(function()
      local done = false
      local t = coru.spawn(function()
        coru.work(function() local t = os.clock() while os.clock() - t < 0.1 do end return 1 end)
        done = true
      end)
      t:cancel()
      assert.is_false(pcall(t.await, t))
      coru.sleep(200)
      assert.is_false(done)
    end)
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
      coru.sleep(20)
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
      coru.sleep(10)
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
