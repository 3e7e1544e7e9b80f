-- Writes the benchmark's texts (seeded, the same every run) as JSON for
-- both benches: big (about 1 MB, 100 scattered edits; another base with 20
-- other edits) and small (about 10 KB, 5 edits).
local cjson = require "cjson"
local out = assert(arg[1], "usage: inputs.lua out.json")
math.randomseed(tonumber(os.getenv("DMP_BENCH_SEED")) or 16)
local words = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "lorem", "ipsum", "dolor",
               "sit", "amet", "function", "return", "local", "end", "if", "then", "élan", "naïve", "中文", "😀"}

local function text(bytes)
  local t, n = {}, 0
  while n < bytes do
    local line = {}
    for i = 1, math.random(4, 14) do line[i] = words[math.random(#words)] end
    local s = table.concat(line, " ") .. "\n"
    t[#t + 1] = s
    n = n + #s
  end
  return t
end

-- k edits at scattered lines: a word replaced, a line inserted or removed.
local function edit(lines, k)
  local t = {}
  for i = 1, #lines do t[i] = lines[i] end
  for _ = 1, k do
    local i = math.random(#t)
    local r = math.random(3)
    if r == 1 then t[i] = t[i]:gsub("%w+", "edited", 1)
    elseif r == 2 then table.insert(t, i, "a new line " .. math.random(1e6) .. "\n")
    else t[i] = t[i]:gsub(" [^ ]*\n$", "\n") end
  end
  return t
end

local function case(bytes, edits, other)
  local a = text(bytes)
  return {a = table.concat(a), b = table.concat(edit(a, edits)), c = table.concat(edit(a, other))}
end

local f = assert(io.open(out, "wb"))
f:write(cjson.encode({big = case(1000000, 100, 20), small = case(10000, 5, 2)}))
f:close()
