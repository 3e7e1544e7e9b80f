-- coru.pipe: unix domain sockets (and named pipes) like coru.tcp.
--   coru.pipe.connect(path [, opts] [, cb])   -> stream | nil, msg, name
--   coru.pipe.listen(path, handler [, opts])  -> server | nil, msg, name
local coru = require "coru"

local M = {}

local serve = require "coru.serve"
local apply = serve.apply_opts

local modes = require "coru.modes"
local CONNECT_OPTS = modes.set(serve.STREAM_OPTS, {"ipc"})
local LISTEN_OPTS = modes.set(serve.STREAM_OPTS, {"ipc", "backlog", "mode", "unlink"})

local function connect(path, opts)
  local s = coru.new_pipe(opts.ipc)
  apply(s, opts)
  local ok, err, name = s:connect(path)
  if not ok then
    if not s:is_closing() then s:close() end
    return nil, err, name
  end
  return s
end

-- coru.pipe.connect(path [, opts] [, cb]): three modes.
function M.connect(path, opts, cb)
  if type(path) ~= "string" then error("bad argument #1 to 'coru.pipe.connect' (string expected, got " .. type(path) .. ")", 2) end
  opts, cb = modes.opts_cb("coru.pipe.connect", 2, opts, cb, CONNECT_OPTS)
  if cb then return modes.run(cb, connect, path, opts) end
  modes.need_task("coru.pipe.connect")
  return connect(path, opts)
end

-- Listen on path; handler(stream) runs in its own task per connection and
-- the connection is closed when it returns or fails (the failure goes to
-- coru.on_error). opts: backlog (1024), mode ("rw": chmod for everyone),
-- unlink (remove a stale socket file first, default true).
function M.listen(path, handler, opts)
  if type(path) ~= "string" then error("bad argument #1 to 'coru.pipe.listen' (string expected, got " .. type(path) .. ")", 2) end
  if not modes.callable(handler) then
    error("bad argument #2 to 'coru.pipe.listen' (function expected, got " .. type(handler) .. ")", 2)
  end
  modes.check_opts("coru.pipe.listen", 3, opts, LISTEN_OPTS)
  opts = opts or {}
  if opts.unlink ~= false then os.remove(path) end
  local server = coru.new_pipe(opts.ipc)
  local ok, err, name = server:bind(path)
  if not ok then server:close(); return nil, err, name end
  if opts.mode then server:chmod(opts.mode) end
  ok, err, name = serve.accept_loop(server, function() return coru.new_pipe(opts.ipc) end,
                                    function(c) apply(c, opts) end, handler, opts.backlog)
  if not ok then return nil, err, name end
  return server
end

return M
