/*
 * stream.c - the buffered reader and writer of every stream, the luv
 * stream methods (read_start, write, shutdown, listen, accept, ...) and the
 * transport of uv streams. See stream.h for the transport interface.
 *
 * Reading: bytes land in one shared scratch buffer (alloc_cb); a waiting
 * reader is served straight from it and only what it leaves is copied into
 * the stream's own buffer, which is freed when a reader goes to sleep on an
 * empty one (an idle connection holds no buffer). A read whose answer is
 * already buffered returns without suspending. Reading stays on between
 * reads (no epoll_ctl per request) until more than HIGH_WATER bytes wait
 * with nobody reading.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include "stream.h"

#define HIGH_WATER (64 * 1024)
#define DEFAULT_MAX_LINE (1024 * 1024)
#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

coru_htype coru_stream_type = {"coru.stream", 0, CORU_K_STREAM, NULL, NULL, NULL, NULL};

void coru_stream_init(coru_stream *s, const coru_transport *tp) {
  s->tp = tp;
  s->max_line = DEFAULT_MAX_LINE;
  s->read_cb_ref = LUA_NOREF;
  s->listen_ref = LUA_NOREF;
  s->rd.cb_ref = LUA_NOREF;
}

coru_stream *coru_check_stream(lua_State *L, int idx) {
  return (coru_stream *)coru_check_handle(L, idx, &coru_stream_type);
}

/* ------------------------------------------------------------- the buffer */

static void buf_append(coru_stream *s, const char *p, size_t n) {
  if (s->pos == s->len) s->pos = s->len = 0;
  if ((size_t)s->len + n > s->cap) {
    if (s->pos > 0) {
      memmove(s->buf, s->buf + s->pos, s->len - s->pos);
      s->len -= s->pos;
      s->pos = 0;
    }
    if ((size_t)s->len + n > s->cap) {
      size_t cap = s->cap ? s->cap : 256;
      while (cap < (size_t)s->len + n) cap *= 2;
      if (cap > 0xffffffffu) abort();
      char *nb = realloc(s->buf, cap);
      if (!nb) abort();
      s->buf = nb;
      s->cap = (uint32_t)cap;
    }
  }
  memcpy(s->buf + s->len, p, n);
  s->len += (uint32_t)n;
}

static void buf_consume(coru_stream *s, size_t n) {
  s->pos += (uint32_t)n;
  s->scanned = 0;
  if (s->pos >= s->len) {
    s->pos = s->len = 0;
    if (s->cap > HIGH_WATER * 4) { free(s->buf); s->buf = NULL; s->cap = 0; }
  }
}

static void buf_release(coru_stream *s) {
  free(s->buf);
  s->buf = NULL;
  s->pos = s->len = s->cap = s->scanned = 0;
}

#define BUFFERED(s) ((size_t)((s)->len - (s)->pos))

/* ------------------------------------------------------------- scanning */

enum { SC_NEED, SC_OK, SC_LONG };

/* Does p[0, n) answer the reader? On SC_OK: the value is p[0, *take) and
 * *skip bytes are consumed. *scanned: bytes known to hold no answer. */
static int scan(coru_stream *s, const char *p, size_t n, size_t *take, size_t *skip, size_t *scanned) {
  switch (s->rmode) {
  case CORU_RD_CHUNK:
  case CORU_RD_LUV:
    if (!n) return SC_NEED;
    *take = *skip = n;
    return SC_OK;
  case CORU_RD_BYTES:
    if (n < s->want) return SC_NEED;
    *take = *skip = s->want;
    return SC_OK;
  case CORU_RD_LINE: {
    size_t from = *scanned;
    const char *nl = from < n ? memchr(p + from, '\n', n - from) : NULL;
    if (!nl) {
      *scanned = n;
      *skip = 0;
      return n > s->max_line ? SC_LONG : SC_NEED;
    }
    size_t i = (size_t)(nl - p);
    *skip = i + 1;
    *take = (i > 0 && p[i - 1] == '\r') ? i - 1 : i;
    return *take > s->max_line ? SC_LONG : SC_OK;
  }
  case CORU_RD_UNTIL: {
    size_t from = *scanned, d = s->dlen;
    const char *hit = n - from >= d ? memmem(p + from, n - from, s->delim, d) : NULL;
    if (!hit) {
      *scanned = n >= d ? n - d + 1 : 0;
      *skip = 0;
      return n > s->max_line ? SC_LONG : SC_NEED;
    }
    *take = (size_t)(hit - p);
    *skip = *take + d;
    return *take > s->max_line ? SC_LONG : SC_OK;
  }
  default: /* CORU_RD_ALL */
    return SC_NEED;
  }
}

/* ------------------------------------------------------------ the reader */

static void rd_timeout(void *data);
static void rd_settle(coru_stream *s);

static void rd_clear(coru_stream *s) {
  s->rmode = CORU_RD_NONE;
  if (s->rdl) { coru_deadline_stop(s->rdl); s->rdl = NULL; }
  if (s->rkeep) { s->rkeep = 0; coru_handle_release(coru_R->L, &s->base); }
}

static void rd_cancel(coru_cont *c) {
  rd_clear(container_of(c, coru_stream, rd));
}

/* Wake the waiting reader with a string. */
static void rd_ok(coru_stream *s, const char *p, size_t n) {
  rd_clear(s);
  lua_State *S = coru_cont_begin(&s->rd);
  if (!S) return;
  lua_pushlstring(S, p, n);
  coru_cont_ok(&s->rd, 1);
}

/* Wake the waiting reader with a failure: msg, then name (libuv errors) or
 * the partial data (eof, timeout). Callback mode gets cb(msg, partial). */
static void rd_fail(coru_stream *s, int uverr, const char *msg, int with_partial) {
  rd_clear(s);
  lua_State *S = coru_cont_begin(&s->rd);
  if (!S) return;
  int cb = s->rd.mode == CORU_MODE_CB;
  if (cb) lua_pop(S, 1); else lua_pushnil(S);
  if (uverr) coru_push_errmsg(S, uverr, NULL); else lua_pushstring(S, msg);
  int n = cb ? 1 : 2;
  if (uverr && !cb) { lua_pushstring(S, uv_err_name(uverr)); n++; }
  else if (with_partial) { lua_pushlstring(S, s->buf + s->pos, BUFFERED(s)); n++; }
  if (cb) coru_callback(n);
  else coru_cont_ok(&s->rd, n);
}

/* The luv read_start callback: cb(err, data). */
static void luv_deliver(coru_stream *s, const char *p, size_t n, int err) {
  lua_State *L = coru_R->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->read_cb_ref);
  if (err) { coru_push_errmsg(L, err, NULL); coru_callback(1); return; }
  lua_pushnil(L);
  if (p) lua_pushlstring(L, p, n); else lua_pushnil(L);
  coru_callback(2);
}

/* Over the limit: drop the line. If its end is buffered (skip > 0), drop
 * up to it; else drop everything and discard what comes until its end, so
 * the next read starts at the next line. */
static void drop_long(coru_stream *s, size_t skip) {
  if (skip) { buf_consume(s, skip); return; }
  buf_release(s);
  s->discard = s->rmode;
}

static void lines_too_long(coru_stream *s, size_t skip) {
  drop_long(s, skip);
  rd_fail(s, 0, "line too long", 0);
}

/* What the reader gets when no more data can come (eof or error). */
static void rd_end(coru_stream *s) {
  if (s->rmode == CORU_RD_ALL && !s->rerr) {
    size_t n = BUFFERED(s);
    /* the value must be built before the buffer goes */
    rd_clear(s);
    lua_State *S = coru_cont_begin(&s->rd);
    if (!S) return;
    lua_pushlstring(S, s->buf + s->pos, n);
    buf_consume(s, n);
    coru_cont_ok(&s->rd, 1);
    return;
  }
  if (s->rerr) rd_fail(s, s->rerr, NULL, 0);
  else rd_fail(s, 0, "eof", s->rmode != CORU_RD_CHUNK);
}

/* Serve the waiting reader from the buffer if it can be. Returns 1 if it
 * was served (or failed). */
static int rd_from_buffer(coru_stream *s) {
  size_t take = 0, skip = 0, scanned = s->scanned;
  int r = scan(s, s->buf + s->pos, BUFFERED(s), &take, &skip, &scanned);
  if (r == SC_NEED) {
    s->scanned = (uint32_t)scanned;
    if (s->eof || s->rerr) { rd_end(s); return 1; }
    return 0;
  }
  if (r == SC_LONG) { lines_too_long(s, skip); return 1; }
  /* build the string before consuming: the wakeup may run the task */
  if (s->rmode == CORU_RD_LUV) {
    lua_State *L = coru_R->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->read_cb_ref);
    lua_pushnil(L);
    lua_pushlstring(L, s->buf + s->pos, take);
    buf_consume(s, skip);
    coru_callback(2);
    return 1;
  }
  rd_clear(s);
  lua_State *S = coru_cont_begin(&s->rd);
  if (S) lua_pushlstring(S, s->buf + s->pos, take);
  buf_consume(s, skip);
  if (S) coru_cont_ok(&s->rd, 1);
  return 1;
}

static void rd_stop_reading(coru_stream *s) {
  if (s->reading) { s->reading = 0; s->tp->read_stop(s); }
}

void coru_stream_feed(coru_stream *s, const char *p, size_t n) {
  if (!n || s->base.closing) return;
  if (s->discard) {          /* the rest of an overlong line */
    const char *d = s->discard == CORU_RD_UNTIL ? s->delim : "\n";
    size_t dl = s->discard == CORU_RD_UNTIL ? s->dlen : 1;
    const char *hit = memmem(p, n, d, dl);
    if (!hit) return;
    s->discard = 0;
    n -= (size_t)(hit - p) + dl;
    p = hit + dl;
    if (!n) return;
  }
  if (s->rmode == CORU_RD_NONE) {
    buf_append(s, p, n);
    if (BUFFERED(s) > HIGH_WATER) rd_stop_reading(s);
    return;
  }
  if (s->rmode == CORU_RD_LUV) { luv_deliver(s, p, n, 0); return; }
  if (BUFFERED(s)) {
    buf_append(s, p, n);
    rd_from_buffer(s);
    return;
  }
  /* nothing buffered: serve from p, keep only the rest */
  size_t take = 0, skip = 0, scanned = 0;
  int r = scan(s, p, n, &take, &skip, &scanned);
  if (r == SC_NEED) {
    buf_append(s, p, n);
    s->scanned = (uint32_t)scanned;
    return;
  }
  if (r == SC_LONG) {
    if (skip && skip < n) buf_append(s, p + skip, n - skip);
    else if (!skip) s->discard = s->rmode;
    rd_fail(s, 0, "line too long", 0);
    return;
  }
  if (skip < n) buf_append(s, p + skip, n - skip);
  rd_ok(s, p, take);
}

void coru_stream_feed_end(coru_stream *s, int status) {
  s->reading = 0;
  if (status == UV_EOF) s->eof = 1;
  else if (!s->rerr) s->rerr = status;
  if (s->base.closing) return;
  if (s->rmode == CORU_RD_LUV) { luv_deliver(s, NULL, 0, status == UV_EOF ? 0 : status); return; }
  if (s->rmode) rd_from_buffer(s);
}

static int rd_ensure_reading(coru_stream *s) {
  if (s->reading || s->eof || s->rerr) return 0;
  int r = s->tp->read_start(s);
  if (r == 0) s->reading = 1;
  return r;
}

static void rd_timeout(void *data) {
  coru_stream *s = data;
  s->rdl = NULL;
  if (s->rmode && s->rmode != CORU_RD_LUV)
    rd_fail(s, 0, "timeout", s->rmode != CORU_RD_CHUNK);
}

/* Callback mode with an answer ready: settle on the next loop turn, never
 * inside the call that asked. */
static void rd_defer(void *data) {
  coru_stream *s = data;
  s->rdl = NULL;
  if (s->rmode) rd_settle(s);
}

static void rd_settle(coru_stream *s) {
  if (rd_from_buffer(s)) return;
  int r = rd_ensure_reading(s);
  if (r < 0) { rd_fail(s, r, NULL, 0); return; }
  if (s->to_read && !s->rdl) s->rdl = coru_deadline_start(s->to_read, rd_timeout, s);
}

/* Push what a reader gets at once from the buffer (or eof/error). Returns
 * the count, or -1 if it must wait. */
static int rd_now(lua_State *L, coru_stream *s) {
  size_t take = 0, skip = 0, scanned = s->scanned;
  int r = scan(s, s->buf + s->pos, BUFFERED(s), &take, &skip, &scanned);
  if (r == SC_OK) {
    lua_pushlstring(L, s->buf + s->pos, take);
    buf_consume(s, skip);
    return 1;
  }
  if (r == SC_LONG) {
    drop_long(s, skip);
    lua_pushnil(L);
    lua_pushliteral(L, "line too long");
    return 2;
  }
  s->scanned = (uint32_t)scanned;
  if (s->rerr) return coru_fail(L, s->rerr, NULL);
  if (s->eof) {
    size_t n = BUFFERED(s);
    if (s->rmode == CORU_RD_ALL) {
      lua_pushlstring(L, s->buf + s->pos, n);
      buf_consume(s, n);
      return 1;
    }
    lua_pushnil(L);
    lua_pushliteral(L, "eof");
    if (s->rmode == CORU_RD_CHUNK) return 2;
    lua_pushlstring(L, s->buf + s->pos, n);
    return 3;
  }
  return -1;
}

static int rd_op(lua_State *L, coru_stream *s, int mode, int cbidx, const char *fname) {
  int m = coru_enter(L, cbidx, fname, 0);
  if (s->rmode) {
    lua_pushnil(L);
    lua_pushliteral(L, "busy");
    return 2;
  }
  s->rmode = (unsigned char)mode;
  s->scanned = 0;    /* what an earlier read of another kind scanned does not count */
  if (m != CORU_MODE_CB) {
    int n = rd_now(L, s);
    if (n >= 0) { s->rmode = CORU_RD_NONE; return n; }
  }
  coru_cont_init(L, &s->rd, m == CORU_MODE_CB ? cbidx : 0, rd_cancel);
  if (m == CORU_MODE_CB) {
    coru_handle_keep(L, &s->base);
    s->rkeep = 1;
    coru_cont_yield(L, &s->rd, 0);
    s->rdl = coru_deadline_start(0, rd_defer, s);
    return 0;
  }
  int r = rd_ensure_reading(s);
  if (r < 0) {
    s->rmode = CORU_RD_NONE;
    coru_cont_clear(L, &s->rd);
    return coru_fail(L, r, NULL);
  }
  if (!BUFFERED(s) && s->buf) buf_release(s);   /* going idle: hold no buffer */
  if (s->to_read) s->rdl = coru_deadline_start(s->to_read, rd_timeout, s);
  return coru_cont_yield(L, &s->rd, 0);
}

static int cbarg(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (!coru_is_callable(L, idx)) luaL_typerror(L, idx, "function");
  return idx;
}

static int l_read(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  return rd_op(L, s, CORU_RD_CHUNK, cbarg(L, 2), "stream:read");
}

static int l_read_line(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  return rd_op(L, s, CORU_RD_LINE, cbarg(L, 2), "stream:read_line");
}

static int l_read_all(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  return rd_op(L, s, CORU_RD_ALL, cbarg(L, 2), "stream:read_all");
}

static int l_read_bytes(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  lua_Number n = luaL_checknumber(L, 2);
  if (n < 0 || n > 0x7fffffff) luaL_argerror(L, 2, "must be a count >= 0");
  if (s->rmode) { lua_pushnil(L); lua_pushliteral(L, "busy"); return 2; }
  s->want = (size_t)n;
  return rd_op(L, s, CORU_RD_BYTES, cbarg(L, 3), "stream:read_bytes");
}

static int l_read_until(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  size_t dlen;
  const char *d = luaL_checklstring(L, 2, &dlen);
  if (!dlen) luaL_argerror(L, 2, "delimiter must not be empty");
  if (s->rmode) { lua_pushnil(L); lua_pushliteral(L, "busy"); return 2; }
  if (dlen != s->dlen || memcmp(d, s->delim, dlen) != 0) {
    char *nd = realloc(s->delim, dlen);
    if (!nd) return luaL_error(L, "out of memory");
    memcpy(nd, d, dlen);
    s->delim = nd;
    s->dlen = dlen;
    s->scanned = 0;
  }
  return rd_op(L, s, CORU_RD_UNTIL, cbarg(L, 3), "stream:read_until");
}

/* luv: read_start(cb) / read_stop() */
static int l_read_start(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  int ref = coru_ref_cb(L, 2);
  if (s->rmode && s->rmode != CORU_RD_LUV) {
    coru_unref(L, &ref);
    lua_pushnil(L);
    lua_pushliteral(L, "busy");
    return 2;
  }
  if (s->rmode == CORU_RD_LUV) coru_unref(L, &s->read_cb_ref);
  else { coru_handle_keep(L, &s->base); s->rmode = CORU_RD_LUV; }
  s->read_cb_ref = ref;
  if (BUFFERED(s)) {
    rd_from_buffer(s);
    if (s->base.closing || s->rmode != CORU_RD_LUV) { lua_pushinteger(L, 0); return 1; }
  }
  if (s->eof || s->rerr) {
    luv_deliver(s, NULL, 0, s->rerr);
  } else {
    int r = rd_ensure_reading(s);
    if (r < 0) {
      s->rmode = CORU_RD_NONE;
      coru_unref(L, &s->read_cb_ref);
      coru_handle_release(L, &s->base);
      return coru_fail(L, r, NULL);
    }
  }
  lua_pushinteger(L, 0);
  return 1;
}

static int l_read_stop(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  if (s->rmode == CORU_RD_LUV) {
    s->rmode = CORU_RD_NONE;
    coru_unref(L, &s->read_cb_ref);
    coru_handle_release(L, &s->base);
    rd_stop_reading(s);
  }
  lua_pushinteger(L, 0);
  return 1;
}

/* ------------------------------------------------------------ the writer */

static void wr_free(coru_wreq *w) {
  if (w->bufs != w->small) free(w->bufs);
  free(w);
}

static void wr_timeout(void *data) {
  coru_wreq *w = data;
  w->dl = NULL;
  lua_State *S = coru_cont_begin(&w->cont);
  if (S) coru_cont_fail_str(&w->cont, "timeout", NULL);
}

static void wr_cancel(coru_cont *c) {
  coru_wreq *w = container_of(c, coru_wreq, cont);
  if (w->dl) { coru_deadline_stop(w->dl); w->dl = NULL; }
}

void coru_stream_write_done(coru_stream *s, coru_wreq *w, int status) {
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
  coru_wreq *w = malloc(sizeof *w);
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
    coru_unref(L, &w->data_ref);
    coru_cont_clear(L, &w->cont);
    wr_free(w);
    return coru_fail(L, r, NULL);
  }
  coru_handle_keep(L, &s->base);
  if (mode == CORU_MODE_TASK && s->to_send) w->dl = coru_deadline_start(s->to_send, wr_timeout, w);
  lua_pushboolean(L, 1);
  return coru_cont_yield(L, &w->cont, 1);
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

void coru_stream_shutdown_done(coru_stream *s, coru_sreq *q, int status) {
  coru_handle_release(coru_R->L, &s->base);
  coru_cont_complete(&q->cont, status, s->base.closing, NULL);
  free(q);
}

static int l_shutdown(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  int cbidx = coru_enter(L, 2, "stream:shutdown", 0) == CORU_MODE_CB ? 2 : 0;
  if (s->shut) return coru_fail(L, UV_ENOTCONN, "already shut down");
  coru_sreq *q = malloc(sizeof *q);
  if (!q) return luaL_error(L, "out of memory");
  q->s = s;
  coru_cont_init(L, &q->cont, cbidx, NULL);
  int r = s->tp->shutdown(s, q);
  if (r < 0) { coru_cont_clear(L, &q->cont); free(q); return coru_fail(L, r, NULL); }
  s->shut = 1;
  coru_handle_keep(L, &s->base);
  lua_pushboolean(L, 1);
  return coru_cont_yield(L, &q->cont, 1);
}

/* ----------------------------------------------------- options, queries */

static uint32_t opt_ms(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  lua_Number ms = luaL_checknumber(L, idx);
  if (ms < 0) luaL_argerror(L, idx, "must be >= 0 (milliseconds)");
  if (ms > 0 && ms < 1) ms = 1;
  return ms > 4e9 ? 4000000000u : (uint32_t)ms;
}

static int l_settimeouts(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  s->to_connect = opt_ms(L, 2);
  s->to_send = opt_ms(L, 3);
  s->to_read = opt_ms(L, 4);
  return 0;
}

static int l_settimeout(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  s->to_connect = s->to_send = s->to_read = opt_ms(L, 2);
  return 0;
}

static int l_set_max_line(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  lua_Number n = luaL_checknumber(L, 2);
  if (n < 1) luaL_argerror(L, 2, "must be >= 1");
  s->max_line = (size_t)n;
  return 0;
}

static int l_buffered(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)BUFFERED(coru_check_stream(L, 1)));
  return 1;
}

static uv_stream_t *need_uv(lua_State *L, coru_stream *s, const char *fname) {
  if (!s->uvs) luaL_error(L, "%s: not a libuv stream", fname);
  return s->uvs;
}

static int l_is_readable(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  lua_pushboolean(L, s->uvs ? uv_is_readable(s->uvs) : !s->eof);
  return 1;
}

static int l_is_writable(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  lua_pushboolean(L, s->uvs ? uv_is_writable(s->uvs) && !s->shut : !s->shut);
  return 1;
}

static int l_get_write_queue_size(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  size_t n = s->tp->queue_size ? s->tp->queue_size(s) : 0;
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int l_set_blocking(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  int r = uv_stream_set_blocking(need_uv(L, s, "stream:set_blocking"), lua_toboolean(L, 2));
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, 0);
  return 1;
}

/* ------------------------------------------------------- listen, accept */

typedef struct { coru_uvstream u; } server_t;

static void reject_close_cb(uv_handle_t *h) { free(h); }

static void connection_cb(uv_stream_t *server, int status) {
  coru_stream *s = server->data;
  if (s->listen_ref != LUA_NOREF) {
    lua_State *L = coru_R->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->listen_ref);
    if (status < 0) { coru_push_errmsg(L, status, NULL); coru_callback(1); }
    else coru_callback(0);
  }
  /* Not accepted (the callback failed or forgot): libuv would stop
   * listening until it is; drop that connection and go on. */
  if (status >= 0 && !s->base.closing && server->accepted_fd != -1 &&
      (server->type == UV_TCP || server->type == UV_NAMED_PIPE)) {
    union { uv_handle_t h; uv_tcp_t tcp; uv_pipe_t pipe; } *tmp = malloc(sizeof *tmp);
    if (!tmp) return;
    int r = server->type == UV_TCP ? uv_tcp_init(server->loop, &tmp->tcp)
                                   : uv_pipe_init(server->loop, &tmp->pipe, 0);
    if (r == 0) {
      uv_accept(server, (uv_stream_t *)&tmp->h);
      uv_close(&tmp->h, reject_close_cb);
    } else {
      free(tmp);
    }
  }
}

/* listen(backlog, cb): cb(err) per incoming connection. */
static int l_listen(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  uv_stream_t *u = need_uv(L, s, "stream:listen");
  int backlog = (int)luaL_optinteger(L, 2, 1024);
  int ref = coru_ref_cb(L, 3);
  int r = uv_listen(u, backlog, connection_cb);
  if (r < 0) { coru_unref(L, &ref); return coru_fail(L, r, NULL); }
  coru_handle_set_cb(L, &s->base, &s->listen_ref, ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_accept(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  coru_stream *c = coru_check_stream(L, 2);
  int r = uv_accept(need_uv(L, s, "stream:accept"), need_uv(L, c, "stream:accept"));
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, 0);
  return 1;
}

/* ------------------------------------------------------ close, free */


void coru_stream_closing(coru_stream *s) {
  lua_State *L = coru_R->L;
  if (s->rmode == CORU_RD_LUV) {
    /* A luv-style reader is told too, as a waiting task is: whatever reads
     * through it (a TLS stream on top of this one) learns that the stream
     * is gone now, not at its next timeout. Not at shutdown. */
    s->rmode = CORU_RD_NONE;
    int ref = s->read_cb_ref;
    s->read_cb_ref = LUA_NOREF;
    if (ref != LUA_NOREF && !coru_R->shutting_down) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
      luaL_unref(L, LUA_REGISTRYINDEX, ref);
      lua_pushliteral(L, "closed");
      coru_callback(1);
    } else {
      coru_unref(L, &ref);
    }
  } else if (s->rmode) {
    rd_fail(s, 0, "closed", 0);
  }
  if (s->rdl) { coru_deadline_stop(s->rdl); s->rdl = NULL; }
  coru_unref(L, &s->listen_ref);
}

void coru_stream_free(coru_stream *s) {
  buf_release(s);
  free(s->delim);
  s->delim = NULL;
}

void coru_uvstream_on_close(coru_handle *h) { coru_stream_closing((coru_stream *)h); }
void coru_uvstream_on_free(coru_handle *h) { coru_stream_free((coru_stream *)h); }

/* ------------------------------------------------------ the uv transport */

static char scratch[64 * 1024];

static void uvt_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b) {
  (void)h; (void)sug;
  b->base = scratch;
  b->len = sizeof scratch;
}

static void uvt_read_cb(uv_stream_t *u, ssize_t n, const uv_buf_t *b) {
  coru_stream *s = u->data;
  if (n > 0) coru_stream_feed(s, b->base, (size_t)n);
  else if (n < 0) {
    if (n != UV_EOF) uv_read_stop(u);
    coru_stream_feed_end(s, (int)n);
  }
}

static int uvt_read_start(coru_stream *s) { return uv_read_start(s->uvs, uvt_alloc, uvt_read_cb); }
static void uvt_read_stop(coru_stream *s) { uv_read_stop(s->uvs); }
static int uvt_try_write(coru_stream *s, const uv_buf_t *b, unsigned n) { return uv_try_write(s->uvs, b, n); }

static void uvt_write_cb(uv_write_t *req, int status) {
  coru_wreq *w = container_of(req, coru_wreq, req);
  coru_stream_write_done(w->s, w, status);
}

static int uvt_write(coru_stream *s, coru_wreq *w, const uv_buf_t *b, unsigned n) {
  return uv_write(&w->req, s->uvs, b, n, uvt_write_cb);
}

static void uvt_shutdown_cb(uv_shutdown_t *req, int status) {
  coru_sreq *q = container_of(req, coru_sreq, req);
  coru_stream_shutdown_done(q->s, q, status);
}

static int uvt_shutdown(coru_stream *s, coru_sreq *q) {
  return uv_shutdown(&q->req, s->uvs, uvt_shutdown_cb);
}

static size_t uvt_queue_size(coru_stream *s) { return uv_stream_get_write_queue_size(s->uvs); }

const coru_transport coru_uv_transport = {
  uvt_read_start, uvt_read_stop, uvt_try_write, uvt_write, uvt_shutdown, uvt_queue_size
};

coru_uvstream *coru_uvstream_alloc(lua_State *L, const coru_htype *t, size_t size) {
  coru_uvstream *u = coru_handle_alloc(L, t, size, offsetof(coru_uvstream, u));
  coru_stream_init(&u->s, &coru_uv_transport);
  u->s.uvs = &u->u.stream;
  return u;
}

/* ------------------------------------------------------- address helpers */

const char *coru_family_name(int af) {
  switch (af) {
  case AF_INET: return "inet";
  case AF_INET6: return "inet6";
  case AF_UNIX: return "unix";
  case AF_UNSPEC: return "unspec";
  default: return "unknown";
  }
}

int coru_parse_addr(lua_State *L, const char *host, int port, struct sockaddr_storage *ss) {
  (void)L;
  memset(ss, 0, sizeof *ss);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return UV_EINVAL;
}

void coru_push_addr(lua_State *L, const struct sockaddr *sa) {
  char ip[INET6_ADDRSTRLEN] = "";
  int port = 0;
  lua_createtable(L, 0, 3);
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
  } else if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
  }
  lua_pushstring(L, ip);
  lua_setfield(L, -2, "ip");
  lua_pushinteger(L, port);
  lua_setfield(L, -2, "port");
  lua_pushstring(L, coru_family_name(sa->sa_family));
  lua_setfield(L, -2, "family");
}

/* ------------------------------------------------------------------ open */

const coru_Reg coru_stream_methods[] = {
  {"read", l_read, CORU_YIELDS | CORU_ARITY(2)},
  {"read_line", l_read_line, CORU_YIELDS | CORU_ARITY(2)},
  {"read_bytes", l_read_bytes, CORU_YIELDS | CORU_ARITY(3)},
  {"read_until", l_read_until, CORU_YIELDS | CORU_ARITY(3)},
  {"read_all", l_read_all, CORU_YIELDS | CORU_ARITY(2)},
  {"write", l_write, CORU_YIELDS | CORU_ARITY(3)},
  {"shutdown", l_shutdown, CORU_YIELDS | CORU_ARITY(2)},
  {"read_start", l_read_start, 0},
  {"read_stop", l_read_stop, 0},
  {"try_write", l_try_write, 0},
  {"settimeouts", l_settimeouts, 0},
  {"settimeout", l_settimeout, 0},
  {"set_max_line", l_set_max_line, 0},
  {"buffered", l_buffered, 0},
  {"is_readable", l_is_readable, 0},
  {"is_writable", l_is_writable, 0},
  {"get_write_queue_size", l_get_write_queue_size, 0},
  {"set_blocking", l_set_blocking, 0},
  {"listen", l_listen, 0},
  {"accept", l_accept, 0},
  {NULL, NULL, 0}
};

static const coru_Reg stream_funcs[] = {
  {"read_start", l_read_start, 0},
  {"read_stop", l_read_stop, 0},
  {"write", l_write, CORU_YIELDS | CORU_ARITY(3)},
  {"shutdown", l_shutdown, CORU_YIELDS | CORU_ARITY(2)},
  {"try_write", l_try_write, 0},
  {"listen", l_listen, 0},
  {"accept", l_accept, 0},
  {"is_readable", l_is_readable, 0},
  {"is_writable", l_is_writable, 0},
  {"stream_get_write_queue_size", l_get_write_queue_size, 0},
  {"stream_set_blocking", l_set_blocking, 0},
  {NULL, NULL, 0}
};

CORU_FAMILY(stream) {
  /* a peer closing while we write must be an error, never a signal death */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  coru_setfuncs(L, stream_funcs);
}
