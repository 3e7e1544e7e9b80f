-- coru.floo: a client session of the Floobits collaborative-editing
-- protocol (../shared/FLOOBITS-PROTOCOL.md; docs/floo.md is the guide).
--
--   local s, err = floo.connect{host, port, tls, username, secret, owner, workspace}
--   s:edit(id, new_text) / s:create_buf(path, text) / s:on("patch", fn) ...
--
-- How it keeps in sync. Per buffer it holds `confirmed` (the last text the
-- server confirmed, with its md5) and `text` (confirmed plus local edits not
-- yet acknowledged). Every change to that state happens in the connection's
-- reader, in wire order (jsonl immediate handlers and on_reply), so an ack
-- and the patches around it are applied in the order the server made them.
-- User event handlers run later, one at a time, in the session's own
-- dispatcher. One patch per buffer is in flight at a time; none while the
-- buffer waits for a get_buf.
local coru = require "coru"
local jsonl = require "coru.jsonl"
local spawn, current, now = coru.spawn, coru.current, coru.now
local type, pairs, ipairs, tostring, error, pcall, select = type, pairs, ipairs, tostring, error, pcall, select
local floor, min, random = math.floor, math.min, math.random
local concat = table.concat
local yield = coroutine.yield

local M = {}

-- The server's patch tuning (colab:lib/settings.js): fuzzy application is
-- narrow; applying ours the same way predicts the server's result.
M.DMP_OPTIONS = {match_threshold = 0.375, match_distance = 100, patch_delete_threshold = 0.375}

-- Carrying local edits over onto a new server text happens only here, so
-- it may search harder: the spot may have moved far (a long disconnection).
M.REBASE_OPTIONS = {match_threshold = 0.5, match_distance = 100000, patch_delete_threshold = 0.5}

local D_, DR_, md5_
local function D()
  if not D_ then D_ = require("coru.dmp").new(M.DMP_OPTIONS) end
  return D_
end
local function DR()
  if not DR_ then DR_ = require("coru.dmp").new(M.REBASE_OPTIONS) end
  return DR_
end
local function md5(s)
  if not md5_ then md5_ = coru.md5 end
  return md5_(s)
end

-- Site perms expand into per-message perms (colab:lib/perms.js).
M.SITE_PERMS = {
  view_room = {"get_buf", "ping", "pong", "webrtc"},
  request_perms = {"get_buf", "request_perms"},
  edit_room = {"patch", "get_buf", "set_buf", "create_buf", "delete_buf", "rename_buf", "set_temp_data",
               "delete_temp_data", "highlight", "msg", "datamsg", "create_term", "term_stdin", "delete_term",
               "update_term", "term_stdout", "repo", "saved"},
  admin_room = {"kick", "pull_repo", "perms", "solicit"},
}

-- ------------------------------------------------------------ base64

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local b64enc, b64dec = {}, {}
for i = 1, 64 do
  local c = B64:sub(i, i)
  b64enc[i - 1] = c
  b64dec[c:byte()] = i - 1
end

function M.base64_encode(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    out[#out + 1] = b64enc[floor(v / 262144)] .. b64enc[floor(v / 4096) % 64] ..
      (b and b64enc[floor(v / 64) % 64] or "=") .. (c and b64enc[v % 64] or "=")
  end
  return concat(out)
end

-- -> bytes | nil, "invalid base64"
function M.base64_decode(s)
  s = s:gsub("[\r\n]", "")
  if #s % 4 ~= 0 then return nil, "invalid base64" end
  local out = {}
  for i = 1, #s, 4 do
    local c1, c2, c3, c4 = s:byte(i, i + 3)
    local a, b = b64dec[c1], b64dec[c2]
    local c = c3 == 61 and 0 or b64dec[c3]
    local d = c4 == 61 and 0 or b64dec[c4]
    if not (a and b and c and d) or (c3 == 61 and c4 ~= 61) or ((c3 == 61 or c4 == 61) and i + 3 < #s) then
      return nil, "invalid base64"
    end
    local v = a * 262144 + b * 4096 + c * 64 + d
    local bytes = string.char(floor(v / 65536), floor(v / 256) % 256, v % 256)
    if c3 == 61 then bytes = bytes:sub(1, 1) elseif c4 == 61 then bytes = bytes:sub(1, 2) end
    out[#out + 1] = bytes
  end
  return concat(out)
end

-- ------------------------------------------------------------ helpers

local function all_true(res)
  for i = 1, #res do if not res[i] then return false end end
  return true
end

-- UTF-16 code units of a UTF-8 string (the unit of patch offsets and
-- highlight ranges): one per character, two for one outside the BMP.
function M.utf16_len(s)
  local _, cont = s:gsub("[\128-\191]", "")
  local _, astral = s:gsub("[\240-\247]", "")
  return #s - cont + astral
end

-- nil if s is valid UTF-8, else the byte position of the first bad sequence
function M.utf8_error(s)
  local find, byte = s.find, s.byte
  local i = find(s, "[\128-\255]")
  while i do
    local c = byte(s, i)
    local n
    if c >= 0xC2 and c <= 0xDF then n = 1
    elseif c >= 0xE0 and c <= 0xEF then n = 2
    elseif c >= 0xF0 and c <= 0xF4 then n = 3
    else return i end
    local c2 = byte(s, i + 1)
    local lo, hi = 0x80, 0xBF
    if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F
    elseif c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    if not c2 or c2 < lo or c2 > hi then return i end
    for k = 2, n do
      local ck = byte(s, i + k)
      if not ck or ck < 0x80 or ck > 0xBF then return i end
    end
    i = find(s, "[\128-\255]", i + n + 1)
  end
  return nil
end

local function check_utf8(s)
  local bad = M.utf8_error(s)
  if bad then return nil, ("invalid UTF-8 at byte %d"):format(bad) end
  return true
end

-- dmp calls that cannot raise into the reader: nil, nil, err on failure
-- (a text that is not valid UTF-8 from the server, say)
local function try_apply(ps, text, d)
  d = d or D()
  local ok, t, res = pcall(d.patch_apply, d, ps, text)
  if not ok then return nil, nil, t end
  return t, res
end

local function try_make(a, b)
  local d = D()
  local ok, ps = pcall(d.patch_make, d, a, b)
  if not ok then return nil, ps end
  return ps
end

local function strip_cr(s) return (s:gsub("\r\n", "\n"):gsub("\r", "\n")) end

-- A path the server accepts (colab:lib/room.js): not empty, no leading or
-- trailing "/", no "//", no ".", ".." or empty component.
function M.valid_path(p)
  if type(p) ~= "string" or p == "" then return false end
  if p:sub(1, 1) == "/" or p:sub(-1) == "/" or p:find("//", 1, true) then return false end
  for comp in p:gmatch("[^/]+") do
    if comp == "." or comp == ".." then return false end
  end
  return true
end

local Session = {}
Session.__index = Session

local EVENTS = {join = 1, part = 1, patch = 1, create_buf = 1, delete_buf = 1, rename_buf = 1,
                highlight = 1, saved = 1, msg = 1, perms = 1, resync = 1, reconnect = 1, error = 1,
                disconnect = 1, datamsg = 1, request_perms = 1, user_info = 1}

-- ------------------------------------------------------------ events

local function report(err) spawn(error, err, 0) end

local function emit(self, name, ev)
  if not self.handlers[name] or #self.handlers[name] == 0 then return end
  local q = self.events
  q.tail = q.tail + 1
  q[q.tail] = {name, ev}
  local w = self.ev_waiting
  if w then self.ev_waiting = nil w() end
end

local function event_loop(self)
  local q = self.events
  while true do
    if q.head <= q.tail then
      local item = q[q.head]
      q[q.head] = nil
      if q.head == q.tail then q.head, q.tail = 1, 0 else q.head = q.head + 1 end
      local hs = self.handlers[item[1]]
      if hs then
        for i = 1, #hs do
          local ok, e = pcall(hs[i], item[2], self)
          if not ok then report(e) end
        end
      end
    elseif self.ended then
      return
    else
      yield(function(resume) self.ev_waiting = resume end)
    end
  end
end

local function bad_message(self, what, msg)
  emit(self, "error", {msg = "bad message from the server: " .. what, local_error = true, message = msg})
end

-- Wake every task waiting for a state change (connected, buffer synced).
local function notify(self)
  local ws = self.state_waiters
  if #ws == 0 then return end
  self.state_waiters = {}
  for i = 1, #ws do ws[i]() end
end

local function wait_state(self)
  yield(function(resume) self.state_waiters[#self.state_waiters + 1] = resume end)
end

local function can_send(self)
  return self.conn ~= nil and self.joined and not self.conn:is_closed()
end

local function need_perm(self, name)
  if not self.perms[name] then
    return nil, ("permission denied: '%s' needs a permission this session lacks"):format(name)
  end
  return true
end

local function check_id(id, fname)
  if type(id) ~= "number" then
    error(("coru.floo: %s: bad argument #1 (buffer id expected, got %s)"):format(fname, type(id)), 3)
  end
end

-- ------------------------------------------------------------ buffer state

local function new_buf(self, m)
  local b = {id = m.id, path = m.path, md5 = m.md5, encoding = m.encoding or "utf8",
             text = nil, confirmed = nil, _ver = 0, _waiters = {}}
  self.bufs[m.id] = b
  return b
end

-- The text of a get_buf or create_buf message, decoded; nil, why if bad.
local function msg_text(m)
  if type(m.buf) ~= "string" then return nil, "'buf' is not a string" end
  if m.encoding == "base64" then
    local bytes = M.base64_decode(m.buf)
    if not bytes then return nil, "'buf' is not valid base64" end
    return bytes
  end
  return m.buf
end

-- Local edits (text vs confirmed) carried onto a new confirmed text.
-- Whether text holds the change of a patch whose ack was lost with the
-- connection, the server's text having changed since: for every hunk, its
-- after-image (the new text with its context), or the new text with the
-- context of one side only (someone typed right next to it), occurs in
-- text more often than before the patch. Undecided counts as no (the edit
-- is then carried over again).
local function count(hay, needle)
  local n, i = 0, 1
  while true do
    local f = hay:find(needle, i, true)
    if not f then return n end
    n, i = n + 1, f + 1
  end
end

local function hunk_in(hunk, text, before)
  local diffs = hunk.diffs or {}
  local parts, inserted = {}, false
  for i, d in ipairs(diffs) do
    if d[1] >= 0 then parts[#parts + 1] = {d[2], d[1] == 0 and (i == 1 or i == #diffs)} end
    if d[1] == 1 and d[2] ~= "" then inserted = true end
  end
  local function image(skip_first, skip_last)
    local out = {}
    for i, p in ipairs(parts) do
      if not ((skip_first and i == 1 and p[2]) or (skip_last and i == #parts and p[2])) then out[#out + 1] = p[1] end
    end
    return concat(out)
  end
  local cands = {image(false, false)}
  if inserted then cands[2], cands[3] = image(true, false), image(false, true) end
  for _, c in ipairs(cands) do
    if #c >= 3 and count(text, c) > count(before, c) then return true end
  end
  return false
end

local function holds_patch(inf, text)
  if not inf.base or type(inf.ps) ~= "table" or #inf.ps == 0 then return false end
  for _, hunk in ipairs(inf.ps) do
    if not hunk_in(hunk, text, inf.base) then return false end
  end
  return true
end

local LOST = "edit lost: it conflicted with the server's text (see the resync and error events)"

local function rebase(self, b, old_conf, old_text, new_conf)
  if old_text == nil or old_conf == nil or old_text == old_conf or b.encoding == "base64" then
    return new_conf
  end
  local ps = try_make(old_conf, old_text)
  local t, res
  -- where the server would put them first (placement by location, as the
  -- confirmed text was patched); a wide search only if that fails
  if ps then t, res = try_apply(ps, new_conf) end
  if ps and not (t and all_true(res)) then
    local t2, res2 = try_apply(ps, new_conf, DR())
    if t2 and all_true(res2) then t, res = t2, res2 end
  end
  if not t then t, res = new_conf, {false} end
  if not all_true(res) then
    emit(self, "error", {msg = ("local edits to %s did not all apply on the server's text; the parts that did not were dropped"):format(b.path),
                         local_error = true, id = b.id})
    -- the edits waiting for an ack are not all there any more: say so
    -- rather than report them acknowledged
    b._lost = true
    local ws = b._waiters
    b._waiters = {}
    for _, w in ipairs(ws) do w(nil, LOST) end
  end
  return t
end

-- Replace the confirmed text with the server's (a get_buf reply).
local function apply_get_buf(self, b, m, why)
  local text, err = msg_text(m)
  if not text or type(m.md5) ~= "string" then
    bad_message(self, "get_buf: " .. (err or "'md5' is not a string"), m)
    return false
  end
  if md5(text) ~= m.md5 then
    emit(self, "error", {msg = ("get_buf for %s: the server's md5 does not match its text"):format(tostring(b.path)),
                         local_error = true, id = b.id})
  end
  local old_conf, old_text = b.confirmed, b.text
  -- a server that acks after other messages may send its text with our
  -- in-flight patch already in: then the ack must not apply it again, and
  -- the local edits to carry over start from that text
  local base = old_conf
  local inf = b._inflight
  if inf and not inf.applied and old_conf ~= nil then
    local cand, sum = inf.target, inf.md5_after
    if b._ver ~= inf.ver then
      cand = try_apply(inf.ps, old_conf)
      sum = cand and md5(cand)
    end
    if cand and (sum == m.md5 or (inf.dead and holds_patch(inf, text))) then
      inf.applied = true
      base = cand
    end
  end
  if inf and inf.dead then b._inflight = nil end
  if type(m.path) == "string" then b.path = m.path end
  if m.encoding == "utf8" or m.encoding == "base64" then b.encoding = m.encoding end
  b.confirmed, b.md5 = text, m.md5
  b._ver = b._ver + 1
  local lost = b._drop_local
  b._drop_local = nil
  if lost then b.text = text else b.text = rebase(self, b, base, old_text, text) end
  b.syncing = nil
  notify(self)
  if old_conf ~= nil then
    emit(self, "resync", {id = b.id, path = b.path, old = old_text, text = b.text, reason = why})
  end
  return true
end

local resync

-- Fetch the server's text of b (once at a time). Patches that arrive
-- meanwhile are skipped: the reply includes them.
local function fetch(self, b, why, tries)
  local conn = self.conn
  for _ = 1, tries or 4 do
    if not can_send(self) or self.conn ~= conn then return nil, "disconnected" end
    local r, err = conn:request({name = "get_buf", id = b.id}, {
      timeout = self.opts.request_timeout or 10000,
      expect = function(rep) return rep.name == "error" or (rep.name == "get_buf" and rep.id == b.id) end,
      on_reply = function(rep) if rep.name == "get_buf" then apply_get_buf(self, b, rep, why) end end,
    })
    if r and r.name == "get_buf" then return b end
    if r and r.name == "error" then
      b.syncing = nil
      notify(self)
      return nil, "server error: " .. tostring(r.msg)
    end
    if err ~= "timeout" then return nil, err end
    -- a get_buf reply can be cancelled by the server (§7.8): ask again
  end
  return nil, "timeout"
end

resync = function(self, b, why)
  if b.syncing then return end
  b.syncing = true
  if not can_send(self) then return end    -- the re-join fetches it
  spawn(function()
    local ok, err = fetch(self, b, why)
    if not ok and err ~= "disconnected" and self.bufs[b.id] == b then
      b.syncing = nil
      notify(self)
      emit(self, "error", {msg = ("could not resync %s: %s"):format(tostring(b.path), err), local_error = true, id = b.id})
    end
  end)
end

-- ------------------------------------------------------------ server messages (reader, wire order)

local function user_of(self, m)
  local u = self.users[m.user_id]
  return m.username or (u and u.username)
end

local H = {}

function H.patch(self, m)
  if type(m.id) ~= "number" then return bad_message(self, "patch: 'id' is not a number", m) end
  local b = self.bufs[m.id]
  if not b then return bad_message(self, "patch for unknown buffer " .. m.id, m) end
  if type(m.patch) ~= "string" or type(m.md5_before) ~= "string" or type(m.md5_after) ~= "string" then
    bad_message(self, "patch: 'patch', 'md5_before' or 'md5_after' is not a string", m)
    return resync(self, b, "bad patch message")
  end
  local ev = {id = b.id, path = b.path, user_id = m.user_id, username = user_of(self, m), patch = m.patch}
  if b.confirmed == nil then
    -- text not fetched (lazy): follow the md5 only
    if not b.syncing then b.md5 = m.md5_after end
    emit(self, "patch", ev)
    return
  end
  if b.syncing then return end
  if b.encoding == "base64" then return resync(self, b, "patch to a binary buffer") end
  if m.md5_before ~= b.md5 then
    if m.md5_after == b.md5 then return end    -- we already have it
    -- A server may send a patch made on top of ours before our ack (coru's
    -- own acks once the change is on disk): its md5_before is then the
    -- text with our patch in flight applied.
    local inf = b._inflight
    if inf and not inf.applied then
      local cand, sum = inf.target, inf.md5_after
      if b._ver ~= inf.ver then
        cand = try_apply(inf.ps, b.confirmed)
        sum = cand and md5(cand)
      end
      if cand and sum == m.md5_before then
        b.confirmed, b.md5 = cand, sum
        b._ver = b._ver + 1
        inf.applied = true
      end
    end
    if m.md5_before ~= b.md5 then return resync(self, b, "md5_before does not match our copy") end
  end
  local d = D()
  local ok, ps = pcall(d.patch_from_text, d, m.patch)
  if not ok or not ps then return resync(self, b, "the patch could not be parsed") end
  local new, res = try_apply(ps, b.confirmed)
  if not new or not all_true(res) then return resync(self, b, "the patch did not apply") end
  if md5(new) ~= m.md5_after then return resync(self, b, "md5_after does not match the patched text") end
  local old_text = b.text
  if old_text == b.confirmed then
    b.text = new
  else
    -- local edits are carried over onto the new confirmed text (applying
    -- the remote patch to the local text instead could place it elsewhere
    -- in a repetitive text than it went in the confirmed one); with a patch
    -- in flight, onto the text the server will have once it is applied
    local inf = b._inflight
    local old_base, new_base = b.confirmed, new
    if inf and not inf.applied then
      local po = b._ver == inf.ver and inf.target or try_apply(inf.ps, b.confirmed)
      local pn, pres = try_apply(inf.ps, new)
      if po and pn and all_true(pres) then old_base, new_base = po, pn end
    end
    b.text = rebase(self, b, old_base, old_text, new_base)
  end
  b.confirmed, b.md5 = new, m.md5_after
  b._ver = b._ver + 1
  ev.old, ev.text = old_text, b.text
  emit(self, "patch", ev)
end

function H.get_buf(self, m)
  if type(m.id) ~= "number" then return bad_message(self, "get_buf: 'id' is not a number", m) end
  local b = self.bufs[m.id]
  if not b then
    return emit(self, "error", {msg = ("get_buf for buffer %d, which this session never had: ignored"):format(m.id),
                                local_error = true, id = m.id})
  end
  -- a get_buf answering a patch we saw acknowledged, with the text from
  -- before that patch: the ack was a stale one (FLOOBITS-PROTOCOL §2
  -- quirk 2) and the patch was refused. (With any other text the server
  -- has the patch: a late get_buf, as coru's server sends after a stale
  -- base; sending the patch again would apply it twice.)
  local la = b._last_acked
  b._last_acked = nil
  if la and m.res_id == la.req_id and la.prev_md5 and m.md5 == la.prev_md5 and b.encoding ~= "base64" then
    local old_conf = b.confirmed
    if apply_get_buf(self, b, m, "patch refused after its ack") and b.text == b.confirmed then
      local t, res = try_apply(la.ps, b.confirmed)
      if t and all_true(res) and t ~= b.confirmed and old_conf ~= b.confirmed then
        b.text = t
        M._flush(self, b)
      end
    end
    return
  end
  apply_get_buf(self, b, m, "the server sent the buffer")
end

local function add_created(self, m)
  local text = msg_text(m)
  local b = self.bufs[m.id] or new_buf(self, m)
  b.path, b.md5, b.encoding = m.path, m.md5, m.encoding or "utf8"
  if text then
    b.confirmed, b.text = text, text
    b._ver = b._ver + 1
  end
  return b
end

function H.create_buf(self, m)
  if type(m.id) ~= "number" or type(m.path) ~= "string" or type(m.md5) ~= "string" then
    return bad_message(self, "create_buf: 'id', 'path' or 'md5' has the wrong type", m)
  end
  local b = add_created(self, m)
  emit(self, "create_buf", {id = b.id, path = b.path, text = b.text, user_id = m.user_id, username = user_of(self, m)})
end

function H.delete_buf(self, m)
  if type(m.id) ~= "number" then return bad_message(self, "delete_buf: 'id' is not a number", m) end
  local b = self.bufs[m.id]
  if not b then return end
  self.bufs[m.id] = nil
  b.deleted = true
  notify(self)
  emit(self, "delete_buf", {id = b.id, path = b.path, unlink = m.unlink, user_id = m.user_id, username = user_of(self, m)})
end

function H.rename_buf(self, m)
  if type(m.id) ~= "number" or type(m.path) ~= "string" then
    return bad_message(self, "rename_buf: 'id' or 'path' has the wrong type", m)
  end
  local b = self.bufs[m.id]
  if not b then return end
  local old = b.path
  b.path = m.path
  emit(self, "rename_buf", {id = b.id, old_path = old, path = m.path, user_id = m.user_id, username = user_of(self, m)})
end

function H.join(self, m)
  if type(m.user_id) ~= "number" then return bad_message(self, "join: 'user_id' is not a number", m) end
  self.users[m.user_id] = m
  emit(self, "join", m)
end

function H.part(self, m)
  if type(m.user_id) ~= "number" then return bad_message(self, "part: 'user_id' is not a number", m) end
  local u = self.users[m.user_id]
  self.users[m.user_id] = nil
  emit(self, "part", {user_id = m.user_id, username = m.username or (u and u.username)})
end

local function set_perms(self, list)
  local p = {}
  for _, n in ipairs(list) do if type(n) == "string" then p[n] = true end end
  self.perms = p
end

function H.perms(self, m)
  if type(m.perms) ~= "table" then return bad_message(self, "perms: 'perms' is not a list", m) end
  if m.user_id == self.user_id then
    local expanded = {}
    for _, sp in ipairs(m.perms) do
      for _, n in ipairs(M.SITE_PERMS[sp] or {sp}) do expanded[n] = true end
    end
    if m.action == "set" then
      self.perms = expanded
    elseif m.action == "add" then
      for n in pairs(expanded) do self.perms[n] = true end
    elseif m.action == "remove" then
      for n in pairs(expanded) do self.perms[n] = nil end
    end
  end
  emit(self, "perms", m)
end

function H.user_info(self, m)
  local ui = m.user_info
  if type(ui) == "table" and type(m.user_id) == "number" then
    self.users[m.user_id] = ui
    if m.user_id == self.user_id and type(ui.perms) == "table" then set_perms(self, ui.perms) end
  end
  emit(self, "user_info", m)
end

function H.error(self, m)
  emit(self, "error", {msg = type(m.msg) == "string" and m.msg or "error", flash = m.flash, res_id = m.res_id})
end

for _, n in ipairs{"highlight", "saved", "msg", "datamsg", "request_perms"} do
  H[n] = function(self, m) emit(self, n, m) end
end

-- ------------------------------------------------------------ joining

-- room_info: on a re-join, compare every buffer by md5; a buffer that
-- differs is re-fetched, an unacknowledged patch the server has applied is
-- taken as confirmed.
local function apply_room_info(self, r)
  if type(r.user_id) ~= "number" or type(r.perms) ~= "table" or type(r.bufs) ~= "table" or type(r.users) ~= "table" then
    self.bad_room_info = "bad room_info: 'user_id', 'perms', 'bufs' or 'users' has the wrong type"
    return
  end
  self.user_id = r.user_id
  self.room_name = r.room_name
  self.owner = r.owner
  self.room_info = r
  set_perms(self, r.perms)
  self.users = {}
  for k, u in pairs(r.users) do
    local uid = tonumber(k)
    if uid and type(u) == "table" then self.users[uid] = u end
  end
  local seen = {}
  for k, rb in pairs(r.bufs) do
    local id = tonumber(k)
    if id and type(rb) == "table" and type(rb.path) == "string" and type(rb.md5) == "string" then
      seen[id] = true
      local b = self.bufs[id]
      if not b then
        b = new_buf(self, {id = id, path = rb.path, md5 = rb.md5, encoding = rb.encoding})
        if self.opts.fetch ~= "lazy" then b.syncing = true end
      else
        b.path = rb.path
        if rb.encoding == "utf8" or rb.encoding == "base64" then b.encoding = rb.encoding end
        local inf = b._inflight
        if b.confirmed == nil then
          b.md5 = rb.md5
        elseif rb.md5 == b.md5 then
          -- unchanged (an unacknowledged patch was not applied: sent again)
          b.syncing = nil
        elseif inf and rb.md5 == inf.md5_after and b._ver == inf.ver then
          b.confirmed, b.md5 = inf.target, inf.md5_after   -- it was applied
          b._ver = b._ver + 1
          b.syncing = nil
        else
          b.syncing = true   -- apply_get_buf decides about the patch in flight
        end
        if not b.syncing then b._inflight = nil end
      end
    end
  end
  for id, b in pairs(self.bufs) do
    if not seen[id] then
      self.bufs[id] = nil
      b.deleted = true
      if self.ever_joined then emit(self, "delete_buf", {id = id, path = b.path, reason = "gone after reconnect"}) end
    end
  end
end

local CONN_HANDLERS = {}
for name, fn in pairs(H) do CONN_HANDLERS[name] = fn end

local function join(self)
  local o = self.opts
  local conn, err, ename = jsonl.connect{
    host = o.host, port = o.port, tls = o.tls or false, timeout = o.timeout or 15000,
    heartbeat = o.heartbeat or 30000, heartbeat_timeout = o.heartbeat_timeout or 30000,
    max_line = o.max_line or 32 * 1024 * 1024, request_timeout = o.request_timeout or 30000,
  }
  if not conn then return nil, err, ename end
  for name, fn in pairs(CONN_HANDLERS) do
    conn:on(name, function(m) return fn(self, m) end, {immediate = true})
  end
  conn:on_bad_input(function(reason)
    emit(self, "error", {msg = "bad input from the server: " .. reason, local_error = true})
    -- a dropped line may have been a patch: check every followed buffer
    -- when the next patch arrives (md5_before); nothing else to do here
  end)
  local auth = {
    username = o.username, secret = o.secret, api_key = o.api_key,
    room_owner = o.owner, room = o.workspace, version = 0.11,
    client = o.client or "coru", platform = o.platform or (jit and jit.os or "lua"),
    supported_encodings = jsonl.array{"utf8", "base64"},
  }
  self.bad_room_info = nil
  self.conn = conn
  local r, rerr = conn:request(auth, {
    expect = {"room_info", "error"}, timeout = o.timeout or 15000,
    on_reply = function(rep) if rep.name == "room_info" then apply_room_info(self, rep) end end,
  })
  if not r or r.name ~= "room_info" or self.bad_room_info then
    local reason = rerr or self.bad_room_info or ("server error: " .. tostring(r and r.msg))
    conn:close(reason)
    self.conn = nil
    return nil, reason, conn.peer_reason and "disconnect" or nil
  end
  self.joined = true
  conn:on_close(function(reason) if self.conn == conn then M._lost(self, reason, conn.peer_reason) end end)
  -- fetch what must be fetched (eager mode, or changed while away), a few
  -- buffers at a time
  local todo = {}
  for _, b in pairs(self.bufs) do
    if b.syncing then
      if b.confirmed == nil and self.opts.fetch == "lazy" then b.syncing = nil else todo[#todo + 1] = b end
    end
  end
  local why = self.ever_joined and "changed while disconnected" or "initial fetch"
  local function worker()
    while #todo > 0 do
      local b = table.remove(todo)
      local ok, ferr = fetch(self, b, why)
      if not ok and ferr ~= "disconnected" then
        b.syncing = nil
        emit(self, "error", {msg = ("could not fetch %s: %s"):format(b.path, ferr), local_error = true, id = b.id})
      end
    end
  end
  local workers = {}
  for i = 1, min(8, #todo) do workers[i] = spawn(worker) end
  for i = 1, #workers do workers[i]:await() end
  notify(self)
  for _, b in pairs(self.bufs) do
    if b.text ~= nil and b.text ~= b.confirmed then M._flush(self, b) end
  end
  return true
end

-- The connection is gone: back off and re-join, unless the server said
-- why (disconnect) or the session was closed.
function M._lost(self, reason, server_said)
  self.joined = false
  self.conn = nil
  notify(self)
  if self.closed then return end
  local again = self.opts.reconnect ~= false and not server_said
  emit(self, "disconnect", {reason = reason, reconnecting = again})
  if not again then return M._end(self, reason) end
  self.reconnect_task = spawn(function()
    local delay, tries = 500, 0
    local max_tries = self.opts.max_retries
    while not self.closed do
      coru.sleep(floor(delay * (0.75 + random() * 0.5)))
      if self.closed then return end
      tries = tries + 1
      local ok, err, name = join(self)
      if ok then
        emit(self, "reconnect", {tries = tries, reason = reason})
        return
      end
      if name == "disconnect" then return M._end(self, err) end
      if max_tries and tries >= max_tries then return M._end(self, "gave up reconnecting: " .. tostring(err)) end
      delay = min(delay * 1.5, 10000)
    end
  end)
end

function M._end(self, reason)
  if self.ended then return end
  self.closed = true
  self.ended = true
  self.reason = reason
  if self.conn then self.conn:close(reason) self.conn = nil end
  local rt = self.reconnect_task
  self.reconnect_task = nil
  if rt and rt ~= current() and rt:status() == "suspended" then rt:cancel("session closed") end
  for _, b in pairs(self.bufs) do
    local ws = b._waiters
    b._waiters = {}
    for _, w in ipairs(ws) do w(nil, reason) end
  end
  notify(self)
  local w = self.ev_waiting
  if w then self.ev_waiting = nil w() end
end

-- ------------------------------------------------------------ sending edits

local function wait_for(self, cond)
  while not self.closed and not cond() do wait_state(self) end
  return not self.closed
end

-- One flusher task per buffer sends text - confirmed as a patch, one at a
-- time, until they agree; edits waiting meanwhile ride along.
local function flush_loop(self, b)
  local rejected = 0
  while true do
    if not wait_for(self, function() return b.deleted or (can_send(self) and not b.syncing and not b._busy) end) then break end
    if b.deleted then
      local ws = b._waiters
      b._waiters = {}
      for _, w in ipairs(ws) do w(nil, "buffer deleted") end
      break
    end
    if b.text == b.confirmed then
      local ws = b._waiters
      b._waiters = {}
      for _, w in ipairs(ws) do w(true) end
      break
    end
    local batch = b._waiters
    b._waiters = {}
    b._batch = batch
    local d = D()
    local base, target = b.confirmed, b.text
    local ps, perr = try_make(base, target)
    if not ps then
      -- only a confirmed text that is not valid UTF-8 gets here
      for _, w in ipairs(batch) do w(nil, "cannot diff the buffer: " .. tostring(perr)) end
      b._drop_local = true
      resync(self, b, "the confirmed text could not be diffed")
      b._batch = nil
    else
      local inf = {base = base, target = target, md5_before = b.md5, md5_after = md5(target), ver = b._ver, ps = ps}
      b._inflight = inf
      b._lost = nil
      local conn = self.conn
      local r, err = conn:request({name = "patch", id = b.id, path = b.path, patch = d:patch_to_text(ps),
                                   md5_before = inf.md5_before, md5_after = inf.md5_after}, {
        expect = function(rep) return rep.name == "ack" or rep.name == "error" or (rep.name == "get_buf" and rep.id == b.id) end,
        on_reply = function(rep)
          b._inflight = nil
          if rep.name == "ack" then
            -- the server's md5 before our patch, as far as we know
            local prev = not inf.applied and b.md5 or nil
            if inf.applied then
              -- taken as applied when a patch on top of it arrived first
            elseif b._ver == inf.ver then
              b.confirmed, b.md5 = target, inf.md5_after
            else
              -- patches arrived while ours was in flight: the server applied
              -- ours on top of them, as we do
              local t = try_apply(ps, b.confirmed)
              if t then
                b.confirmed, b.md5 = t, md5(t)
              else
                resync(self, b, "our patch could not be applied locally")
              end
            end
            b._ver = b._ver + 1
            b._last_acked = {req_id = rep.res_id, ps = ps, prev_md5 = prev}
          elseif rep.name == "get_buf" then
            apply_get_buf(self, b, rep, "patch refused")
          elseif rep.name == "error" then
            b._drop_local = true
          end
        end,
      })
      local function requeue()
        for _, w in ipairs(b._waiters) do batch[#batch + 1] = w end
        b._waiters = batch
      end
      b._batch = nil
      if r and r.name == "ack" then
        rejected = 0
        for _, w in ipairs(batch) do w(true) end
        b._lost = nil
      elseif r and r.name == "get_buf" and b._lost then
        -- refused, and carrying it over onto the server's text lost part of it
        b._lost = nil
        for _, w in ipairs(batch) do w(nil, LOST) end
      elseif r and r.name == "get_buf" then
        rejected = rejected + 1
        -- sent again as long as the rebase onto the server's text kept it
        if rejected >= 20 or b.text == b.confirmed then
          for _, w in ipairs(batch) do w(nil, "patch refused by the server (buffer resynced to its text)") end
          rejected = 0
          if b.text ~= b.confirmed then b.text = b.confirmed end
        else
          requeue()
        end
      elseif r and r.name == "error" then
        -- the local edits are dropped with it: later ones fail too
        for _, w in ipairs(b._waiters) do batch[#batch + 1] = w end
        b._waiters = {}
        for _, w in ipairs(batch) do w(nil, "server error: " .. tostring(r.msg)) end
        b.syncing = nil
        resync(self, b, "patch refused with an error")
      elseif err == "timeout" then
        requeue()
        b._inflight = nil
        resync(self, b, "no answer to a patch")
      else
        -- connection lost: the re-join decides whether the server has it
        inf.dead = true
        requeue()
        if self.conn == conn then wait_state(self) end
      end
    end
  end
end

function M._flush(self, b)
  if b._flushing then return end
  b._flushing = true
  spawn(function()
    local ok, e = pcall(flush_loop, self, b)
    b._flushing = false
    notify(self)
    if not ok then
      -- a bug must not leave edits waiting for ever
      local ws = b._batch or {}
      for _, w in ipairs(b._waiters) do ws[#ws + 1] = w end
      b._batch, b._waiters = nil, {}
      for _, w in ipairs(ws) do w(nil, "coru.floo internal error: " .. tostring(e)) end
      report(e)
    end
  end)
end

-- ------------------------------------------------------------ the API

local function get_buf_obj(self, id, fname)
  local b = self.bufs[id]
  if not b then return nil, ("no such buffer: %s"):format(tostring(id)) end
  return b
end

-- s:get_buf(id) -> buf | nil, err: fetches the text first if needed.
function Session:get_buf(id)
  check_id(id, "get_buf")
  local b, err = get_buf_obj(self, id)
  if not b then return nil, err end
  if b.confirmed ~= nil and not b.syncing then return b end
  if not current() then error("coru.floo: get_buf: needs a running task to fetch the text", 2) end
  if not wait_for(self, function() return can_send(self) or b.deleted end) then return nil, self.reason end
  if b.deleted then return nil, "buffer deleted" end
  if b.syncing then
    wait_for(self, function() return not b.syncing or b.deleted end)
    if b.confirmed ~= nil then return b end
  end
  b.syncing = true
  local ok, ferr = fetch(self, b, "fetch")
  if not ok then b.syncing = nil notify(self) return nil, ferr end
  return b
end

-- s:edit(id, new_text | fn(text) -> new_text) -> true | nil, err. Waits for
-- the server's ack of the patch that carried the change.
function Session:edit(id, new)
  check_id(id, "edit")
  if type(new) ~= "string" and type(new) ~= "function" then
    error("coru.floo: edit: bad argument #2 (string or function expected, got " .. type(new) .. ")", 2)
  end
  if not current() then error("coru.floo: edit: needs a running task", 2) end
  if self.closed then return nil, self.reason or "closed" end
  local ok, perr = need_perm(self, "patch")
  if not ok then return nil, perr end
  local b, err = self:get_buf(id)
  if not b then return nil, err end
  if b.encoding == "base64" then return nil, "binary buffer: edit it with set_buf" end
  if type(new) == "function" then
    new = new(b.text)
    if type(new) ~= "string" then error("coru.floo: edit: the function must return a string", 2) end
  end
  new = strip_cr(new)
  local valid, verr = check_utf8(new)
  if not valid then return nil, verr end
  if new == b.text and b.text == b.confirmed then return true end
  b.text = new
  local ret
  b._waiters[#b._waiters + 1] = function(...) local r = ret ret = {n = select("#", ...), ...} if r then r() end end
  M._flush(self, b)
  if not ret then
    yield(function(resume) ret = resume end)
  end
  return ret[1], ret[2]
end

local function simple_request(self, msg, expect, on_reply)
  if not current() then error("coru.floo: " .. msg.name .. ": needs a running task", 3) end
  if self.closed then return nil, self.reason or "closed" end
  local ok, perr = need_perm(self, msg.name)
  if not ok then return nil, perr end
  if not wait_for(self, function() return can_send(self) end) then return nil, self.reason end
  local r, err = self.conn:request(msg, {expect = expect, on_reply = on_reply})
  if not r then return nil, err end
  if r.name == "error" then return nil, "server error: " .. tostring(r.msg) end
  return r
end

-- s:create_buf(path, text [, encoding]) -> id | nil, err
function Session:create_buf(path, text, encoding)
  if type(path) ~= "string" then error("coru.floo: create_buf: bad argument #1 (string expected, got " .. type(path) .. ")", 2) end
  if type(text) ~= "string" then error("coru.floo: create_buf: bad argument #2 (string expected, got " .. type(text) .. ")", 2) end
  encoding = encoding or "utf8"
  if encoding ~= "utf8" and encoding ~= "base64" then error("coru.floo: create_buf: encoding must be 'utf8' or 'base64'", 2) end
  if not M.valid_path(path) then return nil, "invalid path: " .. path end
  if encoding == "utf8" then
    local valid, verr = check_utf8(text)
    if not valid then return nil, verr end
  end
  for _, b in pairs(self.bufs) do
    if b.path == path then return nil, "path exists: " .. path end
  end
  local wire = encoding == "base64" and M.base64_encode(text) or strip_cr(text)
  local r, err = simple_request(self, {name = "create_buf", path = path, buf = wire, encoding = encoding},
    function(rep) return rep.name == "error" or (rep.name == "create_buf" and rep.path == path) end,
    function(rep) if rep.name == "create_buf" and type(rep.id) == "number" then add_created(self, rep) end end)
  if not r then return nil, err end
  return r.id
end

-- s:set_buf(id, text) -> true | nil, err: replace the whole text.
function Session:set_buf(id, text)
  check_id(id, "set_buf")
  if type(text) ~= "string" then error("coru.floo: set_buf: bad argument #2 (string expected, got " .. type(text) .. ")", 2) end
  local b, err = get_buf_obj(self, id)
  if not b then return nil, err end
  if b.encoding ~= "base64" then
    text = strip_cr(text)
    local valid, verr = check_utf8(text)
    if not valid then return nil, verr end
  end
  local ok, perr = need_perm(self, "set_buf")
  if not ok then return nil, perr end
  if not wait_for(self, function() return b.deleted or (not b._flushing and not b.syncing and not b._busy and can_send(self)) end) then
    return nil, self.reason
  end
  if b.deleted then return nil, "buffer deleted" end
  b._busy = true
  local sum = md5(text)
  local r, rerr = simple_request(self, {name = "set_buf", id = id, buf = b.encoding == "base64" and M.base64_encode(text) or text,
                                        md5 = sum, encoding = b.encoding}, {"ack", "error"},
    function(rep)
      if rep.name == "ack" then
        b.confirmed, b.text, b.md5 = text, text, sum
        b._ver = b._ver + 1
      end
    end)
  b._busy = nil
  notify(self)
  if not r then return nil, rerr end
  return true
end

function Session:delete_buf(id, unlink)
  check_id(id, "delete_buf")
  if not self.bufs[id] then return nil, "no such buffer: " .. id end
  local r, err = simple_request(self, {name = "delete_buf", id = id, unlink = unlink and true or false},
    function(rep) return rep.name == "error" or (rep.name == "delete_buf" and rep.id == id) end,
    function(rep) if rep.name == "delete_buf" then H.delete_buf(self, rep) end end)
  if not r then return nil, err end
  return true
end

function Session:rename_buf(id, path)
  check_id(id, "rename_buf")
  if type(path) ~= "string" then error("coru.floo: rename_buf: bad argument #2 (string expected, got " .. type(path) .. ")", 2) end
  if not self.bufs[id] then return nil, "no such buffer: " .. id end
  if not M.valid_path(path) then return nil, "invalid path: " .. path end
  local r, err = simple_request(self, {name = "rename_buf", id = id, path = path},
    function(rep) return rep.name == "error" or (rep.name == "rename_buf" and rep.id == id) end,
    function(rep) if rep.name == "rename_buf" then H.rename_buf(self, rep) end end)
  if not r then return nil, err end
  return true
end

-- s:highlight(id, ranges [, opts]): ranges {{start, end}, ...} in UTF-16
-- units; opts.ping (summon), opts.following, opts.to (usernames).
function Session:highlight(id, ranges, o)
  check_id(id, "highlight")
  if type(ranges) ~= "table" or #ranges == 0 then
    error("coru.floo: highlight: bad argument #2 (non-empty list of {start, end} expected)", 2)
  end
  local rs = jsonl.array()
  for i, r in ipairs(ranges) do
    if type(r) ~= "table" or type(r[1]) ~= "number" or type(r[2]) ~= "number" then
      error(("coru.floo: highlight: range %d is not {start, end}"):format(i), 2)
    end
    rs[i] = jsonl.array{r[1], r[2]}
  end
  if not self.bufs[id] then return nil, "no such buffer: " .. id end
  o = o or {}
  local msg = {name = "highlight", id = id, ranges = rs, ping = o.ping and true or false,
               summon = o.ping and true or false, following = o.following and true or false}
  if o.to then msg.to = jsonl.array(o.to) end
  local r, err = simple_request(self, msg, {"ack", "error"})
  if not r then return nil, err end
  return true
end

function Session:saved(id)
  check_id(id, "saved")
  if not self.bufs[id] then return nil, "no such buffer: " .. id end
  local r, err = simple_request(self, {name = "saved", id = id}, {"ack", "error"})
  if not r then return nil, err end
  return true
end

function Session:msg(text, to)
  if type(text) ~= "string" then error("coru.floo: msg: bad argument #1 (string expected, got " .. type(text) .. ")", 2) end
  local m = {name = "msg", data = text}
  if to then m.to = jsonl.array(to) end
  local r, err = simple_request(self, m, {"ack", "error"})
  if not r then return nil, err end
  return true
end

function Session:request_perms(perms)
  perms = perms or {"edit_room"}
  if type(perms) ~= "table" then error("coru.floo: request_perms: bad argument #1 (list expected)", 2) end
  local r, err = simple_request(self, {name = "request_perms", perms = jsonl.array(perms)}, {"ack", "error"})
  if not r then return nil, err end
  return true
end

-- s:on(name, fn): fn(event, session). Handlers run one at a time in the
-- order the events happened; a handler may suspend (later events wait).
function Session:on(name, fn)
  if type(name) ~= "string" or not EVENTS[name] then
    error("coru.floo: on: unknown event '" .. tostring(name) .. "'", 2)
  end
  if type(fn) ~= "function" then error("coru.floo: on: bad argument #2 (function expected)", 2) end
  local hs = self.handlers[name] or {}
  hs[#hs + 1] = fn
  self.handlers[name] = hs
  return self
end

function Session:close()
  if self.ended then return true end
  M._end(self, "closed")
  return true
end

function Session:is_connected() return can_send(self) end

-- s:wait() -> reason, once the session has ended (closed, or the server
-- disconnected it, or reconnection gave up).
function Session:wait()
  while not self.ended do wait_state(self) end
  return self.reason
end

-- s:find(path) -> buf | nil
function Session:find(path)
  for _, b in pairs(self.bufs) do if b.path == path then return b end end
  return nil
end

-- ------------------------------------------------------------ connect

local function check_opts(o)
  if type(o) ~= "table" then error("coru.floo.connect: bad argument #1 (table expected, got " .. type(o) .. ")", 3) end
  local function need(k, t)
    if type(o[k]) ~= t then error(("coru.floo.connect: option '%s' must be a %s"):format(k, t), 4) end
  end
  need("host", "string")
  need("port", "number")
  need("owner", "string")
  need("workspace", "string")
  if o.api_key == nil then need("username", "string") end
  if o.secret ~= nil and type(o.secret) ~= "string" then error("coru.floo.connect: option 'secret' must be a string", 3) end
  if o.tls ~= nil and o.tls ~= false and type(o.tls) ~= "table" then
    error("coru.floo.connect: option 'tls' must be a table or false", 3)
  end
  if o.fetch ~= nil and o.fetch ~= "eager" and o.fetch ~= "lazy" then
    error("coru.floo.connect: option 'fetch' must be 'eager' or 'lazy'", 3)
  end
end

-- floo.connect(opts) -> session | nil, reason. Task only.
function M.connect(opts)
  check_opts(opts)
  if not current() then error("coru.floo.connect: needs a running task", 2) end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.secret == nil then o.secret = "" end
  local self = setmetatable({
    opts = o, bufs = {}, users = {}, perms = {}, handlers = {},
    events = {head = 1, tail = 0}, state_waiters = {},
  }, Session)
  if o.on ~= nil then
    if type(o.on) ~= "table" then error("coru.floo.connect: option 'on' must be a table of handlers", 2) end
    for name, fn in pairs(o.on) do self:on(name, fn) end
  end
  local ok, err = join(self)
  if not ok then return nil, err end
  self.ever_joined = true
  self.event_task = spawn(event_loop, self)
  return self
end

return M
