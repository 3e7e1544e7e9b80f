-- W3 server for coru: each connection is a task blocked in read_line();
-- "hello" -> "ok\n"; EOF ends the task and closes the socket.
local HOST = os.getenv("HOST") or "127.0.0.1"
local PORT = tonumber(os.getenv("PORT") or "7002")

local function serve(sock)
  while true do
    local line = sock:read_line()
    if not line then break end
    if line == "hello" then
      if not sock:write("ok\n") then break end
    end
  end
  sock:close()
end

assert(coru.tcp.listen(HOST, PORT, serve, { backlog = 1024 }))
io.stdout:write("READY port=", PORT, "\n")
io.stdout:flush()
