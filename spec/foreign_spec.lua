-- coru against peers written in other languages, over real sockets.
local coru = require "coru"
local helper = require "helper"

local function free_port()
  local t = coru.new_tcp()
  t:bind("127.0.0.1", 0)
  local port = t:getsockname().port
  t:close()
  return port
end

-- Connect, retrying while the foreign server starts (bounded).
local function connect_retry(port)
  for _ = 1, 300 do
    local s = coru.tcp.connect("127.0.0.1", port)
    if s then return s end
    coru.sleep(10)
  end
  error("the foreign server did not start")
end

local function sh(cmd)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  return out
end

local function have(prog) return sh("command -v " .. prog .. " || true") ~= "" end

describe("foreign peers", function()
  it("GETs a file from python3 -m http.server", function()
    if not have("python3") then pending("no python3") return end
    coru.run(function()
      local dir = os.tmpname()
      os.remove(dir)
      os.execute("mkdir -p " .. dir)
      local body = string.rep("coru streams\n", 1000)
      local f = assert(io.open(dir .. "/page.txt", "w"))
      f:write(body)
      f:close()
      local port = free_port()
      local pid = sh(("cd %s && python3 -m http.server %d --bind 127.0.0.1 >/dev/null 2>&1 & echo $!"):format(dir, port))
      local s = connect_retry(port)
      s:write("GET /page.txt HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
      local status = s:read_line()
      assert.matches("^HTTP/1%.%d 200", status)
      local headers = {}
      while true do
        local h = assert(s:read_line())
        if h == "" then break end
        local k, v = h:match("^([^:]+):%s*(.*)$")
        headers[k:lower()] = v
      end
      assert.equal(#body, tonumber(headers["content-length"]))
      assert.equal(body, s:read_all())
      s:close()
      os.execute("kill " .. pid)
      os.execute("rm -rf " .. dir)
    end)
  end)

  it("talks to a Node.js net echo server", function()
    if not have("node") then pending("no node") return end
    local p = io.popen([[node -e "const s=require('net').createServer(c=>{c.pipe(c);c.on('close',()=>process.exit(0))});s.listen(0,'127.0.0.1',()=>console.log(s.address().port))"]])
    local port = tonumber(p:read("*l"))
    coru.run(function()
      local s = assert(coru.tcp.connect("127.0.0.1", port))
      for i = 1, 50 do
        s:write("line " .. i .. "\n")
        assert.equal("line " .. i, s:read_line())
      end
      local big = string.rep("0123456789", 100000)
      local w = coru.spawn(function() return s:write(big) end)
      assert.equal(big, s:read_bytes(#big))
      assert.is_true(w:await())
      s:close()
    end)
    p:close()
  end)

  it("serves a Python socket client", function()
    if not have("python3") then pending("no python3") return end
    coru.run(function()
      local got, done = coru.channel(1), coru.channel(1)
      local srv = assert(coru.tcp.listen("127.0.0.1", 0, function(s)
        local line = s:read_line()
        s:write("hello, " .. line .. "\n")
        got:send(line)
        s:read()              -- until the client hangs up
        done:send(true)
      end))
      local port = srv:getsockname().port
      local out = os.tmpname()
      os.execute(([[python3 -c "
import socket
s = socket.create_connection(('127.0.0.1', %d))
s.sendall(b'python\n')
f = s.makefile('rb')
open('%s', 'wb').write(f.readline())
s.close()
" &]]):format(port, out))
      assert.equal("python", got:recv())
      local reply
      for _ = 1, 300 do
        local f = io.open(out)
        reply = f and f:read("*a")
        if f then f:close() end
        if reply and reply ~= "" then break end
        coru.sleep(10)
      end
      assert.equal("hello, python\n", reply)
      os.remove(out)
      assert.is_true(done:recv())
      srv:close()
    end)
  end)
end)
