-- The API fuzzer's coru.json and coru.jsonl calls (loaded by api_fuzz.lua).
-- Values JSON cannot carry (cycles, nesting past the limits, functions,
-- userdata and threads as values and keys, NaN/inf, invalid UTF-8,
-- excessively sparse tables, metatables whose metamethods raise) and texts
-- of every kind (mutated encodings, garbage, deep brackets) go to
-- encode/decode/new/array/object/is_array of coru.json and of codecs with
-- random options, and to jsonl connections over a unix socket pair fed
-- garbage lines. Beyond "no crash", every call is held to its contract
-- (docs/json.md): encode and decode return a value or nil and a message
-- with their prefix and never raise; what encode writes decodes again;
-- what decode reads encodes again; new, array and object raise only their
-- documented errors. A breach is a finding: reported, and the process
-- exits with status 3.
local coru = require "coru"
local json = require "coru.json"
local jsonl = require "coru.jsonl"

return function(env)
  local random, value, report, track = env.random, env.value, env.report, env.track
  local stats = {encoded = 0, decoded = 0, sessions = 0, lines = 0}
  env.stats = stats

  local function finding(what, detail)
    report(("api fuzz: FINDING (seed %d): coru.json %s: %s\n"):format(env.seed, what, tostring(detail)))
    os.exit(3)
  end

  local function raiser() error("fuzz: raised on purpose", 0) end
  local metatables = {
    {__index = raiser, __newindex = raiser, __len = raiser, __pairs = raiser},
    {__index = function(_, k) return k end, __pairs = function(t) return next, t, nil end},
    {__index = {1, 2, 3}, __len = function() return 1e9 end},
    {__gc = true, __mode = "k"},
  }
  local BAD_UTF8 = {"\255", "\192\128", "\237\160\128", "\244\144\128\128", "\226\130", "\128", "\248\136\128\128\128"}
  local NUMBERS = {0 / 0, 1 / 0, -1 / 0, -0.0, 2^53, 2^53 + 2, 2^63, -2^63, 2^64, 1e21, 1e308, 5e-324,
                   -1e308, 0.1, 1 / 3, 2^31, -2^31 - 1, 9007199254740993}
  local WORDS = {"", "a", "é", "😀", "\"", "\\", "/", "\0", "x\0y", "\1\31", "\127", "\n", "key", "1", "-1"}
  local odd = {print, coroutine.create(print), newproxy(true), io.stdout, json.null, coru.CALLBACK}

  local function jstring()
    local t = {}
    for i = 1, random(0, 6) do t[i] = WORDS[random(#WORDS)] end
    if random(8) == 1 then table.insert(t, random(#t + 1), BAD_UTF8[random(#BAD_UTF8)]) end
    if random(60) == 1 then t[#t + 1] = ("\0é\"x"):rep(random(1000, 20000)) end
    return table.concat(t)
  end

  local function jkey()
    local k = random(12)
    if k <= 5 then return jstring() end
    if k <= 8 then return random(-2, 12) end
    if k == 9 then return NUMBERS[random(4, #NUMBERS)] end   -- not NaN: no key
    if k == 10 then return random(2) == 1 end
    return odd[random(#odd)]
  end

  local jvalue
  local function nest(depth, inner)   -- past max_depth on either side
    local v = inner
    for _ = 1, depth do v = random(2) == 1 and {v} or {k = v} end
    return v
  end

  local function jtable(depth)
    local k = random(10)
    local t = {}
    if k <= 4 then                                  -- an array, maybe holed or sparse
      for i = 1, random(0, 6) do t[i] = jvalue(depth + 1) end
      if random(5) == 1 then t[random(1, 40)] = jvalue(depth + 1) end
      if random(8) == 1 then t[random(100, 1e6)] = true end
    elseif k <= 8 then                              -- an object, any keys
      for _ = 1, random(0, 5) do t[jkey()] = jvalue(depth + 1) end
    elseif k == 9 then                              -- a cycle
      t.self, t[1] = t, {t}
    else
      return nest(random(190, 1100), jvalue(depth + 1))
    end
    local m = random(10)
    if m == 1 then json.array(t) elseif m == 2 then json.object(t)
    elseif m == 3 then setmetatable(t, metatables[random(#metatables)]) end
    return t
  end

  function jvalue(depth)
    depth = depth or 0
    local k = random(depth > 3 and 5 or 8)
    if k == 1 then return jstring() end
    if k == 2 then return random(3) == 1 and NUMBERS[random(#NUMBERS)] or random(-1e6, 1e6) end
    if k == 3 then return ({true, false, json.null})[random(3)] end
    if k == 4 then return random(4) == 1 and odd[random(#odd)] or jstring() end
    if k == 5 then return random(2) == 1 and value() or random() end
    return jtable(depth)
  end

  -- texts: encodings mutated, garbage, deep brackets
  local PIECES = {"[", "]", "{", "}", ",", ":", '"', "\\u", "\\uD800", "\\uDC00", "null", "true", "1e999",
                  "-0", "01", "1.", ".5", "\0", " ", "\255", "NaN", "\"a\"", "0x10", "\\", "é"}
  local function jtext(codec)
    local k = random(6)
    if k == 1 then
      local n = random(190, 1100)
      local open = random(2) == 1 and "[" or '{"a":'
      return open:rep(n) .. "1" .. (open == "[" and "]" or "}"):rep(random(0, n))
    end
    if k == 2 then
      local t = {}
      for i = 1, random(0, 30) do t[i] = random(3) == 1 and string.char(random(0, 255)) or PIECES[random(#PIECES)] end
      return table.concat(t)
    end
    local s = codec.encode(jvalue()) or "[1,{\"a\":[null,\"x\\u0041\"]}]"
    for _ = 1, (k == 3 and 0 or random(1, 4)) do   -- flip, cut, insert
      local at = random(0, #s)
      local op = random(3)
      if op == 1 then s = s:sub(1, at) .. PIECES[random(#PIECES)] .. s:sub(at + 1)
      elseif op == 2 then s = s:sub(1, at)
      else s = s:sub(1, at) .. string.char(random(0, 255)) .. s:sub(at + 2) end
    end
    return s
  end

  -- ---------------------------------------------------------- the contract
  local codecs = {json}
  local function prefixed(msg, prefix) return type(msg) == "string" and msg:sub(1, #prefix) == prefix end

  local function encode(codec, v)
    local ok, text, msg = pcall(codec.encode, v)
    if not ok then finding("encode raised", text) end
    if text == nil then
      if not prefixed(msg, "json.encode: ") then finding("encode failed without its message", msg) end
    elseif type(text) ~= "string" then finding("encode returned a", type(text))
    else
      stats.encoded = stats.encoded + 1
      local back, err = codec.decode(text)
      if back == nil then finding("decode refused encode's text", err .. " in " .. text:sub(1, 200)) end
    end
  end

  local function decode(codec, s)
    local ok, v, msg = pcall(codec.decode, s)
    if not ok then finding("decode raised", v) end
    if v == nil then
      if not prefixed(msg, "json.decode: ") then finding("decode failed without its message", msg) end
    else
      stats.decoded = stats.decoded + 1
      local text, err = codec.encode(v)
      if text == nil then finding("encode refused decode's value", err .. " from " .. s:sub(1, 200)) end
    end
  end

  local function options()
    local k = random(8)
    if k == 1 then return value() end
    if k == 2 then return setmetatable({max_depth = 3}, metatables[random(#metatables)]) end
    local o = {}
    if random(2) == 1 then
      o.max_depth = ({random(1, 1000), random(-5, 1010), 1.5, "10", 0 / 0, 1 / 0, 2^53, print})[random(8)]
    end
    if random(2) == 1 then o.sparse_arrays = ({"error", "object", "x", true, json.null})[random(5)] end
    if random(10) == 1 then o[jkey()] = 1 end
    return o
  end

  local function new()
    local ok, c = pcall(json.new, options())
    if ok then
      if type(c) ~= "table" or type(c.encode) ~= "function" or type(c.decode) ~= "function" then
        finding("new returned", c)
      end
      codecs[random(1, math.min(#codecs + 1, 8))] = c
    elseif not (prefixed(c, "json.new: ") or prefixed(c, "bad argument #1 to 'new' (table expected, got ")) then
      finding("new raised an undocumented error", c)
    end
  end

  local function mark()
    local which = ({"array", "object"})[random(2)]
    local x = random(2) == 1 and jvalue() or value()
    local ok, r = pcall(json[which], x)
    if ok then
      if type(r) ~= "table" or (x ~= nil and r ~= x) then finding(which .. " returned", r) end
      if (which == "array") ~= json.is_array(r) then finding(which .. " and is_array disagree", r) end
    elseif not prefixed(r, "bad argument #1 to '" .. which .. "' (table expected, got ") then
      finding(which .. " raised an undocumented error", r)
    end
    if type(json.is_array(x)) ~= "boolean" then finding("is_array returned", json.is_array(x)) end
  end

  local function jsonl_codec()   -- never raises on decode; encode raises a message
    local ok, v = pcall(jsonl.decode, random(4) == 1 and value() or jtext(json))
    if not ok then finding("jsonl.decode raised", v) end
    ok, v = pcall(jsonl.encode, jvalue())
    if not ok and type(v) ~= "string" then finding("jsonl.encode raised a", type(v)) end
  end

  -- ---------------------------------------------------------- jsonl over a socket pair
  local IDS = {1, 2, 3, -1, 0, 1.5, 2^53, 2^63, "1", true, json.null}
  local function line()
    local k = random(8)
    if k == 1 then return (jtext(json):gsub("\n", " ")) end
    if k == 2 then return ("x"):rep(random(100, 3000)) end
    local msg = {name = ({"ping", "pong", "disconnect", "ack", "error", "x", 7})[random(7)]}
    if random(2) == 1 then msg.req_id = IDS[random(#IDS)] end
    if random(2) == 1 then msg.res_id = IDS[random(#IDS)] end
    if random(3) == 1 then msg.reason = jstring() end
    if random(3) == 1 then msg.data = jvalue(2) end
    return json.encode(msg) or "[]"
  end

  local function session()
    stats.sessions = stats.sessions + 1
    local path = ("jsonl_%d"):format(stats.sessions)
    -- the server's handler keeps its stream open until the session ends
    -- (or for 5 s: a cancelled session hangs up late)
    local ch, hold = coru.channel(1), coru.channel(0)
    local srv = coru.pipe.listen(path, function(s) ch:send(s) coru.timeout(5000, hold.recv, hold) end)
    if not srv then return end
    local raw = coru.pipe.connect(path)
    local peer = raw and coru.timeout(1000, ch.recv, ch)
    srv:close()
    os.remove(path)
    if not peer then if raw then raw:close() end return end
    local conn = jsonl.wrap(peer, {
      max_line = random(2) == 1 and random(1, 400) or nil,
      bad_input = random(2) == 1 and "close" or "drop",
      request_timeout = random(1, 30), max_queue = random(1, 10),
      heartbeat = random(3) == 1 and random(1, 20) or nil,
      idle_timeout = random(3) == 1 and random(1, 40) or nil,
    })
    conn:on_bad_input(function() if random(10) == 1 then error("fuzz: raised on purpose") end end)
    conn:on("*", function(m, c)
      if random(4) == 1 then pcall(c.send, c, {name = "x", data = jvalue(2)}) end
      if random(5) == 1 then coru.sleep(random(0, 2)) end
      return random(2) == 1 and {name = "ack", data = jvalue(2)} or nil
    end, ({nil, {concurrent = true}, {immediate = true}})[random(3)])
    local other = random(2) == 1 and jsonl.wrap(raw, {request_timeout = random(1, 20)})
    for _ = 1, random(1, 20) do
      local k = random(4)
      if other and k == 1 then pcall(other.request, other, {name = "x", data = jvalue(2)}, random(1, 10))
      elseif other and k == 2 then pcall(other.send, other, jvalue())
      elseif k == 3 then pcall(conn.request, conn, {name = "x"}, random(1, 10))
      elseif not other then raw:write(line() .. "\n"); stats.lines = stats.lines + 1
      else pcall(conn.send, conn, jvalue()) end
      if random(4) == 1 then coru.sleep(random(0, 2)) end
    end
    if random(2) == 1 then conn:close(random(2) == 1 and "fuzz" or nil) end
    if random(2) == 1 then coru.timeout(random(1, 20), conn.wait, conn) end
    conn:close()
    if other then other:close() else raw:close() end
    hold:close()
  end

  -- ---------------------------------------------------------- one call
  return function()
    local codec = codecs[random(#codecs)]
    local k = random(20)
    if k <= 6 then return function() encode(codec, jvalue()) end end
    if k <= 12 then return function() decode(codec, random(8) == 1 and value() or jtext(codec)) end end
    if k <= 14 then return new end
    if k <= 16 then return mark end
    if k <= 18 then return jsonl_codec end
    return function() track(coru.spawn(session)) end
  end
end
