-- coru.stderr: a stream on descriptor 2 (a TTY, a pipe, a socket or a
-- regular file, whatever it is). io.stderr is unbuffered: no reordering.
local coru = require "coru"
local s, err = coru.new_stdio(2)
if not s then error("coru.stderr: " .. tostring(err), 2) end
return s
