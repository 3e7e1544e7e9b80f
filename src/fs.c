/*
 * fs.c - the file system, luv's names and argument orders (fs_open,
 * fs_read, fs_stat, ...). The fs_event and fs_poll handles are in fswatch.c.
 *
 * One request struct (fs_req) serves every call. Three modes (coru.h):
 *   callback given      uv_fs_* with fs_cb; cb(err, results...)
 *   inside a task       uv_fs_* with fs_cb; the task suspends on the cont
 *   neither             uv_fs_* with a NULL callback: synchronous (luv's rule)
 * The results of a request are pushed by one function (push_result) in all
 * three modes. A cancelled task's request is uv_cancel'ed; if it was already
 * running, fs_cb finds coru_cont_begin returning NULL and only frees it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <errno.h>
#include <unistd.h>
#include <sys/stat.h>
#include <dirent.h>
#include "coru.h"
#include "check.h"
#include "fs.h"

typedef struct fs_req {
  uv_fs_t req;
  coru_cont cont;
  char *buf;          /* fs_read: the buffer read into */
  uv_buf_t *bufs;     /* fs_write: one per string */
  uv_buf_t buf1;
  int anchor;         /* registry ref: write data, the dir object */
  char *detail;       /* path(s) for error messages (malloc'd), or NULL */
  struct fs_dir *dir;  /* readdir / closedir */
  size_t nents;       /* opendir: entries per readdir */
} fs_req;

typedef struct fs_dir {
  uv_dir_t *dir;
  uv_dirent_t *ents;
  size_t nents;
  int busy;           /* a readdir/closedir is pending */
  int closed;
  int fd;             /* the stream's descriptor while held (check.h), or -1 */
} fs_dir;

#define DIR_MT "coru.fs_dir"
#define SCANDIR_MT "coru.fs_scandir"

static void fs_cb(uv_fs_t *req);

/* ---------------------------------------------------------- helpers */

long coru_fs_live_reqs;   /* requests allocated and not freed (diagnostics) */

static fs_req *fs_req_new(lua_State *L) {
  fs_req *r = calloc(1, sizeof *r);
  if (!r) luaL_error(L, "out of memory");
  coru_fs_live_reqs++;
  r->anchor = LUA_NOREF;
  r->req.data = r;
  r->cont.cb_ref = LUA_NOREF;
  return r;
}

static void fs_req_free(fs_req *r) {
  coru_fs_live_reqs--;
  uv_fs_req_cleanup(&r->req);
  if (r->anchor != LUA_NOREF && coru_R) coru_unref(coru_R->L, &r->anchor);
  free(r->buf);
  free(r->detail);
  if (r->bufs != &r->buf1) free(r->bufs);
  free(r);
}

static void set_detail(fs_req *r, const char *a, const char *b) {
  size_t la = strlen(a), lb = b ? strlen(b) : 0;
  r->detail = malloc(la + (b ? lb + 4 : 0) + 1);
  if (!r->detail) return;   /* the message goes without the path */
  memcpy(r->detail, a, la + 1);
  if (b) {
    memcpy(r->detail + la, " -> ", 4);
    memcpy(r->detail + la + 4, b, lb + 1);
  }
}

static void fs_cancel(coru_cont *c) {
  fs_req *r = container_of(c, fs_req, cont);
  uv_cancel((uv_req_t *)&r->req);
}

/* The callback may be given in place of trailing optional arguments
 * (fs_open(path, "r", cb)): move it to the slot after the last positional
 * one (npos) and return that slot. */
int coru_fs_cbslot(lua_State *L, int npos) {
  int top = lua_gettop(L);
  if (top >= 1 && top <= npos && coru_is_callable(L, top)) {
    lua_settop(L, npos + 1);
    lua_pushvalue(L, top);
    lua_replace(L, npos + 1);
    lua_pushnil(L);
    lua_replace(L, top);
  }
  return npos + 1;
}

static const char *const type_names[] = {"unknown", "file", "directory", "link", "fifo", "socket", "char", "block"};

static const char *dirent_type(uv_dirent_type_t t) {
  switch (t) {
  case UV_DIRENT_FILE: return "file";
  case UV_DIRENT_DIR: return "directory";
  case UV_DIRENT_LINK: return "link";
  case UV_DIRENT_FIFO: return "fifo";
  case UV_DIRENT_SOCKET: return "socket";
  case UV_DIRENT_CHAR: return "char";
  case UV_DIRENT_BLOCK: return "block";
  default: return "unknown";
  }
}

static const char *mode_type(uint64_t mode) {
  switch (mode & S_IFMT) {
  case S_IFREG: return type_names[1];
  case S_IFDIR: return type_names[2];
  case S_IFLNK: return type_names[3];
  case S_IFIFO: return type_names[4];
  case S_IFSOCK: return type_names[5];
  case S_IFCHR: return type_names[6];
  case S_IFBLK: return type_names[7];
  default: return type_names[0];
  }
}

static void set_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void push_time(lua_State *L, const char *k, const uv_timespec_t *t) {
  lua_createtable(L, 0, 2);
  set_num(L, "sec", (double)t->tv_sec);
  set_num(L, "nsec", (double)t->tv_nsec);
  lua_setfield(L, -2, k);
}

void coru_fs_push_stat(lua_State *L, const uv_stat_t *s) {
  lua_createtable(L, 0, 16);
#define NUM(f) set_num(L, #f, (double)s->st_##f);
  NUM(dev) NUM(mode) NUM(nlink) NUM(uid) NUM(gid) NUM(rdev) NUM(ino) NUM(size)
  NUM(blksize) NUM(blocks) NUM(flags) NUM(gen)
#undef NUM
#define TIME(f) push_time(L, #f "time", &s->st_##f##tim);
  TIME(a) TIME(m) TIME(c) TIME(birth)
#undef TIME
  lua_pushstring(L, mode_type(s->st_mode));
  lua_setfield(L, -2, "type");
}

static void push_dir(lua_State *L, fs_req *r);

/* Push what a successful request gives; returns the count. Runs on the
 * stack that gets the results (task, callback thread or caller). */
static int push_result(lua_State *L, fs_req *r) {
  uv_fs_t *req = &r->req;
  switch (req->fs_type) {
  case UV_FS_OPEN:
  case UV_FS_SENDFILE:
  case UV_FS_WRITE:
    lua_pushinteger(L, (lua_Integer)req->result);
    return 1;
  case UV_FS_READ:
    lua_pushlstring(L, r->buf ? r->buf : "", (size_t)req->result);
    return 1;
  case UV_FS_STAT: case UV_FS_LSTAT: case UV_FS_FSTAT:
    coru_fs_push_stat(L, &req->statbuf);
    return 1;
  case UV_FS_STATFS: {
    uv_statfs_t *s = req->ptr;
    lua_createtable(L, 0, 7);
#define NUM(f) set_num(L, #f, (double)s->f_##f);
    NUM(type) NUM(bsize) NUM(blocks) NUM(bfree) NUM(bavail) NUM(files) NUM(ffree)
#undef NUM
    return 1;
  }
  case UV_FS_MKDTEMP:
    lua_pushstring(L, req->path);
    return 1;
  case UV_FS_MKSTEMP:
    lua_pushinteger(L, (lua_Integer)req->result);
    lua_pushstring(L, req->path);
    return 2;
  case UV_FS_READLINK:
  case UV_FS_REALPATH:
    lua_pushstring(L, req->ptr);
    return 1;
  case UV_FS_SCANDIR: {
    /* an object for fs_scandir_next: {names..., types..., n, i} */
    uv_dirent_t ent;
    lua_newtable(L);
    int n = 0;
    while (uv_fs_scandir_next(req, &ent) != UV_EOF) {
      lua_pushstring(L, ent.name);
      lua_rawseti(L, -2, 2 * n + 1);
      lua_pushstring(L, dirent_type(ent.type));
      lua_rawseti(L, -2, 2 * n + 2);
      n++;
    }
    lua_pushinteger(L, n);
    lua_setfield(L, -2, "n");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "i");
    luaL_getmetatable(L, SCANDIR_MT);
    lua_setmetatable(L, -2);
    return 1;
  }
  case UV_FS_OPENDIR:
    push_dir(L, r);
    return 1;
  case UV_FS_READDIR: {
    uv_dir_t *d = req->ptr;
    if (req->result == 0) { lua_pushnil(L); return 1; }
    lua_createtable(L, (int)req->result, 0);
    for (ssize_t i = 0; i < req->result; i++) {
      lua_createtable(L, 0, 2);
      lua_pushstring(L, d->dirents[i].name);
      lua_setfield(L, -2, "name");
      lua_pushstring(L, dirent_type(d->dirents[i].type));
      lua_setfield(L, -2, "type");
      lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
  }
  default:
    lua_pushboolean(L, 1);
    return 1;
  }
}

/* The directory stream is closed: its descriptor is no longer held. */
static void dir_closed(fs_dir *d) {
  d->closed = 1;
  if (d->fd >= 0) coru_fd_hold(d->fd, 0);
  d->fd = -1;
}

/* readdir/closedir pending on a dir: done (the names were copied). */
static void dir_done(fs_req *r) {
  if (!r->dir) return;
  r->dir->busy = 0;
  if (r->req.fs_type == UV_FS_CLOSEDIR) {
    if (r->req.result >= 0) dir_closed(r->dir);
    /* A closedir that never ran (cancelled) leaves req.ptr on the
     * uv_dir_t, and uv_fs_req_cleanup frees req.ptr for every type but
     * opendir: the directory is still ours and still open (__gc closes it). */
    else r->req.ptr = NULL;
  }
}

/* ---------------------------------------------------------- the machinery */

static void fs_cb(uv_fs_t *req) {
  fs_req *r = req->data;
  if (req->fs_type == UV_FS_CLOSE) coru_fd_hold(req->file, 0);
  dir_done(r);
  lua_State *S = coru_cont_begin(&r->cont);
  if (S) {
    /* Clean up before waking: the woken task may start the next request
     * on the same directory at once, and the cleanup of a readdir frees
     * the dirents' names (the Lua strings are copies). */
    if (req->result < 0) {
      uv_fs_req_cleanup(req);
      coru_cont_fail(&r->cont, (int)req->result, r->detail);
    } else {
      int n = push_result(S, r);
      uv_fs_req_cleanup(req);
      coru_cont_ok(&r->cont, n);
    }
  } else if (req->fs_type == UV_FS_OPENDIR && req->result >= 0) {
    /* the task moved on: nobody will close this directory */
    uv_fs_t c;
    uv_fs_closedir(NULL, &c, req->ptr, NULL);
    uv_fs_req_cleanup(&c);
  } else if ((req->fs_type == UV_FS_OPEN || req->fs_type == UV_FS_MKSTEMP) && req->result >= 0) {
    uv_fs_t c;   /* same for a descriptor nobody will see */
    uv_fs_close(NULL, &c, (uv_file)req->result, NULL);
    uv_fs_req_cleanup(&c);
  }
  fs_req_free(r);
}

/* After the uv_fs_* call: synchronous result, immediate failure, or wait. */
static int fs_finish(lua_State *L, fs_req *r, int ret) {
  if (r->cont.mode == CORU_MODE_NONE || ret < 0) {
    int n;
    if (r->cont.mode != CORU_MODE_NONE) coru_cont_clear(L, &r->cont);
    dir_done(r);
    if (ret < 0) n = coru_fail(L, ret, r->detail);
    else n = push_result(L, r);
    fs_req_free(r);
    return n;
  }
  return coru_cont_yield(L, &r->cont, 0);
}

#define FS_CALL(L, r, func, ...)                                                     \
  do {                                                                               \
    int ret_ = uv_fs_##func(coru_R->loop, &(r)->req, __VA_ARGS__,                    \
                            (r)->cont.mode == CORU_MODE_NONE ? NULL : fs_cb);        \
    return fs_finish(L, r, ret_);                                                    \
  } while (0)

/* ---------------------------------------------------------- argument checks */

#define FN (__func__ + 2)   /* l_fs_open -> "fs_open" */


int coru_fs_argerr(lua_State *L, int i, const char *fn, const char *msg) {
  return luaL_error(L, "bad argument #%d to '%s' (%s)", i, fn, msg);   /* at the user's line */
}

int coru_fs_typeerr(lua_State *L, int i, const char *fn, const char *want) {
  return coru_fs_argerr(L, i, fn, lua_pushfstring(L, "%s expected, got %s", want, luaL_typename(L, i)));
}

const char *coru_fs_checkpath(lua_State *L, int i, const char *fn) {
  if (lua_type(L, i) != LUA_TSTRING) coru_fs_typeerr(L, i, fn, "string");
  return coru_cstr_at(L, i, fn, NULL);
}

static lua_Integer checkint(lua_State *L, int i, const char *fn) {
  if (lua_type(L, i) != LUA_TNUMBER) coru_fs_typeerr(L, i, fn, "number");
  return coru_check_int(L, i, INT64_MIN, INT64_MAX, fn);
}

static lua_Integer optint(lua_State *L, int i, const char *fn, lua_Integer def) {
  return lua_isnoneornil(L, i) ? def : checkint(L, i, fn);
}

static uv_file checkfd(lua_State *L, int i, const char *fn) {
  lua_Integer v = checkint(L, i, fn);
  if (v < 0 || v > 0x7fffffff) coru_fs_argerr(L, i, fn, "invalid file descriptor");
  return (uv_file)v;
}

/* The fs calls on a descriptor leave the loop's own alone (check.h). */
#define REFUSE_LOOP_FD(L, fd) \
  if (coru_fd_of_loop(coru_R->loop, fd)) return coru_fail(L, UV_EBUSY, "the descriptor belongs to the event loop")

static double checktime(lua_State *L, int i, const char *fn) {
  if (lua_type(L, i) != LUA_TNUMBER) coru_fs_typeerr(L, i, fn, "number");
  return lua_tonumber(L, i);
}

/* Permission bits: an integer 0..07777 or an octal string ("644"). */
static int checkmode(lua_State *L, int i, const char *fn, int def) {
  if (lua_isnoneornil(L, i)) return def;
  lua_Integer m;
  if (lua_type(L, i) == LUA_TSTRING) {
    const char *s = lua_tostring(L, i);
    char *end;
    m = strtol(s, &end, 8);
    if (!*s || *end) coru_fs_argerr(L, i, fn, lua_pushfstring(L, "invalid mode '%s'", s));
  } else if (lua_type(L, i) == LUA_TNUMBER) {
    m = checkint(L, i, fn);
  } else {
    return coru_fs_typeerr(L, i, fn, "mode (number or octal string)");
  }
  if (m < 0 || m > 07777) coru_fs_argerr(L, i, fn, "invalid mode (must be 0 .. 07777)");
  return (int)m;
}

static int checkflags(lua_State *L, int i, const char *fn) {
  if (lua_type(L, i) == LUA_TNUMBER) return (int)coru_check_int(L, i, CORU_INT_MIN, CORU_INT_MAX, fn);
  if (lua_type(L, i) != LUA_TSTRING) return coru_fs_typeerr(L, i, fn, "flags (string or number)");
  static const struct { const char *s; int f; } tab[] = {
    {"r", O_RDONLY}, {"rs", O_RDONLY | O_SYNC}, {"sr", O_RDONLY | O_SYNC},
    {"r+", O_RDWR}, {"rs+", O_RDWR | O_SYNC}, {"sr+", O_RDWR | O_SYNC},
    {"w", O_TRUNC | O_CREAT | O_WRONLY}, {"wx", O_TRUNC | O_CREAT | O_WRONLY | O_EXCL},
    {"xw", O_TRUNC | O_CREAT | O_WRONLY | O_EXCL},
    {"w+", O_TRUNC | O_CREAT | O_RDWR}, {"wx+", O_TRUNC | O_CREAT | O_RDWR | O_EXCL},
    {"xw+", O_TRUNC | O_CREAT | O_RDWR | O_EXCL},
    {"a", O_APPEND | O_CREAT | O_WRONLY}, {"ax", O_APPEND | O_CREAT | O_WRONLY | O_EXCL},
    {"xa", O_APPEND | O_CREAT | O_WRONLY | O_EXCL},
    {"a+", O_APPEND | O_CREAT | O_RDWR}, {"ax+", O_APPEND | O_CREAT | O_RDWR | O_EXCL},
    {"xa+", O_APPEND | O_CREAT | O_RDWR | O_EXCL},
  };
  const char *s = lua_tostring(L, i);
  for (size_t k = 0; k < sizeof tab / sizeof tab[0]; k++)
    if (strcmp(s, tab[k].s) == 0) return tab[k].f | O_CLOEXEC;
  return coru_fs_argerr(L, i, fn, lua_pushfstring(L, "invalid flags '%s'", s));
}

/* The request, after every argument was checked (cbidx: the callback slot). */
static fs_req *newreq(lua_State *L, int cbidx, const char *fn) {
  if (!lua_isnoneornil(L, cbidx) && !coru_is_callable(L, cbidx)) coru_fs_typeerr(L, cbidx, fn, "function");
  coru_enter(L, cbidx, fn, CORU_SYNC_OK);   /* refused before the request exists */
  fs_req *r = fs_req_new(L);
  coru_cont_init(L, &r->cont, cbidx, fs_cancel);
  return r;
}

/* ---------------------------------------------------------- the functions */

static int l_fs_open(lua_State *L) {
  int cb = coru_fs_cbslot(L, 3);
  const char *path = coru_fs_checkpath(L, 1, FN);
  int flags = checkflags(L, 2, FN);
  int mode = checkmode(L, 3, FN, 0666);
  fs_req *r = newreq(L, cb, FN);
  set_detail(r, path, NULL);
  FS_CALL(L, r, open, path, flags, mode);
}

static int l_fs_close(lua_State *L) {
  int cb = coru_fs_cbslot(L, 1);
  uv_file fd = checkfd(L, 1, FN);
  if (coru_fd_in_use(coru_R->loop, fd))
    return coru_fail(L, UV_EBUSY, "the descriptor belongs to the event loop, a handle or an open directory stream, or is being closed");
  /* A descriptor that is not open is refused now: the threadpool's close
   * would close whatever took its number meanwhile (a socket libuv made
   * for a connect or an accept, under its watcher: epoll then aborts). An
   * open one keeps its number until the close, so that cannot happen. */
  if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) return coru_fail(L, UV_EBADF, NULL);
  if (fd <= 2) {   /* 0..2 stay open (libuv asserts if its own files land there): on /dev/null */
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    int old = nul < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (old >= 0 && dup2(nul, fd) >= 0) fd = old;   /* the request closes what fd was */
    else if (old >= 0) close(old);
    if (nul >= 0) close(nul);
  }
  fs_req *r = newreq(L, cb, FN);
  int async = r->cont.mode != CORU_MODE_NONE;   /* until fs_cb, fd is in use (check.h) */
  int ret = async ? coru_fd_hold(fd, 1) : 0;
  if (ret == 0) ret = uv_fs_close(coru_R->loop, &r->req, fd, async ? fs_cb : NULL);
  if (ret < 0 && async) coru_fd_hold(fd, 0);
  return fs_finish(L, r, ret);
}

static int l_fs_read(lua_State *L) {
  int cb = coru_fs_cbslot(L, 3);
  uv_file fd = checkfd(L, 1, FN);
  REFUSE_LOOP_FD(L, fd);
  lua_Integer size = checkint(L, 2, FN);
  int64_t off = (int64_t)optint(L, 3, FN, -1);
  if (size < 0 || (size_t)size > READ_FILE_MAX) coru_fs_argerr(L, 2, FN, "invalid size (0 .. 2^31 - 258: the longest LuaJIT string)");
  fs_req *r = newreq(L, cb, FN);
  r->buf = malloc(size ? (size_t)size : 1);
  if (!r->buf) { coru_cont_clear(L, &r->cont); fs_req_free(r); return luaL_error(L, "fs_read: out of memory"); }
  r->buf1 = uv_buf_init(r->buf, (unsigned)size);
  FS_CALL(L, r, read, fd, &r->buf1, 1, off);
}

static int l_fs_write(lua_State *L) {
  int cb = coru_fs_cbslot(L, 3);
  uv_file fd = checkfd(L, 1, FN);
  REFUSE_LOOP_FD(L, fd);
  int64_t off = (int64_t)optint(L, 3, FN, -1);
  int t = lua_type(L, 2), n = 1;
  if (t == LUA_TTABLE) {
    n = (int)lua_objlen(L, 2);
    coru_coerce_buffers(L, 2, (unsigned)n);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, 2, i);
      if (lua_type(L, -1) != LUA_TSTRING)
        coru_fs_argerr(L, 2, FN, lua_pushfstring(L, "item %d: string expected, got %s", i, luaL_typename(L, -1)));
      lua_pop(L, 1);
    }
  } else if (t != LUA_TSTRING) {
    coru_fs_typeerr(L, 2, FN, "string or table of strings");
  }
  fs_req *r = newreq(L, cb, FN);
  if (t == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, 2, &len);
    r->buf1 = uv_buf_init((char *)s, (unsigned)len);
    r->bufs = &r->buf1;
    lua_pushvalue(L, 2);
  } else {
    r->bufs = calloc(n ? (size_t)n : 1, sizeof *r->bufs);
    lua_createtable(L, n, 0);      /* the strings, anchored while written */
    for (int i = 1; i <= n; i++) {
      size_t len;
      lua_rawgeti(L, 2, i);
      const char *s = lua_tolstring(L, -1, &len);
      r->bufs[i - 1] = uv_buf_init((char *)s, (unsigned)len);
      lua_rawseti(L, -2, i);
    }
  }
  if (r->cont.mode != CORU_MODE_NONE) r->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  else lua_pop(L, 1);
  FS_CALL(L, r, write, fd, r->bufs, (unsigned)n, off);
}

#define PATH_OP(name, npos, extra_decl, ...)                                         \
  static int l_fs_##name(lua_State *L) {                                             \
    int cb = coru_fs_cbslot(L, npos);                                                     \
    const char *path = coru_fs_checkpath(L, 1, FN);                                          \
    extra_decl;                                                                      \
    fs_req *r = newreq(L, cb, FN);                                                    \
    set_detail(r, path, NULL);                                                       \
    FS_CALL(L, r, name, path __VA_ARGS__);                                           \
  }

PATH_OP(stat, 1, (void)0)
PATH_OP(lstat, 1, (void)0)
PATH_OP(statfs, 1, (void)0)
PATH_OP(unlink, 1, (void)0)
PATH_OP(rmdir, 1, (void)0)
PATH_OP(readlink, 1, (void)0)
PATH_OP(realpath, 1, (void)0)
PATH_OP(mkdtemp, 1, (void)0)
PATH_OP(mkstemp, 1, (void)0)
PATH_OP(mkdir, 2, int mode = checkmode(L, 2, FN, 0777), , mode)
PATH_OP(chmod, 2, int mode = checkmode(L, 2, FN, -1); if (mode < 0) coru_fs_typeerr(L, 2, FN, "mode"), , mode)
PATH_OP(scandir, 1, (void)0, , 0)
PATH_OP(utime, 3, double at = checktime(L, 2, FN); double mt = checktime(L, 3, FN), , at, mt)
PATH_OP(lutime, 3, double at = checktime(L, 2, FN); double mt = checktime(L, 3, FN), , at, mt)
PATH_OP(chown, 3, uv_uid_t uid = (uv_uid_t)coru_check_int(L, 2, -1, 0xfffffffe, FN); uv_gid_t gid = (uv_gid_t)coru_check_int(L, 3, -1, 0xfffffffe, FN), , uid, gid)
PATH_OP(lchown, 3, uv_uid_t uid = (uv_uid_t)coru_check_int(L, 2, -1, 0xfffffffe, FN); uv_gid_t gid = (uv_gid_t)coru_check_int(L, 3, -1, 0xfffffffe, FN), , uid, gid)

static int l_fs_access(lua_State *L) {
  int cb = coru_fs_cbslot(L, 2);
  const char *path = coru_fs_checkpath(L, 1, FN);
  int mode = F_OK;
  if (lua_type(L, 2) == LUA_TSTRING) {
    for (const char *p = lua_tostring(L, 2); *p; p++) {
      switch (*p) {
      case 'r': case 'R': mode |= R_OK; break;
      case 'w': case 'W': mode |= W_OK; break;
      case 'x': case 'X': mode |= X_OK; break;
      default: coru_fs_argerr(L, 2, FN, lua_pushfstring(L, "invalid access mode '%s' (use r, w, x)", lua_tostring(L, 2)));
      }
    }
  } else if (!lua_isnoneornil(L, 2)) {
    mode = (int)coru_check_int(L, 2, 0, 7, FN);
  }
  fs_req *r = newreq(L, cb, FN);
  set_detail(r, path, NULL);
  FS_CALL(L, r, access, path, mode);
}

#define TWO_PATH_OP(name, npos, extra_decl, ...)                                     \
  static int l_fs_##name(lua_State *L) {                                             \
    int cb = coru_fs_cbslot(L, npos);                                                     \
    const char *path = coru_fs_checkpath(L, 1, FN);                                          \
    const char *np = coru_fs_checkpath(L, 2, FN);                                            \
    extra_decl;                                                                      \
    fs_req *r = newreq(L, cb, FN);                                                    \
    set_detail(r, path, np);                                                         \
    FS_CALL(L, r, name, path, np __VA_ARGS__);                                       \
  }

static const coru_flag symlink_flags[] = {
  {"dir", UV_FS_SYMLINK_DIR}, {"junction", UV_FS_SYMLINK_JUNCTION}, {NULL, 0}};
static const coru_flag copy_flags[] = {
  {"excl", UV_FS_COPYFILE_EXCL}, {"ficlone", UV_FS_COPYFILE_FICLONE},
  {"ficlone_force", UV_FS_COPYFILE_FICLONE_FORCE}, {NULL, 0}};

TWO_PATH_OP(rename, 2, (void)0)
TWO_PATH_OP(link, 2, (void)0)
TWO_PATH_OP(symlink, 3, int flags = coru_opt_flags(L, 3, symlink_flags, FN), , flags)
TWO_PATH_OP(copyfile, 3, int flags = coru_opt_flags(L, 3, copy_flags, FN), , flags)

#define FD_OP(name, npos, extra_decl, ...)                                           \
  static int l_fs_##name(lua_State *L) {                                             \
    int cb = coru_fs_cbslot(L, npos);                                                     \
    uv_file fd = checkfd(L, 1, FN);                                                  \
    REFUSE_LOOP_FD(L, fd);                                                           \
    extra_decl;                                                                      \
    fs_req *r = newreq(L, cb, FN);                                                    \
    FS_CALL(L, r, name, fd __VA_ARGS__);                                             \
  }

FD_OP(fstat, 1, (void)0)
FD_OP(fsync, 1, (void)0)
FD_OP(fdatasync, 1, (void)0)
FD_OP(ftruncate, 2, int64_t off = (int64_t)optint(L, 2, FN, 0), , off)
FD_OP(fchmod, 2, int mode = checkmode(L, 2, FN, -1); if (mode < 0) coru_fs_typeerr(L, 2, FN, "mode"), , mode)
FD_OP(futime, 3, double at = checktime(L, 2, FN); double mt = checktime(L, 3, FN), , at, mt)
FD_OP(fchown, 3, uv_uid_t uid = (uv_uid_t)coru_check_int(L, 2, -1, 0xfffffffe, FN); uv_gid_t gid = (uv_gid_t)coru_check_int(L, 3, -1, 0xfffffffe, FN), , uid, gid)

static int l_fs_sendfile(lua_State *L) {
  int cb = coru_fs_cbslot(L, 4);
  uv_file out = checkfd(L, 1, FN), in = checkfd(L, 2, FN);
  REFUSE_LOOP_FD(L, out);
  REFUSE_LOOP_FD(L, in);
  int64_t off = (int64_t)checkint(L, 3, FN);
  lua_Integer len = checkint(L, 4, FN);
  if (len < 0) coru_fs_argerr(L, 4, FN, "invalid length");
  fs_req *r = newreq(L, cb, FN);
  FS_CALL(L, r, sendfile, out, in, off, (size_t)len);
}

/* fs_scandir_next(req): name, type of the next entry, or nil. */
static int l_fs_scandir_next(lua_State *L) {
  if (!lua_istable(L, 1) || !lua_getmetatable(L, 1)) return coru_fs_typeerr(L, 1, "fs_scandir_next", "scandir request");
  luaL_getmetatable(L, SCANDIR_MT);
  if (!lua_rawequal(L, -1, -2)) return coru_fs_typeerr(L, 1, "fs_scandir_next", "scandir request");
  lua_pop(L, 2);
  lua_getfield(L, 1, "i");
  lua_getfield(L, 1, "n");
  int i = (int)coru_check_int_at(L, -2, 0, CORU_INT_MAX, "fs_scandir_next", "field 'i'");
  int n = (int)coru_check_int_at(L, -1, 0, CORU_INT_MAX, "fs_scandir_next", "field 'n'");
  lua_pop(L, 2);
  if (i >= n) return 0;
  lua_pushinteger(L, i + 1);
  lua_setfield(L, 1, "i");
  lua_rawgeti(L, 1, 2 * i + 1);
  lua_rawgeti(L, 1, 2 * i + 2);
  return 2;
}

/* ---------------------------------------------------------- directories */

static void push_dir(lua_State *L, fs_req *r) {
  fs_dir *d = lua_newuserdata(L, sizeof *d);
  memset(d, 0, sizeof *d);
  d->fd = -1;
  d->dir = r->req.ptr;
  d->nents = r->nents;
  d->ents = calloc(d->nents, sizeof *d->ents);
  luaL_getmetatable(L, DIR_MT);
  lua_setmetatable(L, -2);
  if (!d->ents) {
    uv_fs_t c;
    uv_fs_closedir(NULL, &c, d->dir, NULL);
    uv_fs_req_cleanup(&c);
    d->closed = 1;
    luaL_error(L, "fs_opendir: out of memory");
  }
  d->dir->dirents = d->ents;
  d->dir->nentries = d->nents;
  /* held until closed: fs_close refuses it (EBUSY), or the closedir would
   * close whatever took its number */
  int fd = dirfd((DIR *)d->dir->dir);
  if (fd >= 0 && coru_fd_hold(fd, 1) == 0) d->fd = fd;
}

static fs_dir *checkdir(lua_State *L, int i, const char *fn) {
  fs_dir *d = lua_touserdata(L, i);
  int ok = 0;
  if (d && lua_type(L, i) == LUA_TUSERDATA && lua_getmetatable(L, i)) {
    luaL_getmetatable(L, DIR_MT);
    ok = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  if (!ok) coru_fs_typeerr(L, i, fn, "directory (from fs_opendir)");
  if (d->closed) luaL_error(L, "%s: directory is closed", fn);
  if (d->busy) luaL_error(L, "%s: busy (a readdir or closedir is pending on this directory)", fn);
  return d;
}

/* fs_opendir(path [, cb [, entries]]) as luv; entries may come second too. */
static int l_fs_opendir(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER) {   /* fs_opendir(path, entries [, cb]) */
    lua_settop(L, 3);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_replace(L, 2);
    lua_replace(L, 3);
  }
  const char *path = coru_fs_checkpath(L, 1, FN);
  lua_Integer n = optint(L, 3, FN, 1);
  if (n < 1 || n > 65536) coru_fs_argerr(L, 3, FN, "entries must be 1 .. 65536");
  fs_req *r = newreq(L, 2, FN);
  r->nents = (size_t)n;
  set_detail(r, path, NULL);
  FS_CALL(L, r, opendir, path);
}

/* readdir and closedir: the dir object is busy (and anchored) until done. */
static int dir_request(lua_State *L, const char *fn, int close) {
  int cb = coru_fs_cbslot(L, 1);
  fs_dir *d = checkdir(L, 1, fn);
  fs_req *r = newreq(L, cb, fn);
  r->dir = d;
  d->busy = 1;
  if (r->cont.mode != CORU_MODE_NONE) { lua_pushvalue(L, 1); r->anchor = luaL_ref(L, LUA_REGISTRYINDEX); }
  if (close) FS_CALL(L, r, closedir, d->dir);
  FS_CALL(L, r, readdir, d->dir);
}

static int l_fs_readdir(lua_State *L) { return dir_request(L, FN, 0); }
static int l_fs_closedir(lua_State *L) { return dir_request(L, FN, 1); }

static int dir_gc(lua_State *L) {
  fs_dir *d = coru_test_udata(L, 1, DIR_MT);
  /* busy: a request holds the object, so only a direct call gets here */
  if (!d || d->busy) return 0;
  if (!d->closed && d->dir) {
    uv_fs_t c;
    uv_fs_closedir(NULL, &c, d->dir, NULL);
    uv_fs_req_cleanup(&c);
    dir_closed(d);
  }
  free(d->ents);
  d->ents = NULL;
  return 0;
}

static int dir_tostring(lua_State *L) {
  fs_dir *d = coru_check_udata(L, 1, DIR_MT, "tostring");
  lua_pushfstring(L, "coru.fs_dir: %p%s", (void *)d, d->closed ? " (closed)" : "");
  return 1;
}

/* coru._fs_live_requests(): fs requests not yet completed and freed. */
static int l_fs_live_requests(lua_State *L) {
  lua_pushinteger(L, coru_fs_live_reqs);
  return 1;
}

/* ---------------------------------------------------------- open */

#define Y CORU_YIELDS
static const coru_Reg fs_funcs[] = {
  {"fs_open", l_fs_open, Y}, {"fs_close", l_fs_close, Y}, {"fs_read", l_fs_read, Y},
  {"fs_write", l_fs_write, Y}, {"fs_stat", l_fs_stat, Y}, {"fs_fstat", l_fs_fstat, Y},
  {"fs_lstat", l_fs_lstat, Y}, {"fs_statfs", l_fs_statfs, Y}, {"fs_unlink", l_fs_unlink, Y},
  {"fs_mkdir", l_fs_mkdir, Y}, {"fs_mkdtemp", l_fs_mkdtemp, Y}, {"fs_mkstemp", l_fs_mkstemp, Y},
  {"fs_rmdir", l_fs_rmdir, Y}, {"fs_scandir", l_fs_scandir, Y}, {"fs_scandir_next", l_fs_scandir_next, 0},
  {"fs_opendir", l_fs_opendir, Y}, {"fs_readdir", l_fs_readdir, Y}, {"fs_closedir", l_fs_closedir, Y},
  {"fs_rename", l_fs_rename, Y}, {"fs_fsync", l_fs_fsync, Y}, {"fs_fdatasync", l_fs_fdatasync, Y},
  {"fs_ftruncate", l_fs_ftruncate, Y}, {"fs_sendfile", l_fs_sendfile, Y}, {"fs_access", l_fs_access, Y},
  {"fs_chmod", l_fs_chmod, Y}, {"fs_fchmod", l_fs_fchmod, Y}, {"fs_utime", l_fs_utime, Y},
  {"fs_futime", l_fs_futime, Y}, {"fs_lutime", l_fs_lutime, Y}, {"fs_link", l_fs_link, Y},
  {"fs_symlink", l_fs_symlink, Y}, {"fs_readlink", l_fs_readlink, Y}, {"fs_realpath", l_fs_realpath, Y},
  {"fs_chown", l_fs_chown, Y}, {"fs_fchown", l_fs_fchown, Y}, {"fs_lchown", l_fs_lchown, Y},
  {"fs_copyfile", l_fs_copyfile, Y},
  {"_fs_live_requests", l_fs_live_requests, 0},
  {NULL, NULL, 0}
};

CORU_FAMILY(fs) {
  static const luaL_Reg dir_meta[] = {{"__gc", dir_gc}, {"__tostring", dir_tostring}, {NULL, NULL}};
  static const coru_Reg dir_methods[] = {
    {"readdir", l_fs_readdir, Y}, {"closedir", l_fs_closedir, Y}, {NULL, NULL, 0}};
  coru_newmt(L, DIR_MT, dir_meta, NULL);
  lua_newtable(L);
  coru_setfuncs(L, dir_methods);
  lua_setfield(L, -2, "__index");
  coru_newmt(L, SCANDIR_MT, NULL, NULL);
  lua_pop(L, 2);
  coru_setfuncs(L, fs_funcs);
}
