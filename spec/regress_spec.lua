-- Regression specs named after the bug they pin.
local coru = require "coru"
local H = require "helper"

describe("regress: closing a stream read with read_start", function()
  it("tells the luv-style reader 'closed' instead of dropping it silently", function()
    H.run(function()
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn) conn:read() end))
      local c = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
      local got = coru.channel(1)
      c:read_start(function(err, data) got:send({err, data}) end)
      c:close()
      local r = coru.timeout(3000, function() return got:recv() end)
      assert.is_table(r, "the read callback was never called")
      assert.equal("closed", r[1])
      srv:close()
    end)
  end)

  it("wakes a task reading a TLS stream when its lower stream is closed", function()
    local TH = require "tls_helper"
    local certs = TH.certs()
    H.run(function()
      local sopts = {server = true, cert = certs.server.cert, key = certs.server.key}
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(raw)
        local s = coru.tls.wrap(raw, sopts)
        if s then s:read() end
      end))
      local raw = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
      local s = assert(coru.tls.wrap(raw, {host = "localhost", ca = certs.ca_file}))
      s:settimeout(10000)
      local reader = coru.spawn(function() return s:read() end)
      raw:close()                              -- the transport, not the TLS stream
      local data, err, name = coru.timeout(3000, function() return reader:await() end)
      -- woken at once (not by the 3 s timeout) with "closed", as any stream
      -- closed under its reader (spec/closed_read_spec.lua)
      assert.same({nil, "closed"}, {data, err, name})
      s:close()
      srv:close()
    end)
    TH.cleanup()
  end)
end)

describe("regress: a task that cancels itself and ends without suspending", function()
  it("releases the cancel reason (no registry reference left)", function()
    H.run(function()
      local function churn()
        for _ = 1, 200 do
          local t = coru.spawn(function() coru.current():cancel("self"); return 1 end)
          assert.equal("done", t:status())
        end
      end
      churn()
      local before = H.registry_refs()
      churn()
      assert.is_true(H.registry_refs() - before <= 2, "cancel reasons leaked")
    end)
  end)
end)

describe("regress: timeout/all/any where the task cannot suspend", function()
  it("refuse before spawning or arming anything", function()
    H.run(function()
      local before = H.registry_refs()
      local started = 0
      for _ = 1, 50 do
        local ok, err = pcall(table.sort, {2, 1}, function(a, b)
          coru.timeout(10, function() started = started + 1; coru.sleep(1000) end)
          return a < b
        end)
        assert.is_false(ok)
        assert.matches("cannot suspend here", err)
        local pending = coru.spawn(function() coru.sleep(1000) end)
        local ok2, err2 = pcall(table.sort, {2, 1}, function(a, b) coru.all({pending}); return a < b end)
        assert.is_false(ok2)
        assert.matches("cannot suspend here", err2)
        pending:cancel()
      end
      assert.equal(0, started)
      assert.is_true(H.registry_refs() - before <= 2)
    end)
  end)
end)

-- Run src in a fresh host process; its output and exit status.
local fresh_host = H.host_script

-- Debian 12's LuaJIT compiles getmetatable() of an io file wrong
-- (LuaJIT/LuaJIT#1279: the recorder leaves the result's IR reference
-- uninitialised); the API fuzzer's segfault came from modes.callable(f)
-- with f an io file, in a trace. The wrong code depends on the recorder's
-- state, so the specs pin the workaround: coru's Lua never calls
-- getmetatable() on a userdata (a spy counts such calls, in a fresh host
-- process that loads the modules after the spy), and its checks of an io
-- file answer the same in compiled loops.
describe("regress: coru's checks of an io file (LuaJIT#1279)", function()
  it("never call getmetatable() on a userdata", function()
    local out, status = fresh_host([[
local real, seen = getmetatable, {}
getmetatable = function(v)
  if type(v) == "userdata" then seen[#seen + 1] = debug.traceback("getmetatable(" .. tostring(v) .. ")", 2) end
  return real(v)
end
local coru = require "coru"
local modes, json, uv = require "coru.modes", require "coru.json", require "coru.luv"
local f = io.stdout
local t = uv.new_timer()
local calls = {
  function() return modes.callable(f) end,
  function() return modes.opts_cb("x", 1, f, nil) end,
  function() return modes.opts_cb("x", 1, nil, f) end,
  function() return json.is_array(f) end,
  function() return coru.tcp.listen("127.0.0.1", 0, f) end,
  function() return coru.pipe.listen("p", f) end,
  function() return coru.tls.listen("127.0.0.1", 0, f) end,
  function() return coru.fs.write_file("x", "y", f) end,
  function() return uv.cancel(f) end,
  function() return t:start(0, 0, f) end,
}
local failed = 0
for _, c in ipairs(calls) do if not pcall(c) then failed = failed + 1 end end
t:close()
print(("failed=%d userdata=%d"):format(failed, #seen))
if seen[1] then print(seen[1]) end
]])
    assert.equal(0, status, out)
    local failed, seen = out:match("failed=(%d+) userdata=(%d+)")
    assert(failed, out)
    assert.equal(8, tonumber(failed), out)   -- all but callable and is_array raise an argument error
    assert.equal(0, tonumber(seen), out)
  end)

  it("answer the same in a compiled loop", function()
    local modes, json = require "coru.modes", require "coru.json"
    -- a chunk loaded afresh: no blacklisted bytecode from the specs before
    local function compiled(body, ...)
      return assert(load("local f, check = ... for i = 1, 300 do " .. body .. " end"))(...)
    end
    compiled("assert(check(f) == false, 'callable at iteration ' .. i)", io.stdout, modes.callable)
    compiled("assert(check(f) == false, 'an array at iteration ' .. i)", io.stdout, json.is_array)
    compiled([[local ok, err = pcall(check, "127.0.0.1", 0, f)
               assert(not ok and err:find("bad argument #3 to 'coru.tcp.listen' (function expected, got userdata)", 1, true), err)]],
             io.stdout, coru.tcp.listen)
  end)
end)

-- dmp's job __gc took any userdata for a job and freed what lay past it
-- (an io file: its neighbour's memory); the type checks of channels,
-- directories, threads and TLS contexts took a light userdata that was
-- given their metatable for one of theirs. In a fresh host process: before
-- the fix, it crashed.
describe("regress: coru's metamethods and type checks called with foreign values", function()
  it("leave the foreign value intact and raise the argument error", function()
    local out, status = fresh_host([[
local coru = require "coru"
assert(coru.dmp.diff_main("abc", "abd"))   -- dmp's spare job exists
local reg = debug.getregistry()
local n = 0
for k, mt in pairs(reg) do   -- every __gc of coru's (FILE* and _LOADLIB are LuaJIT's)
  local gc = type(mt) == "table" and rawget(mt, "__gc")
  if gc and k ~= "FILE*" and k ~= "_LOADLIB" then
    for _, v in ipairs({io.tmpfile(), newproxy(false), newproxy(true), coru.CALLBACK, 1, "s"}) do
      pcall(gc, v)
      if io.type(v) == "file" then
        assert(debug.getmetatable(v) == reg["FILE*"], "io file's metatable lost to the __gc of " .. tostring(k))
        v:write("abc"); v:seek("set"); assert(v:read("*a") == "abc"); v:close()
      end
      n = n + 1
    end
  end
end
collectgarbage()
local light = coru.CALLBACK
local function refused(mt, fn, ...)
  debug.setmetatable(light, mt)
  local ok, err = pcall(fn, light, ...)
  debug.setmetatable(light, nil)
  assert(not ok, "a light userdata passed for a " .. tostring(mt))
  return err
end
print("dir: " .. refused(reg["coru.fs_dir"], coru.fs_readdir))
print("channel: " .. refused(debug.getmetatable(coru.channel(1)), coru.channel(1).try_send, 1))
print("context: " .. refused(reg["coru.tls.context"], coru.tls.context({}).is_server))
print(("ok %d"):format(n))
]])
    assert.equal(0, status, out)
    assert.matches("ok %d+", out)
    assert.matches("dir: bad argument #1 to 'fs_readdir' %(directory %(from fs_opendir%) expected", out)
    assert.matches("channel: bad argument #1 to '%?' %(coru.channel expected, got userdata%)", out)
    assert.matches("context: bad argument #1 to '%?' %(coru.tls.context expected, got userdata%)", out)
  end)
end)
