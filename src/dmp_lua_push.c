/*
 * dmp_lua_push.c - the bottom layer of the coru.dmp binding (dmp_lua.h):
 * argument errors, type tests, results as Lua values (UTF-8 strings,
 * {op, text} diffs, patch tables) and the opaque patch list, a userdata
 * that holds a patch list in C so that patch_from_text and patch_make
 * build no Lua table per patch and patch_apply and patch_to_text read
 * nothing back (dmp.new{opaque_patches = true}). Calls only the core.
 */
#include <stdlib.h>
#include <string.h>
#include "dmp_lua.h"

/* The patch fields' names, interned once (registry refs): reading or
 * writing a field by a key already on hand skips hashing its name. */
const char *const dmpl_key_name[DMPL_K_N] = {"diffs", "start1", "start2", "length1", "length2"};
static int key_ref[DMPL_K_N] = {LUA_NOREF, LUA_NOREF, LUA_NOREF, LUA_NOREF, LUA_NOREF};
int dmpl_mt_patch = LUA_NOREF;
int dmpl_mt_plist = LUA_NOREF;

void *dmpl_default_ud;  /* the object behind the module-level forms */

int dmpl_argerr(lua_State *L, int i, const char *fn, const char *msg) {
  /* dmp.diff_main(a, b) is d:diff_main(a, b) on the default object: count
   * the arguments as the caller wrote them */
  if (dmpl_default_ud && lua_touserdata(L, 1) == dmpl_default_ud) i--;
  lua_pushfstring(L, "bad argument #%d to '%s' (%s)", i, fn, msg);
  return lua_error(L);
}

void dmpl_push_key(lua_State *L, int k) { lua_rawgeti(L, LUA_REGISTRYINDEX, key_ref[k]); }

void *dmpl_test_ud(lua_State *L, int i, int ref) {
  void *p = lua_touserdata(L, i);
  if (!p || lua_type(L, i) != LUA_TUSERDATA || !lua_getmetatable(L, i)) return NULL;   /* full userdata only */
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}

/* ------------------------------------------------------------- results */

void dmpl_push_u16(lua_State *L, dmp_bstr *tmp, const dmp_u16 *s, size_t n) {
  tmp->n = 0;
  dmp_u16_to_utf8(s, n, tmp);
  lua_pushlstring(L, tmp->p ? tmp->p : "", tmp->n);
}

void dmpl_push_diff(lua_State *L, dmp_bstr *tmp, const dmp_diff *d) {
  lua_createtable(L, 2, 0);
  lua_pushinteger(L, d->op);
  lua_rawseti(L, -2, 1);
  dmpl_push_u16(L, tmp, d->s, d->n);
  lua_rawseti(L, -2, 2);
}

void dmpl_push_diffs(lua_State *L, dmp_bstr *tmp, const dmp_diffs *d) {
  lua_createtable(L, (int)d->n, 0);
  for (size_t i = 0; i < d->n; i++) {
    dmpl_push_diff(L, tmp, &d->v[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
}

/* A patch table, its metatable at index mt. */
static void push_patch(lua_State *L, dmp_bstr *tmp, const dmp_patch *p, int mt) {
  lua_createtable(L, 0, 5);
  const int64_t v[4] = {p->start1, p->start2, p->length1, p->length2};
  dmpl_push_key(L, DMPL_K_DIFFS);
  dmpl_push_diffs(L, tmp, &p->diffs);
  lua_rawset(L, -3);
  for (int q = 0; q < 4; q++) {
    dmpl_push_key(L, DMPL_K_START1 + q);
    lua_pushnumber(L, (lua_Number)v[q]);
    lua_rawset(L, -3);
  }
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
}

void dmpl_push_patches(lua_State *L, dmp_bstr *tmp, const dmp_patches *ps) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, dmpl_mt_patch);
  int mt = lua_gettop(L);
  lua_createtable(L, (int)ps->n, 0);
  for (size_t i = 0; i < ps->n; i++) {
    push_patch(L, tmp, &ps->v[i], mt);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_remove(L, mt);
}

/* ----------------------------------------------------- the opaque list */

dmp_patches *dmpl_test_plist(lua_State *L, int i) { return dmpl_test_ud(L, i, dmpl_mt_plist); }

void dmpl_push_plist(lua_State *L, dmp_patches *from) {
  dmp_patches *ps = lua_newuserdata(L, sizeof *ps);
  *ps = *from;
  memset(from, 0, sizeof *from);
  lua_rawgeti(L, LUA_REGISTRYINDEX, dmpl_mt_plist);
  lua_setmetatable(L, -2);
}

dmp_patches *dmpl_check_plist(lua_State *L, const char *fn) {
  dmp_patches *ps = dmpl_test_plist(L, 1);
  if (!ps) dmpl_argerr(L, 1, fn, lua_pushfstring(L, "coru.dmp patch list expected, got %s", luaL_typename(L, 1)));
  return ps;
}

static int plist_gc(lua_State *L) {
  dmp_patches_free(dmpl_check_plist(L, "__gc"));
  return 0;
}

static int plist_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)dmpl_check_plist(L, "__len")->n);
  return 1;
}

void dmpl_push_open(lua_State *L) {
  for (int k = 0; k < DMPL_K_N; k++) {
    lua_pushstring(L, dmpl_key_name[k]);
    key_ref[k] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_createtable(L, 0, 1);
  dmpl_mt_patch = luaL_ref(L, LUA_REGISTRYINDEX);
  static const luaL_Reg mm[] = {{"__gc", plist_gc}, {"__len", plist_len}, {NULL, NULL}};
  lua_createtable(L, 0, 4);  /* __index and __tostring: dmp_lua_job.c */
  for (const luaL_Reg *r = mm; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  dmpl_mt_plist = luaL_ref(L, LUA_REGISTRYINDEX);
}
