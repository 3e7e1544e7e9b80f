-- Closing a stream wakes its waiting reader with nil, "closed", the same
-- for TCP, pipes and TLS; for TLS, closing the underlying stream too (it
-- closes the TLS stream: nothing can come through it any more).
local coru = require "coru"
local T = require "tls_helper"

-- A connected pair of the transport: client, server-side, and what to
-- close afterwards.
local function tcp_pair()
  local ch = coru.channel(1)
  local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(s) ch:send(s) s:read() end))
  local c = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
  return c, ch:recv(), srv
end

local function pipe_pair()
  local path = os.tmpname()
  os.remove(path)
  local ch = coru.channel(1)
  local srv = assert(coru.pipe.listen(path, function(s) ch:send(s) s:read() end))
  local c = assert(coru.pipe.connect(path))
  return c, ch:recv(), srv, function() os.remove(path) end
end

-- TLS over TCP: the TLS client, the server's TLS stream, the server, and
-- the client's raw TCP stream under its TLS stream.
local function tls_pair()
  local certs = T.certs()
  local ch = coru.channel(1)
  local srv = assert(coru.tls.listen("127.0.0.1", 0, function(s) ch:send(s) s:read() end,
                                     {cert = certs.server.cert, key = certs.server.key}))
  local raw = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
  local c = assert(coru.tls.wrap(raw, {host = "localhost", ca = certs.ca_file}))
  local peer = ch:recv()
  return c, peer, srv, nil, raw
end

-- A task reads from s (method m); close_it() closes; the read returns?
local function read_closed(s, m, close_it)
  local t = coru.spawn(function() return s[m](s) end)
  coru.sleep(20)
  assert.equal("suspended", t:status())
  close_it()
  return coru.timeout(2000, function() return t:await() end)
end

describe("a read waiting when its stream is closed", function()
  teardown(function() T.cleanup() end)

  for _, tr in ipairs({{"TCP", tcp_pair}, {"pipe", pipe_pair}, {"TLS", tls_pair}}) do
    local name, pair = tr[1], tr[2]
    for _, m in ipairs({"read", "read_line"}) do
      it(name .. " s:" .. m .. "() returns nil, \"closed\"", function()
        coru.run(function()
          local c, peer, srv, cleanup = pair()
          local v, err, extra = read_closed(c, m, function() c:close() end)
          assert.is_nil(v)
          assert.equal("closed", err)
          assert.is_nil(extra)
          assert.has_error(function() c:read() end)   -- a method on a closed handle raises
          peer:close() srv:close()
          if cleanup then cleanup() end
        end)
      end)
    end
  end

  for _, m in ipairs({"read", "read_line"}) do
    it("TLS s:" .. m .. "() returns nil, \"closed\" when the underlying stream is closed; the TLS stream is closed with it", function()
      coru.run(function()
        local c, peer, srv, _, raw = tls_pair()
        local v, err, extra = read_closed(c, m, function() raw:close() end)
        assert.is_nil(v)
        assert.equal("closed", err)
        assert.is_nil(extra)
        assert.is_true(c:is_closing())
        assert.has_error(function() c:read() end, "coru.stream: handle is closed")
        peer:close() srv:close()
      end)
    end)
  end

  it("TLS: a read or write after the underlying stream was closed returns nil, \"closed\" and closes the TLS stream", function()
    coru.run(function()
      for _, op in ipairs({"read", "write"}) do
        local c, peer, srv, _, raw = tls_pair()
        raw:close()
        coru.sleep(10)
        local v, err, extra
        if op == "read" then v, err, extra = c:read() else v, err, extra = c:write("x") end
        assert.is_nil(v)
        assert.equal("closed", err)
        assert.is_nil(extra)
        assert.is_true(c:is_closing())
        peer:close() srv:close()
      end
    end)
  end)
end)
