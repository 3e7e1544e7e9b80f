/*
 * timer.c - timers (luv's API), idle/prepare/check handles, and the pool of
 * one-shot deadlines the scheduler uses for sleep and timeouts.
 */
#include <stdlib.h>
#include "coru.h"

/* ---------------------------------------------------------------- timers */

typedef struct {
  coru_handle base;
  uv_timer_t t;
  int cb_ref;
} ctimer;

static coru_htype timer_type;

static void timer_on_close(coru_handle *h) {
  ctimer *t = (ctimer *)h;
  coru_unref(coru_R->L, &t->cb_ref);
}

static ctimer *checktimer(lua_State *L, int idx) {
  return (ctimer *)coru_check_handle(L, idx, &timer_type);
}

static int l_new_timer(lua_State *L) {
  ctimer *t = coru_handle_alloc(L, &timer_type, sizeof *t, offsetof(ctimer, t));
  t->cb_ref = LUA_NOREF;
  int r = uv_timer_init(coru_R->loop, &t->t);
  if (r < 0) { coru_handle_init_failed(L, &t->base); return coru_fail(L, r, NULL); }
  return 1;
}

static void timer_cb(uv_timer_t *ut) {
  ctimer *t = ut->data;
  lua_State *L = coru_R->L;
  if (t->cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->cb_ref);
  if (uv_timer_get_repeat(ut) > 0) { coru_callback(0); return; }
  /* one-shot: the callback still owns the timer while it runs (it may
   * start it again, or set_repeat and again, as libuv allows); once it
   * returned, a timer it did not restart is done and releases what kept
   * it alive. */
  coru_handle_push(L, &t->base);
  lua_insert(L, -2);
  coru_callback(0);
  if (!t->base.closing && !uv_is_active((uv_handle_t *)ut))
    coru_handle_clear_cb(L, &t->base, &t->cb_ref);
  lua_pop(L, 1);
}

static uint64_t checkms(lua_State *L, int idx) {
  lua_Number n = luaL_checknumber(L, idx);
  if (n < 0) luaL_argerror(L, idx, "must be >= 0 (milliseconds)");
  return (uint64_t)n;
}

static int l_timer_start(lua_State *L) {
  ctimer *t = checktimer(L, 1);
  uint64_t timeout = checkms(L, 2), rep = checkms(L, 3);
  coru_handle_set_cb(L, &t->base, &t->cb_ref, coru_ref_cb(L, 4));
  int r = uv_timer_start(&t->t, timer_cb, timeout, rep);
  if (r < 0) {
    coru_handle_clear_cb(L, &t->base, &t->cb_ref);
    return coru_fail(L, r, NULL);
  }
  lua_pushinteger(L, 0);
  return 1;
}

static int l_timer_stop(lua_State *L) {
  ctimer *t = checktimer(L, 1);
  uv_timer_stop(&t->t);
  coru_handle_clear_cb(L, &t->base, &t->cb_ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_timer_again(lua_State *L) {
  ctimer *t = checktimer(L, 1);
  if (t->cb_ref == LUA_NOREF) return coru_fail(L, UV_EINVAL, "timer was never started");
  int r = uv_timer_again(&t->t);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_timer_set_repeat(lua_State *L) {
  uv_timer_set_repeat(&checktimer(L, 1)->t, checkms(L, 2));
  return 0;
}

static int l_timer_get_repeat(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_timer_get_repeat(&checktimer(L, 1)->t));
  return 1;
}

static int l_timer_get_due_in(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_timer_get_due_in(&checktimer(L, 1)->t));
  return 1;
}

/* t:wait(): suspend the current task until the timer fires next. Kept
 * simple: sleeps for the time the timer is due in. */

static const coru_Reg timer_methods[] = {
  {"start", l_timer_start, 0},
  {"stop", l_timer_stop, 0},
  {"again", l_timer_again, 0},
  {"set_repeat", l_timer_set_repeat, 0},
  {"get_repeat", l_timer_get_repeat, 0},
  {"get_due_in", l_timer_get_due_in, 0},
  {NULL, NULL, 0}
};

static coru_htype timer_type = {"coru.timer", CORU_K_TIMER, CORU_K_TIMER, timer_methods,
                                timer_on_close, NULL, NULL};

/* --------------------------------------------------- idle, prepare, check */

typedef struct {
  coru_handle base;
  union { uv_handle_t h; uv_idle_t idle; uv_prepare_t prepare; uv_check_t check; } u;
  int cb_ref;
} cwatch;

static void watch_on_close(coru_handle *h) {
  coru_unref(coru_R->L, &((cwatch *)h)->cb_ref);
}

static void watch_fire(cwatch *w) {
  lua_State *L = coru_R->L;
  if (w->cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->cb_ref);
  coru_callback(0);
}

static void idle_cb(uv_idle_t *h) { watch_fire(h->data); }
static void prepare_cb(uv_prepare_t *h) { watch_fire(h->data); }
static void check_cb(uv_check_t *h) { watch_fire(h->data); }

#define WATCH_FAMILY(kind, KIND)                                                     \
  static coru_htype kind##_type;                                                     \
  static int l_new_##kind(lua_State *L) {                                            \
    cwatch *w = coru_handle_alloc(L, &kind##_type, sizeof *w, offsetof(cwatch, u));  \
    w->cb_ref = LUA_NOREF;                                                           \
    int r = uv_##kind##_init(coru_R->loop, &w->u.kind);                              \
    if (r < 0) { coru_handle_init_failed(L, &w->base); return coru_fail(L, r, NULL); } \
    return 1;                                                                        \
  }                                                                                  \
  static int l_##kind##_start(lua_State *L) {                                        \
    cwatch *w = (cwatch *)coru_check_handle(L, 1, &kind##_type);                     \
    coru_handle_set_cb(L, &w->base, &w->cb_ref, coru_ref_cb(L, 2));                   \
    uv_##kind##_start(&w->u.kind, kind##_cb);                                        \
    lua_pushinteger(L, 0);                                                           \
    return 1;                                                                        \
  }                                                                                  \
  static int l_##kind##_stop(lua_State *L) {                                         \
    cwatch *w = (cwatch *)coru_check_handle(L, 1, &kind##_type);                     \
    uv_##kind##_stop(&w->u.kind);                                                    \
    coru_handle_clear_cb(L, &w->base, &w->cb_ref);                                   \
    lua_pushinteger(L, 0);                                                           \
    return 1;                                                                        \
  }                                                                                  \
  static const coru_Reg kind##_methods[] = {                                         \
    {"start", l_##kind##_start, 0}, {"stop", l_##kind##_stop, 0}, {NULL, NULL, 0}};  \
  static coru_htype kind##_type = {"coru." #kind, CORU_K_##KIND, CORU_K_##KIND,      \
                                   kind##_methods, watch_on_close, NULL, NULL};

WATCH_FAMILY(idle, IDLE)
WATCH_FAMILY(prepare, PREPARE)
WATCH_FAMILY(check, CHECK)

/* ------------------------------------------------------------- deadlines */

struct coru_deadline {
  coru_handle base;
  uv_timer_t t;
  void (*fn)(void *);
  void *data;
  coru_deadline *next_free;
};

#define POOL_MAX 256

static void deadline_free(coru_handle *h) { (void)h; }
static void deadline_closed(uv_handle_t *h) { free(h->data); }
static coru_htype deadline_type = {"coru.deadline", CORU_K_INTERNAL, CORU_K_INTERNAL, NULL, NULL,
                                   deadline_free, NULL};

static void deadline_release(coru_deadline *d) {
  d->fn = NULL;
  if (coru_R->dl_nfree < POOL_MAX && coru_R->loop) {
    d->next_free = coru_R->dl_free;
    coru_R->dl_free = d;
    coru_R->dl_nfree++;
  } else {
    d->base.closing = 1;
    uv_close((uv_handle_t *)&d->t, deadline_closed);
  }
}

static void deadline_cb(uv_timer_t *t) {
  coru_deadline *d = t->data;
  void (*fn)(void *) = d->fn;
  void *data = d->data;
  deadline_release(d);
  if (fn) fn(data);
}

coru_deadline *coru_deadline_start(uint64_t ms, void (*fn)(void *), void *data) {
  coru_deadline *d = coru_R->dl_free;
  if (d) {
    coru_R->dl_free = d->next_free;
    coru_R->dl_nfree--;
  } else {
    d = calloc(1, sizeof *d);
    if (!d) abort();
    d->base.uvh = (uv_handle_t *)&d->t;
    d->base.type = &deadline_type;
    d->base.self_ref = d->base.close_ref = LUA_NOREF;
    uv_timer_init(coru_R->loop, &d->t);
    d->t.data = d;
  }
  d->fn = fn;
  d->data = data;
  uv_timer_start(&d->t, deadline_cb, ms, 0);
  return d;
}

void coru_deadline_stop(coru_deadline *d) {
  uv_timer_stop(&d->t);
  deadline_release(d);
}

/* Shutdown: the pooled timers go with the loop. */
void coru_deadline_close_all(void) {
  while (coru_R->dl_free) {
    coru_deadline *d = coru_R->dl_free;
    coru_R->dl_free = d->next_free;
    d->base.closing = 1;
    uv_close((uv_handle_t *)&d->t, deadline_closed);
  }
  coru_R->dl_nfree = 0;
}

/* ------------------------------------------------------------------ open */

static const coru_Reg timer_funcs[] = {
  {"new_timer", l_new_timer, 0},
  {"timer_start", l_timer_start, 0},
  {"timer_stop", l_timer_stop, 0},
  {"timer_again", l_timer_again, 0},
  {"timer_set_repeat", l_timer_set_repeat, 0},
  {"timer_get_repeat", l_timer_get_repeat, 0},
  {"timer_get_due_in", l_timer_get_due_in, 0},
  {"new_idle", l_new_idle, 0},
  {"idle_start", l_idle_start, 0},
  {"idle_stop", l_idle_stop, 0},
  {"new_prepare", l_new_prepare, 0},
  {"prepare_start", l_prepare_start, 0},
  {"prepare_stop", l_prepare_stop, 0},
  {"new_check", l_new_check, 0},
  {"check_start", l_check_start, 0},
  {"check_stop", l_check_stop, 0},
  {NULL, NULL, 0}
};

CORU_FAMILY(timer) {
  coru_register_htype(L, &timer_type);
  coru_register_htype(L, &idle_type);
  coru_register_htype(L, &prepare_type);
  coru_register_htype(L, &check_type);
  coru_setfuncs(L, timer_funcs);
}
