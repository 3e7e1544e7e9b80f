/*
 * dmp_lua.c - coru.dmp (diff-match-patch, see dmp.h) and coru.md5 for Lua.
 *
 * Strings cross as UTF-8 (validated: invalid UTF-8 is an argument error);
 * offsets are the reference's: 0-based UTF-16 code units. Diffs are arrays
 * of {op, text}; patches are tables {diffs, start1, start2, length1,
 * length2} whose __tostring is their patch text.
 *
 * Every call converts its arguments into a job (a userdata, so that an
 * argument error frees what was converted). diff_main, patch_make and
 * patch_apply run the job in place, or on libuv's thread pool when a
 * callback is given last, or inside a task when the texts are at least
 * dmp.pool_threshold() bytes (the task suspends while the loop serves).
 */
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include "coru.h"
#include "dmp.h"


static size_t pool_min = 64 * 1024;

/* Registry refs of the metatables and of the default object, set when the
 * runtime opens (one per process): a type check is a rawgeti and a compare,
 * not a string-keyed lookup. */
static int mt_dmp = LUA_NOREF, mt_job = LUA_NOREF, mt_patch = LUA_NOREF, default_ref = LUA_NOREF;

/* The userdata at i if its metatable is the one of ref, else NULL. */
static void *test_ud(lua_State *L, int i, int ref) {
  void *p = lua_touserdata(L, i);
  if (!p || lua_type(L, i) != LUA_TUSERDATA || !lua_getmetatable(L, i)) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? p : NULL;
}

enum { J_DIFF = 1, J_MAKE_TEXTS, J_MAKE_DIFFS, J_APPLY };

typedef struct {
  uv_work_t req;
  coru_cont cont;
  int kind, checklines;
  dmp_opts o;
  dmp_ustr a, b;       /* texts in */
  dmp_diffs din;
  dmp_patches pin;
  dmp_diffs dout;      /* results */
  dmp_patches pout;
  dmp_ustr tout;
  unsigned char *res;
  size_t nres;
  dmp_bstr tmp;        /* UTF-8 scratch while pushing results */
  int slot;            /* the job userdata's stack index (job_done) */
} job;

static void job_clear(job *j) {
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

static int job_gc(lua_State *L) {
  job *j = test_ud(L, 1, mt_job);   /* a direct call (debug.getregistry) may pass anything */
  if (j) job_clear(j);
  return 0;
}

/* One spare job userdata, kept in a one-slot table (registry ref): a job
 * with a __gc costs the collector more than most small calls do, so a call
 * that ends normally empties its job and hands it back (job_done) for the
 * next one. A call that raises leaves its job to the collector (its __gc
 * frees the buffers), and a call made while the spare is taken (a nested
 * one) makes its own. */
static int spare_ref = LUA_NOREF;

/* The patch fields' names, interned once (registry refs): reading or
 * writing a field by a key already on hand skips hashing its name. */
enum { K_DIFFS, K_START1, K_START2, K_LENGTH1, K_LENGTH2, K_N };
static const char *const key_name[K_N] = {"diffs", "start1", "start2", "length1", "length2"};
static int key_ref[K_N] = {LUA_NOREF, LUA_NOREF, LUA_NOREF, LUA_NOREF, LUA_NOREF};

static void push_key(lua_State *L, int k) { lua_rawgeti(L, LUA_REGISTRYINDEX, key_ref[k]); }

static job *job_new(lua_State *L, const dmp_opts *o, int kind) {
  job *j = NULL;
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
static void job_done(lua_State *L, job *j) {
  job_clear(j);
  lua_rawgeti(L, LUA_REGISTRYINDEX, spare_ref);
  lua_pushvalue(L, j->slot);
  lua_rawseti(L, -2, 1);
  lua_pop(L, 1);
}

/* ------------------------------------------------------------ arguments */

static void *default_ud;  /* the object behind the module-level forms */

static int argerr(lua_State *L, int i, const char *fn, const char *msg) {
  /* dmp.diff_main(a, b) is d:diff_main(a, b) on the default object: count
   * the arguments as the caller wrote them */
  if (default_ud && lua_touserdata(L, 1) == default_ud) i--;
  lua_pushfstring(L, "bad argument #%d to '%s' (%s)", i, fn, msg);
  return lua_error(L);
}

/* Set option k from the value at idx; returns an error message or NULL. */
static const char *set_opt(lua_State *L, dmp_opts *o, const char *k, int idx) {
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

static dmp_opts *check_dmp(lua_State *L, int i, const char *fn) {
  dmp_opts *o = test_ud(L, i, mt_dmp);
  if (!o) argerr(L, i, fn, lua_pushfstring(L, "coru.dmp object expected, got %s", luaL_typename(L, i)));
  return o;
}

static void check_text(lua_State *L, int i, const char *fn, dmp_ustr *out) {
  size_t n, bad;
  if (lua_type(L, i) != LUA_TSTRING)
    argerr(L, i, fn, lua_pushfstring(L, "string expected, got %s", luaL_typename(L, i)));
  const char *s = lua_tolstring(L, i, &n);
  if (dmp_utf8_to_u16(s, n, out, &bad))
    argerr(L, i, fn, lua_pushfstring(L, "invalid UTF-8 at byte %d", (int)bad + 1));
}

static int64_t check_int(lua_State *L, int idx, int argi, const char *fn, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    argerr(L, argi, fn, lua_pushfstring(L, "%s: a number expected, got %s", what, luaL_typename(L, idx)));
  double v = lua_tonumber(L, idx);
  if (!(v <= 9007199254740992.0 && v >= -9007199254740992.0) || v != (double)(int64_t)v)  /* NaN too */
    argerr(L, argi, fn, lua_pushfstring(L, "%s: an integer expected", what));
  return (int64_t)v;
}

/* The diffs table at index i (an array of {op, text}). */
static void check_diffs(lua_State *L, int i, int argi, const char *fn, dmp_diffs *out, dmp_ustr *scratch) {
  if (lua_type(L, i) != LUA_TTABLE)
    argerr(L, argi, fn, lua_pushfstring(L, "diffs (a table) expected, got %s", luaL_typename(L, i)));
  size_t n = lua_objlen(L, i);
  for (size_t k = 1; k <= n; k++) {
    lua_rawgeti(L, i, (int)k);
    int t = lua_gettop(L);
    if (lua_type(L, t) != LUA_TTABLE) argerr(L, argi, fn, lua_pushfstring(L, "diff %d is not a table", (int)k));
    lua_rawgeti(L, t, 1);
    lua_rawgeti(L, t, 2);
    int op = lua_type(L, -2) == LUA_TNUMBER ? (int)lua_tointeger(L, -2) : 9;
    if ((op != -1 && op != 0 && op != 1) || lua_tonumber(L, -2) != op)
      argerr(L, argi, fn, lua_pushfstring(L, "diff %d: op must be -1, 0 or 1", (int)k));
    size_t len, bad;
    if (lua_type(L, -1) != LUA_TSTRING) argerr(L, argi, fn, lua_pushfstring(L, "diff %d: text must be a string", (int)k));
    const char *s = lua_tolstring(L, -1, &len);
    scratch->n = 0;
    if (dmp_utf8_to_u16(s, len, scratch, &bad))
      argerr(L, argi, fn, lua_pushfstring(L, "diff %d: invalid UTF-8 at byte %d", (int)k, (int)bad + 1));
    dmp_diffs_push(out, op, scratch->p, scratch->n);
    lua_settop(L, t - 1);
  }
}

static void check_patches(lua_State *L, int i, int argi, const char *fn, dmp_patches *out, dmp_ustr *scratch) {
  if (lua_type(L, i) != LUA_TTABLE)
    argerr(L, argi, fn, lua_pushfstring(L, "patches (a table) expected, got %s", luaL_typename(L, i)));
  size_t n = lua_objlen(L, i);
  for (size_t k = 1; k <= n; k++) {
    lua_rawgeti(L, i, (int)k);
    int t = lua_gettop(L);
    if (lua_type(L, t) != LUA_TTABLE) argerr(L, argi, fn, lua_pushfstring(L, "patch %d is not a table", (int)k));
    dmp_patch *p = dmp_patches_add(out);
    int64_t v[4];
    for (int q = 0; q < 4; q++) {
      push_key(L, K_START1 + q);
      lua_gettable(L, t);
      v[q] = check_int(L, -1, argi, fn, key_name[K_START1 + q]);
      lua_pop(L, 1);
    }
    p->start1 = v[0]; p->start2 = v[1]; p->length1 = v[2]; p->length2 = v[3];
    push_key(L, K_DIFFS);
    lua_gettable(L, t);
    check_diffs(L, lua_gettop(L), argi, fn, &p->diffs, scratch);
    lua_settop(L, t - 1);
  }
}

/* ------------------------------------------------------------- results */

static void push_u16(lua_State *L, job *j, const dmp_u16 *s, size_t n) {
  j->tmp.n = 0;
  dmp_u16_to_utf8(s, n, &j->tmp);
  lua_pushlstring(L, j->tmp.p ? j->tmp.p : "", j->tmp.n);
}

static void push_diffs(lua_State *L, job *j, const dmp_diffs *d) {
  lua_createtable(L, (int)d->n, 0);
  for (size_t i = 0; i < d->n; i++) {
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, d->v[i].op);
    lua_rawseti(L, -2, 1);
    push_u16(L, j, d->v[i].s, d->v[i].n);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (int)i + 1);
  }
}

static void push_patches(lua_State *L, job *j, const dmp_patches *ps) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, mt_patch);
  int mt = lua_gettop(L);
  lua_createtable(L, (int)ps->n, 0);
  for (size_t i = 0; i < ps->n; i++) {
    const dmp_patch *p = &ps->v[i];
    lua_createtable(L, 0, 5);
    const int64_t v[4] = {p->start1, p->start2, p->length1, p->length2};
    push_key(L, K_DIFFS);
    push_diffs(L, j, &p->diffs);
    lua_rawset(L, -3);
    for (int q = 0; q < 4; q++) {
      push_key(L, K_START1 + q);
      lua_pushnumber(L, (lua_Number)v[q]);
      lua_rawset(L, -3);
    }
    lua_pushvalue(L, mt);
    lua_setmetatable(L, -2);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_remove(L, mt);
}

/* ------------------------------------------------------------- the jobs */

static void job_run(job *j) {
  switch (j->kind) {
  case J_DIFF: dmp_diff_main(&j->o, j->a.p, j->a.n, j->b.p, j->b.n, j->checklines, &j->dout); break;
  case J_MAKE_TEXTS: dmp_patch_make_texts(&j->o, j->a.p, j->a.n, j->b.p, j->b.n, &j->pout); break;
  case J_MAKE_DIFFS: dmp_patch_make(&j->o, j->a.p, j->a.n, &j->din, &j->pout); break;
  case J_APPLY: dmp_patch_apply_consume(&j->o, &j->pin, j->a.p, j->a.n, &j->tout, &j->res, &j->nres); break;
  }
}

static void push_results(lua_State *L, job *j) {
  lua_createtable(L, (int)j->nres, 0);
  for (size_t i = 0; i < j->nres; i++) {
    lua_pushboolean(L, j->res[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
}

static int job_push(lua_State *L, job *j) {
  switch (j->kind) {
  case J_DIFF: push_diffs(L, j, &j->dout); return 1;
  case J_MAKE_TEXTS:
  case J_MAKE_DIFFS: push_patches(L, j, &j->pout); return 1;
  default:
    push_u16(L, j, j->tout.p, j->tout.n);
    push_results(L, j);
    return 2;
  }
}

static void pool_work(uv_work_t *req) { job_run(req->data); }

static void pool_after(uv_work_t *req, int status) {
  job *h = req->data;
  lua_State *S = coru_cont_begin(&h->cont);
  if (S) {
    if (status < 0) coru_cont_fail(&h->cont, status, NULL);
    else coru_cont_ok(&h->cont, job_push(S, h));
  }
  job_clear(h);
  free(h);
}

static void pool_cancel(coru_cont *c) {
  job *h = container_of(c, job, cont);
  uv_cancel((uv_req_t *)&h->req);
}

/* Whether a call without a callback runs on the pool: in a task, for large
 * texts. In a task that cannot suspend here (a metamethod, a table.sort
 * comparator...), large texts run in place rather than fail. */
static int to_pool(lua_State *L, size_t bytes) {
  coru_task *T = coru_R->current;
  return T && bytes >= pool_min && lua_isyieldable(L) && (L == T->co || lua_isyieldable(T->co));
}

/* Run j (a userdata on the stack) here, or on the pool: with a callback at
 * cbidx (0: none), or in a task for large texts. */
static int run(lua_State *L, job *j, int cbidx, size_t bytes, const char *fname) {
  int cb = cbidx && lua_type(L, cbidx) == LUA_TFUNCTION;
  if (!cb && !to_pool(L, bytes)) {
    job_run(j);
    int r = job_push(L, j);
    job_done(L, j);
    return r;
  }
  coru_enter(L, cb ? cbidx : 0, fname, CORU_SYNC_OK);
  job *h = malloc(sizeof *h);
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
static int cb_slot(lua_State *L, int first) {
  int top = lua_gettop(L);
  return top >= first && lua_type(L, top) == LUA_TFUNCTION ? top : 0;
}

static size_t bytes_of(lua_State *L, int i) { return lua_type(L, i) == LUA_TSTRING ? lua_objlen(L, i) : 0; }

/* --------------------------------------------------------------- methods */

static int l_diff_main(lua_State *L) {
  const char *fn = "diff_main";
  dmp_opts *o = check_dmp(L, 1, fn);
  int cb = cb_slot(L, 4);
  job *j = job_new(L, o, J_DIFF);
  check_text(L, 2, fn, &j->a);
  check_text(L, 3, fn, &j->b);
  j->checklines = (cb == 4 || lua_isnoneornil(L, 4)) ? 1 : lua_toboolean(L, 4);
  return run(L, j, cb, bytes_of(L, 2) + bytes_of(L, 3), "dmp.diff_main");
}

static int l_patch_make(lua_State *L) {
  const char *fn = "patch_make";
  dmp_opts *o = check_dmp(L, 1, fn);
  int cb = cb_slot(L, 3);
  int top = cb ? cb - 1 : lua_gettop(L);
  int t2 = lua_type(L, 2), t3 = top >= 3 ? lua_type(L, 3) : LUA_TNONE, t4 = top >= 4 ? lua_type(L, 4) : LUA_TNONE;
  job *j;
  if (t2 == LUA_TSTRING && t3 == LUA_TSTRING && t4 == LUA_TNONE) {  /* (text1, text2) */
    j = job_new(L, o, J_MAKE_TEXTS);
    check_text(L, 2, fn, &j->a);
    check_text(L, 3, fn, &j->b);
  } else if (t2 == LUA_TTABLE && t3 == LUA_TNONE) {                  /* (diffs) */
    j = job_new(L, o, J_MAKE_DIFFS);
    check_diffs(L, 2, 2, fn, &j->din, &j->b);
    dmp_diff_text1(&j->din, &j->a);
  } else if (t2 == LUA_TSTRING && (t3 == LUA_TTABLE || (t3 == LUA_TSTRING && t4 == LUA_TTABLE))) {
    int di = t3 == LUA_TTABLE ? 3 : 4;                                /* (text1, diffs), (text1, text2, diffs) */
    j = job_new(L, o, J_MAKE_DIFFS);
    check_text(L, 2, fn, &j->a);
    check_diffs(L, di, di, fn, &j->din, &j->b);
    j->b.n = 0;
    dmp_diff_text1(&j->din, &j->b);
    if (j->b.n != j->a.n || (j->a.n && memcmp(j->a.p, j->b.p, j->a.n * sizeof *j->a.p)))
      return argerr(L, di, fn, "the diffs do not describe text1 (their deleted and equal texts differ from it)");
  } else {
    return luaL_error(L, "patch_make: unknown call format (text1, text2), (diffs), (text1, diffs) expected");
  }
  size_t bytes = bytes_of(L, 2) + bytes_of(L, 3);
  if (bytes < j->a.n) bytes = j->a.n;  /* (diffs): about the size of text1 */
  return run(L, j, cb, bytes, "dmp.patch_make");
}

static int l_patch_apply(lua_State *L) {
  const char *fn = "patch_apply";
  dmp_opts *o = check_dmp(L, 1, fn);
  int cb = cb_slot(L, 4);
  if (!cb && lua_type(L, 2) == LUA_TTABLE && lua_objlen(L, 2) == 0 && lua_type(L, 3) == LUA_TSTRING) {
    size_t n, bad;  /* no patches: the text as it is, as the reference returns it */
    const char *s = lua_tolstring(L, 3, &n);
    if (dmp_utf8_check(s, n, &bad)) argerr(L, 3, fn, lua_pushfstring(L, "invalid UTF-8 at byte %d", (int)bad + 1));
    lua_pushvalue(L, 3);
    lua_newtable(L);
    return 2;
  }
  job *j = job_new(L, o, J_APPLY);
  check_patches(L, 2, 2, fn, &j->pin, &j->b);
  size_t bytes = bytes_of(L, 3);
  for (size_t i = 0; i < j->pin.n; i++) {
    int64_t l = j->pin.v[i].length1 + j->pin.v[i].length2;
    if (l > 0 && l < ((int64_t)1 << 40)) bytes += (size_t)l;
  }
  if (!cb && lua_type(L, 3) == LUA_TSTRING && !to_pool(L, bytes)) {
    /* every hunk exactly where expected (the exact base): the text stays
     * UTF-8, only the hunks are converted; otherwise (or if the text is
     * not valid UTF-8: check_text names the byte) the general path */
    size_t n, skip = 0;
    const char *s = lua_tolstring(L, 3, &n);
    if (!dmp_patch_apply_utf8(&j->o, &j->pin, s, n, &j->tmp, &skip, &j->res, &j->nres)) {
      lua_pushlstring(L, j->tmp.p + skip, j->tmp.n - 2 * skip);
      push_results(L, j);
      job_done(L, j);
      return 2;
    }
  }
  check_text(L, 3, fn, &j->a);
  return run(L, j, cb, bytes, "dmp.patch_apply");
}

/* The diffs at index 2, converted into a new job (on the stack). */
static job *diffs_job(lua_State *L, const char *fn) {
  dmp_opts *o = check_dmp(L, 1, fn);
  job *j = job_new(L, o, 0);
  check_diffs(L, 2, 2, fn, &j->din, &j->a);
  return j;
}

/* Rewrite the table at index 2 with j->din; returns it. */
static int write_back(lua_State *L, job *j) {
  size_t old = lua_objlen(L, 2);
  for (size_t i = 0; i < j->din.n; i++) {
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, j->din.v[i].op);
    lua_rawseti(L, -2, 1);
    push_u16(L, j, j->din.v[i].s, j->din.v[i].n);
    lua_rawseti(L, -2, 2);
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
    job *j = diffs_job(L, #name);                \
    call(&j->o, &j->din);                        \
    dmp_diff_fix_surrogates(&j->din);            \
    write_back(L, j);                            \
    job_done(L, j);                              \
    return 1;                                    \
  }
CLEANUP(diff_cleanup_semantic, dmp_diff_cleanup_semantic)
CLEANUP(diff_cleanup_semantic_lossless, dmp_diff_cleanup_semantic_lossless)
CLEANUP(diff_cleanup_efficiency, dmp_diff_cleanup_efficiency)
CLEANUP(diff_cleanup_merge, dmp_diff_cleanup_merge)

static int l_diff_levenshtein(lua_State *L) {
  job *j = diffs_job(L, "diff_levenshtein");
  lua_pushnumber(L, (lua_Number)dmp_diff_levenshtein(&j->din));
  job_done(L, j);
  return 1;
}

static int l_diff_x_index(lua_State *L) {
  job *j = diffs_job(L, "diff_x_index");
  int64_t loc = check_int(L, 3, 3, "diff_x_index", "loc");
  lua_pushnumber(L, (lua_Number)dmp_diff_x_index(&j->din, loc));
  job_done(L, j);
  return 1;
}

static int text12(lua_State *L, int which) {
  job *j = diffs_job(L, which == 1 ? "diff_text1" : "diff_text2");
  j->a.n = 0;  /* it was check_diffs' scratch */
  if (which == 1) dmp_diff_text1(&j->din, &j->a);
  else dmp_diff_text2(&j->din, &j->a);
  push_u16(L, j, j->a.p, j->a.n);
  job_done(L, j);
  return 1;
}
static int l_diff_text1(lua_State *L) { return text12(L, 1); }
static int l_diff_text2(lua_State *L) { return text12(L, 2); }

static int l_match_main(lua_State *L) {
  const char *fn = "match_main";
  dmp_opts *o = check_dmp(L, 1, fn);
  job *j = job_new(L, o, 0);
  check_text(L, 2, fn, &j->a);
  check_text(L, 3, fn, &j->b);
  int64_t loc = check_int(L, 4, 4, fn, "loc");
  int64_t r = dmp_match_main(o, j->a.p, j->a.n, j->b.p, j->b.n, loc);
  if (r == -2) return luaL_error(L, "match_main: pattern too long (%d UTF-16 units, match_maxbits is %d)",
                                 (int)j->b.n, o->match_maxbits);
  lua_pushnumber(L, (lua_Number)r);
  job_done(L, j);
  return 1;
}

static int l_patch_to_text(lua_State *L) {
  const char *fn = "patch_to_text";
  dmp_opts *o = check_dmp(L, 1, fn);
  job *j = job_new(L, o, 0);
  check_patches(L, 2, 2, fn, &j->pin, &j->a);
  dmp_patch_to_text(&j->pin, &j->tmp);
  lua_pushlstring(L, j->tmp.p ? j->tmp.p : "", j->tmp.n);
  job_done(L, j);
  return 1;
}

static int l_patch_from_text(lua_State *L) {
  const char *fn = "patch_from_text";
  dmp_opts *o = check_dmp(L, 1, fn);
  size_t n;
  if (lua_type(L, 2) != LUA_TSTRING) argerr(L, 2, fn, lua_pushfstring(L, "string expected, got %s", luaL_typename(L, 2)));
  const char *s = lua_tolstring(L, 2, &n);
  job *j = job_new(L, o, 0);
  char err[256];
  if (dmp_patch_from_text(s, n, &j->pout, err, sizeof err)) {
    job_done(L, j);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  push_patches(L, j, &j->pout);
  job_done(L, j);
  return 1;
}

static int l_patch_tostring(lua_State *L) {
  dmp_opts o;
  dmp_opts_default(&o);
  job *j = job_new(L, &o, 0);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, 1);
  check_patches(L, lua_gettop(L), 1, "tostring", &j->pin, &j->a);
  dmp_patch_to_text(&j->pin, &j->tmp);
  lua_pushlstring(L, j->tmp.p ? j->tmp.p : "", j->tmp.n);
  return 1;
}

static int l_md5(lua_State *L) {
  size_t n;
  if (lua_type(L, 1) != LUA_TSTRING) argerr(L, 1, "md5", lua_pushfstring(L, "string expected, got %s", luaL_typename(L, 1)));
  const char *s = lua_tolstring(L, 1, &n);
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

static void apply_opts(lua_State *L, dmp_opts *o, int t, const char *fn) {
  if (lua_isnoneornil(L, t)) return;
  if (lua_type(L, t) != LUA_TTABLE) argerr(L, t, fn, lua_pushfstring(L, "table expected, got %s", luaL_typename(L, t)));
  lua_pushnil(L);
  while (lua_next(L, t)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    const char *e = k ? set_opt(L, o, k, lua_gettop(L)) : "unknown option";
    if (e) argerr(L, t, fn, lua_pushfstring(L, "option '%s': %s", k ? k : luaL_typename(L, -2), e));
    lua_pop(L, 1);
  }
}

static dmp_opts *new_obj(lua_State *L) {
  dmp_opts *o = lua_newuserdata(L, sizeof *o);
  dmp_opts_default(o);
  lua_rawgeti(L, LUA_REGISTRYINDEX, mt_dmp);
  lua_setmetatable(L, -2);
  return o;
}

static int l_new(lua_State *L) {
  dmp_opts o;
  dmp_opts_default(&o);
  apply_opts(L, &o, 1, "new");
  *new_obj(L) = o;
  return 1;
}

static int push_opt(lua_State *L, const dmp_opts *o, const char *k) {
  if (!strcmp(k, "diff_timeout")) lua_pushnumber(L, o->diff_timeout);
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
  dmp_opts *o = check_dmp(L, 1, "index");
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (k && push_opt(L, o, k)) return 1;
  lua_pushnil(L);
  return 1;
}

/* The object's __index and the answers that need no C call, in Lua so that
 * the JIT compiles them into the caller: a method lookup, and the no-op
 * cases (identical texts, no patches, an empty patch text), which the
 * reference answers in tens of nanoseconds. Those return their input
 * unread (see docs/dmp.md, "Texts and offsets"); any other call goes to C.
 * Arguments: methods, module table, the object metatable, the default
 * object, l_getopt. */
static const char fast_lua[] =
  "local methods, mod, MT, default, getopt = ...\n"
  "local type, getmetatable, select = type, getmetatable, select\n"
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
  "     and getmetatable(d) == MT then\n"
  "    if a == '' then return {} end\n"
  "    return {{0, a}}\n"
  "  end\n"
  "  return c_diff(d, ...)\n"
  "end\n"
  "local function patch_make(d, ...)\n"
  "  local a, b = ...\n"
  "  if a == b and select('#', ...) == 2 and type(a) == 'string' and getmetatable(d) == MT then return {} end\n"
  "  return c_make(d, ...)\n"
  "end\n"
  "local function patch_apply(d, ...)\n"
  "  local ps, text = ...\n"
  "  if select('#', ...) == 2 and type(text) == 'string' and type(ps) == 'table' and #ps == 0\n"
  "     and getmetatable(d) == MT then\n"
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
  "  if ... == '' and getmetatable(d) == MT then return {} end\n"
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
  dmp_opts *o = check_dmp(L, 1, "newindex");
  const char *k = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?";
  const char *e = set_opt(L, o, k, 3);
  if (e) return luaL_error(L, "coru.dmp: option '%s': %s", k, e);
  return 0;
}

static int l_tostring(lua_State *L) {
  lua_pushfstring(L, "coru.dmp: %p", lua_touserdata(L, 1));
  return 1;
}

static int l_pool_threshold(lua_State *L) {
  lua_Number old = (lua_Number)pool_min;
  if (!lua_isnoneornil(L, 1)) {
    lua_Number v = luaL_checknumber(L, 1);
    if (v < 0 || v != v) return argerr(L, 1, "pool_threshold", "a size in bytes (>= 0) expected");
    pool_min = v > 1e15 ? (size_t)1e15 : (size_t)v;
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
    lua_rawgeti(L, LUA_REGISTRYINDEX, default_ref);              \
    lua_insert(L, 1);                                            \
    return l_##name(L);                                          \
  }
METHODS(MODFN)

CORU_FAMILY(dmp) {
  int M = lua_gettop(L);  /* the coru table */
  static const coru_Reg top[] = {{"md5", l_md5, 0}, {NULL, NULL, 0}};
  coru_setfuncs(L, top);

  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, job_gc);
  lua_setfield(L, -2, "__gc");
  mt_job = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 1, 0);
  spare_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  for (int k = 0; k < K_N; k++) {
    lua_pushstring(L, key_name[k]);
    key_ref[k] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, l_patch_tostring);
  lua_setfield(L, -2, "__tostring");
  mt_patch = luaL_ref(L, LUA_REGISTRYINDEX);

#define REG(name, flags) {#name, l_##name, flags},
  static const coru_Reg methods[] = {METHODS(REG) {NULL, NULL, 0}};
#define MREG(name, flags) {#name, m_##name, flags},
  static const coru_Reg modfns[] = {METHODS(MREG) {"new", l_new, 0}, {"pool_threshold", l_pool_threshold, 0},
                                    {NULL, NULL, 0}};
  lua_createtable(L, 0, 4);
  int mt = lua_gettop(L);
  lua_pushvalue(L, mt);
  mt_dmp = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushcfunction(L, l_newindex);
  lua_setfield(L, mt, "__newindex");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, mt, "__tostring");
  lua_settop(L, M);

  default_ud = new_obj(L);
  default_ref = luaL_ref(L, LUA_REGISTRYINDEX);

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
  lua_rawgeti(L, LUA_REGISTRYINDEX, mt_dmp);
  lua_rawgeti(L, LUA_REGISTRYINDEX, default_ref);
  lua_pushcfunction(L, l_getopt);
  lua_call(L, 5, 0);
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
