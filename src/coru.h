/*
 * coru.h - the one internal header every C file of coru includes.
 *
 * Layers (each family file builds only on what is declared here):
 *   runtime   one per process: the loop, the callback thread, on_error.
 *   tasks     coroutines owned by the scheduler (sched.c).
 *   conts     a pending native operation: who gets the result, a task
 *             (suspended) or a callback (luv style cb(err, ...)).
 *   handles   the userdata base for every uv handle (handle.c).
 */
#ifndef CORU_H
#define CORU_H

#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

/* Usage errors point at the user's line. luaL_error and luaL_argerror put
 * the position of the calling frame in front of the message; for coru's
 * functions that frame is often coru's own (the wrapper of a suspending
 * function, "(coru):1:", or a module in lua/coru/). These versions skip
 * coru's frames first (usage.c); every C file gets them through these
 * macros, the luaL_check* family included. */
int coru_error(lua_State *L, const char *fmt, ...);
int coru_argerror(lua_State *L, int narg, const char *extramsg);
int coru_typerror(lua_State *L, int narg, const char *tname);
lua_Integer coru_checkinteger(lua_State *L, int narg);
lua_Integer coru_optinteger(lua_State *L, int narg, lua_Integer def);
lua_Number coru_checknumber(lua_State *L, int narg);
lua_Number coru_optnumber(lua_State *L, int narg, lua_Number def);
const char *coru_checklstring(lua_State *L, int narg, size_t *len);
const char *coru_optlstring(lua_State *L, int narg, const char *def, size_t *len);
void coru_checktype(lua_State *L, int narg, int t);
void *coru_checkudata(lua_State *L, int narg, const char *tname);
void coru_where(lua_State *L, int level);
#define luaL_error coru_error
#define luaL_argerror coru_argerror
#define luaL_typerror coru_typerror
#define luaL_checkinteger coru_checkinteger
#define luaL_optinteger coru_optinteger
#define luaL_checknumber coru_checknumber
#define luaL_optnumber coru_optnumber
#define luaL_checklstring coru_checklstring
#define luaL_optlstring coru_optlstring
#define luaL_checktype coru_checktype
#define luaL_checkudata coru_checkudata

#define CORU_VERSION "0.1.0"

/* The struct of type T whose member m is at p (a cont, a uv request). */
#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

typedef struct coru_task coru_task;
typedef struct coru_cont coru_cont;
typedef struct coru_handle coru_handle;
typedef struct coru_htype coru_htype;

/* ---------------------------------------------------------------- runtime */

typedef struct coru_rt {
  uv_loop_t *loop;
  lua_State *L;          /* callback thread: every callback runs here, never on a task */
  coru_task *current;    /* innermost running task, NULL in callbacks / main thread */
  int depth;             /* > 0 while the scheduler is on the C stack */
  int loop_running;      /* inside uv_run */
  int exit_status;       /* set to 1 by the default error handler */
  int on_error_ref;      /* registry ref of the error handler (LUA_NOREF = default) */
  int host;              /* 1 in the coru binary, 0 in the module */
  int main_only;         /* host: end when the main task ends (a busted run), not when the loop is dry */
  const void *task_mt;   /* metatable identity of tasks */
  const void *cancel_mt; /* metatable identity of cancellation errors */
  int boot_ref;          /* registry ref of the boot table (Lua half of the scheduler) */
  int wrap_ref;          /* registry ref of boot.wrap (wraps a yielding C function) */
  coru_task *ready_head, *ready_tail;  /* tasks woken while the scheduler runs */
  /* Lifecycle state: everything a runtime holds lives here, so that one can
   * be opened, closed (lua_close) and opened again in the same process. */
  int shutting_down;     /* late completions resume nothing */
  /* An exit asked inside uv_run (a task or callback a libuv callback ran):
   * everything is closed and the loop stopped; the code that called uv_run
   * calls exit_unwound once it returns, which ends the process (open.c). */
  int exit_pending;
  int exit_direct;       /* the exit cannot unwind (signal.c's hook): end it in place */
  void (*exit_unwound)(void);
  int msgh_ref, tb_ref;  /* callbacks' message handler, its last traceback */
  int task_mt_ref, cancel_mt_ref, chan_mt_ref, taskco_ref;
  int unobserved_ref, unobserved_n;    /* failed tasks nobody observed yet */
  int live_ref;          /* handle.c: weak table light(h) -> box */
  const void *box_mt;    /* handle.c: the handle metatable last checked, and its htype */
  const void *box_ht;
  uv_idle_t tick;        /* next-iteration work: coru.pass, reports */
  unsigned tick_epoch;
  int tick_inited;
  int tick_on;           /* tick is started (uv_is_active without the call) */
  coru_task *pass_head, *pass_tail;
  coru_task *main_task;  /* the host's main task while uv_run runs */
  coru_task *tasks_head; /* every task not finished (coru.tasks) */
  struct coru_deadline *dl_free;       /* timer.c: pooled deadline timers */
  int dl_nfree;
} coru_rt;

extern coru_rt *coru_R;  /* the runtime (rt.c), NULL until luaopen_coru */
/* After every uv_run that Lua's calls start: end an exit that unwound. */
static inline void coru_after_run(coru_rt *R) {
  if (R->exit_pending && R->exit_unwound) R->exit_unwound();
}
/* A fresh runtime on the default loop, or NULL if the loop of a previous
 * runtime is still alive (rt.c; the opener sets coru_R). */
coru_rt *coru_rt_new(void);
/* Message handler of callbacks: keeps the error, remembers the traceback. */
int coru_msgh(lua_State *L);

/* Markers yielded to the scheduler (light userdata identities). */
extern char coru_SCHED[1];  /* a native suspension (alone) or a protocol yield that must reach the scheduler */
extern char coru_ERR[1];    /* resume with (ERR, e): raise e at the suspension */
extern char coru_CALLBACK[1];

/* Run the function at the top of coru_R->L with nargs arguments below it
 * (function first), as a callback: errors go to on_error. Returns 1 if it
 * ran without error. Results are dropped. */
int coru_callback(int nargs);
/* The same call, errors not reported: returns 0 (results dropped), or the
 * error status with the error value and its traceback (a string, or nil)
 * left at the top of coru_R->L. */
int coru_pcall(int nargs);
/* Report an error value (at the top of L, popped) with a traceback string (may be NULL). */
void coru_report(lua_State *L, const char *traceback);

/* Registration: a yielding function is wrapped by the core (boot.lua wrap)
 * so that the errors it is resumed with are raised at the caller
 * (cancellation). The wrapper takes a fixed shape of values from the call
 * (coru_shape below), so that LuaJIT can stitch a trace across it: every
 * value such a function gives back, returned at once or resumed with, is
 * shaped by the core (a C adapter, task_step); the function itself returns
 * as any lua_CFunction does. A function that suspends must be registered
 * with CORU_YIELDS. */
#define CORU_YIELDS 1
/* A yielding function that reads at most k (<= 5) arguments (k counts any
 * it checks for misuse, a refused callback slot included), none of them
 * where a nil differs from no value: its wrapper has k fixed parameters
 * (boot.lua wrap), which lets LuaJIT compile the caller on after it.
 * Arguments past k never reach the function. */
#define CORU_ARITY(k) (((k) + 1) << 4)
/* A yielding function that never returns without suspending (it raises
 * instead): nothing it returns needs shaping, so Lua calls it directly
 * from its wrapper (no C adapter). */
#define CORU_ALWAYS_YIELDS 2
typedef struct coru_Reg { const char *name; lua_CFunction fn; int flags; } coru_Reg;
void coru_setfuncs(lua_State *L, const coru_Reg *r);  /* into the table at the top */
#define CORU_REG(name) {#name, l_##name, 0}   /* a plain function l_name named name */
/* A family's table: each function once, under its method name (the handle
 * type's metatable) and its flat luv name (coru.X_y); either may be NULL.
 * CORU_FN(fam, m, flags) is the usual entry: method m, flat name fam_m,
 * function l_fam_m. */
typedef struct coru_Fn { const char *method, *flat; lua_CFunction fn; int flags; } coru_Fn;
#define CORU_FN(fam, m, flags) {#m, #fam "_" #m, l_##fam##_##m, flags}
#define CORU_FNS_END {NULL, NULL, NULL, 0}
enum { CORU_METHOD_NAMES = 0, CORU_FLAT_NAMES = 1, CORU_KEEP = 2 };
/* Into the table at the top: the method names, or the flat names
 * (CORU_FLAT_NAMES); with CORU_KEEP a name already there stays. */
void coru_setfns(lua_State *L, const coru_Fn *f, int which);
/* The n results at the top of L as a wrapped function's wrapper takes them
 * (boot.lua): nothing for 0, n, r1..rn for n <= 3, else n, {r1..rn}.
 * Returns the new count.
 * The scheduler applies it to the values a native suspension is resumed with. */
int coru_shape(lua_State *L, int n);

/* Callbacks and refs. */
int coru_is_callable(lua_State *L, int idx);
int coru_ref_cb(lua_State *L, int idx);              /* checks callable (argerror), returns registry ref */
void coru_unref(lua_State *L, int *ref);              /* unref and set LUA_NOREF */

/* An array of strings at idx (absolute, length n) holding numbers is
 * replaced there by a copy holding their string forms (luv's coercion). */
void coru_coerce_buffers(lua_State *L, int idx, unsigned n);

/* Errors: failures are `nil, "ENAME: message[: detail]", "ENAME"`. */
void coru_push_errmsg(lua_State *L, int uverr, const char *detail);   /* pushes the message only */
int coru_fail(lua_State *L, int uverr, const char *detail);           /* pushes nil, msg, name; returns 3 */
int coru_fail_str(lua_State *L, const char *msg, const char *name);   /* nil, msg[, name] */
/* A synchronous call's end: r < 0 fails as coru_fail; else pushes 0 (luv's
 * success value for calls that have no result) and returns 1. */
int coru_result(lua_State *L, int r, const char *detail);

enum { CORU_MODE_NONE = 0, CORU_MODE_CB, CORU_MODE_TASK };

struct coru_cont {
  coru_task *task;
  int cb_ref;
  unsigned char mode;
  unsigned char active;
  void (*cancel)(coru_cont *c);
};

/* ------------------------------------------------------------------ tasks */

enum { CORU_RUNNING = 1, CORU_SUSPENDED, CORU_DONE, CORU_FAILED, CORU_CANCELLED };
enum { CORU_NATIVE_OWN = 1, CORU_NATIVE_INNER = 2 };


/* The task running now (NULL outside any task). */
#define coru_current() (coru_R->current)

/* Whether the calling code, on L, may suspend the current task here: in a
 * task, and L is its coroutine or a yieldable coroutine inside it (not a
 * metamethod or a table.sort comparator). The task's fields are the
 * scheduler's (coru_sched.h). */
int coru_can_suspend(lua_State *L);

/* Wake a suspended task: nargs values are already on T->co. The one way a
 * task is resumed: runs it now when called from the loop, or queues it when
 * the scheduler is busy (the yielded function dispatching for it takes the
 * values when it returns). */
void coru_wake(coru_task *T, int nargs);

/* Push the cancellation error for reason at the top (popped). */
void coru_push_cancel_error(lua_State *L, int reason_idx);

/* Report failed tasks nobody observed (on_error); shutdown and luv.run call it. */
void coru_flush_reports(void);
/* Shutdown: cancel what the scheduler still holds (tick, pending passes). */
void coru_sched_close(void);
/* coru.exit inside uv_run: can the running task suspend from L; suspend it
 * for good (return coru_park_for_good(L) from the C function). */
int coru_can_park(lua_State *L);
int coru_park_for_good(lua_State *L);
/* coru.current(): the running task or nil (boot.lua gets it too). */
int coru_l_current(lua_State *L);

/* ------------------------------------------------------------------ conts */

/* A pending native operation. Embed it in the request or handle struct.
 * Every yielding C function has this shape:
 *
 *   ... check the arguments (raising) ...
 *   int mode = coru_enter(L, cbidx, "stream:read", 0);   // may raise: nothing exists yet
 *   ... allocate the request ...
 *   coru_cont_init(L, &req->cont, mode == CORU_MODE_CB ? cbidx : 0, cancel_fn);
 *   ... start the uv operation; on immediate failure: coru_cont_clear, return coru_fail ...
 *   return coru_cont_yield(L, &req->cont, nret);
 *
 * and in the uv callback:
 *
 *   lua_State *S = coru_cont_begin(&req->cont);
 *   if (!S) { free the request; return; }      // cancelled: late result discarded
 *   if (status < 0) coru_cont_fail(&req->cont, status, detail);
 *   else { push results on S; coru_cont_ok(&req->cont, nresults); }
 *
 * In task mode the task gets the results (or nil, msg, name); in callback
 * mode the callback gets (nil, results...) (or msg). cancel() is called when
 * the waiting task is cancelled: it must stop the operation if it can; the
 * completion then finds coru_cont_begin returning NULL.
 */

/* The entry of every yielding C function, called before it allocates or
 * changes anything. cbidx: stack index of the optional callback (0: none
 * allowed; nil/none there: none). Raises (argerror) if the slot holds
 * something not callable (callable tables and userdata are accepted); in a
 * task where the VM cannot yield ("cannot suspend here"); outside any task
 * without a callback ("<fname>: needs a running task or a callback")
 * unless flags has CORU_SYNC_OK (the caller then runs synchronously).
 * Returns the mode: CB, TASK or NONE. */
#define CORU_SYNC_OK 1
#define CORU_TASK_ONLY 2   /* no callback form: the error says "needs a running task" */
int coru_enter(lua_State *L, int cbidx, const char *fname, int flags);

/* Completion of a request whose success carries no value: status < 0 is a
 * failure (named "closed" when closed says the handle was closed under
 * it); a task gets true or nil, msg, name; a callback cb(nil) or cb(msg).
 * Does coru_cont_begin itself (a discarded completion does nothing). */
void coru_cont_complete(coru_cont *c, int status, int closed, const char *detail);

/* cbidx: stack index of the optional callback (0: none allowed). Returns the
 * mode: CB if a callable is there, TASK if inside a task, NONE otherwise
 * (the caller then runs synchronously). Call coru_enter first: it raises
 * what this would find wrong, before anything is allocated. */
int coru_cont_init(lua_State *L, coru_cont *c, int cbidx, void (*cancel)(coru_cont *));
/* Task mode: suspend the current task on c. Callback mode: return nret
 * (values the caller already pushed, e.g. the request). */
int coru_cont_yield(lua_State *L, coru_cont *c, int nret);
/* Forget c without completing (immediate failure before anything started). */
void coru_cont_clear(lua_State *L, coru_cont *c);
/* A request whose start failed (r < 0): the registry ref at anchor (the
 * data it held) dropped, c cleared; pushes the failure and returns its
 * count. The caller frees the request. */
int coru_cont_abort(lua_State *L, coru_cont *c, int *anchor, int r);
lua_State *coru_cont_begin(coru_cont *c);
void coru_cont_ok(coru_cont *c, int nresults);
void coru_cont_fail(coru_cont *c, int uverr, const char *detail);
void coru_cont_fail_str(coru_cont *c, const char *msg, const char *name);
int coru_need_task(lua_State *L, const char *fname);  /* raises "needs a running task or a callback" */
int coru_need_task_only(lua_State *L, const char *fname);  /* raises "needs a running task" (no callback form) */

/* ---------------------------------------------------------------- handles */

/* Every uv handle made by coru sits in a struct that starts with
 * coru_handle; the uv handle follows (uvh points to it, uvh->data to the
 * struct). Lua holds a box (userdata) with a pointer to the struct; the
 * struct is freed only in the close callback. */
struct coru_htype {
  const char *name;            /* "coru.timer" */
  unsigned kind;               /* bit of this type */
  unsigned accepts;            /* kinds a check for this type accepts (itself and children) */
  const coru_Fn *methods;     /* its methods and their flat names */
  void (*on_close)(coru_handle *h);  /* closing starts: wake waiters (may run Lua) */
  void (*on_free)(coru_handle *h);   /* close callback: free extra memory (no Lua) */
  const void *mt;              /* filled at registration */
};

struct coru_handle {
  uv_handle_t *uvh;
  const coru_htype *type;
  struct coru_box *box;   /* NULL once Lua dropped the userdata */
  int self_ref;           /* registry ref of the box while kept alive */
  int keep;               /* reasons to keep the box alive (active callbacks, waiters) */
  int close_ref;          /* close callback */
  int cb_ref;             /* the callback slot (luv's callbacks[]): coru_handle_set_cb,
                           * dropped when closing starts */
  unsigned char closing;
};

typedef struct coru_box { coru_handle *h; } coru_box;

/* Allocate a zeroed struct of size bytes for type t (registered), push its
 * box (userdata). uvh_offset: offsetof the uv handle inside the struct, or
 * 0 for a uv handle allocated apart (set h->uvh and its data, free it in
 * on_free). Call uv_*_init next; on failure coru_handle_init_failed (frees,
 * pops). */
void *coru_handle_alloc(lua_State *L, const coru_htype *t, size_t size, size_t uvh_offset);
void coru_handle_init_failed(lua_State *L, coru_handle *h);
/* Check argument idx is a live handle of type t (or a child kind). Raises
 * "handle is closed" for a closed or closing one. */
coru_handle *coru_check_handle(lua_State *L, int idx, const coru_htype *t);
coru_handle *coru_test_handle(lua_State *L, int idx, const coru_htype *t); /* NULL if not one */
/* Keep the Lua object alive while the handle works (balanced calls). */
void coru_handle_keep(lua_State *L, coru_handle *h);
void coru_handle_release(lua_State *L, coru_handle *h);
/* A callback slot of a handle (registry ref; h->cb_ref is the one every
 * handle has): while one is set the handle is kept alive. set takes
 * ownership of ref and replaces any previous one. Closing drops h->cb_ref. */
void coru_handle_set_cb(lua_State *L, coru_handle *h, int *slot, int ref);
void coru_handle_clear_cb(lua_State *L, coru_handle *h, int *slot);
/* The end of luv's X_start(h, ..., cb) for a handle whose uv start (r)
 * replaced or stopped what it did before: r < 0 fails (detail as in
 * coru_fail), ref (the new callback) dropped and the slot emptied; else
 * ref fills h->cb_ref and 0 is pushed. Returns the count of results. */
int coru_handle_started(lua_State *L, coru_handle *h, int ref, int r, const char *detail);
/* The end of luv's X_stop(h): h->cb_ref emptied, 0 pushed; returns 1. */
int coru_handle_stopped(lua_State *L, coru_handle *h);
/* A request on h has started: h is kept alive until its completion
 * releases it (coru_handle_release), and the caller gets true (callback
 * mode) or suspends on c (coru_cont_yield). */
int coru_handle_yield(lua_State *L, coru_handle *h, coru_cont *c);
/* The end of luv's new_X: r from uv_X_init; on failure the struct is
 * freed (coru_handle_init_failed) and nil, msg, name pushed. Returns the
 * count of results (the box is already pushed). */
int coru_handle_inited(lua_State *L, coru_handle *h, int r);
/* Push the handle's box (it must still exist). */
int coru_handle_push(lua_State *L, coru_handle *h);
/* Close (as h:close() would, without callback). */
void coru_handle_close(lua_State *L, coru_handle *h);
/* Register a handle type: metatable with the base methods and t->methods,
 * whose flat names go into the table at the top (the module); leaves
 * nothing else on the stack. */
void coru_register_htype(lua_State *L, coru_htype *t);
/* Argument idx: a descriptor (0 .. INT_MAX) that libuv can adopt as want
 * (UV_TCP, UV_NAMED_PIPE, UV_UDP): returns it, or a negative libuv error
 * (EBADF: not open, ENOTSOCK: a file or device, EINVAL: another kind of
 * socket). libuv aborts on a descriptor of the wrong kind. */
int coru_check_fd_of(lua_State *L, int idx, uv_handle_type want, const char *fn);
/* The methods every handle has, for luv-style flat names (close, ref, ...). */
extern const coru_Fn coru_handle_methods[];

/* Kinds (bits) */
enum {
  CORU_K_TIMER = 1 << 0, CORU_K_IDLE = 1 << 1, CORU_K_PREPARE = 1 << 2, CORU_K_CHECK = 1 << 3,
  CORU_K_TCP = 1 << 4, CORU_K_PIPE = 1 << 5, CORU_K_TTY = 1 << 6, CORU_K_UDP = 1 << 7,
  CORU_K_SIGNAL = 1 << 8, CORU_K_PROCESS = 1 << 9, CORU_K_FS_EVENT = 1 << 10,
  CORU_K_FS_POLL = 1 << 11, CORU_K_POLL = 1 << 12, CORU_K_ASYNC = 1 << 13,
  CORU_K_TLS = 1 << 14, CORU_K_INTERNAL = 1 << 30,
  CORU_K_STREAM = CORU_K_TCP | CORU_K_PIPE | CORU_K_TTY | CORU_K_TLS,
  CORU_K_ANY = 0x7fffffff
};

/* --------------------------------------------------------- deadlines */

/* One-shot timer from a pool (no Lua object): fn(data) after ms. The
 * token is released when it fires; coru_deadline_stop only before that. */
typedef struct coru_deadline coru_deadline;
coru_deadline *coru_deadline_start(uint64_t ms, void (*fn)(void *), void *data);
void coru_deadline_stop(coru_deadline *d);
/* Shutdown: the pooled timers go with the loop. */
void coru_deadline_close_all(void);

/* ----------------------------------------------------- shared by families */
/* signal.c: a signal number or name at idx (def if absent), and a number's name. */
int coru_checksignal(lua_State *L, int idx, const char *fn, int def);
const char *coru_signame(int num);

/* ---------------------------------------------------------- family hooks */
/* Each family file defines its opener; it adds functions to the coru table
 * at the top of the stack. Missing ones are skipped (weak symbols). */
#define CORU_FAMILY(name) void coru_open_##name(lua_State *L)
CORU_FAMILY(task);
CORU_FAMILY(sched);
CORU_FAMILY(group);
CORU_FAMILY(chan);
CORU_FAMILY(handle);
CORU_FAMILY(timer);
CORU_FAMILY(stream);
CORU_FAMILY(tcp);
CORU_FAMILY(pipe);
CORU_FAMILY(tty);
CORU_FAMILY(udp);
CORU_FAMILY(dns);
CORU_FAMILY(fs);
CORU_FAMILY(fs_readfile);
CORU_FAMILY(fswatch);
CORU_FAMILY(process);
CORU_FAMILY(signal);
CORU_FAMILY(work);
CORU_FAMILY(misc);
CORU_FAMILY(tls);
CORU_FAMILY(dmp);
CORU_FAMILY(json);
CORU_FAMILY(luv);

/* work.c: close the idle pooled states of coru.work (their __gc run);
 * coru_shutdown calls it once the loop is closed or given up on. */
void coru_work_close_pool(void);

/* luv's threads (thread.c); what crosses Lua states is in xfer.h. */
void coru_luv_thread_open(lua_State *S);      /* package.preload.luv of a foreign state */
void coru_luv_thread_funcs(lua_State *L);     /* new_thread, ..., version into the table at the top */
/* misc.c: functions that need no loop, shared with a thread's luv. */
int coru_l_hrtime(lua_State *L);
int coru_l_getpid(lua_State *L);

__attribute__((visibility("default"))) int luaopen_coru(lua_State *L);
/* Host support. */
void coru_shutdown(void);    /* close every handle, run close callbacks, uv_loop_close */
/* lua_close(L) (coru_shutdown runs from it); returns status, or the status
 * a __gc asked of coru.exit meanwhile. */
int coru_close_state(lua_State *L, int status);
int coru_run_main(lua_State *L, int nargs); /* spawn function at top as main task, run loop; returns exit status */
void coru_signal_host_end(void);       /* signal.c: joins the watchdog (coru_close_state) */
void coru_signal_host_defaults(void);  /* signal.c: SIGINT/SIGTERM exit 130/143 unless watched */
int coru_repl_push(lua_State *L);      /* repl.c: push the REPL's main function and its arguments; 0 or -1 with a message */

#endif
