/*
 * main.c - the coru host: `coru [options] [script [args]]`, like luajit,
 * except that the main chunk runs as a task inside a running loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <luajit.h>
#include "coru.h"

static const char *progname = "coru";

/* The driver, run as the main task: options in order, then the script,
 * then the REPL (no script on a terminal, or -i). */
static const char driver[] =
  "local actions, script, n, repl, helpers, main_only = ...\n"
  "for i = 1, #actions, 2 do\n"
  "  local k, v = actions[i], actions[i + 1]\n"
  "  if k == 'l' then require(v)\n"
  "  else\n"
  "    local f, err = loadstring(v, '=(command line)')\n"
  "    if not f then error(err, 0) end\n"
  "    f()\n"
  "  end\n"
  "end\n"
  /* busted's runner as the script: end with its main chunk, as under
   * luajit, instead of waiting for handles a spec left open */
  "local function after(...)\n"
  "  if package.loaded['busted.runner'] then main_only() end\n"
  "  return ...\n"
  "end\n"
  "if script then\n"
  "  local f, err = loadfile(script ~= '-' and script or nil)\n"
  "  if not f then error(err, 0) end\n"
  "  if not repl then return after(f(unpack(arg, 1, n))) end\n"
  "  f(unpack(arg, 1, n))\n"
  "end\n"
  "if repl then return repl(helpers) end\n";

static void usage(FILE *to) {
  fprintf(to,
    "usage: %s [options] [script [args]]\n"
    "Runs a Lua script (LuaJIT) whose main chunk is a task in a running loop.\n"
    "  -e chunk  run the string 'chunk'\n"
    "  -l name   require library 'name'\n"
    "  -i        enter interactive mode after running the script\n"
    "  -v        show version information\n"
    "  -h, --help  show this help\n"
    "  --luv     require \"luv\" gives coru.luv (run luv programs unchanged)\n"
    "  --        stop handling options\n"
    "  -         run stdin\n"
    "With no script on a terminal: interactive mode (=expr prints).\n", progname);
}

static int l_main_only(lua_State *L) {
  (void)L;
  coru_R->main_only = 1;
  return 0;
}


/* Where coru's own Lua files are: <exe>/../lua (build tree) or
 * <exe>/../share/lua/5.1 (installed). */
static void set_paths(lua_State *L, const char *argv0) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) { (void)argv0; return; }
  exe[n] = 0;
  char *slash = strrchr(exe, '/');
  if (!slash) return;
  *slash = 0;
  char dir[PATH_MAX + 64];
  const char *cands[] = {"/../lua", "/../share/lua/5.1"};
  for (int i = 0; i < 2; i++) {
    snprintf(dir, sizeof dir, "%s%s/coru", exe, cands[i]);
    if (access(dir, F_OK) == 0) {
      dir[strlen(dir) - 5] = 0;
      lua_getglobal(L, "package");
      lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
      lua_getfield(L, -2, "path");
      lua_concat(L, 2);
      lua_setfield(L, -2, "path");
      lua_pop(L, 1);
      return;
    }
  }
}

/* Started with fd 0, 1 or 2 closed (`cmd <&-`, a daemonizer): libuv's own
 * descriptors would land there and be taken for stdio (uv_loop_close then
 * asserts). Reopen the missing ones on /dev/null first, as Node does. */
static void reopen_std_fds(void) {
  for (int fd = 0; fd <= 2; fd++) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    int got = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (got < 0) abort();             /* nothing safe to run on */
    if (got != fd) { dup2(got, fd); close(got); }
  }
}

static int l_os_exit(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "coru.module");
  lua_getfield(L, -1, "exit");
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_call(L, 2, 0);
  return 0;
}

/* A failure before the script runs: the message on top of L. */
static int fail(lua_State *L) {
  fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
  return coru_close_state(L, 1);
}

int main(int argc, char **argv) {
  reopen_std_fds();
  if (argv[0] && argv[0][0]) progname = argv[0];
  signal(SIGPIPE, SIG_IGN);
  lua_State *L = luaL_newstate();
  if (!L) { fprintf(stderr, "%s: cannot create state: not enough memory\n", progname); return 1; }
  luaL_openlibs(L);
  set_paths(L, argv[0]);

  /* require "coru" finds the built-in module */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_coru);
  lua_setfield(L, -2, "coru");
  lua_pop(L, 2);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "coru");
  if (lua_pcall(L, 1, 1, 0) != 0) return fail(L);
  lua_setglobal(L, "coru");
  coru_R->host = 1;              /* coru.exit closes the Lua state: it is ours */
  coru_signal_host_defaults();   /* SIGINT/SIGTERM: exit 130/143 unless the script watches them */
  lua_getglobal(L, "os");
  lua_pushcfunction(L, l_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);

  /* options */
  lua_newtable(L);
  int actions = lua_gettop(L), nact = 0;
  int i = 1, show_version = 0, interactive = 0, nexec = 0;   /* nexec: -e and -l given */
  const char *script = NULL;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-') break;
    if (strcmp(a, "-") == 0) break;
    if (strcmp(a, "--") == 0) { i++; break; }
    if (a[1] == 'e' || a[1] == 'l') {
      const char *v = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
      if (!v) { usage(stderr); lua_close(L); return 1; }
      nexec++;
      lua_pushlstring(L, a + 1, 1);
      lua_rawseti(L, actions, ++nact);
      lua_pushstring(L, v);
      lua_rawseti(L, actions, ++nact);
    } else if (strcmp(a, "-v") == 0) {
      show_version = 1;
    } else if (strcmp(a, "-i") == 0) {
      interactive = 1;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      lua_close(L);
      return 0;
    } else if (strcmp(a, "--luv") == 0) {
      /* an action before the others: require "luv" finds coru.luv */
      lua_pushliteral(L, "e");
      lua_rawseti(L, actions, ++nact);
      lua_pushliteral(L, "package.preload.luv = function() return require 'coru.luv' end");
      lua_rawseti(L, actions, ++nact);
    } else {
      fprintf(stderr, "%s: unrecognized option '%s'\n", progname, a);
      usage(stderr);
      lua_close(L);
      return 1;
    }
  }
  if (i < argc) script = argv[i];
  else if (nexec == 0 && !show_version && !interactive) {
    if (isatty(0)) interactive = 1; else script = "-";
  }
  if (show_version || (interactive && isatty(0)))
    printf("coru %s (%s, libuv %s)\n", CORU_VERSION, LUAJIT_VERSION, uv_version_string());

  /* arg: arg[0] is the script, negatives the interpreter and options */
  lua_createtable(L, argc, 2);
  for (int k = 0; k < argc; k++) {
    lua_pushstring(L, argv[k]);
    lua_rawseti(L, -2, k - (script && i < argc ? i : argc));
  }
  lua_setglobal(L, "arg");
  int nargs = script && i < argc ? argc - i - 1 : 0;

  if (luaL_loadbuffer(L, driver, sizeof driver - 1, "=coru.main") != 0) return fail(L);
  lua_pushvalue(L, actions);
  if (script) lua_pushstring(L, script); else lua_pushnil(L);
  lua_pushinteger(L, nargs);
  if (interactive) {
    if (coru_repl_push(L) != 0) return fail(L);
  } else {
    lua_pushnil(L);
    lua_pushnil(L);
  }
  lua_pushcfunction(L, l_main_only);
  int status = coru_run_main(L, 6);
  fflush(stdout);
  coru_shutdown();
  return coru_close_state(L, status);
}
