-- coru.tcp: connect and listen over the TCP handles of the C layer.
--   coru.tcp.connect(host, port [, opts])          -> stream | nil, msg, name
--   coru.tcp.listen(host, port, handler [, opts])  -> server | nil, msg, name
local coru = require "coru"

local M = {}

local function is_ip(host)
  return host:match("^%d+%.%d+%.%d+%.%d+$") or host:find(":", 1, true)
end

-- Addresses for host: an IP literal as is, else DNS (IPv4 and IPv6).
local function resolve(host, port, family)
  if is_ip(host) then return { { addr = host, port = port } } end
  local res, err, name = coru.getaddrinfo(host, port, { socktype = "stream", family = family })
  if not res then return nil, err, name end
  if #res == 0 then return nil, "EAI_NONAME: unknown node or service: " .. host, "EAI_NONAME" end
  return res
end
M.resolve = resolve

local serve = require "coru.serve"

local function apply(s, opts)
  if opts.nodelay ~= false then s:nodelay(true) end
  if opts.keepalive then s:keepalive(true, tonumber(opts.keepalive) or 60) end
  serve.apply_opts(s, opts)
end

-- Connect to host:port, trying each address in turn. opts: timeout (ms,
-- all three), connect_timeout/send_timeout/read_timeout, nodelay (default
-- true), keepalive, family ("inet"/"inet6"), max_line.
local modes = require "coru.modes"
local CONNECT_OPTS = modes.set(serve.STREAM_OPTS, {"nodelay", "keepalive", "family"})
local LISTEN_OPTS = modes.set(serve.STREAM_OPTS, {"nodelay", "keepalive", "family", "backlog", "reuseport", "ipv6only"})

local function connect(host, port, opts)
  local addrs, err, name = resolve(host, port, opts.family)
  if not addrs then return nil, err, name end
  for _, a in ipairs(addrs) do
    local s = coru.new_tcp()
    apply(s, opts)
    local ok
    ok, err, name = s:connect(a.addr, port)
    if ok then return s end
    if not s:is_closing() then s:close() end
  end
  return nil, err, name
end

-- coru.tcp.connect(host, port [, opts] [, cb]): three modes.
function M.connect(host, port, opts, cb)
  if type(host) ~= "string" then error("bad argument #1 to 'coru.tcp.connect' (string expected, got " .. type(host) .. ")", 2) end
  if type(port) ~= "number" then error("bad argument #2 to 'coru.tcp.connect' (number expected, got " .. type(port) .. ")", 2) end
  opts, cb = modes.opts_cb("coru.tcp.connect", 3, opts, cb, CONNECT_OPTS)
  if cb then return modes.run(cb, connect, host, port, opts) end
  modes.need_task("coru.tcp.connect")
  return connect(host, port, opts)
end

-- Listen on host:port; each accepted connection runs handler(stream) in its
-- own task. When the handler returns or fails, the connection is closed; a
-- failure goes to coru.on_error and the server goes on. opts: backlog
-- (default 1024), reuseport, ipv6only, nodelay (default true), timeout,
-- max_line. Returns the server (server:getsockname().port is the port).
function M.listen(host, port, handler, opts)
  if not modes.callable(handler) then
    error("bad argument #3 to 'coru.tcp.listen' (function expected, got " .. type(handler) .. ")", 2)
  end
  modes.check_opts("coru.tcp.listen", 4, opts, LISTEN_OPTS)
  opts = opts or {}
  host = host or "127.0.0.1"
  local addr = host
  if not is_ip(host) then
    local addrs, err, name = resolve(host, port, opts.family)
    if not addrs then return nil, err, name end
    addr = addrs[1].addr
  end
  local server = coru.new_tcp(addr:find(":", 1, true) and "inet6" or "inet")
  local ok, err, name = server:bind(addr, port or 0, { reuseport = opts.reuseport, ipv6only = opts.ipv6only })
  if not ok then server:close(); return nil, err, name end
  ok, err, name = serve.accept_loop(server, coru.new_tcp, function(c) apply(c, opts) end,
                                    handler, opts.backlog)
  if not ok then return nil, err, name end
  return server
end

return M
