local coru = require "coru"
local H = require "tls_helper"
local tls = coru.tls
local P = coru.process
local helper = require "helper"

local function merge(a, b)
  local o = {}
  for k, v in pairs(a or {}) do o[k] = v end
  for k, v in pairs(b or {}) do o[k] = v end
  return o
end

-- A raw TCP server whose connections are wrapped with sopts; fn(s, e, n)
-- runs per connection and what it returns goes to the channel `results`.
local function serve(sopts, fn)
  local results = coru.channel(1000)
  local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(raw)
    local s, e, n = tls.wrap(raw, sopts)
    results:send({fn(s, e, n)})
    if s and not s:is_closing() then s:close() end
  end))
  return srv:getsockname().port, results, srv
end

local function dial(port, copts)
  local raw = assert(coru.tcp.connect("127.0.0.1", port))
  return tls.wrap(raw, merge({host = "localhost"}, copts))
end

local function big(n)
  local parts, x = {}, 1
  for i = 1, n / 1024 do
    x = (x * 1103515245 + 12345) % 2147483648
    parts[i] = string.rep(string.char(x % 256), 1000) .. string.format("%024d", x)
  end
  return table.concat(parts)
end

describe("coru.tls", function()
  local c, sopts, live0
  setup(function()
    collectgarbage()
    collectgarbage()
    live0 = coru._tls.live()   -- SSL objects of earlier spec files, if any
    c = H.certs()
    sopts = {server = true, cert = c.server.cert, key = c.server.key}
  end)
  teardown(function() H.cleanup() end)

  describe("listen", function()
    it("takes (host, port, handler, opts) as coru.tcp.listen, and the old order with a deprecation note", function()
      coru.run(function()
        local o = {cert = c.server.cert, key = c.server.key}
        local function echo(s) local l = s:read_line() if l then s:write(l .. "!\n") end s:read() end
        local function ask(srv)
          local s = assert(tls.connect("localhost", srv:getsockname().port, {ca = c.ca_file}))
          assert(s:write("hi\n"))
          local l = s:read_line()
          s:close()
          srv:close()
          return l
        end
        assert.equal("hi!", ask(assert(tls.listen("127.0.0.1", 0, echo, o))))
        local notes, stderr = {}, io.stderr
        io.stderr = {write = function(_, m) notes[#notes + 1] = m end}
        local ok, srv = pcall(tls.listen, "127.0.0.1", 0, o, echo)   -- the old order
        io.stderr = stderr
        assert(ok, srv)
        assert.equal("hi!", ask(assert(srv)))
        assert.equal(1, #notes)
        assert.matches("coru.tls.listen: the order %(host, port, opts, handler%) is deprecated", notes[1])
        assert.has_error(function() tls.listen("127.0.0.1", 0, o) end,
          "coru.tls.listen: bad argument #3 (function expected)")
        assert.has_error(function() tls.listen("127.0.0.1", 0, echo, {nope = 1}) end,
          "coru.tls.listen: bad argument #4 (unknown option 'nope')")
      end)
    end)
  end)

  describe("context", function()
    it("loads files and PEM strings", function()
      local function ctx(opts, kind)
        local x, err = tls.context(opts)
        assert(x, err)
        assert.matches("^coru%.tls%.context: 0x%x+ %(" .. kind .. "%)$", tostring(x))
      end
      ctx({ca = c.ca_file}, "client")
      ctx({ca = H.read_file(c.ca_file)}, "client")
      ctx({server = true, cert = H.read_file(c.server.cert), key = H.read_file(c.server.key)}, "server")
      ctx({server = true, cert = c.server.cert, key = c.server_enc_key, passphrase = "sesame"}, "server")
      ctx({alpn = {"h2", "http/1.1"}, min_version = "1.3", ciphers = "HIGH"}, "client")
      ctx({ca = c.dir}, "client")   -- a directory (hashed names) is accepted
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
      assert.has_error(function() tls.context(5) end, "coru.tls.context: bad argument #1 (table expected, got number)")
      assert.has_error(function() tls.context{verify = "yes"} end, "coru.tls: option 'verify' must be a boolean")
      assert.has_error(function() tls.context{min_version = "9.9"} end,
        "coru.tls: option 'min_version': unknown version '9.9' (\"1.2\", \"1.3\", ...)")
      assert.has_error(function() tls.context{server = true} end, "coru.tls: a server context needs 'cert' and 'key'")
      assert.has_error(function() tls.context{alpn = "h2"} end, "coru.tls: option 'alpn' must be a list of strings")
      assert.has_error(function() tls.wrap(42, {}, function() end) end,
        "bad argument #1 to 'wrap' (coru.stream expected, got number)")
    end)

    it("needs a task or a callback", function()
      assert.has_error(function() helper.outside_task(tls.connect, "localhost", 1) end,
        "coru.tls.connect: needs a running task or a callback")
    end)
  end)

  describe("coru to coru", function()
    it("handshakes, verifies and exchanges lines", function()
      coru.run(function()
        local port, results, srv = serve(merge(sopts, {alpn = {"x-coru", "http/1.1"}}), function(s, e)
          assert(s, e)
          local l = s:read_line()
          s:write("echo:" .. l .. "\n")
          return l, s:alpn(), s:read()
        end)
        local s = assert(dial(port, {ca = c.ca_file, alpn = {"x-coru"}}))
        assert.is_true(s:write("hello\n"))
        assert.equal("echo:hello", s:read_line())
        local cert = s:peer_certificate()
        assert.equal("CN=localhost", cert.subject)
        assert.equal("CN=coru-test-ca", cert.issuer)
        assert.equal("localhost", cert.common_name)
        -- the openssl command reads the same certificate
        local x509 = P.exec("openssl", {"x509", "-in", c.server.cert, "-noout", "-dates",
          "-fingerprint", "-sha256", "-serial"})
        assert.equal(x509:match("sha256 Fingerprint=([%x:]+)"), cert.fingerprint_sha256)
        assert.equal(x509:match("notBefore=([^\n]+)"), cert.not_before)
        assert.equal(x509:match("notAfter=([^\n]+)"), cert.not_after)
        assert.equal(x509:match("serial=(%x+)"), cert.serial)
        assert.matches("^%x%x" .. (":%x%x"):rep(19) .. "$", cert.fingerprint_sha1)
        assert.equal(30 * 86400, cert.valid_to - cert.valid_from)      -- made with -days 30
        assert.is_true(math.abs(cert.valid_from - os.time()) < 3600)   -- made by this run
        assert.same({"DNS:localhost", "IP:127.0.0.1"}, cert.subject_alt_names)
        assert.is_true(cert.verified)
        assert.equal("TLSv1.3", s:version())
        local name, bits = s:cipher()
        assert.equal("TLS_AES_256_GCM_SHA384", name)   -- OpenSSL's first TLS 1.3 suite
        assert.equal(256, bits)
        assert.equal("x-coru", s:alpn())
        assert.is_true(s:shutdown())
        local r = results:recv()
        assert.equal("hello", r[1])
        assert.equal("x-coru", r[2])
        assert.is_nil(r[3])       -- the clean end
        s:close()
        srv:close()
      end)
    end)

    it("uses PEM strings, an encrypted key, a reused context, and TLS 1.2", function()
      coru.run(function()
        local ctx = assert(tls.context{server = true, cert = H.read_file(c.server.cert),
                                       key = c.server_enc_key, passphrase = "sesame"})
        local port, results, srv = serve({server = true, context = ctx}, function(s, e)
          assert(s, e)
          s:write(s:version() .. "\n")
          return true
        end)
        for _, v in ipairs{"1.2", "1.3", "1.2"} do
          local s = assert(dial(port, {host = "127.0.0.1", ca = H.read_file(c.ca_file), max_version = v}))
          assert.equal("TLSv" .. v, s:read_line())
          assert.equal("TLSv" .. v, s:version())
          s:close()
          results:recv()
        end
        srv:close()
      end)
    end)

    it("does mutual TLS when the server verifies", function()
      coru.run(function()
        local port, results, srv = serve(merge(sopts, {verify = true, ca = c.ca_file}), function(s, e, n)
          if not s then return nil, e, n end
          s:write("ok\n")
          return s:peer_certificate().subject
        end)
        local s = assert(dial(port, {ca = c.ca_file, cert = c.client.cert, key = c.client.key}))
        assert.equal("ok", s:read_line())
        assert.equal("CN=coru-client", results:recv()[1])
        s:close()
        -- without a client certificate: refused
        s = dial(port, {ca = c.ca_file})
        if s then
          local d, e, n = s:read()      -- TLS 1.3: the client learns it on its first read
          assert.same({nil, "EPROTO: protocol error", "EPROTO"}, {d, e, n})
          assert.equal("ETLS: read failed: tlsv13 alert certificate required", (s:tls_error()))
          s:close()
        end
        local r = results:recv()
        assert.is_nil(r[1])
        assert.matches("certificate", r[2])
        srv:close()
      end)
    end)

    local function refused(cert, copts, pattern)
      coru.run(function()
        local port, results, srv = serve({server = true, cert = cert.cert, key = cert.key},
          function(s, e, n) return s ~= nil, e, n end)
        local s, e, n = dial(port, copts)
        assert.is_nil(s)
        assert.matches(pattern, e)
        assert.equal("ECERT", n)
        local r = results:recv()
        assert.is_false(r[1])      -- the server saw the client give up
        srv:close()
      end)
    end

    it("refuses an expired certificate", function()
      refused(c.expired, {ca = c.ca_file}, "^ECERT: certificate verify failed: certificate has expired$")
    end)

    it("refuses a self-signed certificate without ca", function()
      refused(c.self, {}, "^ECERT: certificate verify failed: self%-signed certificate$")
    end)

    it("refuses a host name mismatch", function()
      refused(c.other, {ca = c.ca_file}, "^ECERT: certificate verify failed: hostname mismatch$")
    end)

    it("refuses a certificate from a CA not in the system store", function()
      refused(c.server, {}, "certificate verify failed: unable to get local issuer certificate")
    end)

    it("accepts anything with verify = false spelled out", function()
      coru.run(function()
        local port, results, srv = serve({server = true, cert = c.other.cert, key = c.other.key},
          function(s) s:write("x\n") return true end)
        local s = assert(dial(port, {verify = false}))
        assert.equal("x", s:read_line())
        assert.is_false(s:peer_certificate().verified)
        s:close()
        results:recv()
        srv:close()
      end)
    end)

    it("reports a truncated stream (no close_notify), not a clean end", function()
      coru.run(function()
        local port, results, srv = serve(sopts, function(s)
          s:write("partial line without end")
          coru.sleep(20)
          s:transport():shutdown()     -- TCP FIN, no close_notify
          return s:read()
        end)
        local s = assert(dial(port, {ca = c.ca_file}))
        local l, e, partial = s:read_line()
        assert.is_nil(l)
        assert.matches("^ECONNABORTED", e)
        local msg, name = s:tls_error()
        assert.equal("ETRUNCATED", name)
        assert.matches("without close_notify", msg)
        assert.equal("ECONNABORTED", partial)   -- the name: nil, msg, name
        s:close()
        results:recv()
        srv:close()
      end)
    end)

    it("tells a clean end (close_notify) from a truncation", function()
      coru.run(function()
        local port, results, srv = serve(sopts, function(s)
          s:write("all\nrest") s:shutdown() return s:read()
        end)
        local s = assert(dial(port, {ca = c.ca_file}))
        assert.equal("all", s:read_line())
        local l, e, partial = s:read_line()
        assert.same({nil, "eof", "rest"}, {l, e, partial})
        assert.equal("rest", s:read())          -- a failed read leaves the data (as TCP does)
        local d, e2 = s:read()
        assert.same({nil, "eof"}, {d, e2})
        s:close()
        results:recv()
        srv:close()
      end)
    end)

    it("fails cleanly on garbage records", function()
      coru.run(function()
        local port, results, srv = serve(sopts, function(s)
          local d, e, n = s:read()
          return d, e, n, s:tls_error()
        end)
        local s = assert(dial(port, {ca = c.ca_file}))
        -- under the engine: an application-data record full of junk
        assert(s:transport():write("\23\3\3\0\32" .. string.rep("\xAB", 32)))
        local r = results:recv()
        assert.is_nil(r[1])
        assert.equal("EPROTO", r[3])
        assert.matches("^ETLS: read failed", r[4])
        s:close()
        srv:close()
      end)
    end)

    it("fails cleanly when the peer speaks plain text to a TLS server", function()
      coru.run(function()
        local port, results, srv = serve(sopts, function(s, e, n) return s, e, n end)
        local raw = assert(coru.tcp.connect("127.0.0.1", port))
        raw:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        local r = results:recv()
        assert.is_nil(r[1])
        assert.equal("ETLS", r[3])
        assert.matches("^ETLS: handshake failed: ", r[2])
        assert.same({nil, "eof"}, {raw:read()})   -- the server closed it
        raw:close()
        srv:close()
      end)
    end)

    it("fails cleanly when the peer resets during the handshake", function()
      coru.run(function()
        local port, results, srv = serve(sopts, function(s, e, n) return s, e, n end)
        local raw = assert(coru.tcp.connect("127.0.0.1", port))
        raw:write("\22\3\1\2\0\1\0\1\252\3\3")     -- the start of a ClientHello
        coru.sleep(20)
        raw:close_reset()
        local r = results:recv()
        assert.is_nil(r[1])
        -- the RST races the server's read: a reset, or (when the kernel
        -- reports the close first, e.g. under valgrind) a closed peer
        if r[3] == "ECONNRESET" then
          assert.matches("^ETLS: handshake failed: ECONNRESET", r[2])
        else
          assert.matches("^ETLS: handshake failed: the peer closed the connection", r[2])
        end
        srv:close()
        -- and a server that resets on the client
        local srv2 = assert(coru.tcp.listen("127.0.0.1", 0, function(raw2)
          raw2:read()
          raw2:close_reset()
        end))
        local s, e, n = dial(srv2:getsockname().port, {ca = c.ca_file})
        assert.is_nil(s)
        assert.matches("ECONNRESET", e)
        assert.equal("ECONNRESET", n)
        srv2:close()
      end)
    end)

    it("fails cleanly when a server answers garbage or hangs up mid-handshake", function()
      coru.run(function()
        local replies = {string.rep("\0\255garbage", 100), "\22\3\3\0\90\2\0\0"}
        for i, reply in ipairs(replies) do
          local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(raw)
            raw:read()
            raw:write(reply)
            if i == 2 then raw:shutdown() coru.sleep(50) end
          end))
          local s, e, n = dial(srv:getsockname().port, {ca = c.ca_file})
          assert.is_nil(s)
          assert.equal("ETLS", n)
          if i == 1 then assert.matches("^ETLS: handshake failed: ", e)
          else assert.equal("ETLS: handshake failed: the peer closed the connection", e) end
          srv:close()
        end
      end)
    end)

    it("times out a handshake that never completes", function()
      coru.run(function()
        local port, results, srv = serve(merge(sopts, {handshake_timeout = 60}), function(s, e, n) return s, e, n end)
        local raw = assert(coru.tcp.connect("127.0.0.1", port))   -- says nothing
        local r = results:recv()
        assert.same({nil, "ETLS: handshake timed out", "timeout"}, {r[1], r[2], r[3]})
        raw:close()
        srv:close()
        -- client side: a server that never answers
        local mute = assert(coru.tcp.listen("127.0.0.1", 0, function(raw2) coru.sleep(300) end))
        local t0 = coru.now()
        local s, e, n = dial(mute:getsockname().port, {ca = c.ca_file, handshake_timeout = 50})
        assert.same({nil, "ETLS: handshake timed out", "timeout"}, {s, e, n})
        assert.is_true(coru.now() - t0 >= 45)
        mute:close()
      end)
    end)

    it("times out a read and stays usable", function()
      coru.run(function()
        local go = coru.channel()
        local port, results, srv = serve(sopts, function(s)
          go:recv()                 -- after the client's read timed out
          s:write("late\n")
          return s:read()
        end)
        local s = assert(dial(port, {ca = c.ca_file}))
        s:settimeouts(nil, nil, 20)
        local t0 = coru.now()
        local l, e = s:read_line()
        assert.same({nil, "timeout"}, {l, e})
        assert.is_true(coru.now() - t0 >= 15)
        go:send(true)
        s:settimeouts(nil, nil, 0)
        assert.equal("late", s:read_line())
        s:close()
        results:recv()
        srv:close()
      end)
    end)

    it("limits line length", function()
      coru.run(function()
        local port, results, srv = serve(sopts, function(s)
          s:write(string.rep("x", 5000)) return s:read()
        end)
        local s = assert(dial(port, {ca = c.ca_file}))
        s:set_max_line(1000)
        local l, e = s:read_line()
        assert.same({nil, "line too long"}, {l, e})
        s:close()
        results:recv()
        srv:close()
      end)
    end)

    it("gives a second reader busy and wakes a reader on close", function()
      coru.run(function()
        local port, results, srv = serve(sopts, function(s) return s:read() end)
        local s = assert(dial(port, {ca = c.ca_file}))
        local r1 = coru.spawn(function() return s:read() end)
        assert.same({nil, "busy"}, {s:read()})
        s:close()
        assert.same({nil, "closed"}, {r1:await()})
        assert.has_error(function() s:read() end, "coru.stream: handle is closed")
        results:recv()
        srv:close()
      end)
    end)

    it("has read_bytes, read_until, read_all and luv-style read_start/write(cb)", function()
      coru.run(function()
        local port, results, srv = serve(sopts, function(s)
          local got, done = {}, coru.channel(1)
          s:read_start(function(err, data)
            if data then got[#got + 1] = data else s:read_stop() done:send(err or "end") end
          end)
          local why = done:recv()
          s:write("12345--END--rest of it")
          s:shutdown()
          return table.concat(got), why
        end)
        local s = assert(dial(port, {ca = c.ca_file}))
        local w = coru.channel(1)
        s:write("abc", function(err) w:send(err or "ok") end)
        assert.equal("ok", w:recv())
        assert(s:write({"d", "e", "f\n"}))
        assert(s:shutdown())
        assert.equal("12345", s:read_bytes(5))
        assert.equal("", s:read_until("--END--"))
        assert.equal("rest of it", s:read_all())
        assert.same({"abcdef\n", "end"}, results:recv())
        s:close()
        srv:close()
      end)
    end)

    it("wraps in callback mode and upgrades a plain connection (STARTTLS)", function()
      coru.run(function()
        local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(raw)
          assert.equal("STARTTLS", raw:read_line())
          raw:write("GO\n")
          local s = assert(tls.wrap(raw, sopts))
          s:write("secret\n")
          s:read()
        end))
        local raw = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
        raw:write("STARTTLS\n")
        assert.equal("GO", raw:read_line())
        local done = coru.channel(1)
        tls.wrap(raw, {host = "localhost", ca = c.ca_file}, function(err, s) done:send({err, s}) end)
        local r = done:recv()
        assert.is_nil(r[1])
        assert.equal("secret", r[2]:read_line())
        r[2]:close()
        srv:close()
      end)
    end)

    it("runs over a unix socket, and TLS over TLS", function()
      coru.run(function()
        local path = c.dir .. "/tls.sock"
        local psrv = assert(coru.pipe.listen(path, function(raw)
          local s = assert(tls.wrap(raw, sopts))
          local inner = assert(tls.wrap(s, {server = true, cert = c.other.cert, key = c.other.key}))
          inner:write("deep " .. inner:read_line() .. "\n")
          inner:read()
        end))
        local raw = assert(coru.pipe.connect(path))
        local s = assert(tls.wrap(raw, {host = "localhost", ca = c.ca_file}))
        local inner = assert(tls.wrap(s, {host = "other.example", ca = c.ca_file}))
        assert.equal("CN=other.example", inner:peer_certificate().subject)
        inner:write("hi\n")
        assert.equal("deep hi", inner:read_line())
        inner:close()
        assert.is_true(raw:is_closing())   -- closing the outer stream closes all below
        psrv:close()
      end)
    end)

    it("transfers tens of MiB both ways at once with a checksum", function()
      coru.run(function()
        local up, down = big(24 * 1024 * 1024), big(20 * 1024 * 1024)
        local port, results, srv = serve(sopts, function(s)
          local w = coru.spawn(function() assert(s:write(down)) assert(s:shutdown()) end)
          local data = s:read_all()
          w:await()
          return H.md5(data), #data
        end)
        local s = assert(dial(port, {ca = c.ca_file}))
        local w = coru.spawn(function() assert(s:write(up)) assert(s:shutdown()) end)
        local data = s:read_all()
        w:await()
        local r = results:recv()
        assert.equal(#up, r[2])
        assert.equal(H.md5(up), r[1])
        assert.equal(#down, #data)
        assert.equal(H.md5(down), H.md5(data))
        s:close()
        srv:close()
      end)
    end)

    it("runs many connections at once", function()
      coru.run(function()
        -- 200 handshakes at once take longer than the default 30 s under valgrind
        local hs = helper.ms(30000)
        local port, results, srv = serve({server = true, context = assert(tls.context(sopts)), handshake_timeout = hs},
          function(s)
            local l = s:read_line() s:write(l .. "!\n") return s:read()
          end)
        local cctx = assert(tls.context{ca = c.ca_file})
        local tasks = {}
        for i = 1, 200 do
          tasks[i] = coru.spawn(function()
            local s = assert(dial(port, {context = cctx, handshake_timeout = hs}))
            s:write("n" .. i .. "\n")
            local l = s:read_line()
            s:close()
            return l
          end)
        end
        local res = coru.all(tasks)
        for i = 1, 200 do assert.equal("n" .. i .. "!", res[i][1]) end
        for _ = 1, 200 do results:recv() end
        srv:close()
      end)
    end)

    it("cancels a handshake and a read without leaking", function()
      coru.run(function()
        -- SSL objects left by earlier specs are freed first (collected,
        -- closed on later turns): the count stops changing
        local live, last = nil, -1
        helper.settle(function()
          collectgarbage() collectgarbage()
          live, last = coru._tls.live(), live
          return live == last
        end)
        local hello = coru.channel(1)
        local mute = assert(coru.tcp.listen("127.0.0.1", 0, function(raw) hello:send(raw:read()) coru.sleep(200) end))
        local t = coru.spawn(function() return dial(mute:getsockname().port, {ca = c.ca_file}) end)
        assert.equal(22, hello:recv():byte(1))   -- a handshake record came: the handshake is under way
        t:cancel("enough")
        local ok, err = pcall(t.await, t)
        assert.is_false(ok)
        assert.is_true(coru.is_cancelled(err))
        mute:close()
        local port, results, srv = serve(sopts, function(s) return s:read() end)
        local s = assert(dial(port, {ca = c.ca_file}))
        local r = coru.spawn(function() return s:read() end)
        assert.equal("suspended", r:status())
        r:cancel("enough")
        ok, err = pcall(r.await, r)
        assert.is_true(coru.is_cancelled(err))
        assert.is_true(s:write("still usable\n"))
        assert.same({"still usable\n"}, results:recv())
        s:close()
        srv:close()
        helper.settle(function() collectgarbage() collectgarbage() return coru._tls.live() <= live end)
        assert.equal(live, coru._tls.live())
      end)
    end)
  end)

  describe("with real openssl peers", function()
    -- openssl s_server on port 0: it reports the port it bound ("ACCEPT
    -- 127.0.0.1:PORT"), so no port is picked, freed and raced for.
    local function s_server(cert)
      local p = helper.spawn("openssl", {"s_server", "-accept", "127.0.0.1:0", "-cert", cert.cert,
        "-key", cert.key, "-rev"}, {stdio = {"ignore", "pipe", "ignore"}})
      local port
      local ok = coru.timeout(helper.ms(10000), function()
        repeat
          local l = assert(p.stdout:read_line(), "openssl s_server ended before ACCEPT")
          port = tonumber(l:match("^ACCEPT .*:(%d+)$"))
        until port
        return true
      end)
      if not ok then error("openssl s_server did not report its port") end
      return port, function() helper.reap(p) end
    end

    -- openssl s_client against port: stdin is input, the output is read to
    -- its end (the client exits at the server's close_notify), bounded.
    local function s_client(port, args, input)
      local argv = {"s_client", "-connect", "127.0.0.1:" .. port}
      for _, a in ipairs(args) do argv[#argv + 1] = a end
      local out, err, code = P.exec("openssl", argv, {input = input, timeout = 20000})
      assert(out, "openssl s_client: " .. tostring(err))
      return out, err, code
    end

    it("a coru client talks to openssl s_server", function()
      coru.run(function()
        local port, stop = s_server(c.server)
        local s, e = tls.connect("localhost", port, {ca = c.ca_file})
        assert(s, e)
        assert(s:write("hello coru\n"))
        assert.equal("uroc olleh", s:read_line())
        assert.equal("TLSv1.3", s:version())
        s:close()
        stop()
      end)
    end)

    it("a coru client refuses openssl s_server's bad certificates", function()
      coru.run(function()
        for _, case in ipairs{{c.expired, "certificate has expired"}, {c.other, "hostname mismatch"},
                              {c.self, "self%-signed certificate"}} do
          local port, stop = s_server(case[1])
          local s, e, n = tls.connect("localhost", port, {ca = case[1] ~= c.self and c.ca_file or nil})
          assert.is_nil(s)
          assert.matches("^ECERT: certificate verify failed: " .. case[2] .. "$", e)
          assert.equal("ECERT", n)
          stop()
        end
      end)
    end)

    it("openssl s_client talks to a coru server, both ways, with a checksum", function()
      coru.run(function()
        local down = big(8 * 1024 * 1024)
        local up = big(6 * 1024 * 1024)
        local got = coru.channel(10)
        local srv = assert(tls.listen("127.0.0.1", 0, function(s)
          local first = s:read_bytes(6)
          if first == "hello\n" then
            s:write("HELLO " .. s:version() .. "\n")
            s:write(down)
            s:shutdown()
            got:send({"download", s:read()})
          else
            local data = s:read_all()
            got:send({"upload", H.md5(first .. data), #first + #data})
          end
        end, {cert = c.server.cert, key = c.server.key}))
        local port = srv:getsockname().port
        -- download: -quiet ignores the end of its input; it ends at our close_notify
        local out, _, code = s_client(port, {"-CAfile", c.ca_file, "-verify_return_error",
          "-servername", "localhost", "-quiet"}, "hello\n")
        local head, rest = out:match("^(HELLO [^\n]*)\n(.*)$")
        assert.equal("HELLO TLSv1.3", head)
        assert.equal(#down, #rest)
        assert.equal(H.md5(down), H.md5(rest))
        assert.equal(0, code)
        assert.same({"download", nil, "eof"}, got:recv())   -- the client closed cleanly
        -- upload: s_client sends its input, then close_notify at its end
        local _, _, code2 = s_client(port, {"-CAfile", c.ca_file, "-verify_return_error",
          "-servername", "localhost", "-quiet", "-no_ign_eof"}, up)
        assert.equal(0, code2)
        assert.same({"upload", H.md5(up), #up}, got:recv())
        srv:close()
      end)
    end)

    it("refuses an openssl s_client limited to TLS 1.0", function()
      coru.run(function()
        local errs = coru.channel(10)
        local srv = assert(tls.listen("127.0.0.1", 0, function(s) s:read() end, {cert = c.server.cert, key = c.server.key,
          handshake_timeout = 2000, on_handshake_error = function(e, n) errs:send({e, n}) end}))
        local port = srv:getsockname().port
        -- a TLS 1.0-only client is refused (min_version defaults to 1.2)
        local client = coru.spawn(s_client, port, {"-tls1", "-quiet"}, "")
        local r = errs:recv()
        assert.matches("^ETLS: handshake failed", r[1])
        assert.equal("ETLS", r[2])
        local _, _, code = client:await()
        assert.equal(1, code)      -- the client saw the refusal too
        srv:close()
      end)
    end)
  end)

  it("leaves no SSL object behind", function()
    coru.run(function()
      -- dropped streams are freed by the collector, closes end on later turns
      local live
      helper.settle(function()
        collectgarbage()
        collectgarbage()
        live = coru._tls.live()
        return live <= live0
      end, 5000)
      assert.equal(live0, live)
    end)
  end)
end)
