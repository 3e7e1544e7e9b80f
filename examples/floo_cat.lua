-- floo_cat.lua: print a buffer of a Floobits workspace, then follow it:
-- each change prints a header line and the new text.
--
--   coru examples/floo_cat.lua HOST PORT OWNER WORKSPACE PATH [USERNAME SECRET] [--ca CA_FILE]
--
-- Without USERNAME it joins anonymously (read-only).
local coru = require "coru"
local floo = require "coru.floo"

local args, ca = {}, nil
local i = 1
while i <= select("#", ...) do
  local a = select(i, ...)
  if a == "--ca" then ca = select(i + 1, ...) i = i + 1 else args[#args + 1] = a end
  i = i + 1
end
local host, port, owner, workspace, path, username, secret = unpack(args)
if not path then
  io.stderr:write("usage: floo_cat.lua HOST PORT OWNER WORKSPACE PATH [USERNAME SECRET] [--ca CA_FILE]\n")
  os.exit(2)
end

local out = coru.stdout
local session, err = floo.connect{
  host = host, port = tonumber(port), tls = ca and {ca = ca} or false,
  owner = owner, workspace = workspace, username = username or "", secret = secret or "",
  client = "coru floo_cat", fetch = "lazy",
}
if not session then
  io.stderr:write("floo_cat: " .. err .. "\n")
  os.exit(1)
end
local b = session:find(path)
if not b then
  io.stderr:write("floo_cat: no buffer " .. path .. " in " .. owner .. "/" .. workspace .. "\n")
  os.exit(1)
end
local id = b.id
b = assert(session:get_buf(id))
out:write(b.text)

local function show(header, text)
  out:write(("\n--- %s\n"):format(header))
  out:write(text)
end
session:on("patch", function(ev)
  if ev.id == id and ev.text then show(("%s edited %s"):format(ev.username or "someone", ev.path), ev.text) end
end)
session:on("resync", function(ev)
  if ev.id == id then show(("%s re-fetched (%s)"):format(ev.path, ev.reason), ev.text) end
end)
session:on("rename_buf", function(ev)
  if ev.id == id then out:write(("\n--- renamed to %s\n"):format(ev.path)) end
end)
session:on("delete_buf", function(ev)
  if ev.id == id then
    out:write(("\n--- %s was deleted\n"):format(ev.path))
    session:close()
  end
end)
local reason = session:wait()
if reason ~= "closed" then io.stderr:write("floo_cat: " .. reason .. "\n") os.exit(1) end
