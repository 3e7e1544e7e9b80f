/*
 * stream.c - the buffered reader of every stream, its options and the
 * stream method table (read, read_start, ...). The writer is in
 * stream_write.c; the transport of uv streams, listen/accept and the
 * address helpers are in uvstream.c. See stream.h for the transport
 * interface.
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
#include <netinet/in.h>
#include <arpa/inet.h>
#include "stream.h"
#include "check.h"
#include "scan.h"

#define HIGH_WATER (64 * 1024)
#define DEFAULT_MAX_LINE (1024 * 1024)
#define DEFAULT_MAX_ALL (64 * 1024 * 1024)
#define STREAM_MAX ((size_t)1 << 30)   /* no limit or count may exceed 1 GiB: the buffer is 32-bit */

coru_htype coru_stream_type = {"coru.stream", 0, CORU_K_STREAM, NULL, NULL, NULL, NULL};

void coru_stream_init(coru_stream *s, const coru_transport *tp) {
  s->tp = tp;
  s->max_line = DEFAULT_MAX_LINE;
  s->max_all = DEFAULT_MAX_ALL;
  s->read_cb_ref = LUA_NOREF;
  s->listen_ref = LUA_NOREF;
  s->rd.cb_ref = LUA_NOREF;
}

coru_stream *coru_check_stream(lua_State *L, int idx) {
  return (coru_stream *)coru_check_handle(L, idx, &coru_stream_type);
}

/* ------------------------------------------------------------- the buffer */

static void buf_append(coru_stream *s, const char *p, size_t n) {
  if (s->rerr == UV_ENOBUFS) return;
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
      /* Every reader is bounded (STREAM_MAX); past that, or without
       * memory, the stream fails with ENOBUFS: never an abort. */
      char *nb = cap > 0xffffffffu ? NULL : realloc(s->buf, cap);
      if (!nb) {
        s->rerr = UV_ENOBUFS;
        if (s->reading) { s->reading = 0; s->tp->read_stop(s); }
        return;
      }
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

enum { SC_NEED = CORU_SCAN_NEED, SC_OK = CORU_SCAN_OK, SC_LONG = CORU_SCAN_LONG, SC_BIG };

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
  case CORU_RD_LINE:
    return coru_scan_line(p, n, s->max_line, take, skip, scanned);
  case CORU_RD_UNTIL:
    return coru_scan_until(p, n, s->delim, s->dlen, s->max_line, take, skip, scanned);
  default: /* CORU_RD_ALL */
    return n > s->max_all ? SC_BIG : SC_NEED;
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
static const char *discard_find(coru_stream *s, const char *p, size_t n);

/* Start discarding after p[0, n) (which holds no delimiter). */
static void discard_start(coru_stream *s, const char *p, size_t n) {
  s->discard = s->rmode;
  s->dtail = 0;
  discard_find(s, p, n);   /* keeps its last bytes: a delimiter may begin there */
}

static void drop_long(coru_stream *s, size_t skip) {
  if (skip) { buf_consume(s, skip); return; }
  discard_start(s, s->buf + s->pos, BUFFERED(s));
  buf_release(s);
}

/* Discarding: where the delimiter ends in p[0, n), or NULL (all of p is
 * discarded). The last dlen - 1 bytes discarded are kept (at delim + dlen)
 * so that a delimiter split across two reads is found. */
static const char *discard_find(coru_stream *s, const char *p, size_t n) {
  int until = s->discard == CORU_RD_UNTIL;
  return coru_discard_find(until ? s->delim : "\n", until ? s->dlen : 1,
                           until ? s->delim + s->dlen : NULL, &s->dtail, p, n);
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
  if (r == SC_BIG) { rd_fail(s, 0, "too large", 0); return 1; }   /* the data stays buffered */
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
    const char *end = discard_find(s, p, n);
    if (!end) return;
    s->discard = 0;
    n -= (size_t)(end - p);
    p = end;
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
  if (r == SC_BIG) {
    buf_append(s, p, n);
    rd_fail(s, 0, "too large", 0);
    return;
  }
  if (r == SC_LONG) {
    if (skip && skip < n) buf_append(s, p + skip, n - skip);
    else if (!skip) discard_start(s, p, n);
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
  if (r == SC_BIG) {
    lua_pushnil(L);
    lua_pushliteral(L, "too large");
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
  size_t n = (size_t)coru_check_int(L, 2, 0, STREAM_MAX, "read_bytes");
  if (s->rmode) { lua_pushnil(L); lua_pushliteral(L, "busy"); return 2; }
  s->want = n;
  return rd_op(L, s, CORU_RD_BYTES, cbarg(L, 3), "stream:read_bytes");
}

static int l_read_until(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  size_t dlen;
  const char *d = luaL_checklstring(L, 2, &dlen);
  if (!dlen) luaL_argerror(L, 2, "delimiter must not be empty");
  if (dlen > 65536) luaL_argerror(L, 2, "delimiter longer than 65536 bytes");
  if (s->rmode) { lua_pushnil(L); lua_pushliteral(L, "busy"); return 2; }
  if (dlen != s->dlen || memcmp(d, s->delim, dlen) != 0) {
    char *nd = realloc(s->delim, 2 * dlen);   /* the second half: discard_find's tail */
    if (!nd) return luaL_error(L, "out of memory");
    memcpy(nd, d, dlen);
    s->delim = nd;
    s->dlen = dlen;
    s->scanned = 0;
    s->dtail = 0;
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

/* ----------------------------------------------------- options, queries */

static uint32_t opt_ms(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return 0;
  lua_Number ms = luaL_checknumber(L, idx);
  if (ms != ms) luaL_argerror(L, idx, "milliseconds expected, got NaN");
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
  s->max_line = (size_t)coru_check_int(L, 2, 1, STREAM_MAX, "set_max_line");
  return 0;
}

static int l_set_max_all(lua_State *L) {
  coru_stream *s = coru_check_stream(L, 1);
  s->max_all = (size_t)coru_check_int(L, 2, 1, STREAM_MAX, "set_max_all");
  return 0;
}

static int l_buffered(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)BUFFERED(coru_check_stream(L, 1)));
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

/* ------------------------------------------------------------------ open */

/* The reader's part of every stream type's methods (uvstream.c registers
 * them with the writer's and the uv stream's); read_start and read_stop
 * are luv's flat names too. */
const coru_Fn coru_stream_read_fns[] = {
  {"read", NULL, l_read, CORU_YIELDS | CORU_ARITY(2)},
  {"read_line", NULL, l_read_line, CORU_YIELDS | CORU_ARITY(2)},
  {"read_bytes", NULL, l_read_bytes, CORU_YIELDS | CORU_ARITY(3)},
  {"read_until", NULL, l_read_until, CORU_YIELDS | CORU_ARITY(3)},
  {"read_all", NULL, l_read_all, CORU_YIELDS | CORU_ARITY(2)},
  {"read_start", "read_start", l_read_start, 0}, {"read_stop", "read_stop", l_read_stop, 0},
  {"settimeouts", NULL, l_settimeouts, 0}, {"settimeout", NULL, l_settimeout, 0},
  {"set_max_line", NULL, l_set_max_line, 0}, {"set_max_all", NULL, l_set_max_all, 0},
  {"buffered", NULL, l_buffered, 0}, CORU_FNS_END
};
