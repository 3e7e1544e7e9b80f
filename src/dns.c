/*
 * dns.c - getaddrinfo and getnameinfo (luv's API) in the three modes: on
 * libuv's thread pool, the task suspends meanwhile.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <netdb.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include "stream.h"

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

typedef struct {
  union { uv_getaddrinfo_t ai; uv_getnameinfo_t ni; } r;
  coru_cont cont;
  char detail[128];
} dns_req;

static const char *socktype_name(int t) {
  switch (t) {
  case SOCK_STREAM: return "stream";
  case SOCK_DGRAM: return "dgram";
  case SOCK_RAW: return "raw";
  default: return NULL;
  }
}

static void push_addrinfo(lua_State *L, struct addrinfo *res) {
  lua_newtable(L);
  int i = 0;
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    coru_push_addr(L, a->ai_addr);       /* {ip, port, family} */
    lua_getfield(L, -1, "ip");
    lua_setfield(L, -2, "addr");
    const char *st = socktype_name(a->ai_socktype);
    if (st) { lua_pushstring(L, st); lua_setfield(L, -2, "socktype"); }
    lua_pushinteger(L, a->ai_protocol);
    lua_setfield(L, -2, "protocol");
    if (a->ai_canonname) { lua_pushstring(L, a->ai_canonname); lua_setfield(L, -2, "canonname"); }
    lua_rawseti(L, -2, ++i);
  }
}

static void getaddrinfo_cb(uv_getaddrinfo_t *r, int status, struct addrinfo *res) {
  dns_req *q = container_of(r, dns_req, r.ai);
  lua_State *S = coru_cont_begin(&q->cont);
  if (S) {
    if (status < 0) coru_cont_fail(&q->cont, status, q->detail);
    else { push_addrinfo(S, res); coru_cont_ok(&q->cont, 1); }
  }
  uv_freeaddrinfo(res);
  free(q);
}

static int hint_flag(lua_State *L, int idx, const char *name, int flag) {
  lua_getfield(L, idx, name);
  int on = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return on ? flag : 0;
}

/* getaddrinfo(host, service [, hints] [, cb]) -> array of addresses.
 * sync: outside a task without a callback, resolve synchronously (luv's
 * rule, for coru.luv) instead of refusing (coru's). */
static int getaddrinfo_impl(lua_State *L, int sync) {
  const char *host = luaL_optstring(L, 1, NULL);
  const char *service = NULL;
  char portbuf[16];
  if (lua_type(L, 2) == LUA_TNUMBER) {
    snprintf(portbuf, sizeof portbuf, "%d", (int)lua_tointeger(L, 2));
    service = portbuf;
  } else {
    service = luaL_optstring(L, 2, NULL);
  }
  if (!host && !service) luaL_argerror(L, 1, "host or service needed");
  int cbidx = 0;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "family");
    if (!lua_isnil(L, -1)) hints.ai_family = coru_family_arg(L, lua_gettop(L));
    lua_pop(L, 1);
    lua_getfield(L, 3, "socktype");
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char *t = lua_tostring(L, -1);
      hints.ai_socktype = !strcmp(t, "stream") ? SOCK_STREAM : !strcmp(t, "dgram") ? SOCK_DGRAM
                        : !strcmp(t, "raw") ? SOCK_RAW : (luaL_argerror(L, 3, "socktype: stream, dgram or raw"), 0);
    } else if (lua_isnumber(L, -1)) {
      hints.ai_socktype = (int)lua_tointeger(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, 3, "protocol");
    if (lua_isnumber(L, -1)) hints.ai_protocol = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    hints.ai_flags = hint_flag(L, 3, "addrconfig", AI_ADDRCONFIG) | hint_flag(L, 3, "v4mapped", AI_V4MAPPED)
                   | hint_flag(L, 3, "all", AI_ALL) | hint_flag(L, 3, "numerichost", AI_NUMERICHOST)
                   | hint_flag(L, 3, "passive", AI_PASSIVE) | hint_flag(L, 3, "numericserv", AI_NUMERICSERV)
                   | hint_flag(L, 3, "canonname", AI_CANONNAME);
    cbidx = 4;
  } else if (!lua_isnoneornil(L, 3)) {
    cbidx = 3;
  } else {
    cbidx = 4;
  }
  int mode = coru_enter(L, cbidx, "coru.getaddrinfo", sync ? CORU_SYNC_OK : 0);
  if (mode != CORU_MODE_CB) cbidx = 0;
  if (mode == CORU_MODE_NONE) {   /* sync (coru.luv's form) outside a task */
    uv_getaddrinfo_t req;
    int r = uv_getaddrinfo(coru_R->loop, &req, NULL, host, service, &hints);
    if (r < 0) return coru_fail(L, r, host ? host : service);
    push_addrinfo(L, req.addrinfo);
    uv_freeaddrinfo(req.addrinfo);
    return 1;
  }
  dns_req *q = malloc(sizeof *q);
  if (!q) return luaL_error(L, "out of memory");
  snprintf(q->detail, sizeof q->detail, "%s", host ? host : service);
  coru_cont_init(L, &q->cont, cbidx, NULL);
  int r = uv_getaddrinfo(coru_R->loop, &q->r.ai, getaddrinfo_cb, host, service, &hints);
  if (r < 0) { coru_cont_clear(L, &q->cont); free(q); return coru_fail(L, r, host); }
  lua_pushboolean(L, 1);
  return coru_cont_yield(L, &q->cont, 1);
}

static void getnameinfo_cb(uv_getnameinfo_t *r, int status, const char *host, const char *service) {
  dns_req *q = container_of(r, dns_req, r.ni);
  lua_State *S = coru_cont_begin(&q->cont);
  if (S) {
    if (status < 0) coru_cont_fail(&q->cont, status, q->detail);
    else { lua_pushstring(S, host); lua_pushstring(S, service); coru_cont_ok(&q->cont, 2); }
  }
  free(q);
}

/* getnameinfo({ip=, port=, family=} [, cb]) -> host, service. Without
 * ip: the any-address of family (0.0.0.0, or :: for "inet6"). */
static int getnameinfo_impl(lua_State *L, int sync) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  lua_getfield(L, 1, "family");
  int family = lua_isnil(L, -1) ? AF_UNSPEC : coru_family_arg(L, 3);
  lua_getfield(L, 1, "ip");
  const char *ip = lua_tostring(L, -1);   /* stays on the stack */
  lua_getfield(L, 1, "port");
  int port = (int)lua_tointeger(L, -1);
  if (!ip) ip = family == AF_INET6 ? "::" : "0.0.0.0";
  struct sockaddr_storage ss;
  if (coru_parse_addr(L, ip, port, &ss) < 0 || (family != AF_UNSPEC && ss.ss_family != family))
    return coru_fail(L, UV_EINVAL, ip);
  int mode = coru_enter(L, 2, "coru.getnameinfo", sync ? CORU_SYNC_OK : 0);
  int cbidx = mode == CORU_MODE_CB ? 2 : 0;
  if (mode == CORU_MODE_NONE) {   /* sync (coru.luv's form) outside a task */
    uv_getnameinfo_t req;
    int r = uv_getnameinfo(coru_R->loop, &req, NULL, (struct sockaddr *)&ss, 0);
    if (r < 0) return coru_fail(L, r, ip);
    lua_pushstring(L, req.host);
    lua_pushstring(L, req.service);
    return 2;
  }
  dns_req *q = malloc(sizeof *q);
  if (!q) return luaL_error(L, "out of memory");
  snprintf(q->detail, sizeof q->detail, "%s", ip);
  coru_cont_init(L, &q->cont, cbidx, NULL);
  int r = uv_getnameinfo(coru_R->loop, &q->r.ni, getnameinfo_cb, (struct sockaddr *)&ss, 0);
  if (r < 0) { coru_cont_clear(L, &q->cont); free(q); return coru_fail(L, r, ip); }
  lua_pushboolean(L, 1);
  return coru_cont_yield(L, &q->cont, 1);
}

static int l_getaddrinfo(lua_State *L) { return getaddrinfo_impl(L, 0); }
static int l_getnameinfo(lua_State *L) { return getnameinfo_impl(L, 0); }
static int l_getaddrinfo_luv(lua_State *L) { return getaddrinfo_impl(L, 1); }
static int l_getnameinfo_luv(lua_State *L) { return getnameinfo_impl(L, 1); }

static const coru_Reg dns_funcs[] = {
  {"getaddrinfo", l_getaddrinfo, CORU_YIELDS},
  {"getnameinfo", l_getnameinfo, CORU_YIELDS},
  {"_getaddrinfo_luv", l_getaddrinfo_luv, CORU_YIELDS},   /* coru.luv: synchronous outside tasks */
  {"_getnameinfo_luv", l_getnameinfo_luv, CORU_YIELDS},
  {NULL, NULL, 0}
};

CORU_FAMILY(dns) { coru_setfuncs(L, dns_funcs); }
