-- coru.json: the runtime's codec in C (src/json_*.c, docs/json.md)
local json = require "coru.json"
local cjson = require "cjson"

local function fails(msg, ...)
  local n = select("#", ...)
  local v, err = ...
  assert.equal(2, n)
  assert.is_nil(v)
  assert.equal(msg, err)
end

-- each {text, message}: decode(text) gives nil, "json.decode: " .. message
local function refused(cases)
  for _, c in ipairs(cases) do fails("json.decode: " .. c[2], json.decode(c[1])) end
end

describe("coru.json", function()
  it("is the module's own json, the same in both faces", function()
    assert.equal(require("coru").json, json)
    assert.equal(cjson.null, json.null)   -- a NULL light userdata, as lua-cjson's
  end)

  describe("encode", function()
    it("writes arrays, objects, marks and nulls", function()
      assert.equal("[1,2,3]", json.encode({1, 2, 3}))
      assert.equal('{"a":1}', json.encode({a = 1}))
      assert.equal("{}", json.encode({}))
      assert.equal("[]", json.encode(json.array()))
      assert.equal('{"x":[]}', json.encode({x = json.array()}))
      assert.equal('{"1":"x"}', json.encode(json.object{"x"}))
      assert.equal("[1,null,3]", json.encode({1, nil, 3}))
      assert.equal("null", json.encode(json.null))
      assert.equal("null", json.encode(nil))
      assert.equal("[true,false]", json.encode({true, false}))
      assert.equal('{"1.5":true}', json.encode({[1.5] = true}))
    end)

    it("writes object keys in lua_next order, as lua-cjson", function()
      local t = {}
      for i = 1, 50 do t["k" .. i] = i end
      assert.equal(cjson.encode(t), json.encode(t))
    end)

    it("writes integers exactly, other numbers as the shortest text that reads back", function()
      assert.equal("9007199254740991", json.encode(2^53 - 1))
      assert.equal("-123456789012345", json.encode(-123456789012345))
      assert.equal("9007199254740992", json.encode(2^53))
      assert.equal("100000000000000000000", json.encode(1e20))
      assert.equal("1e+21", json.encode(1e21))
      assert.equal("-0", json.encode(-0.0))
      assert.equal("0.1", json.encode(0.1))
      assert.equal("1.5", json.encode(1.5))
      assert.equal("0.3333333333333333", json.encode(1 / 3))
      assert.equal("1.5e-07", json.encode(1.5e-7))
      for _, x in ipairs{1 / 3, 2 / 3, 0.1 + 0.2, 1e-300, 123456.789e200, -2^-1074} do
        assert.equal(x, json.decode(json.encode(x)))
      end
    end)

    it("escapes as JSON.stringify does: quote, backslash, control characters; not '/'", function()
      assert.equal('"a/b"', json.encode("a/b"))
      assert.equal([["\"\\\b\f\n\r\t\u0001\u001f"]], json.encode('"\\\b\f\n\r\t\1\31'))
      assert.equal('"\127é😀"', json.encode("\127é😀"))
    end)

    it("returns nil and a message for what JSON cannot carry, never raising", function()
      fails("json.encode: Cannot serialise function: type not supported", json.encode({f = print}))
      fails("json.encode: Cannot serialise thread: type not supported", json.encode(coroutine.create(print)))
      fails("json.encode: Cannot serialise number: must not be NaN or Inf", json.encode({0 / 0}))
      fails("json.encode: Cannot serialise number: must not be NaN or Inf", json.encode(math.huge))
      fails("json.encode: Cannot serialise table: excessively sparse array", json.encode({[1] = 1, [20] = 2}))
      fails("json.encode: Cannot serialise table: table key must be a number or string", json.encode({[true] = 1}))
      fails("json.encode: invalid UTF-8 in a string at byte 3", json.encode({"ab\255"}))
      fails("json.encode: invalid UTF-8 in a string at byte 1", json.encode({["\237\160\128"] = 1}))  -- a surrogate
      fails("json.encode: invalid UTF-8 in a string at byte 21", json.encode(("x"):rep(20) .. "\255"))
      fails("json.encode: invalid UTF-8 in a string at byte 34", json.encode(("é\n"):rep(11) .. "\255"))
      local t = {} t[1] = t
      fails("json.encode: excessive nesting (more than 1000 levels: a cycle?)", json.encode(t))
    end)

    it("writes 1000 levels, not 1001", function()
      local t = {}
      for _ = 2, 1000 do t = {t} end
      assert.equal(("["):rep(999) .. "{}" .. ("]"):rep(999), json.encode(t))
      fails("json.encode: excessive nesting (more than 1000 levels: a cycle?)", json.encode({t}))
    end)
  end)

  describe("decode", function()
    it("reads values; arrays carry the mark, [] and {} round-trip", function()
      local v = assert(json.decode('{"a":[],"b":{},"c":[1,[ ],"[]"],"d":null,"e":true,"f":false}'))
      assert.is_true(json.is_array(v.a))
      assert.is_false(json.is_array(v.b))
      assert.is_true(json.is_array(v.c))
      assert.equal(json.null, v.d)
      assert.same({true, false}, {v.e, v.f})
      assert.equal('{"a":[]}', json.encode({a = v.a}))
      assert.equal('{"b":{}}', json.encode({b = v.b}))
      assert.equal('[1,[],"[]"]', json.encode(v.c))
      assert.is_false(json.is_array("[]"))
      assert.is_false(json.is_array(io.stdout))
    end)

    it("reads numbers exactly, -0 included", function()
      assert.equal(1500, json.decode("1.5e3"))
      assert.equal(0.1, json.decode("0.1"))
      assert.equal(9007199254740993, json.decode("9007199254740993"))
      assert.equal(1.2345678901234568e+29, json.decode("123456789012345678901234567890"))
      assert.equal(-math.huge, 1 / json.decode("-0"))
      assert.equal(5e-324, json.decode("4.9406564584124654e-324"))
      assert.equal(0, json.decode("0e999"))
    end)

    it("reads escapes and surrogate pairs; duplicate keys: the last wins", function()
      assert.equal('x"\\/\b\f\n\r\té😀\0', json.decode([["x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\u0000"]]))
      local t = {}
      for i = 1, 40 do t[#t + 1] = ('"k%d":%d'):format(i % 7, i) end
      local v = json.decode("{" .. table.concat(t, ",") .. "}")
      assert.equal(35, v.k0)
      assert.equal(36, v.k1)
    end)

    it("reads large containers (built in chunks) whole", function()
      local a, o = {}, {}
      for i = 1, 1000 do a[i] = i; o["k" .. i] = {i} end
      assert.same(a, json.decode(json.encode(a)))
      assert.same(o, json.decode(json.encode(o)))
    end)

    it("returns nil and a message naming the character (1-based byte) and what was expected", function()
      refused{
        {"{bad", "Expected object key string but found invalid token at character 2"},
        {"", "Expected value but found end of text at character 1"},
        {"[1,]", "Expected value but found ']' at character 4"},
        {"[1 2]", "Expected comma or array end but found number at character 4"},
        {'{"a" 1}', "Expected colon but found number at character 6"},
        {'{"a":1,}', "Expected object key string but found '}' at character 8"},
        {"[1] x", "Expected the end but found invalid token at character 5"},
        {"1\0", "Expected the end but found invalid token at character 2"},
        {"nul", "Expected value but found invalid token at character 1"},
      }
      fails("json.decode: string expected, got number", json.decode(5))
      fails("json.decode: string expected, got nil", json.decode())
    end)

    it("refuses what RFC 8259 refuses: NaN, Infinity, hex, bad numbers, raw control characters", function()
      refused{
        {"NaN", "Expected value but found invalid token at character 1"},
        {"-Infinity", "Expected value but found invalid number at character 1"},
        {"0x10", "Expected the end but found invalid token at character 2"},
        {"[1e999]", "Expected value but found number out of range at character 2"},
        {"01", "Expected value but found invalid number (a leading zero) at character 1"},
        {"[1.]", "Expected value but found invalid number at character 2"},
        {"-", "Expected value but found invalid number at character 1"},
        {"1e+", "Expected value but found invalid number at character 1"},
        {".5", "Expected value but found invalid token at character 1"},
        {'"a\nb"', "Expected string character but found control character 0x0A (unescaped) at character 3"},
        {'"abc', "Expected closing quote but found end of text at character 5"},
        {'"' .. ("x"):rep(40), "Expected closing quote but found end of text at character 42"},
        {'"' .. ("\\n"):rep(10) .. "\t", "Expected string character but found control character 0x09 (unescaped) at character 22"},
        {[["\x"]], "Expected escape sequence but found invalid escape at character 2"},
        {[["\u12"]], "Expected 4 hex digits after \\u but found number at character 2"},
      }
    end)

    it("refuses invalid UTF-8 and lone surrogates", function()
      refused{
        {'"a\255"', "Expected UTF-8 text but found invalid byte 0xFF at character 3"},
        {'"\192\128"', "Expected UTF-8 text but found invalid byte 0xC0 at character 2"},
        {'"\237\160\128"', "Expected UTF-8 text but found invalid byte 0xED at character 2"},
        {[["\ud800"]], "Expected a surrogate pair but found lone surrogate \\uD800 at character 2"},
        {[["\ud83d\u0041"]], "Expected a surrogate pair but found lone surrogate \\uD83D at character 2"},
        {[["\ude00"]], "Expected a surrogate pair but found lone surrogate \\uDE00 at character 2"},
      }
    end)

    it("reads 1000 levels, not 1001", function()
      assert.is_table(json.decode(("["):rep(1000) .. ("]"):rep(1000)))
      refused{
        {("["):rep(1001) .. ("]"):rep(1001), "Found too many nested data structures (1001) at character 1001"},
        {('{"a":'):rep(1000) .. "[0]" .. ("}"):rep(1000), "Found too many nested data structures (1001) at character 5001"},
      }
    end)
  end)

  describe("marks", function()
    it("array and object mark a table (a new one without argument)", function()
      local t = {}
      assert.equal(t, json.array(t))
      assert.is_true(json.is_array(t))
      assert.equal(t, json.object(t))
      assert.is_false(json.is_array(t))
      assert.is_true(json.is_array(json.array()))
      assert.has_error(function() json.array(5) end, "bad argument #1 to 'array' (table expected, got number)")
      assert.has_error(function() json.object("x") end, "bad argument #1 to 'object' (table expected, got string)")
    end)

    it("name themselves in their argument errors whatever the call site (pcall, an alias)", function()
      assert.same({false, "bad argument #1 to 'array' (table expected, got userdata)"}, {pcall(json.array, io.stdout)})
      assert.same({false, "bad argument #1 to 'object' (table expected, got boolean)"}, {pcall(json.object, true)})
      assert.same({false, "bad argument #1 to 'new' (table expected, got string)"}, {pcall(json.new, "x")})
      local array = json.array
      assert.has_error(function() array(1) end, "bad argument #1 to 'array' (table expected, got number)")
    end)
  end)

  describe("new", function()
    it("gives a codec with its own depth limit and sparse-array rule, sharing the marks", function()
      local j = json.new{max_depth = 2, sparse_arrays = "object"}
      local sparse = j.encode({[1] = 1, [20] = 2})
      assert.matches("^{", sparse)
      assert.same({["1"] = 1, ["20"] = 2}, json.decode(sparse))
      fails("json.encode: excessive nesting (more than 2 levels: a cycle?)", j.encode({{{1}}}))
      fails("json.decode: Found too many nested data structures (3) at character 3", j.decode("[[[1]]]"))
      assert.is_true(json.is_array(j.decode("[]")))
      assert.is_true(j.is_array(json.array()))
      assert.equal("[]", j.encode(json.array()))
      assert.equal(json.null, j.null)
    end)

    it("refuses unknown or bad options", function()
      assert.has_error(function() json.new{foo = 1} end, "json.new: unknown option 'foo'")
      assert.has_error(function() json.new{max_depth = 0} end, "json.new: option 'max_depth' must be an integer from 1 to 1000")
      assert.has_error(function() json.new{max_depth = 1001} end, "json.new: option 'max_depth' must be an integer from 1 to 1000")
      assert.has_error(function() json.new{sparse_arrays = true} end,
                       'json.new: option \'sparse_arrays\' must be "error" or "object"')
      assert.has_error(function() json.new(5) end, "bad argument #1 to 'new' (table expected, got number)")
    end)
  end)

  it("is there in coru.work's pooled states (without the runtime)", function()
    local coru = require "coru"
    local r = coru.run(function()
      return coru.work(function(s)
        local j = require "coru.json"
        local v = assert(j.decode(s))
        return assert(j.encode({n = v[1] + 1, a = j.is_array(v)}))
      end, "[41]")
    end)
    assert.same({n = 42, a = true}, json.decode(r))
  end)
end)
