/*
 * json_dec.c - coru.json's decoder: JSON text (RFC 8259, UTF-8) -> Lua
 * values, built on the Lua stack as the text is read. A string without
 * escapes is pushed straight from the text; one with escapes is unescaped
 * into the codec's buffer. Numbers of at most 19 significant digits and a
 * small exponent are exact without strtod (Clinger's fast path). A
 * container's first values wait on the stack, so that its table is created
 * with its size; a large one is flushed into its table as it grows.
 * The text ends with a NUL (a Lua string's own): the scanners stop on it.
 */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
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

typedef struct dec {
  lua_State *L;
  json_codec *c;
  const char *s, *end, *p;   /* the text, its end, the reading position */
  int depth;
  char msg[200];
} dec;

#define PENDING 32   /* stack slots a container's values may wait in */

static int fail_at(dec *d, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(dec *d, const char *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = snprintf(d->msg, sizeof d->msg, "json.decode: ");
  k += vsnprintf(d->msg + k, sizeof d->msg - (size_t)k, fmt, ap);
  va_end(ap);
  if (k < (int)sizeof d->msg)
    snprintf(d->msg + k, sizeof d->msg - (size_t)k, " at character %zu", (size_t)(at - d->s) + 1);
  return -1;
}

static int lit(const char *p, const char *w) {
  while (*w && *p == *w) p++, w++;
  return !*w;
}

/* what the text holds at p, for "Expected X but found Y" */
static const char *found(dec *d, const char *p) {
  if (p >= d->end) return "end of text";
  switch (*p) {
  case '{': return "'{'";
  case '}': return "'}'";
  case '[': return "'['";
  case ']': return "']'";
  case ',': return "','";
  case ':': return "':'";
  case '"': return "string";
  case 't': return lit(p, "true") ? "true" : "invalid token";
  case 'f': return lit(p, "false") ? "false" : "invalid token";
  case 'n': return lit(p, "null") ? "null" : "invalid token";
  default: return *p == '-' || (*p >= '0' && *p <= '9') ? "number" : "invalid token";
  }
}

static int expected(dec *d, const char *p, const char *what) {
  return fail_at(d, p, "Expected %s but found %s", what, found(d, p));
}

static const char *ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
  return p;
}

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* --------------------------------------------------------------- numbers */

static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* strtod on the token [a, b) (a copy, with the locale's decimal point) */
static double slow_number(dec *d, const char *a, const char *b) {
  size_t n = (size_t)(b - a);
  char tmp[64], *t = tmp;
  if (n >= sizeof tmp) {
    d->c->len = 0;
    if (json_reserve(d->c, n + 1)) return NAN;
    t = d->c->buf;
  }
  memcpy(t, a, n);
  t[n] = 0;
  const char *dp = localeconv()->decimal_point;
  if (dp && dp[0] && !dp[1] && dp[0] != '.') {
    char *q = memchr(t, '.', n);
    if (q) *q = dp[0];
  }
  return strtod(t, NULL);
}

static int number(dec *d) {
  const char *start = d->p, *p = start;
  int neg = *p == '-', nd = 0, trunc = 0, exp10 = 0;
  uint64_t m = 0;
  if (neg) p++;
  if (*p == '0') {
    p++;
    if (is_digit(*p)) return fail_at(d, start, "Expected value but found invalid number (a leading zero)");
  } else if (is_digit(*p)) {
    for (; is_digit(*p); p++) {
      if (nd < 19) { m = m * 10 + (uint64_t)(*p - '0'); nd++; }
      else { trunc |= *p != '0'; exp10++; }
    }
  } else {
    return fail_at(d, start, "Expected value but found invalid number");
  }
  if (*p == '.') {
    p++;
    if (!is_digit(*p)) return fail_at(d, start, "Expected value but found invalid number");
    for (; is_digit(*p); p++) {
      if (nd < 19) { m = m * 10 + (uint64_t)(*p - '0'); exp10--; if (m) nd++; }
      else trunc |= *p != '0';
    }
  }
  if (*p == 'e' || *p == 'E') {
    p++;
    int eneg = *p == '-', e = 0;
    if (*p == '-' || *p == '+') p++;
    if (!is_digit(*p)) return fail_at(d, start, "Expected value but found invalid number");
    for (; is_digit(*p); p++)
      if (e < 100000) e = e * 10 + (*p - '0');
    exp10 += eneg ? -e : e;
  }
  double v;
  if (m == 0 && !trunc) v = 0;
  else if (!trunc && m <= (1ull << 53) && exp10 >= -22 && exp10 <= 22)
    v = exp10 < 0 ? (double)m / p10[-exp10] : (double)m * p10[exp10];
  else {
    v = slow_number(d, neg ? start + 1 : start, p);
    if (isnan(v)) return fail_at(d, start, "out of memory");
    if (isinf(v)) return fail_at(d, start, "Expected value but found number out of range");
  }
  lua_pushnumber(d->L, neg ? -v : v);
  d->p = p;
  return 0;
}

/* --------------------------------------------------------------- strings */

/* 1: a byte that ends the plain part of a string ('"', '\\', controls) */
static const unsigned char stop[256] = {
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
  ['"'] = 1, ['\\'] = 1,
};

/* The first byte at or after p that ends a plain run: sixteen at a time
 * while sixteen are left before end, then byte by byte (the text's NUL
 * stops the table's loop). */
static const char *skip_plain(const char *p, const char *end) {
#ifdef __SSE2__
  const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), ctl = _mm_set1_epi8(0x1F);
  while (end - p >= 16) {
    __m128i x = _mm_loadu_si128((const __m128i *)p);
    __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                             _mm_cmpeq_epi8(_mm_max_epu8(x, ctl), ctl));
    unsigned bits = (unsigned)_mm_movemask_epi8(m);
    if (bits) return p + __builtin_ctz(bits);
    p += 16;
  }
#else
  (void)end;
#endif
  while (!stop[(unsigned char)*p]) p++;
  return p;
}

static int hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    char ch = p[i];
    int x = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
          : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
    if (x < 0) return -1;
    v = v << 4 | x;
  }
  return v;
}

static int bad_char(dec *d, const char *p) {
  if (p >= d->end) return fail_at(d, p, "Expected closing quote but found end of text");
  return fail_at(d, p, "Expected string character but found control character 0x%02X (unescaped)",
                 (unsigned char)*p);
}

/* The escapes from p (at a backslash) to the closing quote, into the
 * buffer: the text left is room enough (no escape is shorter than what it
 * stands for). */
static int unescape(dec *d, const char *start, const char *p) {
  json_codec *c = d->c;
  c->len = 0;
  if (json_reserve(c, (size_t)(d->end - start))) return fail_at(d, start, "out of memory");
  char *o = c->buf;
  memcpy(o, start, (size_t)(p - start));
  o += p - start;
  for (;;) {
    const char *run = p;
    p = skip_plain(p, d->end);
    memcpy(o, run, (size_t)(p - run));
    o += p - run;
    if (*p == '"') break;
    if (*p != '\\') return bad_char(d, p);
    char ch = p[1];
    switch (ch) {
    case '"': case '\\': case '/': *o++ = ch; break;
    case 'b': *o++ = '\b'; break;
    case 'f': *o++ = '\f'; break;
    case 'n': *o++ = '\n'; break;
    case 'r': *o++ = '\r'; break;
    case 't': *o++ = '\t'; break;
    case 'u': {
      int cp = hex4(p + 2);
      if (cp < 0) return fail_at(d, p, "Expected 4 hex digits after \\u but found %s", found(d, p + 2));
      if (cp >= 0xD800 && cp <= 0xDFFF) {
        int lo = cp <= 0xDBFF && p[6] == '\\' && p[7] == 'u' ? hex4(p + 8) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF)
          return fail_at(d, p, "Expected a surrogate pair but found lone surrogate \\u%04X", (unsigned)cp);
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
      }
      if (cp < 0x80) *o++ = (char)cp;
      else if (cp < 0x800) { *o++ = (char)(0xC0 | cp >> 6); *o++ = (char)(0x80 | (cp & 0x3F)); }
      else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12); *o++ = (char)(0x80 | (cp >> 6 & 0x3F)); *o++ = (char)(0x80 | (cp & 0x3F));
      } else {
        *o++ = (char)(0xF0 | cp >> 18); *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F)); *o++ = (char)(0x80 | (cp & 0x3F));
      }
      p += 4;
      break;
    }
    default:
      return fail_at(d, p, "Expected escape sequence but found invalid escape");
    }
    p += 2;
  }
  lua_pushlstring(d->L, c->buf, (size_t)(o - c->buf));
  d->p = p + 1;
  return 0;
}

static int string(dec *d) {
  const char *start = d->p + 1, *p = skip_plain(start, d->end);
  if (*p == '\\') return unescape(d, start, p);
  if (*p != '"') return bad_char(d, p);
  lua_pushlstring(d->L, start, (size_t)(p - start));
  d->p = p + 1;
  return 0;
}

/* ------------------------------------------------------------ containers */

static int value(dec *d);

/* A container keeps 8 free slots above its stack's top: a successful
 * check before each pending value leaves enough for a flush after it. */
static int enter(dec *d) {
  if (++d->depth > d->c->max_depth || !lua_checkstack(d->L, 8))
    return fail_at(d, d->p, "Found too many nested data structures (%d)", d->depth);
  return 0;
}

/* The n values waiting above base into a new table (base + 1 after). */
static void flush_array(lua_State *L, int base, int n, int hint) {
  lua_createtable(L, hint, 0);
  lua_insert(L, base + 1);
  for (int i = n; i >= 1; i--) lua_rawseti(L, base + 1, i);
}

/* The n key/value pairs waiting above base, in order (the last of equal
 * keys wins), into a new table at base + 1. */
static void flush_object(lua_State *L, int base, int n, int hint) {
  lua_createtable(L, 0, hint);
  lua_insert(L, base + 1);
  for (int i = 0; i < n; i++) {
    lua_pushvalue(L, base + 2 + 2 * i);
    lua_pushvalue(L, base + 3 + 2 * i);
    lua_rawset(L, base + 1);
  }
  lua_settop(L, base + 1);
}

static int array(dec *d) {
  lua_State *L = d->L;
  if (enter(d)) return -1;
  int base = lua_gettop(L), n = 0, made = 0;
  const char *p = ws(d->p + 1);
  if (*p != ']') {
    for (;;) {
      if (!made && (n == PENDING || !lua_checkstack(L, 10))) { flush_array(L, base, n, 2 * n); made = 1; }
      d->p = p;
      if (value(d)) return -1;
      n++;
      if (made) lua_rawseti(L, base + 1, n);
      p = ws(d->p);
      if (*p == ',') { p = ws(p + 1); continue; }
      if (*p == ']') break;
      return expected(d, p, "comma or array end");
    }
  }
  if (!made) flush_array(L, base, n, n);
  lua_pushvalue(L, lua_upvalueindex(JSON_UV_ARRAY_MT));
  lua_setmetatable(L, base + 1);
  d->p = p + 1;
  d->depth--;
  return 0;
}

static int object(dec *d) {
  lua_State *L = d->L;
  if (enter(d)) return -1;
  int base = lua_gettop(L), n = 0, made = 0;
  const char *p = ws(d->p + 1);
  if (*p != '}') {
    for (;;) {
      if (*p != '"') return expected(d, p, "object key string");
      if (!made && (2 * n == PENDING || !lua_checkstack(L, 12))) { flush_object(L, base, n, 2 * n); made = 1; }
      d->p = p;
      if (string(d)) return -1;
      p = ws(d->p);
      if (*p != ':') return expected(d, p, "colon");
      d->p = ws(p + 1);
      if (value(d)) return -1;
      n++;
      if (made) lua_rawset(L, base + 1);
      p = ws(d->p);
      if (*p == ',') { p = ws(p + 1); continue; }
      if (*p == '}') break;
      return expected(d, p, "comma or object end");
    }
  }
  if (!made) flush_object(L, base, n, n);
  d->p = p + 1;
  d->depth--;
  return 0;
}

static int value(dec *d) {
  const char *p = d->p;
  switch (*p) {
  case '"': return string(d);
  case '{': return object(d);
  case '[': return array(d);
  case 't':
    if (!lit(p, "true")) break;
    lua_pushboolean(d->L, 1);
    d->p = p + 4;
    return 0;
  case 'f':
    if (!lit(p, "false")) break;
    lua_pushboolean(d->L, 0);
    d->p = p + 5;
    return 0;
  case 'n':
    if (!lit(p, "null")) break;
    lua_pushlightuserdata(d->L, NULL);
    d->p = p + 4;
    return 0;
  case '-': case '0': case '1': case '2': case '3': case '4':
  case '5': case '6': case '7': case '8': case '9':
    return number(d);
  }
  return expected(d, p, "value");
}

int coru_json_decode(lua_State *L, json_codec *c, const char *s, size_t n) {
  dec d = {L, c, s, s + n, s, 0, {0}};
  int top = lua_gettop(L), r;
  size_t bad;
  if (dmp_utf8_check(s, n, &bad)) {
    r = fail_at(&d, s + bad, "Expected UTF-8 text but found invalid byte 0x%02X", (unsigned char)s[bad]);
  } else {
    d.p = ws(s);
    r = value(&d);
    if (!r) {
      const char *p = ws(d.p);
      if (p != d.end) r = expected(&d, p, "the end");
    }
  }
  json_trim(c);
  if (r) {
    lua_settop(L, top);
    lua_pushnil(L);
    lua_pushstring(L, d.msg);
    return 2;
  }
  return 1;
}
