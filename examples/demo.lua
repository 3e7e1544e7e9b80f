-- A small tour of the scheduler: tasks, channels, timeouts, cancellation.
-- Run it with `make demo` or `build/coru examples/demo.lua`.
local jobs = coru.channel(2)
local results = coru.channel()

-- three workers take jobs and send results
local workers = {}
for w = 1, 3 do
  workers[w] = coru.spawn(function()
    while true do
      local job = jobs:recv()
      if job == nil then return end
      coru.sleep(job.ms)
      results:send(("worker %d finished %s after %d ms"):format(w, job.name, job.ms))
    end
  end)
end

-- a producer
coru.spawn(function()
  for i, ms in ipairs({30, 10, 20, 5, 15}) do jobs:send({name = "job" .. i, ms = ms}) end
  jobs:close()
end)

for _ = 1, 5 do print(results:recv()) end
coru.all(workers)

-- a timeout that fires, and one that does not
print("slow:", coru.timeout(20, function() coru.sleep(1000) return "never" end))
print("fast:", coru.timeout(200, function() coru.sleep(5) return "in time" end))

-- a callback API made sequential
local timer = coru.new_timer()
local v = coroutine.yield(function(resume) timer:start(10, 0, function() resume("timer said hi") end) end)
timer:close()
print(v)
