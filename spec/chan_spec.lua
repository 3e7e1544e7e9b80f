-- Channels: the transfer rules the waiting and the try_ forms share, the
-- closed rule, and coru.select's order among ready cases (docs/api.md).
local coru = require "coru"
local H = require "helper"

describe("coru.channel", function()
  it("recv on a closed channel: buffered values first, then nil, \"closed\" every time", function()
    H.run(function()
      local ch = coru.channel(2)
      ch:send("a") ch:send(false)
      ch:close()
      assert.same({"a"}, {ch:recv()})
      assert.same({false}, {ch:recv()})        -- a false value is a value
      assert.same({nil, "closed"}, {ch:recv()})
      assert.same({nil, "closed"}, {ch:recv()})
      assert.same({nil, "closed"}, {ch:try_recv()})
      assert.same({nil, "closed"}, {ch:send(1)})
      assert.same({nil, "closed"}, {ch:try_send(1)})
    end)
  end)

  it("a nil sent is received as nil with no second value; only \"closed\" says closed", function()
    H.run(function()
      local ch = coru.channel(1)
      ch:send(nil)
      local v, err = ch:recv()
      assert.is_nil(v)
      assert.is_nil(err)
      assert.equal(1, select("#", ch:try_send(nil)) )
      assert.same({true, nil}, {ch:try_recv()})
    end)
  end)

  it("recv takes the buffer's first value and a waiting sender's fills the room, in order", function()
    H.run(function()
      local ch = coru.channel(1)
      ch:send(1)
      local s2 = coru.spawn(function() return ch:send(2) end)
      local s3 = coru.spawn(function() return ch:send(3) end)
      assert.equal("suspended", s2:status())
      assert.same({true, 1}, {ch:try_recv()})   -- 2 moves into the buffer, its sender is done
      assert.same({true}, {s2:await()})
      assert.equal(1, ch:len())
      assert.equal(2, ch:recv())
      assert.equal(3, ch:recv())                  -- from s3, waiting, through the buffer
      assert.same({true}, {s3:await()})
      assert.same({false}, {ch:try_recv()})
    end)
  end)

  it("try_send hands a value to a waiting receiver, false when it would wait", function()
    H.run(function()
      local ch = coru.channel()
      assert.same({false}, {ch:try_send("x")})    -- rendezvous, nobody waiting
      local r = coru.spawn(function() return ch:recv() end)
      assert.same({true}, {ch:try_send("y")})
      assert.same({"y"}, {r:await()})
    end)
  end)
end)

describe("coru.select", function()
  it("takes ready cases in the order given, every time (a priority, not a lottery)", function()
    H.run(function()
      local hi, lo = coru.channel(10), coru.channel(10)
      for i = 1, 5 do hi:send("h" .. i) lo:send("l" .. i) end
      local got = {}
      for _ = 1, 10 do
        local i, v = coru.select({{hi, "recv"}, {lo, "recv"}})
        got[#got + 1] = v
        assert.equal(v:sub(1, 1) == "h" and 1 or 2, i)
      end
      assert.same({"h1", "h2", "h3", "h4", "h5", "l1", "l2", "l3", "l4", "l5"}, got)
    end)
  end)

  it("rotating the cases shares a busy channel fairly (the documented idiom)", function()
    H.run(function()
      local a, b = coru.channel(10), coru.channel(10)
      for i = 1, 4 do a:send("a" .. i) b:send("b" .. i) end
      local cases, got = {{a, "recv"}, {b, "recv"}}, {}
      for _ = 1, 4 do
        local _, v = coru.select(cases)
        got[#got + 1] = v
        table.insert(cases, table.remove(cases, 1))
      end
      assert.same({"a1", "b1", "a2", "b2"}, got)
    end)
  end)

  it("when nothing is ready, exactly one case happens: the first to become possible", function()
    H.run(function()
      local a, b = coru.channel(), coru.channel()
      local sel = coru.spawn(function() return coru.select({{a, "recv"}, {b, "recv"}}) end)
      assert.same({true}, {b:try_send("B")})       -- b's case takes it
      assert.same({2, "B"}, {sel:await()})
      assert.same({false}, {a:try_send("A")})       -- a's case gave up: nobody waits on a
    end)
  end)
end)
