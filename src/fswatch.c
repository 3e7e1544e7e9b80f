/*
 * fswatch.c - the fs_event and fs_poll handles (luv's API): a callback
 * told of changes to a path.
 */
#include <stdlib.h>
#include <string.h>
#include "coru.h"
#include "check.h"
#include "fs.h"

/* Both kinds: a path watched, its callback in the handle's slot. */
typedef struct {
  coru_handle base;
  union { uv_fs_event_t ev; uv_fs_poll_t poll; } u;
} fswatch_handle;

static coru_htype fs_event_type, fs_poll_type;
#define IS_EVENT(t) ((t) == &fs_event_type)

static int watch_new(lua_State *L, const coru_htype *t) {
  fswatch_handle *w = coru_handle_alloc(L, t, sizeof *w, offsetof(fswatch_handle, u));
  int r = IS_EVENT(t) ? uv_fs_event_init(coru_R->loop, &w->u.ev) : uv_fs_poll_init(coru_R->loop, &w->u.poll);
  return coru_handle_inited(L, &w->base, r);
}

static void watch_stop(fswatch_handle *w) {
  if (IS_EVENT(w->base.type)) uv_fs_event_stop(&w->u.ev); else uv_fs_poll_stop(&w->u.poll);
}

static int l_watch_stop(lua_State *L, const coru_htype *t) {
  fswatch_handle *w = (fswatch_handle *)coru_check_handle(L, 1, t);
  watch_stop(w);
  return coru_handle_stopped(L, &w->base);
}

static int l_watch_getpath(lua_State *L, const coru_htype *t) {
  fswatch_handle *w = (fswatch_handle *)coru_check_handle(L, 1, t);
  char buf[4096];
  size_t len = sizeof buf;
  int r = IS_EVENT(t) ? uv_fs_event_getpath(&w->u.ev, buf, &len) : uv_fs_poll_getpath(&w->u.poll, buf, &len);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushlstring(L, buf, len);
  return 1;
}

/* ---------------------------------------------------------- fs_event */

static void fs_event_cb(uv_fs_event_t *h, const char *filename, int events, int status) {
  fswatch_handle *e = h->data;
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
  fswatch_handle *w = (fswatch_handle *)coru_check_handle(L, 1, &fs_event_type);
  const char *path = coru_fs_checkpath(L, 2, "fs_event_start");
  static const coru_flag names[] = {{"watch_entry", UV_FS_EVENT_WATCH_ENTRY},
    {"stat", UV_FS_EVENT_STAT}, {"recursive", UV_FS_EVENT_RECURSIVE}, {NULL, 0}};
  int flags = coru_opt_flags(L, 3, names, "fs_event_start");
  int ref = coru_ref_cb(L, 4);
  watch_stop(w);
  int r = uv_fs_event_start(&w->u.ev, fs_event_cb, path, (unsigned)flags);
  return coru_handle_started(L, &w->base, ref, r, path);
}

/* ---------------------------------------------------------- fs_poll */

static void fs_poll_cb(uv_fs_poll_t *h, int status, const uv_stat_t *prev, const uv_stat_t *curr) {
  fswatch_handle *p = h->data;
  lua_State *L = coru_R->L;
  if (p->base.cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->base.cb_ref);
  if (status < 0) coru_push_errmsg(L, status, NULL); else lua_pushnil(L);
  if (prev) coru_fs_push_stat(L, prev); else lua_pushnil(L);
  if (curr) coru_fs_push_stat(L, curr); else lua_pushnil(L);
  coru_callback(3);
}

static int l_fs_poll_start(lua_State *L) {
  fswatch_handle *w = (fswatch_handle *)coru_check_handle(L, 1, &fs_poll_type);
  const char *path = coru_fs_checkpath(L, 2, "fs_poll_start");
  lua_Integer iv = coru_check_int(L, 3, CORU_INT_MIN, 0xffffffff, "fs_poll_start");
  if (iv < 1) coru_fs_argerr(L, 3, "fs_poll_start", "interval must be >= 1 (milliseconds)");
  int ref = coru_ref_cb(L, 4);
  watch_stop(w);
  int r = uv_fs_poll_start(&w->u.poll, fs_poll_cb, path, (unsigned)iv);
  return coru_handle_started(L, &w->base, ref, r, path);
}

/* ---------------------------------------------------------- open */

#define WATCH_KIND(kind, KIND)                                                              \
  static int l_new_##kind(lua_State *L) { return watch_new(L, &kind##_type); }              \
  static int l_##kind##_stop(lua_State *L) { return l_watch_stop(L, &kind##_type); }       \
  static int l_##kind##_getpath(lua_State *L) { return l_watch_getpath(L, &kind##_type); } \
  static const coru_Fn kind##_fns[] = {                                                     \
    {NULL, "new_" #kind, l_new_##kind, 0}, CORU_FN(kind, start, 0), CORU_FN(kind, stop, 0), \
    CORU_FN(kind, getpath, 0), CORU_FNS_END};                                               \
  static coru_htype kind##_type = {"coru." #kind, CORU_K_##KIND, CORU_K_##KIND, kind##_fns, \
                                   NULL, NULL, NULL};

WATCH_KIND(fs_event, FS_EVENT)
WATCH_KIND(fs_poll, FS_POLL)

CORU_FAMILY(fswatch) {
  coru_register_htype(L, &fs_event_type);
  coru_register_htype(L, &fs_poll_type);
}
