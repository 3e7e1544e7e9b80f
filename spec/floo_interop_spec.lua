-- A client that is not ours against coru-floo-server: spec/floo_node_client.js
-- (Node.js with Floobits' npm `dmp`, the colab server's own diff-match-patch)
-- joins, creates, patches and follows a buffer while a Lua client edits it.
local coru = require "coru"
local helper = require "helper"
local H = require "floo_helper"
local jsonl = require "coru.jsonl"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
local root = here .. "/.."
local have_node = os.execute("command -v node >/dev/null 2>&1") == 0
  and io.open(root .. "/deps/node_modules/dmp/package.json") ~= nil

describe("coru-floo-server with a Node.js client", function()
  if not have_node then
    pending("needs node and deps/node_modules/dmp (make test installs them through deps/npm.sh)")
    return
  end

  it("serves a client using the npm dmp package: join, create, patch, follow", function()
    H.with_server(nil, function(srv)
      local a = H.join(srv.port, "alice")
      local D = coru.dmp.new{}
      local env = {"NODE_PATH=" .. root .. "/deps/node_modules", "PATH=" .. (os.getenv("PATH") or "/usr/bin:/bin")}
      local node = helper.spawn("node", {here .. "/floo_node_client.js", tostring(srv.port), "bob",
                                         H.USERS.bob.secret, "alice", "ws", "3"},
                                {env = env, stdio = {"ignore", "pipe", "inherit"}})
      local lines = {}
      local function line(tag)
        while true do
          local l = node.stdout:read_line()
          assert(l, "node ended early: " .. table.concat(lines, " | "))
          lines[#lines + 1] = l
          local t, v = l:match("^(%w+) (.*)$")
          if t == "ERROR" then error("node client: " .. v) end
          if t == tag then return jsonl.decode(v) end
        end
      end
      local id = line("READY")
      local created = a:expect(function(m) return m.name == "create_buf" and m.id == id end)
      assert.equal("node/hello.txt", created.path)
      local p = a:expect(function(m) return m.name == "patch" and m.id == id end)
      local text = D:patch_apply(D:patch_from_text(p.patch), created.buf)
      assert.equal("from node ✓ and 🌍, patched\n", text)
      assert.equal(p.md5_after, coru.md5(text))
      for _, new in ipairs({"from node ✓ and 🌍, patched\nby lua 😀\n",
                            "from node ✓ and 世界 🌍, patched\nby lua 😀\n",
                            "node ✓ and 世界 🌍\nby lua 😀 𝄞\n"}) do
        local req = a:send({name = "patch", id = id, patch = D:patch_to_text(D:patch_make(text, new)),
                            md5_before = coru.md5(text), md5_after = coru.md5(new)})
        a:reply(req, "ack")
        text = new
      end
      local final = line("TEXT")
      assert.equal(text, final)
      assert.equal(coru.md5(text), line("MD5"))
      assert.equal(text, srv:workspace("alice/ws").bufs[id].text)
      assert.equal(0, (node:wait()))
      node:close()
    end)
  end)
end)
