-- coru.process: child processes in sequential style, on top of the flat
-- luv-style functions of process.c (coru.spawn_process, coru.kill).
--
--   local p = coru.process.spawn("sort", {"-r"}, {stdio = {"pipe", "pipe", "inherit"}})
--   p.stdin:write("b\na\n"); p.stdin:shutdown()
--   local out = p.stdout:read()
--   local code, signal = p:wait()
--
--   local out, err, code, signal = coru.process.exec("ls", {"-l"}, {timeout = 5000})
local coru = require "coru"

local M = {}

local Process = {}
Process.__index = Process

local OPTS = {"cwd", "env", "uid", "gid", "detached", "verbatim", "hide"}
local modes = require "coru.modes"
local SPAWN_OPTS = modes.set(OPTS, {"stdio", "stdin", "stdout", "stderr"})
local EXEC_OPTS = modes.set(OPTS, {"input", "timeout", "kill_signal", "max_output"})

local function on_exit(self, code, signal)
  self.exited, self.code, self.signal = true, code, signal
  if self.handle and not self.handle:is_closing() then self.handle:close() end
  local waiters = self.waiters
  self.waiters = {}
  for i = 1, #waiters do waiters[i](nil, code, signal) end
end

-- spawn(cmd [, args] [, opts]) -> process, or nil, msg, name.
-- opts: luv's cwd, env (map or "K=V" array), uid, gid, detached, verbatim,
-- hide; stdio = {stdin, stdout, stderr, ...} each "pipe", "inherit",
-- "ignore", a descriptor or a stream (default: inherit all three); or the
-- shortcuts opts.stdin / opts.stdout / opts.stderr.
function M.spawn(cmd, args, opts)
  if type(cmd) ~= "string" then
    error("bad argument #1 to 'process.spawn' (string expected, got " .. type(cmd) .. ")", 2)
  end
  if args ~= nil and type(args) ~= "table" then
    error("bad argument #2 to 'process.spawn' (table expected, got " .. type(args) .. ")", 2)
  end
  modes.check_opts("process.spawn", 3, opts, SPAWN_OPTS)
  opts = opts or {}
  local o = {args = args}
  for _, k in ipairs(OPTS) do o[k] = opts[k] end
  local stdio = opts.stdio
  if not stdio then
    stdio = {opts.stdin or "inherit", opts.stdout or "inherit", opts.stderr or "inherit"}
  end
  o.stdio = stdio
  local self = setmetatable({exited = false, waiters = {}}, Process)
  local h, pid, pipes = coru.spawn_process(cmd, o, function(code, signal) on_exit(self, code, signal) end)
  if not h then return nil, pid, pipes end
  self.handle, self.pid, self.pipes = h, pid, pipes
  self.stdin, self.stdout, self.stderr = pipes[1], pipes[2], pipes[3]
  return self
end

-- p:wait([cb]) -> code, signal (inside a task), or cb(nil, code, signal).
function Process:wait(cb)
  if self.exited then
    if cb then cb(nil, self.code, self.signal) return end
    return self.code, self.signal
  end
  if cb then self.waiters[#self.waiters + 1] = cb return end
  if not coru.current() then error("process:wait: needs a running task or a callback", 2) end
  return coru.await(function(resume) self.waiters[#self.waiters + 1] = resume end)
end

-- p:kill([sig]) -> true, or nil, msg, name ("ESRCH" once it has exited).
function Process:kill(sig)
  if self.exited then return nil, "ESRCH: no such process (it has exited)", "ESRCH" end
  return self.handle:kill(sig or "sigterm")
end

-- Close the pipes (the process itself is closed when it exits).
function Process:close()
  for _, p in pairs(self.pipes or {}) do
    if not p:is_closing() then p:close() end
  end
end

function Process:__tostring()
  return ("coru.process: pid %d%s"):format(self.pid or -1, self.exited and " (exited)" or "")
end

-- Read pipe to its end into out; state.total counts both pipes' bytes,
-- and past state.max the child is killed (output too large): what is kept
-- is at most state.max bytes of both together.
local function collect(pipe, out, state)
  while not state.too_large do
    local data = pipe:read()
    if not data then return end
    if state.max and state.total + #data > state.max then
      data = data:sub(1, state.max - state.total)
      state.too_large = true
      state.p:kill("sigkill")
    end
    out[#out + 1] = data
    state.total = state.total + #data
  end
end

-- exec(cmd [, args] [, opts]) -> stdout, stderr, code, signal
-- opts: those of spawn plus input (a string written to the child's stdin,
-- which is closed after it; without input stdin is /dev/null), timeout
-- (ms: the child is killed with kill_signal, default "sigkill"), max_output
-- (bytes of stdout + stderr; past it the child is killed). On a timeout:
-- nil, "timeout", "timeout", stdout so far, stderr so far; on too much
-- output: nil, "output too large", "too large", stdout, stderr so far.
-- Spawn failures: nil, msg, name.
function M.exec(cmd, args, opts)
  if type(cmd) ~= "string" then
    error("bad argument #1 to 'process.exec' (string expected, got " .. type(cmd) .. ")", 2)
  end
  if args ~= nil and type(args) ~= "table" then
    error("bad argument #2 to 'process.exec' (table expected, got " .. type(args) .. ")", 2)
  end
  modes.check_opts("process.exec", 3, opts, EXEC_OPTS)
  opts = opts or {}
  if not coru.current() then error("process.exec: needs a running task", 2) end
  local o = {}
  for _, k in ipairs(OPTS) do o[k] = opts[k] end
  o.stdio = {opts.input and "pipe" or "ignore", "pipe", "pipe"}
  local p, err, name = M.spawn(cmd, args, o)
  if not p then return nil, err, name end
  local out, errs = {}, {}
  local state = {total = 0, max = opts.max_output, p = p}
  local readers = {coru.spawn(collect, p.stdout, out, state), coru.spawn(collect, p.stderr, errs, state)}
  local writer, timer, timed_out
  if opts.input then
    writer = coru.spawn(function()
      p.stdin:write(opts.input)   -- EPIPE if the child does not read: ignored
      if not p.stdin:is_closing() then p.stdin:shutdown() p.stdin:close() end
    end)
  end
  if opts.timeout then
    timer = coru.spawn(function()
      coru.sleep(opts.timeout)
      timed_out = true
      p:kill(opts.kill_signal or "sigkill")
    end)
  end
  local ok, code, signal = pcall(p.wait, p)
  if timer then timer:cancel() end
  if not ok then                  -- cancelled (or worse): take the child down
    p:kill("sigkill")
    p:close()
    for _, t in ipairs(readers) do t:cancel() end
    if writer then writer:cancel() end
    error(code, 0)
  end
  if timed_out or state.too_large then p:close() end  -- a grandchild may hold the pipes open
  for _, t in ipairs(readers) do pcall(t.await, t) end
  if writer then writer:cancel() end
  p:close()
  if timed_out then
    return nil, "timeout", "timeout", table.concat(out), table.concat(errs)
  end
  if state.too_large then
    return nil, "output too large", "too large", table.concat(out), table.concat(errs)
  end
  return table.concat(out), table.concat(errs), code, signal
end

M.kill = coru.kill
return M
