/*
 * sched.c - tasks: coroutines owned by the scheduler (Twisted's
 * inlineCallbacks, in C).
 *
 * A task is a userdata (struct coru_task) whose env table holds its
 * coroutine at [1] and its observers at [2..]. It is anchored in the
 * registry (self_ref) until it ends. The resume loop (task_step) resumes
 * the coroutine and looks at what it yielded:
 *
 *   SCHED alone          a native operation set T->cont and waits for it;
 *   SCHED, payload...    a protocol yield from an inner coroutine;
 *   f, args...           call f(args..., resume) on the callback thread;
 *   task                 await that task;
 *   anything else        resume at once with the same values.
 *
 * Wakeups that happen while the scheduler is on the C stack (depth > 0) are
 * queued and drained when the outermost step returns, so chains of tasks
 * waking each other, or a resume called synchronously, never deepen the C
 * stack.
 */
#include <string.h>
#include <stdlib.h>
#include "coru.h"

coru_rt *coru_R;
char coru_SCHED[1], coru_ERR[1], coru_CALLBACK[1];

/* Next-iteration work (coru.pass, reports) runs in an idle handle (which
 * also keeps the poll phase from blocking). A pass is tagged with the count
 * of idle runs so far and served only by a later run, so a poll phase always
 * lies between the suspension and the resume, whichever phase it came from. */

static void task_step(coru_task *T, int nargs);
static void tick_start(void);

/* ------------------------------------------------------------ utilities */

static coru_task *totask(lua_State *L, int idx) {
  coru_task *T = lua_touserdata(L, idx);
  if (T && lua_getmetatable(L, idx)) {
    const void *mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    if (mt == coru_R->task_mt) return T;
  }
  return NULL;
}

static coru_task *checktask(lua_State *L, int idx) {
  coru_task *T = totask(L, idx);
  if (!T) luaL_typerror(L, idx, "coru.task");
  return T;
}

static int is_finished(const coru_task *T) { return T->status >= CORU_DONE; }

/* Push T's userdata (valid while T is not finished, or when the caller
 * holds it some other way). */
static void push_task(lua_State *L, coru_task *T) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, T->self_ref);
}

void coru_push_cancel_error(lua_State *L, int reason_idx) {
  if (reason_idx < 0) reason_idx = lua_gettop(L) + reason_idx + 1;
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, reason_idx);
  lua_setfield(L, -2, "reason");
  lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->cancel_mt_ref);
  lua_setmetatable(L, -2);
  lua_remove(L, reason_idx);
}

static int is_cancel(lua_State *L, int idx) {
  int r = 0;
  if (lua_istable(L, idx) && lua_getmetatable(L, idx)) {
    r = lua_topointer(L, -1) == coru_R->cancel_mt;
    lua_pop(L, 1);
  }
  return r;
}

/* ----------------------------------------------------------- ready queue */

static void enqueue(coru_task *T, int nargs) {
  T->nready = nargs;
  if (T->queued) return;
  T->queued = 1;
  T->next_ready = NULL;
  if (coru_R->ready_tail) coru_R->ready_tail->next_ready = T;
  else coru_R->ready_head = T;
  coru_R->ready_tail = T;
}

static void drain(void) {
  coru_rt *R = coru_R;
  while (R->ready_head) {
    coru_task *T = R->ready_head;
    R->ready_head = T->next_ready;
    if (!R->ready_head) R->ready_tail = NULL;
    T->queued = 0;
    int n = T->nready;
    T->nready = 0;
    R->depth++;
    task_step(T, n);
    R->depth--;
  }
}

static void run_task(coru_task *T, int nargs) {
  coru_R->depth++;
  task_step(T, nargs);
  coru_R->depth--;
  if (coru_R->depth == 0) drain();
}

/* Past this many nested steps a run-now (spawn, cancel) is queued instead:
 * each level is a lua_resume on the C stack. */
#define CORU_MAX_NEST 100

/* The one way a task is resumed (nargs values on T->co). A wake from the
 * loop runs it now; a wake while the scheduler is busy queues it, unless
 * the caller asks for now (spawn, cancel: "it has started/unwound when
 * this returns") and the C stack is not too deep; a wake of a task whose
 * yielded function is being called leaves the values to the dispatch. */
static void wake(coru_task *T, int nargs, int now) {
  T->cont = NULL;
  T->waking = 0;
  if (T->dispatching) { T->nready = nargs; T->dispatching = 2; return; }
  int depth = coru_R->depth;
  if (depth > 0 && (!now || depth >= CORU_MAX_NEST)) { enqueue(T, nargs); return; }
  run_task(T, nargs);
}

void coru_wake(coru_task *T, int nargs) { wake(T, nargs, 0); }

/* ------------------------------------------------------------------ conts */

static void refuse_suspension(lua_State *L, const char *fname) {
  luaL_error(L, "%s: cannot suspend here: a C function (table.sort, string.gsub, require, "
                "a metamethod, __gc, ...) is between this call and the task; call it from "
                "the task's own code", fname ? fname : "coru");
}

/* Can a suspension from L (the task's coroutine, or a coroutine of the
 * user's that it resumed) reach the scheduler? Both must be able to yield:
 * an inner coroutine resumed from a table.sort comparator can yield, but
 * its pass-through yield of the task cannot. */
static inline int can_suspend(lua_State *L, coru_task *T) {
  return lua_isyieldable(L) && (L == T->co || lua_isyieldable(T->co));
}

/* coru_enter for the scheduler's own waits (no callback slot). */
static inline coru_task *enter_task(lua_State *L, const char *fname) {
  coru_task *T = coru_R->current;
  if (!T) coru_need_task_only(L, fname);   /* no callback form */
  if (!can_suspend(L, T)) refuse_suspension(L, fname);
  T->what = fname;
  return T;
}

int coru_enter(lua_State *L, int cbidx, const char *fname, int flags) {
  if (cbidx && !lua_isnoneornil(L, cbidx)) {
    if (!coru_is_callable(L, cbidx)) luaL_typerror(L, cbidx, "function");
    return CORU_MODE_CB;
  }
  if (!coru_R->current) {
    if (flags & CORU_SYNC_OK) return CORU_MODE_NONE;
    if (flags & CORU_TASK_ONLY) coru_need_task_only(L, fname);
    coru_need_task(L, fname);
  }
  if (!can_suspend(L, coru_R->current)) refuse_suspension(L, fname);
  coru_R->current->what = fname;
  return CORU_MODE_TASK;
}

int coru_cont_init(lua_State *L, coru_cont *c, int cbidx, void (*cancel)(coru_cont *)) {
  c->cancel = cancel;
  c->cb_ref = LUA_NOREF;
  c->task = NULL;
  c->active = 0;
  if (cbidx && !lua_isnoneornil(L, cbidx)) {
    c->cb_ref = coru_ref_cb(L, cbidx);
    return c->mode = CORU_MODE_CB;
  }
  if (coru_R->current) {
    /* Refuse before anything is armed: a yield from here would fail (a
     * Lua function called from C: table.sort comparator, gsub callback,
     * a chunk being required, a metamethod called from C). */
    if (!lua_isyieldable(L)) refuse_suspension(L, NULL);   /* coru_enter said so first */
    c->task = coru_R->current;
    return c->mode = CORU_MODE_TASK;
  }
  return c->mode = CORU_MODE_NONE;
}

/* The scheduler's own waits, after coru_enter said the task may suspend. */
static inline void wait_init(coru_task *T, void (*cancel)(coru_cont *)) {
  coru_cont *c = &T->wait;
  c->cancel = cancel;
  c->task = T;
  c->active = 0;
  c->mode = CORU_MODE_TASK;
}

/* coru_cont_begin + coru_cont_ok for the scheduler's own waits (task
 * mode, no results): claim T's wait if it is still current. */
static inline int wait_claim(coru_task *T) {
  coru_cont *c = &T->wait;
  if (!c->active || T->cont != c || T->status != CORU_SUSPENDED || coru_R->shutting_down) return 0;
  c->active = 0;
  T->cont = NULL;
  T->waking = 1;
  if (T->native != CORU_NATIVE_OWN) {
    lua_settop(T->co, 0);
    lua_checkstack(T->co, 20);
  }
  return 1;
}

/* coru_cont_yield for the scheduler's own waits, after enter_task said the
 * task may suspend from L (no second yieldable check). */
static void drop_cont(coru_task *T);
static inline int wait_yield(lua_State *L, coru_task *T) {
  coru_cont *c = &T->wait;
  c->active = 1;
  if (T->cont && T->cont != c) drop_cont(T);
  T->cont = c;
  if (L == T->co) {
    T->native = CORU_NATIVE_OWN;
    return lua_yield(L, 0);
  }
  lua_pushlightuserdata(L, coru_SCHED);
  return lua_yield(L, 1);
}

/* A cont left behind by a yield that failed (a yield across a C call
 * boundary raises after the operation was armed): stop it. */
static void drop_cont(coru_task *T) {
  coru_cont *c = T->cont;
  T->cont = NULL;
  if (c && c->active) {
    c->active = 0;
    if (c->cancel) c->cancel(c);
  }
}

int coru_cont_yield(lua_State *L, coru_cont *c, int nret) {
  c->active = 1;
  if (c->mode == CORU_MODE_TASK) {
    coru_task *T = c->task;
    if (T->cont && T->cont != c) drop_cont(T);
    T->cont = c;
    if (L == T->co && lua_isyieldable(L)) {
      /* From the task's own coroutine no marker is needed (pushing a light
       * userdata costs ~48 instructions under GC64): yield nothing and say so. */
      T->native = CORU_NATIVE_OWN;
      return lua_yield(L, 0);
    }
    lua_pushlightuserdata(L, coru_SCHED);
    return lua_yield(L, 1);
  }
  return nret;
}

void coru_cont_clear(lua_State *L, coru_cont *c) {
  c->active = 0;
  coru_unref(L, &c->cb_ref);
}


lua_State *coru_cont_begin(coru_cont *c) {
  if (!c->active) return NULL;
  c->active = 0;
  /* At shutdown (lua_close in plain LuaJIT) the tasks' coroutines may be
   * going away: a request that completes now is discarded. */
  if (coru_R->shutting_down) return NULL;
  if (c->mode == CORU_MODE_CB) {
    lua_State *L = coru_R->L;
    lua_checkstack(L, 20);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, c->cb_ref);
    c->cb_ref = LUA_NOREF;
    lua_pushnil(L);
    return L;
  }
  if (c->mode == CORU_MODE_TASK) {
    coru_task *T = c->task;
    if (T->cont != c || T->status != CORU_SUSPENDED) return NULL;
    /* Claim the wait: until this completion wakes T (coru_cont_ok/fail),
     * nothing else can resume it, and a cancel waits for its next
     * suspension, whatever Lua the completion runs meanwhile. */
    T->cont = NULL;
    T->waking = 1;
    if (T->native != CORU_NATIVE_OWN) {   /* a native suspension left the stack empty, with LUA_MINSTACK free */
      lua_settop(T->co, 0);
      lua_checkstack(T->co, 20);
    }
    return T->co;
  }
  return NULL;
}

void coru_cont_ok(coru_cont *c, int n) {
  if (c->mode == CORU_MODE_CB) coru_callback(n + 1);
  else coru_wake(c->task, n);
}


void coru_cont_fail_str(coru_cont *c, const char *msg, const char *name) {
  if (c->mode == CORU_MODE_CB) {
    lua_State *L = coru_R->L;
    lua_pop(L, 1);
    lua_pushstring(L, msg);
    coru_callback(1);
  } else {
    lua_State *co = c->task->co;
    lua_pushnil(co);
    lua_pushstring(co, msg);
    if (name) lua_pushstring(co, name);
    coru_wake(c->task, name ? 3 : 2);
  }
}

void coru_cont_fail(coru_cont *c, int err, const char *detail) {
  lua_State *L = coru_R->L;
  coru_push_errmsg(L, err, detail);
  const char *msg = lua_tostring(L, -1);
  if (c->mode == CORU_MODE_CB) {
    lua_replace(L, -2);
    coru_callback(1);
  } else {
    lua_State *co = c->task->co;
    lua_pushnil(co);
    lua_pushstring(co, msg);
    lua_pushstring(co, uv_err_name(err));
    lua_pop(L, 1);
    coru_wake(c->task, 3);
  }
}

/* Would coru_cont_begin(c) give a completion now? (without claiming it) */
static int cont_current(const coru_cont *c) {
  if (!c->active || coru_R->shutting_down) return 0;
  if (c->mode != CORU_MODE_TASK) return 1;
  return c->task->cont == c && c->task->status == CORU_SUSPENDED;
}

void coru_cont_complete(coru_cont *c, int status, int closed, const char *detail) {
  lua_State *S = coru_cont_begin(c);
  if (!S) return;
  if (status == UV_ECANCELED && closed) coru_cont_fail_str(c, "closed", NULL);
  else if (status < 0) coru_cont_fail(c, status, detail);
  else if (c->mode == CORU_MODE_CB) coru_cont_ok(c, 0);
  else { lua_pushboolean(S, 1); coru_cont_ok(c, 1); }
}

int coru_need_task(lua_State *L, const char *fname) {
  return luaL_error(L, "%s: needs a running task or a callback", fname);
}

/* For functions with no callback form. */
int coru_need_task_only(lua_State *L, const char *fname) {
  return luaL_error(L, "%s: needs a running task", fname);
}

/* ------------------------------------------------------------ observers */

/* Observers live in T's env table at [2 .. nobs+1]: a task (awaiting) or a
 * callable (t:next, groups, inline_callbacks). */
static void add_observer(lua_State *L, coru_task *T, int idx) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  push_task(L, T);
  lua_getfenv(L, -1);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, 2 + T->nobs++);
  lua_pop(L, 2);
  T->observed = 1;
}

static void remove_observer(lua_State *L, coru_task *T, coru_task *W) {
  push_task(L, T);
  lua_getfenv(L, -1);
  for (int i = 0; i < T->nobs; i++) {
    lua_rawgeti(L, -1, 2 + i);
    if (lua_touserdata(L, -1) == W) {
      lua_pushboolean(L, 0);
      lua_rawseti(L, -3, 2 + i);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
}

/* Push what awaiting a finished task gives: results (returns count), or
 * ERR + error (returns -2). */
static int push_outcome(lua_State *L, coru_task *T) {
  lua_State *co = T->co;
  if (T->status == CORU_DONE) {
    int n = lua_gettop(co);
    lua_checkstack(L, n + 2);
    for (int i = 1; i <= n; i++) {
      lua_pushvalue(co, i);
      lua_xmove(co, L, 1);
    }
    return n;
  }
  lua_checkstack(L, 3);
  lua_pushlightuserdata(L, coru_ERR);
  lua_pushvalue(co, 3);   /* the value to raise: [err, traceback, raised] */
  lua_xmove(co, L, 1);
  return -2;
}

/* Push err, results... as a callback gets them; returns count. */
static int push_cb_outcome(lua_State *L, coru_task *T) {
  int n = push_outcome(L, T);
  if (n >= 0) {
    lua_pushnil(L);
    lua_insert(L, -n - 1);
    return n + 1;
  }
  lua_remove(L, -2);  /* drop ERR */
  return 1;
}

/* Deliver T's outcome to an awaiting task W. */
static void deliver(coru_task *T, coru_task *W) {
  lua_State *co = W->co;
  lua_settop(co, 0);
  int n = push_outcome(co, T);
  if (n < 0) {
    n = 2;
    if (T->status == CORU_FAILED && lua_isstring(co, -1)) W->carry_str = 1;
  }
  coru_wake(W, n);
}

static void notify(lua_State *L, coru_task *T) {
  if (!T->nobs) return;
  push_task(L, T);
  lua_getfenv(L, -1);
  int env = lua_gettop(L);
  int nobs = T->nobs;
  T->nobs = 0;
  for (int i = 0; i < nobs; i++) {
    lua_rawgeti(L, env, 2 + i);
    lua_pushnil(L);
    lua_rawseti(L, env, 2 + i);
    coru_task *W = totask(L, -1);
    if (W) {
      if (W->status == CORU_SUSPENDED && W->cont == &W->wait && W->aux == T) {
        W->wait.active = 0;
        deliver(T, W);
      }
      lua_pop(L, 1);
    } else if (lua_type(L, -1) != LUA_TBOOLEAN) {
      int n = push_cb_outcome(L, T);
      coru_callback(n);
    } else {
      lua_pop(L, 1);
    }
  }
  lua_settop(L, env - 2);
}

/* ------------------------------------------------------ unhandled errors */

static void report_task(lua_State *L, coru_task *T) {
  lua_checkstack(L, 3);
  lua_pushvalue(T->co, 1);
  lua_xmove(T->co, L, 1);
  coru_report(L, lua_tostring(T->co, 2));
}

static void queue_unobserved(lua_State *L, coru_task *T) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->unobserved_ref);
  push_task(L, T);
  lua_rawseti(L, -2, ++coru_R->unobserved_n);
  lua_pop(L, 1);
  tick_start();
}

/* Report failed tasks that nobody awaited since they failed. */
void coru_flush_reports(void) {
  if (!coru_R->unobserved_n) return;
  lua_State *L = coru_R->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->unobserved_ref);
  int n = coru_R->unobserved_n;
  coru_R->unobserved_n = 0;
  lua_newtable(L);
  lua_rawseti(L, LUA_REGISTRYINDEX, coru_R->unobserved_ref);   /* fresh list */
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    coru_task *T = totask(L, -1);
    if (T && !T->observed) {
      T->observed = 1;
      report_task(L, T);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* ---------------------------------------------------------- the resume loop */


static void finish(coru_task *T, int st) {
  coru_rt *R = coru_R;
  lua_State *L = R->L, *co = T->co;
  drop_cont(T);
  T->cancel_pending = 0;           /* asked while running, never suspended again */
  T->waking = 0;
  coru_unref(L, &T->cancel_ref);
  if (st == 0) {
    T->status = CORU_DONE;
    if (T == coru_R->main_task && R->main_only) uv_stop(R->loop);
  } else {
    /* co stack: [..., err]. Keep [err, traceback, raised]. */
    lua_checkstack(L, 4);
    lua_xmove(co, L, 1);
    int cancelled = is_cancel(L, -1);
    luaL_traceback(L, co, NULL, 0);
    lua_settop(co, 0);
    lua_pushvalue(L, -2);
    lua_xmove(L, co, 1);
    lua_xmove(L, co, 1);           /* traceback */
    if (lua_type(co, 1) == LUA_TSTRING && !T->carry_str) {
      lua_pushvalue(co, 1);
      lua_pushliteral(co, "\n");
      lua_pushvalue(co, 2);
      lua_concat(co, 3);
    } else {
      lua_pushvalue(co, 1);
    }
    lua_pop(L, 1);
    T->status = cancelled ? CORU_CANCELLED : CORU_FAILED;
    if (T == coru_R->main_task) uv_stop(R->loop);
  }
  int had_observers = T->nobs > 0;
  /* keep T alive through the notifications */
  push_task(L, T);
  int ref = T->self_ref;
  notify(L, T);
  if (T->status == CORU_FAILED && !had_observers && !T->observed) queue_unobserved(L, T);
  if (T->tprev) T->tprev->tnext = T->tnext; else R->tasks_head = T->tnext;
  if (T->tnext) T->tnext->tprev = T->tprev;
  T->tnext = T->tprev = NULL;
  T->self_ref = LUA_NOREF;
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  lua_pop(L, 1);
}

/* Call a yielded function f(args..., resume) for T. Values are on T->co.
 * Returns the number of values to resume with at once, or -1. */
static int call_yielded(coru_task *T, int n);

static void resume_with_error_msg(coru_task *T, const char *msg) {
  lua_settop(T->co, 0);
  lua_pushlightuserdata(T->co, coru_ERR);
  lua_pushstring(T->co, msg);
}

/* The cancel asked while T ran, was queued or dispatching, delivered at
 * its real suspension: stop what it waits on, resume with (ERR, error). */
static int deliver_cancel(coru_task *T) {
  lua_State *L = coru_R->L, *co = T->co;
  T->cancel_pending = 0;
  drop_cont(T);
  lua_rawgeti(L, LUA_REGISTRYINDEX, T->cancel_ref);   /* reason */
  coru_unref(L, &T->cancel_ref);
  coru_push_cancel_error(L, -1);
  lua_settop(co, 0);
  lua_pushlightuserdata(co, coru_ERR);
  lua_xmove(L, co, 1);
  return 2;
}

/* What T yielded is on its stack; decide. Returns the count of values to
 * resume with now, or -1 when T stays suspended. */
static int dispatch(coru_task *T) {
  lua_State *co = T->co;
  int n = lua_gettop(co);
  if (n >= 1 && lua_touserdata(co, 1) == coru_SCHED && lua_islightuserdata(co, 1)) {
    if (n == 1) {
      T->native = CORU_NATIVE_INNER;   /* a native suspension made in an inner coroutine */
      lua_settop(co, 0);
      if (T->cont) {
        if (!T->cancel_pending) return -1;
      } else {
        return 0;   /* nothing to wait for */
      }
    } else {
      lua_remove(co, 1);
      n--;
    }
  }
  if (T->cont && !(n == 0 && T->cancel_pending)) drop_cont(T);
  if (T->cancel_pending && n == 0 && !T->cont) return 0;  /* plain yield: raised at the next real suspension */
  if (T->cancel_pending) {
    int k = deliver_cancel(T);
    return T->native ? coru_shape(co, k) : k;   /* raised by the wrapper */
  }
  if (n == 0) return 0;
  switch (lua_type(co, 1)) {
  case LUA_TFUNCTION:
    return call_yielded(T, n);
  case LUA_TUSERDATA: {
    coru_task *U = totask(co, 1);
    if (U) {
      if (U == T) { resume_with_error_msg(T, "a task cannot await itself"); return 2; }
      U->observed = 1;
      if (is_finished(U)) {
        lua_settop(co, 0);
        int k = push_outcome(co, U);
        if (k < 0) { k = 2; if (U->status == CORU_FAILED && lua_isstring(co, -1)) T->carry_str = 1; }
        return k;
      }
      lua_State *L = coru_R->L;
      push_task(L, T);
      add_observer(L, U, -1);
      lua_pop(L, 1);
      lua_settop(co, 0);
      T->wait.mode = CORU_MODE_TASK; T->wait.task = T; T->wait.active = 1;
      T->wait.cancel = NULL;
      T->aux = U;
      T->cont = &T->wait;
      T->what = "coroutine.yield(task)";
      return -1;
    }
  } /* fallthrough */
  case LUA_TTABLE:
    if (coru_is_callable(co, 1)) return call_yielded(T, n);
    /* fallthrough */
  default:
    return n;   /* pass-through */
  }
}

static void cancel_awaiting(coru_cont *c) {
  coru_task *T = c->task, *U = T->aux;
  if (U && !is_finished(U)) remove_observer(coru_R->L, U, T);
  T->aux = NULL;
}

static void task_step(coru_task *T, int nargs) {
  coru_rt *R = coru_R;
  lua_State *co = T->co;
  /* A resume that lands in a wrapped C function: its wrapper takes the
   * values shaped (boot.lua wrap). In the loop below, dispatch shapes them. */
  if (nargs && T->native) nargs = coru_shape(co, nargs);
  for (;;) {
    coru_task *prev = R->current;
    R->current = T;
    T->status = CORU_RUNNING;
    T->gen++;
    T->native = 0;
    int st = lua_resume(co, nargs);
    R->current = prev;
    if (st != LUA_YIELD) { finish(T, st); return; }
    T->status = CORU_SUSPENDED;
    /* a native suspension: nothing on the stack, nothing to decide */
    if (T->native == CORU_NATIVE_OWN && T->cont && !T->cancel_pending) return;
    nargs = dispatch(T);
    if (nargs < 0) return;
  }
}

/* The resume object given to a yielded function: upvalues task, gen, used. */
static int l_resume_obj(lua_State *L) {
  coru_task *T = lua_touserdata(L, lua_upvalueindex(1));
  unsigned gen = (unsigned)lua_tonumber(L, lua_upvalueindex(2));
  if (lua_toboolean(L, lua_upvalueindex(3)))
    return luaL_error(L, "coru: resume called twice (the task was already resumed by it)");
  lua_pushboolean(L, 1);
  lua_replace(L, lua_upvalueindex(3));
  if (T->gen != gen || T->status != CORU_SUSPENDED || T->cont != &T->wait || T->aux != NULL) {
    lua_pushboolean(L, 0);   /* the task moved on (cancelled): late result discarded */
    return 1;
  }
  int n = lua_gettop(L);
  lua_checkstack(T->co, n + 2);
  lua_settop(T->co, 0);
  lua_xmove(L, T->co, n);
  T->wait.active = 0;
  coru_wake(T, n);
  lua_pushboolean(L, 1);
  return 1;
}

static int call_yielded(coru_task *T, int n) {
  lua_State *L = coru_R->L, *co = T->co;
  int base = lua_gettop(L);
  lua_checkstack(L, n + 4);
  lua_xmove(co, L, n);
  /* the resume object */
  push_task(L, T);
  lua_pushnumber(L, (lua_Number)T->gen);
  lua_pushboolean(L, 0);
  lua_pushcclosure(L, l_resume_obj, 3);
  int nargs = n - 1 + 1;
  for (int i = base + 2; i <= base + n; i++) {
    if (lua_touserdata(L, i) == coru_CALLBACK && lua_islightuserdata(L, i)) {
      lua_replace(L, i);
      nargs = n - 1;
      break;
    }
  }
  T->wait.mode = CORU_MODE_TASK; T->wait.task = T; T->wait.active = 1;
  T->wait.cancel = NULL;
  T->aux = NULL;
  T->cont = &T->wait;
  T->dispatching = 1;
  T->what = "coroutine.yield(f)";
  int st = coru_pcall(nargs);        /* as a callback: outside any task */
  int resumed = T->dispatching == 2;
  T->dispatching = 0;
  if (st != 0) {
    if (resumed) {                   /* resume came first; the error is not lost */
      const char *tb = lua_tostring(L, -1);
      lua_pushvalue(L, -2);
      coru_report(L, tb);
    } else {
      lua_pop(L, 1);                 /* the traceback: the task's own comes at its end */
      T->cont = NULL;
      T->wait.active = 0;
      T->gen++;                      /* a later resume is stale */
      lua_settop(co, 0);
      lua_pushlightuserdata(co, coru_ERR);
      lua_xmove(L, co, 1);
      lua_settop(L, base);
      return 2;
    }
  }
  lua_settop(L, base);
  if (resumed) { int k = T->nready; T->nready = 0; return k; }
  if (T->cancel_pending) {           /* cancelled by f itself: it waits now, so deliver */
    T->wait.active = 0;
    T->gen++;                        /* a later resume is stale */
    return deliver_cancel(T);
  }
  return -1;
}

/* --------------------------------------------------------------- creation */

static coru_task *task_new(lua_State *L) {
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
static coru_task *spawn_top(lua_State *L, int nargs) {
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

static int raise_outcome(lua_State *L, coru_task *T) {
  int n = push_outcome(L, T);
  if (n < 0) return lua_error(L);
  return n;
}

static int l_task_await(lua_State *L) {
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

static int l_task_cancel(lua_State *L) {
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

/* ------------------------------------------------------ sleep, pass, tick */

static void sleep_fire(void *data) {
  coru_task *T = data;
  T->aux = NULL;
  if (wait_claim(T)) wake(T, 0, 0);
}

static void sleep_cancel(coru_cont *c) {
  coru_task *T = c->task;
  if (T->aux) coru_deadline_stop(T->aux);
  T->aux = NULL;
}

static int l_sleep(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  if (!lua_isnoneornil(L, 2))
    return luaL_argerror(L, 2, "no callback form: sleep suspends a task; in a callback use a timer (coru.new_timer)");
  coru_task *T = enter_task(L, "coru.sleep");
  if (ms < 0) ms = 0;
  wait_init(T, sleep_cancel);
  T->aux = coru_deadline_start((uint64_t)ms, sleep_fire, T);
  return wait_yield(L, T);
}

/* A cancelled pass leaves the list at once: the task may pass again. */
static void pass_cancel(coru_cont *c) {
  coru_task *T = c->task, *prev = NULL;
  T->in_pass = 0;
  for (coru_task *x = coru_R->pass_head; x; prev = x, x = x->next_pass) {
    if (x != T) continue;
    if (prev) prev->next_pass = x->next_pass; else coru_R->pass_head = x->next_pass;
    if (coru_R->pass_tail == x) coru_R->pass_tail = prev;
    x->next_pass = NULL;
    return;
  }
}

static void tick_cb(uv_idle_t *h) {
  /* serve the passes queued before this run; the ones they queue, and the
   * ones tagged with this epoch, wait for the next run */
  unsigned epoch = coru_R->tick_epoch;
  while (coru_R->pass_head && coru_R->pass_head->aux != (void *)(uintptr_t)epoch) {
    coru_task *T = coru_R->pass_head;
    coru_R->pass_head = T->next_pass;
    if (!coru_R->pass_head) coru_R->pass_tail = NULL;
    T->next_pass = NULL;
    if (T->in_pass) {
      T->in_pass = 0;
      if (wait_claim(T)) wake(T, 0, 0);
    }
  }
  coru_R->tick_epoch = epoch + 1;
  coru_flush_reports();
  if (!coru_R->pass_head && !coru_R->unobserved_n) uv_idle_stop(h);
}

static void tick_start(void) {
  if (!uv_is_active((uv_handle_t *)&coru_R->tick)) uv_idle_start(&coru_R->tick, tick_cb);
}

static int l_pass(lua_State *L) {
  coru_task *T = enter_task(L, "coru.pass");
  wait_init(T, pass_cancel);
  T->in_pass = 1;
  T->aux = (void *)(uintptr_t)coru_R->tick_epoch;
  T->next_pass = NULL;
  if (coru_R->pass_tail) coru_R->pass_tail->next_pass = T; else coru_R->pass_head = T;
  coru_R->pass_tail = T;
  tick_start();
  return wait_yield(L, T);
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_now(coru_R->loop));
  return 1;
}

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
  lua_Number ms = luaL_checknumber(L, 1);
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
  g->dl = coru_deadline_start(ms < 0 ? 0 : (uint64_t)ms, timeout_fire, g);
  return group_wait(L, T, g);
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
  }
  coru_flush_reports();
  int status = R->exit_status;
  if (T->status == CORU_FAILED || T->status == CORU_CANCELLED) {
    lua_State *co = T->co;
    /* error() with no value: status 1 and nothing printed, as luajit does
     * (busted ends a failed run that way) */
    if (lua_isnil(co, 1)) { lua_settop(L, base); return 1; }
    const char *msg = lua_tostring(co, 1);
    if (!msg) {
      if (luaL_callmeta(co, 1, "__tostring")) msg = lua_tostring(co, -1);
      else msg = lua_pushfstring(co, "(error object is a %s value)", luaL_typename(co, 1));
    }
    fprintf(stderr, "coru: %s\n%s\n", msg, lua_tostring(co, 2));
    status = 1;
  } else if (T->status != CORU_DONE) {
    fprintf(stderr, "coru: the main task is suspended and nothing can wake it (deadlock)\n");
    status = 1;
  }
  lua_settop(L, base);
  return status;
}

/* --------------------------------------------------------------- channels */

/* Values buffered are in the channel's env table, slots 1..cap as a ring;
 * the value of a waiting sender S is at env[lightuserdata S]. A waiting task
 * anchors the channel through its aux_ref. */
typedef struct chan {
  int cap, count, head, closed;
  coru_task *rq_head, *rq_tail;   /* receivers waiting */
  coru_task *sq_head, *sq_tail;   /* senders waiting */
} chan;


static chan *checkchan(lua_State *L, int idx) {
  chan *c = lua_touserdata(L, idx);
  if (c && lua_getmetatable(L, idx)) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->chan_mt_ref);
    int ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (ok) return c;
  }
  luaL_typerror(L, idx, "coru.channel");
  return NULL;
}

static void q_push(coru_task **h, coru_task **t, coru_task *T) {
  T->next_wait = NULL;
  if (*t) (*t)->next_wait = T; else *h = T;
  *t = T;
}

static coru_task *q_pop(coru_task **h, coru_task **t) {
  coru_task *T = *h;
  if (T) { *h = T->next_wait; if (!*h) *t = NULL; T->next_wait = NULL; }
  return T;
}

static void q_remove(coru_task **h, coru_task **t, coru_task *T) {
  coru_task *prev = NULL;
  for (coru_task *x = *h; x; prev = x, x = x->next_wait) {
    if (x == T) {
      if (prev) prev->next_wait = x->next_wait; else *h = x->next_wait;
      if (*t == x) *t = prev;
      x->next_wait = NULL;
      return;
    }
  }
}

/* coru.select: each case is a task waiting in a channel queue; the first
 * transfer claims the select's flag and the other cases are skipped. A
 * waiter of a select that already fired is taken out of the queue and left
 * for its select to cancel. */
static coru_task *pop_live(coru_task **h, coru_task **t) {
  coru_task *T;
  while ((T = q_pop(h, t))) {
    if (!T->sel) return T;
    if (!*T->sel) { *T->sel = 1; return T; }
  }
  return NULL;
}

/* The running task is a case of a select that fired: nothing to do. */
static int sel_skip(lua_State *L, coru_task *me) {
  if (!(me && me->sel && *me->sel)) return 0;
  lua_pushnil(L);
  lua_pushliteral(L, "skipped");
  return 2;
}

static void sel_claim(coru_task *me) {
  if (me && me->sel) *me->sel = 1;
}

static void aux_clear(coru_task *T) {
  T->aux = NULL;
  coru_unref(coru_R->L, &T->aux_ref);
}

/* Move the value of waiting sender S (in env at env_idx) to the top of L. */
static void take_sent(lua_State *L, int env_idx, coru_task *S) {
  lua_pushlightuserdata(L, S);
  lua_rawget(L, env_idx);
  lua_pushlightuserdata(L, S);
  lua_pushnil(L);
  lua_rawset(L, env_idx);
}

static void chan_cancel(coru_cont *c) {
  coru_task *T = c->task;
  chan *ch = T->aux;
  if (!ch) return;
  lua_State *L = coru_R->L;
  q_remove(&ch->rq_head, &ch->rq_tail, T);
  q_remove(&ch->sq_head, &ch->sq_tail, T);
  lua_rawgeti(L, LUA_REGISTRYINDEX, T->aux_ref);
  lua_getfenv(L, -1);
  take_sent(L, lua_gettop(L), T);
  lua_pop(L, 3);
  aux_clear(T);
}

static int l_chan_new(lua_State *L) {
  lua_Number cap = luaL_optnumber(L, 1, 0);
  if (cap < 0 || cap > 0x7fffffff) luaL_argerror(L, 1, "capacity must be a count >= 0");
  chan *ch = lua_newuserdata(L, sizeof *ch);
  memset(ch, 0, sizeof *ch);
  ch->cap = (int)cap;
  lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->chan_mt_ref);
  lua_setmetatable(L, -2);
  lua_createtable(L, ch->cap > 64 ? 64 : ch->cap, 0);
  lua_setfenv(L, -2);
  return 1;
}

/* Wake waiting task W with the values on top of L (n of them). */
static void wake_with(lua_State *L, coru_task *W, int n) {
  aux_clear(W);
  lua_State *co = coru_cont_begin(&W->wait);
  if (!co) { lua_pop(L, n); return; }
  lua_xmove(L, co, n);
  coru_cont_ok(&W->wait, n);
}

static void sender_done(lua_State *L, coru_task *S, int ok) {
  if (ok) { lua_pushboolean(L, 1); wake_with(L, S, 1); }
  else { lua_pushnil(L); lua_pushliteral(L, "closed"); wake_with(L, S, 2); }
}

static int chan_wait(lua_State *L, chan *ch, coru_task *T, int sending) {
  wait_init(T, chan_cancel);
  T->what = sending ? "channel:send" : "channel:recv";
  T->aux = ch;
  lua_pushvalue(L, 1);
  T->aux_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (sending) {
    lua_getfenv(L, 1);
    lua_pushlightuserdata(L, T);
    lua_pushvalue(L, 2);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    q_push(&ch->sq_head, &ch->sq_tail, T);
  } else {
    q_push(&ch->rq_head, &ch->rq_tail, T);
  }
  return coru_cont_yield(L, &T->wait, 0);
}

static int l_chan_send(lua_State *L) {
  chan *ch = checkchan(L, 1);
  lua_settop(L, 2);
  coru_task *me = coru_R->current;
  int skip = sel_skip(L, me);
  if (skip) return skip;
  if (ch->closed) { sel_claim(me); lua_pushnil(L); lua_pushliteral(L, "closed"); return 2; }
  coru_task *R = pop_live(&ch->rq_head, &ch->rq_tail);
  if (R) {
    sel_claim(me);
    lua_pushvalue(L, 2);
    wake_with(L, R, 1);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (ch->count < ch->cap) {
    sel_claim(me);
    lua_getfenv(L, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 1 + (ch->head + ch->count) % ch->cap);
    ch->count++;
    lua_pushboolean(L, 1);
    return 1;
  }
  coru_enter(L, 0, "channel:send (it must wait)", CORU_TASK_ONLY);
  return chan_wait(L, ch, coru_R->current, 1);
}

static int l_chan_recv(lua_State *L) {
  chan *ch = checkchan(L, 1);
  lua_settop(L, 1);
  coru_task *me = coru_R->current;
  int skip = sel_skip(L, me);
  if (skip) return skip;
  lua_getfenv(L, 1);            /* 2 */
  if (ch->count > 0) {
    sel_claim(me);
    int slot = 1 + ch->head;
    lua_rawgeti(L, 2, slot);    /* 3: the value */
    lua_pushnil(L);
    lua_rawseti(L, 2, slot);
    ch->head = (ch->head + 1) % ch->cap;
    ch->count--;
    coru_task *S = pop_live(&ch->sq_head, &ch->sq_tail);
    if (S) {                    /* a waiting sender's value fills the room */
      take_sent(L, 2, S);
      lua_rawseti(L, 2, 1 + (ch->head + ch->count) % ch->cap);
      ch->count++;
      sender_done(L, S, 1);
    }
    lua_settop(L, 3);
    return 1;
  }
  coru_task *S = pop_live(&ch->sq_head, &ch->sq_tail);
  if (S) {
    sel_claim(me);
    take_sent(L, 2, S);
    lua_insert(L, 3);
    sender_done(L, S, 1);
    lua_settop(L, 3);
    return 1;
  }
  if (ch->closed) { sel_claim(me); lua_pushnil(L); lua_pushliteral(L, "closed"); return 2; }
  coru_enter(L, 0, "channel:recv (it must wait)", CORU_TASK_ONLY);
  lua_settop(L, 1);
  return chan_wait(L, ch, coru_R->current, 0);
}

static int l_chan_close(lua_State *L) {
  chan *ch = checkchan(L, 1);
  if (ch->closed) return 0;
  ch->closed = 1;
  coru_task *T;
  while ((T = pop_live(&ch->rq_head, &ch->rq_tail))) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    wake_with(L, T, 2);
  }
  lua_getfenv(L, 1);
  int env = lua_gettop(L);
  while ((T = pop_live(&ch->sq_head, &ch->sq_tail))) {
    take_sent(L, env, T);
    lua_pop(L, 1);
    sender_done(L, T, 0);
  }
  return 0;
}

/* ch:try_send(v): true if taken (by a waiting receiver or into the buffer),
 * false if it would have to wait, nil, "closed". Never suspends. */
static int l_chan_try_send(lua_State *L) {
  chan *ch = checkchan(L, 1);
  lua_settop(L, 2);
  if (ch->closed) { lua_pushnil(L); lua_pushliteral(L, "closed"); return 2; }
  coru_task *R = pop_live(&ch->rq_head, &ch->rq_tail);
  if (R) {
    lua_pushvalue(L, 2);
    wake_with(L, R, 1);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (ch->count < ch->cap) {
    lua_getfenv(L, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 1 + (ch->head + ch->count) % ch->cap);
    ch->count++;
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  return 1;
}

/* ch:try_recv(): true, v if a value was there (buffered or from a waiting
 * sender), false if none, nil, "closed" once closed and drained. */
static int l_chan_try_recv(lua_State *L) {
  chan *ch = checkchan(L, 1);
  lua_settop(L, 1);
  lua_getfenv(L, 1);            /* 2 */
  if (ch->count > 0) {
    int slot = 1 + ch->head;
    lua_pushboolean(L, 1);      /* 3 */
    lua_rawgeti(L, 2, slot);    /* 4: the value */
    lua_pushnil(L);
    lua_rawseti(L, 2, slot);
    ch->head = (ch->head + 1) % ch->cap;
    ch->count--;
    coru_task *S = pop_live(&ch->sq_head, &ch->sq_tail);
    if (S) {
      take_sent(L, 2, S);
      lua_rawseti(L, 2, 1 + (ch->head + ch->count) % ch->cap);
      ch->count++;
      sender_done(L, S, 1);
    }
    lua_settop(L, 4);
    return 2;
  }
  coru_task *S = pop_live(&ch->sq_head, &ch->sq_tail);
  if (S) {
    lua_pushboolean(L, 1);      /* 3 */
    take_sent(L, 2, S);         /* 4 */
    sender_done(L, S, 1);
    lua_settop(L, 4);
    return 2;
  }
  if (ch->closed) { lua_pushnil(L); lua_pushliteral(L, "closed"); return 2; }
  lua_pushboolean(L, 0);
  return 1;
}

/* coru._select_flag(): the flag of one coru.select (a userdata int). */
static int l_select_flag(lua_State *L) {
  int *f = lua_newuserdata(L, sizeof *f);
  *f = 0;
  return 1;
}

/* coru._select_case(flag): the running task is a case of that select. */
static int l_select_case(lua_State *L) {
  luaL_checktype(L, 1, LUA_TUSERDATA);
  coru_task *T = coru_R->current;
  if (!T) return luaL_error(L, "coru._select_case: needs a running task");
  T->sel = lua_touserdata(L, 1);
  return 0;
}

/* coru._select_claim(flag): true if nothing fired yet (it fires now). */
static int l_select_claim(lua_State *L) {
  luaL_checktype(L, 1, LUA_TUSERDATA);
  int *f = lua_touserdata(L, 1);
  lua_pushboolean(L, !*f);
  *f = 1;
  return 1;
}

static int l_chan_len(lua_State *L) {
  lua_pushinteger(L, checkchan(L, 1)->count);
  return 1;
}

static int l_chan_is_closed(lua_State *L) {
  lua_pushboolean(L, checkchan(L, 1)->closed);
  return 1;
}

static int l_chan_tostring(lua_State *L) {
  chan *ch = checkchan(L, 1);
  lua_pushfstring(L, "coru.channel: %p (%d/%d%s)", (void *)ch, ch->count, ch->cap,
                  ch->closed ? ", closed" : "");
  return 1;
}

/* --------------------------------------------------------------- open */

static const coru_Reg task_methods[] = {
  {"await", l_task_await, CORU_YIELDS | CORU_ARITY(1)},
  {"next", l_task_next, 0},
  {"cancel", l_task_cancel, 0},
  {"status", l_task_status, 0},
  {NULL, NULL, 0}
};

static const coru_Reg chan_methods[] = {
  {"send", l_chan_send, CORU_YIELDS | CORU_ARITY(2)},
  {"recv", l_chan_recv, CORU_YIELDS | CORU_ARITY(1)},
  {"close", l_chan_close, 0},
  {"try_send", l_chan_try_send, 0},
  {"try_recv", l_chan_try_recv, 0},
  {"len", l_chan_len, 0},
  {"is_closed", l_chan_is_closed, 0},
  {NULL, NULL, 0}
};

static const coru_Reg sched_funcs[] = {
  {"spawn", l_spawn, 0},
  {"inline", l_inline, 0},
  {"inline_callbacks", l_inline_callbacks, 0},
  {"current", coru_l_current, 0},
  {"tasks", l_tasks, 0},
  {"is_cancelled", l_is_cancelled, 0},
  {"sleep", l_sleep, CORU_YIELDS | CORU_ALWAYS_YIELDS | CORU_ARITY(2)},
  {"pass", l_pass, CORU_YIELDS | CORU_ALWAYS_YIELDS | CORU_ARITY(0)},
  {"now", l_now, 0},
  {"all", l_all, CORU_YIELDS},
  {"any", l_any, CORU_YIELDS},
  {"timeout", l_timeout, CORU_YIELDS},
  {"channel", l_chan_new, 0},
  {"_select_flag", l_select_flag, 0},
  {"_select_case", l_select_case, 0},
  {"_select_claim", l_select_claim, 0},
  {"on_error", l_on_error, 0},
  {"run", l_run, CORU_YIELDS},
  {NULL, NULL, 0}
};

static int make_mt(lua_State *L, const char *name, const coru_Reg *methods, lua_CFunction tostr) {
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

CORU_FAMILY(sched) {
  coru_rt *R = coru_R;
  coru_R->task_mt_ref = make_mt(L, "coru.task", task_methods, l_task_tostring);
  R->task_mt = lua_topointer(L, -1);
  lua_pop(L, 1);
  coru_R->chan_mt_ref = make_mt(L, "coru.channel", chan_methods, l_chan_tostring);
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, l_cancel_tostring);
  lua_setfield(L, -2, "__tostring");
  R->cancel_mt = lua_topointer(L, -1);
  coru_R->cancel_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, R->boot_ref);
  lua_getfield(L, -1, "taskco");
  coru_R->taskco_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  lua_newtable(L);
  coru_R->unobserved_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (!coru_R->tick_inited) {
    uv_idle_init(R->loop, &coru_R->tick);
    coru_R->tick.data = NULL;
    coru_R->tick_inited = 1;
  }
  coru_setfuncs(L, sched_funcs);
  lua_pushlightuserdata(L, coru_CALLBACK);
  lua_setfield(L, -2, "CALLBACK");
}

/* Close the internal handles (shutdown). */
void coru_sched_close(void) {
  if (coru_R->tick_inited && !uv_is_closing((uv_handle_t *)&coru_R->tick)) {
    coru_R->tick_inited = 0;            /* a later luaopen_coru starts afresh */
    coru_R->pass_head = coru_R->pass_tail = NULL;
    uv_close((uv_handle_t *)&coru_R->tick, NULL);
  }
}
