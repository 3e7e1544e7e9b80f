-- bench/floo load generator: N clients in one workspace on loopback, each
-- with its own buffer, each sending a small patch every RATE ms for DUR
-- seconds. Measures patches applied and broadcast per second, the latency
-- from send to receipt by every other client (p50, p99), and the server's
-- CPU per applied patch and RSS (from /proc/PID). Prints one JSON line.
--   build/coru bench/floo/load.lua PORT PID N [DUR_S] [RATE_MS]
local coru = require "coru"
local jsonl = require "coru.jsonl"
local port, pid, n = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
local dur, rate = tonumber(arg[4]) or 5, tonumber(arg[5]) or 50
local D = coru.dmp.new{}
local md5 = coru.md5
local hr = coru.hrtime

-- CPU time of every thread of the server (ns, from schedstat: the thread
-- pool's fdatasync and writes count too)
local function cpu_ns()
  local total = 0
  local p = io.popen("cat /proc/" .. pid .. "/task/*/schedstat 2>/dev/null")
  for l in p:lines() do total = total + (tonumber(l:match("^(%d+)")) or 0) end
  p:close()
  return total
end
local function rss_kb()
  for l in io.lines("/proc/" .. pid .. "/status") do
    local v = l:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local sent = {}          -- md5_after of a patch (unique: each text names its client) -> send time (ns)
local lat, nlat = {}, 0
local received = 0
local measuring = false

local clients = {}
for i = 1, n do
  local s = assert(coru.tcp.connect("127.0.0.1", port))
  s:set_max_line(64 * 1024 * 1024)
  local c = {s = s, i = i, req = 0}
  clients[i] = c
  function c.send(m) c.req = c.req + 1 m.req_id = c.req s:write(jsonl.encode(m) .. "\n", function() end) return c.req end
  c.send({username = "alice", secret = "bench-secret", room_owner = "alice", room = "bench", version = 0.11, client = "bench"})
  local line = assert(s:read_line())
  assert(line:find('"room_info"', 1, true), line)
end
-- one buffer per client
for _, c in ipairs(clients) do
  c.text = ("client %d\n"):format(c.i)
  local id = c.send({name = "create_buf", path = ("c%d.txt"):format(c.i), buf = c.text, encoding = "utf8"})
  while true do
    local line = assert(c.s:read_line())
    if line:find('"create_buf"', 1, true) and line:find('"res_id":' .. id .. "[,}]") then
      c.id = tonumber(line:match('"id":(%d+)'))
      break
    end
  end
end
-- readers: a patch is known by its md5_after
for _, c in ipairs(clients) do
  coru.spawn(function()
    local s = c.s
    while true do
      local line = s:read_line()
      if not line then return end
      if measuring then
        local sum = line:match('"md5_after":"(%x+)"')
        if sum and line:find('"name":"patch"', 1, true) then
          local t = sent[sum]
          if t then
            received = received + 1
            nlat = nlat + 1
            lat[nlat] = (hr() - t) / 1e6
          end
        end
      end
    end
  end)
end
coru.sleep(200)
local t0, cpu0 = hr(), cpu_ns()
measuring = true
local senders = {}
for k, c in ipairs(clients) do
  senders[k] = coru.spawn(function()
    coru.sleep((k - 1) * rate / n)       -- spread the clients over the period
    local seq = 0
    local next_t = coru.now()
    while (hr() - t0) / 1e9 < dur do
      seq = seq + 1
      local new = c.text .. ("%d;"):format(seq)
      local p = D:patch_to_text(D:patch_make(c.text, new))
      local after = md5(new)
      sent[after] = hr()
      c.send({name = "patch", id = c.id, patch = p, md5_before = md5(c.text), md5_after = after})
      c.text = new
      next_t = next_t + rate
      local wait = next_t - coru.now()
      if wait > 0 then coru.sleep(wait) else coru.pass() end
    end
  end)
end
coru.all(senders)
coru.sleep(300)          -- the last broadcasts
measuring = false
local wall = (hr() - t0) / 1e9
local cpu = (cpu_ns() - cpu0) / 1e9
local patches = received / (n - 1)
table.sort(lat)
local function pct(p) return nlat > 0 and lat[math.max(1, math.ceil(nlat * p))] or 0 end
io.stdout:write(jsonl.encode({
  clients = n, patches_per_s = patches / dur, broadcasts_per_s = received / dur,
  p50_ms = pct(0.5), p99_ms = pct(0.99), samples = nlat,
  cpu_us_per_patch = patches > 0 and cpu * 1e6 / patches or 0, rss_kb = rss_kb(), wall_s = wall,
}), "\n")
for _, c in ipairs(clients) do c.s:close() end
os.exit(0)
