/*
 * dmp_lua.h - internal to the coru.dmp binding, in three layers that call
 * downwards only: dmp_lua_push.c (argument errors, results as Lua values,
 * the opaque patch list) <- dmp_lua_job.c (jobs, argument checks and
 * conversions, the thread pool) <- dmp_lua.c (methods, objects).
 */
#ifndef CORU_DMP_LUA_H
#define CORU_DMP_LUA_H

#include "coru.h"
#include "dmp.h"

enum { J_DIFF = 1, J_MAKE_TEXTS, J_MAKE_DIFFS, J_APPLY };

/* A call's converted arguments and its results, in a userdata (so that an
 * argument error frees what was converted: its __gc) or, on the pool, in a
 * malloc'd copy. */
typedef struct {
  uv_work_t req;
  coru_cont cont;
  int kind, checklines;
  int opaque;          /* patch lists out as a dmpl_mt_plist userdata */
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
  int slot;            /* the job userdata's stack index (dmpl_job_done) */
} dmpl_job;

/* A coru.dmp object: the core's options, and the binding's one. */
typedef struct {
  dmp_opts o;          /* first: the object's pointer is its options' */
  int opaque;          /* opaque_patches */
} dmpl_obj;

/* Registry refs of the object metatable and of the default object (the one
 * behind the module-level forms), set by dmp_lua.c when the runtime opens. */
extern int dmpl_mt_dmp, dmpl_default_ref;
extern void *dmpl_default_ud;

/* ------------------------------------------------------ dmp_lua_push.c */

/* The patch fields, their names and their interned keys. */
enum { DMPL_K_DIFFS, DMPL_K_START1, DMPL_K_START2, DMPL_K_LENGTH1, DMPL_K_LENGTH2, DMPL_K_N };
extern const char *const dmpl_key_name[DMPL_K_N];
void dmpl_push_key(lua_State *L, int k);
/* Registry refs of the patch tables' and the patch lists' metatables. */
extern int dmpl_mt_patch, dmpl_mt_plist;
/* Creates the keys and those metatables (the list's __gc and __len). */
void dmpl_push_open(lua_State *L);

/* Raises "bad argument #i to 'fn' (msg)", counting the arguments as the
 * caller wrote them (the module-level forms lack self). */
int dmpl_argerr(lua_State *L, int i, const char *fn, const char *msg);
/* The userdata at i if its metatable is the one of ref, else NULL. */
void *dmpl_test_ud(lua_State *L, int i, int ref);

/* Results: a UTF-16 text as a UTF-8 string (tmp: scratch), a diff as
 * {op, text}, lists of them, patch tables. */
void dmpl_push_u16(lua_State *L, dmp_bstr *tmp, const dmp_u16 *s, size_t n);
void dmpl_push_diff(lua_State *L, dmp_bstr *tmp, const dmp_diff *d);
void dmpl_push_diffs(lua_State *L, dmp_bstr *tmp, const dmp_diffs *d);
void dmpl_push_patches(lua_State *L, dmp_bstr *tmp, const dmp_patches *ps);

/* The opaque patch list: a new one that takes over *from (left empty);
 * the list at i or NULL; the list at 1 or an argument error. */
void dmpl_push_plist(lua_State *L, dmp_patches *from);
dmp_patches *dmpl_test_plist(lua_State *L, int i);
dmp_patches *dmpl_check_plist(lua_State *L, const char *fn);

/* ------------------------------------------------------- dmp_lua_job.c */
/* Calls in a task go to the pool from this many bytes (dmp.pool_threshold). */
extern size_t dmpl_pool_min;

/* Opens the binding's lower layers: metatables, the spare job, the keys. */
void dmpl_open(lua_State *L);

/* A job for kind (0: a quick call that runs in place) with options o, pushed
 * on the stack; dmpl_job_done frees its buffers and keeps it as the spare. */
dmpl_job *dmpl_job_new(lua_State *L, const dmp_opts *o, int kind);
void dmpl_job_done(lua_State *L, dmpl_job *j);

/* Argument checks: each raises through dmpl_argerr. */
dmp_opts *dmpl_check_dmp(lua_State *L, int i, const char *fn);
/* A string (its bytes unchecked). */
const char *dmpl_check_string(lua_State *L, int i, const char *fn, size_t *n);
/* A string of valid UTF-8 (the byte of the first bad sequence named). */
const char *dmpl_check_utf8(lua_State *L, int i, const char *fn, size_t *n);
void dmpl_check_text(lua_State *L, int i, const char *fn, dmp_ustr *out);
int64_t dmpl_check_int(lua_State *L, int idx, int argi, const char *fn, const char *what);
/* The diffs ({op, text} entries) or patches (patch tables) at index i,
 * reported as argument argi; scratch is a conversion buffer. */
void dmpl_check_diffs(lua_State *L, int i, int argi, const char *fn, dmp_diffs *out, dmp_ustr *scratch);
void dmpl_check_patches(lua_State *L, int i, int argi, const char *fn, dmp_patches *out, dmp_ustr *scratch);
/* The patches argument i: an opaque list's own (read, never changed), or
 * the table's converted into *into. */
const dmp_patches *dmpl_patches_arg(lua_State *L, int i, const char *fn, dmp_patches *into, dmp_ustr *scratch);

/* j's per-hunk results as booleans; j->pout as the caller's object asks
 * (a table of patch tables, or an opaque list). */
void dmpl_push_results(lua_State *L, dmpl_job *j);
void dmpl_push_patch_list(lua_State *L, dmpl_job *j);

/* Whether a call in this state, on texts of this size, goes to the pool. */
int dmpl_to_pool(lua_State *L, size_t bytes);
/* Runs j (of a J_ kind, on the stack) here or on the pool: with a callback
 * at cbidx (0: none), or in a task for large texts; returns its results. */
int dmpl_run(lua_State *L, dmpl_job *j, int cbidx, size_t bytes, const char *fname);
/* The callback slot: the last argument if it is a function, from first on. */
int dmpl_cb_slot(lua_State *L, int first);
size_t dmpl_bytes_of(lua_State *L, int i);

/* The patch tables' __tostring. */
int dmpl_patch_tostring(lua_State *L);

#endif
