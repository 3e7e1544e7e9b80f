-- coru.floo.server's group commit: a flush starts as soon as there is work
-- and no flush runs; commits made during a flush go in the next one. Pinned
-- by counts, not by timing: awaited edits one by one cost one flush (one
-- changes.log fdatasync) each, concurrent sessions share flushes, and every
-- ack arrives after the change it confirms is in changes.log.
local coru = require "coru"
local helper = require "helper"
local fs = require "coru.fs"
local floo = require "coru.floo"
local H = require "floo_helper"
local server = H.server

describe("coru.floo.server group commit", function()
  local function join(srv, user)
    return assert(floo.connect{host = "127.0.0.1", port = srv.port, username = user,
                               secret = H.USERS[user].secret, owner = "alice", workspace = "ws"})
  end

  -- n awaited edits by session s on buffer id, each appending marker(i);
  -- after each ack the change must already be in the workspace's changes.log
  local function edit_serially(s, id, log, n, marker)
    for i = 1, n do
      local m = marker(i)
      assert(s:edit(id, function(t) return t .. m end))
      local text = assert(fs.read_file(log))
      assert(text:find(m, 1, true), "acknowledged before it was on disk: " .. m)
    end
  end

  local function counts(srv) return {flushes = srv.flushes, syncs = srv.syncs, patches = srv.patches} end
  local function since(srv, c0)
    return {flushes = srv.flushes - c0.flushes, syncs = srv.syncs - c0.syncs, patches = srv.patches - c0.patches}
  end

  -- a server, alice's session with one buffer per name, the path of changes.log
  local function setup(opts, names)
    local srv, cfg = H.start(opts)
    local a = join(srv, "alice")
    local ids = {}
    for i, name in ipairs(names) do ids[i] = assert(a:create_buf(name, name .. ":")) end
    helper.wait_until(function() return srv.pending[1] == nil and next(srv.dirty) == nil end, 2000, "the creates flushed")
    return srv, cfg, a, ids, srv:workspace("alice/ws").dir .. "/changes.log"
  end

  -- n awaited edits one by one on a server started with opts: n flushes, n fdatasyncs
  local function serial_case(opts, n, tag)
    helper.run(function()
      local srv, cfg, a, ids, log = setup(opts, {tag .. ".txt"})
      local c0 = counts(srv)
      edit_serially(a, ids[1], log, n, function(i) return "Q" .. tag .. i .. "Z" end)
      assert.same({flushes = n, syncs = n, patches = n}, since(srv, c0))
      a:close()
      H.stop(srv, cfg)
    end)
  end

  it("flushes once per awaited edit, at once (no window), each ack after its fdatasync", function()
    serial_case(nil, 40, "serial")
  end)

  it("gathers the commits of concurrent sessions made during a flush into the next one", function()
    helper.run(function()
      local srv, cfg, a, ids, log = setup(nil, {"b1.txt", "b2.txt", "b3.txt", "b4.txt"})
      local sessions = {a, join(srv, "bob"), join(srv, "alice"), join(srv, "bob")}
      for _, s in ipairs(sessions) do
        helper.wait_until(function() return s.bufs[ids[4]] and s.bufs[ids[4]].text end, 2000, "the buffers")
      end
      local c0 = counts(srv)
      local tasks = {}
      for k, s in ipairs(sessions) do
        tasks[k] = coru.spawn(edit_serially, s, ids[k], log, 25, function(i) return "Qc" .. k .. "n" .. i .. "Z" end)
      end
      for _, t in ipairs(tasks) do t:await() end
      local d = since(srv, c0)
      assert.equal(100, d.patches)
      assert.is_true(d.flushes < d.patches, ("%d flushes for %d patches"):format(d.flushes, d.patches))
      assert.equal(d.flushes, d.syncs)       -- one workspace: one fdatasync per flush
      for _, s in ipairs(sessions) do s:close() end
      H.stop(srv, cfg)
    end)
  end)

  it("keeps an optional minimum interval (flush_delay) without losing durability", function()
    serial_case({flush_delay = 5}, 10, "delay")
  end)

  it("refuses a flush_delay that is not a number of ms >= 0", function()
    helper.run(function()
      for _, bad in ipairs({-1, "50", 0 / 0, math.huge}) do
        local none, err = server.start({flush_delay = bad, port = 0, log_level = "none"})
        assert.is_nil(none)
        assert.equal("config.flush_delay: a number of ms >= 0", err)
      end
    end)
  end)
end)
