-- Prints bench/dmp's table: coru against the JavaScript reference, same run.
local cjson = require "cjson"
local function load(p) local f = assert(io.open(p, "rb")) local s = f:read("*a") f:close() return cjson.decode(s) end
local node, coru = load(arg[1]), load(arg[2])
local rows = {
  {"big", "make", "1 MB, 100 edits: patch_make + patch_to_text", 20},
  {"big", "exact", "1 MB: patch_from_text + patch_apply, exact base", 20},
  {"big", "other", "1 MB: patch_from_text + patch_apply, base with 20 other edits", 20},
  {"small", "make", "10 KB, 5 edits: patch_make + patch_to_text", 5},
  {"small", "exact", "10 KB: patch_from_text + patch_apply, exact base", 5},
  -- opaque patch lists (opaque_patches = true), against the same node figures
  {"big", "make_op", "1 MB, 100 edits: make + to_text, opaque lists", 20, "make"},
  {"big", "exact_op", "1 MB: from_text + apply, exact base, opaque lists", 20, "exact"},
  {"small", "make_op", "10 KB, 5 edits: make + to_text, opaque lists", 5, "make"},
  {"small", "exact_op", "10 KB: from_text + apply, exact base, opaque lists", 5, "exact"},
}
print(("%-62s %12s %12s %8s %7s %s"):format("operation (server tunables)", "node ms", "coru ms", "ratio", "target", "same output"))
local worst, fail = math.huge, false
for _, r in ipairs(rows) do
  local kind = r[5] or r[2]
  local n, c = node[r[1]][kind], coru[r[1]][r[2]]
  local ratio = n.median / c.median
  local same
  if kind == "make" then same = n.md5 == c.md5
  elseif kind == "exact" then same = n.ok and c.ok
  else same = n.md5 == c.md5 and n.applied == c.applied and n.hunks == c.hunks end
  if not same then fail = true end
  worst = math.min(worst, ratio / r[4])
  print(("%-62s %12.3f %12.3f %7.1fx %6dx %s"):format(r[3], n.median, c.median, ratio, r[4], same and "yes" or "NO"))
end
print(("(medians of %s runs; min ms: node %s / coru %s on the first row)"):format(os.getenv("REPS") or 5,
  ("%.3f"):format(node.big.make.min), ("%.3f"):format(coru.big.make.min)))
if fail then print("bench/dmp: outputs differ from the reference") os.exit(1) end
