-- Leak check for coru.tls, run under valgrind (not a busted spec):
--   valgrind --leak-check=full build/coru spec/tls_leakcheck.lua
package.path = "lua/?.lua;spec/?.lua;" .. package.path
local coru = require "coru"
local H = require "tls_helper"
io.stdout:setvbuf("no")
local c = H.certs()
local tls = coru.tls
local srv = assert(tls.listen("127.0.0.1", 0, function(s)
  local l = s:read_line()
  if l then s:write(l .. "!\n") end
  s:read()
end, {cert = c.server.cert, key = c.server.key, handshake_timeout = 3000,
  alpn = {"a"}}))
local port = srv:getsockname().port
for i = 1, 5 do print("conn", i)
  local s = assert(tls.connect("localhost", port, {ca = c.ca_file, alpn = {"a"}}))
  s:write("x\n") assert(s:read_line() == "x!")
  s:peer_certificate()
  if i % 2 == 0 then s:shutdown() end
  s:close()
end
-- failures
print(tls.connect("localhost", port, {}))
print(tls.connect("localhost", port, {ca = c.ca_file, servername = "other.example"}))
local raw = coru.tcp.connect("127.0.0.1", port) raw:write("GET / HTTP/1.0\r\n\r\n") print(raw:read()) raw:close()
local raw2 = coru.tcp.connect("127.0.0.1", port) coru.sleep(3500) raw2:close()
-- cancelled read, dropped stream
local s = assert(tls.connect("localhost", port, {ca = c.ca_file}))
local t = coru.spawn(function() return s:read() end)
coru.sleep(5) t:cancel()
s:close() s = nil
collectgarbage() collectgarbage()
-- truncated
local srv2 = assert(tls.listen("127.0.0.1", 0, function(s)
  s:write("abc") s:transport():shutdown() s:read()
end, {cert = c.server.cert, key = c.server.key}))
local s2 = assert(tls.connect("localhost", srv2:getsockname().port, {ca = c.ca_file}))
print(s2:read()) print(s2:read()) print(s2:tls_error())
s2:close()
srv:close() srv2:close()
H.cleanup()
coru.sleep(200)
coru.walk(function(h) print("live", h, h:is_active(), h:has_ref()) end)
