/*
 * xfer.h - values that cross Lua states (coru.work's pooled states, luv's
 * threads, async handles): nil, booleans, numbers, strings, plain tables,
 * an async handle (it arrives as a reference async_send takes) and thread
 * ids, serialized into a byte buffer. Lent to work.c and thread.c.
 */
#ifndef CORU_XFER_H
#define CORU_XFER_H

#include "coru.h"

typedef struct { char *p; size_t len, cap; int oom; } coru_sbuf;
void coru_sb_add(coru_sbuf *b, const void *d, size_t n);   /* sets b->oom on failure */
void coru_sb_free(coru_sbuf *b);

/* luaL_error without the position (the caller is coru's wrapper). */
int coru_xfer_error(lua_State *L, const char *fmt, ...);
/* Serialize the value at idx into b. Returns NULL, or an error message
 * (static, or written into errbuf). */
const char *coru_xfer_value(lua_State *L, int idx, coru_sbuf *b, char *errbuf, size_t errlen);
/* Serialize values first..last; raises naming fname on a bad one (b freed). */
void coru_xfer_args(lua_State *L, int first, int last, coru_sbuf *b, const char *fname);
/* Push every value of b; returns the count, -1 if malformed (nothing pushed). */
int coru_xfer_push_all(lua_State *L, const coru_sbuf *b);
/* The same over a plain byte range, and values first..last packed into a
 * malloc'd range (raises naming fname). */
int coru_xfer_unpack(lua_State *L, const char *p, size_t len);
void coru_xfer_pack(lua_State *L, int first, int last, char **out, size_t *len, const char *fname);

/* Async handles: values first..last of S (any Lua state, any thread) to
 * the async handle behind ref (what an async handle becomes when it
 * crosses states); UV_EBADF when it is closed or was never one. */
int coru_async_send_ref(void *ref, lua_State *S, int first, int last);
void coru_open_async(lua_State *L);   /* the coru.async type, new_async, async_send */

/* Thread ids (userdata "uv_thread_t"): made by thread_self, or by
 * new_thread (thread.c) which sets joinable. */
typedef struct { uv_thread_t tid; unsigned char joinable; } coru_lthread;
coru_lthread *coru_push_lthread(lua_State *L);
int coru_thread_id_of(lua_State *L, int idx, uv_thread_t *tid);   /* 1 if a thread id is at idx */
void coru_push_thread_id(lua_State *L, const uv_thread_t *tid);
int coru_l_thread_self(lua_State *L);
int coru_l_thread_equal(lua_State *L);
int coru_l_thread_join(lua_State *L);
int coru_thread_mt(lua_State *L);     /* pushes the metatable (made once per state) */

#endif
