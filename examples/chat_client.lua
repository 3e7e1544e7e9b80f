-- Chat client: lines typed on stdin go to the server, lines from the
-- server go to stdout; two tasks, one per direction.
--   coru examples/chat_client.lua name [host] [port]
local coru = require "coru"
local name = arg and arg[1] or "guest"
local host = arg and arg[2] or "127.0.0.1"
local port = tonumber(arg and arg[3]) or 7001

coru.run(function()
  local conn, err = coru.tcp.connect(host, port, { connect_timeout = 5000 })
  if not conn then
    io.stderr:write("cannot connect: ", err, "\n")
    return
  end
  local out = coru.stdout
  local prompt = conn:read_bytes(6)              -- "name? "
  if prompt then conn:write(name .. "\n") end
  local from_server = coru.spawn(function()
    while true do
      local line = conn:read_line()
      if not line then break end
      out:write(line .. "\n")
    end
    out:write("* disconnected\n")
  end)
  local to_server = coru.spawn(function()
    while true do
      local line = coru.stdin:read_line()
      if not line then break end
      if not conn:write(line .. "\n") then break end
    end
    conn:shutdown()                              -- EOF typed: tell the server
  end)
  from_server:await()
  to_server:cancel()
  conn:close()
end)
