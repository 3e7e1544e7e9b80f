/*
 * stream_write.c - the writer of every stream: write (all or nothing,
 * synchronous when the transport takes everything at once), try_write,
 * shutdown, and their completions (called by the transport). The reader is
 * in stream.c; stream.h describes the transport interface.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "stream.h"
static void wr_free(coru_write_req *w) {
  if (w->bufs != w->small) free(w->bufs);
  free(w);
}

static void wr_timeout(void *data) {
  coru_write_req *w = data;
  w->dl = NULL;
  lua_State *S = coru_cont_begin(&w->cont);
  if (S) coru_cont_fail_str(&w->cont, "timeout", NULL);
}

static void wr_cancel(coru_cont *c) {
  coru_write_req *w = container_of(c, coru_write_req, cont);
  if (w->dl) { coru_deadline_stop(w->dl); w->dl = NULL; }
}

void coru_stream_write_done(coru_stream *s, coru_write_req *w, int status) {
  lua_State *L = coru_R->L;
  if (w->dl) { coru_deadline_stop(w->dl); w->dl = NULL; }
  coru_unref(L, &w->data_ref);
  coru_handle_release(L, &s->base);   /* before the wakeup */
  coru_cont_complete(&w->cont, status, s->base.closing, NULL);
  wr_free(w);
}

/* An array of strings may hold numbers too (as luv allows): they are
 * written as Lua prints them. If the array at idx holds one, it is replaced
 * at idx by a copy holding strings (anchored on the stack from then on). */
void coru_coerce_buffers(lua_State *L, int idx, unsigned n) {
  unsigned i;
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    int t = lua_type(L, -1);
    lua_pop(L, 1);
    if (t == LUA_TNUMBER) break;
  }
  if (i > n) return;
  lua_createtable(L, (int)n, 0);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    if (lua_type(L, -1) == LUA_TNUMBER) lua_tostring(L, -1);   /* converted in place */
    lua_rawseti(L, -2, (int)i);
  }
  lua_replace(L, idx);
}

/* Collect the data at idx (string or array of strings) into bufs. Returns
 * the count and the total size. */
static unsigned gather(lua_State *L, int idx, uv_buf_t *small, unsigned nsmall, uv_buf_t **out, size_t *total) {
  *total = 0;
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    small[0].base = (char *)lua_tolstring(L, idx, &n);
    small[0].len = n;
    *total = n;
    *out = small;
    return 1;
  }
  if (!lua_istable(L, idx)) luaL_typerror(L, idx, "string or array of strings");
  unsigned n = (unsigned)lua_objlen(L, idx);
  coru_coerce_buffers(L, idx, n);
  uv_buf_t *b = n <= nsmall ? small : malloc(n * sizeof *b);
  if (!b) luaL_error(L, "out of memory");
  for (unsigned i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      if (b != small) free(b);
      luaL_argerror(L, idx, "array of strings expected");
    }
    size_t len;
    const char *p = lua_tolstring(L, -1, &len);
    lua_pop(L, 1);   /* still anchored by the table */
    b[i].base = (char *)p;
    b[i].len = len;
    *total += len;
  }
  *out = b;
  return n;
}

/* Skip k bytes from the front of bufs. */
static unsigned skip_bufs(uv_buf_t **bufs, unsigned n, size_t k) {
  uv_buf_t *b = *bufs;
  while (n && k >= b->len) { k -= b->len; b++; n--; }
  if (n && k) { b->base += k; b->len -= k; }
  *bufs = b;
  return n;
}

/* print/io.write output still in C's buffer goes out before ours: the two
 * keep their order on a pipe or a file. */
static void flush_stdio(coru_stream *s) {
  if (s->stdio_out) fflush(s->stdio_out == 1 ? stdout : stderr);
}

static int l_write(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  if (lua_type(L, 2) != LUA_TSTRING && !lua_istable(L, 2)) luaL_typerror(L, 2, "string or array of strings");
  /* refused before anything is sent: a write is all or nothing */
  int cbidx = coru_enter(L, 3, "stream:write", 0) == CORU_MODE_CB ? 3 : 0;
  flush_stdio(s);
  uv_buf_t small[4], *bufs;
  size_t total;
  unsigned n = gather(L, 2, small, 4, &bufs, &total);
  uv_buf_t *owned = bufs != small ? bufs : NULL;
  if (n == 0) {           /* an empty array: one empty buffer (libuv wants one) */
    small[0].base = (char *)"";
    small[0].len = 0;
    n = 1;
  }
  if (s->shut) {
    free(owned);
    return coru_fail(L, UV_EPIPE, "the stream was shut down");
  }
  uv_buf_t *rest = bufs;
  unsigned nrest = n;
  if (!cbidx && s->tp->try_write) {
    int r = total ? s->tp->try_write(s, bufs, n) : 0;
    if (r >= 0 && (size_t)r == total) { free(owned); lua_pushboolean(L, 1); return 1; }
    if (r < 0 && r != UV_EAGAIN) { free(owned); return coru_fail(L, r, NULL); }
    if (r > 0) nrest = skip_bufs(&rest, n, (size_t)r);
  }
  coru_write_req *w = malloc(sizeof *w);
  if (!w) { free(owned); return luaL_error(L, "out of memory"); }
  w->s = s;
  w->dl = NULL;
  w->bufs = w->small;
  if (nrest > 2) {
    w->bufs = malloc(nrest * sizeof *w->bufs);
    if (!w->bufs) { free(w); free(owned); return luaL_error(L, "out of memory"); }
  }
  memcpy(w->bufs, rest, nrest * sizeof *rest);
  free(owned);
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
  } else {
    /* anchor the strings themselves: the caller may change its table */
    lua_createtable(L, (int)n, 0);
    for (unsigned i = 1; i <= n; i++) { lua_rawgeti(L, 2, (int)i); lua_rawseti(L, -2, (int)i); }
  }
  w->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int mode = coru_cont_init(L, &w->cont, cbidx, wr_cancel);
  int r = s->tp->write(s, w, w->bufs, nrest);
  if (r < 0) {
    r = coru_cont_abort(L, &w->cont, &w->data_ref, r);
    wr_free(w);
    return r;
  }
  if (mode == CORU_MODE_TASK && s->to_send) w->dl = coru_deadline_start(s->to_send, wr_timeout, w);
  return coru_handle_yield(L, &s->base, &w->cont);
}

static int l_try_write(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  flush_stdio(s);
  uv_buf_t small[4], *bufs;
  size_t total;
  unsigned n = gather(L, 2, small, 4, &bufs, &total);
  int r = s->shut ? UV_EPIPE : !total ? 0 : s->tp->try_write ? s->tp->try_write(s, bufs, n) : UV_ENOSYS;
  if (bufs != small) free(bufs);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, r);
  return 1;
}

void coru_stream_shutdown_done(coru_stream *s, coru_shutdown_req *q, int status) {
  coru_handle_release(coru_R->L, &s->base);
  coru_cont_complete(&q->cont, status, s->base.closing, NULL);
  free(q);
}

static int l_shutdown(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  int cbidx = coru_enter(L, 2, "stream:shutdown", 0) == CORU_MODE_CB ? 2 : 0;
  if (s->shut) return coru_fail(L, UV_ENOTCONN, "already shut down");
  coru_shutdown_req *q = malloc(sizeof *q);
  if (!q) return luaL_error(L, "out of memory");
  q->s = s;
  coru_cont_init(L, &q->cont, cbidx, NULL);
  int r = s->tp->shutdown(s, q);
  if (r < 0) { coru_cont_clear(L, &q->cont); free(q); return coru_fail(L, r, NULL); }
  s->shut = 1;
  return coru_handle_yield(L, &s->base, &q->cont);
}

/* The writer's part of every stream type's methods; luv's flat names too. */
const coru_Fn coru_stream_write_fns[] = {
  {"write", "write", l_write, CORU_YIELDS | CORU_ARITY(3)},
  {"shutdown", "shutdown", l_shutdown, CORU_YIELDS | CORU_ARITY(2)},
  {"try_write", "try_write", l_try_write, 0}, CORU_FNS_END
};
