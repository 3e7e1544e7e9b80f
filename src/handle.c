/*
 * handle.c - the userdata base of every uv handle.
 *
 * Lua holds a box {coru_handle *h}. The C struct (family specific, starting
 * with coru_handle) is malloc'd and freed only in the close callback, so
 * libuv never sees freed memory. While a handle works (a callback or a
 * waiting task), keep > 0 and the box is anchored in the registry: an
 * active handle lives on without Lua references; an inactive unreachable
 * one is closed by __gc.
 */
#include <stdlib.h>
#include <string.h>
#include "coru.h"
#include "check.h"


void *coru_handle_alloc(lua_State *L, const coru_htype *t, size_t size, size_t uvh_offset) {
  coru_box *box = lua_newuserdata(L, sizeof *box);
  box->h = NULL;
  luaL_getmetatable(L, t->name);
  lua_setmetatable(L, -2);
  coru_handle *h = calloc(1, size);
  if (!h) luaL_error(L, "out of memory");
  if (uvh_offset) {   /* 0: the family allocates its uv handle (fswatch.c's fs_poll) */
    h->uvh = (uv_handle_t *)((char *)h + uvh_offset);
    h->uvh->data = h;
  }
  h->type = t;
  h->box = box;
  h->self_ref = LUA_NOREF;
  h->close_ref = LUA_NOREF;
  h->cb_ref = LUA_NOREF;
  box->h = h;
  lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->live_ref);
  lua_pushlightuserdata(L, h);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return h;
}

void coru_handle_init_failed(lua_State *L, coru_handle *h) {
  h->box->h = NULL;
  free(h);
  lua_pop(L, 1);
}

/* The box at idx if it is a handle's (open or closed), else NULL. Only a
 * registered handle metatable maps to an htype in the registry. */
static coru_box *handle_box(lua_State *L, int idx, const coru_htype *t) {
  coru_box *box = lua_touserdata(L, idx);
  if (!box || lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  /* The registry lookup costs ~80 instructions on every method call: the
   * metatable last found is remembered (registered metatables stay
   * anchored in the registry for the runtime's life, so its address cannot
   * be reused by another table meanwhile; coru_rt_new clears it). */
  const coru_htype *ht;
  const void *mt = lua_topointer(L, -1);
  if (mt == coru_R->box_mt) {
    ht = coru_R->box_ht;
    lua_pop(L, 1);
  } else {
    lua_rawget(L, LUA_REGISTRYINDEX);      /* metatable -> htype (light userdata) */
    ht = lua_type(L, -1) == LUA_TLIGHTUSERDATA ? lua_touserdata(L, -1) : NULL;
    lua_pop(L, 1);
    if (ht) { coru_R->box_mt = mt; coru_R->box_ht = ht; }
  }
  if (!ht || !(ht->kind & t->accepts)) return NULL;
  return box;
}

coru_handle *coru_test_handle(lua_State *L, int idx, const coru_htype *t) {
  coru_box *box = handle_box(L, idx, t);
  return box ? box->h : NULL;   /* may be NULL: closed */
}

coru_handle *coru_check_handle(lua_State *L, int idx, const coru_htype *t) {
  coru_box *box = handle_box(L, idx, t);
  if (!box) {
    luaL_typerror(L, idx, t->name);
    return NULL;
  }
  if (!box->h || box->h->closing) luaL_error(L, "%s: handle is closed", t->name);
  return box->h;
}

void coru_handle_keep(lua_State *L, coru_handle *h) {
  if (h->keep++ == 0 && h->box && h->self_ref == LUA_NOREF) {
    coru_handle_push(L, h);
    h->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
}

void coru_handle_release(lua_State *L, coru_handle *h) {
  if (h->keep > 0 && --h->keep == 0) coru_unref(L, &h->self_ref);
}

void coru_handle_set_cb(lua_State *L, coru_handle *h, int *slot, int ref) {
  if (*slot == LUA_NOREF) coru_handle_keep(L, h);
  else luaL_unref(L, LUA_REGISTRYINDEX, *slot);
  *slot = ref;
}

void coru_handle_clear_cb(lua_State *L, coru_handle *h, int *slot) {
  if (*slot == LUA_NOREF) return;
  coru_unref(L, slot);
  coru_handle_release(L, h);
}

int coru_handle_push(lua_State *L, coru_handle *h) {
  if (h->self_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->self_ref);
    return 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->live_ref);
  lua_pushlightuserdata(L, h);
  lua_rawget(L, -2);
  lua_remove(L, -2);
  return 1;
}

static void close_cb(uv_handle_t *uvh) {
  coru_handle *h = uvh->data;
  lua_State *L = coru_R ? coru_R->L : NULL;
  if (h->type->on_free) h->type->on_free(h);
  if (h->box) h->box->h = NULL;
  if (L) {
    if (h->close_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, h->close_ref);
      coru_unref(L, &h->close_ref);
      if (coru_R->loop) coru_callback(0); else lua_pop(L, 1);
    }
    coru_unref(L, &h->self_ref);
    if (coru_R->live_ref != LUA_NOREF) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->live_ref);
      lua_pushlightuserdata(L, h);
      lua_pushnil(L);
      lua_rawset(L, -3);
      lua_pop(L, 1);
    }
  }
  free(h);
}

void coru_handle_close(lua_State *L, coru_handle *h) {
  if (h->closing) return;
  h->closing = 1;
  if (h->type->on_close) h->type->on_close(h);
  coru_unref(L, &h->cb_ref);   /* the callback slot goes with the handle */
  /* stay anchored until the close callback if Lua still has the box */
  if (h->box && h->self_ref == LUA_NOREF) {
    coru_handle_push(L, h);
    if (lua_isnil(L, -1)) lua_pop(L, 1);
    else h->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  h->keep = 0;
  uv_close(h->uvh, close_cb);
}

/* ---------------------------------------------------------- methods */

static coru_htype any_type = {"coru.handle", CORU_K_ANY, CORU_K_ANY, NULL, NULL, NULL, NULL};

static coru_handle *anyhandle(lua_State *L) { return coru_check_handle(L, 1, &any_type); }

static int l_close(lua_State *L) {
  coru_box *box = handle_box(L, 1, &any_type);
  if (!box) return luaL_typerror(L, 1, "coru.handle");
  coru_handle *h = box->h;
  if (!h || h->closing) return 0;    /* closing twice is harmless */
  if (!lua_isnoneornil(L, 2)) h->close_ref = coru_ref_cb(L, 2);
  coru_handle_close(L, h);
  return 0;
}

static int l_ref(lua_State *L) { uv_ref(anyhandle(L)->uvh); return 0; }
static int l_unref(lua_State *L) { uv_unref(anyhandle(L)->uvh); return 0; }
static int l_has_ref(lua_State *L) { lua_pushboolean(L, uv_has_ref(anyhandle(L)->uvh)); return 1; }
static int l_is_active(lua_State *L) { lua_pushboolean(L, uv_is_active(anyhandle(L)->uvh)); return 1; }

static int l_is_closing(lua_State *L) {
  coru_box *box = handle_box(L, 1, &any_type);
  if (!box) return luaL_typerror(L, 1, "coru.handle");
  lua_pushboolean(L, !box->h || box->h->closing);
  return 1;
}

static int l_get_type(lua_State *L) {
  coru_handle *h = anyhandle(L);
  lua_pushstring(L, uv_handle_type_name(uv_handle_get_type(h->uvh)));
  lua_pushinteger(L, uv_handle_get_type(h->uvh));
  return 2;
}

static int l_fileno(lua_State *L) {
  uv_os_fd_t fd;
  int r = uv_fileno(anyhandle(L)->uvh, &fd);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, fd);
  return 1;
}

static int l_tostring(lua_State *L) {
  coru_box *box = handle_box(L, 1, &any_type);
  if (!box) return luaL_typerror(L, 1, "coru.handle");
  luaL_getmetafield(L, 1, "__name");
  const char *name = lua_tostring(L, -1);
  if (!box->h) lua_pushfstring(L, "%s: %p (closed)", name, (void *)box);
  else lua_pushfstring(L, "%s: %p", name, (void *)box->h);
  return 1;
}

static int l_gc(lua_State *L) {
  coru_box *box = handle_box(L, 1, &any_type);
  coru_handle *h = box ? box->h : NULL;
  if (!h) return 0;
  box->h = NULL;
  h->box = NULL;
  if (!h->closing && coru_R && coru_R->loop) coru_handle_close(L, h);
  return 0;
}

const coru_Reg coru_handle_methods[] = {
  {"close", l_close, 0},
  {"ref", l_ref, 0},
  {"unref", l_unref, 0},
  {"has_ref", l_has_ref, 0},
  {"is_active", l_is_active, 0},
  {"is_closing", l_is_closing, 0},
  {"get_type", l_get_type, 0},
  {"fileno", l_fileno, 0},
  {NULL, NULL, 0}
};

void coru_register_htype(lua_State *L, coru_htype *t) {
  luaL_newmetatable(L, t->name);
  lua_pushstring(L, t->name);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  coru_setfuncs(L, coru_handle_methods);
  if (t->methods) coru_setfuncs(L, t->methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, l_gc);
  lua_setfield(L, -2, "__gc");
  coru_protect_mt(L);
  t->mt = lua_topointer(L, -1);
  /* registry[metatable] = htype, for the type checks */
  lua_pushlightuserdata(L, t);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* coru.walk(fn): call fn(handle) for each live handle Lua can see. */
static int l_walk(lua_State *L) {
  if (!coru_is_callable(L, 1)) luaL_typerror(L, 1, "function");
  lua_newtable(L);
  int list = lua_gettop(L), n = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, coru_R->live_ref);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    coru_box *box = lua_touserdata(L, -1);
    if (box && box->h && !box->h->closing) lua_rawseti(L, list, ++n);
    else lua_pop(L, 1);
  }
  lua_pop(L, 1);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, 1);
    lua_rawgeti(L, list, i);
    lua_call(L, 1, 0);
  }
  return 0;
}

CORU_FAMILY(handle) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  coru_R->live_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  static const coru_Reg funcs[] = {{"walk", l_walk, 0}, {NULL, NULL, 0}};
  coru_setfuncs(L, funcs);
  /* luv-style flat names: coru.close(h), coru.is_active(h), ... */
  coru_setfuncs(L, coru_handle_methods);
}
