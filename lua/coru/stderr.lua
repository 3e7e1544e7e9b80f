-- coru.stderr: a stream on descriptor 2 (a TTY, a pipe or a socket, whatever
-- it is). A regular file cannot be a stream: then this module raises.
local coru = require "coru"
local s, err = coru.new_stdio(2)
if not s then error("coru.stderr: " .. tostring(err), 2) end
return s
