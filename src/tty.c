/*
 * tty.c - terminals (luv's API) on the stream layer: new_tty, set_mode,
 * get_winsize, reset_mode; and coru.new_stdio(fd), the stream behind
 * coru.stdin/stdout/stderr (a TTY, a pipe or a socket, whatever fd is).
 */
#include <string.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include "stream.h"
#include "check.h"

static coru_htype tty_type;

static coru_uvstream *checktty(lua_State *L, int idx) {
  return (coru_uvstream *)coru_check_handle(L, idx, &tty_type);
}

static int new_tty(lua_State *L, int fd, int readable) {
  coru_uvstream *u = coru_uvstream_alloc(L, &tty_type, CORU_UVSTREAM_SIZE(uv_tty_t));
  return coru_handle_inited(L, &u->s.base, uv_tty_init(coru_R->loop, &u->u.tty, fd, readable));
}

static int l_new_tty(lua_State *L) {
  int fd = (int)coru_check_int(L, 1, 0, CORU_INT_MAX, "new_tty");
  if (coru_fd_in_use(coru_R->loop, fd)) return coru_fail(L, UV_EBUSY, "the descriptor belongs to the event loop or a handle");
  return new_tty(L, fd, lua_toboolean(L, 2));
}

static int l_tty_set_mode(lua_State *L) {
  coru_uvstream *u = checktty(L, 1);
  int mode;
  if (lua_type(L, 2) == LUA_TSTRING) {
    const char *m = lua_tostring(L, 2);
    if (!strcmp(m, "normal")) mode = UV_TTY_MODE_NORMAL;
    else if (!strcmp(m, "raw")) mode = UV_TTY_MODE_RAW;
    else if (!strcmp(m, "io")) mode = UV_TTY_MODE_IO;
    else return luaL_argerror(L, 2, "expected \"normal\", \"raw\" or \"io\"");
  } else {
    mode = (int)coru_check_int(L, 2, 0, 2, "set_mode");
  }
  int r = uv_tty_set_mode(&u->u.tty, mode);
  return coru_result(L, r, NULL);
}

static int l_tty_get_winsize(lua_State *L) {
  int w, h;
  int r = uv_tty_get_winsize(&checktty(L, 1)->u.tty, &w, &h);
  if (r < 0) return coru_fail(L, r, NULL);
  lua_pushinteger(L, w);
  lua_pushinteger(L, h);
  return 2;
}

static int l_tty_reset_mode(lua_State *L) {
  int r = uv_tty_reset_mode();
  return coru_result(L, r, NULL);
}

static int l_guess_handle(lua_State *L) {
  switch (uv_guess_handle((int)coru_check_int(L, 1, 0, CORU_INT_MAX, "guess_handle"))) {
  case UV_TTY: lua_pushliteral(L, "tty"); break;
  case UV_NAMED_PIPE: lua_pushliteral(L, "pipe"); break;
  case UV_TCP: lua_pushliteral(L, "tcp"); break;
  case UV_UDP: lua_pushliteral(L, "udp"); break;
  case UV_FILE: lua_pushliteral(L, "file"); break;
  default: lua_pushliteral(L, "unknown"); break;
  }
  return 1;
}

/* ------------------------------------------------ regular files as streams */

/* A descriptor libuv cannot poll (a regular file: stdin < file, stdout >
 * file). Reads and writes on it never wait long, so they are done in
 * place; reading runs from an idle handle (one read per loop turn) and
 * completions are delivered on the next turn, never inside the call. */
typedef struct file_done file_done;

typedef struct {
  coru_stream s;
  uv_idle_t idle;
  int fd;
  file_done *pending;    /* completions not yet delivered */
} file_handle;

static coru_htype file_type;
static char fscratch[64 * 1024];

static void file_idle_cb(uv_idle_t *h) {
  file_handle *f = h->data;
  ssize_t n;
  do n = read(f->fd, fscratch, sizeof fscratch); while (n < 0 && errno == EINTR);
  if (n > 0) { coru_stream_feed(&f->s, fscratch, (size_t)n); return; }
  uv_idle_stop(h);
  coru_stream_feed_end(&f->s, n == 0 ? UV_EOF : uv_translate_sys_error(errno));
}

static int file_read_start(coru_stream *s) {
  file_handle *f = (file_handle *)s;
  return uv_idle_start(&f->idle, file_idle_cb);
}

static void file_read_stop(coru_stream *s) { uv_idle_stop(&((file_handle *)s)->idle); }

static int file_try_write(coru_stream *s, const uv_buf_t *b, unsigned n) {
  file_handle *f = (file_handle *)s;
  size_t total = 0;
  for (unsigned i = 0; i < n; i++) {
    size_t off = 0;
    while (off < b[i].len) {
      ssize_t r = write(f->fd, b[i].base + off, b[i].len - off);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return total ? (int)total : uv_translate_sys_error(errno);
      off += (size_t)r;
    }
    total += b[i].len;
  }
  return (int)total;
}

struct file_done {
  file_handle *f;
  coru_write_req *w;
  coru_shutdown_req *q;
  int status;
  coru_deadline *dl;
  file_done *next;
};

static void file_done_deliver(file_done *d, int status) {
  file_done **pp = &d->f->pending;
  while (*pp != d) pp = &(*pp)->next;
  *pp = d->next;
  if (d->w) coru_stream_write_done(&d->f->s, d->w, status);
  else coru_stream_shutdown_done(&d->f->s, d->q, status);
  free(d);
}

static void file_done_cb(void *data) {
  file_done *d = data;
  d->dl = NULL;
  file_done_deliver(d, d->status);
}

/* Complete on the next loop turn (never inside the call). */
static int file_later(file_handle *f, coru_write_req *w, coru_shutdown_req *q, int status) {
  file_done *d = malloc(sizeof *d);
  if (!d) return UV_ENOMEM;
  *d = (file_done){f, w, q, status, NULL, f->pending};
  f->pending = d;
  d->dl = coru_deadline_start(0, file_done_cb, d);
  return 0;
}

static int file_write(coru_stream *s, coru_write_req *w, const uv_buf_t *b, unsigned n) {
  int r = file_try_write(s, b, n);
  return file_later((file_handle *)s, w, NULL, r < 0 ? r : 0);
}

static int file_shutdown(coru_stream *s, coru_shutdown_req *q) { return file_later((file_handle *)s, NULL, q, 0); }

static const coru_transport file_transport = {
  file_read_start, file_read_stop, file_try_write, file_write, file_shutdown, NULL
};

/* Closing: what was pending completes now with "closed". */
static void file_on_close(coru_handle *h) {
  file_handle *f = (file_handle *)h;
  while (f->pending) {
    file_done *d = f->pending;
    if (d->dl) { coru_deadline_stop(d->dl); d->dl = NULL; }
    file_done_deliver(d, UV_ECANCELED);
  }
  coru_stream_closing(&f->s);
}

static int new_file_stream(lua_State *L, int fd) {
  file_handle *f = coru_handle_alloc(L, &file_type, sizeof *f, offsetof(file_handle, idle));
  coru_stream_init(&f->s, &file_transport);
  f->fd = fd;
  return coru_handle_inited(L, &f->s.base, uv_idle_init(coru_R->loop, &f->idle));
}

/* What a stream on a regular file is: the handle behind it is an idle
 * (the reads' pacing), not the file. */
static int l_file_get_type(lua_State *L) {
  coru_check_handle(L, 1, &file_type);
  lua_pushliteral(L, "file");
  lua_pushinteger(L, UV_FILE);
  return 2;
}

static int l_file_fileno(lua_State *L) {
  file_handle *f = (file_handle *)coru_check_handle(L, 1, &file_type);
  lua_pushinteger(L, f->fd);
  return 1;
}

static const coru_Fn file_fns[] = {
  {"get_type", NULL, l_file_get_type, 0}, {"fileno", NULL, l_file_fileno, 0}, CORU_FNS_END
};
static coru_htype file_type = {"coru.filestream", CORU_K_PIPE, CORU_K_PIPE, file_fns,
                               file_on_close, coru_uvstream_on_free, NULL};

/* new_stdio(fd): a stream on fd as whatever it is (tty, pipe, socket or a
 * regular file). */
static int new_stdio(lua_State *L, int fd);

static int l_new_stdio(lua_State *L) {
  int fd = (int)coru_check_int(L, 1, 0, CORU_INT_MAX, "new_stdio");
  if (coru_fd_in_use(coru_R->loop, fd)) return coru_fail(L, UV_EBUSY, "the descriptor belongs to the event loop or a handle");
  int n = new_stdio(L, fd);
  if ((fd == 1 || fd == 2) && n == 1 && lua_isuserdata(L, -1)) {
    coru_stream *s = (coru_stream *)((coru_box *)lua_touserdata(L, -1))->h;
    s->stdio_out = (unsigned char)fd;
  }
  return n;
}

static int new_stdio(lua_State *L, int fd) {
  int r;
  switch (uv_guess_handle(fd)) {
  case UV_TTY:
    return new_tty(L, fd, fd == 0);
  case UV_NAMED_PIPE:
  case UV_TCP:
    if (coru_new_pipe(L, 0) != 1 || lua_isnil(L, -1)) return 3;
    r = uv_pipe_open((uv_pipe_t *)((coru_stream *)((coru_box *)lua_touserdata(L, -1))->h)->uvs, fd);
    if (r < 0) { lua_pop(L, 1); return coru_fail(L, r, NULL); }
    return 1;
  case UV_FILE:
    return new_file_stream(L, fd);
  default:
    return coru_fail(L, UV_EINVAL, "not a terminal, pipe, socket or file");
  }
}

static const coru_Fn tty_fns[] = {
  {NULL, "new_tty", l_new_tty, 0}, {NULL, "tty_reset_mode", l_tty_reset_mode, 0},
  {NULL, "guess_handle", l_guess_handle, 0}, {NULL, "new_stdio", l_new_stdio, 0},
  CORU_FN(tty, set_mode, 0), CORU_FN(tty, get_winsize, 0), CORU_FNS_END
};

/* A terminal left in raw mode by a closed handle would stay raw. */
static void tty_on_close(coru_handle *h) {
  coru_uvstream *u = (coru_uvstream *)h;
  if (u->u.tty.mode != UV_TTY_MODE_NORMAL) uv_tty_set_mode(&u->u.tty, UV_TTY_MODE_NORMAL);
  coru_stream_closing(&u->s);
}

static coru_htype tty_type = {"coru.tty", CORU_K_TTY, CORU_K_TTY, tty_fns,
                              tty_on_close, coru_uvstream_on_free, NULL};

CORU_FAMILY(tty) {
  coru_register_stream_type(L, &tty_type);
  coru_register_stream_type(L, &file_type);
}
