/*
 * tls_engine_test.c - the TLS engine (src/tls_engine.c, tls.h) in plain C:
 * two engines in memory, a client and a server, wired to each other by
 * hand (what one takes the other is fed). The handshake, data both ways,
 * a refused certificate, close_notify and a truncated end. Run by
 * `make test` (test-c). Exit status 0 when all pass.
 */
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include "tls.h"

static int failures, checks;
#define CHECK(cond) do { checks++; if (!(cond)) { failures++; \
  fprintf(stderr, "tls_engine_test.c:%d: FAILED: %s\n", __LINE__, #cond); } } while (0)

/* A self-signed certificate for name (SAN DNS), made in memory. */
static X509 *make_cert(EVP_PKEY *key, const char *name) {
  X509 *x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME *nm = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
  X509_set_issuer_name(x, nm);
  char san[128];
  snprintf(san, sizeof san, "DNS:%s", name);
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  X509_sign(x, key, EVP_sha256());
  return x;
}

/* Move every ciphertext byte from one engine to the other. Returns the count. */
static size_t pump(coru_tls *from, coru_tls *to) {
  char *p;
  long n = coru_tls_out(from, &p);
  if (n <= 0) return 0;
  CHECK(coru_tls_feed(to, p, (size_t)n) == CORU_TLS_OK);
  coru_tls_out_clear(from);
  return (size_t)n;
}

/* Drive both handshakes until neither has anything to say. Returns the
 * client's last result. */
static int handshake(coru_tls *c, coru_tls *s, int *srv) {
  int rc = CORU_TLS_WANT, rs = CORU_TLS_WANT;
  for (int i = 0; i < 20; i++) {
    if (rc == CORU_TLS_WANT) rc = coru_tls_handshake(c);
    size_t moved = pump(c, s);
    if (rs == CORU_TLS_WANT) rs = coru_tls_handshake(s);
    moved += pump(s, c);
    if (rc != CORU_TLS_WANT && rs != CORU_TLS_WANT && !moved) break;
    if (rc == CORU_TLS_ERROR || rs == CORU_TLS_ERROR) { pump(c, s); pump(s, c); break; }
  }
  *srv = rs;
  return rc;
}

static int read_all(coru_tls *t, char *out, size_t cap, size_t *len) {
  size_t n;
  int r;
  *len = 0;
  while ((r = coru_tls_read(t, out + *len, cap - *len, &n)) == CORU_TLS_OK) *len += n;
  return r;
}

int main(void) {
  EVP_PKEY *key = EVP_EC_gen("P-256");
  X509 *cert = key ? make_cert(key, "localhost") : NULL;
  CHECK(key && cert);
  if (!key || !cert) return 1;
  SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
  CHECK(SSL_CTX_use_certificate(sctx, cert) == 1 && SSL_CTX_use_PrivateKey(sctx, key) == 1);
  SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), cert);

  /* 1. handshake, then data both ways, then close_notify */
  coru_tls *c = coru_tls_new(cctx, 0, "localhost", "localhost");
  coru_tls *s = coru_tls_new(sctx, 1, NULL, NULL);
  CHECK(c && s && coru_tls_live() == 2);
  int rs, rc = handshake(c, s, &rs);
  CHECK(rc == CORU_TLS_OK && rs == CORU_TLS_OK);
  CHECK(coru_tls_handshake_done(c) && coru_tls_handshake_done(s));
  char big[50000], got[60000];
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
  size_t n;
  CHECK(coru_tls_write(c, "ping", 4) == CORU_TLS_OK);
  pump(c, s);
  CHECK(read_all(s, got, sizeof got, &n) == CORU_TLS_WANT && n == 4 && memcmp(got, "ping", 4) == 0);
  CHECK(coru_tls_write(s, big, sizeof big) == CORU_TLS_OK);   /* several records */
  CHECK(coru_tls_pending(s) > sizeof big);
  pump(s, c);
  CHECK(read_all(c, got, sizeof got, &n) == CORU_TLS_WANT && n == sizeof big &&
        memcmp(got, big, sizeof big) == 0);
  CHECK(coru_tls_close_notify(c) != CORU_TLS_ERROR);
  pump(c, s);
  CHECK(read_all(s, got, sizeof got, &n) == CORU_TLS_CLOSED && n == 0);
  CHECK(coru_tls_eof(s) == CORU_TLS_CLOSED);   /* the transport ends after close_notify: clean */
  coru_tls_free(c);
  coru_tls_free(s);
  CHECK(coru_tls_live() == 0);

  /* 2. the transport ends without close_notify: ETRUNCATED */
  c = coru_tls_new(cctx, 0, "localhost", "localhost");
  s = coru_tls_new(sctx, 1, NULL, NULL);
  rc = handshake(c, s, &rs);
  CHECK(rc == CORU_TLS_OK && rs == CORU_TLS_OK);
  CHECK(coru_tls_eof(c) == CORU_TLS_ERROR);
  CHECK(strcmp(coru_tls_error_name(c), CORU_TLS_ETRUNC) == 0);
  coru_tls_free(c);
  coru_tls_free(s);

  /* 3. the wrong host name: the client refuses the certificate (ECERT) */
  c = coru_tls_new(cctx, 0, "example.org", "example.org");
  s = coru_tls_new(sctx, 1, NULL, NULL);
  rc = handshake(c, s, &rs);
  CHECK(rc == CORU_TLS_ERROR);
  CHECK(strcmp(coru_tls_error_name(c), CORU_TLS_ECERT) == 0);
  CHECK(strstr(coru_tls_error(c), "ECERT: certificate verify failed") == coru_tls_error(c));
  coru_tls_free(c);
  coru_tls_free(s);

  /* 4. plain text where a record is expected: ETLS */
  s = coru_tls_new(sctx, 1, NULL, NULL);
  const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(coru_tls_feed(s, http, strlen(http)) == CORU_TLS_OK);
  CHECK(coru_tls_handshake(s) == CORU_TLS_ERROR);
  CHECK(strcmp(coru_tls_error_name(s), CORU_TLS_ENAME) == 0);
  coru_tls_free(s);
  CHECK(coru_tls_live() == 0);

  SSL_CTX_free(cctx);
  SSL_CTX_free(sctx);
  X509_free(cert);
  EVP_PKEY_free(key);
  printf("tls_engine_test: %d checks, %d failed\n", checks, failures);
  return failures != 0;
}
