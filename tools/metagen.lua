-- tools/metagen.lua: writes meta/ (LuaLS `---@meta` annotation files) from
-- the names coru exports at run time (tools/doccheck.lua's walk) and the
-- signatures below. Run after adding a function:
--   build/coru tools/metagen.lua .
-- The docs coverage check (spec/docs_spec.lua) fails when meta/ and the
-- runtime disagree. Names without a signature here get a generic one
-- (`...: any`) and a pointer to docs/.
local root = arg and arg[1] or "."
local check = dofile(root .. "/tools/doccheck.lua")

-- Classes: runtime type name -> LuaLS class (handle types that share a
-- module's name get a suffix).
local function class_of(tname)
  if tname == "coru.tcp" or tname == "coru.pipe" or tname == "coru.tls" or tname == "coru.poll"
     or tname == "coru.signal" or tname == "coru.process" then
    return tname .. "_handle"
  end
  return tname
end

-- Three modes: a callback last, or suspend in a task (results or nil, msg, name).
local function modes(params, ret, cbargs)
  return {params = params, ret = ret, cb = cbargs or ("err: string?, " .. (ret:match("^([^,]*)") or "any"))}
end

local S = {
  ["coru.floo.server.start"] = {"---Loads every workspace under config.data_dir and listens (task only); see docs/floo-server.md.",
    params = {"config table"}, ret = "table?, string?"},
  ["coru.floo.server.main"] = {"---coru-floo-server's command line; runs until SIGTERM/SIGINT and returns the exit status (task only).",
    params = {"argv string[]"}, ret = "integer"},
  ["coru.floo.server.load_config"] = {"---Reads a JSON configuration file; relative paths are made relative to it.",
    params = {"file string"}, ret = "table?, string?"},
  ["coru.floo.server.check_path"] = {"---nil when path is a valid buffer path, else the reason.", params = {"path string"}, ret = "string?"},
  ["coru.floo.server.valid_utf8"] = {"---Whether s is UTF-8 as coru.dmp takes it.", params = {"s string"}, ret = "boolean"},
  ["coru.run"] = {"---Runs fn(...) as a task until it ends (plain LuaJIT), or awaits it in a task.\n---With no function: runs the loop until no referenced handle is left (luv's uv.run()).",
    params = {"fn? fun(...):...", "... any"}, ret = "..."},
  ["coru.spawn"] = {"---Starts fn(...) as a task now; it runs until its first suspension.", params = {"fn fun(...):...", "... any"}, ret = "coru.task"},
  ["coru.inline"] = {"---A function that spawns fn as a new task on each call.", params = {"fn fun(...):..."}, ret = "fun(...):coru.task"},
  ["coru.inline_callbacks"] = {"---luvit-inlineCallbacks: function(cb, ...) spawning fn; cb(nil, results...) or cb(err).", params = {"fn fun(...):..."}, ret = "fun(cb: fun(err: any, ...)?, ...):coru.task"},
  ["coru.await"] = {"---Yields f(..., resume) with Twisted's rule: the callback's first argument is an error. Task only.", params = {"f function", "... any"}, ret = "..."},
  ["coru.tasks"] = {"---Every unfinished task: {task=, status=, waits=} (what a suspended one waits on).", params = {}, ret = "{task: coru.task, status: string, waits: string?}[]"},
  ["coru.current"] = {"---The running task, or nil outside tasks.", params = {}, ret = "coru.task?"},
  ["coru.sleep"] = {"---Suspends the task for at least ms milliseconds. Task only (no callback form).", params = {"ms number"}, ret = nil},
  ["coru.pass"] = {"---Suspends until the next loop iteration. Task only.", params = {}, ret = nil},
  ["coru.now"] = {"---Loop time in milliseconds.", params = {}, ret = "number"},
  ["coru.all"] = {"---Awaits every task; one results table ({n=, ...}) per task, in order. Task only.", params = {"tasks coru.task[]"}, ret = "table[]"},
  ["coru.any"] = {"---Awaits the first task to end: its index and results. Task only.", params = {"tasks coru.task[]"}, ret = "integer, ..."},
  ["coru.timeout"] = {"---Runs fn(...) as a subtask; after ms it is cancelled and timeout returns nil, \"timeout\". Task only.", params = {"ms number", "fn fun(...):...", "... any"}, ret = "..."},
  ["coru.channel"] = {"---A channel (capacity 0: a rendezvous).", params = {"capacity? integer"}, ret = "coru.channel"},
  ["coru.is_cancelled"] = {"---Whether err is a cancellation error.", params = {"err any"}, ret = "boolean"},
  ["coru.on_error"] = {"---Sets the handler of unobserved task failures and callback errors; returns the previous one.", params = {"fn? fun(err: any, traceback: string?)"}, ret = "function?"},
  ["coru.exit"] = {"---Flushes, closes every handle and exits.", params = {"status? integer|boolean"}, ret = nil},
  ["coru.version"] = {"---coru's version string.", field = "string"},
  ["coru.CALLBACK"] = {"---Marks where resume goes among the arguments of coroutine.yield(f, ...).", field = "lightuserdata"},
  ["coru.new_timer"] = {"---A timer handle.", params = {}, ret = "coru.timer"},
  ["coru.fs_stat"] = modes({"path string"}, "table?, string?, string?"),
  ["coru.fs_read_file"] = modes({"path string"}, "string?, string?, string?"),
  ["coru.fs_open"] = modes({"path string", "flags string|integer", "mode? integer"}, "integer?, string?, string?"),
  ["coru.fs_close"] = modes({"fd integer"}, "boolean?, string?, string?"),
  ["coru.fs_read"] = modes({"fd integer", "size integer", "offset? integer"}, "string?, string?, string?"),
  ["coru.fs_write"] = modes({"fd integer", "data string|string[]", "offset? integer"}, "integer?, string?, string?"),
  ["coru.fs_unlink"] = modes({"path string"}, "boolean?, string?, string?"),
  ["coru.fs_mkdir"] = modes({"path string", "mode? integer"}, "boolean?, string?, string?"),
  ["coru.fs_rename"] = modes({"path string", "new_path string"}, "boolean?, string?, string?"),
  ["coru.getaddrinfo"] = modes({"host string?", "service? string|integer", "hints? table"}, "table[]?, string?, string?"),
  ["coru.work"] = modes({"fn function", "... any"}, "..."),
  -- task
  ["coru.task:await"] = {"---The task's results, or its error raised here. Task only.", params = {}, ret = "..."},
  ["coru.task:next"] = {"---cb(err, results...) once the task ends.", params = {"cb fun(err: any, ...)"}, ret = "coru.task"},
  ["coru.task:cancel"] = {"---Cancels the task's current suspension; true if it was still running.", params = {"reason? any"}, ret = "boolean"},
  ["coru.task:status"] = {"---\"running\", \"suspended\", \"done\", \"failed\" or \"cancelled\".", params = {}, ret = "string"},
  -- channel
  ["coru.channel:send"] = {"---Sends v; suspends while the buffer is full. true, or nil, \"closed\".", params = {"v any"}, ret = "boolean?, string?"},
  ["coru.channel:recv"] = {"---The next value; nil, \"closed\" once closed and drained.", params = {}, ret = "any, string?"},
  ["coru.channel:try_send"] = {"---true if taken now, false if it would wait, nil, \"closed\". Never suspends.", params = {"v any"}, ret = "boolean?, string?"},
  ["coru.channel:try_recv"] = {"---true, v if a value was there; false if none; nil, \"closed\". Never suspends.", params = {}, ret = "boolean?, any"},
  ["coru.select"] = {"---The first channel operation that can proceed: i, v / i, true / i, nil, \"closed\" / nil, \"timeout\". Task only.", params = {"cases ({[1]: coru.channel, [2]: \"recv\"}|{[1]: coru.channel, [2]: \"send\", [3]: any})[]", "timeout? number"}, ret = "integer?, any, string?"},
  ["coru.channel:close"] = {"---Closes the channel.", params = {}, ret = nil},
  -- modules
  ["coru.tcp.connect"] = modes({"host string", "port integer", "opts? table"}, "coru.tcp_handle?, string?, string?", "err: string?, stream: coru.tcp_handle?"),
  ["coru.tcp.listen"] = {"---Listens; handler(stream) runs in its own task per connection.", params = {"host string?", "port integer", "handler fun(stream: coru.tcp_handle)", "opts? table"}, ret = "coru.tcp_handle?, string?, string?"},
  ["coru.tcp.resolve"] = {"---Addresses of host (an IP literal is returned as is).", params = {"host string", "port integer", "family? string"}, ret = "table[]?, string?, string?"},
  ["coru.pipe.connect"] = modes({"path string", "opts? table"}, "coru.pipe_handle?, string?, string?", "err: string?, stream: coru.pipe_handle?"),
  ["coru.pipe.listen"] = {"---Listens on a unix socket; handler(stream) per connection.", params = {"path string", "handler fun(stream: coru.pipe_handle)", "opts? table"}, ret = "coru.pipe_handle?, string?, string?"},
  ["coru.fs.read_file"] = modes({"path string"}, "string?, string?, string?"),
  ["coru.fs.write_file"] = modes({"path string", "data string|string[]", "opts? {atomic: boolean?, mode: integer?}"}, "boolean?, string?, string?"),
  ["coru.fs.append_file"] = modes({"path string", "data string|string[]", "opts? {mode: integer?}"}, "boolean?, string?, string?"),
  ["coru.fs.exists"] = modes({"path string"}, "boolean?, string?, string?"),
  ["coru.fs.mkdirp"] = modes({"path string", "mode? integer"}, "boolean?, string?, string?"),
  ["coru.fs.rmtree"] = modes({"path string"}, "boolean?, string?, string?"),
  ["coru.fs.walk"] = {"---Iterator of path, type, depth over the tree (pre-order).", params = {"dir string"}, ret = "fun():string?, string?, integer?"},
  ["coru.fs.watch"] = {"---A watcher of path, iterated in a task.", params = {"path string", "opts? {recursive: boolean?, poll: boolean?, interval: integer?}"}, ret = "table?, string?, string?"},
  ["coru.fs.join"] = {"---Joins two path parts.", params = {"a string", "b string"}, ret = "string"},
  ["coru.process.spawn"] = {"---Starts a process.", params = {"cmd string", "args? string[]", "opts? table"}, ret = "table?, string?, string?"},
  ["coru.process.exec"] = {"---Runs a command to its end: stdout, stderr, code, signal. Task only.", params = {"cmd string", "args? string[]", "opts? table"}, ret = "string?, string?, integer?, integer?|string?"},
  ["coru.tls.connect"] = modes({"host string", "port integer", "opts? table"}, "coru.tls_handle?, string?, string?", "err: string?, stream: coru.tls_handle?"),
  ["coru.tls.listen"] = {"---A TLS server: handler(stream) per connection once its handshake is done.", params = {"host string?", "port integer", "opts table", "handler fun(stream: coru.tls_handle)"}, ret = "coru.tcp_handle?, string?, string?"},
  ["coru.tls.wrap"] = modes({"stream any", "opts table"}, "coru.tls_handle?, string?, string?", "err: string?, stream: coru.tls_handle?"),
  ["coru.tls.context"] = {"---An OpenSSL context to reuse (opts.context).", params = {"opts? table"}, ret = "coru.tls.context?, string?, string?"},
  ["coru.tls.openssl_version"] = {"---OpenSSL's version string.", field = "string"},
  ["coru.json.encode"] = {"---JSON text, or nil, msg.", params = {"value any"}, ret = "string?, string?"},
  ["coru.json.decode"] = {"---A value, or nil, msg.", params = {"text string"}, ret = "any, string?"},
  ["coru.json.null"] = {"---JSON null.", field = "lightuserdata"},
  ["coru.json.array"] = {"---Marks t as an array.", params = {"t? table"}, ret = "table"},
  ["coru.json.object"] = {"---Marks t as an object.", params = {"t? table"}, ret = "table"},
  ["coru.json.is_array"] = {"---Whether t is marked as an array.", params = {"t table"}, ret = "boolean"},
  ["coru.json.new"] = {"---A codec with its own options (max_depth, sparse_arrays).", params = {"opts? table"}, ret = "coru.json"},
  ["coru.signal.wait"] = {"---Suspends until the signal arrives. Task only.", params = {"signame string"}, ret = "string"},
}
-- stream methods: the same for every stream type
local STREAM = {
  read = {"---The next chunk; nil at EOF; nil, msg[, name] on failure.", params = {"cb? fun(err: string?, data: string?)"}, ret = "string?, string?, string?"},
  read_line = {"---The next line without its newline; nil, \"eof\"/\"timeout\"/\"closed\"/\"line too long\", data so far.", params = {"cb? fun(err: string?, line: string?)"}, ret = "string?, string?, string?"},
  read_bytes = {"---Exactly n bytes.", params = {"n integer", "cb? fun(err: string?, data: string?)"}, ret = "string?, string?, string?"},
  read_until = {"---Data up to and without delim.", params = {"delim string", "cb? fun(err: string?, data: string?)"}, ret = "string?, string?, string?"},
  write = {"---Writes data; returns once written (backpressure).", params = {"data string|string[]", "cb? fun(err: string?)"}, ret = "boolean?, string?, string?"},
  shutdown = {"---Shuts the write side down.", params = {"cb? fun(err: string?)"}, ret = "boolean?, string?, string?"},
  close = {"---Closes the handle.", params = {"cb? fun()"}, ret = nil},
  settimeouts = {"---Connect, send, read timeouts in ms.", params = {"connect? number", "send? number", "read? number"}, ret = nil},
  settimeout = {"---All three timeouts in ms.", params = {"ms? number"}, ret = nil},
  set_max_line = {"---The longest line a read accepts.", params = {"n integer"}, ret = nil},
  getpeername = {"---{ip=, port=, family=}", params = {}, ret = "table?, string?, string?"},
  getsockname = {"---{ip=, port=, family=}", params = {}, ret = "table?, string?, string?"},
}

-- every submodule loaded, so that coru's fields list them all
local coru = require "coru"
for f in io.popen("ls " .. root .. "/lua/coru"):lines() do
  local m = f:match("^([%w_]+)%.lua$")
  if m and m ~= "modes" and m ~= "serve" then local _ = coru[m] end
end
-- Parameter names from the docs: every code span `name(a, b [, c])` of
-- docs/*.md, keyed by the last part of the name (fs_open, read_line, start).
local docsig = {}
local KEYWORDS = {}
for k in ("and break do else elseif end false for function goto if in local nil not or repeat return then true until while"):gmatch("%a+") do KEYWORDS[k] = true end
do
  local p = io.popen("cat " .. root .. "/docs/*.md")
  local text = p:read("*a")
  p:close()
  for span in text:gmatch("`([^`\n]+)`") do
    local name, args = span:match("^([%w_.:]+)%((.*)%)")
    if name and not args:find("[()]") then
      local key = name:match("([%w_]+)$")
      local params, depth, braces, cur, optional = {}, 0, 0, {}, false
      local function flush()
        local p = table.concat(cur):match("^%s*(.-)%s*$")
        cur = {}
        if p == "" then return end
        local id = p:match("^%.%.%.$") or (p:sub(1, 1) == "{" and "opts") or p:match("^([%a_][%w_]*)")
        if not id then id = "arg" .. (#params + 1) end
        if KEYWORDS[id] then id = id .. "_" end
        params[#params + 1] = {name = id, optional = optional or p:find("=") ~= nil}
      end
      for ch in args:gmatch(".") do
        if braces > 0 then
          cur[#cur + 1] = ch
          if ch == "{" then braces = braces + 1 elseif ch == "}" then braces = braces - 1 end
        elseif ch == "{" then braces = 1 cur[#cur + 1] = ch
        elseif ch == "[" then flush() depth = depth + 1 optional = true
        elseif ch == "]" then flush() depth = depth - 1 if depth == 0 then optional = false end
        elseif ch == "," then flush()
        else cur[#cur + 1] = ch end
      end
      flush()
      local old = docsig[key]
      if not old or #params > #old.params then docsig[key] = {params = params, method = name:find(":") ~= nil} end
    end
  end
end

-- A signature from the docs for an export without one above.
local function from_docs(entry)
  local fam = entry.name:match("^coru%.([%w_]+)[.:]")
  local d, flat = docsig[entry.key], false
  if not d and fam then d, flat = docsig[fam .. "_" .. entry.key], true end
  if not d then return nil end
  local params, seen = {}, {}
  for i, p in ipairs(d.params) do
    -- a flat form's first parameter is the handle: the method's self
    if not (entry.sep == ":" and flat and i == 1) and not seen[p.name] then
      seen[p.name] = true
      local ty = p.name == "..." and "any" or (p.name == "cb" or p.name == "callback") and "fun(err: string?, ...)" or "any"
      params[#params + 1] = (p.name == "..." and "..." or p.name .. (p.optional and "?" or "")) .. " " .. ty
    end
  end
  return {"---See docs/ (" .. entry.name .. ").", params = params, ret = "..."}
end

local exports = check.exports(root)
local groups, order = {}, {}
for _, e in ipairs(exports) do
  local owner, sep, key = e.name:match("^(.-)([.:])([^.:]+)$")
  if owner and not owner:match("^coru%.modes$") and not owner:match("^coru%.serve$")
     and not owner:match("^coru%._tls") and not e.name:match("^coru%._") then
    local cls = sep == ":" and class_of(owner) or owner
    if not groups[cls] then groups[cls] = {} order[#order + 1] = cls end
    table.insert(groups[cls], {key = key, sep = sep, name = e.name, owner = owner})
  end
end
table.sort(order)

local function sig(full, entry)
  local s = S[full]
  if not s and entry.sep == ":" then s = STREAM[entry.key] end
  return s or from_docs(entry)
end

local function emit_fn(out, var, entry, s)
  local params = s and s.params or {"... any"}
  if s and s[1] then out[#out + 1] = s[1] end
  if s and s.cb then
    out[#out + 1] = ("---@overload fun(%s%scb: fun(%s)): boolean"):format(
      (function() local t = {} for _, p in ipairs(params) do local n, ty = p:match("^(%S+)%s+(.+)$") t[#t + 1] = n .. ": " .. ty end return table.concat(t, ", ") end)(),
      #params > 0 and ", " or "", s.cb)
  end
  if not s then out[#out + 1] = "---See docs/ (" .. entry.name .. ")." end
  local names = {}
  for _, p in ipairs(params) do
    local n, ty = p:match("^(%S+)%s+(.+)$")
    out[#out + 1] = ("---@param %s %s"):format(n, ty)
    names[#names + 1] = n:gsub("%?$", "")
  end
  local ret = s and s.ret
  if s == nil then ret = "..." end
  if ret then
    -- split on the commas outside braces and parentheses
    local depth, cur = 0, {}
    for ch in (ret .. ","):gmatch(".") do
      if ch == "{" or ch == "(" then depth = depth + 1 elseif ch == "}" or ch == ")" then depth = depth - 1 end
      if ch == "," and depth == 0 then
        out[#out + 1] = "---@return " .. table.concat(cur):match("^%s*(.-)%s*$")
        cur = {}
      else
        cur[#cur + 1] = ch
      end
    end
  end
  out[#out + 1] = ("function %s%s%s(%s) end"):format(var, entry.sep, entry.key, table.concat(names, ", "))
  out[#out + 1] = ""
end

local files = {}
local function file_for(cls)
  -- module classes go in their module's file; handle classes in coru.lua
  local mod = cls:match("^coru%.([%w_]+)$")
  if mod and cls ~= "coru.task" and cls ~= "coru.channel" and cls ~= "coru.timer" and groups[cls]
     and groups[cls][1].sep == "." and package.searchpath("coru." .. mod, package.path) then
    return "coru/" .. mod .. ".lua", mod
  end
  return "coru.lua"
end

for _, cls in ipairs(order) do
  local path, mod = file_for(cls)
  local f = files[path]
  if not f then
    f = {}
    files[path] = f
  end
  local var = cls == "coru" and "coru" or (mod and "M") or cls:gsub("[.]", "_")
  f[#f + 1] = "---@class " .. cls
  if cls == "coru" then
    f[#f + 1] = "coru = {}"
  else
    f[#f + 1] = "local " .. var .. " = {}"
  end
  f[#f + 1] = ""
  local entries = groups[cls]
  table.sort(entries, function(a, b) return a.key < b.key end)
  for _, entry in ipairs(entries) do
    local s = sig(entry.name, entry)
    local value = cls == "coru" and rawget(require("coru"), entry.key)
    if type(value) == "table" and entry.sep == "." then
      f[#f + 1] = ("---@type %s"):format(entry.name)
      f[#f + 1] = ("%s.%s = require(%q)"):format(var, entry.key, entry.name)
      f[#f + 1] = ""
    elseif type(value) == "userdata" and entry.sep == "." and package.searchpath(entry.name, package.path) then
      f[#f + 1] = ("%s.%s = require(%q) ---@type any"):format(var, entry.key, entry.name)
      f[#f + 1] = ""
    elseif s and s.field then
      if s[1] then f[#f + 1] = s[1] end
      f[#f + 1] = ("---@type %s"):format(s.field)
      f[#f + 1] = ("%s.%s = nil"):format(var, entry.key)
      f[#f + 1] = ""
    else
      emit_fn(f, var, entry, s)
    end
  end
  if mod then f.ret = var end
end

os.execute("mkdir -p " .. root .. "/meta/coru")
for path, f in pairs(files) do
  local head = "---@meta " .. (path == "coru.lua" and "coru" or "coru." .. path:match("coru/(.*)%.lua$")) ..
    "\n-- LuaLS annotations of coru, generated by tools/metagen.lua from the\n" ..
    "-- runtime's exports (do not edit: edit tools/metagen.lua and rerun it).\n\n"
  local tail = path == "coru.lua" and "return coru\n" or ("return " .. (f.ret or "nil") .. "\n")
  local fh = assert(io.open(root .. "/meta/" .. path, "w"))
  fh:write(head, table.concat(f, "\n"), "\n", tail)
  fh:close()
end
print("metagen: wrote " .. root .. "/meta/")
