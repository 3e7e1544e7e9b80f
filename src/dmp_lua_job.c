/*
 * dmp_lua_job.c - the middle layer of the coru.dmp binding (dmp_lua.h): a
 * call's job (its converted arguments and results), the argument checks and
 * conversions, the thread pool, and the metamethods that need a job's
 * scratch (patch tables' and patch lists' __tostring, the lists' __index).
 * Calls dmp_lua_push.c and the core.
 *
 * Strings cross as UTF-8 (validated: invalid UTF-8 is an argument error);
 * offsets are the reference's: 0-based UTF-16 code units. Diffs are arrays
 * of {op, text}; patches are tables {diffs, start1, start2, length1,
 * length2} whose __tostring is their patch text, or opaque patch lists.
 *
 * Every call converts its arguments into a job (a userdata, so that an
 * argument error frees what was converted). diff_main, patch_make and
 * patch_apply run the job in place, or on libuv's thread pool when a
 * callback is given last, or inside a task when the texts are at least
 * dmp.pool_threshold() bytes (the task suspends while the loop serves).
 */
#include <stdlib.h>
#include <string.h>
#include "dmp_lua.h"

size_t dmpl_pool_min = 64 * 1024;

/* Registry refs of the metatables and of the default object, set when the
 * runtime opens (one per process): a type check is a rawgeti and a compare,
 * not a string-keyed lookup. (dmp_lua.c sets the first two.) */
int dmpl_mt_dmp = LUA_NOREF, dmpl_default_ref = LUA_NOREF;
static int mt_job = LUA_NOREF;

static void job_clear(dmpl_job *j) {
  dmp_ustr_free(&j->a);
  dmp_ustr_free(&j->b);
  dmp_diffs_free(&j->din);
  dmp_patches_free(&j->pin);
  dmp_diffs_free(&j->dout);
  dmp_patches_free(&j->pout);
  dmp_ustr_free(&j->tout);
  free(j->res);
  j->res = NULL;
  dmp_bstr_free(&j->tmp);
}

/* The job metatable's __gc. Called by hand (the metatable is reachable
 * through the debug library) on anything but a job, it raises rather than
 * write into memory that is not a job. */
static int job_gc(lua_State *L) {
  dmpl_job *j = dmpl_test_ud(L, 1, mt_job);
  if (!j) return dmpl_argerr(L, 1, "__gc", lua_pushfstring(L, "coru.dmp job expected, got %s", luaL_typename(L, 1)));
  job_clear(j);
  return 0;
}

/* One spare job userdata, kept in a one-slot table (registry ref): a job
 * with a __gc costs the collector more than most small calls do, so a call
 * that ends normally empties its job and hands it back (dmpl_job_done) for the
 * next one. A call that raises leaves its job to the collector (its __gc
 * frees the buffers), and a call made while the spare is taken (a nested
 * one) makes its own. */
static int spare_ref = LUA_NOREF;

dmpl_job *dmpl_job_new(lua_State *L, const dmp_opts *o, int kind) {
  dmpl_job *j = NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, spare_ref);
  lua_rawgeti(L, -1, 1);
  if (lua_type(L, -1) == LUA_TUSERDATA) {
    j = lua_touserdata(L, -1);
    lua_pushnil(L);
    lua_rawseti(L, -3, 1);
    lua_remove(L, -2);
  } else {
    lua_pop(L, 2);
    j = lua_newuserdata(L, sizeof *j);
    lua_rawgeti(L, LUA_REGISTRYINDEX, mt_job);
    lua_setmetatable(L, -2);
  }
  memset(j, 0, sizeof *j);
  j->o = *o;
  j->kind = kind;
  j->slot = lua_gettop(L);
  return j;
}

/* The call is over: free j's buffers now (the next call reuses the memory
 * while it is hot) and make it the spare. */
void dmpl_job_done(lua_State *L, dmpl_job *j) {
  job_clear(j);
  lua_rawgeti(L, LUA_REGISTRYINDEX, spare_ref);
  lua_pushvalue(L, j->slot);
  lua_rawseti(L, -2, 1);
  lua_pop(L, 1);
}

/* ------------------------------------------------------------ arguments */

dmp_opts *dmpl_check_dmp(lua_State *L, int i, const char *fn) {
  dmp_opts *o = dmpl_test_ud(L, i, dmpl_mt_dmp);
  if (!o) dmpl_argerr(L, i, fn, lua_pushfstring(L, "coru.dmp object expected, got %s", luaL_typename(L, i)));
  return o;
}

const char *dmpl_check_string(lua_State *L, int i, const char *fn, size_t *n) {
  if (lua_type(L, i) != LUA_TSTRING)
    dmpl_argerr(L, i, fn, lua_pushfstring(L, "string expected, got %s", luaL_typename(L, i)));
  return lua_tolstring(L, i, n);
}

static int bad_utf8(lua_State *L, int i, const char *fn, size_t bad) {
  return dmpl_argerr(L, i, fn, lua_pushfstring(L, "invalid UTF-8 at byte %d", (int)bad + 1));
}

const char *dmpl_check_utf8(lua_State *L, int i, const char *fn, size_t *n) {
  size_t bad;
  const char *s = dmpl_check_string(L, i, fn, n);
  if (dmp_utf8_check(s, *n, &bad)) bad_utf8(L, i, fn, bad);
  return s;
}

void dmpl_check_text(lua_State *L, int i, const char *fn, dmp_ustr *out) {
  size_t n, bad;
  const char *s = dmpl_check_string(L, i, fn, &n);
  if (dmp_utf8_to_u16(s, n, out, &bad)) bad_utf8(L, i, fn, bad);
}

int64_t dmpl_check_int(lua_State *L, int idx, int argi, const char *fn, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    dmpl_argerr(L, argi, fn, lua_pushfstring(L, "%s: a number expected, got %s", what, luaL_typename(L, idx)));
  double v = lua_tonumber(L, idx);
  if (!(v <= 9007199254740992.0 && v >= -9007199254740992.0) || v != (double)(int64_t)v)  /* NaN too */
    dmpl_argerr(L, argi, fn, lua_pushfstring(L, "%s: an integer expected", what));
  return (int64_t)v;
}

/* The length of the array at i (what: "diffs (a table)", ...). */
static size_t check_array(lua_State *L, int i, int argi, const char *fn, const char *what) {
  if (lua_type(L, i) != LUA_TTABLE)
    dmpl_argerr(L, argi, fn, lua_pushfstring(L, "%s expected, got %s", what, luaL_typename(L, i)));
  return lua_objlen(L, i);
}

/* Pushes entry k of the array at i, which must be a table; returns its index. */
static int check_entry(lua_State *L, int i, size_t k, int argi, const char *fn, const char *what) {
  lua_rawgeti(L, i, (int)k);
  int t = lua_gettop(L);
  if (lua_type(L, t) != LUA_TTABLE) dmpl_argerr(L, argi, fn, lua_pushfstring(L, "%s %d is not a table", what, (int)k));
  return t;
}

void dmpl_check_diffs(lua_State *L, int i, int argi, const char *fn, dmp_diffs *out, dmp_ustr *scratch) {
  size_t n = check_array(L, i, argi, fn, "diffs (a table)");
  for (size_t k = 1; k <= n; k++) {
    int t = check_entry(L, i, k, argi, fn, "diff");
    lua_rawgeti(L, t, 1);
    lua_rawgeti(L, t, 2);
    int op = lua_type(L, -2) == LUA_TNUMBER ? (int)lua_tointeger(L, -2) : 9;
    if ((op != -1 && op != 0 && op != 1) || lua_tonumber(L, -2) != op)
      dmpl_argerr(L, argi, fn, lua_pushfstring(L, "diff %d: op must be -1, 0 or 1", (int)k));
    size_t len, bad;
    if (lua_type(L, -1) != LUA_TSTRING) dmpl_argerr(L, argi, fn, lua_pushfstring(L, "diff %d: text must be a string", (int)k));
    const char *s = lua_tolstring(L, -1, &len);
    scratch->n = 0;
    if (dmp_utf8_to_u16(s, len, scratch, &bad))
      dmpl_argerr(L, argi, fn, lua_pushfstring(L, "diff %d: invalid UTF-8 at byte %d", (int)k, (int)bad + 1));
    dmp_diffs_push(out, op, scratch->p, scratch->n);
    lua_settop(L, t - 1);
  }
}

void dmpl_check_patches(lua_State *L, int i, int argi, const char *fn, dmp_patches *out, dmp_ustr *scratch) {
  size_t n = check_array(L, i, argi, fn, "patches (a table or a patch list)");
  for (size_t k = 1; k <= n; k++) {
    int t = check_entry(L, i, k, argi, fn, "patch");
    dmp_patch *p = dmp_patches_add(out);
    int64_t v[4];
    for (int q = 0; q < 4; q++) {
      dmpl_push_key(L, DMPL_K_START1 + q);
      lua_gettable(L, t);
      v[q] = dmpl_check_int(L, -1, argi, fn, dmpl_key_name[DMPL_K_START1 + q]);
      lua_pop(L, 1);
    }
    p->start1 = v[0]; p->start2 = v[1]; p->length1 = v[2]; p->length2 = v[3];
    dmpl_push_key(L, DMPL_K_DIFFS);
    lua_gettable(L, t);
    dmpl_check_diffs(L, lua_gettop(L), argi, fn, &p->diffs, scratch);
    lua_settop(L, t - 1);
  }
}

const dmp_patches *dmpl_patches_arg(lua_State *L, int i, const char *fn, dmp_patches *into, dmp_ustr *scratch) {
  const dmp_patches *ps = dmpl_test_plist(L, i);
  if (ps) return ps;
  dmpl_check_patches(L, i, i, fn, into, scratch);
  return into;
}

/* ------------------------------------------------------------- the jobs */

static void job_run(dmpl_job *j) {
  switch (j->kind) {
  case J_DIFF: dmp_diff_main(&j->o, j->a.p, j->a.n, j->b.p, j->b.n, j->checklines, &j->dout); break;
  case J_MAKE_TEXTS: dmp_patch_make_texts(&j->o, j->a.p, j->a.n, j->b.p, j->b.n, &j->pout); break;
  case J_MAKE_DIFFS: dmp_patch_make(&j->o, j->a.p, j->a.n, &j->din, &j->pout); break;
  case J_APPLY: dmp_patch_apply_consume(&j->o, &j->pin, j->a.p, j->a.n, &j->tout, &j->res, &j->nres); break;
  }
}

void dmpl_push_results(lua_State *L, dmpl_job *j) {
  lua_createtable(L, (int)j->nres, 0);
  for (size_t i = 0; i < j->nres; i++) {
    lua_pushboolean(L, j->res[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
}

void dmpl_push_patch_list(lua_State *L, dmpl_job *j) {
  if (j->opaque) dmpl_push_plist(L, &j->pout);
  else dmpl_push_patches(L, &j->tmp, &j->pout);
}

static int job_push(lua_State *L, dmpl_job *j) {
  switch (j->kind) {
  case J_DIFF: dmpl_push_diffs(L, &j->tmp, &j->dout); return 1;
  case J_MAKE_TEXTS:
  case J_MAKE_DIFFS: dmpl_push_patch_list(L, j); return 1;
  default:
    dmpl_push_u16(L, &j->tmp, j->tout.p, j->tout.n);
    dmpl_push_results(L, j);
    return 2;
  }
}

static void pool_work(uv_work_t *req) { job_run(req->data); }

static void pool_after(uv_work_t *req, int status) {
  dmpl_job *h = req->data;
  lua_State *S = coru_cont_begin(&h->cont);
  if (S) {
    if (status < 0) coru_cont_fail(&h->cont, status, NULL);
    else coru_cont_ok(&h->cont, job_push(S, h));
  }
  job_clear(h);
  free(h);
}

static void pool_cancel(coru_cont *c) {
  dmpl_job *h = container_of(c, dmpl_job, cont);
  uv_cancel((uv_req_t *)&h->req);
}

/* Whether a call without a callback runs on the pool: in a task, for large
 * texts. In a task that cannot suspend here (a metamethod, a table.sort
 * comparator...), large texts dmpl_run in place rather than fail. */
int dmpl_to_pool(lua_State *L, size_t bytes) {
  coru_task *T = coru_R->current;
  return T && bytes >= dmpl_pool_min && lua_isyieldable(L) && (L == T->co || lua_isyieldable(T->co));
}

/* Run j (a userdata on the stack) here, or on the pool: with a callback at
 * cbidx (0: none), or in a task for large texts. */
int dmpl_run(lua_State *L, dmpl_job *j, int cbidx, size_t bytes, const char *fname) {
  int cb = cbidx && lua_type(L, cbidx) == LUA_TFUNCTION;
  if (!cb && !dmpl_to_pool(L, bytes)) {
    job_run(j);
    int r = job_push(L, j);
    dmpl_job_done(L, j);
    return r;
  }
  coru_enter(L, cb ? cbidx : 0, fname, CORU_SYNC_OK);
  dmpl_job *h = malloc(sizeof *h);
  if (!h) return luaL_error(L, "coru.dmp: out of memory");
  memcpy(h, j, sizeof *h);
  memset(j, 0, sizeof *j);  /* the userdata's buffers now belong to h */
  h->slot = 0;
  h->req.data = h;
  coru_cont_init(L, &h->cont, cb ? cbidx : 0, pool_cancel);
  int r = uv_queue_work(coru_R->loop, &h->req, pool_work, pool_after);
  if (r < 0) {
    coru_cont_clear(L, &h->cont);
    job_clear(h);
    free(h);
    return coru_fail(L, r, NULL);
  }
  return coru_cont_yield(L, &h->cont, 0);
}

/* The callback slot: the last argument if it is a function. */
int dmpl_cb_slot(lua_State *L, int first) {
  int top = lua_gettop(L);
  return top >= first && lua_type(L, top) == LUA_TFUNCTION ? top : 0;
}

size_t dmpl_bytes_of(lua_State *L, int i) { return lua_type(L, i) == LUA_TSTRING ? lua_objlen(L, i) : 0; }

/* ------------------------------------------------------------- the patch */

int dmpl_patch_tostring(lua_State *L) {
  if (lua_type(L, 1) != LUA_TTABLE)
    return dmpl_argerr(L, 1, "tostring", lua_pushfstring(L, "patch (a table) expected, got %s", luaL_typename(L, 1)));
  dmp_opts o;
  dmp_opts_default(&o);
  dmpl_job *j = dmpl_job_new(L, &o, 0);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  dmpl_check_patches(L, lua_gettop(L), 1, "tostring", &j->pin, &j->a);
  dmp_patch_to_text(&j->pin, &j->tmp);
  lua_pushlstring(L, j->tmp.p ? j->tmp.p : "", j->tmp.n);
  dmpl_job_done(L, j);
  return 1;
}

/* ------------------------------------------------------ the patch list */

/* ps[i]: a copy of patch i as a patch table (changing it changes nothing
 * in the list), or nil. */
static int plist_index(lua_State *L) {
  dmp_patches *ps = dmpl_check_plist(L, "__index");
  lua_Number k = lua_type(L, 2) == LUA_TNUMBER ? lua_tonumber(L, 2) : 0;
  if (!(k >= 1 && k <= (lua_Number)ps->n && k == (lua_Number)(size_t)k)) {
    lua_pushnil(L);
    return 1;
  }
  dmp_opts o;
  dmp_opts_default(&o);
  dmpl_job *j = dmpl_job_new(L, &o, 0);  /* its scratch buffer: freed even if a push raises */
  dmp_patches one = {&ps->v[(size_t)k - 1], 1, 1};
  dmpl_push_patches(L, &j->tmp, &one);
  lua_rawgeti(L, -1, 1);
  dmpl_job_done(L, j);
  return 1;
}

static int plist_tostring(lua_State *L) {
  dmp_patches *ps = dmpl_check_plist(L, "tostring");
  dmp_opts o;
  dmp_opts_default(&o);
  dmpl_job *j = dmpl_job_new(L, &o, 0);
  dmp_patch_to_text(ps, &j->tmp);
  lua_pushlstring(L, j->tmp.p ? j->tmp.p : "", j->tmp.n);
  dmpl_job_done(L, j);
  return 1;
}

void dmpl_open(lua_State *L) {
  dmpl_push_open(L);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, job_gc);
  lua_setfield(L, -2, "__gc");
  mt_job = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 1, 0);
  spare_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, LUA_REGISTRYINDEX, dmpl_mt_patch);
  lua_pushcfunction(L, dmpl_patch_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_rawgeti(L, LUA_REGISTRYINDEX, dmpl_mt_plist);
  lua_pushcfunction(L, plist_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, plist_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 2);
}
