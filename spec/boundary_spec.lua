-- Issue 10: nothing a script or a peer sends can crash the process.
-- What could crash runs in a child host (a regression then fails this
-- spec instead of killing busted); each child prints what it saw.
local coru = require "coru"
local H = require "helper"

-- Run src (Lua) in a child `coru`; returns stdout+stderr and exit status.
local child = H.host_script

-- pcall f and return its error message (asserting that it failed).
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

describe("boundary: foreign userdata", function()
  it("coru.close and the shared handle functions refuse what is not a handle", function()
    for _, v in ipairs({io.stdout, newproxy(true), coru.channel(5), coru.spawn(function() end)}) do
      assert.matches("coru.handle expected", err_of(coru.close, v))
      assert.matches("coru.handle expected", err_of(coru.is_closing, v))
      assert.matches("coru.handle expected", err_of(coru.is_active, v))
      assert.matches("coru.handle expected", err_of(coru.ref, v))
    end
  end)

  it("a closed directory object is not a handle", function()
    local dir = assert(coru.fs_opendir("."))
    assert(coru.fs_closedir(dir))
    assert.matches("coru.handle expected", err_of(coru.close, dir))
  end)

  it("handle, directory, work and TLS context metatables are private", function()
    local t = coru.new_timer()
    assert.equal("coru", getmetatable(t))
    assert.equal("coru", getmetatable(assert(coru.fs_opendir("."))))
    assert.equal("coru", getmetatable(coru.new_work(function() end, function() end)))
    t:close()
  end)

  it("metamethods reached through the debug library refuse foreign arguments", function()
    local out, status = child([[
      local coru = require "coru"
      local dir = assert(coru.fs_opendir("."))
      local objs = {coru.new_timer(), dir, coru.new_work(function() end, function() end)}
      for _, o in ipairs(objs) do
        local mt = debug.getmetatable(o)
        for _, arg in ipairs({false, io.stdout, newproxy(true), coru.channel(1)}) do
          if mt.__gc then pcall(mt.__gc, arg) end
          if mt.__tostring then pcall(mt.__tostring, arg) end
        end
        pcall(mt.__gc)
      end
      objs[1]:close()
      print("survived")
    ]])
    assert.matches("survived", out)
    assert.equal(0, status)
  end)
end)

describe("boundary: error values whose __tostring raises", function()
  local src = [[
    local coru = require "coru"
    local bad = setmetatable({}, {__tostring = function() error("tostring raised") end})
    %s
  ]]
  it("an uncaught one in the main task ends the host with status 1, not a panic", function()
    local out, status = child(src:format("error(bad)"))
    assert.equal(1, status)
    assert.matches("error object is a table value", out)
    assert.not_matches("PANIC", out)
  end)

  it("one reported through on_error (unawaited task, failing callback) does not stop the loop", function()
    local out, status = child(src:format([[
      coru.spawn(function() error(bad) end)
      local t = coru.new_timer()
      t:start(1, 0, function() t:close(); error(bad) end)
      coru.sleep(20)
      coru.on_error(function() error(bad) end)
      coru.spawn(function() error(bad) end)
      coru.sleep(5)
      print("still running")
    ]]))
    assert.matches("still running", out)
    assert.matches("error object is a table value", out)
    assert.equal(1, status)
  end)

  it("in plain LuaJIT, coru.run keeps working after one", function()
    if coru.current() then return pending("plain LuaJIT only: the host runs every spec inside its loop") end
    local bad = setmetatable({}, {__tostring = function() error("tostring raised") end})
    local reported = 0
    local prev = coru.on_error(function() reported = reported + 1; error(bad) end)
    coru.run(function() coru.spawn(function() error(bad) end); coru.sleep(5) end)
    coru.on_error(prev)
    assert.equal(1, reported)
    assert.equal("again", coru.run(function() return "again" end))
  end)

end)

describe("boundary: cancelled fs requests own nothing they did not take", function()
  it("a closedir cancelled while queued leaves the directory open and closable", function()
    H.run(function()
      local dir = assert(coru.fs_opendir("."))
      -- occupy the pool so the closedir stays queued
      local busy = {}
      for i = 1, 8 do busy[i] = coru.spawn(function() coru.work(function() local t = os.clock() while os.clock() - t < 0.05 do end end) end) end
      local t = coru.spawn(function() return dir:closedir() end)
      t:cancel()
      assert.equal("cancelled", t:status())
      for i = 1, 8 do busy[i]:await() end
      coru.sleep(20)   -- the cancelled request's completion
      -- the directory is still ours: readable and closable once
      assert.is_not_nil(dir:readdir())
      assert.is_true(dir:closedir())
      assert.matches("closed", err_of(dir.readdir, dir))
      dir = nil
      collectgarbage("collect")
    end)
  end)
end)

describe("boundary: integers are range-checked, never wrapped", function()
  it("coru.kill refuses pids beyond 32 bits and names itself", function()
    local e = err_of(coru.kill, 2^32 + 1, 0)
    assert.matches("bad argument #1 to 'kill'", e)
    assert.matches("out of range", e)
    assert.matches("bad argument #1 to 'kill'", err_of(coru.kill, 2^32 - 1, 0))
    assert.matches("integer expected", err_of(coru.kill, 0/0, 0))
    assert.matches("integer expected", err_of(coru.kill, 1.5, 0))
    assert.matches("integer expected", err_of(coru.kill, 2^63, 0))
  end)

  it("spawn refuses a uid or gid that would wrap to root", function()
    H.run(function()
      assert.matches("spawn: option 'uid'", err_of(coru.process.spawn, "true", {}, {uid = 2^32}))
      assert.matches("spawn: option 'gid'", err_of(coru.process.spawn, "true", {}, {gid = -2^32}))
      assert.matches("spawn: option 'stdio'", err_of(coru.process.spawn, "true", {}, {stdio = {2^32}}))
    end)
  end)

  it("ports, descriptors, ttl and exit statuses are checked", function()
    assert.matches("out of range", err_of(coru.tcp_open, coru.new_tcp(), 2^32))
    assert.matches("out of range", err_of(coru.udp_set_ttl or coru.new_udp().set_ttl, coru.new_udp(), 256))
    assert.matches("out of range", err_of(coru.fs_chown, "/nonexistent", 2^32, 0))
    assert.matches("integer expected", err_of(coru.fs_read, 0, 0/0))
  end)
end)

describe("boundary: adopting a descriptor of the wrong kind", function()
  it("tcp_open, pipe_open and udp_open return an error instead of aborting", function()
    local f = assert(io.open("/dev/null"))
    local dn = assert(coru.fs_open("/dev/null", "r"))
    local r, msg, name = coru.tcp_open(coru.new_tcp(), dn)
    assert.is_nil(r); assert.equal("ENOTSOCK", name)
    r, msg, name = coru.pipe_open(coru.new_pipe(), dn)
    assert.is_nil(r); assert.equal("ENOTSOCK", name)
    r, msg, name = coru.udp_open(coru.new_udp(), dn)
    assert.is_nil(r); assert.equal("ENOTSOCK", name)
    r, msg, name = coru.tcp_open(coru.new_tcp(), 999999)
    assert.is_nil(r); assert.equal("EBADF", name)
    coru.fs_close(dn)
    f:close()
    collectgarbage()
  end)
end)

-- A connected pair over loopback: the server side runs serve(conn).
local function pair(serve)
  local srv = assert(coru.tcp.listen("127.0.0.1", 0, serve))
  local c = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
  return c, srv
end

describe("boundary: sizes a peer controls are bounded", function()
  it("read_bytes and set_max_line refuse counts beyond 1 GiB and NaN", function()
    H.run(function()
      local c, srv = pair(function(conn) conn:read() end)
      assert.matches("read_bytes", err_of(c.read_bytes, c, 2^31))
      assert.matches("integer expected", err_of(c.read_bytes, c, 0/0))
      assert.matches("set_max_line", err_of(c.set_max_line, c, 2^40))
      assert.matches("integer expected", err_of(c.set_max_line, c, 0/0))
      assert.matches("set_max_all", err_of(c.set_max_all, c, 2^31))
      c:close(); srv:close()
    end)
  end)

  it("read_all past its limit fails with 'too large' and keeps the data", function()
    H.run(function()
      local c, srv = pair(function(conn) conn:write(("x"):rep(5000)); conn:close() end)
      c:set_max_all(1000)
      local data, err = c:read_all()
      assert.is_nil(data)
      assert.equal("too large", err)
      c:set_max_all(10000)
      assert.equal(5000, #c:read_all())
      c:close(); srv:close()
    end)
  end)

  it("read_file has a limit, an option raises it, /dev/zero ends", function()
    H.run(function()
      local data, msg, name = coru.fs.read_file("/dev/zero")
      assert.is_nil(data); assert.equal("EFBIG", name)
      assert.matches("limit of 268435456 bytes", msg)
      data, msg, name = coru.fs.read_file("/dev/zero", {max = 100})
      assert.equal("EFBIG", name); assert.matches("limit of 100 bytes", msg)
      local path = os.tmpname()
      assert(coru.fs.write_file(path, ("y"):rep(300)))
      assert.equal("EFBIG", select(3, coru.fs.read_file(path, {max = 299})))
      assert.equal(300, #coru.fs.read_file(path, {max = 300}))
      assert.matches("option 'max'", err_of(coru.fs.read_file, path, {max = 2^40}))
      os.remove(path)
    end)
  end)
end)

describe("boundary: read_until after 'line too long'", function()
  it("finds the next record when the delimiter is split across two reads", function()
    H.run(function()
      local c, srv = pair(function(conn)
        conn:write(("a"):rep(200) .. "\r\n\r")   -- the overlong record, its delimiter split
        coru.sleep(30)
        conn:write("\nnext\r\n\r\n")
        coru.sleep(30)
        conn:close()
      end)
      c:set_max_line(50)
      local r, err = c:read_until("\r\n\r\n")
      assert.is_nil(r); assert.equal("line too long", err)
      assert.equal("next", c:read_until("\r\n\r\n"))
      c:close(); srv:close()
    end)
  end)
end)

describe("boundary: the host's start and signals", function()
  it("runs with fd 0, 1 or 2 closed and exits cleanly", function()
    local path = os.tmpname()
    local out, status = H.sh(string.format(
      "%s -e 'local t = coru.new_timer(); t:start(5, 0, function() t:close() end); coru.sleep(10); io.open(%q, \"w\"):write(\"ran\")' <&- >&- 2>&-",
      H.bin, path))
    assert.equal(0, status)
    assert.equal("ran", io.open(path):read("*a"))
    os.remove(path)
  end)

  local function signalled(code, sig)
    return H.sh(string.format(
      "%s -e '%s' 2>&1 & p=$!; sleep 0.3; kill -%s $p; wait $p", H.bin, code, sig))
  end

  it("SIGINT stops a busy interpreted loop with 'interrupted!' and status 130", function()
    local out, status = signalled("jit.off() local x = 0 while true do x = x + 1 end", "INT")
    assert.equal(130, status)
    assert.matches("interrupted!", out)
  end)

  it("SIGTERM ends a busy compiled loop with status 143", function()
    local _, status = signalled("local x = 0 while true do x = x + math.sin(x) end", "TERM")
    assert.equal(143, status)
  end)

  it("SIGTERM ends a script blocked in a synchronous call with status 143", function()
    local _, status = signalled("os.execute(\"sleep 2\")", "TERM")
    assert.equal(143, status)
  end)

  it("a script that watches SIGINT still gets it while busy", function()
    local out, status = signalled(
      "local s = coru.new_signal(); s:start(\"sigint\", function() print(\"got it\"); s:close() end); local t = os.time(); while os.time() - t < 1 do end; coru.sleep(10)",
      "INT")
    assert.equal(0, status)
    assert.matches("got it", out)
  end)
end)

describe("boundary: durations (one millisecond parser)", function()
  it("refuses NaN everywhere a duration or count is taken", function()
    H.run(function()
      assert.matches("NaN", err_of(coru.sleep, 0/0))
      assert.matches("NaN", err_of(coru.timeout, 0/0, function() end))
      local t = coru.new_timer()
      assert.matches("NaN", err_of(t.start, t, 0/0, 0, function() end))
      t:close()
      assert.matches("integer expected", err_of(coru.channel, 0/0))
      local c, srv = pair(function(conn) conn:read() end)
      assert.matches("NaN", err_of(c.settimeout, c, 0/0))
      assert.matches("NaN", err_of(c.settimeouts, c, 0/0, 0, 0))
      c:close(); srv:close()
    end)
  end)

  it("clamps huge durations to practically forever instead of firing at once", function()
    H.run(function()
      local fired = false
      local t = coru.new_timer()
      t:start(math.huge, 0, function() fired = true end)
      local s = coru.spawn(function() coru.sleep(math.huge); fired = true end)
      local r, err = coru.timeout(math.huge, function() coru.sleep(30); return "ran" end)
      assert.equal("ran", r)
      coru.sleep(30)
      assert.is_false(fired)
      assert.is_true(t:get_due_in() > 1e12)
      s:cancel()
      t:close()
    end)
  end)
end)

describe("boundary: NUL bytes where C needs a C string", function()
  it("are argument errors for paths, never a truncated path", function()
    H.run(function()
      local dir = assert(coru.fs_mkdtemp("/tmp/coru-nul-XXXXXX"))
      local path = dir .. "/x\0.txt"
      assert.matches("NUL", err_of(coru.fs.write_file, path, "data"))
      assert.matches("NUL", err_of(coru.fs.write_file, path, "data", {atomic = true}))
      assert.matches("NUL", err_of(coru.fs.read_file, path))
      assert.matches("NUL", err_of(coru.fs_stat, path))
      assert.matches("NUL", err_of(coru.fs_open, path, "w"))
      assert.is_nil((coru.fs_stat(dir .. "/x")))    -- nothing was written under the cut name
      assert(coru.fs_rmdir(dir))
    end)
  end)

  it("are argument errors for process arguments, environment, cwd and pipe names", function()
    H.run(function()
      assert.matches("NUL", err_of(coru.process.spawn, "echo", {"a\0b"}))
      assert.matches("NUL", err_of(coru.process.spawn, "echo\0x", {}))
      assert.matches("NUL", err_of(coru.process.spawn, "echo", {}, {env = {A = "1\0"}}))
      assert.matches("NUL", err_of(coru.process.spawn, "echo", {}, {cwd = "/\0tmp"}))
      assert.matches("NUL", err_of(coru.pipe_bind, coru.new_pipe(), "/tmp/p\0ipe"))
      assert.matches("NUL", err_of(coru.tcp.connect, "127.0.0.1\0evil", 1))
      collectgarbage()
    end)
  end)
end)

describe("boundary: exit flushes queued stream writes", function()
  for _, how in ipairs({"os.exit(0)", "coru.exit(0)"}) do
    it("10 MiB queued to a slow pipe all arrive after " .. how, function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write([[
        local coru = require "coru"
        local p = coru.new_pipe()
        assert(p:open(1))
        p:write(("x"):rep(10 * 1024 * 1024), function() end)
      ]] .. how)
      f:close()
      local out, status = H.sh(string.format("%s %s | (sleep 0.3; wc -c)", H.bin, path))
      os.remove(path)
      assert.equal(0, status)
      assert.equal("10485760", out:match("%d+"))
    end)
  end
end)

describe("boundary: sanitizer reports of child processes", function()
  it("a report written by a sanitized child is caught, wherever its stderr went", function()
    if not H.watching_child_reports() then
      pending("not a sanitizer build (make test SANITIZE=1): children write no reports")
      return
    end
    -- a double free in the child, its stderr thrown away
    local out, status = H.sh(H.qbin .. [[ -e '
      local ffi = require "ffi"
      ffi.cdef "void *malloc(size_t n); void free(void *p);"
      local p = ffi.C.malloc(8)
      ffi.C.free(p) ffi.C.free(p)' 2>/dev/null]])
    assert.equal("", out)
    assert.not_equal(0, status)
    local report = H.child_reports()   -- taken here: the gate would fail this spec on it
    assert.matches("AddressSanitizer: attempting double%-free", report)
  end)
end)

describe("boundary: poll and TLS misuse", function()
  it("coru.poll.wait returns nil, 'closed' when its handle is closed", function()
    local ffi = require "ffi"
    pcall(ffi.cdef, "int pipe(int fds[2]); int close(int fd);")
    local fds = ffi.new("int[2]")
    assert.equal(0, ffi.C.pipe(fds))
    H.run(function()
      local p = coru.new_poll(fds[0])
      local t = coru.spawn(coru.poll.wait, p, "r")
      coru.sleep(5)
      p:close()
      local r = coru.timeout(2000, function() return {t:await()} end)
      assert.is_table(r, "poll.wait did not return after close")
      assert.is_nil(r[1])
      assert.equal("closed", r[2])
    end)
    ffi.C.close(fds[0])
    ffi.C.close(fds[1])
  end)

  it("a second tls.wrap of the same stream is refused", function()
    local TH = require "tls_helper"
    local certs = TH.certs()
    H.run(function()
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn) coru.sleep(200) end))
      local raw = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
      local first = coru.spawn(coru.tls.wrap, raw, {host = "localhost", ca = certs.ca_file, handshake_timeout = 100})
      assert.matches("already wrapped", err_of(coru.tls.wrap, raw, {host = "localhost", ca = certs.ca_file}))
      first:cancel()
      raw:close(); srv:close()
    end)
  end)
end)

describe("boundary: stale temporary files of atomic writes", function()
  it("the next atomic write to the same target removes those their dead writers left", function()
    local ffi = require "ffi"
    pcall(ffi.cdef, "int flock(int fd, int operation);")
    H.run(function()
      local fs = coru.fs
      local dir = assert(coru.fs_mkdtemp("/tmp/coru-stale-XXXXXX"))
      local target = dir .. "/data.json"
      local old = os.time() - 3600
      local stale, fresh, held = dir .. "/.data.json.tmp-AAAAAA", dir .. "/.data.json.tmp-BBBBBB", dir .. "/.data.json.tmp-CCCCCC"
      local other = dir .. "/.other.json.tmp-DDDDDD"
      for _, p in ipairs({stale, fresh, held, other}) do assert(fs.write_file(p, ("z"):rep(1000))) end
      for _, p in ipairs({stale, held, other}) do assert(coru.fs_utime(p, old, old)) end
      local hfd = assert(coru.fs_open(held, "r"))
      assert.equal(0, ffi.C.flock(hfd, 6))     -- a live writer holds it
      assert(fs.write_file(target, "new", {atomic = true}))
      assert.is_nil((coru.fs_stat(stale)))
      assert.is_table(coru.fs_stat(fresh))
      assert.is_table(coru.fs_stat(held))
      assert.is_table(coru.fs_stat(other))
      coru.fs_close(hfd)
      assert.equal(1, fs.cleanup_stale(target))   -- the one no longer held
      assert.equal(1, fs.cleanup_stale(dir .. "/other.json"))
      assert.equal("new", fs.read_file(target))
      for _, p in ipairs({fresh, target}) do coru.fs_unlink(p) end
      assert(coru.fs_rmdir(dir))
    end)
  end)
end)

describe("boundary: classes the API fuzzer found", function()
  it("fs_close refuses the loop's own descriptors and those a handle holds", function()
    local t = coru.new_tcp()
    assert(t:bind("127.0.0.1", 0))
    local fd = t:fileno()
    local r, msg, name = coru.fs_close(fd)
    assert.is_nil(r); assert.equal("EBUSY", name)
    local ok, _, n2 = coru.pipe_open(coru.new_pipe(), fd)
    assert.is_nil(ok); assert.equal("EBUSY", n2)
    t:close()
    -- the loop's epoll descriptor
    local seen = 0
    for f = 3, 64 do
      if coru.fs_readlink("/proc/self/fd/" .. f) == "anon_inode:[eventpoll]" then
        seen = seen + 1
        assert.equal("EBUSY", select(3, coru.fs_close(f)))
      end
    end
    assert.is_true(seen >= 1)
    local tm = coru.new_timer()   -- the loop still works
    H.run(function() coru.sleep(1) end)
    tm:close()
  end)

  it("the fs calls on a descriptor refuse the loop's own (bytes in its signal pipe crashed libuv)", function()
    local out, status = child([[
      local coru = require "coru"
      local s = coru.new_signal()
      assert(s:start("sigusr1", function() end))
      local refused = 0
      for f = 3, 64 do   -- at start, every pipe and anonymous inode is the loop's
        local what = coru.fs_readlink("/proc/self/fd/" .. f) or ""
        if what:find("^pipe:") or what:find("^anon_inode:") then
          for _, call in ipairs({
            function() return coru.fs_write(f, ("\171"):rep(64)) end,
            function() return coru.fs_read(f, 64) end,
            function() return coru.fs_ftruncate(f) end,
            function() return coru.fs_sendfile(f, 0, 0, 1) end,
          }) do
            local r, msg, name = call()
            assert(r == nil and name == "EBUSY", msg)
            assert(msg:find("the descriptor belongs to the event loop", 1, true), msg)
            refused = refused + 1
          end
        end
      end
      coru.sleep(20)
      s:close()
      print("refused " .. refused)
    ]])
    assert.equal(0, status, out)
    local n = tonumber(out:match("refused (%d+)"))
    assert(n and n >= 4 * 3, out)   -- epoll, and a pipe's two ends at least
  end)

  it("a descriptor whose fs_close is running is not handed to libuv, nor closed twice", function()
    local out, status = child([[
      local coru, ffi = require "coru", require "ffi"
      ffi.cdef "int pipe(int fds[2]);"
      local busy = 0
      for _ = 1, 50 do
        local p = ffi.new("int[2]")
        assert(ffi.C.pipe(p) == 0)
        local fd = p[0]
        local t = coru.spawn(function() return coru.fs_close(fd) end)   -- runs in the threadpool
        local h, msg, name = coru.new_poll(fd)
        assert(h == nil and name == "EBUSY", msg)
        local ok, _, n2 = coru.new_pipe():open(fd)   -- EBADF once the threadpool closed it
        assert(ok == nil and (n2 == "EBUSY" or n2 == "EBADF"), n2)
        local again, _, n3 = coru.fs_close(fd)
        assert(again == nil and n3 == "EBUSY")
        assert(t:await())
        busy = busy + 1
        assert(coru.fs_close(p[1]))
      end
      print("refused " .. busy)
    ]])
    assert.equal(0, status, out)
    assert.matches("refused 50", out)
  end)

  it("fs_close of a descriptor that is not open fails at once: a socket made meanwhile keeps its number", function()
    local out, status = child([[
      local coru = require "coru"
      for i = 1, 50 do
        local fd = assert(coru.fs_open("/dev/null", "r"))
        assert(coru.fs_close(fd))
        local r, msg, name = coru.fs_close(fd, function() error("not called") end)   -- a stale double close
        assert(r == nil and name == "EBADF", msg)
        local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(c) c:read() end))   -- takes fd's number
        coru.sleep(1)
        local addr, err = srv:getsockname()   -- EBADF when the stale close closed the listener
        assert(addr, err)
        assert(coru.tcp.connect("127.0.0.1", addr.port)):close()
        srv:close()
      end
      print("survived")
    ]])
    assert.equal(0, status, out)
    assert.matches("survived", out)
  end)

  -- Two libuv watchers on one descriptor share its epoll entry: closing
  -- one removed the entry under the other, whose next change failed
  -- (ENOENT) and libuv aborted.
  it("new_poll refuses a descriptor another handle holds, watching or not (one watcher per descriptor)", function()
    local out, status = child([[
      local coru, ffi = require "coru", require "ffi"
      ffi.cdef "int pipe(int fds[2]);"
      for _ = 1, 20 do
        local p = ffi.new("int[2]")
        assert(ffi.C.pipe(p) == 0)
        local stream = coru.new_pipe()
        assert(stream:open(p[0]))                 -- the stream holds p[0], not reading yet
        local h, msg, name = coru.new_poll(p[0])
        assert(h == nil and name == "EBUSY", msg)
        local poll = assert(coru.new_poll(p[1]))  -- a poll handle, not started: the second is refused
        h, msg, name = coru.new_poll(p[1])
        assert(h == nil and name == "EBUSY", msg)
        poll:close()
        stream:close()
        coru.fs_close(p[1])
      end
      print("refused")
    ]])
    assert.equal(0, status, out)
    assert.matches("refused", out)
  end)

  it("fs_close(0..2) leaves the descriptor open on /dev/null", function()
    local out, status = child([[
      local coru = require "coru"
      assert(coru.fs_close(2))
      print(coru.resident_set_memory() > 0, coru.fs_fstat(2).type)
    ]])
    assert.equal(0, status)
    assert.matches("true\tchar", out)
  end)

  it("a suspending call behind a C boundary raises before allocating anything", function()
    H.run(function()
      local before = coru._fs_live_requests()
      for _ = 1, 20 do
        local ok, err = pcall(table.sort, {3, 2, 1}, function(a, b) coru.fs_stat(".") return a < b end)
        assert.is_false(ok)
        assert.matches("cannot suspend here", err)
        pcall(string.gsub, "a", "a", function() coru.fs.read_file("/etc/hostname") end)
      end
      assert.equal(before, coru._fs_live_requests())
    end)
  end)

  it("a directory's __gc called directly while a request holds it does nothing", function()
    H.run(function()
      local dir = assert(coru.fs_opendir("."))
      local t = coru.spawn(function() return dir:readdir() end)
      debug.getmetatable(dir).__gc(dir)
      assert.is_not_nil(t:await())
      assert(dir:closedir())
    end)
  end)
end)

describe("boundary: SIGPIPE stays ignored", function()
  it("after a script's SIGPIPE watcher stops or closes, a write to a closed pipe is EPIPE, not death", function()
    local out, status = child([[
      local coru = require "coru"
      for _, how in ipairs({"stop", "close"}) do
        local s = coru.new_signal()
        s:start("sigpipe", function() end)
        if how == "stop" then s:stop() end
        s:close()
        coru.sleep(5)
        local p = coru.process.spawn("true", {}, {stdio = {"pipe", nil, nil}})
        p:wait()
        local ok, err, name
        for _ = 1, 20 do
          ok, err, name = p.stdin:write(("x"):rep(65536))
          if not ok then break end
        end
        print(how, name)
      end
    ]])
    assert.equal(0, status)
    assert.matches("stop\tEPIPE", out)
    assert.matches("close\tEPIPE", out)
  end)
end)

describe("boundary: internal functions that write into a userdata", function()
  it("coru._select_claim and _select_case take a select flag only", function()
    local t = coru.new_timer()
    assert.matches("coru.select_flag expected", err_of(coru._select_claim, t))
    assert.matches("coru.select_flag expected", err_of(coru._select_claim, io.stdout))
    assert.is_true(coru._select_claim(coru._select_flag()))
    assert.is_false(t:is_closing())   -- its box is intact
    t:close()
  end)
end)
