-- Regression specs named after the bug they pin.
local coru = require "coru"
local H = require "helper"

describe("regress: closing a stream read with read_start", function()
  it("tells the luv-style reader 'closed' instead of dropping it silently", function()
    H.run(function()
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn) conn:read() end))
      local c = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
      local got = coru.channel(1)
      c:read_start(function(err, data) got:send({err, data}) end)
      c:close()
      local r = coru.timeout(3000, function() return got:recv() end)
      assert.is_table(r, "the read callback was never called")
      assert.equal("closed", r[1])
      srv:close()
    end)
  end)

  it("wakes a task reading a TLS stream when its lower stream is closed", function()
    local TH = require "tls_helper"
    local certs = TH.certs()
    H.run(function()
      local sopts = {server = true, cert = certs.server.cert, key = certs.server.key}
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(raw)
        local s = coru.tls.wrap(raw, sopts)
        if s then s:read() end
      end))
      local raw = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
      local s = assert(coru.tls.wrap(raw, {host = "localhost", ca = certs.ca_file}))
      s:settimeout(10000)
      local reader = coru.spawn(function() return s:read() end)
      raw:close()                              -- the transport, not the TLS stream
      local data, err, name = coru.timeout(3000, function() return reader:await() end)
      -- woken at once (not by the 3 s timeout) with "closed", as any stream
      -- closed under its reader (spec/closed_read_spec.lua)
      assert.same({nil, "closed"}, {data, err, name})
      s:close()
      srv:close()
    end)
    TH.cleanup()
  end)
end)

describe("regress: a task that cancels itself and ends without suspending", function()
  it("releases the cancel reason (no registry reference left)", function()
    H.run(function()
      local function churn()
        for _ = 1, 200 do
          local t = coru.spawn(function() coru.current():cancel("self"); return 1 end)
          assert.equal("done", t:status())
        end
      end
      churn()
      local before = H.registry_refs()
      churn()
      assert.is_true(H.registry_refs() - before <= 2, "cancel reasons leaked")
    end)
  end)
end)

describe("regress: timeout/all/any where the task cannot suspend", function()
  it("refuse before spawning or arming anything", function()
    H.run(function()
      local before = H.registry_refs()
      local started = 0
      for _ = 1, 50 do
        local ok, err = pcall(table.sort, {2, 1}, function(a, b)
          coru.timeout(10, function() started = started + 1; coru.sleep(1000) end)
          return a < b
        end)
        assert.is_false(ok)
        assert.matches("cannot suspend here", err)
        local pending = coru.spawn(function() coru.sleep(1000) end)
        local ok2, err2 = pcall(table.sort, {2, 1}, function(a, b) coru.all({pending}); return a < b end)
        assert.is_false(ok2)
        assert.matches("cannot suspend here", err2)
        pending:cancel()
      end
      assert.equal(0, started)
      assert.is_true(H.registry_refs() - before <= 2)
    end)
  end)
end)
