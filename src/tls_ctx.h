/*
 * tls_ctx.h - what tls_ctx.c (contexts, certificates) gives the TLS stream.
 */
#ifndef CORU_TLS_CTX_H
#define CORU_TLS_CTX_H

#include "coru.h"
#include "tls.h"

typedef struct { SSL_CTX *ctx; int server; } coru_tls_ctx;

coru_tls_ctx *coru_tls_checkctx(lua_State *L, int idx);  /* a live context or argerror */
int coru_tls_l_context(lua_State *L);                      /* coru._tls.context(opts) */
int coru_tls_push_peer_cert(lua_State *L, SSL *ssl);       /* the table, or nothing (0) */
void coru_tls_open_ctx(lua_State *L);                       /* the context metatable */

#endif
