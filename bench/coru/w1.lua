-- W1 for coru (run by the coru host: this chunk is the main task).
--  loop : coru.pass() - the task suspends on the runtime's shared uv_idle_t;
--         control goes back to uv_run, which runs a loop iteration (poll
--         with timeout 0 since an idle handle is active), and the C idle
--         callback resumes the task. One genuine loop round trip per op.
--  sched: coroutine.yield() with no values inside a task - a pure
--         scheduler round trip: the C resume loop (task_step) sees an empty
--         yield and resumes the coroutine at once, libuv is not touched.
-- Timing: CLOCK_MONOTONIC through the LuaJIT FFI, around the loop only.
local ffi = require "ffi"
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } coru_bench_timespec;
int clock_gettime(int clk, coru_bench_timespec *ts);
]]
local ts = ffi.new("coru_bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local variant = arg[1] or "loop"
local N = tonumber(os.getenv("N") or "1000000")

local op
if variant == "loop" then
  op = coru.pass
elseif variant == "sched" then
  op = coroutine.yield
else
  print("UNSUPPORTED workload=w1 variant=" .. variant .. " reason=unknown-variant")
  os.exit(0)
end

local n, t0, t1 = 0, 0, 0
local task = coru.spawn(function()
  t0 = now()
  for _ = 1, N do
    op()
    n = n + 1
  end
  t1 = now()
end)
task:await()
local secs = t1 - t0
io.stdout:write(string.format("RESULT workload=w1 variant=%s n=%d secs=%.6f ops_per_s=%.1f\n",
  variant, n, secs, n / secs))
io.stdout:flush()
if n ~= N then os.exit(1) end
