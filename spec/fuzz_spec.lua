-- The API fuzzer (fuzz/api_fuzz.lua) itself: a crash message (libuv's
-- assert, LuaJIT's panic) goes to fd 2, so the fuzzer's calls must never
-- close or replace the process's stdio, or a finding loses its message.
local H = require "helper"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local fuzzer = here .. "../fuzz/api_fuzz.lua"

-- Run the fuzzer for `seconds` in a fresh host with the environment `env`;
-- returns what it wrote to fd 2 and its exit status.
local function fuzz(env, seed, seconds)
  local log = os.tmpname()
  local _, status = H.sh(("%s ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" timeout 60 %s %s %d %d </dev/null >/dev/null 2>%s")
    :format(env, H.qbin, H.shq(fuzzer), seed, seconds, H.shq(log)))
  local f = assert(io.open(log, "rb"))
  local out = f:read("*a"):gsub("%z", "")
  f:close()
  os.remove(log)
  return out, status
end

describe("the API fuzzer", function()
  it("keeps fd 2 its log while only the calls that adopt a descriptor run", function()
    -- fs_close and fs.close are left out: random fs_close calls alone make
    -- the fuzzer's main loop hang in some runs (10 in 30, seeds 1 and 2),
    -- a finding of its own, not yet understood
    local closers = "pipe_open,tcp_open,udp_open,new_tty,new_stdio,open"
    for _, seed in ipairs({1, 2}) do
      local out, status = fuzz("CORU_FUZZ_ONLY=" .. closers, seed, 1)
      assert.matches("api fuzz: only " .. closers:gsub("%p", "%%%0"), out)
      assert.not_matches("stdio guard has a hole", out)
      -- written through fd 2 at the end: the log still has it
      assert.matches("api fuzz: seed " .. seed .. ": %d+ calls in %d+ batches, %d+ errors reported to on_error, no crash", out)
      assert(status == 0, ("status %s, stderr:\n%s"):format(tostring(status), out))
    end
  end)
end)
