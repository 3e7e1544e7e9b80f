-- W2 client for coru: C tasks, each with exactly one request in flight.
local ffi = require "ffi"
local json = require "coru.json"           -- coru's own JSON (no pcall: nil, msg on bad input)
local decode, encode = json.decode, json.encode
local type = type

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } coru_bench_timespec;
int clock_gettime(int clk, coru_bench_timespec *ts);
]]
local ts = ffi.new("coru_bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local HOST = os.getenv("HOST") or "127.0.0.1"
local PORT = tonumber(os.getenv("PORT") or "7001")
local C = tonumber(os.getenv("C") or "1")
local DURATION = tonumber(os.getenv("DURATION") or "2")
local WARMUP = tonumber(os.getenv("WARMUP") or "0.3")
local PATCH = '@@ -12,7 +12,7 @@ fn main() {\n-    let x = "old";\n+    let x = "new value";\n     println!("{}", x);\n'

local t_warm = now() + WARMUP
local t_end = t_warm + DURATION
local measured, total, errors, next_id = 0, 0, 0, 1

local function client()
  local sock, err = coru.tcp.connect(HOST, PORT)
  if not sock then
    errors = errors + 1
    io.stderr:write("connect: ", tostring(err), "\n")
    return
  end
  sock:nodelay(true)
  while true do
    local id = next_id
    next_id = next_id + 1
    local ok, werr = sock:write(encode({ name = "patch", req_id = id, id = 1, patch = PATCH }) .. "\n")
    local line = ok and sock:read_line()
    local msg = decode(line or "")
    if not (type(msg) == "table" and msg.name == "ack" and msg.req_id == id) then
      errors = errors + 1
      io.stderr:write("bad reply: ", tostring(line), " ", tostring(werr), "\n")
      break
    end
    local t = now()
    total = total + 1
    if t >= t_warm and t < t_end then measured = measured + 1 end
    if t >= t_end then break end
  end
  sock:close()
end

local tasks = {}
for i = 1, C do tasks[i] = coru.spawn(client) end
for i = 1, C do tasks[i]:await() end
io.stdout:write(string.format("RESULT workload=rpc c=%d reqs=%d total=%d errors=%d secs=%.3f req_per_s=%.1f\n",
  C, measured, total, errors, DURATION, measured / DURATION))
io.stdout:flush()
os.exit(errors == 0 and 0 or 1)
