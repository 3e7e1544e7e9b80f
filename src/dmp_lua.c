/*
 * dmp_lua.c - coru.dmp (diff-match-patch, see dmp.h and docs/dmp.md) and
 * coru.md5 for Lua: the methods, the objects and their tunables, the
 * module-level forms, and the Lua fast path of the no-op calls. The jobs,
 * argument conversions and results are dmp_lua_job.c's (dmp_lua.h).
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "dmp_lua.h"

/* --------------------------------------------------------------- methods */

static int l_diff_main(lua_State *L) {
  const char *fn = "diff_main";
  dmp_opts *o = dmpl_check_dmp(L, 1, fn);
  int cb = dmpl_cb_slot(L, 4);
  dmpl_job *j = dmpl_job_new(L, o, J_DIFF);
  dmpl_check_text(L, 2, fn, &j->a);
  dmpl_check_text(L, 3, fn, &j->b);
  j->checklines = (cb == 4 || lua_isnoneornil(L, 4)) ? 1 : lua_toboolean(L, 4);
  return dmpl_run(L, j, cb, dmpl_bytes_of(L, 2) + dmpl_bytes_of(L, 3), "dmp.diff_main");
}

static int l_patch_make(lua_State *L) {
  const char *fn = "patch_make";
  dmp_opts *o = dmpl_check_dmp(L, 1, fn);
  int cb = dmpl_cb_slot(L, 3);
  int top = cb ? cb - 1 : lua_gettop(L);
  int t2 = lua_type(L, 2), t3 = top >= 3 ? lua_type(L, 3) : LUA_TNONE, t4 = top >= 4 ? lua_type(L, 4) : LUA_TNONE;
  dmpl_job *j;
  if (t2 == LUA_TSTRING && t3 == LUA_TSTRING && t4 == LUA_TNONE) {  /* (text1, text2) */
    j = dmpl_job_new(L, o, J_MAKE_TEXTS);
    dmpl_check_text(L, 2, fn, &j->a);
    dmpl_check_text(L, 3, fn, &j->b);
  } else if (t2 == LUA_TTABLE && t3 == LUA_TNONE) {                  /* (diffs) */
    j = dmpl_job_new(L, o, J_MAKE_DIFFS);
    dmpl_check_diffs(L, 2, 2, fn, &j->din, &j->b);
    dmp_diff_text1(&j->din, &j->a);
  } else if (t2 == LUA_TSTRING && (t3 == LUA_TTABLE || (t3 == LUA_TSTRING && t4 == LUA_TTABLE))) {
    int di = t3 == LUA_TTABLE ? 3 : 4;                                /* (text1, diffs), (text1, text2, diffs) */
    j = dmpl_job_new(L, o, J_MAKE_DIFFS);
    dmpl_check_text(L, 2, fn, &j->a);
    dmpl_check_diffs(L, di, di, fn, &j->din, &j->b);
    j->b.n = 0;
    dmp_diff_text1(&j->din, &j->b);
    if (j->b.n != j->a.n || (j->a.n && memcmp(j->a.p, j->b.p, j->a.n * sizeof *j->a.p)))
      return dmpl_argerr(L, di, fn, "the diffs do not describe text1 (their deleted and equal texts differ from it)");
  } else {
    return luaL_error(L, "patch_make: unknown call format (text1, text2), (diffs), (text1, diffs) expected");
  }
  j->opaque = ((dmpl_obj *)o)->opaque;
  size_t bytes = dmpl_bytes_of(L, 2) + dmpl_bytes_of(L, 3);
  if (bytes < j->a.n) bytes = j->a.n;  /* (diffs): about the size of text1 */
  return dmpl_run(L, j, cb, bytes, "dmp.patch_make");
}

static int l_patch_apply(lua_State *L) {
  const char *fn = "patch_apply";
  dmp_opts *o = dmpl_check_dmp(L, 1, fn);
  int cb = dmpl_cb_slot(L, 4);
  if (!cb && lua_type(L, 2) == LUA_TTABLE && lua_objlen(L, 2) == 0 && lua_type(L, 3) == LUA_TSTRING) {
    size_t n;  /* no patches: the text as it is, as the reference returns it */
    dmpl_check_utf8(L, 3, fn, &n);
    lua_pushvalue(L, 3);
    lua_newtable(L);
    return 2;
  }
  dmpl_job *j = dmpl_job_new(L, o, J_APPLY);
  const dmp_patches *ps = dmpl_patches_arg(L, 2, fn, &j->pin, &j->b);
  size_t bytes = dmpl_bytes_of(L, 3);
  for (size_t i = 0; i < ps->n; i++) {
    int64_t l = ps->v[i].length1 + ps->v[i].length2;
    if (l > 0 && l < ((int64_t)1 << 40)) bytes += (size_t)l;
  }
  if (!cb && lua_type(L, 3) == LUA_TSTRING && !dmpl_to_pool(L, bytes)) {
    /* every hunk exactly where expected (the exact base): the text stays
     * UTF-8, only the hunks are converted; otherwise (or if the text is
     * not valid UTF-8: dmpl_check_text names the byte) the general path */
    size_t n, skip = 0;
    const char *s = lua_tolstring(L, 3, &n);
    if (!dmp_patch_apply_utf8(&j->o, ps, s, n, &j->tmp, &skip, &j->res, &j->nres)) {
      lua_pushlstring(L, j->tmp.p + skip, j->tmp.n - 2 * skip);
      dmpl_push_results(L, j);
      dmpl_job_done(L, j);
      return 2;
    }
  }
  dmpl_check_text(L, 3, fn, &j->a);
  if (ps != &j->pin) dmp_patches_copy(ps, &j->pin);  /* the job's own: the pool may run it */
  return dmpl_run(L, j, cb, bytes, "dmp.patch_apply");
}

/* The diffs at index 2, converted into a new job (on the stack). */
static dmpl_job *diffs_job(lua_State *L, const char *fn) {
  dmp_opts *o = dmpl_check_dmp(L, 1, fn);
  dmpl_job *j = dmpl_job_new(L, o, 0);
  dmpl_check_diffs(L, 2, 2, fn, &j->din, &j->a);
  return j;
}

/* Rewrite the table at index 2 with j->din; returns it. */
static int write_back(lua_State *L, dmpl_job *j) {
  size_t old = lua_objlen(L, 2);
  for (size_t i = 0; i < j->din.n; i++) {
    dmpl_push_diff(L, &j->tmp, &j->din.v[i]);
    lua_rawseti(L, 2, (int)i + 1);
  }
  for (size_t i = j->din.n + 1; i <= old; i++) {
    lua_pushnil(L);
    lua_rawseti(L, 2, (int)i);
  }
  lua_pushvalue(L, 2);
  return 1;
}

#define CLEANUP(name, call)                      \
  static int l_##name(lua_State *L) {            \
    dmpl_job *j = diffs_job(L, #name);                \
    call(&j->o, &j->din);                        \
    dmp_diff_fix_surrogates(&j->din);            \
    write_back(L, j);                            \
    dmpl_job_done(L, j);                              \
    return 1;                                    \
  }
CLEANUP(diff_cleanup_semantic, dmp_diff_cleanup_semantic)
CLEANUP(diff_cleanup_semantic_lossless, dmp_diff_cleanup_semantic_lossless)
CLEANUP(diff_cleanup_efficiency, dmp_diff_cleanup_efficiency)
CLEANUP(diff_cleanup_merge, dmp_diff_cleanup_merge)

static int l_diff_levenshtein(lua_State *L) {
  dmpl_job *j = diffs_job(L, "diff_levenshtein");
  lua_pushnumber(L, (lua_Number)dmp_diff_levenshtein(&j->din));
  dmpl_job_done(L, j);
  return 1;
}

static int l_diff_x_index(lua_State *L) {
  dmpl_job *j = diffs_job(L, "diff_x_index");
  int64_t loc = dmpl_check_int(L, 3, 3, "diff_x_index", "loc");
  lua_pushnumber(L, (lua_Number)dmp_diff_x_index(&j->din, loc));
  dmpl_job_done(L, j);
  return 1;
}

static int text12(lua_State *L, int which) {
  dmpl_job *j = diffs_job(L, which == 1 ? "diff_text1" : "diff_text2");
  j->a.n = 0;  /* it was dmpl_check_diffs' scratch */
  if (which == 1) dmp_diff_text1(&j->din, &j->a);
  else dmp_diff_text2(&j->din, &j->a);
  dmpl_push_u16(L, &j->tmp, j->a.p, j->a.n);
  dmpl_job_done(L, j);
  return 1;
}
static int l_diff_text1(lua_State *L) { return text12(L, 1); }
static int l_diff_text2(lua_State *L) { return text12(L, 2); }

static int l_match_main(lua_State *L) {
  const char *fn = "match_main";
  dmp_opts *o = dmpl_check_dmp(L, 1, fn);
  dmpl_job *j = dmpl_job_new(L, o, 0);
  dmpl_check_text(L, 2, fn, &j->a);
  dmpl_check_text(L, 3, fn, &j->b);
  int64_t loc = dmpl_check_int(L, 4, 4, fn, "loc");
  int64_t r = dmp_match_main(o, j->a.p, j->a.n, j->b.p, j->b.n, loc);
  if (r == -2) return luaL_error(L, "match_main: pattern too long (%d UTF-16 units, match_maxbits is %d)",
                                 (int)j->b.n, o->match_maxbits);
  lua_pushnumber(L, (lua_Number)r);
  dmpl_job_done(L, j);
  return 1;
}

static int l_patch_to_text(lua_State *L) {
  const char *fn = "patch_to_text";
  dmp_opts *o = dmpl_check_dmp(L, 1, fn);
  dmpl_job *j = dmpl_job_new(L, o, 0);
  dmp_patch_to_text(dmpl_patches_arg(L, 2, fn, &j->pin, &j->a), &j->tmp);
  lua_pushlstring(L, j->tmp.p ? j->tmp.p : "", j->tmp.n);
  dmpl_job_done(L, j);
  return 1;
}

static int l_patch_from_text(lua_State *L) {
  const char *fn = "patch_from_text";
  dmp_opts *o = dmpl_check_dmp(L, 1, fn);
  size_t n;
  const char *s = dmpl_check_string(L, 2, fn, &n);
  dmpl_job *j = dmpl_job_new(L, o, 0);
  char err[256];
  if (dmp_patch_from_text(s, n, &j->pout, err, sizeof err)) {
    dmpl_job_done(L, j);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  j->opaque = ((dmpl_obj *)o)->opaque;
  dmpl_push_patch_list(L, j);
  dmpl_job_done(L, j);
  return 1;
}

static int l_md5(lua_State *L) {
  size_t n;
  const char *s = dmpl_check_string(L, 1, "md5", &n);
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int dn = 0;
  if (!EVP_Digest(s, n, d, &dn, EVP_md5(), NULL)) return luaL_error(L, "md5: OpenSSL digest failed");
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  for (unsigned i = 0; i < dn; i++) {
    hex[2 * i] = "0123456789abcdef"[d[i] >> 4];
    hex[2 * i + 1] = "0123456789abcdef"[d[i] & 15];
  }
  lua_pushlstring(L, hex, 2 * dn);
  return 1;
}

/* -------------------------------------------------------------- objects */

/* Set option k from the value at idx; returns an error message or NULL. */
static const char *set_opt(lua_State *L, dmpl_obj *obj, const char *k, int idx) {
  dmp_opts *o = &obj->o;
  if (!strcmp(k, "opaque_patches")) {
    if (lua_type(L, idx) != LUA_TBOOLEAN) return "a boolean expected";
    obj->opaque = lua_toboolean(L, idx);
    return NULL;
  }
  if (lua_type(L, idx) != LUA_TNUMBER) return "a number expected";
  double v = lua_tonumber(L, idx);
  if (v != v) return "not a number (NaN)";
  if (!strcmp(k, "diff_timeout")) o->diff_timeout = v;
  else if (!strcmp(k, "diff_edit_cost")) o->diff_edit_cost = v;
  else if (!strcmp(k, "match_threshold")) o->match_threshold = v;
  else if (!strcmp(k, "match_distance")) o->match_distance = v;
  else if (!strcmp(k, "patch_delete_threshold")) o->patch_delete_threshold = v;
  else if (!strcmp(k, "patch_margin")) {
    if (v != (int)v || v < 0 || v > 32) return "an integer from 0 to 32 expected";
    o->patch_margin = (int)v;
  } else if (!strcmp(k, "match_maxbits")) {
    if (v != (int)v || v < 1 || v > 32) return "an integer from 1 to 32 expected";
    o->match_maxbits = (int)v;
  } else {
    return "unknown option";
  }
  return NULL;
}


static void apply_opts(lua_State *L, dmpl_obj *o, int t, const char *fn) {
  if (lua_isnoneornil(L, t)) return;
  if (lua_type(L, t) != LUA_TTABLE) dmpl_argerr(L, t, fn, lua_pushfstring(L, "table expected, got %s", luaL_typename(L, t)));
  lua_pushnil(L);
  while (lua_next(L, t)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    const char *e = k ? set_opt(L, o, k, lua_gettop(L)) : "unknown option";
    if (e) dmpl_argerr(L, t, fn, lua_pushfstring(L, "option '%s': %s", k ? k : luaL_typename(L, -2), e));
    lua_pop(L, 1);
  }
}

/* The objects whose opaque_patches is set, as keys of a weak table that
 * the Lua fast path reads (its empty answers are tables). */
static int opaque_ref = LUA_NOREF;

static void mark_opaque(lua_State *L, int idx, int on) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, opaque_ref);
  lua_pushvalue(L, idx);
  if (on) lua_pushboolean(L, 1);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static dmpl_obj *new_obj(lua_State *L) {
  dmpl_obj *o = lua_newuserdata(L, sizeof *o);
  dmp_opts_default(&o->o);
  o->opaque = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, dmpl_mt_dmp);
  lua_setmetatable(L, -2);
  return o;
}

static int l_new(lua_State *L) {
  dmpl_obj o;
  dmp_opts_default(&o.o);
  o.opaque = 0;
  apply_opts(L, &o, 1, "new");
  *new_obj(L) = o;
  if (o.opaque) mark_opaque(L, lua_gettop(L), 1);
  return 1;
}

static int push_opt(lua_State *L, const dmpl_obj *obj, const char *k) {
  const dmp_opts *o = &obj->o;
  if (!strcmp(k, "opaque_patches")) lua_pushboolean(L, obj->opaque);
  else if (!strcmp(k, "diff_timeout")) lua_pushnumber(L, o->diff_timeout);
  else if (!strcmp(k, "diff_edit_cost")) lua_pushnumber(L, o->diff_edit_cost);
  else if (!strcmp(k, "match_threshold")) lua_pushnumber(L, o->match_threshold);
  else if (!strcmp(k, "match_distance")) lua_pushnumber(L, o->match_distance);
  else if (!strcmp(k, "patch_delete_threshold")) lua_pushnumber(L, o->patch_delete_threshold);
  else if (!strcmp(k, "patch_margin")) lua_pushinteger(L, o->patch_margin);
  else if (!strcmp(k, "match_maxbits")) lua_pushinteger(L, o->match_maxbits);
  else return 0;
  return 1;
}

/* d.key for a key that is not a method (the Lua __index below looks the
 * methods up first): a tunable, or nil. */
static int l_getopt(lua_State *L) {
  dmpl_obj *o = (dmpl_obj *)dmpl_check_dmp(L, 1, "index");
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (k && push_opt(L, o, k)) return 1;
  lua_pushnil(L);
  return 1;
}

/* valid(s): whether the string s is valid UTF-8, for the fast path where
 * the FFI is missing (the C method then names the bad byte). */
static int l_valid(lua_State *L) {
  size_t n;
  const char *s = lua_tolstring(L, 1, &n);
  lua_pushboolean(L, s && !dmp_utf8_check(s, n, NULL));
  return 1;
}

/* The object's __index and the answers that need no conversion, in Lua so
 * that the JIT compiles them into the caller: a method lookup, and the
 * no-op cases (identical texts, no patches, an empty patch text), which the
 * reference answers in tens of nanoseconds. Their texts are validated (by
 * dmp_utf8_check through the FFI, a call the JIT compiles) like every
 * other call's: invalid UTF-8 goes on to the C method, which raises naming
 * the byte. Arguments: methods, module table, the object metatable, the
 * default object, l_getopt, dmp_utf8_check (a light userdata), l_valid,
 * the set of opaque objects. */
static const char fast_lua[] =
  "local methods, mod, MT, default, getopt, check_ptr, valid, opaque = ...\n"
  "local type, getmetatable, select = type, getmetatable, select\n"
  "local has_ffi, ffi = pcall(require, 'ffi')\n"
  "if has_ffi then\n"
  "  local check = ffi.cast('int (*)(const char *, size_t, size_t *)', check_ptr)\n"
  "  valid = function(s) return check(s, #s, nil) == 0 end\n"
  "end\n"
  "local c_diff, c_make, c_apply = methods.diff_main, methods.patch_make, methods.patch_apply\n"
  "local c_to_text, c_from_text = methods.patch_to_text, methods.patch_from_text\n"
  "MT.__index = function(d, k)\n"
  "  local m = methods[k]\n"
  "  if m ~= nil then return m end\n"
  "  return getopt(d, k)\n"
  "end\n"
  "local function diff_main(d, ...)\n"
  "  local a, b, c = ...\n"
  "  local n = select('#', ...)\n"
  "  if a == b and (n == 2 or (n == 3 and type(c) ~= 'function')) and type(a) == 'string'\n"
  "     and getmetatable(d) == MT and valid(a) then\n"
  "    if a == '' then return {} end\n"
  "    return {{0, a}}\n"
  "  end\n"
  "  return c_diff(d, ...)\n"
  "end\n"
  "local function patch_make(d, ...)\n"
  "  local a, b = ...\n"
  "  if a == b and select('#', ...) == 2 and type(a) == 'string' and getmetatable(d) == MT and not opaque[d]\n"
  "     and valid(a) then\n"
  "    return {}\n"
  "  end\n"
  "  return c_make(d, ...)\n"
  "end\n"
  "local function patch_apply(d, ...)\n"
  "  local ps, text = ...\n"
  "  if select('#', ...) == 2 and type(text) == 'string' and type(ps) == 'table' and #ps == 0\n"
  "     and getmetatable(d) == MT and valid(text) then\n"
  "    return text, {}\n"
  "  end\n"
  "  return c_apply(d, ...)\n"
  "end\n"
  "local function patch_to_text(d, ...)\n"
  "  local ps = ...\n"
  "  if type(ps) == 'table' and #ps == 0 and getmetatable(d) == MT then return '' end\n"
  "  return c_to_text(d, ...)\n"
  "end\n"
  "local function patch_from_text(d, ...)\n"
  "  if ... == '' and getmetatable(d) == MT and not opaque[d] then return {} end\n"
  "  return c_from_text(d, ...)\n"
  "end\n"
  "methods.diff_main, methods.patch_make, methods.patch_apply = diff_main, patch_make, patch_apply\n"
  "methods.patch_to_text, methods.patch_from_text = patch_to_text, patch_from_text\n"
  "mod.diff_main = function(...) return diff_main(default, ...) end\n"
  "mod.patch_make = function(...) return patch_make(default, ...) end\n"
  "mod.patch_apply = function(...) return patch_apply(default, ...) end\n"
  "mod.patch_to_text = function(...) return patch_to_text(default, ...) end\n"
  "mod.patch_from_text = function(...) return patch_from_text(default, ...) end\n";

static int l_newindex(lua_State *L) {
  dmpl_obj *o = (dmpl_obj *)dmpl_check_dmp(L, 1, "newindex");
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
  const char *e = set_opt(L, o, k, 3);
  if (!e) mark_opaque(L, 1, o->opaque);
  if (e) return luaL_error(L, "coru.dmp: option '%s': %s", k, e);
  return 0;
}

static int l_tostring(lua_State *L) {
  lua_pushfstring(L, "coru.dmp: %p", (void *)dmpl_check_dmp(L, 1, "tostring"));
  return 1;
}

static int l_pool_threshold(lua_State *L) {
  lua_Number old = (lua_Number)dmpl_pool_min;
  if (!lua_isnoneornil(L, 1)) {
    lua_Number v = luaL_checknumber(L, 1);
    if (v < 0 || v != v) return dmpl_argerr(L, 1, "pool_threshold", "a size in bytes (>= 0) expected");
    dmpl_pool_min = v > 1e15 ? (size_t)1e15 : (size_t)v;
  }
  lua_pushnumber(L, old);
  return 1;
}

#define METHODS(X)                                                                  \
  X(diff_main, CORU_YIELDS) X(patch_make, CORU_YIELDS) X(patch_apply, CORU_YIELDS)  \
  X(diff_cleanup_semantic, 0) X(diff_cleanup_semantic_lossless, 0)                  \
  X(diff_cleanup_efficiency, 0) X(diff_cleanup_merge, 0) X(diff_levenshtein, 0)     \
  X(diff_x_index, 0) X(diff_text1, 0) X(diff_text2, 0) X(match_main, 0)             \
  X(patch_to_text, 0) X(patch_from_text, 0)

/* Module-level forms: the method on the default object. */
#define MODFN(name, flags)                                       \
  static int m_##name(lua_State *L) {                            \
    lua_rawgeti(L, LUA_REGISTRYINDEX, dmpl_default_ref);              \
    lua_insert(L, 1);                                            \
    return l_##name(L);                                          \
  }
METHODS(MODFN)

CORU_FAMILY(dmp) {
  int M = lua_gettop(L);  /* the coru table */
  static const coru_Reg top[] = {{"md5", l_md5, 0}, {NULL, NULL, 0}};
  coru_setfuncs(L, top);

  dmpl_open(L);

#define REG(name, flags) {#name, l_##name, flags},
  static const coru_Reg methods[] = {METHODS(REG) {NULL, NULL, 0}};
#define MREG(name, flags) {#name, m_##name, flags},
  static const coru_Reg modfns[] = {METHODS(MREG) {"new", l_new, 0}, {"pool_threshold", l_pool_threshold, 0},
                                    {NULL, NULL, 0}};
  lua_createtable(L, 0, 4);
  int mt = lua_gettop(L);
  lua_pushvalue(L, mt);
  dmpl_mt_dmp = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, l_newindex);
  lua_setfield(L, mt, "__newindex");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, mt, "__tostring");
  lua_settop(L, M);

  dmpl_default_ud = new_obj(L);
  dmpl_default_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_newtable(L);  /* coru.dmp */
  coru_setfuncs(L, modfns);
  lua_pushinteger(L, DMP_DELETE); lua_setfield(L, -2, "DELETE");
  lua_pushinteger(L, DMP_EQUAL); lua_setfield(L, -2, "EQUAL");
  lua_pushinteger(L, DMP_INSERT); lua_setfield(L, -2, "INSERT");
  int mod = lua_gettop(L);
  if (luaL_loadbuffer(L, fast_lua, sizeof fast_lua - 1, "=coru.dmp")) lua_error(L);
  lua_newtable(L);
  coru_setfuncs(L, methods);
  lua_pushvalue(L, mod);
  lua_rawgeti(L, LUA_REGISTRYINDEX, dmpl_mt_dmp);
  lua_rawgeti(L, LUA_REGISTRYINDEX, dmpl_default_ref);
  lua_pushcfunction(L, l_getopt);
  lua_pushlightuserdata(L, (void *)dmp_utf8_check);
  lua_pushcfunction(L, l_valid);
  lua_createtable(L, 0, 1);  /* opaque: weak keys */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  opaque_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_call(L, 8, 0);
  lua_pushvalue(L, mod);
  lua_setfield(L, M, "dmp");
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "loaded");
    if (lua_istable(L, -1)) {
      lua_pushvalue(L, -3);
      lua_setfield(L, -2, "coru.dmp");
    }
  }
  lua_settop(L, M);
}
