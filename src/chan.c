/*
 * chan.c - channels (coru.channel) and the primitives of coru.select.
 */
#include <string.h>
#include <stdlib.h>
#include "coru_sched.h"
#include "check.h"

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
  if (c && lua_type(L, idx) == LUA_TUSERDATA && lua_getmetatable(L, idx)) {
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
  lua_Integer cap = coru_opt_int(L, 1, 0, CORU_INT_MAX, 0, "channel");
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

static int closed(lua_State *L);

static void sender_done(lua_State *L, coru_task *S, int ok) {
  if (ok) { lua_pushboolean(L, 1); wake_with(L, S, 1); }
  else wake_with(L, S, closed(L));
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

static int closed(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "closed");
  return 2;
}

/* The two halves of every transfer, shared by the waiting and the try_
 * forms. me: the task to claim its select with (NULL: none), claimed
 * before anyone is woken, so that the woken task cannot fire a second
 * case of the same select. */

/* Give the value at vidx to a waiting receiver, or into the buffer.
 * Returns 1 if it was taken, 0 if the sender would have to wait. */
static int give(lua_State *L, chan *ch, int vidx, coru_task *me) {
  coru_task *R = pop_live(&ch->rq_head, &ch->rq_tail);
  if (R) {
    sel_claim(me);
    lua_pushvalue(L, vidx);
    wake_with(L, R, 1);
    return 1;
  }
  if (ch->count >= ch->cap) return 0;
  sel_claim(me);
  lua_getfenv(L, 1);
  lua_pushvalue(L, vidx);
  lua_rawseti(L, -2, 1 + (ch->head + ch->count) % ch->cap);
  lua_pop(L, 1);
  ch->count++;
  return 1;
}

/* Take the next value (the buffer's first, or a waiting sender's) and
 * push it; a waiting sender's value then fills the room in the buffer.
 * env: the channel's env table. Returns 1, or 0 (pushes nothing) if none. */
static int take(lua_State *L, chan *ch, int env, coru_task *me) {
  if (ch->count > 0) {
    sel_claim(me);
    int slot = 1 + ch->head;
    lua_rawgeti(L, env, slot);  /* the value */
    lua_pushnil(L);
    lua_rawseti(L, env, slot);
    ch->head = (ch->head + 1) % ch->cap;
    ch->count--;
    coru_task *S = pop_live(&ch->sq_head, &ch->sq_tail);
    if (S) {
      take_sent(L, env, S);
      lua_rawseti(L, env, 1 + (ch->head + ch->count) % ch->cap);
      ch->count++;
      sender_done(L, S, 1);
    }
    return 1;
  }
  coru_task *S = pop_live(&ch->sq_head, &ch->sq_tail);
  if (!S) return 0;
  sel_claim(me);
  take_sent(L, env, S);
  sender_done(L, S, 1);
  return 1;
}

static int l_chan_send(lua_State *L) {
  chan *ch = checkchan(L, 1);
  lua_settop(L, 2);
  coru_task *me = coru_R->current;
  int skip = sel_skip(L, me);
  if (skip) return skip;
  if (ch->closed) { sel_claim(me); return closed(L); }
  if (give(L, ch, 2, me)) { lua_pushboolean(L, 1); return 1; }
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
  if (take(L, ch, 2, me)) return 1;
  if (ch->closed) { sel_claim(me); return closed(L); }
  coru_enter(L, 0, "channel:recv (it must wait)", CORU_TASK_ONLY);
  lua_settop(L, 1);
  return chan_wait(L, ch, coru_R->current, 0);
}

static int l_chan_close(lua_State *L) {
  chan *ch = checkchan(L, 1);
  if (ch->closed) return 0;
  ch->closed = 1;
  coru_task *T;
  while ((T = pop_live(&ch->rq_head, &ch->rq_tail))) wake_with(L, T, closed(L));
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
  if (ch->closed) return closed(L);
  lua_pushboolean(L, give(L, ch, 2, NULL));
  return 1;
}

/* ch:try_recv(): true, v if a value was there (buffered or from a waiting
 * sender), false if none, nil, "closed" once closed and drained. */
static int l_chan_try_recv(lua_State *L) {
  chan *ch = checkchan(L, 1);
  lua_settop(L, 1);
  lua_getfenv(L, 1);            /* 2 */
  lua_pushboolean(L, 1);        /* 3 */
  if (take(L, ch, 2, NULL)) return 2;
  if (ch->closed) return closed(L);
  lua_pushboolean(L, 0);
  return 1;
}

/* coru._select_flag(): the flag of one coru.select (a userdata int). */
#define SELECT_FLAG_MT "coru.select_flag"

static int l_select_flag(lua_State *L) {
  int *f = lua_newuserdata(L, sizeof *f);
  *f = 0;
  if (luaL_newmetatable(L, SELECT_FLAG_MT)) coru_protect_mt(L);
  lua_setmetatable(L, -2);   /* case and claim write into it: only a flag will do */
  return 1;
}

/* coru._select_case(flag): the running task is a case of that select. */
static int l_select_case(lua_State *L) {
  int *flag = coru_check_udata(L, 1, SELECT_FLAG_MT, "_select_case");
  coru_task *T = coru_R->current;
  if (!T) return luaL_error(L, "coru._select_case: needs a running task");
  T->sel = flag;
  return 0;
}

/* coru._select_claim(flag): true if nothing fired yet (it fires now). */
static int l_select_claim(lua_State *L) {
  int *f = coru_check_udata(L, 1, SELECT_FLAG_MT, "_select_claim");   /* wrote into any userdata */
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

static const coru_Reg chan_funcs[] = {
  {"channel", l_chan_new, 0},
  {"_select_flag", l_select_flag, 0},
  {"_select_case", l_select_case, 0},
  {"_select_claim", l_select_claim, 0},
  {NULL, NULL, 0}
};

void coru_open_chan(lua_State *L) {
  coru_R->chan_mt_ref = make_mt(L, "coru.channel", chan_methods, l_chan_tostring);
  lua_pop(L, 1);
  coru_setfuncs(L, chan_funcs);
}
