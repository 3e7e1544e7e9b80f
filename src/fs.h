/*
 * fs.h - what fs.c lends fs_read_file (fs_readfile.c) and the fs watch
 * handles (fswatch.c).
 */
#ifndef CORU_FS_H
#define CORU_FS_H

#include "coru.h"

void coru_fs_push_stat(lua_State *L, const uv_stat_t *s);
int coru_fs_argerr(lua_State *L, int i, const char *fn, const char *msg);
const char *coru_fs_checkpath(lua_State *L, int i, const char *fn);
int coru_fs_typeerr(lua_State *L, int i, const char *fn, const char *want);
/* The callback may stand in place of trailing optional arguments: moved
 * to the slot after the npos positional ones, which is returned. */
int coru_fs_cbslot(lua_State *L, int npos);
extern long coru_fs_live_reqs;          /* requests allocated and not freed (coru._fs_live_requests) */
#define READ_FILE_MAX ((size_t)0x7ffffefe)   /* the longest LuaJIT string: reads are bounded by it */

#endif
