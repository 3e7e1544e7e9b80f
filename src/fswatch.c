/*
 * fswatch.c - the fs_event and fs_poll handles (luv's API): a callback
 * told of changes to a path.
 */
#include <stdlib.h>
#include <string.h>
#include "coru.h"
#include "check.h"
#include "fs.h"

/* ---------------------------------------------------------- fs_event */

typedef struct {
  coru_handle base;
  uv_fs_event_t ev;
} fs_event_handle;

static coru_htype fs_event_type;

static int l_new_fs_event(lua_State *L) {
  fs_event_handle *e = coru_handle_alloc(L, &fs_event_type, sizeof *e, offsetof(fs_event_handle, ev));
  return coru_handle_inited(L, &e->base, uv_fs_event_init(coru_R->loop, &e->ev));
}

static void fs_event_cb(uv_fs_event_t *h, const char *filename, int events, int status) {
  fs_event_handle *e = h->data;
  lua_State *L = coru_R->L;
  if (e->base.cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->base.cb_ref);
  if (status < 0) {
    coru_push_errmsg(L, status, NULL);
    coru_callback(1);
    return;
  }
  lua_pushnil(L);
  if (filename) lua_pushstring(L, filename); else lua_pushnil(L);
  lua_createtable(L, 0, 2);
  if (events & UV_RENAME) { lua_pushboolean(L, 1); lua_setfield(L, -2, "rename"); }
  if (events & UV_CHANGE) { lua_pushboolean(L, 1); lua_setfield(L, -2, "change"); }
  coru_callback(3);
}

static int l_fs_event_start(lua_State *L) {
  fs_event_handle *e = (fs_event_handle *)coru_check_handle(L, 1, &fs_event_type);
  const char *path = coru_fs_checkpath(L, 2, "fs_event_start");
  static const coru_flag names[] = {{"watch_entry", UV_FS_EVENT_WATCH_ENTRY},
    {"stat", UV_FS_EVENT_STAT}, {"recursive", UV_FS_EVENT_RECURSIVE}, {NULL, 0}};
  int flags = coru_opt_flags(L, 3, names, "fs_event_start");
  int ref = coru_ref_cb(L, 4);
  uv_fs_event_stop(&e->ev);
  int r = uv_fs_event_start(&e->ev, fs_event_cb, path, (unsigned)flags);
  return coru_handle_started(L, &e->base, ref, r, path);
}

static int l_fs_event_stop(lua_State *L) {
  fs_event_handle *e = (fs_event_handle *)coru_check_handle(L, 1, &fs_event_type);
  uv_fs_event_stop(&e->ev);
  return coru_handle_stopped(L, &e->base);
}

static int l_fs_event_getpath(lua_State *L) {
  fs_event_handle *e = (fs_event_handle *)coru_check_handle(L, 1, &fs_event_type);
  char buf[4096];
  size_t len = sizeof buf;
  int r = uv_fs_event_getpath(&e->ev, buf, &len);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushlstring(L, buf, len);
  return 1;
}

static const coru_Fn fs_event_fns[] = {
  {NULL, "new_fs_event", l_new_fs_event, 0}, CORU_FN(fs_event, start, 0),
  CORU_FN(fs_event, stop, 0), CORU_FN(fs_event, getpath, 0), CORU_FNS_END
};
static coru_htype fs_event_type = {"coru.fs_event", CORU_K_FS_EVENT, CORU_K_FS_EVENT,
                                   fs_event_fns, NULL, NULL, NULL};

/* ---------------------------------------------------------- fs_poll */

/* libuv 1.44's fs_poll does not survive a restart while the previous poll
 * context winds down: uv_fs_poll_stop during a stat in flight leaves that
 * stat's completion to clean up, but a uv_fs_poll_start before it lands
 * makes the handle active again, so the old context delivers its stale
 * result and re-arms its timer, whose callback then aborts on
 * assert(ctx->parent_handle->poll_ctx == ctx) (fs-poll.c:177). So a
 * uv_fs_poll_t is started at most once: a restart closes it (a closing
 * handle makes the old context stop; the handle frees itself once its last
 * context is gone) and starts a fresh one. The uv handle therefore lives
 * apart from the coru struct, which points at the current one. */
typedef struct {
  coru_handle base;     /* base.uvh: the current uv_fs_poll_t */
  int started;          /* the current one was started once */
} fs_poll_handle;

static coru_htype fs_poll_type;

static uv_fs_poll_t *fs_poll_uv(fs_poll_handle *p) { return (uv_fs_poll_t *)p->base.uvh; }

static uv_fs_poll_t *fs_poll_fresh(fs_poll_handle *p) {
  uv_fs_poll_t *u = malloc(sizeof *u);
  if (!u) return NULL;
  uv_fs_poll_init(coru_R->loop, u);   /* cannot fail: it only links the handle */
  u->data = p;
  return u;
}

static void fs_poll_retired(uv_handle_t *u) { free(u); }

static void fs_poll_on_free(coru_handle *h) { free(h->uvh); }

static int l_new_fs_poll(lua_State *L) {
  fs_poll_handle *p = coru_handle_alloc(L, &fs_poll_type, sizeof *p, 0);
  uv_fs_poll_t *u = fs_poll_fresh(p);
  if (!u) { coru_handle_init_failed(L, &p->base); return coru_fail(L, UV_ENOMEM, NULL); }
  p->base.uvh = (uv_handle_t *)u;
  return 1;
}

static void fs_poll_cb(uv_fs_poll_t *h, int status, const uv_stat_t *prev, const uv_stat_t *curr) {
  fs_poll_handle *p = h->data;
  lua_State *L = coru_R->L;
  if (!p || p->base.cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->base.cb_ref);
  if (status < 0) coru_push_errmsg(L, status, NULL); else lua_pushnil(L);
  if (prev) coru_fs_push_stat(L, prev); else lua_pushnil(L);
  if (curr) coru_fs_push_stat(L, curr); else lua_pushnil(L);
  coru_callback(3);
}

static int l_fs_poll_start(lua_State *L) {
  fs_poll_handle *p = (fs_poll_handle *)coru_check_handle(L, 1, &fs_poll_type);
  const char *path = coru_fs_checkpath(L, 2, "fs_poll_start");
  lua_Integer iv = coru_check_int(L, 3, CORU_INT_MIN, 0xffffffff, "fs_poll_start");
  if (iv < 1) coru_fs_argerr(L, 3, "fs_poll_start", "interval must be >= 1 (milliseconds)");
  int ref = coru_ref_cb(L, 4);
  if (p->started) {   /* a restart: retire the started handle (see above) */
    uv_fs_poll_t *u = fs_poll_fresh(p);
    if (!u) {
      luaL_unref(L, LUA_REGISTRYINDEX, ref);
      return coru_fail(L, UV_ENOMEM, path);
    }
    uv_fs_poll_t *old = fs_poll_uv(p);
    old->data = NULL;
    uv_close((uv_handle_t *)old, fs_poll_retired);
    p->base.uvh = (uv_handle_t *)u;
    p->started = 0;
  }
  int r = uv_fs_poll_start(fs_poll_uv(p), fs_poll_cb, path, (unsigned)iv);
  if (r >= 0) p->started = 1;
  return coru_handle_started(L, &p->base, ref, r, path);
}

static int l_fs_poll_stop(lua_State *L) {
  fs_poll_handle *p = (fs_poll_handle *)coru_check_handle(L, 1, &fs_poll_type);
  uv_fs_poll_stop(fs_poll_uv(p));
  return coru_handle_stopped(L, &p->base);
}

static int l_fs_poll_getpath(lua_State *L) {
  fs_poll_handle *p = (fs_poll_handle *)coru_check_handle(L, 1, &fs_poll_type);
  char buf[4096];
  size_t len = sizeof buf;
  int r = uv_fs_poll_getpath(fs_poll_uv(p), buf, &len);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushlstring(L, buf, len);
  return 1;
}

static const coru_Fn fs_poll_fns[] = {
  {NULL, "new_fs_poll", l_new_fs_poll, 0}, CORU_FN(fs_poll, start, 0), CORU_FN(fs_poll, stop, 0),
  CORU_FN(fs_poll, getpath, 0), CORU_FNS_END
};
static coru_htype fs_poll_type = {"coru.fs_poll", CORU_K_FS_POLL, CORU_K_FS_POLL,
                                  fs_poll_fns, NULL, fs_poll_on_free, NULL};

/* ---------------------------------------------------------- open */

CORU_FAMILY(fswatch) {
  coru_register_htype(L, &fs_event_type);
  coru_register_htype(L, &fs_poll_type);
}
