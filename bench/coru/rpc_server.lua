-- W2 server for coru: one task per connection, sequential read_line/write.
local coru = require "coru"
local cjson = require "cjson"
local decode, encode = cjson.decode, cjson.encode
local HOST = os.getenv("HOST") or "127.0.0.1"
local PORT = tonumber(os.getenv("PORT") or "7001")
local ERR = '{"name":"error","req_id":null}\n'

local srv = assert(coru.tcp.listen(HOST, PORT, function(s)
  while true do
    local line = s:read_line()
    if not line then break end
    local ok, msg = pcall(decode, line)
    if ok and type(msg) == "table" and msg.name == "patch" then
      s:write(encode({ name = "ack", req_id = msg.req_id }) .. "\n")
    else
      s:write(ERR)
    end
  end
end, { backlog = 1024 }))
io.stdout:write("READY port=", srv:getsockname().port, "\n")
io.stdout:flush()
