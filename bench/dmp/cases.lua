-- Worst ratio of coru.dmp to the reference over the differential spec's
-- texts (spec/dmp_gen.lua, seeded): usage cases.lua write|run cases.json [node.json]
package.path = arg[0]:gsub("bench/dmp/cases.lua$", "spec/?.lua;") .. package.path
local coru = require "coru"
local dmp = require "coru.dmp"
local cjson = require "cjson"
local gen = require "dmp_gen"
local mode, file = arg[1], arg[2]
if mode == "write" then
  math.randomseed(tonumber(os.getenv("DMP_SEED")) or 400)
  local t = {}
  for i, p in ipairs(gen.text_pairs(400)) do t[i] = {a = p.a, b = p.b} end
  local f = assert(io.open(file, "wb")) f:write(cjson.encode(t)) f:close()
  return
end
local function load(p) local f = assert(io.open(p, "rb")) local s = f:read("*a") f:close() return cjson.decode(s) end
local cases, node = load(file), load(arg[3])
local reps = tonumber(os.getenv("REPS")) or 15
local function med(fn)
  fn()
  local t = {}
  for i = 1, reps do local t0 = coru.hrtime() fn() t[i] = (coru.hrtime() - t0) / 1e3 end
  table.sort(t)
  return t[math.floor(reps / 2) + 1]
end
local d = dmp.new()
local worst, wcase, wop, n, sum = math.huge, nil, nil, 0, 0
local worst10, w10case, w10op = math.huge, nil, nil  -- where the reference takes 10 us or more
for i, c in ipairs(cases) do
  local r = node[i]
  if r ~= cjson.null then
    collectgarbage()  -- outside the timings: the previous cases' garbage is not this case's cost
    local text = d:patch_to_text(d:patch_make(c.a, c.b))
    local ps = assert(d:patch_from_text(text))
    local mk = med(function() return d:patch_to_text(d:patch_make(c.a, c.b)) end)
    local ap = med(function() return d:patch_apply(assert(d:patch_from_text(text)), c.a) end)
    for op, pair in pairs {make = {r.make, mk}, apply = {r.apply, ap}} do
      local ratio = pair[1] / pair[2]
      n, sum = n + 1, sum + math.log(ratio)
      if ratio < worst then worst, wcase, wop = ratio, i, op end
      if pair[1] >= 10 and ratio < worst10 then worst10, w10case, w10op = ratio, i, op end
      if os.getenv("VERBOSE") and ratio < 1 then print(i, op, pair[1], pair[2], #c.a, #c.b) end
    end
    local _ = ps
  end
end
print(("differential texts: %d measurements (median of %d runs each), geometric mean ratio %.1fx")
  :format(n, reps, math.exp(sum / n)))
print(("  worst %.2fx (case %d, %s: %d + %d bytes; node %.2f us, coru %.2f us)"):format(worst, wcase, wop,
  #cases[wcase].a, #cases[wcase].b, node[wcase][wop], worst * 0 + (node[wcase][wop] / worst)))
if w10case then
  print(("  worst where the reference takes >= 10 us: %.2fx (case %d, %s: %d + %d bytes)"):format(worst10, w10case,
    w10op, #cases[w10case].a, #cases[w10case].b))
end
