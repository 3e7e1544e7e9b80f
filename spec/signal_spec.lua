-- signals: luv's signal handles, coru.signal.wait, the host's defaults.
local coru = require "coru"
local helper = require "helper"
local CORU_BIN = os.getenv("CORU_BIN") or "build/coru"

local run, wait_until = helper.run, helper.wait_until

local function live_handles()
  local n = 0
  coru.walk(function() n = n + 1 end)
  return n
end

describe("signal", function()
  it("new_signal, start, stop (luv's shape: cb(signame))", function()
    run(function()
      local s = coru.new_signal()
      local got = {}
      assert.equal(0, s:start("sigusr1", function(name) got[#got + 1] = name end))
      coru.sleep(10)   -- valgrind loses a signal sent to self right after sigaction
      coru.kill(coru.getpid(), "sigusr1")
      wait_until(function() return #got == 1 end)
      coru.kill(coru.getpid(), "SIGUSR1")
      wait_until(function() return #got == 2 end)
      assert.same({"sigusr1", "sigusr1"}, got)
      assert.equal(10, s:getsignum())
      s:stop()
      s:close()
    end)
  end)

  it("start_oneshot fires once", function()
    run(function()
      local s = coru.new_signal()
      local n = 0
      s:start_oneshot(12, function() n = n + 1 end)
      coru.sleep(10)
      coru.kill(coru.getpid(), 12)
      wait_until(function() return n == 1 end)
      assert.is_false(s:is_active())
      -- a second signal reaches a second handle, not the one-shot
      local other, m = coru.new_signal(), 0
      other:start(12, function() m = m + 1 end)
      coru.kill(coru.getpid(), 12)
      wait_until(function() return m == 1 end, 5000, "the second handle")
      assert.equal(1, n)
      other:close()
      s:close()
    end)
  end)

  it("coru.signal.wait inside a task", function()
    run(function()
      local t = coru.spawn(coru.signal.wait, "sigusr2")
      coru.sleep(10)
      coru.kill(coru.getpid(), "usr2")
      assert.equal("sigusr2", t:await())
    end)
  end)

  it("a cancelled wait leaves no handle behind", function()
    run(function()
      local before = live_handles()
      local t = coru.spawn(coru.signal.wait, "sighup")
      assert.equal(before + 1, live_handles())
      t:cancel()
      assert.is_false(pcall(t.await, t))
      helper.settle(function() return live_handles() <= before end)   -- the close ends on a later turn
      assert.equal(before, live_handles())
    end)
  end)

  it("invalid signals are argument errors", function()
    local s = coru.new_signal()
    assert.has_error(function() s:start("sigfoo", function() end) end,
      "bad argument #2 to 'signal_start' (invalid signal sigfoo)")
    assert.has_error(function() coru.kill(coru.getpid(), "nope") end, "bad argument #2 to 'kill' (invalid signal nope)")
    s:close()
    assert.has_error(function() s:start("sigint", function() end) end, "coru.signal: handle is closed")
  end)

  it("wait needs a task", function()
    assert.has_error(function() helper.outside_task(coru.signal.wait, "sigint") end, "signal.wait: needs a running task")
  end)

  describe("the host", function()
    it("exits 130 on SIGINT and 143 on SIGTERM when nothing handles them", function()
      run(function()
        local script = "local t = coru.new_timer() t:start(5000, 0, function() end) " ..
                       "coru.kill(coru.getpid(), %q)"
        local _, _, code = coru.process.exec(CORU_BIN, {"-e", script:format("sigint")})
        assert.equal(130, code)
        local _, _, code2 = coru.process.exec(CORU_BIN, {"-e", script:format("sigterm")})
        assert.equal(143, code2)
      end)
    end)

    it("leaves the signal to the script when it watches it", function()
      run(function()
        local out, _, code = coru.process.exec(CORU_BIN, {"-e",
          "local t = coru.spawn(coru.signal.wait, 'sigint') coru.kill(coru.getpid(), 'sigint') print(t:await()) " ..
          "local s = coru.new_signal() s:start('sigterm', function(x) print('handled', x) s:close() end) " ..
          "coru.kill(coru.getpid(), 'sigterm') coru.sleep(50) print('alive')"}, {timeout = 5000})
        assert.equal("sigint\nhandled\tsigterm\nalive\n", out)
        assert.equal(0, code)
      end)
    end)
  end)
end)
