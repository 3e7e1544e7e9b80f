/*
 * tls.h - the TLS engine of coru: OpenSSL 3 over memory BIOs, with no Lua
 * and no I/O in it. A transport feeds it the ciphertext it received and
 * sends what it produces; the engine turns that into a handshake, plaintext
 * and close_notify. The TLS stream (tls.c) drives it over any coru stream;
 * spec/c/tls_engine_test.c drives two of them in memory.
 */
#ifndef CORU_TLS_H
#define CORU_TLS_H

#include <stddef.h>
#include <openssl/ssl.h>

typedef struct coru_tls coru_tls;

/* Results of the engine calls. */
enum {
  CORU_TLS_OK = 0,      /* done (handshake finished, data produced) */
  CORU_TLS_WANT = 1,    /* needs more ciphertext from the peer */
  CORU_TLS_CLOSED = 2,  /* the peer sent close_notify: clean end */
  CORU_TLS_ERROR = -1   /* failed: coru_tls_error() says why */
};

/* Error kinds (the third value a Lua caller can switch on). */
#define CORU_TLS_ENAME "ETLS"        /* protocol: bad record, alert, plain text... */
#define CORU_TLS_ECERT "ECERT"       /* certificate verification failed */
#define CORU_TLS_ETRUNC "ETRUNCATED" /* transport ended without close_notify */

/* servername: SNI sent by a client (skipped for IP addresses); verify_host:
 * the name (or IP) the peer certificate must match, NULL for none. */
coru_tls *coru_tls_new(SSL_CTX *ctx, int server, const char *servername, const char *verify_host);
void coru_tls_free(coru_tls *t);

/* Ciphertext received from the transport. */
int coru_tls_feed(coru_tls *t, const char *p, size_t n);
/* Drive the handshake: OK when finished, WANT, or ERROR. */
int coru_tls_handshake(coru_tls *t);
int coru_tls_handshake_done(const coru_tls *t);
/* Plaintext: up to cap bytes into buf (*n set). OK with *n > 0, WANT,
 * CLOSED or ERROR. */
int coru_tls_read(coru_tls *t, char *buf, size_t cap, size_t *n);
/* Encrypt plaintext (all of it: the output BIO grows). OK or ERROR. */
int coru_tls_write(coru_tls *t, const char *p, size_t n);
/* Ciphertext waiting to be sent: the count (coru_tls_out below takes it). */
size_t coru_tls_pending(const coru_tls *t);
/* Queue close_notify (then send what is pending). */
int coru_tls_close_notify(coru_tls *t);
/* The transport reached its end: CLOSED if the peer said close_notify
 * before, ERROR (ETRUNCATED) otherwise. */
int coru_tls_eof(coru_tls *t);

/* The last failure: message "ETLS: reason" and its kind (static or owned by t). */
const char *coru_tls_error(const coru_tls *t);
const char *coru_tls_error_name(const coru_tls *t);
SSL *coru_tls_ssl(coru_tls *t);
/* The ciphertext waiting to be sent, in place (*p; the count, <= 0 for
 * none), and forgetting it once the transport took a copy. */
long coru_tls_out(coru_tls *t, char **p);
void coru_tls_out_clear(coru_tls *t);
/* Engines alive (the specs check none leaks). */
long coru_tls_live(void);
/* The transport failed: msg becomes coru_tls_error()'s message (the kind stays). */
void coru_tls_set_error(coru_tls *t, const char *msg);

#endif
