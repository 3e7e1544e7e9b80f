/*
 * xfer.c - values that cross Lua states (xfer.h): the serializer shared
 * by coru.work and luv's threads, the async handle (the one handle that
 * crosses, as a reference) and thread ids.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <stdint.h>
#include <pthread.h>
#include "coru.h"
#include "check.h"
#include "xfer.h"

#define THREAD_MT "coru.thread"

/* luaL_error without the position (the caller is coru's wrapper). */
int coru_xfer_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* ------------------------------------------------------------ buffers */

void coru_sb_add(coru_sbuf *b, const void *d, size_t n) {
  if (b->oom || n == 0) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return; }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, d, n);
  b->len += n;
}

static void sb_byte(coru_sbuf *b, char c) { coru_sb_add(b, &c, 1); }
void coru_sb_free(coru_sbuf *b) { free(b->p); memset(b, 0, sizeof *b); }

/* Serialize the value at idx. Returns NULL, or a static error message
 * (err receives a detail in errbuf). */
#define MAX_DEPTH 64
static coru_htype async_type;
typedef struct async_handle async_handle;

static const char *ser(lua_State *L, int idx, coru_sbuf *b, int depth, char *errbuf, size_t errlen) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: sb_byte(b, 'n'); return NULL;
  case LUA_TBOOLEAN: sb_byte(b, lua_toboolean(L, idx) ? 't' : 'f'); return NULL;
  case LUA_TNUMBER: {
    lua_Number n = lua_tonumber(L, idx);
    sb_byte(b, 'd');
    coru_sb_add(b, &n, sizeof n);
    return NULL;
  }
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    sb_byte(b, 's');
    coru_sb_add(b, &len, sizeof len);
    coru_sb_add(b, s, len);
    return NULL;
  }
  case LUA_TTABLE: {
    if (depth >= MAX_DEPTH) return "tables nested too deep (a cycle?)";
    if (lua_getmetatable(L, idx)) { lua_pop(L, 1); return "a table with a metatable cannot cross Lua states"; }
    if (!lua_checkstack(L, 4)) return "stack overflow";
    sb_byte(b, '{');
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      const char *e = ser(L, -2, b, depth + 1, errbuf, errlen);
      if (!e) e = ser(L, -1, b, depth + 1, errbuf, errlen);
      if (e) { lua_pop(L, 2); return e; }
      lua_pop(L, 1);
    }
    sb_byte(b, '}');
    return NULL;
  }
  case LUA_TLIGHTUSERDATA: {     /* an async handle's reference, going on */
    void *ptr = lua_touserdata(L, idx);
    sb_byte(b, 'A');
    coru_sb_add(b, &ptr, sizeof ptr);
    return NULL;
  }
  case LUA_TUSERDATA: {
    coru_handle *h = coru_test_handle(L, idx, &async_type);
    if (h && !h->closing) {        /* arrives as a reference async_send takes (luv's threads) */
      void *ptr = h;
      sb_byte(b, 'A');
      coru_sb_add(b, &ptr, sizeof ptr);
      return NULL;
    }
    uv_thread_t tid;
    if (coru_thread_id_of(L, idx, &tid)) {
      sb_byte(b, 'T');
      coru_sb_add(b, &tid, sizeof tid);
      return NULL;
    }
  }
  /* fall through */
  default:
    snprintf(errbuf, errlen, "a %s value cannot cross Lua states (only nil, booleans, numbers, strings, plain tables, async handles and thread ids)",
             lua_typename(L, lua_type(L, idx)));
    return errbuf;
  }
}

/* Copy n bytes at *pos into dst and step over them; 0 if p is too short. */
static int take(const char *p, size_t len, size_t *pos, void *dst, size_t n) {
  if (*pos + n > len) return 0;
  memcpy(dst, p + *pos, n);
  *pos += n;
  return 1;
}

/* Push the value at *pos; returns 0 on a malformed buffer. */
static int deser(lua_State *L, const char *p, size_t len, size_t *pos) {
  if (*pos >= len || !lua_checkstack(L, 3)) return 0;
  char t = p[(*pos)++];
  switch (t) {
  case 'n': lua_pushnil(L); return 1;
  case 't': lua_pushboolean(L, 1); return 1;
  case 'f': lua_pushboolean(L, 0); return 1;
  case 'd': {
    lua_Number n;
    if (!take(p, len, pos, &n, sizeof n)) return 0;
    lua_pushnumber(L, n);
    return 1;
  }
  case 's': {
    size_t n;
    if (!take(p, len, pos, &n, sizeof n) || *pos + n > len) return 0;
    lua_pushlstring(L, p + *pos, n);
    *pos += n;
    return 1;
  }
  case 'A': {
    void *ptr;
    if (!take(p, len, pos, &ptr, sizeof ptr)) return 0;
    lua_pushlightuserdata(L, ptr);
    return 1;
  }
  case 'T': {
    uv_thread_t tid;
    if (!take(p, len, pos, &tid, sizeof tid)) return 0;
    coru_push_thread_id(L, &tid);
    return 1;
  }
  case '{':
    lua_newtable(L);
    while (*pos < len && p[*pos] != '}') {
      if (!deser(L, p, len, pos) || !deser(L, p, len, pos)) return 0;
      lua_rawset(L, -3);
    }
    (*pos)++;
    return 1;
  }
  return 0;
}

/* Push every value of a buffer; returns the count, -1 if malformed. */
int coru_xfer_push_all(lua_State *L, const coru_sbuf *b) {
  size_t pos = 0;
  int n = 0;
  while (pos < b->len) {
    if (!deser(L, b->p, b->len, &pos)) { lua_pop(L, n); return -1; }
    n++;
  }
  return n;
}

/* Serialize values first..last; raises with fname on a bad one. */
void coru_xfer_args(lua_State *L, int first, int last, coru_sbuf *b, const char *fname) {
  char errbuf[200];
  for (int i = first; i <= last; i++) {
    const char *e = ser(L, i, b, 0, errbuf, sizeof errbuf);
    if (e) { coru_sb_free(b); coru_xfer_error(L, "%s: argument #%d: %s", fname, i, e); }
  }
  if (b->oom) { coru_sb_free(b); coru_xfer_error(L, "%s: out of memory", fname); }
}

/* ------------------------------------------------------------ async */

struct async_handle {
  coru_handle base;
  uv_async_t a;
  uv_mutex_t mu;
  coru_sbuf pending;      /* the values of the last send (latest wins, as luv) */
};

static void async_cb(uv_async_t *h) {
  async_handle *a = h->data;
  lua_State *L = coru_R->L;
  uv_mutex_lock(&a->mu);
  coru_sbuf vals = a->pending;
  memset(&a->pending, 0, sizeof a->pending);
  uv_mutex_unlock(&a->mu);
  if (a->base.cb_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->base.cb_ref);
    int n = coru_xfer_push_all(L, &vals);
    coru_callback(n < 0 ? 0 : n);
  }
  coru_sb_free(&vals);
}

/* The async handles other states may send to (a reference crossed states
 * as a light userdata): a send from another thread checks its reference
 * here, under the lock, so a closed handle or a stray pointer is an error,
 * never a write to freed memory. */
static uv_mutex_t open_mu;
static async_handle **open_asyncs;
static size_t n_open, cap_open;

static void open_add(async_handle *a) {
  uv_mutex_lock(&open_mu);
  if (n_open == cap_open) {
    size_t cap = cap_open ? cap_open * 2 : 16;
    async_handle **p = realloc(open_asyncs, cap * sizeof *p);
    if (p) { open_asyncs = p; cap_open = cap; }
  }
  if (n_open < cap_open) open_asyncs[n_open++] = a;
  uv_mutex_unlock(&open_mu);
}

static void open_remove(async_handle *a) {
  uv_mutex_lock(&open_mu);
  for (size_t i = 0; i < n_open; i++)
    if (open_asyncs[i] == a) { open_asyncs[i] = open_asyncs[--n_open]; break; }
  uv_mutex_unlock(&open_mu);
}

static void async_on_close(coru_handle *h) {
  async_handle *a = (async_handle *)h;
  open_remove(a);
}

static void async_on_free(coru_handle *h) {
  async_handle *a = (async_handle *)h;
  coru_sb_free(&a->pending);
  uv_mutex_destroy(&a->mu);
}

/* new_async(cb) -> handle; cb(values of the last send) runs on the loop. */
static int l_new_async(lua_State *L) {
  int ref = coru_ref_cb(L, 1);
  async_handle *a = coru_handle_alloc(L, &async_type, sizeof *a, offsetof(async_handle, a));
  uv_mutex_init(&a->mu);
  int r = uv_async_init(coru_R->loop, &a->a, async_cb);
  if (r < 0) {
    uv_mutex_destroy(&a->mu);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return coru_handle_inited(L, &a->base, r);
  }
  coru_handle_set_cb(L, &a->base, &a->base.cb_ref, ref);   /* an async is active until closed */
  open_add(a);
  return 1;
}

/* async:send(...): wake the loop (from any thread, for C; from Lua here). */
static int l_async_send(lua_State *L) {
  async_handle *a = (async_handle *)coru_check_handle(L, 1, &async_type);
  coru_sbuf vals = {0};
  coru_xfer_args(L, 2, lua_gettop(L), &vals, "async_send");
  uv_mutex_lock(&a->mu);
  coru_sb_free(&a->pending);
  a->pending = vals;
  uv_mutex_unlock(&a->mu);
  int r = uv_async_send(&a->a);
  return coru_result(L, r, NULL);
}

/* As in luv, closing an async handle while other threads send to it is
 * the program's error (the reference is checked under the lock). */
int coru_async_send_ref(void *ref, lua_State *S, int first, int last) {
  coru_sbuf vals = {0};
  coru_xfer_args(S, first, last, &vals, "async_send");
  int r = UV_EBADF;                  /* closed, or never an async handle */
  uv_mutex_lock(&open_mu);
  for (size_t i = 0; i < n_open; i++) {
    if (open_asyncs[i] != ref) continue;
    async_handle *a = ref;
    uv_mutex_lock(&a->mu);
    coru_sb_free(&a->pending);
    a->pending = vals;
    vals.p = NULL;
    uv_mutex_unlock(&a->mu);
    r = uv_async_send(&a->a);
    break;
  }
  uv_mutex_unlock(&open_mu);
  coru_sb_free(&vals);
  return r;
}

void coru_xfer_pack(lua_State *L, int first, int last, char **out, size_t *len, const char *fname) {
  coru_sbuf b = {0};
  coru_xfer_args(L, first, last, &b, fname);
  *out = b.p;
  *len = b.len;
}

int coru_xfer_unpack(lua_State *L, const char *p, size_t len) {
  coru_sbuf b = {(char *)p, len, len, 0};
  return coru_xfer_push_all(L, &b);
}

/* async:address(): the uv_async_t's address as a number, for code on
 * another thread (C, or LuaJIT FFI in a coru.work function) to call
 * uv_async_send on. Valid until the handle is closed. */
static int l_async_address(lua_State *L) {
  async_handle *a = (async_handle *)coru_check_handle(L, 1, &async_type);
  lua_pushnumber(L, (lua_Number)(uintptr_t)&a->a);
  return 1;
}

static const coru_Fn async_fns[] = {
  {NULL, "new_async", l_new_async, 0}, CORU_FN(async, send, 0),
  {"address", NULL, l_async_address, 0}, CORU_FNS_END
};
static coru_htype async_type = {"coru.async", CORU_K_ASYNC, CORU_K_ASYNC, async_fns,
                                async_on_close, async_on_free, NULL};

/* -------------------------------------------------------- thread ids */

coru_lthread *coru_push_lthread(lua_State *L) {
  coru_lthread *t = lua_newuserdata(L, sizeof *t);
  memset(t, 0, sizeof *t);
  coru_thread_mt(L);
  lua_setmetatable(L, -2);
  return t;
}

int coru_thread_id_of(lua_State *L, int idx, uv_thread_t *tid) {
  coru_lthread *t = lua_touserdata(L, idx);
  if (!t || lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return 0;
  luaL_getmetatable(L, THREAD_MT);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!same) return 0;
  *tid = t->tid;
  return 1;
}

void coru_push_thread_id(lua_State *L, const uv_thread_t *tid) {
  coru_push_lthread(L)->tid = *tid;
}

static coru_lthread *check_lthread(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, THREAD_MT);
}

int coru_l_thread_self(lua_State *L) {
  coru_push_lthread(L)->tid = uv_thread_self();
  return 1;
}

int coru_l_thread_equal(lua_State *L) {
  coru_lthread *a = check_lthread(L, 1), *b = check_lthread(L, 2);
  lua_pushboolean(L, uv_thread_equal(&a->tid, &b->tid));
  return 1;
}

static int l_thread_tostring(lua_State *L) {
  coru_lthread *t = check_lthread(L, 1);
  lua_pushfstring(L, "uv_thread_t: %p", (void *)t->tid);   /* as luv prints it */
  return 1;
}

/* thread_join(t) -> true; a thread joins once, as with pthreads */
int coru_l_thread_join(lua_State *L) {
  coru_lthread *t = check_lthread(L, 1);
  if (!t->joinable) return luaL_error(L, "thread_join: not a joinable thread (thread_self, or joined already)");
  t->joinable = 0;
  int r = uv_thread_join(&t->tid);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* Dropped without a join: the thread goes on detached. */
static int l_thread_gc(lua_State *L) {
  coru_lthread *t = coru_test_udata(L, 1, THREAD_MT);   /* a direct call may pass anything */
  if (t && t->joinable) {
    t->joinable = 0;
    pthread_detach(t->tid);
  }
  return 0;
}

int coru_thread_mt(lua_State *L) {
  static const luaL_Reg meta[] = {{"__eq", coru_l_thread_equal}, {"__tostring", l_thread_tostring},
                                  {"__gc", l_thread_gc}, {NULL, NULL}};
  static const luaL_Reg index[] = {{"join", coru_l_thread_join}, {"equal", coru_l_thread_equal}, {NULL, NULL}};
  coru_newmt(L, THREAD_MT, meta, index);
  return 1;
}

/* ------------------------------------------------------------ open */

void coru_open_async(lua_State *L) {
  static int inited;
  if (!inited) { uv_mutex_init(&open_mu); inited = 1; }
  coru_register_htype(L, &async_type);
}

const char *coru_xfer_value(lua_State *L, int idx, coru_sbuf *b, char *errbuf, size_t errlen) {
  return ser(L, idx, b, 0, errbuf, errlen);
}
