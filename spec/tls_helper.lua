-- Helpers for the TLS specs: certificates made at run time with the
-- `openssl` command into a temp dir, an in-memory transport pair, and a
-- checksum.
local coru = require "coru"
local H = {}

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  if ok ~= 0 and ok ~= true then error("command failed: " .. cmd) end
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
H.read_file = read_file

local certs
-- The certificates (made once per process): a CA, a server cert signed by
-- it for localhost/127.0.0.1, an expired one, one for another host name, a
-- self-signed one, the server key encrypted with a passphrase, and a client
-- certificate signed by the CA.
function H.certs()
  if certs then return certs end
  local p = io.popen("mktemp -d /tmp/coru-tls-XXXXXX")
  local dir = p:read("*l")
  p:close()
  local function f(name) return dir .. "/" .. name end
  local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  sh(("openssl req -x509 %s -keyout %s -out %s -days 30 -subj /CN=coru-test-ca"):format(ec, f"ca.key", f"ca.pem"))
  local function signed(name, cn, san, days)
    local ext = f(name .. ".ext")
    local e = assert(io.open(ext, "w"))
    e:write("subjectAltName=" .. san .. "\nbasicConstraints=CA:FALSE\n")
    e:close()
    sh(("openssl req %s -keyout %s -out %s -subj /CN=%s"):format(ec, f(name .. ".key"), f(name .. ".csr"), cn))
    sh(("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -days %d -out %s -extfile %s")
      :format(f(name .. ".csr"), f"ca.pem", f"ca.key", days, f(name .. ".pem"), ext))
  end
  signed("server", "localhost", "DNS:localhost,IP:127.0.0.1", 30)
  signed("expired", "localhost", "DNS:localhost,IP:127.0.0.1", -1)
  signed("other", "other.example", "DNS:other.example", 30)
  signed("client", "coru-client", "DNS:coru-client", 30)
  sh(("openssl req -x509 %s -keyout %s -out %s -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1")
    :format(ec, f"self.key", f"self.pem"))
  sh(("openssl pkey -in %s -aes256 -passout pass:sesame -out %s"):format(f"server.key", f"server-enc.key"))
  certs = {dir = dir}
  for _, n in ipairs{"ca", "server", "expired", "other", "client", "self"} do
    certs[n] = {cert = f(n .. ".pem"), key = f(n .. ".key")}
  end
  certs.ca_file = f"ca.pem"
  certs.server_enc_key = f"server-enc.key"
  return certs
end

function H.cleanup()
  if certs then os.execute("rm -rf " .. certs.dir) certs = nil end
end

-- An in-memory transport pair: what a writes, b reads (and back), in order,
-- with a bounded queue (backpressure). a:reset() makes the peer's read fail.
local Pipe = {}
Pipe.__index = Pipe

function Pipe:read()
  if self.closed then return nil, "closed" end
  local v = self.inq:recv()
  if self.closed then return nil, "closed" end
  if v == nil or v == false then return nil end          -- closed channel / EOF
  if type(v) == "table" then return nil, v[1], v[2] end  -- an injected error
  return v
end

function Pipe:write(data, cb)
  if cb then
    coru.spawn(function() local ok, e = self:write(data) cb(not ok and e or nil) end)
    return true
  end
  if self.closed or self.shut then return nil, "closed" end
  self.written = (self.written or 0) + #data
  local ok = self.outq:send(data)
  if not ok then return nil, "EPIPE: broken pipe", "EPIPE" end
  return true
end

function Pipe:shutdown()
  if not self.shut then self.shut = true self.outq:close() end
  return true
end

function Pipe:close(cb)
  if self.closed then return end
  self.closed = true
  if not self.shut then self.shut = true self.outq:close() end
  self.inq:close()
  if cb then cb() end
end

function Pipe:reset()
  self.closed = true
  self.shut = true
  coru.spawn(function() self.outq:send({"ECONNRESET: connection reset by peer", "ECONNRESET"}) self.outq:close() end)
  self.inq:close()
end

function H.pipe(capacity)
  local ab, ba = coru.channel(capacity or 8), coru.channel(capacity or 8)
  local a = setmetatable({inq = ba, outq = ab}, Pipe)
  local b = setmetatable({inq = ab, outq = ba}, Pipe)
  return a, b
end

-- A digest of a string, to compare large transfers without printing them
-- (coru.md5, OpenSSL's MD5: the specs compare two digests, never a fixed one).
H.md5 = coru.md5

return H
