-- W1 for LuaJIT + luv (co.lua): loop = a uv idle handle started per op,
-- whose callback stops it and resumes the coroutine; sched = an operation
-- whose callback is called at once (the coroutine layer alone).
package.path = arg[0]:match("^(.*/)") .. "?.lua;" .. package.path
local uv = require "luv"
local co = require "co"
local variant = arg[1] or "loop"
local N = tonumber(os.getenv("N") or "1000000")
local idle = uv.new_idle()
local ops = {
  loop = function(resume) idle:start(function() idle:stop() resume() end) end,
  sched = function(resume) resume() end,
}
local op = ops[variant]
if not op then
  print("UNSUPPORTED workload=w1 variant=" .. variant .. " reason=unknown-variant")
  os.exit(0)
end
local t0, t1
co.spawn(function()
  local wait = co.waiter()
  t0 = uv.hrtime()
  for _ = 1, N do wait(op) end
  t1 = uv.hrtime()
  idle:close()
end)
uv.run()
local secs = (t1 - t0) / 1e9
print(("RESULT workload=w1 variant=%s n=%d secs=%.6f ops_per_s=%.1f"):format(variant, N, secs, N / secs))
