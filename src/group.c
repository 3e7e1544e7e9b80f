/*
 * group.c - coru.all, coru.any and coru.timeout: a task waiting on a group
 * of tasks (observers of each) or on a deadline.
 */
#include <string.h>
#include <stdlib.h>
#include "coru_sched.h"
#include "check.h"

/* --------------------------------------------------------- all, any, timeout */

/* A group: a parent waiting on several tasks. Userdata; its env table holds
 * the results table. Observers are C closures (group, index). */
enum { G_ALL, G_ANY, G_TIMEOUT };
typedef struct group {
  coru_task *parent;
  int mode, total, count, done;
  coru_deadline *dl;
  int child_ref;   /* timeout: the subtask */
} group;

static void group_finish(lua_State *L, group *g) {
  g->done = 1;
  g->parent = NULL;
  if (g->dl) { coru_deadline_stop(g->dl); g->dl = NULL; }
  coru_unref(L, &g->child_ref);
}

static void group_cancel(coru_cont *c) {
  coru_task *T = c->task;
  group *g = T->aux;
  T->aux = NULL;
  if (!g) return;
  lua_State *L = coru_R->L;
  if (g->mode == G_TIMEOUT && g->child_ref != LUA_NOREF) {
    /* the parent is cancelled: so is its subtask */
    lua_pushcfunction(L, l_task_cancel);
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->child_ref);
    coru_callback(1);
  }
  group_finish(L, g);
}

/* observer(err, results...) with upvalues (group userdata, index) */
static int group_observer(lua_State *L) {
  group *g = lua_touserdata(L, lua_upvalueindex(1));
  int idx = (int)lua_tointeger(L, lua_upvalueindex(2));
  int n = lua_gettop(L);
  if (g->done || !g->parent) {
    /* the group is over: a later failure must not vanish */
    if (!lua_isnil(L, 1) && !is_cancel(L, 1) && g->mode != G_TIMEOUT) {
      lua_pushvalue(L, 1);
      coru_report(L, NULL);
    }
    return 0;
  }
  coru_task *P = g->parent;
  if (!cont_current(&P->wait)) { group_finish(L, g); return 0; }
  lua_State *co = P->co;
  if (!lua_isnil(L, 1)) {          /* failure: raise in the parent */
    group_finish(L, g);
    coru_cont_begin(&P->wait);
    lua_pushlightuserdata(co, coru_ERR);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    P->carry_str = lua_isstring(co, -1);
    coru_cont_ok(&P->wait, 2);
    return 0;
  }
  if (g->mode == G_ALL) {
    lua_getfenv(L, lua_upvalueindex(1));
    lua_createtable(L, n - 1, 1);
    for (int i = 2; i <= n; i++) { lua_pushvalue(L, i); lua_rawseti(L, -2, i - 1); }
    lua_pushinteger(L, n - 1); lua_setfield(L, -2, "n");
    lua_rawseti(L, -2, idx);
    if (++g->count < g->total) return 0;
    group_finish(L, g);
    coru_cont_begin(&P->wait);
    lua_xmove(L, co, 1);             /* the results table */
    coru_cont_ok(&P->wait, 1);
    return 0;
  }
  group_finish(L, g);
  coru_cont_begin(&P->wait);
  lua_checkstack(co, n + 2);
  if (g->mode == G_ANY) lua_pushinteger(co, idx);
  lua_xmove(L, co, n - 1);
  coru_cont_ok(&P->wait, n - 1 + (g->mode == G_ANY));
  return 0;
}

static group *group_new(lua_State *L, int mode, int total) {
  group *g = lua_newuserdata(L, sizeof *g);
  memset(g, 0, sizeof *g);
  g->mode = mode; g->total = total; g->child_ref = LUA_NOREF;
  lua_createtable(L, total, 1);
  lua_pushinteger(L, total); lua_setfield(L, -2, "n");
  lua_setfenv(L, -2);
  return g;
}

static void group_watch(lua_State *L, int gidx, coru_task *U, int i) {
  lua_pushvalue(L, gidx);
  lua_pushinteger(L, i);
  lua_pushcclosure(L, group_observer, 2);
  push_task(L, U);
  add_observer(L, U, -2);
  lua_pop(L, 2);
}

/* Check that the caller may suspend before anything is armed (this
 * raises otherwise), so an error cannot leave observers or deadlines. */
static coru_task *group_prepare(lua_State *L, const char *fname) {
  coru_task *T = enter_task(L, fname);
  wait_init(T, group_cancel);
  return T;
}

static int group_wait(lua_State *L, coru_task *T, group *g) {
  T->aux = g;
  g->parent = T;
  return coru_cont_yield(L, &T->wait, 0);
}

/* all/any: tasks that already ended settle what they can at once, without
 * suspending; the others get an observer and the caller waits. */
static int l_all_any(lua_State *L, int mode, const char *fname) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)lua_objlen(L, 1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    coru_task *U = totask(L, -1);
    if (!U) return luaL_error(L, "%s: element %d is not a task", fname, i);
    if (U == coru_R->current) return luaL_error(L, "%s: a task cannot await itself (element %d)", fname, i);
    lua_pop(L, 1);
  }
  if (mode == G_ANY && n == 0) return luaL_error(L, "%s: no tasks", fname);
  lua_settop(L, 1);
  group *g = group_new(L, mode, n);     /* at 2 */
  lua_getfenv(L, 2);                    /* 3: results */
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    coru_task *U = totask(L, -1);
    lua_pop(L, 1);
    if (!is_finished(U)) continue;
    U->observed = 1;
    int base = lua_gettop(L);
    int k = push_outcome(L, U);
    if (k < 0) return lua_error(L);
    if (mode == G_ANY) {
      lua_pushinteger(L, i);
      lua_insert(L, base + 1);
      return k + 1;
    }
    lua_createtable(L, k, 1);
    lua_insert(L, base + 1);
    for (int j = k; j >= 1; j--) lua_rawseti(L, base + 1, j);
    lua_pushinteger(L, k);
    lua_setfield(L, -2, "n");
    lua_rawseti(L, 3, i);
    g->count++;
  }
  if (g->count == n) return 1;          /* all settled */
  coru_task *T = group_prepare(L, fname);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    coru_task *U = totask(L, -1);
    lua_pop(L, 1);
    if (!is_finished(U)) group_watch(L, 2, U, i);
  }
  return group_wait(L, T, g);
}

static int l_all(lua_State *L) { return l_all_any(L, G_ALL, "coru.all"); }
static int l_any(lua_State *L) { return l_all_any(L, G_ANY, "coru.any"); }

static void timeout_fire(void *data) {
  group *g = data;
  g->dl = NULL;
  coru_task *P = g->parent;
  lua_State *L = coru_R->L;
  if (g->done || !P) return;
  lua_State *co = coru_cont_begin(&P->wait);
  if (g->child_ref != LUA_NOREF) {
    lua_pushcfunction(L, l_task_cancel);
    lua_rawgeti(L, LUA_REGISTRYINDEX, g->child_ref);
    lua_pushliteral(L, "timeout");
    group_finish(L, g);
    coru_callback(2);
  } else {
    group_finish(L, g);
  }
  if (!co) return;
  lua_pushnil(co);
  lua_pushliteral(co, "timeout");
  coru_cont_ok(&P->wait, 2);
}

static int l_timeout(lua_State *L) {
  uint64_t ms = coru_check_ms(L, 1, "timeout");
  if (!coru_is_callable(L, 2)) luaL_typerror(L, 2, "function");
  coru_task *T = group_prepare(L, "coru.timeout");
  int nargs = lua_gettop(L) - 2;
  coru_task *U = spawn_top(L, nargs);      /* task replaces fn at 2 */
  lua_settop(L, 2);
  U->observed = 1;
  if (is_finished(U)) return raise_outcome(L, U);
  group *g = group_new(L, G_TIMEOUT, 1);   /* at 3 */
  lua_pushvalue(L, 2);
  g->child_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* the group lives as long as U runs: its observer closure holds it */
  group_watch(L, 3, U, 1);
  g->dl = coru_deadline_start(ms, timeout_fire, g);
  return group_wait(L, T, g);
}

/* --------------------------------------------------------------- open */

static const coru_Reg group_funcs[] = {
  {"all", l_all, CORU_YIELDS},
  {"any", l_any, CORU_YIELDS},
  {"timeout", l_timeout, CORU_YIELDS},
  {NULL, NULL, 0}
};

void coru_open_group(lua_State *L) { coru_setfuncs(L, group_funcs); }
