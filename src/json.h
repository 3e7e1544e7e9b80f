/*
 * json.h - coru.json, the runtime's JSON codec (RFC 8259, UTF-8 only),
 * shared by json_enc.c (Lua value -> text), json_dec.c (text -> Lua value)
 * and json_lua.c (the module: codecs, marks, registration). docs/json.md
 * is the reference.
 *
 * A codec is a full userdata holding its options and one growing buffer
 * reused across its calls (text out, unescaped strings in). Neither
 * direction runs Lua code (no metamethod, no __tostring), so a codec is
 * never re-entered while it writes its buffer. The Lua functions keep the
 * codec and the two mark metatables as upvalues: a mark test is a pointer
 * compare.
 */
#ifndef CORU_JSON_H
#define CORU_JSON_H
#include <stddef.h>
#include <lua.h>

#define JSON_MAX_DEPTH 1000          /* the default, and the largest a codec takes */
#define JSON_BUF_KEEP (64 * 1024)    /* a buffer grown past this is freed after the call */

/* upvalues of encode/decode/is_array/array/object */
enum { JSON_UV_CODEC = 1, JSON_UV_ARRAY_MT = 2, JSON_UV_OBJECT_MT = 3 };

typedef struct json_codec {
  int max_depth;        /* nesting levels accepted both ways (1..JSON_MAX_DEPTH) */
  int sparse_object;    /* an excessively sparse array: 0 refused, 1 written as an object */
  char *buf;            /* from the Lua state's allocator (a state never closed,
                           such as coru.work's pooled ones, leaks nothing malloc'd) */
  size_t len, cap;
  lua_Alloc alloc;
  void *ud;
} json_codec;

/* Room for n more bytes after c->len: 0, or -1 when out of memory. */
static inline int json_reserve(json_codec *c, size_t n) {
  if (c->cap - c->len >= n) return 0;
  size_t need = c->len + n, cap = c->cap ? c->cap : 256;
  if (need < n) return -1;
  while (cap < need) {
    if (cap > (size_t)-1 / 2) return -1;
    cap *= 2;
  }
  char *p = c->alloc(c->ud, c->buf, c->cap, cap);
  if (!p) return -1;
  c->buf = p;
  c->cap = cap;
  return 0;
}
/* After a call: a buffer grown past JSON_BUF_KEEP goes back to the system. */
static inline void json_trim(json_codec *c) {
  c->len = 0;
  if (c->cap > JSON_BUF_KEEP) { c->alloc(c->ud, c->buf, c->cap, 0); c->buf = NULL; c->cap = 0; }
}

/* Encode the value at idx (the function's upvalues as above): pushes the
 * text and returns 1, or pushes nil and the message and returns 2. */
int coru_json_encode(lua_State *L, json_codec *c, int idx);
/* Decode the string s (n bytes): pushes the value and returns 1, or pushes
 * nil and the message and returns 2. */
int coru_json_decode(lua_State *L, json_codec *c, const char *s, size_t n);

/* The module table of coru.json in L (new marks for this Lua state). */
void coru_json_push(lua_State *L);
/* package.preload["coru.json"] in another Lua state (coru.work's pooled
 * states, threads): the codec without the runtime. */
void coru_json_preload(lua_State *S);

#endif
