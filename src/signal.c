/*
 * signal.c - signal handles (luv's API), coru.kill, and the host's default
 * for SIGINT/SIGTERM: with no signal handle of the script watching it, the
 * host closes its handles and exits with 128 + signal (130, 143).
 */
#include <signal.h>
#include <string.h>
#include <strings.h>
#include "coru.h"

typedef struct {
  coru_handle base;
  uv_signal_t s;
  int cb_ref;
  int signum;     /* counted in watching[] while started */
} csignal;

static coru_htype signal_type;
static int watching[65];   /* started user handles per signal */

static const struct { const char *name; int num; } signames[] = {
  {"sighup", SIGHUP}, {"sigint", SIGINT}, {"sigquit", SIGQUIT}, {"sigill", SIGILL},
  {"sigtrap", SIGTRAP}, {"sigabrt", SIGABRT}, {"sigbus", SIGBUS}, {"sigfpe", SIGFPE},
  {"sigkill", SIGKILL}, {"sigusr1", SIGUSR1}, {"sigsegv", SIGSEGV}, {"sigusr2", SIGUSR2},
  {"sigpipe", SIGPIPE}, {"sigalrm", SIGALRM}, {"sigterm", SIGTERM}, {"sigchld", SIGCHLD},
  {"sigcont", SIGCONT}, {"sigstop", SIGSTOP}, {"sigtstp", SIGTSTP}, {"sigttin", SIGTTIN},
  {"sigttou", SIGTTOU}, {"sigurg", SIGURG}, {"sigxcpu", SIGXCPU}, {"sigxfsz", SIGXFSZ},
  {"sigvtalrm", SIGVTALRM}, {"sigprof", SIGPROF}, {"sigwinch", SIGWINCH}, {"sigio", SIGIO},
  {"sigsys", SIGSYS},
};

const char *coru_signame(int num) {
  for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
    if (signames[i].num == num) return signames[i].name;
  return NULL;
}

/* A signal as a name ("sigint", "SIGINT", "int") or a number; raises an
 * argument error naming fn otherwise. */
int coru_checksignal(lua_State *L, int idx, const char *fn, int def) {
  if (lua_isnoneornil(L, idx) && def > 0) return def;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    int n = (int)lua_tointeger(L, idx);
    if (n >= 0 && n < 65) return n;
  } else if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
      if (strcasecmp(s, signames[i].name) == 0 || strcasecmp(s, signames[i].name + 3) == 0)
        return signames[i].num;
  }
  return luaL_error(L, "bad argument #%d to '%s' (invalid signal %s)", idx, fn,
                    lua_isstring(L, idx) ? lua_tostring(L, idx) : luaL_typename(L, idx));
}

static void unwatch(csignal *s) {
  if (s->signum > 0) { watching[s->signum]--; s->signum = 0; }
}

static void signal_on_close(coru_handle *h) {
  csignal *s = (csignal *)h;
  unwatch(s);
  coru_unref(coru_R->L, &s->cb_ref);
}

static int l_new_signal(lua_State *L) {
  csignal *s = coru_handle_alloc(L, &signal_type, sizeof *s, offsetof(csignal, s));
  s->cb_ref = LUA_NOREF;
  int r = uv_signal_init(coru_R->loop, &s->s);
  if (r < 0) { coru_handle_init_failed(L, &s->base); return coru_fail(L, r, NULL); }
  return 1;
}

static void signal_cb(uv_signal_t *us, int signum) {
  csignal *s = us->data;
  lua_State *L = coru_R->L;
  if (s->cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->cb_ref);
  if (!uv_is_active((uv_handle_t *)us)) {
    /* oneshot: done, let the callback start it again */
    coru_handle_push(L, &s->base);
    unwatch(s);
    coru_handle_clear_cb(L, &s->base, &s->cb_ref);
    lua_pop(L, 1);
  }
  const char *name = coru_signame(signum);
  if (name) lua_pushstring(L, name); else lua_pushinteger(L, signum);
  coru_callback(1);
}

static int start(lua_State *L, int oneshot) {
  csignal *s = (csignal *)coru_check_handle(L, 1, &signal_type);
  const char *fn = oneshot ? "signal_start_oneshot" : "signal_start";
  int signum = coru_checksignal(L, 2, fn, 0);
  int ref = coru_ref_cb(L, 3);
  int r = oneshot ? uv_signal_start_oneshot(&s->s, signal_cb, signum)
                  : uv_signal_start(&s->s, signal_cb, signum);
  if (r < 0) {
    coru_unref(L, &ref);
    return coru_fail(L, r, NULL);
  }
  unwatch(s);
  s->signum = signum;
  watching[signum]++;
  coru_handle_set_cb(L, &s->base, &s->cb_ref, ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_signal_start(lua_State *L) { return start(L, 0); }
static int l_signal_start_oneshot(lua_State *L) { return start(L, 1); }

static int l_signal_stop(lua_State *L) {
  csignal *s = (csignal *)coru_check_handle(L, 1, &signal_type);
  uv_signal_stop(&s->s);
  unwatch(s);
  coru_handle_clear_cb(L, &s->base, &s->cb_ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_signal_getsignum(lua_State *L) {
  csignal *s = (csignal *)coru_check_handle(L, 1, &signal_type);
  lua_pushinteger(L, s->s.signum);
  return 1;
}

/* coru.kill(pid [, sig]): default sigterm. */
static int l_kill(lua_State *L) {
  int pid = (int)luaL_checkinteger(L, 1);
  int sig = coru_checksignal(L, 2, "kill", SIGTERM);
  int r = uv_kill(pid, sig);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static const coru_Reg signal_methods[] = {
  {"start", l_signal_start, 0},
  {"start_oneshot", l_signal_start_oneshot, 0},
  {"stop", l_signal_stop, 0},
  {"getsignum", l_signal_getsignum, 0},
  {NULL, NULL, 0}
};

static coru_htype signal_type = {"coru.signal", CORU_K_SIGNAL, CORU_K_SIGNAL, signal_methods,
                                 signal_on_close, NULL, NULL};

/* ------------------------------------------------------ host defaults */

static uv_signal_t host_sig[2];

static void host_signal_cb(uv_signal_t *h, int signum) {
  (void)h;
  if (watching[signum] > 0) return;   /* the script handles it */
  lua_State *L = coru_R->L;
  lua_getfield(L, LUA_REGISTRYINDEX, "coru.module");
  lua_getfield(L, -1, "exit");
  lua_pushinteger(L, 128 + signum);
  lua_pcall(L, 1, 0, 0);              /* closes the handles, exits */
}

/* Called by the host (main.c) after loading coru. */
void coru_signal_host_defaults(void) {
  int sigs[2] = {SIGINT, SIGTERM};
  for (int i = 0; i < 2; i++) {
    uv_signal_init(coru_R->loop, &host_sig[i]);
    host_sig[i].data = NULL;          /* not a coru handle: shutdown just closes it */
    uv_signal_start(&host_sig[i], host_signal_cb, sigs[i]);
    uv_unref((uv_handle_t *)&host_sig[i]);
  }
}

static const coru_Reg signal_funcs[] = {
  {"new_signal", l_new_signal, 0},
  {"signal_start", l_signal_start, 0},
  {"signal_start_oneshot", l_signal_start_oneshot, 0},
  {"signal_stop", l_signal_stop, 0},
  {"kill", l_kill, 0},
  {NULL, NULL, 0}
};

CORU_FAMILY(signal) {
  coru_register_htype(L, &signal_type);
  coru_setfuncs(L, signal_funcs);
}
