/*
 * tty.c - terminals (luv's API) on the stream layer: new_tty, set_mode,
 * get_winsize, reset_mode; and coru.new_stdio(fd), the stream behind
 * coru.stdin/stdout/stderr (a TTY, a pipe or a socket, whatever fd is).
 */
#include <string.h>
#include "stream.h"

static coru_htype tty_type;
int coru_new_pipe(lua_State *L, int ipc);

static coru_uvstream *checktty(lua_State *L, int idx) {
  return (coru_uvstream *)coru_check_handle(L, idx, &tty_type);
}

static int new_tty(lua_State *L, int fd, int readable) {
  coru_uvstream *u = coru_uvstream_alloc(L, &tty_type, CORU_UVSTREAM_SIZE(uv_tty_t));
  int r = uv_tty_init(coru_R->loop, &u->u.tty, fd, readable);
  if (r < 0) { coru_handle_init_failed(L, &u->s.base); return coru_fail(L, r, NULL); }
  return 1;
}

static int l_new_tty(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  return new_tty(L, fd, lua_toboolean(L, 2));
}

static int l_tty_set_mode(lua_State *L) {
  coru_uvstream *u = checktty(L, 1);
  int mode;
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *m = lua_tostring(L, 2);
    if (!strcmp(m, "normal")) mode = UV_TTY_MODE_NORMAL;
    else if (!strcmp(m, "raw")) mode = UV_TTY_MODE_RAW;
    else if (!strcmp(m, "io")) mode = UV_TTY_MODE_IO;
    else return luaL_argerror(L, 2, "expected \"normal\", \"raw\" or \"io\"");
  } else {
    mode = (int)luaL_checkinteger(L, 2);
  }
  int r = uv_tty_set_mode(&u->u.tty, mode);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_tty_get_winsize(lua_State *L) {
  int w, h;
  int r = uv_tty_get_winsize(&checktty(L, 1)->u.tty, &w, &h);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, w);
  lua_pushinteger(L, h);
  return 2;
}

static int l_tty_reset_mode(lua_State *L) {
  int r = uv_tty_reset_mode();
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_guess_handle(lua_State *L) {
  switch (uv_guess_handle((int)luaL_checkinteger(L, 1))) {
  case UV_TTY: lua_pushliteral(L, "tty"); break;
  case UV_NAMED_PIPE: lua_pushliteral(L, "pipe"); break;
  case UV_TCP: lua_pushliteral(L, "tcp"); break;
  case UV_UDP: lua_pushliteral(L, "udp"); break;
  case UV_FILE: lua_pushliteral(L, "file"); break;
  default: lua_pushliteral(L, "unknown"); break;
  }
  return 1;
}

/* new_stdio(fd): a stream on fd as whatever it is (tty, pipe, socket).
 * Regular files cannot be streams: nil, "EINVAL..." */
static int l_new_stdio(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int r;
  switch (uv_guess_handle(fd)) {
  case UV_TTY:
    return new_tty(L, fd, fd == 0);
  case UV_NAMED_PIPE:
  case UV_TCP:
    if (coru_new_pipe(L, 0) != 1 || lua_isnil(L, -1)) return 3;
    r = uv_pipe_open((uv_pipe_t *)((coru_stream *)((coru_box *)lua_touserdata(L, -1))->h)->uvs, fd);
    if (r < 0) { lua_pop(L, 1); return coru_fail(L, r, NULL); }
    return 1;
  default:
    return coru_fail(L, UV_EINVAL, "not a terminal, pipe or socket");
  }
}

static const coru_Reg tty_methods[] = {
  {"set_mode", l_tty_set_mode, 0},
  {"get_winsize", l_tty_get_winsize, 0},
  {NULL, NULL, 0}
};

static coru_htype tty_type = {"coru.tty", CORU_K_TTY, CORU_K_TTY, NULL,
                              coru_uvstream_on_close, coru_uvstream_on_free, NULL};

static const coru_Reg tty_funcs[] = {
  {"new_tty", l_new_tty, 0},
  {"tty_set_mode", l_tty_set_mode, 0},
  {"tty_get_winsize", l_tty_get_winsize, 0},
  {"tty_reset_mode", l_tty_reset_mode, 0},
  {"guess_handle", l_guess_handle, 0},
  {"new_stdio", l_new_stdio, 0},
  {NULL, NULL, 0}
};

CORU_FAMILY(tty) {
  coru_register_stream_type(L, &tty_type, tty_methods);
  coru_setfuncs(L, tty_funcs);
}
