-- A TLS client: fetch a page over HTTPS and show what was negotiated.
--   build/coru examples/tls_client.lua [host] [port] [path]
-- Certificates are verified against the system store and the host name;
-- CA=file.pem uses another trust anchor, INSECURE=1 turns verification off.
local coru = require "coru"
local host, port, path = arg[1] or "example.com", tonumber(arg[2] or 443), arg[3] or "/"

local function main()
  local opts = {ca = os.getenv("CA"), alpn = {"http/1.1"}, timeout = 10000}
  if os.getenv("INSECURE") then opts.verify = false end
  local s, err, name = coru.tls.connect(host, port, opts)
  if not s then
    io.stderr:write(("tls_client: %s:%d: %s (%s)\n"):format(host, port, err, name))
    os.exit(1)
  end
  local cert = s:peer_certificate() or {}
  print(("connected: %s, %s, ALPN %s"):format(s:version(), (s:cipher()), s:alpn() or "-"))
  print(("peer: %s\n  issued by %s\n  valid until %s\n  sha256 %s"):format(
    cert.subject, cert.issuer, cert.not_after, cert.fingerprint_sha256))
  s:write(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"):format(path, host))
  local status = s:read_line()
  print("status: " .. tostring(status))
  -- headers, then the body until the server's close_notify
  repeat local line = s:read_line() until not line or line == ""
  local body, e = s:read_all()
  if not body then print("body: " .. e .. (s:tls_error() and (" / " .. s:tls_error()) or ""))
  else print(("body: %d bytes"):format(#body)) end
  s:close()
end

if coru.current() then main() else coru.run(main) end
