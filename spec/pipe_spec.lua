local coru = require "coru"
local helper = require "helper"

local function tmpname()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".sock"
end

describe("pipes (unix sockets)", function()
  it("echoes over a unix socket", function()
    coru.run(function()
      local path = tmpname()
      local srv = assert(coru.pipe.listen(path, function(s)
        while true do
          local line = s:read_line()
          if not line then return end
          s:write(line:reverse() .. "\n")
        end
      end))
      assert.equal(path, srv:getsockname())
      assert.equal(0, srv:chmod("rw"))
      local c = assert(coru.pipe.connect(path))
      c:write("abc\n")
      assert.equal("cba", c:read_line())
      assert.equal(path, c:getpeername())
      c:close()
      srv:close()
      os.remove(path)
    end)
  end)

  it("fails to connect to a missing socket", function()
    coru.run(function()
      local c, err, name = coru.pipe.connect("/nonexistent/dir/x.sock")
      assert.is_nil(c)
      assert.equal("ENOENT", name)
      assert.matches("/nonexistent/dir/x.sock", err, 1, true)
    end)
  end)

  it("reads a fifo opened on a descriptor", function()
    local ffi = require "ffi"
    pcall(ffi.cdef, "int open(const char *, int, ...);")
    coru.run(function()
      local path = tmpname()
      os.execute("mkfifo " .. helper.shq(path))
      assert.equal("fifo", coru.fs_stat(path).type)
      local fd = ffi.C.open(path, 2048)   -- O_RDONLY | O_NONBLOCK
      assert.is_true(fd >= 0)
      os.execute("printf 'one\\ntwo\\nlast' > " .. helper.shq(path) .. " &")
      local p = coru.new_pipe()
      assert.equal(0, p:open(fd))
      assert.equal("one", p:read_line())
      assert.equal("two", p:read_line())
      local l, err, partial = p:read_line()
      assert.same({ nil, "eof", "last" }, { l, err, partial })
      assert.equal("last", p:read_all())
      p:close()
      os.remove(path)
    end)
  end)

  it("checks its arguments", function()
    local p = coru.new_pipe()
    assert.has_error(function() p:chmod("x") end,
      "bad argument #1 to 'chmod' (expected \"r\", \"w\", \"rw\" or \"wr\")")
    assert.has_error(function() p:bind() end, "bad argument #1 to 'bind' (string expected, got no value)")
    p:close()
    assert.has_error(function() coru.pipe.listen("/tmp/x", 42) end, "bad argument #2 to 'coru.pipe.listen' (function expected, got number)")
  end)
end)
