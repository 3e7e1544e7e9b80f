/*
 * thread.c - luv's threads for coru.luv: new_thread, thread_join,
 * thread_self, thread_equal, and the `luv` module a thread's own Lua state
 * (and a pooled state of coru.work / queue_work) gets from require "luv".
 *
 * A thread runs a function (dumped to bytecode, or a string of code) in a
 * lua_State of its own. Arguments cross as in coru.work (xfer.c packs
 * them): nil, booleans, numbers, strings, plain tables, an async handle
 * (which arrives as a reference uv.async_send takes) and thread ids.
 * There is no loop in those states: their `luv` has what needs none
 * (sleep, hrtime, thread_self, thread_equal, async_send, version, getpid).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <pthread.h>
#include "coru.h"
#include "check.h"
#include "xfer.h"
#include "json.h"

typedef struct {
  char *code, *args;
  size_t codelen, argslen;
  int is_dump;              /* bytecode of a function (else source text) */
} job;

/* -------------------------------------------------- the thread's state */

static void thread_main(void *arg) {
  job *j = arg;
  lua_State *S = luaL_newstate();
  if (!S) {
    fprintf(stderr, "coru: new_thread: cannot create a Lua state\n");
  } else {
    luaL_openlibs(S);
    coru_luv_thread_open(S);
    int n = -1;
    if (luaL_loadbuffer(S, j->code, j->codelen, j->is_dump ? "=(thread)" : j->code) == 0) {
      n = coru_xfer_unpack(S, j->args, j->argslen);
      if (n < 0) { lua_settop(S, 0); lua_pushliteral(S, "new_thread: bad arguments"); }
    }
    if (n < 0 || lua_pcall(S, n, 0, 0) != 0) {
      const char *msg = lua_tostring(S, -1);
      fprintf(stderr, "coru: uncaught error in thread: %s\n", msg ? msg : "(error object is not a string)");
    }
    lua_close(S);
  }
  free(j->code);
  free(j->args);
  free(j);
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  luaL_addlstring(ud, p, sz);
  return 0;
}

/* new_thread([options,] fn or code, ...) -> thread */
static int l_new_thread(lua_State *L) {
  int fi = 1;
  uv_thread_options_t opts = {UV_THREAD_NO_FLAGS, 0};
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "stack_size");
    if (!lua_isnil(L, -1)) {
      lua_Number n = luaL_checknumber(L, -1);
      if (n < 0) return luaL_argerror(L, 1, "stack_size must be >= 0");
      if (n > 0) { opts.flags = UV_THREAD_HAS_STACK_SIZE; opts.stack_size = (size_t)n; }
    }
    lua_pop(L, 1);
    fi = 2;
  }
  int ty = lua_type(L, fi);
  if (ty != LUA_TFUNCTION && ty != LUA_TSTRING) return luaL_typerror(L, fi, "function or string");
  if (ty == LUA_TFUNCTION && lua_iscfunction(L, fi))
    return luaL_argerror(L, fi, "a C function cannot run in another thread");
  int top = lua_gettop(L);
  if (top - fi > 9) return luaL_error(L, "new_thread: at most 9 arguments (luv's limit)");
  /* what can raise comes first, so that nothing malloc'd leaks */
  if (ty == LUA_TFUNCTION) {
    luaL_Buffer b;
    lua_pushvalue(L, fi);          /* lua_dump takes the function at the top at once */
    luaL_buffinit(L, &b);
    lua_dump(L, dump_writer, &b);
    luaL_pushresult(&b);
    lua_remove(L, -2);
  } else {
    lua_pushvalue(L, fi);
  }
  size_t codelen;
  const char *code = lua_tolstring(L, -1, &codelen);
  char *args = NULL;
  size_t alen = 0;
  if (top > fi) coru_xfer_pack(L, fi + 1, top, &args, &alen, "new_thread");
  job *j = calloc(1, sizeof *j);
  char *copy = malloc(codelen + 1);
  if (!j || !copy) { free(j); free(copy); free(args); return luaL_error(L, "out of memory"); }
  memcpy(copy, code, codelen);
  copy[codelen] = 0;
  j->code = copy;
  j->codelen = codelen;
  j->args = args;
  j->argslen = alen;
  j->is_dump = ty == LUA_TFUNCTION;
  coru_lthread *t = coru_push_lthread(L);
  int r = uv_thread_create_ex(&t->tid, &opts, thread_main, j);
  if (r < 0) { free(j->code); free(j->args); free(j); return coru_fail(L, r, NULL); }
  t->joinable = 1;
  return 1;
}

/* ------------------------------------------- luv inside a foreign state */

static int t_sleep(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  if (ms < 0) return luaL_argerror(L, 1, "must be >= 0 (milliseconds)");
  uv_sleep((unsigned int)ms);
  return 0;
}

static int t_fail(lua_State *L, int r) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", uv_err_name(r), uv_strerror(r));
  lua_pushstring(L, uv_err_name(r));
  return 3;
}

/* async_send(async, ...): async is what an async handle becomes in
 * another state (see the file comment); EBADF once it is closed. */
static int t_async_send(lua_State *L) {
  if (lua_type(L, 1) != LUA_TLIGHTUSERDATA) return luaL_typerror(L, 1, "uv_async_t");
  int r = coru_async_send_ref(lua_touserdata(L, 1), L, 2, lua_gettop(L));
  if (r < 0) return t_fail(L, r);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_version(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_version());
  return 1;
}

static int l_version_string(lua_State *L) {
  lua_pushstring(L, uv_version_string());
  return 1;
}

/* In coru.luv and in a foreign state's luv alike. */
static const luaL_Reg thread_funcs[] = {
  {"new_thread", l_new_thread}, {"thread_join", coru_l_thread_join},
  {"thread_self", coru_l_thread_self}, {"thread_equal", coru_l_thread_equal},
  {"version", l_version}, {"version_string", l_version_string}, {NULL, NULL}
};

/* Only in a foreign state's luv (coru has its own, with the loop). */
static const luaL_Reg foreign_funcs[] = {
  {"sleep", t_sleep}, {"hrtime", coru_l_hrtime}, {"async_send", t_async_send},
  {"getpid", coru_l_getpid}, {"os_getpid", coru_l_getpid}, {NULL, NULL}
};

static int open_foreign(lua_State *L) {
  coru_thread_mt(L);
  lua_pop(L, 1);
  lua_newtable(L);
  luaL_register(L, NULL, thread_funcs);
  luaL_register(L, NULL, foreign_funcs);
  return 1;
}

/* require "luv" (and "coru.json") in a thread's state or a pooled state of
 * the thread pool */
void coru_luv_thread_open(lua_State *S) {
  coru_json_preload(S);
  lua_getglobal(S, "package");
  lua_getfield(S, -1, "preload");
  lua_pushcfunction(S, open_foreign);
  lua_setfield(S, -2, "luv");
  lua_pop(S, 2);
}

void coru_luv_thread_funcs(lua_State *L) {
  coru_thread_mt(L);
  lua_pop(L, 1);
  luaL_register(L, NULL, thread_funcs);
}
