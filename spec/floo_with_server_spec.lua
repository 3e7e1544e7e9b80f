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

local function tmpdir()
  local p = io.popen("mktemp -d /tmp/coru-floo-client-XXXXXX")
  local d = p:read("*l")
  p:close()
  return d
end

describe_server("coru.floo against coru.floo.server", function()
  local function join(port, user)
    return assert(floo.connect{host = "127.0.0.1", port = port, username = user, secret = USERS[user].secret,
                               owner = "alice", workspace = "shared", heartbeat = 5000})
  end

  it("two sessions editing one buffer at once converge on the server's text and md5", function()
    coru.run(function()
      local dir = tmpdir()
      local srv = assert(server.start{data_dir = dir, port = 0, log_level = "none", users = USERS})
      local a, b = join(srv.port, "alice"), join(srv.port, "bob")
      local id = assert(a:create_buf("c.txt", "héllo wörld 😀 𝄞 start\n"))
      helper.wait_until(function() return b.bufs[id] and b.bufs[id].text end, 2000, "bob's copy")
      local pieces = {"x", "é", "😀", "日本", "\n", "𝄞", "ab"}
      local function editor(s, seed)
        math.randomseed(seed)
        for _ = 1, 150 do
          assert(s:edit(id, function(t)
            local cps = {}
            for ch in t:gmatch("[%z\1-\127\194-\244][\128-\191]*") do cps[#cps + 1] = ch end
            local pos = math.random(0, #cps)
            if #cps > 8 and math.random() < 0.4 then
              table.remove(cps, math.max(1, pos))
            else
              table.insert(cps, pos + 1, pieces[math.random(#pieces)])
            end
            return table.concat(cps)
          end))
        end
      end
      local t1, t2 = coru.spawn(editor, a, 11), coru.spawn(editor, b, 12)
      t1:await() t2:await()
      local c = join(srv.port, "alice")
      helper.wait_until(function()
        return a.bufs[id].text == c.bufs[id].text and b.bufs[id].text == c.bufs[id].text
      end, 5000, "both sessions at the server's text")
      assert.equal(c.bufs[id].md5, a.bufs[id].md5)
      assert.equal(c.bufs[id].md5, b.bufs[id].md5)
      assert.equal(coru.md5(c.bufs[id].text), c.bufs[id].md5)
      assert.is_nil(floo.utf8_error(c.bufs[id].text))
      a:close() b:close() c:close()
      srv:close()
      os.execute("rm -rf " .. dir)
    end)
  end)

  it("an edit-only script keeps working across a server restart, losing nothing confirmed", function()
    coru.run(function()
      local dir = tmpdir()
      local srv = assert(server.start{data_dir = dir, port = 0, log_level = "none", users = USERS})
      local port = srv.port
      local s = join(port, "alice")
      local log = {}
      s:on("reconnect", function() log[#log + 1] = "reconnect" end)
      local id = assert(s:create_buf("log.txt", ""))
      local t = coru.spawn(function()
        for i = 1, 30 do assert(s:edit(id, function(txt) return txt .. i .. "\n" end)) end
      end)
      helper.wait_until(function() return (s.bufs[id].confirmed or ""):find("5\n", 1, true) end, 5000, "five edits")
      srv:close()
      coru.sleep(50)
      srv = assert(server.start{data_dir = dir, port = port, log_level = "none", users = USERS})
      t:await()
      local want = {}
      for i = 1, 30 do want[i] = tostring(i) end
      local c = join(port, "alice")
      assert.equal(table.concat(want, "\n") .. "\n", c.bufs[id].text)
      assert.equal(1, #log)
      s:close() c:close()
      srv:close()
      os.execute("rm -rf " .. dir)
    end)
  end)
end)
