-- coru.stdin: a stream on descriptor 0 (a TTY, a pipe or a socket, whatever
-- it is). A regular file cannot be a stream: then this module raises.
local coru = require "coru"
local s, err = coru.new_stdio(0)
if not s then error("coru.stdin: " .. tostring(err), 2) end
return s
