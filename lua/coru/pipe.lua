-- coru.pipe: unix domain sockets (and named pipes) like coru.tcp.
--   coru.pipe.connect(path [, opts])          -> stream | nil, msg, name
--   coru.pipe.listen(path, handler [, opts])  -> server | nil, msg, name
local coru = require "coru"

local M = {}

local function apply(s, opts)
  if opts.timeout then s:settimeout(opts.timeout) end
  if opts.connect_timeout or opts.send_timeout or opts.read_timeout then
    s:settimeouts(opts.connect_timeout, opts.send_timeout, opts.read_timeout)
  end
  if opts.max_line then s:set_max_line(opts.max_line) end
end

function M.connect(path, opts)
  if type(path) ~= "string" then error("coru.pipe.connect: path must be a string", 2) end
  opts = opts or {}
  local s = coru.new_pipe(opts.ipc)
  apply(s, opts)
  local ok, err, name = s:connect(path)
  if not ok then
    if not s:is_closing() then s:close() end
    return nil, err, name
  end
  return s
end

-- Listen on path; handler(stream) runs in its own task per connection and
-- the connection is closed when it returns or fails (the failure goes to
-- coru.on_error). opts: backlog (1024), mode ("rw": chmod for everyone),
-- unlink (remove a stale socket file first, default true).
function M.listen(path, handler, opts)
  if type(path) ~= "string" then error("coru.pipe.listen: path must be a string", 2) end
  if type(handler) ~= "function" and not (getmetatable(handler) or {}).__call then
    error("coru.pipe.listen: handler must be a function", 2)
  end
  opts = opts or {}
  if opts.unlink ~= false then os.remove(path) end
  local server = coru.new_pipe(opts.ipc)
  local ok, err, name = server:bind(path)
  if not ok then server:close(); return nil, err, name end
  if opts.mode then server:chmod(opts.mode) end
  -- When the handler's task ends: close its connection; a failure is
  -- raised again in a task of its own, which on_error reports (it carries
  -- the handler's traceback). No wrapper frame: an idle connection's task
  -- stays small.
  local function ended(client)
    return function(err)
      if not client:is_closing() then client:close() end
      if err ~= nil and not coru.is_cancelled(err) then coru.spawn(error, err, 0) end
    end
  end
  ok, err, name = server:listen(opts.backlog or 1024, function(e)
    if e then return end
    local client = coru.new_pipe(opts.ipc)
    if not server:accept(client) then client:close(); return end
    apply(client, opts)
    coru.spawn(handler, client):next(ended(client))
  end)
  if not ok then server:close(); return nil, err, name end
  return server
end

return M
