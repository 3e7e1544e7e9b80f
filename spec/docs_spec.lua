-- Docs coverage: every name reachable from coru at run time is documented
-- in docs/*.md (or listed in docs/internals.md). See tools/doccheck.lua.
local coru = require "coru"
local here = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")
  or (debug.getinfo(1, "S").source:match("^@spec/") and ".")
  or "."
local check = dofile(here .. "/tools/doccheck.lua")

describe("docs coverage", function()
  it("every exported name of coru, its submodules and its handle types is documented", function()
    local miss = check.missing(here)
    assert.same({}, miss)
  end)

  it("the check sees a new undocumented name (and every submodule file)", function()
    coru.zz_probe_not_documented = function() end
    local ok, miss = pcall(check.missing, here)
    coru.zz_probe_not_documented = nil
    assert.is_true(ok, miss)
    assert.same({"coru.zz_probe_not_documented"}, miss)
    local names = {}
    for _, e in ipairs(check.exports(here)) do names[e.name] = true end
    assert.is_true(names["coru.fs.read_file"])      -- a submodule's field
    assert.is_true(names["coru.timer:again"])       -- a handle type's method
    assert.is_true(names["coru.tcp.resolve"])
  end)
end)

describe("LuaLS annotations (meta/)", function()
  it("declare every exported name, and nothing the runtime lacks", function()
    local undeclared, stale = check.meta_mismatch(here)
    assert.same({}, undeclared)
    assert.same({}, stale)
  end)

  it("see a new name, and are valid Lua", function()
    coru.zz_probe_not_annotated = function() end
    local ok, undeclared = pcall(check.meta_mismatch, here)
    coru.zz_probe_not_annotated = nil
    assert.is_true(ok, undeclared)
    assert.same({"coru.zz_probe_not_annotated"}, undeclared)
    local p = io.popen("find '" .. here .. "/meta' -name '*.lua'")
    local n = 0
    for f in p:lines() do
      n = n + 1
      local src = assert(io.open(f)):read("*a")
      assert.matches("^%-%-%-@meta ", src)
      assert(loadstring(src, "=" .. f))
    end
    p:close()
    assert.is_true(n >= 5)
  end)
end)
