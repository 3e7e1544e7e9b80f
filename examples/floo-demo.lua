-- make demo: a coru-floo-server on loopback with a fresh workspace, two
-- floo-sync mirrors on two temporary directories, and a scripted typist
-- editing files in the first. Ends with "converged" and the time when the
-- second directory and the server's buffers match the first; exit 0 then,
-- 1 otherwise.
--
--   build/coru examples/floo-demo.lua [path/to/coru]
local coru = require "coru"
local fs = require "coru.fs"
local jsonl = require "coru.jsonl"
local testing = require "coru.floo.testing"   -- its launchers of coru scripts, its tree compare

local CORU = arg[1] or os.getenv("CORU_BIN") or "build/coru"
local HERE = fs.dirname(arg[0])
local ROOT = fs.dirname(HERE)
local SERVER = ROOT .. "/bin/coru-floo-server"
local SYNC = HERE .. "/floo-sync"
local VERBOSE = os.getenv("DEMO_VERBOSE")

local function say(fmt, ...) io.stdout:write(fmt:format(...), "\n") io.stdout:flush() end

local tmp = assert(fs.mkdtemp("/tmp/coru-demo-XXXXXX"))
local dir_a, dir_b, data = tmp .. "/alice", tmp .. "/bob", tmp .. "/server-data"
assert(fs.mkdirp(dir_a .. "/src"))
assert(fs.mkdirp(dir_b))
assert(fs.write_file(tmp .. "/floo.json", jsonl.encode({
  data_dir = data, port = 0, log_level = "info", readme = false,
  users = {alice = {secret = "alice-secret"}, bob = {secret = "bob-secret"}},
})))
assert(fs.write_file(dir_a .. "/README.md", "# Demo\n\nA workspace mirrored by floo-sync.\n"))
assert(fs.write_file(dir_a .. "/src/main.lua", "local greeting = \"hello\"\nprint(greeting)\n"))

local children = {}
local stats = {}      -- floo-sync's closing summary line, per child
-- every line a child prints: into its log file, on stdout with
-- DEMO_VERBOSE, floo-sync's summary kept, then on_line(line)
local function logger(name, on_line)
  local log = assert(io.open(tmp .. "/" .. name .. ".log", "w"))
  return function(line)
    log:write(line, "\n") log:flush()
    if VERBOSE then say("  [%s] %s", name, line) end
    local summary = line:match("^floo%-sync: stopped: (.*)$")
    if summary then stats[name] = summary end
    if on_line then on_line(line) end
  end
end

local function adopt(name, p, ...)
  children[#children + 1] = {name = name, p = assert(p, ...)}
  return p, ...
end

local function stop_children()
  for _, c in ipairs(children) do if not c.p.exited then c.p:kill("sigterm") end end
  for _, c in ipairs(children) do
    coru.timeout(5000, function() c.p:wait() end)
    if not c.p.exited then c.p:kill("sigkill") c.p:wait() end
  end
  coru.sleep(20)   -- the last lines of their output
end

local function wait_for(cond, ms, what)
  local ok = coru.timeout(ms, function()
    while not cond() do coru.sleep(20) end
    return true
  end)
  if not ok then error("timed out waiting for " .. what, 0) end
end

local tree, same_tree = testing.tree, testing.same_tree

local function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end

local status = 1
local ok, err = pcall(function()
  local _, port = adopt("server", testing.launch_server(CORU, SERVER, tmp .. "/floo.json", logger("server")))
  say("coru-floo-server on 127.0.0.1:%d, workspace alice/demo in %s", port, data)

  local joined = {}
  local function sync(name, user, secret, dir, mode)
    adopt(name, testing.launch(CORU, {SYNC, "-p", tostring(port), "-u", user, "-s", secret, "-w", "alice/demo", mode, dir},
      logger(name, function(line) if line:match("joined") then joined[name] = true end end)))
  end
  sync("sync-alice", "alice", "alice-secret", dir_a, "--upload")
  wait_for(function() return joined["sync-alice"] end, 10000, "alice's floo-sync to join")
  sync("sync-bob", "bob", "bob-secret", dir_b, "--download")
  wait_for(function() return joined["sync-bob"] end, 10000, "bob's floo-sync to join")
  wait_for(function() return same_tree(tree(dir_a), tree(dir_b)) end, 10000, "bob's first download")
  say("two floo-sync mirrors joined: %s (--upload) and %s (--download)", dir_a, dir_b)

  -- the typist, in alice's directory
  local t0 = coru.now()
  local edits = 0
  local function edit(rel, fn)
    local p = dir_a .. "/" .. rel
    local text = fs.read_file(p) or ""
    assert(fs.write_file(p, fn(text)))
    edits = edits + 1
    coru.sleep(15)
  end
  local function type_into(rel, at_pattern, words)
    for ch in words:gmatch("[%z\1-\127\194-\244][\128-\191]*") do
      edit(rel, function(t)
        local i = t:find(at_pattern, 1, true)
        return t:sub(1, i - 1) .. ch .. t:sub(i)
      end)
    end
  end
  type_into("README.md", "\n\nA workspace", " — édité à deux")             -- inserts, multi-byte
  type_into("src/main.lua", "\"\nprint", ", 世界 🌍")                       -- CJK and astral
  local function backspace(rel, before, n)                                    -- deletes
    for _ = 1, n do
      edit(rel, function(t)
        local i = t:find(before, 1, true)
        local j = i - 1
        while j > 1 and t:byte(j) >= 0x80 and t:byte(j) < 0xC0 do j = j - 1 end
        return t:sub(1, j - 1) .. t:sub(i)
      end)
    end
  end
  backspace("src/main.lua", ", 世界", 5)
  type_into("src/main.lua", ", 世界", "bonjour")
  assert(fs.write_file(dir_a .. "/notes.txt", "notes: 🎉 new file\n"))     -- a new file
  edits = edits + 1
  coru.sleep(200)
  type_into("notes.txt", "\n", " (and more)")
  assert(fs.mkdirp(dir_a .. "/docs"))
  assert(fs.rename(dir_a .. "/notes.txt", dir_a .. "/docs/notes.txt"))      -- a rename
  edits = edits + 1
  local typed = coru.now() - t0
  say("typist: %d edits in %s/ over %.1f s (inserts, deletes, a new file, a rename, é 世界 🌍 🎉)",
      edits, dir_a, typed / 1000)

  -- convergence: bob's tree equals alice's, and both equal the server's buffers
  local observer = assert(jsonl.connect{host = "127.0.0.1", port = port, max_line = 64 * 1024 * 1024})
  local info, jerr = observer:request({username = "alice", secret = "alice-secret", room_owner = "alice",
                                       room = "demo", version = 0.11, client = "demo-observer"},
                                      {expect = "room_info"})
  if not info then error("the observer could not join: " .. tostring(jerr), 0) end
  local function server_matches(a)
    local bufs = {}
    for _, b in pairs(info.bufs) do
      local r = observer:request({name = "get_buf", id = b.id}, {expect = function(x, req)
        return x.name == "error" or (x.name == "get_buf" and x.id == req.id) end})
      if not r or r.name ~= "get_buf" then return false end
      bufs[r.path] = r.buf
    end
    return same_tree(a, bufs)
  end
  observer:on("create_buf", function(m) info.bufs[tostring(m.id)] = m end)
  observer:on("delete_buf", function(m) info.bufs[tostring(m.id)] = nil end)
  observer:on("rename_buf", function(m) local b = info.bufs[tostring(m.id)] if b then b.path = m.path end end)
  local a, b
  wait_for(function()
    a, b = tree(dir_a), tree(dir_b)
    return same_tree(a, b) and server_matches(a)
  end, 30000, "the mirrors to converge")
  local took = coru.now() - t0
  observer:close()
  local bytes = 0
  for _, v in pairs(a) do bytes = bytes + #v end
  stop_children()
  for _, who in ipairs({"sync-alice", "sync-bob"}) do
    say("%s: %s", who, stats[who] or "(no summary)")
  end
  say("bob's mirror, alice's mirror and the server's %d buffers (%d bytes) are identical: converged in %.2f s",
      count(a), bytes, took / 1000)
  status = 0
end)

stop_children()
if not ok then
  say("demo failed: %s", tostring(err))
  say("logs kept in %s", tmp)
  os.exit(1)
end
fs.rmtree(tmp)
