/*
 * tls_ctx.c - TLS contexts (coru.tls.context(opts): certificates, keys,
 * verification, versions, ALPN) and a peer certificate as a Lua table.
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

/* --------------------------------------------------------------- contexts */


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
    const char *what = lua_pushfstring(L, "option '%s'", k);
    s = coru_cstr_at(L, -2, "coru.tls", what);
    lua_pop(L, 1);
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
int coru_tls_l_context(lua_State *L) {
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

  coru_tls_ctx *c = lua_newuserdata(L, sizeof *c);
  c->ctx = ctx;
  c->server = server;
  luaL_getmetatable(L, CTX_MT);
  lua_setmetatable(L, -2);
  return 1;
}

coru_tls_ctx *coru_tls_checkctx(lua_State *L, int idx) {
  coru_tls_ctx *c = luaL_checkudata(L, idx, CTX_MT);
  if (!c->ctx) luaL_argerror(L, idx, "context is freed");
  return c;
}

static int l_ctx_gc(lua_State *L) {
  coru_tls_ctx *c = coru_test_udata(L, 1, CTX_MT);
  if (!c) return 0;
  if (c->ctx) SSL_CTX_free(c->ctx);   /* connections hold their own reference */
  c->ctx = NULL;
  return 0;
}

static int l_ctx_is_server(lua_State *L) {
  lua_pushboolean(L, coru_tls_checkctx(L, 1)->server);
  return 1;
}

static int l_ctx_tostring(lua_State *L) {
  coru_tls_ctx *c = luaL_checkudata(L, 1, CTX_MT);
  lua_pushfstring(L, "coru.tls.context: %p (%s)", (void *)c, c->server ? "server" : "client");
  return 1;
}


static const luaL_Reg ctx_methods[] = {
  {"is_server", l_ctx_is_server},
  {NULL, NULL}
};

void coru_tls_open_ctx(lua_State *L) {
  if (alpn_idx < 0) alpn_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, alpn_free);
  static const luaL_Reg meta[] = {{"__gc", l_ctx_gc}, {"__tostring", l_ctx_tostring}, {NULL, NULL}};
  coru_newmt(L, CTX_MT, meta, ctx_methods);
  lua_pop(L, 1);
}

/* ------------------------------------------------------- certificates */

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
int coru_tls_push_peer_cert(lua_State *L, SSL *ssl) {
  X509 *x = SSL_get1_peer_certificate(ssl);
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
  lua_pushboolean(L, SSL_get_verify_result(ssl) == X509_V_OK);
  lua_setfield(L, -2, "verified");
  X509_free(x);
  ERR_clear_error();
  return 1;
}

