-- W2 server for LuaJIT + luv: a coroutine per connection (co.lua), lines
-- read sequentially, lua-cjson.
package.path = arg[0]:match("^(.*/)") .. "?.lua;" .. package.path
local uv = require "luv"
local co = require "co"
local cjson = require "cjson"
local server = uv.new_tcp()
assert(server:bind(os.getenv("HOST") or "127.0.0.1", tonumber(os.getenv("PORT") or "7001")))
assert(server:listen(1024, function()
  local sock = uv.new_tcp()
  server:accept(sock)
  sock:nodelay(true)
  co.spawn(function()
    local next_line = co.reader(sock)
    while true do
      local line = next_line()
      if not line then break end
      local ok, msg = pcall(cjson.decode, line)
      if ok and type(msg) == "table" and msg.name == "patch" then
        sock:write(cjson.encode({name = "ack", req_id = msg.req_id}) .. "\n")
      else
        sock:write('{"name":"error","req_id":null}\n')
      end
    end
    sock:close()
  end)
end))
print("READY port=" .. server:getsockname().port)
io.stdout:flush()
local sig = uv.new_signal()
sig:start("sigterm", function() os.exit(0) end)
uv.run()
