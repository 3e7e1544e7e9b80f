-- Hostile peers (issue 10): what a peer sends can fail its connection, never
-- the process, and costs bounded memory and no leaked descriptors. Loopback
-- only, each case bounded in time; the same against TLS servers and clients.
local coru = require "coru"
local H = require "helper"
local TH = require "tls_helper"

local function fd_count()
  local n = 0
  local req = coru.fs_scandir("/proc/self/fd")
  while req and coru.fs_scandir_next(req) do n = n + 1 end
  return n
end

local function rss_mib() return coru.resident_set_memory() / 2^20 end

-- A line server: reads lines until the peer is done or fails; reports what
-- each connection ended with on `ended`.
local function line_server(opts, ended)
  return assert(coru.tcp.listen("127.0.0.1", 0, function(conn)
    conn:set_max_line(opts.max_line or 1024 * 1024)
    if opts.read_timeout then conn:settimeouts(nil, nil, opts.read_timeout) end
    local lines = 0
    while true do
      local line, err = conn:read_line()
      if not line then ended:send({err = err, lines = lines}) return end
      lines = lines + 1
      if opts.echo then conn:write(line .. "\n") end
    end
  end))
end

local function connect(srv)
  return assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
end

describe("hostile peers: TCP", function()
  it("random binary: the connection fails or reads lines, the server goes on", function()
    H.run(function()
      local ended = coru.channel(16)
      local srv = line_server({max_line = 4096, echo = true}, ended)
      math.randomseed(10)
      for _ = 1, 5 do
        local c = connect(srv)
        local t = {}
        for i = 1, 200000 do t[i] = string.char(math.random(0, 255)) end
        c:write(table.concat(t))
        c:shutdown()
        local r = ended:recv()
        assert.is_table(r)
        assert.is_true(r.err == "eof" or r.err == "line too long", tostring(r.err))
        c:close()
      end
      local c = connect(srv)                 -- still serving
      c:write("hello\n")
      assert.equal("hello", c:read_line())
      c:close(); srv:close()
    end)
  end)

  it("a 100 MiB line: 'line too long', memory bounded, the next line is read", function()
    H.run(function()
      local got = coru.channel(4)
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn)
        local line, err = conn:read_line()
        got:send({line, err})
        got:send({conn:read_line()})
      end))
      local before = rss_mib()
      local c = connect(srv)
      local chunk = ("x"):rep(1024 * 1024)
      for _ = 1, 100 do assert(c:write(chunk)) end
      assert(c:write("\nafter\n"))
      local r = got:recv()
      assert.is_nil(r[1]); assert.equal("line too long", r[2])
      assert.equal("after", got:recv()[1])
      assert.is_true(rss_mib() - before < 64, "RSS grew by " .. (rss_mib() - before) .. " MiB")
      c:close(); srv:close()
    end)
  end)

  it("slowloris: one byte at a time never completes a line; the read timeout ends it", function()
    H.run(function()
      local ended = coru.channel(4)
      local srv = line_server({read_timeout = 100}, ended)
      local c = connect(srv)
      local sender = coru.spawn(function()
        for _ = 1, 100 do
          if not c:write("a") then return end
          coru.sleep(20)
        end
      end)
      local r = coru.timeout(H.ms(3000), function() return ended:recv() end)
      assert.is_table(r, "the server waited for ever")
      assert.equal("timeout", r.err)
      sender:cancel()
      c:close(); srv:close()
    end)
  end)

  it("half-close: the server reads to EOF and still answers", function()
    H.run(function()
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn)
        local all = conn:read_all()
        conn:write("got " .. #all)
      end))
      local c = connect(srv)
      c:write(("r"):rep(10000))
      c:shutdown()
      assert.equal("got 10000", c:read_all())
      c:close(); srv:close()
    end)
  end)

  it("a reset mid-write fails the writer with a libuv error", function()
    H.run(function()
      local res = coru.channel(1)
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn)
        local ok, err, name
        for _ = 1, 200 do
          ok, err, name = conn:write(("w"):rep(1024 * 1024))
          if not ok then break end
        end
        res:send({ok, name or err})
      end))
      local c = connect(srv)
      c:read_bytes(1000)
      c:close_reset()
      local r = coru.timeout(H.ms(5000), function() return res:recv() end)
      assert.is_table(r, "the writer never learned")
      assert.is_nil(r[1])
      assert.is_true(r[2] == "ECONNRESET" or r[2] == "EPIPE" or r[2] == "closed", tostring(r[2]))
      srv:close()
    end)
  end)

  it("1,000 connect/close cycles leak no descriptor and little memory", function()
    H.run(function()
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn) conn:read() end))
      local port = srv:getsockname().port
      local function cycle(n)
        for _ = 1, n do
          local c = assert(coru.tcp.connect("127.0.0.1", port))
          c:close()
        end
        coru.sleep(20)
        collectgarbage(); collectgarbage()
      end
      cycle(100)
      local fds, rss = fd_count(), rss_mib()
      cycle(1000)
      assert.is_true(fd_count() <= fds + 2, ("descriptors: %d -> %d"):format(fds, fd_count()))
      assert.is_true(rss_mib() - rss < 32, ("RSS grew by %.1f MiB"):format(rss_mib() - rss))
      srv:close()
    end)
  end)

  it("a client that never reads: the send timeout ends the writer, memory bounded", function()
    H.run(function()
      local res = coru.channel(1)
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn)
        conn:settimeouts(nil, 200, nil)
        local ok, err
        for _ = 1, 1000 do
          ok, err = conn:write(("n"):rep(1024 * 1024))
          if not ok then break end
        end
        res:send(err)
      end))
      local before = rss_mib()
      local c = connect(srv)
      local err = coru.timeout(H.ms(10000), function() return res:recv() end)
      assert.equal("timeout", err)
      assert.is_true(rss_mib() - before < 64, "RSS grew by " .. (rss_mib() - before) .. " MiB")
      c:close(); srv:close()
    end)
  end)

  it("more than every limit: read_all, read_until and read_line refuse, the process stays", function()
    H.run(function()
      local res = coru.channel(4)
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn)
        conn:set_max_line(1000)
        conn:set_max_all(100000)
        res:send({conn:read_until("END")})
        res:send({conn:read_line()})
        res:send({conn:read_all()})
      end))
      local c = connect(srv)
      c:write(("u"):rep(5000) .. "EN")
      c:write("D" .. ("l"):rep(5000) .. "\n")
      c:write(("a"):rep(300000))
      c:shutdown()
      assert.equal("line too long", res:recv()[2])
      assert.equal("line too long", res:recv()[2])
      assert.equal("too large", res:recv()[2])
      c:close(); srv:close()
    end)
  end)
end)

describe("hostile peers: TLS", function()
  local certs = TH.certs()
  local sopts = {cert = certs.server.cert, key = certs.server.key, handshake_timeout = H.ms(500)}

  it("a TLS server refuses garbage, a silent peer and a 100 MiB line, and goes on", function()
    H.run(function()
      local ended = coru.channel(8)
      local srv = assert(coru.tls.listen("127.0.0.1", 0, function(s)
        s:set_max_line(1024 * 1024)
        local line, err = s:read_line()
        ended:send(err or line)
        if line then s:write(line .. "\n") end
      end, sopts))
      local port = srv:getsockname().port
      local errs = H.capture_errors(function()
        local g = assert(coru.tcp.connect("127.0.0.1", port))    -- garbage
        g:write(("\22\3\1garbage"):rep(1000))
        local silent = assert(coru.tcp.connect("127.0.0.1", port)) -- never says hello
        coru.sleep(800)
        g:close(); silent:close()
      end)
      local c = assert(coru.tls.connect("127.0.0.1", port, {ca = certs.ca_file, host = "localhost"}))
      local chunk = ("x"):rep(1024 * 1024)
      for _ = 1, 100 do if not c:write(chunk) then break end end
      assert.equal("line too long", coru.timeout(H.ms(20000), function() return ended:recv() end))
      c:close()
      local d = assert(coru.tls.connect("127.0.0.1", port, {ca = certs.ca_file, host = "localhost"}))
      d:write("still here\n")
      assert.equal("still here", d:read_line())
      d:close(); srv:close()
      assert.is_table(errs)
    end)
  end)

  it("a TLS client refuses a server that answers garbage or nothing", function()
    H.run(function()
      local done = coru.channel(2)
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn)
        conn:read()
        conn:write(("\0\255garbage"):rep(100))
        while conn:read() do end        -- until the client hangs up
        done:send(true)
      end))
      local s, msg = coru.tls.connect("127.0.0.1", srv:getsockname().port, {ca = certs.ca_file, host = "localhost"})
      assert.is_nil(s); assert.is_string(msg)
      srv:close()
      local mute = assert(coru.tcp.listen("127.0.0.1", 0, function(conn)
        while conn:read() do end        -- says nothing, until the client gives up
        done:send(true)
      end))
      local s2, msg2 = coru.tls.connect("127.0.0.1", mute:getsockname().port,
        {ca = certs.ca_file, host = "localhost", handshake_timeout = 200})
      assert.is_nil(s2); assert.is_string(msg2)
      mute:close()
      assert.is_true(done:recv()); assert.is_true(done:recv())
    end)
  end)

  it("200 TLS connect/close cycles leak no descriptor", function()
    H.run(function()
      local srv = assert(coru.tls.listen("127.0.0.1", 0, function(s) s:read() end, sopts))
      local port = srv:getsockname().port
      local function cycle(n)
        for _ = 1, n do
          local c = assert(coru.tls.connect("127.0.0.1", port, {ca = certs.ca_file, host = "localhost"}))
          c:close()
        end
        coru.sleep(50)
        collectgarbage(); collectgarbage()
      end
      cycle(20)
      local fds = fd_count()
      cycle(200)
      assert.is_true(fd_count() <= fds + 2, ("descriptors: %d -> %d"):format(fds, fd_count()))
      srv:close()
    end)
  end)
end)
