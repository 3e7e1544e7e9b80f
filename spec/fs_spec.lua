-- fs: luv's fs_* in the three modes, coru.fs conveniences, and the faults.
local coru = require "coru"
local helper = require "helper"
local fs = coru.fs

local TMP = (os.getenv("TMPDIR") or "/tmp") .. "/coru-fs-spec-XXXXXX"
local CORU_BIN = os.getenv("CORU_BIN") or "build/coru"

local run, wait_until = helper.run, helper.wait_until

describe("fs", function()
  local dir
  before_each(function() dir = assert(coru.fs_mkdtemp(TMP)) end)
  after_each(function() assert(fs.rmtree(dir)) end)

  describe("three modes", function()
    it("runs synchronously outside a task", function()
      local path = dir .. "/a.txt"
      local fd = assert(coru.fs_open(path, "w", 420))
      assert.equal(5, coru.fs_write(fd, "hello"))
      assert.is_true(coru.fs_close(fd))
      assert.equal(5, coru.fs_stat(path).size)
    end)

    it("suspends inside a task", function()
      local path = dir .. "/a.txt"
      run(function()
        local fd = assert(coru.fs_open(path, "w+"))
        assert.equal(11, coru.fs_write(fd, {"hello", " ", "world"}))
        assert.equal("world", coru.fs_read(fd, 5, 6))
        assert.equal("hello", coru.fs_read(fd, 5, 0))
        assert.is_true(coru.fs_ftruncate(fd, 3))
        assert.equal(3, coru.fs_fstat(fd).size)
        assert.is_true(coru.fs_fsync(fd))
        assert.is_true(coru.fs_fdatasync(fd))
        assert.is_true(coru.fs_close(fd))
      end)
    end)

    it("calls back with cb(err, results...) and never yields", function()
      local path = dir .. "/a.txt"
      fs.write_file(path, "abc")
      local got
      run(function()
        coru.fs_stat(path, function(err, st) got = {err, st} end)
        assert.is_nil(got)   -- later, from the loop
        wait_until(function() return got end)
      end)
      assert.is_nil(got[1])
      assert.equal(3, got[2].size)
      local err2
      run(function()
        coru.fs_open(dir .. "/missing", "r", function(err) err2 = err end)
        wait_until(function() return err2 end)
      end)
      assert.matches("^ENOENT: no such file or directory: .*/missing$", err2)
    end)
  end)

  describe("stat", function()
    it("has luv's field names", function()
      fs.write_file(dir .. "/f", "12345")
      local st = run(coru.fs_stat, dir .. "/f")
      for _, k in ipairs{"dev", "mode", "nlink", "uid", "gid", "rdev", "ino", "size", "blksize", "blocks", "flags", "gen"} do
        assert.is_number(st[k], k)
      end
      for _, k in ipairs{"atime", "mtime", "ctime", "birthtime"} do
        assert.is_number(st[k].sec)
        assert.is_number(st[k].nsec)
      end
      assert.equal("file", st.type)
      assert.equal(5, st.size)
      -- coreutils' stat reads the same inode
      local out = run(coru.process.exec, "stat", {"-c", "%d %f %h %u %g %i %s %Y %b %B", dir .. "/f"})
      local want = {}
      for v in out:gmatch("%S+") do want[#want + 1] = v end
      assert.same({tonumber(want[1]), tonumber(want[2], 16), tonumber(want[3]), tonumber(want[4]), tonumber(want[5]),
                   tonumber(want[6]), tonumber(want[7]), tonumber(want[8]),
                   tonumber(want[9]) * tonumber(want[10]) / 512},
                  {st.dev, st.mode, st.nlink, st.uid, st.gid, st.ino, st.size, st.mtime.sec, st.blocks})
      assert.equal("directory", coru.fs_stat(dir).type)
      assert.is_true(coru.fs_symlink(dir .. "/f", dir .. "/l"))
      assert.equal("link", coru.fs_lstat(dir .. "/l").type)
      assert.equal(dir .. "/f", coru.fs_readlink(dir .. "/l"))
      assert.equal(coru.fs_realpath(dir .. "/f"), coru.fs_realpath(dir .. "/l"))
      local sfs = coru.fs_statfs(dir)
      assert.is_number(sfs.bsize)
      assert.is_number(sfs.bavail)
    end)
  end)

  describe("the rest of luv's set", function()
    it("mkdir, scandir, opendir/readdir, rename, link, copyfile, sendfile, access, chmod, utime, chown", function()
      run(function()
        assert.is_true(coru.fs_mkdir(dir .. "/d", 493))
        for i = 1, 3 do fs.write_file(dir .. "/d/f" .. i, "x" .. i) end
        local req = coru.fs_scandir(dir .. "/d")
        local names = {}
        while true do
          local name, ty = coru.fs_scandir_next(req)
          if not name then break end
          assert.equal("file", ty)
          names[#names + 1] = name
        end
        table.sort(names)
        assert.same({"f1", "f2", "f3"}, names)

        -- regress: the cleanup of one readdir freed the names of the next
        -- (started by the woken task before the first request was freed)
        local d = coru.fs_opendir(dir .. "/d", nil, 2)
        local seen = 0
        while true do
          local ents = d:readdir()
          if not ents then break end
          assert.is_true(#ents <= 2)
          seen = seen + #ents
          assert.is_string(ents[1].name)
          assert.equal("file", ents[1].type)
        end
        assert.equal(3, seen)
        assert.is_true(coru.fs_closedir(d))
        assert.has_error(function() d:readdir() end, "fs_readdir: directory is closed")

        assert.is_true(coru.fs_rename(dir .. "/d/f1", dir .. "/d/g1"))
        assert.is_true(coru.fs_link(dir .. "/d/g1", dir .. "/d/h1"))
        assert.equal(2, coru.fs_stat(dir .. "/d/g1").nlink)
        assert.is_true(coru.fs_copyfile(dir .. "/d/f2", dir .. "/d/c2"))
        assert.equal("x2", fs.read_file(dir .. "/d/c2"))
        local _, _, name = coru.fs_copyfile(dir .. "/d/f2", dir .. "/d/c2", {excl = true})
        assert.equal("EEXIST", name)

        local infd = coru.fs_open(dir .. "/d/f3", "r")
        local outfd = coru.fs_open(dir .. "/d/s3", "w")
        assert.equal(2, coru.fs_sendfile(outfd, infd, 0, 2))
        coru.fs_close(infd) coru.fs_close(outfd)
        assert.equal("x3", fs.read_file(dir .. "/d/s3"))

        assert.is_true(coru.fs_access(dir .. "/d/f3", "rw"))
        assert.equal("ENOENT", select(3, coru.fs_access(dir .. "/nope", "r")))
        assert.is_true(coru.fs_chmod(dir .. "/d/f3", "600"))
        assert.equal(384, coru.fs_stat(dir .. "/d/f3").mode % 4096)
        local fd = coru.fs_open(dir .. "/d/f3", "r")
        assert.is_true(coru.fs_fchmod(fd, 420))
        assert.is_true(coru.fs_futime(fd, 1000, 2000))
        assert.equal(2000, coru.fs_fstat(fd).mtime.sec)
        local st = coru.fs_fstat(fd)
        assert.is_true(coru.fs_fchown(fd, st.uid, st.gid))
        coru.fs_close(fd)
        assert.equal(420, coru.fs_stat(dir .. "/d/f3").mode % 4096)
        assert.is_true(coru.fs_utime(dir .. "/d/f3", 3000, 4000))
        assert.equal(4000, coru.fs_stat(dir .. "/d/f3").mtime.sec)
        assert.is_true(coru.fs_symlink("f3", dir .. "/d/ln"))
        assert.is_true(coru.fs_lutime(dir .. "/d/ln", 5000, 6000))
        assert.equal(6000, coru.fs_lstat(dir .. "/d/ln").mtime.sec)
        assert.is_true(coru.fs_chown(dir .. "/d/f3", st.uid, st.gid))
        assert.is_true(coru.fs_lchown(dir .. "/d/ln", st.uid, st.gid))

        local tfd, tpath = coru.fs_mkstemp(dir .. "/tmpXXXXXX")
        assert.is_number(tfd)
        assert.matches("/tmp......$", tpath)
        coru.fs_close(tfd)
        assert.is_true(coru.fs_unlink(tpath))
        assert.is_true(coru.fs_rmdir(coru.fs_mkdtemp(dir .. "/dtXXXXXX")))
      end)
    end)

    it("accepts numeric flags and the callback in place of optional arguments", function()
      local done
      run(function()
        coru.fs_open(dir .. "/n", "w", function(err, fd)
          assert.is_nil(err)
          coru.fs_close(fd, function() done = true end)
        end)
        wait_until(function() return done end)
      end)
      assert.is_true(done)
      local fd = coru.fs_open(dir .. "/n", 0)   -- O_RDONLY
      assert.is_number(fd)
      coru.fs_close(fd)
    end)
  end)

  describe("faults", function()
    it("missing file: nil, message with the path, name (all modes)", function()
      local path = dir .. "/missing.txt"
      local a, b, c = coru.fs_open(path, "r")
      assert.is_nil(a)
      assert.equal("ENOENT: no such file or directory: " .. path, b)
      assert.equal("ENOENT", c)
      local r = {run(coru.fs_open, path, "r")}
      assert.same({nil, "ENOENT: no such file or directory: " .. path, "ENOENT"}, {r[1], r[2], r[3]})
      local r2 = {run(coru.fs_rename, path, path .. "2")}
      assert.equal("ENOENT: no such file or directory: " .. path .. " -> " .. path .. "2", r2[2])
      assert.equal("ENOENT", select(3, fs.read_file(path)))
    end)

    it("permission denied: EACCES", function()
      local path = dir .. "/secret"
      fs.write_file(path, "s")
      coru.fs_chmod(path, 0)
      local fd, msg, name = run(coru.fs_open, path, "r")
      if helper.getuid() ~= 0 or not fd then
        assert.equal("EACCES", name)
        assert.equal("EACCES: permission denied: " .. path, msg)
        return
      end
      coru.fs_close(fd)
      -- root reads anything: ask an unprivileged child (uid/gid 65534). It
      -- runs a copy of the host in a directory it can reach (the checkout
      -- may sit under a mode-700 directory), with its Lua files beside it.
      coru.fs_chmod(dir, "755")
      local copy = helper.tmpdir("coru-fs-eacces")
      local src = CORU_BIN:match("^(.*)/[^/]*$") or "."
      assert(fs.mkdirp(copy .. "/bin"))
      assert(coru.fs_copyfile(CORU_BIN, copy .. "/bin/coru"))
      assert(coru.fs_chmod(copy .. "/bin/coru", "755"))
      assert(fs.mkdirp(copy .. "/lua/coru"))
      for f, ty in fs.walk(src .. "/../lua/coru") do
        if ty == "file" then assert(coru.fs_copyfile(f, copy .. "/lua/coru/" .. f:match("[^/]*$"))) end
      end
      for f in fs.walk(copy) do coru.fs_chmod(f, "755") end
      local out, err, code = run(coru.process.exec, copy .. "/bin/coru",
        {"-e", ("print(select(3, coru.fs_open(%q, 'r')))"):format(path)},
        {uid = 65534, gid = 65534, cwd = "/", env = {PATH = "/usr/bin:/bin"}})
      fs.rmtree(copy)
      -- exec's nil, message, name: setgid/setuid refused (no CAP_SETUID:
      -- EPERM) or uid 65534 not mapped in this user namespace (EINVAL)
      if not out and (code == "EPERM" or code == "EINVAL") then
        pending("cannot drop privileges to uid 65534 here (" .. tostring(err) .. "): a rootless container?")
        return
      end
      assert.equal("EACCES\n", out, err)
      assert.equal(0, code)
    end)

    it("a directory where a file is expected: EISDIR", function()
      local _, msg, name = run(coru.fs_open, dir, "w")
      assert.equal("EISDIR", name)
      assert.matches("^EISDIR: illegal operation on a directory: ", msg)
      assert.equal("EISDIR", select(3, fs.read_file(dir)))
      assert.equal("ENOTDIR", select(3, run(coru.fs_scandir, CORU_BIN)))
    end)

    it("a read of a closed descriptor: EBADF", function()
      run(function()
        local fd = coru.fs_open(dir .. "/f", "w+")
        coru.fs_close(fd)
        local data, msg, name = coru.fs_read(fd, 10)
        assert.is_nil(data)
        assert.equal("EBADF", name)
        assert.matches("^EBADF: bad file descriptor", msg)
        assert.equal("EBADF", select(3, coru.fs_write(fd, "x")))
        assert.equal("EBADF", select(3, coru.fs_close(fd)))
      end)
    end)

    it("invalid flags or modes: an argument error naming the function", function()
      assert.has_error(function() coru.fs_open(dir .. "/x", "rw") end,
        "bad argument #2 to 'fs_open' (invalid flags 'rw')")
      assert.has_error(function() coru.fs_open(dir .. "/x", "w", "9z") end,
        "bad argument #3 to 'fs_open' (invalid mode '9z')")
      assert.has_error(function() coru.fs_mkdir(dir .. "/x", -1) end,
        "bad argument #2 to 'fs_mkdir' (invalid mode (must be 0 .. 07777))")
      assert.has_error(function() coru.fs_chmod(dir, {}) end,
        "bad argument #2 to 'fs_chmod' (mode (number or octal string) expected, got table)")
      assert.has_error(function() coru.fs_access(dir, "rq") end,
        "bad argument #2 to 'fs_access' (invalid access mode 'rq' (use r, w, x))")
      assert.has_error(function() coru.fs_read(-1, 10) end,
        "bad argument #1 to 'fs_read' (invalid file descriptor)")
      assert.has_error(function() coru.fs_stat(42) end,
        "bad argument #1 to 'fs_stat' (string expected, got number)")
      assert.has_error(function() coru.fs_write(1, {true}) end,
        "bad argument #2 to 'fs_write' (item 1: string expected, got boolean)")
      run(function()   -- same inside a task
        assert.has_error(function() coru.fs_open(dir .. "/x", "bogus") end,
          "bad argument #2 to 'fs_open' (invalid flags 'bogus')")
      end)
    end)

    it("cancelling a task blocked in an fs call discards the late result", function()
      fs.write_file(dir .. "/big", string.rep("x", 1048576))
      run(function()
        local fd = coru.fs_open(dir .. "/big", "r")
        local results = {}
        local tasks = {}
        for i = 1, 50 do
          tasks[i] = coru.spawn(function()
            results[i] = coru.fs_read(fd, 1048576, 0)
            return "finished"
          end)
        end
        for i = 1, 50 do tasks[i]:cancel("stop") end
        for i = 1, 50 do
          local ok, err = pcall(tasks[i].await, tasks[i])
          assert.equal("cancelled", tasks[i]:status())
          assert.is_false(ok)
          assert.is_true(coru.is_cancelled(err))
        end
        -- the late completions arrive and are dropped, their buffers freed
        assert.is_true(wait_until(function() return coru._fs_live_requests() == 0 end))
        assert.same({}, results)
        -- the descriptor and the loop still work
        assert.equal(1048576, #coru.fs_read(fd, 1048576, 0))
        coru.fs_close(fd)
      end)
    end)

    it("a cancelled task may catch the cancellation and go on", function()
      run(function()
        local t = coru.spawn(function()
          local ok, err = pcall(coru.fs_stat, dir)
          assert.is_false(ok)
          assert.is_true(coru.is_cancelled(err))
          return coru.fs_stat(dir).type
        end)
        t:cancel()
        assert.equal("directory", t:await())
      end)
    end)

    it("leaves no registry reference behind (callbacks, cancellation, anchors)", function()
      run(function()
        local fd0 = coru.fs_open(dir .. "/w", "w")   -- warm up
        coru.fs_close(fd0)
        local before = helper.registry_refs()
        for _ = 1, 20 do   -- a leak per call would show 20 times
        local n = 0
        coru.fs_stat(dir, function() n = n + 1 end)
        coru.fs_stat(dir .. "/no", function() n = n + 1 end)
        coru.fs_read_file(dir .. "/no", function() n = n + 1 end)
        helper.wait_until(function() return n == 3 end)
        local fd = coru.fs_open(dir .. "/w", "w")
        local t = coru.spawn(coru.fs_write, fd, {string.rep("x", 100000), "y"})
        t:cancel()
        pcall(t.await, t)
        helper.wait_until(function() return coru._fs_live_requests() == 0 end)
        coru.fs_close(fd)
        local d = coru.fs_opendir(dir)
        while d:readdir() do end
        d:closedir()
        d = nil
        end
        -- what the scheduler releases on its next turns
        helper.settle(function() return helper.registry_refs() <= before end)
        local after = helper.registry_refs()
        assert.is_true(after <= before, ("registry references grew from %d to %d"):format(before, after))
      end)
    end)

    it("10,000 concurrent fs_stat calls from 10,000 tasks finish", function()
      fs.write_file(dir .. "/s", "stat me")
      run(function()
        local tasks, n = {}, 0
        for i = 1, 10000 do
          tasks[i] = coru.spawn(function()
            local st = coru.fs_stat(i % 2 == 0 and dir .. "/s" or dir .. "/missing")
            if st and st.size == 7 or not st then n = n + 1 end
          end)
        end
        coru.all(tasks)
        assert.equal(10000, n)
        coru.pass()   -- the last request is freed after it woke its task
        assert.equal(0, coru._fs_live_requests())   -- none leaked
      end)
    end)
  end)

  describe("coru.fs", function()
    it("read_file / write_file / append_file / exists", function()
      local p = dir .. "/w.txt"
      run(function()
        assert.is_true(fs.write_file(p, "one"))
        assert.is_true(fs.append_file(p, {"two", "three"}))
        assert.equal("onetwothree", fs.read_file(p))
        assert.same({true, "file"}, {fs.exists(p)})
        assert.is_false(fs.exists(dir .. "/none"))
        local big = string.rep("0123456789", 100000)
        assert.is_true(fs.write_file(p, big))
        assert.equal(big, fs.read_file(p))
        assert.equal("", (function() fs.write_file(p, "") return fs.read_file(p) end)())
      end)
      assert.matches("version", fs.read_file("/proc/version"))   -- size 0 in stat
      assert.has_error(function() fs.write_file(p, 42) end, "bad argument #2 to 'write_file' (string expected, got number)")
    end)

    it("fs_read_file: one round trip, three modes, cancellation", function()
      local p = dir .. "/r.txt"
      fs.write_file(p, "contents")
      assert.equal("contents", coru.fs_read_file(p))              -- sync
      assert.equal("contents", run(coru.fs_read_file, p))         -- task
      local got
      run(function()
        coru.fs_read_file(p, function(err, data) got = {err, data} end)
        wait_until(function() return got end)
      end)
      assert.same({nil, "contents"}, {got[1], got[2]})
      assert.same({nil, "ENOENT: no such file or directory: " .. dir .. "/no", "ENOENT"},
        {run(coru.fs_read_file, dir .. "/no")})
      assert.equal("EISDIR", select(3, run(coru.fs_read_file, dir)))
      run(function()
        local ts = {}
        for i = 1, 20 do ts[i] = coru.spawn(coru.fs_read_file, p) end
        for i = 1, 20 do ts[i]:cancel() end
        assert.is_true(wait_until(function() return coru._fs_live_requests() == 0 end))
      end)
    end)

    it("write_file atomic: old or new, never torn; the temp file is gone", function()
      local p = dir .. "/atomic.txt"
      fs.write_file(p, "old contents")
      coru.fs_chmod(p, 416)
      run(function()
        local readers_saw = {}
        local writer = coru.spawn(function()
          for i = 1, 20 do assert(fs.write_file(p, ("new %d "):format(i):rep(1000), {atomic = true})) end
        end)
        local reader = coru.spawn(function()
          -- until the writer ends, however: a failed write (status
          -- "failed") kept this loop, and the file, running for ever
          while writer:status() == "suspended" do
            local s = fs.read_file(p)
            readers_saw[#readers_saw + 1] = s
            coru.pass()
          end
        end)
        writer:await() reader:await()
        for _, s in ipairs(readers_saw) do
          local i = s:match("^new (%d+) ")
          assert.is_true(s == "old contents" or s == ("new " .. tostring(i) .. " "):rep(1000))
        end
      end)
      assert.equal(("new 20 "):rep(1000), fs.read_file(p))
      assert.equal(416, coru.fs_stat(p).mode % 4096)    -- the old mode is kept
      local left = {}
      for path in fs.walk(dir) do left[#left + 1] = path end
      assert.same({p}, left)
      -- a failed atomic write leaves the old file
      assert.is_nil(fs.write_file(dir .. "/nodir/x", "y", {atomic = true}))
      assert.equal(("new 20 "):rep(1000), fs.read_file(p))
    end)

    it("mkdirp, walk, rmtree", function()
      run(function()
        assert.is_true(fs.mkdirp(dir .. "/a/b/c"))
        assert.is_true(fs.mkdirp(dir .. "/a/b/c"))
        fs.write_file(dir .. "/a/b/c/f", "x")
        fs.write_file(dir .. "/a/g", "y")
        assert.equal("ENOTDIR", select(3, fs.mkdirp(dir .. "/a/g/h")))
        local seen = {}
        for path, ty, depth in fs.walk(dir .. "/a") do seen[path:sub(#dir + 2)] = ty .. depth end
        assert.same({["a/b"] = "directory1", ["a/b/c"] = "directory2", ["a/b/c/f"] = "file3", ["a/g"] = "file1"}, seen)
        assert.is_true(fs.rmtree(dir .. "/a"))
        assert.is_false(fs.exists(dir .. "/a"))
        assert.is_true(fs.rmtree(dir .. "/a"))   -- missing: fine
      end)
    end)

    it("watch: events in a for loop inside a task, close ends it", function()
      run(function()
        local w = assert(fs.watch(dir))
        local guard = coru.spawn(function() coru.sleep(5000) w:close() end)
        fs.write_file(dir .. "/new.txt", "1")
        local events = {}
        for ev, name in w do
          events[#events + 1] = ev .. ":" .. tostring(name)
          if name == "new.txt" then w:close() end
        end
        guard:cancel()
        assert.is_true(#events >= 1)
        assert.matches("new.txt", table.concat(events, " "))
      end)
    end)

    it("watch recursive and the fs_poll fallback", function()
      fs.mkdirp(dir .. "/sub/deeper")
      run(function()
        local w = assert(fs.watch(dir, {recursive = true}))
        local guard = coru.spawn(function() coru.sleep(5000) w:close() end)
        fs.write_file(dir .. "/sub/deeper/x", "1")
        local names = {}
        for _, name in w do
          names[#names + 1] = name
          if name == "sub/deeper/x" then w:close() end
        end
        guard:cancel()
        assert.matches("sub/deeper/x", table.concat(names, " "))

        local p = dir .. "/polled"
        fs.write_file(p, "a")
        local pw = assert(fs.watch(p, {poll = true, interval = 10}))
        assert.is_true(pw.polling)
        -- a change made before fs_poll's first stat goes unseen: change the
        -- file (its size) until the watcher reports it, for at most 5 s
        local writer = coru.spawn(function()
          for i = 2, 500 do fs.write_file(p, ("b"):rep(i)) coru.sleep(10) end
        end)
        local ev, name = coru.timeout(10000, pw.next, pw)
        assert.equal("suspended", writer:status())   -- reported before the writer gave up
        writer:cancel()
        assert.equal("change", ev)
        assert.equal("polled", name)
        pw:close()
        assert.is_nil(pw:next())
      end)
    end)

    it("watch of a missing path fails", function()
      local w, msg, name = run(fs.watch, dir .. "/nope")
      assert.is_nil(w)
      assert.equal("ENOENT", name, msg)
    end)
  end)

  -- libuv 1.44 aborts (fs-poll.c:177, assert(ctx->parent_handle->poll_ctx
  -- == ctx)) when an fs_poll handle is started again while the stat of its
  -- previous start is still in flight; the API fuzzer found it. Each case
  -- makes that shape, then checks the handle still reports real changes.
  describe("fs_poll restarts", function()
    -- Grow the file at path until a callback of h reports it (fs_poll
    -- misses a change made before its first stat); returns the report.
    local function next_change(got, path)
      local seen = #got
      local writer = coru.spawn(function()
        for i = 1, 500 do fs.write_file(path, ("c"):rep(i)) coru.sleep(10) end
      end)
      wait_until(function() return #got > seen end, 5000, "an fs_poll report on " .. path)
      writer:cancel()
      return got[#got]
    end
    local function two_files()
      local p1, p2 = dir .. "/one", dir .. "/two"
      assert(fs.write_file(p1, "a"))
      assert(fs.write_file(p2, "a"))
      return p1, p2
    end
    local function recorder(got, tag)
      return function(err, prev, curr) got[#got + 1] = {tag = tag, err = err, prev = prev, curr = curr} end
    end

    it("survives stop and start while a stat is in flight", function()
      local p = dir .. "/polled"
      fs.write_file(p, "a")
      run(function()
        local h, got, stale = coru.new_fs_poll(), {}, {}
        for _ = 1, 20 do
          assert.equal(0, h:start(p, 5, recorder(stale, "stopped")))
          assert.equal(0, h:stop())
        end
        assert.equal(0, h:start(p, 5, recorder(got, "current")))
        assert.equal(p, h:getpath())
        local r = next_change(got, p)
        assert.equal("current", r.tag)
        assert.is_nil(r.err)
        assert.is_true(r.curr.size > 0)
        assert.equal(0, #stale)                 -- a stopped start never reports
        coru.sleep(30)                          -- the old contexts' timers would fire here
        h:close()
      end)
    end)

    it("restarts on a started handle and moves to the new path", function()
      local p1, p2 = two_files()
      run(function()
        local h, got = coru.new_fs_poll(), {}
        assert.equal(0, h:start(p1, 5, recorder(got, "one")))
        assert.equal(0, h:start(p2, 5, recorder(got, "two")))   -- no stop between
        assert.equal(p2, h:getpath())
        local r = next_change(got, p2)
        assert.equal("two", r.tag)
        for _, e in ipairs(got) do assert.equal("two", e.tag) end
        h:close()
      end)
    end)

    it("restarts from its own callback", function()
      local p1, p2 = two_files()
      run(function()
        local h, first, got = coru.new_fs_poll(), {}, {}
        assert.equal(0, h:start(p1, 5, function(err)
          first[#first + 1] = err or "change"
          h:stop()                               -- inside libuv's completion of the stat
          h:start(p2, 5, recorder(got, "two"))
        end))
        next_change(first, p1)
        assert.same({"change"}, first)
        local r = next_change(got, p2)
        assert.equal("two", r.tag)
        assert.is_nil(r.err)
        h:close()
      end)
    end)

    it("closes while the previous start winds down, and keeps start's errors", function()
      local p = dir .. "/polled"
      fs.write_file(p, "a")
      run(function()
        local h = coru.new_fs_poll()
        assert.equal(0, h:start(p, 5, function() end))
        assert.equal(0, h:stop())
        assert.equal(0, h:start(p, 5, function() end))
        h:close()
        coru.sleep(30)
        assert.has_error(function() h:start(p, 5, function() end) end, "coru.fs_poll: handle is closed")
        local h2 = coru.new_fs_poll()
        assert.has_error(function() h2:start(p, 0, function() end) end,
          "bad argument #3 to 'fs_poll_start' (interval must be >= 1 (milliseconds))")
        local ok, msg, name = h2:getpath()
        assert.is_nil(ok)
        assert.equal("EINVAL", name, msg)
        h2:close()
      end)
    end)
  end)
end)
