/*
 * signal.c - signal handles (luv's API), coru.kill, and the host's default
 * for SIGINT/SIGTERM: with no signal handle of the script watching it, the
 * host closes its handles and exits with 128 + signal (130, 143).
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include "coru.h"
#include "check.h"

typedef struct {
  coru_handle base;
  uv_signal_t s;
  int signum;     /* counted in watching[] while started */
} signal_handle;

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
    lua_Number n = lua_tonumber(L, idx);
    if (n >= 0 && n < 65 && n == (int)n) return (int)n;
  } else if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    for (size_t i = 0; i < sizeof signames / sizeof signames[0]; i++)
      if (strcasecmp(s, signames[i].name) == 0 || strcasecmp(s, signames[i].name + 3) == 0)
        return signames[i].num;
  }
  return luaL_error(L, "bad argument #%d to '%s' (invalid signal %s)", idx, fn,
                    lua_isstring(L, idx) ? lua_tostring(L, idx) : luaL_typename(L, idx));
}

static void unwatch(signal_handle *s) {
  if (s->signum > 0) { watching[s->signum]--; s->signum = 0; }
}

/* libuv puts SIG_DFL back when the last watcher of a signal stops; for
 * SIGPIPE that means death at the next write to a closed pipe or socket.
 * coru ignores SIGPIPE (stream.c): ignore it again. */
static void restore_sigpipe(void) {
  struct sigaction sa;
  if (watching[SIGPIPE] <= 0 && sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
}

static void signal_on_free(coru_handle *h) { (void)h; restore_sigpipe(); }

static void signal_on_close(coru_handle *h) {
  signal_handle *s = (signal_handle *)h;
  unwatch(s);
}

static int l_new_signal(lua_State *L) {
  signal_handle *s = coru_handle_alloc(L, &signal_type, sizeof *s, offsetof(signal_handle, s));
  return coru_handle_inited(L, &s->base, uv_signal_init(coru_R->loop, &s->s));
}

static void signal_cb(uv_signal_t *us, int signum) {
  signal_handle *s = us->data;
  lua_State *L = coru_R->L;
  if (s->base.cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->base.cb_ref);
  if (!uv_is_active((uv_handle_t *)us)) {
    /* oneshot: done, let the callback start it again */
    coru_handle_push(L, &s->base);
    unwatch(s);
    restore_sigpipe();
    coru_handle_clear_cb(L, &s->base, &s->base.cb_ref);
    lua_pop(L, 1);
  }
  const char *name = coru_signame(signum);
  if (name) lua_pushstring(L, name); else lua_pushinteger(L, signum);
  coru_callback(1);
}

static int start(lua_State *L, int oneshot) {
  signal_handle *s = (signal_handle *)coru_check_handle(L, 1, &signal_type);
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
  restore_sigpipe();   /* a restart on another signal stopped the old one */
  coru_handle_set_cb(L, &s->base, &s->base.cb_ref, ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_signal_start(lua_State *L) { return start(L, 0); }
static int l_signal_start_oneshot(lua_State *L) { return start(L, 1); }

static int l_signal_stop(lua_State *L) {
  signal_handle *s = (signal_handle *)coru_check_handle(L, 1, &signal_type);
  uv_signal_stop(&s->s);
  unwatch(s);
  restore_sigpipe();
  return coru_handle_stopped(L, &s->base);
}

static int l_signal_getsignum(lua_State *L) {
  signal_handle *s = (signal_handle *)coru_check_handle(L, 1, &signal_type);
  lua_pushinteger(L, s->s.signum);
  return 1;
}

/* coru.kill(pid [, sig]): default sigterm. */
static int l_kill(lua_State *L) {
  int pid = (int)coru_check_int(L, 1, CORU_INT_MIN + 1, CORU_INT_MAX, "kill");
  int sig = coru_checksignal(L, 2, "kill", SIGTERM);
  int r = uv_kill(pid, sig);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

static const coru_Fn signal_fns[] = {
  {NULL, "new_signal", l_new_signal, 0}, {NULL, "kill", l_kill, 0}, CORU_FN(signal, start, 0),
  CORU_FN(signal, start_oneshot, 0), CORU_FN(signal, stop, 0),
  {"getsignum", NULL, l_signal_getsignum, 0}, CORU_FNS_END
};

static coru_htype signal_type = {"coru.signal", CORU_K_SIGNAL, CORU_K_SIGNAL, signal_fns,
                                 signal_on_close, signal_on_free, NULL};

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

/* A busy script never returns to the loop, so the handles above never
 * run. As luajit does, the signal handler also sets a debug hook, which
 * runs at the next Lua instruction of whatever is running and ends the
 * process: SIGINT prints "interrupted!" and a traceback, status 130;
 * SIGTERM status 143. Our handler wraps libuv's (which stays installed
 * while the host handles watch) and chains to it. JIT-compiled code never
 * runs hooks and a blocking C call runs none: a watchdog thread ends the
 * process (_exit, same statuses) if the hook has not within TRAP_GRACE_MS.
 * A second signal while the first is still pending takes the default action. */
#define TRAP_GRACE_MS 500
static struct sigaction uv_action[2];
static volatile sig_atomic_t trap_pending, trap_quit;
static sem_t trap_sem;
static pthread_t trap_thread;
static int trap_started;

static void *trap_watchdog(void *arg) {
  (void)arg;
  for (;;) {
    while (sem_wait(&trap_sem) != 0) {}
    if (trap_quit) return NULL;
    struct timespec ts = {TRAP_GRACE_MS / 1000, (TRAP_GRACE_MS % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
    if (trap_quit) return NULL;
    int sig = trap_pending;
    if (!sig) continue;
    if (sig == SIGINT) {
      static const char msg[] = "coru: interrupted! (in compiled code or a blocking call)\n";
      ssize_t w = write(2, msg, sizeof msg - 1);
      (void)w;
    }
    _exit(128 + sig);
  }
  return NULL;
}

static void host_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  int sig = trap_pending;
  lua_sethook(L, NULL, 0, 0);
  if (!sig) return;
  trap_pending = 0;   /* handled: the watchdog leaves the exit (and its flush) alone */
  if (sig == SIGINT) {
    luaL_traceback(L, L, "interrupted!", 1);
    fprintf(stderr, "coru: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_getfield(L, LUA_REGISTRYINDEX, "coru.module");
  lua_getfield(L, -1, "exit");
  lua_pushinteger(L, 128 + sig);
  coru_R->exit_direct = 1;            /* inside a hook: nothing to unwind to */
  lua_call(L, 1, 0);                  /* does not return */
}

static void host_trap(int sig, siginfo_t *si, void *uc) {
  int saved = errno, i = sig == SIGINT ? 0 : 1;
  if (watching[sig] <= 0 && coru_R && coru_R->L) {
    if (trap_pending) { signal(sig, SIG_DFL); raise(sig); }
    trap_pending = sig;
    lua_sethook(coru_R->L, host_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    sem_post(&trap_sem);
  }
  errno = saved;
  if (uv_action[i].sa_flags & SA_SIGINFO) uv_action[i].sa_sigaction(sig, si, uc);
  else if (uv_action[i].sa_handler != SIG_DFL && uv_action[i].sa_handler != SIG_IGN) uv_action[i].sa_handler(sig);
}

/* The host's state is closed (coru_close_state): the watchdog ends and is
 * joined, so nothing of it is left for valgrind to call lost. */
void coru_signal_host_end(void) {
  if (!trap_started) return;
  trap_started = 0;
  trap_quit = 1;
  sem_post(&trap_sem);
  pthread_join(trap_thread, NULL);
  sem_destroy(&trap_sem);
}

/* Called by the host (main.c) after loading coru. */
void coru_signal_host_defaults(void) {
  int sigs[2] = {SIGINT, SIGTERM};
  if (sem_init(&trap_sem, 0, 0) != 0) return;
  if (pthread_create(&trap_thread, NULL, trap_watchdog, NULL) != 0) { sem_destroy(&trap_sem); return; }
  trap_started = 1;
  for (int i = 0; i < 2; i++) {
    uv_signal_init(coru_R->loop, &host_sig[i]);
    host_sig[i].data = NULL;          /* not a coru handle: shutdown just closes it */
    uv_signal_start(&host_sig[i], host_signal_cb, sigs[i]);
    uv_unref((uv_handle_t *)&host_sig[i]);
    struct sigaction sa;
    if (sigaction(sigs[i], NULL, &uv_action[i]) == 0) {
      memset(&sa, 0, sizeof sa);
      sa.sa_sigaction = host_trap;
      sa.sa_flags = SA_SIGINFO | (uv_action[i].sa_flags & SA_RESTART);
      sigfillset(&sa.sa_mask);
      sigaction(sigs[i], &sa, NULL);
    }
  }
}

/* SIGPIPE: coru ignores it (stream.c), but libuv puts SIG_DFL back when
 * the last watcher of a signal stops, and a pool thread's write to a broken
 * pipe in that moment kills the process. This internal watcher (unref'd,
 * no Lua object) keeps libuv's handler on SIGPIPE for the runtime's life,
 * so a script's SIGPIPE watchers never leave SIG_DFL behind; writes get
 * EPIPE. After shutdown closed it, SIGPIPE goes back to ignored (rt.c). */
static uv_signal_t pipe_guard;

static void pipe_guard_cb(uv_signal_t *h, int signum) { (void)h; (void)signum; }

CORU_FAMILY(signal) {
  coru_register_htype(L, &signal_type);
  if (uv_signal_init(coru_R->loop, &pipe_guard) == 0) {
    pipe_guard.data = NULL;          /* not a coru handle: shutdown closes it */
    uv_signal_start(&pipe_guard, pipe_guard_cb, SIGPIPE);
    uv_unref((uv_handle_t *)&pipe_guard);
  }
}
