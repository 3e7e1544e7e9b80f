/*
 * rt.c - the runtime: the one struct holding every piece of process state
 * (coru_R), the callback thread's calls, error reporting (on_error) and the
 * registration helpers every family uses. The module opener and shutdown
 * are in open.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "coru.h"
#include "check.h"

coru_rt *coru_R;
char coru_SCHED[1], coru_ERR[1], coru_CALLBACK[1];

static coru_rt runtime;
static uv_loop_t *loop_in_use;

/* A fresh runtime on the default loop (nothing of a previous one
 * survives), or NULL if the loop of a previous runtime is still alive. */
coru_rt *coru_rt_new(void) {
  coru_rt *R = &runtime;
  memset(R, 0, sizeof *R);
  R->on_error_ref = R->boot_ref = R->wrap_ref = LUA_NOREF;
  R->msgh_ref = R->tb_ref = R->live_ref = R->unobserved_ref = LUA_NOREF;
  R->task_mt_ref = R->cancel_mt_ref = R->chan_mt_ref = R->taskco_ref = LUA_NOREF;
  coru_fds_snapshot(0);
  R->loop = uv_default_loop();
  coru_fds_snapshot(1);
  if (loop_in_use == R->loop && uv_loop_alive(R->loop)) return NULL;
  loop_in_use = R->loop;
  return R;
}

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

/* The end of a call whose success has no value (luv's rule: 0). */
int coru_result(lua_State *L, int r, const char *detail) {
  if (r < 0) return coru_fail(L, r, detail);
  lua_pushinteger(L, 0);
  return 1;
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

static void setfn(lua_State *L, const char *name, lua_CFunction fn, int flags) {
  if (flags & CORU_YIELDS) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->wrap_ref);
    if (flags & CORU_ALWAYS_YIELDS) {
      lua_pushcfunction(L, fn);
    } else {
      *(lua_CFunction *)lua_newuserdata(L, sizeof(lua_CFunction)) = fn;
      lua_pushcclosure(L, shaped_call, 1);
    }
    lua_pushstring(L, name);
    if (flags >> 4) lua_pushinteger(L, (flags >> 4) - 1); else lua_pushnil(L);
    lua_call(L, 3, 1);
  } else {
    lua_pushcfunction(L, fn);
  }
  lua_setfield(L, -2, name);
}

void coru_setfuncs(lua_State *L, const coru_Reg *r) {
  for (; r->name; r++) setfn(L, r->name, r->fn, r->flags);
}

void coru_setfns(lua_State *L, const coru_Fn *f, int which) {
  for (; f->fn; f++) {
    const char *name = which & CORU_FLAT_NAMES ? f->flat : f->method;
    if (!name) continue;
    if (which & CORU_KEEP) {
      lua_getfield(L, -1, name);
      int had = !lua_isnil(L, -1);
      lua_pop(L, 1);
      if (had) continue;
    }
    setfn(L, name, f->fn, f->flags);
  }
}

/* ---------------------------------------------------------- errors */

/* Formatting an error never raises (a __tostring may). Pushes the string. */
static const char *errstring(lua_State *L, int idx) { return coru_safe_tostring(L, idx); }

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
int coru_msgh(lua_State *L) {
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
  if (R->exit_pending) { lua_settop(C, err - 1); return; }   /* a callback ended by coru.exit */
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
    const char *herr = errstring(C, -1);
    const char *orig = errstring(C, err);
    fprintf(stderr, "coru: error in on_error handler: %s\ncoru: original error: %s\n", herr, orig);
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
