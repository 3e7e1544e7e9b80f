-- The host's REPL (coru with no script on a terminal, or -i), driven
-- through a pseudo-terminal by spec/repl_pty.py. The REPL is a subprocess,
-- so this spec is the same in both faces.
local H = require "helper"
local bin = H.bin

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local q = H.shq

local has_python = select(2, H.sh("command -v python3 >/dev/null 2>&1")) == 0

-- Drive the host with args on a pseudo-terminal through the steps
-- ("expect:", "send:", "sleep:"); returns what the terminal showed (ending
-- in "EXIT <status>") and the driver's status.
local function drive(args, steps)
  local cmd = {"CORU_HISTORY=/dev/null", "REPL_PTY_LIMIT=" .. H.ms(30), "python3", q(here .. "repl_pty.py"), q(bin)}
  for _, a in ipairs(args) do cmd[#cmd + 1] = q(a) end
  cmd[#cmd + 1] = "--"
  for _, s in ipairs(steps) do cmd[#cmd + 1] = q(s) end
  return H.sh(table.concat(cmd, " ") .. " 2>&1")
end

-- A REPL session: drive with a last Ctrl-D. Fails if an expect timed out
-- or the host did not exit 0; returns what the terminal showed.
local function session(args, steps)
  local all = {}
  for i, s in ipairs(steps) do all[i] = s end
  all[#all + 1] = "send:\x04"
  local out, status = drive(args, all)
  assert.not_matches("TIMEOUT", out)
  assert.matches("EXIT 0\n$", out)
  assert.equal(0, status)
  return out
end

describe("the REPL", function()
  if not has_python then
    pending("python3 is needed to drive a pseudo-terminal")
    return
  end

  it("prompts, prints expressions, suspends at top level, lets background tasks run, ends at Ctrl-D", function()
    local out = session({}, {
      "expect:> ",
      "send:ticks = 0; bg = coru.spawn(function() while true do coru.sleep(5) ticks = ticks + 1 end end)\n",
      "expect:\n> ",
      "sleep:0.3",                                   -- between prompts: the loop runs
      "send:=ticks >= 5, 'between'\n",              -- 60 ticks idle, 5 on a loaded machine
      "expect:\n> ",
      "send:t0 = coru.now(); coru.sleep(100); n = ticks\n",   -- a suspending line
      "expect:\n> ",
      "send:coru.now() - t0 >= 100, n > 0\n",        -- a bare expression
      "expect:\n> ",
      "send:for i = 1, 2 do\n",
      "expect:>> ",
      "send:io.write('line', i, ' ') end\n",
      "expect:line2 > ",
      "send:error('oops')\n",
      "expect:\n> ",
    })
    assert.matches("^coru %d+%.%d+%.%d+ %(LuaJIT", out)
    assert.matches("\ntrue\tbetween\r?\n", out)
    assert.matches("\ntrue\ttrue\r?\n", out)
    assert.matches("line1 line2", out)
    assert.matches("stdin:1: oops", out)
  end)

  it("continues an incomplete chunk with >> and reports a syntax error", function()
    local out = session({"-i", "-e", "x = 41"}, {
      "expect:> ",
      "send:return x +\n",
      "expect:>> ",
      "send:1\n",
      "expect:42",
      "expect:> ",
      "send:x = = 1\n",
      "expect:> ",
    })
    assert.matches("stdin:1: unexpected symbol near '='", out)
  end)

  it("Ctrl-C cancels the running line and clears the typed one; the session goes on", function()
    local out = session({}, {
      "expect:> ",
      -- the marker comes from a task 20 ms later, when the line waits in its
      -- sleep (printed just before it, a Ctrl-C could land before the sleep)
      "send:coru.spawn(function() coru.sleep(20) print('wait' .. 'ing') end) coru.sleep(100000)\n",
      "expect:waiting",                              -- (its echo shows 'wait' .. 'ing')
      "send:\x03",
      "expect:interrupted",
      "expect:> ",
      "send:abc",
      "expect:abc",                                  -- typed: the line editor has read it
      "send:\x03",
      "expect:> ",
      "send:=1+1\n",
      "expect:2",
      "expect:> ",
    })
    assert.matches("cancelled: interrupted", out)
    assert.not_matches("abc=1", out)
  end)

  it("Ctrl-C interrupts a line busy in Lua (a compiled loop too), a busy task or callback; the session goes on", function()
    local out = drive({}, {
      "expect:> ",
      "send:print('run' .. 'ning') while true do end\n",   -- would be a JIT-compiled loop
      "expect:running",                                 -- running, not only typed: Ctrl-C interrupts it
      "send:\x03",
      "expect:interrupted",
      "expect:> ",
      "send:print('run' .. 'ning') local x = 0 for i = 1, 1e12 do x = x + i end\n",
      "expect:running",
      "send:\x03",
      "expect:interrupted",
      "expect:> ",
      "send:coru.new_timer():start(10, 0, function() print('cb' .. 'busy') while true do end end)\n",
      "expect:cbbusy",
      "send:\x03",
      "expect:unhandled error: interrupted",            -- the callback's error is reported
      "send:=40+2\n",
      "expect:42",
      "expect:> ",
      "send:\x04",
    })
    assert.not_matches("TIMEOUT", out)
    local _, n = out:gsub("interrupted", "")
    assert.equal(3, n)
    assert.matches("EXIT 1\n$", out)                    -- an error was reported (on_error's rule)
  end)

  it("a second Ctrl-C in a row at an empty prompt ends the session, as Ctrl-D", function()
    local out = drive({}, {
      "expect:> ",
      "send:\x03",
      "expect:Ctrl-C again",
      "send:=6*7\n",                                    -- a line in between: it starts over
      "expect:42",                                       -- (not "=6*7": the echo comes first)
      "expect:> ",
      "send:\x03",
      "expect:Ctrl-C again",
      "send:\x03",
    })
    assert.not_matches("TIMEOUT", out)
    assert.matches("EXIT 0\n$", out)
  end)

  it("Tab completes names, submodules not loaded yet and methods", function()
    session({}, {
      "expect:> ",
      "send:=type(coru.tc\t",                      -- coru.tcp (the submodule), common prefix
      "sleep:0.3",
      "send:.con\t",                                -- coru.tcp.connect
      "sleep:0.3",
      "send:)\n",
      "expect:function",
      "expect:> ",
      "send:ch = coru.channel(1)\n",
      "expect:> ",
      "send:=ch:try_s\t",                           -- a method, through the handle's metatable
      "sleep:0.3",
      "send:(5), ch:len()\n",
      "expect:true\t1",
      "expect:> ",
    })
  end)

  it("ends at Ctrl-D even with a server still open", function()
    session({}, {
      "expect:> ",
      "send:srv = coru.tcp.listen('127.0.0.1', 0, function() end)\n",
      "expect:\n> ",
    })
  end)
end)

describe("the host's options", function()
  it("-h and --help print the usage on stdout and exit 0", function()
    for _, o in ipairs({"-h", "--help"}) do
      local out, status = H.sh(bin .. " " .. o .. " 2>/dev/null")
      assert.equal(0, status)
      assert.matches("usage: .* %[options%] %[script %[args%]%]", out)
      assert.matches("%-i ", out)
    end
  end)

  it("an unknown option prints the usage on stderr and exits 1", function()
    local out, status = H.sh(bin .. " --bogus 2>&1 >/dev/null")
    assert.equal(1, status)
    assert.matches("unrecognized option '%-%-bogus'", out)
  end)

  it("-i reads lines from a pipe too, printing expressions", function()
    local out, status = H.sh("printf '=1+1\\ncoru.sleep(5)\\nreturn \"a\", nil\\n' | " .. bin .. " -i 2>&1")
    assert.equal(0, status)
    assert.matches("2\n", out)
    assert.matches("a\tnil\n", out)
  end)
end)
