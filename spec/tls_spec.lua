local coru = require "coru"
local H = require "tls_helper"
local tls = coru.tls

local function server_opts(c, extra)
  local o = {server = true, cert = c.server.cert, key = c.server.key}
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- Run a TLS server over one end of a memory pipe and a client over the
-- other; returns what client_fn returns. server_fn gets the TLS stream (or
-- nil, err) and returns values kept in `out.server`.
local function pair(sopts, copts, server_fn, client_fn, capacity)
  local a, b = H.pipe(capacity)
  local out = {}
  local srv = coru.spawn(function()
    local s, e, n = tls.wrap(b, sopts)
    out.server = {server_fn(s, e, n)}
    if s then s:close() end
  end)
  local s, e, n = tls.wrap(a, copts)
  out.client = {client_fn(s, e, n)}
  if s then s:close() end
  srv:await()
  return out
end

describe("coru.tls", function()
  local c
  setup(function() c = H.certs() end)
  teardown(function() H.cleanup() end)

  describe("context", function()
    it("loads files and PEM strings", function()
      assert.truthy(tls.context{ca = c.ca_file})
      assert.truthy(tls.context{ca = H.read_file(c.ca_file)})
      assert.truthy(tls.context{server = true, cert = H.read_file(c.server.cert), key = H.read_file(c.server.key)})
      assert.truthy(tls.context{server = true, cert = c.server.cert, key = c.server_enc_key, passphrase = "sesame"})
      assert.truthy(tls.context{alpn = {"h2", "http/1.1"}, min_version = "1.3", ciphers = "HIGH"})
    end)

    it("fails with a message naming the cause", function()
      local ctx, err, name = tls.context{ca = "/nonexistent/ca.pem"}
      assert.is_nil(ctx)
      assert.matches("cannot load ca", err)
      assert.equal("ETLS", name)
      ctx, err = tls.context{server = true, cert = c.server.cert, key = c.server_enc_key, passphrase = "wrong"}
      assert.is_nil(ctx)
      assert.matches("cannot load key", err)
      ctx, err = tls.context{server = true, cert = c.server.cert, key = c.other.key}
      assert.is_nil(ctx)
      assert.matches("mismatch", err)
      ctx, err = tls.context{ciphers = "NO-SUCH-CIPHER"}
      assert.is_nil(ctx)
      assert.matches("ciphers", err)
    end)

    it("raises on programming errors", function()
      assert.has_error(function() tls.context(5) end)
      assert.has_error(function() tls.context{verify = "yes"} end)
      assert.has_error(function() tls.context{min_version = "9.9"} end)
      assert.has_error(function() tls.context{server = true} end)
      assert.has_error(function() tls.context{alpn = "h2"} end)
    end)

    it("needs a task or a callback", function()
      if coru.current() then return end   -- the host runs specs inside a task
      local a = H.pipe()
      assert.has_error(function() tls.wrap(a, {}) end, "coru.tls.wrap: needs a running task or a callback")
    end)
  end)

  describe("coru to coru", function()
    it("handshakes, verifies and exchanges lines", function()
      coru.run(function()
        local out = pair(server_opts(c, {alpn = {"x-coru", "http/1.1"}}),
          {host = "localhost", ca = c.ca_file, alpn = {"x-coru"}},
          function(s, e)
            assert(s, e)
            local l = s:read_line()
            s:write("echo:" .. l .. "\n")
            return l, s:alpn(), s:read()
          end,
          function(s, e)
            assert(s, e)
            assert.truthy(s:write("hello\n"))
            local r = s:read_line()
            local cert = s:peer_certificate()
            local v, ci, al = s:version(), s:cipher(), s:alpn()
            assert.truthy(s:shutdown())
            return r, cert, v, ci, al
          end)
        local r, cert, v, ci, al = unpack(out.client)
        assert.equal("echo:hello", r)
        assert.equal("CN=localhost", cert.subject)
        assert.equal("CN=coru-test-ca", cert.issuer)
        assert.matches("^%x%x:", cert.fingerprint_sha256)
        assert.is_number(cert.valid_to)
        assert.same({"DNS:localhost", "IP:127.0.0.1"}, cert.subject_alt_names)
        assert.equal("TLSv1.3", v)
        assert.is_string(ci)
        assert.equal("x-coru", al)
        assert.same({"hello", "x-coru", nil}, out.server)
      end)
    end)

    it("accepts the server's PEM strings, an encrypted key, and a reused context", function()
      coru.run(function()
        local ctx = assert(tls.context{server = true, cert = H.read_file(c.server.cert),
                                       key = c.server_enc_key, passphrase = "sesame"})
        for _ = 1, 3 do
          local out = pair({server = true, context = ctx}, {host = "127.0.0.1", ca = H.read_file(c.ca_file)},
            function(s, e) assert(s, e) s:write("hi\n") return true end,
            function(s, e) assert(s, e) return s:read_line() end)
          assert.equal("hi", out.client[1])
        end
      end)
    end)

    it("does mutual TLS when the server verifies", function()
      coru.run(function()
        local out = pair(server_opts(c, {verify = true, ca = c.ca_file}),
          {host = "localhost", ca = c.ca_file, cert = c.client.cert, key = c.client.key},
          function(s, e) assert(s, e) s:write("ok\n") return s:peer_certificate().subject end,
          function(s, e) assert(s, e) return s:read_line() end)
        assert.equal("ok", out.client[1])
        assert.equal("CN=coru-client", out.server[1])
        -- and without a client certificate the handshake fails on one side
        out = pair(server_opts(c, {verify = true, ca = c.ca_file}), {host = "localhost", ca = c.ca_file},
          function(s, e, n) return s, e, n end,
          function(s, e, n)
            if s then return s:read() end
            return s, e, n
          end)
        assert.is_nil(out.server[1])
        assert.matches("certificate", out.server[2])
        assert.is_nil(out.client[1])
      end)
    end)

    local function verify_failure(cert, copts, pattern)
      coru.run(function()
        local out = pair({server = true, cert = cert.cert, key = cert.key}, copts,
          function(s, e, n) return s, e, n end,
          function(s, e, n) return s, e, n end)
        local s, e, n = unpack(out.client)
        assert.is_nil(s)
        assert.matches(pattern, e)
        assert.equal("ECERT", n)
        assert.is_nil(out.server[1])
      end)
    end

    it("refuses an expired certificate", function()
      verify_failure(c.expired, {host = "localhost", ca = c.ca_file}, "certificate verify failed: certificate has expired")
    end)

    it("refuses a self-signed certificate without ca", function()
      verify_failure(c.self, {host = "localhost"}, "certificate verify failed: self%-signed certificate")
    end)

    it("refuses a host name mismatch", function()
      verify_failure(c.other, {host = "localhost", ca = c.ca_file}, "certificate verify failed: hostname mismatch")
    end)

    it("refuses a certificate from an unknown CA by default (system store)", function()
      verify_failure(c.server, {host = "localhost"}, "certificate verify failed: unable to get local issuer")
    end)

    it("accepts anything with verify = false spelled out", function()
      coru.run(function()
        local out = pair({server = true, cert = c.other.cert, key = c.other.key}, {host = "localhost", verify = false},
          function(s, e) assert(s, e) s:write("x\n") return true end,
          function(s, e) assert(s, e) return s:read_line(), s:peer_certificate().verified end)
        assert.equal("x", out.client[1])
        assert.is_false(out.client[2])
      end)
    end)

    it("reports a truncated stream (no close_notify), not a clean end", function()
      coru.run(function()
        local a, b = H.pipe()
        local srv = coru.spawn(function()
          local s = assert(tls.wrap(b, server_opts(c)))
          s:write("partial line without end")
          coru.sleep(5)
          b:close()            -- the transport goes, no close_notify
        end)
        local s = assert(tls.wrap(a, {host = "localhost", ca = c.ca_file}))
        local l, e, partial = s:read_line()
        assert.is_nil(l)
        assert.equal("ETRUNCATED", select(3, s:read()))
        assert.matches("truncated", e)
        assert.equal("partial line without end", partial)
        s:close()
        srv:await()
      end)
    end)

    it("tells a clean end (close_notify) from a truncation", function()
      coru.run(function()
        local out = pair(server_opts(c), {host = "localhost", ca = c.ca_file},
          function(s) s:write("all\n") s:shutdown() return true end,
          function(s)
            local l = s:read_line()
            return l, s:read(), s:read_line()
          end)
        assert.same({"all", nil, nil}, {out.client[1], out.client[2], out.client[3]})
      end)
    end)

    it("fails cleanly on garbage records", function()
      coru.run(function()
        local a, b = H.pipe()
        local srv = coru.spawn(function()
          local s = assert(tls.wrap(b, server_opts(c)))
          return s:read()
        end)
        local s = assert(tls.wrap(a, {host = "localhost", ca = c.ca_file}))
        -- bypass the engine: a record header of type application data with junk
        a:write("\23\3\3\0\32" .. string.rep("\xAB", 32))
        local d, e, n = srv:await()
        assert.is_nil(d)
        assert.equal("ETLS", n)
        assert.matches("ETLS: read failed", e)
        s:close()
      end)
    end)

    it("fails cleanly when the peer speaks plain text to a TLS server", function()
      coru.run(function()
        local a, b = H.pipe()
        local srv = coru.spawn(function() return tls.wrap(b, server_opts(c)) end)
        a:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        local s, e, n = srv:await()
        assert.is_nil(s)
        assert.equal("ETLS", n)
        assert.matches("handshake failed", e)
        a:close()
      end)
    end)

    it("fails cleanly when the peer resets during the handshake", function()
      coru.run(function()
        local a, b = H.pipe()
        local srv = coru.spawn(function() return tls.wrap(b, server_opts(c)) end)
        coru.spawn(function()
          a:read()   -- the ClientHello? no: we are the client side; wait for nothing
        end)
        local cl = coru.spawn(function() return tls.wrap(a, {host = "localhost", ca = c.ca_file}) end)
        coru.sleep(1)
        b:reset()
        local s, e, n = cl:await()
        assert.is_nil(s)
        assert.is_string(e)
        assert.truthy(n)
        assert.is_nil((srv:await()))
      end)
    end)

    it("times out a handshake that never completes", function()
      coru.run(function()
        local a, b = H.pipe()
        local t0 = coru.now()
        local s, e, n = tls.wrap(a, {host = "localhost", ca = c.ca_file, handshake_timeout = 50})
        assert.is_nil(s)
        assert.equal("timeout", n)
        assert.matches("handshake timed out", e)
        assert.truthy(coru.now() - t0 >= 40)
        b:close()
      end)
    end)

    it("times out a read and stays usable", function()
      coru.run(function()
        local out = pair(server_opts(c), {host = "localhost", ca = c.ca_file},
          function(s) coru.sleep(60) s:write("late\n") s:read() return true end,
          function(s)
            s:settimeouts(nil, nil, 20)
            local l, e = s:read_line()
            s:settimeouts(nil, nil, 0)
            local l2 = s:read_line()
            return l, e, l2
          end)
        assert.same({nil, "timeout", "late"}, {out.client[1], out.client[2], out.client[3]})
      end)
    end)

    it("limits line length", function()
      coru.run(function()
        local out = pair(server_opts(c), {host = "localhost", ca = c.ca_file},
          function(s) s:write(string.rep("x", 5000)) s:read() return true end,
          function(s)
            s:set_max_line(1000)
            local l, e, part = s:read_line()
            return l, e, #part
          end)
        assert.is_nil(out.client[1])
        assert.equal("line too long", out.client[2])
        assert.truthy(out.client[3] > 1000)
      end)
    end)

    it("gives a second reader busy and wakes a reader on close", function()
      coru.run(function()
        local out = pair(server_opts(c), {host = "localhost", ca = c.ca_file},
          function(s) s:read() return true end,
          function(s)
            local r1 = coru.spawn(function() return s:read() end)
            local d, e = s:read()
            s:close()
            local d1, e1 = r1:await()
            return d, e, d1, e1
          end)
        assert.same({nil, "busy", nil, "closed"}, {out.client[1], out.client[2], out.client[3], out.client[4]})
      end)
    end)

    it("has read_bytes, read_until, read_all and luv-style read_start/write(cb)", function()
      coru.run(function()
        local out = pair(server_opts(c), {host = "localhost", ca = c.ca_file},
          function(s)
            local got = {}
            local done = coru.channel()
            s:read_start(function(err, data)
              if data then got[#got + 1] = data else done:send(err or "eof") end
            end)
            local why = done:recv()
            return table.concat(got), why
          end,
          function(s)
            local w = coru.channel()
            s:write("abc", function(err) w:send(err or "ok") end)
            local r = w:recv()
            s:write({"d", "e", "f\n"})
            s:shutdown()
            return r
          end)
        assert.equal("ok", out.client[1])
        assert.same({"abcdef\n", "eof"}, out.server)
        out = pair(server_opts(c), {host = "localhost", ca = c.ca_file},
          function(s) s:write("12345--END--rest of it") s:shutdown() return true end,
          function(s) return s:read_bytes(5), s:read_until("--END--"), s:read_all() end)
        assert.same({"12345", "", "rest of it"}, out.client)
      end)
    end)

    local function big(n)
      local parts, x = {}, 1
      for i = 1, n / 1024 do
        x = (x * 1103515245 + 12345) % 2147483648
        parts[i] = string.rep(string.char(x % 256), 1000) .. string.format("%024d", x)
      end
      return table.concat(parts)
    end

    it("transfers tens of MiB both ways with a checksum", function()
      coru.run(function()
        local up, down = big(24 * 1024 * 1024), big(20 * 1024 * 1024)
        local out = pair(server_opts(c), {host = "localhost", ca = c.ca_file},
          function(s)
            local w = coru.spawn(function() assert(s:write(down)) s:shutdown() end)
            local data = s:read_all()
            w:await()
            return H.md5(data), #data
          end,
          function(s)
            local w = coru.spawn(function() assert(s:write(up)) s:shutdown() end)
            local data = s:read_all()
            w:await()
            return H.md5(data), #data
          end, 16)
        assert.equal(#up, out.server[2])
        assert.equal(H.md5(up), out.server[1])
        assert.equal(#down, out.client[2])
        assert.equal(H.md5(down), out.client[1])
      end)
    end)

    it("runs many connections at once", function()
      coru.run(function()
        local ctx = assert(tls.context(server_opts(c)))
        local cctx = assert(tls.context{ca = c.ca_file})
        local tasks = {}
        for i = 1, 100 do
          tasks[i] = coru.spawn(function()
            local out = pair({server = true, context = ctx}, {host = "localhost", context = cctx},
              function(s) local l = s:read_line() s:write(l .. "!\n") return true end,
              function(s) s:write("n" .. i .. "\n") return s:read_line() end)
            return out.client[1]
          end)
        end
        local res = coru.all(tasks)
        for i = 1, 100 do assert.equal("n" .. i .. "!", res[i][1]) end
      end)
    end)

    it("is cancellable in the middle of a read without leaking", function()
      coru.run(function()
        local out = pair(server_opts(c), {host = "localhost", ca = c.ca_file},
          function(s) s:read() return true end,
          function(s)
            local t = coru.spawn(function() return s:read() end)
            coru.sleep(1)
            t:cancel("enough")
            local ok, err = pcall(t.await, t)
            return ok, coru.is_cancelled(err)
          end)
        assert.same({false, true}, out.client)
      end)
      collectgarbage()
    end)
  end)
end)
