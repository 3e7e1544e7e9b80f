/*
 * usage.c - usage errors (bad arguments, "needs a running task") that name
 * the user's line. Lua's luaL_where(L, 1) names the frame that called the C
 * function; coru's suspending functions are called through a one-line Lua
 * wrapper (boot.lua, chunk "(coru)") and some through coru's own Lua modules,
 * so that frame is coru's. coru_where skips those frames.
 */
#include <stdarg.h>
#include <string.h>
#include "coru.h"

/* A frame of coru's own: the wrappers of boot.lua, or a file
 * .../coru/<name>.lua (lua/coru/ in a build tree, share/lua/5.1/coru/
 * installed). */
static int is_coru_frame(lua_Debug *ar) {
  const char *s = ar->source;
  if (!s) return 0;
  if (strcmp(s, "=(coru)") == 0 || strcmp(s, "=coru.boot") == 0) return 1;
  if (s[0] != '@') return 0;
  size_t n = strlen(s);
  if (n < 10 || strcmp(s + n - 4, ".lua") != 0) return 0;
  const char *p = s + n - 4;
  while (p > s && p[-1] != '/') p--;               /* start of <name>.lua */
  if (p - s < 6 || strncmp(p - 5, "coru/", 5) != 0) return 0;
  return p - s == 6 || p[-6] == '/' || p[-6] == '@';
}

void coru_where(lua_State *L, int level) {
  lua_Debug ar;
  while (lua_getstack(L, level, &ar)) {
    lua_getinfo(L, "Sl", &ar);
    if (!is_coru_frame(&ar)) {
      if (ar.currentline > 0) { lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline); return; }
      break;
    }
    level++;
  }
  lua_pushliteral(L, "");
}

int coru_error(lua_State *L, const char *fmt, ...) {
  va_list argp;
  va_start(argp, fmt);
  coru_where(L, 1);
  lua_pushvfstring(L, fmt, argp);
  va_end(argp);
  lua_concat(L, 2);
  return lua_error(L);
}

int coru_argerror(lua_State *L, int narg, const char *extramsg) {
  lua_Debug ar;
  if (!lua_getstack(L, 0, &ar))
    return coru_error(L, "bad argument #%d (%s)", narg, extramsg);
  lua_getinfo(L, "n", &ar);
  if (ar.namewhat && strcmp(ar.namewhat, "method") == 0) {
    narg--;
    if (narg == 0)
      return coru_error(L, "calling '%s' on bad self (%s)", ar.name, extramsg);
  }
  return coru_error(L, "bad argument #%d to '%s' (%s)", narg, ar.name ? ar.name : "?", extramsg);
}

int coru_typerror(lua_State *L, int narg, const char *tname) {
  const char *msg = lua_pushfstring(L, "%s expected, got %s", tname, luaL_typename(L, narg));
  return coru_argerror(L, narg, msg);
}

static void tag_error(lua_State *L, int narg, int tag) {
  coru_typerror(L, narg, lua_typename(L, tag));
}

lua_Integer coru_checkinteger(lua_State *L, int narg) {
  lua_Integer d = lua_tointeger(L, narg);
  if (d == 0 && !lua_isnumber(L, narg)) tag_error(L, narg, LUA_TNUMBER);
  return d;
}

lua_Integer coru_optinteger(lua_State *L, int narg, lua_Integer def) {
  return lua_isnoneornil(L, narg) ? def : coru_checkinteger(L, narg);
}

lua_Number coru_checknumber(lua_State *L, int narg) {
  lua_Number d = lua_tonumber(L, narg);
  if (d == 0 && !lua_isnumber(L, narg)) tag_error(L, narg, LUA_TNUMBER);
  return d;
}

lua_Number coru_optnumber(lua_State *L, int narg, lua_Number def) {
  return lua_isnoneornil(L, narg) ? def : coru_checknumber(L, narg);
}

const char *coru_checklstring(lua_State *L, int narg, size_t *len) {
  const char *s = lua_tolstring(L, narg, len);
  if (!s) tag_error(L, narg, LUA_TSTRING);
  return s;
}

const char *coru_optlstring(lua_State *L, int narg, const char *def, size_t *len) {
  if (lua_isnoneornil(L, narg)) {
    if (len) *len = def ? strlen(def) : 0;
    return def;
  }
  return coru_checklstring(L, narg, len);
}

void coru_checktype(lua_State *L, int narg, int t) {
  if (lua_type(L, narg) != t) tag_error(L, narg, t);
}

void *coru_checkudata(lua_State *L, int narg, const char *tname) {
  void *p = lua_touserdata(L, narg);
  if (p && lua_type(L, narg) == LUA_TUSERDATA && lua_getmetatable(L, narg)) {
    lua_getfield(L, LUA_REGISTRYINDEX, tname);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (same) return p;
  }
  coru_typerror(L, narg, tname);
  return NULL;
}
