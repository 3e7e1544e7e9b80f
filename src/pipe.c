/*
 * pipe.c - pipes and unix domain sockets (luv's API) on the stream layer:
 * new_pipe, bind, connect, open, getsockname, getpeername, chmod.
 */
#include <stdlib.h>
#include <string.h>
#include "stream.h"
#include "check.h"

static coru_htype pipe_type;

static coru_uvstream *checkpipe(lua_State *L, int idx) {
  coru_handle *h = coru_check_handle(L, idx, &pipe_type);
  /* file streams share the pipe kind (no kind bit of their own) */
  if (h->type != &pipe_type) luaL_typerror(L, idx, pipe_type.name);
  return (coru_uvstream *)h;
}

int coru_new_pipe(lua_State *L, int ipc) {
  coru_uvstream *u = coru_uvstream_alloc(L, &pipe_type, CORU_UVSTREAM_SIZE(uv_pipe_t));
  return coru_handle_inited(L, &u->s.base, uv_pipe_init(coru_R->loop, &u->u.pipe, ipc));
}

static int l_new_pipe(lua_State *L) { return coru_new_pipe(L, lua_toboolean(L, 1)); }

static int l_pipe_open(lua_State *L) {
  coru_uvstream *u = checkpipe(L, 1);
  int fd = coru_check_fd_of(L, 2, UV_NAMED_PIPE, "pipe_open"), r = fd < 0 ? fd : uv_pipe_open(&u->u.pipe, fd);
  return coru_result(L, r, NULL);
}

static int l_pipe_bind(lua_State *L) {
  coru_uvstream *u = checkpipe(L, 1);
  const char *name = coru_check_cstr(L, 2, NULL);
  int r = uv_pipe_bind(&u->u.pipe, name);
  return coru_result(L, r, name);
}

static int l_pipe_connect(lua_State *L) {
  coru_uvstream *u = checkpipe(L, 1);
  const char *name = coru_check_cstr(L, 2, NULL);
  return coru_connect_start(L, u, 3, "pipe:connect", NULL, name, name);
}

static int pipename(lua_State *L, int peer) {
  coru_uvstream *u = checkpipe(L, 1);
  char buf[4096];
  size_t len = sizeof buf;
  int r = peer ? uv_pipe_getpeername(&u->u.pipe, buf, &len) : uv_pipe_getsockname(&u->u.pipe, buf, &len);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushlstring(L, buf, len);
  return 1;
}

static int l_pipe_getsockname(lua_State *L) { return pipename(L, 0); }
static int l_pipe_getpeername(lua_State *L) { return pipename(L, 1); }

static int l_pipe_chmod(lua_State *L) {
  coru_uvstream *u = checkpipe(L, 1);
  const char *m = coru_check_cstr(L, 2, NULL);
  int flags = 0;
  if (!strcmp(m, "r")) flags = UV_READABLE;
  else if (!strcmp(m, "w")) flags = UV_WRITABLE;
  else if (!strcmp(m, "rw") || !strcmp(m, "wr")) flags = UV_READABLE | UV_WRITABLE;
  else luaL_argerror(L, 2, "expected \"r\", \"w\", \"rw\" or \"wr\"");
  int r = uv_pipe_chmod(&u->u.pipe, flags);
  return coru_result(L, r, NULL);
}

static int l_pipe_pending_instances(lua_State *L) {
  uv_pipe_pending_instances(&checkpipe(L, 1)->u.pipe, (int)coru_check_int(L, 2, 0, CORU_INT_MAX, "pipe_pending_instances"));
  return 0;
}

static const coru_Fn pipe_fns[] = {
  {NULL, "new_pipe", l_new_pipe, 0}, CORU_FN(pipe, open, 0), CORU_FN(pipe, bind, 0),
  CORU_FN(pipe, connect, CORU_YIELDS), CORU_FN(pipe, getsockname, 0),
  CORU_FN(pipe, getpeername, 0), CORU_FN(pipe, chmod, 0), CORU_FN(pipe, pending_instances, 0),
  CORU_FNS_END
};

static coru_htype pipe_type = {"coru.pipe", CORU_K_PIPE, CORU_K_PIPE, pipe_fns,
                               coru_uvstream_on_close, coru_uvstream_on_free, NULL};

CORU_FAMILY(pipe) {
  coru_register_stream_type(L, &pipe_type);
}
