/*
 * tls.c - TLS with OpenSSL 3: contexts, the engine over memory BIOs (see
 * tls.h) and its thin Lua binding. The engine never does I/O and never
 * yields; lua/coru/tls.lua drives it over a stream (transport reads feed it,
 * what it produces is written out), so nothing here can block the loop.
 *
 * Lua side (internal, in coru._tls):
 *   context(opts)            -> ctx | nil, msg, name
 *   engine(ctx, server, servername, verify_host) -> engine
 *   engine:feed(s) / :handshake() / :read() / :write(s, i) / :take()
 *   engine:close_notify() / :eof() / :free()
 *   engine:peer_certificate() / :cipher() / :version() / :alpn()
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
#include "stream.h"
#include "tls.h"

/* ---------------------------------------------------------------- engine */

struct coru_tls {
  SSL *ssl;
  BIO *rbio, *wbio;     /* network side: what came in, what goes out */
  int server;
  int done;             /* the handshake finished once (SSL_is_init_finished
                           goes false again while TLS 1.3 tickets are sent) */
  const char *ename;
  char err[256];
};

SSL *coru_tls_ssl(coru_tls *t) { return t->ssl; }
const char *coru_tls_error(const coru_tls *t) { return t->err; }
const char *coru_tls_error_name(const coru_tls *t) { return t->ename; }
int coru_tls_handshake_done(const coru_tls *t) { return t->done; }

static int seterr(coru_tls *t, const char *name, const char *fmt, const char *a, const char *b) {
  char msg[200];
  snprintf(msg, sizeof msg, fmt, a, b);
  snprintf(t->err, sizeof t->err, "%s: %s", name, msg);
  t->ename = name;
  return CORU_TLS_ERROR;
}

/* The reason of the failed call: the verify result when the chain or the
 * host name was refused, else the first error OpenSSL queued. */
static int ssl_failure(coru_tls *t, int rc, const char *what) {
  int e = SSL_get_error(t->ssl, rc);
  unsigned long code = ERR_peek_error();
  long vr = SSL_get_verify_result(t->ssl);
  if (ERR_GET_LIB(code) == ERR_LIB_SSL && ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED &&
      vr != X509_V_OK) {
    ERR_clear_error();
    return seterr(t, CORU_TLS_ECERT, "certificate verify failed: %s",
                  X509_verify_cert_error_string(vr), NULL);
  }
  if (code) {
    const char *r = ERR_reason_error_string(code);
    char buf[64];
    if (!r) { snprintf(buf, sizeof buf, "error %lu", code); r = buf; }
    ERR_clear_error();
    return seterr(t, CORU_TLS_ENAME, "%s: %s", what, r);
  }
  ERR_clear_error();
  return seterr(t, CORU_TLS_ENAME, "%s: %s", what, e == SSL_ERROR_SYSCALL ? "unexpected end" : "failed");
}

static int is_ip(const char *s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static long live_engines;   /* SSL objects alive: the specs check none leaks */

coru_tls *coru_tls_new(SSL_CTX *ctx, int server, const char *servername, const char *verify_host) {
  coru_tls *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  ERR_clear_error();
  t->ssl = SSL_new(ctx);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->rbio || !t->wbio) {
    if (t->ssl) SSL_free(t->ssl);
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    free(t);
    ERR_clear_error();
    return NULL;
  }
  SSL_set_bio(t->ssl, t->rbio, t->wbio);   /* the SSL owns them now */
  live_engines++;
  t->server = server;
  t->ename = CORU_TLS_ENAME;
  if (server) {
    SSL_set_accept_state(t->ssl);
  } else {
    SSL_set_connect_state(t->ssl);
    if (servername && *servername && !is_ip(servername))
      SSL_set_tlsext_host_name(t->ssl, servername);
    if (verify_host && *verify_host) {
      X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
      X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (is_ip(verify_host)) X509_VERIFY_PARAM_set1_ip_asc(vp, verify_host);
      else X509_VERIFY_PARAM_set1_host(vp, verify_host, 0);
    }
  }
  return t;
}

void coru_tls_free(coru_tls *t) {
  if (!t) return;
  SSL_free(t->ssl);   /* frees both BIOs */
  live_engines--;
  free(t);
}

int coru_tls_feed(coru_tls *t, const char *p, size_t n) {
  if (n == 0) return CORU_TLS_OK;
  size_t done = 0;
  if (!BIO_write_ex(t->rbio, p, n, &done) || done != n) {
    ERR_clear_error();
    return seterr(t, CORU_TLS_ENAME, "%s%s", "out of memory", "");
  }
  return CORU_TLS_OK;
}

int coru_tls_handshake(coru_tls *t) {
  if (t->done) return CORU_TLS_OK;
  ERR_clear_error();
  int rc = SSL_do_handshake(t->ssl);
  if (rc == 1) { t->done = 1; return CORU_TLS_OK; }
  int e = SSL_get_error(t->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return CORU_TLS_WANT;
  return ssl_failure(t, rc, "handshake failed");
}

int coru_tls_read(coru_tls *t, char *buf, size_t cap, size_t *n) {
  *n = 0;
  ERR_clear_error();
  while (*n < cap) {
    size_t got = 0;
    int rc = SSL_read_ex(t->ssl, buf + *n, cap - *n, &got);
    if (rc == 1) { *n += got; continue; }
    if (*n > 0) { ERR_clear_error(); return CORU_TLS_OK; }  /* report the rest next time */
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return CORU_TLS_WANT;
    if (e == SSL_ERROR_ZERO_RETURN) return CORU_TLS_CLOSED;
    return ssl_failure(t, rc, t->done ? "read failed" : "handshake failed");
  }
  return CORU_TLS_OK;
}

int coru_tls_write(coru_tls *t, const char *p, size_t n) {
  if (n == 0) return CORU_TLS_OK;
  ERR_clear_error();
  size_t w = 0;
  int rc = SSL_write_ex(t->ssl, p, n, &w);
  if (rc == 1 && w == n) return CORU_TLS_OK;
  return ssl_failure(t, rc, "write failed");
}

size_t coru_tls_pending(const coru_tls *t) { return BIO_ctrl_pending(t->wbio); }

size_t coru_tls_take(coru_tls *t, char *buf, size_t cap) {
  size_t got = 0;
  if (!BIO_read_ex(t->wbio, buf, cap, &got)) got = 0;
  return got;
}

int coru_tls_close_notify(coru_tls *t) {
  if (!t->done) return CORU_TLS_OK;   /* nothing to close yet */
  if (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN) return CORU_TLS_OK;
  ERR_clear_error();
  int rc = SSL_shutdown(t->ssl);
  if (rc >= 0) return CORU_TLS_OK;
  int e = SSL_get_error(t->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return CORU_TLS_OK;
  return ssl_failure(t, rc, "shutdown failed");
}

int coru_tls_eof(coru_tls *t) {
  if (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN) return CORU_TLS_CLOSED;
  if (!t->done)
    return seterr(t, CORU_TLS_ENAME, "%s%s", "handshake failed: the peer closed the connection", "");
  return seterr(t, CORU_TLS_ETRUNC, "%s%s",
                "truncated: the peer closed the connection without close_notify", "");
}

/* --------------------------------------------------------------- contexts */

typedef struct { SSL_CTX *ctx; int server; } tls_ctx;

static const char *CTX_MT = "coru.tls.context";

static int is_pem(const char *s) { return strstr(s, "-----BEGIN ") != NULL; }

/* A BIO on a PEM string or a file. */
static BIO *pem_bio(const char *s) {
  if (is_pem(s)) return BIO_new_mem_buf(s, -1);
  return BIO_new_file(s, "r");
}

static int pass_cb(char *buf, int size, int rwflag, void *u) {
  (void)rwflag;
  const char *p = u;
  if (!p) return 0;
  int n = (int)strlen(p);
  if (n > size) n = size;
  memcpy(buf, p, n);
  return n;
}

static int ctx_fail(lua_State *L, SSL_CTX *ctx, const char *what, const char *src) {
  unsigned long code = ERR_peek_last_error();
  const char *r = code ? ERR_reason_error_string(code) : NULL;
  if (ctx) SSL_CTX_free(ctx);
  ERR_clear_error();
  lua_pushnil(L);
  if (src && is_pem(src)) src = "(PEM string)";
  lua_pushfstring(L, "ETLS: %s: %s%s%s", what, r ? r : "failed", src ? ": " : "", src ? src : "");
  lua_pushliteral(L, CORU_TLS_ENAME);
  return 3;
}

static const char *optstr(lua_State *L, int o, const char *k) {
  lua_getfield(L, o, k);
  const char *s = NULL;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "coru.tls: option '%s' must be a string", k);
    s = lua_tostring(L, -1);
  }
  lua_pop(L, 1);    /* the string stays alive: opts holds it */
  return s;
}

static int optbool(lua_State *L, int o, const char *k, int dflt) {
  lua_getfield(L, o, k);
  int v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "coru.tls: option '%s' must be a boolean", k);
  lua_pop(L, 1);
  return v;
}

static int parse_version(lua_State *L, const char *s, const char *k) {
  if (!s) return 0;
  if (!strncmp(s, "TLSv", 4)) s += 4;
  if (!strcmp(s, "1") || !strcmp(s, "1.0")) return TLS1_VERSION;
  if (!strcmp(s, "1.1")) return TLS1_1_VERSION;
  if (!strcmp(s, "1.2")) return TLS1_2_VERSION;
  if (!strcmp(s, "1.3")) return TLS1_3_VERSION;
  return luaL_error(L, "coru.tls: option '%s': unknown version '%s' (\"1.2\", \"1.3\", ...)", k, s);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  const unsigned char *mine = arg;
  if (!mine) return SSL_TLSEXT_ERR_NOACK;
  if (SSL_select_next_proto((unsigned char **)out, outlen, mine + 1, mine[0], in, inlen) !=
      OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;   /* no protocol in common: refuse (RFC 7301) */
  return SSL_TLSEXT_ERR_OK;
}

static int alpn_idx = -1;

static void alpn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
  free(ptr);
}

/* opts.alpn {"h2", "http/1.1"} -> wire format (length-prefixed). The
 * server's copy starts with the total length byte for alpn_select. */
static unsigned char *alpn_wire(lua_State *L, int o, size_t *len) {
  lua_getfield(L, o, "alpn");
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return NULL; }
  if (!lua_istable(L, -1)) luaL_error(L, "coru.tls: option 'alpn' must be a list of strings");
  size_t n = lua_objlen(L, -1), total = 0;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, (int)i);
    size_t l;
    const char *s = lua_tolstring(L, -1, &l);
    if (!s || l == 0 || l > 255) luaL_error(L, "coru.tls: option 'alpn': bad protocol name at %d", (int)i);
    total += l + 1;
    lua_pop(L, 1);
  }
  if (total == 0 || total > 255) luaL_error(L, "coru.tls: option 'alpn': empty or too long");
  unsigned char *w = malloc(total + 1);
  if (!w) luaL_error(L, "out of memory");
  w[0] = (unsigned char)total;
  size_t at = 1;
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, (int)i);
    size_t l;
    const char *s = lua_tolstring(L, -1, &l);
    w[at++] = (unsigned char)l;
    memcpy(w + at, s, l);
    at += l;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  *len = total;
  return w;
}

/* coru._tls.context(opts): opts.server marks a server context. */
static int l_context(lua_State *L) {
  if (lua_isnoneornil(L, 1)) { lua_settop(L, 0); lua_newtable(L); }
  luaL_checktype(L, 1, LUA_TTABLE);
  int server = optbool(L, 1, "server", 0);
  int verify = optbool(L, 1, "verify", !server);
  const char *ca = optstr(L, 1, "ca");
  const char *cert = optstr(L, 1, "cert");
  const char *key = optstr(L, 1, "key");
  const char *pass = optstr(L, 1, "passphrase");
  const char *ciphers = optstr(L, 1, "ciphers");
  const char *suites = optstr(L, 1, "ciphersuites");
  int minv = parse_version(L, optstr(L, 1, "min_version"), "min_version");
  int maxv = parse_version(L, optstr(L, 1, "max_version"), "max_version");
  size_t alpn_len = 0;
  unsigned char *alpn = alpn_wire(L, 1, &alpn_len);   /* last: may raise before it allocates */
  if (server && (!cert || !key)) {
    free(alpn);
    return luaL_error(L, "coru.tls: a server context needs 'cert' and 'key'");
  }
  if (key && !cert) { free(alpn); return luaL_error(L, "coru.tls: option 'key' needs 'cert'"); }

  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) { free(alpn); return ctx_fail(L, NULL, "cannot create context", NULL); }
  if (alpn) {
    if (server) {
      SSL_CTX_set_ex_data(ctx, alpn_idx, alpn);         /* freed with the context */
      SSL_CTX_set_alpn_select_cb(ctx, alpn_select, alpn);
    } else {
      int bad = SSL_CTX_set_alpn_protos(ctx, alpn + 1, (unsigned)alpn_len);
      free(alpn);
      if (bad) return ctx_fail(L, ctx, "alpn", NULL);
    }
  }
  SSL_CTX_set_min_proto_version(ctx, minv ? minv : TLS1_2_VERSION);
  if (maxv) SSL_CTX_set_max_proto_version(ctx, maxv);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (ciphers && !SSL_CTX_set_cipher_list(ctx, ciphers)) return ctx_fail(L, ctx, "ciphers", ciphers);
  if (suites && !SSL_CTX_set_ciphersuites(ctx, suites)) return ctx_fail(L, ctx, "ciphersuites", suites);

  /* trust: ca (file, directory or PEM string), else the system store */
  if (ca) {
    struct stat st;
    if (is_pem(ca)) {
      BIO *b = BIO_new_mem_buf(ca, -1);
      STACK_OF(X509_INFO) *infos = b ? PEM_X509_INFO_read_bio(b, NULL, NULL, NULL) : NULL;
      BIO_free(b);
      int n = 0;
      X509_STORE *store = SSL_CTX_get_cert_store(ctx);
      for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *xi = sk_X509_INFO_value(infos, i);
        if (xi->x509 && X509_STORE_add_cert(store, xi->x509)) n++;
      }
      sk_X509_INFO_pop_free(infos, X509_INFO_free);
      if (n == 0) return ctx_fail(L, ctx, "cannot load ca", ca);
    } else if (stat(ca, &st) == 0 && S_ISDIR(st.st_mode)) {
      if (!SSL_CTX_load_verify_dir(ctx, ca)) return ctx_fail(L, ctx, "cannot load ca", ca);
    } else if (!SSL_CTX_load_verify_file(ctx, ca)) {
      return ctx_fail(L, ctx, "cannot load ca", ca);
    }
  } else if (!server || verify) {
    SSL_CTX_set_default_verify_paths(ctx);
  }
  if (verify) {
    SSL_CTX_set_verify(ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                       NULL);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  }

  /* our certificate (chain) and key */
  if (cert) {
    BIO *b = pem_bio(cert);
    X509 *x = b ? PEM_read_bio_X509_AUX(b, NULL, NULL, NULL) : NULL;
    if (!x || SSL_CTX_use_certificate(ctx, x) != 1) {
      X509_free(x);
      BIO_free(b);
      return ctx_fail(L, ctx, "cannot load cert", cert);
    }
    X509_free(x);
    X509 *extra;
    while ((extra = PEM_read_bio_X509(b, NULL, NULL, NULL)))
      if (!SSL_CTX_add0_chain_cert(ctx, extra)) X509_free(extra);
    ERR_clear_error();   /* the end of the chain is reported as an error */
    BIO_free(b);
    b = pem_bio(key);
    EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, pass_cb, (void *)pass) : NULL;
    BIO_free(b);
    if (!pk || SSL_CTX_use_PrivateKey(ctx, pk) != 1) {
      EVP_PKEY_free(pk);
      return ctx_fail(L, ctx, pass ? "cannot load key (wrong passphrase?)" : "cannot load key", key);
    }
    EVP_PKEY_free(pk);
    if (SSL_CTX_check_private_key(ctx) != 1) return ctx_fail(L, ctx, "key does not match cert", key);
  }
  if (server) {
    static const unsigned char sid[] = "coru";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
  }

  tls_ctx *c = lua_newuserdata(L, sizeof *c);
  c->ctx = ctx;
  c->server = server;
  luaL_getmetatable(L, CTX_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static tls_ctx *checkctx(lua_State *L, int idx) {
  tls_ctx *c = luaL_checkudata(L, idx, CTX_MT);
  if (!c->ctx) luaL_argerror(L, idx, "context is freed");
  return c;
}

static int l_ctx_gc(lua_State *L) {
  tls_ctx *c = luaL_checkudata(L, 1, CTX_MT);
  if (c->ctx) SSL_CTX_free(c->ctx);   /* connections hold their own reference */
  c->ctx = NULL;
  return 0;
}

static int l_ctx_is_server(lua_State *L) {
  lua_pushboolean(L, checkctx(L, 1)->server);
  return 1;
}

static int l_ctx_tostring(lua_State *L) {
  tls_ctx *c = luaL_checkudata(L, 1, CTX_MT);
  lua_pushfstring(L, "coru.tls.context: %p (%s)", (void *)c, c->server ? "server" : "client");
  return 1;
}

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
  coru_wreq *w;           /* a plaintext write waiting for its ciphertext to go */
  coru_sreq *q;           /* a shutdown */
  struct tls_tok *prev, *next;
} tls_tok;

struct tls_stream {
  coru_stream s;
  uv_idle_t idle;         /* never started: gives the handle its uv lifecycle */
  coru_tls *eng;
  coru_handle *low;       /* the lower stream (valid while low_ref holds its box) */
  int low_ref;
  int rcb_ref;            /* the read callback given to the lower */
  tls_tok *rtok;
  tls_tok *toks;          /* pending writes and shutdowns */
  coru_cont hs;           /* who waits for the handshake */
  coru_deadline *hs_dl;   /* handshake timeout */
  coru_deadline *start_dl;/* the first step, on the next loop turn */
  uint32_t hs_ms;
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

/* Call lower:method(args at the top (nargs), callback) on L. Returns 0 or
 * a uv error; the callback is called later only on success. */
static int low_call(lua_State *L, tls_stream *t, const char *method, int nargs) {
  int top = lua_gettop(L) - nargs;   /* args (and callback) are above top */
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->low_ref);
  coru_box *box = lua_touserdata(L, -1);
  if (!box || !box->h || box->h->closing) { lua_settop(L, top); return UV_ECANCELED; }
  lua_getfield(L, -1, method);
  lua_insert(L, top + 1);
  lua_insert(L, top + 2);            /* method, lower, args... */
  int r = 0;
  if (lua_pcall(L, nargs + 1, 3, 0) != 0) r = uv_code(lua_tostring(L, -1));
  else if (lua_isnil(L, -3)) r = lua_isstring(L, -1) ? uv_code(lua_tostring(L, -1)) : uv_code(lua_tostring(L, -2));
  lua_settop(L, top);
  return r;
}

static int on_low_write(lua_State *L);
static void tls_fail_handshake(tls_stream *t, const char *msg, const char *name);

/* Send the ciphertext the engine has (if any); w/q: what waits for it. */
static int send_out(tls_stream *t, coru_wreq *w) {
  lua_State *L = coru_R->L;
  char *p;
  long n = BIO_get_mem_data(t->eng->wbio, &p);
  if (n <= 0 && !w) return 0;
  lua_checkstack(L, 8);
  lua_pushlstring(L, p, n > 0 ? (size_t)n : 0);
  (void)BIO_reset(t->eng->wbio);
  tls_tok *k = push_tok(L, on_low_write);
  k->w = w;
  tok_link(t, k);
  int r = low_call(L, t, "write", 2);
  if (r < 0) tok_unlink(k);
  return r;
}

/* The lower took (or failed) a write. */
static int on_low_write(lua_State *L) {
  tls_tok *k = lua_touserdata(L, lua_upvalueindex(1));
  tls_stream *t = k->t;
  if (!t) return 0;
  coru_wreq *w = k->w;
  int status = lua_isnil(L, 1) ? 0 : uv_code(lua_tostring(L, 1));
  tok_unlink(k);
  if (w) coru_stream_write_done(&t->s, w, status);
  return 0;
}

static int on_low_shutdown(lua_State *L) {
  tls_tok *k = lua_touserdata(L, lua_upvalueindex(1));
  tls_stream *t = k->t;
  if (!t) return 0;
  coru_sreq *q = k->q;
  int status = lua_isnil(L, 1) ? 0 : uv_code(lua_tostring(L, 1));
  tok_unlink(k);
  coru_stream_shutdown_done(&t->s, q, status);
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
  tls_stream *t = (tls_stream *)((char *)c - offsetof(tls_stream, hs));
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
    if (r == CORU_TLS_ERROR) { tls_fail_handshake(t, e->err, e->ename); return; }
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
    if (BIO_ctrl_pending(e->wbio)) send_out(t, NULL);   /* tickets, key updates, close_notify reply */
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
      if (!t->hs_state) {
        lua_pushfstring(L, "ETLS: handshake failed: %s", msg ? msg : "transport error");
        tls_fail_handshake(t, lua_tostring(L, -1), uv_err_name(uv_code(msg)));
      } else {
        snprintf(e->err, sizeof e->err, "%s", msg ? msg : "transport error");
        coru_stream_feed_end(&t->s, uv_code(msg));
      }
    } else {                                     /* the transport ended */
      int r = coru_tls_eof(e);
      if (!t->hs_state) tls_fail_handshake(t, e->err, e->ename);
      else coru_stream_feed_end(&t->s, r == CORU_TLS_CLOSED ? UV_EOF : UV_ECONNABORTED);
    }
    return 0;
  }
  size_t n;
  const char *p = lua_tolstring(L, 2, &n);
  if (coru_tls_feed(e, p, n) != CORU_TLS_OK) {
    if (!t->hs_state) tls_fail_handshake(t, e->err, e->ename);
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

static int tp_write(coru_stream *s, coru_wreq *w, const uv_buf_t *bufs, unsigned n) {
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
  long len = BIO_get_mem_data(t->eng->wbio, &p);
  if (len <= 0) return (int)total;
  lua_State *L = coru_R->L;
  lua_checkstack(L, 8);
  int top = lua_gettop(L);
  lua_pushlstring(L, p, (size_t)len);            /* top + 1: the ciphertext */
  (void)BIO_reset(t->eng->wbio);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->low_ref);
  coru_box *box = lua_touserdata(L, -1);
  if (!box || !box->h || box->h->closing) { lua_settop(L, top); return UV_ECANCELED; }
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
    tls_tok *k = push_tok(L, on_low_write);
    tok_link(t, k);
    r = low_call(L, t, "write", 2);
    if (r < 0) tok_unlink(k);
  }
  lua_settop(L, top);
  return r < 0 ? r : (int)total;
}

static int tp_shutdown(coru_stream *s, coru_sreq *q) {
  tls_stream *t = (tls_stream *)s;
  if (t->hs_state == 1 && coru_tls_close_notify(t->eng) != CORU_TLS_OK) return UV_EPROTO;
  int r = send_out(t, NULL);
  if (r < 0) return r;
  lua_State *L = coru_R->L;
  tls_tok *k = push_tok(L, on_low_shutdown);
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
  if (!t->hs_state) {
    t->hs_state = 2;
    lua_State *S = coru_cont_begin(&t->hs);
    if (S) coru_cont_fail_str(&t->hs, "closed", NULL);
  }
  if (t->rtok) { t->rtok->t = NULL; t->rtok = NULL; }
  /* writes and shutdowns waiting on the lower: settle them now */
  while (t->toks) {
    tls_tok *k = t->toks;
    coru_wreq *w = k->w;
    coru_sreq *q = k->q;
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
static int l_wrap(lua_State *L) {
  coru_stream *low = coru_check_stream(L, 1);
  tls_ctx *c = checkctx(L, 2);
  int server = lua_toboolean(L, 3);
  const char *sni = luaL_optstring(L, 4, NULL);
  const char *vh = luaL_optstring(L, 5, NULL);
  lua_Number ms = luaL_optnumber(L, 6, 0);
  int cbidx = coru_enter(L, 7, "coru.tls.wrap", 0) == CORU_MODE_CB ? 7 : 0;
  if (low->rmode) return luaL_error(L, "coru.tls.wrap: the stream is being read (stop its reader first)");
  if (c->server != server)
    return luaL_error(L, "coru.tls.wrap: a %s needs a %s context", server ? "server" : "client",
                      server ? "server" : "client");
  tls_stream *t = coru_handle_alloc(L, &tls_type, sizeof *t, offsetof(tls_stream, idle));
  int box = lua_gettop(L);
  t->low_ref = t->rcb_ref = LUA_NOREF;
  t->hs.cb_ref = LUA_NOREF;
  int r = uv_idle_init(coru_R->loop, &t->idle);
  if (r < 0) { coru_handle_init_failed(L, &t->s.base); return coru_fail(L, r, NULL); }
  coru_stream_init(&t->s, &tls_transport);
  t->low = &low->base;
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
  if (ms > 0) t->hs_dl = coru_deadline_start((uint64_t)ms, hs_timeout, t);
  /* the first step runs from the loop, so that a result is never ready
   * before this call has suspended */
  t->start_dl = coru_deadline_start(0, tls_start, t);
  lua_settop(L, box);
  return coru_cont_yield(L, &t->hs, 0);
}

static int l_tls_error(lua_State *L) {
  tls_stream *t = checktls(L);
  if (!t->eng->err[0]) return 0;
  lua_pushstring(L, t->eng->err);
  lua_pushstring(L, t->eng->ename);
  return 2;
}

static int l_version(lua_State *L) {
  tls_stream *t = checktls(L);
  if (!t->eng->done) return 0;
  lua_pushstring(L, SSL_get_version(t->eng->ssl));
  return 1;
}

static int l_cipher(lua_State *L) {
  tls_stream *t = checktls(L);
  const SSL_CIPHER *ci = SSL_get_current_cipher(t->eng->ssl);
  if (!ci) return 0;
  lua_pushstring(L, SSL_CIPHER_get_name(ci));
  lua_pushinteger(L, SSL_CIPHER_get_bits(ci, NULL));
  return 2;
}

static int l_alpn(lua_State *L) {
  tls_stream *t = checktls(L);
  const unsigned char *p;
  unsigned n;
  SSL_get0_alpn_selected(t->eng->ssl, &p, &n);
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

static void push_name(lua_State *L, X509_NAME *nm) {
  BIO *b = BIO_new(BIO_s_mem());
  if (!b) { lua_pushnil(L); return; }
  X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p, n > 0 ? (size_t)n : 0);
  BIO_free(b);
}

static void push_time(lua_State *L, const ASN1_TIME *tm, const char *k, const char *kt) {
  struct tm t;
  BIO *b = BIO_new(BIO_s_mem());
  if (b && ASN1_TIME_print(b, tm)) {
    char *p;
    long n = BIO_get_mem_data(b, &p);
    lua_pushlstring(L, p, (size_t)n);
    lua_setfield(L, -2, k);
  }
  BIO_free(b);
  if (ASN1_TIME_to_tm(tm, &t)) {
    lua_pushnumber(L, (lua_Number)timegm(&t));
    lua_setfield(L, -2, kt);
  }
}

static void push_digest(lua_State *L, X509 *x, const EVP_MD *md, const char *k) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (!X509_digest(x, md, d, &n)) return;
  char hex[EVP_MAX_MD_SIZE * 3 + 1];
  for (unsigned i = 0; i < n; i++) snprintf(hex + 3 * i, 4, "%02X:", d[i]);
  hex[n ? 3 * n - 1 : 0] = 0;
  lua_pushstring(L, hex);
  lua_setfield(L, -2, k);
}

/* peer_certificate(): {subject, issuer, not_before, not_after, valid_from,
 * valid_to (epoch seconds), serial, fingerprint_sha256, fingerprint_sha1,
 * subject_alt_names = {...}, common_name} or nil. */
static int l_peer_cert(lua_State *L) {
  coru_tls *t = checktls(L)->eng;
  X509 *x = SSL_get1_peer_certificate(t->ssl);
  if (!x) return 0;
  lua_createtable(L, 0, 12);
  push_name(L, X509_get_subject_name(x));
  lua_setfield(L, -2, "subject");
  push_name(L, X509_get_issuer_name(x));
  lua_setfield(L, -2, "issuer");
  char cn[256];
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn) > 0) {
    lua_pushstring(L, cn);
    lua_setfield(L, -2, "common_name");
  }
  push_time(L, X509_get0_notBefore(x), "not_before", "valid_from");
  push_time(L, X509_get0_notAfter(x), "not_after", "valid_to");
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  if (hex) { lua_pushstring(L, hex); lua_setfield(L, -2, "serial"); }
  OPENSSL_free(hex);
  BN_free(bn);
  push_digest(L, x, EVP_sha256(), "fingerprint_sha256");
  push_digest(L, x, EVP_sha1(), "fingerprint_sha1");
  GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
  lua_newtable(L);
  for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
    GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
    if (g->type == GEN_DNS) {
      lua_pushfstring(L, "DNS:%s", (const char *)ASN1_STRING_get0_data(g->d.dNSName));
    } else if (g->type == GEN_IPADD) {
      char ip[64] = "?";
      int l = ASN1_STRING_length(g->d.iPAddress);
      const unsigned char *a = ASN1_STRING_get0_data(g->d.iPAddress);
      if (l == 4) inet_ntop(AF_INET, a, ip, sizeof ip);
      else if (l == 16) inet_ntop(AF_INET6, a, ip, sizeof ip);
      lua_pushfstring(L, "IP:%s", ip);
    } else {
      continue;
    }
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  }
  GENERAL_NAMES_free(gens);
  lua_setfield(L, -2, "subject_alt_names");
  lua_pushboolean(L, SSL_get_verify_result(t->ssl) == X509_V_OK);
  lua_setfield(L, -2, "verified");
  X509_free(x);
  ERR_clear_error();
  return 1;
}

static const coru_Reg tls_methods[] = {
  {"peer_certificate", l_peer_cert, 0},
  {"cipher", l_cipher, 0},
  {"version", l_version, 0},
  {"alpn", l_alpn, 0},
  {"tls_error", l_tls_error, 0},
  {"transport", l_transport, 0},
  {NULL, NULL, 0}
};

static coru_htype tls_type = {"coru.tls", CORU_K_TLS, CORU_K_TLS, NULL, tls_on_close, tls_on_free, NULL};

static const luaL_Reg ctx_methods[] = {
  {"is_server", l_ctx_is_server},
  {NULL, NULL}
};

static int l_live(lua_State *L) {
  lua_pushinteger(L, live_engines);
  return 1;
}

static int l_openssl_version(lua_State *L) {
  lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
  return 1;
}

CORU_FAMILY(tls) {
  if (alpn_idx < 0) alpn_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
  luaL_newmetatable(L, CTX_MT);
  lua_newtable(L);
  luaL_register(L, NULL, ctx_methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_ctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_ctx_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  coru_register_stream_type(L, &tls_type, tls_methods);
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
  lua_pushcfunction(L, l_context);
  lua_setfield(L, -2, "context");
  static const coru_Reg funcs[] = {{"wrap", l_wrap, CORU_YIELDS}, {NULL, NULL, 0}};
  coru_setfuncs(L, funcs);
  lua_pushcfunction(L, l_openssl_version);
  lua_setfield(L, -2, "openssl_version");
  lua_pushcfunction(L, l_live);
  lua_setfield(L, -2, "live");
  lua_setfield(L, -2, "_tls");
}
