-- coru.stdout: a stream on descriptor 1 (a TTY, a pipe or a socket, whatever
-- it is). A regular file cannot be a stream: then this module raises.
local coru = require "coru"
local s, err = coru.new_stdio(1)
if not s then error("coru.stdout: " .. tostring(err), 2) end
return s
