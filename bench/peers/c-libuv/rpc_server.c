/* W2 server for raw C on libuv: callbacks, no coroutines (the floor). Each
 * line is validated as JSON by a small recursive-descent parser that keeps
 * the top-level "name" and "req_id"; patch -> ack, anything else -> error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef struct { uv_tcp_t tcp; char *buf; size_t len, cap; } conn;

/* ---- a JSON validator: returns the end of the value or NULL */
static const char *ws(const char *p, const char *e) { while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++; return p; }
static const char *value(const char *p, const char *e, int depth);
static const char *string(const char *p, const char *e) {
  if (p >= e || *p != '"') return NULL;
  for (p++; p < e; p++) {
    if (*p == '"') return p + 1;
    if ((unsigned char)*p < 0x20) return NULL;
    if (*p == '\\') {
      if (++p >= e) return NULL;
      if (*p == 'u') { for (int k = 0; k < 4; k++) if (++p >= e || !strchr("0123456789abcdefABCDEF", *p)) return NULL; }
      else if (!strchr("\"\\/bfnrt", *p)) return NULL;
    }
  }
  return NULL;
}
static const char *number(const char *p, const char *e) {
  const char *s = p;
  if (p < e && *p == '-') p++;
  if (p >= e || *p < '0' || *p > '9') return NULL;
  while (p < e && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-')) p++;
  return p > s ? p : NULL;
}
static const char *composite(const char *p, const char *e, int depth, char close, int keys) {
  p = ws(p + 1, e);
  if (p < e && *p == close) return p + 1;
  for (;;) {
    if (keys) { p = string(ws(p, e), e); if (!p) return NULL; p = ws(p, e); if (p >= e || *p++ != ':') return NULL; }
    p = value(p, e, depth + 1);
    if (!p) return NULL;
    p = ws(p, e);
    if (p < e && *p == ',') { p++; continue; }
    if (p < e && *p == close) return p + 1;
    return NULL;
  }
}
static const char *value(const char *p, const char *e, int depth) {
  p = ws(p, e);
  if (p >= e || depth > 64) return NULL;
  switch (*p) {
  case '{': return composite(p, e, depth, '}', 1);
  case '[': return composite(p, e, depth, ']', 0);
  case '"': return string(p, e);
  case 't': return e - p >= 4 && !memcmp(p, "true", 4) ? p + 4 : NULL;
  case 'f': return e - p >= 5 && !memcmp(p, "false", 5) ? p + 5 : NULL;
  case 'n': return e - p >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL;
  default: return number(p, e);
  }
}
/* a valid object whose top-level "name" is "patch": its req_id (text) */
static int parse(const char *p, const char *e, const char **id, size_t *idlen) {
  const char *end = value(p, e, 0);
  if (!end || ws(end, e) != e) return 0;
  p = ws(p, e);
  if (*p != '{') return 0;
  int patch = 0;
  *id = NULL;
  p = ws(p + 1, e);
  while (p < e && *p != '}') {
    const char *k = p, *ke = string(p, e);
    p = ws(ke, e) + 1;
    const char *v = ws(p, e), *ve = value(v, e, 1);
    if (ke - k == 6 && !memcmp(k, "\"name\"", 6)) patch = ve - v == 7 && !memcmp(v, "\"patch\"", 7);
    if (ke - k == 8 && !memcmp(k, "\"req_id\"", 8)) { *id = v; *idlen = (size_t)(ve - v); }
    p = ws(ve, e);
    if (*p == ',') p = ws(p + 1, e);
  }
  return patch && *id;
}

static void on_close(uv_handle_t *h) { conn *c = (conn *)h; free(c->buf); free(c); }
static void on_write(uv_write_t *w, int st) { (void)st; free(w->data); free(w); }
static void alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  conn *c = (conn *)h;
  if (c->cap - c->len < 65536) { c->cap = c->len + 65536 + hint; c->buf = realloc(c->buf, c->cap); }
  *b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len));
}
static void reply(conn *c, const char *s, size_t n) {
  uv_write_t *w = malloc(sizeof *w);
  w->data = malloc(n);
  memcpy(w->data, s, n);
  uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
  uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
}
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  conn *c = (conn *)s;
  if (n < 0) { uv_close((uv_handle_t *)s, on_close); return; }
  c->len += (size_t)n;
  char *start = c->buf, *nl;
  while ((nl = memchr(start, '\n', c->len - (size_t)(start - c->buf)))) {
    const char *id; size_t idlen; char out[128];
    if (parse(start, nl, &id, &idlen) && idlen < 64) {
      int k = snprintf(out, sizeof out, "{\"name\":\"ack\",\"req_id\":%.*s}\n", (int)idlen, id);
      reply(c, out, (size_t)k);
    } else {
      reply(c, "{\"name\":\"error\",\"req_id\":null}\n", 31);
    }
    start = nl + 1;
  }
  c->len -= (size_t)(start - c->buf);
  memmove(c->buf, start, c->len);
}
static void on_conn(uv_stream_t *server, int st) {
  if (st < 0) return;
  conn *c = calloc(1, sizeof *c);
  uv_tcp_init(server->loop, &c->tcp);
  if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) {
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, alloc, on_read);
  } else uv_close((uv_handle_t *)&c->tcp, on_close);
}
int main(void) {
  const char *host = getenv("HOST") ? getenv("HOST") : "127.0.0.1";
  int port = getenv("PORT") ? atoi(getenv("PORT")) : 7001;
  uv_tcp_t server;
  struct sockaddr_in a;
  uv_ip4_addr(host, port, &a);
  uv_tcp_init(uv_default_loop(), &server);
  if (uv_tcp_bind(&server, (struct sockaddr *)&a, 0) || uv_listen((uv_stream_t *)&server, 1024, on_conn)) return 1;
  printf("READY port=%d\n", port);
  fflush(stdout);
  return uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}
