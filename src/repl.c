/*
 * repl.c - the host's interactive loop: line editing and history through
 * libedit's readline interface, fed by the event loop (rl_callback_*), so
 * that the loop runs while a prompt waits. The loop itself is repl.lua,
 * run in the main task. Host only: the module has no REPL.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <editline/readline.h>
#include "coru.h"
#include "repl_lua.h"   /* generated from repl.lua: coru_repl_lua */

static struct {
  uv_poll_t poll;
  int open, reading, tty;
  int resume_ref;        /* the waiting main task's resume */
  char hist[4096];       /* history file, "" for none */
  char prompt[16];       /* the prompt waiting */
  char *buf; size_t len, cap;   /* not a terminal: bytes read so far */
  int ctrlc;             /* the last key was a Ctrl-C at an empty prompt */
} R = {.resume_ref = LUA_NOREF};

/* ---------------------------------------------------- Ctrl-C, busy line
 * A line busy in Lua (`while true do end`) never returns to the loop, so
 * the SIGINT watcher of repl.lua never runs. As luajit does, our signal
 * handler (chained before the host's and libuv's) sets a debug hook; the
 * hook raises "interrupted" at the next Lua instruction of the running
 * line's task. When the loop was merely waiting, the watcher runs within
 * microseconds and takes the signal back (take_signal): the hook must not
 * hit a callback or another task meanwhile, so it waits for the line's
 * task, or LINE_GRACE_MS if something else is busy (a task or a callback
 * looping for ever is interrupted too, its error reported). Lines are
 * compiled with the JIT off (repl.lua): compiled code runs no hooks. */
#define LINE_GRACE_MS 300
static struct sigaction prev_int;
static volatile sig_atomic_t line_busy, hook_armed;
static struct timespec sig_at;
static coru_task *line_task;
static int consumed;   /* signals the hook turned into "interrupted" */

static long ms_since(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void line_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (!hook_armed) { lua_sethook(L, NULL, 0, 0); return; }
  if (!(line_busy && coru_R->current == line_task) && ms_since(&sig_at) < LINE_GRACE_MS) return;
  hook_armed = 0;
  lua_sethook(L, NULL, 0, 0);
  consumed++;
  lua_pushliteral(L, "interrupted");
  lua_error(L);
}

static void repl_trap(int sig, siginfo_t *si, void *uc) {
  int saved = errno;
  if (!hook_armed && coru_R && coru_R->L) {
    clock_gettime(CLOCK_MONOTONIC, &sig_at);
    hook_armed = 1;
    lua_sethook(coru_R->L, line_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  }
  errno = saved;
  if (prev_int.sa_flags & SA_SIGINFO) prev_int.sa_sigaction(sig, si, uc);
  else if (prev_int.sa_handler != SIG_DFL && prev_int.sa_handler != SIG_IGN) prev_int.sa_handler(sig);
}

/* line(on): a line starts (in the running task) or ends. */
static int l_line(lua_State *L) {
  line_task = coru_R->current;
  line_busy = lua_toboolean(L, 1);
  if (!line_busy && hook_armed) { hook_armed = 0; lua_sethook(L, NULL, 0, 0); }
  return 0;
}

/* take_signal(): the SIGINT watcher's first call: true if the hook already
 * interrupted a busy line with this signal (nothing more to do); else the
 * hook is disarmed and the watcher handles it. */
static int l_take_signal(lua_State *L) {
  if (consumed > 0) { consumed--; lua_pushboolean(L, 1); return 1; }
  if (hook_armed) { hook_armed = 0; lua_sethook(L, NULL, 0, 0); }
  lua_pushboolean(L, 0);
  return 1;
}

static void deliver(const char *line, size_t len) {
  lua_State *L = coru_R->L;
  R.reading = 0;
  R.ctrlc = 0;
  if (R.open) uv_poll_stop(&R.poll);
  lua_rawgeti(L, LUA_REGISTRYINDEX, R.resume_ref);
  coru_unref(L, &R.resume_ref);
  if (line) lua_pushlstring(L, line, len); else lua_pushnil(L);
  coru_callback(1);
}

static void on_line(char *line) {
  rl_callback_handler_remove();
  if (line && *line) {
    add_history(line);
    if (R.hist[0]) write_history(R.hist);
  }
  deliver(line, line ? strlen(line) : 0);
  free(line);
}

/* Not a terminal (`coru -i < file`): plain lines, no editing. One read per
 * readiness (stdin stays blocking: it may be shared with other processes);
 * blocking reads when stdin cannot be polled (a regular file). */
static void read_plain(int may_read) {
  for (;;) {
    char *nl = R.len ? memchr(R.buf, '\n', R.len) : NULL;
    if (nl) {
      size_t n = (size_t)(nl - R.buf);
      char *line = malloc(n + 1);
      if (!line) { deliver(NULL, 0); return; }
      memcpy(line, R.buf, n);
      line[n] = 0;
      memmove(R.buf, nl + 1, R.len - n - 1);
      R.len -= n + 1;
      deliver(line, n);
      free(line);
      return;
    }
    if (!may_read) return;
    if (R.cap - R.len < 512) {
      size_t cap = R.cap ? R.cap * 2 : 1024;
      char *b = realloc(R.buf, cap);
      if (!b) { deliver(NULL, 0); return; }
      R.buf = b; R.cap = cap;
    }
    ssize_t n = read(0, R.buf + R.len, R.cap - R.len);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) { R.len += (size_t)n; if (R.open) may_read = 0; continue; }
    if (n < 0 && errno == EAGAIN) return;
    if (R.len) { size_t k = R.len; R.len = 0; deliver(R.buf, k); }   /* last line without \n */
    else deliver(NULL, 0);
    return;
  }
}

static void on_readable(uv_poll_t *p, int status, int events) {
  (void)p; (void)events;
  if (!R.reading) return;
  if (status < 0) { if (R.tty) rl_callback_handler_remove(); deliver(NULL, 0); return; }
  if (R.tty) { R.ctrlc = 0; rl_callback_read_char(); }
  else read_plain(1);
}

/* start_read(prompt, resume): yielded to by repl.lua's read_line. */
static int l_start_read(lua_State *L) {
  const char *prompt = luaL_checkstring(L, 1);
  if (R.reading) return luaL_error(L, "repl: already reading");
  coru_unref(L, &R.resume_ref);
  R.resume_ref = coru_ref_cb(L, 2);
  R.reading = 1;
  snprintf(R.prompt, sizeof R.prompt, "%s", prompt);
  if (R.tty) {
    rl_callback_handler_install(R.prompt, on_line);
  } else {
    fputs(prompt, stdout);
    fflush(stdout);
    if (!R.open) { read_plain(1); return 0; }   /* blocking: resume is called before we return */
    if (R.len && memchr(R.buf, '\n', R.len)) { read_plain(0); return 0; }
  }
  int rc = uv_poll_start(&R.poll, UV_READABLE, on_readable);
  if (rc < 0) { R.reading = 0; coru_unref(L, &R.resume_ref); return luaL_error(L, "repl: cannot watch stdin: %s", uv_strerror(rc)); }
  return 0;
}

/* Tab completion: repl.lua's complete(word) lists the candidates (global
 * names and fields reachable by a dotted path, `coru.tc` -> `coru.tcp`). */
static int complete_ref = LUA_NOREF;
static char **cands;
static size_t ncands;

static void cands_free(void) {
  for (size_t i = 0; i < ncands; i++) free(cands[i]);
  free(cands);
  cands = NULL;
  ncands = 0;
}

static char *complete_next(const char *text, int state) {
  static size_t next;
  if (state == 0) {
    cands_free();
    next = 0;
    lua_State *L = coru_R->L;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, complete_ref);
    lua_pushstring(L, text);
    if (lua_pcall(L, 1, 1, 0) == 0 && lua_istable(L, -1)) {
      size_t n = lua_objlen(L, -1);
      cands = calloc(n ? n : 1, sizeof *cands);
      for (size_t i = 0; cands && i < n; i++) {
        lua_rawgeti(L, -1, (int)i + 1);
        const char *s = lua_tostring(L, -1);
        if (s && (cands[ncands] = strdup(s))) ncands++;
        lua_pop(L, 1);
      }
    }
    lua_settop(L, top);
  }
  if (next >= ncands) return NULL;
  char *s = cands[next];
  cands[next++] = NULL;    /* libedit frees what we return */
  return s;
}

static char **complete(const char *text, int start, int end) {
  (void)start; (void)end;
  rl_attempted_completion_over = 1;   /* no file names */
  return rl_completion_matches(text, complete_next);
}

/* interrupt(): Ctrl-C at the prompt: drop what was typed, a fresh prompt
 * (as node and bash do); a second Ctrl-C in a row at an empty prompt ends
 * the input as Ctrl-D does. Returns false when no prompt waits. */
static int l_interrupt(lua_State *L) {
  if (!R.reading || !R.tty) { lua_pushboolean(L, 0); return 1; }
  int empty = rl_end == 0 && strcmp(R.prompt, "> ") == 0;
  rl_callback_handler_remove();
  fputs("^C\n", stdout);
  if (empty && R.ctrlc) {
    fflush(stdout);
    deliver(NULL, 0);
  } else {
    if (empty) fputs("(to exit, press Ctrl-C again or Ctrl-D)\n", stdout);
    fflush(stdout);
    rl_callback_handler_install(R.prompt, on_line);
    R.ctrlc = empty;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* finish(): the REPL ended (end of input): the host ends now, like node,
 * closing what is still open. */
static int l_finish(lua_State *L) {
  (void)L;
  coru_R->main_only = 1;
  if (R.tty) sigaction(SIGINT, &prev_int, NULL);
  if (R.open) { uv_close((uv_handle_t *)&R.poll, NULL); R.open = 0; }
  free(R.buf); R.buf = NULL; R.len = R.cap = 0;
  cands_free();
  coru_unref(L, &complete_ref);
  return 0;
}

/* set_completion(fn): fn(word) -> candidates, for Tab. */
static int l_set_completion(lua_State *L) {
  coru_unref(L, &complete_ref);
  complete_ref = coru_ref_cb(L, 1);
  rl_attempted_completion_function = complete;
  rl_completion_append_character = '\0';
  rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^#[]~";
  return 0;
}

static const char read_line_src[] =
  "local start = ... return function(prompt) return coroutine.yield(start, prompt) end";

/* Pushes the REPL's main function and its two arguments: the caller runs it
 * as (part of) the main task. Returns 0, or -1 with a message pushed. */
int coru_repl_push(lua_State *L) {
  R.tty = isatty(0);
  if (R.tty) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = repl_trap;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &prev_int);
  }
  int rc = uv_poll_init(coru_R->loop, &R.poll, 0);
  if (rc < 0 && R.tty) { lua_pushfstring(L, "cannot watch stdin: %s", uv_strerror(rc)); return -1; }
  R.open = rc == 0;
  if (R.tty) {
    const char *h = getenv("CORU_HISTORY"), *home = getenv("HOME");
    if (h) snprintf(R.hist, sizeof R.hist, "%s", h);
    else if (home) snprintf(R.hist, sizeof R.hist, "%s/.coru_history", home);
    using_history();
    stifle_history(1000);
    if (R.hist[0]) read_history(R.hist);
  }
  if (luaL_loadbuffer(L, coru_repl_lua, sizeof coru_repl_lua - 1, "=coru.repl") != 0) return -1;
  if (luaL_loadbuffer(L, read_line_src, sizeof read_line_src - 1, "=coru.repl") != 0) return -1;
  lua_createtable(L, 0, 5);              /* the helpers repl.lua gets */
  lua_insert(L, -2);
  lua_pushcfunction(L, l_start_read);
  lua_call(L, 1, 1);
  lua_setfield(L, -2, "read_line");
  lua_pushcfunction(L, l_finish);
  lua_setfield(L, -2, "finish");
  lua_pushcfunction(L, l_interrupt);
  lua_setfield(L, -2, "interrupt");
  lua_pushcfunction(L, l_set_completion);
  lua_setfield(L, -2, "set_completion");
  lua_pushcfunction(L, l_line);
  lua_setfield(L, -2, "line");
  lua_pushcfunction(L, l_take_signal);
  lua_setfield(L, -2, "take_signal");
  lua_pushboolean(L, R.tty);
  lua_setfield(L, -2, "tty");
  return 0;
}

