-- TLS benchmark: handshakes/s and bulk MB/s, client and server in one
-- coru process over 127.0.0.1. usage: coru bench/tls/coru_bench.lua CERTDIR [secs] [MiB]
local coru = require "coru"
local tls = coru.tls
local dir, secs, mib = arg[1], tonumber(arg[2] or 3), tonumber(arg[3] or 512)
local sctx = assert(tls.context{server = true, cert = dir .. "/server.pem", key = dir .. "/server.key"})
local cctx = assert(tls.context{ca = dir .. "/ca.pem"})

local srv = assert(tls.listen("127.0.0.1", 0, function(s)
  local first = s:read_bytes(1)
  if first == "h" then s:write("k") s:read() return end
  local n = 1   -- the first byte
  while true do
    local d = s:read()
    if not d then break end
    n = n + #d
  end
  s:write(tostring(n))
  s:shutdown()
end, {context = sctx}))
local port = srv:getsockname().port

-- handshakes: 16 workers connect, exchange one byte, close
local count, stop = 0, coru.now() + secs * 1000
local workers = {}
for i = 1, 16 do
  workers[i] = coru.spawn(function()
    while coru.now() < stop do
      local s = assert(tls.connect("localhost", port, {context = cctx}))
      s:write("h")
      assert(s:read_bytes(1) == "k")
      s:close()
      count = count + 1
    end
  end)
end
local t0 = coru.now()
coru.all(workers)
local hs = count / ((coru.now() - t0) / 1000)

-- bulk: one connection, mib MiB in 1 MiB writes
local chunk = string.rep("x", 1024 * 1024)
local s = assert(tls.connect("localhost", port, {context = cctx}))
t0 = coru.now()
for _ = 1, mib do assert(s:write(chunk)) end
s:shutdown()
local n = tonumber(s:read_all())
local dt = (coru.now() - t0) / 1000
assert(n == mib * 1024 * 1024, "got " .. tostring(n))
s:close()
srv:close()
print(string.format("coru %s: %.0f handshakes/s (16 concurrent), bulk %.0f MB/s (%d MiB)",
  coru.version, hs, mib * 1.048576 / dt, mib))
