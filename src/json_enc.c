/*
 * json_enc.c - coru.json's encoder: a Lua value -> JSON text in the
 * codec's buffer (json.h). Integers below 2^53 are formatted here (no
 * printf); other numbers as the shortest %.15g..%.17g that reads back
 * exactly. Strings are checked as UTF-8 (dmp_utf8_check) and escaped as
 * JSON.stringify escapes them ('/' is not).
 */
#include <locale.h>
#include <stdarg.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <lauxlib.h>
#include "dmp.h"
#include "json.h"

typedef struct enc {
  lua_State *L;
  json_codec *c;
  char msg[160];
} enc;

static int fail(enc *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(enc *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = snprintf(e->msg, sizeof e->msg, "json.encode: ");
  vsnprintf(e->msg + k, sizeof e->msg - (size_t)k, fmt, ap);
  va_end(ap);
  return -1;
}

static int put(enc *e, const char *s, size_t n) {
  json_codec *c = e->c;
  if (json_reserve(c, n)) return fail(e, "out of memory");
  memcpy(c->buf + c->len, s, n);
  c->len += n;
  return 0;
}

/* 0: copied as is; 'u': \u00XX; else the letter after the backslash */
static const char esc[256] = {
  'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
  'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
  0, 0, '"', ['\\'] = '\\',
};

/* The index of the first byte from i that needs an escape (n if none);
 * *high collects the bytes' top bits (any non-ASCII byte). */
static size_t skip_plain(const char *s, size_t i, size_t n, unsigned *high) {
#ifdef __SSE2__
  const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1F);
  while (n - i >= 16) {
    __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
    __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                             _mm_cmpeq_epi8(_mm_max_epu8(x, ctl), ctl));
    unsigned bits = (unsigned)_mm_movemask_epi8(m);
    if (bits) {
      *high |= (unsigned)_mm_movemask_epi8(x) & (bits ^ (bits - 1));   /* the bytes before it */
      return i + (size_t)__builtin_ctz(bits);
    }
    *high |= (unsigned)_mm_movemask_epi8(x);
    i += 16;
  }
#endif
  for (; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    *high |= ch & 0x80;
    if (esc[ch]) break;
  }
  return i;
}

/* Written in segments of at most 4096 bytes, each with room reserved for
 * its worst case (six bytes a byte): no check per byte. */
static int put_string(enc *e, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  json_codec *c = e->c;
  unsigned high = 0;
  if (json_reserve(c, 1)) return fail(e, "out of memory");
  c->buf[c->len++] = '"';
  for (size_t seg = 0; seg < n; seg += 4096) {
    size_t end = n - seg > 4096 ? seg + 4096 : n;
    if (json_reserve(c, (end - seg) * 6 + 1)) return fail(e, "out of memory");
    char *o = c->buf + c->len;
    for (size_t i = seg;;) {
      size_t j = skip_plain(s, i, end, &high);
      memcpy(o, s + i, j - i);
      o += j - i;
      if (j == end) break;
      unsigned char ch = (unsigned char)s[j];
      char x = esc[ch];
      *o++ = '\\';
      *o++ = x;
      if (x == 'u') { *o++ = '0'; *o++ = '0'; *o++ = hex[ch >> 4]; *o++ = hex[ch & 15]; }
      i = j + 1;
    }
    c->len = (size_t)(o - c->buf);
  }
  if (put(e, "\"", 1)) return -1;
  size_t bad;
  if (high && dmp_utf8_check(s, n, &bad))
    return fail(e, "invalid UTF-8 in a string at byte %zu", bad + 1);
  return 0;
}

/* v formatted with printf's %.<prec>g and read back; the locale's decimal
 * point becomes '.' */
static int put_double(enc *e, double v) {
  char tmp[40];
  const char *dp = localeconv()->decimal_point;
  char point = dp && dp[0] && !dp[1] ? dp[0] : '.';
  int n = 0;
  if (v == floor(v) && fabs(v) < 1e21) {
    n = snprintf(tmp, sizeof tmp, "%.0f", v);   /* every digit of an integral value */
  } else {
    for (int prec = 15; prec <= 17; prec++) {
      n = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
      if (prec == 17 || strtod(tmp, NULL) == v) break;
    }
    if (point != '.') {
      char *p = memchr(tmp, point, (size_t)n);
      if (p) *p = '.';
    }
  }
  return put(e, tmp, (size_t)n);
}

static int put_number(enc *e, double v) {
  if (isnan(v) || isinf(v)) return fail(e, "Cannot serialise number: must not be NaN or Inf");
  if (fabs(v) < 9007199254740992.0) {
    int64_t i = (int64_t)v;
    if ((double)i == v) {
      char tmp[24], *p = tmp + sizeof tmp;
      uint64_t u = i < 0 ? (uint64_t)-i : (uint64_t)i;
      do { *--p = (char)('0' + u % 10); u /= 10; } while (u);
      if (i < 0 || (i == 0 && signbit(v))) *--p = '-';
      return put(e, p, (size_t)(tmp + sizeof tmp - p));
    }
  }
  return put_double(e, v);
}

static int put_value(enc *e, int idx, int depth);

static int put_array(enc *e, int idx, int depth, size_t max) {
  lua_State *L = e->L;
  if (put(e, "[", 1)) return -1;
  for (size_t i = 1; i <= max; i++) {
    if (i > 1 && put(e, ",", 1)) return -1;
    lua_rawgeti(L, idx, (int)i);
    if (put_value(e, lua_gettop(L), depth)) return -1;
    lua_pop(L, 1);
  }
  return put(e, "]", 1);
}

static int put_object(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  int first = 1;
  if (put(e, "{", 1)) return -1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (!first && put(e, ",", 1)) return -1;
    first = 0;
    int kt = lua_type(L, -2);
    if (kt == LUA_TSTRING) {
      size_t n;
      const char *k = lua_tolstring(L, -2, &n);
      if (put_string(e, k, n)) return -1;
    } else if (kt == LUA_TNUMBER) {   /* written as a string, never converted in place (lua_next) */
      if (put(e, "\"", 1) || put_number(e, lua_tonumber(L, -2)) || put(e, "\"", 1)) return -1;
    } else {
      return fail(e, "Cannot serialise table: table key must be a number or string");
    }
    if (put(e, ":", 1) || put_value(e, lua_gettop(L), depth)) return -1;
    lua_pop(L, 1);
  }
  return put(e, "}", 1);
}

/* cjson's rule: a table whose keys are all positive integers is an array
 * (holes written as null) unless it is excessively sparse (its largest key
 * above 10 and above twice its count); an empty one is {} unless marked
 * as an array; the object mark makes any table an object. */
static int put_table(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  json_codec *c = e->c;
  if (depth > c->max_depth || !lua_checkstack(L, 4))
    return fail(e, "excessive nesting (more than %d levels: a cycle?)", c->max_depth);
  int marked = 0;   /* 1 array, 2 object */
  if (lua_getmetatable(L, idx)) {
    if (lua_rawequal(L, -1, lua_upvalueindex(JSON_UV_ARRAY_MT))) marked = 1;
    else if (lua_rawequal(L, -1, lua_upvalueindex(JSON_UV_OBJECT_MT))) marked = 2;
    lua_pop(L, 1);
  }
  if (marked == 2) return put_object(e, idx, depth);
  size_t count = 0;
  double max = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    double k;
    if (lua_type(L, -1) != LUA_TNUMBER || (k = lua_tonumber(L, -1)) < 1 || k != floor(k)) {
      lua_pop(L, 1);
      return put_object(e, idx, depth);
    }
    if (k > max) max = k;
    count++;
  }
  if (count == 0) return put(e, marked == 1 ? "[]" : "{}", 2);
  if (max > 10 && max > 2.0 * (double)count) {
    if (c->sparse_object) return put_object(e, idx, depth);
    return fail(e, "Cannot serialise table: excessively sparse array");
  }
  return put_array(e, idx, depth, (size_t)max);
}

static int put_value(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    return put_string(e, s, n);
  }
  case LUA_TNUMBER: return put_number(e, lua_tonumber(L, idx));
  case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? put(e, "true", 4) : put(e, "false", 5);
  case LUA_TNIL: return put(e, "null", 4);
  case LUA_TTABLE: return put_table(e, idx, depth + 1);
  case LUA_TLIGHTUSERDATA:
    if (!lua_touserdata(L, idx)) return put(e, "null", 4);
    /* fall through */
  default:
    return fail(e, "Cannot serialise %s: type not supported", luaL_typename(L, idx));
  }
}

int coru_json_encode(lua_State *L, json_codec *c, int idx) {
  enc e = {L, c, {0}};
  int top = lua_gettop(L);
  c->len = 0;
  int r = put_value(&e, idx, 0);
  lua_settop(L, top);
  if (r) {
    json_trim(c);
    lua_pushnil(L);
    lua_pushstring(L, e.msg);
    return 2;
  }
  lua_pushlstring(L, c->buf, c->len);
  json_trim(c);
  return 1;
}
