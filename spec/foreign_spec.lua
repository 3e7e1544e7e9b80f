-- coru against peers written in other languages, over real sockets.
local coru = require "coru"
local helper = require "helper"

local P = coru.process

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
      local dir = helper.tmpdir("coru-foreign")
      local body = string.rep("coru streams\n", 1000)
      local f = assert(io.open(dir .. "/page.txt", "w"))
      f:write(body)
      f:close()
      -- the server binds port 0 and says which port it got
      local py = helper.spawn("python3", {"-u", "-m", "http.server", "0", "--bind", "127.0.0.1"},
        {cwd = dir, stdio = {"ignore", "pipe", "ignore"}})
      local banner = coru.timeout(helper.ms(10000), py.stdout.read_line, py.stdout)
      local port = tonumber(banner and banner:match(" port (%d+)"))
      assert(port, "python3 -m http.server did not report its port: " .. tostring(banner))
      local s = assert(coru.tcp.connect("127.0.0.1", port))
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
      py:kill("sigterm")
      py:wait()
      py:close()
      coru.fs.rmtree(dir)
    end)
  end)

  it("talks to a Node.js net echo server", function()
    if not have("node") then pending("no node") return end
    coru.run(function()
      local node = helper.spawn("node", {"-e", "const s=require('net').createServer(c=>{c.pipe(c);c.on('close',()=>process.exit(0))});"
        .. "s.listen(0,'127.0.0.1',()=>console.log(s.address().port))"}, {stdio = {"ignore", "pipe", "inherit"}})
      local port = tonumber(node.stdout:read_line())
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
      assert.equal(0, (node:wait()))   -- it exits when the connection closes
      node:close()
    end)
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
      local client = coru.spawn(P.exec, "python3", {"-c", [[
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
s.sendall(b'python\n')
sys.stdout.write(s.makefile('rb').readline().decode())
s.close()
]], tostring(port)}, {timeout = helper.ms(10000)})
      assert.equal("python", got:recv())
      local reply, err, code = client:await()
      assert.equal("hello, python\n", reply, err)
      assert.equal(0, code)
      assert.is_true(done:recv())   -- the handler ended: the client hung up
      srv:close()
    end)
  end)
end)
