-- tools/rock_check.lua TREE FACE: run by `make test-rock` from a tree that
-- `luarocks make` installed into. Checks that coru and its Lua modules come
-- from TREE, and that a TCP round trip and a file read work there.
local tree, face = arg[1], arg[2]
local coru = coru or require "coru"
local function from_tree(what, path)
  if not path or path:sub(1, #tree) ~= tree and not path:find(tree, 1, true) then
    error(("rock_check (%s): %s comes from %s, not from the tree %s"):format(face, what, tostring(path), tree), 0)
  end
end
from_tree("coru.tcp", package.searchpath("coru.tcp", package.path))
-- every Lua module of the source tree is in the rock, subdirectories too
local p = io.popen("cd lua && find coru -name '*.lua'")
for f in p:lines() do
  local m = f:gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
  from_tree(m, package.searchpath(m, package.path))
end
p:close()
if face == "module" then from_tree("coru.so", package.searchpath("coru", package.cpath)) end
local src = debug.getinfo(coru.tcp.connect, "S").source
from_tree("coru.tcp.connect", src:sub(2))

-- the rock carries the LuaLS annotations
if face == "host" then
  local p = io.popen("find '" .. tree .. "' -path '*/meta/coru.lua'")
  local found = p:read("*l")
  p:close()
  assert(found, "rock_check: meta/coru.lua is not in the rock")
end

local function check()
  local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(c)
    c:write("echo: " .. assert(c:read_line()) .. "\n")
  end))
  local c = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
  c:write("rock\n")
  local line = assert(c:read_line())
  c:close()
  srv:close()
  assert(line == "echo: rock", line)
  local path = os.tmpname()
  assert(coru.fs.write_file(path, "data", {atomic = true}))
  assert(coru.fs.read_file(path) == "data")
  os.remove(path)
  return true
end
assert(coru.run(check))
print("rock_check: " .. face .. " face ok from " .. tree)
