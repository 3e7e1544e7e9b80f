-- W3 server for coru: each connection is a task blocked in read_line.
local coru = require "coru"
local HOST = os.getenv("HOST") or "127.0.0.1"
local PORT = tonumber(os.getenv("PORT") or "7002")
local srv = assert(coru.tcp.listen(HOST, PORT, function(s)
  while true do
    local line = s:read_line()
    if not line then break end
    if line == "hello" then s:write("ok\n") end
  end
end))
io.stdout:write("READY port=", srv:getsockname().port, "\n")
io.stdout:flush()
