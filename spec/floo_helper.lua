-- Helpers for the coru.floo.server specs: a server in this process or in a
-- child process, and a raw protocol client that sends exactly the bytes a
-- test asks for and reads one JSON line at a time.
local coru = require "coru"
local jsonl = require "coru.jsonl"
local server = require "coru.floo.server"
local helper = require "helper"
local assert = require "luassert"   -- busted's, in a module of the specs too
local H = {}

-- The raw clients H.connect made and the servers H.restart started since
-- the last with_server ended.
local clients, servers = {}, {}

H.USERS = {alice = {secret = "a-secret"}, bob = {secret = "b-secret"},
           carol = {secret = "c-secret", perms = {"view_room"}}}

function H.tmpdir()
  local p = io.popen("mktemp -d /tmp/coru-floo-XXXXXX")
  local d = p:read("*l")
  p:close()
  return d
end

function H.rmdir(d) if d and d:match("^/tmp/coru%-floo%-") then os.execute("rm -rf " .. d) end end

-- start a server in this process (task only); opts override the config
function H.start(opts)
  local cfg = {data_dir = H.tmpdir(), port = 0, log_level = "none", users = H.USERS}
  for k, v in pairs(opts or {}) do cfg[k] = v end
  local srv = assert(server.start(cfg))
  return srv, cfg
end

function H.stop(srv, cfg)
  srv:close()
  if cfg and not cfg.keep then H.rmdir(cfg.data_dir) end
end

-- A directory with the config floo.json of a server child (data in
-- data/, alice its one user, the log on stderr): returns dir, conf.
function H.server_dir()
  local dir = H.tmpdir()
  local conf = dir .. "/floo.json"
  local f = assert(io.open(conf, "w"))
  f:write('{"data_dir":"data","port":0,"log_level":"info","users":{"alice":{"secret":"a-secret"}}}')
  f:close()
  return dir, conf
end

-- Task only: bin/coru-floo-server -c conf in a child process of the spec
-- (helper.adopt: killed and reaped when the spec ends); process, port.
function H.server_process(conf)
  return helper.adopt(require("coru.floo.testing").launch_server(helper.bin, "bin/coru-floo-server", conf))
end

-- Task only: close srv, call while_down() if given, and start a server
-- with its config and data on its port again (retrying while the port is
-- still taken); H.with_server stops the new one too.
function H.restart(srv, cfg, while_down)
  local port = srv.port
  srv:close()
  if while_down then while_down() end
  cfg.port = port
  for _ = 1, 100 do
    local again = server.start(cfg)
    if again then servers[#servers + 1] = again return again end
    coru.sleep(20)
  end
  error("the server did not restart on its port " .. port, 2)
end

-- Run fn(srv, cfg) in a task with a server of H.start(opts); the raw
-- clients connected meanwhile are closed and the server stopped (its data
-- removed) afterwards, also when fn fails.
function H.with_server(opts, fn)
  helper.run(function()
    local srv, cfg = H.start(opts)
    local ok, err = pcall(fn, srv, cfg)
    for _, c in ipairs(clients) do c:close() end
    for _, again in ipairs(servers) do again:close() end
    clients, servers = {}, {}
    H.stop(srv, cfg)
    if not ok then error(err, 0) end
  end)
end

local Client = {}
Client.__index = Client

function H.connect(port, opts)
  local s = assert(coru.tcp.connect("127.0.0.1", port))
  s:set_max_line(64 * 1024 * 1024)
  local c = setmetatable({s = s, n = 0, port = port, inbox = {}, opts = opts or {}}, Client)
  clients[#clients + 1] = c
  return c
end

-- write a raw line (no newline added) or a table (req_id added unless false)
function Client:raw(line) return self.s:write(line) end

function Client:send(msg)
  if msg.req_id == nil then self.n = self.n + 1; msg.req_id = self.n
  elseif msg.req_id == false then msg.req_id = nil end
  self.s:write(jsonl.encode(msg) .. "\n")
  return msg.req_id
end

-- next message (nil, "eof"|"timeout"|... when there is none). Here and in
-- expect, ms is a hang detector: helper.bound makes it at least 30 s (a
-- create_buf's reply, waiting for its fdatasync, took more than 5 s with
-- 3 suites on one core).
function Client:recv(ms)
  if #self.inbox > 0 then return table.remove(self.inbox, 1) end
  self.s:settimeouts(nil, nil, helper.bound(ms))
  local line, err = self.s:read_line()
  if not line then return nil, err end
  return assert(jsonl.decode(line))
end

-- the next message satisfying pred (others are kept for later recv)
function Client:expect(pred, ms, what)
  if type(pred) == "string" then
    local name = pred
    pred = function(m) return m.name == name end
    what = what or name
  end
  for i, m in ipairs(self.inbox) do
    if pred(m) then table.remove(self.inbox, i) return m end
  end
  local deadline = coru.now() + helper.bound(ms)
  while true do
    local left = deadline - coru.now()
    if left <= 0 then error("timed out waiting for " .. (what or "a message"), 2) end
    self.s:settimeouts(nil, nil, left)
    local line, err = self.s:read_line()
    if not line then error(("connection ended (%s) while waiting for %s"):format(tostring(err), what or "a message"), 2) end
    local m = assert(jsonl.decode(line))
    if pred(m) then return m end
    self.inbox[#self.inbox + 1] = m
  end
end

-- the reply to req_id named name (or any name if nil)
function Client:reply(req_id, name, ms)
  return self:expect(function(m) return m.res_id == req_id and (name == nil or m.name == name) end,
                     ms, ("%s with res_id %s"):format(name or "a reply", tostring(req_id)))
end

-- read until the server closes; returns the messages seen
function Client:until_closed(ms)
  local seen = {}
  for _, m in ipairs(self.inbox) do seen[#seen + 1] = m end
  self.inbox = {}
  while true do
    local m, err = self:recv(ms or 5000)
    if not m then
      if err == "timeout" then error("the server did not close the connection", 2) end
      return seen, err
    end
    seen[#seen + 1] = m
  end
end

function Client:close() if not self.s:is_closing() then self.s:close() end end

-- auth; returns room_info (or raises with what came instead)
function Client:join(user, secret, ws, extra)
  local m = {username = user, secret = secret, room_owner = "alice", room = ws or "ws",
             version = 0.11, client = "spec", platform = "linux"}
  for k, v in pairs(extra or {}) do m[k] = v end
  local id = self:send(m)
  local r = self:expect(function(x) return x.name == "room_info" or x.name == "disconnect" end, 5000, "room_info")
  if r.name ~= "room_info" then error("join refused: " .. tostring(r.reason), 2) end
  assert(r.res_id == id)
  self.room_info = r
  self.user_id = r.user_id
  return r
end

function H.join(port, user, ws)
  local c = H.connect(port)
  c:join(user, H.USERS[user].secret, ws)
  return c
end

-- the id of the buffer at path, created if needed (edit perms)
function Client:create(path, text)
  local id = self:send({name = "create_buf", path = path, buf = text, encoding = "utf8"})
  local m = self:reply(id, "create_buf")
  return m.id, m
end

-- ------------------------------------------------------------ editors

-- Task only: wait until every floo session's copy of buffer id has the
-- text of truth() (the server's {text, md5}, read again at each look), then
-- check their md5s and the server's against that text.
function H.converged(truth, sessions, id)
  helper.wait_until(function()
    for _, s in ipairs(sessions) do if s.bufs[id].text ~= truth().text then return false end end
    return true
  end, 5000, "every session at the server's text")
  for _, s in ipairs(sessions) do assert.equal(truth().md5, s.bufs[id].md5) end
  assert.equal(coru.md5(truth().text), truth().md5)
end

-- Task only: the floo sessions edit buffer id at once, n random edits
-- each (session i seeding math.random with seed0 + i), each edit inserting
-- one of pieces at a random code point boundary or (when the text holds
-- more than keep code points, 40% of the time) deleting one: never a split
-- character. Returns once every edit was acknowledged.
function H.edit_at_once(sessions, id, n, seed0, pieces, keep)
  local function edit(t)
    local cps = {}
    for ch in t:gmatch("[%z\1-\127\194-\244][\128-\191]*") do cps[#cps + 1] = ch end
    local pos = math.random(0, #cps)
    if #cps > keep and math.random() < 0.4 then
      table.remove(cps, math.max(1, pos))
    else
      table.insert(cps, pos + 1, pieces[math.random(#pieces)])
    end
    return table.concat(cps)
  end
  local tasks = {}
  for i, s in ipairs(sessions) do
    tasks[i] = coru.spawn(function()
      math.randomseed(seed0 + i)
      for _ = 1, n do assert(s:edit(id, edit)) end
    end)
  end
  for _, t in ipairs(tasks) do t:await() end
end

-- An editing client following the protocol's client rules (§7): per
-- buffer the text it believes the server has; a local edit is sent as a
-- patch against it with both md5s; an incoming patch is applied and
-- checked; any mismatch or failed hunk fetches the buffer, and no edit is
-- sent for a buffer while its fetch is in flight. After a disconnect it
-- rejoins and fetches every buffer whose md5 differs.
local D = coru.dmp.new{match_threshold = 0.375, match_distance = 100,
                       patch_delete_threshold = 0.375, patch_margin = 4, diff_edit_cost = 4}
local md5 = coru.md5
local Editor = {}
Editor.__index = Editor

function H.editor(port, user, ws)
  return setmetatable({port = port, user = user, ws = ws or "ws", bufs = {}, stats = {sent = 0, applied = 0, fetched = 0, rejoined = 0},
                       last_rx = coru.now()}, Editor)
end

function Editor:fetch(b)
  if b.fetching then return end
  b.fetching = true
  local conn = self.conn
  coru.spawn(function()
    while conn and not conn:is_closed() do
      local r = conn:request({name = "get_buf", id = b.id},
        {timeout = 2000, expect = function(x) return x.name == "error" or (x.name == "get_buf" and x.id == b.id) end})
      if r then
        if r.name == "get_buf" then b.text, b.md5 = r.buf, r.md5 end
        self.stats.fetched = self.stats.fetched + 1
        break
      end
    end
    b.fetching = false
  end)
end

function Editor:connect()
  local conn, err = jsonl.connect{host = "127.0.0.1", port = self.port, max_line = 64 * 1024 * 1024}
  if not conn then return nil, err end
  conn:on("patch", function(m)
    self.last_rx = coru.now()
    local b = self.bufs[m.id]
    if not b or b.fetching then return end
    local text, res = D:patch_apply(assert(D:patch_from_text(m.patch)), b.text)
    for _, ok in ipairs(res) do if not ok then return self:fetch(b) end end
    b.text, b.md5 = text, md5(text)
    self.stats.applied = self.stats.applied + 1
    if b.md5 ~= m.md5_after then self:fetch(b) end
  end)
  conn:on("get_buf", function(m)
    self.last_rx = coru.now()
    local b = self.bufs[m.id]
    if b then b.text, b.md5 = m.buf, m.md5 end
  end)
  conn:on("create_buf", function(m) if not self.bufs[m.id] then self.bufs[m.id] = {id = m.id, text = m.buf, md5 = m.md5} end end)
  local info, jerr = conn:request({username = self.user, secret = H.USERS[self.user].secret, room_owner = "alice",
                                   room = self.ws, version = 0.11, client = "spec-editor"}, {expect = "room_info", timeout = 5000})
  if not info then conn:close() return nil, jerr end
  self.conn = conn
  for _, bi in pairs(info.bufs) do
    local b = self.bufs[bi.id]
    if not b then b = {id = bi.id} self.bufs[bi.id] = b end
    b.fetching = false
    if b.md5 ~= bi.md5 then self:fetch(b) end
  end
  return true
end

-- keep connected (call in a task of its own)
function Editor:run()
  while not self.stopped do
    if not self.conn or self.conn:is_closed() then
      local again = self.conn ~= nil
      if self:connect() then
        if again then self.stats.rejoined = self.stats.rejoined + 1 end
      else
        coru.sleep(50)
      end
    else
      coru.sleep(20)
    end
  end
  if self.conn then self.conn:close() end
end

local PIECES = {"a", "b", " ", "\n", "é", "ü", "世", "界", "🌍", "𝄞", "😀", "xyz"}

-- n random edits (inserts and deletes at character boundaries)
function Editor:edit(n, rnd, pause)
  local done = 0
  while done < n do
    local ids = {}
    for id, b in pairs(self.bufs) do if not b.fetching and b.text then ids[#ids + 1] = id end end
    table.sort(ids)
    local conn = self.conn
    if #ids > 0 and conn and not conn:is_closed() then
      local b = self.bufs[ids[rnd(#ids)]]
      local chars = {}
      for ch in b.text:gmatch("[%z\1-\127\194-\244][\128-\191]*") do chars[#chars + 1] = ch end
      local at = rnd(#chars + 1)
      if #chars > 0 and rnd(3) == 1 then
        local k = math.min(#chars - at + 1, rnd(3))
        for _ = 1, math.max(k, 0) do table.remove(chars, at) end
      else
        table.insert(chars, at, PIECES[rnd(#PIECES)])
      end
      local new = table.concat(chars)
      if new ~= b.text then
        local p = D:patch_to_text(D:patch_make(b.text, new))
        conn:send({name = "patch", id = b.id, patch = p, md5_before = b.md5, md5_after = md5(new)})
        b.text, b.md5 = new, md5(new)
        self.stats.sent = self.stats.sent + 1
      end
      done = done + 1
    end
    coru.sleep(pause or rnd(5))
  end
end

-- after the edits: wait until nothing arrived for quiet_ms, then compare
-- once with the server's copy (a rejected patch may come back with only
-- its ack, §7); returns how many buffers needed that correction
function Editor:settle(quiet_ms)
  while coru.now() - self.last_rx < quiet_ms do coru.sleep(20) end
  local corrected = 0
  for _, b in pairs(self.bufs) do
    local before = b.md5
    local r = self.conn:request({name = "get_buf", id = b.id},
      {timeout = 5000, expect = function(x) return x.name == "error" or (x.name == "get_buf" and x.id == b.id) end})
    assert(r and r.name == "get_buf", "final get_buf")
    if r.md5 ~= before then corrected = corrected + 1 end
    b.text, b.md5 = r.buf, r.md5
  end
  return corrected
end

H.server = server
return H
