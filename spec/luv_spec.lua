-- coru.luv: luv's API (luv 1.44, docs/docs.md of luvit/luv) over coru.
-- Each block pins one behaviour luv documents where coru's own table
-- chose otherwise, plus the core fixes that came with it. Runs in both
-- faces: inside the host (a task) and in plain luajit (no task): luv's
-- behaviour is the same in both.
local coru = require "coru"
local H = require "helper"

package.preload.luv = package.preload.luv or function() return require "coru.luv" end
local uv = require "luv"

-- What the running spec opened: the handles uv.walk shows that were not
-- there when it began (guard() takes that census), closing ones included.
local baseline = {}
local function opened(except)
  local list = {}
  uv.walk(function(h) if not baseline[h] and h ~= except then list[#list + 1] = h end end)
  return list
end

-- Wait (bounded) until none of list is left in the loop: a close ends on a
-- later loop turn, when its callback has run.
local function gone(list)
  local set = {}
  for _, h in ipairs(list) do set[h] = true end
  return H.run(function()
    return H.settle(function()
      local left = false
      uv.walk(function(h) left = left or set[h] == true end)
      return not left
    end, 2000)
  end)
end

-- Close what the spec still has open (except one handle) and let the
-- closes end; returns how many there were.
local function close_opened(except)
  local list = opened(except)
  for _, h in ipairs(list) do if not h:is_closing() then h:close() end end
  assert(gone(list), "the spec's handles did not close")
  return #list
end

-- An unreferenced timer that, after ms (scaled), closes every handle the
-- spec opened and stops a luv run: the loop runs dry, so a uv.run()
-- waiting for it returns however the spec failed. d.fired tells.
local function deadline(ms)
  local d = {fired = false}
  d.timer = uv.new_timer()
  d.timer:start(H.ms(ms), 0, function()
    d.fired = true
    for _, h in ipairs(opened(d.timer)) do if not h:is_closing() then h:close() end end
    uv.stop()
  end)
  d.timer:unref()
  return d
end

-- Run the loop luv's way until the spec's handles are done; fails on a hang
-- (closing what kept the loop going, so the rest of the file runs).
local function run_until_done(ms)
  local d = deadline(ms or 5000)
  uv.run()
  if not d.timer:is_closing() then d.timer:close() end
  gone({d.timer})
  assert(not d.fired, "the loop did not run dry in time")
end

-- In every block: each spec runs under a deadline of its own (a bare
-- uv.run() in it cannot hang the file), and whatever it left open (a
-- failed assertion skips its closes) is closed after it, before the next
-- spec's uv.run() would wait on it for ever. The leak gate has already
-- failed such a spec by then.
local function guard()
  local d
  before_each(function()
    d = deadline(60000)
    baseline = {}
    uv.walk(function(h) baseline[h] = true end)
  end)
  after_each(function()
    local left = close_opened(d.timer)
    if not d.timer:is_closing() then d.timer:close() end
    gone({d.timer})
    assert(not d.fired, ("the spec's loop did not run dry in time (%d handle(s) closed)"):format(left))
  end)
end

-- A listening server on 127.0.0.1 and its port; each connection gets on_conn(client).
local function server(on_conn)
  local s = uv.new_tcp()
  assert(s:bind("127.0.0.1", 0))
  assert(s:listen(16, function(err)
    assert(not err, err)
    local c = uv.new_tcp()
    assert(s:accept(c))
    on_conn(c, s)
  end))
  return s, s:getsockname().port
end

describe("coru.luv: loading", function()
  guard()
  it("is what require 'luv' gives with the preload line, and coru.luv", function()
    assert.equal(require "coru.luv", uv)
    assert.equal(uv, coru.luv)
    assert.is_function(uv.new_tcp)
    assert.is_table(uv.constants)
    assert.equal(-2, uv.errno.ENOENT)
    assert.equal(2, uv.constants.SIGINT)
  end)

  it("coru --luv runs a luv program unchanged", function()
    local out, status = H.sh(H.bin .. [[ --luv -e '
      local uv = require "luv"
      local t = uv.new_timer()
      t:start(5, 0, function() io.write("fired ") t:close() end)
      io.write(tostring(uv.run()), " ", tostring(uv.loop_alive()))' 2>&1]])
    assert.equal(0, status)
    assert.equal("fired false false", out)
  end)

  it("exit_on_error(true) gives luv's rule: a callback error ends the process", function()
    local out, status = H.sh(H.bin .. [[ --luv -e '
      local uv = require "luv"
      uv.exit_on_error(true)
      local t = uv.new_timer()
      t:start(1, 0, function() error("boom in callback") end)
      uv.run()
      io.write("not reached")' 2>&1]])
    assert.equal(255, status)
    assert.matches("^Uncaught Error: .*boom in callback", out)
    assert.not_matches("not reached", out)
    -- without it, coru's rule: reported, the loop goes on, status 1 at the end
    local out2, status2 = H.sh(H.bin .. [[ --luv -e '
      local uv = require "luv"
      local t = uv.new_timer()
      t:start(1, 0, function() t:close() error("boom in callback") end)
      uv.run()
      io.write("went on")' 2>&1]])
    assert.equal(1, status2)
    assert.matches("boom in callback", out2)
    assert.matches("went on$", out2)
  end)

  it("version() is libuv's packed number, version_string() its text", function()
    local maj, min, pat = uv.version_string():match("^(%d+)%.(%d+)%.(%d+)")
    assert.equal(tonumber(maj) * 0x10000 + tonumber(min) * 0x100 + tonumber(pat), uv.version())
  end)
end)

describe("coru.luv: the loop", function()
  guard()
  it("run() returns false once nothing is left; loop_mode is nil outside, 'default' inside", function()
    assert.is_nil(uv.loop_mode())
    local mode
    local t = uv.new_timer()
    t:start(5, 0, function() mode = uv.loop_mode(); t:close() end)
    assert.is_false(uv.run())
    assert.equal("default", mode)
    assert.is_false(uv.loop_alive())
  end)

  it("stop() makes run() return true while a handle is still active", function()
    local t = uv.new_timer()
    local n = 0
    t:start(1, 1, function() n = n + 1; if n == 3 then uv.stop() end end)
    assert.is_true(uv.run())
    assert.equal(3, n)
    assert.is_true(uv.loop_alive())
    t:close()
    assert.is_false(uv.run())
  end)

  it("run('once') and run('nowait') return whether more is expected", function()
    local t = uv.new_timer()
    local fired = false
    t:start(10, 0, function() fired = true; t:close() end)
    assert.is_boolean(uv.run("nowait"))
    while not fired do uv.run("once") end
    assert.is_false(uv.run("nowait"))
    assert.has_error(function() uv.run("sometimes") end)
  end)

  it("run('nowait') and run('once') right after a close: its callback has run, false (nothing left)", function()
    local closed = 0
    uv.new_timer():close(function() closed = closed + 1 end)
    assert.is_false(uv.run("nowait"))
    assert.equal(1, closed)
    uv.new_idle():close(function() closed = closed + 1 end)
    assert.is_false(uv.run("once"))
    assert.equal(2, closed)
  end)

  it("run('nowait') does not wait for a pending timer; run('once') does", function()
    local far, near = uv.new_timer(), uv.new_timer()
    local fired = false
    far:start(60000, 0, function() end)
    assert.is_true(uv.run("nowait"))   -- the far timer is still to come
    near:start(20, 0, function() fired = true end)
    assert.is_true(uv.run("once"))     -- until the near one fired; the far one is left
    assert.is_true(fired)
    far:close()
    near:close()
    assert.is_false(uv.run("nowait"))
  end)

  it("a one-shot timer's callback may set_repeat and again (libuv restarts it)", function()
    local t = uv.new_timer()
    local n = 0
    t:start(2, 0, function()
      n = n + 1
      if n == 1 then
        t:set_repeat(2)
        assert.equal(0, t:again())
      else
        t:close()
      end
    end)
    run_until_done()
    assert.equal(2, n)
  end)

  it("the same fix in coru's own table: timer:again in a one-shot callback", function()
    local t = coru.new_timer()
    local n = 0
    H.run(function()
      t:start(2, 0, function()
        n = n + 1
        if n == 1 then t:set_repeat(2); assert(t:again() == 0) else t:close() end
      end)
      H.wait_until(function() return n == 2 end, 2000, "the restarted timer")
    end)
    assert.equal(2, n)
  end)
end)

describe("coru.luv: requests", function()
  guard()
  it("a callback-mode fs call returns its request, typed 'fs'", function()
    local done
    local req = uv.fs_stat(".", function(err, st) done = {err, st} end)
    assert.equal("fs", (req:get_type()))
    assert.same({"fs", 6}, {uv.req_get_type(req)})
    -- coru.luv cannot withdraw a request handed to libuv: libuv's "busy"
    local ok, msg, name = req:cancel()
    assert.is_nil(ok)
    assert.equal("EBUSY", name)
    assert.matches("^EBUSY", msg)
    run_until_done()
    assert.is_nil(done[1])
    assert.equal("directory", done[2].type)
  end)

  it("fs_opendir takes its callback before entries (luv's order) and returns the request", function()
    local n
    local req = uv.fs_opendir(".", function(err, dir)
      assert(not err, err)
      n = #dir:readdir()
      dir:closedir()
    end, 1)
    assert.equal("fs", (req:get_type()))
    run_until_done()
    assert.equal(1, n)
  end)

  it("fs errors in callbacks are luv's full message; sync calls return fail", function()
    local got
    uv.fs_stat("/nonexistent/x", function(err) got = err end)
    run_until_done()
    assert.equal("ENOENT: no such file or directory: /nonexistent/x", got)
    local st, msg, name = uv.fs_stat("/nonexistent/x")
    assert.is_nil(st)
    assert.equal("ENOENT", name)
    assert.matches("^ENOENT: ", msg)
  end)

  it("sync fs and DNS calls run at once, letting no callback run meanwhile", function()
    local ran = false
    local t = uv.new_timer()
    t:start(0, 0, function() ran = true; t:close() end)
    uv.sleep(5)
    local st = uv.fs_stat(".")
    local res = uv.getaddrinfo("127.0.0.1", "80", {socktype = "stream"})
    local host, service = uv.getnameinfo({ip = "127.0.0.1", port = 80})
    assert.is_false(ran)
    assert.equal("directory", st.type)
    assert.equal("127.0.0.1", res[1].addr)
    assert.equal(80, res[1].port)
    assert.is_string(host)
    assert.equal("http", service)
    run_until_done()
    assert.is_true(ran)
  end)

  it("sleep blocks the thread for at least its time", function()
    local t0 = uv.hrtime()
    uv.sleep(20)
    assert.is_true(uv.hrtime() - t0 >= 20e6)
  end)

  it("DNS callbacks get the bare error name", function()
    local got
    local req = uv.getaddrinfo("nonexistent.invalid", nil, nil, function(err, res) got = {err, res} end)
    assert.equal("getaddrinfo", (req:get_type()))
    run_until_done(20000)
    assert.matches("^EAI_%u+$", got[1])
    assert.is_nil(got[2])
  end)

  it("getnameinfo without ip looks up the any-address of the family", function()
    local got
    uv.getnameinfo({family = "inet6", port = 80}, function(err, host, service) got = {err, host, service} end)
    run_until_done()
    assert.same({nil, "::", "http"}, {got[1], got[2], got[3]})
    local host = uv.getnameinfo({family = "inet"})
    assert.equal("0.0.0.0", host)
    assert.has_error(function() uv.getnameinfo({ip = "1.2.3"}) end)
    -- coru's own table too: :: for inet6, EINVAL for an ip of another family
    H.run(function()
      local h, s = coru.getnameinfo({family = "inet6", port = 80})
      assert.equal("::", h)
      assert.equal("http", s)
      local ok, _, name = coru.getnameinfo({family = "inet6", ip = "127.0.0.1"})
      assert.is_nil(ok)
      assert.equal("EINVAL", name)
    end)
  end)
end)

describe("coru.luv: streams", function()
  guard()
  it("write and shutdown without a callback are queued and return requests", function()
    local got = {}
    local s, port = server(function(c, srv)
      c:read_start(function(err, data)
        assert(not err, err)
        if data then got[#got + 1] = data else c:close(); srv:close() end
      end)
    end)
    local c = uv.new_tcp()
    local creq = c:connect("127.0.0.1", port)
    assert.equal("connect", (creq:get_type()))
    local wreq = c:write("queued before the connection")
    assert.same({"write", 3}, {wreq:get_type()})
    assert.equal("shutdown", (c:shutdown():get_type()))
    -- the client closes once the server has read up to EOF and closed (not
    -- after a fixed delay: under load, or with a loop time left stale by a
    -- long spec before, a 20 ms timer fired before the data had arrived)
    local t = uv.new_timer()
    t:start(5, 5, function()
      if s:is_closing() then c:close(); t:close() end
    end)
    run_until_done()
    assert.equal("queued before the connection", table.concat(got))
    assert.is_true(s:is_closing())
  end)

  it("write arrays may hold numbers (luv coerces them), in coru's write too", function()
    local got = {}
    local s, port = server(function(c, srv)
      c:read_start(function(err, data)
        if data then got[#got + 1] = data else c:close(); srv:close() end
      end)
    end)
    local c = uv.new_tcp()
    c:connect("127.0.0.1", port, function(err)
      assert(not err, err)
      c:write({"a", 1, 2.5, "b"})
      coru.write(c, {7, "x"}, function(e)
        assert(not e, e)
        c:shutdown(function() c:close() end)
      end)
    end)
    run_until_done()
    assert.equal("a12.5b7x", table.concat(got))
    assert.is_true(s:is_closing())
  end)

  it("fs_write takes numbers in its array too", function()
    local path = os.tmpname()
    local fd = assert(uv.fs_open(path, "w", 420))
    assert.equal(4, uv.fs_write(fd, {"x", 42, "!"}, 0))
    uv.fs_close(fd)
    local f = io.open(path)
    assert.equal("x42!", f:read("*a"))
    f:close()
    os.remove(path)
  end)

  it("callbacks of non-fs requests get the bare error name", function()
    local probe = uv.new_tcp()
    assert(probe:bind("127.0.0.1", 0))
    local port = probe:getsockname().port
    probe:close()
    local got
    local c = uv.new_tcp()
    c:connect("127.0.0.1", port, function(err) got = err; c:close() end)
    run_until_done()
    assert.equal("ECONNREFUSED", got)
  end)

  it("read_start's callback is not called again after close", function()
    local calls = {}
    local s, port = server(function(c, srv)
      c:read_start(function(err, data)
        calls[#calls + 1] = {err, data}
        c:close()
        srv:close()
      end)
    end)
    local c = uv.new_tcp()
    c:connect("127.0.0.1", port, function() c:write("hi", function() c:close() end) end)
    run_until_done()
    assert.equal(1, #calls)
    assert.same({nil, "hi"}, {calls[1][1], calls[1][2]})
    assert.is_true(s:is_closing())
  end)

  it("a malformed address or a wrong argument type raises", function()
    local t = uv.new_tcp()
    assert.has_error(function() t:bind("127.0.0.100005", 1000) end, "Invalid IP address or port [127.0.0.100005:1000]")
    assert.has_error(function() t:connect("1.2.3", 80, function() end) end)
    assert.has_error(function() t:connect("127.0.0.1", "80", function() end) end)
    assert.has_error(function() uv.write(nil, "x") end)
    t:close()
    local u = uv.new_udp()
    assert.has_error(function() uv.udp_send(u, "PING", nil, 5) end)
    assert.has_error(function() uv.udp_send(u, "PING", "host", "port") end)
    u:close()
    run_until_done()
  end)

  it("operations on a closing handle return libuv's error instead of raising", function()
    local t = uv.new_tcp()
    t:close()
    assert.same({nil, "EBADF: bad file descriptor", "EBADF"}, {t:write("x")})
    assert.same({nil, "ENOTCONN: socket is not connected", "ENOTCONN"}, {t:shutdown()})
    local tm = uv.new_timer()
    tm:close()
    run_until_done()
    assert.same({nil, "EINVAL: invalid argument", "EINVAL"}, {tm:start(0, 0, function() end)})
  end)

  it("tcp_close_reset calls its callback, and is EINVAL after shutdown", function()
    local closed = false
    local s, port = server(function(c, srv) c:read_start(function() c:close() end); srv:close() end)
    local c = uv.new_tcp()
    c:connect("127.0.0.1", port, function(err)
      assert(not err, err)
      assert.equal(0, c:close_reset(function() closed = true end))
    end)
    run_until_done()
    assert.is_true(closed)
    assert.is_true(s:is_closing())

    local shut_ok
    local s2, port2 = server(function(cl, srv) cl:read_start(function(_, d) if not d then cl:close() end end); srv:close() end)
    local c2 = uv.new_tcp()
    c2:connect("127.0.0.1", port2, function(err)
      assert(not err, err)
      c2:shutdown()
      shut_ok = {c2:close_reset()}
      c2:close()
    end)
    run_until_done()
    assert.equal("EINVAL", shut_ok[3])
    assert.is_true(s2:is_closing())
  end)
end)

describe("coru.luv: handles, processes, pipes", function()
  guard()
  it("handles carry luv's type names and methods, and coru's too", function()
    local p = uv.new_pipe()
    assert.same({"pipe", 7}, {p:get_type()})
    assert.same({p:get_type()}, {uv.handle_get_type(p)})
    assert.matches("^uv_pipe_t: ", tostring(p))
    assert.is_function(p.read_line)       -- coru's sequential layer is there too
    p:close()
    local q = uv.new_pipe(true)
    assert.equal(0, q:pending_count())
    assert.equal("unknown", q:pending_type())
    q:close()
    local u = uv.new_udp()
    assert(u:bind("127.0.0.1", 0))
    assert.is_true(u:send_buffer_size() > 0)
    assert.equal(0, u:recv_buffer_size(65536))
    assert.has_error(function() u:set_source_membership("239.1.1.1", nil, "10.0.0.1", "sideways") end)
    u:close()
    local tm = uv.new_timer()
    assert.has_error(function() uv.pipe_pending_count(tm) end)
    tm:close()
    run_until_done()
  end)

  it("spawn takes pipes made by new_pipe() in stdio, as luv", function()
    local out = uv.new_pipe(false)
    local got, code = {}, nil
    local h, pid = uv.spawn("echo", {args = {"hello"}, stdio = {nil, out}}, function(c)
      code = c
    end)
    assert.is_number(pid)
    assert.matches("^uv_process_t", tostring(h))
    out:read_start(function(err, data)
      assert(not err, err)
      if data then got[#got + 1] = data else out:close() end
    end)
    run_until_done()
    h:close()
    run_until_done()
    assert.equal(0, code)
    assert.equal("hello\n", table.concat(got))
  end)

  it("write2 sends a handle over an IPC pipe; the peer accepts it", function()
    local fds = uv.socketpair("stream", nil, {nonblock = true}, {nonblock = true})
    local a, b = uv.new_pipe(true), uv.new_pipe(true)
    assert(a:open(fds[1]))
    assert(b:open(fds[2]))
    local server = uv.new_tcp()
    assert(server:bind("127.0.0.1", 0))
    local port = server:getsockname().port
    local wrote, got = false, nil
    assert.equal("write", (a:write2({"hand", "le"}, server, function(err) wrote = err == nil end):get_type()))
    b:read_start(function(err, data)
      local copy = uv.new_tcp()
      got = {err, data, b:pending_count(), b:pending_type(), b:accept(copy), copy:getsockname().port}
      copy:close(); b:close(); a:close(); server:close()
    end)
    run_until_done()
    assert.is_true(wrote)
    assert.same({nil, "handle", 1, "tcp", 0, port}, {got[1], got[2], got[3], got[4], got[5], got[6]})
    local plain = uv.new_pipe(false)
    assert.has_error(function() uv.write2(plain, "x", plain) end)
    plain:close()
    run_until_done()
  end)

  it("pipe() and socketpair() make descriptors", function()
    local fds = uv.pipe({nonblock = true}, {nonblock = false})
    assert.equal("pipe", uv.guess_handle(fds.read))
    local got
    local r = uv.new_pipe()
    assert(r:open(fds.read))
    r:read_start(function(_, d) got = d; r:close() end)
    assert.equal(4, uv.fs_write(fds.write, "ping"))
    uv.fs_close(fds.write)
    run_until_done()
    assert.equal("ping", got)
    local sp = uv.socketpair("stream", nil, {nonblock = true}, {nonblock = true})
    assert.equal(2, #sp)
    uv.fs_close(sp[1])
    uv.fs_close(sp[2])
  end)

  it("system functions luv has: getrusage, gettimeofday, random, interface_addresses, os_get_passwd", function()
    assert.is_number(uv.getrusage().maxrss)
    local sec, usec = uv.gettimeofday()
    assert.is_true(sec > 1.5e9 and usec >= 0)
    assert.equal(16, #uv.random(16))
    local got
    assert.equal(0, uv.random(8, nil, function(err, bytes) got = {err, bytes} end))
    run_until_done()
    assert.equal(8, #got[2])
    assert.is_table(uv.interface_addresses())
    assert.is_string(uv.os_get_passwd().username)
    assert.same({"EAGAIN: resource temporarily unavailable", "EAGAIN"}, {uv.translate_sys_error(11)})
  end)
end)

describe("coru.luv: threads", function()
  guard()
  it("new_thread runs a function with its arguments; join waits for it", function()
    local out = os.tmpname()
    local th = uv.new_thread(function(path, n, flag)
      local luv = require "luv"
      luv.sleep(10)
      local f = io.open(path, "w")
      f:write(tostring(n * 2), tostring(flag))
      f:close()
    end, out, 21, true)
    assert.is_true(uv.thread_join(th))
    local f = io.open(out)
    assert.equal("42true", f:read("*a"))
    f:close()
    os.remove(out)
    assert.is_true(uv.thread_equal(uv.thread_self(), uv.thread_self()))
    assert.has_error(function() uv.new_thread(function() end, function() end) end)
  end)

  it("a thread wakes the loop through an async handle it was given", function()
    local got
    local a
    a = uv.new_async(function(x, y) got = {x, y}; a:close() end)
    local th = uv.new_thread(function(async)
      require("luv").async_send(async, "from thread", 7)
    end, a)
    run_until_done()
    th:join()
    assert.same({"from thread", 7}, got)
  end)

  it("async_send from a thread to a closed async handle is EBADF, not a crash", function()
    local out = os.tmpname()
    local a = uv.new_async(function() error("must not be called") end)
    local th = uv.new_thread(function(async, path)
      local luv = require "luv"
      luv.sleep(30)
      local ok, msg, name = luv.async_send(async, "late")
      local f = io.open(path, "w")
      f:write(tostring(ok), " ", tostring(name))
      f:close()
    end, a, out)
    a:close()
    run_until_done()
    th:join()
    local f = io.open(out)
    assert.equal("nil EBADF", f:read("*a"))
    f:close()
    os.remove(out)
    assert.has_error(function() uv.new_thread(function() end, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10) end,
      "new_thread: at most 9 arguments (luv's limit)")
  end)
end)
