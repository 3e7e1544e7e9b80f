-- W2 server for coru: coru.tcp.listen runs handler(sock) in its own task per
-- connection; sequential read_line / decode / encode / write. JSON is
-- coru's own (coru.json), as a Node program uses JSON.parse; its decode
-- returns nil, msg for bad input, so no pcall.
local json = require "coru.json"
local decode, encode = json.decode, json.encode
local type = type

local HOST = os.getenv("HOST") or "127.0.0.1"
local PORT = tonumber(os.getenv("PORT") or "7001")
local ERROR_REPLY = '{"name":"error","req_id":null}\n'

local function serve(sock)
  sock:nodelay(true)
  while true do
    local line = sock:read_line()
    if not line then break end           -- EOF (or error): end this task
    local msg = decode(line)
    local reply
    if type(msg) == "table" and msg.name == "patch" then
      reply = encode({ name = "ack", req_id = msg.req_id }) .. "\n"
    else
      reply = ERROR_REPLY
    end
    if not sock:write(reply) then break end
  end
  sock:close()
end

assert(coru.tcp.listen(HOST, PORT, serve, { backlog = 1024 }))
io.stdout:write("READY port=", PORT, "\n")
io.stdout:flush()
-- the main chunk ends here; the host keeps running the loop (the listener is
-- active) until SIGTERM.
