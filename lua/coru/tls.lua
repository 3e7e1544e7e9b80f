-- coru.tls: TLS over any coru stream (OpenSSL 3, memory BIOs).
--
-- The C engine (coru._tls, src/tls.c) does no I/O: this module feeds it the
-- ciphertext read from the underlying stream ("the transport") and writes
-- out what it produces. The result is a stream with the sequential methods
-- of TCP (read, read_line, read_bytes, read_until, read_all, write,
-- shutdown, close, settimeouts, set_max_line) and luv's read_start/write(cb).
--
-- A transport is anything with, inside a task, read() -> data | nil (EOF) |
-- nil, msg, name; write(data) -> true | nil, msg, name; close(); and
-- optionally shutdown(). coru.tcp streams are transports.
local coru = require "coru"
local C = coru._tls
local spawn, current = coru.spawn, coru.current
local type, setmetatable, tostring, error = type, setmetatable, tostring, error
local concat, find, sub = table.concat, string.find, string.sub

local M = {}

M.openssl_version = C.openssl_version()

local DEFAULT_MAX_LINE = 64 * 1024
local DEFAULT_HANDSHAKE_TIMEOUT = 30000

local function need_task(fname)
  error(fname .. ": needs a running task or a callback", 3)
end

-- ------------------------------------------------------------- contexts

local CTX_KEYS = {"ca", "cert", "key", "passphrase", "alpn", "min_version", "max_version",
                  "ciphers", "ciphersuites"}

local default_ctx = {}   -- client contexts with the system store, by verify flag

-- coru.tls.context(opts): a context to reuse across connections. Returns
-- ctx or nil, msg, name (a file that cannot be read, a bad key...).
function M.context(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("coru.tls.context: bad argument #1 (table expected, got " .. type(opts) .. ")", 2)
  end
  return C.context(opts or {})
end

local function is_context(x)
  return type(x) == "userdata" and tostring(x):find("^coru%.tls%.context") ~= nil
end

-- The context for opts: opts.context, a shared default client one, or a
-- new one.
local function context_for(opts, server)
  if opts.context ~= nil then
    if not is_context(opts.context) then
      error("coru.tls: option 'context' must be a coru.tls.context", 3)
    end
    return opts.context
  end
  local plain = not server
  for _, k in ipairs(CTX_KEYS) do if opts[k] ~= nil then plain = false end end
  local verify = opts.verify ~= false
  if plain and default_ctx[verify] then return default_ctx[verify] end
  local o = {server = server or nil}
  for _, k in ipairs(CTX_KEYS) do o[k] = opts[k] end
  if opts.verify ~= nil then o.verify = opts.verify end
  local ctx, err, name = C.context(o)
  if not ctx then return nil, err, name end
  if plain then default_ctx[verify] = ctx end
  return ctx
end

-- --------------------------------------------------------------- streams

local S = {}
S.__index = S

function S:__tostring()
  return "coru.tls.stream: " .. tostring(self.io):gsub("^.-: ", "") .. (self.closed and " (closed)" or "")
end

local function new_stream(io, eng, server)
  return setmetatable({
    io = io, eng = eng, server = server,
    buf = "", pos = 1,           -- plaintext received and not given out: buf[pos..]
    eof = false,                 -- the peer sent close_notify
    err = nil, errname = nil,    -- sticky failure
    reading = false, closed = false, shut = false,
    wlock = coru.channel(1),     -- one writer at a time: a write is atomic
    max_line = DEFAULT_MAX_LINE,
    to_send = 0, to_read = 0,
  }, S)
end

local function sticky(self, msg, name)
  self.err, self.errname = msg, name
  return nil, msg, name
end

-- Send ciphertext on the transport.
local function send(self, data)
  if not data then return true end
  local io = self.io
  if self.to_send > 0 then
    local ok, e, n = coru.timeout(self.to_send, io.write, io, data)
    if ok == nil and e == "timeout" and n == nil then return nil, "timeout" end
    return ok, e, n
  end
  return io:write(data)
end

local function lower_read(self)
  local io = self.io
  if self.to_read > 0 then
    return coru.timeout(self.to_read, io.read, io)
  end
  return io:read()
end

-- Flush what the engine wants to say (handshake replies, tickets...).
local function flush(self)
  local eng = self.eng
  if eng:pending() == 0 then return true end
  return send(self, eng:take())
end

-- The next plaintext from the engine, reading the transport as needed.
-- Returns data, or nil (close_notify), or nil, msg, name.
local function more(self)
  if self.err then return nil, self.err, self.errname end
  if self.eof then return nil end
  local eng = self.eng
  while true do
    local p, e, n = eng:read()
    if p then
      if eng:pending() > 0 then flush(self) end
      return p
    end
    if p == nil then
      if e then return sticky(self, e, n) end
      self.eof = true
      return nil
    end
    if eng:pending() > 0 then
      local ok, e2, n2 = flush(self)
      if not ok then return nil, e2, n2 end
    end
    local data, e3, n3 = lower_read(self)
    if self.closed then return nil, "closed" end
    if not data then
      if e3 then
        if e3 == "timeout" or e3 == "closed" or e3 == "busy" then return nil, e3, n3 end
        return sticky(self, e3, n3)
      end
      local ok, e4, n4 = eng:eof()
      if ok then self.eof = true return nil end
      return sticky(self, e4, n4)
    end
    eng:feed(data)
  end
end

local function check_open(self, fname)
  if getmetatable(self) ~= S then error(fname .. ": not a coru.tls stream", 3) end
  if self.closed then error("coru.tls.stream: handle is closed", 3) end
  if not current() then need_task(fname) end
end

-- Run fn(self, ...) as a reader: one at a time.
local function as_reader(self, fname, fn, ...)
  check_open(self, fname)
  if self.reading then return nil, "busy" end
  self.reading = true
  local ok, a, b, c = pcall(fn, self, ...)
  self.reading = false
  if not ok then error(a, 0) end
  return a, b, c
end

local function take_all(self)
  local s = self.pos == 1 and self.buf or sub(self.buf, self.pos)
  self.buf, self.pos = "", 1
  return s
end

local function rd_chunk(self)
  if self.pos <= #self.buf then return take_all(self) end
  return more(self)
end

-- Append more plaintext to the buffer. Returns true, or false at a clean
-- end, or nil, msg, name.
local function fill(self)
  local p, e, n = more(self)
  if not p then
    if e then return nil, e, n end
    return false
  end
  if self.pos > #self.buf then self.buf = p
  else self.buf = sub(self.buf, self.pos) .. p end
  self.pos = 1
  return true
end

-- What a failed read returns as third value: the data read so far. After
-- a timeout (or busy) the data stays buffered for the next read.
local function partial(self, e)
  if e == "timeout" or e == "busy" then return nil end
  return take_all(self)
end

local function rd_until(self, delim, strip_cr)
  local from = self.pos
  while true do
    local i, j = find(self.buf, delim, from, true)
    if i then
      local stop = i - 1
      if strip_cr and stop >= self.pos and sub(self.buf, stop, stop) == "\r" then stop = stop - 1 end
      local s = sub(self.buf, self.pos, stop)
      self.pos = j + 1
      return s
    end
    if #self.buf - self.pos + 1 > self.max_line then
      return nil, "line too long", take_all(self)
    end
    from = math.max(self.pos, #self.buf - #delim + 2)
    local base = self.pos
    local ok, e, n = fill(self)
    from = from - base + 1
    if ok == nil then return nil, e, partial(self, e) end
    if ok == false then
      if self.pos > #self.buf then return nil end
      return nil, "eof", take_all(self)
    end
  end
end

local function rd_bytes(self, count)
  while #self.buf - self.pos + 1 < count do
    local ok, e, n = fill(self)
    if ok == nil then return nil, e, partial(self, e) end
    if ok == false then
      if self.pos > #self.buf then return nil end
      return nil, "eof", take_all(self)
    end
  end
  local s = sub(self.buf, self.pos, self.pos + count - 1)
  self.pos = self.pos + count
  return s
end

local function rd_all(self)
  local parts = {}
  if self.pos <= #self.buf then parts[1] = take_all(self) end
  while true do
    local p, e, n = more(self)
    if not p then
      if e then return nil, e, concat(parts) end
      return concat(parts)
    end
    parts[#parts + 1] = p
  end
end

function S:read() return as_reader(self, "tls:read", rd_chunk) end

function S:read_line()
  return as_reader(self, "tls:read_line", rd_until, "\n", true)
end

function S:read_until(delim)
  if type(delim) ~= "string" or delim == "" then
    error("tls:read_until: bad argument #1 (non-empty string expected)", 2)
  end
  return as_reader(self, "tls:read_until", rd_until, delim, false)
end

function S:read_bytes(n)
  if type(n) ~= "number" or n < 0 then error("tls:read_bytes: bad argument #1 (count >= 0 expected)", 2) end
  return as_reader(self, "tls:read_bytes", rd_bytes, math.floor(n))
end

function S:read_all() return as_reader(self, "tls:read_all", rd_all) end

-- Run fn(self, ...) in a new task and give its outcome to cb(err, ...).
local function cb_mode(self, fn, cb, ...)
  local args, n = {...}, select("#", ...)
  spawn(function()
    local ok, e, name = fn(self, unpack(args, 1, n))
    if ok == nil then cb(e or "closed", name) else cb(nil, ok) end
  end)
  return true
end

local function do_write(self, data)
  if self.err then return nil, self.err, self.errname end
  if self.shut then return nil, "closed" end
  local lock = self.wlock
  if not lock:send(true) then return nil, "closed" end
  local ok, a, b, c = pcall(function()
    local eng, i, len = self.eng, 1, #data
    repeat
      if self.closed then return nil, "closed" end
      local out, nexti, name = eng:write(data, i)
      if type(nexti) ~= "number" then return sticky(self, nexti, name) end
      i = nexti
      if out then
        local r, e, n = send(self, out)
        if not r then return nil, e, n end
      end
    until i > len
    return true
  end)
  if not self.closed then lock:recv() end
  if not ok then error(a, 0) end
  return a, b, c
end

-- write(data [, cb]): data is a string or a list of strings; returns true
-- once the ciphertext is taken by the transport.
function S:write(data, cb)
  if getmetatable(self) ~= S then error("tls:write: not a coru.tls stream", 2) end
  if self.closed then error("coru.tls.stream: handle is closed", 2) end
  if type(data) == "table" then data = concat(data)
  elseif type(data) ~= "string" then
    if type(data) == "number" then data = tostring(data)
    else error("tls:write: bad argument #1 (string or table expected, got " .. type(data) .. ")", 2) end
  end
  if cb ~= nil then return cb_mode(self, do_write, cb, data) end
  if not current() then need_task("tls:write") end
  return do_write(self, data)
end

local function do_shutdown(self)
  if self.shut then return true end
  local lock = self.wlock
  if not lock:send(true) then return nil, "closed" end
  self.shut = true
  local ok, out, e, n = pcall(function()
    local out, e, n = self.eng:close_notify()
    if e then return nil, e, n end
    local r, e2, n2 = send(self, out)
    if not r then return nil, e2, n2 end
    if self.io.shutdown then return self.io:shutdown() end
    return true
  end)
  if not self.closed then lock:recv() end
  if not ok then error(out, 0) end
  return out, e, n
end

-- shutdown([cb]): send close_notify, then shut the transport's write side.
function S:shutdown(cb)
  if self.closed then error("coru.tls.stream: handle is closed", 2) end
  if cb ~= nil then return cb_mode(self, do_shutdown, cb) end
  if not current() then need_task("tls:shutdown") end
  return do_shutdown(self)
end

-- close([cb]): best-effort close_notify, close the transport; a waiting
-- reader gets nil, "closed". Closing twice is harmless.
function S:close(cb)
  if self.closed then return end
  self.closed = true
  self.wlock:close()
  if self.read_task then self.read_task:cancel("closed") self.read_task = nil end
  local eng = self.eng
  if not self.shut and not self.err and eng:handshake_done() then
    self.shut = true
    local out = eng:close_notify()
    if out and self.io.write then pcall(self.io.write, self.io, out, function() end) end
  end
  eng:free()
  self.io:close(cb)
end

function S:is_closing() return self.closed end

-- settimeouts(connect, send, read) in milliseconds (nil or 0: none).
function S:settimeouts(connect, send_ms, read_ms)
  self.to_connect = connect or 0
  self.to_send = send_ms or 0
  self.to_read = read_ms or 0
  return self
end

function S:set_max_line(n)
  if type(n) ~= "number" or n < 1 then error("tls:set_max_line: bad argument #1 (count > 0 expected)", 2) end
  self.max_line = n
  return self
end

-- luv style: cb(err, data) for each chunk, cb(nil, nil) at the end.
function S:read_start(cb)
  if type(cb) ~= "function" then error("tls:read_start: bad argument #1 (function expected)", 2) end
  if self.closed then error("coru.tls.stream: handle is closed", 2) end
  if self.read_task then return nil, "busy" end
  self.read_task = spawn(function()
    while true do
      local data, e = as_reader(self, "tls:read_start", rd_chunk)
      if data then cb(nil, data)
      else
        self.read_task = nil
        if e then if e ~= "closed" then cb(e) end else cb(nil, nil) end
        return
      end
    end
  end)
  return 0
end

function S:read_stop()
  if self.read_task then
    local t = self.read_task
    self.read_task = nil
    t:cancel("read_stop")
  end
  return 0
end

function S:peer_certificate() return self.eng:peer_certificate() end
function S:cipher() return self.eng:cipher() end
function S:version() return self.eng:version() end
function S:alpn() return self.eng:alpn() end
function S:transport() return self.io end

for _, k in ipairs{"getpeername", "getsockname", "nodelay", "keepalive"} do
  S[k] = function(self, ...)
    local f = self.io[k]
    if not f then return nil, "not supported by the transport" end
    return f(self.io, ...)
  end
end

-- ------------------------------------------------------------ handshake

local function handshake(self)
  local eng = self.eng
  while true do
    local ok, e, n = eng:handshake()
    if eng:pending() > 0 then
      local r, e2, n2 = flush(self)
      if not r and ok ~= nil then return nil, e2, n2 end
    end
    if ok then return true end
    if ok == nil then return nil, e, n end
    local data, e3, n3 = self.io:read()
    if not data then
      if e3 then return nil, e3, n3 end
      return eng:eof()
    end
    eng:feed(data)
  end
end

-- wrap(stream, opts): TLS over an open stream, handshake done. opts.server
-- for the server side (with opts.context or cert/key). Returns the TLS
-- stream or nil, msg, name (the transport is closed on failure).
local function do_wrap(io, opts)
  local server = opts.server and true or false
  local ctx, e, n = context_for(opts, server)
  if not ctx then
    io:close()
    return nil, e, n
  end
  if ctx:is_server() ~= server then
    error("coru.tls: a " .. (server and "server" or "client") .. " needs a " ..
          (server and "server" or "client") .. " context", 3)
  end
  local verify_host
  if not server and opts.verify ~= false then verify_host = opts.servername or opts.host end
  local eng = C.engine(ctx, server, opts.servername or opts.host, verify_host)
  local self = new_stream(io, eng, server)
  local ms = opts.handshake_timeout or DEFAULT_HANDSHAKE_TIMEOUT
  local ok, e2, n2
  if ms and ms > 0 then
    ok, e2, n2 = coru.timeout(ms, handshake, self)
    if ok == nil and e2 == "timeout" and n2 == nil then
      e2, n2 = "ETLS: handshake timed out", "timeout"
    end
  else
    ok, e2, n2 = handshake(self)
  end
  if not ok then
    self.closed = true
    eng:free()
    io:close()
    return nil, e2, n2
  end
  return self
end

local function check_opts(opts, fname, idx)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(fname .. ": bad argument #" .. idx .. " (table expected, got " .. type(opts) .. ")", 3)
  end
  return opts
end

function M.wrap(io, opts, cb)
  if io == nil or (type(io) ~= "table" and type(io) ~= "userdata") then
    error("coru.tls.wrap: bad argument #1 (stream expected)", 2)
  end
  if type(opts) == "function" and cb == nil then opts, cb = nil, opts end
  opts = check_opts(opts, "coru.tls.wrap", 2)
  if cb ~= nil then
    spawn(function()
      local s, e, n = do_wrap(io, opts)
      if s then cb(nil, s) else cb(e, n) end
    end)
    return true
  end
  if not current() then need_task("coru.tls.wrap") end
  return do_wrap(io, opts)
end

local function tcp()
  local t = coru.tcp
  if not t or not t.connect then error("coru.tls: coru.tcp is not available", 3) end
  return t
end

local function do_connect(host, port, opts)
  local s, e, n = tcp().connect(host, port, opts.tcp)
  if not s then return nil, e, n end
  local o = setmetatable({host = host}, {__index = opts})
  return do_wrap(s, o)
end

-- connect(host, port [, opts] [, cb])
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

-- listen(host, port, opts, handler): one task per connection; handler(s)
-- gets the TLS stream once the handshake is done. A failed handshake is
-- passed to opts.on_handshake_error(err, name) if given, else dropped.
function M.listen(host, port, opts, handler)
  opts = check_opts(opts, "coru.tls.listen", 3)
  if type(handler) ~= "function" then error("coru.tls.listen: bad argument #4 (function expected)", 2) end
  local ctx, e, n = opts.context
  if not ctx then
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.server = true
    ctx, e, n = context_for(o, true)
    if not ctx then return nil, e, n end
  end
  local wopts = setmetatable({context = ctx, server = true}, {__index = opts})
  return tcp().listen(host, port, function(s)
    local t, err, name = do_wrap(s, wopts)
    if not t then
      if opts.on_handshake_error then opts.on_handshake_error(err, name) end
      return
    end
    local ok, herr = pcall(handler, t)
    t:close()
    if not ok then error(herr, 0) end
  end, opts.tcp)
end

M.Stream = S
return M
