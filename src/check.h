/*
 * check.h - the boundary between Lua and C: every value a script hands to
 * C goes through one of these. Each raises a Lua argument error that names
 * the function (fn; NULL: the name Lua's debug info gives) and never lets a
 * value wrap, truncate or be misread.
 */
#ifndef CORU_CHECK_H
#define CORU_CHECK_H

#include <stdint.h>
#include "coru.h"

/* "bad argument #i to 'fn' (msg)". */
int coru_fn_argerror(lua_State *L, int idx, const char *fn, const char *msg);

/* An integer in lo..hi: a number with an integer value (no NaN, no
 * fraction, no wrap). */
lua_Integer coru_check_int(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, const char *fn);
lua_Integer coru_opt_int(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, lua_Integer def, const char *fn);
/* The same for a value that is not an argument (a table field at idx):
 * the error is "fn: what: ..." ("spawn: option 'uid': ..."). */
lua_Integer coru_check_int_at(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, const char *fn, const char *what);
#define CORU_INT_MIN ((lua_Integer)-2147483647 - 1)
#define CORU_INT_MAX ((lua_Integer)2147483647)

/* A string C can use as a C string: refused if it holds a NUL byte. */
const char *coru_check_cstr(lua_State *L, int idx, const char *fn);
const char *coru_opt_cstr(lua_State *L, int idx, const char *def, const char *fn);
/* The same check of a string already at idx (a table field, say); what
 * names the value in the error: "option 'cwd'". */
const char *coru_cstr_at(lua_State *L, int idx, const char *fn, const char *what);

/* Milliseconds: a number; NaN refused, negative is 0, anything above
 * CORU_MS_FOREVER (2^52 ms, about 142,000 years: "practically forever")
 * is CORU_MS_FOREVER. */
#define CORU_MS_FOREVER ((uint64_t)1 << 52)
uint64_t coru_check_ms(lua_State *L, int idx, const char *fn);
uint64_t coru_opt_ms(lua_State *L, int idx, uint64_t def, const char *fn);
uint64_t coru_ms_value(lua_State *L, lua_Number ms, int idx, const char *fn);

/* A userdata whose metatable is registry[tname], or NULL (never raises):
 * for metamethods, which Lua can call with anything. */
void *coru_test_udata(lua_State *L, int idx, const char *tname);
/* The same, raising "bad argument #idx to 'fn' (tname expected, got ...)". */
void *coru_check_udata(lua_State *L, int idx, const char *tname, const char *fn);
/* Make the metatable at the top private: getmetatable() gives "coru". */
void coru_protect_mt(lua_State *L);
/* The registry's metatable name, made now if it does not exist (returns
 * 1 then): the functions of meta (__gc, __tostring, ...) and an __index
 * table of index (either may be NULL), protected (coru_protect_mt). Left
 * pushed either way. */
int coru_newmt(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *index);

/* Push a string for any value (an error object, say) and return it; never
 * raises, whatever its __tostring does. */
const char *coru_safe_tostring(lua_State *L, int idx);

/* Is fd one that libuv's loop uses itself (epoll, its signal and wakeup
 * pipes, inotify), that a live handle holds, or that coru holds outside a
 * handle (coru_fd_hold)? Closing it under them ends in an assertion inside
 * libuv, or a watcher left on a number another descriptor took (its loop
 * spins or waits for ever): fs_close refuses (EBUSY). */
int coru_fd_in_use(uv_loop_t *loop, int fd);
/* Descriptors coru holds outside any handle (a multiset): on = 1 when the
 * hold starts (0 or UV_ENOMEM), 0 when it ends. An fs_close running in the
 * threadpool (handed to libuv meanwhile, new_poll, tcp_open, ..., the
 * descriptor would be closed under its watcher; closed again, the number
 * may be another's) and an open directory stream (fs_opendir: closed
 * under it, its closedir would close whatever took the number, a
 * listener's socket say, and leave its watcher on the new descriptor). */
int coru_fd_hold(int fd, int on);
int coru_fd_held(int fd);
/* Is fd one of the loop's own (the first half of coru_fd_in_use)? Bytes
 * written to or read from its signal pipe are messages libuv trusts (a
 * handle pointer: a crash): the fs calls on a descriptor refuse (EBUSY). */
int coru_fd_of_loop(uv_loop_t *loop, int fd);
/* Around the loop's creation (phase 0 before, 1 after): the descriptors
 * libuv opened then (its process-wide signal lock pipe among them) count
 * as in use. */
void coru_fds_snapshot(int phase);

/* Flags at idx: a table of booleans (each name of names that is truthy
 * adds its bit: {dir = true}), or an integer (nil or none: 0). */
typedef struct { const char *name; int bit; } coru_flag;
int coru_opt_flags(lua_State *L, int idx, const coru_flag *names, const char *fn);

#endif
