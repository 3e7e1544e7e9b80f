/*
 * tcp.c - TCP handles (luv's API) on the shared stream layer: new_tcp,
 * bind (with reuseport), connect (three modes, connect timeout),
 * nodelay, keepalive, simultaneous_accepts, getsockname, getpeername, open.
 */
#include <stdlib.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include "stream.h"
#include "check.h"

static coru_htype tcp_type;

static coru_uvstream *checktcp(lua_State *L, int idx) {
  return (coru_uvstream *)coru_check_handle(L, idx, &tcp_type);
}

static int l_new_tcp(lua_State *L) {
  int af = coru_family_arg(L, 1);
  coru_uvstream *u = coru_uvstream_alloc(L, &tcp_type, CORU_UVSTREAM_SIZE(uv_tcp_t));
  return coru_handle_inited(L, &u->s.base, uv_tcp_init_ex(coru_R->loop, &u->u.tcp, (unsigned)af));
}

/* bind(host, port [, {ipv6only=, reuseport=}]) */
static int l_tcp_bind(lua_State *L) {
  coru_uvstream *u = checktcp(L, 1);
  const char *host = coru_check_cstr(L, 2, NULL);
  int port = coru_check_port(L, 3);
  struct sockaddr_storage ss;
  if (coru_parse_addr(L, host, port, &ss) < 0) return coru_fail(L, UV_EINVAL, host);
  unsigned flags = coru_opt_flag(L, 4, "ipv6only") ? UV_TCP_IPV6ONLY : 0;
  if (coru_opt_flag(L, 4, "reuseport")) {
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&u->u.tcp, &fd) < 0) {
      fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) return coru_fail(L, uv_translate_sys_error(errno), "socket");
      int r = uv_tcp_open(&u->u.tcp, fd);
      if (r < 0) { close(fd); return coru_fail(L, r, NULL); }
    }
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0)
      return coru_fail(L, uv_translate_sys_error(errno), "SO_REUSEPORT");
  }
  int r = uv_tcp_bind(&u->u.tcp, (struct sockaddr *)&ss, flags);
  if (r == 0 && port != 0) {
    /* libuv keeps a bind's EADDRINUSE for listen/connect; the socket is
     * then not bound: say it here, where it happened */
    struct sockaddr_storage got;
    int len = sizeof got;
    if (uv_tcp_getsockname(&u->u.tcp, (struct sockaddr *)&got, &len) != 0 ||
        (got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                  : ((struct sockaddr_in6 *)&got)->sin6_port) == 0)
      r = UV_EADDRINUSE;
  }
  if (r < 0) {
    char detail[80];
    snprintf(detail, sizeof detail, "%s:%d", host, port);
    return coru_fail(L, r, detail);
  }
  lua_pushinteger(L, 0);
  return 1;
}

/* ---------------------------------------------------------------- connect */

typedef struct {
  uv_connect_t req;
  coru_cont cont;
  coru_uvstream *u;
  coru_deadline *dl;
  char detail[72];
} conn_req;

static void connect_cb(uv_connect_t *req, int status) {
  conn_req *c = container_of(req, conn_req, req);
  coru_uvstream *u = c->u;
  if (c->dl) { coru_deadline_stop(c->dl); c->dl = NULL; }
  /* release before the wakeup: the task may run to its next suspension */
  coru_handle_release(coru_R->L, &u->s.base);
  coru_cont_complete(&c->cont, status, u->s.base.closing, c->detail);
  free(c);
}

/* The connect cannot be withdrawn: a timeout or a cancelled task closes
 * the handle (the request then completes with ECANCELED, discarded). */
static void connect_timeout(void *data) {
  conn_req *c = data;
  c->dl = NULL;
  lua_State *S = coru_cont_begin(&c->cont);
  if (!c->u->s.base.closing) coru_handle_close(coru_R->L, &c->u->s.base);
  if (S) coru_cont_fail_str(&c->cont, "timeout", NULL);
}

static void connect_cancel(coru_cont *cont) {
  conn_req *c = container_of(cont, conn_req, cont);
  if (c->dl) { coru_deadline_stop(c->dl); c->dl = NULL; }
  if (!c->u->s.base.closing) coru_handle_close(coru_R->L, &c->u->s.base);
}

int coru_connect_start(lua_State *L, coru_uvstream *u, int cbidx, const char *fname,
                       const struct sockaddr *sa, const char *pipename, const char *detail) {
  if (coru_enter(L, cbidx, fname, 0) != CORU_MODE_CB) cbidx = 0;
  conn_req *c = malloc(sizeof *c);
  if (!c) return luaL_error(L, "out of memory");
  c->u = u;
  c->dl = NULL;
  snprintf(c->detail, sizeof c->detail, "%s", detail);
  int mode = coru_cont_init(L, &c->cont, cbidx, connect_cancel);
  if (sa) {
    int r = uv_tcp_connect(&c->req, &u->u.tcp, sa, connect_cb);
    if (r < 0) { coru_cont_clear(L, &c->cont); free(c); return coru_fail(L, r, detail); }
  } else {
    uv_pipe_connect(&c->req, &u->u.pipe, pipename, connect_cb);
  }
  if (mode == CORU_MODE_TASK && u->s.to_connect)
    c->dl = coru_deadline_start(u->s.to_connect, connect_timeout, c);
  return coru_handle_yield(L, &u->s.base, &c->cont);
}

/* connect(host, port [, cb]) */
static int l_tcp_connect(lua_State *L) {
  coru_uvstream *u = checktcp(L, 1);
  const char *host = coru_check_cstr(L, 2, NULL);
  int port = coru_check_port(L, 3);
  char detail[72];
  snprintf(detail, sizeof detail, "%s:%d", host, port);
  struct sockaddr_storage ss;
  if (coru_parse_addr(L, host, port, &ss) < 0) return coru_fail(L, UV_EINVAL, detail);
  return coru_connect_start(L, u, 4, "tcp:connect", (struct sockaddr *)&ss, NULL, detail);
}

/* ------------------------------------------------------------ options */

static int l_tcp_nodelay(lua_State *L) {
  int r = uv_tcp_nodelay(&checktcp(L, 1)->u.tcp, lua_toboolean(L, 2));
  return coru_result(L, r, NULL);
}

static int l_tcp_keepalive(lua_State *L) {
  coru_uvstream *u = checktcp(L, 1);
  int on = lua_toboolean(L, 2);
  unsigned delay = (unsigned)coru_opt_int(L, 3, 0, CORU_INT_MAX, 60, "keepalive");
  if (on && delay < 1) luaL_argerror(L, 3, "delay must be >= 1 second");
  int r = uv_tcp_keepalive(&u->u.tcp, on, delay);
  return coru_result(L, r, NULL);
}

static int l_tcp_simultaneous_accepts(lua_State *L) {
  int r = uv_tcp_simultaneous_accepts(&checktcp(L, 1)->u.tcp, lua_toboolean(L, 2));
  return coru_result(L, r, NULL);
}

static int l_tcp_open(lua_State *L) {
  coru_uvstream *u = checktcp(L, 1);
  int fd = coru_check_fd_of(L, 2, UV_TCP, "tcp_open"), r = fd < 0 ? fd : uv_tcp_open(&u->u.tcp, fd);
  return coru_result(L, r, NULL);
}

static int l_tcp_getsockname(lua_State *L) { return coru_push_sockname(L, (uv_handle_t *)&checktcp(L, 1)->u.tcp, 0); }
static int l_tcp_getpeername(lua_State *L) { return coru_push_sockname(L, (uv_handle_t *)&checktcp(L, 1)->u.tcp, 1); }

/* tcp_close_reset(t [, cb]): close with RST instead of FIN (SO_LINGER 0,
 * then an ordinary close, cb after it as for close). As libuv's
 * uv_tcp_close_reset: EINVAL once shutdown was asked (its FIN is queued). */
static int l_tcp_close_reset(lua_State *L) {
  coru_uvstream *u = checktcp(L, 1);
  if (!lua_isnoneornil(L, 2) && !coru_is_callable(L, 2)) luaL_typerror(L, 2, "function");
  if (u->s.shut) return coru_fail(L, UV_EINVAL, "shutdown already asked");
  if (!lua_isnoneornil(L, 2)) u->s.base.close_ref = coru_ref_cb(L, 2);
  uv_os_fd_t fd;
  if (uv_fileno((uv_handle_t *)&u->u.tcp, &fd) == 0) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  coru_handle_close(L, &u->s.base);
  lua_pushinteger(L, 0);
  return 1;
}

static const coru_Fn tcp_fns[] = {
  {NULL, "new_tcp", l_new_tcp, 0}, CORU_FN(tcp, bind, 0), CORU_FN(tcp, connect, CORU_YIELDS),
  CORU_FN(tcp, nodelay, 0), CORU_FN(tcp, keepalive, 0), CORU_FN(tcp, simultaneous_accepts, 0),
  CORU_FN(tcp, open, 0), CORU_FN(tcp, getsockname, 0), CORU_FN(tcp, getpeername, 0),
  CORU_FN(tcp, close_reset, 0), CORU_FNS_END
};

static coru_htype tcp_type = {"coru.tcp", CORU_K_TCP, CORU_K_TCP, tcp_fns,
                              coru_uvstream_on_close, coru_uvstream_on_free, NULL};

CORU_FAMILY(tcp) {
  coru_register_stream_type(L, &tcp_type);
}
