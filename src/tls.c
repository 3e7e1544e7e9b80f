/*
 * tls.c - the TLS stream (coru.tls.wrap): a coru stream whose bytes go
 * through the TLS engine (tls_engine.c) over a lower stream, which it reads
 * and writes through that stream's Lua methods. Contexts and certificates
 * are in tls_ctx.c; lua/coru/tls.lua builds connect/listen on top.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include "coru.h"
#include "check.h"
#include "stream.h"
#include "tls.h"

#include "tls_ctx.h"

/* ------------------------------------------------------------ TLS streams */

#define READ_MAX (256 * 1024)
static char rbuf[READ_MAX];   /* plaintext scratch: fed to the core at once */

/*
 * A TLS stream is a coru stream (stream.h) whose transport is the engine
 * over another stream, "the lower": ciphertext comes from the lower's luv
 * read_start callback and goes out through the lower's write(data, cb), so
 * any coru stream (tcp, pipe, another TLS stream) can carry TLS, and every
 * stream method (read_line, timeouts, line limit, read_start...) works the
 * same. Calls into the lower run in callback mode on the callback thread:
 * they never yield.
 *
 * Each pending call into the lower holds a token (userdata, upvalue of the
 * C callback given to the lower). Closing the TLS stream settles what waits
 * on it and marks the tokens dead: a lower callback that comes later finds
 * no stream and does nothing.
 */

typedef struct tls_stream tls_stream;
typedef struct tls_tok {
  tls_stream *t;          /* NULL: dead */
  coru_write_req *w;           /* a plaintext write waiting for its ciphertext to go */
  coru_shutdown_req *q;           /* a shutdown */
  struct tls_tok *prev, *next;
} tls_tok;

struct tls_stream {
  coru_stream s;
  uv_idle_t idle;         /* never started: gives the handle its uv lifecycle */
  coru_tls *eng;
  int low_ref;            /* the lower stream's box */
  int rcb_ref;            /* the read callback given to the lower */
  tls_tok *rtok;
  tls_tok *toks;          /* pending writes and shutdowns */
  coru_cont hs;           /* who waits for the handshake */
  coru_deadline *hs_dl;   /* handshake timeout */
  coru_deadline *start_dl;/* the first step, on the next loop turn */
  coru_deadline *gone_dl; /* the lower was found closed: we close next */
  unsigned char hs_state; /* 0 running, 1 done, 2 failed */
  unsigned char low_reading, want_read;
};

static coru_htype tls_type;

static tls_stream *checktls(lua_State *L) {
  return (tls_stream *)coru_check_handle(L, 1, &tls_type);
}

/* "ECONNRESET: connection reset by peer" -> UV_ECONNRESET */
static int uv_code(const char *msg) {
  if (!msg) return UV_EIO;
  if (!strcmp(msg, "closed")) return UV_ECANCELED;
  if (!strcmp(msg, "timeout")) return UV_ETIMEDOUT;
#define XX(code, _) if (!strncmp(msg, #code, sizeof #code - 1) && (msg[sizeof #code - 1] == ':' || !msg[sizeof #code - 1])) return UV_##code;
  UV_ERRNO_MAP(XX)
#undef XX
  return UV_EIO;
}

static void tok_link(tls_stream *t, tls_tok *k) {
  k->t = t;
  k->prev = NULL;
  k->next = t->toks;
  if (t->toks) t->toks->prev = k;
  t->toks = k;
}

static void tok_unlink(tls_tok *k) {
  tls_stream *t = k->t;
  if (!t) return;
  if (k->prev) k->prev->next = k->next; else t->toks = k->next;
  if (k->next) k->next->prev = k->prev;
  k->prev = k->next = NULL;
  k->t = NULL;
}

/* Push a C closure fn with a new token as upvalue; returns the token. */
static tls_tok *push_tok(lua_State *L, lua_CFunction fn) {
  tls_tok *k = lua_newuserdata(L, sizeof *k);
  memset(k, 0, sizeof *k);
  lua_pushcclosure(L, fn, 1);
  return k;
}

/* The lower stream was closed under us (a user closed the stream given to
 * tls.wrap): the TLS stream closes too, so that what waits on it gets
 * "closed" as on any closed stream, never the lower's ECANCELED. */
static void close_now(tls_stream *t) {
  if (!t->s.base.closing) coru_handle_close(coru_R->L, &t->s.base);
}

static void gone_cb(void *data) {
  tls_stream *t = data;
  t->gone_dl = NULL;
  close_now(t);
}

/* Found closed in a call: close on the next loop turn, once the caller
 * waits (its wait is settled by the close). */
static void lower_gone(tls_stream *t) {
  if (!t->gone_dl && !t->s.base.closing) t->gone_dl = coru_deadline_start(0, gone_cb, t);
}

static int lower_closed(lua_State *L, tls_stream *t) {
  coru_box *box = lua_touserdata(L, -1);
  if (box && box->h && !box->h->closing) return 0;
  lower_gone(t);
  return 1;
}

/* Call lower:method(args at the top (nargs), callback) on L. Returns 0 or
 * a uv error; the callback is called later only on success, or never when
 * the lower is closed (the TLS stream's close settles the caller). */
static int low_call(lua_State *L, tls_stream *t, const char *method, int nargs) {
  int top = lua_gettop(L) - nargs;   /* args (and callback) are above top */
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->low_ref);
  if (lower_closed(L, t)) { lua_settop(L, top); return 0; }
  lua_getfield(L, -1, method);
  lua_insert(L, top + 1);
  lua_insert(L, top + 2);            /* method, lower, args... */
  int r = 0;
  if (lua_pcall(L, nargs + 1, 3, 0) != 0) r = uv_code(lua_tostring(L, -1));
  else if (lua_isnil(L, -3)) r = lua_isstring(L, -1) ? uv_code(lua_tostring(L, -1)) : uv_code(lua_tostring(L, -2));
  lua_settop(L, top);
  return r;
}

static int on_low_done(lua_State *L);
static void tls_fail_handshake(tls_stream *t, const char *msg, const char *name);

/* Send the ciphertext the engine has (if any); w/q: what waits for it. */
static int send_out(tls_stream *t, coru_write_req *w) {
  lua_State *L = coru_R->L;
  char *p;
  long n = coru_tls_out(t->eng, &p);
  if (n <= 0 && !w) return 0;
  lua_checkstack(L, 8);
  lua_pushlstring(L, p, n > 0 ? (size_t)n : 0);
  coru_tls_out_clear(t->eng);
  tls_tok *k = push_tok(L, on_low_done);
  k->w = w;
  tok_link(t, k);
  int r = low_call(L, t, "write", 2);
  if (r < 0) tok_unlink(k);
  return r;
}

/* The lower took (or failed) a write (k->w, may be NULL) or a shutdown (k->q). */
static int on_low_done(lua_State *L) {
  tls_tok *k = lua_touserdata(L, lua_upvalueindex(1));
  tls_stream *t = k->t;
  if (!t) return 0;
  coru_write_req *w = k->w;
  coru_shutdown_req *q = k->q;
  int status = lua_isnil(L, 1) ? 0 : uv_code(lua_tostring(L, 1));
  tok_unlink(k);
  if (q) coru_stream_shutdown_done(&t->s, q, status);
  else if (w) coru_stream_write_done(&t->s, w, status);
  return 0;
}

static int on_low_read(lua_State *L);

static int low_read_start(tls_stream *t) {
  if (t->low_reading) return 0;
  lua_State *L = coru_R->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->rcb_ref);
  t->low_reading = 1;
  int r = low_call(L, t, "read_start", 1);
  if (r < 0) t->low_reading = 0;
  return r;
}

static void low_read_stop(tls_stream *t) {
  if (!t->low_reading) return;
  t->low_reading = 0;
  low_call(coru_R->L, t, "read_stop", 0);
}

/* ------------------------------------------------------------ handshake */

static void hs_settle(tls_stream *t) {
  if (t->hs_dl) { coru_deadline_stop(t->hs_dl); t->hs_dl = NULL; }
  if (t->start_dl) { coru_deadline_stop(t->start_dl); t->start_dl = NULL; }
}

static void tls_done_handshake(tls_stream *t) {
  lua_State *L = coru_R->L;
  t->hs_state = 1;
  hs_settle(t);
  lua_State *S = coru_cont_begin(&t->hs);
  if (S) coru_handle_push(S, &t->s.base);
  coru_handle_release(L, &t->s.base);    /* the handshake's keep; S anchors the box now */
  if (!t->want_read) low_read_stop(t);
  if (S) coru_cont_ok(&t->hs, 1);
}

static void tls_fail_handshake(tls_stream *t, const char *msg, const char *name) {
  lua_State *L = coru_R->L;
  if (t->hs_state) return;
  t->hs_state = 2;
  hs_settle(t);
  char m[300];
  snprintf(m, sizeof m, "%s", msg);       /* msg may live in the engine */
  lua_State *S = coru_cont_begin(&t->hs);
  if (!t->s.base.closing) coru_handle_close(L, &t->s.base);  /* closes the lower too */
  if (S) coru_cont_fail_str(&t->hs, m, name);
}

static void hs_cancel(coru_cont *c) {
  tls_stream *t = container_of(c, tls_stream, hs);
  t->hs_state = 2;
  hs_settle(t);
  if (!t->s.base.closing) coru_handle_close(coru_R->L, &t->s.base);
}

static void hs_timeout(void *data) {
  tls_stream *t = data;
  t->hs_dl = NULL;
  tls_fail_handshake(t, "ETLS: handshake timed out", "timeout");
}

/* ---------------------------------------------------------- data flow */

/* Ciphertext arrived (or the first step): advance the handshake, hand
 * plaintext to the stream core, send what the engine has to say. */
static void tls_process(tls_stream *t) {
  coru_tls *e = t->eng;
  if (!t->hs_state) {
    int r = coru_tls_handshake(e);
    int sr = send_out(t, NULL);
    if (r == CORU_TLS_ERROR) { tls_fail_handshake(t, coru_tls_error(e), coru_tls_error_name(e)); return; }
    if (sr < 0) {
      coru_push_errmsg(coru_R->L, sr, "sending the handshake");
      const char *m = lua_tostring(coru_R->L, -1);
      char buf[200];
      snprintf(buf, sizeof buf, "%s", m);
      lua_pop(coru_R->L, 1);
      tls_fail_handshake(t, buf, uv_err_name(sr));
      return;
    }
    if (r == CORU_TLS_WANT) return;
    tls_done_handshake(t);
    if (t->s.base.closing) return;
  }
  if (t->hs_state != 1) return;
  for (;;) {
    size_t n;
    int r = coru_tls_read(e, rbuf, sizeof rbuf, &n);
    if (r == CORU_TLS_OK) {
      coru_stream_feed(&t->s, rbuf, n);
      if (t->s.base.closing) return;
      continue;
    }
    if (coru_tls_pending(e)) send_out(t, NULL);   /* tickets, key updates, close_notify reply */
    if (r == CORU_TLS_CLOSED) coru_stream_feed_end(&t->s, UV_EOF);
    else if (r == CORU_TLS_ERROR) coru_stream_feed_end(&t->s, UV_EPROTO);
    return;
  }
}

/* The lower's read_start callback: (nil, data), (nil, nil) at the end, (msg). */
static int on_low_read(lua_State *L) {
  tls_tok *k = lua_touserdata(L, lua_upvalueindex(1));
  tls_stream *t = k->t;
  if (!t || t->s.base.closing) return 0;
  coru_tls *e = t->eng;
  if (!lua_isnil(L, 1) || lua_isnil(L, 2)) {
    t->low_reading = 0;
    if (!lua_isnil(L, 1)) {                      /* the transport failed */
      const char *msg = lua_tostring(L, 1);
      if (msg && !strcmp(msg, "closed")) { close_now(t); return 0; }   /* closed under us */
      if (!t->hs_state) {
        lua_pushfstring(L, "ETLS: handshake failed: %s", msg ? msg : "transport error");
        tls_fail_handshake(t, lua_tostring(L, -1), uv_err_name(uv_code(msg)));
      } else {
        coru_tls_set_error(e, msg ? msg : "transport error");
        coru_stream_feed_end(&t->s, uv_code(msg));
      }
    } else {                                     /* the transport ended */
      int r = coru_tls_eof(e);
      if (!t->hs_state) tls_fail_handshake(t, coru_tls_error(e), coru_tls_error_name(e));
      else coru_stream_feed_end(&t->s, r == CORU_TLS_CLOSED ? UV_EOF : UV_ECONNABORTED);
    }
    return 0;
  }
  size_t n;
  const char *p = lua_tolstring(L, 2, &n);
  if (coru_tls_feed(e, p, n) != CORU_TLS_OK) {
    if (!t->hs_state) tls_fail_handshake(t, coru_tls_error(e), coru_tls_error_name(e));
    else coru_stream_feed_end(&t->s, UV_ENOMEM);
    return 0;
  }
  tls_process(t);
  return 0;
}

static void tls_start(void *data) {
  tls_stream *t = data;
  t->start_dl = NULL;
  if (t->s.base.closing) return;
  tls_process(t);                 /* a client says hello */
  if (t->hs_state || t->s.base.closing) return;
  int r = low_read_start(t);
  if (r < 0) {
    char m[160];
    snprintf(m, sizeof m, "ETLS: handshake failed: %s: %s", uv_err_name(r), uv_strerror(r));
    tls_fail_handshake(t, m, uv_err_name(r));
  }
}

/* ------------------------------------------------------------ transport */

static int tp_read_start(coru_stream *s) {
  tls_stream *t = (tls_stream *)s;
  t->want_read = 1;
  return low_read_start(t);
}

static void tp_read_stop(coru_stream *s) {
  tls_stream *t = (tls_stream *)s;
  t->want_read = 0;
  if (t->hs_state == 1) low_read_stop(t);
}

static int tp_write(coru_stream *s, coru_write_req *w, const uv_buf_t *bufs, unsigned n) {
  tls_stream *t = (tls_stream *)s;
  if (t->hs_state != 1) return UV_ENOTCONN;
  for (unsigned i = 0; i < n; i++)
    if (coru_tls_write(t->eng, bufs[i].base, bufs[i].len) != CORU_TLS_OK) return UV_EPROTO;
  return send_out(t, w);
}

/* The fast path of a writer: with nothing of ours in flight, encrypt and
 * hand the ciphertext to the lower's try_write; what it leaves goes out as
 * an ordinary lower write (ordered: the lower refuses try_write while its
 * queue is not empty). The plaintext is all taken: the writer goes on. */
static __attribute__((unused)) int tp_try_write(coru_stream *s, const uv_buf_t *bufs, unsigned n) {
  tls_stream *t = (tls_stream *)s;
  if (t->hs_state != 1 || t->toks) return UV_EAGAIN;
  size_t total = 0;
  for (unsigned i = 0; i < n; i++) {
    if (coru_tls_write(t->eng, bufs[i].base, bufs[i].len) != CORU_TLS_OK) return UV_EPROTO;
    total += bufs[i].len;
  }
  char *p;
  long len = coru_tls_out(t->eng, &p);
  if (len <= 0) return (int)total;
  lua_State *L = coru_R->L;
  lua_checkstack(L, 8);
  int top = lua_gettop(L);
  lua_pushlstring(L, p, (size_t)len);            /* top + 1: the ciphertext */
  coru_tls_out_clear(t->eng);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->low_ref);
  if (lower_closed(L, t)) { lua_settop(L, top); return UV_EAGAIN; }   /* the write path waits for the close */
  lua_getfield(L, -1, "try_write");
  lua_insert(L, -2);
  lua_pushvalue(L, top + 1);
  long taken = 0;
  int r = 0;
  if (lua_pcall(L, 2, 3, 0) != 0) r = uv_code(lua_tostring(L, -1));
  else if (lua_isnumber(L, -3)) taken = (long)lua_tointeger(L, -3);
  else if ((r = uv_code(lua_tostring(L, -2))) == UV_EAGAIN) r = 0;
  if (r < 0) { lua_settop(L, top); return r; }
  if (taken < len) {
    lua_pushlstring(L, p == NULL ? "" : lua_tostring(L, top + 1) + taken, (size_t)(len - taken));
    tls_tok *k = push_tok(L, on_low_done);
    tok_link(t, k);
    r = low_call(L, t, "write", 2);
    if (r < 0) tok_unlink(k);
  }
  lua_settop(L, top);
  return r < 0 ? r : (int)total;
}

static int tp_shutdown(coru_stream *s, coru_shutdown_req *q) {
  tls_stream *t = (tls_stream *)s;
  if (t->hs_state == 1 && coru_tls_close_notify(t->eng) != CORU_TLS_OK) return UV_EPROTO;
  int r = send_out(t, NULL);
  if (r < 0) return r;
  lua_State *L = coru_R->L;
  tls_tok *k = push_tok(L, on_low_done);
  k->q = q;
  tok_link(t, k);
  r = low_call(L, t, "shutdown", 1);
  if (r < 0) tok_unlink(k);
  return r;
}

static size_t tp_queue_size(coru_stream *s) {
  tls_stream *t = (tls_stream *)s;
  size_t n = 0;
  for (tls_tok *k = t->toks; k; k = k->next) n++;   /* writes in flight, a rough measure */
  return n;
}

static const coru_transport tls_transport = {
#ifdef TLS_NO_TRY_WRITE
  tp_read_start, tp_read_stop, NULL, tp_write, tp_shutdown, tp_queue_size
#else
  tp_read_start, tp_read_stop, tp_try_write, tp_write, tp_shutdown, tp_queue_size
#endif
};

static void tls_on_close(coru_handle *h) {
  tls_stream *t = (tls_stream *)h;
  lua_State *L = coru_R->L;
  hs_settle(t);
  if (t->gone_dl) { coru_deadline_stop(t->gone_dl); t->gone_dl = NULL; }
  if (!t->hs_state) {
    t->hs_state = 2;
    lua_State *S = coru_cont_begin(&t->hs);
    if (S) coru_cont_fail_str(&t->hs, "closed", NULL);
  }
  if (t->rtok) { t->rtok->t = NULL; t->rtok = NULL; }
  /* writes and shutdowns waiting on the lower: settle them now */
  while (t->toks) {
    tls_tok *k = t->toks;
    coru_write_req *w = k->w;
    coru_shutdown_req *q = k->q;
    tok_unlink(k);
    if (w) coru_stream_write_done(&t->s, w, UV_ECANCELED);
    if (q) coru_stream_shutdown_done(&t->s, q, UV_ECANCELED);
  }
  coru_stream_closing(&t->s);
  /* best effort close_notify, then the lower goes with us */
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->low_ref);
  coru_box *box = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (box && box->h && !box->h->closing) {
    if (t->hs_state == 1 && !t->s.shut && coru_tls_close_notify(t->eng) == CORU_TLS_OK)
      send_out(t, NULL);
    while (t->toks) tok_unlink(t->toks);
    coru_handle_close(L, box->h);
  }
  coru_unref(L, &t->low_ref);
  coru_unref(L, &t->rcb_ref);
}

static void tls_on_free(coru_handle *h) {
  tls_stream *t = (tls_stream *)h;
  coru_stream_free(&t->s);
  coru_tls_free(t->eng);
  t->eng = NULL;
}

/* _tls.wrap(stream, ctx, server, servername, verify_host, timeout_ms [, cb]):
 * the TLS stream once the handshake is done, or nil, msg, name. The lower
 * belongs to the TLS stream from now on (closed with it, or on failure). */
static int wrapped_ref = LUA_NOREF;   /* weak-keyed: lower stream box -> true */

static void make_wrapped(lua_State *L) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  wrapped_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Mark the lower stream at idx as wrapped; 0 if it already was. */
static int mark_wrapped(lua_State *L, int idx) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, wrapped_ref);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  int was = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!was) {
    lua_pushvalue(L, idx);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
  return !was;
}

static int l_wrap(lua_State *L) {
  coru_stream *low = coru_check_stream(L, 1);
  coru_tls_ctx *c = coru_tls_checkctx(L, 2);
  int server = lua_toboolean(L, 3);
  const char *sni = coru_opt_cstr(L, 4, NULL, NULL);
  const char *vh = coru_opt_cstr(L, 5, NULL, NULL);
  uint64_t ms = coru_opt_ms(L, 6, 0, "tls.wrap (handshake_timeout)");
  int cbidx = coru_enter(L, 7, "coru.tls.wrap", 0) == CORU_MODE_CB ? 7 : 0;
  if (low->rmode) return luaL_error(L, "coru.tls.wrap: the stream is being read (stop its reader first)");
  if (c->server != server)
    return luaL_error(L, "coru.tls.wrap: a %s needs a %s context", server ? "server" : "client",
                      server ? "server" : "client");
  if (!mark_wrapped(L, 1)) return luaL_error(L, "coru.tls.wrap: the stream is already wrapped by TLS");
  tls_stream *t = coru_handle_alloc(L, &tls_type, sizeof *t, offsetof(tls_stream, idle));
  int box = lua_gettop(L);
  t->low_ref = t->rcb_ref = LUA_NOREF;
  t->hs.cb_ref = LUA_NOREF;
  int r = uv_idle_init(coru_R->loop, &t->idle);
  if (r < 0) { coru_handle_init_failed(L, &t->s.base); return coru_fail(L, r, NULL); }
  coru_stream_init(&t->s, &tls_transport);
  t->eng = coru_tls_new(c->ctx, server, sni, vh);
  lua_pushvalue(L, 1);
  t->low_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (!t->eng) {
    coru_handle_close(L, &t->s.base);
    return luaL_error(L, "coru.tls.wrap: out of memory");
  }
  t->rtok = push_tok(L, on_low_read);
  t->rtok->t = t;
  t->rcb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  coru_cont_init(L, &t->hs, cbidx, hs_cancel);
  coru_handle_keep(L, &t->s.base);
  if (ms > 0) t->hs_dl = coru_deadline_start(ms, hs_timeout, t);
  /* the first step runs from the loop, so that a result is never ready
   * before this call has suspended */
  t->start_dl = coru_deadline_start(0, tls_start, t);
  lua_settop(L, box);
  return coru_cont_yield(L, &t->hs, 0);
}

static int l_tls_error(lua_State *L) {
  tls_stream *t = checktls(L);
  if (!coru_tls_error(t->eng)[0]) return 0;
  lua_pushstring(L, coru_tls_error(t->eng));
  lua_pushstring(L, coru_tls_error_name(t->eng));
  return 2;
}

static int l_version(lua_State *L) {
  tls_stream *t = checktls(L);
  if (!coru_tls_handshake_done(t->eng)) return 0;
  lua_pushstring(L, SSL_get_version(coru_tls_ssl(t->eng)));
  return 1;
}

static int l_cipher(lua_State *L) {
  tls_stream *t = checktls(L);
  const SSL_CIPHER *ci = SSL_get_current_cipher(coru_tls_ssl(t->eng));
  if (!ci) return 0;
  lua_pushstring(L, SSL_CIPHER_get_name(ci));
  lua_pushinteger(L, SSL_CIPHER_get_bits(ci, NULL));
  return 2;
}

static int l_alpn(lua_State *L) {
  tls_stream *t = checktls(L);
  const unsigned char *p;
  unsigned n;
  SSL_get0_alpn_selected(coru_tls_ssl(t->eng), &p, &n);
  if (!n) return 0;
  lua_pushlstring(L, (const char *)p, n);
  return 1;
}

static int l_transport(lua_State *L) {
  tls_stream *t = checktls(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->low_ref);
  return 1;
}

/* getpeername/getsockname and the like: asked of the lower. */
static int l_delegate(lua_State *L) {
  tls_stream *t = checktls(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->low_ref);
  lua_getfield(L, -1, lua_tostring(L, lua_upvalueindex(1)));
  if (lua_isnil(L, -1)) return coru_fail_str(L, "not supported by the transport", NULL);
  lua_replace(L, 1);           /* method at 1 */
  lua_insert(L, 2);            /* lower as self */
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static int l_peer_cert(lua_State *L) {
  return coru_tls_push_peer_cert(L, coru_tls_ssl(checktls(L)->eng));
}

static const coru_Fn tls_fns[] = {
  {"peer_certificate", NULL, l_peer_cert, 0}, {"cipher", NULL, l_cipher, 0},
  {"version", NULL, l_version, 0}, {"alpn", NULL, l_alpn, 0}, {"tls_error", NULL, l_tls_error, 0},
  {"transport", NULL, l_transport, 0}, CORU_FNS_END
};

static coru_htype tls_type = {"coru.tls", CORU_K_TLS, CORU_K_TLS, tls_fns, tls_on_close, tls_on_free, NULL};

static int l_live(lua_State *L) {
  lua_pushinteger(L, coru_tls_live());
  return 1;
}

static int l_openssl_version(lua_State *L) {
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  return 1;
}

CORU_FAMILY(tls) {
  make_wrapped(L);
  coru_tls_open_ctx(L);
  coru_register_stream_type(L, &tls_type);
  luaL_getmetatable(L, tls_type.name);
  lua_getfield(L, -1, "__index");
  static const char *const delegated[] = {"getpeername", "getsockname", "nodelay", "keepalive",
                                          "ref", "unref", "has_ref", NULL};
  for (int i = 0; delegated[i]; i++) {
    lua_pushstring(L, delegated[i]);
    lua_pushcclosure(L, l_delegate, 1);
    lua_setfield(L, -2, delegated[i]);
  }
  lua_pop(L, 2);
  lua_newtable(L);
  lua_pushcfunction(L, coru_tls_l_context);
  lua_setfield(L, -2, "context");
  static const coru_Reg funcs[] = {{"wrap", l_wrap, CORU_YIELDS}, {NULL, NULL, 0}};
  coru_setfuncs(L, funcs);
  lua_pushcfunction(L, l_openssl_version);
  lua_setfield(L, -2, "openssl_version");
  lua_pushcfunction(L, l_live);
  lua_setfield(L, -2, "live");
  lua_setfield(L, -2, "_tls");
}

