/*
 * luv.c - what coru.luv (lua/coru/luv.lua, luv's API over coru) needs from
 * C: uv.run with its modes and uv.stop, also from inside a task, and the
 * few system functions coru's own table does not have. Everything lands in
 * the hidden table coru._luv; the luv names are given in luv.lua.
 *
 * uv.run() inside a task (the host's main chunk, or a task of coru.run)
 * cannot call uv_run: the loop is already running. The task waits instead
 * until nothing but itself keeps the loop alive, which is what uv_run's
 * default mode waits for: a referenced prepare handle keeps the loop
 * running meanwhile, and before each poll it looks (unreferenced for the
 * look) whether anything else is alive. uv.stop() wakes such waiters too.
 */
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/time.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include "coru.h"
#include "check.h"


/* ------------------------------------------------------------------ run */

typedef struct waiter {
  coru_cont cont;
  struct waiter *next;
  int mode;                       /* 0 default, 1 once, 2 nowait */
  int seen;                       /* a prepare phase has begun since the call */
} waiter;

static uv_prepare_t watch;        /* data NULL: coru_shutdown closes it as a plain uv handle */
static uv_idle_t kick;            /* active: the poll does not block (nowait, or once with nothing to wait for) */
static int watch_inited;
static int in_watch;              /* watch_cb is waking tasks: this prepare phase counts as seen */
static waiter *waiters;
static int stop_asked;
static const char *run_mode;      /* mode of a uv_run started by l_run, NULL otherwise */

static void unlink_waiter(waiter *w) {
  for (waiter **p = &waiters; *p; p = &(*p)->next)
    if (*p == w) { *p = w->next; return; }
}

static void waiter_cancel(coru_cont *c) {
  waiter *w = (waiter *)c;
  unlink_waiter(w);
  free(w);
  if (!waiters && watch_inited) {
    uv_prepare_stop(&watch);
    uv_idle_stop(&kick);
  }
}

static void kick_cb(uv_idle_t *i) { (void)i; }

/* Is the loop alive for anything but watch and kick? */
static int others_alive(uv_loop_t *loop) {
  uv_unref((uv_handle_t *)&watch);
  uv_unref((uv_handle_t *)&kick);
  int alive = uv_loop_alive(loop);
  uv_ref((uv_handle_t *)&watch);
  uv_ref((uv_handle_t *)&kick);
  return alive;
}

/* The poll ahead must not block before watch looks again while a nowait
 * run waits, or any run with nothing else alive (uv_run(UV_RUN_ONCE)
 * returns at once there, and nothing else would end the poll). */
static void set_kick(uv_loop_t *loop) {
  int need = 0;
  for (waiter *w = waiters; w && !need; w = w->next)
    if (w->mode == 2) need = 1;
  if (!need && waiters) need = !others_alive(loop);
  if (need) uv_idle_start(&kick, kick_cb);
  else uv_idle_stop(&kick);
}

/* Before each poll. A once/nowait run ends after one whole iteration of
 * the loop begun after the call (prepare, poll, check, close callbacks),
 * as uv_run's does, so it is woken at the second prepare phase it sees: a
 * handle closed just before the call has had its close callback, and the
 * result (more expected?) is luv's. A default run ends once nothing but
 * the waiters is alive; uv.stop() ends every run at the next prepare. */
static void watch_cb(uv_prepare_t *p) {
  int alive = others_alive(p->loop);
  int stopped = stop_asked;
  stop_asked = 0;
  /* take the waiters to wake off the list first: a woken task runs now and
   * may wait again */
  waiter *wake = NULL, **keep = &waiters;
  while (*keep) {
    waiter *w = *keep;
    if (stopped || (w->mode ? w->seen : !alive)) { *keep = w->next; w->next = wake; wake = w; }
    else { w->seen = 1; keep = &w->next; }
  }
  /* a woken task sees the loop without watch and kick (uv.loop_alive);
   * one that waits again starts them again */
  if (!waiters) {
    uv_prepare_stop(p);
    uv_idle_stop(&kick);
  } else set_kick(p->loop);
  in_watch = 1;
  while (wake) {
    waiter *w = wake;
    wake = w->next;
    lua_State *S = coru_cont_begin(&w->cont);
    if (S) {
      /* default: true only when stopped with work left; once/nowait: more expected */
      lua_pushboolean(S, alive && (w->mode || stopped));
      coru_cont_ok(&w->cont, 1);
    }
    free(w);
  }
  in_watch = 0;
}

static const char *const modes[] = {"default", "once", "nowait", NULL};

/* _luv.run([mode]) -> boolean. In a task: "default" waits until nothing
 * else is alive (or stop); "once" and "nowait" wait for one iteration of
 * the running loop ("once" blocking for I/O if there is work left). */
static int l_run(lua_State *L) {
  coru_rt *R = coru_R;
  int m = luaL_checkoption(L, 1, "default", modes);
  if (R->current) {
    coru_enter(L, 0, "run", 0);   /* refuses where the task cannot suspend */
    if (!watch_inited) {
      int r = uv_prepare_init(R->loop, &watch);
      if (r < 0) return coru_fail(L, r, NULL);
      uv_idle_init(R->loop, &kick);
      watch.data = NULL;
      kick.data = NULL;
      watch_inited = 1;
    }
    waiter *w = calloc(1, sizeof *w);
    if (!w) return luaL_error(L, "out of memory");
    coru_cont_init(L, &w->cont, 0, waiter_cancel);
    w->mode = m;
    w->seen = in_watch;
    w->next = waiters;
    waiters = w;
    if (!uv_is_active((uv_handle_t *)&watch)) uv_prepare_start(&watch, watch_cb);
    set_kick(R->loop);
    return coru_cont_yield(L, &w->cont, 0);
  }
  if (R->loop_running || R->depth)
    return luaL_error(L, "run: the loop is already running (called from a callback)");
  static const uv_run_mode uvm[] = {UV_RUN_DEFAULT, UV_RUN_ONCE, UV_RUN_NOWAIT};
  run_mode = modes[m];
  R->loop_running = 1;
  int r = uv_run(R->loop, uvm[m]);
  R->loop_running = 0;
  coru_after_run(R);
  run_mode = NULL;
  coru_flush_reports();
  lua_pushboolean(L, r != 0);
  return 1;
}

/* _luv.stop(): ends a luv-style run (uv_run started by run, or tasks
 * waiting in run). Without one it does nothing: the host's own loop is not
 * luv's to stop. */
static int l_stop(lua_State *L) {
  (void)L;
  if (waiters) {
    stop_asked = 1;
    uv_idle_start(&kick, kick_cb);   /* the next prepare comes without a blocking poll */
  }
  if (run_mode) uv_stop(coru_R->loop);
  return 0;
}

static int l_loop_mode(lua_State *L) {
  if (run_mode) lua_pushstring(L, run_mode);
  /* a task's own code is outside the loop for luv, unless a run waits;
   * a callback of the host's loop is inside it */
  else if (waiters || (coru_R->loop_running && !coru_R->current)) lua_pushliteral(L, "default");
  else lua_pushnil(L);
  return 1;
}

static int l_loop_alive(lua_State *L) {
  lua_pushboolean(L, uv_loop_alive(coru_R->loop));
  return 1;
}

static int l_backend_fd(lua_State *L) {
  int fd = uv_backend_fd(coru_R->loop);
  if (fd < 0) return 0;
  lua_pushinteger(L, fd);
  return 1;
}

static int l_backend_timeout(lua_State *L) {
  lua_pushinteger(L, uv_backend_timeout(coru_R->loop));
  return 1;
}

/* ------------------------------------------------------- system functions */

static int l_sleep(lua_State *L) {
  uv_sleep((unsigned int)coru_check_int(L, 1, 0, 0xffffffff, "sleep"));
  return 0;
}

static void setnum(lua_State *L, const char *k, lua_Number v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static int l_getrusage(lua_State *L) {
  uv_rusage_t u;
  int r = uv_getrusage(&u);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_createtable(L, 0, 16);
  lua_createtable(L, 0, 2);
  setnum(L, "sec", (lua_Number)u.ru_utime.tv_sec);
  setnum(L, "usec", (lua_Number)u.ru_utime.tv_usec);
  lua_setfield(L, -2, "utime");
  lua_createtable(L, 0, 2);
  setnum(L, "sec", (lua_Number)u.ru_stime.tv_sec);
  setnum(L, "usec", (lua_Number)u.ru_stime.tv_usec);
  lua_setfield(L, -2, "stime");
  setnum(L, "maxrss", (lua_Number)u.ru_maxrss);
  setnum(L, "ixrss", (lua_Number)u.ru_ixrss);
  setnum(L, "idrss", (lua_Number)u.ru_idrss);
  setnum(L, "isrss", (lua_Number)u.ru_isrss);
  setnum(L, "minflt", (lua_Number)u.ru_minflt);
  setnum(L, "majflt", (lua_Number)u.ru_majflt);
  setnum(L, "nswap", (lua_Number)u.ru_nswap);
  setnum(L, "inblock", (lua_Number)u.ru_inblock);
  setnum(L, "oublock", (lua_Number)u.ru_oublock);
  setnum(L, "msgsnd", (lua_Number)u.ru_msgsnd);
  setnum(L, "msgrcv", (lua_Number)u.ru_msgrcv);
  setnum(L, "nsignals", (lua_Number)u.ru_nsignals);
  setnum(L, "nvcsw", (lua_Number)u.ru_nvcsw);
  setnum(L, "nivcsw", (lua_Number)u.ru_nivcsw);
  return 1;
}

static int l_gettimeofday(lua_State *L) {
  uv_timeval64_t tv;
  int r = uv_gettimeofday(&tv);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushnumber(L, (lua_Number)tv.tv_sec);
  lua_pushinteger(L, tv.tv_usec);
  return 2;
}

/* _luv.random(len) -> string (synchronous; luv.lua adds the callback form) */
static int l_random(lua_State *L) {
  size_t len = (size_t)coru_check_int(L, 1, 0, 0x7ffffefe, "random");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  while (len > 0) {
    char *p = luaL_prepbuffer(&b);
    size_t k = len < LUAL_BUFFERSIZE ? len : LUAL_BUFFERSIZE;
    int r = uv_random(NULL, NULL, p, k, 0, NULL);
    if (r < 0) return coru_fail(L, r, NULL);
    luaL_addsize(&b, k);
    len -= k;
  }
  luaL_pushresult(&b);
  return 1;
}

static int l_interface_addresses(lua_State *L) {
  uv_interface_address_t *ifs;
  int n, r = uv_interface_addresses(&ifs, &n);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_newtable(L);
  for (int i = 0; i < n; i++) {
    char ip[INET6_ADDRSTRLEN], mask[INET6_ADDRSTRLEN], mac[18];
    const char *family = "unknown";
    ip[0] = mask[0] = 0;
    if (ifs[i].address.address4.sin_family == AF_INET) {
      uv_ip4_name(&ifs[i].address.address4, ip, sizeof ip);
      uv_ip4_name(&ifs[i].netmask.netmask4, mask, sizeof mask);
      family = "inet";
    } else if (ifs[i].address.address4.sin_family == AF_INET6) {
      uv_ip6_name(&ifs[i].address.address6, ip, sizeof ip);
      uv_ip6_name(&ifs[i].netmask.netmask6, mask, sizeof mask);
      family = "inet6";
    }
    const unsigned char *m = (const unsigned char *)ifs[i].phys_addr;
    snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    lua_getfield(L, -1, ifs[i].name);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, ifs[i].name);
    }
    lua_createtable(L, 0, 5);
    lua_pushstring(L, ip); lua_setfield(L, -2, "ip");
    lua_pushstring(L, mask); lua_setfield(L, -2, "netmask");
    lua_pushstring(L, family); lua_setfield(L, -2, "family");
    lua_pushstring(L, mac); lua_setfield(L, -2, "mac");
    lua_pushboolean(L, ifs[i].is_internal); lua_setfield(L, -2, "internal");
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    lua_pop(L, 1);
  }
  uv_free_interface_addresses(ifs, n);
  return 1;
}

static int l_os_get_passwd(lua_State *L) {
  uv_passwd_t pw;
  int r = uv_os_get_passwd(&pw);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, pw.username); lua_setfield(L, -2, "username");
  lua_pushinteger(L, pw.uid); lua_setfield(L, -2, "uid");
  lua_pushinteger(L, pw.gid); lua_setfield(L, -2, "gid");
  if (pw.shell) { lua_pushstring(L, pw.shell); lua_setfield(L, -2, "shell"); }
  if (pw.homedir) { lua_pushstring(L, pw.homedir); lua_setfield(L, -2, "homedir"); }
  uv_os_free_passwd(&pw);
  return 1;
}

static int l_os_getpriority(lua_State *L) {
  int prio, r = uv_os_getpriority((uv_pid_t)coru_check_int(L, 1, 0, CORU_INT_MAX, "os_getpriority"), &prio);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, prio);
  return 1;
}

static int l_os_setpriority(lua_State *L) {
  int r = uv_os_setpriority((uv_pid_t)coru_check_int(L, 1, 0, CORU_INT_MAX, "os_setpriority"), (int)coru_check_int(L, 2, -20, 19, "os_setpriority"));
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* _luv.pipe(read_nonblock, write_nonblock) -> {read = fd, write = fd} */
static int l_pipe(lua_State *L) {
  uv_file fds[2];
  int rf = lua_toboolean(L, 1) ? UV_NONBLOCK_PIPE : 0, wf = lua_toboolean(L, 2) ? UV_NONBLOCK_PIPE : 0;
  int r = uv_pipe(fds, rf, wf);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, fds[0]); lua_setfield(L, -2, "read");
  lua_pushinteger(L, fds[1]); lua_setfield(L, -2, "write");
  return 1;
}

/* _luv.socketpair(socktype, protocol, nonblock1, nonblock2) -> {fd1, fd2} */
static int l_socketpair(lua_State *L) {
  uv_os_sock_t s[2];
  int type = (int)coru_opt_int(L, 1, 0, CORU_INT_MAX, SOCK_STREAM, "socketpair");
  int proto = (int)coru_opt_int(L, 2, 0, CORU_INT_MAX, 0, "socketpair");
  int f0 = lua_toboolean(L, 3) ? UV_NONBLOCK_PIPE : 0, f1 = lua_toboolean(L, 4) ? UV_NONBLOCK_PIPE : 0;
  int r = uv_socketpair(type, proto, s, f0, f1);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_createtable(L, 2, 0);
  lua_pushinteger(L, s[0]); lua_rawseti(L, -2, 1);
  lua_pushinteger(L, s[1]); lua_rawseti(L, -2, 2);
  return 1;
}

/* _luv.is_ip(s) -> "inet", "inet6" or nil: luv raises on a malformed
 * address where coru answers EINVAL. */
static int l_is_ip(lua_State *L) {
  const char *s = coru_check_cstr(L, 1, NULL);
  unsigned char buf[16];
  if (inet_pton(AF_INET, s, buf) == 1) lua_pushliteral(L, "inet");
  else if (inet_pton(AF_INET6, s, buf) == 1) lua_pushliteral(L, "inet6");
  else lua_pushnil(L);
  return 1;
}

static int l_get_process_title(lua_State *L) {
  char buf[512];
  int r = uv_get_process_title(buf, sizeof buf);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushstring(L, buf);
  return 1;
}


/* ------------------------------------------------------ tables, handles */

/* Any coru handle (type checks accept every kind). */
static coru_htype any_handle = {"uv_handle_t", CORU_K_ANY, CORU_K_ANY, NULL, NULL, NULL, NULL};

static int buffer_size(lua_State *L, int (*fn)(uv_handle_t *, int *)) {
  coru_handle *h = coru_check_handle(L, 1, &any_handle);
  int v = (int)coru_opt_int(L, 2, 0, CORU_INT_MAX, 0, NULL);
  int set = v > 0;
  int r = fn(h->uvh, &v);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, set ? 0 : v);   /* the size read, or 0 once set (luv) */
  return 1;
}

static int l_send_buffer_size(lua_State *L) { return buffer_size(L, uv_send_buffer_size); }
static int l_recv_buffer_size(lua_State *L) { return buffer_size(L, uv_recv_buffer_size); }

/* _luv.closing(v) -> true for a coru handle that is closing or closed,
 * false for anything else (never raises: luv.lua's guard is on hot paths) */
static int l_closing(lua_State *L) {
  coru_box *box = lua_touserdata(L, 1);
  int r = 0;
  if (box && lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1)) {
    lua_rawget(L, LUA_REGISTRYINDEX);
    const coru_htype *ht = lua_touserdata(L, -1);
    lua_pop(L, 1);
    r = ht && (ht->kind & any_handle.accepts) && (!box->h || box->h->closing);
  }
  lua_pushboolean(L, r);
  return 1;
}

static int l_handle_type_of(lua_State *L) {
  coru_handle *h = coru_test_handle(L, 1, &any_handle);
  if (!h) return 0;
  lua_pushstring(L, uv_handle_type_name(uv_handle_get_type(h->uvh)));
  return 1;
}

static int l_errno_table(lua_State *L) {
  lua_newtable(L);
#define XX(code, _) lua_pushinteger(L, UV_##code); lua_setfield(L, -2, #code);
  UV_ERRNO_MAP(XX)
#undef XX
  return 1;
}

static int l_err_name(lua_State *L) {
  int e = (int)coru_check_int(L, 1, CORU_INT_MIN + 1, CORU_INT_MAX, "err_name");
  if (e > 0) e = uv_translate_sys_error(e);
  lua_pushstring(L, uv_err_name(e));
  lua_pushstring(L, uv_strerror(e));
  return 2;
}

static int l_constants(lua_State *L) {
  lua_newtable(L);
#define K(name) lua_pushinteger(L, name); lua_setfield(L, -2, #name);
  K(O_RDONLY) K(O_WRONLY) K(O_RDWR) K(O_APPEND) K(O_CREAT) K(O_DSYNC) K(O_EXCL) K(O_NOCTTY)
  K(O_NONBLOCK) K(O_RSYNC) K(O_SYNC) K(O_TRUNC) K(O_DIRECTORY) K(O_NOFOLLOW)
  K(O_CLOEXEC)
  K(S_IFMT) K(S_IFREG) K(S_IFDIR) K(S_IFCHR) K(S_IFBLK) K(S_IFIFO) K(S_IFLNK) K(S_IFSOCK)
  K(AF_UNIX) K(AF_INET) K(AF_INET6) K(AF_IPX) K(AF_NETLINK) K(AF_X25) K(AF_AX25)
  K(AF_ATMPVC) K(AF_APPLETALK) K(AF_PACKET)
  K(AI_ADDRCONFIG) K(AI_V4MAPPED) K(AI_ALL) K(AI_NUMERICHOST) K(AI_PASSIVE) K(AI_NUMERICSERV)
  K(AI_CANONNAME)
  K(SIGHUP) K(SIGINT) K(SIGQUIT) K(SIGILL) K(SIGTRAP) K(SIGABRT) K(SIGIOT) K(SIGBUS)
  K(SIGFPE) K(SIGKILL) K(SIGUSR1) K(SIGSEGV) K(SIGUSR2) K(SIGPIPE) K(SIGALRM) K(SIGTERM)
  K(SIGCHLD) K(SIGSTKFLT) K(SIGCONT) K(SIGSTOP) K(SIGTSTP) K(SIGTTIN) K(SIGTTOU) K(SIGURG)
  K(SIGXCPU) K(SIGXFSZ) K(SIGVTALRM) K(SIGPROF) K(SIGWINCH) K(SIGIO) K(SIGPOLL) K(SIGPWR)
  K(SIGSYS)
  K(SOCK_STREAM) K(SOCK_DGRAM) K(SOCK_SEQPACKET) K(SOCK_RAW) K(SOCK_RDM)
  K(UV_TTY_MODE_NORMAL) K(UV_TTY_MODE_RAW) K(UV_TTY_MODE_IO)
  K(UV_FS_SYMLINK_DIR) K(UV_FS_SYMLINK_JUNCTION)
  K(UV_FS_COPYFILE_EXCL) K(UV_FS_COPYFILE_FICLONE) K(UV_FS_COPYFILE_FICLONE_FORCE)
  K(UV_UDP_IPV6ONLY) K(UV_UDP_PARTIAL) K(UV_UDP_REUSEADDR) K(UV_UDP_MMSG_CHUNK) K(UV_UDP_RECVMMSG)
  K(UV_READABLE) K(UV_WRITABLE) K(UV_DISCONNECT) K(UV_PRIORITIZED)
  K(UV_FS_EVENT_WATCH_ENTRY) K(UV_FS_EVENT_STAT) K(UV_FS_EVENT_RECURSIVE)
  K(UV_RENAME) K(UV_CHANGE)
#undef K
  /* luv's names drop the UV_ prefix of libuv's own constants */
  static const struct { const char *luv; int v; } alias[] = {
    {"TTY_MODE_NORMAL", UV_TTY_MODE_NORMAL}, {"TTY_MODE_RAW", UV_TTY_MODE_RAW}, {"TTY_MODE_IO", UV_TTY_MODE_IO},
    {"FS_SYMLINK_DIR", UV_FS_SYMLINK_DIR}, {"FS_SYMLINK_JUNCTION", UV_FS_SYMLINK_JUNCTION},
    {"FS_COPYFILE_EXCL", UV_FS_COPYFILE_EXCL}, {"FS_COPYFILE_FICLONE", UV_FS_COPYFILE_FICLONE},
    {"FS_COPYFILE_FICLONE_FORCE", UV_FS_COPYFILE_FICLONE_FORCE},
    {"UDP_IPV6ONLY", UV_UDP_IPV6ONLY}, {"UDP_PARTIAL", UV_UDP_PARTIAL}, {"UDP_REUSEADDR", UV_UDP_REUSEADDR},
    {"UDP_MMSG_CHUNK", UV_UDP_MMSG_CHUNK}, {"UDP_RECVMMSG", UV_UDP_RECVMMSG},
    {"FS_UTIME_NOW", -1}, {"FS_UTIME_OMIT", -2},
    {NULL, 0}
  };
  for (int i = 0; alias[i].luv; i++) { lua_pushinteger(L, alias[i].v); lua_setfield(L, -2, alias[i].luv); }
  return 1;
}

static int l_loop_configure(lua_State *L) {
  static const char *const opts[] = {"block_signal", "metrics_idle_time", NULL};
  int o = luaL_checkoption(L, 1, NULL, opts), r;
  if (o == 0) {
    int sig = lua_type(L, 2) == LUA_TNUMBER ? (int)coru_check_int(L, 2, 1, 64, "loop_configure")
            : strcmp(coru_check_cstr(L, 2, NULL), "sigprof") == 0 ? SIGPROF : -1;
    r = sig < 0 ? UV_EINVAL : uv_loop_configure(coru_R->loop, UV_LOOP_BLOCK_SIGNAL, sig);
  } else {
    r = uv_loop_configure(coru_R->loop, UV_METRICS_IDLE_TIME);
  }
  return coru_result(L, r, NULL);
}

static int l_metrics_idle_time(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_metrics_idle_time(coru_R->loop));
  return 1;
}

static int l_ids(lua_State *L) {
  lua_pushinteger(L, getuid());
  lua_pushinteger(L, getgid());
  return 2;
}

static int l_setid(lua_State *L) {
  int gid = lua_toboolean(L, 2);
  int id = (int)coru_check_int(L, 1, 0, 0xfffffffe, gid ? "setgid" : "setuid");   /* 2^32 would be root */
  if ((gid ? setgid((gid_t)id) : setuid((uid_t)id)) < 0)
    return luaL_error(L, "Error setting %s to %d: %s", gid ? "GID" : "UID", id, strerror(errno));
  return 0;
}

static int l_get_constrained_memory(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_get_constrained_memory());
  return 1;
}

static int l_set_process_title(lua_State *L) {
  int r = uv_set_process_title(coru_check_cstr(L, 1, NULL));
  return coru_result(L, r, NULL);
}

static int l_if_indextoname(lua_State *L) {
  char buf[UV_IF_NAMESIZE];
  size_t n = sizeof buf;
  int idx = (int)coru_check_int(L, 1, 0, CORU_INT_MAX, "if_indextoname");
  int r = lua_toboolean(L, 2) ? uv_if_indextoiid((unsigned)idx, buf, &n) : uv_if_indextoname((unsigned)idx, buf, &n);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushlstring(L, buf, n);
  return 1;
}

static int l_print_handles(lua_State *L) {
  if (lua_toboolean(L, 1)) uv_print_active_handles(coru_R->loop, stderr);
  else uv_print_all_handles(coru_R->loop, stderr);
  return 0;
}

/* ------------------------------------------------ small handle functions */

static uv_handle_t *typed_handle(lua_State *L, int idx, uv_handle_type want, const char *tname) {
  coru_handle *h = coru_check_handle(L, idx, &any_handle);
  if (uv_handle_get_type(h->uvh) != want) luaL_typerror(L, idx, tname);
  return h->uvh;
}

static int l_pipe_pending_count(lua_State *L) {
  uv_pipe_t *p = (uv_pipe_t *)typed_handle(L, 1, UV_NAMED_PIPE, "uv_pipe_t");
  lua_pushinteger(L, uv_pipe_pending_count(p));
  return 1;
}

static int l_pipe_pending_type(lua_State *L) {
  uv_pipe_t *p = (uv_pipe_t *)typed_handle(L, 1, UV_NAMED_PIPE, "uv_pipe_t");
  uv_handle_type t = uv_pipe_pending_type(p);
  const char *name = uv_handle_type_name(t);
  lua_pushstring(L, name ? name : "unknown");
  return 1;
}

static int l_udp_set_source_membership(lua_State *L) {
  uv_udp_t *u = (uv_udp_t *)typed_handle(L, 1, UV_UDP, "uv_udp_t");
  const char *group = coru_check_cstr(L, 2, NULL);
  const char *iface = coru_opt_cstr(L, 3, NULL, NULL);
  const char *source = coru_check_cstr(L, 4, NULL);
  static const char *const ms[] = {"leave", "join", NULL};
  int m = luaL_checkoption(L, 5, NULL, ms);
  int r = uv_udp_set_source_membership(u, group, iface, source, m ? UV_JOIN_GROUP : UV_LEAVE_GROUP);
  return coru_result(L, r, NULL);
}

static int l_tty_set_vterm_state(lua_State *L) {
  static const char *const st[] = {"supported", "unsupported", NULL};
  int v = luaL_checkoption(L, 1, NULL, st);
  uv_tty_set_vterm_state(v ? UV_TTY_UNSUPPORTED : UV_TTY_SUPPORTED);
  return 0;
}

static int l_tty_get_vterm_state(lua_State *L) {
  uv_tty_vtermstate_t st;
  int r = uv_tty_get_vterm_state(&st);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushstring(L, st == UV_TTY_SUPPORTED ? "supported" : "unsupported");
  return 1;
}

/* ------------------------------------------ write2: a handle over IPC */

typedef struct {
  uv_write_t req;
  coru_handle *h;        /* the pipe, kept alive until the callback */
  int cb_ref, data_ref;
  uv_buf_t *bufs;
} w2req;

static void write2_cb(uv_write_t *req, int status) {
  w2req *q = req->data;
  lua_State *L = coru_R ? coru_R->L : NULL;
  if (L) {
    coru_unref(L, &q->data_ref);
    coru_handle_release(L, q->h);
    if (q->cb_ref != LUA_NOREF && !coru_R->shutting_down) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, q->cb_ref);
      coru_unref(L, &q->cb_ref);
      if (status < 0) lua_pushstring(L, uv_err_name(status)); else lua_pushnil(L);
      coru_callback(1);
    }
    coru_unref(L, &q->cb_ref);
  }
  free(q->bufs);
  free(q);
}

/* _luv.write2(pipe, data, send_handle [, cb]) -> true: luv's write2, the
 * pipe an IPC one (new_pipe(true)), send_handle a tcp or pipe handle. */
static int l_write2(lua_State *L) {
  coru_handle *h = coru_check_handle(L, 1, &any_handle);
  if (uv_handle_get_type(h->uvh) != UV_NAMED_PIPE || !((uv_pipe_t *)h->uvh)->ipc)
    return luaL_argerror(L, 1, "an IPC pipe expected (new_pipe(true))");
  coru_handle *sh = coru_check_handle(L, 3, &any_handle);
  uv_handle_type st = uv_handle_get_type(sh->uvh);
  if (st != UV_TCP && st != UV_NAMED_PIPE) return luaL_argerror(L, 3, "a tcp or pipe handle expected");
  if (!lua_isnoneornil(L, 4) && !coru_is_callable(L, 4)) return luaL_typerror(L, 4, "function");
  unsigned n = 1;
  if (lua_istable(L, 2)) {
    n = (unsigned)lua_objlen(L, 2);
    coru_coerce_buffers(L, 2, n);
    for (unsigned i = 1; i <= n; i++) {
      lua_rawgeti(L, 2, (int)i);
      if (lua_type(L, -1) != LUA_TSTRING) return luaL_argerror(L, 2, "array of strings expected");
      lua_pop(L, 1);
    }
  } else if (lua_type(L, 2) != LUA_TSTRING) {
    return luaL_typerror(L, 2, "string or array of strings");
  }
  w2req *q = calloc(1, sizeof *q);
  uv_buf_t *bufs = calloc(n ? n : 1, sizeof *bufs);
  if (!q || !bufs) { free(q); free(bufs); return luaL_error(L, "out of memory"); }
  if (lua_istable(L, 2)) {
    for (unsigned i = 0; i < n; i++) {
      size_t len;
      lua_rawgeti(L, 2, (int)i + 1);
      const char *p = lua_tolstring(L, -1, &len);
      bufs[i] = uv_buf_init((char *)p, (unsigned)len);
      lua_pop(L, 1);   /* anchored by the table (a copy when coerced) */
    }
  } else {
    size_t len;
    const char *p = lua_tolstring(L, 2, &len);
    bufs[0] = uv_buf_init((char *)p, (unsigned)len);
  }
  q->req.data = q;
  q->bufs = bufs;
  q->h = h;
  q->cb_ref = LUA_NOREF;
  int r = uv_write2(&q->req, (uv_stream_t *)h->uvh, bufs, n, (uv_stream_t *)sh->uvh, write2_cb);
  if (r < 0) { free(bufs); free(q); return coru_fail(L, r, NULL); }
  lua_pushvalue(L, 2);
  q->data_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (!lua_isnoneornil(L, 4)) q->cb_ref = coru_ref_cb(L, 4);
  coru_handle_keep(L, h);
  lua_pushboolean(L, 1);
  return 1;
}

/* _luv.try_write2(pipe, data, send_handle) -> bytes written */
static int l_try_write2(lua_State *L) {
  coru_handle *h = coru_check_handle(L, 1, &any_handle);
  if (uv_handle_get_type(h->uvh) != UV_NAMED_PIPE || !((uv_pipe_t *)h->uvh)->ipc)
    return luaL_argerror(L, 1, "an IPC pipe expected (new_pipe(true))");
  coru_handle *sh = coru_check_handle(L, 3, &any_handle);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
  int r = uv_try_write2((uv_stream_t *)h->uvh, &b, 1, (uv_stream_t *)sh->uvh);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, r);
  return 1;
}

/* _luv.sync(f, ...): call f as if outside any task, so that coru's fs and
 * DNS functions run synchronously (luv's rule) even from a task: a luv
 * program's "synchronous" call lets no other callback run meanwhile. */
static int l_sync(lua_State *L) {
  coru_rt *R = coru_R;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  coru_task *saved = R->current;
  R->current = NULL;
  int r = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  R->current = saved;
  if (r != 0) return lua_error(L);
  return lua_gettop(L);
}

static const coru_Reg luv_funcs[] = {
  {"run", l_run, CORU_YIELDS}, CORU_REG(stop), CORU_REG(sync), CORU_REG(loop_mode),
  CORU_REG(loop_alive), CORU_REG(backend_fd), CORU_REG(backend_timeout), CORU_REG(sleep),
  CORU_REG(getrusage), CORU_REG(gettimeofday), CORU_REG(random), CORU_REG(interface_addresses),
  CORU_REG(os_get_passwd), CORU_REG(os_getpriority), CORU_REG(os_setpriority), CORU_REG(pipe),
  CORU_REG(socketpair), CORU_REG(is_ip), CORU_REG(get_process_title), CORU_REG(set_process_title),
  CORU_REG(send_buffer_size), CORU_REG(recv_buffer_size), CORU_REG(handle_type_of),
  CORU_REG(closing), CORU_REG(errno_table), CORU_REG(err_name), CORU_REG(constants),
  CORU_REG(loop_configure), CORU_REG(metrics_idle_time), CORU_REG(ids), CORU_REG(setid),
  CORU_REG(get_constrained_memory), CORU_REG(if_indextoname), CORU_REG(print_handles),
  CORU_REG(pipe_pending_count), CORU_REG(write2), CORU_REG(try_write2),
  CORU_REG(pipe_pending_type), CORU_REG(udp_set_source_membership), CORU_REG(tty_set_vterm_state),
  CORU_REG(tty_get_vterm_state), {NULL, NULL, 0}
};

CORU_FAMILY(luv) {
  watch_inited = 0;   /* a new runtime: the old prepare handle was closed with its loop */
  waiters = NULL;
  in_watch = 0;
  stop_asked = 0;
  run_mode = NULL;
  lua_newtable(L);
  coru_setfuncs(L, luv_funcs);
  coru_luv_thread_funcs(L);
  lua_setfield(L, -2, "_luv");
}
