-- bench/floo/bench.lua: what one coru.floo session sustains, on loopback.
--
--   build/coru bench/floo/bench.lua [fake|coru] [N]
--
-- The server runs in a child process (the same binary): `fake` is
-- coru.floo.testing's scripted server, `coru` the collaborative server
-- coru.floo.server (from the collaborative-server branch, once merged). Session A edits one buffer,
-- session B follows it. Reported:
--   sequential  edits/s of `edit` awaited one after the other (one patch
--               in flight: bounded by the round trip)
--   concurrent  edits/s of 8 tasks calling `edit` at once (edits made while a
--               patch is in flight ride in the next one)
--   latency     from A calling `edit` to B's `patch` event, median and p99:
--               every edit inserts its marker "(i) " (a deleting one where
--               it deletes), found in the `+` lines of B's patches; an edit
--               whose marker a later one deleted before it was sent is
--               never seen and counted as "unseen"
--   flushes     (server coru) the server's disk flushes and changes.log
--               fdatasyncs per acknowledged patch, in each phase (asked of
--               the child over its stdin: a line "stats")
local coru = require "coru"

local mode, kind = arg[1], arg[2]
if mode == "serve" then
  -- child: start the server (in the data directory arg[3], made and
  -- removed by the parent), print its port, run until killed
  local port, srv
  if kind == "coru" then
    local server = require "coru.floo.server"
    srv = assert(server.start{data_dir = assert(arg[3], "serve coru: no data directory"), port = 0, log_level = "none",
                                    users = {alice = {secret = "a"}, bob = {secret = "b"}}})
    port = srv.port or (srv.server and srv.server:getsockname().port) or srv:getsockname().port
  else
    local testing = require "coru.floo.testing"
    local srv = assert(testing.server{owner = "alice", workspace = "bench"})
    port = srv.port
  end
  io.stdout:write(port, "\n")
  io.stdout:flush()
  local stdin = coru.stdin
  while true do
    local l = stdin:read_line()
    if not l then os.exit(0) end
    local s = srv and srv.flushes and ("%d %d %d"):format(srv.flushes, srv.syncs or -1, srv.patches) or "-"
    io.stdout:write(s, "\n")
    io.stdout:flush()
  end
end

kind = mode or "fake"
local N = tonumber(arg[2]) or 2000
local floo = require "coru.floo"

local function hr() return coru.hrtime() / 1e6 end   -- ms

local self_bin = arg[-1] or "build/coru"
-- the coru server's data: removed at the end, also when the benchmark fails
local data_dir = kind == "coru" and assert(coru.fs_mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/coru-floo-bench-XXXXXX"))
local p = assert(coru.process.spawn(self_bin, {arg[0], "serve", kind, data_dir or nil}, {stdio = {"pipe", "pipe", "inherit"}}))
local function cleanup()
  if not p.exited then p:kill() end
  p:wait()
  p:close()
  if data_dir then coru.fs.rmtree(data_dir) end
end

local function main()
  local line, lerr = p.stdout:read_line()
  local port = tonumber(line or error("the server did not start: " .. tostring(lerr)))

  local function join(user, secret)
    return assert(floo.connect{host = "127.0.0.1", port = port, username = user, secret = secret,
                               owner = "alice", workspace = "bench", client = "bench"})
  end
  -- the server's counters: flushes, fdatasyncs, patches (nil for the fake server)
  local function stats()
    assert(p.stdin:write("stats\n"))
    local l = assert(p.stdout:read_line())
    local f, s, n = l:match("^(%-?%d+) (%-?%d+) (%d+)$")
    if f then return {tonumber(f), tonumber(s), tonumber(n)} end
  end
  local function per_patch(s0, s1)
    if not (s0 and s1) then return "" end
    local n = s1[3] - s0[3]
    return (", %.3f flushes and %s fdatasyncs per patch (%d patches)"):format((s1[1] - s0[1]) / n,
      s1[2] < 0 and "n/a" or ("%.3f"):format((s1[2] - s0[2]) / n), n)
  end

  local a = join("alice", "a")
  local b = join("bob", "b")

  local lorem = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. 😀 é\n"):rep(30)
  local id = assert(a:create_buf("bench.txt", lorem))
  while not b.bufs[id] or not b.bufs[id].text do coru.sleep(1) end

  -- sent[i]: when A called edit i, once its marker "(i) " is in A's text.
  -- B's patch event whose text has the marker ends the sample; a marker a
  -- later edit of A deleted before B saw it is unseen (the patch text
  -- itself cannot tell: dmp shares a marker's "(" with the one it precedes)
  local sent, lat, unseen = {}, {}, 0
  b:on("patch", function(ev)
    local t, mine = hr(), a.bufs[id].text
    for k, t0 in pairs(sent) do
      local mark = "(" .. k .. ") "
      if ev.text and ev.text:find(mark, 1, true) then lat[#lat + 1] = t - t0 sent[k] = nil
      elseif not mine:find(mark, 1, true) then unseen = unseen + 1 sent[k] = nil end
    end
  end)

  math.randomseed(42)
  local function edit_fn(i)
    local called = hr()
    return function(text)
      if i > 0 then sent[i] = called end
      -- insert a marker at a random line start, or delete a few bytes there
      -- and put the marker in their place (every edit's latency is measured)
      if #text > 4000 and i % 3 == 0 then
        -- delete the first 20 bytes of a line (ASCII there: the lines start with text)
        local pos = text:find("\n", math.random(1, #text - 100), true) or #text
        local stop = text:find("[\128-\255\n]", pos + 1) or #text + 1
        return text:sub(1, pos) .. "(" .. i .. ") " .. text:sub(math.min(pos + 21, stop))
      end
      local pos = text:find("\n", math.random(1, #text), true) or #text
      return text:sub(1, pos) .. "(" .. i .. ") " .. text:sub(pos + 1)
    end
  end

  local function pct(t, q)
    table.sort(t)
    if #t == 0 then return 0 end
    return t[math.max(1, math.ceil(#t * q))]
  end

  -- warm up
  for i = 1, 200 do assert(a:edit(id, edit_fn(-i))) end

  local s_seq = stats()
  local t0 = hr()
  for i = 1, N do
    assert(a:edit(id, edit_fn(i)))
  end
  local seq_ms = hr() - t0
  local s_conc = stats()
  coru.sleep(200)
  local lat_seq = lat
  lat = {}

  local tasks, per = 8, math.floor(N / 8)
  local resyncs = 0
  a:on("resync", function() resyncs = resyncs + 1 end)
  local req0 = a.conn.next_id
  t0 = hr()
  local ts = {}
  for k = 1, tasks do
    ts[k] = coru.spawn(function()
      for i = 1, per do
        local n = N + (k - 1) * per + i
        assert(a:edit(id, edit_fn(n)))
      end
    end)
  end
  for k = 1, tasks do ts[k]:await() end
  local conc_ms = hr() - t0
  local conc_requests = a.conn.next_id - req0
  local s_end = stats()
  local deadline = coru.now() + 5000
  while coru.now() < deadline and b.bufs[id].text ~= a.bufs[id].text do coru.sleep(5) end
  local converged = b.bufs[id].text == a.bufs[id].text and b.bufs[id].md5 == a.bufs[id].md5

  print(("server %s, %d edits, buffer %d bytes"):format(kind, N, #a.bufs[id].text))
  print(("sequential: %.0f edits/s (%.3f ms per acknowledged edit)%s"):format(N / seq_ms * 1000, seq_ms / N,
    per_patch(s_seq, s_conc)))
  print(("concurrent (%d tasks): %.0f edits/s (%d requests, %d resyncs)%s"):format(tasks, tasks * per / conc_ms * 1000, conc_requests, resyncs,
    per_patch(s_conc, s_end)))
  for _ in pairs(sent) do unseen = unseen + 1 end
  print(("edit -> other session's patch event, sequential: median %.3f ms, p99 %.3f ms (%d samples of %d edits)")
    :format(pct(lat_seq, 0.5), pct(lat_seq, 0.99), #lat_seq, N))
  print(("edit -> other session's patch event, concurrent: median %.3f ms, p99 %.3f ms (%d samples of %d edits; %d edits unseen in all)")
    :format(pct(lat, 0.5), pct(lat, 0.99), #lat, tasks * per, unseen))
  print("converged: " .. tostring(converged))
  a:close()
  b:close()
end

local ok, err = pcall(main)
cleanup()
if not ok then error(err, 0) end
