-- coru.floo.server: the protocol of shared/FLOOBITS-PROTOCOL.md as colab
-- speaks it, and the faults of issue 12.
local coru = require "coru"
local helper = require "helper"
local H = require "floo_helper"
local server = H.server
local fs = require "coru.fs"

describe("coru.floo.server", function()
  teardown(function() require("tls_helper").cleanup() end)   -- the certificates made for TLS specs

  describe("pure rules", function()
    it("expands site perms as colab's perms.js, with msg for logged-in viewers", function()
      local l, set = server.expand_perms({"view_room"}, false)
      assert.same({"get_buf", "ping", "pong", "webrtc", "msg"}, l)
      assert.is_true(set.get_buf)
      assert.same({"get_buf", "ping", "pong", "webrtc"}, (server.expand_perms({"view_room"}, true)))
      local _, all = server.expand_perms({"view_room", "edit_room", "admin_room"}, false)
      for _, n in ipairs({"patch", "set_buf", "create_buf", "delete_buf", "rename_buf", "kick", "perms", "saved"}) do
        assert.is_true(all[n], n)
      end
      assert.same({}, (server.expand_perms({}, false)))
    end)

    it("checks buffer paths: no empty, leading or trailing /, //, . or .. components", function()
      assert.is_nil(server.check_path("a/b.txt"))
      assert.is_nil(server.check_path("é/ünï code.md"))
      assert.equal("Path is empty", server.check_path(""))
      assert.equal("Path must be a string", server.check_path(5))
      assert.matches("must not start or end with /", server.check_path("/a"))
      assert.matches("must not start or end with /", server.check_path("a/"))
      for _, p in ipairs({"a//b", "../a", "a/..", "a/./b", ".", ".."}) do
        assert.matches("empty, %. or %.%. component", server.check_path(p), nil, p)
      end
      assert.matches("NUL", server.check_path("a\0b"))
    end)

    it("encodes and decodes base64 as RFC 4648", function()
      for _, s in ipairs({"", "f", "fo", "foo", "foob", "fooba", "foobar", "\0\255\128 binary"}) do
        assert.equal(s, server.base64_decode(server.base64_encode(s)))
      end
      assert.equal("Zm9vYmE=", server.base64_encode("fooba"))
      assert.same({nil, "invalid base64"}, {server.base64_decode("Zm9v!")})
      assert.same({nil, "invalid base64"}, {server.base64_decode("Zm9")})
    end)

    it("refuses a bad config with a message naming the field", function()
      helper.run(function()
        local _, err = server.start({users = {alice = {}}, port = 0, log_level = "none"})
        assert.equal("config.users.alice: needs a string secret", err)
        _, err = server.start({users = {["a b"] = {secret = "x"}}, port = 0})
        assert.matches("invalid user name", err)
        _, err = server.start({anonymous = {"root"}, port = 0})
        assert.equal("config.anonymous: false or a list of site perms", err)
        _, err = server.start({log_level = "loud", port = 0})
        assert.equal("config.log_level: one of debug, info, warn, error, none", err)
        _, err = server.start({tls = {cert = "x"}, port = 0})
        assert.equal("config.tls: needs cert and key file names", err)
      end)
    end)

    it("reads a JSON config file, with paths relative to it", function()
      local d = H.tmpdir()
      local f = assert(io.open(d .. "/floo.json", "w"))
      f:write('{"data_dir": "data", "users": {"alice": {"secret": "s"}}, "tls": {"cert": "c.pem", "key": "k.pem"}}')
      f:close()
      local cfg = assert(server.load_config(d .. "/floo.json"))
      assert.equal(d .. "/data", cfg.data_dir)
      assert.equal(d .. "/c.pem", cfg.tls.cert)
      f = assert(io.open(d .. "/bad.json", "w")) f:write("{users:") f:close()
      local none, err = server.load_config(d .. "/bad.json")
      assert.is_nil(none)
      assert.matches("invalid JSON", err)
      H.rmdir(d)
    end)
  end)

  describe("join", function()
    it("answers auth with room_info (res_id, perms, bufs metadata, tree) and tells the others", function()
      H.with_server(nil, function(srv, cfg)
        local a = H.connect(srv.port)
        local info = a:join("alice", "a-secret")
        assert.equal("ws", info.room_name)
        assert.equal("alice", info.owner)
        local readme = info.bufs["1"]
        assert.equal("FLOOBITS_README.md", readme.path)
        assert.is_nil(readme.buf)
        assert.equal(1, info.tree["FLOOBITS_README.md"])
        assert.equal("alice", info.users[tostring(info.user_id)].username)
        local b = H.join(srv.port, "bob")
        assert.is_true(b.user_id > a.user_id)
        local j = a:expect("join")
        assert.equal("bob", j.username)
        assert.equal(b.user_id, j.user_id)
        b:close()
        local p = a:expect("part")
        assert.equal(b.user_id, p.user_id)
      end)
    end)

    it("disconnects bad auth with the reason colab gives", function()
      H.with_server(nil, function(srv, cfg)
        local cases = {
          {{username = "alice", room_owner = "alice", room = "ws", version = 0.11}, "Bad auth JSON"},
          {{username = "alice", secret = "a-secret", room_owner = "alice", room = "ws"}, "Bad auth JSON"},
          {{username = "alice", secret = "a-secret", room_owner = "alice", room = "ws", version = 0.3}, "Unsupported client version"},
          {{username = "alice", secret = "wrong", room_owner = "alice", room = "ws", version = 0.11}, "Invalid username or secret"},
          {{username = "nobody", secret = "x", room_owner = "alice", room = "ws", version = 0.11}, "Invalid username or secret"},
          {{username = "bob", secret = "b-secret", room_owner = "bob", room = "../x", version = 0.11}, "Workspace not found"},
          {{username = "bob", secret = "b-secret", room_owner = "alice", room = "never", version = 0.11}, "Workspace not found"},
          {{username = "", secret = "", room_owner = "alice", room = "ws", version = 0.11}, "user doesn't have permissions"},
        }
        -- alice's workspace exists once she joined
        local a = H.join(srv.port, "alice")
        for _, case in ipairs(cases) do
          local c = H.connect(srv.port)
          c:send(case[1])
          local seen = c:until_closed()
          assert.equal(1, #seen)
          assert.equal("disconnect", seen[1].name)
          assert.equal(case[2], seen[1].reason)
        end
        -- path form of the workspace and api_key
        local c = H.connect(srv.port)
        c:send({username = "bob", secret = "b-secret", path = "alice/ws", version = "0.11"})
        assert.equal("room_info", c:expect(function(m) return m.name == "room_info" end).name)
      end)
    end)

    it("gives anonymous users read-only access when configured, and enforces it", function()
      H.with_server({anonymous = {"view_room"}}, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local id = a:create("a.txt", "hello\n")
        local anon = H.connect(srv.port)
        local info = anon:join("", "")
        assert.same({"get_buf", "ping", "pong", "webrtc"}, info.perms)
        assert.same({"get_buf", "ping", "pong", "webrtc"}, info.anon_perms)
        assert.matches("^anon_", info.users[tostring(info.user_id)].username)
        local r = anon:reply(anon:send({name = "get_buf", id = id}), "get_buf")
        assert.equal("hello\n", r.buf)
        anon:send({name = "create_buf", path = "b.txt", buf = "x", encoding = "utf8"})
        local seen = anon:until_closed()
        assert.equal("disconnect", seen[#seen].name)
        assert.equal("You are not allowed to create_buf", seen[#seen].reason)
        -- nothing was created; alice goes on
        local again = a:reply(a:send({name = "get_buf", id = id}), "get_buf")
        assert.equal("hello\n", again.buf)
      end)
    end)

    it("refuses plain TCP when TLS is required, and serves TLS with a certificate and key", function()
      local tls_helper = require "tls_helper"
      local certs = tls_helper.certs()
      H.with_server({require_tls = true, tls = {port = 0, cert = certs.server.cert, key = certs.server.key}}, function(srv, cfg)
        local c = H.connect(srv.port)
        c:send({username = "alice", secret = "a-secret", room_owner = "alice", room = "ws", version = 0.11})
        local seen = c:until_closed()
        assert.equal("This workspace requires SSL and you're on an unencrypted connection.", seen[1].reason)
        local s = assert(coru.tls.connect("127.0.0.1", srv.tls_port, {ca = certs.ca_file, servername = "localhost"}))
        s:write('{"username":"alice","secret":"a-secret","room_owner":"alice","room":"ws","version":0.11,"req_id":1}\n')
        local line = assert(s:read_line())
        assert.matches('"name":"room_info"', line)
        s:close()
      end)
    end)
  end)

  describe("buffers", function()
    it("creates buffers for everyone (sender's copy with res_id) and drops the untouched README", function()
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local b = H.join(srv.port, "bob")
        local req = a:send({name = "create_buf", path = "d/é.txt", buf = "x\r\ny\n", encoding = "utf8"})
        local mine = a:reply(req, "create_buf")
        assert.equal("x\ny\n", mine.buf)
        assert.equal(server.md5("x\ny\n"), mine.md5)
        assert.equal(req, a:reply(req, "delete_buf").res_id)
        local theirs = b:expect("create_buf")
        assert.is_nil(theirs.res_id)
        assert.equal(mine.id, theirs.id)
        assert.equal("alice", theirs.username)
        local del = b:expect("delete_buf")
        assert.equal("FLOOBITS_README.md", del.path)
        assert.is_true(del.unlink)
      end)
    end)

    it("refuses invalid and clashing paths with an error and changes nothing", function()
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local b = H.join(srv.port, "bob")
        local id = a:create("dir/file.txt", "one")
        b:expect("create_buf")
        local bad = {
          {"../up.txt", "empty, %. or %.%. component"}, {"a//b", "empty, %. or %.%. component"},
          {"/abs", "must not start or end with /"}, {"", "Path is empty"},
          {"dir/file.txt", "already exists"}, {"dir", "is a directory"},
          {"dir/file.txt/under", "clashes with the file dir/file.txt"},
        }
        for _, case in ipairs(bad) do
          local req = a:send({name = "create_buf", path = case[1], buf = "x", encoding = "utf8"})
          local e = a:reply(req, "error")
          assert.matches(case[2], e.msg)
        end
        local req = a:send({name = "rename_buf", id = id, path = "dir/../x"})
        assert.matches("component", a:reply(req, "error").msg)
        req = a:send({name = "create_buf", path = "bin.dat", buf = "!!", encoding = "base64"})
        assert.equal("invalid base64", a:reply(req, "error").msg)
        req = a:send({name = "create_buf", path = "x.txt", buf = "x", encoding = "latin1"})
        assert.equal("Unsupported encoding: latin1", a:reply(req, "error").msg)
        req = a:send({name = "get_buf", id = 999})
        assert.equal("Buffer 999 doesn't exist", a:reply(req, "error").msg)
        -- bob saw none of it; the workspace still has one buffer
        b:send({name = "ping"})
        local m = b:expect(function(x) return x.name ~= "delete_buf" end)
        assert.equal("pong", m.name)
        local ws = srv:workspace("alice/ws")
        assert.equal(1, ws.nbufs)
      end)
    end)

    it("renames, deletes, highlights, saved, msg, datamsg: broadcast as colab does", function()
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local b = H.join(srv.port, "bob")
        local id = a:create("a.txt", "text")
        local req = a:send({name = "rename_buf", id = id, path = "sub/b.txt"})
        assert.equal("a.txt", a:reply(req, "rename_buf").old_path)
        local r = b:expect("rename_buf")
        assert.equal("sub/b.txt", r.path)
        req = a:send({name = "highlight", id = id, ranges = {{4, 1}}, following = false})
        a:reply(req, "ack")
        local hl = b:expect("highlight")
        assert.same({{1, 4}}, hl.ranges)
        assert.is_false(hl.following)
        -- an identical repeat is only acked; empty ranges are an error
        req = a:send({name = "highlight", id = id, ranges = {{4, 1}}, following = false})
        a:reply(req, "ack")
        req = a:send({name = "highlight", id = id, ranges = {}})
        assert.equal("Invalid ranges", a:reply(req, "error").msg)
        req = a:send({name = "saved", id = id})
        a:reply(req, "ack")
        assert.equal(id, b:expect("saved").id)
        req = a:send({name = "msg", data = "hi bob"})
        a:reply(req, "ack")
        assert.equal("hi bob", b:expect("msg").data)
        req = a:send({name = "datamsg", to = {b.user_id}, data = {k = 1}})
        a:reply(req, "ack")
        assert.same({k = 1}, b:expect("datamsg").data)
        -- a newcomer gets the chat and the last highlight replayed
        local c = H.join(srv.port, "bob")
        assert.equal("hi bob", c:expect("msg").data)
        assert.equal(id, c:expect("highlight").id)
        req = a:send({name = "delete_buf", id = id, unlink = true})
        local d = a:reply(req, "delete_buf")
        assert.is_true(d.unlink)
        b:expect(function(m) return m.name == "delete_buf" and m.id == id end, 5000, "delete_buf")
        req = a:send({name = "get_buf", id = id})
        assert.equal(("Buffer %d doesn't exist"):format(id), a:reply(req, "error").msg)
      end)
    end)

    it("keeps temp data within bounds, so room_info stays sendable", function()
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local deep = {}
        local t = deep
        for _ = 1, 197 do t.x = {} t = t.x end
        assert.equal("temp data too big or too deep", a:reply(a:send({name = "set_temp_data", data = deep}), "error").msg)
        local big = {blob = string.rep("x", 70000)}
        assert.equal("temp data too big or too deep", a:reply(a:send({name = "set_temp_data", data = big}), "error").msg)
        a:reply(a:send({name = "set_temp_data", data = {hangout = {url = "https://x.example"}}}), "ack")
        local b = H.join(srv.port, "bob")
        assert.equal("https://x.example", b.room_info.temp_data.hangout.url)
      end)
    end)

    it("kicks and changes perms only for admins", function()
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local b = H.join(srv.port, "bob")
        local req = a:send({name = "perms", action = "set", user_id = b.user_id, perms = {"view_room"}})
        a:reply(req, "ack")
        local p = b:expect("perms")
        assert.same({"view_room"}, p.perms)
        b:expect("user_info")
        b:send({name = "create_buf", path = "x", buf = "", encoding = "utf8"})
        local seen = b:until_closed()
        assert.equal("You are not allowed to create_buf", seen[#seen].reason)
        -- the change persists for bob's next join
        local b2 = H.join(srv.port, "bob")
        for _, name in ipairs(b2.room_info.perms) do assert.not_equal("create_buf", name) end
        req = a:send({name = "kick", user_id = b2.user_id})
        a:reply(req, "ack")
        seen = b2:until_closed()
        assert.equal("Kicked by alice", seen[#seen].reason)
      end)
    end)

    it("persists workspaces and loads them at start", function()
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local id = a:create("keep/ü.txt", "kept ✓\n")
        local bin = a:reply(a:send({name = "create_buf", path = "b.bin", buf = server.base64_encode("\0\1\255"), encoding = "base64"}), "create_buf")
        a:close()
        local srv2 = H.restart(srv, cfg)
        local ws = srv2:workspace("alice/ws")
        assert.equal(2, ws.nbufs)
        assert.equal("kept ✓\n", ws.bufs[id].text)
        assert.equal("\0\1\255", ws.bufs[bin.id].text)
        local c = H.connect(srv2.port)
        c:join("bob", "b-secret", "ws", {supported_encodings = {"utf8", "base64"}})
        local r = c:reply(c:send({name = "get_buf", id = bin.id}), "get_buf")
        assert.equal("base64", r.encoding)
        assert.equal(server.base64_encode("\0\1\255"), r.buf)
      end)
    end)
  end)

  describe("faults", function()
    it("closes on malformed JSON, a decreasing req_id or an oversize line, and keeps the others", function()
      H.with_server({max_line = 4096}, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local id = a:create("a.txt", "safe")
        local function victim(bytes)
          local c = H.join(srv.port, "bob")
          c:raw(bytes)
          local seen, err = c:until_closed()
          for _, m in ipairs(seen) do assert.not_equal("disconnect", m.name) end
          return err
        end
        victim("{not json\n")
        victim('"a string"\n')
        local c = H.join(srv.port, "bob")
        c:send({name = "ping", req_id = 10})
        c:reply(10, "pong")
        c:send({name = "ping", req_id = 10})
        c:until_closed()
        victim(string.rep("x", 5000) .. "\n")
        victim('{"name":"ping","req_id":"7"}\n')
        -- alice is still served, her buffer intact
        local r = a:reply(a:send({name = "get_buf", id = id}), "get_buf")
        assert.equal("safe", r.buf)
      end)
    end)

    it("answers a permitted message without a handler with error then disconnect", function()
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local req = a:send({name = "webrtc"})
        local seen = a:until_closed()
        assert.equal("error", seen[1].name)
        assert.equal("Unknown action", seen[1].msg)
        assert.equal(req, seen[1].res_id)
        assert.equal("disconnect", seen[2].name)
      end)
    end)

    it("survives a client that vanishes mid-line and 1,000 connections opened and dropped", function()
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local id = a:create("a.txt", "still here")
        local b = H.join(srv.port, "bob")
        b:raw('{"name":"create_buf","path":"half')
        b:close()
        assert.equal(b.user_id, a:expect("part").user_id)
        local before = helper.live_handles()
        local tasks = {}
        for i = 1, 1000 do
          tasks[#tasks + 1] = coru.spawn(function()
            local s = coru.tcp.connect("127.0.0.1", srv.port)
            if s then
              if i % 3 == 0 then s:write('{"username":"bob","secret":"b-secret","room_owner":"alice","room":"ws","version":0.11}\n') end
              if i % 3 == 1 then s:write('{"username":"bo') end
              s:close()
            end
          end)
        end
        coru.all(tasks)
        helper.wait_until(function() return srv.nconns == 1 end, 10000, "the server to drop 1,000 connections")
        helper.wait_until(function() return helper.live_handles() <= before end, 5000, "handles to be released")
        local r = a:reply(a:send({name = "get_buf", id = id}), "get_buf")
        assert.equal("still here", r.buf)
      end)
    end)

    it("pings a silent client and disconnects it when it never answers", function()
      H.with_server({heartbeat = 100}, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local p = a:expect("ping", 2000)
        assert.is_number(p.req_id)
        a:send({name = "pong", res_id = p.req_id, req_id = false})
        local p2 = a:expect("ping", 2000)
        assert.is_true(p2.req_id > p.req_id)
        local seen = a:until_closed(3000)
        assert.equal("Connection timed out", seen[#seen].reason)
      end)
    end)

    it("replays the change log over the buffer files at start; a torn last line is ignored", function()
      H.with_server({readme = false}, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local id = a:create("log.txt", "v0\n")
        local D = coru.dmp.new{}
        local text = "v0\n"
        for k = 1, 5 do
          local new = text .. ("line %d é🌍\n"):format(k)
          a:reply(a:send({name = "patch", id = id, patch = D:patch_to_text(D:patch_make(text, new)),
                          md5_before = coru.md5(text), md5_after = coru.md5(new)}), "ack")
          text = new
        end
        a:reply(a:send({name = "set_buf", id = id, buf = text .. "set\n", md5 = coru.md5(text .. "set\n"),
                        encoding = "utf8"}), "ack")
        text = text .. "set\n"
        local dir = cfg.data_dir .. "/alice/ws"
        -- acknowledged: in the log, not yet in the buffer's file
        assert.equal("v0\n", fs.read_file(dir .. "/bufs/" .. id))
        local log = fs.read_file(dir .. "/changes.log")
        assert.equal(6, select(2, log:gsub("\n", "")))
        -- a crash mid-append leaves a torn line
        assert(fs.append_file(dir .. "/changes.log", '{"id":' .. id .. ',"b":"'))
        local copy = H.tmpdir()
        os.execute(("cp -R %s/. %s/"):format(cfg.data_dir, copy))
        local srv2 = assert(server.start({data_dir = copy, port = 0, log_level = "none", users = H.USERS}))
        assert.equal(text, srv2:workspace("alice/ws").bufs[id].text)
        -- compacted at load: the file has the text, the log is empty
        assert.equal(text, fs.read_file(copy .. "/alice/ws/bufs/" .. id))
        assert.equal("", fs.read_file(copy .. "/alice/ws/changes.log"))
        srv2:close()
        H.rmdir(copy)
      end)
    end)

    it("killed with SIGKILL during heavy editing, restarts with every buffer as last acked (or later), never torn", function()
      helper.run(function()
        local dir, conf = H.server_dir()
        local function run() return H.server_process(conf) end
        local D = coru.dmp.new{}
        local p, port = run()
        local writers = {}
        for w = 1, 3 do
          local c = H.join(port, "alice")
          local text = ("buffer %d: "):format(w)
          local id = c:create(("w%d.txt"):format(w), text)
          local st = {c = c, id = id, states = {[0] = text}, acked = 0, sent = 0}
          writers[w] = st
          st.reader = coru.spawn(function()
            while true do
              local m = c:recv(10000)
              if not m then return end
              if m.name == "ack" and m.res_id and st.ids[m.res_id] then
                st.acked = math.max(st.acked, st.ids[m.res_id])
              end
            end
          end)
          st.ids = {}
          st.writer = coru.spawn(function()
            local pieces = {"x", "é", "世", "🌍", "\n"}
            for n = 1, 100000 do
              local old = st.states[n - 1]
              local new = old .. pieces[n % #pieces + 1]
              local req = c:send({name = "patch", id = id, patch = D:patch_to_text(D:patch_make(old, new)),
                                  md5_before = coru.md5(old), md5_after = coru.md5(new)})
              if not req or c.s:is_closing() then return end
              st.ids[req] = n
              st.states[n] = new
              st.sent = n
              if n % 20 == 0 then coru.sleep(1) end
            end
          end)
        end
        helper.wait_until(function()
          for _, st in ipairs(writers) do if st.acked < 200 then return false end end
          return true
        end, 20000, "200 acked patches per buffer")
        p:kill("sigkill")
        p:wait()
        for _, st in ipairs(writers) do st.c:close() st.writer:cancel() end
        p, port = run()
        local c = H.join(port, "alice")
        for _, st in ipairs(writers) do
          local r = c:reply(c:send({name = "get_buf", id = st.id}), "get_buf")
          local k
          for n = math.max(st.acked - 1, 0), st.sent do
            if st.states[n] == r.buf then k = n break end
          end
          assert(k, ("buffer %d: the text after the restart is no state at or after the last acked (%d of %d sent)")
                    :format(st.id, st.acked, st.sent))
          assert.equal(coru.md5(r.buf), r.md5)
        end
        c:close()
        p:kill("sigterm")
        assert.equal(0, (p:wait()))
        H.rmdir(dir)
      end)
    end)

    it("saves and exits 0 on SIGTERM; restarts with its buffers", function()
      helper.run(function()
        local dir, conf = H.server_dir()
        local function run() return H.server_process(conf) end
        local p, port = run()
        local a = H.join(port, "alice")
        local id = a:create("a.txt", "before SIGTERM")
        p:kill("sigterm")
        local code = p:wait()
        assert.equal(0, code)
        a:close()
        p, port = run()
        local b = H.join(port, "alice")
        assert.equal("before SIGTERM", b:reply(b:send({name = "get_buf", id = id}), "get_buf").buf)
        b:close()
        p:kill("sigint")
        assert.equal(0, p:wait())
        H.rmdir(dir)
      end)
    end)
  end)

  describe("patches (§7)", function()
    local D = coru.dmp.new{match_threshold = 0.375, match_distance = 100, patch_delete_threshold = 0.375}
    local md5 = coru.md5
    local function ptext(a, b) return D:patch_to_text(D:patch_make(a, b)) end

    -- fn(srv, cfg, a, b, id) in H.with_server: alice and bob joined, the
    -- buffer a.txt (id) created with text by alice and seen by bob
    local function with_buffer(text, fn)
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local b = H.join(srv.port, "bob")
        local id = a:create("a.txt", text)
        b:expect(function(m) return m.name == "create_buf" and m.id == id end)
        fn(srv, cfg, a, b, id)
      end)
    end

    local function server_text(srv, id) return srv:workspace("alice/ws").bufs[id].text end

    -- c sends patch p of buffer id with the md5s of the texts before and after
    local function send_patch(c, id, p, before, after)
      return c:send({name = "patch", id = id, patch = p, md5_before = md5(before), md5_after = md5(after)})
    end

    -- b was sent no patch: after a ping, its next message is the pong
    local function no_patch_for(b)
      b:send({name = "ping"})
      assert.equal("pong", b:expect(function(m) return m.name == "pong" or m.name == "patch" end).name)
    end

    it("applies a patch: ack to the sender, the others get it with the server's md5s", function()
      with_buffer("hello world\n", function(srv, cfg, a, b, id)
        local p = ptext("hello world\n", "hello brave 🌍 world\n")
        local req = send_patch(a, id, p, "hello world\n", "hello brave 🌍 world\n")
        a:reply(req, "ack")
        local m = b:expect("patch")
        assert.equal(p, m.patch)
        assert.equal("a.txt", m.path)
        assert.equal(md5("hello world\n"), m.md5_before)
        assert.equal(md5("hello brave 🌍 world\n"), m.md5_after)
        assert.equal(a.user_id, m.user_id)
        assert.equal("hello brave 🌍 world\n", server_text(srv, id))
      end)
    end)

    it("acks an empty patch and a duplicate without broadcasting", function()
      with_buffer("one\n", function(srv, cfg, a, b, id)
        a:reply(send_patch(a, id, "", "one\n", "one\n"), "ack")
        local p = ptext("one\n", "one two\n")
        a:reply(send_patch(a, id, p, "one\n", "one two\n"), "ack")
        a:reply(send_patch(a, id, p, "one\n", "one two\n"), "ack")
        b:expect("patch")
        no_patch_for(b)
        assert.equal("one two\n", server_text(srv, id))
      end)
    end)

    it("answers a patch that does not apply with get_buf at once and changes nothing", function()
      with_buffer("alpha beta gamma\n", function(srv, cfg, a, b, id)
        local p = ptext("completely other text here\n", "completely different text here\n")
        local req = send_patch(a, id, p, "alpha beta gamma\n", "x")
        local g = a:reply(req, "get_buf")
        assert.equal("alpha beta gamma\n", g.buf)
        assert.equal(md5("alpha beta gamma\n"), g.md5)
        req = send_patch(a, id, "@@ garbage", "alpha beta gamma\n", "y")
        assert.equal("alpha beta gamma\n", a:reply(req, "get_buf").buf)
        no_patch_for(b)
        assert.equal("alpha beta gamma\n", server_text(srv, id))
      end)
    end)

    it("refuses a wrong md5_after from the current base; commits one from a stale base", function()
      with_buffer("abc def\n", function(srv, cfg, a, b, id)
        local p = ptext("abc def\n", "abc XYZ def\n")
        local req = send_patch(a, id, p, "abc def\n", "nope")
        assert.equal("abc def\n", a:reply(req, "get_buf").buf)
        assert.equal("abc def\n", server_text(srv, id))
        -- stale base: applied, broadcast, and the queued get_buf cancelled by the commit
        req = send_patch(a, id, p, "stale", "nope")
        a:reply(req, "ack")
        assert.equal(md5("abc XYZ def\n"), b:expect("patch").md5_after)
        assert.equal("abc XYZ def\n", server_text(srv, id))
        local got = pcall(a.expect, a, "get_buf", 1800)
        assert.is_false(got, "no get_buf after the commit")
      end)
    end)

    it("set_buf: ack only when equal; otherwise the others get a patch and a chat line", function()
      with_buffer("v1\n", function(srv, cfg, a, b, id)
        a:reply(a:send({name = "set_buf", id = id, buf = "v1\n", md5 = md5("v1\n"), encoding = "utf8"}), "ack")
        a:reply(a:send({name = "set_buf", id = id, buf = "v2 ✓\n", md5 = md5("v2 ✓\n"), encoding = "utf8"}), "ack")
        local m = b:expect("patch")
        assert.equal(md5("v2 ✓\n"), m.md5_after)
        assert.equal("alice overwrote a.txt", b:expect("msg").data)
        assert.equal("v2 ✓\n", server_text(srv, id))
        -- invalid UTF-8 cannot be sent as JSON (coru.json refuses it both
        -- ways): from the wire, the line is invalid JSON and the peer dropped
        assert.has_error(function() a:send({name = "set_buf", id = id, buf = "\255\254", encoding = "utf8"}) end,
                         "invalid UTF-8 in a string at byte 1")
        a:raw('{"name":"set_buf","id":' .. id .. ',"buf":"\255\254","encoding":"utf8","req_id":99}\n')
        local m, err
        repeat m, err = a:recv(3000) until not m
        assert.equal("eof", err)
        assert.equal("v2 ✓\n", server_text(srv, id))
      end)
    end)

    it("strips carriage returns from patches with an error that has no res_id", function()
      with_buffer("l1\nl2\n", function(srv, cfg, a, b, id)
        local p = ptext("l1\nl2\n", "l1\r\nnew\r\nl2\n")
        send_patch(a, id, p, "l1\nl2\n", "l1\r\nnew\r\nl2\n")
        local e = a:expect("error")
        assert.is_nil(e.res_id)
        assert.matches("carriage return", e.msg)
        b:expect("patch")
        assert.equal("l1\nnew\nl2\n", server_text(srv, id))
      end)
    end)

    it("converges with several clients taking turns, without a single fetch", function()
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local id = a:create("turns.txt", "start\n")
        a:close()
        local eds, tasks = {}, {}
        for i = 1, 3 do
          eds[i] = H.editor(srv.port, i == 1 and "alice" or "bob")
          tasks[i] = coru.spawn(eds[i].run, eds[i])
        end
        helper.wait_until(function()
          for _, e in ipairs(eds) do local b = e.bufs[id] if not (b and b.text) then return false end end
          return true
        end, 5000, "the editors to load the buffer")
        for _, e in ipairs(eds) do e.stats.fetched = 0 end
        local seed = 7
        local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648 return seed % n + 1 end
        for round = 1, 30 do
          local e = eds[round % 3 + 1]
          e:edit(1, rnd, 0)
          local want = e.bufs[id].md5
          helper.wait_until(function()
            for _, o in ipairs(eds) do if o.bufs[id].md5 ~= want then return false end end
            return srv:workspace("alice/ws").bufs[id].md5 == want
          end, 5000, "everyone to receive edit " .. round)
        end
        for _, e in ipairs(eds) do
          assert.equal(0, e.stats.fetched)
          assert.equal(server_text(srv, id), e.bufs[id].text)
          e.stopped = true
        end
        coru.all(tasks)
      end)
    end)

    local function concurrent(restart)
      H.with_server(nil, function(srv, cfg)
        local a = H.join(srv.port, "alice")
        local ids = {(a:create("one.txt", "first buffer\n")), (a:create("two.txt", "second 🌍 buffer\n"))}
        a:close()
        local eds, runners = {}, {}
        for i = 1, 5 do
          eds[i] = H.editor(srv.port, i % 2 == 0 and "bob" or "alice")
          runners[i] = coru.spawn(eds[i].run, eds[i])
        end
        helper.wait_until(function()
          for _, e in ipairs(eds) do
            for _, id in ipairs(ids) do if not (e.bufs[id] and e.bufs[id].text) then return false end end
          end
          return true
        end, 5000, "the editors to load")
        local typists = {}
        for i, e in ipairs(eds) do
          local seed = i * 7919
          local function rnd(n) seed = (seed * 1103515245 + 12345) % 2147483648 return math.floor(seed / 65536) % n + 1 end
          typists[i] = coru.spawn(e.edit, e, 200, rnd)
        end
        if restart then
          coru.sleep(300)
          srv = H.restart(srv, cfg)
        end
        coru.all(typists)
        for _, e in ipairs(eds) do e:settle(400) end
        local ws = srv:workspace("alice/ws")
        for _, id in ipairs(ids) do
          local buf = ws.bufs[id]
          assert.is_true(server.valid_utf8(buf.text))
          assert.equal(md5(buf.text), buf.md5)
          for _, e in ipairs(eds) do
            assert.equal(buf.md5, e.bufs[id].md5)
            assert.equal(buf.text, e.bufs[id].text)
          end
        end
        local sent = 0
        for _, e in ipairs(eds) do sent = sent + e.stats.sent e.stopped = true end
        assert.is_true(sent > 900)
        if restart then
          local rejoined = 0
          for _, e in ipairs(eds) do rejoined = rejoined + e.stats.rejoined end
          assert.equal(5, rejoined)
        end
        coru.all(runners)
        -- what is on disk is what the clients have
        srv:close()
        for _, id in ipairs(ids) do
          assert.equal(ws.bufs[id].text, fs.read_file(cfg.data_dir .. "/alice/ws/bufs/" .. id))
        end
        H.rmdir(cfg.data_dir)
      end)
    end

    it("converges: 5 clients, 200 random concurrent edits each (multi-byte and astral)", function()
      concurrent(false)
    end)

    it("converges with a server restart in the middle; clients rejoin and re-sync", function()
      concurrent(true)
    end)
  end)
end)
