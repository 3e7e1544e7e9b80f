/*
 * dmp_text.c - the bottom layer of the diff-match-patch core: allocation,
 * options, strings, UTF-8 <-> UTF-16 and substring search. It calls no other
 * dmp file. See dmp.h.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include "dmp.h"

static void dmp_oom(void) {
  fputs("coru.dmp: out of memory\n", stderr);
  abort();
}

void *dmp_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) dmp_oom();
  return p;
}

void *dmp_xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p) dmp_oom();
  return p;
}

dmp_u16 *dmp_dup(const dmp_u16 *s, size_t n) {
  dmp_u16 *p = dmp_xmalloc(n * sizeof *p);
  if (n) memcpy(p, s, n * sizeof *p);
  return p;
}

void dmp_opts_default(dmp_opts *o) {
  o->diff_timeout = 1.0;
  o->diff_edit_cost = 4;
  o->match_threshold = 0.5;
  o->match_distance = 1000;
  o->patch_delete_threshold = 0.5;
  o->patch_margin = 4;
  o->match_maxbits = 32;
  o->index_min = 65536;
}

double dmp_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}

/* ------------------------------------------------------------ strings */

void dmp_ustr_free(dmp_ustr *s) { free(s->p); memset(s, 0, sizeof *s); }
void dmp_bstr_free(dmp_bstr *s) { free(s->p); memset(s, 0, sizeof *s); }

void dmp_ustr_add(dmp_ustr *s, const dmp_u16 *p, size_t n) {
  if (s->n + n > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    while (cap < s->n + n) cap *= 2;
    s->p = dmp_xrealloc(s->p, cap * sizeof *s->p);
    s->cap = cap;
  }
  if (n) memcpy(s->p + s->n, p, n * sizeof *p);
  s->n += n;
}

void dmp_bstr_add(dmp_bstr *s, const char *p, size_t n) {
  if (s->n + n + 1 > s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    while (cap < s->n + n + 1) cap *= 2;
    s->p = dmp_xrealloc(s->p, cap);
    s->cap = cap;
  }
  if (n) memcpy(s->p + s->n, p, n);
  s->n += n;
  s->p[s->n] = 0;
}

int dmp_utf8_to_u16(const char *str, size_t n, dmp_ustr *out, size_t *bad) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, need = out->n + n;
  if (need > out->cap || !out->p) {
    out->p = dmp_xrealloc(out->p, (need ? need : 1) * sizeof *out->p);
    out->cap = need ? need : 1;
  }
  dmp_u16 *o = out->p + out->n;
  while (i < n) {
#ifdef __SSE2__
    if (i + 16 <= n) {  /* sixteen ASCII bytes at once, or the ASCII ones before the first other */
      __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
      unsigned hi = (unsigned)_mm_movemask_epi8(v);
      __m128i z = _mm_setzero_si128();
      _mm_storeu_si128((__m128i *)o, _mm_unpacklo_epi8(v, z));
      _mm_storeu_si128((__m128i *)(o + 8), _mm_unpackhi_epi8(v, z));
      unsigned k = hi ? (unsigned)__builtin_ctz(hi) : 16;
      o += k;
      i += k;
      if (k == 16) continue;
    }
#endif
    if (i + 8 <= n) {  /* eight ASCII bytes at once */
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!(w & 0x8080808080808080ull)) {
        for (int k = 0; k < 8; k++) o[k] = s[i + k];
        o += 8;
        i += 8;
        continue;
      }
    }
    unsigned c = s[i];
    if (c < 0x80) { *o++ = (dmp_u16)c; i++; continue; }
    if (c >= 0xC2 && c <= 0xDF && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {  /* the common two-byte form */
      *o++ = (dmp_u16)(((c & 0x1F) << 6) | (s[i + 1] & 0x3F));
      i += 2;
      continue;
    }
    unsigned cp, len, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else goto fail;
    if (i + len > n) goto fail;
    for (unsigned k = 1; k < len; k++) {
      unsigned cc = s[i + k];
      if ((cc & 0xC0) != 0x80) goto fail;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto fail;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      *o++ = (dmp_u16)(0xD800 | (cp >> 10));
      *o++ = (dmp_u16)(0xDC00 | (cp & 0x3FF));
    } else {
      *o++ = (dmp_u16)cp;
    }
    i += len;
  }
  out->n = (size_t)(o - out->p);
  return 0;
fail:
  if (bad) *bad = i;
  return -1;
}

int dmp_utf8_check(const char *str, size_t n, size_t *bad) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
#ifdef __SSE2__
    if (i + 16 <= n) {  /* the ASCII bytes among the next sixteen, at once */
      unsigned hi = (unsigned)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(s + i)));
      i += hi ? (unsigned)__builtin_ctz(hi) : 16;
      if (!hi) continue;
    }
#endif
    if (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!(w & 0x8080808080808080ull)) { i += 8; continue; }
    }
    unsigned c = s[i], cp, len, min;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xC2 && c <= 0xDF && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) { i += 2; continue; }  /* two bytes */
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else break;
    if (i + len > n) break;
    unsigned k;
    for (k = 1; k < len && (s[i + k] & 0xC0) == 0x80; k++) cp = (cp << 6) | (s[i + k] & 0x3F);
    if (k < len || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) break;
    i += len;
  }
  if (i < n) {
    if (bad) *bad = i;
    return -1;
  }
  return 0;
}

void dmp_u16_to_utf8(const dmp_u16 *s, size_t n, dmp_bstr *out) {
  if (out->n + 3 * n + 1 > out->cap) {
    out->cap = out->n + 3 * n + 1;
    out->p = dmp_xrealloc(out->p, out->cap);
  }
  unsigned char *o = (unsigned char *)out->p + out->n;
  size_t i = 0;
  while (i < n) {
#ifdef __SSE2__
    if (i + 8 <= n) {  /* the ASCII units among the next eight, at once (room: 3 bytes a unit) */
      __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
      unsigned hi = (unsigned)_mm_movemask_epi8(_mm_cmpgt_epi16(_mm_add_epi16(v, _mm_set1_epi16((short)0x8000)),
                                                                _mm_set1_epi16((short)(0x8000 + 0x7F - 0x10000))));
      _mm_storel_epi64((__m128i *)o, _mm_packus_epi16(v, v));
      unsigned k = hi ? (unsigned)__builtin_ctz(hi) / 2 : 8;
      o += k;
      i += k;
      if (k == 8) continue;
    }
#endif
    unsigned c = s[i++];
    if (c < 0x80) { *o++ = (unsigned char)c; continue; }
    if (c < 0x800) {
      *o++ = (unsigned char)(0xC0 | (c >> 6));
      *o++ = (unsigned char)(0x80 | (c & 0x3F));
      continue;
    }
    if (c >= 0xD800 && c <= 0xDBFF && i < n && s[i] >= 0xDC00 && s[i] <= 0xDFFF) {
      unsigned cp = 0x10000 + ((c - 0xD800) << 10) + (s[i] - 0xDC00);
      i++;
      *o++ = (unsigned char)(0xF0 | (cp >> 18));
      *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
      *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
      *o++ = (unsigned char)(0x80 | (cp & 0x3F));
      continue;
    }
    if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD;  /* a lone surrogate */
    *o++ = (unsigned char)(0xE0 | (c >> 12));
    *o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    *o++ = (unsigned char)(0x80 | (c & 0x3F));
  }
  out->n = (size_t)((char *)o - out->p);
  out->p[out->n] = 0;
}

/* ------------------------------------------------------------- search */

/* Byte search with glibc's memmem (linear, two-way); a hit at an odd byte
 * offset is not a unit boundary and the search goes on one byte later. */
static int64_t find_memmem(const dmp_u16 *h, size_t n, const dmp_u16 *nd, size_t m, size_t from) {
  const char *base = (const char *)h;
  const char *p = base + 2 * from, *end = base + 2 * n;
  while (p < end) {
    const char *q = memmem(p, (size_t)(end - p), nd, 2 * m);
    if (!q) return -1;
    size_t off = (size_t)(q - base);
    if (!(off & 1)) return (int64_t)(off / 2);
    p = q + 1;
  }
  return -1;
}

/* Candidates are the positions whose first and last units match the
 * needle's (eight at a time with SSE2), each verified with memcmp. A text
 * that makes too many candidates fail goes on with memmem, which stays
 * linear. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

/* Verifies the candidates of mask (two bits a unit, from unit i): the
 * first match, or -1; -3 when the budget of failures ran out, with *at
 * where the search goes on. */
static inline int64_t verify(const dmp_u16 *h, const dmp_u16 *nd, size_t m, size_t i, unsigned mask, size_t *budget,
                             size_t *at) {
  while (mask) {
    unsigned bit = (unsigned)__builtin_ctz(mask);
    size_t c = i + bit / 2;
    if (!memcmp(h + c + 1, nd + 1, (m - 2) * sizeof *nd)) return (int64_t)c;
    if (!--*budget) { *at = c + 1; return -3; }
    mask &= ~(3u << bit);
  }
  return -1;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* Sixteen candidates at a time where the CPU has AVX2. Returns -1 (none),
 * or the position, or -2 with *at where the scalar search goes on. */
__attribute__((target("avx2"))) static int64_t find_avx2(const dmp_u16 *h, size_t n, const dmp_u16 *nd, size_t m,
                                                          size_t *at, size_t stop, size_t *budget) {
  size_t i = *at;
  __m256i vf = _mm256_set1_epi16((short)nd[0]), vl = _mm256_set1_epi16((short)nd[m - 1]);
  for (; i + 16 <= stop; i += 16) {
    __m256i a = _mm256_loadu_si256((const __m256i *)(h + i));
    __m256i b = _mm256_loadu_si256((const __m256i *)(h + i + m - 1));
    unsigned mask = (unsigned)_mm256_movemask_epi8(_mm256_and_si256(_mm256_cmpeq_epi16(a, vf), _mm256_cmpeq_epi16(b, vl)));
    int64_t r = verify(h, nd, m, i, mask, budget, at);
    if (r != -1) return r;
  }
  (void)n;
  *at = i;
  return -2;
}
static int have_avx2(void) {
  static int v = -1;
  if (v < 0) v = __builtin_cpu_supports("avx2") ? 1 : 0;
  return v;
}
#endif

int64_t dmp_find(const dmp_u16 *h, size_t n, const dmp_u16 *nd, size_t m, int64_t from) {
  if (from < 0) from = 0;
  if ((uint64_t)from > n) from = (int64_t)n;
  if (m == 0) return from;
  if (m > n - (size_t)from) return -1;
  dmp_u16 first = nd[0], last = nd[m - 1];
  size_t i = (size_t)from, stop = n - m + 1;  /* candidate starts: [from, stop) */
  if (m == 1) {
    for (; i < stop; i++) if (h[i] == first) return (int64_t)i;
    return -1;
  }
  size_t budget = 64 + (stop - i) / 8;  /* failed verifications before memmem takes over */
#if defined(__x86_64__) && defined(__GNUC__)
  if (stop - i >= 64 && have_avx2()) {
    int64_t r = find_avx2(h, n, nd, m, &i, stop, &budget);
    if (r >= 0 || r == -1) return r;
    if (r == -3) return find_memmem(h, n, nd, m, i);
  }
#endif
#ifdef __SSE2__
  __m128i vf = _mm_set1_epi16((short)first), vl = _mm_set1_epi16((short)last);
  for (; i + 8 <= stop; i += 8) {
    __m128i a = _mm_loadu_si128((const __m128i *)(h + i));
    __m128i b = _mm_loadu_si128((const __m128i *)(h + i + m - 1));
    unsigned mask = (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi16(a, vf), _mm_cmpeq_epi16(b, vl)));
    int64_t r = verify(h, nd, m, i, mask, &budget, &i);
    if (r == -3) return find_memmem(h, n, nd, m, i);
    if (r != -1) return r;
  }
#endif
  for (; i < stop; i++) {
    if (h[i] != first || h[i + m - 1] != last) continue;
    if (!memcmp(h + i + 1, nd + 1, (m - 2) * sizeof *nd)) return (int64_t)i;
    if (!--budget) return find_memmem(h, n, nd, m, i + 1);
  }
  return -1;
}

/* The same filter backwards (the reference's lastIndexOf is naive too: no
 * fallback is needed to stay within its cost). */
int64_t dmp_rfind(const dmp_u16 *h, size_t n, const dmp_u16 *nd, size_t m, int64_t from) {
  if (m > n) return -1;
  int64_t i = (int64_t)(n - m);
  if (from < i) i = from;
  if (i < 0) i = 0;  /* lastIndexOf clamps a negative position to 0 */
  if (m == 0) return i;
  dmp_u16 first = nd[0], last = nd[m - 1];
#ifdef __SSE2__
  __m128i vf = _mm_set1_epi16((short)first), vl = _mm_set1_epi16((short)last);
  for (; i >= 7; i -= 8) {  /* candidates i-7 .. i */
    __m128i a = _mm_loadu_si128((const __m128i *)(h + i - 7));
    __m128i b = _mm_loadu_si128((const __m128i *)(h + i - 7 + m - 1));
    unsigned mask = (unsigned)_mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi16(a, vf), _mm_cmpeq_epi16(b, vl)));
    while (mask) {
      unsigned bit = 31u - (unsigned)__builtin_clz(mask);  /* the higher byte of the highest lane */
      int64_t c = i - 7 + (int64_t)(bit / 2);
      if (!memcmp(h + c, nd, m * sizeof *nd)) return c;
      mask &= ~(3u << (bit - 1));
    }
  }
#endif
  for (; i >= 0; i--)
    if (h[i] == first && h[i + (int64_t)m - 1] == last && !memcmp(h + i, nd, m * sizeof *nd)) return i;
  return -1;
}

/* ------------------------------------------------------- UTF-8 walking */

int dmp_utf8_units(const char *str, size_t n, size_t *at, uint64_t k) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = *at;
  int rc = 0;
  while (k) {
#ifdef __SSE2__
    if (k >= 16 && i + 16 <= n) {  /* the ASCII bytes among the next sixteen, at once */
      unsigned hi = (unsigned)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(s + i)));
      unsigned a = hi ? (unsigned)__builtin_ctz(hi) : 16;
      i += a;
      k -= a;
      if (!hi) continue;
    }
#endif
    if (i >= n) { rc = 1; break; }
    unsigned c = s[i], cp, len, min;
    if (c < 0x80) { i++; k--; continue; }
    if (c >= 0xC2 && c <= 0xDF && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) { i += 2; k--; continue; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else { rc = -2; break; }
    if (i + len > n) { rc = -2; break; }
    unsigned q;
    for (q = 1; q < len && (s[i + q] & 0xC0) == 0x80; q++) cp = (cp << 6) | (s[i + q] & 0x3F);
    if (q < len || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) { rc = -2; break; }
    if (len == 4 && k < 2) { rc = -1; break; }
    i += len;
    k -= len == 4 ? 2 : 1;
  }
  *at = i;
  return rc;
}
