-- What the oracle scripts of spec/luv_oracle/ share (each runs under
-- Debian's luv 1.44 and under coru.luv; spec/luv_oracle_spec.lua compares
-- what they print). Loaded with dofile, beside the script.
local C = {}

-- A value as a luv program sees it: the request or handle type, else tostring.
function C.fmt(v)
  if type(v) == "userdata" or type(v) == "table" then
    return tostring(v):match("^(uv_%w+_t)") or type(v)
  end
  return tostring(v)
end

local function line(label, n, ...)
  local t = {}
  for i = 1, n do t[#t + 1] = C.fmt((select(i, ...))) end
  print(label, table.concat(t, " "))
end

-- label and every value
function C.show_all(label, ...) line(label, select("#", ...), ...) end

-- label and the values, or "fail" and the error name of luv's nil, msg, name
function C.show(label, ...)
  local n = select("#", ...)
  if n >= 3 and (...) == nil then return print(label, "fail", (select(3, ...))) end
  line(label, n, ...)
end

-- C.show of f(...), or "raises" when it raises
function C.try(label, f, ...)
  local function out(ok, ...)
    if not ok then return print(label, "raises") end
    C.show(label, ...)
  end
  out(pcall(f, ...))
end

-- Steps that run one after the other (each calls nextstep when done):
-- local step, nextstep = C.steps()
function C.steps()
  local steps = {}
  return function(f) steps[#steps + 1] = f end,
         function() local f = table.remove(steps, 1) if f then f() end end
end

return C
