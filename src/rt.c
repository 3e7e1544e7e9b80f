/*
 * rt.c - the runtime: one per process. luaopen_coru, the callback thread,
 * error reporting (on_error), registration helpers, shutdown.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "coru.h"
#include "boot.h"   /* generated from boot.lua: coru_boot_lua */

static coru_rt runtime;
static uv_loop_t *loop_in_use;
void coru_flush_reports(void);
void coru_sched_close(void);
void coru_deadline_close_all(void);
int coru_l_current(lua_State *L);

/* ---------------------------------------------------------- small helpers */

int coru_is_callable(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (t == LUA_TFUNCTION) return 1;
  if (t == LUA_TTABLE || t == LUA_TUSERDATA) {
    if (luaL_getmetafield(L, idx, "__call")) { lua_pop(L, 1); return 1; }
  }
  return 0;
}

int coru_ref_cb(lua_State *L, int idx) {
  if (!coru_is_callable(L, idx)) luaL_typerror(L, idx, "function");
  lua_pushvalue(L, idx);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

void coru_unref(lua_State *L, int *ref) {
  if (*ref != LUA_NOREF && *ref != LUA_REFNIL) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

void coru_push_errmsg(lua_State *L, int err, const char *detail) {
  if (detail) lua_pushfstring(L, "%s: %s: %s", uv_err_name(err), uv_strerror(err), detail);
  else lua_pushfstring(L, "%s: %s", uv_err_name(err), uv_strerror(err));
}

int coru_fail(lua_State *L, int err, const char *detail) {
  lua_pushnil(L);
  coru_push_errmsg(L, err, detail);
  lua_pushstring(L, uv_err_name(err));
  return 3;
}

int coru_fail_str(lua_State *L, const char *msg, const char *name) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  if (!name) return 2;
  lua_pushstring(L, name);
  return 3;
}

int coru_shape(lua_State *L, int n) {
  if (n <= 3) {
    if (n == 0) return 0;   /* nothing: the wrapper's n is nil */
    lua_checkstack(L, 1);
    lua_pushinteger(L, n);
    lua_insert(L, -n - 1);
    return n + 1;
  }
  lua_checkstack(L, 2);
  lua_createtable(L, n, 0);
  lua_insert(L, -n - 1);
  for (int i = n; i >= 1; i--) lua_rawseti(L, -i - 1, i);   /* vi is at the top */
  lua_pushinteger(L, n);
  lua_insert(L, -2);
  return 2;
}

/* A yielding C function as its boot.lua wrapper calls it: what it returns
 * at once is shaped here; a suspension (lua_yield: < 0) is shaped by the
 * scheduler when it resumes the task. Upvalue: the function. */
static int shaped_call(lua_State *L) {
  lua_CFunction f = *(lua_CFunction *)lua_touserdata(L, lua_upvalueindex(1));
  int n = f(L);
  return n <= 0 ? n : coru_shape(L, n);
}

void coru_setfuncs(lua_State *L, const coru_Reg *r) {
  for (; r->name; r++) {
    if (r->flags & CORU_YIELDS) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->wrap_ref);
      if (r->flags & CORU_ALWAYS_YIELDS) {
        lua_pushcfunction(L, r->fn);
      } else {
        *(lua_CFunction *)lua_newuserdata(L, sizeof(lua_CFunction)) = r->fn;
        lua_pushcclosure(L, shaped_call, 1);
      }
      lua_pushstring(L, r->name);
      if (r->flags >> 4) lua_pushinteger(L, (r->flags >> 4) - 1); else lua_pushnil(L);
      lua_call(L, 3, 1);
    } else {
      lua_pushcfunction(L, r->fn);
    }
    lua_setfield(L, -2, r->name);
  }
}

/* ---------------------------------------------------------- errors */

static const char *errstring(lua_State *L, int idx) {
  const char *s = lua_tostring(L, idx);
  if (s) return s;
  if (luaL_callmeta(L, idx, "__tostring") && lua_isstring(L, -1)) {
    lua_replace(L, idx < 0 ? idx - 1 : idx);
    return lua_tostring(L, idx);
  }
  return lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
}

/* The default handler: message and traceback on stderr; exit status 1. */
static int default_on_error(lua_State *L) {
  const char *msg = errstring(L, 1);
  const char *tb = lua_tostring(L, 2);
  fprintf(stderr, "coru: unhandled error: %s\n%s%s", msg, tb ? tb : "", tb ? "\n" : "");
  fflush(stderr);
  coru_R->exit_status = 1;
  return 0;
}


/* Message handler of callbacks: keeps the error, remembers the traceback. */
static int msgh(lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
  lua_rawseti(L, LUA_REGISTRYINDEX, coru_R->tb_ref);   /* one slot, reused */
  return 1;
}

void coru_report(lua_State *L, const char *traceback) {
  coru_rt *R = coru_R;
  lua_State *C = R->L;
  lua_checkstack(C, 4);
  if (L != C) lua_xmove(L, C, 1);
  int err = lua_gettop(C);
  if (R->on_error_ref == LUA_NOREF) lua_pushcfunction(C, default_on_error);
  else lua_rawgeti(C, LUA_REGISTRYINDEX, R->on_error_ref);
  lua_pushvalue(C, err);
  if (traceback) lua_pushstring(C, traceback); else lua_pushnil(C);
  coru_task *saved = R->current;
  R->current = NULL;             /* the handler is a callback: outside any task */
  int st = lua_pcall(C, 2, 0, 0);
  R->current = saved;
  if (st != 0) {
    /* the handler itself failed: say both, never recurse */
    fprintf(stderr, "coru: error in on_error handler: %s\ncoru: original error: %s\n",
            errstring(C, -1), errstring(C, err));
    R->exit_status = 1;
  }
  lua_settop(C, err - 1);
}

int coru_pcall(int nargs) {
  lua_State *L = coru_R->L;
  int fidx = lua_gettop(L) - nargs;
  lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->msgh_ref);   /* made once: no allocation per callback */
  lua_insert(L, fidx);
  coru_task *saved = coru_R->current;
  coru_R->current = NULL;        /* callbacks are outside any task */
  int st = lua_pcall(L, nargs, 0, fidx);
  coru_R->current = saved;
  if (st != 0) {
    lua_remove(L, fidx);                            /* the handler */
    lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->tb_ref);      /* err, traceback */
  } else {
    lua_settop(L, fidx - 1);
  }
  return st;
}

int coru_callback(int nargs) {
  lua_State *L = coru_R->L;
  int base = lua_gettop(L) - nargs - 1;
  int st = coru_pcall(nargs);
  if (st != 0) {
    const char *tb = lua_tostring(L, -1);
    lua_pushvalue(L, -2);
    coru_report(L, tb);
  }
  lua_settop(L, base);
  return st == 0;
}

/* ---------------------------------------------------------- shutdown */

static void walk_close(uv_handle_t *h, void *arg) {
  lua_State *L = arg;
  if (uv_is_closing(h)) return;
  coru_handle *ch = h->data;
  if (ch && ch->type) coru_handle_close(L, ch);
  else uv_close(h, NULL);
}

/* Close every handle, let the close callbacks run, close the loop. */

void coru_shutdown(void) {
  coru_rt *R = coru_R;
  if (!R || !R->loop) return;
  R->shutting_down = 1;   /* no task or callback is resumed by late completions */
  coru_flush_reports();
  coru_sched_close();
  coru_deadline_close_all();
  uv_walk(R->loop, walk_close, R->L);
  uv_run(R->loop, UV_RUN_DEFAULT);
  if (uv_loop_close(R->loop) != 0) {
    uv_walk(R->loop, walk_close, R->L);
    uv_run(R->loop, UV_RUN_DEFAULT);
    uv_loop_close(R->loop);
  }
  R->loop = NULL;
}

/* The runtime sentinel's __gc: lua_close in plain LuaJIT. */
static int rt_gc(lua_State *L) {
  (void)L;
  coru_shutdown();
  coru_R = NULL;
  return 0;
}

static int l_exit(lua_State *L) {
  int status = 0;
  if (lua_isboolean(L, 1)) status = lua_toboolean(L, 1) ? 0 : 1;
  else status = (int)luaL_optinteger(L, 1, coru_R ? coru_R->exit_status : 0);
  fflush(NULL);
  /* Close what we can; the loop cannot run from here (uv_run is not
   * reentrant), so memory stays reachable until the process ends. */
  if (coru_R && coru_R->loop) {
    coru_sched_close();
    uv_walk(coru_R->loop, walk_close, coru_R->L);
  }
  exit(status);
  return 0;
}

/* ---------------------------------------------------------- module */

/* Lazy submodules: coru.tcp, coru.fs, coru.jsonl, ... come from
 * coru.<name> on first use, but only for names that are submodules: one in
 * package.preload, or a file coru/<name>.lua on package.path. Any other
 * field reads as nil, so a typo fails as Lua's "attempt to call a nil
 * value (field 'slep')" and `if coru.json then` is a plain test. */
static int lazy_index(lua_State *L) {
  size_t len;
  const char *k = lua_tolstring(L, 2, &len);
  if (!k || lua_type(L, 2) != LUA_TSTRING || len == 0 || len > 64) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = k[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return 0;
  }
  int top = lua_gettop(L);
  lua_pushfstring(L, "coru.%s", k);
  int modname = lua_gettop(L);
  int found = 0;
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "loaded");
    if (lua_istable(L, -1)) { lua_pushvalue(L, modname); lua_rawget(L, -2); found = !lua_isnil(L, -1); lua_pop(L, 1); }
    lua_pop(L, 1);
    lua_getfield(L, -1, "preload");
    if (!found && lua_istable(L, -1)) { lua_pushvalue(L, modname); lua_rawget(L, -2); found = !lua_isnil(L, -1); lua_pop(L, 1); }
    lua_pop(L, 1);
    lua_getfield(L, -1, "searchpath");
    if (!found && lua_isfunction(L, -1)) {
      lua_pushvalue(L, modname);
      lua_getfield(L, -3, "path");
      if (lua_isstring(L, -1) && lua_pcall(L, 2, 1, 0) == 0) found = lua_isstring(L, -1);
    }
  }
  lua_settop(L, modname);
  if (!found) { lua_settop(L, top); return 0; }
  lua_getglobal(L, "require");
  lua_insert(L, modname);
  lua_call(L, 1, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, 1, k);
  return 1;
}

typedef void (*opener)(lua_State *L);
#define WEAK(name) extern void coru_open_##name(lua_State *L) __attribute__((weak));
WEAK(stream) WEAK(tcp) WEAK(pipe) WEAK(tty) WEAK(udp) WEAK(dns) WEAK(fs)
WEAK(process) WEAK(signal) WEAK(work) WEAK(misc) WEAK(tls) WEAK(dmp) WEAK(luv)

int luaopen_coru(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "coru.module");
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  if (coru_R) return luaL_error(L, "coru: one runtime per process (already loaded in another Lua state)");
  coru_rt *R = &runtime;
  memset(R, 0, sizeof *R);   /* nothing of a previous runtime survives */
  R->on_error_ref = R->boot_ref = R->wrap_ref = LUA_NOREF;
  R->msgh_ref = R->tb_ref = R->live_ref = R->unobserved_ref = LUA_NOREF;
  R->task_mt_ref = R->cancel_mt_ref = R->chan_mt_ref = R->taskco_ref = LUA_NOREF;
  R->loop = uv_default_loop();
  if (loop_in_use == R->loop && uv_loop_alive(R->loop))
    return luaL_error(L, "coru: the loop of a previous runtime is still alive");
  loop_in_use = R->loop;
  /* the callback thread: never yields, anchored for ever */
  R->L = lua_newthread(L);
  luaL_ref(L, LUA_REGISTRYINDEX);
  coru_R = R;

  /* boot.lua: (SCHED, ERR, current) -> boot table */
  if (luaL_loadbuffer(L, coru_boot_lua, sizeof(coru_boot_lua) - 1, "=coru.boot") != 0)
    return lua_error(L);
  lua_pushlightuserdata(L, coru_SCHED);
  lua_pushlightuserdata(L, coru_ERR);
  lua_pushcfunction(L, coru_l_current);
  lua_call(L, 3, 1);
  lua_getfield(L, -1, "wrap");
  R->wrap_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  R->boot_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_pushcfunction(L, msgh);
  coru_R->msgh_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 0);
  coru_R->tb_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_newtable(L);                      /* the module */
  int M = lua_gettop(L);
  lua_getfield(L, -2, "await");
  lua_setfield(L, M, "await");
  coru_open_sched(L);
  coru_open_handle(L);
  coru_open_timer(L);
  opener extra[] = {coru_open_stream, coru_open_tcp, coru_open_pipe, coru_open_tty,
                    coru_open_udp, coru_open_dns, coru_open_fs, coru_open_process,
                    coru_open_signal, coru_open_work, coru_open_misc, coru_open_tls,
                    coru_open_dmp, coru_open_luv};
  for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
    if (extra[i]) { extra[i](L); lua_settop(L, M); }
  static const coru_Reg rt_funcs[] = {
    {"exit", l_exit, 0},
    {NULL, NULL, 0}
  };
  coru_setfuncs(L, rt_funcs);
  lua_pushliteral(L, CORU_VERSION);
  lua_setfield(L, M, "version");

  /* lazy submodules */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lazy_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, M);

  /* the sentinel whose __gc shuts the runtime down at lua_close */
  lua_newuserdata(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, rt_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "coru.runtime");

  lua_pushvalue(L, M);
  lua_setfield(L, LUA_REGISTRYINDEX, "coru.module");
  return 1;
}
