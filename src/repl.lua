-- The host's interactive loop (coru with no script on a terminal, or -i).
-- It runs in the main task: each line runs there too, so a line may suspend
-- (coru.sleep, a socket read, t:await()) while background tasks and servers
-- go on, between prompts as well. Like luajit: `=expr` and bare expressions
-- print their values, an incomplete chunk asks for more with ">> ".
local h = ...
local read_line, finish, interrupt, tty = h.read_line, h.finish, h.interrupt, h.tty
local line, take_signal = h.line, h.take_signal
local loadstring, xpcall, select, tostring = loadstring, xpcall, select, tostring
local traceback = debug.traceback
local stderr = io.stderr

-- Lines run in the interpreter (the JIT off for them and the functions
-- they define): compiled code runs no hooks, and Ctrl-C interrupts a busy
-- line through a hook. Functions from modules keep the JIT.
local nojit = jit and jit.off or function(f) return f end

local function compile(src)
  if src:sub(1, 1) == "=" then src = "return " .. src:sub(2) end
  -- select: the expression is not tail-called, so an error in it names stdin:1
  local f, err = loadstring("return select(1, " .. src .. "\n)", "=stdin")
  if not f then f, err = loadstring(src, "=stdin") end
  if f then nojit(f, true) end
  return f, err
end

local function incomplete(err)
  return err:sub(-7) == "'<eof>'"
end

local function show(ok, ...)
  if not ok then
    stderr:write(tostring((...)), "\n")
    return
  end
  local n = select("#", ...)
  if n == 0 then return end
  local t = {...}
  for i = 1, n do t[i] = tostring(t[i]) end
  io.write(table.concat(t, "\t", 1, n), "\n")
end

local function handler(e)
  if coru.is_cancelled(e) then return tostring(e) end   -- Ctrl-C: no traceback
  if type(e) ~= "string" then
    local mt = debug.getmetatable(e)   -- never getmetatable() of a userdata (coru/modes.lua)
    e = mt and mt.__tostring and tostring(e) or "(error object is a " .. type(e) .. " value)"
  end
  local tb = traceback(e, 2)
  local cut = tb:find("\n\t%[C%]: in function 'xpcall'")   -- the REPL's own frames
  return cut and tb:sub(1, cut - 1) or tb
end

-- Tab: global names, and fields along a dotted path (coru.tc -> coru.tcp,
-- s:read_l -> s:read_line through the metatable's __index table).
local function complete(word)
  local path, sep, last = word:match("^(.-)([.:]?)([%w_]*)$")
  local t = _G
  if sep ~= "" then
    for name in path:gmatch("[^.:]+") do
      local v = t[name]        -- a field read: coru's submodules load lazily
      if type(v) ~= "table" and type(v) ~= "userdata" then return {} end
      t = v
    end
  end
  local found, seen = {}, {}
  local function scan(tab)
    if type(tab) ~= "table" then return end
    for k in pairs(tab) do
      if type(k) == "string" and k:match("^[%a_][%w_]*$") and k:sub(1, #last) == last and not seen[k] then
        seen[k] = true
        found[#found + 1] = path .. sep .. k
      end
    end
  end
  if type(t) == "table" then scan(t) end
  local mt = debug.getmetatable(t)          -- handles protect their metatables
  if type(mt) == "table" then scan(rawget(mt, "__index")) end
  if t == coru then                         -- submodules not loaded yet
    for dir in package.path:gmatch("([^;]+)/%?%.lua") do
      local p = io.popen("ls '" .. dir:gsub("'", "'\\''") .. "/coru' 2>/dev/null")
      for f in p:lines() do
        local m = f:match("^([%w_]+)%.lua$")
        if m and m ~= "modes" and m ~= "serve" and m:sub(1, #last) == last and not seen[m] then
          seen[m] = true
          found[#found + 1] = path .. sep .. m
        end
      end
      p:close()
    end
  end
  table.sort(found)
  return found
end
if tty then h.set_completion(complete) end

-- Ctrl-C on a terminal: cancels the line that runs (its current suspension
-- raises; the prompt comes back), or drops what was typed at the prompt (a
-- second one at an empty prompt ends the input). A line busy in a Lua loop
-- without suspending is interrupted by repl.c's hook ("interrupted").
local main, running = coru.current(), false
local sigint
if tty then
  sigint = coru.new_signal()
  sigint:start("sigint", function()
    if take_signal() then return end      -- the hook interrupted a busy line
    if running then main:cancel("interrupted") else interrupt() end
  end)
  sigint:unref()
end

while true do
  local src = read_line("> ")
  if not src then break end
  local f, err = compile(src)
  while not f and incomplete(err) do
    local more = read_line(">> ")
    if not more then break end
    src = src .. "\n" .. more
    f, err = compile(src)
  end
  if not f then
    stderr:write(err, "\n")
  else
    running = true
    line(true)
    show(xpcall(f, handler))
    line(false)
    running = false
  end
  io.stdout:flush()
end
io.write("\n")
if sigint then sigint:close() end
finish()
