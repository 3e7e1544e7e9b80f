-- Reading many small files: coru (tasks, sequential style) vs LuaJIT's
-- io.open vs luv (Debian's lua-luv) callbacks. One mode per process (coru
-- and luv would share libuv's default loop), timed inside the process.
--
--   luajit bench/fs/small_files.lua setup DIR N SIZE
--   luajit bench/fs/small_files.lua MODE DIR N        -> prints "ms bytes"
--
-- MODE: io | coru_seq (one task, coru.fs.read_file one file after another:
-- one pool round trip per file) | coru_tasks (64 tasks) | coru_seq4 /
-- coru_tasks4 (the same with fs_open, fs_fstat, fs_read, fs_close: four
-- round trips, as luv) | coru_sync (coru outside a task: synchronous) |
-- luv_seq (callback chain, one file at a time) | luv_cb (callbacks, 64 in
-- flight)
local mode, dir, n = arg[1], arg[2], tonumber(arg[3])
local CONC = 64

local function path(i) return ("%s/f%05d.txt"):format(dir, i) end

if mode == "setup" then
  local size = tonumber(arg[4]) or 1024
  os.execute("mkdir -p " .. dir)
  for i = 1, n do
    local f = assert(io.open(path(i), "wb"))
    f:write((("%05d "):format(i)):rep(math.ceil(size / 6)):sub(1, size))
    f:close()
  end
  return
end

local clock
local ok, coru = pcall(require, "coru")
if mode:match("^coru") then
  clock = function() return coru.hrtime() / 1e6 end
else
  local uv = require "luv"
  clock = function() return uv.hrtime() / 1e6 end
end

local bytes = 0
local t0 = clock()

if mode == "io" then
  for i = 1, n do
    local f = assert(io.open(path(i), "rb"))
    bytes = bytes + #f:read("*a")
    f:close()
  end

elseif mode == "coru_seq" then
  coru.run(function()
    local read_file = coru.fs.read_file
    for i = 1, n do bytes = bytes + #assert(read_file(path(i))) end
  end)

elseif mode == "coru_seq4" or mode == "coru_tasks4" then
  -- the same four requests per file as the luv modes
  local function read4(p)
    local fd = assert(coru.fs_open(p, "r"))
    local st = coru.fs_fstat(fd)
    local data = coru.fs_read(fd, st.size, 0)
    coru.fs_close(fd)
    return data
  end
  coru.run(function()
    local next_i, tasks = 1, {}
    for w = 1, (mode == "coru_tasks4" and CONC or 1) do
      tasks[w] = coru.spawn(function()
        while next_i <= n do
          local i = next_i
          next_i = i + 1
          bytes = bytes + #read4(path(i))
        end
      end)
    end
    coru.all(tasks)
  end)

elseif mode == "coru_sync" then
  local read_file = coru.fs.read_file
  for i = 1, n do bytes = bytes + #assert(read_file(path(i))) end

elseif mode == "coru_tasks" then
  coru.run(function()
    local read_file = coru.fs.read_file
    local next_i, tasks = 1, {}
    for w = 1, CONC do
      tasks[w] = coru.spawn(function()
        while next_i <= n do
          local i = next_i
          next_i = i + 1
          bytes = bytes + #assert(read_file(path(i)))
        end
      end)
    end
    coru.all(tasks)
  end)

elseif mode == "luv_seq" or mode == "luv_cb" then
  local uv = require "luv"
  local next_i = 1
  local function one(done)
    local i = next_i
    if i > n then return end
    next_i = i + 1
    local p = path(i)
    uv.fs_open(p, "r", 438, function(err, fd)
      assert(not err, err)
      uv.fs_fstat(fd, function(err2, st)
        assert(not err2, err2)
        uv.fs_read(fd, st.size, 0, function(err3, data)
          assert(not err3, err3)
          bytes = bytes + #data
          uv.fs_close(fd, function() done() end)
        end)
      end)
    end)
  end
  local function chain() one(chain) end
  for _ = 1, (mode == "luv_cb" and CONC or 1) do chain() end
  uv.run()
else
  error("unknown mode " .. tostring(mode))
end

print(("%.3f %d"):format(clock() - t0, bytes))
