-- bench/json/bench.lua - coru.json against lua-cjson in the same process:
-- encode and decode of the W2 request and reply (bench/coru/rpc_*.lua) and
-- of a floo patch message, nanoseconds of CPU per call (median of ROUNDS rounds of
-- N calls each) and the ratio cjson / coru (above 1: coru.json is faster).
--   build/coru bench/json/bench.lua        (or luajit with coru.so on LUA_CPATH)
--   N=200000 ROUNDS=7 ...
local json = require "coru.json"
local cjson = require "cjson"
local now = os.clock   -- the process's CPU time: what a call costs, less what other processes take

local N = tonumber(os.getenv("N") or "100000")
local ROUNDS = tonumber(os.getenv("ROUNDS") or "5")
if os.getenv("SMOKE") == "1" then N, ROUNDS = 2000, 1 end

local PATCH = '@@ -12,7 +12,7 @@ fn main() {\n-    let x = "old";\n+    let x = "new value";\n     println!("{}", x);\n'
local CASES = {
  {"W2 request", {name = "patch", req_id = 12345, id = 1, patch = PATCH}},
  {"W2 reply", {name = "ack", req_id = 12345}},
  {"floo patch", {name = "patch", id = 17, user_id = 4, username = "alice", path = "src/main/app/é.lua",
                  patch = "@@ -101,16 +101,25 @@\n local x = 1\n-local y = \"two\"\n+local y = \"three\\tfour\"\n+-- ✓ done\n end\n",
                  md5_before = "0cc175b9c0f1b6a831c399e269772661", md5_after = "92eb5ffee6ae2fec3ad71c777531578f",
                  req_id = 873}},
}

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

local function time(f, arg)
  local runs = {}
  for r = 1, ROUNDS do
    local t0 = now()
    for _ = 1, N do f(arg) end
    runs[r] = (now() - t0) / N * 1e9
  end
  return median(runs)
end

print(("%-11s %-7s %12s %12s %8s"):format("message", "op", "coru ns", "cjson ns", "ratio"))
for _, c in ipairs(CASES) do
  local name, v = c[1], c[2]
  local text = assert(json.encode(v))
  assert(cjson.encode(v))
  local a = time(json.encode, v)
  local b = time(cjson.encode, v)
  print(("%-11s %-7s %12.1f %12.1f %8.2f"):format(name, "encode", a, b, b / a))
  a = time(json.decode, text)
  b = time(cjson.decode, text)
  print(("%-11s %-7s %12.1f %12.1f %8.2f"):format(name, "decode", a, b, b / a))
end
