-- W2 client for coru: C tasks, one request in flight each.
local coru = require "coru"
local cjson = require "cjson"
local decode, encode = cjson.decode, cjson.encode
local HOST = os.getenv("HOST") or "127.0.0.1"
local PORT = tonumber(os.getenv("PORT") or "7001")
local C = tonumber(os.getenv("C") or "1")
local DURATION = tonumber(os.getenv("DURATION") or "2")
local WARMUP = tonumber(os.getenv("WARMUP") or "0.3")
local PATCH = '@@ -12,7 +12,7 @@ fn main() {\n-    let x = "old";\n+    let x = "new value";\n     println!("{}", x);\n'
local ffi = require "ffi"
pcall(ffi.cdef, "typedef struct { long s, ns; } coru_ts; int clock_gettime(int, coru_ts *);")
local ts = ffi.new("coru_ts")
local now = function() ffi.C.clock_gettime(1, ts); return tonumber(ts.s) + tonumber(ts.ns) / 1e9 end
local t_warm = now() + WARMUP
local t_end = t_warm + DURATION
local measured, total, errors, next_id = 0, 0, 0, 1

local tasks = {}
for i = 1, C do
  tasks[i] = coru.spawn(function()
    local s, err = coru.tcp.connect(HOST, PORT)
    if not s then errors = errors + 1; io.stderr:write("connect: ", tostring(err), "\n"); return end
    while true do
      local id = next_id
      next_id = next_id + 1
      s:write(encode({ name = "patch", req_id = id, id = 1, patch = PATCH }) .. "\n")
      local line = s:read_line()
      local ok, msg = pcall(decode, line or "")
      if not (ok and type(msg) == "table" and msg.name == "ack" and msg.req_id == id) then
        errors = errors + 1
        io.stderr:write("bad reply: ", tostring(line), "\n")
        break
      end
      local t = now()
      total = total + 1
      if t >= t_warm and t < t_end then measured = measured + 1 end
      if t >= t_end then break end
    end
    s:close()
  end)
end
coru.all(tasks)
print(string.format("RESULT workload=rpc c=%d reqs=%d total=%d errors=%d secs=%.3f req_per_s=%.1f",
  C, measured, total, errors, DURATION, measured / DURATION))
os.exit(errors == 0 and 0 or 1)
