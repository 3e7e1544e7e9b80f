-- Regression specs of issue 9: each pins a class of scheduler bug (a task
-- resumed twice, with stale values, or too deep), named after the bug.
local coru = require "coru"
local H = require "helper"
local run = H.run

describe("regress 9.1: a cancel between wake and run", function()
  it("loses no value: the woken receiver gets it, the cancel comes at its next suspension", function()
    run(function()
      local ch = coru.channel()
      local got, caught
      local r = coru.spawn(function()
        got = ch:recv()
        local ok, err = pcall(coru.sleep, 1000)
        caught = err
        return ok
      end)
      assert.is_true(ch:send("precious"))   -- from a task: r is queued, not yet run
      assert.is_true(r:cancel("late"))
      assert.is_false(r:await())
      assert.equal("precious", got)
      assert.is_true(coru.is_cancelled(caught))
      assert.equal("late", caught.reason)
    end)
  end)

  it("loses no result of an awaited task either", function()
    run(function()
      local child = coru.spawn(function() coru.pass(); return "result" end)
      local got, caught
      local w = coru.spawn(function()
        got = child:await()
        local _, err = pcall(coru.pass)
        caught = err
      end)
      -- the child ends in a loop callback and wakes w: cancel w from a task
      -- spawned by that same wakeup chain (a third task running before w)
      coru.spawn(function() child:await(); w:cancel() end)
      w:await()
      assert.equal("result", got)
      assert.is_true(coru.is_cancelled(caught))
    end)
  end)
end)

describe("regress 9.2: re-entrant cancel during dispatch", function()
  it("a yielded function that resumes and then cancels its task leaves no stale values", function()
    run(function()
      local t = coru.spawn(function()
        local me = coru.current()
        local a, b = coroutine.yield(function(resume) resume("v", "w"); me:cancel("x") end)
        local t0 = coru.now()
        local ok, err = pcall(coru.sleep, 10000)
        return a, b, ok, coru.is_cancelled(err), coru.now() - t0 < 5000
      end)
      local a, b, ok, cancelled, quick = t:await()
      assert.equal("v", a); assert.equal("w", b)
      assert.is_false(ok)
      assert.is_true(cancelled)
      assert.is_true(quick)
      collectgarbage(); collectgarbage()
    end)
  end)

  it("a yielded function that cancels its task and raises: the error is raised, the task ends done", function()
    run(function()
      local t = coru.spawn(function()
        local me = coru.current()
        local ok, err = pcall(coroutine.yield, function() me:cancel(); error("boom", 0) end)
        return "finished", ok, err
      end)
      local r, ok, err = t:await()
      assert.equal("finished", r)
      assert.is_false(ok)
      assert.equal("boom", err)
      assert.equal("done", t:status())
    end)
  end)

  it("a yielded function that cancels its task without resuming: the cancel is raised at the yield", function()
    run(function()
      local saved
      local t = coru.spawn(function()
        local me = coru.current()
        local ok, err = pcall(coroutine.yield, function(resume) saved = resume; me:cancel("now") end)
        return ok, err
      end)
      local ok, err = t:await()
      assert.is_false(ok)
      assert.is_true(coru.is_cancelled(err))
      assert.equal("now", err.reason)
      assert.is_false(saved("late"))      -- the late resume is discarded
    end)
  end)
end)

describe("regress 9.2b: a second cancel while one is on its way", function()
  it("adds nothing: the task sees one cancellation", function()
    run(function()
      local t
      t = coru.spawn(function()
        local ok1, e1 = pcall(coru.timeout, 1000, function()
          pcall(coru.sleep, 1000)
          t:cancel("again")             -- runs while t's own cancel stops this subtask
        end)
        local ok2, e2 = pcall(coru.sleep, 1)
        return ok1, e1, ok2, e2
      end)
      t:cancel("first")
      local ok1, e1, ok2 = t:await()
      assert.is_false(ok1)
      assert.equal("first", e1.reason)
      assert.is_true(ok2)
    end)
  end)
end)

describe("regress 9.3: timeout expiry resumes its caller once", function()
  it("when the subtask's unwinding cancels the caller, the cancel waits for the next suspension", function()
    run(function()
      local parent = coru.spawn(function()
        local me = coru.current()
        local r1, r2 = coru.timeout(10, function()
          local _, e = pcall(coru.sleep, 1000)
          me:cancel("from the child")
          error(e, 0)
        end)
        local ok, err = pcall(coru.sleep, 50)
        return r1, r2, ok, err
      end)
      local r1, r2, ok, err = parent:await()
      assert.is_nil(r1)
      assert.equal("timeout", r2)
      assert.is_false(ok)
      assert.is_true(coru.is_cancelled(err))
      assert.equal("from the child", err.reason)
      assert.equal("done", parent:status())
    end)
  end)

  it("a finished caller is not restarted by the expiry", function()
    run(function()
      local runs = 0
      local parent = coru.spawn(function()
        local me = coru.current()
        runs = runs + 1
        coru.timeout(10, function()
          pcall(coru.sleep, 1000)
          me:cancel()
        end)
        return "end"
      end)
      local ok, err = pcall(parent.await, parent)
      coru.sleep(20)
      assert.equal(1, runs)
      -- the pending cancel is never delivered: the caller ended without suspending
      assert.is_true(ok, tostring(err))
      assert.equal("end", err)
    end)
  end)
end)

describe("regress 9.4: bounded C recursion", function()
  it("recursive spawn + await runs 50,000 levels deep", function()
    run(function()
      local function f(n)
        if n == 0 then return 0 end
        return coru.spawn(f, n - 1):await() + 1
      end
      assert.equal(50000, f(50000))
    end)
  end)

  it("a chain of 50,000 cancels, each unwinding cancelling the next", function()
    run(function()
      local N = 50000
      local tasks, unwound = {}, 0
      for i = 1, N do
        tasks[i] = coru.spawn(function()
          pcall(coru.sleep, 100000)
          unwound = unwound + 1
          if tasks[i + 1] then tasks[i + 1]:cancel() end
        end)
      end
      tasks[1]:cancel()
      H.wait_until(function() return unwound == N end, 10000, "every task to unwind")
      assert.equal("done", tasks[N]:status())
    end)
  end)
end)

describe("regress 9.5: a yielded function runs like a callback", function()
  it("sees no current task, and a suspending call names the rule", function()
    run(function()
      local cur, err = "unset", nil
      coroutine.yield(function(resume)
        cur = coru.current()
        local _, e = pcall(coru.sleep, 1)
        err = e
        resume()
      end)
      assert.is_nil(cur)
      assert.matches("coru.sleep: needs a running task$", err)   -- sleep has no callback form
    end)
  end)

  it("an error raised after resume reaches on_error with a traceback", function()
    run(function()
      local errs = H.capture_errors(function()
        coroutine.yield(function(resume) resume(); error("after resume") end)
      end)
      assert.equal(1, #errs)
      assert.matches("after resume", errs[1].err)
      assert.matches("traceback", errs[1].tb)
    end)
  end)
end)

describe("regress 9.5b: on_error runs like a callback too", function()
  it("sees no current task when a nested task's yielded function fails after resume", function()
    run(function()
      local seen, got = "unset", nil
      local prev = coru.on_error(function(err) seen = coru.current(); got = err end)
      local outer = coru.spawn(function()
        -- a nested task (spawned from a task) whose yielded function raises after resume
        coru.spawn(function()
          coroutine.yield(function(resume) resume(); error("late", 0) end)
        end)
        return "outer"
      end)
      assert.equal("outer", outer:await())
      coru.on_error(prev)
      assert.equal("late", got)
      assert.is_nil(seen)
    end)
  end)
end)

describe("regress 9.6: all/any of the caller itself", function()
  it("raise instead of waiting for ever", function()
    run(function()
      local me = coru.current()
      local other = coru.spawn(function() coru.sleep(1) end)
      assert.error_matches(function() coru.all({other, me}) end, "cannot await itself")
      assert.error_matches(function() coru.any({me}) end, "cannot await itself")
      other:await()
    end)
  end)
end)

-- A suspending call where the VM cannot yield (a table.sort comparator)
-- is refused before anything is allocated or changed.
local function refused(f, ...)
  local args, ok, err = {...}, nil, nil
  table.sort({2, 1}, function(a, b)
    if ok == nil then ok, err = pcall(f, unpack(args)) end
    return a < b
  end)
  return ok, err
end

describe("regress 9.7: refused suspensions leave nothing behind", function()
  it("every scheduler wait says 'cannot suspend here' and leaks no reference", function()
    run(function()
      local ch = coru.channel()
      local other = coru.spawn(function() coru.sleep(5) end)
      local before = H.registry_refs()
      for i = 1, 50 do
        for _, call in ipairs({
          {coru.sleep, 1}, {coru.pass}, {other.await, other}, {ch.recv, ch}, {ch.send, ch, i},
          {coru.all, {other}}, {coru.any, {other}}, {coru.timeout, 10, function() end},
          {coru.run, function() end}, {coru.await, function(cb) cb() end},
        }) do
          local ok, err = refused(unpack(call))
          assert.is_false(ok)
          assert.matches("cannot suspend here", err)
        end
      end
      assert.equal(0, ch:len())
      assert.equal(before, H.registry_refs())
      other:await()
    end)
  end)

  it("a coroutine of the user's resumed where the task cannot yield is refused too", function()
    run(function()
      local ok, err = refused(function()
        local co = coroutine.create(function() return coru.sleep(1) end)
        local ok2, err2 = coroutine.resume(co)
        if not ok2 then error(err2, 0) end
      end)
      assert.is_false(ok)
      assert.matches("coru.sleep: cannot suspend here", err)
      -- from the task's own code, the same coroutine suspends fine
      local co = coroutine.wrap(function() coru.sleep(1); return "inner" end)
      assert.equal("inner", co())
    end)
  end)

  it("fs, work, dns refuse before the request exists", function()
    run(function()
      local live = coru._fs_live_requests()
      local before = H.registry_refs()
      for _ = 1, 50 do
        for _, call in ipairs({
          {coru.fs_stat, "."}, {coru.fs_read_file, "Makefile"}, {coru.fs_mkdtemp, "/tmp/coru-XXXXXX"},
          {coru.work, function() return 1 end}, {coru.getaddrinfo, "localhost"},
        }) do
          local ok, err = refused(unpack(call))
          assert.is_false(ok)
          assert.matches("cannot suspend here", err)
        end
      end
      assert.equal(live, coru._fs_live_requests())
      assert.equal(before, H.registry_refs())
    end)
  end)

  it("a refused stream read leaves the stream readable; a refused write sends nothing", function()
    run(function()
      local got = coru.channel(1)
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(conn)
        got:send(conn:read_all())
        conn:close()
      end))
      local c = assert(coru.tcp.connect("127.0.0.1", srv:getsockname().port))
      local big = string.rep("x", 8 * 1024 * 1024)
      for _, call in ipairs({
        {c.read, c}, {c.read_line, c}, {c.read_bytes, c, 3}, {c.read_until, c, "\n"},
        {c.read_all, c}, {c.write, c, big}, {c.write, c, {big, big}}, {c.shutdown, c},
      }) do
        local ok, err = refused(unpack(call))
        assert.is_false(ok)
        assert.matches("cannot suspend here", err)
      end
      -- not "busy": a reader may still read (a timeout shows it waits)
      c:settimeouts(nil, nil, 20)
      assert.same({nil, "timeout", ""}, {c:read_line()})
      c:settimeouts(nil, nil, 0)
      assert.is_true(c:write("END"))
      assert.is_true(c:shutdown())
      assert.equal("END", got:recv())
      c:close()
      srv:close()
    end)
  end)

  it("udp send/recv and connect refuse before anything starts", function()
    run(function()
      local u = coru.new_udp()
      assert(u:bind("127.0.0.1", 0))
      local port = u:getsockname().port
      local before = H.registry_refs()
      for _ = 1, 20 do
        assert.matches("cannot suspend here", select(2, refused(u.send, u, "x", "127.0.0.1", port)))
        assert.matches("cannot suspend here", select(2, refused(u.recv, u)))
        assert.matches("cannot suspend here", select(2, refused(coru.tcp.connect, "127.0.0.1", 1)))
      end
      assert.equal(before, H.registry_refs())
      -- the socket is not busy and got nothing
      coru.timeout(20, function() return u:recv() end)
      assert.is_true(u:send("y", "127.0.0.1", port))
      assert.equal("y", (u:recv()))
      u:close()
    end)
  end)
end)

describe("regress 9.8: callable tables wherever a callback goes", function()
  it("coru.work takes a callable table as its callback", function()
    run(function()
      local ch = coru.channel(1)
      local cb = setmetatable({}, {__call = function(_, err, v) ch:send({err, v}) end})
      coru.work(function(a) return a * 2 end, 21, cb)
      assert.same({nil, 42}, ch:recv())
    end)
  end)
end)

describe("coru.tasks", function()
  it("lists every task not ended and what a suspended one waits on", function()
    run(function()
      local ch = coru.channel()
      local a = coru.spawn(function() return ch:recv() end)
      local b = coru.spawn(function() coru.sleep(1000) end)
      local c = coru.spawn(function() return a:await() end)
      local d = coru.spawn(function() coroutine.yield(function() end) end)
      local seen = {}
      for _, e in ipairs(coru.tasks()) do seen[e.task] = e end
      assert.equal("running", seen[coru.current()].status)
      assert.equal("channel:recv", seen[a].waits)
      assert.equal("coru.sleep", seen[b].waits)
      assert.equal("task:await", seen[c].waits)
      assert.equal("coroutine.yield(f)", seen[d].waits)
      ch:send("x")
      assert.equal("(woken: about to run)", (function()
        for _, e in ipairs(coru.tasks()) do if e.task == a then return e.waits end end
      end)())
      for _, t in ipairs({b, d}) do t:cancel() end
      assert.equal("x", c:await())
      coru.pass()
      for _, e in ipairs(coru.tasks()) do
        for _, t in ipairs({a, b, c, d}) do assert.are_not.equal(t, e.task) end
      end
    end)
  end)
end)

-- Sixty tasks doing random channel sends/receives, sleeps, passes, yielded
-- functions resumed now or later, awaits, timeouts, with random cancels
-- (some from inside yielded functions). On the scheduler before issue 9
-- every seed lost channel values, resumed tasks with stale values, or read
-- freed stack slots.
local function mix(seed)
  local rnd = (function()   -- a small LCG: the same sequence in both faces
    local x = seed
    return function(a, b)
      x = (x * 1103515245 + 12345) % 2147483648
      if not a then return x / 2147483648 end
      if not b then a, b = 1, a end
      return a + math.floor(x / 2147483648 * (b - a + 1))   -- high bits: the low ones cycle
    end
  end)()
  local sent, got, nextv = {}, {}, 0
  local failures = {}
  local chans, tasks = {}, {}
  for i = 1, 3 do chans[i] = coru.channel(rnd(0, 2)) end
  local function take(v) if v then assert(not got[v], "received twice: " .. tostring(v)); got[v] = true end end
  local function body(id)
    for _ = 1, 200 do
      local op = rnd(8)
      local ok, err = pcall(function()
        if op == 1 then
          nextv = nextv + 1
          local v = nextv
          if chans[rnd(3)]:send(v) then sent[v] = true end
        elseif op == 2 then take((chans[rnd(3)]:recv()))
        elseif op == 3 then coru.sleep(rnd(0, 2))
        elseif op == 4 then coru.pass()
        elseif op == 5 then
          local x = rnd()
          local r = coroutine.yield(function(resume)
            if rnd(2) == 1 then resume(x) else coru.spawn(function() coru.pass(); resume(x) end) end
            if rnd(6) == 1 then local t = tasks[rnd(#tasks)]; if t then t:cancel("in f") end end
          end)
          assert(r == x, "resumed with a stale value")
        elseif op == 6 then
          local j = rnd(#tasks)
          if j > id then pcall(tasks[j].await, tasks[j]) end   -- no cycles
        elseif op == 7 then
          local t = tasks[rnd(#tasks)]
          if t then t:cancel("random") end
        else
          local r1, r2 = coru.timeout(rnd(0, 3), function() coru.sleep(rnd(0, 4)); return "ok" end)
          assert(r1 == "ok" or r2 == "timeout", "timeout returned " .. tostring(r1) .. ", " .. tostring(r2))
        end
      end)
      if not ok and not coru.is_cancelled(err) then error(err, 0) end
    end
  end
  for i = 1, 60 do
    tasks[i] = coru.spawn(function()
      local ok, e = pcall(body, i)
      if not ok and not coru.is_cancelled(e) then failures[#failures + 1] = tostring(e) end
    end)
  end
  local drainers = {}
  for i = 1, 3 do
    drainers[i] = coru.spawn(function()
      while true do
        local v, e = chans[i]:recv()
        if v == nil and e == "closed" then return end
        take(v)
      end
    end)
  end
  coru.sleep(300)
  for i = 1, 3 do chans[i]:close() end
  for i = 1, #tasks do pcall(tasks[i].await, tasks[i]) end
  for i = 1, 3 do drainers[i]:await() end
  assert.same({}, failures)
  local lost, n = 0, 0
  for v in pairs(sent) do n = n + 1; if not got[v] then lost = lost + 1 end end
  assert.is_true(n >= 10, "too few sends to mean anything: " .. n)
  assert.equal(0, lost)
  for i, t in ipairs(tasks) do
    assert.is_true(t:status() ~= "suspended" and t:status() ~= "running",
      ("task %d is %s after being awaited"):format(i, t:status()))
  end
end

describe("regress 9: a random mix of waits and cancels", function()
  local seeds = {}
  for n in (os.getenv("CORU_MIX_SEEDS") or "1 2 3"):gmatch("%d+") do seeds[#seeds + 1] = tonumber(n) end
  for _, seed in ipairs(seeds) do
    it("loses no sent value and resumes no task with stale values (seed " .. seed .. ")", function()
      run(mix, seed)
    end)
  end
end)
