-- The Lua half of coru's scheduler, compiled into the binary and the module.
-- It holds only what C cannot do under LuaJIT (no lua_yieldk): code that
-- must run after a resume, to raise an error at the suspension point, and
-- the scheduler-aware coroutine.resume/wrap that let a suspension made in a
-- user's own coroutine pass through to the scheduler and back.
local SCHED, ERR, current = ...
local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_isyieldable = coroutine.isyieldable
local error, select, setmetatable = error, select, setmetatable

-- Values a task is resumed with: (ERR, e) means "raise e here".
local function chk(...)
  if (...) == ERR then error((select(2, ...)), 0) end
  return ...
end

-- A yielding C function, wrapped so that an error it is resumed with
-- (cancellation) is raised in its caller.
-- The wrapper calls f under its own name, so that argument errors name
-- the function ("bad argument #2 to 'read_line'"), not the wrapper's local.
local wrappers = {}
local function wrap(f, name)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then name = "f" end
  local make = wrappers[name]
  if not make then
    make = assert(loadstring(("local chk, %s = ... return function(...) return chk(%s(...)) end")
      :format(name, name), "=(coru)"))
    wrappers[name] = make
  end
  return make(chk, f)
end

local select = select
local function yield(...)
  -- A plain yield (no values) is the scheduler round trip: the scheduler
  -- resumes it with no values (a pending cancel waits for the next real
  -- suspension), so skip chk's vararg call (~160 instructions).
  if select('#', ...) == 0 then return co_yield() end
  return chk(co_yield(...))
end

-- A suspension from an inner coroutine yields (SCHED, payload...): pass it
-- up to the scheduler, then hand what the scheduler resumes us with down.
local function pass(co, ok, ...)
  if ok and (...) == SCHED then
    return pass(co, co_resume(co, co_yield(SCHED, select(2, ...))))
  end
  return ok, ...
end

local taskco = setmetatable({}, {__mode = "k"})

local function resume(co, ...)
  if taskco[co] then
    return false, "cannot resume a coru task's coroutine (it belongs to the scheduler)"
  end
  return pass(co, co_resume(co, ...))
end

local function wrapret(ok, ...)
  if ok then return ... end
  error((...), 0)
end

local function cowrap(f)
  local co = co_create(f)
  return function(...) return wrapret(pass(co, co_resume(co, ...))) end
end

local function await_ret(err, ...)
  if err ~= nil then error(err, 0) end
  return ...
end

-- coru.await(f, ...): yield f to the scheduler (through any inner
-- coroutine) with Twisted's error rule on the callback's first argument.
local function await(f, ...)
  if current() == nil then
    error("coru.await: needs a running task (use a callback outside tasks)", 2)
  end
  if not co_isyieldable() then   -- refused before f runs: it changes nothing
    error("coru.await: cannot suspend here: a C function (table.sort, string.gsub, require, "
      .. "a metamethod, __gc, ...) is between this call and the task; call it from the task's own code", 2)
  end
  return await_ret(chk(co_yield(SCHED, f, ...)))
end

coroutine.resume, coroutine.yield, coroutine.wrap = resume, yield, cowrap

return { wrap = wrap, yield = yield, await = await, taskco = taskco }
