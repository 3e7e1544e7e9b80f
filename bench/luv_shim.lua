-- bench/luv_shim.lua - what coru.luv costs over coru's own callback API.
--
--   build/coru bench/luv_shim.lua            (or: luajit with coru.so)
--
-- The same two callback-style workloads, written once against a table of
-- functions, run through coru.luv and through the coru table in the same
-- process, alternating, 5 rounds each; prints the medians and the ratio.
--   echo:   N request/response round trips over one loopback TCP connection
--           (write with a callback, read_start)
--   timers: 10*N one-shot timers started and fired, each from the last one's callback
local coru = require "coru"
local luv = require "coru.luv"

local N = tonumber(os.getenv("N") or 20000)

local function echo(api)
  local server = api.new_tcp()
  assert(api.tcp_bind(server, "127.0.0.1", 0))
  local port = api.tcp_getsockname(server).port
  assert(api.listen(server, 16, function(err)
    assert(not err, err)
    local c = api.new_tcp()
    api.accept(server, c)
    api.read_start(c, function(e, data)
      if data then api.write(c, data, function() end) else api.close(c) end
    end)
  end))
  local client = api.new_tcp()
  local n, t0, t1 = 0
  api.tcp_connect(client, "127.0.0.1", port, function(err)
    assert(not err, err)
    api.read_start(client, function(e, data)
      if e == "closed" then return end   -- coru's read_start hears its own close; luv's does not
      assert(data, e)
      n = n + 1
      if n == N then
        t1 = coru.hrtime()
        api.close(client)
        api.close(server)
      else
        api.write(client, "ping", function() end)
      end
    end)
    t0 = coru.hrtime()
    api.write(client, "ping", function() end)
  end)
  return function() return (t1 - t0) / 1e6 end
end

local function timers(api)
  local N = 10 * N
  local t = api.new_timer()
  local n, t0, t1 = 0, coru.hrtime()
  local function tick()
    n = n + 1
    if n == N then t1 = coru.hrtime(); api.close(t) else api.timer_start(t, 0, 0, tick) end
  end
  api.timer_start(t, 0, 0, tick)
  return function() return (t1 - t0) / 1e6 end
end

-- Run the loop until the workload's handles are closed.
local function drive(work, api)
  local result
  coru.run(function()
    local get = work(api)
    -- wait for the loop to run dry of this workload (luv's run in a task)
    luv.run()
    result = get()
  end)
  return result
end

local function median(t)
  table.sort(t)
  return t[math.ceil(#t / 2)]
end

for _, w in ipairs {{"echo", echo}, {"timers", timers}} do
  local a, b = {}, {}
  for _ = 1, 5 do
    a[#a + 1] = drive(w[2], luv)
    b[#b + 1] = drive(w[2], coru)
  end
  local ma, mb = median(a), median(b)
  print(("%-7s N=%d  coru.luv %.1f ms  coru %.1f ms  ratio %.2f"):format(w[1], w[1] == "timers" and 10 * N or N, ma, mb, ma / mb))
end
