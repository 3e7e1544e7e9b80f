-- Echo server: every connection is a task that echoes lines back.
--   coru examples/echo_server.lua [port]      (then: nc 127.0.0.1 7000)
--   or: LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" luajit examples/echo_server.lua
local coru = require "coru"
local port = tonumber(arg and arg[1]) or 7000

local server = assert(coru.tcp.listen("127.0.0.1", port, function(conn)
  local peer = conn:getpeername()
  io.stderr:write(("connected: %s:%d\n"):format(peer.ip, peer.port))
  conn:settimeouts(nil, 10000, 300000)   -- send 10 s, idle read 5 min
  while true do
    local line, err = conn:read_line()
    if not line then
      io.stderr:write(("gone: %s:%d (%s)\n"):format(peer.ip, peer.port, err))
      return                              -- the connection is closed for us
    end
    assert(conn:write(line .. "\n"))
  end
end))
io.stderr:write(("echo server on 127.0.0.1:%d\n"):format(server:getsockname().port))
-- Under plain luajit (no running loop): run it until the server closes.
if not coru.current() then coru.run() end
