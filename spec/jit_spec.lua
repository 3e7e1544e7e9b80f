-- Issue 14: LuaJIT compiles user code across coru's native calls. The
-- wrappers of yielding C functions (boot.lua wrap) take a fixed shape of
-- values from the call so that a trace stitches across it; these specs pin
-- what must not change: the exact values and count each call returns, and
-- errors (cancellation, usage) raised at the user's call site, also once
-- the calling loop is compiled (each case runs in a loop past the JIT's
-- hot-loop threshold).
local coru = require "coru"
local H = require "helper"
local run = H.run

local N = 300   -- iterations: well past jit's hotloop (56), so traces form

local function count(...) return select("#", ...), ... end

local function pair()
  local ch = coru.channel(1)
  local hold = coru.channel()
  local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(s)
    ch:send(s)
    hold:recv()
  end))
  local c = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
  return c, ch:recv(), srv, hold
end

describe("native calls under the JIT (issue 14)", function()
  it("keep the count of what they return: 0, 1, 2, 3 and more values", function()
    run(function()
      for _ = 1, N do
        assert.equal(0, (count(coru.pass())))
        assert.equal(0, (count(coru.sleep(0))))
        local n, a, b, c, d, e = count(coru.spawn(function() coru.pass(); return 1, nil, 3, nil, 5 end):await())
        assert.equal(5, n); assert.equal(1, a); assert.is_nil(b); assert.equal(3, c); assert.is_nil(d); assert.equal(5, e)
        local done = coru.spawn(function() return nil, nil, nil, nil end)
        n = count(done:await())          -- finished: returned at once, not resumed
        assert.equal(4, n)
        assert.equal(0, (count(coru.spawn(function() coru.pass() end):await())))
        n, a, b = count(coru.spawn(function() coru.pass(); return "x", nil end):await())
        assert.equal(2, n); assert.equal("x", a); assert.is_nil(b)
        local ch = coru.channel()
        coru.spawn(function() ch:send(nil) end)
        n, a = count(ch:recv())          -- resumed with one nil
        assert.equal(1, n); assert.is_nil(a)
        ch:close()
        n, a, b = count(ch:send(1))      -- returned at once: nil, "closed"
        assert.equal(2, n); assert.is_nil(a); assert.equal("closed", b)
        n, a, b = count(ch:recv())        -- closed and drained: nil, "closed"
        assert.equal(2, n); assert.is_nil(a); assert.equal("closed", b)
      end
    end)
  end)

  it("keep the counts from inside a coroutine of the user's (the suspension passes through it)", function()
    run(function()
      local gen = coroutine.wrap(function()
        for _ = 1, N do
          local t = coru.spawn(function() coru.pass(); return 1, nil, 3, nil, 5 end)
          coroutine.yield(count(t:await()))
          coroutine.yield(count(coru.pass()))
          local ch = coru.channel()
          coru.spawn(function() ch:send(false) end)
          coroutine.yield(count(ch:recv()))
        end
      end)
      for _ = 1, N do
        local n, a, b, c, d, e = gen()
        assert.equal(5, n); assert.equal(1, a); assert.is_nil(b); assert.equal(3, c); assert.is_nil(d); assert.equal(5, e)
        assert.equal(0, (gen()))
        local m, v = gen()
        assert.equal(1, m); assert.is_false(v)
      end
    end)
  end)

  it("raise a cancellation inside a coroutine of the user's, at the call", function()
    run(function()
      local caught
      local t = coru.spawn(function()
        local gen = coroutine.wrap(function()
          for _ = 1, 10 * N do
            local ok, err = pcall(coru.sleep, 1)
            if not ok then caught = err; return "caught" end
            coroutine.yield("tick")
          end
        end)
        while true do
          local v = gen()
          if v ~= "tick" then return v end
        end
      end)
      coru.sleep(20)
      t:cancel("inner")
      assert.equal("caught", t:await())
      assert.is_true(coru.is_cancelled(caught))
      assert.equal("inner", caught.reason)
    end)
  end)

  it("keep stream results: a line, true, and nil, message[, name] on failure", function()
    run(function()
      local c, s, srv, hold = pair()
      for i = 1, N do
        local n, ok = count(c:write("line " .. i .. "\n"))
        assert.equal(1, n); assert.is_true(ok)
        local m, line = count(s:read_line())
        assert.equal(1, m); assert.equal("line " .. i, line)
      end
      c:write("partial")
      c:close()
      local n, a, b, d = count(s:read_line())   -- EOF: nil, "eof", what was read
      assert.equal(3, n); assert.is_nil(a); assert.equal("eof", b); assert.equal("partial", d)
      hold:close()
      srv:close()
    end)
  end)

  it("keep UDP results: send's true, recv's data and address, nil and a message", function()
    run(function()
      local a, b = coru.new_udp(), coru.new_udp()
      assert(a:bind("127.0.0.1", 0)); assert(b:bind("127.0.0.1", 0))
      local pb = b:getsockname().port
      for i = 1, N do
        local n, ok = count(a:send("d" .. i, "127.0.0.1", pb))
        assert.equal(1, n); assert.is_true(ok)
        local m, data, addr = count(coru.udp_recv(b))
        assert.equal(2, m); assert.equal("d" .. i, data); assert.equal(a:getsockname().port, addr.port)
      end
      b:settimeout(1)
      for _ = 1, 3 do
        local n, v, msg = count(b:recv())
        assert.equal(2, n); assert.is_nil(v); assert.equal("timeout", msg)
      end
      for _ = 1, 3 do
        local n, v, msg, name = count(coru.udp_send(a, "x", "nohost", pb))
        assert.equal(3, n); assert.is_nil(v); assert.equal("EINVAL: invalid argument: nohost", msg); assert.equal("EINVAL", name)
        assert.has_error(function() a:send("x", "127.0.0.1") end, "bad argument #4 to 'send' (number expected, got no value)")
      end
      a:close(); b:close()
    end)
  end)

  it("raise a cancellation at the call site, where pcall catches it", function()
    run(function()
      local caught, rounds = nil, 0
      local t = coru.spawn(function()
        for _ = 1, 10 * N do
          local ok, err = pcall(coru.pass)
          if not ok then caught = err; return "caught" end
          rounds = rounds + 1
        end
      end)
      while rounds < 2 * N do coru.pass() end
      t:cancel("stop")
      assert.equal("caught", t:await())
      assert.is_true(coru.is_cancelled(caught))
      assert.equal("stop", caught.reason)
    end)
  end)

  it("name a missing argument 'no value', as before", function()
    run(function()
      for _ = 1, N do
        local ok, err = pcall(coru.sleep)
        assert.is_false(ok)
        assert.matches("bad argument #1 to 'sleep' %(number expected, got no value%)", err)
      end
    end)
  end)

  it("let a loop around pass() compile into traces stitched across the call", function()
    if not (jit and jit.status()) then
      pending("the JIT is off in this LuaJIT")
      return
    end
    -- In a fresh host process: the JIT's state in this one (traces,
    -- blacklisted loops left by the spec files before) decides nothing.
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
local util = require "jit.util"
local stitched, back_to_loop, returned = 0, 0, 0
local in_wrapper = {}
local function on_trace(what, tr, func, pc)
  if what == "start" then in_wrapper[tr] = util.funcinfo(func, pc).source == "=(coru)" end
  if what ~= "stop" then return end
  local info = util.traceinfo(tr)
  if info.linktype == "stitch" then stitched = stitched + 1 end
  if in_wrapper[tr] then
    if info.linktype == "return" then returned = returned + 1 else back_to_loop = back_to_loop + 1 end
  end
end
jit.attach(on_trace, "trace")
local n = 0
for _ = 1, ]] .. 2 * N .. [[ do coru.pass(); n = n + 1 end
jit.attach(on_trace)
print(("n=%d stitched=%d back=%d returned=%d"):format(n, stitched, back_to_loop, returned))
]])
    f:close()
    local out, status = H.sh(H.qbin .. " " .. H.shq(script) .. " 2>&1")
    os.remove(script)
    assert.equal(0, status, out)
    local n, stitched, back_to_loop, returned =
      out:match("n=(%d+) stitched=(%d+) back=(%d+) returned=(%d+)")
    assert(n, out)
    assert.equal(2 * N, tonumber(n))
    assert.is_true(tonumber(stitched) >= 1, "a trace stitched across pass()")
    assert.is_true(tonumber(back_to_loop) >= 1, "the trace after pass() goes back into the caller's loop")
    assert.equal(0, tonumber(returned))
  end)
end)
