-- Run by spec/luv_oracle_spec.lua under Debian's luv 1.44 (lua5.1) and
-- under coru.luv: luv's file-system functions, synchronous and callback
-- forms, with the values a program sees (error names, not messages).
local uv = require "luv"
local dir = assert(os.getenv("ORACLE_TMP"))
local C = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local try, show = C.try, C.show
local p = dir .. "/f"

try("open w", function() local fd = uv.fs_open(p, "w", 420) return type(fd) end)
try("open wx exists", uv.fs_open, p, "wx", 420)
try("open r+ and write", function()
  local fd = uv.fs_open(p, "r+", 0)
  local a = uv.fs_write(fd, "hello world", 0)
  local b = uv.fs_write(fd, {"!", "?"}, -1)
  local st = uv.fs_fstat(fd)
  local c = uv.fs_read(fd, 5, 6)
  local d = uv.fs_read(fd, 100, 1000)
  uv.fs_ftruncate(fd, 4)
  local e = uv.fs_fstat(fd).size
  uv.fs_fsync(fd) uv.fs_fdatasync(fd)
  return a, b, st.size, st.type, c, d, e, uv.fs_close(fd)
end)
try("close twice", function() local fd = uv.fs_open(p, "r", 0) uv.fs_close(fd) return uv.fs_close(fd) end)
try("read bad fd", uv.fs_read, 9999, 1, 0)
try("stat", function() local s = uv.fs_stat(p) return s.size, s.type, s.nlink, type(s.atime.sec), type(s.ino) end)
try("lstat missing", uv.fs_lstat, dir .. "/none")
try("mkdir", uv.fs_mkdir, dir .. "/d", 493)
try("mkdir again", uv.fs_mkdir, dir .. "/d", 493)
try("rename", uv.fs_rename, p, dir .. "/d/g")
try("rename missing", uv.fs_rename, p, dir .. "/d/h")
try("rmdir not empty", uv.fs_rmdir, dir .. "/d")
try("link", uv.fs_link, dir .. "/d/g", dir .. "/d/l")
try("symlink", uv.fs_symlink, dir .. "/d/g", dir .. "/d/s")
try("readlink", function() return uv.fs_readlink(dir .. "/d/s") == dir .. "/d/g" end)
try("realpath", function() return uv.fs_realpath(dir .. "/d/s") == uv.fs_realpath(dir .. "/d/g") end)
try("lstat symlink", function() return uv.fs_lstat(dir .. "/d/s").type end)
try("chmod", uv.fs_chmod, dir .. "/d/g", 384)
try("mode", function() return uv.fs_stat(dir .. "/d/g").mode % 512 end)
try("access", uv.fs_access, dir .. "/d/g", "r")
try("utime", uv.fs_utime, dir .. "/d/g", 1000, 2000)
try("mtime", function() return uv.fs_stat(dir .. "/d/g").mtime.sec end)
try("copyfile", uv.fs_copyfile, dir .. "/d/g", dir .. "/d/c")
try("copyfile excl", uv.fs_copyfile, dir .. "/d/g", dir .. "/d/c", {excl = true})
try("sendfile", function()
  local a = uv.fs_open(dir .. "/d/g", "r", 0) local b = uv.fs_open(dir .. "/d/t", "w", 420)
  local n = uv.fs_sendfile(b, a, 0, 3) uv.fs_close(a) uv.fs_close(b) return n end)
try("scandir", function()
  local req = uv.fs_scandir(dir .. "/d") local names = {}
  while true do local n, t = uv.fs_scandir_next(req) if not n then break end names[#names + 1] = n .. ":" .. t end
  table.sort(names) return table.concat(names, ",") end)
try("scandir missing", uv.fs_scandir, dir .. "/none")
try("opendir readdir", function()
  local d = uv.fs_opendir(dir .. "/d", nil, 10) local e = uv.fs_readdir(d) local names = {}
  for _, x in ipairs(e) do names[#names + 1] = x.name .. ":" .. x.type end
  table.sort(names) return table.concat(names, ","), uv.fs_closedir(d) end)
try("mkstemp", function() local fd, path = uv.fs_mkstemp(dir .. "/tXXXXXX") uv.fs_close(fd) return type(fd), #path, uv.fs_unlink(path) end)
try("statfs", function() local s = uv.fs_statfs(dir) return type(s.bsize), type(s.blocks) end)
for _, f in ipairs {"g", "l", "s", "c", "t"} do uv.fs_unlink(dir .. "/d/" .. f) end
try("rmdir", uv.fs_rmdir, dir .. "/d")

-- callback forms, one after another
local steps = {
  function(k) uv.fs_open(dir .. "/a", "w", 420, function(err, fd) show("cb open", err, type(fd)) uv.fs_close(fd, function(e) show("cb close", e) k() end) end) end,
  function(k) uv.fs_stat(dir .. "/none", function(err, st) show("cb stat missing", err ~= nil and err:match("^%u+"), st) k() end) end,
  function(k) uv.fs_write(9999, "x", -1, function(err) show("cb write bad fd", err and err:match("^%u+")) k() end) end,
  function(k) uv.fs_scandir(dir, function(err, req) show("cb scandir", err, uv.fs_scandir_next(req)) k() end) end,
  function(k) uv.fs_unlink(dir .. "/a", function(err, ok) show("cb unlink", err, ok) k() end) end,
  function(k) uv.fs_mkdtemp(dir .. "/mXXXXXX", function(err, path) show("cb mkdtemp", err, #path) uv.fs_rmdir(path, function(e, ok) show("cb rmdir", e, ok) k() end) end) end,
  function(k) uv.fs_readlink(dir .. "/none", function(err) show("cb readlink missing", err and err:match("^%u+")) k() end) end,
}
local function run(i) if steps[i] then steps[i](function() run(i + 1) end) end end
run(1)
uv.run()
