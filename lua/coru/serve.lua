-- coru.serve: the pieces coru.tcp, coru.pipe and coru.tls share.
--   serve.apply_opts(stream, opts)   timeout / connect_timeout / send_timeout /
--                                    read_timeout / max_line from an opts table
--   serve.accept_loop(server, new_client, handler, opts)
--                                    listen; each accepted connection runs
--                                    handler(client) in its own task and is
--                                    closed when the handler returns or fails
local coru = require "coru"

local M = {}

M.STREAM_OPTS = {"timeout", "connect_timeout", "send_timeout", "read_timeout", "max_line"}

function M.apply_opts(s, opts)
  if opts.timeout then s:settimeout(opts.timeout) end
  if opts.connect_timeout or opts.send_timeout or opts.read_timeout then
    s:settimeouts(opts.connect_timeout, opts.send_timeout, opts.read_timeout)
  end
  if opts.max_line then s:set_max_line(opts.max_line) end
end

-- When a handler's task ends: close its connection; a failure is raised
-- again in a task of its own, which on_error reports (it carries the
-- handler's traceback). No wrapper frame around the handler: an idle
-- connection's task stays small.
local function ended(client)
  return function(err)
    if not client:is_closing() then client:close() end
    if err ~= nil and not coru.is_cancelled(err) then coru.spawn(error, err, 0) end
  end
end

-- new_client() makes the handle to accept into; setup(client) applies the
-- options. Returns true or nil, msg, name (the server is then closed).
function M.accept_loop(server, new_client, setup, handler, backlog)
  local ok, err, name = server:listen(backlog or 1024, function(e)
    if e then return end
    local client = new_client()
    if client:is_closing() or not server:accept(client) then client:close(); return end
    setup(client)
    coru.spawn(handler, client):next(ended(client))
  end)
  if not ok then server:close(); return nil, err, name end
  return true
end

return M
