-- Run by spec/luv_oracle_spec.lua under Debian's luv 1.44 (lua5.1) and
-- under coru.luv: handle functions' return values and callback shapes
-- (pipes, tcp options, udp, processes, signals, idle/prepare/check).
local uv = require "luv"
local dir = assert(os.getenv("ORACLE_TMP"))
local function fmt(v)
  if type(v) == "userdata" or type(v) == "table" then
    return tostring(v):match("^(uv_%w+_t)") or type(v)
  end
  return tostring(v)
end
local function show(label, ...)
  local n = select("#", ...)
  if n >= 3 and (...) == nil then return print(label, "fail", (select(3, ...))) end
  local t = {}
  for i = 1, n do t[#t + 1] = fmt((select(i, ...))) end
  print(label, table.concat(t, " "))
end
local steps = {}
local function step(f) steps[#steps + 1] = f end
local function nextstep() local f = table.remove(steps, 1) if f then f() end end

step(function()
  local t = uv.new_tcp()
  show("tcp nodelay", t:nodelay(true))
  show("tcp keepalive", t:keepalive(true, 10))
  show("tcp simultaneous_accepts", t:simultaneous_accepts(true))
  show("tcp getpeername unconnected", t:getpeername())
  show("tcp bind", t:bind("127.0.0.1", 0))
  show("tcp getsockname", t:getsockname().family, t:getsockname().ip)
  show("tcp readable", t:is_readable(), t:is_writable())
  show("tcp queue size", t:write_queue_size(), uv.stream_get_write_queue_size(t))
  show("tcp close", t:close())
  nextstep()
end)
step(function()
  local path = dir .. "/sock"
  local s = uv.new_pipe(false)
  show("pipe bind", s:bind(path))
  show("pipe getsockname", s:getsockname() == path)
  show("pipe listen", s:listen(4, function(err)
    local c = uv.new_pipe(false)
    show("pipe accept", s:accept(c))
    show("pipe server peer", type(c:getpeername()))
    c:read_start(function(e, d)
      show("pipe server read", e, d)
      if d then show("pipe try_write", c:try_write("pong")) else c:close() s:close() end
    end)
  end))
  local cl = uv.new_pipe(false)
  cl:connect(path, function(err)
    show("pipe connect cb", err)
    show("pipe readable", cl:is_readable(), cl:is_writable())
    cl:write("ping")
    cl:read_start(function(e, d)
      show("pipe client read", e, d)
      if d then cl:shutdown() else cl:close() nextstep() end
    end)
  end)
end)
step(function()
  local a, b = uv.new_udp(), uv.new_udp()
  show("udp bind", a:bind("127.0.0.1", 0))
  local port = a:getsockname().port
  show("udp set_broadcast", a:set_broadcast(true))
  show("udp set_ttl", a:set_ttl(16))
  show("udp multicast ttl", a:set_multicast_ttl(2), a:set_multicast_loop(true))
  show("udp connect", b:connect("127.0.0.1", port))
  show("udp peer", b:getpeername().port == port)
  show("udp try_send connected", b:try_send("one", nil, nil))
  show("udp queue", b:get_send_queue_size(), b:get_send_queue_count())
  a:recv_start(function(err, data, addr, flags)
    show("udp recv", err, data, addr and addr.port == b:getsockname().port)
    a:recv_stop() a:close() b:close() nextstep()
  end)
end)
step(function()
  local out = uv.new_pipe(false)
  local got = {}
  local done = 0
  local function fin() done = done + 1 if done == 2 then show("env child said", table.concat(got)) nextstep() end end
  local h, pid = uv.spawn("sh", {args = {"-c", "echo $ORACLE_X; pwd"}, env = {"ORACLE_X=42"}, cwd = "/", stdio = {nil, out, 2}},
    function(code, sig) show("env child exit", code, sig) fin() end)
  show("spawn returns", type(pid), h:get_pid() == pid)
  out:read_start(function(e, d) if d then got[#got + 1] = d else out:close() fin() end end)
end)
step(function()
  local h; h = uv.spawn("sleep", {args = {"5"}}, function(code, sig) show("killed", code, sig) h:close() nextstep() end)
  show("process_kill", h:kill("sigterm"))
end)
step(function()
  local s = uv.new_signal()
  show("signal start", s:start("sigusr2", function(name) show("signal cb", name) s:close() nextstep() end))
  uv.kill(uv.os_getpid(), "sigusr2")
end)
step(function()
  local order = {}
  local i, p, c = uv.new_idle(), uv.new_prepare(), uv.new_check()
  show("idle start", i:start(function() order[#order + 1] = "idle" i:stop() end))
  show("prepare start", p:start(function() order[#order + 1] = "prepare" p:stop() end))
  show("check start", c:start(function() order[#order + 1] = "check" c:stop()
    show("order", table.concat(order, " ")) i:close() p:close() c:close() nextstep() end))
end)
step(function()
  local t = uv.new_timer()
  show("timer start", t:start(20, 0, function() end))
  show("due in", t:get_due_in() <= 20, t:is_active())
  show("timer stop", t:stop(), t:is_active())
  show("timer close cb", t:close(function() show("closed cb") nextstep() end))
end)
nextstep()
uv.run()
show("end", uv.loop_alive())
