-- coru.floo against coru's own collaborative server (coru.floo.server, the
-- collaborative-server issue): convergence of two sessions and an edit-only
-- script across a server restart. The fake server of coru.floo.testing is
-- the subject of floo_spec.lua.
local coru = require "coru"
local helper = require "helper"
local floo = require "coru.floo"

local have_server, server = pcall(require, "coru.floo.server")

local describe_server = have_server and describe or function(name)
  pending(name .. ": coru.floo.server is not in this build")
end

local USERS = {alice = {secret = "a"}, bob = {secret = "b"}}

describe_server("coru.floo against coru.floo.server", function()
  local FH = require "floo_helper"
  local sessions = {}   -- joined in the current spec, closed by with_server

  local function join(port, user)
    local s = assert(floo.connect{host = "127.0.0.1", port = port, username = user, secret = USERS[user].secret,
                                  owner = "alice", workspace = "shared", heartbeat = 5000})
    sessions[#sessions + 1] = s
    return s
  end

  -- fn(start) in a task, start(port) starting the server on a data
  -- directory of its own (again after a restart); the sessions, the
  -- server and the directory go afterwards, also when fn fails.
  local function with_server(fn)
    coru.run(function()
      local dir, srv = FH.tmpdir(), nil
      local function start(port)
        srv = assert(server.start{data_dir = dir, port = port or 0, log_level = "none", users = USERS})
        return srv
      end
      local ok, err = pcall(fn, start)
      for _, s in ipairs(sessions) do s:close() end
      sessions = {}
      if srv then srv:close() end
      FH.rmdir(dir)
      if not ok then error(err, 0) end
    end)
  end

  it("two sessions editing one buffer at once converge on the server's text and md5", function()
    with_server(function(start)
      local srv = start()
      local a, b = join(srv.port, "alice"), join(srv.port, "bob")
      local id = assert(a:create_buf("c.txt", "héllo wörld 😀 𝄞 start\n"))
      helper.wait_until(function() return b.bufs[id] and b.bufs[id].text end, 2000, "bob's copy")
      FH.edit_at_once({a, b}, id, 150, 10, {"x", "é", "😀", "日本", "\n", "𝄞", "ab"}, 8)
      local c = join(srv.port, "alice")
      FH.converged(function() return c.bufs[id] end, {a, b}, id)
      assert.is_nil(floo.utf8_error(c.bufs[id].text))
    end)
  end)

  it("an edit-only script keeps working across a server restart, losing nothing confirmed", function()
    with_server(function(start)
      local srv = start()
      local port = srv.port
      local s = join(port, "alice")
      local log = {}
      s:on("reconnect", function() log[#log + 1] = "reconnect" end)
      local id = assert(s:create_buf("log.txt", ""))
      local t = coru.spawn(function()
        for i = 1, 30 do assert(s:edit(id, function(txt) return txt .. i .. "\n" end)) end
      end)
      -- five edits confirmed, or the editing task ended (an edit failed:
      -- its error, not a timeout, is the spec's failure)
      helper.wait_until(function()
        return (s.bufs[id].confirmed or ""):find("5\n", 1, true) or t:status() ~= "suspended"
      end, 5000, "five edits")
      if t:status() ~= "suspended" then t:await() end
      srv:close()
      coru.sleep(50)
      start(port)
      t:await()
      local want = {}
      for i = 1, 30 do want[i] = tostring(i) end
      local c = join(port, "alice")
      assert.equal(table.concat(want, "\n") .. "\n", c.bufs[id].text)
      assert.equal(1, #log)
    end)
  end)
end)
