-- coru.dmp and coru.md5. The differential part drives Node.js with the npm
-- diff-match-patch 1.0.5 and dmp 1.0.0 (deps/npm.sh installs them for the
-- tests) and fails on any difference from coru's results.
local coru = require "coru"
local dmp = require "coru.dmp"
local cjson = require "cjson"
local gen = require "dmp_gen"
local helper = require "helper"

local root = (os.getenv("CORU_BIN") or "build/coru"):gsub("/build[^/]*/coru$", "")
if root == os.getenv("CORU_BIN") then root = "." end
local NODE_PATH = root .. "/deps/node_modules"

local function node_available()
  local _, st = helper.sh("node -e 'require(\"" .. NODE_PATH .. "/diff-match-patch\"); require(\"" .. NODE_PATH ..
                          "/dmp\")' 2>/dev/null")
  return st == 0
end

-- Run the oracle over cases; returns its results.
local function oracle(cases)
  local dir = os.tmpname()
  local fin, fout = dir .. ".cases.json", dir .. ".results.json"
  local f = assert(io.open(fin, "wb"))
  f:write(cjson.encode(cases))
  f:close()
  local out, st = helper.sh("NODE_PATH='" .. NODE_PATH .. "' node " .. root .. "/spec/dmp_oracle.js " .. fin .. " " ..
                            fout .. " 2>&1")
  assert(st == 0, "the oracle failed: " .. out)
  f = assert(io.open(fout, "rb"))
  local res = cjson.decode(f:read("*a"))
  f:close()
  os.remove(fin) os.remove(fout) os.remove(dir)
  return res
end

local function plain(diffs)
  local t = {}
  for i, d in ipairs(diffs) do t[i] = {d[1], d[2]} end
  return t
end

describe("coru.dmp differential (npm diff-match-patch 1.0.5, dmp 1.0.0)", function()
  local seed = tonumber(os.getenv("DMP_SEED")) or os.time()
  it("matches the references on random and adversarial cases (seed " .. seed .. ")", function()
    assert(node_available(), "the JavaScript oracles are missing: run sh deps/npm.sh (make test does)")
    math.randomseed(seed)
    local cases, meta = {}, {}
    local pairs_ = gen.text_pairs(330)
    for i, p in ipairs(pairs_) do
      local opts = (i % 2 == 0) and gen.server or gen.defaults
      local d = dmp.new(opts)
      cases[#cases + 1] = {kind = "diff", a = p.a, b = p.b, opts = opts, loc = math.random(0, #p.a)}
      meta[#cases] = {d = d}
      local ours = d:patch_to_text(d:patch_make(p.a, p.b))
      cases[#cases + 1] = {kind = "patch", a = p.a, b = p.b, c = p.c, opts = opts, ours = ours}
      meta[#cases] = {d = d}
    end
    local valid = {}
    for i = 1, 25 do valid[#valid + 1] = cases[2 * i].ours end
    for _, t in ipairs(gen.patch_texts(valid)) do
      cases[#cases + 1] = {kind = "fromtext", text = t, base = pairs_[math.random(#pairs_)].a:sub(1, 0) ..
                           gen.str(gen.atoms_of(math.random(0, 40), 12))}
      meta[#cases] = {d = dmp.new()}
    end
    for i = 1, 80 do
      local t = gen.atoms_of(math.random(0, 120), i % 3 == 0 and 10 or #gen.atoms)
      local s = gen.str(t)
      local from = math.random(1, #t + 1)
      local pat = table.concat(t, "", from, math.min(#t, from + math.random(0, 12)))
      local opts = i % 2 == 0 and gen.server or gen.defaults
      cases[#cases + 1] = {kind = "match", text = s, pattern = gen.str(gen.mutate({pat}, math.random(0, 2), 12)),
                           loc = math.random(-5, #s + 5), opts = opts}
      meta[#cases] = {d = dmp.new(opts)}
    end
    local res = oracle(cases)
    local count, refail, lone = 0, 0, 0
    for i, c in ipairs(cases) do
      local r, d = res[i], meta[i].d
      local where = ("case %d (%s, seed %d)"):format(i, c.kind, seed)
      if c.kind == "diff" then
        local raw = d:diff_main(c.a, c.b)
        assert.equal(c.a, d:diff_text1(raw), where)
        assert.equal(c.b, d:diff_text2(raw), where)
        if r.err then
          refail = refail + 1
        elseif r.raw == cjson.null then
          lone = lone + 1
        else
          assert.same(r.raw, plain(raw), where .. " diff_main")
          local s = d:diff_cleanup_semantic(d:diff_main(c.a, c.b))
          if r.semantic ~= cjson.null then assert.same(r.semantic, plain(s), where .. " diff_cleanup_semantic") end
          local e = d:diff_cleanup_efficiency(d:diff_main(c.a, c.b))
          if r.efficiency ~= cjson.null then
            assert.same(r.efficiency, plain(e), where .. " diff_cleanup_efficiency")
            assert.equal(r.levenshtein, d:diff_levenshtein(e), where .. " diff_levenshtein")
            assert.equal(r.xindex, d:diff_x_index(e, c.loc), where .. " diff_x_index")
          end
        end
      elseif c.kind == "patch" then
        if r.ref == cjson.null then
          refail = refail + 1
          -- the reference failed: ours must apply in both libraries to give b
          assert.equal(c.b, r.g_exact.text, where .. " (ours applied by diff-match-patch)")
          assert.equal(c.b, r.f_exact.text, where .. " (ours applied by dmp)")
        else
          assert.equal(r.ref, c.ours, where .. " patch_to_text(patch_make(a, b))")
        end
        local ps = assert(d:patch_from_text(c.ours))
        for _, key in ipairs {"exact", "other"} do
          local base = key == "exact" and c.a or c.c
          local text, results = d:patch_apply(ps, base)
          for _, lib in ipairs {"g_", "f_"} do
            local ref = r[lib .. key]
            assert.is_nil(ref.err, where)
            if ref.lone then lone = lone + 1 else assert.equal(ref.text, text, where .. " patch_apply " .. lib .. key) end
            assert.same(ref.results, results, where .. " patch_apply results " .. lib .. key)
          end
        end
      elseif c.kind == "fromtext" then
        local ps, err = d:patch_from_text(c.text)
        if r.g.err then
          assert.is_nil(ps, where .. " should be rejected: " .. c.text)
          assert.is_string(err)
        else
          assert.is_table(ps, where .. " " .. tostring(err))
          assert.equal(r.g.text, d:patch_to_text(ps), where)
          local text, results = d:patch_apply(ps, c.base)
          if r.g_apply.err then
            refail = refail + 1
          elseif r.g_apply.lone then
            lone = lone + 1
          else
            assert.equal(r.g_apply.text, text, where .. " apply")
            assert.same(r.g_apply.results, results, where .. " apply results")
          end
        end
        -- Floobits' fork accepts what the reference accepts
        assert.equal(r.g.err == nil, r.f.err == nil, where .. " fork and reference disagree")
      elseif c.kind == "match" then
        local ok, loc = pcall(d.match_main, d, c.text, c.pattern, c.loc)
        if r.r.err then
          assert.is_false(ok, where)
        else
          assert.is_true(ok, where .. " " .. tostring(loc))
          assert.equal(r.r.loc, loc, where .. " match_main")
        end
      end
      count = count + 1
    end
    print(("\ndmp differential: seed %d, %d cases, %d where the reference failed, %d with lone surrogates"):format(
      seed, count, refail, lone))
    assert.is_true(count >= 400)
  end)
end)
