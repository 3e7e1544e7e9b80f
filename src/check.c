/*
 * check.c - argument checks at the Lua/C boundary (see check.h).
 */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include "check.h"

int coru_fn_argerror(lua_State *L, int idx, const char *fn, const char *msg) {
  if (!fn) return luaL_argerror(L, idx, msg);
  return luaL_error(L, "bad argument #%d to '%s' (%s)", idx, fn, msg);
}

static int typeerror(lua_State *L, int idx, const char *fn, const char *want) {
  return coru_fn_argerror(L, idx, fn, lua_pushfstring(L, "%s expected, got %s", want, luaL_typename(L, idx)));
}

static int interror(lua_State *L, int idx, const char *fn, const char *what, const char *msg) {
  if (what) return luaL_error(L, "%s: %s: %s", fn ? fn : "coru", what, msg);
  return coru_fn_argerror(L, idx, fn, msg);
}

lua_Integer coru_check_int_at(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, const char *fn, const char *what) {
  if (!lua_isnumber(L, idx)) {
    if (what) interror(L, idx, fn, what, lua_pushfstring(L, "number expected, got %s", luaL_typename(L, idx)));
    typeerror(L, idx, fn, "number");
  }
  lua_Number n = lua_tonumber(L, idx);
  /* 2^63 is exact as a double and just out of range: compare before casting */
  if (!(n >= -9223372036854775808.0 && n < 9223372036854775808.0) || n != floor(n))
    interror(L, idx, fn, what, lua_pushfstring(L, "integer expected, got %s", lua_tostring(L, idx)));
  lua_Integer v = (lua_Integer)n;
  if (v < lo || v > hi) {
    char m[128];
    snprintf(m, sizeof m, "%lld out of range %lld .. %lld", (long long)v, (long long)lo, (long long)hi);
    interror(L, idx, fn, what, m);
  }
  return v;
}

lua_Integer coru_check_int(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, const char *fn) {
  return coru_check_int_at(L, idx, lo, hi, fn, NULL);
}

lua_Integer coru_opt_int(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, lua_Integer def, const char *fn) {
  return lua_isnoneornil(L, idx) ? def : coru_check_int(L, idx, lo, hi, fn);
}

const char *coru_cstr_at(lua_State *L, int idx, const char *fn, const char *what) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (s && strlen(s) != len) {
    if (what) luaL_error(L, "%s: %s contains a NUL byte", fn ? fn : "coru", what);
    coru_fn_argerror(L, idx, fn, "string contains a NUL byte");
  }
  return s;
}

const char *coru_check_cstr(lua_State *L, int idx, const char *fn) {
  if (!lua_isstring(L, idx)) typeerror(L, idx, fn, "string");
  return coru_cstr_at(L, idx, fn, NULL);
}

const char *coru_opt_cstr(lua_State *L, int idx, const char *def, const char *fn) {
  return lua_isnoneornil(L, idx) ? def : coru_check_cstr(L, idx, fn);
}

uint64_t coru_ms_value(lua_State *L, lua_Number ms, int idx, const char *fn) {
  if (ms != ms) coru_fn_argerror(L, idx, fn, "milliseconds expected, got NaN");
  if (ms <= 0) return 0;
  if (ms >= (lua_Number)CORU_MS_FOREVER) return CORU_MS_FOREVER;
  return (uint64_t)ms;
}

uint64_t coru_check_ms(lua_State *L, int idx, const char *fn) {
  if (lua_type(L, idx) != LUA_TNUMBER) typeerror(L, idx, fn, "number");
  return coru_ms_value(L, lua_tonumber(L, idx), idx, fn);
}

uint64_t coru_opt_ms(lua_State *L, int idx, uint64_t def, const char *fn) {
  return lua_isnoneornil(L, idx) ? def : coru_check_ms(L, idx, fn);
}

void *coru_test_udata(lua_State *L, int idx, const char *tname) {
  void *p = lua_touserdata(L, idx);
  if (!p || lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  luaL_getmetatable(L, tname);
  int ok = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return ok ? p : NULL;
}

void *coru_check_udata(lua_State *L, int idx, const char *tname, const char *fn) {
  void *p = coru_test_udata(L, idx, tname);
  if (!p) typeerror(L, idx, fn, tname);
  return p;
}

void coru_protect_mt(lua_State *L) {
  lua_pushliteral(L, "coru");
  lua_setfield(L, -2, "__metatable");
}

static int tostring_body(lua_State *L) {
  if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
  return 0;
}

int coru_newmt(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *index) {
  if (!luaL_newmetatable(L, name)) return 0;
  if (meta) luaL_register(L, NULL, meta);
  if (index) {
    lua_newtable(L);
    luaL_register(L, NULL, index);
    lua_setfield(L, -2, "__index");
  }
  coru_protect_mt(L);
  return 1;
}

const char *coru_safe_tostring(lua_State *L, int idx) {
  int t = lua_type(L, idx);
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1);
  }
  lua_checkstack(L, 3);
  lua_pushcfunction(L, tostring_body);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) == 0 && lua_type(L, -1) == LUA_TSTRING) return lua_tostring(L, -1);
  lua_pop(L, 1);
  return lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
}

typedef struct { int fd, found; } fd_probe;

static void probe_handle(uv_handle_t *h, void *arg) {
  fd_probe *p = arg;
  uv_os_fd_t fd;
  if (!p->found && !uv_is_closing(h) && uv_fileno(h, &fd) == 0 && fd == p->fd) p->found = 1;
}

#define SNAP_FDS 1024
static unsigned char snap_before[SNAP_FDS], loop_fds[SNAP_FDS];

void coru_fds_snapshot(int phase) {
  for (int fd = 3; fd < SNAP_FDS; fd++) {
    int open_now = fcntl(fd, F_GETFD) != -1;
    if (phase == 0) snap_before[fd] = (unsigned char)open_now;
    else if (open_now && !snap_before[fd]) loop_fds[fd] = 1;
  }
}

/* Descriptors coru holds outside a handle (check.h; a multiset: a few at
 * a time). */
static int *held_fds;
static size_t n_held, cap_held;

int coru_fd_hold(int fd, int on) {
  if (on) {
    if (n_held == cap_held) {
      size_t cap = cap_held ? 2 * cap_held : 16;
      int *p = realloc(held_fds, cap * sizeof *p);
      if (!p) return UV_ENOMEM;
      held_fds = p;
      cap_held = cap;
    }
    held_fds[n_held++] = fd;
    return 0;
  }
  for (size_t i = 0; i < n_held; i++) {
    if (held_fds[i] == fd) { held_fds[i] = held_fds[--n_held]; break; }
  }
  return 0;
}

int coru_fd_held(int fd) {
  for (size_t i = 0; i < n_held; i++) if (held_fds[i] == fd) return 1;
  return 0;
}

int coru_fd_of_loop(uv_loop_t *loop, int fd) {
  if (fd < 0 || !loop) return 0;
  if (fd < SNAP_FDS && loop_fds[fd]) return 1;
  return fd == loop->backend_fd || fd == loop->signal_pipefd[0] || fd == loop->signal_pipefd[1] ||
         fd == loop->async_io_watcher.fd || fd == loop->async_wfd || fd == loop->inotify_fd;
}

int coru_fd_in_use(uv_loop_t *loop, int fd) {
  if (fd < 0 || !loop) return 0;
  if (coru_fd_of_loop(loop, fd) || coru_fd_held(fd)) return 1;
  fd_probe p = {fd, 0};
  uv_walk(loop, probe_handle, &p);
  return p.found;
}

int coru_opt_flags(lua_State *L, int idx, const coru_flag *names, const char *fn) {
  if (!lua_istable(L, idx)) return (int)coru_opt_int(L, idx, CORU_INT_MIN, CORU_INT_MAX, 0, fn);
  int f = 0;
  for (; names->name; names++) {
    lua_getfield(L, idx, names->name);
    if (lua_toboolean(L, -1)) f |= names->bit;
    lua_pop(L, 1);
  }
  return f;
}
