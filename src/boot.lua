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
-- The C side shapes every result list a wrapped function gives (returned
-- at once by its C adapter, or resumed with by the scheduler) as
-- (n, r1, r2, r3): n is the count of results, n > 3 packs them in r1 (a
-- table), no result at all is left as it is (n is nil); a resume with
-- (ERR, e) comes as (2, ERR, e). The wrapper takes
-- a fixed number of values from the call (no MULTRES), so LuaJIT can
-- stitch a trace across the C call, and gives back exactly the values and
-- the count the function returned.
-- The wrapper calls f under its own name, so that argument errors name
-- the function ("bad argument #2 to 'read_line'"), not the wrapper's local.
-- A function registered with an arity k (coru_Reg flags CORU_ARITY(k),
-- k <= 5) gets a wrapper of k fixed parameters instead of a vararg one:
-- a stitched trace cannot return from a vararg function into its caller's
-- frame, a fixed-arity one can, so the caller's code after the call is
-- compiled on. It passes the arguments up to the last non-nil one, so
-- that a missing argument is still "no value" for f.
local wrappers = {}
local unpack = unpack
local params = {"p1", "p2", "p3", "p4", "p5"}
local function wrap(f, name, arity)
  if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then name = "f" end
  if type(arity) ~= "number" or arity < 0 or arity > #params then arity = nil end
  local key = name .. "/" .. tostring(arity)
  local make = wrappers[key]
  if not make then
    local head, call
    if arity then
      head = "function(" .. table.concat(params, ", ", 1, arity) .. ") local n, a, b, c "
      call = {}
      for k = arity, 1, -1 do
        call[#call + 1] = (k == arity and "if " or "elseif ") .. params[k] .. " ~= nil then "
          .. "n, a, b, c = " .. name .. "(" .. table.concat(params, ", ", 1, k) .. ") "
      end
      call[#call + 1] = (arity > 0 and "else " or "") .. "n, a, b, c = " .. name .. "() "
        .. (arity > 0 and "end " or "")
      call = table.concat(call)
    else
      head = "function(...) "
      call = "local n, a, b, c = " .. name .. "(...) "
    end
    make = assert(loadstring(
      "local ERR, error, unpack, " .. name .. " = ... return " .. head .. call
      .. "if n == 1 then return a end "
      .. "if n == nil then return end "
      .. "if n == 2 then if a == ERR then error(b, 0) end return a, b end "
      .. "if n == 3 then return a, b, c end "
      .. "return unpack(a, 1, n) end", "=(coru)"))
    wrappers[key] = make
  end
  return make(ERR, error, unpack, f)
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
