/*
 * task.c - the Lua task API: spawn, inline, the task methods (await, next,
 * cancel, status), coru.tasks, current, is_cancelled, on_error and run. The
 * resume loop they drive is in sched.c.
 */
#include <string.h>
#include <stdlib.h>
#include "coru_sched.h"
#include "check.h"

/* --------------------------------------------------------------- creation */

coru_task *task_new(lua_State *L) {
  coru_task *T = lua_newuserdata(L, sizeof *T);
  memset(T, 0, sizeof *T);
  T->wait.cb_ref = T->aux_ref = T->cancel_ref = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->task_mt_ref);
  lua_setmetatable(L, -2);
  lua_createtable(L, 2, 0);
  T->co = lua_newthread(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->taskco_ref);
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_rawseti(L, -2, 1);
  lua_setfenv(L, -2);
  lua_pushvalue(L, -1);
  T->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  T->status = CORU_SUSPENDED;
  T->what = "start (queued)";
  T->tnext = coru_R->tasks_head;           /* anchored by self_ref while listed */
  if (T->tnext) T->tnext->tprev = T;
  coru_R->tasks_head = T;
  return T;
}

/* Function and nargs arguments on top of L: make a task, leave it where
 * the function was, start it. */
coru_task *spawn_top(lua_State *L, int nargs) {
  coru_task *T = task_new(L);
  lua_insert(L, -(nargs + 2));
  lua_xmove(L, T->co, nargs + 1);
  wake(T, nargs, 1);
  return T;
}

static int l_spawn(lua_State *L) {
  if (!coru_is_callable(L, 1)) luaL_typerror(L, 1, "function");
  spawn_top(L, lua_gettop(L) - 1);
  return 1;
}

static int inline_call(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  spawn_top(L, lua_gettop(L) - 1);
  return 1;
}

static int l_inline(lua_State *L) {
  if (!coru_is_callable(L, 1)) luaL_typerror(L, 1, "function");
  lua_settop(L, 1);
  lua_pushcclosure(L, inline_call, 1);
  return 1;
}

static int inline_cb_call(lua_State *L) {
  int hascb = !lua_isnoneornil(L, 1);
  if (hascb && !coru_is_callable(L, 1)) luaL_typerror(L, 1, "function");
  lua_pushvalue(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_replace(L, 1);                       /* fn, args..., cb */
  lua_insert(L, 1);                        /* cb, fn, args... */
  coru_task *T = task_new(L);
  lua_insert(L, 2);                        /* cb, task, fn, args... */
  lua_xmove(L, T->co, lua_gettop(L) - 2);
  if (hascb) add_observer(L, T, 1);
  wake(T, lua_gettop(T->co) - 1, 1);
  return 0;
}

static int l_inline_callbacks(lua_State *L) {
  if (!coru_is_callable(L, 1)) luaL_typerror(L, 1, "function");
  lua_settop(L, 1);
  lua_pushcclosure(L, inline_cb_call, 1);
  return 1;
}

/* ---------------------------------------------------------- task methods */

int raise_outcome(lua_State *L, coru_task *T) {
  int n = push_outcome(L, T);
  if (n < 0) return lua_error(L);
  return n;
}

int l_task_await(lua_State *L) {
  coru_task *U = checktask(L, 1);
  coru_task *T = coru_R->current;
  U->observed = 1;
  if (is_finished(U)) {
    if (T && U->status == CORU_FAILED && lua_isstring(U->co, 3)) T->carry_str = 1;
    return raise_outcome(L, U);
  }
  coru_enter(L, 0, "task:await", CORU_TASK_ONLY);
  if (T == U) return luaL_error(L, "task:await: a task cannot await itself");
  push_task(L, T);
  add_observer(L, U, -1);
  lua_pop(L, 1);
  wait_init(T, cancel_awaiting);
  T->aux = U;
  return coru_cont_yield(L, &T->wait, 0);
}

static int l_task_next(lua_State *L) {
  coru_task *T = checktask(L, 1);
  if (!coru_is_callable(L, 2)) luaL_typerror(L, 2, "function");
  if (is_finished(T)) {
    T->observed = 1;
    lua_State *C = coru_R->L;
    lua_pushvalue(L, 2);
    lua_xmove(L, C, 1);
    coru_callback(push_cb_outcome(C, T));
  } else {
    add_observer(L, T, 2);
  }
  lua_settop(L, 1);
  return 1;
}

static const char *const status_names[] = {"?", "running", "suspended", "done", "failed", "cancelled"};

static int l_task_status(lua_State *L) {
  lua_pushstring(L, status_names[checktask(L, 1)->status]);
  return 1;
}

int l_task_cancel(lua_State *L) {
  coru_task *T = checktask(L, 1);
  lua_settop(L, 2);
  if (is_finished(T)) { lua_pushboolean(L, 0); return 1; }
  lua_pushboolean(L, 1);
  /* one is on its way (being delivered, or queued past the depth cap) */
  if (T->waking == 2 || (T->queued && T->nready == 2 && lua_touserdata(T->co, -2) == coru_ERR
                         && is_cancel(T->co, -1)))
    return 1;
  if (T->status == CORU_RUNNING || T->queued || T->dispatching || T->waking) {
    /* Running, or already woken with values it must get (queued, a resume
     * during its yielded function, a completion in progress): raised at
     * its next real suspension, so nothing delivered is lost. */
    lua_pushvalue(L, 2);
    coru_unref(L, &T->cancel_ref);
    T->cancel_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    T->cancel_pending = 1;
    return 1;
  }
  /* Suspended on an operation: stop it (may run Lua: a timeout cancels its
   * subtask; T cannot be resumed meanwhile, its wait is gone), then wake T
   * with the error, now as spawn does when the C stack allows. */
  T->waking = 2;
  drop_cont(T);
  T->in_pass = 0;
  lua_State *co = T->co;
  coru_push_cancel_error(L, 2);
  lua_settop(co, 0);
  lua_pushlightuserdata(co, coru_ERR);
  lua_xmove(L, co, 1);
  wake(T, 2, 1);
  return 1;
}

static int l_task_tostring(lua_State *L) {
  coru_task *T = checktask(L, 1);
  lua_pushfstring(L, "coru.task: %p (%s)", (void *)T, status_names[T->status]);
  return 1;
}

/* coru.tasks() -> array (oldest first) of {task =, status =, waits =} for
 * every task not finished: what a suspended task waits on, for debugging
 * a hang (and the specs' leak gate). */
static int l_tasks(lua_State *L) {
  int n = 0;
  for (coru_task *T = coru_R->tasks_head; T; T = T->tnext) n++;
  lua_createtable(L, n, 0);
  int i = n;
  for (coru_task *T = coru_R->tasks_head; T; T = T->tnext, i--) {
    lua_createtable(L, 0, 3);
    push_task(L, T);
    lua_setfield(L, -2, "task");
    lua_pushstring(L, status_names[T->status]);
    lua_setfield(L, -2, "status");
    if (T->status == CORU_SUSPENDED) {
      if (T->queued || T->waking) lua_pushliteral(L, "(woken: about to run)");
      else lua_pushstring(L, T->what ? T->what : "?");
      lua_setfield(L, -2, "waits");
    }
    lua_rawseti(L, -2, i);
  }
  return 1;
}

int coru_l_current(lua_State *L) {
  if (!coru_R->current) return 0;
  push_task(L, coru_R->current);
  return 1;
}

static int l_is_cancelled(lua_State *L) {
  lua_pushboolean(L, is_cancel(L, 1));
  return 1;
}

static int l_cancel_tostring(lua_State *L) {
  lua_getfield(L, 1, "reason");
  if (lua_isnil(L, -1)) lua_pushliteral(L, "cancelled");
  else if (lua_isstring(L, -1)) lua_pushfstring(L, "cancelled: %s", lua_tostring(L, -1));
  else lua_pushfstring(L, "cancelled: (%s)", luaL_typename(L, -1));
  return 1;
}

/* ---------------------------------------------------------------- on_error */

static int l_on_error(lua_State *L) {
  if (!lua_isnoneornil(L, 1) && !coru_is_callable(L, 1)) luaL_typerror(L, 1, "function");
  coru_rt *R = coru_R;
  if (R->on_error_ref == LUA_NOREF) lua_pushnil(L);
  else lua_rawgeti(L, LUA_REGISTRYINDEX, R->on_error_ref);
  coru_unref(L, &R->on_error_ref);
  if (!lua_isnoneornil(L, 1)) {
    lua_pushvalue(L, 1);
    R->on_error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 1;
}

/* ----------------------------------------------------------------- run */

/* coru.run(): no function, luv's uv.run(): run the loop until no referenced
 * handle or request is left. Only where no loop is running. */
static int run_loop(lua_State *L, coru_rt *R) {
  if (R->current)
    return luaL_error(L, "coru.run: the loop is already running (inside a task); give it a function");
  if (R->loop_running || R->depth)
    return luaL_error(L, "coru.run: cannot run the loop from inside a callback");
  R->loop_running = 1;
  uv_run(R->loop, UV_RUN_DEFAULT);
  R->loop_running = 0;
  coru_after_run(R);
  coru_flush_reports();
  return 0;
}

static int l_run(lua_State *L) {
  coru_rt *R = coru_R;
  if (lua_gettop(L) == 0) return run_loop(L, R);
  if (!coru_is_callable(L, 1)) luaL_typerror(L, 1, "function");
  if (R->current) {
    /* inside a task (the host): spawn and await */
    coru_enter(L, 0, "coru.run", 0);
    spawn_top(L, lua_gettop(L) - 1);
    lua_settop(L, 1);
    return l_task_await(L);
  }
  if (R->loop_running || R->depth)
    return luaL_error(L, "coru.run: cannot run the loop from inside a callback");
  coru_task *T = spawn_top(L, lua_gettop(L) - 1);
  lua_settop(L, 1);
  T->observed = 1;
  while (!is_finished(T)) {
    R->loop_running = 1;
    int alive = uv_run(R->loop, UV_RUN_ONCE);
    R->loop_running = 0;
    coru_after_run(R);
    if (!alive && !is_finished(T) && !uv_loop_alive(R->loop)) {
      /* nothing can wake it: cancel it so it unwinds, then say so */
      lua_pushcfunction(L, l_task_cancel);
      lua_pushvalue(L, 1);
      lua_pushliteral(L, "deadlock");
      lua_call(L, 2, 0);
      coru_flush_reports();
      return luaL_error(L, "coru.run: the task is suspended and nothing can wake it (deadlock)");
    }
  }
  coru_flush_reports();
  lua_settop(L, 1);
  return raise_outcome(L, T);
}

/* Host: function and nargs on L; run it as the main task until it and the
 * loop are done. Returns the exit status. */
int coru_run_main(lua_State *L, int nargs) {
  coru_rt *R = coru_R;
  int base = lua_gettop(L) - nargs - 1;
  coru_task *T = task_new(L);
  lua_insert(L, -(nargs + 2));
  lua_xmove(L, T->co, nargs + 1);
  T->observed = 1;
  run_task(T, nargs);
  /* One uv_run(DEFAULT) instead of UV_RUN_ONCE per iteration (each ONCE
   * call costs an extra uv__update_time + uv__run_timers + entry/exit,
   * ~85 instructions per iteration); finish() stops the loop if the main
   * task fails. */
  if (T->status != CORU_FAILED && T->status != CORU_CANCELLED &&
      !(T->status == CORU_DONE && R->main_only)) {
    coru_R->main_task = T;
    R->loop_running = 1;
    uv_run(R->loop, UV_RUN_DEFAULT);
    R->loop_running = 0;
    coru_R->main_task = NULL;
    coru_after_run(R);
  }
  coru_flush_reports();
  int status = R->exit_status;
  if (T->status == CORU_FAILED || T->status == CORU_CANCELLED) {
    lua_State *co = T->co;
    /* error() with no value: status 1 and nothing printed, as luajit does
     * (busted ends a failed run that way) */
    if (lua_isnil(co, 1)) { lua_settop(L, base); return 1; }
    lua_pushvalue(co, 1);
    lua_pushvalue(co, 2);
    lua_xmove(co, L, 2);        /* formatted on the caller's stack: co is dead */
    const char *msg = coru_safe_tostring(L, -2);
    fprintf(stderr, "coru: %s\n%s\n", msg, lua_tostring(L, -2));
    status = 1;
  } else if (T->status != CORU_DONE) {
    fprintf(stderr, "coru: the main task is suspended and nothing can wake it (deadlock)\n");
    status = 1;
  }
  lua_settop(L, base);
  return status;
}

/* --------------------------------------------------------------- open */

static const coru_Reg task_methods[] = {
  {"await", l_task_await, CORU_YIELDS | CORU_ARITY(1)},
  {"next", l_task_next, 0},
  {"cancel", l_task_cancel, 0},
  {"status", l_task_status, 0},
  {NULL, NULL, 0}
};

static const coru_Reg task_funcs[] = {
  {"spawn", l_spawn, 0},
  {"inline", l_inline, 0},
  {"inline_callbacks", l_inline_callbacks, 0},
  {"current", coru_l_current, 0},
  {"tasks", l_tasks, 0},
  {"is_cancelled", l_is_cancelled, 0},
  {"on_error", l_on_error, 0},
  {"run", l_run, CORU_YIELDS},
  {NULL, NULL, 0}
};

int make_mt(lua_State *L, const char *name, const coru_Reg *methods, lua_CFunction tostr) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  coru_setfuncs(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, tostr);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "coru");
  lua_setfield(L, -2, "__metatable");
  lua_pushvalue(L, -1);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

void coru_open_task(lua_State *L) {
  coru_rt *R = coru_R;
  coru_R->task_mt_ref = make_mt(L, "coru.task", task_methods, l_task_tostring);
  R->task_mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, l_cancel_tostring);
  lua_setfield(L, -2, "__tostring");
  R->cancel_mt = lua_topointer(L, -1);
  coru_R->cancel_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  coru_setfuncs(L, task_funcs);
}
