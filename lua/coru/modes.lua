-- coru.modes (internal): the callback form of the suspending functions
-- written in Lua (coru.tcp.connect, coru.fs.write_file, ...), so that they
-- keep the rule "an optional callback last, luv style".
--   local opts, cb = modes.opts_cb(fname, argn, opts, cb [, allowed])
--       the optional table and the optional callback after it; a callable
--       in the table's place is the callback; anything else is an
--       argument error naming fname, and so is an option not in allowed
--   modes.check_opts(fname, argn, opts, allowed): only the options check
--   return modes.run(cb, fn, ...)
--       fn(...) runs as a task; when it ends, cb(nil, results...) on the
--       callback thread; fn's `nil, msg, name` becomes cb(msg, name) and an
--       error it raised cb(err). Returns true.
local coru = require "coru"

local M = {}

-- A value that may be any userdata never goes to getmetatable() here, nor
-- anywhere in coru's Lua: Debian 12's LuaJIT 2.1 (a 2022 snapshot)
-- compiles getmetatable() of an io file (or of an ffi.C namespace) wrong,
-- with an uninitialised IR reference as the result (LuaJIT/LuaJIT#1279,
-- fixed upstream in September 2024). A compiled loop then sees a wrong
-- metatable, and the recorder may crash later in the trace: the API
-- fuzzer's segfault in callable(io.stdout). debug.getmetatable is a plain
-- C function (a trace stitches around it); getmetatable() of a table is
-- compiled right.
local debug_getmetatable = debug.getmetatable

-- f can be called: a function, or a value whose metatable has __call (a
-- userdata's real metatable, as a call sees it; a table's as getmetatable
-- shows it: that one compiles).
local function callable(f)
  local t = type(f)
  if t == "function" then return true end
  local mt
  if t == "table" then mt = getmetatable(f) else mt = debug_getmetatable(f) end
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end
M.callable = callable

function M.opts_cb(fname, argn, opts, cb, allowed)
  if cb == nil and opts ~= nil and callable(opts) then opts, cb = nil, opts end
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(argn, fname, type(opts)), 3)
  end
  if allowed then M.check_opts(fname, argn, opts, allowed, 3) end
  if cb ~= nil and not callable(cb) then
    error(("bad argument #%d to '%s' (function expected, got %s)"):format(argn + 1, fname, type(cb)), 3)
  end
  return opts or {}, cb
end

local function deliver(cb)
  return function(err, ...)
    if err ~= nil then return cb(err) end
    if select("#", ...) >= 2 and (...) == nil then return cb(select(2, ...)) end
    return cb(nil, ...)
  end
end

function M.run(cb, fn, ...)
  coru.spawn(fn, ...):next(deliver(cb))
  return true
end

-- Options tables: a name not in allowed (a set) is an argument error that
-- says the name, so a misspelled option is never silently ignored.
-- level: where the error points (2 = the caller of the function that calls
-- check_opts).
function M.check_opts(fname, argn, opts, allowed, level)
  if opts == nil then return end
  if type(opts) ~= "table" then
    error(("bad argument #%d to '%s' (table expected, got %s)"):format(argn, fname, type(opts)), (level or 2) + 1)
  end
  for k in pairs(opts) do
    if not allowed[k] then
      error(("bad argument #%d to '%s' (unknown option '%s')"):format(argn, fname, tostring(k)), (level or 2) + 1)
    end
  end
end

-- A set from names: modes.set({"a", "b"}, more...)
function M.set(...)
  local s = {}
  for i = 1, select("#", ...) do
    for _, k in ipairs((select(i, ...))) do s[k] = true end
  end
  return s
end

function M.need_task(fname)
  if not coru.current() then error(fname .. ": needs a running task or a callback", 3) end
end

return M
