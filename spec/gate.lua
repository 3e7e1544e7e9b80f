-- The leak gate, loaded by busted as its helper (.busted): every spec of
-- every file fails if it leaves behind a handle, a registry reference, a
-- live fs request or TLS engine, or a task that has not ended (as luv's
-- harness fails a test that leaves a handle open). A spec that keeps
-- something on purpose across specs says so with H.keep(value).
local H = require "helper"
H.gate()
