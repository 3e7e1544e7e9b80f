/*
 * process.c - child processes: luv's spawn (as coru.spawn_process, since
 * coru.spawn starts tasks), process_kill, get_pid.
 *
 * "pipe" stdio entries become coru streams (pipe.c) with the sequential
 * methods (read, read_line, write, shutdown, ...). The stream layer stops
 * reading when enough is buffered and nobody reads, so a child writing more
 * than anyone reads blocks on its pipe: no unbounded buffering here.
 */
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include "coru.h"
#include "stream.h"
#include "check.h"

/* ------------------------------------------------------------ processes */

typedef struct {
  coru_handle base;
  uv_process_t p;
  int exit_ref;
  int pid;
} process_handle;

static coru_htype process_type;

static void process_on_close(coru_handle *h) { coru_unref(coru_R->L, &((process_handle *)h)->exit_ref); }

static void exit_cb(uv_process_t *up, int64_t status, int term_signal) {
  process_handle *c = up->data;
  lua_State *L = coru_R->L;
  int ref = c->exit_ref;
  c->exit_ref = LUA_NOREF;
  coru_handle_push(L, &c->base);   /* alive through the callback */
  coru_handle_release(L, &c->base);
  if (ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    lua_pushinteger(L, (lua_Integer)status);
    lua_pushinteger(L, term_signal);
    coru_callback(2);
  }
  lua_pop(L, 1);
}

static int argerr(lua_State *L, int i, const char *msg) {
  return luaL_error(L, "bad argument #%d to 'spawn_process' (%s)", i, msg);   /* at the user's line */
}

/* Strings of a table option into a NULL-terminated array of pointers that
 * point into Lua strings kept in the table at keep (valid during the call). */
static char **string_array(lua_State *L, int t, const char *what, int keep, int with_first, const char *first) {
  int n = (int)lua_objlen(L, t);
  char **a = lua_newuserdata(L, sizeof(char *) * (size_t)(n + 2));
  lua_rawseti(L, keep, (int)lua_objlen(L, keep) + 1);
  int k = 0;
  if (with_first) a[k++] = (char *)first;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, t, i);
    if (!lua_isstring(L, -1)) {
      luaL_error(L, "bad argument #2 to 'spawn_process' (%s[%d]: string expected, got %s)", what, i, luaL_typename(L, -1));
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, keep, (int)lua_objlen(L, keep) + 1);
    a[k++] = (char *)coru_cstr_at(L, -1, "spawn_process", what);
    lua_pop(L, 1);
  }
  a[k] = NULL;
  return a;
}

static coru_htype any_handle = {"coru.handle", CORU_K_ANY, CORU_K_ANY, NULL, NULL, NULL, NULL};

/* coru.spawn_process(path, options [, on_exit(code, signal)]) ->
 * process, pid, pipes ({[1] = stdin pipe, [2] = stdout pipe, ...} for
 * "pipe" entries), or nil, msg, name. */
static int l_spawn_process(lua_State *L) {
  const char *file = coru_check_cstr(L, 1, NULL);
  if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2)) luaL_typerror(L, 2, "table");
  if (!lua_isnoneornil(L, 3) && !coru_is_callable(L, 3)) luaL_typerror(L, 3, "function");
  lua_settop(L, 3);
  if (lua_isnil(L, 2)) { lua_newtable(L); lua_replace(L, 2); }
  lua_newtable(L);             /* 4: strings and arrays kept during the call */
  int keep = 4;
  uv_process_options_t o;
  memset(&o, 0, sizeof o);
  o.file = file;
  o.exit_cb = exit_cb;

  lua_getfield(L, 2, "args");
  if (lua_istable(L, -1)) o.args = string_array(L, lua_gettop(L), "args", keep, 1, file);
  else if (!lua_isnil(L, -1)) argerr(L, 2, "args must be a table");
  else { o.args = lua_newuserdata(L, 2 * sizeof(char *)); o.args[0] = (char *)file; o.args[1] = NULL; lua_rawseti(L, keep, 1000000); }
  lua_pop(L, 1);

  lua_getfield(L, 2, "env");
  if (lua_istable(L, -1)) {
    int et = lua_gettop(L);
    /* a map {K = V} or an array {"K=V"} */
    lua_newtable(L);
    int arr = lua_gettop(L), n = 0;
    lua_pushnil(L);
    while (lua_next(L, et)) {
      if (lua_type(L, -2) == LUA_TNUMBER) lua_pushvalue(L, -1);
      else if (lua_type(L, -2) == LUA_TSTRING && lua_isstring(L, -1))
        lua_pushfstring(L, "%s=%s", coru_cstr_at(L, -2, "spawn_process", "env"), coru_cstr_at(L, -1, "spawn_process", "env"));
      else argerr(L, 2, "env: strings expected");
      lua_rawseti(L, arr, ++n);
      lua_pop(L, 1);
    }
    o.env = string_array(L, arr, "env", keep, 0, NULL);
    lua_settop(L, et);
  } else if (!lua_isnil(L, -1)) argerr(L, 2, "env must be a table");
  lua_pop(L, 1);

  lua_getfield(L, 2, "cwd");
  if (lua_isstring(L, -1)) { o.cwd = coru_cstr_at(L, -1, "spawn_process", "option 'cwd'"); lua_rawseti(L, keep, 1000001); }
  else { if (!lua_isnil(L, -1)) argerr(L, 2, "cwd must be a string"); lua_pop(L, 1); }

  lua_getfield(L, 2, "uid");
  if (!lua_isnil(L, -1)) { o.uid = (uv_uid_t)coru_check_int_at(L, -1, 0, 0xfffffffe, "spawn", "option 'uid'"); o.flags |= UV_PROCESS_SETUID; }
  lua_getfield(L, 2, "gid");
  if (!lua_isnil(L, -1)) { o.gid = (uv_gid_t)coru_check_int_at(L, -1, 0, 0xfffffffe, "spawn", "option 'gid'"); o.flags |= UV_PROCESS_SETGID; }
  lua_getfield(L, 2, "detached");
  if (lua_toboolean(L, -1)) o.flags |= UV_PROCESS_DETACHED;
  lua_getfield(L, 2, "verbatim");
  if (lua_toboolean(L, -1)) o.flags |= UV_PROCESS_WINDOWS_VERBATIM_ARGUMENTS;
  lua_getfield(L, 2, "hide");
  if (lua_toboolean(L, -1)) o.flags |= UV_PROCESS_WINDOWS_HIDE;
  lua_pop(L, 5);

  /* stdio: nil/"ignore", "inherit", "pipe", an fd, or a stream handle */
  uv_stdio_container_t st[16];
  coru_handle *pipes[16] = {0};
  lua_newtable(L);
  int pipetab = lua_gettop(L);
  lua_getfield(L, 2, "stdio");
  int nst = 3;
  if (lua_istable(L, -1)) {
    int t = lua_gettop(L);
    nst = (int)lua_objlen(L, t);
    if (nst < 3) nst = 3;
    if (nst > 16) argerr(L, 2, "stdio: at most 16 entries");
    for (int i = 0; i < nst; i++) {
      lua_rawgeti(L, t, i + 1);
      int ty = lua_type(L, -1);
      const char *s = ty == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
      coru_handle *h;
      if (ty == LUA_TNIL || (s && strcmp(s, "ignore") == 0)) {
        st[i].flags = UV_IGNORE;
      } else if (s && strcmp(s, "inherit") == 0) {
        st[i].flags = UV_INHERIT_FD;
        st[i].data.fd = i;
      } else if (ty == LUA_TNUMBER) {
        st[i].flags = UV_INHERIT_FD;
        st[i].data.fd = (int)coru_check_int_at(L, -1, 0, CORU_INT_MAX, "spawn", "option 'stdio' (a descriptor)");
        /* a closed descriptor: say which entry, not only the command */
        if (st[i].data.fd < 0 || fcntl(st[i].data.fd, F_GETFD) < 0) {
          lua_pushnil(L);
          lua_pushfstring(L, "EBADF: bad file descriptor: stdio[%d] = %d", i + 1, st[i].data.fd);
          lua_pushliteral(L, "EBADF");
          return 3;
        }
      } else if (s && strcmp(s, "pipe") == 0) {
        st[i].flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : i <= 2 ? UV_WRITABLE_PIPE : UV_READABLE_PIPE | UV_WRITABLE_PIPE);
        pipes[i] = (coru_handle *)&any_handle;   /* created below, once every entry is checked */
      } else if ((h = coru_test_handle(L, -1, &any_handle)) && !h->closing &&
                 (uv_handle_get_type(h->uvh) == UV_NAMED_PIPE || uv_handle_get_type(h->uvh) == UV_TCP ||
                  uv_handle_get_type(h->uvh) == UV_TTY)) {
        /* an open stream is inherited; a pipe not open yet (new_pipe())
         * becomes the parent's end of a new pipe, as in luv */
        uv_os_fd_t fd;
        int fr = uv_fileno(h->uvh, &fd);
        st[i].flags = (fr == UV_EBADF || fr == UV_EINVAL) ? UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE
                                                          : UV_INHERIT_STREAM;
        st[i].data.stream = (uv_stream_t *)h->uvh;
      } else {
        return luaL_error(L, "bad argument #2 to 'spawn_process' (stdio[%d]: \"pipe\", \"inherit\", \"ignore\", a descriptor or a stream expected, got %s)",
                          i + 1, s ? s : luaL_typename(L, -1));
      }
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    argerr(L, 2, "stdio must be a table");
  } else {
    for (int i = 0; i < 3; i++) { st[i].flags = UV_INHERIT_FD; st[i].data.fd = i; }
  }
  lua_pop(L, 1);
  for (int i = 0; i < nst; i++) {
    if (!pipes[i]) continue;
    if (coru_new_pipe(L, 0) != 1) {
      for (int k = 0; k < i; k++) if (pipes[k]) coru_handle_close(L, pipes[k]);
      return 3;
    }
    pipes[i] = coru_test_handle(L, -1, &any_handle);
    st[i].data.stream = (uv_stream_t *)pipes[i]->uvh;
    lua_rawseti(L, pipetab, i + 1);
  }
  o.stdio = st;
  o.stdio_count = nst;

  process_handle *c = coru_handle_alloc(L, &process_type, sizeof *c, offsetof(process_handle, p));
  c->exit_ref = LUA_NOREF;
  int r = uv_spawn(coru_R->loop, &c->p, &o);
  if (r < 0) {
    /* the handle was initialized: close it; the pipes too */
    coru_handle_close(L, &c->base);
    for (int i = 0; i < nst; i++) if (pipes[i]) coru_handle_close(L, pipes[i]);
    return coru_fail(L, r, file);
  }
  c->pid = c->p.pid;
  if (!lua_isnil(L, 3)) { lua_pushvalue(L, 3); c->exit_ref = luaL_ref(L, LUA_REGISTRYINDEX); }
  coru_handle_keep(L, &c->base);   /* until it exits */
  lua_pushinteger(L, c->pid);
  lua_pushvalue(L, pipetab);
  return 3;
}

static int l_process_kill(lua_State *L) {
  process_handle *c = (process_handle *)coru_check_handle(L, 1, &process_type);
  int sig = coru_checksignal(L, 2, "process_kill", 15);
  int r = uv_process_kill(&c->p, sig);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_process_get_pid(lua_State *L) {
  process_handle *c = (process_handle *)coru_check_handle(L, 1, &process_type);
  lua_pushinteger(L, c->pid);
  return 1;
}

static int l_disable_stdio_inheritance(lua_State *L) {
  (void)L;
  uv_disable_stdio_inheritance();
  return 0;
}

static const coru_Fn process_fns[] = {
  {NULL, "spawn_process", l_spawn_process, 0},
  {NULL, "disable_stdio_inheritance", l_disable_stdio_inheritance, 0}, CORU_FN(process, kill, 0),
  CORU_FN(process, get_pid, 0), CORU_FNS_END
};

static coru_htype process_type = {"coru.process", CORU_K_PROCESS, CORU_K_PROCESS, process_fns,
                                  process_on_close, NULL, NULL};

CORU_FAMILY(process) {
  coru_register_htype(L, &process_type);
}
