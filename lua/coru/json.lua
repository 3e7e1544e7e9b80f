-- coru.json: JSON with the conventions scripts expect, over lua-cjson (the
-- runtime's own JSON), so a script need not know which library is below.
--   json.encode(v)  -> text | nil, msg
--   json.decode(s)  -> value | nil, msg
--   json.null       the JSON null (decoded from null; encodes as null)
--   json.array([t]) marks t as an array: encodes as [] when empty
--   json.object([t]) marks t as an object (the default of a plain table)
--   json.is_array(t)
-- Decoded arrays carry the array mark, so `[]` round-trips as `[]` and
-- `{}` as `{}`.
local cjson = require "cjson"
local cencode, cdecode = cjson.encode, cjson.decode
local type, pairs, next, pcall, setmetatable, getmetatable, tostring =
      type, pairs, next, pcall, setmetatable, getmetatable, tostring
local find, byte, sub, gsub = string.find, string.byte, string.sub, string.gsub

local M = {}
M.null = cjson.null

local array_mt = {__name = "coru.json.array"}
local object_mt = {__name = "coru.json.object"}
function M.array(t) return setmetatable(t or {}, array_mt) end
function M.object(t) return setmetatable(t or {}, object_mt) end
function M.is_array(t) return type(t) == "table" and getmetatable(t) == array_mt end   -- never getmetatable() of a userdata (modes.lua)

-- Empty arrays: cjson writes every empty table as {}. They are swapped for
-- a marker string while encoding, then the marker for [] in the text.
local MARK = "\1coru.json.empty_array\1"
local MARK_JSON = cencode(MARK)

local function swap(v, depth)
  if depth > 1000 then error("excessive nesting", 0) end
  local copy
  for k, x in pairs(v) do
    if type(x) == "table" then
      local y
      if next(x) == nil and getmetatable(x) == array_mt then y = MARK else y = swap(x, depth + 1) end
      if y ~= x then
        copy = copy or {}
        copy[k] = y
      end
    end
  end
  if not copy then return v end
  for k, x in pairs(v) do if copy[k] == nil then copy[k] = x end end
  return copy
end

local function has_empty_array(v, depth)
  if depth > 1000 then return false end
  for _, x in pairs(v) do
    if type(x) == "table" then
      if next(x) == nil and getmetatable(x) == array_mt then return true end
      if has_empty_array(x, depth + 1) then return true end
    end
  end
  return false
end

function M.encode(v)
  if type(v) == "table" then
    if next(v) == nil and getmetatable(v) == array_mt then return "[]" end
    if has_empty_array(v, 0) then
      local ok, s = pcall(cencode, swap(v, 0))
      if not ok then return nil, "json.encode: " .. tostring(s) end
      return (gsub(s, MARK_JSON:gsub("%p", "%%%0"), "[]"))
    end
  end
  local ok, s = pcall(cencode, v)
  if not ok then return nil, "json.encode: " .. tostring(s) end
  return s
end

-- Decoding: every array gets the mark (so [] stays [] when encoded again).
local function mark(v, depth)
  if depth > 1000 then return end
  local n = #v
  for _, x in pairs(v) do
    if type(x) == "table" then mark(x, depth + 1) end
  end
  if n > 0 and getmetatable(v) == nil then setmetatable(v, array_mt) end
end

-- Which empty tables were [] in the text: they are decoded from a marker.
local function mark_empty(s)
  local parts, last, pos = nil, 1, 1
  while true do
    local j = find(s, '[%["]', pos)
    if not j then break end
    if byte(s, j) == 34 then                     -- a string: skip it
      local k = j + 1
      while true do
        local q = find(s, '["\\]', k)
        if not q then return parts and (table.concat(parts) .. sub(s, last)) or s end
        if byte(s, q) == 92 then k = q + 2 else pos = q + 1 break end
      end
    else
      local _, e = find(s, "^%s*%]", j + 1)
      if e then
        parts = parts or {}
        parts[#parts + 1] = sub(s, last, j)
        parts[#parts + 1] = MARK_JSON .. "]"
        last, pos = e + 1, e + 1
      else
        pos = j + 1
      end
    end
  end
  return parts and (table.concat(parts) .. sub(s, last)) or s
end

local function unmark(v, depth)
  if depth > 1000 then return v end
  if v[1] == MARK and v[2] == nil then return setmetatable({}, array_mt) end
  for k, x in pairs(v) do
    if type(x) == "table" then v[k] = unmark(x, depth + 1) end
  end
  return v
end

function M.decode(s)
  if type(s) ~= "string" then
    return nil, "json.decode: string expected, got " .. type(s)
  end
  local marked = find(s, "[", 1, true) and mark_empty(s) or s
  local ok, v = pcall(cdecode, marked)
  if not ok then
    if marked ~= s then ok, v = pcall(cdecode, s) end   -- the positions of the text itself
    return nil, "json.decode: " .. tostring(v)
  end
  if type(v) == "table" then
    if marked ~= s then v = unmark(v, 0) end
    mark(v, 0)
  end
  return v
end

return M
