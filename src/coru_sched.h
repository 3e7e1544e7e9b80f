/*
 * coru_sched.h - what the scheduler's files share (sched.c: the resume loop,
 * conts, observers, sleep and pass; task.c: the Lua task API and run;
 * group.c: all, any, timeout; chan.c: channels). Nothing else includes it (not sched.h: that
 * name is the system header uv.h includes).
 */
#ifndef CORU_SCHED_INT_H
#define CORU_SCHED_INT_H

#include "coru.h"

struct coru_task {
  lua_State *co;
  int self_ref;          /* registry ref of the task userdata while not finished */
  unsigned char status;
  unsigned char queued;  /* in the ready queue */
  unsigned char dispatching; /* the scheduler is calling a yielded function for it */
  unsigned char cancel_pending;
  unsigned char waking;      /* its wait is claimed: 1 by a completion (coru_cont_begin), 2 by a cancel; only that one wakes it */
  int nready;            /* values waiting on co's stack to resume with */
  coru_cont *cont;       /* the native operation it waits on */
  unsigned gen;          /* suspension generation: resume objects check it */
  coru_task *next_ready;
  int nobs;              /* observers registered in its env table */
  unsigned char observed;    /* someone awaited it or asked to be told */
  unsigned char in_pass;     /* waiting in coru.pass() */
  unsigned char carry_str;   /* its error string already carries a traceback */
  unsigned char native;      /* suspended in a wrapped C function, resumed with coru_shape'd values:
                              * CORU_NATIVE_OWN by coru_cont_yield from its own coroutine (a 0-value
                              * yield, stack left empty), CORU_NATIVE_INNER from an inner coroutine */
  coru_task *next_pass;
  coru_task *next_wait;      /* channel wait queues */
  int *sel;                  /* a case of coru.select: its select's "a case fired" flag */
  void *aux;                 /* what the wait holds (deadline, group, channel) */
  int aux_ref;               /* registry ref anchoring the object it waits on */
  int cancel_ref;            /* reason of a cancel asked while it runs */
  coru_cont wait;            /* for waits owned by the scheduler itself */
  const char *what;          /* what it waits on (the name given to coru_enter), for coru.tasks() */
  coru_task *tnext, *tprev;  /* every unfinished task: coru_R->tasks_head */
};

/* sched.c */
coru_task *checktask(lua_State *L, int idx);
int is_cancel(lua_State *L, int idx);
void wake(coru_task *T, int nargs, int now);
void run_task(coru_task *T, int nargs);
void refuse_suspension(lua_State *L, const char *fname);
void drop_cont(coru_task *T);
void add_observer(lua_State *L, coru_task *T, int idx);
int push_outcome(lua_State *L, coru_task *T);
int push_cb_outcome(lua_State *L, coru_task *T);
int cont_current(const coru_cont *c);
void cancel_awaiting(coru_cont *c);
void finish(coru_task *T, int st);
void remove_observer(lua_State *L, coru_task *T, coru_task *W);

/* task.c */
coru_task *task_new(lua_State *L);
coru_task *spawn_top(lua_State *L, int nargs);
int raise_outcome(lua_State *L, coru_task *T);
int l_task_cancel(lua_State *L);
int l_task_await(lua_State *L);
int make_mt(lua_State *L, const char *name, const coru_Reg *methods, lua_CFunction tostr);
/* The openers (coru.h): task (the task and cancel metatables, spawn, run,
 * ...) before sched, then group (all, any, timeout) and chan (the channel
 * metatable, channel, _select_*); luaopen_coru calls them in that order. */

static inline coru_task *totask(lua_State *L, int idx) {
  coru_task *T = lua_touserdata(L, idx);
  if (T && lua_getmetatable(L, idx)) {
    const void *mt = lua_topointer(L, -1);
    lua_pop(L, 1);
    if (mt == coru_R->task_mt) return T;
  }
  return NULL;
}

static inline int is_finished(const coru_task *T) { return T->status >= CORU_DONE; }

/* Push T's userdata (valid while T is not finished, or when the caller
 * holds it some other way). */
static inline void push_task(lua_State *L, coru_task *T) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, T->self_ref);
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

#endif
