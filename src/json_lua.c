/*
 * json_lua.c - the coru.json module: the default codec's functions, the
 * array and object marks, json.new for a codec with its own options, and
 * the same module in the Lua states of coru.work and threads (preload).
 * The encoder and decoder are json_enc.c's and json_dec.c's.
 */
#include <string.h>
#include <lauxlib.h>
#include "coru.h"
#include "json.h"

/* the upvalues of every function below: codec, array mark, object mark */
#define CODEC(L) ((json_codec *)lua_touserdata(L, lua_upvalueindex(JSON_UV_CODEC)))

static int l_encode(lua_State *L) {
  lua_settop(L, 1);
  return coru_json_encode(L, CODEC(L), 1);
}

static int l_decode(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING) {
    lua_pushnil(L);
    lua_pushfstring(L, "json.decode: string expected, got %s", luaL_typename(L, 1));
    return 2;
  }
  size_t n;
  const char *s = lua_tolstring(L, 1, &n);
  return coru_json_decode(L, CODEC(L), s, n);
}

static int marked(lua_State *L, int mark) {
  if (lua_type(L, 1) != LUA_TTABLE || !lua_getmetatable(L, 1)) return 0;
  return lua_rawequal(L, -1, lua_upvalueindex(mark));
}

static int l_is_array(lua_State *L) {
  lua_pushboolean(L, marked(L, JSON_UV_ARRAY_MT));
  return 1;
}

/* Argument 1 must be a table. The message names the function whatever the
 * call site: luaL_checktype finds the name in the caller's code, which a
 * call through pcall or a local alias does not have ('?'). */
static void check_table(lua_State *L, const char *fn) {
  if (lua_type(L, 1) != LUA_TTABLE)
    luaL_error(L, "bad argument #1 to '%s' (table expected, got %s)", fn, luaL_typename(L, 1));
}

static int mark(lua_State *L, int which, const char *fn) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  }
  check_table(L, fn);
  lua_settop(L, 1);
  lua_pushvalue(L, lua_upvalueindex(which));
  lua_setmetatable(L, 1);
  return 1;
}

static int l_array(lua_State *L) { return mark(L, JSON_UV_ARRAY_MT, "array"); }
static int l_object(lua_State *L) { return mark(L, JSON_UV_OBJECT_MT, "object"); }

static int codec_gc(lua_State *L) {
  json_codec *c = lua_touserdata(L, 1);
  if (c && lua_type(L, 1) == LUA_TUSERDATA && lua_objlen(L, 1) == sizeof *c) {
    if (c->buf) c->alloc(c->ud, c->buf, c->cap, 0);
    c->buf = NULL;
    c->cap = c->len = 0;
  }
  return 0;
}

/* A new codec (its metatable is the 4th upvalue of new, or at mt). */
static json_codec *new_codec(lua_State *L, int mt) {
  json_codec *c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->max_depth = JSON_MAX_DEPTH;
  c->alloc = lua_getallocf(L, &c->ud);
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
  return c;
}

static void build(lua_State *L, int codec, int array_mt, int object_mt, int codec_mt);

static void opt_error(lua_State *L, const char *what) {
  luaL_error(L, "json.new: option %s", what);
}

static int l_new(lua_State *L) {
  int mt = lua_upvalueindex(4);
  if (!lua_isnoneornil(L, 1)) check_table(L, "new");
  lua_settop(L, 1);
  json_codec *c = new_codec(L, mt);
  int codec = lua_gettop(L);
  if (lua_istable(L, 1)) {
    lua_pushnil(L);
    while (lua_next(L, 1)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
      if (!strcmp(k, "max_depth")) {
        lua_Number d = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || d != (int)d || d < 1 || d > JSON_MAX_DEPTH)
          opt_error(L, "'max_depth' must be an integer from 1 to 1000");
        c->max_depth = (int)d;
      } else if (!strcmp(k, "sparse_arrays")) {
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (!strcmp(v, "object")) c->sparse_object = 1;
        else if (!strcmp(v, "error")) c->sparse_object = 0;
        else opt_error(L, "'sparse_arrays' must be \"error\" or \"object\"");
      } else {
        luaL_error(L, "json.new: unknown option '%s'", *k ? k : luaL_typename(L, -2));
      }
      lua_pop(L, 1);
    }
  }
  build(L, codec, lua_upvalueindex(JSON_UV_ARRAY_MT), lua_upvalueindex(JSON_UV_OBJECT_MT), mt);
  return 1;
}

/* Pushes a module table: the functions over the codec at codec. */
static void build(lua_State *L, int codec, int array_mt, int object_mt, int codec_mt) {
  static const struct { const char *name; lua_CFunction fn; } fns[] = {
    {"encode", l_encode}, {"decode", l_decode}, {"is_array", l_is_array},
    {"array", l_array}, {"object", l_object}, {"new", l_new},
  };
  lua_createtable(L, 0, 8);
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    lua_pushvalue(L, codec);
    lua_pushvalue(L, array_mt);
    lua_pushvalue(L, object_mt);
    lua_pushvalue(L, codec_mt);
    lua_pushcclosure(L, fns[i].fn, 4);
    lua_setfield(L, -2, fns[i].name);
  }
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
}

void coru_json_push(lua_State *L) {
  int top = lua_gettop(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "coru.json.array");
  lua_setfield(L, -2, "__name");
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "coru.json.object");
  lua_setfield(L, -2, "__name");
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, codec_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "coru.json.codec");
  lua_setfield(L, -2, "__name");
  new_codec(L, top + 3);
  build(L, top + 4, top + 1, top + 2, top + 3);
  lua_replace(L, top + 1);
  lua_settop(L, top + 1);
}

static int open_preloaded(lua_State *L) {
  coru_json_push(L);
  return 1;
}

void coru_json_preload(lua_State *S) {
  lua_getglobal(S, "package");
  lua_getfield(S, -1, "preload");
  lua_pushcfunction(S, open_preloaded);
  lua_setfield(S, -2, "coru.json");
  lua_pop(S, 2);
}

CORU_FAMILY(json) {
  coru_json_push(L);
  lua_setfield(L, -2, "json");
}
