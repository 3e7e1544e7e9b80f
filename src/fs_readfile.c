/*
 * fs_readfile.c - coru.fs_read_file: a whole file in ONE thread-pool round
 * trip (open, fstat, read until end of file, close), where luv needs four.
 * The other fs requests are in fs.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <errno.h>
#include <unistd.h>
#include <sys/stat.h>
#include "coru.h"
#include "check.h"
#include "fs.h"

#define READ_FILE_MAX_DEFAULT ((size_t)256 << 20)   /* 256 MiB, docs/fs.md */

typedef struct {
  uv_work_t req;
  coru_cont cont;
  char *data;
  size_t len;
  size_t max;       /* the limit: more is EFBIG */
  int err;
  char path[];
} read_file_req;


static int read_whole(const char *path, char **out, size_t *outlen, size_t max) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) < 0) { int e = -errno; close(fd); return e; }
  if (S_ISDIR(st.st_mode)) { close(fd); return UV_EISDIR; }
  if (st.st_size > 0 && (uint64_t)st.st_size > max) { close(fd); return UV_EFBIG; }
  size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 65536, len = 0;
  char *buf = malloc(cap);
  if (!buf) { close(fd); return UV_ENOMEM; }
  for (;;) {
    if (len > max) { free(buf); close(fd); return UV_EFBIG; }   /* grew past its size (/dev/zero) */
    if (len == cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) { free(buf); close(fd); return UV_ENOMEM; }
      buf = nb;
      cap *= 2;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = -errno;
      free(buf);
      close(fd);
      return e;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  *out = buf;
  *outlen = len;
  return 0;
}

/* The failure of r: for EFBIG the detail names the limit. */
static void rf_fail(coru_cont *c, lua_State *L, read_file_req *r, int err) {
  if (err != UV_EFBIG) {
    if (c) coru_cont_fail(c, err, r->path); else coru_fail(L, err, r->path);
    return;
  }
  static const char fmt[] = "%s (larger than the limit of %zu bytes: read_file(path, {max = n}) raises it)";
  size_t n = strlen(r->path) + sizeof fmt + 24;
  char *d = malloc(n);
  if (d) snprintf(d, n, fmt, r->path, r->max);
  if (c) coru_cont_fail(c, err, d ? d : r->path); else coru_fail(L, err, d ? d : r->path);
  free(d);
}

static void rf_work(uv_work_t *w) {
  read_file_req *r = w->data;
  r->err = read_whole(r->path, &r->data, &r->len, r->max);
}

static void rf_free(read_file_req *r) {
  coru_fs_live_reqs--;
  free(r->data);
  free(r);
}

static void rf_after(uv_work_t *w, int status) {
  read_file_req *r = w->data;
  lua_State *S = coru_cont_begin(&r->cont);
  if (S) {
    if (status < 0) coru_cont_fail(&r->cont, status, r->path);
    else if (r->err < 0) rf_fail(&r->cont, NULL, r, r->err);
    else {
      lua_pushlstring(S, r->data, r->len);
      free(r->data);
      r->data = NULL;
      coru_cont_ok(&r->cont, 1);
    }
  }
  rf_free(r);
}

static void rf_cancel(coru_cont *c) {
  read_file_req *r = container_of(c, read_file_req, cont);
  uv_cancel((uv_req_t *)&r->req);
}

/* coru.fs_read_file(path [, cb]) -> contents, or nil, msg, name. */
static int l_fs_read_file(lua_State *L) {
  static const char fn[] = "fs_read_file";
  int cb = coru_fs_cbslot(L, 2);
  const char *path = coru_fs_checkpath(L, 1, fn);
  size_t max = READ_FILE_MAX_DEFAULT;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "max");
    if (!lua_isnil(L, -1)) max = (size_t)coru_check_int_at(L, -1, 0, READ_FILE_MAX, fn, "option 'max'");
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, 2)) {
    max = (size_t)coru_check_int(L, 2, 0, READ_FILE_MAX, fn);
  }
  if (!lua_isnoneornil(L, cb) && !coru_is_callable(L, cb)) coru_fs_typeerr(L, cb, fn, "function");
  coru_enter(L, cb, fn, CORU_SYNC_OK);
  size_t plen = strlen(path);
  read_file_req *r = calloc(1, sizeof *r + plen + 1);
  if (!r) return luaL_error(L, "out of memory");
  coru_fs_live_reqs++;
  memcpy(r->path, path, plen + 1);
  r->max = max;
  r->req.data = r;
  int mode = coru_cont_init(L, &r->cont, cb, rf_cancel);
  if (mode == CORU_MODE_NONE) {
    int e = read_whole(path, &r->data, &r->len, max);
    int n;
    if (e < 0) { rf_fail(NULL, L, r, e); n = 3; }
    else { lua_pushlstring(L, r->data, r->len); n = 1; }
    rf_free(r);
    return n;
  }
  int e = uv_queue_work(coru_R->loop, &r->req, rf_work, rf_after);
  if (e < 0) { coru_cont_clear(L, &r->cont); rf_free(r); return coru_fail(L, e, path); }
  return coru_cont_yield(L, &r->cont, 0);
}

CORU_FAMILY(fs_readfile) {
  static const coru_Reg funcs[] = {{"fs_read_file", l_fs_read_file, CORU_YIELDS}, {NULL, NULL, 0}};
  coru_setfuncs(L, funcs);
}
