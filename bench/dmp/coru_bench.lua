-- The coru side of bench/dmp: the same operations as node_bench.js on the
-- inputs of inputs.lua; prints one JSON object of timings (ms) and outputs.
local coru = require "coru"
local dmp = require "coru.dmp"
local cjson = require "cjson"
local f = assert(io.open(assert(arg[1]), "rb"))
local inp = cjson.decode(f:read("*a"))
f:close()
local reps = tonumber(os.getenv("REPS")) or 5
local d = dmp.new{match_threshold = 0.375, match_distance = 100, patch_delete_threshold = 0.375}
-- the same with opaque patch lists (docs/dmp.md): no Lua table per patch
local dop = dmp.new{match_threshold = 0.375, match_distance = 100, patch_delete_threshold = 0.375, opaque_patches = true}

local function time(fn)
  local ms, r1, r2 = {}
  for i = 1, reps do
    local t0 = coru.hrtime()
    r1, r2 = fn()
    ms[i] = (coru.hrtime() - t0) / 1e6
  end
  table.sort(ms)
  return {min = ms[1], median = ms[math.floor(#ms / 2) + 1]}, r1, r2
end

local out = {}
for _, size in ipairs {"big", "small"} do
  local a, b, c = inp[size].a, inp[size].b, inp[size].c
  local make, text = time(function() return d:patch_to_text(d:patch_make(a, b)) end)
  local exact, ex = time(function() return d:patch_apply(assert(d:patch_from_text(text)), a) end)
  local other, ot, res = time(function() return d:patch_apply(assert(d:patch_from_text(text)), c) end)
  local make_op, text_op = time(function() return dop:patch_to_text(dop:patch_make(a, b)) end)
  local exact_op, ex_op = time(function() return dop:patch_apply(assert(dop:patch_from_text(text)), a) end)
  make_op.md5 = coru.md5(text_op)
  exact_op.ok = ex_op == b
  local applied = 0
  for _, r in ipairs(res) do if r then applied = applied + 1 end end
  make.md5 = coru.md5(text)
  exact.ok = ex == b
  other.md5, other.applied, other.hunks = coru.md5(ot), applied, #res
  out[size] = {make = make, exact = exact, other = other, make_op = make_op, exact_op = exact_op}
end
print(cjson.encode(out))
