-- coru.jsonl: a JSON-lines connection (one JSON object per "\n"-ended line,
-- both ways) for protocols where either side may send an event at any time
-- and some messages expect a reply (Floobits, LSP-over-lines, ...).
--
--   jsonl.connect(opts)           -> conn | nil, msg, name      (task only)
--   jsonl.wrap(stream [, opts])   -> conn
--   jsonl.listen(opts, handler)   -> server | nil, msg, name
--   conn:send(msg) / conn:request(msg [, opts]) / conn:reply(req, msg)
--   conn:on(name, fn [, opts]) / conn:on_bad_input(fn) / conn:on_close(fn)
--   conn:close([reason]) / conn:wait() / conn:is_closed()
--
-- docs/jsonl.md is the reference. Three tasks carry a connection: the
-- reader (reads lines, answers pings, resolves requests at once), the
-- dispatcher (runs handlers one at a time in arrival order) and the
-- caller's own tasks. Replies never queue behind handlers, so a handler may
-- make requests of its own.
local coru = require "coru"
local spawn, current, now = coru.spawn, coru.current, coru.now
local type, pairs, error, pcall, tostring, select = type, pairs, error, pcall, tostring, select
local floor, huge = math.floor, math.huge
local yield = coroutine.yield

-- the peer's JSON: 200 levels at most, a sparse array written as an object
-- (coru.json refuses NaN, Infinity and invalid UTF-8 both ways)
local json = require("coru.json").new{max_depth = 200, sparse_arrays = "object"}
local jencode, jdecode, jarray, jobject, null = json.encode, json.decode, json.array, json.object, json.null

local M = {}

M.null = null

-- jsonl.array(t): t (default {}) is written as a JSON array even when empty
-- (coru.json's array mark).
function M.array(t)
  t = t or {}
  if type(t) ~= "table" then error("coru.jsonl.array: table expected, got " .. type(t), 2) end
  return jarray(t)
end

-- jsonl.object(t): t (default {}) is written as a JSON object even when it
-- has only integer keys or none (coru.json's object mark).
function M.object(t)
  t = t or {}
  if type(t) ~= "table" then error("coru.jsonl.object: table expected, got " .. type(t), 2) end
  return jobject(t)
end

function M.is_null(v) return v == null end

-- jsonl.encode(msg) -> one line of JSON without the newline (raises on a
-- value JSON cannot carry: a function, NaN, a cycle, invalid UTF-8).
function M.encode(v)
  local s, err = jencode(v)
  if not s then error((err:gsub("^json%.encode: ", "")), 2) end
  return s
end

-- jsonl.decode(line) -> value | nil, msg. Never raises.
function M.decode(s)
  local v, err = jdecode(s)
  if err then return nil, (err:gsub("^json%.decode: ", "")) end
  return v
end

local function is_int(v) return type(v) == "number" and v == floor(v) and v > -huge and v < huge end

-- ------------------------------------------------------------ the conn

local Conn = {}
Conn.__index = Conn

local DEFAULTS = {
  max_line = 1024 * 1024,
  request_timeout = 30000,
  bad_input = "drop",
  ping = "ping",
  pong = "pong",
  disconnect = "disconnect",
  max_queue = 100000,
}

local function opt(opts, k)
  local v = opts[k]
  if v == nil then return DEFAULTS[k] end
  return v
end

local function report(err)
  -- a failing handler: on_error hears it (with its traceback), the
  -- connection goes on
  spawn(error, err, 0)
end

-- Resume a waiting request once, from whichever of reply/timeout/close
-- comes first.
local function settle(p, ...)
  if p.done then return end
  p.done = true
  if p.timer then p.timer:close() p.timer = nil end
  local r = p.resume
  if r then p.resume = nil r(...) else p.result = {n = select("#", ...), ...} end
end

local function close_now(self, reason)
  if self.closed then return end
  self.closed = true
  self.reason = reason
  local s = self.stream
  if s and not s:is_closing() then s:close() end
  for id, p in pairs(self.pending) do
    self.pending[id] = nil
    settle(p, nil, reason)
  end
  self:_wake()   -- the dispatcher drains what came before, then runs on_close
end

local function bad(self, reason, line)
  local fns = self.bad_fns
  for i = 1, #fns do
    local ok, e = pcall(fns[i], reason, line)
    if not ok then report(e) end
  end
  if self.bad_input == "close" then close_now(self, reason) end
end

function Conn:_wake()
  local w = self.waiting
  if w then self.waiting = nil w() end
end

-- A reply matches a pending request on res_id and on its predicate.
local function match(self, msg)
  local id = msg.res_id
  if id == nil then return false end
  local p = self.pending[id]
  if not p then return false end
  local ok, yes = pcall(p.expect, msg, p.msg)
  if not ok then report(yes) return false end
  if not yes then return false end
  self.pending[id] = nil
  if p.on_reply then
    local ok2, e = pcall(p.on_reply, msg)
    if not ok2 then report(e) end
  end
  settle(p, msg)
  return true
end

local function NOOP() end

local function write_line(self, line, cb)
  local s = self.stream
  if cb or not current() then
    s:write(line, function(err) if cb then cb(err) end end)
    return true
  end
  local ok, err, name = s:write(line)
  if not ok then return nil, err, name end
  return true
end

local function handle(self, line)
  if line == "" then return end
  local first = line:match("^%s*(.)")
  local msg, err = M.decode(line)
  if msg == nil then return bad(self, "malformed JSON: " .. err, line) end
  if first ~= "{" or type(msg) ~= "table" then return bad(self, "not a JSON object", line) end
  local name = msg.name
  if name ~= nil and type(name) ~= "string" then return bad(self, "bad message: 'name' is not a string", line) end
  if msg.res_id ~= nil and not is_int(msg.res_id) then return bad(self, "bad message: 'res_id' is not an integer", line) end
  if msg.req_id ~= nil and not is_int(msg.req_id) then return bad(self, "bad message: 'req_id' is not an integer", line) end
  self.received = self.received + 1
  if match(self, msg) then return end
  if name ~= nil and name == self.disconnect_name then
    local r = msg.reason
    self.peer_reason = type(r) == "string" and r or "disconnected"
    -- pending requests fail now with the peer's reason; the event still runs
    for id, p in pairs(self.pending) do
      self.pending[id] = nil
      settle(p, nil, self.peer_reason)
    end
  end
  if name ~= nil and name == self.ping_name and msg.req_id ~= nil and self.pong_name then
    write_line(self, M.encode({name = self.pong_name, res_id = msg.req_id}) .. "\n", NOOP)
    if not self.handlers[name] then return end
  end
  local h = name and self.handlers[name] or self.handlers["*"]
  if h and h.immediate then
    local ok, e = pcall(h.fn, msg, self)
    if not ok then report(e) elseif type(e) == "table" and msg.req_id ~= nil then self:reply(msg, e) end
    return
  end
  if h and h.concurrent then
    spawn(function()
      local ok, e = pcall(h.fn, msg, self)
      if not ok then report(e) elseif type(e) == "table" and msg.req_id ~= nil and not self.closed then self:reply(msg, e) end
    end)
    return
  end
  if self.qtail - self.qhead + 1 >= self.max_queue then
    close_now(self, "event queue full")
    return
  end
  self.qtail = self.qtail + 1
  self.queue[self.qtail] = msg
  self:_wake()
end

local function reader(self)
  local s = self.stream
  while not self.closed do
    local line, err = s:read_line()
    if self.closed then break end
    if line then
      self.last_rx = now()
      self.pinged = nil
      handle(self, line)
    elseif err == "timeout" then
      local idle = now() - self.last_rx
      if self.idle_timeout and idle >= self.idle_timeout then
        close_now(self, "idle timeout")
      elseif self.heartbeat and idle >= self.heartbeat then
        if not self.pinged then
          self.pinged = now()
          self.next_id = self.next_id + 1
          write_line(self, M.encode({name = self.ping_name, req_id = self.next_id}) .. "\n", NOOP)
        elseif now() - self.pinged >= self.heartbeat_timeout then
          close_now(self, "heartbeat timeout")
        end
      end
    elseif err == "line too long" then
      bad(self, "line too long (over " .. self.max_line .. " bytes)", nil)
    else
      close_now(self, self.peer_reason or (err == "eof" and "closed by peer") or err or "closed by peer")
    end
  end
end

local function dispatcher(self)
  local q = self.queue
  while true do
    if self.qhead <= self.qtail then
      local msg = q[self.qhead]
      q[self.qhead] = nil
      if self.qhead == self.qtail then self.qhead, self.qtail = 1, 0
      else self.qhead = self.qhead + 1 end
      local h = msg.name and self.handlers[msg.name] or self.handlers["*"]
      if h then
        local ok, e = pcall(h.fn, msg, self)
        if not ok then report(e)
        elseif type(e) == "table" and msg.req_id ~= nil and not self.closed then self:reply(msg, e) end
      end
    elseif self.closed then
      break
    else
      yield(function(resume) self.waiting = resume end)
    end
  end
  local fns = self.close_fns
  for i = 1, #fns do
    local ok, e = pcall(fns[i], self.reason)
    if not ok then report(e) end
  end
  self.finished = true
  local ws = self.closed_waiters
  self.closed_waiters = {}
  for i = 1, #ws do ws[i](self.reason) end
end

local function check_ms(v, what)
  if v == nil or v == false then return nil end
  if type(v) ~= "number" or v <= 0 then error("coru.jsonl: option '" .. what .. "' must be a positive number of ms", 4) end
  return v
end

-- jsonl.wrap(stream [, opts]) -> conn. The stream (TCP, pipe, TLS, ...)
-- belongs to the connection from now on.
function M.wrap(stream, opts)
  if type(stream) ~= "userdata" and type(stream) ~= "table" then
    error("coru.jsonl.wrap: bad argument #1 (stream expected, got " .. type(stream) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("coru.jsonl.wrap: bad argument #2 (table expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  local bad_input = opt(opts, "bad_input")
  if bad_input ~= "drop" and bad_input ~= "close" then
    error("coru.jsonl: option 'bad_input' must be \"drop\" or \"close\"", 2)
  end
  local self = setmetatable({
    stream = stream,
    next_id = 0,
    pending = {},
    handlers = {},
    bad_fns = {},
    close_fns = {},
    closed_waiters = {},
    queue = {},
    qhead = 1,
    qtail = 0,
    received = 0,
    last_rx = now(),
    max_line = opt(opts, "max_line"),
    request_timeout = check_ms(opt(opts, "request_timeout"), "request_timeout"),
    idle_timeout = check_ms(opts.idle_timeout, "idle_timeout"),
    heartbeat = check_ms(opts.heartbeat, "heartbeat"),
    heartbeat_timeout = check_ms(opts.heartbeat_timeout, "heartbeat_timeout"),
    bad_input = bad_input,
    ping_name = opt(opts, "ping") or nil,
    pong_name = opt(opts, "pong") or nil,
    disconnect_name = opt(opts, "disconnect") or nil,
    max_queue = opt(opts, "max_queue"),
  }, Conn)
  if self.heartbeat and not self.heartbeat_timeout then self.heartbeat_timeout = self.heartbeat end
  if self.heartbeat and not self.ping_name then error("coru.jsonl: option 'heartbeat' needs a 'ping' name", 2) end
  local t = huge
  for _, v in ipairs{self.idle_timeout or huge, self.heartbeat or huge, self.heartbeat_timeout or huge} do
    if v < t then t = v end
  end
  if t < huge then
    self.tick = math.max(10, floor(t / 4))
    stream:settimeouts(nil, opts.send_timeout, self.tick)
  elseif opts.send_timeout then
    stream:settimeouts(nil, opts.send_timeout, nil)
  end
  stream:set_max_line(self.max_line)
  self.reader_task = spawn(reader, self)
  self.dispatch_task = spawn(dispatcher, self)
  return self
end

-- conn:on(name, fn [, {concurrent = true} | {immediate = true}]): fn(msg,
-- conn) for each message of that name ("*": any message without a handler
-- of its own). A handler that returns a table answers a message that had a
-- req_id. immediate: runs in the reader as the line arrives, in wire order
-- with replies' on_reply; it must not suspend.
function Conn:on(name, fn, o)
  if type(name) ~= "string" then error("coru.jsonl: on: bad argument #1 (string expected)", 2) end
  if fn ~= nil and type(fn) ~= "function" then error("coru.jsonl: on: bad argument #2 (function expected)", 2) end
  if fn == nil then self.handlers[name] = nil return self end
  local concurrent = type(o) == "table" and o.concurrent or false
  local immediate = type(o) == "table" and o.immediate or false
  if concurrent and immediate then error("coru.jsonl: on: a handler is concurrent or immediate, not both", 2) end
  self.handlers[name] = {fn = fn, concurrent = concurrent, immediate = immediate}
  return self
end

function Conn:on_bad_input(fn)
  if type(fn) ~= "function" then error("coru.jsonl: on_bad_input: function expected", 2) end
  self.bad_fns[#self.bad_fns + 1] = fn
  return self
end

function Conn:on_close(fn)
  if type(fn) ~= "function" then error("coru.jsonl: on_close: function expected", 2) end
  self.close_fns[#self.close_fns + 1] = fn
  return self
end

-- an error message without the "file:line: " of where it was raised
local function clean(e) return (tostring(e):gsub("^[^:]*:%d+: ", "")) end

local function encode_msg(msg, fname)
  if type(msg) ~= "table" then error("coru.jsonl: " .. fname .. ": bad argument #1 (table expected, got " .. type(msg) .. ")", 3) end
  local ok, line = pcall(M.encode, msg)
  if not ok then error("coru.jsonl: " .. fname .. ": cannot encode the message: " .. clean(line), 3) end
  return line .. "\n"
end

-- conn:send(msg [, cb]) -> true | nil, msg, name. In a task it returns
-- once the line is written (backpressure); with cb, or outside a task, it
-- queues the line and returns true.
function Conn:send(msg, cb)
  if msg ~= nil and type(msg) == "table" and msg.req_id ~= nil then
    error("coru.jsonl: send: a req_id is assigned by request, not set by hand", 2)
  end
  local line = encode_msg(msg, "send")
  if self.closed then
    if cb then cb(self.reason) end
    return nil, self.reason
  end
  return write_line(self, line, cb)
end

-- conn:reply(req, msg): msg with res_id = req.req_id.
function Conn:reply(req, msg)
  if type(req) ~= "table" or not is_int(req.req_id) then error("coru.jsonl: reply: the request has no req_id", 2) end
  if type(msg) ~= "table" then error("coru.jsonl: reply: bad argument #2 (table expected)", 2) end
  msg.res_id = req.req_id
  local line = encode_msg(msg, "reply")
  if self.closed then return nil, self.reason end
  return write_line(self, line)
end

local function default_expect(reply, msg)
  local n = reply.name
  return n == "ack" or n == "error" or msg.name == nil or n == msg.name
end

local function name_set(expect)
  if type(expect) == "string" then return function(r) return r.name == expect end end
  local set = {}
  for _, n in ipairs(expect) do set[n] = true end
  return function(r) return set[r.name] == true end
end

-- conn:request(msg [, opts | timeout]) -> reply | nil, reason. msg gets the
-- next req_id. opts: timeout (ms; false: none), expect (a name, a list of
-- names, or fn(reply, msg) -> bool). Task only.
function Conn:request(msg, o)
  if type(msg) ~= "table" then error("coru.jsonl: request: bad argument #1 (table expected, got " .. type(msg) .. ")", 2) end
  if not current() then error("coru.jsonl: request: needs a running task", 2) end
  if type(o) == "number" or o == false then o = {timeout = o} elseif o == nil then o = {} end
  if type(o) ~= "table" then error("coru.jsonl: request: bad argument #2 (table or number expected)", 2) end
  local expect = o.expect
  if expect == nil then expect = default_expect
  elseif type(expect) == "string" or type(expect) == "table" then expect = name_set(expect)
  elseif type(expect) ~= "function" then error("coru.jsonl: request: 'expect' must be a name, a list or a function", 2) end
  local timeout = o.timeout
  if timeout == nil then timeout = self.request_timeout end
  if self.closed then return nil, self.reason end
  self.next_id = self.next_id + 1
  local id = self.next_id
  msg.req_id = id
  local ok, line = pcall(M.encode, msg)
  if not ok then
    msg.req_id = nil
    error("coru.jsonl: request: cannot encode the message: " .. clean(line), 2)
  end
  if o.on_reply ~= nil and type(o.on_reply) ~= "function" then error("coru.jsonl: request: 'on_reply' must be a function", 2) end
  local p = {msg = msg, expect = expect, on_reply = o.on_reply}
  self.pending[id] = p
  local s = self.stream
  s:write(line .. "\n", function(err)
    if err and self.pending[id] == p then
      self.pending[id] = nil
      settle(p, nil, err)
    end
  end)
  if timeout and not p.done then
    p.timer = coru.new_timer()
    p.timer:start(timeout, 0, function()
      if self.pending[id] == p then self.pending[id] = nil end
      settle(p, nil, "timeout")
    end)
  end
  if p.result then return unpack(p.result, 1, p.result.n) end
  local okk, r, e = pcall(yield, function(resume) p.resume = resume end)
  if not okk then
    -- cancelled: withdraw the request
    if self.pending[id] == p then self.pending[id] = nil end
    p.done = true
    p.resume = nil
    if p.timer then p.timer:close() p.timer = nil end
    error(r, 0)
  end
  return r, e
end

function Conn:close(reason)
  close_now(self, reason or "closed")
  return true
end

function Conn:is_closed() return self.closed == true end

-- conn:wait() -> reason, once the connection has closed and every handler
-- of what came before it (and on_close) has run. Task only.
function Conn:wait()
  if self.finished then return self.reason end
  if not current() then error("coru.jsonl: wait: needs a running task", 2) end
  return yield(function(resume) self.closed_waiters[#self.closed_waiters + 1] = resume end)
end

function Conn:pending_requests()
  local n = 0
  for _ in pairs(self.pending) do n = n + 1 end
  return n
end

-- ------------------------------------------------------------ connect/listen

local STREAM_KEYS = {"connect_timeout", "nodelay", "keepalive", "family"}

-- jsonl.connect{host, port, tls = opts or false, timeout, ...} -> conn |
-- nil, msg, name. Task only.
function M.connect(opts)
  if type(opts) ~= "table" then error("coru.jsonl.connect: bad argument #1 (table expected, got " .. type(opts) .. ")", 2) end
  if type(opts.host) ~= "string" then error("coru.jsonl.connect: option 'host' must be a string", 2) end
  if type(opts.port) ~= "number" then error("coru.jsonl.connect: option 'port' must be a number", 2) end
  if opts.tls ~= nil and opts.tls ~= false and type(opts.tls) ~= "table" then
    error("coru.jsonl.connect: option 'tls' must be a table or false", 2)
  end
  if not current() then error("coru.jsonl.connect: needs a running task", 2) end
  local so = {}
  for _, k in ipairs(STREAM_KEYS) do so[k] = opts[k] end
  so.connect_timeout = so.connect_timeout or opts.timeout
  local s, err, name
  if opts.tls then
    for k, v in pairs(opts.tls) do so[k] = v end
    if so.handshake_timeout == nil then so.handshake_timeout = opts.timeout end
    s, err, name = coru.tls.connect(opts.host, opts.port, so)
  else
    s, err, name = coru.tcp.connect(opts.host, opts.port, so)
  end
  if not s then return nil, err, name end
  s:settimeouts(nil, nil, nil)
  return M.wrap(s, opts)
end

-- jsonl.listen(opts, handler) -> server | nil, msg, name. opts: host
-- (default 127.0.0.1), port (0: any), tls (server opts: cert, key, ...),
-- and the connection options of wrap. handler(conn) runs in the
-- connection's task; when it returns the connection stays open until it
-- closes (handlers set with conn:on keep serving it).
function M.listen(opts, handler)
  if type(opts) ~= "table" then error("coru.jsonl.listen: bad argument #1 (table expected, got " .. type(opts) .. ")", 2) end
  if type(handler) ~= "function" then error("coru.jsonl.listen: bad argument #2 (function expected)", 2) end
  local function serve(s)
    local conn = M.wrap(s, opts)
    local ok, err = pcall(handler, conn)
    if not ok then
      conn:close("handler failed")
      error(err, 0)
    end
    conn:wait()
  end
  if opts.tls then
    if type(opts.tls) ~= "table" then error("coru.jsonl.listen: option 'tls' must be a table", 2) end
    local o = {}
    for k, v in pairs(opts.tls) do o[k] = v end
    o.backlog, o.reuseport = opts.backlog, opts.reuseport
    return coru.tls.listen(opts.host or "127.0.0.1", opts.port or 0, serve, o)
  end
  return coru.tcp.listen(opts.host or "127.0.0.1", opts.port or 0, serve,
                         {backlog = opts.backlog, reuseport = opts.reuseport})
end

return M
