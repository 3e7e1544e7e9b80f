-- The first day (issue 13): what a newcomer hits first.
local coru = require "coru"
local H = require "helper"
local bin = H.bin

local tmpfile = H.tmpfile

describe("unknown fields of coru", function()
  it("read as nil; only submodule names load lazily", function()
    assert.is_nil(coru.slep)
    assert.is_nil(coru.VERSION)
    assert.is_nil(coru["no.such"])
    assert.is_nil(coru[1])
    assert.is_table(coru.fs)                      -- a submodule still loads
    assert.equal(coru.fs, require "coru.fs")
  end)

  it("a misspelled call fails with Lua's usual message", function()
    local ok, err = pcall(function() coru.slep(1) end)
    assert.is_false(ok)
    assert.matches("attempt to call field 'slep' %(a nil value%)", err)
  end)
end)

describe("usage errors", function()
  it("of a suspending function name the caller's line, not coru's wrapper", function()
    local f = tmpfile("local x = 1\ncoru.sleep('soon')\n")
    local out, status = H.sh(bin .. " " .. f .. " 2>&1")
    assert.equal(1, status)
    assert.matches(f:gsub("%p", "%%%0") .. ":2: bad argument #1 to 'sleep' %(number expected, got string%)", out)
    assert.not_matches("%(coru%):1:", out:match("^[^\n]*"))
    os.remove(f)
  end)

  it("name the line inside a spec too (module face and host)", function()
    local ok, err = H.run(function()
      return pcall(function()
        coru.sleep({})                               -- the line below must be named
      end)
    end)
    assert.is_false(ok)
    assert.matches("firstday_spec%.lua:%d+: bad argument #1 to 'sleep'", err)
    local ok2, err2 = pcall(function() coru.new_timer():start("x") end)
    assert.is_false(ok2)
    assert.matches("firstday_spec%.lua:%d+: bad argument #1 to 'start'", err2)
    -- outside a task (plain luajit): the error names the user's line as well
    if not coru.current() then
      local ok3, err3 = pcall(function() coru.sleep(1) end)
      assert.is_false(ok3)
      assert.matches("firstday_spec%.lua:%d+: coru%.sleep: needs a running task", err3)
    end
  end)
end)

describe("coru.run()", function()
  it("with no function runs the loop until no referenced handle is left", function()
    if coru.current() then
      -- the host: the loop is already running around the main task
      local ok, err = pcall(coru.run)
      assert.is_false(ok)
      assert.matches("coru.run: the loop is already running", err)
      return
    end
    local order = {}
    coru.spawn(function() coru.sleep(20) order[#order + 1] = "task" end)
    local t = coru.new_timer()
    t:start(5, 0, function() order[#order + 1] = "timer" t:close() end)
    coru.run()
    assert.same({"timer", "task"}, order)
  end)
end)

describe("busted under the host", function()
  local function run_busted(body)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local f = assert(io.open(dir .. "/leak_spec.lua", "w"))
    f:write(body)
    f:close()
    -- timeout: a hang is the failure this looks for
    local out, status = H.sh("cd " .. dir .. " && timeout 20 busted --lua=" .. bin .. " leak_spec.lua 2>&1")
    os.execute("rm -rf " .. dir)
    return out, status
  end

  it("ends after the results although a spec left a server and a timer open", function()
    local out, status = run_busted([[
      describe("leaky", function()
        it("leaves handles open", function()
          _G.srv = coru.tcp.listen("127.0.0.1", 0, function() end)
          _G.tm = coru.new_timer(); _G.tm:start(100000, 0, function() end)
        end)
      end)
    ]])
    assert.equal(0, status, out)
    assert.matches("1 success / 0 failures", out)
  end)

  it("a failing run exits 1 without a spurious 'error object is a nil value'", function()
    local out, status = run_busted([[
      describe("failing", function()
        it("fails", function()
          _G.tm = coru.new_timer(); _G.tm:start(100000, 0, function() end)
          assert.equal(1, 2)
        end)
      end)
    ]])
    assert.equal(1, status, out)
    assert.matches("0 successes / 1 failure", out)
    assert.not_matches("error object", out)
    assert.not_matches("coru:", out)
  end)
end)

describe("building", function()
  local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$") or "."
  it("refuses a Lua that is not LuaJIT 2.1 (luarocks passes LUA)", function()
    local other = select(2, H.sh("command -v lua5.1 >/dev/null 2>&1")) == 0 and "lua5.1"
      or select(2, H.sh("command -v lua5.2 >/dev/null 2>&1")) == 0 and "lua5.2" or "false"
    local out, status = H.sh("make -s -C '" .. root .. "' check-lua LUA=" .. other .. " 2>&1")
    assert.not_equal(0, status)
    assert.matches("is not LuaJIT 2%.1; coru needs LuaJIT", out)
    local _, ok = H.sh("make -s -C '" .. root .. "' check-lua LUA=luajit 2>&1")
    assert.equal(0, ok)
  end)

  it("finds its dependencies without dpkg (pkg-config and headers)", function()
    -- a PATH without apt-get and dpkg-query: everything is found by probing
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    H.sh("for f in /usr/local/bin/* /usr/bin/* /bin/*; do b=${f##*/}; case $b in apt-get|dpkg-query|dpkg) ;; *) [ -e " .. dir .. "/$b ] || ln -s $f " .. dir .. "/$b 2>/dev/null;; esac; done")
    local out, status = H.sh("PATH=" .. dir .. " sh '" .. root .. "/deps/install.sh' 2>&1")
    assert.equal(0, status, out)
    -- and a missing library is named, with its Debian package
    local out2, status2 = H.sh("PATH=" .. dir .. " PKG_CONFIG=/nonexistent/pkg-config sh '" .. root .. "/deps/install.sh' 2>&1")
    os.execute("rm -rf " .. dir)
    assert.equal(1, status2)
    assert.matches("deps: missing .*libuv%(libuv1%-dev%)", out2)
  end)
end)

describe("the convenience layer's callback forms", function()
  -- callback mode never suspends: the calls are made outside any task
  -- (a timer callback), the results arrive through the callbacks
  local function outside(fn)
    H.run(function()
      local done = false
      local t = coru.new_timer()
      t:start(0, 0, function() t:close() fn(function() done = true end) end)
      H.wait_until(function() return done end, 5000, "the callbacks")
    end)
  end

  it("coru.tcp.connect(host, port [, opts], cb) and coru.pipe.connect(path, cb)", function()
    local got = {}
    H.run(function()
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(c) c:write("hi\n") c:read() end))
      local port = srv:getsockname().port
      outside(function(done)
        local n = 0
        local function one() n = n + 1 if n == 4 then done() end end
        assert.is_true(coru.tcp.connect("127.0.0.1", port, function(err, s)
          got.err = err
          s:read_line(function(e, line) got.line = line s:close() one() end)
        end))
        coru.tcp.connect("127.0.0.1", port, {nodelay = false}, function(err, s)
          got.opts_err, got.opts_s = err, s ~= nil
          s:close()
          one()
        end)
        coru.tcp.connect("127.0.0.1", 1, function(err, name) got.refused = {err, name} one() end)
        coru.pipe.connect("/nonexistent/coru.sock", function(err, name) got.pipe = {err, name} one() end)
      end)
      srv:close()
    end)
    assert.is_nil(got.err)
    assert.equal("hi", got.line)
    assert.is_nil(got.opts_err)
    assert.is_true(got.opts_s)
    assert.equal("ECONNREFUSED", got.refused[2])
    assert.matches("^ECONNREFUSED: connection refused", got.refused[1])
    assert.equal("ENOENT", got.pipe[2])
  end)

  it("coru.fs.write_file / append_file / exists / mkdirp / rmtree take a callback", function()
    local dir = os.tmpname()
    os.remove(dir)
    local got = {}
    outside(function(done)
      coru.fs.mkdirp(dir .. "/a/b", function(err, ok)
        got.mkdirp = {err, ok}
        coru.fs.write_file(dir .. "/a/b/f", "one", {atomic = true}, function(err2, ok2)
          got.write = {err2, ok2}
          coru.fs.append_file(dir .. "/a/b/f", "two", function(err3)
            got.append = err3
            coru.fs.exists(dir .. "/a/b/f", function(err4, yes, kind)
              got.exists = {err4, yes, kind}
              got.content = coru.fs.read_file(dir .. "/a/b/f")   -- synchronous outside a task
              coru.fs.rmtree(dir, function(err5, ok5)
                got.rmtree = {err5, ok5}
                done()
              end)
            end)
          end)
        end)
      end)
    end)
    assert.same({nil, true}, got.mkdirp)
    assert.same({nil, true}, got.write)
    assert.is_nil(got.append)
    assert.same({nil, true, "file"}, got.exists)
    assert.equal("onetwo", got.content)
    assert.same({nil, true}, got.rmtree)
  end)

  it("refuses what it cannot do, with a clear argument error", function()
    assert.has_error(function() coru.tcp.connect("127.0.0.1", 1, 5) end,
      "bad argument #3 to 'coru.tcp.connect' (table expected, got number)")
    assert.has_error(function() coru.fs.write_file("/tmp/x", "d", 5) end,
      "bad argument #3 to 'coru.fs.write_file' (table expected, got number)")
    assert.has_error(function() coru.sleep(1, function() end) end,
      "bad argument #2 to 'sleep' (no callback form: sleep suspends a task; in a callback use a timer (coru.new_timer))")
    outside(function(done)
      -- no callback, outside a task: which functions need what
      local ok, err = pcall(coru.tcp.connect, "127.0.0.1", 1)
      assert.is_false(ok)
      assert.matches("coru.tcp.connect: needs a running task or a callback$", err)
      ok, err = pcall(coru.sleep, 1)
      assert.matches("coru.sleep: needs a running task$", err)
      ok, err = pcall(coru.spawn(function() end).await, coru.spawn(function() coru.sleep(1) end))
      assert.matches("task:await: needs a running task$", err)
      done()
    end)
  end)
end)

describe("the smaller ones", function()
  it("fs.walk is pre-order: a directory, then its contents, then its next sibling", function()
    local dir = os.tmpname()
    os.remove(dir)
    H.run(function()
      assert(coru.fs.mkdirp(dir .. "/a/x"))
      assert(coru.fs.mkdirp(dir .. "/b"))
      assert(coru.fs.write_file(dir .. "/a/x/f", ""))
      assert(coru.fs.write_file(dir .. "/b/g", ""))
      local seen = {}
      for p, ty, depth in coru.fs.walk(dir) do seen[#seen + 1] = {p:sub(#dir + 2), ty, depth} end
      -- order within a directory is the file system's: check the nesting
      local pos = {}
      for i, e in ipairs(seen) do pos[e[1]] = i end
      assert.equal(5, #seen)
      assert.equal(pos["a"] + 1, pos["a/x"])
      assert.equal(pos["a/x"] + 1, pos["a/x/f"])
      assert.equal(pos["b"] + 1, pos["b/g"])
      assert.same({"a/x/f", "file", 3}, seen[pos["a/x/f"]])
      assert(coru.fs.rmtree(dir))
    end)
  end)

  it("a stdio stream on a regular file says 'file' and its descriptor", function()
    local f = os.tmpname()
    local out, status = H.sh(bin .. [[ -e 'local s = coru.new_stdio(0) print(s:get_type()) print(s:fileno())' < ]] .. f)
    os.remove(f)
    assert.equal(0, status)
    assert.equal("file\t17\n0\n", out)
  end)

  it("print and coru.stdout keep their order on a pipe and on a file", function()
    local script = [[ -e 'print("one") coru.stdout:write("two\n") io.write("three\n") coru.stdout:write("four\n")']]
    local out = H.sh(bin .. script .. " | cat")
    assert.equal("one\ntwo\nthree\nfour\n", out)
    local f = os.tmpname()
    H.sh(bin .. script .. " > " .. f)
    local content = coru.fs.read_file(f)
    os.remove(f)
    assert.equal("one\ntwo\nthree\nfour\n", content)
  end)

  it("unknown option names are refused, with the name", function()
    local cases = {
      {function() coru.tcp.connect("127.0.0.1", 1, {timout = 5}) end, "bad argument #3 to 'coru.tcp.connect' (unknown option 'timout')"},
      {function() coru.tcp.listen("127.0.0.1", 0, print, {backlg = 5}) end, "bad argument #4 to 'coru.tcp.listen' (unknown option 'backlg')"},
      {function() coru.pipe.connect("/x", {ipcc = true}) end, "bad argument #2 to 'coru.pipe.connect' (unknown option 'ipcc')"},
      {function() coru.tls.connect("example.org", 443, {verfy = false}) end, "coru.tls.connect: bad argument #3 (unknown option 'verfy')"},
      {function() coru.tls.context({srever = true}) end, "bad argument #1 to 'coru.tls.context' (unknown option 'srever')"},
      {function() coru.process.spawn("true", {}, {cdw = "/"}) end, "bad argument #3 to 'process.spawn' (unknown option 'cdw')"},
      {function() coru.process.exec("true", {}, {timout = 5}) end, "bad argument #3 to 'process.exec' (unknown option 'timout')"},
      {function() coru.fs.write_file("/tmp/x", "x", {atomc = true}) end, "bad argument #3 to 'coru.fs.write_file' (unknown option 'atomc')"},
      {function() coru.fs.watch("/tmp", {recursiv = true}) end, "bad argument #2 to 'coru.fs.watch' (unknown option 'recursiv')"},
    }
    for _, c in ipairs(cases) do assert.has_error(c[1], c[2]) end
  end)
end)

describe("coru.json", function()
  local json = coru.json
  it("tells [] from {}, keeps null, round-trips", function()
    local v = assert(json.decode([[{"a":[],"b":{},"c":[1,[ ],"[]"],"d":null}]]))
    assert.is_true(json.is_array(v.a))
    assert.is_false(json.is_array(v.b))
    assert.equal("[]", v.c[3])                  -- a string that looks like an array
    assert.equal(json.null, v.d)
    local again = assert(json.decode(assert(json.encode(v))))
    assert.is_true(json.is_array(again.a))
    assert.is_true(json.is_array(again.c[2]))
    assert.equal("[]", json.encode(json.array()))
    assert.equal("{}", json.encode({}))
    assert.equal('{"x":[]}', json.encode({x = json.array()}))
    assert.equal("null", json.encode(json.null))
  end)

  it("returns errors as nil, msg", function()
    local v, err = json.decode("{bad")
    assert.is_nil(v)
    assert.equal("json.decode: Expected object key string but found invalid token at character 2", err)
    v, err = json.decode("[[], {bad")
    assert.matches("^json.decode: Expected object key string but found invalid token at character 7", err)
    v, err = json.encode({f = print})
    assert.is_nil(v)
    assert.equal("json.encode: Cannot serialise function: type not supported", err)
    v, err = json.decode(5)
    assert.equal("json.decode: string expected, got number", err)
  end)
end)

describe("channels: try_send, try_recv, coru.select", function()
  it("try_send / try_recv never suspend", function()
    local ch = coru.channel(1)
    assert.is_true(ch:try_send("a"))
    assert.is_false(ch:try_send("b"))                 -- full
    assert.same({true, "a"}, {ch:try_recv()})
    assert.is_false(ch:try_recv())                    -- empty
    local r = coru.channel()                          -- rendezvous: only with a waiting peer
    assert.is_false(r:try_send(1))
    H.run(function()
      local t = coru.spawn(function() return r:recv() end)
      assert.is_true(r:try_send(7))
      assert.equal(7, t:await())
      local s = coru.spawn(function() return r:send(8) end)
      assert.same({true, 8}, {r:try_recv()})
      assert.is_true(s:await())
    end)
    ch:close()
    assert.same({nil, "closed"}, {ch:try_recv()})
    assert.same({nil, "closed"}, {ch:try_send(1)})
  end)

  it("coru.select takes exactly one case: ready ones in order, else the first to come", function()
    H.run(function()
      local base = #coru.tasks()
      local a, b = coru.channel(), coru.channel(1)
      b:send("x")
      assert.same({2, "x"}, {coru.select({{a, "recv"}, {b, "recv"}})})
      assert.same({nil, "timeout"}, {coru.select({{a, "recv"}, {b, "recv"}}, 0)})
      local t0 = coru.now()
      assert.same({nil, "timeout"}, {coru.select({{a, "recv"}, {b, "recv"}}, 30)})
      assert.is_true(coru.now() - t0 >= 29)
      local sender = coru.spawn(function() coru.sleep(5) return a:send("late") end)
      assert.same({1, "late"}, {coru.select({{a, "recv"}, {b, "recv"}})})
      assert.is_true(sender:await())
      -- a send case, and the other case's value is not taken
      assert.same({2, true}, {coru.select({{a, "recv"}, {b, "send", "y"}})})
      assert.equal("y", b:recv())
      -- a closed channel is a case that proceeds
      local c = coru.channel()
      coru.spawn(function() coru.sleep(5) c:close() end)
      assert.same({1, nil, "closed"}, {coru.select({{c, "recv"}, {a, "recv"}})})
      assert.equal(base, #coru.tasks())               -- no case task left behind
    end)
  end)

  it("select against select on a rendezvous channel: one transfer, both sides see it", function()
    H.run(function()
      local c, other = coru.channel(), coru.channel()
      local t = coru.spawn(function() return coru.select({{other, "send", 1}, {c, "send", 42}}) end)
      assert.same({1, 42}, {coru.select({{c, "recv"}}, 1000)})
      assert.same({2, true}, {t:await()})
      assert.is_false(other:try_recv())               -- the other case gave nothing
    end)
  end)

  it("many selects racing on one channel: every value is received exactly once", function()
    H.run(function()
      local ch, quit = coru.channel(), coru.channel()
      local got, tasks = {}, {}
      for k = 1, 5 do
        tasks[k] = coru.spawn(function()
          while true do
            local i, v = coru.select({{ch, "recv"}, {quit, "recv"}})
            if i == 2 then return end
            got[#got + 1] = v
          end
        end)
      end
      for v = 1, 200 do assert.is_true(ch:send(v)) end
      quit:close()
      for _, t in ipairs(tasks) do t:await() end
      table.sort(got)
      assert.equal(200, #got)
      for v = 1, 200 do assert.equal(v, got[v]) end
    end)
  end)

  it("cancelling a select cancels its cases; arguments are checked", function()
    H.run(function()
      local base = #coru.tasks()
      local a = coru.channel()
      local t = coru.spawn(function() return coru.select({{a, "recv"}}) end)
      t:cancel()
      assert.equal("cancelled", t:status())
      assert.is_false(a:try_send(1))                  -- no case left waiting
      assert.equal(base, #coru.tasks())
    end)
    assert.has_error(function() coru.select({}) end,
      "bad argument #1 to 'coru.select' (non-empty array of cases expected, got table)")
    assert.has_error(function() coru.select({{coru.channel(), "peek"}}) end,
      "bad argument #1 to 'coru.select' (case 1: {channel, \"recv\"} or {channel, \"send\", value} expected)")
  end)
end)

describe("the examples under plain luajit", function()
  local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$") or "."
  it("echo_server.lua keeps serving (coru.run()) instead of exiting after 'listening'", function()
    local port
    H.run(function()
      local probe = assert(coru.tcp.listen("127.0.0.1", 0, function() end))
      port = probe:getsockname().port
      probe:close()
      local env = ("LUA_PATH='%s/lua/?.lua;;' LUA_CPATH='%s/?.so;;'"):format(root, bin:match("^(.*)/[^/]*$"))
      if bin:find("build%-san") then              -- an ASan module needs its runtime first
        env = env .. " LD_PRELOAD=$(cc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0"
      end
      local p = H.spawn("sh", {"-c", env .. " exec luajit '" .. root .. "/examples/echo_server.lua' " .. port},
        {stdio = {"ignore", "ignore", "pipe"}})
      assert.matches("echo server on 127.0.0.1:" .. port, p.stderr:read_line())
      local c = assert(coru.tcp.connect("127.0.0.1", port))
      c:write("ping\n")
      assert.equal("ping", c:read_line())
      c:close()
      assert.is_falsy(p.exited)                        -- still running
      p:kill("sigterm")
      p:wait()
      p:close()
    end)
  end)
end)

describe("tcp_bind on a busy port", function()
  it("reports EADDRINUSE from bind itself", function()
    H.run(function()
      local s = assert(coru.tcp.listen("127.0.0.1", 0, function() end))
      local port = s:getsockname().port
      local t = coru.new_tcp()
      assert.same({nil, "EADDRINUSE: address already in use: 127.0.0.1:" .. port, "EADDRINUSE"},
        {t:bind("127.0.0.1", port)})
      t:close()
      assert.same({nil, "EADDRINUSE: address already in use: 127.0.0.1:" .. port, "EADDRINUSE"},
        {coru.tcp.listen("127.0.0.1", port, function() end)})
      s:close()
    end)
  end)
end)

describe("a bad stdio descriptor for a child", function()
  it("names the entry, not the command", function()
    H.run(function()
      assert.same({nil, "EBADF: bad file descriptor: stdio[1] = 99", "EBADF"},
        {coru.process.spawn("true", {}, {stdio = {99, "inherit", "inherit"}})})
    end)
  end)
end)

describe("coru.select under cancellation", function()
  it("loses no value: a case that happened before the cancel is returned, the cancel comes next", function()
    H.run(function()
      local ch = coru.channel()
      local got, received = {}, 0
      for round = 1, 50 do
        local t = coru.spawn(function()
          local i, v = coru.select({{ch, "recv"}})
          got[#got + 1] = v
          coru.sleep(1000)                          -- the deferred cancellation lands here
        end)
        -- hand a value to the waiting case, then cancel the select at once
        assert.is_true(ch:try_send(round))
        t:cancel("stop")
        local ok, err = pcall(t.await, t)
        assert.is_false(ok)
        assert.is_true(coru.is_cancelled(err))
        received = received + 1
      end
      assert.equal(50, received)
      assert.equal(50, #got)
      for round = 1, 50 do assert.equal(round, got[round]) end
    end)
  end)
end)

describe("argument errors of the Lua layer", function()
  it("name the caller's line, whichever layer checks them", function()
    local cases = {
      {function() coru.fs.write_file(5, "x") end, "bad argument #1 to 'coru.fs.write_file' %(string expected, got number%)"},
      {function() coru.process.exec(5) end, "bad argument #1 to 'process.exec' %(string expected, got number%)"},
      {function() coru.process.spawn("true", 5) end, "bad argument #2 to 'process.spawn' %(table expected, got number%)"},
      {function() coru.process.spawn("true", {}, {stdio = {"bogus"}}) end, "bad argument #2 to 'spawn_process' %(stdio%[1%]"},
      {function() coru.pipe.listen(5, print) end, "bad argument #1 to 'coru.pipe.listen' %(string expected, got number%)"},
      {function() coru.signal.wait({}) end, "bad argument #1 to 'signal.wait' %(signal name or number expected, got table%)"},
      {function() coru.signal.wait("sigbogus") end, "bad argument #1 to 'signal.wait' %(invalid signal sigbogus%)"},
      {function() coru.poll.wait("x") end, "bad argument #1 to 'poll.wait' %(coru.poll expected, got string%)"},
      {function() coru.fs.watch(5) end, "bad argument #1 to 'coru.fs.watch' %(string expected, got number%)"},
      {function() coru.fs.read_file(5) end, "bad argument #1 to 'fs_read_file' %(string expected, got number%)"},
      {function() coru.fs_stat({}) end, "bad argument #1 to 'fs_stat' %(string expected, got table%)"},
    }
    H.run(function()
      for i, c in ipairs(cases) do
        local ok, err = pcall(c[1])
        assert.is_false(ok, "case " .. i)
        assert.matches("^[^\n]*firstday_spec%.lua:%d+: " .. c[2], err)
      end
    end)
  end)
end)
