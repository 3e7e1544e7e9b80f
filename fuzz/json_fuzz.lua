-- The JSON differential fuzzer: coru.json against lua-cjson (the oracle),
-- on random values and on random and mutated texts. Run by `make fuzz`
-- (fuzz-json; see fuzz/README.md):
--
--   build/coru fuzz/json_fuzz.lua [seed [seconds]]
--
-- A finding is a crash, a sanitizer report, or a disagreement:
--   * a value coru.json encodes must decode, by coru.json and by lua-cjson,
--     to the same value; a plain value (no marks, integers below 1e14, no
--     '/' or DEL in strings, no float) must encode to lua-cjson's text;
--     every number must read back exactly;
--   * a value lua-cjson encodes and coru.json refuses must be one of the
--     documented refusals (invalid UTF-8);
--   * a text both decode must give the same value; one that only lua-cjson
--     decodes must be one of coru.json's documented strictnesses (numbers,
--     raw control characters, invalid UTF-8; lua-cjson also ends a text at
--     its first NUL byte); none only coru.json decodes.
local json = require "coru.json"
local cjson = require("cjson").new()
cjson.decode_invalid_numbers(false)
cjson.encode_invalid_numbers(false)

local seed = tonumber(arg and arg[1]) or os.time()
local seconds = tonumber(arg and arg[2]) or 30
io.stderr:write(("json fuzz: seed %d, %d s (replay: make fuzz-json FUZZ_SEED=%d FUZZ_JSON_TIME=%d)\n")
  :format(seed, seconds, seed, seconds))
math.randomseed(seed)
local random, char, concat = math.random, string.char, table.concat

local function finding(what, subject, a, b)
  io.stderr:write(("json fuzz: FINDING (seed %d): %s\n  input: %s\n  coru.json: %s\n  lua-cjson: %s\n")
    :format(seed, what, subject, tostring(a), tostring(b)))
  os.exit(1)
end

-- ------------------------------------------------------------ values

local PIECES = {"a", "é", "✓", "😀", "\"", "\\", "/", "\n", "\t", "\0", "\1", "\31", "\127", " ", "key", "0"}
local BAD = {"\255", "\192\128", "\237\160\128", "\244\144\128\128", "\226\130"}

local function rstring(plain)
  local t = {}
  for i = 1, random(0, random(2) == 1 and 6 or 40) do t[i] = PIECES[random(#PIECES)] end
  if plain then
    local s = concat(t):gsub("[/\127]", "x")
    return s
  end
  if random(40) == 1 then t[#t + 1] = BAD[random(#BAD)] end
  return concat(t)
end

local function rnumber(plain)
  local k = random(plain and 3 or 8)
  if k == 1 then return random(-1000, 1000) end
  if k == 2 then return random(0, 2^31) * (random(2) == 1 and 1 or -1) end
  if k == 3 then return random(0, 99999) * 1e9 end
  if k == 4 then return (random() - 0.5) * 10 ^ random(-30, 30) end
  if k == 5 then return ({0.1, 1 / 3, -0.0, 2^53, 2^53 + 2, 1e21, 5e-324, 1.7976931348623157e308, 2^63})[random(9)] end
  if k == 6 then return random(0, 2^53) * 1024 end
  if k == 7 then return random() end
  return ({0 / 0, math.huge, -math.huge})[random(3)]   -- refused by both
end

local function rvalue(depth, plain)
  local k = random(depth > 4 and 6 or 9)
  if k == 1 then return rstring(plain) end
  if k == 2 then return rnumber(plain) end
  if k == 3 then return random(2) == 1 end
  if k == 4 then return json.null end
  if k == 5 or k == 6 then return rstring(plain) end
  local t = {}
  if k == 7 then                                  -- an array, maybe with holes
    for i = 1, random(0, 8) do t[i] = rvalue(depth + 1, plain) end
    if not plain and random(6) == 1 then t[random(1, 12)] = nil; t[random(1, 30)] = 1 end
    if not plain and random(4) == 1 then json.array(t) end
  else                                            -- an object
    for _ = 1, random(0, 6) do
      local key = random(5) == 1 and random(1, 3) or rstring(plain)
      t[key] = rvalue(depth + 1, plain)
    end
    if not plain and random(4) == 1 then json.object(t) end
  end
  return t
end

-- deep equality of decoded values (marks aside)
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function each_number(v, f)
  if type(v) == "number" then f(v)
  elseif type(v) == "table" then for _, x in pairs(v) do each_number(x, f) end end
end

local function check_value(plain)
  local v = rvalue(0, plain)
  local text, err = json.encode(v)
  local cok, ctext = pcall(cjson.encode, v)
  if not text then
    if cok and not err:find("invalid UTF-8", 1, true) and not err:find("excessively sparse", 1, true) then
      finding("coru.json refuses what lua-cjson encodes", ("%q"):format(ctext), err, ctext)
    end
    return
  end
  local a, aerr = json.decode(text)
  local bok, b = pcall(cjson.decode, text)
  if aerr or not bok then finding("coru.json's text does not decode", ("%q"):format(text), aerr, b) end
  if not same(a, b) then finding("the decoders disagree on coru.json's text", ("%q"):format(text), json.encode(a), text) end
  if plain and cok and ctext ~= text then finding("a plain value encodes differently", ("%q"):format(ctext), text, ctext) end
  each_number(v, function(x)
    local back = json.decode(assert(json.encode(x)))
    if back ~= x or 1 / back ~= 1 / x then finding("a number does not read back", ("%.17g"):format(x), back, x) end
  end)
end

-- ------------------------------------------------------------ texts

local ALPHA = {"{", "}", "[", "]", ",", ":", "\"", "\\", "u", "d8", "00", "dc", "e", "E", "-", "+", ".", "0", "1",
               "9", " ", "\n", "true", "false", "null", "NaN", "\255", "é", "\1", "x", "1e400", "01", "\"a\""}

local function rtext()
  if random(3) == 1 then
    local t = {}
    for i = 1, random(1, 20) do t[i] = ALPHA[random(#ALPHA)] end
    return concat(t)
  end
  local ok, s = pcall(cjson.encode, rvalue(0, false))
  s = ok and s or "[]"
  for _ = 1, random(1, 3) do
    local i = random(1, #s + 1)
    local m = random(4)
    if m == 1 then s = s:sub(1, i - 1) .. char(random(0, 255)) .. s:sub(i + 1)
    elseif m == 2 then s = s:sub(1, i - 1) .. ALPHA[random(#ALPHA)] .. s:sub(i)
    elseif m == 3 then s = s:sub(1, i - 1) .. s:sub(i + random(1, 3))
    else s = s:sub(1, i) end
  end
  return s
end

-- coru.json's documented strictness where lua-cjson is lenient
local STRICT = {"invalid number", "control character", "UTF%-8", "out of range"}

local function check_text(s)
  local a, err = json.decode(s)
  local bok, b = pcall(cjson.decode, s)
  if err == nil and not bok then finding("only coru.json decodes", ("%q"):format(s), json.encode(a), b) end
  if err and bok then
    if s:find("%z") then return end   -- lua-cjson ends the text at a NUL byte
    for _, p in ipairs(STRICT) do if err:find(p) then return end end
    finding("only lua-cjson decodes", ("%q"):format(s), err, "ok")
  end
  if err == nil and not same(a, b) then finding("the decoders disagree", ("%q"):format(s), json.encode(a), "another value") end
  if err and not err:find("^json%.decode: .* at character %d+$") and not err:find("^json%.decode: Found too many") then
    finding("a decode error without its position", ("%q"):format(s), err, "")
  end
end

local deadline, values, texts = os.time() + seconds, 0, 0
repeat
  for _ = 1, 200 do
    check_value(random(3) == 1)
    check_text(rtext())
    values, texts = values + 1, texts + 1
  end
until os.time() >= deadline
io.stderr:write(("json fuzz: %d values, %d texts, no finding (seed %d)\n"):format(values, texts, seed))
