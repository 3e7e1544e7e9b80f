-- Run by spec/luv_oracle_spec.lua under Debian's luv 1.44 (lua5.1) and
-- under coru.luv: each line is what a luv program sees of one call (the
-- error name of a failure, "raises" for an error, the values otherwise).
local uv = require "luv"
local function fmt(v)
  if type(v) == "userdata" or type(v) == "table" then
    return tostring(v):match("^(uv_%w+_t)") or type(v)
  end
  return tostring(v)
end
local function try(label, f, ...)
  local r = {n = select("#", pcall(f, ...)), pcall(f, ...)}
  if not r[1] then return print(label, "raises") end
  if r[2] == nil and r.n >= 4 then return print(label, "fail", r[4]) end
  local t = {}
  for i = 2, r.n do t[#t + 1] = fmt(r[i]) end
  print(label, table.concat(t, " "))
end
local tmp = os.getenv("ORACLE_TMP") or "/tmp"

try("timer again never started", function() local t = uv.new_timer() local a, b, c = t:again() t:close() return a, b, c end)
try("timer get_repeat", function() local t = uv.new_timer() t:start(10, 20, function() end) local r = t:get_repeat() t:close() return r end)
try("stat missing", uv.fs_stat, "/nonexistent")
try("open bad flags", uv.fs_open, tmp .. "/x", "bogus", 420)
try("tcp bind bad ip", function() local t = uv.new_tcp() local ok = pcall(t.bind, t, "1.2.3", 0) t:close() return ok end)
try("bind used port", function()
  local a, b = uv.new_tcp(), uv.new_tcp()
  a:bind("127.0.0.1", 0) a:listen(1, function() end)
  b:bind("127.0.0.1", a:getsockname().port)
  local r = {b:listen(1, function() end)}
  a:close() b:close()
  return r[1], r[2], r[3]
end)
try("shutdown unconnected", function() local t = uv.new_tcp() local a, b, c = t:shutdown() t:close() return a, b, c end)
try("write unconnected", function() local t = uv.new_tcp() local a, b, c = t:write("x") t:close() return a, b, c end)
try("read_start unconnected", function() local t = uv.new_tcp() local a, b, c = t:read_start(function() end) t:close() return a, b, c end)
try("getaddrinfo sync unknown", function() local a, b, c = uv.getaddrinfo("nonexistent.invalid") return a, b, c == "EAI_NONAME" or c == "EAI_AGAIN" end)
try("getaddrinfo no args", uv.getaddrinfo)
try("getaddrinfo sync numeric", function() local r = uv.getaddrinfo("127.0.0.1", "80", {socktype = "stream"}) return #r, r[1].addr, r[1].port, r[1].family, r[1].socktype end)
try("getnameinfo sync", function() local h, s = uv.getnameinfo({ip = "127.0.0.1", port = 80}) return type(h), s end)
try("handle type", function() local t = uv.new_timer() local a, b = t:get_type() t:close() return a, b end)
try("pipe type", function() local p = uv.new_pipe(false) local a, b = uv.handle_get_type(p) p:close() return a, b end)
try("is_closing after close", function() local t = uv.new_timer() t:close() return t:is_closing() end)
try("is_active timer", function() local t = uv.new_timer() local a = t:is_active() t:start(100, 0, function() end) local b = t:is_active() t:close() return a, b end)
try("has_ref unref", function() local t = uv.new_timer() t:unref() local r = t:has_ref() t:close() return r end)
try("fs write array", function()
  local fd = uv.fs_open(tmp .. "/oracle-out", "w", 420) local r = uv.fs_write(fd, {"a", "bc"}, 0) uv.fs_close(fd) return r end)
try("fs read back", function() local fd = uv.fs_open(tmp .. "/oracle-out", "r", 0) local r = uv.fs_read(fd, 10, 0) uv.fs_close(fd) return r end)
try("fs stat fields", function() local s = uv.fs_stat(tmp .. "/oracle-out") return s.type, s.size, type(s.mtime.sec), type(s.mtime.nsec) end)
try("fs unlink", uv.fs_unlink, tmp .. "/oracle-out")
try("fs unlink again", uv.fs_unlink, tmp .. "/oracle-out")
try("fs readlink missing", uv.fs_readlink, "/nonexistent")
try("fs access", uv.fs_access, "/", "r")
try("fs mkdtemp rmdir", function() local p = uv.fs_mkdtemp(tmp .. "/oracleXXXXXX") return #p, uv.fs_rmdir(p) end)
try("fs scandir", function() local req = uv.fs_scandir("/") local n = 0 while uv.fs_scandir_next(req) do n = n + 1 end return n > 0 end)
try("kill bad pid", uv.kill, 999999, "sigterm")
try("guess_handle unknown", uv.guess_handle, 99)
try("os_getenv missing", uv.os_getenv, "NO_SUCH_VAR_ORACLE")
try("os_setenv roundtrip", function() uv.os_setenv("ORACLE_V", "1") local v = uv.os_getenv("ORACLE_V") uv.os_unsetenv("ORACLE_V") return v end)
try("spawn missing", function() return uv.spawn("/nonexistent/prog", {}, function() end) end)
try("version", function() return type(uv.version()), uv.version() == tonumber(uv.version_string():gsub("(%d+)%.(%d+)%.(%d+).*", function(a, b, c) return tostring(a * 65536 + b * 256 + c) end), 10) end)
try("constants", function() return uv.constants.SIGTERM, uv.constants.AF_INET6, uv.constants.O_CREAT end)
try("translate_sys_error", uv.translate_sys_error, 2)
try("run nowait empty", uv.run, "nowait")
try("loop_alive empty", uv.loop_alive)
try("loop_mode outside", uv.loop_mode)
try("random", function() return #uv.random(12) end)
try("thread self equal", function() return uv.thread_equal(uv.thread_self(), uv.thread_self()) end)
uv.run()
