/*
 * embed.c - an embedder that opens, uses and closes coru in three Lua
 * states in a row, in the same process (as the host does once). Each state
 * spawns, sleeps, awaits and reports an unobserved error through on_error;
 * a runtime must leave nothing behind that the next one trips on (a
 * shutdown flag, a registry reference kept in a C static, a pooled timer of
 * a closed loop). Run by `make test`; exits 0 when the three rounds pass.
 */
#include <stdio.h>
#include <string.h>
#include "coru.h"

static const char chunk[] =
  "local round = ...\n"
  "local coru = require 'coru'\n"
  "local errs = {}\n"
  "coru.on_error(function(e) errs[#errs + 1] = tostring(e) end)\n"
  "local t = coru.spawn(function(x) coru.sleep(5); return x * 2 end, 21)\n"
  "assert(t:await() == 42, 'await')\n"
  "local f = coru.spawn(function() coru.sleep(1); error('boom') end)\n"
  "local ok, e = pcall(f.await, f)\n"
  "assert(not ok and tostring(e):match('boom'), 'awaited failure')\n"
  "coru.spawn(function() coru.sleep(1); error('unobserved ' .. round) end)\n"
  "local ch = coru.channel()\n"
  "coru.spawn(function() coru.pass(); ch:send('hi') end)\n"
  "assert(ch:recv() == 'hi', 'channel')\n"
  "local tm = coru.new_timer()\n"
  "tm:start(1, 0, function() tm:close(); error('callback ' .. round) end)\n"
  "local keep = {}\n"
  "for i = 1, 20 do keep[i] = coru.spawn(function() coru.sleep(30); return i end) end\n"
  "coru.sleep(10); coru.pass(); coru.pass()\n"
  "for i = 1, 20 do assert(keep[i]:await() == i, 'task ' .. i) end\n"
  "local all = table.concat(errs, ' | ')\n"
  "assert(#errs == 2 and all:match('callback ' .. round) and all:match('unobserved ' .. round),\n"
  "       'on_error got ' .. all)\n"
  "RESULT = 'ok ' .. round\n";

/* The module face: coru.run from the main thread drives the loop. */
static const char module_chunk[] =
  "local coru = require 'coru'\n"
  "local r = coru.run(function() coru.sleep(2); return 'run' end)\n"
  "assert(r == 'run')\n";

static int round_ok(int round) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_coru);
  lua_setfield(L, -2, "coru");
  lua_pop(L, 2);
  int ok = 1;
  if (luaL_loadbuffer(L, module_chunk, sizeof module_chunk - 1, "=module") || lua_pcall(L, 0, 0, 0)) {
    fprintf(stderr, "embed: round %d, module face: %s\n", round, lua_tostring(L, -1));
    ok = 0;
  }
  if (ok && luaL_loadbuffer(L, chunk, sizeof chunk - 1, "=embed") != 0) {
    fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
    ok = 0;
  }
  if (ok) {
    lua_pushinteger(L, round);
    int status = coru_run_main(L, 1);
    lua_getglobal(L, "RESULT");
    char want[32];
    snprintf(want, sizeof want, "ok %d", round);
    if (status != 0 || !lua_isstring(L, -1) || strcmp(lua_tostring(L, -1), want) != 0) {
      fprintf(stderr, "embed: round %d: status %d, result %s\n", round, status,
              lua_isstring(L, -1) ? lua_tostring(L, -1) : "(none)");
      ok = 0;
    }
    lua_pop(L, 1);
  }
  coru_shutdown();
  lua_close(L);
  return ok;
}

int main(void) {
  for (int round = 1; round <= 3; round++) {
    if (!round_ok(round)) return 1;
    printf("embed: round %d ok\n", round);
  }
  return 0;
}
