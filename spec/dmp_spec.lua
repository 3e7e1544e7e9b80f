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

-- Options for comparing two computations of a diff (the differential, the
-- opaque patches): the server's or the reference's, with an hour for a
-- diff. A diff that hits its deadline stops early, and where one side hit
-- the 1 s and the other did not (a loaded machine) the answers differed; an
-- hour is never hit and keeps every path (a limit of 0 would turn off the
-- half-match speedup).
local function unhurried(o)
  local t = {}
  for k, v in pairs(o) do t[k] = v end
  t.diff_timeout = 3600
  return t
end
local SERVER, DEFAULTS = unhurried(gen.server), unhurried(gen.defaults)

describe("coru.dmp differential (npm diff-match-patch 1.0.5, dmp 1.0.0)", function()
  local seed = tonumber(os.getenv("DMP_SEED")) or os.time()
  it("matches the references on random and adversarial cases (seed " .. seed .. ")", function()
    assert(node_available(), "the JavaScript oracles are missing: run sh deps/npm.sh (make test does)")
    math.randomseed(seed)
    local cases, meta = {}, {}
    local pairs_ = gen.text_pairs(330)
    for i, p in ipairs(pairs_) do
      local opts = (i % 2 == 0) and SERVER or DEFAULTS
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
    for i = 1, 150 do
      local t = gen.atoms_of(i % 5 == 0 and math.random(500, 3000) or math.random(0, 120), i % 3 == 0 and 10 or #gen.atoms)
      local s = gen.str(t)
      local from = math.random(1, #t + 1)
      local pat = table.concat(t, "", from, math.min(#t, from + math.random(0, 12)))
      local opts = i % 2 == 0 and SERVER or DEFAULTS
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

describe("coru.dmp API", function()
  local run = helper.run

  it("md5 is the lowercase hex digest of the bytes", function()
    assert.equal("d41d8cd98f00b204e9800998ecf8427e", coru.md5(""))
    assert.equal("5d41402abc4b2a76b9719d911017c592", coru.md5("hello"))
    assert.equal("9e107d9d372bb6826bd81d3542a419d6", coru.md5("The quick brown fox jumps over the lazy dog"))
    assert.equal(32, #coru.md5("\0\255\254 not UTF-8"))
    assert.has_error(function() coru.md5(nil) end, "bad argument #1 to 'md5' (string expected, got nil)")
  end)

  it("has the constants, the reference defaults and settable tunables", function()
    assert.equal(-1, dmp.DELETE) assert.equal(0, dmp.EQUAL) assert.equal(1, dmp.INSERT)
    local d = dmp.new()
    assert.equal(1.0, d.diff_timeout) assert.equal(0.5, d.match_threshold) assert.equal(1000, d.match_distance)
    assert.equal(0.5, d.patch_delete_threshold) assert.equal(4, d.patch_margin) assert.equal(4, d.diff_edit_cost)
    assert.equal(32, d.match_maxbits)
    d.match_threshold = 0.375
    assert.equal(0.375, d.match_threshold)
    local s = dmp.new(gen.server)
    assert.equal(100, s.match_distance)
    assert.has_error(function() dmp.new{bogus = 1} end, "bad argument #1 to 'new' (option 'bogus': unknown option)")
    assert.has_error(function() dmp.new{patch_margin = 1.5} end,
                     "bad argument #1 to 'new' (option 'patch_margin': an integer from 0 to 32 expected)")
    assert.has_error(function() d.match_distance = "far" end, "coru.dmp: option 'match_distance': a number expected")
    assert.is_nil(d.nothing)
    assert.matches("^coru.dmp: ", tostring(d))
  end)

  it("refuses invalid UTF-8 and wrong types, naming the argument", function()
    local d = dmp.new()
    -- methods count self as argument #1; the module-level forms count from the first text
    assert.has_error(function() d:diff_main("ok\255", "a") end, "bad argument #2 to 'diff_main' (invalid UTF-8 at byte 3)")
    assert.has_error(function() dmp.diff_main("a", "\237\160\128") end,
                     "bad argument #2 to 'diff_main' (invalid UTF-8 at byte 1)")
    assert.has_error(function() dmp.patch_apply({}, 42) end, "bad argument #2 to 'patch_apply' (string expected, got number)")
    assert.has_error(function() dmp.diff_levenshtein({{7, "x"}}) end,
                     "bad argument #1 to 'diff_levenshtein' (diff 1: op must be -1, 0 or 1)")
    assert.has_error(function() dmp.patch_to_text({{diffs = {}, start1 = 0}}) end,
                     "bad argument #1 to 'patch_to_text' (start2: a number expected, got nil)")
    assert.has_error(function() dmp.patch_make(1, 2) end,
                     "patch_make: unknown call format (text1, text2), (diffs), (text1, diffs) expected")
    assert.has_error(function() dmp.patch_make("abc", {{0, "abd"}}) end,
                     "bad argument #2 to 'patch_make' (the diffs do not describe text1 (their deleted and equal texts differ from it))")
    assert.has_error(function() dmp.match_main("abc", ("x"):rep(40), 0) end,
                     "match_main: pattern too long (40 UTF-16 units, match_maxbits is 32)")
  end)

  it("refuses invalid UTF-8 in the no-op calls as in every other", function()
    local d = dmp.new()
    -- identical texts and no patches are answered without a conversion, but still validated
    local bad_utf8 = {
      {function() d:patch_apply({}, "ok\255") end, "bad argument #3 to 'patch_apply' (invalid UTF-8 at byte 3)"},
      {function() dmp.patch_apply({}, "ok\255") end, "bad argument #2 to 'patch_apply' (invalid UTF-8 at byte 3)"},
      {function() d:patch_make("x\255", "x\255") end, "bad argument #2 to 'patch_make' (invalid UTF-8 at byte 2)"},
      {function() dmp.patch_make("x\255", "x\255") end, "bad argument #1 to 'patch_make' (invalid UTF-8 at byte 2)"},
      {function() d:diff_main("x\255", "x\255") end, "bad argument #2 to 'diff_main' (invalid UTF-8 at byte 2)"},
      {function() dmp.diff_main("\237\160\128", "\237\160\128", false) end,
       "bad argument #1 to 'diff_main' (invalid UTF-8 at byte 1)"},
      {function() d:diff_cleanup_merge({{0, "x\255"}}) end,
       "bad argument #2 to 'diff_cleanup_merge' (diff 1: invalid UTF-8 at byte 2)"},
      {function() dmp.patch_to_text({{diffs = {{0, "\192\128"}}, start1 = 0, start2 = 0, length1 = 2, length2 = 2}}) end,
       "bad argument #1 to 'patch_to_text' (diff 1: invalid UTF-8 at byte 1)"},
      {function() dmp.match_main("abc", "b\255", 1) end, "bad argument #2 to 'match_main' (invalid UTF-8 at byte 2)"},
    }
    for _, case in ipairs(bad_utf8) do assert.has_error(case[1], case[2]) end
    -- the patch text is checked too: a parse failure, not an error
    assert.same({nil, "invalid UTF-8 at byte 14 of the patch text"}, {dmp.patch_from_text("@@ -1 +1 @@\n-\255\n")})
    -- valid no-ops give their input back
    local out, res = d:patch_apply({}, "ok é")
    assert.equal("ok é", out)
    assert.same({}, res)
    assert.same({}, d:patch_make("é", "é"))
    assert.same({{0, "😀"}}, d:diff_main("😀", "😀"))
    assert.same({}, dmp.diff_main("", ""))
    assert.same({}, d:patch_from_text(""))
    assert.equal("", dmp.patch_to_text({}))
    -- the exact-base path of patch_apply checks as well
    local ps = dmp.patch_make("abc abc abc", "abc abd abc")
    assert.has_error(function() dmp.patch_apply(ps, "abc ab\255 abc") end,
                     "bad argument #2 to 'patch_apply' (invalid UTF-8 at byte 7)")
    assert.has_error(function() d:patch_apply(ps, "abc abc abc\255") end,
                     "bad argument #3 to 'patch_apply' (invalid UTF-8 at byte 12)")
    -- a wrong type is refused before any no-op answer
    assert.has_error(function() d:patch_apply({}, 42) end, "bad argument #3 to 'patch_apply' (string expected, got number)")
    -- md5 hashes bytes, not text: any string
    assert.equal(32, #coru.md5("x\255"))
  end)

  it("checks self and the arguments of every method and metamethod (no write into a foreign value)", function()
    local d = dmp.new()
    local methods = {"diff_main", "patch_make", "patch_apply", "diff_cleanup_semantic", "diff_cleanup_semantic_lossless",
                     "diff_cleanup_efficiency", "diff_cleanup_merge", "diff_levenshtein", "diff_x_index", "diff_text1",
                     "diff_text2", "match_main", "patch_to_text", "patch_from_text"}
    for _, m in ipairs(methods) do
      for _, self in ipairs {io.stdout, {}, "x", 1} do
        assert.has_error(function() d[m](self, "a", "a") end,
                         ("bad argument #1 to '%s' (coru.dmp object expected, got %s)"):format(m, type(self)))
      end
    end
    local MT = getmetatable(d)
    assert.has_error(function() MT.__newindex(io.stdout, "match_threshold", 0.1) end,
                     "bad argument #1 to 'newindex' (coru.dmp object expected, got userdata)")
    assert.has_error(function() MT.__index({}, "match_threshold") end,
                     "bad argument #1 to 'index' (coru.dmp object expected, got table)")
    assert.has_error(function() MT.__tostring(io.stdout) end,
                     "bad argument #1 to 'tostring' (coru.dmp object expected, got userdata)")
    local PT = getmetatable(dmp.patch_make("abc", "abd")[1])
    assert.has_error(function() PT.__tostring(io.stdout) end,
                     "bad argument #1 to 'tostring' (patch (a table) expected, got userdata)")
    assert.has_error(function() PT.__tostring({diffs = {}}) end,
                     "bad argument #1 to 'tostring' (start1: a number expected, got nil)")
    assert.has_error(function() dmp.pool_threshold(-1) end,
                     "bad argument #1 to 'pool_threshold' (a size in bytes (>= 0) expected)")
    assert.has_error(function() dmp.diff_x_index({}, 0.5) end,
                     "bad argument #2 to 'diff_x_index' (loc: an integer expected)")
    assert.has_error(function() dmp.patch_apply({7}, "") end, "bad argument #1 to 'patch_apply' (patch 1 is not a table)")
    assert.has_error(function() dmp.diff_text1("x") end,
                     "bad argument #1 to 'diff_text1' (diffs (a table) expected, got string)")
  end)

  it("has a job __gc that refuses anything but a job (reached through the debug registry)", function()
    -- the spare job sits alone in a registry table; find it by taking it out and seeing a call put one back
    local reg, slot = debug.getregistry(), nil
    dmp.diff_levenshtein({})
    for _, t in pairs(reg) do
      if type(t) == "table" and type(rawget(t, 1)) == "userdata" and next(t, 1) == nil then
        local u = t[1]
        t[1] = nil
        dmp.diff_levenshtein({})
        if type(rawget(t, 1)) == "userdata" then slot = t break end
        t[1] = u
      end
    end
    assert.is_table(slot, "the spare job's slot")
    local gc = getmetatable(slot[1]).__gc
    for _, v in ipairs {{}, io.stdout, dmp.new(), "x"} do
      assert.has_error(function() gc(v) end, ("bad argument #1 to '__gc' (coru.dmp job expected, got %s)"):format(type(v)))
    end
    gc(slot[1])  -- a job: emptied, and still usable as the spare
    assert.equal(3, dmp.diff_levenshtein(dmp.diff_main("abc", "xyz")))
  end)

  it("refuses every invalid UTF-8 form and accepts every valid one", function()
    local bad = {
      ["\194"] = 1, ["\194a"] = 1, ["\192\128"] = 1, ["\193\191"] = 1, ["\224\128\128"] = 1,
      ["\237\160\128"] = 1, ["\237\191\191"] = 1, ["\240\143\191\191"] = 1, ["\244\144\128\128"] = 1,
      ["\245\128\128\128"] = 1, ["\128"] = 1, ["ok\255"] = 3, ["\226\130"] = 1, ["0123456789abcdef\200"] = 17,
    }
    for s, at in pairs(bad) do
      assert.has_error(function() dmp.diff_main(s, "") end,
                       ("bad argument #1 to 'diff_main' (invalid UTF-8 at byte %d)"):format(at))
    end
    for _, s in ipairs {"\0", "\127", "\194\128", "\223\191", "\224\160\128", "\237\159\191", "\238\128\128",
                        "\239\191\191", "\240\144\128\128", "\244\143\191\191", ("ab\195\169"):rep(20)} do
      local diffs = dmp.diff_main(s, s .. "!")
      assert.equal(s, dmp.diff_text1(diffs))
      assert.equal(s .. "!", dmp.diff_text2(diffs))
    end
  end)

  it("returns nil and a message for malformed patch text", function()
    local cases = {
      ["x"] = "Invalid patch string: x",
      ["@@ -1 +1 @@\n-%E2%82\n"] = "Illegal escape in patch_fromText: -%E2%82",
      ["@@ -1 +1 @@\n*a\n"] = 'Invalid patch mode "*" in: *a',
      ["@@ -99999999999999999 +1 @@\n"] = "Number too large in patch header: @@ -99999999999999999 +1 @@",
      ["@@ -1 +1 @@\n-\255\n"] = "invalid UTF-8 at byte 14 of the patch text",
    }
    for text, msg in pairs(cases) do
      local ps, err = dmp.patch_from_text(text)
      assert.is_nil(ps)
      assert.equal(msg, err)
    end
    assert.same({}, dmp.patch_from_text(""))
  end)

  it("applies patches built by hand with odd numbers and empty diffs without failing", function()
    local cases = {
      {{diffs = {{0, "ab"}, {1, "x"}}, start1 = -5, start2 = 1e15, length1 = -3, length2 = 9e15}},
      {{diffs = {}, start1 = 0, start2 = 0, length1 = 0, length2 = 0}},
      {{diffs = {{-1, ("long"):rep(40)}}, start1 = 3, start2 = 3, length1 = 160, length2 = 0}},
      {{diffs = {{0, ""}, {-1, ""}, {1, ""}}, start1 = 0, start2 = 0, length1 = 0, length2 = 0}},
    }
    for _, ps in ipairs(cases) do
      for _, base in ipairs {"", "ab", ("long"):rep(50), "😀x"} do
        local out, res = dmp.patch_apply(ps, base)
        assert.is_string(out)
        assert.is_table(res)
        assert.is_string(dmp.patch_to_text(ps))
      end
    end
    -- what the reference prints for the same object (checked with Node.js)
    assert.equal("@@ --4,-3 +1000000000000001,9000000000000000 @@\n ab\n+x\n", dmp.patch_to_text(cases[1]))
  end)

  it("accepts every call format of patch_make and keeps diffs in place", function()
    local a, b = "The quick brown fox jumps.", "The quick red fox leaps."
    local d = dmp.new()
    local diffs = d:diff_main(a, b)
    local t = d:patch_to_text(d:patch_make(a, b))
    d:diff_cleanup_semantic(diffs)
    d:diff_cleanup_efficiency(diffs)
    assert.equal(t, d:patch_to_text(d:patch_make(diffs)))
    assert.equal(t, d:patch_to_text(d:patch_make(a, diffs)))
    assert.equal(t, d:patch_to_text(d:patch_make(a, b, diffs)))
    local ps = d:patch_make(a, b)
    assert.equal(t, tostring(ps[1]) .. tostring(ps[2] or ""))
    local same = d:diff_main("abc", "abd")
    assert.equal(same, d:diff_cleanup_semantic(same))
    assert.equal(a, d:diff_text1(diffs))
    assert.equal(b, d:diff_text2(diffs))
  end)

  it("never splits a surrogate pair (the reference's patch_toText throws there)", function()
    local a, b = ("😀"):rep(10) .. "x", ("😀"):rep(5) .. "😁" .. ("😀"):rep(4) .. "x"
    local text = dmp.patch_to_text(dmp.patch_make(a, b))
    -- (checked: both JavaScript libraries apply it to give b; the reference throws URIError)
    assert.equal("@@ -1,21 +1,21 @@\n " .. ("%F0%9F%98%80"):rep(5) .. "\n-%F0%9F%98%80\n+%F0%9F%98%81\n " ..
                 ("%F0%9F%98%80"):rep(4) .. "x\n", text)
    local out, res = dmp.patch_apply(assert(dmp.patch_from_text(text)), a)
    assert.equal(b, out)
    assert.same({true}, res)
    local diffs = dmp.diff_main("😀", "😁")
    assert.same({{-1, "😀"}, {1, "😁"}}, diffs)
    dmp.diff_cleanup_merge(diffs)
    assert.same({{-1, "😀"}, {1, "😁"}}, diffs)
  end)

  it("gives opaque patch lists that apply and print as the tables do (opaque_patches)", function()
    local d, op = dmp.new(SERVER), dmp.new(SERVER)   -- two diffs compared: neither may stop early
    op.opaque_patches = true
    assert.is_true(op.opaque_patches)
    assert.is_false(d.opaque_patches)
    for _, p in ipairs(gen.text_pairs(60)) do
      local ps, ops = d:patch_make(p.a, p.b), op:patch_make(p.a, p.b)
      assert.equal("userdata", type(ops))
      assert.equal(#ps, #ops)
      for i = 1, #ps do assert.same(ps[i], ops[i]) end
      local text = d:patch_to_text(ps)
      assert.equal(text, op:patch_to_text(ops))
      assert.equal(text, tostring(ops))
      local parsed = assert(op:patch_from_text(text))
      assert.equal(text, d:patch_to_text(parsed))
      for _, base in ipairs {p.a, p.c or p.b} do
        assert.same({d:patch_apply(ps, base)}, {op:patch_apply(parsed, base)})
        assert.same({d:patch_apply(ps, base)}, {d:patch_apply(ops, base)})  -- any object takes either form
      end
    end
    -- an entry is a copy: changing it leaves the list alone
    local ops = op:patch_make("abc abc abc", "abc abd abc")
    ops[1].start1 = 99
    assert.equal(0, ops[1].start1)
    assert.is_nil(ops[0]) assert.is_nil(ops[#ops + 1]) assert.is_nil(ops.start1) assert.is_nil(ops[1.5])
    -- no patches: the text back, validated
    local none = assert(op:patch_from_text("@@ -1 +1 @@\n"))
    assert.equal(1, #none)
    assert.same({"x", {true}}, {op:patch_apply(none, "x")})
    assert.has_error(function() op:patch_apply(none, "x\255") end, "bad argument #3 to 'patch_apply' (invalid UTF-8 at byte 2)")
    assert.has_error(function() op.opaque_patches = 1 end, "coru.dmp: option 'opaque_patches': a boolean expected")
    assert.has_error(function() d:patch_apply(io.stdout, "x") end,
                     "bad argument #2 to 'patch_apply' (patches (a table or a patch list) expected, got userdata)")
    -- the list's metamethods check what they are given
    local MT = getmetatable(ops)
    for _, mm in ipairs {"__len", "__index", "__tostring", "__gc"} do
      assert.has_error(function() MT[mm]({}, 1) end,
                       ("bad argument #1 to '%s' (coru.dmp patch list expected, got table)"):format(mm:gsub("^__(tostring)$", "%1")))
    end
    MT.__gc(ops)  -- by hand: the list empties, and stays safe to use and to collect
    assert.equal(0, #ops)
    assert.equal("", op:patch_to_text(ops))
  end)

  it("runs opaque patch lists through the pool (callback mode)", function()
    run(function()
      local at = gen.atoms_of(30000)
      local a, b = gen.str(at), gen.str(gen.mutate(at, 50))
      local op = dmp.new{opaque_patches = true}
      local got
      op:patch_make(a, b, function(err, ps) got = {err, ps} end)
      helper.wait_until(function() return got end, 20000, "the patch_make callback")
      assert.is_nil(got[1])
      assert.equal("userdata", type(got[2]))
      local ps, applied = got[2], nil
      op:patch_apply(ps, a, function(err, text, res) applied = {err, text, res} end)
      helper.wait_until(function() return applied end, 20000, "the patch_apply callback")
      assert.is_nil(applied[1])
      assert.equal(b, applied[2])
      assert.is_true(#applied[3] >= #ps)  -- split_max may add hunks
      for _, r in ipairs(applied[3]) do assert.is_true(r) end
    end)
  end)

  it("runs large operations on the pool: callback mode, and a task suspends while the loop serves", function()
    run(function()
      local at = gen.atoms_of(30000)
      local a, b = gen.str(at), gen.str(gen.mutate(at, 50))
      local d = dmp.new()
      local want = d:diff_main(a, b)
      local got
      d:diff_main(a, b, function(err, diffs) got = {err, diffs} end)
      helper.wait_until(function() return got end, 20000, "the diff callback")
      assert.is_nil(got[1])
      assert.same(want, got[2])
      local old = dmp.pool_threshold(0)
      local ticks, t = 0, coru.new_timer()
      t:start(0, 1, function() ticks = ticks + 1 end)
      local ps = d:patch_make(a, b)
      local out, res = d:patch_apply(ps, a)
      t:close()
      dmp.pool_threshold(old)
      assert.equal(b, out)
      for _, r in ipairs(res) do assert.is_true(r) end
      assert.equal(d:patch_to_text(ps), d:patch_to_text(dmp.new():patch_make(a, b)))
    end)
  end)

  it("bounds a diff by diff_timeout and still returns diffs that rebuild both texts", function()
    local a, b = gen.str(gen.atoms_of(40000)), gen.str(gen.atoms_of(40000))  -- unrelated, ~100 KB each
    local d = dmp.new{diff_timeout = 0.05}
    local diffs = d:diff_main(a, b)
    assert.equal(a, d:diff_text1(diffs))
    assert.equal(b, d:diff_text2(diffs))
    local out, res = d:patch_apply(d:patch_make(a, diffs), a)
    assert.equal(b, out)
    for _, r in ipairs(res) do assert.is_true(r) end
  end)

  it("runs in place where a task cannot suspend (a table.sort comparator)", function()
    run(function()
      local old = dmp.pool_threshold(0)
      local got
      table.sort({2, 1}, function(x, y) got = dmp.diff_main("abc", "abd") return x < y end)
      dmp.pool_threshold(old)
      assert.same({{0, "ab"}, {-1, "c"}, {1, "d"}}, got)
    end)
  end)

  it("discards the result of a cancelled pool operation", function()
    run(function()
      local old = dmp.pool_threshold(0)
      local a, b = gen.str(gen.atoms_of(20000)), gen.str(gen.atoms_of(20000))
      local task = coru.spawn(function() return dmp.diff_main(a, b) end)
      task:cancel("stop")
      local ok, err = pcall(task.await, task)
      dmp.pool_threshold(old)
      assert.is_false(ok)
      assert.is_true(coru.is_cancelled(err))
      coru.sleep(50)
    end)
  end)
end)
