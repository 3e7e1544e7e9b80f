/*
 * fs.h - what fs.c lends the fs watch handles (fswatch.c).
 */
#ifndef CORU_FS_H
#define CORU_FS_H

#include "coru.h"

void coru_fs_push_stat(lua_State *L, const uv_stat_t *s);
int coru_fs_argerr(lua_State *L, int i, const char *fn, const char *msg);
const char *coru_fs_checkpath(lua_State *L, int i, const char *fn);
void coru_open_fswatch(lua_State *L);   /* fs_event, fs_poll: types and flat names */

#endif
