-- UDP ping-pong over loopback (issue 14, fixed-arity wrappers of udp
-- send/recv): N round trips between two tasks of one process, each a
-- send (done at once by uv_udp_try_send) and a recv (a suspension) on
-- both sides. Run by bench/callgrind.sh udp for instructions per round trip.
local N = tonumber(os.getenv("N") or "20000")
local a, b = coru.new_udp(), coru.new_udp()
assert(a:bind("127.0.0.1", 0))
assert(b:bind("127.0.0.1", 0))
local pa, pb = a:getsockname().port, b:getsockname().port
local echo = coru.spawn(function()
  for _ = 1, N do
    local data = assert(b:recv())
    assert(b:send(data, "127.0.0.1", pa))
  end
end)
for _ = 1, N do
  assert(a:send("ping", "127.0.0.1", pb))
  assert(a:recv() == "ping")
end
echo:await()
a:close()
b:close()
