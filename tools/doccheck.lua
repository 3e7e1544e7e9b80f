-- tools/doccheck.lua: every name reachable from `coru` at run time is
-- documented. Run by spec/docs_spec.lua (so by `make test`, both faces), or
-- alone: `build/coru tools/doccheck.lua` (exit 1 and the list if one is
-- missing).
--
-- What is walked: the fields of `coru`; every submodule (each file
-- lua/coru/**.lua, each package.preload["coru.*"], each table field of
-- `coru`), its fields, and the methods of its userdata values; the methods
-- of every handle type (the registry's "coru.*" metatables).
-- What counts as documented: the name appears in a code span or a code
-- block of some docs/*.md: `name`, `s:name`, `fs.name`, or luv's flat form
-- of it (`tcp_bind` for tcp:bind, `fs_stat` for coru.fs.stat). Names that are not API are listed in docs/internals.md, which
-- is one of the docs like the others.
local M = {}

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function lines_of(cmd)
  local t, p = {}, io.popen(cmd)
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

-- Identifiers of the code in docs.
function M.documented(root)
  local plain = {}
  local files = lines_of("ls " .. ("%q"):format(root .. "/docs") .. "/*.md 2>/dev/null")
  assert(#files > 0, "doccheck: no docs/*.md under " .. root)
  local function scan(code)
    for id in code:gmatch("[%a_][%w_]*") do plain[id] = true end
  end
  for _, f in ipairs(files) do
    local s = assert(read(f))
    s = s:gsub("```.-```", function(block) scan(block) return "" end)
    for span in s:gmatch("`([^`\n]+)`") do scan(span) end
  end
  return plain, files
end

-- Every exported name: list of {name = "coru.fs.read_file", key = "read_file", method = bool}.
function M.exports(root)
  local coru = require "coru"
  local out, seen = {}, {}
  local function add(qname, key, method)
    if seen[qname] then return end
    seen[qname] = true
    out[#out + 1] = {name = qname, key = key, method = method}
  end
  local function methods_of(tname, mt)
    local idx = type(mt) == "table" and rawget(mt, "__index")
    if type(idx) ~= "table" then return end
    for k in pairs(idx) do
      if type(k) == "string" then add(tname .. ":" .. k, k, true) end
    end
  end
  local typed = {}   -- metatables of handle types: walked once, under their own name
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "string" and k:match("^coru%.") and type(v) == "table" then typed[v] = true end
  end
  local function methods_of_value(q, v)
    local mt = getmetatable(v)
    if not typed[mt] then methods_of(q, mt) end
  end
  local function walk(prefix, t)
    for k, v in pairs(t) do
      if type(k) == "string" then
        local q = prefix .. "." .. k
        add(q, k, prefix ~= "coru")
        if type(v) == "table" and not getmetatable(v) and prefix == "coru" then walk(q, v) end
        if type(v) == "userdata" then methods_of_value(q, v) end
      end
    end
  end
  walk("coru", coru)
  -- submodules: files, preloads
  local names = {}
  for _, f in ipairs(lines_of("cd " .. ("%q"):format(root .. "/lua") .. " && find coru -name '*.lua' 2>/dev/null")) do
    local m = f:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    names[#names + 1] = m
  end
  for k in pairs(package.preload) do
    if type(k) == "string" and k:match("^coru%.") then names[#names + 1] = k end
  end
  table.sort(names)
  -- the stdio streams are not opened for this (a handle on fd 0 would change
  -- what the specs after this one see); their methods are their handle
  -- type's, walked below
  local streams = {["coru.stdin"] = true, ["coru.stdout"] = true, ["coru.stderr"] = true}
  for _, m in ipairs(names) do
    local ok, mod = true, nil
    if streams[m] and not package.loaded[m] then
      add(m, m:match("[^.]*$"), false)
    else
      ok, mod = pcall(require, m)
    end
    if ok then
      if type(mod) == "table" then walk(m, mod)
      elseif type(mod) == "userdata" then methods_of_value(m, mod) end
    end
  end
  -- handle types
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "string" and k:match("^coru%.") and type(v) == "table" then
      methods_of(k, v)
    end
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

function M.missing(root)
  local plain = M.documented(root)
  local miss = {}
  for _, e in ipairs(M.exports(root)) do
    -- luv's flat form documents the method or field too: tcp_bind for
    -- tcp:bind, fs_stat for coru.fs.stat
    local fam = e.name:match("^coru%.([%w_]+)[%.:]")
    local ok = plain[e.key] or (fam and plain[fam .. "_" .. e.key])
    if not ok then miss[#miss + 1] = e.name end
  end
  return miss
end

-- LuaLS annotations (meta/**.lua, written by tools/metagen.lua) against
-- the runtime: names the runtime exports and meta/ does not declare, and
-- names meta/ declares that the runtime does not export. Internal modules
-- (coru.modes, coru.serve, coru._*) are not annotated; coru.<submodule>
-- fields are declared as requires.
local function internal(name)
  return name:match("^coru%._") or name:match("^coru%.modes[.:]") or name:match("^coru%.serve[.:]")
end

function M.meta_declared(root)
  local declared = {}
  for _, f in ipairs(lines_of("find " .. ("%q"):format(root .. "/meta") .. " -name '*.lua' 2>/dev/null")) do
    local class_of_var, pending = {}, nil
    for line in io.lines(f) do
      local cls = line:match("^%-%-%-@class ([%w_.]+)")
      if cls then pending = cls end
      local var = line:match("^local ([%w_]+) = {}") or line:match("^(coru) = {}")
      if var and pending then class_of_var[var] = pending:gsub("_handle$", "") pending = nil end
      local v, sep, key = line:match("^function ([%w_]+)([.:])([%w_]+)%(")
      if not v then v, key = line:match("^([%w_]+)%.([%w_]+) = ") sep = "." end
      if v and class_of_var[v] then declared[class_of_var[v] .. sep .. key] = true end
    end
  end
  return declared
end

function M.meta_mismatch(root)
  local declared = M.meta_declared(root)
  local coru = require "coru"
  local undeclared, exported = {}, {}
  for _, e in ipairs(M.exports(root)) do
    if not internal(e.name) then
      exported[e.name] = true
      local sub = e.name:match("^coru%.([%w_]+)$")
      local is_module = sub and package.searchpath("coru." .. sub, package.path)
      if not declared[e.name] and not is_module then undeclared[#undeclared + 1] = e.name end
    end
  end
  local stale = {}
  for name in pairs(declared) do
    local sub = name:match("^coru%.([%w_]+)$")
    if not exported[name] and not (sub and package.searchpath("coru." .. sub, package.path)) then
      stale[#stale + 1] = name
    end
  end
  table.sort(undeclared)
  table.sort(stale)
  return undeclared, stale
end

if arg and type(arg[0]) == "string" and arg[0]:match("doccheck%.lua$") then   -- run as a script
  local root = arg and arg[1] or "."
  local miss = M.missing(root)
  for _, n in ipairs(miss) do print("undocumented: " .. n) end
  local undeclared, stale = M.meta_mismatch(root)
  for _, n in ipairs(undeclared) do print("not in meta/ (run tools/metagen.lua): " .. n) end
  for _, n in ipairs(stale) do print("in meta/ but not exported: " .. n) end
  os.exit(#miss + #undeclared + #stale == 0 and 0 or 1)
end
return M
