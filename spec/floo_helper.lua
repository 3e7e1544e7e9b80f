-- Helpers for the coru.floo.server specs: a server in this process or in a
-- child process, and a raw protocol client that sends exactly the bytes a
-- test asks for and reads one JSON line at a time.
local coru = require "coru"
local jsonl = require "coru.jsonl"
local server = require "coru.floo.server"
local H = {}

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

local Client = {}
Client.__index = Client

function H.connect(port, opts)
  local s = assert(coru.tcp.connect("127.0.0.1", port))
  s:set_max_line(64 * 1024 * 1024)
  return setmetatable({s = s, n = 0, port = port, inbox = {}, opts = opts or {}}, Client)
end

-- write a raw line (no newline added) or a table (req_id added unless false)
function Client:raw(line) return self.s:write(line) end

function Client:send(msg)
  if msg.req_id == nil then self.n = self.n + 1; msg.req_id = self.n
  elseif msg.req_id == false then msg.req_id = nil end
  self.s:write(jsonl.encode(msg) .. "\n")
  return msg.req_id
end

-- next message (nil, "eof"|"timeout"|... when there is none)
function Client:recv(ms)
  if #self.inbox > 0 then return table.remove(self.inbox, 1) end
  self.s:settimeouts(nil, nil, ms or 5000)
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
  local deadline = coru.now() + (ms or 5000)
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

H.server = server
return H
