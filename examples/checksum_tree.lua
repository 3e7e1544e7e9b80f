-- Parallel checksum of every file under a directory, on the thread pool.
--
--   coru examples/checksum_tree.lua [dir] [workers]
--
-- The tree is walked inside a task (fs calls suspend it, the loop stays
-- free); each file is read and hashed by coru.work in a pooled lua_State on
-- libuv's threads, at most `workers` at a time. Output: "adler32  size  path"
-- sorted by path, then a summary line on stderr.
local coru = require "coru"
local fs = coru.fs

local dir = arg and arg[1] or "."
local nworkers = tonumber(arg and arg[2]) or 4

-- Runs in another Lua state: no upvalues, only its arguments and globals.
local function checksum(path)
  local bit = require "bit"
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local a, b, size = 1, 0, 0
  while true do
    local chunk = f:read(65536)
    if not chunk then break end
    size = size + #chunk
    for i = 1, #chunk do
      a = (a + chunk:byte(i)) % 65521
      b = (b + a) % 65521
    end
  end
  f:close()
  return bit.tohex(bit.bor(bit.lshift(b, 16), a)), size
end

local function main()
  local t0 = coru.hrtime()
  local files = {}
  for path, ty in fs.walk(dir) do
    if ty == "file" then files[#files + 1] = path end
  end
  table.sort(files)

  local results, next_i, bytes = {}, 1, 0
  local function worker()
    while next_i <= #files do
      local i = next_i
      next_i = next_i + 1
      local sum, size = coru.work(checksum, files[i])
      results[i] = sum and ("%s  %10d  %s"):format(sum, size, files[i]) or ("ERROR %s: %s"):format(files[i], size)
      bytes = bytes + (tonumber(size) or 0)
    end
  end
  local tasks = {}
  for w = 1, nworkers do tasks[w] = coru.spawn(worker) end
  coru.all(tasks)

  for i = 1, #files do print(results[i]) end
  io.stderr:write(("%d files, %.1f MB in %.0f ms with %d workers\n"):format(
    #files, bytes / 1e6, (coru.hrtime() - t0) / 1e6, nworkers))
end

coru.run(main)
