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
} cfsevent;

static coru_htype fs_event_type;

static int l_new_fs_event(lua_State *L) {
  cfsevent *e = coru_handle_alloc(L, &fs_event_type, sizeof *e, offsetof(cfsevent, ev));
  int r = uv_fs_event_init(coru_R->loop, &e->ev);
  if (r < 0) { coru_handle_init_failed(L, &e->base); return coru_fail(L, r, NULL); }
  return 1;
}

static void fs_event_cb(uv_fs_event_t *h, const char *filename, int events, int status) {
  cfsevent *e = h->data;
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
  cfsevent *e = (cfsevent *)coru_check_handle(L, 1, &fs_event_type);
  const char *path = coru_fs_checkpath(L, 2, "fs_event_start");
  int flags = 0;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "watch_entry");
    if (lua_toboolean(L, -1)) flags |= UV_FS_EVENT_WATCH_ENTRY;
    lua_getfield(L, 3, "stat");
    if (lua_toboolean(L, -1)) flags |= UV_FS_EVENT_STAT;
    lua_getfield(L, 3, "recursive");
    if (lua_toboolean(L, -1)) flags |= UV_FS_EVENT_RECURSIVE;
    lua_pop(L, 3);
  } else if (!lua_isnoneornil(L, 3)) {
    flags = (int)coru_check_int(L, 3, CORU_INT_MIN, CORU_INT_MAX, "fs_event_start");
  }
  int ref = coru_ref_cb(L, 4);
  uv_fs_event_stop(&e->ev);
  int r = uv_fs_event_start(&e->ev, fs_event_cb, path, (unsigned)flags);
  if (r < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    coru_handle_clear_cb(L, &e->base, &e->base.cb_ref);
    return coru_fail(L, r, path);
  }
  coru_handle_set_cb(L, &e->base, &e->base.cb_ref, ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_fs_event_stop(lua_State *L) {
  cfsevent *e = (cfsevent *)coru_check_handle(L, 1, &fs_event_type);
  uv_fs_event_stop(&e->ev);
  coru_handle_clear_cb(L, &e->base, &e->base.cb_ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_fs_event_getpath(lua_State *L) {
  cfsevent *e = (cfsevent *)coru_check_handle(L, 1, &fs_event_type);
  char buf[4096];
  size_t len = sizeof buf;
  int r = uv_fs_event_getpath(&e->ev, buf, &len);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushlstring(L, buf, len);
  return 1;
}

static const coru_Reg fs_event_methods[] = {
  {"start", l_fs_event_start, 0},
  {"stop", l_fs_event_stop, 0},
  {"getpath", l_fs_event_getpath, 0},
  {NULL, NULL, 0}
};
static coru_htype fs_event_type = {"coru.fs_event", CORU_K_FS_EVENT, CORU_K_FS_EVENT,
                                   fs_event_methods, NULL, NULL, NULL};

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
} cfspoll;

static coru_htype fs_poll_type;

static uv_fs_poll_t *fs_poll_uv(cfspoll *p) { return (uv_fs_poll_t *)p->base.uvh; }

static uv_fs_poll_t *fs_poll_fresh(cfspoll *p) {
  uv_fs_poll_t *u = malloc(sizeof *u);
  if (!u) return NULL;
  uv_fs_poll_init(coru_R->loop, u);   /* cannot fail: it only links the handle */
  u->data = p;
  return u;
}

static void fs_poll_retired(uv_handle_t *u) { free(u); }

static void fs_poll_on_free(coru_handle *h) { free(h->uvh); }

static int l_new_fs_poll(lua_State *L) {
  cfspoll *p = coru_handle_alloc(L, &fs_poll_type, sizeof *p, 0);
  uv_fs_poll_t *u = fs_poll_fresh(p);
  if (!u) { coru_handle_init_failed(L, &p->base); return coru_fail(L, UV_ENOMEM, NULL); }
  p->base.uvh = (uv_handle_t *)u;
  return 1;
}

static void fs_poll_cb(uv_fs_poll_t *h, int status, const uv_stat_t *prev, const uv_stat_t *curr) {
  cfspoll *p = h->data;
  lua_State *L = coru_R->L;
  if (!p || p->base.cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->base.cb_ref);
  if (status < 0) coru_push_errmsg(L, status, NULL); else lua_pushnil(L);
  if (prev) coru_fs_push_stat(L, prev); else lua_pushnil(L);
  if (curr) coru_fs_push_stat(L, curr); else lua_pushnil(L);
  coru_callback(3);
}

static int l_fs_poll_start(lua_State *L) {
  cfspoll *p = (cfspoll *)coru_check_handle(L, 1, &fs_poll_type);
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
  if (r < 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    coru_handle_clear_cb(L, &p->base, &p->base.cb_ref);
    return coru_fail(L, r, path);
  }
  p->started = 1;
  coru_handle_set_cb(L, &p->base, &p->base.cb_ref, ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_fs_poll_stop(lua_State *L) {
  cfspoll *p = (cfspoll *)coru_check_handle(L, 1, &fs_poll_type);
  uv_fs_poll_stop(fs_poll_uv(p));
  coru_handle_clear_cb(L, &p->base, &p->base.cb_ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_fs_poll_getpath(lua_State *L) {
  cfspoll *p = (cfspoll *)coru_check_handle(L, 1, &fs_poll_type);
  char buf[4096];
  size_t len = sizeof buf;
  int r = uv_fs_poll_getpath(fs_poll_uv(p), buf, &len);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushlstring(L, buf, len);
  return 1;
}

static const coru_Reg fs_poll_methods[] = {
  {"start", l_fs_poll_start, 0},
  {"stop", l_fs_poll_stop, 0},
  {"getpath", l_fs_poll_getpath, 0},
  {NULL, NULL, 0}
};
static coru_htype fs_poll_type = {"coru.fs_poll", CORU_K_FS_POLL, CORU_K_FS_POLL,
                                  fs_poll_methods, NULL, fs_poll_on_free, NULL};

/* ---------------------------------------------------------- open */

static const coru_Reg fswatch_funcs[] = {
  {"new_fs_event", l_new_fs_event, 0}, {"fs_event_start", l_fs_event_start, 0},
  {"fs_event_stop", l_fs_event_stop, 0}, {"fs_event_getpath", l_fs_event_getpath, 0},
  {"new_fs_poll", l_new_fs_poll, 0}, {"fs_poll_start", l_fs_poll_start, 0},
  {"fs_poll_stop", l_fs_poll_stop, 0}, {"fs_poll_getpath", l_fs_poll_getpath, 0},
  {NULL, NULL, 0}
};

void coru_open_fswatch(lua_State *L) {
  coru_register_htype(L, &fs_event_type);
  coru_register_htype(L, &fs_poll_type);
  coru_setfuncs(L, fswatch_funcs);
}
