-- Issue 10: nothing a script or a peer sends can crash the process.
-- What could crash runs in a child host (a regression then fails this
-- spec instead of killing busted); each child prints what it saw.
local coru = require "coru"
local H = require "helper"

-- Run src (Lua) in a child `coru`; returns stdout+stderr and exit status.
local function child(src, shell_suffix)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(src)
  f:close()
  local out, status = H.sh(string.format("%s %s %s 2>&1", H.bin, path, shell_suffix or ""))
  os.remove(path)
  return out, status
end

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
    if not os.getenv("LUA_CPATH") then pending("needs LUA_CPATH to find coru.so") return end
    local out = H.sh([[luajit -e '
      local coru = require "coru"
      local bad = setmetatable({}, {__tostring = function() error("tostring raised") end})
      coru.on_error(function() error(bad) end)
      coru.run(function() coru.spawn(function() error(bad) end); coru.sleep(5) end)
      print(coru.run(function() return "again" end))' 2>&1]])
    assert.matches("again", out)
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
