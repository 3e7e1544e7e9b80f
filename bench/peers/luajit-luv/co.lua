-- A minimal coroutine layer over luv, as a luv user writes on day one:
-- each task is a coroutine; an operation takes a callback that resumes it.
local M = {}

-- Run fn as a coroutine; inside, M.wait(start) calls start(resume) and
-- suspends until resume(...) is called, returning its arguments.
function M.spawn(fn, ...)
  local co = coroutine.create(fn)
  local ok, err = coroutine.resume(co, ...)
  if not ok then error(err, 0) end
  return co
end

-- One resume function per coroutine, made once (no allocation per wait);
-- a callback called before start returns hands its values (up to 3) back
-- without a yield.
local states = setmetatable({}, {__mode = "k"})
local running, resume, yield, select = coroutine.running, coroutine.resume, coroutine.yield, select

local function new_state(co)      -- apart: a closure made in wait would stop the JIT there
  local st = {}
  st.resume = function(...)
    if st.sync then
      st.done = true
      st.a, st.b, st.c = ...
      return
    end
    local ok, err = resume(co, ...)
    if not ok then io.stderr:write(tostring(err), "\n") end
  end
  states[co] = st
  return st
end

local function wait_in(st, start)
  st.sync, st.done = true, false
  start(st.resume)
  st.sync = false
  if st.done then return st.a, st.b, st.c end
  return yield()
end

function M.wait(start)
  local co = running()
  return wait_in(states[co] or new_state(co), start)
end

-- wait bound to the running coroutine (hot loops: no lookup per call)
function M.waiter()
  local co = running()
  local st = states[co] or new_state(co)
  return function(start) return wait_in(st, start) end
end

-- Lines of a TCP handle, read in its coroutine.
function M.reader(sock)
  local buf, waiting, eof = "", nil, false
  sock:read_start(function(err, data)
    if err or not data then eof = true else buf = buf .. data end
    if waiting then local w = waiting waiting = nil w() end
  end)
  return function()
    while true do
      local i = buf:find("\n", 1, true)
      if i then
        local line = buf:sub(1, i - 1)
        buf = buf:sub(i + 1)
        return line
      end
      if eof then return nil end
      M.wait(function(resume) waiting = resume end)
    end
  end
end

return M
