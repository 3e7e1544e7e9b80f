-- coru.tls: TLS over any coru stream (OpenSSL 3, memory BIOs).
--
-- The TLS stream is a C handle (src/tls.c) with every stream method of TCP
-- (read, read_line, read_bytes, read_until, read_all, write, shutdown,
-- close, settimeouts, set_max_line, read_start/read_stop...) plus
-- peer_certificate(), cipher(), version(), alpn(), tls_error(). This module
-- holds the sugar: contexts, wrap, connect, listen.
local coru = require "coru"
local C = coru._tls
local spawn, current = coru.spawn, coru.current
local type, tostring, error, pairs, ipairs = type, tostring, error, pairs, ipairs

local M = {}

M.openssl_version = C.openssl_version()

local DEFAULT_HANDSHAKE_TIMEOUT = 30000

local CTX_KEYS = {"ca", "cert", "key", "passphrase", "alpn", "min_version", "max_version",
                  "ciphers", "ciphersuites"}

-- Every option name a TLS function takes: any other is refused (a
-- misspelled "verfy = false" must not pass unnoticed).
local modes = require "coru.modes"
local CONTEXT_OPTS = modes.set(CTX_KEYS, {"server", "verify"})
local OPTS = modes.set(CTX_KEYS, {"server", "verify", "host", "servername", "context", "handshake_timeout",
  "tcp", "on_handshake_error", "timeout", "connect_timeout", "send_timeout", "read_timeout", "max_line",
  "nodelay", "keepalive", "family", "backlog", "reuseport", "ipv6only"})

-- coru.tls.context(opts): build once, reuse across connections. opts.server
-- for a server context. Returns the context or nil, msg, name.
function M.context(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("coru.tls.context: bad argument #1 (table expected, got " .. type(opts) .. ")", 2)
  end
  modes.check_opts("coru.tls.context", 1, opts, CONTEXT_OPTS)
  return C.context(opts or {})
end

local function is_context(x)
  return type(x) == "userdata" and tostring(x):find("^coru%.tls%.context") ~= nil
end

local default_ctx = {}   -- client contexts on the system store, by verify flag

-- The context for opts: opts.context, a shared default client context
-- (system store, nothing else set), or a new one.
local function context_for(opts, server)
  if opts.context ~= nil then
    if not is_context(opts.context) then
      error("coru.tls: option 'context' must be a coru.tls.context", 4)
    end
    return opts.context
  end
  local plain = not server
  for _, k in ipairs(CTX_KEYS) do if opts[k] ~= nil then plain = false end end
  local verify = opts.verify ~= false
  if plain and default_ctx[verify] then return default_ctx[verify] end
  local o = {server = server or nil, verify = opts.verify}
  for _, k in ipairs(CTX_KEYS) do o[k] = opts[k] end
  local ctx, err, name = C.context(o)
  if not ctx then return nil, err, name end
  if plain then default_ctx[verify] = ctx end
  return ctx
end

local function check_opts(opts, fname, idx)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(fname .. ": bad argument #" .. idx .. " (table expected, got " .. type(opts) .. ")", 3)
  end
  for k in pairs(opts) do
    if not OPTS[k] then
      error(fname .. ": bad argument #" .. idx .. " (unknown option '" .. tostring(k) .. "')", 3)
    end
  end
  return opts
end

local function need_task(fname)
  error(fname .. ": needs a running task or a callback", 3)
end

-- Wrap stream (open, nobody reading it) for the side opts says. The
-- stream belongs to the TLS stream from now on.
local function do_wrap(stream, opts, cb)
  local server = opts.server and true or false
  local ctx, e, n = context_for(opts, server)
  if not ctx then
    stream:close()
    if cb then cb(e, n) return end
    return nil, e, n
  end
  local host = opts.servername or opts.host
  local verify_host
  if not server and opts.verify ~= false then verify_host = host end
  local ms = opts.handshake_timeout
  if ms == nil then ms = DEFAULT_HANDSHAKE_TIMEOUT end
  return C.wrap(stream, ctx, server, host, verify_host, ms, cb)
end

-- coru.tls.wrap(stream, opts [, cb]): TLS over an open stream, the
-- handshake done. Returns the TLS stream or nil, msg, name (the stream is
-- closed on failure).
function M.wrap(stream, opts, cb)
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  opts = check_opts(opts, "coru.tls.wrap", 2)
  if cb == nil and not current() then need_task("coru.tls.wrap") end
  return do_wrap(stream, opts, cb)
end

local function tcp_opts(opts)
  local o = {}
  for k, v in pairs(opts.tcp or {}) do o[k] = v end
  for _, k in ipairs{"timeout", "connect_timeout", "send_timeout", "read_timeout", "max_line",
                     "nodelay", "keepalive", "family", "backlog", "reuseport", "ipv6only"} do
    if o[k] == nil then o[k] = opts[k] end
  end
  return o
end

local apply_timeouts = require("coru.serve").apply_opts

local function do_connect(host, port, opts)
  local ctx, e, n = context_for(opts, false)   -- fail before connecting
  if not ctx then return nil, e, n end
  local raw
  raw, e, n = coru.tcp.connect(host, port, tcp_opts(opts))
  if not raw then return nil, e, n end
  local o = setmetatable({host = host, context = ctx}, {__index = opts})
  local s
  s, e, n = do_wrap(raw, o)
  if not s then return nil, e, n end
  apply_timeouts(s, opts)
  return s
end

-- coru.tls.connect(host, port [, opts] [, cb])
function M.connect(host, port, opts, cb)
  if type(host) ~= "string" then error("coru.tls.connect: bad argument #1 (string expected)", 2) end
  if type(port) ~= "number" then error("coru.tls.connect: bad argument #2 (number expected)", 2) end
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  opts = check_opts(opts, "coru.tls.connect", 3)
  if cb ~= nil then
    spawn(function()
      local s, e, n = do_connect(host, port, opts)
      if s then cb(nil, s) else cb(e, n) end
    end)
    return true
  end
  if not current() then need_task("coru.tls.connect") end
  return do_connect(host, port, opts)
end

-- coru.tls.listen(host, port, handler, opts): a TLS server, in the argument
-- order of coru.tcp.listen. The context is built once (or given as
-- opts.context). Each connection runs handler(stream) in its own task once
-- its handshake is done; a failed handshake goes to
-- opts.on_handshake_error(msg, name) if given. Returns the TCP server
-- (server:getsockname().port) or nil, msg, name.
-- The old order (host, port, opts, handler) is accepted for one release,
-- with a deprecation note on stderr (once per process).
local callable = modes.callable
local warned_order = false
function M.listen(host, port, handler, opts)
  if callable(opts) and not callable(handler) and (handler == nil or type(handler) == "table") then
    if not warned_order then
      warned_order = true
      io.stderr:write("coru.tls.listen: the order (host, port, opts, handler) is deprecated; "
        .. "use (host, port, handler, opts), as coru.tcp.listen\n")
    end
    handler, opts = opts, handler
  end
  if not callable(handler) then
    error("coru.tls.listen: bad argument #3 (function expected)", 2)   -- callable tables too, as tcp.listen
  end
  opts = check_opts(opts, "coru.tls.listen", 4)
  local ctx, e, n = opts.context, nil, nil
  if ctx == nil then
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.server = true
    ctx, e, n = context_for(o, true)
    if not ctx then return nil, e, n end
  end
  local wopts = setmetatable({context = ctx, server = true}, {__index = opts})
  local topts = tcp_opts(opts)
  topts.timeout, topts.connect_timeout, topts.send_timeout, topts.read_timeout, topts.max_line = nil
  return coru.tcp.listen(host, port, function(raw)
    local s, err, name = do_wrap(raw, wopts)
    if not s then
      if opts.on_handshake_error then opts.on_handshake_error(err, name) end
      return
    end
    apply_timeouts(s, opts)
    local ok, herr = xpcall(handler, debug.traceback, s)
    if not s:is_closing() then s:close() end
    if not ok then error(herr, 0) end
  end, topts)
end

return M
