-- Re-run a command whenever something under a path changes.
--
--   coru examples/watch_run.lua <path> <command> [args...]
--   coru examples/watch_run.lua src make test
--
-- Watches <path> recursively (fs_event; fs_poll as a fallback), waits for
-- changes to settle (200 ms without events), then runs the command with the
-- terminal as its stdio. A change while it runs kills it and starts again.
-- Ctrl-C stops watching and exits. Watch the sources, not a directory the
-- command writes into (each run would trigger the next).
local coru = require "coru"
local fs, P = coru.fs, coru.process

local path, cmd = arg[1], arg[2]
if not path or not cmd then
  io.stderr:write("usage: coru watch_run.lua <path> <command> [args...]\n")
  os.exit(2)
end
local args = {}
for i = 3, #arg do args[#args + 1] = arg[i] end
local SETTLE = 200

local watcher = assert(fs.watch(path, {recursive = true}))
local changed = coru.channel(1)      -- one pending "run again" is enough
local running                        -- the process object while it runs

-- Events -> "something changed" (coalesced).
coru.spawn(function()
  for event, name in watcher do
    io.stderr:write(("[watch] %s %s\n"):format(event, tostring(name)))
    if changed:len() == 0 then changed:send(true) end
  end
  changed:close()
end)

-- Ctrl-C: stop watching; the runner ends when the channel is closed.
coru.spawn(function()
  coru.signal.wait("sigint")
  io.stderr:write("[watch] stopping\n")
  watcher:close()
  if running then running:kill("sigterm") end
end)

local function run_once()
  io.stderr:write(("[watch] running %s %s\n"):format(cmd, table.concat(args, " ")))
  local p, err = P.spawn(cmd, args)
  if not p then io.stderr:write("[watch] " .. err .. "\n") return end
  running = p
  local code, sig = p:wait()
  running = nil
  io.stderr:write(("[watch] exited with %d%s\n"):format(code, sig ~= 0 and (" (signal " .. sig .. ")") or ""))
end

-- The runner: run at start, then after each settled burst of changes.
local current = coru.spawn(run_once)
while changed:recv() do
  -- settle: wait until no event came for SETTLE ms
  while true do
    local r = coru.timeout(SETTLE, function() return changed:recv() end)
    if r == nil then break end
  end
  if running then running:kill("sigterm") end
  current:await()
  current = coru.spawn(run_once)
end
current:await()
