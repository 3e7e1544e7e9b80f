/*
 * work.c - the thread pool (coru.work, luv's new_work/queue_work) and poll
 * handles (fd readiness, to drive other C libraries). Async handles and
 * the serializer of the values that cross states are in xfer.c.
 *
 * A work function runs in a lua_State of its own, taken from a pool and
 * reused, on one of libuv's pool threads: it is dumped to bytecode here and
 * loaded there, so it may have no upvalues. Arguments and results cross
 * the states serialized (nil, booleans, numbers, strings, plain tables of
 * those); anything else is a clear error.
 */
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <stdint.h>
#include "coru.h"
#include "check.h"
#include "xfer.h"

/* ------------------------------------------------------------ the pool */

static uv_mutex_t pool_mu;
static lua_State *pool[64];
static int npool;

static lua_State *state_get(void) {
  lua_State *S = NULL;
  uv_mutex_lock(&pool_mu);
  if (npool > 0) S = pool[--npool];
  uv_mutex_unlock(&pool_mu);
  if (!S) {
    S = luaL_newstate();
    if (S) { luaL_openlibs(S); coru_luv_thread_open(S); }
  }
  return S;
}

static void state_put(lua_State *S) {
  lua_settop(S, 0);
  uv_mutex_lock(&pool_mu);
  if (npool < 64) { pool[npool++] = S; S = NULL; }
  uv_mutex_unlock(&pool_mu);
  if (S) lua_close(S);
}

/* At the runtime's end: close every idle pooled state, so that the __gc
 * of what its calls left (a module's handles, a codec's buffer) runs and
 * nothing stays reachable. A state busy in a pool thread (a call that
 * never returned before the exit gave up on it: coru_shutdown's bounded
 * runs) is not in the pool: it is left to the process's end. One closed
 * here is out of the pool first, so a thread never gets it again; the
 * pool serves a later runtime (the module loaded again) with new states. */
void coru_work_close_pool(void) {
  lua_State *idle[64];
  uv_mutex_lock(&pool_mu);
  int n = npool;
  memcpy(idle, pool, (size_t)n * sizeof *idle);
  npool = 0;
  uv_mutex_unlock(&pool_mu);
  while (n > 0) lua_close(idle[--n]);
}

/* ------------------------------------------------------------ work */


typedef struct {
  uv_work_t req;
  coru_cont cont;
  int after_ref;       /* luv's queue_work: after_work(results...) */
  coru_sbuf code;           /* the function's bytecode */
  coru_sbuf io;             /* arguments in, results (or the error) out */
  int failed;
  char name[64];
} work_req;

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  coru_sb_add(ud, p, sz);
  return 0;
}

/* Check fn (at idx) and dump it into b; raises a clear error. */
static void dump_fn(lua_State *L, int idx, coru_sbuf *b, const char *fname) {
  if (lua_type(L, idx) != LUA_TFUNCTION)
    coru_xfer_error(L, "bad argument #%d to '%s' (function expected, got %s)", idx, fname, luaL_typename(L, idx));
  if (lua_iscfunction(L, idx)) coru_xfer_error(L, "%s: a C function cannot run in the thread pool", fname);
  const char *up = lua_getupvalue(L, idx, 1);
  if (up) {
    lua_pop(L, 1);
    coru_xfer_error(L, "%s: the function has upvalues (first: '%s'); it runs in another Lua state, "
               "so it may use only its arguments and globals", fname, up);
  }
  lua_pushvalue(L, idx);
  lua_dump(L, dump_writer, b);
  lua_pop(L, 1);
  if (b->oom) { coru_sb_free(b); coru_xfer_error(L, "%s: out of memory", fname); }
}

/* In the pooled state, protected: load the function, copy the arguments
 * in, call it; its results are left on the stack. */
static int work_protected(lua_State *S) {
  work_req *w = lua_touserdata(S, 1);
  lua_settop(S, 0);
  if (luaL_loadbuffer(S, w->code.p, w->code.len, w->name) != 0) return lua_error(S);
  /* globals it sets go to a table of its own, reading through to _G */
  lua_newtable(S);
  lua_createtable(S, 0, 1);
  lua_pushvalue(S, LUA_GLOBALSINDEX);
  lua_setfield(S, -2, "__index");
  lua_setmetatable(S, -2);
  lua_setfenv(S, -2);
  int n = coru_xfer_push_all(S, &w->io);
  if (n < 0) return luaL_error(S, "coru.work: bad arguments");
  lua_call(S, n, LUA_MULTRET);
  return lua_gettop(S);
}

static void work_cb(uv_work_t *req) {
  work_req *w = req->data;
  lua_State *S = state_get();
  coru_sbuf out = {0};
  if (!S) { w->failed = 1; coru_sb_add(&out, "coru.work: cannot create a Lua state", 36); goto done; }
  lua_settop(S, 0);
  lua_pushcfunction(S, work_protected);
  lua_pushlightuserdata(S, w);
  if (lua_pcall(S, 1, LUA_MULTRET, 0) != 0) w->failed = 1;
  if (w->failed) {
    size_t len;
    const char *msg = lua_tolstring(S, -1, &len);
    if (!msg) msg = "(error object is not a string)", len = strlen(msg);
    coru_sb_add(&out, msg, len);
  } else {
    char errbuf[200];
    int top = lua_gettop(S);
    for (int i = 1; i <= top; i++) {
      const char *e = coru_xfer_value(S, i, &out, errbuf, sizeof errbuf);
      if (e) {
        coru_sb_free(&out);
        char msg[300];
        snprintf(msg, sizeof msg, "coru.work: result #%d: %s", i, e);
        coru_sb_add(&out, msg, strlen(msg));
        w->failed = 1;
        break;
      }
    }
  }
  state_put(S);
done:
  coru_sb_free(&w->io);
  w->io = out;
  if (out.oom) { w->failed = 1; coru_sb_free(&w->io); }
}

static void work_free(work_req *w) {
  coru_sb_free(&w->code);
  coru_sb_free(&w->io);
  if (coru_R) coru_unref(coru_R->L, &w->after_ref);
  free(w);
}

static void after_work_cb(uv_work_t *req, int status) {
  work_req *w = req->data;
  lua_State *L = coru_R->L;
  if (w->after_ref != LUA_NOREF) {           /* queue_work */
    if (status == 0 && !coru_R->shutting_down) {
      if (w->failed) {
        lua_pushlstring(L, w->io.p ? w->io.p : "out of memory", w->io.p ? w->io.len : 13);
        coru_report(L, NULL);
      } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, w->after_ref);
        int n = coru_xfer_push_all(L, &w->io);
        if (n < 0) n = 0;
        coru_callback(n);
      }
    }
    work_free(w);
    return;
  }
  lua_State *S = coru_cont_begin(&w->cont);
  if (S) {
    if (status < 0) {
      coru_cont_fail(&w->cont, status, NULL);
    } else if (w->failed) {
      const char *msg = w->io.p ? w->io.p : "coru.work: out of memory";
      size_t len = w->io.p ? w->io.len : strlen(msg);
      if (w->cont.mode == CORU_MODE_TASK) {
        lua_pushlightuserdata(S, coru_ERR);       /* raised in the task */
        lua_pushlstring(S, msg, len);
        coru_cont_ok(&w->cont, 2);
      } else {
        lua_pop(S, 1);
        lua_pushlstring(S, msg, len);
        coru_callback(1);
      }
    } else {
      int n = coru_xfer_push_all(S, &w->io);
      coru_cont_ok(&w->cont, n < 0 ? 0 : n);
    }
  }
  work_free(w);
}

static void work_cancel(coru_cont *c) {
  work_req *w = container_of(c, work_req, cont);
  uv_cancel((uv_req_t *)&w->req);
}

static work_req *work_new(lua_State *L) {
  work_req *w = calloc(1, sizeof *w);
  if (!w) coru_xfer_error(L, "out of memory");
  w->req.data = w;
  w->after_ref = LUA_NOREF;
  w->cont.cb_ref = LUA_NOREF;
  return w;
}

/* coru.work(fn, ... [, cb]) -> fn's results (task), or cb(err, results...). */
static int l_work(lua_State *L) {
  int top = lua_gettop(L);
  int cb = top >= 2 && coru_is_callable(L, top) ? top : 0;
  coru_enter(L, cb, "coru.work", 0);
  coru_sbuf code = {0}, io = {0};
  dump_fn(L, 1, &code, "coru.work");
  char errbuf[200];
  for (int i = 2; i <= (cb ? top - 1 : top); i++) {
    const char *e = coru_xfer_value(L, i, &io, errbuf, sizeof errbuf);
    if (e) { coru_sb_free(&code); coru_sb_free(&io); return coru_xfer_error(L, "coru.work: argument #%d: %s", i, e); }
  }
  if (io.oom) { coru_sb_free(&code); coru_sb_free(&io); return coru_xfer_error(L, "coru.work: out of memory"); }
  work_req *w = work_new(L);
  w->code = code;
  w->io = io;
  lua_Debug ar;
  lua_pushvalue(L, 1);
  if (lua_getinfo(L, ">S", &ar)) snprintf(w->name, sizeof w->name, "=%s", ar.short_src);
  else strcpy(w->name, "=coru.work");
  coru_cont_init(L, &w->cont, cb, work_cancel);
  int r = uv_queue_work(coru_R->loop, &w->req, work_cb, after_work_cb);
  if (r < 0) { coru_cont_clear(L, &w->cont); work_free(w); return coru_fail(L, r, NULL); }
  return coru_cont_yield(L, &w->cont, 0);
}

/* luv's shape: new_work(fn, after_work) -> ctx; queue_work(ctx, ...). */
#define WORKCTX_MT "coru.work_ctx"

typedef struct { coru_sbuf code; int after_ref; char name[64]; } workctx;

static int l_new_work(lua_State *L) {
  coru_sbuf code = {0};
  dump_fn(L, 1, &code, "new_work");
  if (!coru_is_callable(L, 2)) { coru_sb_free(&code); luaL_typerror(L, 2, "function"); }
  workctx *c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->code = code;
  lua_pushvalue(L, 2);
  c->after_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  strcpy(c->name, "=coru.work");
  luaL_getmetatable(L, WORKCTX_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_queue_work(lua_State *L) {
  workctx *c = coru_check_udata(L, 1, WORKCTX_MT, "queue_work");
  if (c->after_ref == LUA_NOREF) return luaL_error(L, "queue_work: the work context is freed");
  coru_sbuf io = {0};
  coru_xfer_args(L, 2, lua_gettop(L), &io, "queue_work");
  work_req *w = work_new(L);
  w->io = io;
  coru_sb_add(&w->code, c->code.p, c->code.len);
  memcpy(w->name, c->name, sizeof w->name);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->after_ref);
  w->after_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int r = uv_queue_work(coru_R->loop, &w->req, work_cb, after_work_cb);
  if (r < 0) { work_free(w); return coru_fail(L, r, NULL); }
  lua_pushboolean(L, 1);
  return 1;
}

static int workctx_gc(lua_State *L) {
  workctx *c = coru_test_udata(L, 1, WORKCTX_MT);
  if (!c) return 0;
  coru_sb_free(&c->code);
  if (coru_R) coru_unref(L, &c->after_ref);
  return 0;
}

/* ------------------------------------------------------------ poll */

typedef struct {
  coru_handle base;
  uv_poll_t p;
} poll_handle;

static coru_htype poll_type;

/* Closing a started poll tells its callback "closed" (as streams, UDP and
 * watchers do): coru.poll.wait returns instead of waiting for ever. */
static void poll_on_close(coru_handle *h) {
  poll_handle *p = (poll_handle *)h;
  if (p->base.cb_ref == LUA_NOREF) return;
  lua_State *L = coru_R->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->base.cb_ref);
  coru_unref(L, &p->base.cb_ref);
  if (coru_R->shutting_down || !coru_R->loop) { lua_pop(L, 1); return; }
  lua_pushliteral(L, "closed");
  coru_callback(1);
}

static int new_poll(lua_State *L, int socket) {
  int fd = (int)coru_check_int(L, 1, 0, CORU_INT_MAX, "new_poll");
  /* One libuv watcher per descriptor: a second one (a stream's, another
   * poll's, started or not) shares its epoll entry, and closing either
   * removes it under the other (libuv aborts on its next change). */
  if (coru_fd_in_use(coru_R->loop, fd))   /* check.h */
    return coru_fail(L, UV_EBUSY, "the descriptor belongs to the event loop or a handle, or is being closed");
  poll_handle *p = coru_handle_alloc(L, &poll_type, sizeof *p, offsetof(poll_handle, p));
  return coru_handle_inited(L, &p->base, socket ? uv_poll_init_socket(coru_R->loop, &p->p, fd) : uv_poll_init(coru_R->loop, &p->p, fd));
}

static int l_new_poll(lua_State *L) { return new_poll(L, 0); }
static int l_new_socket_poll(lua_State *L) { return new_poll(L, 1); }

static void push_events(lua_State *L, int ev) {
  char s[5];
  int n = 0;
  if (ev & UV_READABLE) s[n++] = 'r';
  if (ev & UV_WRITABLE) s[n++] = 'w';
  if (ev & UV_DISCONNECT) s[n++] = 'd';
  if (ev & UV_PRIORITIZED) s[n++] = 'p';
  lua_pushlstring(L, s, (size_t)n);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  poll_handle *p = h->data;
  lua_State *L = coru_R->L;
  if (p->base.cb_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->base.cb_ref);
  if (status < 0) { coru_push_errmsg(L, status, NULL); coru_callback(1); return; }
  lua_pushnil(L);
  push_events(L, events);
  coru_callback(2);
}

/* poll_start(h [, events = "r"], cb(err, events)): events has r, w, d, p. */
static int l_poll_start(lua_State *L) {
  poll_handle *p = (poll_handle *)coru_check_handle(L, 1, &poll_type);
  int cbidx = 3, ev = 0;
  if (coru_is_callable(L, 2)) cbidx = 2, ev = UV_READABLE;
  else if (lua_isnoneornil(L, 2)) ev = UV_READABLE;
  else {
    for (const char *s = luaL_checkstring(L, 2); *s; s++) {
      switch (*s) {
      case 'r': ev |= UV_READABLE; break;
      case 'w': ev |= UV_WRITABLE; break;
      case 'd': ev |= UV_DISCONNECT; break;
      case 'p': ev |= UV_PRIORITIZED; break;
      default: return coru_xfer_error(L, "bad argument #2 to 'poll_start' (invalid events '%s': use r, w, d, p)", lua_tostring(L, 2));
      }
    }
  }
  int ref = coru_ref_cb(L, cbidx);
  int r = uv_poll_start(&p->p, ev, poll_cb);
  if (r < 0) { luaL_unref(L, LUA_REGISTRYINDEX, ref); return coru_fail(L, r, NULL); }
  coru_handle_set_cb(L, &p->base, &p->base.cb_ref, ref);
  lua_pushinteger(L, 0);
  return 1;
}

static int l_poll_stop(lua_State *L) {
  poll_handle *p = (poll_handle *)coru_check_handle(L, 1, &poll_type);
  uv_poll_stop(&p->p);
  return coru_handle_stopped(L, &p->base);
}

static const coru_Fn poll_fns[] = {
  {NULL, "new_poll", l_new_poll, 0}, {NULL, "new_socket_poll", l_new_socket_poll, 0},
  CORU_FN(poll, start, 0), CORU_FN(poll, stop, 0), CORU_FNS_END
};
static coru_htype poll_type = {"coru.poll", CORU_K_POLL, CORU_K_POLL, poll_fns, poll_on_close, NULL, NULL};

/* ------------------------------------------------------------ open */

static const coru_Reg work_funcs[] = {
  {"work", l_work, CORU_YIELDS},
  {"new_work", l_new_work, 0},
  {"queue_work", l_queue_work, 0},
  {NULL, NULL, 0}
};

CORU_FAMILY(work) {
  static int inited;
  if (!inited) { uv_mutex_init(&pool_mu); inited = 1; }
  static const luaL_Reg meta[] = {{"__gc", workctx_gc}, {NULL, NULL}};
  static const luaL_Reg index[] = {{"queue", l_queue_work}, {NULL, NULL}};
  coru_newmt(L, WORKCTX_MT, meta, index);
  lua_pop(L, 1);
  coru_open_async(L);
  coru_register_htype(L, &poll_type);
  coru_setfuncs(L, work_funcs);
}
