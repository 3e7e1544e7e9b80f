local coru = require "coru"
local helper = require "helper"

local floo = require "coru.floo"
local testing = require "coru.floo.testing"
local FH = require "floo_helper"
local jsonl = require "coru.jsonl"

-- The sessions joined since the last in_room ended (in_room closes them).
local joined = {}

local function join(srv, user, extra)
  local o = {host = srv.host, port = srv.port, username = user or "alice", secret = "s",
             owner = "owner", workspace = "ws", heartbeat = 5000}
  for k, v in pairs(extra or {}) do o[k] = v end
  local s, err = floo.connect(o)
  if s then joined[#joined + 1] = s end
  return s, err
end

-- Run fn(srv, s1, s2, ...) in a task: srv a testing server made from opts,
-- s1... the sessions of users (a name, or {name, extra join options}; {}
-- for none, fn joining itself). Every session joined meanwhile and the
-- server are closed afterwards, also when fn fails.
local function in_room(opts, users, fn)
  coru.run(function()
    local srv = assert(testing.server(opts))
    local ok, err = pcall(function()
      local ss = {}
      for i, u in ipairs(users) do
        ss[i] = assert(join(srv, type(u) == "table" and u[1] or u, type(u) == "table" and u[2] or nil))
      end
      fn(srv, unpack(ss, 1, #users))
    end)
    for _, s in ipairs(joined) do s:close() end
    joined = {}
    srv:close()
    if not ok then error(err, 0) end
  end)
end

-- Collect a session's events of the given names into a list.
local function record(s, ...)
  local log = {}
  for _, n in ipairs{...} do
    s:on(n, function(ev) log[#log + 1] = {name = n, ev = ev} end)
  end
  return log
end

-- Inside a patch script: the server applies m as it would, holding back
-- its ack to c, which it returns (for the script to send later).
local function apply_holding_ack(sv, c, m)
  local send, held = c.send, nil
  c.send = function(cl, msg)
    if msg.name == "ack" and msg.res_id == m.req_id then held = msg return true end
    return send(cl, msg)
  end
  testing.DEFAULT.patch(sv, c, m)
  c.send = send
  return held
end

local function count(log, name)
  local n = 0
  for _, e in ipairs(log) do if e.name == name then n = n + 1 end end
  return n
end

describe("coru.floo", function()
  describe("joining", function()
    it("joins, fetches every buffer and knows users and perms", function()
      in_room({bufs = {["a.txt"] = "hello\n", ["dir/b.md"] = "# b\n"}}, {"alice"}, function(srv, s)
        assert.equal("hello\n", s:find("a.txt").text)
        assert.equal("# b\n", s:find("dir/b.md").text)
        assert.equal(coru.md5("hello\n"), s:find("a.txt").md5)
        assert.is_true(s.perms.patch)
        assert.equal("alice", s.users[s.user_id].username)
        assert.equal("ws", s.room_name)
        local hello = srv:sent(nil)[1]
        assert.equal(1, hello.req_id)
        assert.equal(0.11, hello.version)
        assert.same({"utf8", "base64"}, hello.supported_encodings)
      end)
    end)

    it("fetches many buffers on join, several at a time", function()
      local bufs = {}
      for i = 1, 30 do bufs["f" .. i .. ".txt"] = ("text %d\n"):format(i):rep(i) end
      in_room({bufs = bufs}, {"alice"}, function(srv, s)
        for path, text in pairs(bufs) do assert.equal(text, s:find(path).text) end
        assert.equal(30, #srv:sent("get_buf"))
      end)
    end)

    it("fetches lazily when asked, on first use", function()
      in_room({bufs = {["a.txt"] = "lazy\n"}}, {{"alice", {fetch = "lazy"}}}, function(srv, s)
        local b = s:find("a.txt")
        assert.is_nil(b.text)
        assert.equal(0, #srv:sent("get_buf"))
        assert.equal("lazy\n", assert(s:get_buf(b.id)).text)
        assert.equal(1, #srv:sent("get_buf"))
      end)
    end)

    it("returns the server's disconnect reason on bad credentials", function()
      in_room({accounts = {alice = {secret = "right", perms = {"edit_room"}}}}, {}, function(srv)
        local s, err = join(srv, "alice", {secret = "wrong"})
        assert.is_nil(s)
        assert.equal("Invalid username or secret", err)
      end)
    end)

    it("refuses a room_info with fields of the wrong type", function()
      in_room({}, {}, function(srv)
        srv:script("auth", function(m, c)
          c:send({name = "room_info", res_id = m.req_id, user_id = "seven", perms = {}, bufs = {}, users = {}})
        end)
        local s, err = join(srv)
        assert.is_nil(s)
        assert.equal("bad room_info: 'user_id', 'perms', 'bufs' or 'users' has the wrong type", err)
      end)
    end)

    it("names the reason when a TLS server's certificate is not trusted, and joins with the right CA", function()
      local tlsh = require "tls_helper"
      local certs = tlsh.certs()
      in_room({tls = {cert = certs.server.cert, key = certs.server.key}, bufs = {["t.txt"] = "tls\n"}}, {}, function(srv)
        local s, err = join(srv, "alice", {tls = {}})
        assert.is_nil(s)
        assert.matches("certificate verify failed", err)
        local s2, err2 = join(srv, "alice", {tls = {servername = "other.example", ca = certs.ca_file}})
        assert.is_nil(s2)
        assert.matches("certificate verify failed", err2)
        local ok = assert(join(srv, "alice", {tls = {ca = certs.ca_file}}))
        assert.equal("tls\n", ok:find("t.txt").text)
      end)
    end)
  end)

  describe("editing", function()
    it("sends a patch with both md5s, waits for the ack, and the other session sees the patch event", function()
      in_room({bufs = {["a.txt"] = "hello world\n"}}, {"alice", "bob"}, function(srv, a, b)
        local log = record(b, "patch")
        local id = a:find("a.txt").id
        assert.is_true(a:edit(id, "hello brave world\n"))
        local p = srv:sent("patch")[1]
        assert.equal(coru.md5("hello world\n"), p.md5_before)
        assert.equal(coru.md5("hello brave world\n"), p.md5_after)
        assert.equal("hello brave world\n", srv.bufs[id].text)
        helper.wait_until(function() return #log == 1 end, 2000, "bob's patch event")
        local ev = log[1].ev
        assert.equal("hello world\n", ev.old)
        assert.equal("hello brave world\n", ev.text)
        assert.equal("alice", ev.username)
        assert.equal("hello brave world\n", b.bufs[id].text)
      end)
    end)

    it("never sends a carriage return", function()
      in_room({bufs = {["a.txt"] = "x\n"}}, {"alice"}, function(srv, a)
        local id = a:find("a.txt").id
        assert.is_true(a:edit(id, "one\r\ntwo\rthree\n"))
        assert.equal("one\ntwo\nthree\n", srv.bufs[id].text)
        local nid = assert(a:create_buf("c.txt", "a\r\nb\r\n"))
        assert.equal("a\nb\n", srv.bufs[nid].text)
        for _, e in ipairs(srv.log) do
          assert.is_nil(jsonl.encode(e.msg):find("\\r", 1, true))
          assert.is_nil(jsonl.encode(e.msg):find("%0D", 1, true))
        end
      end)
    end)

    it("rebases a local edit when a remote patch arrives while it is in flight", function()
      in_room({bufs = {["a.txt"] = "line one\nline two\nline three\n"}}, {"alice"}, function(srv, a)
        local id = a:find("a.txt").id
        -- hold alice's patch until the server has taken another change
        srv:script("patch", function(m, c, s)
          s:change(id, "line ONE\nline two\nline three\n")
          return "default"
        end)
        assert.is_true(a:edit(id, "line one\nline two\nline three\nline four\n"))
        helper.wait_until(function() return a.bufs[id].text == srv.bufs[id].text end, 2000, "convergence")
        assert.equal("line ONE\nline two\nline three\nline four\n", srv.bufs[id].text)
        assert.equal(srv.bufs[id].md5, a.bufs[id].md5)
      end)
    end)

    it("takes a patch made on top of its own as the ack when it comes before the ack", function()
      in_room({bufs = {["a.txt"] = "base\n"}}, {"alice"}, function(srv, s)
        local log = record(s, "resync", "patch")
        local id = s:find("a.txt").id
        srv:script("patch", function(m, c, sv)
          -- an ack held back (a server that acks once the change is on disk)
          local held = apply_holding_ack(sv, c, m)
          sv:change(id, sv.bufs[id].text .. "theirs\n")
          c:send(held)
        end)
        assert.is_true(s:edit(id, "base\nmine\n"))
        helper.wait_until(function() return count(log, "patch") == 1 end, 2000, "their patch")
        assert.equal("base\nmine\ntheirs\n", srv.bufs[id].text)
        assert.equal(srv.bufs[id].text, s.bufs[id].text)
        assert.equal(srv.bufs[id].md5, s.bufs[id].md5)
        assert.equal(0, count(log, "resync"))
      end)
    end)

    it("does not apply its patch twice when the server's text with it arrives before the ack", function()
      in_room({bufs = {["a.txt"] = "alpha\nbeta\ngamma\n"}}, {"alice"}, function(srv, s)
        local log = record(s, "resync")
        local id = s:find("a.txt").id
        srv:script("patch", function(m, c, sv)
          local held = apply_holding_ack(sv, c, m)
          local b = sv.bufs[id]
          c:send({name = "get_buf", id = id, path = b.path, buf = b.text, md5 = b.md5, encoding = "utf8"})
          c:send(held)
        end)
        assert.is_true(s:edit(id, "alpha\nbeta\nmine\ngamma\n"))
        helper.wait_until(function() return #log == 1 end, 2000, "the resync")
        assert.equal("alpha\nbeta\nmine\ngamma\n", s.bufs[id].text)
        assert.equal("alpha\nbeta\nmine\ngamma\n", s.bufs[id].confirmed)
        assert.equal(srv.bufs[id].md5, s.bufs[id].md5)
        coru.sleep(20)
        assert.equal(1, #srv:sent("patch"))
      end)
    end)

    it("converges when two sessions edit one buffer at once (inserts, deletes, multi-byte and astral text)", function()
      in_room({bufs = {["a.txt"] = "héllo wörld 😀 start\n"}}, {"alice", "bob"}, function(srv, a, b)
        local id = a:find("a.txt").id
        FH.edit_at_once({a, b}, id, 25, 0, {"x", "é", "😀", "日本", "\n", "𝄞"}, 5)
        FH.converged(function() return srv.bufs[id] end, {a, b}, id)
      end)
    end)

    it("refuses text that is not valid UTF-8, sending nothing", function()
      in_room({bufs = {["a.txt"] = "é\n"}}, {"alice"}, function(srv, s)
        local id = s:find("a.txt").id
        local ok, err = s:edit(id, "\195\n")
        assert.is_nil(ok)
        assert.equal("invalid UTF-8 at byte 1", err)
        ok, err = s:edit(id, function(t) return t .. "\237\160\128" end)   -- a lone surrogate
        assert.is_nil(ok)
        assert.equal("invalid UTF-8 at byte 4", err)
        ok, err = s:create_buf("b.txt", "\255")
        assert.is_nil(ok)
        assert.equal("invalid UTF-8 at byte 1", err)
        ok, err = s:set_buf(id, "x\192\128")
        assert.is_nil(ok)
        assert.equal("invalid UTF-8 at byte 2", err)
        assert.equal(0, #srv:sent("patch"))
        assert.equal("é\n", s.bufs[id].text)
        assert.is_true(s:edit(id, "é😀\n"))
        assert.equal("é😀\n", srv.bufs[id].text)
      end)
    end)

    it("loses no acknowledged edit and applies none twice, with two editors and dropped connections", function()
      local words = {}
      for i = 1, 120 do words[i] = ({"alpha", "beta", "😀", "gamma", "délta", "𝄞"})[i % 6 + 1] .. (i % 10 == 0 and "\n" or " ") end
      in_room({bufs = {["t.txt"] = table.concat(words)}}, {"alice", "bob"}, function(srv, a, b)
        local id = a:find("t.txt").id
        local acked = {}
        -- each edit inserts a unique token at a random place outside other
        -- tokens, alice in the first six lines, bob in the others (two
        -- insertions at one spot at once may interleave: a merge, not a loss)
        local function editor(s, tag, seed)
          math.randomseed(seed)
          for i = 1, 150 do
            local tok = ("<%s%d>"):format(tag, i)
            local ok = s:edit(id, function(t)
              local cps, spots, inside, line = {}, {}, false, 0
              for ch in t:gmatch("[%z\1-\127\194-\244][\128-\191]*") do
                cps[#cps + 1] = ch
                if ch == "<" then inside = true elseif ch == ">" then inside = false
                elseif ch == "\n" then line = line + 1 end
                if not inside and (line < 6) == (tag == "a") then spots[#spots + 1] = #cps end
              end
              table.insert(cps, spots[math.random(#spots)] + 1, tok .. (i % 5 == 0 and "𝄞" or ""))
              return table.concat(cps)
            end)
            if ok then acked[#acked + 1] = tok end
            if i % 25 == 0 then coru.sleep(1) end
          end
        end
        local t1, t2 = coru.spawn(editor, a, "a", 1), coru.spawn(editor, b, "b", 2)
        for _ = 1, 2 do
          coru.sleep(30)
          srv:drop_all()
          srv:wait_clients(2, 5000)
        end
        t1:await() t2:await()
        FH.converged(function() return srv.bufs[id] end, {a, b}, id)
        assert.is_true(#acked >= 250)
        for _, tok in ipairs(acked) do
          local _, n = srv.bufs[id].text:gsub(tok:gsub("%p", "%%%0"), "")
          assert.equal(1, n, tok)
        end
      end)
    end)

    it("reports an edit lost when it cannot be carried over onto the server's text", function()
      in_room({bufs = {["a.txt"] = "aaaa bbbb cccc dddd\n"}}, {"alice"}, function(srv, s)
        local id = s:find("a.txt").id
        srv:script("patch", function(m, c, sv)
          -- someone replaced the whole text meanwhile: ours does not apply
          local b = sv.bufs[id]
          b.text, b.md5 = "0123456789\n", coru.md5("0123456789\n")
          return "default"
        end)
        local ok, err = s:edit(id, "aaaa bbbb NEW cccc dddd\n")
        assert.is_nil(ok)
        assert.equal("edit lost: it conflicted with the server's text (see the resync and error events)", err)
        assert.equal("0123456789\n", s.bufs[id].text)
        assert.equal(srv.bufs[id].md5, s.bufs[id].md5)
      end)
    end)

    it("fails an operation the session has no permission for locally, keeping the connection", function()
      in_room({bufs = {["a.txt"] = "x\n"}, accounts = {viewer = {secret = "s", perms = {"view_room"}}}},
              {"viewer"}, function(srv, s)
        local id = s:find("a.txt").id
        local ok, err = s:edit(id, "y\n")
        assert.is_nil(ok)
        assert.equal("permission denied: 'patch' needs a permission this session lacks", err)
        ok, err = s:create_buf("n.txt", "")
        assert.is_nil(ok)
        assert.equal("permission denied: 'create_buf' needs a permission this session lacks", err)
        assert.equal(0, #srv:sent("patch"))
        assert.is_true(s:is_connected())
        assert.equal("x\n", assert(s:get_buf(id)).text)
      end)
    end)

    it("follows perms changes: a removed edit_room makes edits fail locally; request_perms asks", function()
      in_room({bufs = {["a.txt"] = "x\n"}, accounts = {asker = {secret = "s", perms = {"view_room", "request_perms", "edit_room"}}}},
              {"asker"}, function(srv, s)
        local log = record(s, "perms")
        local id = s:find("a.txt").id
        assert.is_true(s:edit(id, "y\n"))
        srv.clients[1]:send({name = "perms", action = "remove", user_id = s.user_id, perms = {"edit_room"}})
        helper.wait_until(function() return #log == 1 end, 2000, "the perms event")
        local ok, err = s:edit(id, "z\n")
        assert.is_nil(ok)
        assert.equal("permission denied: 'patch' needs a permission this session lacks", err)
        assert.is_true(s:request_perms())
        assert.same({"edit_room"}, srv:sent("request_perms")[1].perms)
        srv.clients[1]:send({name = "perms", action = "add", user_id = s.user_id, perms = {"edit_room"}})
        helper.wait_until(function() return #log == 2 end, 2000, "the second perms event")
        assert.is_true(s:edit(id, "z\n"))
        assert.equal("z\n", srv.bufs[id].text)
      end)
    end)

    it("carries binary buffers without corruption and refuses to patch them", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local bin = table.concat(bytes) .. "\r\n\0tail"
      in_room({bufs = {{"img.bin", bin, "base64"}}}, {"alice"}, function(srv, s)
        local b = s:find("img.bin")
        assert.equal("base64", b.encoding)
        assert.equal(bin, b.text)
        local ok, err = s:edit(b.id, "x")
        assert.is_nil(ok)
        assert.equal("binary buffer: edit it with set_buf", err)
        assert.is_true(s:set_buf(b.id, bin .. "\255"))
        assert.equal(bin .. "\255", srv.bufs[b.id].text)
        local nid = assert(s:create_buf("two.bin", "\0\1\2\r", "base64"))
        assert.equal("\0\1\2\r", srv.bufs[nid].text)
      end)
    end)

    it("creates, renames, deletes, highlights, marks saved and chats", function()
      in_room({bufs = {["a.txt"] = "TODO: x\n"}}, {"alice", "bob"}, function(srv, a, b)
        local log = record(b, "create_buf", "rename_buf", "delete_buf", "highlight", "saved", "msg")
        local id = assert(a:create_buf("new.txt", "new\n"))
        assert.is_true(a:rename_buf(id, "dir/renamed.txt"))
        assert.equal("dir/renamed.txt", a.bufs[id].path)
        assert.is_true(a:highlight(id, {{0, 3}}))
        assert.is_true(a:saved(id))
        assert.is_true(a:msg("hi bob"))
        assert.is_true(a:delete_buf(id))
        assert.is_nil(a.bufs[id])
        helper.wait_until(function() return #log == 6 end, 2000, "bob's six events")
        assert.same({"create_buf", "rename_buf", "highlight", "saved", "msg", "delete_buf"},
          {log[1].name, log[2].name, log[3].name, log[4].name, log[5].name, log[6].name})
        assert.equal("hi bob", log[5].ev.data)
        assert.is_nil(b.bufs[id])
        local bad, err = a:create_buf("../up", "")
        assert.is_nil(bad)
        assert.equal("invalid path: ../up", err)
        assert.has_error(function() a:highlight(1, {}) end,
          "coru.floo: highlight: bad argument #2 (non-empty list of {start, end} expected)")
        assert.same({{0, 3}}, srv:sent("highlight")[1].ranges)
      end)
    end)
  end)

  describe("faults", function()
    it("survives malformed JSON, an over-long line and fields of the wrong type", function()
      in_room({bufs = {["a.txt"] = "abc\n"}}, {{"alice", {max_line = 4096}}}, function(srv, s)
        local log = record(s, "error")
        local c = srv.clients[1]
        c:send_raw('{"name":"patch","id":')
        c:send_raw('{"name":"msg","data":"' .. ("x"):rep(5000) .. '"}')
        c:send({name = "patch", id = "one", patch = 5})
        c:send({name = "create_buf", id = 3, path = false})
        helper.wait_until(function() return #log == 4 end, 2000, "four error events")
        assert.matches("^bad input from the server: malformed JSON", log[1].ev.msg)
        assert.equal("bad input from the server: line too long (over 4096 bytes)", log[2].ev.msg)
        assert.equal("bad message from the server: patch: 'id' is not a number", log[3].ev.msg)
        assert.equal("bad message from the server: create_buf: 'id', 'path' or 'md5' has the wrong type", log[4].ev.msg)
        local id = s:find("a.txt").id
        assert.is_true(s:edit(id, "abcd\n"))
        assert.equal("abcd\n", srv.bufs[id].text)
      end)
    end)

    it("re-fetches when a patch does not apply or its md5s disagree", function()
      in_room({bufs = {["a.txt"] = "alpha beta gamma\n"}}, {"alice"}, function(srv, s)
        local log = record(s, "resync", "patch")
        local id = s:find("a.txt").id
        local c = srv.clients[1]
        local sum = coru.md5("alpha beta gamma\n")
        -- a patch whose context is not in the text
        srv.bufs[id].text, srv.bufs[id].md5 = "server truth 1\n", coru.md5("server truth 1\n")
        local d = require("coru.dmp").new(floo.DMP_OPTIONS)
        c:send({name = "patch", id = id, user_id = 9, username = "eve", md5_before = sum,
                md5_after = coru.md5("zzz"), patch = d:patch_to_text(d:patch_make("nothing like it at all\n", "nothing like that\n"))})
        helper.wait_until(function() return count(log, "resync") == 1 end, 2000, "the first resync")
        assert.equal("server truth 1\n", s.bufs[id].text)
        assert.equal("the patch did not apply", log[1].ev.reason)
        -- md5_before that disagrees with our copy
        srv.bufs[id].text, srv.bufs[id].md5 = "server truth 2\n", coru.md5("server truth 2\n")
        c:send({name = "patch", id = id, user_id = 9, username = "eve", md5_before = "0123", md5_after = "4567",
                patch = d:patch_to_text(d:patch_make("server truth 1\n", "server truth 2\n"))})
        helper.wait_until(function() return count(log, "resync") == 2 end, 2000, "the second resync")
        assert.equal("md5_before does not match our copy", log[2].ev.reason)
        -- applies, but md5_after disagrees
        srv.bufs[id].text, srv.bufs[id].md5 = "server truth 3\n", coru.md5("server truth 3\n")
        c:send({name = "patch", id = id, user_id = 9, username = "eve", md5_before = coru.md5("server truth 2\n"),
                md5_after = "ffff", patch = d:patch_to_text(d:patch_make("server truth 2\n", "server truth 9\n"))})
        helper.wait_until(function() return count(log, "resync") == 3 end, 2000, "the third resync")
        assert.equal("md5_after does not match the patched text", log[3].ev.reason)
        assert.equal("server truth 3\n", s.bufs[id].text)
        assert.equal(0, count(log, "patch"))
        assert.equal(3, #srv:sent("get_buf") - 1)
      end)
    end)

    it("ignores a get_buf for a buffer it never had, with an error event", function()
      in_room({bufs = {["a.txt"] = "a\n"}}, {"alice"}, function(srv, s)
        local log = record(s, "error")
        srv.clients[1]:send({name = "get_buf", id = 404, path = "ghost.txt", buf = "boo", md5 = coru.md5("boo"), encoding = "utf8"})
        helper.wait_until(function() return #log == 1 end, 2000, "the error event")
        assert.equal("get_buf for buffer 404, which this session never had: ignored", log[1].ev.msg)
        assert.is_nil(s.bufs[404])
      end)
    end)

    it("does not take another client's broadcast carrying our res_id for our reply", function()
      in_room({}, {"alice"}, function(srv, s)
        srv:script("create_buf", function(m, c)
          -- someone else's create_buf, leaked with our req_id, arrives first
          c:send({name = "create_buf", id = 77, path = "theirs.txt", buf = "t", md5 = coru.md5("t"),
                  encoding = "utf8", user_id = 9, username = "eve", res_id = m.req_id})
          return "default"
        end)
        local id = assert(s:create_buf("mine.txt", "m"))
        assert.equal("mine.txt", s.bufs[id].path)
        helper.wait_until(function() return s.bufs[77] ~= nil end, 2000, "their buffer")
        assert.equal("theirs.txt", s.bufs[77].path)
        assert.equal("t", s.bufs[77].text)
      end)
    end)

    it("takes a get_buf after an ack of the same request as a refusal and keeps the edit", function()
      in_room({bufs = {["a.txt"] = "one two three\n"}}, {"alice"}, function(srv, s)
        local id = s:find("a.txt").id
        local refused = false
        srv:script("patch", function(m, c, sv)
          if refused then return "default" end
          refused = true
          c:send({name = "ack", res_id = m.req_id})
          local b = sv.bufs[id]
          c:send({name = "get_buf", id = id, path = b.path, buf = b.text, md5 = b.md5, encoding = "utf8", res_id = m.req_id})
        end)
        assert.is_true(s:edit(id, "one two three four\n"))
        helper.wait_until(function() return srv.bufs[id].text == "one two three four\n" end, 2000, "the edit sent again")
        assert.equal(2, #srv:sent("patch"))
        helper.wait_until(function() return s.bufs[id].confirmed == srv.bufs[id].text end, 2000, "confirmed")
      end)
    end)

    it("fails a pending request with the reason of a disconnect and ends the session", function()
      in_room({bufs = {["a.txt"] = "a\n"}}, {"alice"}, function(srv, s)
        local log = record(s, "disconnect")
        srv:script("msg", function(_, c) c:disconnect("Kicked by owner") end)
        local ok, err = s:msg("hello?")
        assert.is_nil(ok)
        assert.equal("Kicked by owner", err)
        assert.equal("Kicked by owner", s:wait())
        helper.wait_until(function() return #log == 1 end, 2000, "the disconnect event")
        assert.is_false(log[1].ev.reconnecting)
        local ok2, err2 = s:edit(s:find("a.txt").id, "b\n")
        assert.is_nil(ok2)
        assert.equal("Kicked by owner", err2)
      end)
    end)

    it("reconnects after a heartbeat timeout, and after a close mid-line, keeping unacknowledged edits", function()
      -- A short heartbeat_timeout times the silent server out soon, and on a
      -- loaded machine it may also time out a pong that came late after the
      -- server spoke again: the spec looks for the disconnects it caused
      -- among what happened, it does not count them.
      in_room({bufs = {["a.txt"] = "start\n"}}, {{"alice", {heartbeat = 150, heartbeat_timeout = 150}}}, function(srv, s)
        local log = record(s, "disconnect", "reconnect")
        local id = s:find("a.txt").id
        srv:silence(true)
        local t = coru.spawn(function() return s:edit(id, "start\nwhile silent\n") end)
        helper.wait_until(function() return count(log, "disconnect") >= 1 end, 10000, "the heartbeat timeout")
        assert.equal("heartbeat timeout", log[1].ev.reason)
        assert.is_true(log[1].ev.reconnecting)
        srv:silence(false)
        assert.is_true(t:await())
        assert.equal("start\nwhile silent\n", srv.bufs[id].text)
        helper.wait_until(function() return count(log, "reconnect") >= 1 end, 10000, "the reconnect event")
        -- a server that hangs up in the middle of a line (on whichever
        -- connection the session has now)
        local mark = #log
        for _, c in ipairs({unpack(srv.clients)}) do
          c:send_raw('{"name":"patch","id":' .. id, false)
          c:drop()
        end
        local dropped
        helper.wait_until(function()
          for i = mark + 1, #log do
            local e = log[i]
            if e.name == "disconnect" and e.ev.reason == "closed by peer" then dropped = i end
            if dropped and e.name == "reconnect" then return true end
          end
        end, 10000, "the reconnect after the close mid-line")
        assert.is_true(log[dropped].ev.reconnecting)
        assert.is_true(s:edit(id, "start\nwhile silent\nafter\n"))
        assert.equal("start\nwhile silent\nafter\n", srv.bufs[id].text)
      end)
    end)

    it("keeps an edit-only script working across a server restart, losing nothing confirmed", function()
      in_room({bufs = {["log.txt"] = ""}}, {"alice"}, function(srv, s)
        local id = s:find("log.txt").id
        assert(join(srv, "bob"))
        local t = coru.spawn(function()
          for i = 1, 40 do
            assert(s:edit(id, function(txt) return txt .. i .. "\n" end))
            if i % 10 == 0 then coru.sleep(5) end
          end
        end)
        -- the restart comes once the first edits are confirmed, the others in flight
        helper.wait_until(function() return srv.bufs[id].text ~= "" end, 5000, "the first edit")
        srv:drop_all()
        coru.sleep(30)
        -- meanwhile someone else changed the buffer on the server
        srv:change(id, "bob was here\n" .. srv.bufs[id].text)
        t:await()
        helper.wait_until(function() return s.bufs[id].text == srv.bufs[id].text end, 5000, "convergence")
        local want = {"bob was here"}
        for i = 1, 40 do want[#want + 1] = tostring(i) end
        assert.equal(table.concat(want, "\n") .. "\n", srv.bufs[id].text)
      end)
    end)

    it("asks again for a get_buf the server never answers", function()
      in_room({bufs = {["a.txt"] = "a\n"}}, {}, function(srv)
        local ignored = 0
        srv:script("get_buf", function()
          if ignored < 1 then ignored = ignored + 1 return end
          return "default"
        end)
        -- the answered request can come late too on a loaded machine, and
        -- be asked a third time: at least one more ask is what counts
        local s = assert(join(srv, "alice", {request_timeout = helper.ms(200)}))
        assert.equal("a\n", s:find("a.txt").text)
        assert.is_true(#srv:sent("get_buf") >= 2)
      end)
    end)

    it("stops reconnecting at once when closed while the server is away", function()
      coru.run(function()
        coru.sleep(20)
        local before = helper.live_handles()
        local srv = assert(testing.server{bufs = {["a.txt"] = "a\n"}})
        local s = assert(join(srv))
        local log = record(s, "disconnect")
        srv:close()
        helper.wait_until(function() return #log == 1 end, 2000, "the disconnect event")
        local t = coru.spawn(function() return s:edit(s:find("a.txt").id, "b\n") end)
        coru.sleep(10)
        s:close()
        local ok, err = t:await()
        assert.is_nil(ok)
        assert.equal("closed", err)
        assert.equal("closed", s:wait())
        assert.equal(before, helper.handles_back_to(before))
      end)
    end)

    it("takes a patch the server applied before the connection died as confirmed, sending it once", function()
      in_room({bufs = {["a.txt"] = "one\n"}}, {"alice"}, function(srv, s)
        local log = record(s, "reconnect", "resync")
        local id = s:find("a.txt").id
        local first = true
        srv:script("patch", function(m, c, sv)
          if not first then return "default" end
          first = false
          -- apply it, then die before the ack leaves
          c.send = function() return true end
          testing.DEFAULT.patch(sv, c, m)
          c:drop()
        end)
        assert.is_true(s:edit(id, "one\ntwo\n"))
        assert.equal("one\ntwo\n", srv.bufs[id].text)
        assert.equal(1, #srv:sent("patch"))
        assert.equal(1, count(log, "reconnect"))
        assert.equal(0, count(log, "resync"))
        assert.equal(srv.bufs[id].md5, s.bufs[id].md5)
      end)
    end)

    it("finds its patch in the server's text after a lost ack even when the text changed since", function()
      in_room({bufs = {["a.txt"] = "first line\nsecond line\nthird line\n"}}, {"alice"}, function(srv, s)
        local id = s:find("a.txt").id
        local first = true
        srv:script("patch", function(m, c, sv)
          if not first then return "default" end
          first = false
          c.send = function() return true end     -- the ack is lost
          testing.DEFAULT.patch(sv, c, m)
          sv:change(id, sv.bufs[id].text .. "someone else's line\n")
          c:drop()
        end)
        assert.is_true(s:edit(id, "first line\nsecond line, edited\nthird line\n"))
        local want = "first line\nsecond line, edited\nthird line\nsomeone else's line\n"
        helper.wait_until(function() return s.bufs[id].confirmed == want end, 5000, "the server's text")
        assert.equal(want, srv.bufs[id].text)
        assert.equal(want, s.bufs[id].text)
        assert.equal(1, #srv:sent("patch"))
      end)
    end)

    it("keeps replies apart when the server leaks res_ids on every broadcast", function()
      in_room({leak_res_id = true}, {"alice", "bob"}, function(srv, a, b)
        local function creator(s, prefix)
          local ids = {}
          for i = 1, 15 do ids[prefix .. i] = assert(s:create_buf(prefix .. i .. ".txt", prefix)) end
          return ids
        end
        local ta, tb = coru.spawn(creator, a, "a"), coru.spawn(creator, b, "b")
        for name, id in pairs(ta:await()) do assert.equal(name .. ".txt", srv.bufs[id].path) end
        for name, id in pairs(tb:await()) do assert.equal(name .. ".txt", srv.bufs[id].path) end
        helper.wait_until(function()
          local n = 0
          for _ in pairs(a.bufs) do n = n + 1 end
          for _ in pairs(b.bufs) do n = n + 1 end
          return n == 60
        end, 2000, "both sessions with all 30 buffers")
      end)
    end)

    it("answers the server's ping with a pong carrying its req_id", function()
      in_room({}, {"alice"}, function(srv, s)
        srv.clients[1]:send({name = "ping", req_id = 12})
        local pong = assert(srv:expect("pong", 2000))
        assert.equal(12, pong.res_id)
      end)
    end)
  end)

  it("leaves no handle behind once closed", function()
    coru.run(function()
      coru.sleep(20)
      local before = helper.live_handles()
      local srv = assert(testing.server{bufs = {["a.txt"] = "a\n"}})
      local s = assert(join(srv))
      assert.is_true(s:edit(s:find("a.txt").id, "b\n"))
      s:close()
      srv:close()
      assert.equal(before, helper.handles_back_to(before))
    end)
  end)
end)

describe("coru.floo examples", function()
  -- Run fn(srv, p) in a room (in_room) with p the host running an example
  -- script with the arguments args(srv); ended afterwards by helper.reap
  -- (by the leak gate when fn fails).
  local function with_example(opts, args, fn)
    in_room(opts, {}, function(srv)
      local p = helper.spawn(helper.bin, args(srv), {stdio = {"ignore", "pipe", "pipe"}})
      fn(srv, p)
      helper.reap(p)
    end)
  end

  it("floo_bot highlights TODO lines and announces a new one in the chat", function()
    with_example({bufs = {["notes.md"] = "intro\nTODO: one ✓\n"}},
      function(srv) return {"examples/floo_bot.lua", srv.host, tostring(srv.port), "owner", "ws", "bot", "s"} end,
      function(srv)
        local first = assert(srv:expect("highlight", 10000))
        local id = srv:find("notes.md").id
        assert.equal(id, first.id)
        assert.same({{6, 17}}, first.ranges)
        srv:change(id, "intro\nTODO: one ✓\nmore\nTODO: two 😀\n")
        local m = assert(srv:expect("msg", 5000))
        assert.equal("server-bot added a TODO to notes.md", m.data)
        local h = assert(srv:expect("highlight", 5000))
        assert.same({{6, 17}, {23, 35}}, h.ranges)
      end)
  end)

  it("floo_cat prints a buffer and follows its changes", function()
    with_example({bufs = {["a.txt"] = "first\n", ["b.txt"] = "other\n"}},
      function(srv) return {"examples/floo_cat.lua", srv.host, tostring(srv.port), "owner", "ws", "a.txt"} end,
      function(srv, p)
        assert.equal("first", p.stdout:read_line())
        srv:wait_clients(1)
        srv:change(srv:find("b.txt").id, "ignored\n")
        srv:change(srv:find("a.txt").id, "first\nsecond\n")
        assert.equal("", p.stdout:read_line())
        assert.equal("--- server-bot edited a.txt", p.stdout:read_line())
        assert.equal("first", p.stdout:read_line())
        assert.equal("second", p.stdout:read_line())
      end)
  end)
end)
