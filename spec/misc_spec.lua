-- misc: system information, environment, directories, time.
local coru = require "coru"
local helper = require "helper"

local function slurp(path)
  local f = assert(io.open(path))
  local s = f:read("*a")
  f:close()
  return s
end

-- cpu0's user time in ms from /proc/stat (clock ticks of 10 ms)
local function cpu0_user_ms()
  return tonumber(slurp("/proc/stat"):match("\ncpu0 (%d+)")) * 10
end

describe("misc", function()
  it("hrtime, update_time, now", function()
    local a = coru.hrtime()
    assert.is_true(coru.hrtime() >= a)
    coru.update_time()
    local now, hr = coru.now(), coru.hrtime()
    -- the loop's time is the monotonic clock in ms, hrtime in ns
    assert.is_true(math.abs(hr / 1e6 - now) < 1000, ("now %d ms, hrtime %d ms"):format(now, hr / 1e6))
  end)

  it("cpu_info, memory, uname, uptime, loadavg", function()
    local u0 = cpu0_user_ms()
    local cpus = coru.cpu_info()
    local u1 = cpu0_user_ms()
    local info = slurp("/proc/cpuinfo")
    local _, nproc = info:gsub("\nprocessor%s*:", "")
    if info:match("^processor%s*:") then nproc = nproc + 1 end
    assert.equal(nproc, #cpus)
    local model = info:match("model name%s*:%s*([^\n]*)")
    if model then assert.equal(model, cpus[1].model) end
    assert.is_true(cpus[1].times.user >= u0 and cpus[1].times.user <= u1,
      ("cpu0 user %s ms, /proc/stat %d..%d ms"):format(tostring(cpus[1].times.user), u0, u1))
    assert.is_true(coru.get_total_memory() > 0)
    assert.is_true(coru.get_free_memory() > 0)
    assert.is_true(coru.resident_set_memory() > 0)
    assert.equal("Linux", coru.os_uname().sysname)
    local up0 = tonumber(slurp("/proc/uptime"):match("^[%d.]+"))
    local up = coru.uptime()
    local up1 = tonumber(slurp("/proc/uptime"):match("^[%d.]+"))
    assert.is_true(up >= math.floor(up0) and up <= up1 + 1, ("uptime %s, /proc/uptime %s..%s"):format(up, up0, up1))
    -- the kernel's 1-minute load (it changes every 5 s: read around the call)
    local l0 = tonumber(slurp("/proc/loadavg"):match("^[%d.]+"))
    local load1 = coru.loadavg()
    local l1 = tonumber(slurp("/proc/loadavg"):match("^[%d.]+"))
    assert.is_true(load1 >= math.min(l0, l1) - 0.01 and load1 <= math.max(l0, l1) + 0.01,
      ("loadavg %s, /proc/loadavg %s..%s"):format(load1, l0, l1))
    assert.is_true(coru.available_parallelism() >= 1)
  end)

  it("environment", function()
    assert.is_true(coru.os_setenv("CORU_MISC_SPEC", "v1"))
    assert.equal("v1", coru.os_getenv("CORU_MISC_SPEC"))
    assert.equal("v1", coru.os_environ().CORU_MISC_SPEC)
    assert.is_true(coru.os_unsetenv("CORU_MISC_SPEC"))
    assert.is_nil(coru.os_getenv("CORU_MISC_SPEC"))
    local long = string.rep("x", 5000)
    coru.os_setenv("CORU_MISC_LONG", long)
    assert.equal(long, coru.os_getenv("CORU_MISC_LONG"))
  end)

  it("directories and pids", function()
    -- libuv: $HOME, else the user's entry in the password database
    local home = os.getenv("HOME") or
      ("\n" .. slurp("/etc/passwd")):match("\n[^:\n]*:[^:\n]*:" .. helper.getuid() .. ":[^:\n]*:[^:\n]*:([^:\n]*)")
    assert.equal(home, coru.os_homedir())
    local tmp = os.getenv("TMPDIR") or os.getenv("TMP") or os.getenv("TEMP") or os.getenv("TEMPDIR") or "/tmp"
    assert.equal(#tmp > 1 and tmp:gsub("/$", "") or tmp, coru.os_tmpdir())
    assert.equal(slurp("/proc/sys/kernel/hostname"):gsub("\n$", ""), coru.os_gethostname())
    local cwd = coru.cwd()
    assert.is_true(coru.chdir("/"))
    assert.equal("/", coru.cwd())
    assert.is_true(coru.chdir(cwd))
    local _, msg, name = coru.chdir("/nonexistent-coru")
    assert.equal("ENOENT", name)
    assert.equal("ENOENT: no such file or directory: /nonexistent-coru", msg)
    local stat = slurp("/proc/self/stat")        -- pid (comm) state ppid ...
    local pid, ppid = stat:match("^(%d+) %b() %a (%d+)")
    -- /proc/self read by this process names this process: the same pid
    assert.equal(tonumber(pid), coru.getpid())
    assert.equal(tonumber(ppid), coru.os_getppid())
    -- the host (CORU_BIN) or the luajit that loaded the module
    local exe = coru.exepath()
    assert.is_true(exe == coru.fs_realpath(helper.bin) or exe:match("/luajit[^/]*$") ~= nil, exe)
  end)
end)
