-- floo_bot.lua: a bot that joins a Floobits workspace, follows every
-- buffer, highlights every TODO line, and posts a chat message when
-- someone adds a TODO. docs/floo.md is the guide.
--
--   coru examples/floo_bot.lua HOST PORT OWNER WORKSPACE USERNAME SECRET [CA_FILE]
--
-- With CA_FILE the connection is TLS, verified against that CA; without it,
-- plain TCP (colab's 3149, or coru's own server).
local coru = require "coru"
local floo = require "coru.floo"

local host, port, owner, workspace, username, secret, ca = ...
if not secret then
  io.stderr:write("usage: floo_bot.lua HOST PORT OWNER WORKSPACE USERNAME SECRET [CA_FILE]\n")
  os.exit(2)
end

-- The UTF-16 ranges of the lines containing TODO.
local function todo_ranges(text)
  local ranges, units = {}, 0
  for line, nl in text:gmatch("([^\n]*)(\n?)") do
    local len = floo.utf16_len(line)
    if line:find("TODO", 1, true) then ranges[#ranges + 1] = {units, units + len} end
    units = units + len + #nl
    if nl == "" then break end
  end
  return ranges
end

local function count_todos(text)
  local _, n = (text or ""):gsub("TODO", "")
  return n
end

local function mark(session, id, text)
  local r = todo_ranges(text)
  if #r > 0 then
    local ok, err = session:highlight(id, r)
    if not ok then print("highlight failed: " .. err) end
  end
end

local session, err = floo.connect{
  host = host, port = tonumber(port), tls = ca and {ca = ca} or false,
  owner = owner, workspace = workspace, username = username, secret = secret,
  client = "coru floo_bot",
  on = {
    patch = function(ev, s)
      if ev.text == nil then return end
      if count_todos(ev.text) > count_todos(ev.old) then
        s:msg(("%s added a TODO to %s"):format(ev.username or "someone", ev.path))
        mark(s, ev.id, ev.text)
      end
    end,
    create_buf = function(ev, s)
      if ev.text and count_todos(ev.text) > 0 then
        s:msg(("%s created %s with a TODO"):format(ev.username or "someone", ev.path))
        mark(s, ev.id, ev.text)
      end
    end,
    resync = function(ev) print(("resynced %s: %s"):format(ev.path, ev.reason)) end,
    disconnect = function(ev) print("disconnected: " .. ev.reason .. (ev.reconnecting and " (reconnecting)" or "")) end,
    reconnect = function() print("reconnected") end,
    error = function(ev) print("error: " .. ev.msg) end,
  },
}
if not session then
  io.stderr:write("floo_bot: " .. err .. "\n")
  os.exit(1)
end
print(("joined %s/%s as user %d, %d buffers"):format(owner, workspace, session.user_id,
  (function() local n = 0 for _ in pairs(session.bufs) do n = n + 1 end return n end)()))
io.stdout:flush()

-- what is there already
for id, b in pairs(session.bufs) do
  if b.text and b.encoding == "utf8" then mark(session, id, b.text) end
end
io.stdout:flush()

print("ended: " .. session:wait())
