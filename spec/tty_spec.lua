local coru = require "coru"
local helper = require "helper"
-- the program that runs the child scripts, quoted for the shell
local BIN = helper.shq(os.getenv("CORU_BIN") or "luajit")

local function run_child(code, under_pty)
  local f = helper.tmpfile(code)
  local cmd = BIN .. " " .. helper.shq(f)
  if under_pty then
    cmd = "python3 -c 'import pty, sys; pty.spawn(sys.argv[1:])' " .. cmd
  end
  local p = io.popen(cmd .. " </dev/null 2>&1")
  local out = p:read("*a")
  p:close()
  os.remove(f)
  return out
end

describe("tty and stdio", function()
  it("has the TTY methods under a pseudo-terminal", function()
    local out = run_child([[
      local coru = require "coru"
      print("kind", coru.guess_handle(1))
      local t = assert(coru.new_tty(1, false))
      local w, h = t:get_winsize()
      print("size", type(w), type(h))
      print("raw", t:set_mode("raw"))
      print("normal", t:set_mode(0))
      print("reset", coru.tty_reset_mode())
      coru.run(function() assert(coru.stdout:write("via stream\n")) end)
      t:close()
    ]], true)
    assert.matches("kind%s+tty", out)
    assert.matches("size%s+number%s+number", out)
    assert.matches("raw%s+0", out)
    assert.matches("normal%s+0", out)
    assert.matches("reset%s+0", out)
    assert.matches("via stream", out)
  end)

  it("reads coru.stdin and writes coru.stdout through pipes", function()
    local f = helper.tmpfile([[
      local coru = require "coru"
      coru.run(function()
        assert(coru.guess_handle(0) == "pipe")
        local n = 0
        while true do
          local line = coru.stdin:read_line()
          if not line then break end
          n = n + 1
          coru.stdout:write(n .. ":" .. line .. "\n")
        end
      end)
    ]])
    local out = helper.sh("printf 'a\\nb\\n' | " .. BIN .. " " .. helper.shq(f) .. " | cat")
    os.remove(f)
    assert.equal("1:a\n2:b\n", out)
  end)

  it("reads and writes regular files as coru.stdin and coru.stdout", function()
    local src, inp, outp = os.tmpname(), os.tmpname(), os.tmpname()
    local h = assert(io.open(src, "w"))
    h:write([[
      local coru = require "coru"
      coru.run(function()
        local first = coru.stdin:read_line()
        local rest = coru.stdin:read_all()
        coru.stdout:write({ "first=", first, " rest=", rest })
      end)
    ]])
    h:close()
    h = assert(io.open(inp, "w"))
    h:write("one\n" .. string.rep("x", 100000))
    h:close()
    os.execute(BIN .. " " .. helper.shq(src) .. " < " .. helper.shq(inp) .. " > " .. helper.shq(outp))
    h = assert(io.open(outp))
    local out = h:read("*a")
    h:close()
    assert.equal("first=one rest=" .. string.rep("x", 100000), out)
    os.remove(src) os.remove(inp) os.remove(outp)
  end)

  it("checks its arguments", function()
    assert.has_error(function() coru.new_tty("x") end, "bad argument #1 to 'new_tty' (number expected, got string)")
    local ok, err, name = coru.new_stdio(999)
    assert.is_nil(ok)
    assert.equal("EINVAL", name)
  end)
end)
