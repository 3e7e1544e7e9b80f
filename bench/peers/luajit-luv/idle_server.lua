-- W3 server for LuaJIT + luv: a coroutine per connection waiting for lines.
package.path = arg[0]:match("^(.*/)") .. "?.lua;" .. package.path
local uv = require "luv"
local co = require "co"
local server = uv.new_tcp()
assert(server:bind(os.getenv("HOST") or "127.0.0.1", tonumber(os.getenv("PORT") or "7002")))
assert(server:listen(1024, function()
  local sock = uv.new_tcp()
  server:accept(sock)
  co.spawn(function()
    local next_line = co.reader(sock)
    while true do
      local line = next_line()
      if not line then break end
      if line == "hello" then sock:write("ok\n") end
    end
    sock:close()
  end)
end))
print("READY port=" .. server:getsockname().port)
io.stdout:flush()
local sig = uv.new_signal()
sig:start("sigterm", function() os.exit(0) end)
uv.run()
