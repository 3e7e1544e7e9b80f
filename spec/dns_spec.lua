local coru = require "coru"
local helper = require "helper"

describe("dns", function()
  it("resolves localhost", function()
    coru.run(function()
      local res = assert(coru.getaddrinfo("localhost", 80, { socktype = "stream" }))
      assert.is_true(#res >= 1)
      local seen = {}
      for _, a in ipairs(res) do
        seen[a.addr] = a.family
        assert.equal(80, a.port)
        assert.equal("stream", a.socktype)
      end
      assert.is_true(seen["127.0.0.1"] == "inet" or seen["::1"] == "inet6")
      local v4 = assert(coru.getaddrinfo("localhost", nil, { family = "inet" }))
      for _, a in ipairs(v4) do assert.equal("inet", a.family) end
    end)
  end)

  it("fails for an unknown host", function()
    coru.run(function()
      local res, err, name = coru.getaddrinfo("no-such-host.invalid")
      assert.is_nil(res)
      assert.matches("^EAI_", name)
      assert.matches("no%-such%-host%.invalid", err)
    end)
  end)

  it("resolves names back", function()
    coru.run(function()
      local host, service = coru.getnameinfo({ ip = "127.0.0.1", port = 80 })
      -- the system's resolver (NSS: /etc/hosts, /etc/services) says the same
      local hosts = coru.process.exec("getent", {"hosts", "127.0.0.1"})
      assert.equal(hosts:match("^%S+%s+(%S+)"), host)
      local services, _, code = coru.process.exec("getent", {"services", "80/tcp"})
      assert.equal(code == 0 and services:match("^(%S+)") or "80", service)
    end)
  end)

  it("has a callback mode", function()
    coru.run(function()
      local ch = coru.channel(1)
      coru.getaddrinfo("127.0.0.1", "80", { numerichost = true }, function(err, res) ch:send({ err, res }) end)
      local r = ch:recv()
      assert.is_nil(r[1])
      assert.equal("127.0.0.1", r[2][1].addr)
    end)
    assert.has_error(function() helper.outside_task(coru.getaddrinfo, "localhost") end,
      "coru.getaddrinfo: needs a running task or a callback")
  end)
end)
