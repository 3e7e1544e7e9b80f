-- Line-based chat server: the first line a client sends is its name; every
-- later line is broadcast to the others. A slow client gets its own queue
-- (a channel) and writer task, so one stalled reader never blocks the room.
--   coru examples/chat_server.lua [port]
local coru = require "coru"
local port = tonumber(arg and arg[1]) or 7001

local members = {}   -- conn -> { name =, out = channel }

local function broadcast(from, text)
  for conn, m in pairs(members) do
    if conn ~= from and m.out:len() < 100 then   -- drop for clients too far behind
      m.out:send(text)
    end
  end
end

local function writer(conn, out)
  while true do
    local text = out:recv()
    if not text then return end                  -- channel closed
    if not conn:write(text) then return end
  end
end

local server = assert(coru.tcp.listen("0.0.0.0", port, function(conn)
  conn:set_max_line(4096)
  conn:write("name? ")
  local name = conn:read_line()
  if not name or name == "" then return end
  local m = { name = name, out = coru.channel(128) }
  members[conn] = m
  local w = coru.spawn(writer, conn, m.out)
  broadcast(conn, ("* %s joined\n"):format(name))
  while true do
    local line, err = conn:read_line()
    if not line then
      if err == "line too long" then conn:write("* line too long\n") else break end
    elseif line == "/quit" then
      break
    elseif line ~= "" then
      broadcast(conn, ("<%s> %s\n"):format(name, line))
    end
  end
  members[conn] = nil
  m.out:close()
  w:await()
  broadcast(conn, ("* %s left\n"):format(name))
end))
io.stderr:write(("chat server on port %d\n"):format(server:getsockname().port))
-- Under plain luajit (no running loop): run it until the server closes.
if not coru.current() then coru.run() end
