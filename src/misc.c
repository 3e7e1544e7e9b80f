/*
 * misc.c - small system functions, luv's names: hrtime, update_time,
 * cpu_info, memory, environment, home/tmp dirs, uname, cwd/chdir, pids.
 */
#include <stdlib.h>
#include <string.h>
#include "coru.h"
#include "check.h"

int coru_l_hrtime(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime());
  return 1;
}

static int l_update_time(lua_State *L) {
  (void)L;
  uv_update_time(coru_R->loop);
  return 0;
}

static int l_cpu_info(lua_State *L) {
  uv_cpu_info_t *info;
  int n, r = uv_cpu_info(&info, &n);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, info[i].model);
    lua_setfield(L, -2, "model");
    lua_pushnumber(L, info[i].speed);
    lua_setfield(L, -2, "speed");
    lua_createtable(L, 0, 5);
    lua_pushnumber(L, (lua_Number)info[i].cpu_times.user); lua_setfield(L, -2, "user");
    lua_pushnumber(L, (lua_Number)info[i].cpu_times.nice); lua_setfield(L, -2, "nice");
    lua_pushnumber(L, (lua_Number)info[i].cpu_times.sys); lua_setfield(L, -2, "sys");
    lua_pushnumber(L, (lua_Number)info[i].cpu_times.idle); lua_setfield(L, -2, "idle");
    lua_pushnumber(L, (lua_Number)info[i].cpu_times.irq); lua_setfield(L, -2, "irq");
    lua_setfield(L, -2, "times");
    lua_rawseti(L, -2, i + 1);
  }
  uv_free_cpu_info(info, n);
  return 1;
}

static int l_get_total_memory(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_get_total_memory());
  return 1;
}

static int l_get_free_memory(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_get_free_memory());
  return 1;
}

static int l_uptime(lua_State *L) {
  double t;
  int r = uv_uptime(&t);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushnumber(L, t);
  return 1;
}

static int l_loadavg(lua_State *L) {
  double a[3];
  uv_loadavg(a);
  for (int i = 0; i < 3; i++) lua_pushnumber(L, a[i]);
  return 3;
}

/* Functions that fill a buffer and a size, retried with a bigger one. */
typedef int (*bufgetter)(char *, size_t *);

static int push_buf(lua_State *L, bufgetter f, const char *detail) {
  char small[1024];
  size_t len = sizeof small;
  int r = f(small, &len);
  if (r == UV_ENOBUFS) {
    char *big = malloc(len + 1);
    if (!big) return luaL_error(L, "out of memory");
    r = f(big, &len);
    if (r == 0) lua_pushlstring(L, big, len);
    free(big);
    if (r == 0) return 1;
  }
  if (r < 0) return coru_fail(L, r, detail);
  lua_pushlstring(L, small, len);
  return 1;
}

static int l_cwd(lua_State *L) { return push_buf(L, uv_cwd, NULL); }
static int l_os_homedir(lua_State *L) { return push_buf(L, uv_os_homedir, NULL); }
static int l_os_tmpdir(lua_State *L) { return push_buf(L, uv_os_tmpdir, NULL); }
static int l_os_gethostname(lua_State *L) { return push_buf(L, uv_os_gethostname, NULL); }

/* A call with no result: true, or nil, msg, name (detail: the name). */
static int true_or_fail(lua_State *L, int r, const char *detail) {
  if (r < 0) return coru_fail(L, r, detail);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_chdir(lua_State *L) {
  const char *path = coru_check_cstr(L, 1, NULL);
  return true_or_fail(L, uv_chdir(path), path);
}

static int l_os_getenv(lua_State *L) {
  const char *name = coru_check_cstr(L, 1, NULL);
  char small[1024];
  size_t len = sizeof small;
  int r = uv_os_getenv(name, small, &len);
  if (r == UV_ENOBUFS) {
    char *big = malloc(len + 1);
    if (!big) return luaL_error(L, "out of memory");
    r = uv_os_getenv(name, big, &len);
    if (r == 0) lua_pushlstring(L, big, len);
    free(big);
    if (r == 0) return 1;
  }
  if (r == UV_ENOENT) { lua_pushnil(L); return 1; }
  if (r < 0) return coru_fail(L, r, name);
  lua_pushlstring(L, small, len);
  return 1;
}

static int l_os_setenv(lua_State *L) {
  const char *name = coru_check_cstr(L, 1, NULL), *value = coru_check_cstr(L, 2, NULL);
  return true_or_fail(L, uv_os_setenv(name, value), name);
}

static int l_os_unsetenv(lua_State *L) {
  const char *name = coru_check_cstr(L, 1, NULL);
  return true_or_fail(L, uv_os_unsetenv(name), name);
}

static int l_os_environ(lua_State *L) {
  uv_env_item_t *items;
  int n, r = uv_os_environ(&items, &n);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, items[i].value);
    lua_setfield(L, -2, items[i].name);
  }
  uv_os_free_environ(items, n);
  return 1;
}

static int l_os_uname(lua_State *L) {
  uv_utsname_t u;
  int r = uv_os_uname(&u);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_createtable(L, 0, 4);
#define FIELD(f) lua_pushstring(L, u.f); lua_setfield(L, -2, #f);
  FIELD(sysname) FIELD(release) FIELD(version) FIELD(machine)
#undef FIELD
  return 1;
}

int coru_l_getpid(lua_State *L) { lua_pushinteger(L, uv_os_getpid()); return 1; }
static int l_os_getppid(lua_State *L) { lua_pushinteger(L, uv_os_getppid()); return 1; }

static int l_exepath(lua_State *L) { return push_buf(L, uv_exepath, NULL); }

static int l_resident_set_memory(lua_State *L) {
  size_t rss;
  int r = uv_resident_set_memory(&rss);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushnumber(L, (lua_Number)rss);
  return 1;
}

static int l_available_parallelism(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)uv_available_parallelism());
  return 1;
}

static const coru_Reg misc_funcs[] = {
  {"hrtime", coru_l_hrtime, 0}, CORU_REG(update_time), CORU_REG(cpu_info),
  CORU_REG(get_total_memory), CORU_REG(get_free_memory), CORU_REG(resident_set_memory),
  CORU_REG(available_parallelism), CORU_REG(uptime), CORU_REG(loadavg), CORU_REG(cwd),
  CORU_REG(chdir), CORU_REG(exepath), CORU_REG(os_homedir), CORU_REG(os_tmpdir),
  CORU_REG(os_gethostname), CORU_REG(os_getenv), CORU_REG(os_setenv), CORU_REG(os_unsetenv),
  CORU_REG(os_environ), CORU_REG(os_uname), {"getpid", coru_l_getpid, 0},
  {"os_getpid", coru_l_getpid, 0}, CORU_REG(os_getppid), {NULL, NULL, 0}
};

CORU_FAMILY(misc) {
  coru_setfuncs(L, misc_funcs);
}
