-- The Lua API fuzzer: random and edge arguments to every exported function
-- and every method of every handle type, from a task (then cancelled), from
-- a callback, behind a C boundary (gsub, sort) and from a user coroutine,
-- with garbage collection interleaved; coru.json and coru.jsonl get calls
-- of their own, held to their contract (fuzz/api_json.lua). Run by `make fuzz` (see
-- fuzz/README.md):
--
--   build/coru fuzz/api_fuzz.lua [seed [seconds]]
--
-- A crash, a sanitizer report or a hang (the Makefile's timeout) is a
-- finding; the seed is printed first so that it replays. Argument errors
-- and failures are expected: only the process dying is a finding.
local coru = require "coru"
local ffi = require "ffi"

local seed = tonumber(arg and arg[1]) or os.time()
local seconds = tonumber(arg and arg[2]) or 30
io.stderr:write(("api fuzz: seed %d, %d s (replay: make fuzz-api FUZZ_SEED=%d FUZZ_TIME=%d)\n")
  :format(seed, seconds, seed, seconds))
math.randomseed(seed)
local random = math.random

-- CORU_FUZZ_KNOWN=skip leaves out the shapes of the two fixed findings
-- (fuzz/README.md, "Fixed findings"), to tell a new finding from an old
-- one coming back: the JIT is turned off (LuaJIT's getmetatable() of an io
-- file) and no fs_poll handles are made (libuv's fs_poll restart).
local skip_known = os.getenv("CORU_FUZZ_KNOWN") == "skip"
if skip_known then
  jit.off()
  io.stderr:write("api fuzz: fixed findings' shapes skipped (JIT off, no fs_poll)\n")
end

pcall(ffi.cdef, [[
  int pipe(int fds[2]);
  int socketpair(int domain, int type, int protocol, int sv[2]);
  int chdir(const char *path);
  int close(int fd);
  int dup2(int oldfd, int newfd);
  int fcntl(int fd, int cmd, ...);
  long write(int fd, const void *buf, unsigned long n);
  long readlink(const char *path, char *buf, unsigned long size);
]])

-- ------------------------------------------------------------ stdio
-- A crash message (libuv's assert, LuaJIT's panic, coru's own) goes to fd
-- 2, the log: no call may close or replace the process's stdio. Calls that
-- close or adopt a descriptor never get 0..2 (see guard below); each batch
-- checks that 0..2 are still what they were, against private copies made
-- now, and a change is a finding of the fuzzer's own (its guard has a
-- hole): reported through the copy of stderr, stdio restored, status 4.
local saved = {}
for fd = 0, 2 do saved[fd] = ffi.C.fcntl(fd, 1030, ffi.new("int", 900))   -- F_DUPFD_CLOEXEC
end
local link_buf = ffi.new("char[4096]")
local function fd_target(fd)
  local n = ffi.C.readlink("/proc/self/fd/" .. fd, link_buf, 4096)
  return n >= 0 and ffi.string(link_buf, n) or nil
end
local function report(s)
  local fd = saved[2] >= 0 and saved[2] or 2
  ffi.C.write(fd, s, #s)
end
local stdio_broken = 0
local function check_stdio(where)
  for fd = 0, 2 do
    local want = saved[fd] >= 0 and fd_target(saved[fd])
    local got = fd_target(fd)
    if want and got ~= want then
      stdio_broken = stdio_broken + 1
      report(("api fuzz: fd %d stopped being %s (now %s) %s: the stdio guard has a hole; restored\n")
        :format(fd, want, tostring(got), where))
      ffi.C.dup2(saved[fd], fd)
    end
  end
end

local json_module = assert(loadfile(((arg and arg[0] or ""):match("^(.*/)") or "./") .. "api_json.lua"))

-- ------------------------------------------------------------ the sandbox
-- Every path the fuzzer makes up is relative (no "/" in generated strings)
-- and the process works in a fresh temporary directory.
local sandbox = assert(coru.fs_mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/coru-fuzz-XXXXXX"))
assert(ffi.C.chdir(sandbox) == 0)

local function reset_sandbox()
  ffi.C.chdir(sandbox)
  coru.fs.rmtree(sandbox)
  coru.fs_mkdir(sandbox)
  ffi.C.chdir(sandbox)
  for i = 1, 3 do
    local f = io.open("file_" .. i, "w")
    if f then f:write("line one\nline two\n"); f:close() end
  end
  coru.fs_mkdir("dir_1")
end
reset_sandbox()

-- Functions never called: they end the process, signal other processes,
-- resolve names over the network, or change the terminal.
local excluded = {
  exit = true, kill = true, getaddrinfo = true, getnameinfo = true,
  tty_set_mode = true, tty_reset_mode = true, chdir = true,
  ["process.kill"] = true, ["signal.kill"] = true, ["tcp.connect"] = true,
  ["tcp.resolve"] = true, ["tls.connect"] = true, ["process.exec"] = true,
  ["process.spawn"] = true, spawn_process = true, ["signal.wait"] = false, ["jsonl.connect"] = true,
  _getaddrinfo_luv = true, _getnameinfo_luv = true,
}

-- ------------------------------------------------------------ values
local BIG = ("x"):rep(1024 * 1024) .. "\0" .. ("y"):rep(100)
local fds = {0, 1}
do
  local p = ffi.new("int[2]")
  -- non-blocking: outside a task, fs_read is synchronous (luv's rule) and
  -- would wait for ever on an empty pipe: that is the fuzzer's hang, not coru's
  local function add(fd) ffi.C.fcntl(fd, 4, ffi.new("int", 2048)); fds[#fds + 1] = fd end  -- F_SETFL, O_NONBLOCK
  if ffi.C.pipe(p) == 0 then add(p[0]); add(p[1]) end
  if ffi.C.socketpair(1, 1, 0, p) == 0 then add(p[0]); add(p[1]) end
  if ffi.C.socketpair(1, 2, 0, p) == 0 then add(p[0]); add(p[1]) end
  local fd = coru.fs_open("file_1", "r")
  if fd then fds[#fds + 1] = fd end
end

local numbers = {0, 1, -1, 2, 3, 0.5, -0.5, 1 / 0, -1 / 0, 0 / 0, 2^31 - 1, 2^31, -2^31, 2^32, 2^32 + 1,
                 2^32 - 1, 2^53, 2^63, -2^63, 2^64, 1e308, -1e308, 255, 256, 65535, 65536, 1024, 7, 4095,
                 10, 100}
local words = {"", "a", "r", "w", "rw", "rwdp", "x", "sigint", "SIGTERM", "hup", "127.0.0.1", "::1",
               "0.0.0.0", "inet", "inet6", "unix", "x\0y", "\0", "file_1", "file_2", "dir_1", "sock_1",
               "new_1", ".", "r+", "w+", "a", "normal", "raw", "stream", "dgram", "\n", "\r\n",
               "\r\n\r\n", "line one", "utf8 \226\130\172", "644", "0777", "9"}
local optkeys = {"atomic", "mode", "stdio", "args", "env", "cwd", "uid", "gid", "detached", "server",
                 "host", "servername", "cert", "key", "ca", "verify", "handshake_timeout", "max",
                 "recursive", "poll", "interval", "timeout", "max_line", "nodelay", "keepalive",
                 "reuseport", "family", "backlog", "ipv6only", "excl", "dir", "context", "alpn",
                 "socktype", "protocol", "hide", "verbatim", "cleanup", "fsync", "read_timeout"}

local function raiser() error("fuzz: raised on purpose", 0) end
local hostile_mt = {__index = raiser, __newindex = raiser, __len = raiser, __call = raiser,
                    __tostring = raiser, __concat = raiser, __eq = raiser, __lt = raiser, __le = raiser}

local pool = {handles = {}, tasks = {}, others = {}}
local value   -- forward

local function rstring()
  local k = random(12)
  if k <= 6 then return words[random(#words)] end
  if k == 7 and random(50) == 1 then return BIG end
  if k == 8 then return ("z"):rep(random(0, 70000)) end
  local t = {}
  for i = 1, random(0, 40) do t[i] = string.char(random(0, 255)) end
  return (table.concat(t):gsub("/", "_"))
end

local function rnumber()
  if random(3) == 1 then return fds[random(#fds)] end
  if random(4) == 1 then return random(-100, 100000) end
  return numbers[random(#numbers)]
end

local function rtable(depth)
  local k = random(8)
  if k == 1 then return setmetatable({}, hostile_mt) end
  if k == 2 then return {value(depth + 1), value(depth + 1), value(depth + 1)} end
  if k == 3 then return {"pipe", "inherit", "ignore", rnumber()} end
  local t = {}
  for _ = 1, random(0, 4) do t[optkeys[random(#optkeys)]] = value(depth + 1) end
  if random(6) == 1 then setmetatable(t, hostile_mt) end
  return t
end

local function rfunction()
  local k = random(6)
  if k == 1 then return raiser end
  if k == 2 then return function() coroutine.yield() end end
  if k == 3 then return function() coru.sleep(random(0, 2)) end end
  if k == 4 then return setmetatable({}, {__call = function() end}) end
  if k == 5 then return function(...) return ... end end
  return function() end
end

local function pick(t) if #t > 0 then return t[random(#t)] end end

function value(depth)
  depth = depth or 0
  if depth > 2 then return rnumber() end
  local k = random(20)
  if k <= 1 then return nil end
  if k <= 2 then return random(2) == 1 end
  if k <= 6 then return rnumber() end
  if k <= 10 then return rstring() end
  if k <= 12 then return rtable(depth) end
  if k <= 14 then return rfunction() end
  if k == 15 then return pick(pool.handles) or io.stdout end
  if k == 16 then return pick(pool.tasks) or coroutine.create(function() end) end
  if k == 17 then return pick(pool.others) or newproxy(true) end
  if k == 18 then return ({io.stdout, newproxy(true), newproxy(false), coru.CALLBACK, coroutine.create(print)})[random(5)] end
  if k == 19 then return coroutine.running() end
  return pick(pool.handles) or false
end

-- ------------------------------------------------------------ targets
local targets = {}   -- {name, fn, self}

local function add_module(prefix, t)
  for k, v in pairs(t) do
    local name = prefix .. k
    if type(v) == "function" and not excluded[name] and not excluded[k] then
      targets[#targets + 1] = {name = name, fn = v}
    end
  end
end

add_module("", coru)
for _, m in ipairs({"fs", "tcp", "pipe", "process", "tls", "poll", "signal", "serve", "dmp", "json", "jsonl"}) do
  local ok, mod = pcall(function() return coru[m] end)
  if ok and type(mod) == "table" then add_module(m .. ".", mod) end
end

-- CORU_FUZZ_ONLY=name,name,...: call only these functions (names as the
-- trace prints them: "fs_close", "fs.close"; "open" for the methods of
-- that name), to bisect a finding
local only = os.getenv("CORU_FUZZ_ONLY")
if only and only ~= "" then
  local set = {}
  for n in only:gmatch("[^,%s]+") do set[n] = true end
  local kept = {}
  for _, t in ipairs(targets) do if set[t.name] then kept[#kept + 1] = t end end
  targets, only = kept, set
  report(("api fuzz: only %s (%d functions, and the methods of these names)\n"):format(os.getenv("CORU_FUZZ_ONLY"), #kept))
else
  only = nil
end

-- The calls that close or adopt a descriptor (a handle opened on fd 2
-- closes it with the handle) never see the process's stdio nor the
-- fuzzer's private copies: such an argument becomes -1 (refused). Not one
-- of the fuzzer's pipes: those calls would then close it again and again,
-- and whatever reuses its number next (10 runs in 30 hung that way).
local closers = {}
for _, n in ipairs({"fs_close", "pipe_open", "tcp_open", "udp_open", "new_tty", "new_stdio"}) do
  if coru[n] then closers[coru[n]] = true end
end
if type(coru.fs) == "table" and coru.fs.close then closers[coru.fs.close] = true end
local closer_methods = {open = true}
local protected = {[0] = true, [1] = true, [2] = true}
for fd = 0, 2 do if saved[fd] >= 0 then protected[saved[fd]] = true end end
local function guard(args, n)
  for i = 1, n do
    local v = tonumber(args[i])
    if v and protected[v] then args[i] = -1 end
  end
end

-- handle makers: each returns a fresh object of one type
local makers = {
  function() return coru.new_timer() end,
  function() return coru.new_idle() end,
  function() return coru.new_prepare() end,
  function() return coru.new_check() end,
  function() return coru.new_async(function() end) end,
  function() return coru.new_tcp() end,
  function() return coru.new_pipe(random(2) == 1) end,
  function() return coru.new_udp() end,
  function() return coru.new_signal() end,
  function() return coru.new_fs_event() end,
  function() if not skip_known then return coru.new_fs_poll() end end,
  function() return coru.new_poll(fds[4] or 0) end,
  function() return coru.channel(random(0, 3)) end,
  function() return coru.spawn(function() coru.sleep(random(0, 5)) end) end,
  function() return coru.fs_opendir(".") end,
  function() return coru.new_work(function() return 1 end, function() end) end,
  function() return coru.tls.context({}) end,
  function() return coru.fs_scandir(".") end,
  function()   -- a connected pair over loopback: real streams with data
    local srv = coru.tcp.listen("127.0.0.1", 0, function(conn)
      conn:write("hello\nworld\r\n" .. ("q"):rep(random(0, 5000)))
      if random(2) == 1 then conn:close() end
    end)
    if not srv then return nil end
    pool.handles[#pool.handles + 1] = srv
    return coru.tcp.connect("127.0.0.1", srv:getsockname().port)
  end,
  function() return coru.process.spawn("true", {}, {stdio = {nil, "pipe", "pipe"}}) end,
}

local method_cache = {}
local function methods_of(obj)
  local mt = debug.getmetatable(obj)
  if not mt then return nil end
  local m = method_cache[mt]
  if m == nil then
    m = {}
    local idx = rawget(mt, "__index")
    if type(idx) == "table" then
      for k, v in pairs(idx) do
        if type(v) == "function" and not excluded[k] and (not only or only[k]) then m[#m + 1] = {name = k, fn = v} end
      end
    end
    for _, k in ipairs({"__tostring", "__gc", "__len", "__index"}) do
      local f = rawget(mt, k)
      if type(f) == "function" and (not only or only[k]) then m[#m + 1] = {name = k, fn = f} end
    end
    method_cache[mt] = m
  end
  return m
end

local function refresh_pool()
  for i = 1, 6 do
    local ok, h = pcall(makers[random(#makers)])
    if ok and h ~= nil then
      local list = (type(h) == "userdata" and pcall(coru.is_closing, h)) and pool.handles
                   or (pcall(coru.current) and type(h) == "userdata" and tostring(h):find("^coru.task") and pool.tasks)
                   or pool.others
      list[#list + 1] = h
    end
  end
  for _, list in pairs(pool) do
    while #list > 40 do
      local h = table.remove(list, 1)
      if random(2) == 1 then pcall(coru.close, h) end
    end
  end
end

-- ------------------------------------------------------------ one call
local calls, errors_seen = 0, 0
local trace = os.getenv("CORU_FUZZ_TRACE")   -- print each call (finding a hang)
local json_env = {seed = seed, random = random, value = value, report = report,
                  track = function(t) pool.tasks[#pool.tasks + 1] = t end}
local json_call = json_module()(json_env)

local function make_call()
  local fn, args, n, name, closes
  if not only and random(5) == 1 then
    calls = calls + 1
    local call = json_call()
    if trace then return function() io.stderr:write("call coru.json\n") return call() end end
    return call
  end
  if random(3) == 1 or #targets == 0 then
    local objs = random(2) == 1 and pool.handles or pool.others
    local obj = pick(objs) or pick(pool.tasks)
    local ms = obj ~= nil and methods_of(obj)
    if ms and #ms > 0 then
      local m = ms[random(#ms)]
      fn, closes = m.fn, closer_methods[m.name]
      name = m.name .. " method of " .. tostring(type(obj) == "userdata" and (debug.getmetatable(obj) or {}).__name or type(obj))
      n = random(0, 4)
      args = {random(8) == 1 and value() or obj}
      for i = 2, n + 1 do args[i] = value() end
      n = n + 1
    end
  end
  if not fn then
    if #targets == 0 then return function() end end
    local t = targets[random(#targets)]
    fn, name, closes = t.fn, t.name, closers[t.fn]
    n = random(0, 5)
    args = {}
    for i = 1, n do args[i] = value() end
  end
  if closes then guard(args, n) end
  calls = calls + 1
  if trace then
    local shown = {}
    for i = 1, n do shown[i] = type(args[i]) == "string" and ("%q"):format(args[i]:sub(1, 40)) or type(args[i]) end
    name = name .. "(" .. table.concat(shown, ", ") .. ")"
    return function() io.stderr:write("call ", name, "\n") return fn(unpack(args, 1, n)) end
  end
  return function() return fn(unpack(args, 1, n)) end
end

local live = {}

local function in_context(call)
  local k = random(6)
  if k == 1 then          -- a task, cancelled later
    live[#live + 1] = coru.spawn(function() pcall(call) end)
  elseif k == 2 then      -- a callback
    local t = coru.new_timer()
    t:start(random(0, 1), 0, function() t:close(); pcall(call) end)
  elseif k == 3 then      -- behind a C boundary
    live[#live + 1] = coru.spawn(function()
      pcall(string.gsub, "ab", "%w", function() call() end)
      pcall(table.sort, {3, 2, 1}, function(a, b) call() return a < b end)
    end)
  elseif k == 4 then      -- a user coroutine inside a task
    live[#live + 1] = coru.spawn(function()
      local co = coroutine.wrap(function() pcall(call) coroutine.yield("done") end)
      pcall(co)
    end)
  elseif k == 5 then      -- a plain coroutine outside any task (from a callback)
    local t = coru.new_timer()
    t:start(0, 0, function()
      t:close()
      coroutine.resume(coroutine.create(function() pcall(call) end))
    end)
  else                    -- a task that awaits another running it
    live[#live + 1] = coru.spawn(function()
      local inner = coru.spawn(function() pcall(call) end)
      if random(2) == 1 then inner:cancel("fuzz") end
      pcall(inner.await, inner)
    end)
  end
end

-- ------------------------------------------------------------ main loop
coru.on_error(function() errors_seen = errors_seen + 1 end)
local quiet = coru.on_error(function() errors_seen = errors_seen + 1 end)
local deadline = coru.hrtime() + seconds * 1e9
local batches = 0
refresh_pool()

while coru.hrtime() < deadline do
  batches = batches + 1
  for _ = 1, random(5, 25) do
    in_context(make_call())
    if random(40) == 1 then collectgarbage(random(2) == 1 and "collect" or "step") end
  end
  if random(3) == 1 then coru.pass() else coru.sleep(random(0, 2)) end
  for i = #live, 1, -1 do
    local t = live[i]
    if random(4) > 1 then pcall(t.cancel, t, random(2) == 1 and "fuzz" or nil) end
    live[i] = nil
  end
  coru.on_error(quiet)
  check_stdio(("after batch %d"):format(batches))
  if batches % 20 == 0 then refresh_pool() end
  if batches % 500 == 0 then
    for _, h in ipairs(pool.handles) do pcall(coru.close, h) end
    pool.handles, pool.others = {}, {}
    reset_sandbox()
    refresh_pool()
  end
end

-- wind down: cancel, close, and the host must still exit cleanly
for _, t in ipairs(pool.tasks) do pcall(t.cancel, t) end
coru.walk(function(h) pcall(coru.close, h) end)
coru.sleep(20)
ffi.C.chdir("/")
coru.fs.rmtree(sandbox)
check_stdio("at the end")
-- through fd 2 itself: the log still gets what the process writes there
io.stderr:write(("api fuzz: seed %d: %d calls in %d batches, %d errors reported to on_error, no crash\n")
  :format(seed, calls, batches, errors_seen))
local js = json_env.stats
report(("api fuzz: coru.json: %d values encoded and decoded back, %d texts decoded and encoded back; %d jsonl sessions, %d raw lines\n")
  :format(js.encoded, js.decoded, js.sessions, js.lines))
if stdio_broken > 0 then coru.exit(4) end
-- tasks the calls started may sleep for a minute (sleep(65535)): exit as a
-- program would, which also exercises exit with everything in flight
coru.exit(0)
