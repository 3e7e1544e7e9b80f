/*
 * udp.c - UDP handles (luv's API: bind, send, recv_start, multicast,
 * broadcast, connect, ...) and, inside a task, u:recv() -> data, addr.
 *
 * recv() receives only while someone waits: receiving stops as soon as the
 * waiter has its datagram, so the next ones wait in the kernel's buffer,
 * never in ours.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include "stream.h"
#include "check.h"

typedef struct {
  coru_handle base;
  uv_udp_t u;
  int recv_ref;          /* luv recv_start callback */
  coru_cont rd;          /* the task (or callback) waiting in recv() */
  unsigned char waiting, receiving;
  coru_deadline *rdl;
  uint32_t to_read;
} cudp;

static coru_htype udp_type;

static cudp *checkudp(lua_State *L, int idx) { return (cudp *)coru_check_handle(L, idx, &udp_type); }

static int l_new_udp(lua_State *L) {
  unsigned flags = AF_UNSPEC;
  if (lua_istable(L, 1)) {
    lua_getfield(L, 1, "family");
    flags = (unsigned)coru_family_arg(L, lua_gettop(L));
    lua_pop(L, 1);
    lua_getfield(L, 1, "mmsgs");
    lua_pop(L, 1);
  } else {
    flags = (unsigned)coru_family_arg(L, 1);
  }
  cudp *u = coru_handle_alloc(L, &udp_type, sizeof *u, offsetof(cudp, u));
  u->recv_ref = LUA_NOREF;
  u->rd.cb_ref = LUA_NOREF;
  int r = uv_udp_init_ex(coru_R->loop, &u->u, flags);
  if (r < 0) { coru_handle_init_failed(L, &u->base); return coru_fail(L, r, NULL); }
  return 1;
}

static int l_udp_bind(lua_State *L) {
  cudp *u = checkudp(L, 1);
  const char *host = coru_check_cstr(L, 2, NULL);
  int port = coru_check_port(L, 3);
  struct sockaddr_storage ss;
  char detail[80];
  snprintf(detail, sizeof detail, "%s:%d", host, port);
  if (coru_parse_addr(L, host, port, &ss) < 0) return coru_fail(L, UV_EINVAL, detail);
  unsigned flags = (coru_opt_flag(L, 4, "ipv6only") ? UV_UDP_IPV6ONLY : 0) |
                   (coru_opt_flag(L, 4, "reuseaddr") ? UV_UDP_REUSEADDR : 0);
  return coru_result(L, uv_udp_bind(&u->u, (struct sockaddr *)&ss, flags), detail);
}

static int l_udp_connect(lua_State *L) {
  cudp *u = checkudp(L, 1);
  if (lua_isnoneornil(L, 2)) return coru_result(L, uv_udp_connect(&u->u, NULL), NULL);
  const char *host = coru_check_cstr(L, 2, NULL);
  int port = coru_check_port(L, 3);
  struct sockaddr_storage ss;
  if (coru_parse_addr(L, host, port, &ss) < 0) return coru_fail(L, UV_EINVAL, host);
  return coru_result(L, uv_udp_connect(&u->u, (struct sockaddr *)&ss), host);
}

static int l_udp_open(lua_State *L) {
  cudp *u = checkudp(L, 1);
  int fd = coru_check_fd_of(L, 2, UV_UDP, "udp_open");
  return coru_result(L, fd < 0 ? fd : uv_udp_open(&u->u, fd), NULL);
}

static int sockname(lua_State *L, int peer) {
  cudp *u = checkudp(L, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int r = peer ? uv_udp_getpeername(&u->u, (struct sockaddr *)&ss, &len)
               : uv_udp_getsockname(&u->u, (struct sockaddr *)&ss, &len);
  if (r < 0) return coru_fail(L, r, NULL);
  coru_push_addr(L, (struct sockaddr *)&ss);
  return 1;
}
static int l_udp_getsockname(lua_State *L) { return sockname(L, 0); }
static int l_udp_getpeername(lua_State *L) { return sockname(L, 1); }

static int l_udp_set_membership(lua_State *L) {
  cudp *u = checkudp(L, 1);
  const char *maddr = coru_check_cstr(L, 2, NULL);
  const char *iface = coru_opt_cstr(L, 3, NULL, NULL);
  const char *m = coru_check_cstr(L, 4, NULL);
  uv_membership mem;
  if (!strcmp(m, "join")) mem = UV_JOIN_GROUP;
  else if (!strcmp(m, "leave")) mem = UV_LEAVE_GROUP;
  else return luaL_argerror(L, 4, "expected \"join\" or \"leave\"");
  return coru_result(L, uv_udp_set_membership(&u->u, maddr, iface, mem), maddr);
}

static int l_udp_set_multicast_loop(lua_State *L) {
  return coru_result(L, uv_udp_set_multicast_loop(&checkudp(L, 1)->u, lua_toboolean(L, 2)), NULL);
}
static int l_udp_set_multicast_ttl(lua_State *L) {
  return coru_result(L, uv_udp_set_multicast_ttl(&checkudp(L, 1)->u, (int)coru_check_int(L, 2, 0, 255, "set_multicast_ttl")), NULL);
}
static int l_udp_set_multicast_interface(lua_State *L) {
  return coru_result(L, uv_udp_set_multicast_interface(&checkudp(L, 1)->u, coru_opt_cstr(L, 2, NULL, NULL)), NULL);
}
static int l_udp_set_broadcast(lua_State *L) {
  return coru_result(L, uv_udp_set_broadcast(&checkudp(L, 1)->u, lua_toboolean(L, 2)), NULL);
}
static int l_udp_set_ttl(lua_State *L) {
  return coru_result(L, uv_udp_set_ttl(&checkudp(L, 1)->u, (int)coru_check_int(L, 2, 1, 255, "set_ttl")), NULL);
}
static int l_udp_get_send_queue_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_udp_get_send_queue_size(&checkudp(L, 1)->u));
  return 1;
}
static int l_udp_get_send_queue_count(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_udp_get_send_queue_count(&checkudp(L, 1)->u));
  return 1;
}

static int l_udp_settimeout(lua_State *L) {
  cudp *u = checkudp(L, 1);
  lua_Number ms = luaL_optnumber(L, 2, 0);
  if (ms < 0) luaL_argerror(L, 2, "must be >= 0 (milliseconds)");
  ms = (lua_Number)coru_ms_value(L, ms, 2, "settimeout");
  u->to_read = ms > 4e9 ? 4000000000u : (uint32_t)ms;
  return 0;
}

/* ------------------------------------------------------------------ send */

typedef struct {
  uv_udp_send_t req;
  coru_cont cont;
  cudp *u;
  int data_ref;
} send_req;

static void send_cb(uv_udp_send_t *req, int status) {
  send_req *q = container_of(req, send_req, req);
  lua_State *L = coru_R->L;
  coru_unref(L, &q->data_ref);
  coru_handle_release(L, &q->u->base);
  coru_cont_complete(&q->cont, status, q->u->base.closing, NULL);
  free(q);
}

/* data, host, port: bufs and address (addr NULL when host is nil: connected) */
static int send_args(lua_State *L, uv_buf_t *b, struct sockaddr_storage *ss, struct sockaddr **addr) {
  size_t len;
  b->base = (char *)luaL_checklstring(L, 2, &len);
  b->len = len;
  *addr = NULL;
  if (lua_isnoneornil(L, 3)) return 0;
  const char *host = coru_check_cstr(L, 3, NULL);
  int port = coru_check_port(L, 4);
  if (coru_parse_addr(L, host, port, ss) < 0) return UV_EINVAL;
  *addr = (struct sockaddr *)ss;
  return 0;
}

/* send(data, host, port [, cb]) */
static int l_udp_send(lua_State *L) {
  cudp *u = checkudp(L, 1);
  uv_buf_t b;
  struct sockaddr_storage ss;
  struct sockaddr *addr;
  if (send_args(L, &b, &ss, &addr) < 0) return coru_fail(L, UV_EINVAL, lua_tostring(L, 3));
  int cbidx = coru_enter(L, 5, "udp:send", 0) == CORU_MODE_CB ? 5 : 0;
  if (!cbidx) {
    int r = uv_udp_try_send(&u->u, &b, 1, addr);
    if (r >= 0) { lua_pushboolean(L, 1); return 1; }
    if (r != UV_EAGAIN) return coru_fail(L, r, NULL);
  }
  send_req *q = malloc(sizeof *q);
  if (!q) return luaL_error(L, "out of memory");
  q->u = u;
  lua_pushvalue(L, 2);
  q->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  coru_cont_init(L, &q->cont, cbidx, NULL);
  int r = uv_udp_send(&q->req, &u->u, &b, 1, addr, send_cb);
  if (r < 0) {
    coru_unref(L, &q->data_ref);
    coru_cont_clear(L, &q->cont);
    free(q);
    return coru_fail(L, r, NULL);
  }
  coru_handle_keep(L, &u->base);
  lua_pushboolean(L, 1);
  return coru_cont_yield(L, &q->cont, 1);
}

static int l_udp_try_send(lua_State *L) {
  cudp *u = checkudp(L, 1);
  uv_buf_t b;
  struct sockaddr_storage ss;
  struct sockaddr *addr;
  if (send_args(L, &b, &ss, &addr) < 0) return coru_fail(L, UV_EINVAL, lua_tostring(L, 3));
  int r = uv_udp_try_send(&u->u, &b, 1, addr);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, r);
  return 1;
}

/* --------------------------------------------------------------- receive */

static char scratch[64 * 1024];

static void udp_alloc(uv_handle_t *h, size_t sug, uv_buf_t *b) {
  (void)h; (void)sug;
  b->base = scratch;
  b->len = sizeof scratch;
}

static void recv_stop(cudp *u) {
  if (u->receiving) { u->receiving = 0; uv_udp_recv_stop(&u->u); }
}

static void waiter_clear(cudp *u) {
  u->waiting = 0;
  if (u->rdl) { coru_deadline_stop(u->rdl); u->rdl = NULL; }
  coru_handle_release(coru_R->L, &u->base);
}

static void recv_cb(uv_udp_t *h, ssize_t n, const uv_buf_t *b, const struct sockaddr *addr, unsigned flags) {
  cudp *u = h->data;
  if (n == 0 && !addr) return;   /* nothing more to read */
  lua_State *L = coru_R->L;
  if (u->recv_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->recv_ref);
    if (n < 0) { coru_push_errmsg(L, (int)n, NULL); coru_callback(1); return; }
    lua_pushnil(L);
    lua_pushlstring(L, b->base, (size_t)n);
    if (addr) coru_push_addr(L, addr); else lua_pushnil(L);
    lua_createtable(L, 0, 1);
    if (flags & UV_UDP_PARTIAL) { lua_pushboolean(L, 1); lua_setfield(L, -2, "partial"); }
    coru_callback(4);
    return;
  }
  if (!u->waiting) { recv_stop(u); return; }
  recv_stop(u);
  waiter_clear(u);
  lua_State *S = coru_cont_begin(&u->rd);
  if (!S) return;
  if (n < 0) { coru_cont_fail(&u->rd, (int)n, NULL); return; }
  lua_pushlstring(S, b->base, (size_t)n);
  if (addr) coru_push_addr(S, addr); else lua_pushnil(S);
  coru_cont_ok(&u->rd, 2);
}

static int recv_start(cudp *u) {
  if (u->receiving) return 0;
  int r = uv_udp_recv_start(&u->u, udp_alloc, recv_cb);
  if (r == 0) u->receiving = 1;
  return r;
}

static int l_udp_recv_start(lua_State *L) {
  cudp *u = checkudp(L, 1);
  int ref = coru_ref_cb(L, 2);
  if (u->waiting) { coru_unref(L, &ref); return coru_fail_str(L, "busy", NULL); }
  coru_handle_set_cb(L, &u->base, &u->recv_ref, ref);
  return coru_result(L, recv_start(u), NULL);
}

static int l_udp_recv_stop(lua_State *L) {
  cudp *u = checkudp(L, 1);
  if (u->recv_ref != LUA_NOREF) {
    coru_unref(L, &u->recv_ref);
    coru_handle_release(L, &u->base);
    recv_stop(u);
  }
  lua_pushinteger(L, 0);
  return 1;
}

static void recv_timeout(void *data) {
  cudp *u = data;
  u->rdl = NULL;
  if (!u->waiting) return;
  recv_stop(u);
  waiter_clear(u);
  if (coru_cont_begin(&u->rd)) coru_cont_fail_str(&u->rd, "timeout", NULL);
}

static void recv_cancel(coru_cont *c) {
  cudp *u = container_of(c, cudp, rd);
  if (!u->waiting) return;
  recv_stop(u);
  waiter_clear(u);
}

/* recv([cb]) -> data, addr */
static int l_udp_recv(lua_State *L) {
  cudp *u = checkudp(L, 1);
  int cbidx = coru_enter(L, 2, "udp:recv", 0) == CORU_MODE_CB ? 2 : 0;
  if (u->waiting || u->recv_ref != LUA_NOREF) return coru_fail_str(L, "busy", NULL);
  coru_cont_init(L, &u->rd, cbidx, recv_cancel);
  int r = recv_start(u);
  if (r < 0) { coru_cont_clear(L, &u->rd); return coru_fail(L, r, NULL); }
  u->waiting = 1;
  coru_handle_keep(L, &u->base);
  if (u->to_read) u->rdl = coru_deadline_start(u->to_read, recv_timeout, u);
  return coru_cont_yield(L, &u->rd, 0);
}

static void udp_on_close(coru_handle *h) {
  cudp *u = (cudp *)h;
  lua_State *L = coru_R->L;
  coru_unref(L, &u->recv_ref);
  if (u->waiting) {
    u->waiting = 0;
    if (u->rdl) { coru_deadline_stop(u->rdl); u->rdl = NULL; }
    if (coru_cont_begin(&u->rd)) coru_cont_fail_str(&u->rd, "closed", NULL);
  }
}

static const coru_Reg udp_methods[] = {
  {"bind", l_udp_bind, 0},
  {"connect", l_udp_connect, 0},
  {"open", l_udp_open, 0},
  {"getsockname", l_udp_getsockname, 0},
  {"getpeername", l_udp_getpeername, 0},
  {"set_membership", l_udp_set_membership, 0},
  {"set_multicast_loop", l_udp_set_multicast_loop, 0},
  {"set_multicast_ttl", l_udp_set_multicast_ttl, 0},
  {"set_multicast_interface", l_udp_set_multicast_interface, 0},
  {"set_broadcast", l_udp_set_broadcast, 0},
  {"set_ttl", l_udp_set_ttl, 0},
  {"get_send_queue_size", l_udp_get_send_queue_size, 0},
  {"get_send_queue_count", l_udp_get_send_queue_count, 0},
  {"send", l_udp_send, CORU_YIELDS | CORU_ARITY(5)},
  {"try_send", l_udp_try_send, 0},
  {"recv_start", l_udp_recv_start, 0},
  {"recv_stop", l_udp_recv_stop, 0},
  {"recv", l_udp_recv, CORU_YIELDS | CORU_ARITY(2)},
  {"settimeout", l_udp_settimeout, 0},
  {NULL, NULL, 0}
};

static coru_htype udp_type = {"coru.udp", CORU_K_UDP, CORU_K_UDP, udp_methods, udp_on_close, NULL, NULL};

static const coru_Reg udp_funcs[] = {
  {"new_udp", l_new_udp, 0},
  {"udp_bind", l_udp_bind, 0},
  {"udp_connect", l_udp_connect, 0},
  {"udp_open", l_udp_open, 0},
  {"udp_getsockname", l_udp_getsockname, 0},
  {"udp_getpeername", l_udp_getpeername, 0},
  {"udp_set_membership", l_udp_set_membership, 0},
  {"udp_set_multicast_loop", l_udp_set_multicast_loop, 0},
  {"udp_set_multicast_ttl", l_udp_set_multicast_ttl, 0},
  {"udp_set_multicast_interface", l_udp_set_multicast_interface, 0},
  {"udp_set_broadcast", l_udp_set_broadcast, 0},
  {"udp_set_ttl", l_udp_set_ttl, 0},
  {"udp_get_send_queue_size", l_udp_get_send_queue_size, 0},
  {"udp_get_send_queue_count", l_udp_get_send_queue_count, 0},
  {"udp_send", l_udp_send, CORU_YIELDS | CORU_ARITY(5)},
  {"udp_try_send", l_udp_try_send, 0},
  {"udp_recv_start", l_udp_recv_start, 0},
  {"udp_recv_stop", l_udp_recv_stop, 0},
  {"udp_recv", l_udp_recv, CORU_YIELDS | CORU_ARITY(2)},
  {NULL, NULL, 0}
};

CORU_FAMILY(udp) {
  coru_register_htype(L, &udp_type);
  coru_setfuncs(L, udp_funcs);
}
