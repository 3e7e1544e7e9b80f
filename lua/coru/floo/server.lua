-- coru.floo.server: a collaborative-editing server speaking the Floobits
-- protocol (shared/FLOOBITS-PROTOCOL.md) as the colab server does.
--
--   local server = require "coru.floo.server"
--   local srv = assert(server.start(config))   -- task only; loads, listens
--   srv.port, srv.tls_port                      -- the ports bound
--   srv:close()                                 -- save everything, close all
--   server.main(arg)                            -- the coru-floo-server script
--
-- Everything a connection asks is handled synchronously on in-memory
-- workspaces; one writer task (the flusher) persists dirty buffers with
-- atomic writes and only then releases the replies that confirm a change
-- (ack, the sender's create_buf/delete_buf/rename_buf): what a client saw
-- confirmed is on disk (group commit).
local coru = require "coru"
local fs = require "coru.fs"
local jsonl = require "coru.jsonl"

local M = {}
local concat, insert, remove, sort = table.concat, table.insert, table.remove, table.sort
local floor, huge = math.floor, math.huge
local byte, char = string.byte, string.char

M.DEFAULTS = {
  host = "127.0.0.1",
  port = 3148,
  data_dir = "floo-data",
  log_level = "info",
  max_line = 30000000,       -- colab: 3 x max_buf_len
  max_buf_len = 10000000,    -- one buffer
  heartbeat = 15000,         -- ms of client silence before a ping
  auth_timeout = 30000,
  max_write_queue = 64 * 1024 * 1024,  -- a client that reads slower is dropped
  readme = true,             -- FLOOBITS_README.md in an empty new workspace
  require_tls = false,
  create_workspaces = true,  -- the owner's first join creates the workspace
  flush_delay = 0,           -- ms: optional minimum interval between disk flushes
}

-- ------------------------------------------------------------ helpers

local md5 = coru.md5
M.md5 = md5

-- colab's tuning (settings.js): narrow fuzzy matching
local D = coru.dmp.new{match_threshold = 0.375, match_distance = 100,
                       patch_delete_threshold = 0.375, patch_margin = 4, diff_edit_cost = 4}

-- base64 (RFC 4648, with padding)
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64enc, b64dec = {}, {}
for i = 1, 64 do
  b64enc[i - 1] = B64:sub(i, i)
  b64dec[byte(B64, i)] = i - 1
end

function M.base64_encode(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1, c2 = floor(v / 262144) % 64, floor(v / 4096) % 64
    local c3, c4 = floor(v / 64) % 64, v % 64
    out[#out + 1] = b64enc[c1] .. b64enc[c2] .. (b and b64enc[c3] or "=") .. (c and b64enc[c4] or "=")
  end
  return concat(out)
end

-- -> bytes, or nil, message
function M.base64_decode(s)
  s = s:gsub("[\r\n]", "")
  if #s % 4 ~= 0 or s:find("[^%w%+/=]") or s:find("=[^=]") then return nil, "invalid base64" end
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = byte(s, i, i + 3)
    local va, vb, vc, vd = b64dec[a], b64dec[b], b64dec[c], b64dec[d]
    if not va or not vb then return nil, "invalid base64" end
    local v = va * 262144 + vb * 4096 + (vc or 0) * 64 + (vd or 0)
    local x, y, z = floor(v / 65536), floor(v / 256) % 256, v % 256
    if c == 61 then out[#out + 1] = char(x)
    elseif d == 61 then out[#out + 1] = char(x, y)
    else out[#out + 1] = char(x, y, z) end
  end
  return concat(out)
end

-- JSON through coru.jsonl: jsonl.array marks the lists that may be empty
local list, encode = jsonl.array, jsonl.encode

local function now_ms() return floor(os.time() * 1000 + (coru.now() % 1000)) end

-- ------------------------------------------------------------ permissions

-- colab:lib/perms.js: site perms -> the message names they allow.
M.SITE_PERMS = {
  view_room = {"get_buf", "ping", "pong", "webrtc"},
  request_perms = {"get_buf", "request_perms"},
  edit_room = {"patch", "get_buf", "set_buf", "create_buf", "delete_buf", "rename_buf",
               "set_temp_data", "delete_temp_data", "highlight", "msg", "datamsg",
               "create_term", "term_stdin", "delete_term", "update_term", "term_stdout",
               "repo", "saved"},
  admin_room = {"kick", "pull_repo", "perms", "solicit"},
}
local SITE_ORDER = {"view_room", "request_perms", "edit_room", "admin_room"}

-- expand_perms(site_perms, is_anon) -> list of message names (colab order),
-- set. A logged-in user who may view may also chat (colab room.js).
function M.expand_perms(site, is_anon)
  local has, seen, out = {}, {}, {}
  for _, p in ipairs(site or {}) do has[p] = true end
  for _, p in ipairs(SITE_ORDER) do
    if has[p] then
      for _, name in ipairs(M.SITE_PERMS[p]) do
        if not seen[name] then seen[name] = true; out[#out + 1] = name end
      end
    end
  end
  if not is_anon and has.view_room and not seen.msg then seen.msg = true; out[#out + 1] = "msg" end
  return out, seen
end

local function valid_site_perms(list_)
  if type(list_) ~= "table" then return false end
  for _, p in ipairs(list_) do if not M.SITE_PERMS[p] then return false end end
  return true
end

-- ------------------------------------------------------------ paths

-- check_path(path) -> nil | message: the rules of colab room.js for a
-- buffer path (clashes are checked by the workspace).
function M.check_path(path)
  if type(path) ~= "string" then return "Path must be a string" end
  if path == "" then return "Path is empty" end
  if #path > 4096 then return "Path is too long" end
  if path:find("%z") then return "Invalid path: contains a NUL byte" end
  if path:sub(1, 1) == "/" or path:sub(-1) == "/" then
    return ("Invalid path %s: must not start or end with /"):format(path)
  end
  for comp in (path .. "/"):gmatch("([^/]*)/") do
    if comp == "" or comp == "." or comp == ".." then
      return ("Invalid path %s: empty, . or .. component"):format(path)
    end
  end
  return nil
end

local NAME_PATTERN = "^[%w_%-%.]+$"
local function valid_name(s)
  return type(s) == "string" and s:match(NAME_PATTERN) and s ~= "." and s ~= ".." and #s <= 255
end

-- ------------------------------------------------------------ logging

local LEVELS = {debug = 10, info = 20, warn = 30, error = 40, none = 100}
local apply_patch   -- below, with the buffer changes

local function make_logger(level, out)
  local threshold = LEVELS[level] or error("unknown log level: " .. tostring(level), 0)
  out = out or io.stderr
  return function(lvl, event, fields)
    if LEVELS[lvl] < threshold then return end
    local rec = {t = os.date("!%Y-%m-%dT%H:%M:%SZ"), level = lvl, event = event}
    if fields then for k, v in pairs(fields) do rec[k] = v end end
    local ok, line = pcall(encode, rec)
    if not ok then line = encode({t = rec.t, level = lvl, event = event, note = "unencodable fields"}) end
    if type(out) == "function" then out(line) else out:write(line, "\n") out:flush() end
  end
end

-- ------------------------------------------------------------ config

-- load_config(path) -> config | nil, message. A JSON file; see
-- docs/floo-server.md.
function M.load_config(path)
  local text, err = fs.read_file(path)
  if not text then return nil, err end
  local cfg, jerr = jsonl.decode(text)
  if type(cfg) ~= "table" then
    return nil, ("config %s: invalid JSON: %s"):format(path, tostring(jerr or "not an object"))
  end
  local base = fs.dirname(path)
  for _, k in ipairs({"data_dir", "cert", "key", "ca"}) do
    local v = cfg[k] or (cfg.tls and cfg.tls[k])
    if type(v) == "string" and v:sub(1, 1) ~= "/" then
      if cfg[k] then cfg[k] = base .. "/" .. v else cfg.tls[k] = base .. "/" .. v end
    end
  end
  return cfg
end

local function check_config(cfg)
  if type(cfg) ~= "table" then return "config must be a table" end
  local users = cfg.users or {}
  if type(users) ~= "table" then return "config.users must be an object" end
  for name, u in pairs(users) do
    if not valid_name(name) then return ("config.users: invalid user name %q"):format(tostring(name)) end
    if type(u) ~= "table" or type(u.secret) ~= "string" then
      return ("config.users.%s: needs a string secret"):format(name)
    end
    if u.perms ~= nil and not valid_site_perms(u.perms) then
      return ("config.users.%s.perms: a list of view_room, request_perms, edit_room, admin_room"):format(name)
    end
  end
  if cfg.anonymous ~= nil and cfg.anonymous ~= false and not valid_site_perms(cfg.anonymous) then
    return "config.anonymous: false or a list of site perms"
  end
  for key, w in pairs(cfg.workspaces or {}) do
    local owner, name = tostring(key):match("^([^/]+)/([^/]+)$")
    if not (valid_name(owner) and valid_name(name)) then
      return ("config.workspaces: invalid workspace %q (owner/name)"):format(tostring(key))
    end
    if type(w) ~= "table" then return ("config.workspaces[%q] must be an object"):format(key) end
    for u, p in pairs(w.perms or {}) do
      if not valid_site_perms(p) then return ("config.workspaces[%q].perms.%s: invalid perms"):format(key, u) end
    end
    if w.anonymous ~= nil and w.anonymous ~= false and not valid_site_perms(w.anonymous) then
      return ("config.workspaces[%q].anonymous: false or a list of site perms"):format(key)
    end
  end
  if cfg.log_level and not LEVELS[cfg.log_level] then
    return "config.log_level: one of debug, info, warn, error, none"
  end
  local fd = cfg.flush_delay
  if fd ~= nil and (type(fd) ~= "number" or fd ~= fd or fd < 0 or fd == huge) then
    return "config.flush_delay: a number of ms >= 0"
  end
  if cfg.tls ~= nil then
    if type(cfg.tls) ~= "table" or type(cfg.tls.cert) ~= "string" or type(cfg.tls.key) ~= "string" then
      return "config.tls: needs cert and key file names"
    end
  end
  return nil
end

-- ------------------------------------------------------------ the server

local Server, Workspace, Conn = {}, {}, {}
Server.__index, Workspace.__index, Conn.__index = Server, Workspace, Conn

local README = [[
# Welcome to this workspace

This file was created by coru-floo-server because the workspace was empty.
It is removed when the first other buffer is created.
]]

local COLORS = {"#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
                "#f032e6", "#bcf60c", "#008080", "#9a6324", "#800000", "#000075"}

-- ---------------------------------------------------------- workspaces

local function ws_dir(srv, owner, name) return srv.data_dir .. "/" .. owner .. "/" .. name end

local function new_workspace(srv, owner, name)
  local t = now_ms()
  local ws = setmetatable({
    srv = srv, owner = owner, name = name, key = owner .. "/" .. name,
    dir = ws_dir(srv, owner, name),
    bufs = {}, paths = {}, dirs = {}, next_id = 1, nbufs = 0,
    conns = {}, nconns = 0, msgs = {}, last_highlight = nil, temp_data = {},
    perms = {}, created_at = t, updated_at = t, version = 1,
    pending_unlinks = {}, log_pending = {}, log_bytes = 0,
  }, Workspace)
  return ws
end

-- directory prefixes of a path: "a/b/c" -> "a", "a/b"
local function each_parent(path, fn)
  local i = 0
  while true do
    i = path:find("/", i + 1, true)
    if not i then return end
    fn(path:sub(1, i - 1))
  end
end

function Workspace:index_path(buf, add)
  if add then self.paths[buf.path] = buf else self.paths[buf.path] = nil end
  local d = add and 1 or -1
  each_parent(buf.path, function(p)
    local n = (self.dirs[p] or 0) + d
    self.dirs[p] = n > 0 and n or nil
  end)
end

-- path_clash(path [, except]) -> nil | message
function Workspace:path_clash(path, except)
  local err = M.check_path(path)
  if err then return err end
  local b = self.paths[path]
  if b and b ~= except then return ("Buffer with path %s already exists"):format(path) end
  if self.dirs[path] and not (except and except.path == path) then
    return ("Path %s is a directory"):format(path)
  end
  local clash
  each_parent(path, function(p)
    local other = self.paths[p]
    if other and other ~= except and not clash then clash = ("Path %s clashes with the file %s"):format(path, p) end
  end)
  return clash
end

function Workspace:add_buf(id, path, encoding, text, md5sum)
  local buf = {id = id, path = path, encoding = encoding, text = text,
               md5 = md5sum or md5(text), ws = self, timers = {}}
  self.bufs[id] = buf
  self.nbufs = self.nbufs + 1
  self:index_path(buf, true)
  if id >= self.next_id then self.next_id = id + 1 end
  return buf
end

function Workspace:tree()
  local tree = {}
  for _, buf in pairs(self.bufs) do
    local node = tree
    local comps = {}
    for c in buf.path:gmatch("[^/]+") do comps[#comps + 1] = c end
    for i = 1, #comps - 1 do
      local c = comps[i]
      if type(node[c]) ~= "table" then node[c] = {} end
      node = node[c]
    end
    node[comps[#comps]] = buf.id
  end
  return tree
end

function Workspace:meta()
  local bufs = {}
  for id, b in pairs(self.bufs) do
    bufs[tostring(id)] = {id = id, path = b.path, encoding = b.encoding, md5 = b.md5}
  end
  return {
    owner = self.owner, name = self.name, next_id = self.next_id, bufs = bufs,
    perms = self.perms, created_at = self.created_at, updated_at = self.updated_at,
    version = self.version, readme_id = self.readme_id, readme_md5 = self.readme_md5,
    format = 1,
  }
end

function Workspace:touch()
  self.updated_at = now_ms()
  self.srv:mark_meta(self)
end

-- load a workspace directory -> ws | nil, message
local function load_workspace(srv, owner, name)
  local ws = new_workspace(srv, owner, name)
  local text, err = fs.read_file(ws.dir .. "/workspace.json")
  if not text then return nil, err end
  local meta, jerr = jsonl.decode(text)
  if type(meta) ~= "table" or type(meta.bufs) ~= "table" then
    return nil, ("%s/workspace.json: invalid: %s"):format(ws.dir, tostring(jerr or "no bufs"))
  end
  ws.created_at = tonumber(meta.created_at) or ws.created_at
  ws.updated_at = tonumber(meta.updated_at) or ws.updated_at
  ws.version = tonumber(meta.version) or 1
  ws.perms = type(meta.perms) == "table" and meta.perms or {}
  ws.next_id = tonumber(meta.next_id) or 1
  ws.readme_id = tonumber(meta.readme_id)
  ws.readme_md5 = type(meta.readme_md5) == "string" and meta.readme_md5 or nil
  local ids = {}
  for _, b in pairs(meta.bufs) do ids[#ids + 1] = b end
  sort(ids, function(a, b) return (tonumber(a.id) or 0) < (tonumber(b.id) or 0) end)
  for _, b in ipairs(ids) do
    local id = tonumber(b.id)
    local enc = b.encoding == "base64" and "base64" or "utf8"
    if id and not M.check_path(b.path) and not ws:path_clash(b.path) then
      local content, cerr, cname = fs.read_file(ws.dir .. "/bufs/" .. id)
      if not content and cname == "ENOENT" then content = "" end
      if content then
        local sum = md5(content)
        if sum ~= b.md5 then
          -- the buffer file is one atomic write newer (or older) than the
          -- metadata: either is a state the server had acknowledged
          srv.log("warn", "load_md5_mismatch", {ws = ws.key, id = id, path = b.path, meta = b.md5, file = sum})
        end
        ws:add_buf(id, b.path, enc, content, sum)
      else
        srv.log("error", "load_failed", {ws = ws.key, id = id, err = cerr})
      end
    else
      srv.log("error", "load_skipped", {ws = ws.key, id = tostring(b.id), path = tostring(b.path)})
    end
  end
  -- temporary files of atomic writes a crash interrupted
  local top = coru.fs_scandir(ws.dir)
  while top do
    local entry = coru.fs_scandir_next(top)
    if not entry then break end
    if entry:match("^%.workspace%.json%.tmp%-") then coru.fs_unlink(ws.dir .. "/" .. entry) end
  end
  -- buffer files no metadata names: a creation the crash interrupted
  local req = coru.fs_scandir(ws.dir .. "/bufs")
  while req do
    local entry = coru.fs_scandir_next(req)
    if not entry then break end
    local id = tonumber(entry)
    if not (id and ws.bufs[id]) then
      coru.fs_unlink(ws.dir .. "/bufs/" .. entry)
      if id and id >= ws.next_id then ws.next_id = id + 1 end
    end
  end
  return ws
end

-- ---------------------------------------------------------- server object

local function noop() end

function Server:new_conn(stream, is_tls)
  self.next_conn = self.next_conn + 1
  local c = setmetatable({
    srv = self, id = self.next_conn, stream = stream, is_tls = is_tls,
    last_req_id = -huge, out_req_id = 0, timers = {}, closed = false,
    pings = 0, encodings = {utf8 = true}, outq = {},
  }, Conn)
  self.conns[c] = true
  self.nconns = self.nconns + 1
  return c
end

function Server:mark_buf(buf)
  self.dirty[buf] = true
  self:wake_flusher()
end

function Server:mark_meta(ws)
  self.dirty_meta[ws] = true
  self:wake_flusher()
end

-- a reply that confirms a change: sent once what it confirms is on disk.
-- ordered (the sender's create_buf, delete_buf, rename_buf): what the
-- server sends that connection afterwards waits behind it, so the sender
-- never hears of later changes (someone renaming its new buffer) before
-- its own. Acks of patches do not hold the others' patches back (a client
-- tells an ack from a patch built on its own).
function Server:durable_reply(conn, line, ordered)
  local entry = line
  if ordered then
    entry = {line = line}
    local q = conn.hold_q
    if not q then q = {} conn.hold_q = q end
    q[#q + 1] = entry
  end
  local p = self.pending
  p[#p + 1] = conn
  p[#p + 1] = entry
  self:wake_flusher()
end

function Server:wake_flusher()
  local w = self.flush_waiter
  if w then self.flush_waiter = nil; w() end
end

local function has_work(self)
  return next(self.dirty) ~= nil or next(self.dirty_meta) ~= nil or next(self.dirty_log) ~= nil
         or #self.pending > 0
end

-- ---------------------------------------------------------- the change log
--
-- A committed change to a buffer's text is one JSON line appended to
-- <workspace>/changes.log: {"id", "b" (md5 before), "a" (md5 after), "p"
-- (patch text)} or, for set_buf, {"id", "a", "t" (the whole text; "t64":
-- base64 for binary buffers)}. A flush appends what was committed since the
-- last one with one write and one fdatasync for the whole workspace. When
-- the log passes LOG_LIMIT bytes (and at close and at load) the changed
-- buffers are written to their files (atomic writes) and the log is emptied.
-- At load the log is replayed over the files: a patch record applies when
-- the buffer is at its "b", a text record always; a record that does not
-- fit (the file is already newer) is skipped; a torn last line ends the
-- replay (it was never acknowledged).
local LOG_LIMIT = 4 * 1024 * 1024

local function log_path(ws) return ws.dir .. "/changes.log" end

function Server:log_change(buf, rec)
  local ws = buf.ws
  local q = ws.log_pending
  q[#q + 1] = encode(rec) .. "\n"
  buf.snap_dirty = true
  self.dirty_log[ws] = true
  self:wake_flusher()
end

function Server:append_log(ws)
  local q = ws.log_pending
  if #q == 0 then return true end
  ws.log_pending = {}
  local err, name
  if not ws.log_fd then
    fs.mkdirp(ws.dir)
    ws.log_fd, err, name = coru.fs_open(log_path(ws), "a", 420)
    if not ws.log_fd then
      self.log("error", "save_failed", {ws = ws.key, file = "changes.log", err = err})
      for i = #q, 1, -1 do insert(ws.log_pending, 1, q[i]) end
      return nil, err, name
    end
  end
  local data = concat(q)
  local off = 0
  while off < #data do
    local n
    n, err = coru.fs_write(ws.log_fd, off == 0 and data or data:sub(off + 1))
    if not n then break end
    off = off + n
  end
  local ok = off == #data
  if ok then ok, err = coru.fs_fdatasync(ws.log_fd); self.syncs = self.syncs + 1 end
  if not ok then
    self.log("error", "save_failed", {ws = ws.key, file = "changes.log", err = err})
    return nil, err
  end
  ws.log_bytes = (ws.log_bytes or 0) + #data
  return true
end

-- write every buffer the log changed to its file, then empty the log
function Server:compact(ws)
  local ok = true
  for _, buf in pairs(ws.bufs) do
    if buf.snap_dirty then
      buf.snap_dirty = nil
      if not self:save_buf(buf) then ok = false; buf.snap_dirty = true end
    end
  end
  if not ok then return nil end
  if not self:save_meta(ws) then return nil end
  if not ws.log_fd then ws.log_fd = coru.fs_open(log_path(ws), "a", 420) end
  if not ws.log_fd then return nil end
  ok = coru.fs_ftruncate(ws.log_fd, 0)
  if ok then ok = coru.fs_fdatasync(ws.log_fd); self.syncs = self.syncs + 1 end
  ws.log_bytes = 0
  return ok
end

-- replay changes.log over the loaded buffers -> number of records applied
local function replay_log(srv, ws)
  local text = fs.read_file(log_path(ws))
  if not text or text == "" then return 0 end
  local applied, skipped = 0, 0
  for line, nl in text:gmatch("([^\n]*)(\n?)") do
    if nl == "" then break end                          -- a torn last line: never acknowledged
    local rec = jsonl.decode(line)
    if type(rec) ~= "table" then break end
    local buf = ws.bufs[tonumber(rec.id) or -1]
    local new
    if buf and type(rec.t) == "string" then new = rec.t
    elseif buf and type(rec.t64) == "string" then new = M.base64_decode(rec.t64)
    elseif buf and type(rec.p) == "string" and rec.b == buf.md5 and rec.a ~= buf.md5 then
      new = apply_patch(buf.text, rec.p)
    end
    if new and md5(new) == rec.a then
      buf.text, buf.md5, buf.snap_dirty = new, rec.a, true
      applied = applied + 1
    else
      skipped = skipped + 1
    end
  end
  srv.log("info", "log_replayed", {ws = ws.key, applied = applied, skipped = skipped})
  return applied
end

function Server:save_buf(buf)
  local ws = buf.ws
  local ok, err = fs.write_file(ws.dir .. "/bufs/" .. buf.id, buf.text, {atomic = true})
  if not ok then
    local mk = fs.mkdirp(ws.dir .. "/bufs")
    if mk then ok, err = fs.write_file(ws.dir .. "/bufs/" .. buf.id, buf.text, {atomic = true}) end
  end
  if not ok then self.log("error", "save_failed", {ws = ws.key, id = buf.id, err = err}) end
  return ok, err
end

function Server:save_meta(ws)
  local ok, err = fs.mkdirp(ws.dir .. "/bufs")
  if ok then ok, err = fs.write_file(ws.dir .. "/workspace.json", encode(ws:meta()), {atomic = true}) end
  if not ok then self.log("error", "save_failed", {ws = ws.key, file = "workspace.json", err = err}) end
  return ok, err
end

-- One round of group commit: the replies waiting now confirm states that
-- the writes below (taken later) include.
function Server:flush()
  local replies = self.pending
  self.pending = {}
  local dirty, dirty_meta = self.dirty, self.dirty_meta
  self.dirty, self.dirty_meta = {}, {}
  local failed = false
  -- buffer contents first: a new buffer's file exists before the metadata names it
  for buf in pairs(dirty) do
    if not buf.deleted then
      if not self:save_buf(buf) then failed = true; self.dirty[buf] = true end
    end
  end
  for ws in pairs(dirty_meta) do
    if not self:save_meta(ws) then failed = true; self.dirty_meta[ws] = true end
    local unlinks = ws.pending_unlinks
    ws.pending_unlinks = {}
    for _, id in ipairs(unlinks) do coru.fs_unlink(ws.dir .. "/bufs/" .. id) end
  end
  local dirty_log = self.dirty_log
  self.dirty_log = {}
  for ws in pairs(dirty_log) do
    if not self:append_log(ws) then failed = true; self.dirty_log[ws] = true end
    if (ws.log_bytes or 0) > LOG_LIMIT then self:compact(ws) end
  end
  for i = 1, #replies, 2 do
    local conn, entry = replies[i], replies[i + 1]
    if type(entry) == "table" then
      entry.ready = true
      conn:release()
    elseif not conn.closed then
      conn:write(entry)
    end
  end
  self.flushes = self.flushes + 1
  return not failed
end

-- Group commit: when there is work and no flush is running, flush at once,
-- after one coru.pass() lets the commits of this loop iteration (every
-- connection whose data the poll phase read) join; commits arriving while a
-- flush waits on its fdatasync gather and go in the next flush, which starts
-- as soon as this one ends. A client awaiting each ack costs one flush per
-- edit (bounded by the disk); concurrent clients share them. flush_delay
-- (ms, default 0) is an optional minimum interval between flush starts.
function Server:flusher()
  local last = -huge
  while true do
    if not has_work(self) then
      if self.closing then return end
      coru.await(function(resume) self.flush_waiter = function() resume() end end)
    end
    if not self.closing then
      coru.pass()
      local wait = last + self.flush_delay - coru.now()
      if wait > 0 then coru.sleep(wait) end
    end
    last = coru.now()
    if not self:flush() then coru.sleep(1000) end  -- disk trouble: retry later
  end
end

-- ---------------------------------------------------------- connections

-- Output is corked: lines queued during a loop iteration leave in one
-- writev per connection, from a check handle after the poll phase (a burst
-- of patches costs each client one syscall, not one per line).
function Conn:write(line)
  if self.closed then return end
  local held = self.hold_q
  if held then held[#held + 1] = line return end
  self:queue_out(line)
end

-- what waited behind ordered replies, up to the first not yet on disk
function Conn:release(all)
  local held = self.hold_q
  if not held then return end
  local i = 1
  while held[i] ~= nil do
    local e = held[i]
    if type(e) == "table" then
      if not (e.ready or all) then break end
      e = e.line
    end
    if not self.closed then self:queue_out(e) end
    i = i + 1
  end
  if held[i] == nil then self.hold_q = nil
  else
    local rest = {}
    for k = i, #held do rest[#rest + 1] = held[k] end
    self.hold_q = rest
  end
end

function Conn:queue_out(line)
  local q = self.outq
  q[#q + 1] = line
  if #q == 1 then
    local srv = self.srv
    local out = srv.out
    out[#out + 1] = self
    if not srv.out_active then
      srv.out_active = true
      srv.out_check:start(srv.flush_out)
    end
  end
end

-- write what is queued now
function Conn:flush_out()
  local q = self.outq
  if #q == 0 then return end
  self.outq = {}
  local s = self.stream
  if s:is_closing() then return end
  s:write(#q == 1 and q[1] or q, noop)
  if s:get_write_queue_size() > self.srv.max_write_queue then
    self.srv.log("warn", "slow_client", {conn = self.id, user = self.username, queued = s:get_write_queue_size()})
    self:close("slow client")
  end
end

function Server:make_out()
  self.out = {}
  self.out_check = coru.new_check()
  self.flush_out = function()
    local out = self.out
    self.out = {}
    for i = 1, #out do
      local c = out[i]
      if not c.closed then c:flush_out() end
    end
    if #self.out == 0 then
      self.out_active = false
      self.out_check:stop()
    end
  end
end

function Conn:send(msg) self:write(encode(msg) .. "\n") end

function Conn:ack(req_id)
  if req_id ~= nil then self:write('{"name":"ack","res_id":' .. ("%d"):format(req_id) .. '}\n') end
end

function Conn:error(req_id, msg, flash)
  self:send({name = "error", msg = msg, flash = flash or false, res_id = req_id})
end

-- close the connection (after what is queued is written); leave the workspace
function Conn:close(why)
  if self.closed then return end
  self:release(true)
  self:flush_out()
  if self.closed then return end
  self.closed = true
  self.srv.log("info", "close", {conn = self.id, user = self.username, ws = self.ws and self.ws.key, why = why})
  self:leave()
  local s = self.stream
  if not s:is_closing() then
    -- a peer that never reads: close anyway after a while
    local t = coru.new_timer()
    t:unref()
    local function done()
      if not t:is_closing() then t:close() end
      if not s:is_closing() then s:close() end
    end
    t:start(5000, 0, done)
    s:shutdown(done)
  end
end

-- close at once, without a word (bad req_id, invalid JSON, huge line)
function Conn:drop(why)
  if not self.closed then
    self.closed = true
    self.srv.log("warn", "drop", {conn = self.id, user = self.username, ws = self.ws and self.ws.key, why = why})
    self:leave()
  end
  if not self.stream:is_closing() then self.stream:close() end
end

function Conn:disconnect(reason)
  if self.closed then return end
  self:send({name = "disconnect", reason = reason})
  self:close(reason)
end

function Conn:to_json()
  return {user_id = self.id, username = self.username, client = self.client,
          platform = self.platform, perms = list(self.perms_list), is_anon = self.is_anon,
          color = self.color, gravatar = "", tags = list({}), version = self.version,
          connected_at = self.connected_at}
end

function Conn:leave()
  for buf, entry in pairs(self.timers) do
    entry.timer:close()
    buf.timers[self] = nil
  end
  self.timers = {}
  local ws = self.ws
  if ws and ws.conns[self.id] then
    ws.conns[self.id] = nil
    ws.nconns = ws.nconns - 1
    ws:broadcast(self, {name = "part", user_id = self.id, username = self.username})
  end
  if self.srv.conns[self] then
    self.srv.conns[self] = nil
    self.srv.nconns = self.srv.nconns - 1
  end
end

-- ---------------------------------------------------------- broadcast

-- broadcast(except, msg): to every connection but `except`
function Workspace:broadcast(except, msg)
  local line
  for _, c in pairs(self.conns) do
    if c ~= except then
      line = line or (encode(msg) .. "\n")
      c:write(line)
    end
  end
  return line
end

-- to everyone; the sender's copy carries res_id and waits for the disk
function Workspace:broadcast_all(sender, req_id, msg)
  self:broadcast(sender, msg)
  msg.res_id = req_id
  self.srv:durable_reply(sender, encode(msg) .. "\n", true)
end

-- ---------------------------------------------------------- get_buf timers

function Workspace:buf_json(buf, conn)
  local enc, text = buf.encoding, buf.text
  if enc == "base64" then
    if conn.encodings.base64 then text = M.base64_encode(text) else enc = "utf8" end
  end
  return {name = "get_buf", id = buf.id, path = buf.path, md5 = buf.md5, encoding = enc, buf = text}
end

local function cancel_get_buf(buf, conn)
  local entry = buf.timers[conn]
  if entry then
    entry.timer:close()
    buf.timers[conn] = nil
    conn.timers[buf] = nil
  end
end

-- colab buffer.js send_get_buf: one queued get_buf per (buffer, client);
-- a replaced one is acked instead.
local function send_get_buf(buf, conn, req_id, delay)
  local old = buf.timers[conn]
  if old then conn:ack(old.req_id) end
  cancel_get_buf(buf, conn)
  if conn.closed then return end
  local timer = coru.new_timer()
  local entry = {timer = timer, req_id = req_id}
  buf.timers[conn] = entry
  conn.timers[buf] = entry
  timer:start(delay, 0, function()
    timer:close()
    if buf.timers[conn] ~= entry then return end
    buf.timers[conn] = nil
    conn.timers[buf] = nil
    if buf.deleted or conn.closed then return end
    local msg = buf.ws:buf_json(buf, conn)
    msg.res_id = req_id
    conn:send(msg)
    conn.srv.log("debug", "get_buf_sent", {conn = conn.id, id = buf.id, md5 = buf.md5})
  end)
end

-- ---------------------------------------------------------- buffer changes

-- UTF-8 as coru.dmp accepts it (no surrogates, no overlong forms)
function M.valid_utf8(s)
  local i, n = 1, #s
  local find, b = string.find, byte
  while true do
    i = find(s, "[\128-\255]", i)
    if not i then return true end
    local c = b(s, i)
    local len, lo, hi = 0, 0x80, 0xBF
    if c >= 0xC2 and c <= 0xDF then len = 1
    elseif c == 0xE0 then len, lo = 2, 0xA0
    elseif c == 0xED then len, hi = 2, 0x9F
    elseif c >= 0xE1 and c <= 0xEF then len = 2
    elseif c == 0xF0 then len, lo = 3, 0x90
    elseif c >= 0xF1 and c <= 0xF3 then len = 3
    elseif c == 0xF4 then len, hi = 3, 0x8F
    else return false end
    local d = b(s, i + 1)
    if not d or d < lo or d > hi then return false end
    for k = i + 2, i + len do
      d = b(s, k)
      if not d or d < 0x80 or d > 0xBF then return false end
    end
    i = i + len + 1
  end
end
local valid_utf8 = M.valid_utf8

local function strip_cr(text) return (text:gsub("\r\n", "\n"):gsub("\r", "")) end

function Workspace:delete_readme_if_untouched(conn, req_id)
  local id = self.readme_id
  if not id then return end
  self.readme_id = nil
  local buf = self.bufs[id]
  if buf and buf.md5 == self.readme_md5 then self:delete_buf(conn, req_id, buf, true) end
  self:touch()
end

function Workspace:create_buf(conn, req_id, path, text, encoding)
  local id = self.next_id
  self.next_id = id + 1
  local buf = self:add_buf(id, path, encoding, text)
  self.version = self.version + 1
  self.srv:mark_buf(buf)
  self:touch()
  local msg = {name = "create_buf", id = id, path = path, md5 = buf.md5, encoding = encoding,
               buf = encoding == "base64" and M.base64_encode(text) or text,
               user_id = conn and conn.id or 0, username = conn and conn.username or "server"}
  if conn then
    self:broadcast_all(conn, req_id, msg)
  else
    self:broadcast(nil, msg)
  end
  self.srv.log("info", "create_buf", {ws = self.key, id = id, path = path, user = conn and conn.username, bytes = #text})
  return buf
end

function Workspace:delete_buf(conn, req_id, buf, unlink)
  for c, entry in pairs(buf.timers) do entry.timer:close(); c.timers[buf] = nil end
  buf.timers = {}
  buf.deleted = true
  self.bufs[buf.id] = nil
  self.nbufs = self.nbufs - 1
  self:index_path(buf, false)
  self.pending_unlinks[#self.pending_unlinks + 1] = buf.id
  self.version = self.version + 1
  self:touch()
  local msg = {name = "delete_buf", id = buf.id, path = buf.path, unlink = unlink and true or false,
               user_id = conn.id, username = conn.username}
  self:broadcast_all(conn, req_id, msg)
  self.srv.log("info", "delete_buf", {ws = self.key, id = buf.id, path = buf.path, user = conn.username})
end

-- a new state for buf (already checked); the caller broadcasts. rec: the
-- change log record (a patch or the whole text)
local function commit(buf, text, sum, rec)
  rec.id, rec.a = buf.id, sum
  buf.text, buf.md5 = text, sum
  local ws = buf.ws
  if ws.readme_id == buf.id then ws.readme_id = nil; ws:touch() end
  ws.srv:log_change(buf, rec)
  ws.srv.patches = ws.srv.patches + 1
end

-- apply patch text -> new text | nil
function apply_patch(text, patch_text)
  local ok, patches = pcall(D.patch_from_text, D, patch_text)
  if not ok or type(patches) ~= "table" then return nil end
  local ok2, result, applied = pcall(D.patch_apply, D, patches, text)
  if not ok2 or type(result) ~= "string" then return nil end
  for _, a in ipairs(applied or {}) do if not a then return nil end end
  return result
end

-- coru.dmp may run a big job on the thread pool and suspend the task: one
-- change at a time per buffer, the others wait their turn in order.
local function lock_buf(buf)
  if not buf.busy then buf.busy = true return end
  local q = buf.waiters
  if not q then q = {} buf.waiters = q end
  coroutine.yield(function(resume) q[#q + 1] = resume end)
end

local function unlock_buf(buf)
  local q = buf.waiters
  local nxt = q and remove(q, 1)
  if nxt then nxt() else buf.busy = false end
end

local function locked(fn)
  return function(self, conn, req_id, buf, ...)
    lock_buf(buf)
    local ok, err = pcall(fn, self, conn, req_id, buf, ...)
    unlock_buf(buf)
    if not ok then error(err, 0) end
  end
end

-- colab buffer.js BaseBuffer.patch, as FLOOBITS-PROTOCOL.md §7 tells it
local function patch(self, conn, req_id, buf, patch_text, md5_before, md5_after)
  local log = self.srv.log
  if buf.encoding ~= "utf8" then
    -- binary buffers change through set_buf; tell the client the truth
    return send_get_buf(buf, conn, req_id, 0)
  end
  if patch_text:find("%0D", 1, true) then
    patch_text = patch_text:gsub("%%0D%%0A", "%%0A"):gsub("%%0D", "")
    md5_before, md5_after = nil, nil
    local t = coru.now()
    if not conn.cr_warned or t - conn.cr_warned > 60000 then
      conn.cr_warned = t
      conn:error(nil, "Your editor sent a carriage return. Line endings were normalized to \\n.", false)
    end
  end
  if patch_text == "" then return conn:ack(req_id) end
  if md5_after == buf.md5 then return conn:ack(req_id) end
  local before = buf.md5
  local stale = md5_before ~= before
  if stale then send_get_buf(buf, conn, req_id, 1500) end
  local text = apply_patch(buf.text, patch_text)
  if buf.deleted then return conn:error(req_id, ("Buffer %d doesn't exist"):format(buf.id), false) end
  if not text then
    log("warn", "patch_rejected", {ws = self.key, id = buf.id, conn = conn.id, why = "does not apply"})
    return send_get_buf(buf, conn, req_id, 0)
  end
  if #text > self.srv.max_buf_len then
    log("warn", "patch_rejected", {ws = self.key, id = buf.id, conn = conn.id, why = "too big"})
    return send_get_buf(buf, conn, req_id, 0)
  end
  local after = md5(text)
  if after ~= md5_after then
    if not stale then
      log("warn", "patch_rejected", {ws = self.key, id = buf.id, conn = conn.id, why = "md5_after mismatch"})
      return send_get_buf(buf, conn, req_id, 0)
    end
    send_get_buf(buf, conn, req_id, 1000)
  end
  commit(buf, text, after, {b = before, p = patch_text})
  cancel_get_buf(buf, conn)
  self:broadcast(conn, {name = "patch", id = buf.id, path = buf.path, patch = patch_text,
                        md5_before = before, md5_after = after,
                        user_id = conn.id, username = conn.username})
  if req_id ~= nil then
    self.srv:durable_reply(conn, '{"name":"ack","res_id":' .. ("%d"):format(req_id) .. '}\n')
  end
  log("debug", "patch", {ws = self.key, id = buf.id, conn = conn.id, md5 = after})
end

Workspace.patch = locked(patch)

local function set_buf(self, conn, req_id, buf, text, sum, encoding)
  if encoding ~= buf.encoding then
    local path = buf.path
    self:delete_buf(conn, req_id, buf, true)
    return self:create_buf(conn, req_id, path, text, encoding)
  end
  cancel_get_buf(buf, conn)
  local new_md5 = md5(text)
  if new_md5 == buf.md5 then return conn:ack(req_id) end
  local before = buf.md5
  local patch_text
  if encoding == "utf8" then
    patch_text = D:patch_to_text(D:patch_make(buf.text, text))
    if buf.deleted then return conn:error(req_id, ("Buffer %d doesn't exist"):format(buf.id), false) end
  end
  commit(buf, text, new_md5, encoding == "base64" and {t64 = M.base64_encode(text)} or {t = text})
  if sum and sum ~= new_md5 then
    self.srv.log("warn", "set_buf_md5", {ws = self.key, id = buf.id, client = sum, server = new_md5})
  end
  if patch_text then
    self:broadcast(conn, {name = "patch", id = buf.id, path = buf.path, patch = patch_text,
                          md5_before = before, md5_after = new_md5,
                          user_id = conn.id, username = conn.username})
  else
    -- binary: the others fetch the new bytes
    for _, c in pairs(self.conns) do
      if c ~= conn then
        local m = self:buf_json(buf, c)
        c:send(m)
      end
    end
  end
  if req_id ~= nil then
    self.srv:durable_reply(conn, '{"name":"ack","res_id":' .. ("%d"):format(req_id) .. '}\n')
  end
  self:chat(nil, ("%s overwrote %s"):format(conn.username, buf.path))
end

Workspace.set_buf = locked(set_buf)

function Workspace:chat(conn, data, req_id)
  local msg = {name = "msg", username = conn and conn.username or "server",
               user_id = conn and conn.id or 0, time = os.time(), data = data}
  self:broadcast(conn, msg)
  if conn then conn:ack(req_id) end
  local msgs = self.msgs
  msgs[#msgs + 1] = msg
  if #msgs > 20 then remove(msgs, 1) end
end

-- ---------------------------------------------------------- message handlers

local H = {}

local function get_buffer(conn, req_id, id)
  local buf = conn.ws.bufs[tonumber(id) or -1]
  if not buf or type(id) ~= "number" then
    conn:error(req_id, ("Buffer %s doesn't exist"):format(tostring(id)), false)
    return nil
  end
  return buf
end

-- text of a create_buf/set_buf -> bytes, encoding | nil (error sent)
local function incoming_text(conn, req_id, msg)
  local enc = msg.encoding
  if enc == nil then enc = "utf8" end
  if enc ~= "utf8" and enc ~= "base64" then
    conn:error(req_id, ("Unsupported encoding: %s"):format(tostring(enc)), false)
    return nil
  end
  if type(msg.buf) ~= "string" then
    conn:error(req_id, "buf must be a string", false)
    return nil
  end
  local text = msg.buf
  if enc == "base64" then
    local bytes, err = M.base64_decode(text)
    if not bytes then conn:error(req_id, err, false) return nil end
    text = bytes
  else
    text = strip_cr(text)
    if not valid_utf8(text) then
      conn:error(req_id, "Invalid UTF-8 in a utf8 buffer (send binary files as base64)", false)
      return nil
    end
  end
  if #text > conn.srv.max_buf_len then
    conn:error(req_id, ("Buffer is too big (%d bytes; the limit is %d)"):format(#text, conn.srv.max_buf_len), true)
    return nil
  end
  return text, enc
end

function H.get_buf(conn, req_id, msg)
  local buf = get_buffer(conn, req_id, msg.id)
  if buf then send_get_buf(buf, conn, req_id, 0) end
end

function H.create_buf(conn, req_id, msg)
  local ws = conn.ws
  local err = ws:path_clash(msg.path)
  if err then return conn:error(req_id, err, false) end
  local text, enc = incoming_text(conn, req_id, msg)
  if not text then return end
  ws:create_buf(conn, req_id, msg.path, text, enc)
  ws:delete_readme_if_untouched(conn, req_id)
end

function H.patch(conn, req_id, msg)
  local buf = get_buffer(conn, req_id, msg.id)
  if not buf then return end
  if type(msg.patch) ~= "string" then return conn:error(req_id, "patch must be a string", false) end
  local b, a = msg.md5_before, msg.md5_after
  conn.ws:patch(conn, req_id, buf, msg.patch, type(b) == "string" and b or nil,
                type(a) == "string" and a or nil)
end

function H.set_buf(conn, req_id, msg)
  local ws = conn.ws
  local buf = ws.bufs[tonumber(msg.id) or -1]
  if not buf then
    -- colab: an unknown id means create_buf
    if type(msg.path) ~= "string" then
      return conn:error(req_id, ("Buffer %s doesn't exist"):format(tostring(msg.id)), false)
    end
    return H.create_buf(conn, req_id, msg)
  end
  local text, enc = incoming_text(conn, req_id, msg)
  if not text then return end
  ws:set_buf(conn, req_id, buf, text, type(msg.md5) == "string" and msg.md5 or nil, enc)
end

function H.delete_buf(conn, req_id, msg)
  local buf = get_buffer(conn, req_id, msg.id)
  if buf then conn.ws:delete_buf(conn, req_id, buf, msg.unlink == true) end
end

function H.rename_buf(conn, req_id, msg)
  local ws = conn.ws
  local buf = get_buffer(conn, req_id, msg.id)
  if not buf then return end
  local err = ws:path_clash(msg.path, buf)
  if err then return conn:error(req_id, err, false) end
  local old = buf.path
  if old == msg.path then return conn:ack(req_id) end
  ws:index_path(buf, false)
  buf.path = msg.path
  ws:index_path(buf, true)
  ws.version = ws.version + 1
  ws:touch()
  ws:broadcast_all(conn, req_id, {name = "rename_buf", id = buf.id, old_path = old, path = buf.path,
                                  user_id = conn.id, username = conn.username})
  conn.srv.log("info", "rename_buf", {ws = ws.key, id = buf.id, old_path = old, path = buf.path, user = conn.username})
end

local function valid_ranges(ranges)
  if type(ranges) ~= "table" or #ranges == 0 then return nil end
  local out = {}
  for i, r in ipairs(ranges) do
    if type(r) ~= "table" or type(r[1]) ~= "number" or type(r[2]) ~= "number"
       or r[1] < 0 or r[2] < 0 or r[1] ~= floor(r[1]) or r[2] ~= floor(r[2]) then
      return nil
    end
    out[i] = r[1] <= r[2] and {r[1], r[2]} or {r[2], r[1]}
  end
  return out
end

function H.highlight(conn, req_id, msg)
  local ws = conn.ws
  local buf = get_buffer(conn, req_id, msg.id)
  if not buf then return end
  local ranges = valid_ranges(msg.ranges)
  if not ranges then return conn:error(req_id, "Invalid ranges", false) end
  local summon = (msg.ping and msg.ping ~= jsonl.null) or (msg.summon and msg.summon ~= jsonl.null) or false
  summon = summon and true or false
  local following = msg.following == true
  local key = encode({buf.id, ranges, summon, following})
  if conn.last_highlight == key then return conn:ack(req_id) end
  conn.last_highlight = key
  local hl = {name = "highlight", id = buf.id, user_id = conn.id, username = conn.username,
              ranges = ranges, ping = summon, summon = summon, following = following}
  if summon or not following then ws.last_highlight = hl end
  if type(msg.to) == "table" and #msg.to > 0 then
    local to = {}
    for _, u in ipairs(msg.to) do to[u] = true end
    local line = encode(hl) .. "\n"
    for _, c in pairs(ws.conns) do
      if c ~= conn and to[c.username] then c:write(line) end
    end
  else
    ws:broadcast(conn, hl)
  end
  conn:ack(req_id)
end

function H.saved(conn, req_id, msg)
  local buf = get_buffer(conn, req_id, msg.id)
  if not buf then return end
  conn.ws:broadcast(conn, {name = "saved", id = buf.id, user_id = conn.id})
  conn:ack(req_id)
end

function H.msg(conn, req_id, msg)
  if type(msg.data) ~= "string" then return conn:error(req_id, "msg data must be a string", false) end
  conn.ws:chat(conn, msg.data, req_id)
end

function H.datamsg(conn, req_id, msg)
  local data = {name = "datamsg", user_id = conn.id, data = msg.data}
  local ws = conn.ws
  if type(msg.to) == "table" and #msg.to > 0 then
    local line = encode(data) .. "\n"
    for _, uid in ipairs(msg.to) do
      local c = ws.conns[tonumber(uid) or -1]
      if c then c:write(line) end
    end
  else
    ws:broadcast(conn, data)
  end
  conn:ack(req_id)
end

function H.ping(conn, req_id)
  conn:send({name = "pong", res_id = req_id})
end

function H.pong() end
function H.ack() end

function H.set_temp_data(conn, req_id, msg)
  if type(msg.data) ~= "table" then return conn:error(req_id, "data must be an object", false) end
  -- it is sent again inside every room_info: bounded in size and depth
  local ok, line = pcall(encode, {{{{msg.data}}}})
  if not ok or #line > 65536 then return conn:error(req_id, "temp data too big or too deep", false) end
  local ws = conn.ws
  for k, v in pairs(msg.data) do ws.temp_data[k] = v end
  ws:broadcast(conn, {name = "set_temp_data", data = msg.data, user_id = conn.id, username = conn.username})
  conn:ack(req_id)
end

function H.delete_temp_data(conn, req_id, msg)
  if type(msg.data) ~= "table" then return conn:error(req_id, "data must be a list of keys", false) end
  local ws = conn.ws
  for _, k in ipairs(msg.data) do if type(k) == "string" then ws.temp_data[k] = nil end end
  ws:broadcast(conn, {name = "delete_temp_data", data = msg.data, user_id = conn.id, username = conn.username})
  conn:ack(req_id)
end

function H.request_perms(conn, req_id, msg)
  if not valid_site_perms(msg.perms) then return conn:error(req_id, "Invalid perms", false) end
  local t = coru.now()
  conn.rp_wait = conn.rp_wait or 1000
  if conn.rp_last and t - conn.rp_last < conn.rp_wait then
    conn.rp_wait = conn.rp_wait * 2
    return conn:error(req_id, "You are requesting permissions too often. Please wait.", false)
  end
  conn.rp_last = t
  local line = encode({name = "request_perms", user_id = conn.id, perms = msg.perms}) .. "\n"
  for _, c in pairs(conn.ws.conns) do
    if c ~= conn and c.perms.perms then c:write(line) end
  end
  conn:ack(req_id)
end

function H.perms(conn, req_id, msg)
  local ws = conn.ws
  local target = ws.conns[tonumber(msg.user_id) or -1]
  local action = msg.action
  if not target then return conn:error(req_id, ("User %s not found"):format(tostring(msg.user_id)), false) end
  if action ~= "add" and action ~= "remove" and action ~= "set" and action ~= "reject" then
    return conn:error(req_id, "Invalid action", false)
  end
  if action ~= "reject" and not valid_site_perms(msg.perms) then
    return conn:error(req_id, "Invalid perms", false)
  end
  if target.is_anon then return conn:error(req_id, "Anonymous users' permissions can't be changed", false) end
  if action == "reject" then
    target:send({name = "perms", action = "reject", user_id = target.id, perms = list({})})
    return conn:ack(req_id)
  end
  local cur = {}
  for _, p in ipairs(target.site_perms) do cur[p] = true end
  if action == "set" then cur = {} end
  for _, p in ipairs(msg.perms) do cur[p] = action ~= "remove" end
  local site = {}
  for _, p in ipairs(SITE_ORDER) do if cur[p] then site[#site + 1] = p end end
  ws.perms[target.username] = site
  ws:touch()
  for _, c in pairs(ws.conns) do
    if c.username == target.username and not c.is_anon then c:set_perms(site) end
  end
  ws:broadcast(nil, {name = "perms", action = action, user_id = target.id, perms = list(msg.perms)})
  ws:broadcast(nil, {name = "user_info", action = "update", user_id = target.id,
                     user_info = target:to_json()})
  conn:ack(req_id)
end

function H.kick(conn, req_id, msg)
  local target = conn.ws.conns[tonumber(msg.user_id) or -1]
  if not target then return conn:error(req_id, ("User %s not found"):format(tostring(msg.user_id)), false) end
  target:disconnect("Kicked by " .. conn.username)
  conn:ack(req_id)
end


function Conn:set_perms(site)
  self.site_perms = site
  self.perms_list, self.perms = M.expand_perms(site, self.is_anon)
end

-- ---------------------------------------------------------- auth and join

local function valid_version(v)
  local n = tonumber(v)
  return n == 0.11 or n == 1.0
end

-- site perms of a user in a workspace (nil: no access)
function Server:perms_for(ws_key, owner, username, is_anon, ws)
  local wcfg = (self.cfg.workspaces or {})[ws_key] or {}
  if is_anon then
    local p = wcfg.anonymous
    if p == nil then p = self.cfg.anonymous end
    if not p or #p == 0 then return nil end
    return p
  end
  if username == owner then return {"view_room", "request_perms", "edit_room", "admin_room"} end
  local p = (ws and ws.perms[username]) or (wcfg.perms or {})[username]
  if p == nil then
    local u = (self.cfg.users or {})[username]
    p = u and u.perms
  end
  if p == nil then p = self.cfg.default_perms or {"view_room", "edit_room"} end
  if #p == 0 then return nil end
  return p
end

function Server:auth_user(msg)
  if msg.username == "" then return "", true end
  local users = self.cfg.users or {}
  local name = msg.username
  if type(name) ~= "string" then
    for n, u in pairs(users) do
      if u.api_key ~= nil and u.api_key == msg.api_key then name = n break end
    end
  end
  local u = type(name) == "string" and users[name]
  if not u or type(msg.secret) ~= "string" or msg.secret ~= u.secret then
    return nil, "Invalid username or secret"
  end
  return name, false
end

function Server:workspace(key) return self.workspaces[key] end

function Server:open_workspace(owner, name, conn)
  local key = owner .. "/" .. name
  local ws = self.workspaces[key]
  if ws then return ws end
  local known = (self.cfg.workspaces or {})[key]
  if not known and not (self.create_workspaces and conn.username == owner and not conn.is_anon) then
    return nil, "Workspace not found"
  end
  ws = new_workspace(self, owner, name)
  self.workspaces[key] = ws
  if self.readme then
    local buf = ws:create_buf(nil, nil, "FLOOBITS_README.md", README, "utf8")
    ws.readme_id, ws.readme_md5 = buf.id, buf.md5
  end
  self:mark_meta(ws)
  self.log("info", "workspace_created", {ws = key, by = conn.username})
  return ws
end

function Conn:room_info(req_id)
  local ws = self.ws
  local bufs, users = {}, {}
  for id, b in pairs(ws.bufs) do
    bufs[tostring(id)] = {id = id, path = b.path, md5 = b.md5, encoding = b.encoding}
  end
  for id, c in pairs(ws.conns) do users[tostring(id)] = c:to_json() end
  local anon = self.srv:perms_for(ws.key, ws.owner, "", true, ws) or {}
  local info = {
    name = "room_info", res_id = req_id, user_id = self.id, room_name = ws.name, owner = ws.owner,
    perms = list(self.perms_list), anon_perms = list((M.expand_perms(anon, true))),
    bufs = bufs, tree = ws:tree(), users = users, terms = {}, temp_data = ws.temp_data,
    created_at = ws.created_at, updated_at = ws.updated_at, max_size = self.srv.max_size,
    secret = false, server_id = "coru-floo-server", active = true, version = ws.version,
  }
  self:write(encode(info) .. "\n")
end

-- the first line: agent auth -> true | nil (the connection is closed)
function Conn:join(msg)
  local srv = self.srv
  local req_id = msg.req_id
  local owner, name = msg.room_owner, msg.room
  if owner == nil and type(msg.path) == "string" then owner, name = msg.path:match("^([^/]+)/([^/]+)$") end
  if (type(msg.username) ~= "string" and type(msg.api_key) ~= "string") or msg.secret == nil
     or msg.version == nil or type(owner) ~= "string" or type(name) ~= "string" then
    return self:disconnect("Bad auth JSON")
  end
  if not valid_version(msg.version) then return self:disconnect("Unsupported client version") end
  if not valid_name(owner) or not valid_name(name) then return self:disconnect("Workspace not found") end
  local user, is_anon = srv:auth_user(msg)
  if not user then
    srv.log("warn", "auth_failed", {conn = self.id, user = tostring(msg.username), peer = self.peer})
    return self:disconnect(is_anon)
  end
  self.is_anon = is_anon
  self.username = is_anon and ("anon_" .. self.id) or user
  self.client = type(msg.client) == "string" and msg.client:sub(1, 30) or ""
  self.platform = type(msg.platform) == "string" and msg.platform:sub(1, 30) or ""
  self.version = tonumber(msg.version)
  self.color = COLORS[(self.id - 1) % #COLORS + 1]
  self.connected_at = now_ms()
  if type(msg.supported_encodings) == "table" then
    for _, e in ipairs(msg.supported_encodings) do if e == "base64" then self.encodings.base64 = true end end
  end
  if srv.require_tls and not self.is_tls then
    return self:disconnect("This workspace requires SSL and you're on an unencrypted connection.")
  end
  local ws, err = srv:open_workspace(owner, name, self)
  if not ws then return self:disconnect(err) end
  local site = srv:perms_for(ws.key, owner, self.username, is_anon, ws)
  if not site then return self:disconnect("user doesn't have permissions") end
  self:set_perms(site)
  self.ws = ws
  ws.conns[self.id] = self
  ws.nconns = ws.nconns + 1
  self:room_info(req_id)
  ws:broadcast(self, {name = "join", user_id = self.id, username = self.username, client = self.client,
                      platform = self.platform, perms = list(self.perms_list), is_anon = is_anon,
                      color = self.color, gravatar = "", tags = list({}), version = self.version,
                      connected_at = self.connected_at})
  for _, m in ipairs(ws.msgs) do self:send(m) end
  if ws.last_highlight and ws.bufs[ws.last_highlight.id] then self:send(ws.last_highlight) end
  srv.log("info", "join", {conn = self.id, user = self.username, ws = ws.key, client = self.client,
                          anon = is_anon, tls = self.is_tls or false})
  return true
end

-- ---------------------------------------------------------- the read loop

function Conn:handle(msg)
  local req_id = msg.req_id
  if req_id ~= nil then
    if type(req_id) ~= "number" or req_id ~= req_id or req_id == huge or req_id <= self.last_req_id
       or req_id ~= floor(req_id) then
      return self:drop("bad req_id")
    end
    self.last_req_id = req_id
  end
  local name = msg.name
  if name ~= "ack" and not (type(name) == "string" and self.perms[name]) then
    return self:disconnect("You are not allowed to " .. tostring(name))
  end
  local h = H[name]
  if not h then
    self:error(req_id, "Unknown action", false)
    return self:disconnect("Unknown action: " .. name)
  end
  local ok, err = pcall(h, self, req_id, msg)
  if not ok then
    self.srv.log("error", "handler_failed", {conn = self.id, name = name, err = tostring(err)})
    self:error(req_id, "Server error: " .. tostring(err), false)
  end
end

local function decode_line(line)
  local msg = jsonl.decode(line)
  if type(msg) == "table" then return msg end
  return nil
end

function Server:serve(stream, is_tls)
  local conn = self:new_conn(stream, is_tls)
  local peer = stream.getpeername and stream:getpeername()
  conn.peer = peer and (tostring(peer.ip) .. ":" .. tostring(peer.port)) or nil
  stream:set_max_line(self.max_line)
  self.log("debug", "connect", {conn = conn.id, peer = conn.peer, tls = is_tls})
  stream:settimeouts(nil, nil, self.auth_timeout)
  local line, err = stream:read_line()
  if not line then
    if err == "eof" or err == "closed" then conn:close(err) else conn:drop(err == "timeout" and "auth timeout" or tostring(err)) end
    return
  end
  local msg = decode_line(line)
  if not msg then return conn:drop("invalid JSON") end
  local req_id = msg.req_id
  if req_id ~= nil and (type(req_id) ~= "number" or req_id ~= floor(req_id)) then return conn:drop("bad req_id") end
  conn.last_req_id = req_id or -huge
  local n = msg.name
  if n == "request_credentials" or n == "supply_credentials" or n == "create_user"
     or n == "slave" or n == "replicate" then
    return conn:disconnect("Unsupported connection type: " .. n)
  end
  if not conn:join(msg) then return self:wait_closed(conn) end
  stream:settimeouts(nil, nil, self.heartbeat)
  while not conn.closed do
    line, err = stream:read_line()
    if line then
      conn.pings = 0
      msg = decode_line(line)
      if not msg then conn:drop("invalid JSON") break end
      conn:handle(msg)
    elseif err == "timeout" then
      if conn.pings >= 2 then
        conn:disconnect("Connection timed out")
      else
        conn.pings = conn.pings + 1
        conn.out_req_id = conn.out_req_id + 1
        conn:write('{"name":"ping","req_id":' .. conn.out_req_id .. '}\n')
      end
    else
      if err == "eof" or err == "closed" then conn:close(err) else conn:drop(tostring(err)) end
      break
    end
  end
  self:wait_closed(conn)
end

-- the handler must not return (serve would close the stream) before a
-- pending disconnect message is written
function Server:wait_closed(conn)
  local s = conn.stream
  if s:is_closing() then return end
  s:settimeouts(nil, nil, 0)
  while not s:is_closing() do
    local line, err = s:read_line()
    if not line and err ~= "line too long" then break end
  end
end

-- ---------------------------------------------------------- start/close

local function load_all(srv)
  local owners = coru.fs_scandir(srv.data_dir)
  if not owners then return end
  while true do
    local owner, ty = coru.fs_scandir_next(owners)
    if not owner then break end
    if valid_name(owner) and (ty == "directory" or ty == "unknown") then
      local names = coru.fs_scandir(srv.data_dir .. "/" .. owner)
      while names do
        local name = coru.fs_scandir_next(names)
        if not name then break end
        if valid_name(name) and fs.exists(ws_dir(srv, owner, name) .. "/workspace.json") then
          local ws, err = load_workspace(srv, owner, name)
          if ws and replay_log(srv, ws) > 0 and not srv:compact(ws) then
            ws, err = nil, "cannot write the buffers replayed from changes.log"
          end
          if ws then
            srv.workspaces[ws.key] = ws
            srv.log("info", "workspace_loaded", {ws = ws.key, bufs = ws.nbufs})
          else
            srv.log("error", "workspace_load_failed", {ws = owner .. "/" .. name, err = err})
          end
        end
      end
    end
  end
end

-- start(config) -> server | nil, message. Task only.
function M.start(cfg)
  if not coru.current() then error("coru.floo.server.start: needs a running task", 2) end
  local err = check_config(cfg)
  if err then return nil, err end
  local o = setmetatable({}, {__index = function(_, k)
    local v = cfg[k]
    if v == nil then v = M.DEFAULTS[k] end
    return v
  end})
  local srv = setmetatable({
    cfg = cfg, data_dir = o.data_dir, max_line = o.max_line, max_buf_len = o.max_buf_len,
    max_size = 100000000, heartbeat = o.heartbeat, auth_timeout = o.auth_timeout,
    max_write_queue = o.max_write_queue, readme = o.readme, require_tls = o.require_tls,
    create_workspaces = o.create_workspaces, flush_delay = o.flush_delay,
    log = cfg.logger or make_logger(o.log_level, cfg.log_file),
    workspaces = {}, conns = {}, nconns = 0, next_conn = 0,
    dirty = {}, dirty_meta = {}, dirty_log = {}, pending = {}, flushes = 0, syncs = 0, patches = 0,
  }, Server)
  local ok, merr = fs.mkdirp(srv.data_dir)
  if not ok then return nil, "data_dir: " .. tostring(merr) end
  srv:make_out()
  load_all(srv)
  srv.flusher_task = coru.spawn(Server.flusher, srv)
  local serve = function(tls) return function(stream) srv:serve(stream, tls) end end
  if o.port ~= false then
    local l, lerr = coru.tcp.listen(o.host, o.port, serve(false), {backlog = 1024})
    if not l then srv:close() return nil, ("listen %s:%s: %s"):format(o.host, tostring(o.port), lerr) end
    srv.listener = l
    srv.port = l:getsockname().port
  end
  if cfg.tls then
    local t = cfg.tls
    local l, lerr = coru.tls.listen(t.host or o.host, t.port or 3448, serve(true),
      {cert = t.cert, key = t.key, ca = t.ca, backlog = 1024,
       on_handshake_error = function(msg) srv.log("info", "tls_handshake_failed", {err = msg}) end})
    if not l then srv:close() return nil, "tls listen: " .. tostring(lerr) end
    srv.tls_listener = l
    srv.tls_port = l:getsockname().port
  end
  srv.log("info", "listening", {host = o.host, port = srv.port, tls_port = srv.tls_port, data_dir = srv.data_dir,
                                workspaces = (function() local n = 0 for _ in pairs(srv.workspaces) do n = n + 1 end return n end)()})
  return srv
end

-- close(): stop listening, save every buffer, close every client (without
-- a disconnect message, as colab does on SIGTERM). Task only.
function Server:close()
  if self.closed then return end
  self.closed = true
  if self.listener and not self.listener:is_closing() then self.listener:close() end
  if self.tls_listener and not self.tls_listener:is_closing() then self.tls_listener:close() end
  local conns = {}
  for c in pairs(self.conns) do conns[#conns + 1] = c end
  for _, c in ipairs(conns) do c:close("server shutdown") end
  self.closing = true
  self:wake_flusher()
  if self.flusher_task then self.flusher_task:await() end
  for _, ws in pairs(self.workspaces) do
    for _, buf in pairs(ws.bufs) do
      for c, entry in pairs(buf.timers) do entry.timer:close(); c.timers[buf] = nil end
      buf.timers = {}
    end
    if (ws.log_bytes or 0) > 0 then self:compact(ws) end
    if ws.log_fd then coru.fs_close(ws.log_fd) ws.log_fd = nil end
  end
  if self.out_check and not self.out_check:is_closing() then self.out_check:close() end
  self.log("info", "closed", {flushes = self.flushes, syncs = self.syncs, patches = self.patches})
end

-- ---------------------------------------------------------- command line

local USAGE = [[
usage: coru-floo-server [options]
  -c, --config FILE     JSON configuration (users, secrets, perms, TLS, ...)
  -d, --data DIR        where workspaces live (default ./floo-data)
  -H, --host HOST       address to listen on (default 127.0.0.1)
  -p, --port PORT       plain TCP port (default 3148; 0 picks one)
      --tls-port PORT   TLS port (with --cert and --key)
      --cert FILE       TLS certificate chain (PEM)
      --key FILE        TLS private key (PEM)
      --no-plain        no plain TCP listener
  -l, --log-level LVL   debug, info, warn, error, none (default info)
  -h, --help            this text
The server prints "listening" with its ports as a JSON log line on stderr.
SIGTERM and SIGINT save every buffer and exit 0.]]

local function parse_args(argv)
  local cfg, i = {}, 1
  local function val()
    i = i + 1
    local v = argv[i]
    if v == nil then error(("option %s needs a value"):format(argv[i - 1]), 0) end
    return v
  end
  local config_file
  local over = {}
  while argv[i] do
    local a = argv[i]
    if a == "-c" or a == "--config" then config_file = val()
    elseif a == "-d" or a == "--data" then over.data_dir = val()
    elseif a == "-H" or a == "--host" then over.host = val()
    elseif a == "-p" or a == "--port" then over.port = tonumber(val()) or error("--port: a number", 0)
    elseif a == "--tls-port" then over.tls_port = tonumber(val()) or error("--tls-port: a number", 0)
    elseif a == "--cert" then over.cert = val()
    elseif a == "--key" then over.key = val()
    elseif a == "--no-plain" then over.port = false
    elseif a == "-l" or a == "--log-level" then over.log_level = val()
    elseif a == "-h" or a == "--help" then return nil, USAGE
    else error(("unknown option %s\n%s"):format(a, USAGE), 0) end
    i = i + 1
  end
  if config_file then
    local c, err = M.load_config(config_file)
    if not c then error(err, 0) end
    cfg = c
  end
  for _, k in ipairs({"data_dir", "host", "port", "log_level"}) do
    if over[k] ~= nil then cfg[k] = over[k] end
  end
  if over.cert or over.key or over.tls_port then
    cfg.tls = cfg.tls or {}
    cfg.tls.cert = over.cert or cfg.tls.cert
    cfg.tls.key = over.key or cfg.tls.key
    cfg.tls.port = over.tls_port or cfg.tls.port
  end
  return cfg
end

-- main(argv): run until SIGTERM/SIGINT. Task only (the host's main chunk).
function M.main(argv)
  local ok, cfg, usage = pcall(parse_args, argv or {})
  if not ok then io.stderr:write("coru-floo-server: ", tostring(cfg), "\n") return 2 end
  if not cfg then io.stdout:write(usage, "\n") return 0 end
  local srv, err = M.start(cfg)
  if not srv then io.stderr:write("coru-floo-server: ", tostring(err), "\n") return 1 end
  local signal = require "coru.signal"
  local waiters = {}
  local got = coru.channel(2)
  for i, sig in ipairs({"sigterm", "sigint"}) do
    waiters[i] = coru.spawn(function() got:send(signal.wait(sig)) end)
  end
  local sig = got:recv()
  for _, w in ipairs(waiters) do w:cancel("shutdown") end
  srv.log("info", "signal", {signal = sig})
  srv:close()
  return 0
end

return M
