-- coru.floo.testing: a scripted fake Floobits server for specs of clients
-- and bots. It listens on loopback (TCP or TLS), speaks the wire format
-- with the real server's rules (FLOOBITS-PROTOCOL.md §2-§8: req_id order,
-- perms, patch checks, get_buf resync, broadcasts), records everything the
-- clients sent, and lets a spec replace any message's handling or inject
-- faults (raw lines, silence, dropped connections). docs/floo.md, "Testing
-- your bot", is the guide.
local coru = require "coru"
local jsonl = require "coru.jsonl"
local floo = require "coru.floo"
local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring

local M = {}

local D_
local function D()
  if not D_ then D_ = require("coru.dmp").new(floo.DMP_OPTIONS) end
  return D_
end
local function md5(s) return coru.md5(s) end

local Server = {}
Server.__index = Server
local Client = {}
Client.__index = Client

local PERMS = {
  edit = {"view_room", "request_perms", "edit_room"},
  view = {"view_room"},
  admin = {"view_room", "request_perms", "edit_room", "admin_room"},
}

local function expand(site)
  local out, seen = jsonl.array(), {}
  for _, sp in ipairs(site) do
    for _, n in ipairs(floo.SITE_PERMS[sp] or {}) do
      if not seen[n] then seen[n] = true out[#out + 1] = n end
    end
  end
  return out, seen
end

-- ------------------------------------------------------------ clients

-- client:send(msg): any message, req_id and res_id as given.
function Client:send(msg)
  if self.conn:is_closed() then return nil, "closed" end
  self.conn.stream:write(jsonl.encode(msg) .. "\n", function() end)
  return true
end

-- A line as is (no JSON encoding, newline added unless nl == false).
function Client:send_raw(line, nl)
  if self.conn:is_closed() then return nil, "closed" end
  self.conn.stream:write(line .. (nl == false and "" or "\n"), function() end)
  return true
end

-- Close without a disconnect message (as a server restart does).
function Client:drop()
  self.conn:close("dropped by the test server")
end

function Client:disconnect(reason)
  self:send({name = "disconnect", reason = reason})
  coru.spawn(function() coru.sleep(20) self.conn:close(reason) end)
end

function Client:user_json()
  return {user_id = self.user_id, username = self.username, client = self.client, platform = self.platform,
          perms = self.perm_list, is_anon = self.username:sub(1, 5) == "anon_", version = 0.11}
end

-- ------------------------------------------------------------ server state

local function buf_json(b, with_text)
  local m = {id = b.id, path = b.path, md5 = b.md5, encoding = b.encoding}
  if with_text then m.buf = b.encoding == "base64" and floo.base64_encode(b.text) or b.text end
  return m
end

function Server:add_buf(path, text, encoding)
  self.next_buf = self.next_buf + 1
  local b = {id = self.next_buf, path = path, text = text, md5 = md5(text), encoding = encoding or "utf8"}
  self.bufs[b.id] = b
  return b
end

function Server:find(path)
  for _, b in pairs(self.bufs) do if b.path == path then return b end end
end

-- Messages to every joined client except `except` (a client or nil).
function Server:broadcast(msg, except)
  for _, c in ipairs(self.clients) do
    if c ~= except and c.joined then c:send(msg) end
  end
end

-- A change made on the server side by a fake user: text replaced and a
-- patch broadcast to every client. Returns the patch message.
function Server:change(id, new_text, user)
  local b = assert(self.bufs[id], "no such buffer")
  local d = D()
  local ps = d:patch_make(b.text, new_text)
  local msg = {name = "patch", id = id, path = b.path, patch = d:patch_to_text(ps),
               md5_before = b.md5, md5_after = md5(new_text),
               user_id = user and user.user_id or 999, username = user and user.username or "server-bot"}
  b.text, b.md5 = new_text, msg.md5_after
  self:broadcast(msg, user)
  return msg
end

local function err_reply(c, req, text)
  local m = {name = "error", msg = text, flash = false}
  if req.req_id then m.res_id = req.req_id end
  c:send(m)
end

local function ack(c, req)
  if req.req_id then c:send({name = "ack", res_id = req.req_id}) end
end

-- ------------------------------------------------------------ default behaviour

local DEFAULT = {}

function DEFAULT.auth(srv, c, m)
  if type(m.secret) ~= "string" or m.version == nil or
     not ((type(m.room_owner) == "string" and type(m.room) == "string") or type(m.path) == "string") then
    return c:disconnect("Bad auth JSON")
  end
  if tonumber(m.version) ~= 0.11 and tonumber(m.version) ~= 1.0 then return c:disconnect("Unsupported client version") end
  local owner, room = m.room_owner, m.room
  if m.path then owner, room = m.path:match("^([^/]+)/(.+)$") end
  if owner ~= srv.owner or room ~= srv.workspace then
    return c:disconnect("OpenError: workspace " .. tostring(owner) .. "/" .. tostring(room) .. " not found")
  end
  local site
  if m.username == "" then
    site = srv.anon_perms
    c.username = "anon_" .. c.conn_id
  else
    local name = m.username or m.api_key
    if type(name) ~= "string" then return c:disconnect("Bad auth JSON") end
    local acct = srv.accounts and srv.accounts[name]
    if srv.accounts and (not acct or acct.secret ~= m.secret) then
      return c:disconnect("Invalid username or secret")
    end
    site = acct and acct.perms or PERMS.edit
    c.username = name
  end
  c.perm_list, c.perms = expand(site)
  c.client, c.platform = m.client, m.platform
  c.user_id = c.conn_id
  c.joined = true
  local bufs, tree, users = jsonl.object(), jsonl.object(), jsonl.object()
  for id, b in pairs(srv.bufs) do
    bufs[tostring(id)] = buf_json(b)
    tree[b.path] = id
  end
  for _, o in ipairs(srv.clients) do
    if o.joined then users[tostring(o.user_id)] = o:user_json() end
  end
  c:send({name = "room_info", res_id = m.req_id, user_id = c.user_id, room_name = srv.workspace,
          owner = srv.owner, perms = c.perm_list, anon_perms = expand(srv.anon_perms), bufs = bufs,
          tree = tree, users = users, terms = jsonl.object(), temp_data = jsonl.object(),
          max_size = 100000000, secret = false, active = true, version = 6})
  local j = c:user_json()
  j.name = "join"
  srv:broadcast(j, c)
  for _, h in ipairs(srv.chat) do c:send(h) end
end

function DEFAULT.get_buf(srv, c, m)
  local b = srv.bufs[m.id]
  if not b then return err_reply(c, m, ("Buffer %s doesn't exist"):format(tostring(m.id))) end
  local r = buf_json(b, true)
  r.name, r.res_id = "get_buf", m.req_id
  c:send(r)
end

-- A reply to c that every other joined client gets as a broadcast (with
-- c's res_id too when the server leaks it, the real server's quirk 1).
local function to_all(srv, c, m, r)
  for _, o in ipairs(srv.clients) do
    if o.joined then
      local copy = {}
      for k, v in pairs(r) do copy[k] = v end
      if o == c or srv.leak_res_id then copy.res_id = m.req_id end
      o:send(copy)
    end
  end
end

function DEFAULT.create_buf(srv, c, m)
  local path = m.path
  if not floo.valid_path(path) then return err_reply(c, m, "Invalid path " .. tostring(path)) end
  if srv:find(path) then return err_reply(c, m, "Buffer with path " .. path .. " already exists") end
  if type(m.buf) ~= "string" then return err_reply(c, m, "buf must be a string") end
  local text = m.buf
  if m.encoding == "base64" then
    text = floo.base64_decode(m.buf)
    if not text then return err_reply(c, m, "bad base64") end
  else
    text = text:gsub("\r", "")
  end
  local b = srv:add_buf(path, text, m.encoding == "base64" and "base64" or "utf8")
  local r = buf_json(b, true)
  r.name, r.user_id, r.username = "create_buf", c.user_id, c.username
  to_all(srv, c, m, r)
end

-- BaseBuffer.patch (colab:lib/buffer.js), FLOOBITS-PROTOCOL §7.
function DEFAULT.patch(srv, c, m)
  local b = srv.bufs[m.id]
  if not b then return err_reply(c, m, ("Buffer %s doesn't exist"):format(tostring(m.id))) end
  if type(m.patch) ~= "string" or m.patch == "" then return ack(c, m) end
  if m.md5_after == b.md5 then return ack(c, m) end
  local d = D()
  local ps = d:patch_from_text(m.patch)
  local function resend()
    local r = buf_json(b, true)
    r.name, r.res_id = "get_buf", m.req_id
    c:send(r)
  end
  if not ps or b.encoding == "base64" then return resend() end
  local new, res = d:patch_apply(ps, b.text)
  for i = 1, #res do if not res[i] then return resend() end end
  if new:find("\r", 1, true) then
    new = new:gsub("\r", "")
    c:send({name = "error", msg = "Your editor sent a carriage return. Carriage returns are not allowed.", flash = false})
  end
  local before_ok = m.md5_before == b.md5
  local after = md5(new)
  if after ~= m.md5_after and before_ok then return resend() end
  local out = {name = "patch", id = b.id, path = b.path, patch = m.patch, md5_before = b.md5, md5_after = after,
               user_id = c.user_id, username = c.username}
  b.text, b.md5 = new, after
  srv.patches_applied = srv.patches_applied + 1
  ack(c, m)
  srv:broadcast(out, c)
end

function DEFAULT.set_buf(srv, c, m)
  local b = srv.bufs[m.id]
  if not b then return DEFAULT.create_buf(srv, c, m) end
  if type(m.buf) ~= "string" then return err_reply(c, m, "buf must be a string") end
  local text = m.buf
  if b.encoding == "base64" then text = floo.base64_decode(m.buf) or "" else text = text:gsub("\r", "") end
  if md5(text) == b.md5 then return ack(c, m) end
  if b.encoding == "base64" then
    b.text, b.md5 = text, md5(text)
    ack(c, m)
    local r = buf_json(b, true)
    r.name = "get_buf"
    return srv:broadcast(r, c)
  end
  local d = D()
  local out = {name = "patch", id = b.id, path = b.path, patch = d:patch_to_text(d:patch_make(b.text, text)),
               md5_before = b.md5, md5_after = md5(text), user_id = c.user_id, username = c.username}
  b.text, b.md5 = text, out.md5_after
  ack(c, m)
  srv:broadcast(out, c)
end

function DEFAULT.delete_buf(srv, c, m)
  local b = srv.bufs[m.id]
  if not b then return err_reply(c, m, ("Buffer %s doesn't exist"):format(tostring(m.id))) end
  srv.bufs[m.id] = nil
  to_all(srv, c, m, {name = "delete_buf", id = b.id, path = b.path, unlink = m.unlink and true or false,
                     user_id = c.user_id, username = c.username})
end

function DEFAULT.rename_buf(srv, c, m)
  local b = srv.bufs[m.id]
  if not b then return err_reply(c, m, ("Buffer %s doesn't exist"):format(tostring(m.id))) end
  if not floo.valid_path(m.path) or srv:find(m.path) then return err_reply(c, m, "Invalid path " .. tostring(m.path)) end
  local old = b.path
  b.path = m.path
  to_all(srv, c, m, {name = "rename_buf", id = b.id, old_path = old, path = b.path,
                     user_id = c.user_id, username = c.username})
end

function DEFAULT.highlight(srv, c, m)
  if not srv.bufs[m.id] then return err_reply(c, m, ("Buffer %s doesn't exist"):format(tostring(m.id))) end
  if type(m.ranges) ~= "table" or #m.ranges == 0 then return err_reply(c, m, "Invalid ranges") end
  ack(c, m)
  srv:broadcast({name = "highlight", id = m.id, ranges = m.ranges, user_id = c.user_id, username = c.username,
                 ping = m.ping or false, summon = m.summon or false, following = m.following or false}, c)
end

function DEFAULT.saved(srv, c, m)
  ack(c, m)
  srv:broadcast({name = "saved", id = m.id, user_id = c.user_id}, c)
end

function DEFAULT.msg(srv, c, m)
  ack(c, m)
  local out = {name = "msg", data = m.data, user_id = c.user_id, username = c.username, time = os.time()}
  srv.chat[#srv.chat + 1] = out
  srv:broadcast(out, c)
end

function DEFAULT.ping(srv, c, m)
  c:send({name = "pong", res_id = m.req_id})
end

function DEFAULT.pong() end
function DEFAULT.ack() end

function DEFAULT.request_perms(srv, c, m)
  ack(c, m)
  srv:broadcast({name = "request_perms", user_id = c.user_id, perms = m.perms}, c)
end

M.DEFAULT = DEFAULT

-- ------------------------------------------------------------ dispatch

local function on_message(srv, c, m)
  srv.log[#srv.log + 1] = {client = c, msg = m}
  c.received[#c.received + 1] = m
  -- req_id strictly increasing, or the socket is closed (no disconnect)
  if m.req_id ~= nil then
    if type(m.req_id) ~= "number" or m.req_id <= c.last_req then
      srv.faults[#srv.faults + 1] = "bad req_id " .. tostring(m.req_id) .. " after " .. c.last_req
      return c:drop()
    end
    c.last_req = m.req_id
  end
  local waiters = srv.waiters
  for i = #waiters, 1, -1 do
    local w = waiters[i]
    if w.pred(m, c) then table.remove(waiters, i) w.resume(m, c) end
  end
  if srv.silent then return end
  local name = c.joined and m.name or "auth"
  if c.joined and name ~= "ack" and name ~= "pong" and not (c.perms[name] or name == "ping") then
    return c:disconnect("You are not allowed to " .. tostring(name))
  end
  local script = srv.scripts[name]
  if script then
    local r = script(m, c, srv)
    if r ~= "default" then return end
  end
  local h = DEFAULT[name]
  if not h then
    err_reply(c, m, "Unknown action")
    return c:disconnect("Unknown action")
  end
  h(srv, c, m)
end

-- ------------------------------------------------------------ the API

-- testing.server(opts) -> server (task only). opts: tls ({cert, key}),
-- owner ("owner"), workspace ("ws"), bufs ({[path] = text} or a list of
-- {path, text, encoding}), accounts ({[username] = {secret, perms}}; nil:
-- anyone may join with edit perms), anon_perms (site perms of username
-- "", default {"view_room"}), leak_res_id (the real server's quirk 1).
function M.server(opts)
  opts = opts or {}
  local srv = setmetatable({
    owner = opts.owner or "owner", workspace = opts.workspace or "ws",
    bufs = {}, next_buf = 0, clients = {}, log = {}, chat = {}, scripts = {}, waiters = {}, faults = {},
    accounts = opts.accounts, anon_perms = opts.anon_perms or PERMS.view, leak_res_id = opts.leak_res_id,
    next_conn = 0, patches_applied = 0,
  }, Server)
  if opts.bufs then
    if #opts.bufs > 0 then
      for _, b in ipairs(opts.bufs) do srv:add_buf(b[1] or b.path, b[2] or b.text, b[3] or b.encoding) end
    else
      local paths = {}
      for p in pairs(opts.bufs) do paths[#paths + 1] = p end
      table.sort(paths)
      for _, p in ipairs(paths) do srv:add_buf(p, opts.bufs[p]) end
    end
  end
  local server, err, name = jsonl.listen({port = opts.port or 0, tls = opts.tls, ping = false, max_line = opts.max_line},
    function(conn)
      srv.next_conn = srv.next_conn + 1
      local c = setmetatable({conn = conn, conn_id = srv.next_conn, last_req = 0, received = {}, perms = {}}, Client)
      srv.clients[#srv.clients + 1] = c
      conn:on("*", function(m) on_message(srv, c, m) end, {immediate = true})
      conn:on_bad_input(function(reason) srv.faults[#srv.faults + 1] = reason end)
      conn:on_close(function()
        for i, o in ipairs(srv.clients) do if o == c then table.remove(srv.clients, i) break end end
        if c.joined then
          c.joined = false
          srv:broadcast({name = "part", user_id = c.user_id, username = c.username})
        end
      end)
    end)
  if not server then return nil, err, name end
  srv.server = server
  srv.host, srv.port = "127.0.0.1", server:getsockname().port
  return srv
end

-- srv:script(name, fn): fn(msg, client, srv) handles messages of that name
-- ("auth" is the first message) instead of the default; returning
-- "default" runs the default too.
function Server:script(name, fn)
  self.scripts[name] = fn
  return self
end

-- srv:expect(pred [, ms]) -> msg, client: the next message a client sends
-- that matches (a name, or fn(msg, client)); messages received before the
-- call are not looked at. nil, "timeout" after ms (default 5000).
function Server:expect(pred, ms)
  if type(pred) == "string" then
    local n = pred
    pred = function(m) return m.name == n end
  end
  local w = {pred = pred}
  self.waiters[#self.waiters + 1] = w
  local r = {coru.timeout(ms or 5000, function()
    return coroutine.yield(function(resume) w.resume = resume end)
  end)}
  for i, x in ipairs(self.waiters) do if x == w then table.remove(self.waiters, i) break end end
  return r[1], r[2]
end

-- srv:sent(name) -> list of messages of that name the clients sent so far
function Server:sent(name)
  local out = {}
  for _, e in ipairs(self.log) do if name == nil or e.msg.name == name then out[#out + 1] = e.msg end end
  return out
end

-- srv:silence(true): stop answering (pings included); false resumes.
function Server:silence(on) self.silent = on and true or false end

function Server:send_all(msg) return self:broadcast(msg) end

-- Drop every client connection without a disconnect message (a restart).
function Server:drop_all()
  for _, c in ipairs({unpack(self.clients)}) do c:drop() end
end

function Server:wait_clients(n, ms)
  local t0 = coru.now()
  while true do
    local k = 0
    for _, c in ipairs(self.clients) do if c.joined then k = k + 1 end end
    if k >= n then return true end
    if coru.now() - t0 > (ms or 5000) then return nil, "timeout" end
    coru.sleep(2)
  end
end

function Server:close()
  if self.server then self.server:close() self.server = nil end
  self:drop_all()
end

-- ------------------------------------------------------------ real processes

-- testing.launch(bin, argv [, on_line]) -> process (task only): bin (a coru
-- host) running argv (a script and its arguments) with stdout and stderr
-- piped; on_line(line, "stdout" | "stderr") sees every line either prints
-- (a task per pipe, closing it at its end). nil, msg, name when it cannot
-- start.
function M.launch(bin, argv, on_line)
  local p, err, name = require("coru.process").spawn(bin, argv, {stdio = {"ignore", "pipe", "pipe"}})
  if not p then return nil, err, name end
  for which, stream in pairs({stdout = p.stdout, stderr = p.stderr}) do
    coru.spawn(function()
      while true do
        local line = stream:read_line()
        if not line then break end
        if on_line then on_line(line, which) end
      end
      if not stream:is_closing() then stream:close() end
    end)
  end
  return p
end

-- testing.launch_server(bin, server, conf [, on_line [, ms]]) -> process,
-- port (task only): `bin server -c conf` (bin/coru-floo-server), once its
-- "listening" log line named the port; nil, msg if it ended or stayed
-- silent for ms (default 10000) first (it is killed then).
function M.launch_server(bin, server, conf, on_line, ms)
  local port
  local p, err = M.launch(bin, {server, "-c", conf}, function(line, which)
    port = port or tonumber(line:match('"event":"listening".-"port":(%d+)') or line:match('"port":(%d+).-"event":"listening"'))
    if on_line then on_line(line, which) end
  end)
  if not p then return nil, err end
  coru.timeout(ms or 10000, function() while not port and not p.exited do coru.sleep(5) end end)
  if port then return p, port end
  if not p.exited then p:kill("sigkill") end
  p:wait()
  return nil, "coru-floo-server did not report its port (status " .. tostring(p.code) .. ")"
end

-- testing.tree(dir) -> {[relative path] = content} of the files under dir
-- (floo-sync's temporary files left out); testing.same_tree(a, b).
function M.tree(dir)
  local fs = require "coru.fs"
  local t = {}
  for p, ty in fs.walk(dir) do
    local rel = p:sub(#dir + 2)
    if ty == "file" and not rel:match("%.tmp%-%w+$") then t[rel] = fs.read_file(p) end
  end
  return t
end

function M.same_tree(x, y)
  for k, v in pairs(x) do if y[k] ~= v then return false end end
  for k in pairs(y) do if x[k] == nil then return false end end
  return true
end

return M
