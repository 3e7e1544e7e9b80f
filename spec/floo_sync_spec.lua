-- floo-sync (examples/floo-sync) against coru-floo-server with real files
-- on disk: two mirrors, changes on both sides and from a protocol client,
-- ignore rules, binary files, and a server restart in the middle.
local coru = require "coru"
local helper = require "helper"
local H = require "floo_helper"
local fs = require "coru.fs"
local testing = require "coru.floo.testing"
local tree, same = testing.tree, testing.same_tree

local function describe_tree(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return table.concat(keys, ", ")
end

local logs = {}   -- what the mirrors print, shown when a wait fails

-- a floo-sync mirror of dir (a child of the spec: helper.adopt)
local function sync(port, user, dir, mode, ...)
  local argv = {"examples/floo-sync", "-p", tostring(port), "-u", user,
    "-s", H.USERS[user].secret, "-w", "alice/ws", "--rescan", "500", ...}   -- a later --rescan wins
  argv[#argv + 1] = mode
  argv[#argv + 1] = dir
  return helper.adopt(testing.launch(helper.bin, argv, function(l) logs[#logs + 1] = user .. ": " .. l end))
end

-- the mirrors stopped (SIGTERM: status 0), their directories removed
local function stop(root, ...)
  for _, p in ipairs({...}) do p:kill("sigterm") end
  for _, p in ipairs({...}) do assert.equal(0, (p:wait())) end
  H.rmdir(root)
end

-- whether a log line from index `from` on matches pattern
local function logged(pattern, from)
  for i = from or 1, #logs do if logs[i]:match(pattern) then return logs[i] end end
end

local function wait_trees(a, b, what, extra)
  local ok = coru.timeout(helper.bound(10000), function()   -- a hang detector: at least 30 s
    while not (same(tree(a), tree(b)) and (not extra or extra(tree(a)))) do coru.sleep(20) end
    return true
  end)
  assert(ok, ("timed out waiting for %s: %s | %s\n%s"):format(what, describe_tree(tree(a)), describe_tree(tree(b)),
                                                             table.concat(logs, "\n", math.max(1, #logs - 30))))
end

describe("floo-sync", function()
  teardown(function() require("tls_helper").cleanup() end)   -- the certificates made for TLS specs

  it("mirrors two directories through the server, both ways, with renames and deletions", function()
    H.with_server({readme = false}, function(srv, cfg)
      local root = H.tmpdir()
      local A, B = root .. "/a", root .. "/b"
      assert(fs.mkdirp(A .. "/sub"))
      assert(fs.mkdirp(B))
      assert(fs.write_file(A .. "/one.txt", "one\n"))
      assert(fs.write_file(A .. "/sub/two.txt", "two ✓ 🌍\n"))
      assert(fs.write_file(A .. "/logo.bin", "\0\1\2\255binary"))
      assert(fs.write_file(A .. "/.flooignore", "*.log\nbuild/\n"))
      assert(fs.write_file(A .. "/debug.log", "not shared\n"))
      assert(fs.mkdirp(A .. "/.git"))
      assert(fs.write_file(A .. "/.git/HEAD", "ref: x\n"))
      local pa = sync(srv.port, "alice", A, "--upload")
      helper.wait_until(function() local ws = srv:workspace("alice/ws") return ws and ws.nbufs == 4 end, 10000, "the upload")
      local pb = sync(srv.port, "bob", B, "--download")
      local function shared(t) t["debug.log"] = nil t[".git/HEAD"] = nil return t end
      assert(helper.settle(function() return same(shared(tree(A)), tree(B)) end, 10000),
             "the first download: " .. describe_tree(tree(B)) .. "\n" .. table.concat(logs, "\n"))
      assert.is_nil(tree(B)["debug.log"])
      assert.equal("\0\1\2\255binary", tree(B)["logo.bin"])
      local ws = srv:workspace("alice/ws")
      local function find(path) for _, b in pairs(ws.bufs) do if b.path == path then return b end end end
      assert.equal("base64", find("logo.bin").encoding)
      assert.is_nil(find("debug.log"))
      -- the ignored files stay out of the comparisons from here on
      fs.unlink(A .. "/debug.log")
      fs.rmtree(A .. "/.git")

      -- local edits in A: change, new file, rename, delete
      assert(fs.write_file(A .. "/one.txt", "one, edited in a\n"))
      assert(fs.write_file(A .. "/new.txt", "brand new 😀\n"))
      wait_trees(A, B, "an edit and a new file")
      assert(fs.mkdirp(A .. "/moved"))
      assert(fs.rename(A .. "/sub/two.txt", A .. "/moved/two.txt"))
      wait_trees(A, B, "a rename in a", function(t) return t["moved/two.txt"] ~= nil end)
      local moved_id = find("moved/two.txt").id
      -- edited and moved at once: still a rename (same name), then the edit
      assert(fs.write_file(A .. "/moved/two.txt", "two ✓ 🌍\nedited, then moved\n"))
      assert(fs.mkdirp(A .. "/moved/deeper"))
      assert(fs.rename(A .. "/moved/two.txt", A .. "/moved/deeper/two.txt"))
      wait_trees(A, B, "an edit and a move together",
                 function(t) return t["moved/deeper/two.txt"] == "two ✓ 🌍\nedited, then moved\n" end)
      assert(moved_id == find("moved/deeper/two.txt").id, "not a rename:\n" .. table.concat(logs, "\n", math.max(1, #logs - 25)))
      assert(fs.rename(A .. "/moved/deeper/two.txt", A .. "/moved/two.txt"))
      wait_trees(A, B, "a move back", function(t) return t["moved/two.txt"] ~= nil end)
      assert(fs.write_file(A .. "/moved/two.txt", "two ✓ 🌍\n"))
      wait_trees(A, B, "the edit undone", function(t) return t["moved/two.txt"] == "two ✓ 🌍\n" end)
      assert(fs.unlink(A .. "/new.txt"))
      wait_trees(A, B, "a deletion in a", function(t) return t["new.txt"] == nil end)

      -- local changes in B flow back to A
      assert(fs.rename(B .. "/one.txt", B .. "/uno.txt"))
      assert(fs.write_file(B .. "/moved/two.txt", "two ✓ 🌍\nedited in b\n"))
      wait_trees(A, B, "a rename and an edit in b", function(t) return t["uno.txt"] and t["moved/two.txt"]:match("in b") end)
      assert(fs.unlink(B .. "/logo.bin"))
      wait_trees(A, B, "a deletion in b", function(t) return t["logo.bin"] == nil end)

      -- changes from a protocol client reach both mirrors
      local c = H.join(srv.port, "alice")
      local uno = find("uno.txt")
      c:reply(c:send({name = "rename_buf", id = uno.id, path = "deep/er/uno.txt"}), "rename_buf")
      local D = coru.dmp.new{}
      local old = uno.text
      c:reply(c:send({name = "patch", id = uno.id, patch = D:patch_to_text(D:patch_make(old, old .. "remote ✓\n")),
                      md5_before = coru.md5(old), md5_after = coru.md5(old .. "remote ✓\n")}), "ack")
      local id = c:create("from/remote.txt", "remote file\n")
      wait_trees(A, B, "remote changes", function(t)
        return t["deep/er/uno.txt"] == old .. "remote ✓\n" and t["from/remote.txt"] == "remote file\n"
      end)
      c:reply(c:send({name = "delete_buf", id = id, unlink = true}), "delete_buf")
      wait_trees(A, B, "a remote deletion", function(t) return t["from/remote.txt"] == nil end)
      c:close()

      -- a server restart: a change made while it is down arrives afterwards
      srv = H.restart(srv, cfg, function()
        assert(fs.write_file(A .. "/moved/two.txt", "written while the server was down\n"))
      end)
      wait_trees(A, B, "the change made during the restart",
                 function(t) return t["moved/two.txt"] == "written while the server was down\n" end)
      -- the server agrees byte for byte
      ws = srv:workspace("alice/ws")
      local bufs = {}
      for _, b in pairs(ws.bufs) do bufs[b.path] = b.text end
      local a = tree(A)
      a[".flooignore"] = a[".flooignore"]
      assert.is_true(same(a, bufs), describe_tree(a) .. " | " .. describe_tree(bufs))
      stop(root, pa, pb)
    end)
  end)

  it("leaves a remote rename, deletion and creation alone while their events wait (scans run in the gap)", function()
    -- the session changes its buffers when the message arrives; floo-sync
    -- moves, removes or writes the file when the event is handled, here
    -- 1.5 s later, with a rescan every 100 ms in between: the scan must not
    -- take the file not moved yet for a local move back, the file not
    -- removed yet for a new one, the buffer not written yet for a deletion
    H.with_server({readme = false}, function(srv)
      local root = H.tmpdir()
      local A, B = root .. "/a", root .. "/b"
      assert(fs.mkdirp(A))
      assert(fs.mkdirp(B))
      assert(fs.write_file(A .. "/two.txt", "two\n"))
      assert(fs.write_file(A .. "/gone.txt", "to be deleted\n"))
      local delay = {"--event-delay", "1500", "--rescan", "100"}
      local pa = sync(srv.port, "alice", A, "--upload", unpack(delay))
      -- the upload, once alice's mirror has its replies (they come after the server's fsync)
      helper.wait_until(function() return logged("^alice: floo%-sync: created two.txt") and logged("^alice: floo%-sync: created gone.txt") end,
                        10000, "the upload")
      local pb = sync(srv.port, "bob", B, "--download", unpack(delay))
      wait_trees(A, B, "the first download", function(t) return t["two.txt"] and t["gone.txt"] end)
      local ws = srv:workspace("alice/ws")
      local function find(path) for _, b in pairs(ws.bufs) do if b.path == path then return b end end end
      local mark = #logs + 1
      local c = H.join(srv.port, "alice")
      c:reply(c:send({name = "rename_buf", id = find("two.txt").id, path = "moved/deeper/two.txt"}), "rename_buf")
      c:reply(c:send({name = "delete_buf", id = find("gone.txt").id, unlink = true}), "delete_buf")
      c:create("fresh.txt", "fresh\n")
      -- both mirrors handled the three events
      for _, user in ipairs({"alice", "bob"}) do
        for _, pat in ipairs({"renamed two.txt %-> moved/deeper/two.txt by", "removed gone.txt by", "new fresh.txt from"}) do
          helper.wait_until(function() return logged("^" .. user .. ": floo%-sync: " .. pat, mark) end, 10000,
                            user .. "'s '" .. pat .. "'\n" .. table.concat(logs, "\n", mark))
        end
      end
      wait_trees(A, B, "the remote changes", function(t)
        return t["moved/deeper/two.txt"] == "two\n" and t["fresh.txt"] == "fresh\n" and not t["two.txt"] and not t["gone.txt"]
      end)
      coru.sleep(300)                                     -- a few more rescans
      -- neither mirror acted on its own: no rename back, no re-creation, no deletion
      for _, what in ipairs({"renamed [^ ]+ %-> [^ ]+$", "created ", "deleted "}) do
        assert(not logged("floo%-sync: " .. what, mark), table.concat(logs, "\n", mark))
      end
      assert.equal("two\n", find("moved/deeper/two.txt").text)
      assert.equal("fresh\n", find("fresh.txt").text)
      assert.is_nil(find("two.txt"))
      assert.is_nil(find("gone.txt"))
      assert.equal(2, ws.nbufs)
      c:close()
      stop(root, pa, pb)
    end)
  end)

  it("connects over TLS with a CA of its own", function()
    local certs = require("tls_helper").certs()
    H.with_server({readme = false, port = false, tls = {port = 0, cert = certs.server.cert, key = certs.server.key}},
                  function(srv)
      local root = H.tmpdir()
      assert(fs.write_file(root .. "/secure.txt", "over TLS 🔒\n"))
      local p = helper.spawn(helper.bin, {"examples/floo-sync", "-q", "-H", "localhost", "-p",
        tostring(srv.tls_port), "--ca", certs.ca_file, "-u", "alice", "-s", H.USERS.alice.secret,
        "-w", "alice/ws", "--upload", root}, {stdio = {"ignore", "ignore", "ignore"}})
      helper.wait_until(function()
        local ws = srv:workspace("alice/ws")
        if not ws then return false end
        for _, b in pairs(ws.bufs) do if b.path == "secure.txt" then return b.text == "over TLS 🔒\n" end end
        return false
      end, 10000, "the upload over TLS")
      p:kill("sigterm")
      assert.equal(0, (p:wait()))
      H.rmdir(root)
    end)
  end)

  it("refuses bad options with the usage", function()
    helper.run(function()
      local out, err, code = coru.process.exec(helper.bin, {"examples/floo-sync", "--port", "x", "dir"})
      assert.equal(2, code)
      assert.matches("%-%-port: a number", err)
      out, err, code = coru.process.exec(helper.bin, {"examples/floo-sync", "--event-delay", "soon", "dir"})
      assert.equal(2, code)
      assert.matches("%-%-event%-delay: a number of ms", err)
      out, err, code = coru.process.exec(helper.bin, {"examples/floo-sync", "-u", "a", "dir"})
      assert.equal(2, code)
      assert.matches("%-%-workspace owner/name is needed", err)
      out, err, code = coru.process.exec(helper.bin, {"examples/floo-sync", "--help"})
      assert.equal(0, code)
      assert.matches("usage: floo%-sync", out)
    end)
  end)
end)
