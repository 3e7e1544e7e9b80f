-- The CPU-heavy W2 handler (issue 14): the W2 protocol (one task per
-- connection, read_line, coru.json, write) with protocol logic a user would
-- write in Lua between the native calls: a loop of string work over the
-- request's text (a checksum and counts, byte by byte) before the reply.
-- With the JIT on, the handler's loop is one chain of compiled traces
-- stitched across read_line and write; JIT=off runs it interpreted.
--   JIT=off       jit.off() before serving
--   JITV=<file>   jit.v log (the traces, where they stitch, aborts) to
--                 <file>, and every second <file>.exits: the trace exits so
--                 far by trace/exit (a steady state adds none)
--   PASSES=<n>    passes of string work per request (default 8)
--   KIND=plain    the plain W2 handler instead (bench/coru/rpc_server.lua's)
--   KIND=inline   the string work written out in the handler's body (below)
-- JSON: coru.json's decode returns nil, msg for invalid input instead of
-- raising. A pcall around a C function (pcall(cjson.decode, line)) ends a
-- LuaJIT 2.1 trace, so the code after it would run interpreted until the
-- next loop; a call of a C function that returns is stitched over.
local json = require "coru.json"
local encode, sdecode = json.encode, json.decode
local byte, band, bxor = string.byte, bit.band, bit.bxor
local type = type

if os.getenv("JIT") == "off" then jit.off() end
local jitv = os.getenv("JITV")
if jitv and jitv ~= "" then
  require("jit.v").start(jitv)
  -- Exits that reach the exit handler (a guard without a linked side
  -- trace yet), by trace/exit: a trace left through an exit on every
  -- request would show here. (One handler per event: jit.v has "trace".)
  local exits, per = 0, {}
  jit.attach(function(tr, ex) exits = exits + 1; per[tr .. "/" .. ex] = (per[tr .. "/" .. ex] or 0) + 1 end, "texit")
  local t = coru.new_timer()
  t:start(1000, 1000, function()
    local keys = {}
    for k in pairs(per) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return per[a] > per[b] end)
    local f = io.open(jitv .. ".exits", "w")
    f:write(("exits %d; by trace/exit:"):format(exits))
    for i = 1, math.min(#keys, 12) do f:write(" ", keys[i], "=", per[keys[i]]) end
    f:write("\n")
    f:close()
  end)
  t:unref()
end
local HOST = os.getenv("HOST") or "127.0.0.1"
local PORT = tonumber(os.getenv("PORT") or "7001")
local PASSES = tonumber(os.getenv("PASSES") or "8")
local PLAIN = os.getenv("KIND") == "plain"
local ERROR_REPLY = '{"name":"error","req_id":null}\n'

-- FNV-1a over the text, lines and words counted, PASSES times.
local function digest(s)
  local h, lines, words, inword = 2166136261, 0, 0, false
  for _ = 1, PASSES do
    for i = 1, #s do
      local c = byte(s, i)
      h = band(bxor(h, c) * 16777619, 0xffffffff)
      if c == 10 then lines = lines + 1 end
      local sp = c == 32 or c == 10 or c == 9
      if not sp and not inword then words = words + 1 end
      inword = not sp
    end
  end
  return h, lines, words
end

local function serve_loop(sock)
  sock:nodelay(true)
  while true do
    local line = sock:read_line()
    if not line then break end
    local msg = sdecode(line)          -- nil for invalid JSON (see below)
    local reply
    if type(msg) == "table" and msg.name == "patch" then
      if PLAIN then
        reply = encode({ name = "ack", req_id = msg.req_id }) .. "\n"
      else
        local h, lines, words = digest(type(msg.patch) == "string" and msg.patch or "")
        reply = encode({ name = "ack", req_id = msg.req_id, hash = h, lines = lines, words = words }) .. "\n"
      end
    else
      reply = ERROR_REPLY
    end
    if not sock:write(reply) then break end
  end
  sock:close()
end

-- KIND=inline: the string work written out in the handler's own body (no
-- inner loop, no call: the code a protocol handler has between its reads
-- and writes), 32 * PASSES mixing steps over the text. LuaJIT compiles it
-- only if a trace goes on after read_line.
local function inline_serve()
  local src = { "local byte, band, bxor, sdecode, encode, type, ERROR_REPLY = ...",
    "return function(sock)", "sock:nodelay(true)", "while true do",
    "local line = sock:read_line()", "if not line then break end",
    "local msg = sdecode(line)", "local reply",
    "if type(msg) == 'table' and msg.name == 'patch' and type(msg.patch) == 'string' then",
    "local t = msg.patch local n = #t local h = 2166136261" }
  for i = 1, 32 * PASSES do
    src[#src + 1] = ("h = band(bxor(h, byte(t, %d %% n + 1)) * 16777619, 0xffffffff)"):format(i)
  end
  src[#src + 1] = "reply = encode({ name = 'ack', req_id = msg.req_id, hash = h }) .. '\\n'"
  src[#src + 1] = "else reply = ERROR_REPLY end"
  src[#src + 1] = "if not sock:write(reply) then break end"
  src[#src + 1] = "end sock:close() end"
  return assert(loadstring(table.concat(src, "\n"), "=inline_handler"))(byte, band, bxor, sdecode, encode, type, ERROR_REPLY)
end

local serve = os.getenv("KIND") == "inline" and inline_serve() or serve_loop

assert(coru.tcp.listen(HOST, PORT, serve, { backlog = 1024 }))
io.stdout:write("READY port=", PORT, "\n")
io.stdout:flush()
