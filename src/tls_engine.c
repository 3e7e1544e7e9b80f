/*
 * tls_engine.c - the TLS engine (tls.h): OpenSSL 3 over memory BIOs, pure C,
 * no Lua and no I/O. Its struct is private to this file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "tls.h"

/* ---------------------------------------------------------------- engine */

struct coru_tls {
  SSL *ssl;
  BIO *rbio, *wbio;     /* network side: what came in, what goes out */
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


long coru_tls_live(void) { return live_engines; }

long coru_tls_out(coru_tls *t, char **p) { return BIO_get_mem_data(t->wbio, p); }
void coru_tls_out_clear(coru_tls *t) { (void)BIO_reset(t->wbio); }

/* The transport's own failure, as the message coru_tls_error() gives (its kind is kept). */
void coru_tls_set_error(coru_tls *t, const char *msg) { snprintf(t->err, sizeof t->err, "%s", msg); }
