/*
 * timer.c - timers (luv's API) and idle/prepare/check handles. The pool of
 * one-shot deadlines the scheduler uses is in deadline.c.
 */
#include <stdlib.h>
#include "coru.h"
#include "check.h"

/* ---------------------------------------------------------------- timers */

typedef struct {
  coru_handle base;
  uv_timer_t t;
} timer_handle;

static coru_htype timer_type;

static timer_handle *checktimer(lua_State *L, int idx) {
  return (timer_handle *)coru_check_handle(L, idx, &timer_type);
}

static int l_new_timer(lua_State *L) {
  timer_handle *t = coru_handle_alloc(L, &timer_type, sizeof *t, offsetof(timer_handle, t));
  return coru_handle_inited(L, &t->base, uv_timer_init(coru_R->loop, &t->t));
}

static void timer_cb(uv_timer_t *ut) {
  timer_handle *t = ut->data;
  lua_State *L = coru_R->L;
  if (t->base.cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->base.cb_ref);
  if (uv_timer_get_repeat(ut) > 0) { coru_callback(0); return; }
  /* one-shot: the callback still owns the timer while it runs (it may
   * start it again, or set_repeat and again, as libuv allows); once it
   * returned, a timer it did not restart is done and releases what kept
   * it alive. */
  coru_handle_push(L, &t->base);
  lua_insert(L, -2);
  coru_callback(0);
  if (!t->base.closing && !uv_is_active((uv_handle_t *)ut))
    coru_handle_clear_cb(L, &t->base, &t->base.cb_ref);
  lua_pop(L, 1);
}

static uint64_t checkms(lua_State *L, int idx) {
  lua_Number n = luaL_checknumber(L, idx);
  if (n < 0) luaL_argerror(L, idx, "must be >= 0 (milliseconds)");
  return coru_ms_value(L, n, idx, NULL);   /* NaN refused, huge clamped */
}

static int l_timer_start(lua_State *L) {
  timer_handle *t = checktimer(L, 1);
  uint64_t timeout = checkms(L, 2), rep = checkms(L, 3);
  int ref = coru_ref_cb(L, 4);
  return coru_handle_started(L, &t->base, ref, uv_timer_start(&t->t, timer_cb, timeout, rep), NULL);
}

static int l_timer_stop(lua_State *L) {
  timer_handle *t = checktimer(L, 1);
  uv_timer_stop(&t->t);
  return coru_handle_stopped(L, &t->base);
}

static int l_timer_again(lua_State *L) {
  timer_handle *t = checktimer(L, 1);
  if (t->base.cb_ref == LUA_NOREF) return coru_fail(L, UV_EINVAL, "timer was never started");
  int r = uv_timer_again(&t->t);
  return coru_result(L, r, NULL);
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

static const coru_Fn timer_fns[] = {
  {NULL, "new_timer", l_new_timer, 0}, CORU_FN(timer, start, 0), CORU_FN(timer, stop, 0),
  CORU_FN(timer, again, 0), CORU_FN(timer, set_repeat, 0), CORU_FN(timer, get_repeat, 0),
  CORU_FN(timer, get_due_in, 0), CORU_FNS_END
};

static coru_htype timer_type = {"coru.timer", CORU_K_TIMER, CORU_K_TIMER, timer_fns,
                                NULL, NULL, NULL};

/* --------------------------------------------------- idle, prepare, check */

typedef struct {
  coru_handle base;
  union { uv_handle_t h; uv_idle_t idle; uv_prepare_t prepare; uv_check_t check; } u;
} watch_handle;

static void watch_fire(watch_handle *w) {
  lua_State *L = coru_R->L;
  if (w->base.cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->base.cb_ref);
  coru_callback(0);
}

static void idle_cb(uv_idle_t *h) { watch_fire(h->data); }
static void prepare_cb(uv_prepare_t *h) { watch_fire(h->data); }
static void check_cb(uv_check_t *h) { watch_fire(h->data); }

#define WATCH_FAMILY(kind, KIND)                                                     \
  static coru_htype kind##_type;                                                     \
  static int l_new_##kind(lua_State *L) {                                            \
    watch_handle *w = coru_handle_alloc(L, &kind##_type, sizeof *w, offsetof(watch_handle, u));  \
    return coru_handle_inited(L, &w->base, uv_##kind##_init(coru_R->loop, &w->u.kind)); \
  }                                                                                  \
  static int l_##kind##_start(lua_State *L) {                                        \
    watch_handle *w = (watch_handle *)coru_check_handle(L, 1, &kind##_type);                     \
    int ref = coru_ref_cb(L, 2);                                                     \
    int r = uv_##kind##_start(&w->u.kind, kind##_cb);                                \
    return coru_handle_started(L, &w->base, ref, r, NULL);                           \
  }                                                                                  \
  static int l_##kind##_stop(lua_State *L) {                                         \
    watch_handle *w = (watch_handle *)coru_check_handle(L, 1, &kind##_type);                     \
    uv_##kind##_stop(&w->u.kind);                                                    \
    return coru_handle_stopped(L, &w->base);                                         \
  }                                                                                  \
  static const coru_Fn kind##_fns[] = {                                              \
    {NULL, "new_" #kind, l_new_##kind, 0}, CORU_FN(kind, start, 0),                  \
    CORU_FN(kind, stop, 0), CORU_FNS_END};                                           \
  static coru_htype kind##_type = {"coru." #kind, CORU_K_##KIND, CORU_K_##KIND,      \
                                   kind##_fns, NULL, NULL, NULL};

WATCH_FAMILY(idle, IDLE)
WATCH_FAMILY(prepare, PREPARE)
WATCH_FAMILY(check, CHECK)

/* ------------------------------------------------------------------ open */

CORU_FAMILY(timer) {
  coru_register_htype(L, &timer_type);
  coru_register_htype(L, &idle_type);
  coru_register_htype(L, &prepare_type);
  coru_register_htype(L, &check_type);
}
