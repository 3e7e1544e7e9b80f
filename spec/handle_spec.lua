local coru = require "coru"
local H = require "helper"
local run = H.run

describe("timers", function()
  it("start, repeat, stop, again, get_repeat, get_due_in", function()
    run(function()
      local t = coru.new_timer()
      local n = 0
      local done = coru.channel(1)
      t:start(1, 2, function() n = n + 1; if n == 3 then t:stop(); done:send(true) end end)
      assert.is_true(t:is_active())
      assert.equal(2, t:get_repeat())
      done:recv()
      coru.sleep(10)
      assert.equal(3, n)
      assert.is_false(t:is_active())
      t:start(50, 0, function() n = n + 10 end)
      assert.is_true(t:get_due_in() <= 50)
      t:set_repeat(1)
      t:again()            -- restarts with the repeat as timeout
      H.wait_until(function() return n > 3 end, 5000, "the timer started again")
      assert.is_true(n > 3)
      t:stop()
      t:close()
    end)
  end)

  it("10,000 started timers with no Lua reference still fire", function()
    run(function()
      local base = H.live_handles()   -- what earlier specs of this process left
      local fired = 0
      for i = 1, 10000 do
        coru.new_timer():start(i % 10, 0, function() fired = fired + 1 end)
      end
      collectgarbage("collect")
      collectgarbage("collect")
      H.wait_until(function() return fired == 10000 end, 10000, "10,000 timers")
      assert.equal(10000, fired)
      -- once done, the inactive timers are collected and closed
      H.settle(function() return H.live_handles() <= base end)
      assert.equal(base, H.live_handles())
    end)
  end)

  it("a one-shot timer may be started again from its callback", function()
    run(function()
      local t = coru.new_timer()
      local n = 0
      local done = coru.channel(1)
      local function cb() n = n + 1; if n < 3 then t:start(1, 0, cb) else done:send(true) end end
      t:start(1, 0, cb)
      done:recv()
      assert.equal(3, n)
      t:close()
    end)
  end)

  it("luv-style flat functions work too", function()
    run(function()
      local t = coru.new_timer()
      local hit = false
      coru.timer_start(t, 1, 0, function() hit = true end)
      H.wait_until(function() return hit end, 5000, "the timer")
      assert.is_true(hit)
      coru.close(t)
    end)
  end)

  it("rejects bad arguments naming the function", function()
    local t = coru.new_timer()
    assert.has_error(function() t:start(-1, 0, function() end) end,
      "bad argument #1 to 'start' (must be >= 0 (milliseconds))")
    assert.has_error(function() t:start(1, 0, 42) end, "bad argument #3 to 'start' (function expected, got number)")
    assert.has_error(function() t:start("soon", 0, function() end) end,
      "bad argument #1 to 'start' (number expected, got string)")
    assert.has_error(function() coru.timer_start({}, 1, 0, function() end) end,
      "bad argument #1 to 'timer_start' (coru.timer expected, got table)")
    t:close()
  end)
end)

describe("handles", function()
  it("use after close raises 'handle is closed'", function()
    run(function()
      local t = coru.new_timer()
      local ch = coru.channel(1)
      t:close(function() ch:send(true) end)
      local ok, err = pcall(t.start, t, 1, 0, function() end)
      assert.is_false(ok)
      assert.matches("handle is closed", err)
      assert.is_true(t:is_closing())
      t:close()   -- closing twice is harmless
      ch:recv()
      assert.matches("closed", tostring(t))
      assert.has_error(function() t:stop() end, "coru.timer: handle is closed")
    end)
  end)

  it("a method refuses a handle of another family, whatever was checked last", function()
    -- the type check remembers the last handle metatable it found
    run(function()
      local t, p = coru.new_timer(), coru.new_pipe()
      for _ = 1, 3 do
        assert.equal(0, t:stop())
        local ok, err = pcall(p.read_start, t, function() end)
        assert.is_false(ok)
        assert.matches("bad argument #1 to '[^']+' %(coru%.stream expected, got userdata%)", err)
        ok, err = pcall(t.start, p, 1, 0, function() end)
        assert.is_false(ok)
        assert.matches("bad argument #1 to '[^']+' %(coru%.timer expected, got userdata%)", err)
        assert.is_false(p:is_active())
      end
      t:close(); p:close()
    end)
  end)

  it("close calls its callback once the handle is closed", function()
    run(function()
      local t = coru.new_timer()
      local called = 0
      t:close(function() called = called + 1 end)
      coru.pass()   -- close callbacks run at the end of an iteration
      coru.pass()
      assert.equal(1, called)
    end)
  end)

  it("an inactive unreachable handle is collected and closed", function()
    run(function()
      local base = H.live_handles()
      for _ = 1, 100 do coru.new_timer() end
      coru.pass()
      assert.equal(base, H.live_handles())
    end)
  end)

  it("ref/unref/has_ref, get_type, tostring", function()
    local t = coru.new_timer()
    assert.is_true(t:has_ref())
    t:unref()
    assert.is_false(t:has_ref())
    t:ref()
    assert.equal("timer", (t:get_type()))
    assert.matches("^coru.timer: ", tostring(t))
    t:close()
  end)

  it("idle, prepare and check call back each iteration until stopped", function()
    run(function()
      for _, ctor in ipairs({coru.new_idle, coru.new_prepare, coru.new_check}) do
        local h = ctor()
        local n = 0
        h:start(function() n = n + 1; if n == 3 then h:stop() end end)
        for _ = 1, 6 do coru.pass() end
        assert.equal(3, n)
        assert.is_false(h:is_active())
        h:close()
      end
    end)
  end)

  it("walk lists the live handles", function()
    run(function()
      local t = coru.new_timer()
      local seen = false
      coru.walk(function(h) if h == t then seen = true end end)
      assert.is_true(seen)
      t:close()
    end)
  end)
end)
