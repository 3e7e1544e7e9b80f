/*
 * work.c - the thread pool (coru.work, luv's new_work/queue_work), async
 * handles (wake the loop from another thread) and poll handles (fd
 * readiness, to drive other C libraries).
 *
 * A work function runs in a lua_State of its own, taken from a pool and
 * reused, on one of libuv's pool threads: it is dumped to bytecode here and
 * loaded there, so it may have no upvalues. Arguments and results cross
 * the states serialized (nil, booleans, numbers, strings, plain tables of
 * those); anything else is a clear error.
 */
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <stdint.h>
#include "coru.h"
#include "check.h"

/* luaL_error without the position (the caller is coru's wrapper). */
static int werror(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

/* ------------------------------------------------------------ buffers */

typedef struct { char *p; size_t len, cap; int oom; } sbuf;

static void sb_add(sbuf *b, const void *d, size_t n) {
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

static void sb_byte(sbuf *b, char c) { sb_add(b, &c, 1); }
static void sb_free(sbuf *b) { free(b->p); memset(b, 0, sizeof *b); }

/* Serialize the value at idx. Returns NULL, or a static error message
 * (err receives a detail in errbuf). */
#define MAX_DEPTH 64
static coru_htype async_type;
typedef struct casync casync;

static const char *ser(lua_State *L, int idx, sbuf *b, int depth, char *errbuf, size_t errlen) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: sb_byte(b, 'n'); return NULL;
  case LUA_TBOOLEAN: sb_byte(b, lua_toboolean(L, idx) ? 't' : 'f'); return NULL;
  case LUA_TNUMBER: {
    lua_Number n = lua_tonumber(L, idx);
    sb_byte(b, 'd');
    sb_add(b, &n, sizeof n);
    return NULL;
  }
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    sb_byte(b, 's');
    sb_add(b, &len, sizeof len);
    sb_add(b, s, len);
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
    sb_add(b, &ptr, sizeof ptr);
    return NULL;
  }
  case LUA_TUSERDATA: {
    coru_handle *h = coru_test_handle(L, idx, &async_type);
    if (h && !h->closing) {        /* arrives as a reference async_send takes (luv's threads) */
      void *ptr = h;
      sb_byte(b, 'A');
      sb_add(b, &ptr, sizeof ptr);
      return NULL;
    }
    uv_thread_t tid;
    if (coru_thread_id_of(L, idx, &tid)) {
      sb_byte(b, 'T');
      sb_add(b, &tid, sizeof tid);
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
    if (*pos + sizeof n > len) return 0;
    memcpy(&n, p + *pos, sizeof n);
    *pos += sizeof n;
    lua_pushnumber(L, n);
    return 1;
  }
  case 's': {
    size_t n;
    if (*pos + sizeof n > len) return 0;
    memcpy(&n, p + *pos, sizeof n);
    *pos += sizeof n;
    if (*pos + n > len) return 0;
    lua_pushlstring(L, p + *pos, n);
    *pos += n;
    return 1;
  }
  case 'A': {
    void *ptr;
    if (*pos + sizeof ptr > len) return 0;
    memcpy(&ptr, p + *pos, sizeof ptr);
    *pos += sizeof ptr;
    lua_pushlightuserdata(L, ptr);
    return 1;
  }
  case 'T': {
    uv_thread_t tid;
    if (*pos + sizeof tid > len) return 0;
    memcpy(&tid, p + *pos, sizeof tid);
    *pos += sizeof tid;
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
static int deser_all(lua_State *L, const sbuf *b) {
  size_t pos = 0;
  int n = 0;
  while (pos < b->len) {
    if (!deser(L, b->p, b->len, &pos)) { lua_pop(L, n); return -1; }
    n++;
  }
  return n;
}

/* Serialize values first..last; raises with fname on a bad one. */
static void ser_args(lua_State *L, int first, int last, sbuf *b, const char *fname) {
  char errbuf[200];
  for (int i = first; i <= last; i++) {
    const char *e = ser(L, i, b, 0, errbuf, sizeof errbuf);
    if (e) { sb_free(b); werror(L, "%s: argument #%d: %s", fname, i, e); }
  }
  if (b->oom) { sb_free(b); werror(L, "%s: out of memory", fname); }
}

/* ------------------------------------------------------------ the pool */

static uv_mutex_t pool_mu;
static lua_State *pool[64];
static int npool;

static lua_State *state_get(void) {
  lua_State *S = NULL;
  uv_mutex_lock(&pool_mu);
  if (npool > 0) S = pool[--npool];
  uv_mutex_unlock(&pool_mu);
  if (!S) {
    S = luaL_newstate();
    if (S) { luaL_openlibs(S); coru_luv_thread_open(S); }
  }
  return S;
}

static void state_put(lua_State *S) {
  lua_settop(S, 0);
  uv_mutex_lock(&pool_mu);
  if (npool < 64) { pool[npool++] = S; S = NULL; }
  uv_mutex_unlock(&pool_mu);
  if (S) lua_close(S);
}

/* ------------------------------------------------------------ work */


typedef struct {
  uv_work_t req;
  coru_cont cont;
  int after_ref;       /* luv's queue_work: after_work(results...) */
  sbuf code;           /* the function's bytecode */
  sbuf io;             /* arguments in, results (or the error) out */
  int failed;
  char name[64];
} workreq;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  sb_add(ud, p, sz);
  return 0;
}

/* Check fn (at idx) and dump it into b; raises a clear error. */
static void dump_fn(lua_State *L, int idx, sbuf *b, const char *fname) {
  if (lua_type(L, idx) != LUA_TFUNCTION)
    werror(L, "bad argument #%d to '%s' (function expected, got %s)", idx, fname, luaL_typename(L, idx));
  if (lua_iscfunction(L, idx)) werror(L, "%s: a C function cannot run in the thread pool", fname);
  const char *up = lua_getupvalue(L, idx, 1);
  if (up) {
    lua_pop(L, 1);
    werror(L, "%s: the function has upvalues (first: '%s'); it runs in another Lua state, "
               "so it may use only its arguments and globals", fname, up);
  }
  lua_pushvalue(L, idx);
  lua_dump(L, dump_writer, b);
  lua_pop(L, 1);
  if (b->oom) { sb_free(b); werror(L, "%s: out of memory", fname); }
}

/* In the pooled state, protected: load the function, copy the arguments
 * in, call it; its results are left on the stack. */
static int work_protected(lua_State *S) {
  workreq *w = lua_touserdata(S, 1);
  lua_settop(S, 0);
  if (luaL_loadbuffer(S, w->code.p, w->code.len, w->name) != 0) return lua_error(S);
  /* globals it sets go to a table of its own, reading through to _G */
  lua_newtable(S);
  lua_createtable(S, 0, 1);
  lua_pushvalue(S, LUA_GLOBALSINDEX);
  lua_setfield(S, -2, "__index");
  lua_setmetatable(S, -2);
  lua_setfenv(S, -2);
  int n = deser_all(S, &w->io);
  if (n < 0) return luaL_error(S, "coru.work: bad arguments");
  lua_call(S, n, LUA_MULTRET);
  return lua_gettop(S);
}

static void work_cb(uv_work_t *req) {
  workreq *w = req->data;
  lua_State *S = state_get();
  sbuf out = {0};
  if (!S) { w->failed = 1; sb_add(&out, "coru.work: cannot create a Lua state", 36); goto done; }
  lua_settop(S, 0);
  lua_pushcfunction(S, work_protected);
  lua_pushlightuserdata(S, w);
  if (lua_pcall(S, 1, LUA_MULTRET, 0) != 0) w->failed = 1;
  if (w->failed) {
    size_t len;
    const char *msg = lua_tolstring(S, -1, &len);
    if (!msg) msg = "(error object is not a string)", len = strlen(msg);
    sb_add(&out, msg, len);
  } else {
    char errbuf[200];
    int top = lua_gettop(S);
    for (int i = 1; i <= top; i++) {
      const char *e = ser(S, i, &out, 0, errbuf, sizeof errbuf);
      if (e) {
        sb_free(&out);
        char msg[300];
        snprintf(msg, sizeof msg, "coru.work: result #%d: %s", i, e);
        sb_add(&out, msg, strlen(msg));
        w->failed = 1;
        break;
      }
    }
  }
  state_put(S);
done:
  sb_free(&w->io);
  w->io = out;
  if (out.oom) { w->failed = 1; sb_free(&w->io); }
}

static void work_free(workreq *w) {
  sb_free(&w->code);
  sb_free(&w->io);
  if (coru_R) coru_unref(coru_R->L, &w->after_ref);
  free(w);
}

static void after_work_cb(uv_work_t *req, int status) {
  workreq *w = req->data;
  lua_State *L = coru_R->L;
  if (w->after_ref != LUA_NOREF) {           /* queue_work */
    if (status == 0 && !coru_R->shutting_down) {
      if (w->failed) {
        lua_pushlstring(L, w->io.p ? w->io.p : "out of memory", w->io.p ? w->io.len : 13);
        coru_report(L, NULL);
      } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, w->after_ref);
        int n = deser_all(L, &w->io);
        if (n < 0) n = 0;
        coru_callback(n);
      }
    }
    work_free(w);
    return;
  }
  lua_State *S = coru_cont_begin(&w->cont);
  if (S) {
    if (status < 0) {
      coru_cont_fail(&w->cont, status, NULL);
    } else if (w->failed) {
      const char *msg = w->io.p ? w->io.p : "coru.work: out of memory";
      size_t len = w->io.p ? w->io.len : strlen(msg);
      if (w->cont.mode == CORU_MODE_TASK) {
        lua_pushlightuserdata(S, coru_ERR);       /* raised in the task */
        lua_pushlstring(S, msg, len);
        coru_cont_ok(&w->cont, 2);
      } else {
        lua_pop(S, 1);
        lua_pushlstring(S, msg, len);
        coru_callback(1);
      }
    } else {
      int n = deser_all(S, &w->io);
      coru_cont_ok(&w->cont, n < 0 ? 0 : n);
    }
  }
  work_free(w);
}

static void work_cancel(coru_cont *c) {
  workreq *w = container_of(c, workreq, cont);
  uv_cancel((uv_req_t *)&w->req);
}

static workreq *work_new(lua_State *L) {
  workreq *w = calloc(1, sizeof *w);
  if (!w) werror(L, "out of memory");
  w->req.data = w;
  w->after_ref = LUA_NOREF;
  w->cont.cb_ref = LUA_NOREF;
  return w;
}

/* coru.work(fn, ... [, cb]) -> fn's results (task), or cb(err, results...). */
static int l_work(lua_State *L) {
  int top = lua_gettop(L);
  int cb = top >= 2 && coru_is_callable(L, top) ? top : 0;
  coru_enter(L, cb, "coru.work", 0);
  sbuf code = {0}, io = {0};
  dump_fn(L, 1, &code, "coru.work");
  char errbuf[200];
  for (int i = 2; i <= (cb ? top - 1 : top); i++) {
    const char *e = ser(L, i, &io, 0, errbuf, sizeof errbuf);
    if (e) { sb_free(&code); sb_free(&io); return werror(L, "coru.work: argument #%d: %s", i, e); }
  }
  if (io.oom) { sb_free(&code); sb_free(&io); return werror(L, "coru.work: out of memory"); }
  workreq *w = work_new(L);
  w->code = code;
  w->io = io;
  lua_Debug ar;
  lua_pushvalue(L, 1);
  if (lua_getinfo(L, ">S", &ar)) snprintf(w->name, sizeof w->name, "=%s", ar.short_src);
  else strcpy(w->name, "=coru.work");
  coru_cont_init(L, &w->cont, cb, work_cancel);
  int r = uv_queue_work(coru_R->loop, &w->req, work_cb, after_work_cb);
  if (r < 0) { coru_cont_clear(L, &w->cont); work_free(w); return coru_fail(L, r, NULL); }
  return coru_cont_yield(L, &w->cont, 0);
}

/* luv's shape: new_work(fn, after_work) -> ctx; queue_work(ctx, ...). */
#define WORKCTX_MT "coru.work_ctx"

typedef struct { sbuf code; int after_ref; char name[64]; } workctx;

static int l_new_work(lua_State *L) {
  sbuf code = {0};
  dump_fn(L, 1, &code, "new_work");
  if (!coru_is_callable(L, 2)) { sb_free(&code); luaL_typerror(L, 2, "function"); }
  workctx *c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->code = code;
  lua_pushvalue(L, 2);
  c->after_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  strcpy(c->name, "=coru.work");
  luaL_getmetatable(L, WORKCTX_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_queue_work(lua_State *L) {
  workctx *c = coru_check_udata(L, 1, WORKCTX_MT, "queue_work");
  if (c->after_ref == LUA_NOREF) return luaL_error(L, "queue_work: the work context is freed");
  sbuf io = {0};
  ser_args(L, 2, lua_gettop(L), &io, "queue_work");
  workreq *w = work_new(L);
  w->io = io;
  sb_add(&w->code, c->code.p, c->code.len);
  memcpy(w->name, c->name, sizeof w->name);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->after_ref);
  w->after_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int r = uv_queue_work(coru_R->loop, &w->req, work_cb, after_work_cb);
  if (r < 0) { work_free(w); return coru_fail(L, r, NULL); }
  lua_pushboolean(L, 1);
  return 1;
}

static int workctx_gc(lua_State *L) {
  workctx *c = coru_test_udata(L, 1, WORKCTX_MT);
  if (!c) return 0;
  sb_free(&c->code);
  if (coru_R) coru_unref(L, &c->after_ref);
  return 0;
}

/* ------------------------------------------------------------ async */

struct casync {
  coru_handle base;
  uv_async_t a;
  int cb_ref;
  uv_mutex_t mu;
  sbuf pending;      /* the values of the last send (latest wins, as luv) */
};

static void async_cb(uv_async_t *h) {
  casync *a = h->data;
  lua_State *L = coru_R->L;
  uv_mutex_lock(&a->mu);
  sbuf vals = a->pending;
  memset(&a->pending, 0, sizeof a->pending);
  uv_mutex_unlock(&a->mu);
  if (a->cb_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->cb_ref);
    int n = deser_all(L, &vals);
    coru_callback(n < 0 ? 0 : n);
  }
  sb_free(&vals);
}

/* The async handles other states may send to (a reference crossed states
 * as a light userdata): a send from another thread checks its reference
 * here, under the lock, so a closed handle or a stray pointer is an error,
 * never a write to freed memory. */
static uv_mutex_t open_mu;
static casync **open_asyncs;
static size_t n_open, cap_open;

static void open_add(casync *a) {
  uv_mutex_lock(&open_mu);
  if (n_open == cap_open) {
    size_t cap = cap_open ? cap_open * 2 : 16;
    casync **p = realloc(open_asyncs, cap * sizeof *p);
    if (p) { open_asyncs = p; cap_open = cap; }
  }
  if (n_open < cap_open) open_asyncs[n_open++] = a;
  uv_mutex_unlock(&open_mu);
}

static void open_remove(casync *a) {
  uv_mutex_lock(&open_mu);
  for (size_t i = 0; i < n_open; i++)
    if (open_asyncs[i] == a) { open_asyncs[i] = open_asyncs[--n_open]; break; }
  uv_mutex_unlock(&open_mu);
}

static void async_on_close(coru_handle *h) {
  casync *a = (casync *)h;
  open_remove(a);
  coru_unref(coru_R->L, &a->cb_ref);
}

static void async_on_free(coru_handle *h) {
  casync *a = (casync *)h;
  sb_free(&a->pending);
  uv_mutex_destroy(&a->mu);
}

/* new_async(cb) -> handle; cb(values of the last send) runs on the loop. */
static int l_new_async(lua_State *L) {
  int ref = coru_ref_cb(L, 1);
  casync *a = coru_handle_alloc(L, &async_type, sizeof *a, offsetof(casync, a));
  a->cb_ref = ref;
  uv_mutex_init(&a->mu);
  int r = uv_async_init(coru_R->loop, &a->a, async_cb);
  if (r < 0) {
    uv_mutex_destroy(&a->mu);
    coru_handle_init_failed(L, &a->base);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return coru_fail(L, r, NULL);
  }
  coru_handle_keep(L, &a->base);   /* an async is active until closed */
  open_add(a);
  return 1;
}

/* async:send(...): wake the loop (from any thread, for C; from Lua here). */
static int l_async_send(lua_State *L) {
  casync *a = (casync *)coru_check_handle(L, 1, &async_type);
  sbuf vals = {0};
  ser_args(L, 2, lua_gettop(L), &vals, "async_send");
  uv_mutex_lock(&a->mu);
  sb_free(&a->pending);
  a->pending = vals;
  uv_mutex_unlock(&a->mu);
  int r = uv_async_send(&a->a);
  return coru_result(L, r, NULL);
}

/* For luv's threads (thread.c): values first..last of S (any Lua state,
 * any thread) to the async handle behind ref (the light userdata an async
 * handle becomes when it crosses states). The handle must still be open:
 * as in luv, closing it while other threads send is the program's error. */
int coru_async_send_ref(void *ref, lua_State *S, int first, int last) {
  sbuf vals = {0};
  ser_args(S, first, last, &vals, "async_send");
  int r = UV_EBADF;                  /* closed, or never an async handle */
  uv_mutex_lock(&open_mu);
  for (size_t i = 0; i < n_open; i++) {
    if (open_asyncs[i] != ref) continue;
    casync *a = ref;
    uv_mutex_lock(&a->mu);
    sb_free(&a->pending);
    a->pending = vals;
    vals.p = NULL;
    uv_mutex_unlock(&a->mu);
    r = uv_async_send(&a->a);
    break;
  }
  uv_mutex_unlock(&open_mu);
  sb_free(&vals);
  return r;
}

/* For thread.c: pack values first..last (raises naming fname), unpack. */
void coru_xfer_pack(lua_State *L, int first, int last, char **out, size_t *len, const char *fname) {
  sbuf b = {0};
  ser_args(L, first, last, &b, fname);
  *out = b.p;
  *len = b.len;
}

int coru_xfer_unpack(lua_State *L, const char *p, size_t len) {
  sbuf b = {(char *)p, len, len, 0};
  return deser_all(L, &b);
}

/* async:address(): the uv_async_t's address as a number, for code on
 * another thread (C, or LuaJIT FFI in a coru.work function) to call
 * uv_async_send on. Valid until the handle is closed. */
static int l_async_address(lua_State *L) {
  casync *a = (casync *)coru_check_handle(L, 1, &async_type);
  lua_pushnumber(L, (lua_Number)(uintptr_t)&a->a);
  return 1;
}

static const coru_Reg async_methods[] = {
  {"send", l_async_send, 0}, {"address", l_async_address, 0}, {NULL, NULL, 0}};
static coru_htype async_type = {"coru.async", CORU_K_ASYNC, CORU_K_ASYNC, async_methods,
                                async_on_close, async_on_free, NULL};

/* ------------------------------------------------------------ poll */

typedef struct {
  coru_handle base;
  uv_poll_t p;
  int cb_ref;
} cpoll;

static coru_htype poll_type;

/* Closing a started poll tells its callback "closed" (as streams, UDP and
 * watchers do): coru.poll.wait returns instead of waiting for ever. */
static void poll_on_close(coru_handle *h) {
  cpoll *p = (cpoll *)h;
  if (p->cb_ref == LUA_NOREF) return;
  lua_State *L = coru_R->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->cb_ref);
  coru_unref(L, &p->cb_ref);
  if (coru_R->shutting_down || !coru_R->loop) { lua_pop(L, 1); return; }
  lua_pushliteral(L, "closed");
  coru_callback(1);
}

static int new_poll(lua_State *L, int socket) {
  int fd = (int)coru_check_int(L, 1, 0, CORU_INT_MAX, "new_poll");
  if (coru_fd_of_loop(coru_R->loop, fd) || coru_fd_is_closing(fd))   /* check.h; libuv checks the rest */
    return coru_fail(L, UV_EBUSY, "the descriptor belongs to the event loop or is being closed");
  cpoll *p = coru_handle_alloc(L, &poll_type, sizeof *p, offsetof(cpoll, p));
  p->cb_ref = LUA_NOREF;
  int r = socket ? uv_poll_init_socket(coru_R->loop, &p->p, fd) : uv_poll_init(coru_R->loop, &p->p, fd);
  if (r < 0) { coru_handle_init_failed(L, &p->base); return coru_fail(L, r, NULL); }
  return 1;
}

static int l_new_poll(lua_State *L) { return new_poll(L, 0); }
static int l_new_socket_poll(lua_State *L) { return new_poll(L, 1); }

static void push_events(lua_State *L, int ev) {
  char s[5];
  int n = 0;
  if (ev & UV_READABLE) s[n++] = 'r';
  if (ev & UV_WRITABLE) s[n++] = 'w';
  if (ev & UV_DISCONNECT) s[n++] = 'd';
  if (ev & UV_PRIORITIZED) s[n++] = 'p';
  lua_pushlstring(L, s, (size_t)n);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  cpoll *p = h->data;
  lua_State *L = coru_R->L;
  if (p->cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->cb_ref);
  if (status < 0) { coru_push_errmsg(L, status, NULL); coru_callback(1); return; }
  lua_pushnil(L);
  push_events(L, events);
  coru_callback(2);
}

/* poll_start(h [, events = "r"], cb(err, events)): events has r, w, d, p. */
static int l_poll_start(lua_State *L) {
  cpoll *p = (cpoll *)coru_check_handle(L, 1, &poll_type);
  int cbidx = 3, ev = 0;
  if (coru_is_callable(L, 2)) cbidx = 2, ev = UV_READABLE;
  else if (lua_isnoneornil(L, 2)) ev = UV_READABLE;
  else {
    for (const char *s = luaL_checkstring(L, 2); *s; s++) {
      switch (*s) {
      case 'r': ev |= UV_READABLE; break;
      case 'w': ev |= UV_WRITABLE; break;
      case 'd': ev |= UV_DISCONNECT; break;
      case 'p': ev |= UV_PRIORITIZED; break;
      default: return werror(L, "bad argument #2 to 'poll_start' (invalid events '%s': use r, w, d, p)", lua_tostring(L, 2));
      }
    }
  }
  int ref = coru_ref_cb(L, cbidx);
  int r = uv_poll_start(&p->p, ev, poll_cb);
  if (r < 0) { luaL_unref(L, LUA_REGISTRYINDEX, ref); return coru_fail(L, r, NULL); }
  coru_handle_set_cb(L, &p->base, &p->cb_ref, ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_poll_stop(lua_State *L) {
  cpoll *p = (cpoll *)coru_check_handle(L, 1, &poll_type);
  uv_poll_stop(&p->p);
  coru_handle_clear_cb(L, &p->base, &p->cb_ref);
  lua_pushinteger(L, 0);
  return 1;
}

static const coru_Reg poll_methods[] = {{"start", l_poll_start, 0}, {"stop", l_poll_stop, 0}, {NULL, NULL, 0}};
static coru_htype poll_type = {"coru.poll", CORU_K_POLL, CORU_K_POLL, poll_methods, poll_on_close, NULL, NULL};

/* ------------------------------------------------------------ open */

static const coru_Reg work_funcs[] = {
  {"work", l_work, CORU_YIELDS},
  {"new_work", l_new_work, 0},
  {"queue_work", l_queue_work, 0},
  {"new_async", l_new_async, 0},
  {"async_send", l_async_send, 0},
  {"new_poll", l_new_poll, 0},
  {"new_socket_poll", l_new_socket_poll, 0},
  {"poll_start", l_poll_start, 0},
  {"poll_stop", l_poll_stop, 0},
  {NULL, NULL, 0}
};

CORU_FAMILY(work) {
  static int inited;
  if (!inited) { uv_mutex_init(&pool_mu); uv_mutex_init(&open_mu); inited = 1; }
  luaL_newmetatable(L, WORKCTX_MT);
  lua_pushcfunction(L, workctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  lua_pushcfunction(L, l_queue_work);
  lua_setfield(L, -2, "queue");
  lua_setfield(L, -2, "__index");
  coru_protect_mt(L);
  lua_pop(L, 1);
  coru_register_htype(L, &async_type);
  coru_register_htype(L, &poll_type);
  coru_setfuncs(L, work_funcs);
}
