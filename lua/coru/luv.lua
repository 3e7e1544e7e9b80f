-- coru.luv: luv's API (luv 1.44, the `uv` of luvit) over coru, so that
-- unchanged luv programs run on coru and can mix with coru's tasks.
--
--   package.preload.luv = function() return require "coru.luv" end
--   (or `coru --luv script.lua`)
--
-- Where coru's own API chose otherwise, this module gives luv's behaviour
-- and leaves the `coru` table as it is:
--   * callbacks of non-fs operations get luv's bare error name
--     ("ECONNREFUSED"), fs callbacks luv's full message;
--   * write, shutdown, connect, udp_send and the other requests without a
--     callback are queued and return a request object, wherever they are
--     called (coru's suspending forms stay in the coru table);
--   * fs and DNS calls without a callback are synchronous, also inside a
--     task (coru.fs_* and coru.getaddrinfo suspend the task instead);
--     uv.sleep blocks, as in luv;
--   * a malformed IP address or a wrong argument type raises;
--   * a stream's read_start callback is not called again after close;
--   * uv.run([mode]) and uv.stop() work from plain LuaJIT and from inside a
--     task (the host's main chunk): there it waits for the loop to run dry.
-- docs/luv.md lists what is covered and the remaining differences.
local coru = require "coru"
local C = coru._luv
local sync = C.sync
local registry = debug.getregistry()
local setmetatable, getmetatable, type, select, error, pcall = setmetatable, getmetatable, type, select, error, pcall
local tostring, pairs, concat = tostring, pairs, table.concat

local uv = {}

-- ------------------------------------------------------------- helpers

local callable = require("coru.modes").callable   -- never getmetatable() of a userdata (modes.lua)

local function argerror(n, fname, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end

local function checkcb(f, n, fname, optional)
  if f == nil and optional then return nil end
  if not callable(f) then
    argerror(n, fname, "function expected, got " .. type(f))
  end
  return f
end

-- luv's callbacks of non-fs requests get the bare error name.
local function ename(err)
  if err == nil or type(err) ~= "string" then return err end
  if err == "closed" then return "ECANCELED" end
  return err:match("^(E[%u%d_]+):") or err:match("^(UNKNOWN):") or err
end

local function namecb(cb)
  return function(err, ...) return cb(ename(err), ...) end
end

local function noop() end

local ERRS = {
  EBADF = "EBADF: bad file descriptor",
  EINVAL = "EINVAL: invalid argument",
  ENOENT = "ENOENT: no such file or directory",
  ENOTCONN = "ENOTCONN: socket is not connected",
}

-- ------------------------------------------------------------ requests

local REQ_IDS = {req = 1, connect = 2, write = 3, shutdown = 4, udp_send = 5, fs = 6, work = 7,
                 getaddrinfo = 8, getnameinfo = 9, random = 10}
local Req = {__name = "uv_req_t"}
Req.__index = Req
Req.__tostring = function(r) return ("uv_%s_t: 0x%08x"):format(r.type, r.id) end

local nreq = 0
local function newreq(t)
  nreq = nreq + 1
  return setmetatable({type = t, id = nreq}, Req)
end

-- A request handed to libuv through coru cannot be withdrawn from here:
-- for the kinds libuv can cancel, the answer is libuv's "already running".
function Req:cancel()
  if self.type == "fs" or self.type == "work" or self.type == "getaddrinfo"
     or self.type == "getnameinfo" or self.type == "random" then
    return nil, "EBUSY: resource busy or locked", "EBUSY"
  end
  return nil, "EINVAL: invalid argument", "EINVAL"
end

function Req:get_type() return self.type, REQ_IDS[self.type] end

local function isreq(r) return type(r) == "table" and getmetatable(r) == Req end

function uv.cancel(req)
  if not isreq(req) then argerror(1, "cancel", "uv_req_t expected, got " .. type(req)) end
  return req:cancel()
end

function uv.req_get_type(req)
  if not isreq(req) then argerror(1, "req_get_type", "uv_req_t expected, got " .. type(req)) end
  return req:get_type()
end

-- ---------------------------------------------------- handles: luv's face

-- A handle made through this module gets a metatable of its own kind:
-- luv's name (uv_tcp_t), luv's methods, then coru's (read_line, ...).
-- coru's C type checks find the same handle type behind it.
local methods = {}      -- luv type name -> method table
local luvmt = {}        -- coru metatable -> luv metatable

local function adopt(h)
  if type(h) ~= "userdata" then return h end
  local mt = debug.getmetatable(h)    -- coru's metatables are private (__metatable)
  local lmt = luvmt[mt]
  if not lmt then
    local t = C.handle_type_of(h)
    if not t or not methods[t] then return h end
    local index = {}                                      -- one flat table: a method is one lookup
    for k, v in pairs(mt.__index) do index[k] = v end     -- coru's methods
    for k, v in pairs(methods[t]) do index[k] = v end     -- luv's win where names meet
    lmt = {__name = "uv_" .. t .. "_t", __index = index, __tostring = mt.__tostring, __gc = mt.__gc,
           __metatable = mt.__metatable}
    registry[lmt] = registry[mt]
    luvmt[mt] = lmt
    luvmt[lmt] = lmt
  end
  debug.setmetatable(h, lmt)
  return h
end

-- Results of a constructor: the handle (adopted) or fail.
local function made(h, ...)
  if h == nil then return nil, ... end
  return adopt(h)
end

local function ctor(name, coru_name)
  local f = coru[coru_name or name]
  uv[name] = function(...) return made(f(...)) end
end

for _, n in ipairs {"new_timer", "new_idle", "new_prepare", "new_check", "new_signal",
                    "new_fs_event", "new_fs_poll", "new_tcp", "new_pipe", "new_udp", "new_tty",
                    "new_poll", "new_socket_poll"} do
  ctor(n)
end

function uv.new_async(cb)
  checkcb(cb, 1, "new_async")
  return made(coru.new_async(cb))
end

-- luv checks the addresses it is given and raises on a malformed one.
local function checkip(host, port, fname, n)
  if type(host) ~= "string" then argerror(n, fname, "string expected, got " .. type(host)) end
  if type(port) ~= "number" then argerror(n + 1, fname, "number expected, got " .. type(port)) end
  if not C.is_ip(host) or port < 0 or port > 65535 then
    error(("Invalid IP address or port [%s:%s]"):format(host, tostring(port)), 3)
  end
end

-- A buffer: a string, or an array of strings (and numbers, as luv allows).
local function flat(data)
  if type(data) ~= "table" then return data end
  local t = {}
  for i = 1, #data do t[i] = tostring(data[i]) end
  return concat(t)
end

-- ---------------------------------------------------------------- loop

local run_modes = {default = true, once = true, nowait = true}

function uv.run(mode)
  if mode ~= nil and not run_modes[mode] then
    argerror(1, "run", ("invalid option '%s'"):format(tostring(mode)))
  end
  return C.run(mode)
end

uv.stop = C.stop
uv.loop_mode = C.loop_mode
uv.loop_alive = C.loop_alive
uv.backend_fd = C.backend_fd
uv.backend_timeout = C.backend_timeout
uv.loop_configure = C.loop_configure
uv.metrics_idle_time = C.metrics_idle_time

-- The runtime owns its loop: it is closed when the runtime shuts down.
function uv.loop_close()
  if C.loop_alive() then return nil, "EBUSY: resource busy or locked", "EBUSY" end
  return 0
end

function uv.walk(cb)
  checkcb(cb, 1, "walk")
  coru.walk(cb)   -- handles as they are: adopting would change them for coru's code too
end

-- ------------------------------------------------------------- handles

for _, n in ipairs {"close", "is_active", "is_closing", "ref", "unref", "has_ref", "fileno"} do
  uv[n] = coru[n]
end
uv.handle_get_type = coru.get_type
uv.send_buffer_size = C.send_buffer_size
uv.recv_buffer_size = C.recv_buffer_size

-- ------------------------------------------------- timer, idle, signal, ...

for _, n in ipairs {"timer_start", "timer_stop", "timer_again", "timer_set_repeat", "timer_get_repeat",
                    "timer_get_due_in", "idle_start", "idle_stop", "prepare_start", "prepare_stop",
                    "check_start", "check_stop", "async_send", "signal_start", "signal_start_oneshot",
                    "signal_stop", "fs_event_start", "fs_event_stop", "fs_event_getpath",
                    "fs_poll_start", "fs_poll_stop", "fs_poll_getpath", "poll_stop",
                    "tty_set_mode", "tty_reset_mode", "tty_get_winsize",
                    "process_get_pid", "disable_stdio_inheritance"} do
  uv[n] = coru[n]
end

-- luv answers 0 where coru answers true
local function zero(ok, ...)
  if ok == true then return 0 end
  return ok, ...
end
for _, n in ipairs {"process_kill", "kill"} do
  local f = coru[n]
  uv[n] = function(...) return zero(f(...)) end
end

function uv.poll_start(h, events, cb)
  if cb == nil and callable(events) then events, cb = nil, events end
  checkcb(cb, 3, "poll_start")
  return coru.poll_start(h, events, namecb(cb))
end

function uv.fs_event_start(h, path, flags, cb)
  checkcb(cb, 4, "fs_event_start")
  return coru.fs_event_start(h, path, flags, namecb(cb))
end

function uv.fs_poll_start(h, path, interval, cb)
  checkcb(cb, 4, "fs_poll_start")
  return coru.fs_poll_start(h, path, interval, namecb(cb))
end

-- ------------------------------------------------------------- process

function uv.spawn(path, options, on_exit)
  checkcb(on_exit, 3, "spawn", true)
  local h, pid, pipes = coru.spawn_process(path, options, on_exit)
  if h == nil then return nil, pid, pipes end
  return adopt(h), pid
end

-- -------------------------------------------------------------- streams

function uv.read_start(s, cb)
  checkcb(cb, 2, "read_start")
  return coru.read_start(s, function(err, data)
    if err == "closed" then return end          -- luv stays silent after close
    return cb(ename(err), data)
  end)
end

uv.read_stop = coru.read_stop
uv.try_write = coru.try_write
uv.is_readable = coru.is_readable
uv.is_writable = coru.is_writable
uv.stream_get_write_queue_size = coru.stream_get_write_queue_size
uv.stream_set_blocking = coru.stream_set_blocking
uv.accept = coru.accept

-- A request: started with a callback in every case (coru's callback mode
-- never suspends), so that it is queued as in luv.
local function request(kind, ok, msg, name)
  if ok == nil then return nil, msg, name end
  return newreq(kind)
end

function uv.write(s, data, cb)
  checkcb(cb, 3, "write", true)
  return request("write", coru.write(s, data, cb and namecb(cb) or noop))
end

function uv.shutdown(s, cb)
  checkcb(cb, 2, "shutdown", true)
  return request("shutdown", coru.shutdown(s, cb and namecb(cb) or noop))
end

-- write2/try_write2: data and a tcp or pipe handle over an IPC pipe
function uv.write2(p, data, send_handle, cb)
  checkcb(cb, 4, "write2", true)
  return request("write", C.write2(p, data, send_handle, cb))
end
uv.try_write2 = C.try_write2

function uv.listen(s, backlog, cb)
  checkcb(cb, 3, "listen")
  return coru.listen(s, backlog, namecb(cb))
end

-- ------------------------------------------------------------------ tcp

uv.tcp_open = coru.tcp_open
uv.tcp_nodelay = coru.tcp_nodelay
uv.tcp_keepalive = coru.tcp_keepalive
uv.tcp_simultaneous_accepts = coru.tcp_simultaneous_accepts
uv.tcp_getsockname = coru.tcp_getsockname
uv.tcp_getpeername = coru.tcp_getpeername
uv.tcp_write_queue_size = coru.stream_get_write_queue_size

function uv.tcp_bind(t, host, port, flags)
  checkip(host, port, "tcp_bind", 2)
  return coru.tcp_bind(t, host, port, flags)
end

function uv.tcp_connect(t, host, port, cb)
  checkip(host, port, "tcp_connect", 2)
  checkcb(cb, 4, "tcp_connect", true)
  return request("connect", coru.tcp_connect(t, host, port, cb and namecb(cb) or noop))
end

function uv.tcp_close_reset(t, cb)
  checkcb(cb, 2, "tcp_close_reset", true)
  return coru.tcp_close_reset(t, cb)
end

local socktypes = {stream = 1, dgram = 2, raw = 3, rdm = 4, seqpacket = 5}

local function nonblock(flags) return type(flags) == "table" and flags.nonblock and true or false end

function uv.socketpair(socktype, protocol, flags1, flags2)
  if type(socktype) == "string" then
    socktype = socktypes[socktype] or argerror(1, "socketpair", "unknown socket type '" .. socktype .. "'")
  end
  if type(protocol) == "string" then
    protocol = ({tcp = 6, udp = 17, ip = 0})[protocol] or argerror(2, "socketpair", "unknown protocol '" .. protocol .. "'")
  end
  return C.socketpair(socktype, protocol, nonblock(flags1), nonblock(flags2))
end

-- ----------------------------------------------------------------- pipe

for _, n in ipairs {"pipe_open", "pipe_bind", "pipe_getsockname", "pipe_getpeername",
                    "pipe_pending_instances", "pipe_chmod"} do
  uv[n] = coru[n]
end

function uv.pipe_connect(p, name, cb)
  checkcb(cb, 3, "pipe_connect", true)
  return request("connect", coru.pipe_connect(p, name, cb and namecb(cb) or noop))
end

uv.pipe_pending_count = C.pipe_pending_count
uv.pipe_pending_type = C.pipe_pending_type
uv.udp_set_source_membership = C.udp_set_source_membership
uv.tty_set_vterm_state = C.tty_set_vterm_state
uv.tty_get_vterm_state = C.tty_get_vterm_state

function uv.pipe(read_flags, write_flags)
  return C.pipe(nonblock(read_flags), nonblock(write_flags))
end

-- ------------------------------------------------------------------ udp

for _, n in ipairs {"udp_get_send_queue_size", "udp_get_send_queue_count", "udp_open",
                    "udp_getsockname", "udp_getpeername", "udp_set_membership",
                    "udp_set_multicast_loop", "udp_set_multicast_ttl", "udp_set_multicast_interface",
                    "udp_set_broadcast", "udp_set_ttl", "udp_recv_stop"} do
  uv[n] = coru[n]
end

function uv.udp_bind(u, host, port, flags)
  checkip(host, port, "udp_bind", 2)
  return coru.udp_bind(u, host, port, flags)
end

function uv.udp_connect(u, host, port)
  if host ~= nil then checkip(host, port, "udp_connect", 2) end
  return coru.udp_connect(u, host, port)
end

-- host and port together, or neither (a connected socket)
local function checkdest(host, port, fname)
  if host ~= nil then return checkip(host, port, fname, 3) end
  if port ~= nil then argerror(4, fname, "port must be nil when host is nil") end
end

function uv.udp_send(u, data, host, port, cb)
  checkdest(host, port, "udp_send")
  checkcb(cb, 5, "udp_send", true)
  return request("udp_send", coru.udp_send(u, flat(data), host, port, cb and namecb(cb) or noop))
end

function uv.udp_try_send(u, data, host, port)
  checkdest(host, port, "udp_try_send")
  return coru.udp_try_send(u, flat(data), host, port)
end

function uv.udp_recv_start(u, cb)
  checkcb(cb, 2, "udp_recv_start")
  return coru.udp_recv_start(u, function(err, ...)
    if err == "closed" then return end
    return cb(ename(err), ...)
  end)
end

-- ------------------------------------------------------------------ dns

function uv.getaddrinfo(host, service, hints, cb)
  if cb == nil and callable(hints) then hints, cb = nil, hints end
  if host == nil and service == nil then return nil, ERRS.EINVAL, "EINVAL" end
  if cb ~= nil then
    checkcb(cb, 4, "getaddrinfo")
    return request("getaddrinfo", coru.getaddrinfo(host, service, hints, namecb(cb)))
  end
  return sync(coru._getaddrinfo_luv, host, service, hints)
end

function uv.getnameinfo(addr, cb)
  if type(addr) ~= "table" then argerror(1, "getnameinfo", "table expected, got " .. type(addr)) end
  if addr.ip ~= nil and not C.is_ip(tostring(addr.ip)) then
    argerror(1, "getnameinfo", "Invalid ip address or port")
  end
  if cb ~= nil then
    checkcb(cb, 2, "getnameinfo")
    return request("getnameinfo", coru.getnameinfo(addr, namecb(cb)))
  end
  return sync(coru._getnameinfo_luv, addr)
end

-- ------------------------------------------------------------------- fs

-- Callback mode returns the request (coru's returns nothing); without a
-- callback the call is synchronous (outside a task) as coru's already is.
local function has_callback(...)
  -- the callback is last, except in fs_opendir(path, cb, entries)
  for i = select("#", ...), 2, -1 do
    local v = select(i, ...)
    if v ~= nil and type(v) ~= "string" and type(v) ~= "number" and callable(v) then return true end
  end
  return false
end

local function fswrap(f)
  return function(...)
    if has_callback(...) then
      local r1, r2, r3 = f(...)
      if r1 == nil and r2 ~= nil then return nil, r2, r3 end
      return newreq("fs")
    end
    return sync(f, ...)
  end
end

for k, f in pairs(coru) do
  if type(k) == "string" and k:match("^fs_") and k ~= "fs_read_file" and type(f) == "function"
     and not k:match("^fs_event") and not k:match("^fs_poll") then
    uv[k] = fswrap(f)
  end
end
uv.fs_scandir_next = coru.fs_scandir_next

-- -------------------------------------------------------- thread pool

function uv.new_work(work, after)
  if type(work) == "string" then
    work = assert(loadstring(work, "=(work)"))
  end
  return coru.new_work(work, after)
end
uv.queue_work = coru.queue_work

-- --------------------------------------------------------------- misc

for _, n in ipairs {"exepath", "cwd", "chdir", "get_total_memory", "get_free_memory",
                    "resident_set_memory", "available_parallelism", "cpu_info", "getpid", "hrtime",
                    "uptime", "loadavg", "os_uname", "os_gethostname",
                    "os_setenv", "os_unsetenv", "os_environ", "os_homedir", "os_tmpdir", "os_getpid",
                    "os_getppid", "now", "update_time"} do
  uv[n] = coru[n]
end

-- luv answers nil for a descriptor libuv cannot tell (coru: "unknown")
local coru_guess_handle = coru.guess_handle
function uv.guess_handle(fd)
  local t = coru_guess_handle(fd)
  if t == "unknown" then return end
  return t
end

-- luv answers fail for an unset variable (coru: nil)
local coru_os_getenv = coru.os_getenv
function uv.os_getenv(name, size)
  local v = coru_os_getenv(name, size)
  if v == nil then return nil, ERRS.ENOENT, "ENOENT" end
  return v
end

uv.version = C.version
uv.version_string = C.version_string
uv.getrusage = C.getrusage
uv.gettimeofday = C.gettimeofday
uv.interface_addresses = C.interface_addresses
uv.os_get_passwd = C.os_get_passwd
uv.os_getpriority = C.os_getpriority
uv.os_setpriority = C.os_setpriority
uv.get_process_title = C.get_process_title
uv.set_process_title = C.set_process_title
uv.get_constrained_memory = C.get_constrained_memory
uv.sleep = C.sleep
uv.new_thread = C.new_thread
uv.thread_join = C.thread_join
uv.thread_self = C.thread_self
uv.thread_equal = C.thread_equal

function uv.getuid() return (C.ids()) end
function uv.getgid() return select(2, C.ids()) end
function uv.setuid(id) return C.setid(id, false) end
function uv.setgid(id) return C.setid(id, true) end

function uv.if_indextoname(i) return C.if_indextoname(i, false) end
function uv.if_indextoiid(i) return C.if_indextoname(i, true) end

function uv.print_all_handles() return C.print_handles(false) end
function uv.print_active_handles() return C.print_handles(true) end

-- luv 1.44: the message and the name of a system errno
function uv.translate_sys_error(e)
  local name, msg = C.err_name(e)
  return name .. ": " .. msg, name
end

function uv.random(len, flags, cb)
  if cb == nil and callable(flags) then flags, cb = nil, flags end
  if type(len) ~= "number" then argerror(1, "random", "number expected, got " .. type(len)) end
  if flags ~= nil and type(flags) ~= "table" and type(flags) ~= "number" then
    argerror(2, "random", "table or number expected, got " .. type(flags))
  end
  if cb == nil then return C.random(len) end
  checkcb(cb, 3, "random")
  -- the bytes come from the kernel's source at once; luv's callback runs
  -- from the loop, never before random() returns
  local ok, data, msg = pcall(C.random, len)
  local t = coru.new_timer()
  t:start(0, 0, function()
    t:close()
    if not ok then return cb(data) end
    if data == nil then return cb(ename(msg)) end
    return cb(nil, data)
  end)
  return 0
end

-- luv ends the process on an error in a callback; coru reports it and goes
-- on. uv.exit_on_error(true) asks for luv's way (stderr, status 255 as
-- luv's exit(-1)); false gives coru's reporting back. Not a luv function:
-- a program that wants luv's rule says so once.
local saved_handler
function uv.exit_on_error(on)
  if on then
    local prev = coru.on_error(function(err, tb)
      io.stderr:write("Uncaught Error: ", tostring(err), "\n", tb or "", "\n")
      coru.exit(255)
    end)
    if saved_handler == nil then saved_handler = prev or false end
  elseif saved_handler ~= nil then
    coru.on_error(saved_handler or nil)
    saved_handler = nil
  end
end

uv.constants = C.constants()
uv.errno = C.errno_table()

-- ------------------------------------------------ closing handles

-- coru raises on a method of a closing or closed handle; luv hands the
-- call to libuv, which answers with an error: the same error here.
local closing = C.closing
local function guard(name, code)
  local f = uv[name]
  local msg = ERRS[code]
  uv[name] = function(h, ...)
    if closing(h) then return nil, msg, code end
    return f(h, ...)
  end
end

guard("write", "EBADF")
guard("try_write", "EBADF")
guard("write2", "EBADF")
guard("try_write2", "EBADF")
guard("shutdown", "ENOTCONN")
for _, n in ipairs {"read_start", "read_stop", "listen", "accept", "tcp_connect", "pipe_connect",
                    "udp_send", "udp_try_send", "udp_recv_start", "udp_recv_stop", "timer_start",
                    "timer_again", "timer_stop", "idle_start", "prepare_start", "check_start",
                    "signal_start", "signal_start_oneshot", "poll_start", "fs_event_start",
                    "fs_poll_start", "tcp_bind", "udp_bind", "pipe_bind", "tcp_getsockname",
                    "tcp_getpeername", "udp_getsockname", "udp_getpeername", "process_kill",
                    "tcp_close_reset"} do
  guard(n, "EINVAL")
end

-- -------------------------------------------------------- method tables

local function build(list, into)
  for k, v in pairs(list) do into[k] = uv[v] end
  return into
end

local handle_m = {close = "close", ref = "ref", unref = "unref", has_ref = "has_ref",
                  is_active = "is_active", is_closing = "is_closing",
                  send_buffer_size = "send_buffer_size", recv_buffer_size = "recv_buffer_size",
                  fileno = "fileno", get_type = "handle_get_type"}
local stream_m = {shutdown = "shutdown", listen = "listen", accept = "accept",
                  read_start = "read_start", read_stop = "read_stop", write = "write",
                  write2 = "write2", try_write2 = "try_write2",
                  try_write = "try_write", is_readable = "is_readable", is_writable = "is_writable",
                  set_blocking = "stream_set_blocking",
                  get_write_queue_size = "stream_get_write_queue_size"}

local function prefixed(prefix, names)
  local t = {}
  for _, n in ipairs(names) do t[n] = prefix .. n end
  return t
end

local function kind(...)
  local m = {}
  for i = 1, select("#", ...) do build(select(i, ...), m) end
  return m
end

methods.timer = kind(handle_m, prefixed("timer_", {"start", "stop", "again", "set_repeat", "get_repeat", "get_due_in"}))
methods.idle = kind(handle_m, prefixed("idle_", {"start", "stop"}))
methods.prepare = kind(handle_m, prefixed("prepare_", {"start", "stop"}))
methods.check = kind(handle_m, prefixed("check_", {"start", "stop"}))
methods.async = kind(handle_m, prefixed("async_", {"send"}))
methods.poll = kind(handle_m, prefixed("poll_", {"start", "stop"}))
methods.signal = kind(handle_m, prefixed("signal_", {"start", "start_oneshot", "stop"}))
methods.process = kind(handle_m, prefixed("process_", {"kill", "get_pid"}))
methods.fs_event = kind(handle_m, prefixed("fs_event_", {"start", "stop", "getpath"}))
methods.fs_poll = kind(handle_m, prefixed("fs_poll_", {"start", "stop", "getpath"}))
methods.tcp = kind(handle_m, stream_m, prefixed("tcp_", {"open", "nodelay", "keepalive",
  "simultaneous_accepts", "bind", "getpeername", "getsockname", "connect", "write_queue_size",
  "close_reset"}))
methods.pipe = kind(handle_m, stream_m, prefixed("pipe_", {"open", "bind", "connect", "getsockname",
  "getpeername", "pending_instances", "pending_count", "pending_type", "chmod"}))
methods.tty = kind(handle_m, stream_m, prefixed("tty_", {"set_mode", "get_winsize"}))
methods.udp = kind(handle_m, prefixed("udp_", {"get_send_queue_size", "get_send_queue_count", "open",
  "bind", "getsockname", "getpeername", "set_membership", "set_source_membership",
  "set_multicast_loop", "set_multicast_ttl",
  "set_multicast_interface", "set_broadcast", "set_ttl", "send", "try_send", "recv_start",
  "recv_stop", "connect"}))

uv.adopt = adopt   -- give a handle made by coru (coru.new_tcp, coru.stdout, ...) luv's methods

return uv
