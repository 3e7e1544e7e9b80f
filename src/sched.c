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
#include "coru_sched.h"
#include "check.h"

/* Next-iteration work (coru.pass, reports) runs in an idle handle (which
 * also keeps the poll phase from blocking). A pass is tagged with the count
 * of idle runs so far and served only by a later run, so a poll phase always
 * lies between the suspension and the resume, whichever phase it came from. */

static void task_step(coru_task *T, int nargs);
static void tick_start(coru_rt *R);

/* ------------------------------------------------------------ utilities */

coru_task *checktask(lua_State *L, int idx) {
  coru_task *T = totask(L, idx);
  if (!T) luaL_typerror(L, idx, "coru.task");
  return T;
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

int is_cancel(lua_State *L, int idx) {
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

void run_task(coru_task *T, int nargs) {
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
static inline void wake_task(coru_task *T, int nargs, int now) {
  T->cont = NULL;
  T->waking = 0;
  if (T->dispatching) { T->nready = nargs; T->dispatching = 2; return; }
  int depth = coru_R->depth;
  if (depth > 0 && (!now || depth >= CORU_MAX_NEST)) { enqueue(T, nargs); return; }
  run_task(T, nargs);
}

/* wake for the other scheduler files (the loop inlines wake_task). */
void wake(coru_task *T, int nargs, int now) { wake_task(T, nargs, now); }

void coru_wake(coru_task *T, int nargs) { wake_task(T, nargs, 0); }

int coru_can_suspend(lua_State *L) {
  coru_task *T = coru_R->current;
  return T && can_suspend(L, T);
}

/* ------------------------------------------------------------------ conts */

void refuse_suspension(lua_State *L, const char *fname) {
  luaL_error(L, "%s: cannot suspend here: a C function (table.sort, string.gsub, require, "
                "a metamethod, __gc, ...) is between this call and the task; call it from "
                "the task's own code", fname ? fname : "coru");
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




/* A cont left behind by a yield that failed (a yield across a C call
 * boundary raises after the operation was armed): stop it. */
void drop_cont(coru_task *T) {
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
int cont_current(const coru_cont *c) {
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
void add_observer(lua_State *L, coru_task *T, int idx) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  push_task(L, T);
  lua_getfenv(L, -1);
  lua_pushvalue(L, idx);
  lua_rawseti(L, -2, 2 + T->nobs++);
  lua_pop(L, 2);
  T->observed = 1;
}

void remove_observer(lua_State *L, coru_task *T, coru_task *W) {
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
int push_outcome(lua_State *L, coru_task *T) {
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
int push_cb_outcome(lua_State *L, coru_task *T) {
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
  tick_start(coru_R);
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


void finish(coru_task *T, int st) {
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

void cancel_awaiting(coru_cont *c) {
  coru_task *T = c->task, *U = T->aux;
  if (U && !is_finished(U)) remove_observer(coru_R->L, U, T);
  T->aux = NULL;
}

/* One resume of T with nargs values (already shaped). Returns 1 when what
 * T yielded needs a decision (dispatch), 0 when it ended or suspended in a
 * native wait: nothing on the stack, nothing to decide. Inlined into the
 * resume loop and the pass path (tick_cb). */
static inline __attribute__((always_inline)) int resume_once(coru_rt *R, coru_task *T, int nargs) {
  coru_task *prev = R->current;
  R->current = T;
  T->status = CORU_RUNNING;
  T->gen++;
  T->native = 0;
  int st = lua_resume(T->co, nargs);
  R->current = prev;
  if (st != LUA_YIELD) { finish(T, st); return 0; }
  T->status = CORU_SUSPENDED;
  return !(T->native == CORU_NATIVE_OWN && T->cont && !T->cancel_pending);
}

/* The resume loop, after a yield that needs a decision. */
static void decide_loop(coru_task *T) {
  coru_rt *R = coru_R;
  int nargs;
  while ((nargs = dispatch(T)) >= 0 && resume_once(R, T, nargs)) {}
}

static void task_step(coru_task *T, int nargs) {
  /* A resume that lands in a wrapped C function: its wrapper takes the
   * values shaped (boot.lua wrap). In the loop, dispatch shapes them. */
  if (nargs && T->native) nargs = coru_shape(T->co, nargs);
  if (resume_once(coru_R, T, nargs)) decide_loop(T);
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

/* ------------------------------------------------------ sleep, pass, tick */

static void sleep_fire(void *data) {
  coru_task *T = data;
  T->aux = NULL;
  if (wait_claim(T)) wake_task(T, 0, 0);
}

static void sleep_cancel(coru_cont *c) {
  coru_task *T = c->task;
  if (T->aux) coru_deadline_stop(T->aux);
  T->aux = NULL;
}

static int l_sleep(lua_State *L) {
  if (!lua_isnoneornil(L, 2))
    return luaL_argerror(L, 2, "no callback form: sleep suspends a task; in a callback use a timer (coru.new_timer)");
  uint64_t ms = coru_check_ms(L, 1, "sleep");
  coru_task *T = enter_task(L, "coru.sleep");
  wait_init(T, sleep_cancel);
  T->aux = coru_deadline_start(ms, sleep_fire, T);
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

/* The pass round trip is the loop's own hop (W1 loop): tick_cb resumes a
 * passer through the fewest steps. A task in the pass list waits in
 * T->wait (pass_cancel takes it out of the list when the wait is dropped),
 * suspended from its own coroutine or an inner one, never dispatching (a
 * yielded function runs outside any task: it cannot pass). */
static void tick_cb(uv_idle_t *h) {
  coru_rt *R = coru_R;
  /* serve the passes queued before this run; the ones they queue, and the
   * ones tagged with this epoch, wait for the next run */
  unsigned epoch = R->tick_epoch;
  coru_task *T;
  while ((T = R->pass_head) && T->aux != (void *)(uintptr_t)epoch) {
    coru_task *next = T->next_pass;
    R->pass_head = next;
    if (!next) R->pass_tail = NULL;
    T->next_pass = NULL;
    T->in_pass = 0;
    if (!wait_claim(T)) continue;
    if (R->depth) { wake_task(T, 0, 0); continue; }   /* a loop run inside a step */
    T->waking = 0;   /* woken now: what wake_task and run_task do, without their calls */
    R->depth = 1;
    if (resume_once(R, T, 0)) decide_loop(T);
    R->depth = 0;
    if (R->ready_head) drain();
  }
  R->tick_epoch = epoch + 1;
  if (R->unobserved_n) coru_flush_reports();   /* the common case costs no call */
  if (!R->pass_head && !R->unobserved_n) { uv_idle_stop(h); R->tick_on = 0; }
}

static void tick_start(coru_rt *R) {
  if (!R->tick_on) { uv_idle_start(&R->tick, tick_cb); R->tick_on = 1; }
}

static int l_pass(lua_State *L) {
  coru_rt *R = coru_R;
  coru_task *T = enter_task(L, "coru.pass");
  wait_init(T, pass_cancel);
  T->in_pass = 1;
  T->aux = (void *)(uintptr_t)R->tick_epoch;
  T->next_pass = NULL;
  if (R->pass_tail) R->pass_tail->next_pass = T; else R->pass_head = T;
  R->pass_tail = T;
  tick_start(R);
  return wait_yield(L, T);
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_now(coru_R->loop));
  return 1;
}

/* --------------------------------------------------------------- open */

static const coru_Reg sched_funcs[] = {
  {"sleep", l_sleep, CORU_YIELDS | CORU_ALWAYS_YIELDS | CORU_ARITY(2)},
  {"pass", l_pass, CORU_YIELDS | CORU_ALWAYS_YIELDS | CORU_ARITY(0)},
  {"now", l_now, 0},
  {NULL, NULL, 0}
};

CORU_FAMILY(sched) {
  coru_rt *R = coru_R;
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
    coru_R->tick_on = 0;
    uv_close((uv_handle_t *)&coru_R->tick, NULL);
  }
}

/* An exit that unwinds (open.c, coru.exit inside uv_run): can the running
 * task suspend from L, and then suspend it for good. It waits on its own
 * cont, which nothing completes (shutting down: nothing resumes a task);
 * a cancellation asked while it ran is dropped, or the scheduler would
 * deliver it at once. lua_close collects it. */
int coru_can_park(lua_State *L) {
  coru_task *T = coru_R->current;
  return T && can_suspend(L, T);
}

int coru_park_for_good(lua_State *L) {
  coru_task *T = coru_R->current;
  T->cancel_pending = 0;
  T->aux = NULL;
  T->wait.mode = CORU_MODE_TASK;
  T->wait.task = T;
  T->wait.cancel = NULL;
  T->what = "coru.exit";
  return coru_cont_yield(L, &T->wait, 0);
}
