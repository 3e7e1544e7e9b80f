-- coru.stdout: a stream on descriptor 1 (a TTY, a pipe, a socket or a
-- regular file, whatever it is). Its writes flush C's stdio buffer first,
-- so lines written with print/io.write before keep their place.
local coru = require "coru"
local s, err = coru.new_stdio(1)
if not s then error("coru.stdout: " .. tostring(err), 2) end
return s
