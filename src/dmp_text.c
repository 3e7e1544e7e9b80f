/*
 * dmp_text.c - the bottom layer of the diff-match-patch core: allocation,
 * options, strings and substring search. It calls no other dmp file. See
 * dmp.h.
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
