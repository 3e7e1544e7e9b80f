/*
 * uvstream.c - streams backed by a libuv stream (tcp, pipe, tty): their
 * transport (stream.h), listen and accept, the uv-only methods, and the
 * address helpers tcp and udp share.
 */
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include "stream.h"
#include "check.h"

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
  return coru_result(L, r, NULL);
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
  int backlog = (int)coru_opt_int(L, 2, 0, CORU_INT_MAX, 1024, "listen");
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
  return coru_result(L, r, NULL);
}

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
  coru_write_req *w = container_of(req, coru_write_req, req);
  coru_stream_write_done(w->s, w, status);
}

static int uvt_write(coru_stream *s, coru_write_req *w, const uv_buf_t *b, unsigned n) {
  return uv_write(&w->req, s->uvs, b, n, uvt_write_cb);
}

static void uvt_shutdown_cb(uv_shutdown_t *req, int status) {
  coru_shutdown_req *q = container_of(req, coru_shutdown_req, req);
  coru_stream_shutdown_done(q->s, q, status);
}

static int uvt_shutdown(coru_stream *s, coru_shutdown_req *q) {
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

int coru_push_sockname(lua_State *L, uv_handle_t *h, int peer) {
  struct sockaddr_storage ss;
  struct sockaddr *sa = (struct sockaddr *)&ss;
  int len = sizeof ss, r;
  if (h->type == UV_TCP)
    r = peer ? uv_tcp_getpeername((uv_tcp_t *)h, sa, &len) : uv_tcp_getsockname((uv_tcp_t *)h, sa, &len);
  else
    r = peer ? uv_udp_getpeername((uv_udp_t *)h, sa, &len) : uv_udp_getsockname((uv_udp_t *)h, sa, &len);
  if (r < 0) return coru_fail(L, r, NULL);
  coru_push_addr(L, sa);
  return 1;
}

int coru_family_arg(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return AF_UNSPEC;
  if (lua_type(L, idx) == LUA_TNUMBER) return (int)coru_check_int(L, idx, 0, CORU_INT_MAX, NULL);
  const char *f = coru_check_cstr(L, idx, NULL);
  if (!strcmp(f, "inet") || !strcmp(f, "ipv4")) return AF_INET;
  if (!strcmp(f, "inet6") || !strcmp(f, "ipv6")) return AF_INET6;
  if (!strcmp(f, "unix")) return AF_UNIX;
  if (!strcmp(f, "unspec")) return AF_UNSPEC;
  return luaL_argerror(L, idx, "unknown address family (inet, inet6, unix, unspec)");
}

int coru_check_port(lua_State *L, int idx) {
  lua_Integer p = coru_check_int(L, idx, 0, 65535, NULL);
  return (int)p;
}

int coru_opt_flag(lua_State *L, int idx, const char *name) {
  if (!lua_istable(L, idx)) return 0;
  lua_getfield(L, idx, name);
  int v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* ------------------------------------------------------------------ open */

/* The uv stream's part of every stream type's methods, with luv's flat
 * names (two of them stream_ prefixed). */
static const coru_Fn uvs_fns[] = {
  {"is_readable", "is_readable", l_is_readable, 0}, {"is_writable", "is_writable", l_is_writable, 0},
  {"get_write_queue_size", "stream_get_write_queue_size", l_get_write_queue_size, 0},
  {"set_blocking", "stream_set_blocking", l_set_blocking, 0},
  {"listen", "listen", l_listen, 0}, {"accept", "accept", l_accept, 0}, CORU_FNS_END
};

static const coru_Fn *const stream_fns[] = {coru_stream_read_fns, coru_stream_write_fns, uvs_fns};
#define NPARTS (sizeof stream_fns / sizeof stream_fns[0])

/* A stream type: its own methods (t->methods), then those of every stream
 * that it does not define itself. */
void coru_register_stream_type(lua_State *L, coru_htype *t) {
  coru_register_htype(L, t);
  luaL_getmetatable(L, t->name);
  lua_getfield(L, -1, "__index");
  for (size_t i = 0; i < NPARTS; i++) coru_setfns(L, stream_fns[i], CORU_METHOD_NAMES | CORU_KEEP);
  lua_pop(L, 2);
}

CORU_FAMILY(stream) {
  /* a peer closing while we write must be an error, never a signal death */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
  for (size_t i = 0; i < NPARTS; i++) coru_setfns(L, stream_fns[i], CORU_FLAT_NAMES);
}
