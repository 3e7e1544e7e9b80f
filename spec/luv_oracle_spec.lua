-- coru.luv against luv itself: the scripts of spec/luv_oracle/ run under
-- Debian's lua-luv (luv 1.44.2, the version coru.luv follows, in lua5.1)
-- and under coru.luv, in the host (coru --luv) and in plain luajit; what a
-- luv program sees (results, error names, request types, callback order)
-- must be the same line for line. lua5.1 and lua-luv are test oracles only
-- (deps/packages.txt).
local coru = require "coru"
local H = require "helper"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
local have_oracle = select(2, H.sh("lua5.1 -e 'require \"luv\"' >/dev/null 2>&1")) == 0

describe("coru.luv against luv 1.44 (Debian's lua-luv)", function()
  for _, name in ipairs {"sync", "async", "fs", "handles"} do
    it("spec/luv_oracle/" .. name .. ".lua gives the same lines", function()
      if not have_oracle then pending("needs lua5.1 with Debian's lua-luv (deps/packages.txt)") return end
      local tmp = assert(coru.fs_mkdtemp(os.tmpname():match("^(.*)/") .. "/coru-oracle-XXXXXX"))
      local script = here .. "/luv_oracle/" .. name .. ".lua"
      local env = "ORACLE_TMP=" .. tmp .. " "
      local want, s1 = H.sh(env .. "lua5.1 " .. script .. " 2>&1")
      -- each face checks its own way of running a luv program: the host
      -- face `coru --luv`, the luajit face the preload line (a sanitized
      -- coru.so needs the LD_PRELOAD that only that face's environment has)
      local cmd = coru.current() and H.bin .. " --luv "
        or [[luajit -e 'package.preload.luv = function() return require "coru.luv" end' ]]
      local got, s2 = H.sh(env .. cmd .. script .. " 2>&1")
      H.sh("rm -rf " .. tmp)
      assert.equal(0, s1)
      assert.is_true(#want > 200)
      assert.equal(want, got)
      assert.equal(0, s2)
    end)
  end
end)
