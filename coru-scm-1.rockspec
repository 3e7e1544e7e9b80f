package = "coru"
version = "scm-1"
source = {
  url = "git+https://example.invalid/coru.git",
}
description = {
  summary = "Coroutine runtime for LuaJIT on libuv: sequential non-blocking I/O",
  detailed = [[
coru runs Lua coroutines as tasks from a C scheduler (Twisted's
inlineCallbacks for Lua) over libuv handles, so plain sequential code does
non-blocking I/O. Ships the module (coru.so), its Lua files (coru.*) and
the standalone `coru` host binary.
]],
  license = "MIT",
}
dependencies = {
  "lua == 5.1",   -- LuaJIT 2.1 only: PUC Lua 5.1 is refused at build time
}
external_dependencies = {
  LIBUV = { header = "uv.h" },
  OPENSSL = { header = "openssl/ssl.h" },
}
build = {
  type = "make",
  -- LuaLS annotations and the reference, into the rock's directory
  -- (luarocks show --rock-dir coru): point workspace.library at its meta/
  copy_directories = { "meta", "docs" },
  build_target = "all",
  install_target = "install-rock",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA = "$(LUA)",          -- the Makefile refuses a Lua that is not LuaJIT
  },
  install_variables = {
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_BINDIR = "$(BINDIR)",
  },
}
