/*
 * open.c - the module opener (luaopen_coru: boot.lua, every family's
 * opener, lazy submodules), coru.exit, and shutdown (closing every handle
 * and the loop, at lua_close or exit). The top of the file graph: it calls
 * into every family; nothing calls into it but the host and Lua.
 */
#define _GNU_SOURCE 1   /* dladdr */
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "coru.h"
#include "check.h"
#include "fs.h"     /* coru_fs_live_reqs (CORU_DEBUG_EXIT) */
#include "boot.h"   /* generated from boot.lua: coru_boot_lua */

/* ---------------------------------------------------------- shutdown */

static void walk_close(uv_handle_t *h, void *arg) {
  lua_State *L = arg;
  if (uv_is_closing(h)) return;
  coru_handle *ch = h->data;
  if (ch && ch->type) coru_handle_close(L, ch);
  else uv_close(h, NULL);
}

/* An exit from inside a signal callback (a watcher calling os.exit, the
 * host's SIGTERM default) runs the loop again from within libuv's signal
 * dispatch, which counts the signal as dispatched only once the callback
 * returns, and libuv finishes closing a signal handle only when every
 * signal it caught is dispatched: the loop would spin for ever. The
 * callback will never return: count it now. Signals still in libuv's pipe
 * are read by the next poll, before any close callback, and dispatch
 * nothing to a closing handle. */
static void settle_signal(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_handle_get_type(h) != UV_SIGNAL) return;
  uv_signal_t *s = (uv_signal_t *)h;
  if (s->caught_signals > s->dispatched_signals) s->dispatched_signals = s->caught_signals;
}

/* Run the loop until the closes are done, at most SHUTDOWN_MS: something
 * that never completes (a request libuv cannot cancel, a close waiting on
 * a signal that never comes) must not hang the exit. */
#define SHUTDOWN_MS 2000

static int guard_hit;

static void shutdown_guard_cb(uv_timer_t *t) {
  guard_hit = 1;
  uv_stop(t->loop);
}

/* CORU_DEBUG_EXIT=1: when the guard ends a run, what kept the loop alive
 * goes to stderr: the loop's counts and every handle, libuv's internal
 * ones too (uv_walk skips those), with its state and coru type. */
static void describe_stuck_loop(uv_loop_t *loop, const char *when) {
  fprintf(stderr, "coru: exit: the loop was still alive %d ms %s: %u active handle(s), %u active request(s) "
          "(%ld of coru's fs requests live), close callbacks %s\n", SHUTDOWN_MS, when, loop->active_handles,
          loop->active_reqs.count, coru_fs_live_reqs, loop->closing_handles ? "pending" : "none pending");
  for (void **q = (void **)loop->handle_queue[0]; q != (void **)loop->handle_queue; q = (void **)q[0]) {
    uv_handle_t *h = (uv_handle_t *)((char *)q - offsetof(uv_handle_t, handle_queue));
    coru_handle *ch = h->data;
    /* data: a coru handle, or NULL (the runtime's own, libuv's internal) */
    const char *name = ch && ch->uvh == h && ch->type ? ch->type->name : "-";
    fprintf(stderr, "coru: exit:   %-10s active %d ref %d closing %d flags 0x%x coru %s",
            uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h), uv_has_ref(h), uv_is_closing(h),
            h->flags, name);
    if (uv_handle_get_type(h) == UV_TIMER && uv_is_active(h))
      fprintf(stderr, " due in %llu ms", (unsigned long long)uv_timer_get_due_in((uv_timer_t *)h));
    fputc('\n', stderr);
  }
}

static void run_bounded(uv_loop_t *loop, const char *when) {
  uv_timer_t guard;
  guard_hit = 0;
  uv_timer_init(loop, &guard);
  guard.data = NULL;                  /* not a coru handle (walk_close) */
  uv_timer_start(&guard, shutdown_guard_cb, SHUTDOWN_MS, 0);
  uv_unref((uv_handle_t *)&guard);    /* the closes keep the loop running, not the guard */
  uv_run(loop, UV_RUN_DEFAULT);
  if (guard_hit && getenv("CORU_DEBUG_EXIT")) describe_stuck_loop(loop, when);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(loop, UV_RUN_NOWAIT);        /* the guard's close (it lives in this frame) */
}

/* Set when the loop could not close: a request libuv cannot cancel (a
 * pool thread blocked in open() of a FIFO without a writer, say). libuv's
 * destructor joins its pool threads at exit() and would wait for it for
 * ever, so the exits below end with _exit once stdio is flushed. */
static int loop_stuck;

static void exit_now(int status) {
  fflush(NULL);
  if (loop_stuck) _exit(status);
  exit(status);
}

/* Close every handle, let the close callbacks run, close the loop. */

void coru_shutdown(void) {
  coru_rt *R = coru_R;
  if (!R || !R->loop) return;
  uv_walk(R->loop, settle_signal, NULL);
  R->shutting_down = 1;   /* no task or callback is resumed by late completions */
  coru_flush_reports();
  coru_sched_close();
  coru_deadline_close_all();
  uv_walk(R->loop, walk_close, R->L);
  run_bounded(R->loop, "after every close was asked");
  if (uv_loop_close(R->loop) != 0) {
    uv_walk(R->loop, walk_close, R->L);
    run_bounded(R->loop, "after a second round of closes");
    loop_stuck = uv_loop_close(R->loop) != 0;   /* still busy: the process is ending, leave it */
  }
  R->loop = NULL;
  coru_work_close_pool();   /* no call in flight now, or none that will end before the process */
  signal(SIGPIPE, SIG_IGN);   /* libuv left SIG_DFL when its SIGPIPE watcher (signal.c) closed */
}

/* The runtime sentinel's __gc: lua_close in plain LuaJIT. */
static int rt_gc(lua_State *L) {
  (void)L;
  coru_shutdown();
  coru_R = NULL;
  return 0;
}

/* exit: streams with queued writes are shut down (libuv finishes the
 * queued writes first) and closed after; everything else is closed now.
 * The loop then runs until they are done, at most EXIT_FLUSH_MS. */
#define EXIT_FLUSH_MS 5000

static int has_queued_writes(uv_handle_t *h) {
  uv_handle_type t = uv_handle_get_type(h);
  return (t == UV_TCP || t == UV_NAMED_PIPE || t == UV_TTY) && !uv_is_closing(h) &&
         uv_stream_get_write_queue_size((uv_stream_t *)h) > 0;
}

static void flush_close(uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  coru_handle *ch = h->data;
  if (ch && ch->type) coru_handle_close(coru_R->L, ch);
  else uv_close(h, NULL);
}

static void flush_shutdown_cb(uv_shutdown_t *req, int status) {
  (void)status;
  flush_close((uv_handle_t *)req->handle);
  free(req);
}

static void walk_exit(uv_handle_t *h, void *arg) {
  int *flushing = arg;
  if (uv_is_closing(h)) return;
  if (has_queued_writes(h)) {
    uv_shutdown_t *req = malloc(sizeof *req);
    if (req && uv_shutdown(req, (uv_stream_t *)h, flush_shutdown_cb) == 0) { (*flushing)++; return; }
    free(req);
  }
  flush_close(h);
}

static void flush_timeout(uv_timer_t *t) {
  uv_walk(t->loop, walk_close, coru_R->L);   /* a peer that does not read: give up */
  uv_stop(t->loop);                           /* coru_shutdown's bounded run finishes the closes */
}

static void flush_and_close(void) {
  int flushing = 0;
  uv_walk(coru_R->loop, settle_signal, NULL);
  uv_walk(coru_R->loop, walk_exit, &flushing);
  if (flushing) {
    static uv_timer_t t;           /* the loop outlives this frame: the state's close runs it again */
    uv_timer_init(coru_R->loop, &t);
    t.data = NULL;                 /* not a coru handle (walk_close) */
    uv_timer_start(&t, flush_timeout, EXIT_FLUSH_MS, 0);
    uv_unref((uv_handle_t *)&t);   /* the shutdowns keep the loop running */
    /* Not reentrant in general, but this call never returns to the outer
     * uv_run: exit() follows. Late completions resume nothing (shutting down). */
    uv_run(coru_R->loop, UV_RUN_DEFAULT);
    /* finished by the shutdown's run; flush_timeout's walk closed it already */
    if (!uv_is_closing((uv_handle_t *)&t)) uv_close((uv_handle_t *)&t, NULL);
  }
}

/* The Lua state is being closed by coru_close_state: a __gc it runs that
 * calls exit leaves its status here and unwinds (the close goes on). */
static int state_closing, pending_status = -1;

/* In the module, lua_close unloads coru.so (package's __gc dlcloses it)
 * while this code still runs: keep it mapped for the exit. */
static void pin_module(void) {
  Dl_info info;
  if (dladdr((void *)luaopen_coru, &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

int coru_close_state(lua_State *L, int status) {
  if (coru_R && !coru_R->host) pin_module();
  state_closing = 1;
  lua_close(L);                /* every __gc; the sentinel's shuts the runtime down */
  coru_signal_host_end();      /* the host's watchdog thread, if any */
  status = pending_status >= 0 ? pending_status : status;
  if (loop_stuck) exit_now(status);
  return status;
}

/* The end of an exit: flush queued writes, close every handle and the
 * loop, close the Lua state (when close), exit. L is not used after this:
 * lua_close frees every thread. */
static void exit_end(lua_State *L, int status, int close) {
  if (coru_R && coru_R->loop) flush_and_close();
  if (close) status = coru_close_state(L, status);
  else coru_shutdown();
  exit_now(status);
}

/* An exit asked inside uv_run does not end the process there: a libuv
 * function up the C stack may still hold work it has taken off the loop's
 * queues (uv__work_done runs a batch of finished pool requests from a list
 * on its own stack; the first callback woke the exiting task), which the
 * exit's own runs of the loop would never see finish. It records the
 * status, stops the loop and suspends the caller for good; libuv finishes
 * its frame (late completions resume nothing); the code that ran uv_run
 * (coru_after_run) calls this, with no libuv frame left above it. */
static int unwound_status, unwound_close;

static void exit_unwound(void) {
  exit_end(coru_R->L, unwound_status, unwound_close);
}

/* coru.exit([status [, close]]): flush queued writes, close every handle
 * and the loop, close the Lua state (the host always; the module when
 * close is true, as LuaJIT's os.exit), exit. Inside uv_run it unwinds
 * first (above): a task is suspended for good, a callback ends with the
 * error "exit", which is not reported. */
static int l_exit(lua_State *L) {
  int status = 0;
  if (lua_isboolean(L, 1)) status = lua_toboolean(L, 1) ? 0 : 1;
  else status = (int)coru_opt_int(L, 1, CORU_INT_MIN, CORU_INT_MAX, coru_R ? coru_R->exit_status : 0, "exit");
  int close = lua_toboolean(L, 2) || (coru_R && coru_R->host);
  fflush(NULL);
  if (state_closing) {         /* called by a __gc while the state closes */
    pending_status = status;
    return luaL_error(L, "exit");   /* ends that finalizer; lua_close goes on */
  }
  coru_rt *R = coru_R;
  if (R && R->loop) {
    int unwind = R->loop_running && !R->exit_direct && (!R->current || coru_can_park(L));
    if (unwind && !R->exit_pending) {   /* the first exit's status wins */
      R->exit_pending = 1;
      unwound_status = status;
      unwound_close = close;
    }
    R->shutting_down = 1;
    coru_sched_close();
    coru_deadline_close_all();   /* before the walk, which would close the pooled timers once more */
    if (unwind) {
      uv_stop(R->loop);
      if (R->current) return coru_park_for_good(L);
      return luaL_error(L, "exit");
    }
  }
  exit_end(L, status, close);
  return 0;
}

/* ---------------------------------------------------------- module */

/* Lazy submodules: coru.tcp, coru.fs, coru.jsonl, ... come from
 * coru.<name> on first use, but only for names that are submodules: one in
 * package.preload, or a file coru/<name>.lua on package.path. Any other
 * field reads as nil, so a typo fails as Lua's "attempt to call a nil
 * value (field 'slep')" and `if coru.json then` is a plain test. */
static int lazy_index(lua_State *L) {
  size_t len;
  const char *k = lua_tolstring(L, 2, &len);
  if (!k || lua_type(L, 2) != LUA_TSTRING || len == 0 || len > 64) return 0;
  for (size_t i = 0; i < len; i++) {
    char c = k[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return 0;
  }
  int top = lua_gettop(L);
  lua_pushfstring(L, "coru.%s", k);
  int modname = lua_gettop(L);
  int found = 0;
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "loaded");
    if (lua_istable(L, -1)) { lua_pushvalue(L, modname); lua_rawget(L, -2); found = !lua_isnil(L, -1); lua_pop(L, 1); }
    lua_pop(L, 1);
    lua_getfield(L, -1, "preload");
    if (!found && lua_istable(L, -1)) { lua_pushvalue(L, modname); lua_rawget(L, -2); found = !lua_isnil(L, -1); lua_pop(L, 1); }
    lua_pop(L, 1);
    lua_getfield(L, -1, "searchpath");
    if (!found && lua_isfunction(L, -1)) {
      lua_pushvalue(L, modname);
      lua_getfield(L, -3, "path");
      if (lua_isstring(L, -1) && lua_pcall(L, 2, 1, 0) == 0) found = lua_isstring(L, -1);
    }
  }
  lua_settop(L, modname);
  if (!found) { lua_settop(L, top); return 0; }
  lua_getglobal(L, "require");
  lua_insert(L, modname);
  lua_call(L, 1, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, 1, k);
  return 1;
}

typedef void (*opener)(lua_State *L);
#define WEAK(name) extern void coru_open_##name(lua_State *L) __attribute__((weak));
WEAK(stream) WEAK(tcp) WEAK(pipe) WEAK(tty) WEAK(udp) WEAK(dns) WEAK(fs)
WEAK(fs_readfile) WEAK(fswatch) WEAK(process) WEAK(signal) WEAK(work) WEAK(misc) WEAK(tls) WEAK(dmp) WEAK(json) WEAK(luv)

int luaopen_coru(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "coru.module");
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  if (coru_R) return luaL_error(L, "coru: one runtime per process (already loaded in another Lua state)");
  coru_rt *R = coru_rt_new();
  if (!R) return luaL_error(L, "coru: the loop of a previous runtime is still alive");
  /* the callback thread: never yields, anchored for ever */
  R->L = lua_newthread(L);
  luaL_ref(L, LUA_REGISTRYINDEX);
  coru_R = R;
  R->exit_unwound = exit_unwound;

  /* boot.lua: (SCHED, ERR, current) -> boot table */
  if (luaL_loadbuffer(L, coru_boot_lua, sizeof(coru_boot_lua) - 1, "=coru.boot") != 0)
    return lua_error(L);
  lua_pushlightuserdata(L, coru_SCHED);
  lua_pushlightuserdata(L, coru_ERR);
  lua_pushcfunction(L, coru_l_current);
  lua_call(L, 3, 1);
  lua_getfield(L, -1, "wrap");
  R->wrap_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  R->boot_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_pushcfunction(L, coru_msgh);
  coru_R->msgh_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushboolean(L, 0);
  coru_R->tb_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_newtable(L);                      /* the module */
  int M = lua_gettop(L);
  lua_getfield(L, -2, "await");
  lua_setfield(L, M, "await");
  coru_open_task(L);
  coru_open_sched(L);
  coru_open_group(L);
  coru_open_chan(L);
  coru_open_handle(L);
  coru_open_timer(L);
  opener extra[] = {coru_open_stream, coru_open_tcp, coru_open_pipe, coru_open_tty,
                    coru_open_udp, coru_open_dns, coru_open_fs, coru_open_fs_readfile, coru_open_fswatch,
                    coru_open_process,
                    coru_open_signal, coru_open_work, coru_open_misc, coru_open_tls,
                    coru_open_dmp, coru_open_json, coru_open_luv};
  for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++)
    if (extra[i]) { extra[i](L); lua_settop(L, M); }
  static const coru_Reg rt_funcs[] = {
    {"exit", l_exit, 0},
    {NULL, NULL, 0}
  };
  coru_setfuncs(L, rt_funcs);
  lua_pushliteral(L, CORU_VERSION);
  lua_setfield(L, M, "version");

  /* lazy submodules */
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lazy_index);
  lua_setfield(L, -2, "__index");
  lua_setmetatable(L, M);

  /* the sentinel whose __gc shuts the runtime down at lua_close */
  lua_newuserdata(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, rt_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "coru.runtime");

  lua_pushvalue(L, M);
  lua_setfield(L, LUA_REGISTRYINDEX, "coru.module");
  return 1;
}
