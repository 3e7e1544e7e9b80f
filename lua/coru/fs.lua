-- coru.fs: file conveniences on top of the flat luv-style fs_* functions
-- (fs.c). Like them, they suspend inside a task and run synchronously
-- outside one (except watch, which needs a task). Failures return
-- nil, "ENAME: message: path", "ENAME".
local coru = require "coru"

local M = {}
local concat, insert, remove = table.concat, table.insert, table.remove

-- luv's flat names without the prefix: coru.fs.open, coru.fs.stat, ...
for k, v in pairs(coru) do
  local name = type(k) == "string" and k:match("^fs_(.+)$")
  if name then M[name] = v end
end

local function dirname(path)
  local d = path:match("^(.*)/[^/]*$")
  if d == nil then return "." end
  if d == "" then return "/" end
  return d
end

local function basename(path) return path:match("([^/]*)$") end

M.dirname, M.basename = dirname, basename

local function join(a, b)
  if a:sub(-1) == "/" then return a .. b end
  return a .. "/" .. b
end
M.join = join

-- read_file(path) -> contents: coru.fs_read_file (fs.c) opens, reads to
-- the end and closes in one thread-pool round trip.
M.read_file = coru.fs_read_file

local function write_all(fd, data)
  local off, len = 0, #data
  while off < len do
    local chunk = off == 0 and data or data:sub(off + 1)
    local n, err, name = coru.fs_write(fd, chunk)
    if not n then return nil, err, name end
    off = off + n
  end
  return true
end

local function check_data(fname, data)
  if type(data) == "table" then return concat(data) end
  if type(data) ~= "string" then
    error(("bad argument #2 to '%s' (string expected, got %s)"):format(fname, type(data)), 3)
  end
  return data
end

local function write_plain(path, data, flags, mode)
  local fd, err, name = coru.fs_open(path, flags, mode or 438)
  if not fd then return nil, err, name end
  local ok, werr, wname = write_all(fd, data)
  local cok, cerr, cname = coru.fs_close(fd)
  if not ok then return nil, werr .. ": " .. path, wname end
  if not cok then return nil, cerr, cname end
  return true
end

-- write_file(path, data [, {atomic = true, mode = 420}])
-- atomic: a temporary file in the same directory is written, fsync'ed and
-- renamed over path, then the directory is fsync'ed: a crash leaves the
-- old file or the new one, never a torn one. Its mode is opts.mode, else
-- the old file's, else 0644.
function M.write_file(path, data, opts)
  if type(path) ~= "string" then
    error("bad argument #1 to 'write_file' (string expected, got " .. type(path) .. ")", 2)
  end
  data = check_data("write_file", data)
  opts = opts or {}
  if not opts.atomic then return write_plain(path, data, "w", opts.mode) end
  local dir = dirname(path)
  local mode = opts.mode
  if not mode then
    local st = coru.fs_stat(path)
    mode = st and st.mode % 4096 or 420
  end
  local fd, tmp, tname = coru.fs_mkstemp(join(dir, "." .. basename(path) .. ".tmp-XXXXXX"))
  if not fd then return nil, tmp, tname end
  local function fail(err, name)
    coru.fs_close(fd)
    coru.fs_unlink(tmp)
    return nil, err, name
  end
  local ok, err, name = coru.fs_fchmod(fd, mode)
  if not ok then return fail(err, name) end
  ok, err, name = write_all(fd, data)
  if not ok then return fail(err .. ": " .. tmp, name) end
  ok, err, name = coru.fs_fsync(fd)
  if not ok then return fail(err, name) end
  ok, err, name = coru.fs_close(fd)
  if not ok then coru.fs_unlink(tmp) return nil, err, name end
  ok, err, name = coru.fs_rename(tmp, path)
  if not ok then coru.fs_unlink(tmp) return nil, err, name end
  local dfd = coru.fs_open(dir, "r")
  if dfd then coru.fs_fsync(dfd) coru.fs_close(dfd) end
  return true
end

-- append_file(path, data [, {mode = 438}])
function M.append_file(path, data, opts)
  data = check_data("append_file", data)
  return write_plain(path, data, "a", opts and opts.mode)
end

-- exists(path) -> true, type | false | nil, msg, name (other than ENOENT)
function M.exists(path)
  local st, err, name = coru.fs_stat(path)
  if st then return true, st.type end
  if name == "ENOENT" or name == "ENOTDIR" then return false end
  return nil, err, name
end

-- mkdirp(path [, mode]): make path and its missing parents.
function M.mkdirp(path, mode)
  local ok, err, name = coru.fs_mkdir(path, mode or 511)
  if ok then return true end
  if name == "EEXIST" then
    local st = coru.fs_stat(path)
    if st and st.type == "directory" then return true end
    return nil, "ENOTDIR: not a directory: " .. path, "ENOTDIR"
  end
  if name ~= "ENOENT" then return nil, err, name end
  local parent = dirname(path)
  if parent == path then return nil, err, name end
  ok, err, name = M.mkdirp(parent, mode)
  if not ok then return nil, err, name end
  ok, err, name = coru.fs_mkdir(path, mode or 511)
  if ok or name == "EEXIST" then return true end
  return nil, err, name
end

-- rmtree(path): remove path and everything under it (true if missing).
-- Symbolic links are removed, not followed.
function M.rmtree(path)
  local st, err, name = coru.fs_lstat(path)
  if not st then
    if name == "ENOENT" then return true end
    return nil, err, name
  end
  if st.type ~= "directory" then return coru.fs_unlink(path) end
  local req, serr, sname = coru.fs_scandir(path)
  if not req then return nil, serr, sname end
  while true do
    local entry = coru.fs_scandir_next(req)
    if not entry then break end
    local ok, e, n = M.rmtree(join(path, entry))
    if not ok then return nil, e, n end
  end
  return coru.fs_rmdir(path)
end

-- walk(dir) -> iterator of path, type, depth over the tree under dir
-- (pre-order; directories before their contents; links not followed).
-- An unreadable directory is yielded with type "error" and the message.
function M.walk(dir)
  local frames = {}          -- open directories: {scandir request, path, depth}
  local pending = {dir, 0}   -- a directory just yielded: opened on the next step
  return function()
    while true do
      if pending then
        local path, depth = pending[1], pending[2]
        pending = nil
        local req, err = coru.fs_scandir(path)
        if req then
          insert(frames, {req, path, depth})
        elseif depth > 0 then
          return path, "error", depth, err
        else
          error("walk: " .. err, 2)
        end
      end
      local top = frames[#frames]
      if not top then return nil end
      local entry, ty = coru.fs_scandir_next(top[1])
      if entry then
        local p = join(top[2], entry)
        if ty == "unknown" then
          local st = coru.fs_lstat(p)
          ty = st and st.type or ty
        end
        if ty == "directory" then pending = {p, top[3] + 1} end
        return p, ty, top[3] + 1
      end
      remove(frames)
    end
  end
end

-- --------------------------------------------------------------- watch

local Watch = {}
Watch.__index = Watch
local MAX_QUEUE = 4096

local function push_event(w, ev, filename)
  local q = w.queue
  local last = q[#q]
  if last and last[1] == ev and last[2] == filename then return end  -- coalesce
  if #q >= MAX_QUEUE then
    if not w.overflow then w.overflow = true q[#q + 1] = {"overflow"} end
  else
    q[#q + 1] = {ev, filename}
  end
  local waiter = w.waiter
  if waiter then w.waiter = nil waiter() end
end

local function start_event(w, dir, rel)
  local h = coru.new_fs_event()
  local ok, err, name = h:start(dir, {}, function(err, filename, events)
    if err then push_event(w, "error", err) return end
    local f = filename and (rel and join(rel, filename) or filename)
    if events.rename then
      push_event(w, "rename", f)
      -- a new directory under a recursive watch gets a watcher too
      if w.recursive and filename then
        local p = join(dir, filename)
        local st = coru.fs_stat(p)
        if st and st.type == "directory" and not w.dirs[p] then
          w.dirs[p] = true
          start_event(w, p, f)
        end
      end
    end
    if events.change then push_event(w, "change", f) end
  end)
  if not ok then h:close() return nil, err, name end
  w.handles[#w.handles + 1] = h
  return true
end

-- watch(path [, {recursive = bool, poll = bool, interval = ms}]) -> watcher
-- Iterate inside a task: `for event, filename in w do ... end`, event is
-- "change" or "rename" ("overflow" if more than 4096 events piled up,
-- "error" with the message). Uses fs_event; fs_poll (one "change" per
-- detected modification) when asked or when fs_event fails. w:close()
-- ends the loop.
local WATCH_OPTS = {recursive = true, poll = true, interval = true}
function M.watch(path, opts)
  if type(path) ~= "string" then
    error("bad argument #1 to 'coru.fs.watch' (string expected, got " .. type(path) .. ")", 2)
  end
  require("coru.modes").check_opts("coru.fs.watch", 2, opts, WATCH_OPTS)
  opts = opts or {}
  local w = setmetatable({queue = {}, handles = {}, dirs = {}, recursive = opts.recursive, path = path}, Watch)
  local ok, err, name
  if not opts.poll then
    ok, err, name = start_event(w, path, nil)
    if ok and opts.recursive then
      w.dirs[path] = true
      local st = coru.fs_stat(path)
      if st and st.type == "directory" then
        for p, ty in M.walk(path) do
          if ty == "directory" then
            w.dirs[p] = true
            start_event(w, p, p:sub(#path + 2))
          end
        end
      end
    end
  end
  if not ok and (name == "ENOENT" or name == "ENOTDIR" or name == "EACCES") then
    return nil, err, name
  end
  if not ok then
    local h = coru.new_fs_poll()
    ok, err, name = h:start(path, opts.interval or 1000, function(perr, prev, curr)
      if perr then
        if perr:match("^ENOENT") then push_event(w, "rename", basename(path))
        else push_event(w, "error", perr) end
        return
      end
      push_event(w, "change", basename(path))
    end)
    if not ok then h:close() return nil, err, name end
    w.handles[#w.handles + 1] = h
    w.polling = true
  end
  return w
end

-- w:next() -> event, filename; nil once closed.
function Watch:next()
  while true do
    local e = remove(self.queue, 1)
    if e then
      if e[1] == "overflow" then self.overflow = false end
      return e[1], e[2]
    end
    if self.closed then return nil end
    if not coru.current() then error("watch: iterating needs a running task", 2) end
    coru.await(function(resume) self.waiter = function() resume() end end)
  end
end

Watch.__call = Watch.next

function Watch:close()
  if self.closed then return end
  self.closed = true
  for _, h in ipairs(self.handles) do
    if not h:is_closing() then h:close() end
  end
  local waiter = self.waiter
  if waiter then self.waiter = nil waiter() end
end

-- The conveniences that suspend take an optional callback last, like the
-- fs_* functions: cb(nil, results...) or cb(msg, name) (coru.modes); the
-- call returns true at once. nfixed: the arguments before the optional ones.
local modes = require "coru.modes"
local function callback_form(fname, fn, nfixed, optional_table, allowed)
  return function(...)
    local n = select("#", ...)
    if type((...)) ~= "string" then
      error(("bad argument #1 to '%s' (string expected, got %s)"):format(fname, type((...))), 2)
    end
    local last = n > nfixed and select(n, ...) or nil
    if optional_table then
      local opt = select(nfixed + 1, ...)
      if opt ~= nil and type(opt) ~= "table" and not modes.callable(opt) then
        error(("bad argument #%d to '%s' (table expected, got %s)"):format(nfixed + 1, fname, type(opt)), 2)
      end
      if type(opt) == "table" then modes.check_opts(fname, nfixed + 1, opt, allowed) end
    end
    if last ~= nil and modes.callable(last) then
      local args = {...}
      args[n] = nil
      return modes.run(last, fn, unpack(args, 1, n - 1))
    end
    return fn(...)
  end
end
M.write_file = callback_form("coru.fs.write_file", M.write_file, 2, true, modes.set({"atomic", "mode"}))
M.append_file = callback_form("coru.fs.append_file", M.append_file, 2, true, modes.set({"mode"}))
M.exists = callback_form("coru.fs.exists", M.exists, 1)
M.mkdirp = callback_form("coru.fs.mkdirp", M.mkdirp, 1)
M.rmtree = callback_form("coru.fs.rmtree", M.rmtree, 1)

return M
