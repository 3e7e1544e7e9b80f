/*
 * dmp_diffs.c - lists of diffs: the vector operations, common prefix and
 * suffix, the accessors (diff_xIndex, diff_levenshtein, diff_text1/2) and
 * the surrogate repair (dmp_diff_fix_surrogates). Calls only dmp_text.c.
 * See dmp.h.
 */
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include "dmp.h"

typedef dmp_u16 u16;

/* ------------------------------------------------------------ vectors */

void dmp_diffs_free(dmp_diffs *d) {
  for (size_t i = 0; i < d->n; i++) free(d->v[i].s);
  free(d->v);
  memset(d, 0, sizeof *d);
}

static void reserve(dmp_diffs *d, size_t extra) {
  if (d->n + extra <= d->cap) return;
  size_t cap = d->cap ? d->cap * 2 : 8;
  while (cap < d->n + extra) cap *= 2;
  d->v = dmp_xrealloc(d->v, cap * sizeof *d->v);
  d->cap = cap;
}

void dmp_diffs_insert(dmp_diffs *d, size_t at, int op, const u16 *s, size_t n) {
  reserve(d, 1);
  memmove(d->v + at + 1, d->v + at, (d->n - at) * sizeof *d->v);
  d->v[at].op = op;
  d->v[at].s = dmp_dup(s, n);
  d->v[at].n = n;
  d->n++;
}

void dmp_diffs_push(dmp_diffs *d, int op, const u16 *s, size_t n) { dmp_diffs_insert(d, d->n, op, s, n); }

void dmp_diffs_erase(dmp_diffs *d, size_t at, size_t count) {
  for (size_t i = at; i < at + count; i++) free(d->v[i].s);
  memmove(d->v + at, d->v + at + count, (d->n - at - count) * sizeof *d->v);
  d->n -= count;
}

void dmp_diff_set(dmp_diff *x, const u16 *s, size_t n) {
  u16 *p = dmp_dup(s, n);
  free(x->s);
  x->s = p;
  x->n = n;
}

/* Move every diff of src into d at position at; src ends empty. */
void dmp_diffs_insert_all(dmp_diffs *d, size_t at, dmp_diffs *src) {
  reserve(d, src->n);
  memmove(d->v + at + src->n, d->v + at, (d->n - at) * sizeof *d->v);
  if (src->n) memcpy(d->v + at, src->v, src->n * sizeof *d->v);
  d->n += src->n;
  free(src->v);
  memset(src, 0, sizeof *src);
}

void dmp_diffs_copy(const dmp_diffs *from, dmp_diffs *to) {
  reserve(to, from->n);
  for (size_t i = 0; i < from->n; i++) dmp_diffs_push(to, from->v[i].op, from->v[i].s, from->v[i].n);
}

/* ---------------------------------------------------- prefix, suffix */

size_t dmp_common_prefix(const u16 *a, size_t na, const u16 *b, size_t nb) {
  size_t n = na < nb ? na : nb, i = 0;
#ifdef __SSE2__
  for (; i + 8 <= n; i += 8) {  /* eight units at a time */
    unsigned ne = 0xFFFFu ^ (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi16(_mm_loadu_si128((const __m128i *)(a + i)),
                                                                        _mm_loadu_si128((const __m128i *)(b + i))));
    if (ne) return i + (unsigned)__builtin_ctz(ne) / 2;
  }
#endif
  while (i < n && a[i] == b[i]) i++;
  return i;
}

size_t dmp_common_suffix(const u16 *a, size_t na, const u16 *b, size_t nb) {
  size_t n = na < nb ? na : nb, i = 0;
#ifdef __SSE2__
  for (; i + 8 <= n; i += 8) {  /* the eight units ending i units from the end */
    unsigned ne = 0xFFFFu ^ (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi16(
                                _mm_loadu_si128((const __m128i *)(a + na - i - 8)),
                                _mm_loadu_si128((const __m128i *)(b + nb - i - 8))));
    if (ne) return i + (unsigned)__builtin_clz(ne << 16) / 2;
  }
#endif
  while (i < n && a[na - 1 - i] == b[nb - 1 - i]) i++;
  return i;
}

/* ------------------------------------------------- surrogate pairs whole */


typedef struct { int eq; dmp_ustr a, b; } fixitem;  /* eq: a is the text; else a = deleted, b = inserted */

void dmp_diff_fix_surrogates(dmp_diffs *d) {
  int split = 0;
  for (size_t i = 0; i < d->n && !split; i++)
    split = d->v[i].n && (dmp_is_lo(d->v[i].s[0]) || dmp_is_hi(d->v[i].s[d->v[i].n - 1]));
  if (!split) return;
  fixitem *it = dmp_xmalloc(d->n * sizeof *it);
  size_t ni = 0;
  for (size_t i = 0; i < d->n; i++) {
    dmp_diff *x = &d->v[i];
    if (x->op == DMP_EQUAL) {
      if (!x->n) continue;
      if (!ni || !it[ni - 1].eq) { memset(&it[ni], 0, sizeof *it); it[ni++].eq = 1; }
      dmp_ustr_add(&it[ni - 1].a, x->s, x->n);
    } else {
      if (!ni || it[ni - 1].eq) { memset(&it[ni], 0, sizeof *it); it[ni++].eq = 0; }
      dmp_ustr_add(x->op == DMP_DELETE ? &it[ni - 1].a : &it[ni - 1].b, x->s, x->n);
    }
  }
  dmp_ustr t = {0};
  for (size_t k = 0; k < ni; k++) {
    if (!it[k].eq) continue;
    dmp_ustr *e = &it[k].a;
    if (e->n && dmp_is_lo(e->p[0]) && k > 0) {
      dmp_ustr_add(&it[k - 1].a, e->p, 1);
      dmp_ustr_add(&it[k - 1].b, e->p, 1);
      memmove(e->p, e->p + 1, (e->n - 1) * sizeof *e->p);
      e->n--;
    }
    if (e->n && dmp_is_hi(e->p[e->n - 1]) && k + 1 < ni) {
      for (int w = 0; w < 2; w++) {
        dmp_ustr *g = w ? &it[k + 1].b : &it[k + 1].a;
        t.n = 0;
        dmp_ustr_add(&t, e->p + e->n - 1, 1);
        dmp_ustr_add(&t, g->p, g->n);
        g->n = 0;
        dmp_ustr_add(g, t.p, t.n);
      }
      e->n--;
    }
  }
  dmp_ustr_free(&t);
  /* Emit, merging the groups around equalities that emptied. */
  dmp_diffs out = {0};
  for (size_t k = 0; k < ni; k++) {
    if (it[k].eq) {
      if (it[k].a.n) dmp_diffs_push(&out, DMP_EQUAL, it[k].a.p, it[k].a.n);
      dmp_ustr_free(&it[k].a);
      continue;
    }
    size_t j = k;
    /* absorb following (empty equality, group) pairs */
    while (j + 2 < ni && it[j + 1].eq && !it[j + 1].a.n && !it[j + 2].eq) {
      dmp_ustr_add(&it[k].a, it[j + 2].a.p, it[j + 2].a.n);
      dmp_ustr_add(&it[k].b, it[j + 2].b.p, it[j + 2].b.n);
      dmp_ustr_free(&it[j + 1].a);
      dmp_ustr_free(&it[j + 2].a);
      dmp_ustr_free(&it[j + 2].b);
      j += 2;
    }
    if (it[k].a.n) dmp_diffs_push(&out, DMP_DELETE, it[k].a.p, it[k].a.n);
    if (it[k].b.n) dmp_diffs_push(&out, DMP_INSERT, it[k].b.p, it[k].b.n);
    dmp_ustr_free(&it[k].a);
    dmp_ustr_free(&it[k].b);
    k = j;
  }
  free(it);
  dmp_diffs_free(d);
  *d = out;
}

/* ------------------------------------------------------------ accessors */

int64_t dmp_diff_x_index(const dmp_diffs *d, int64_t loc) {
  int64_t chars1 = 0, chars2 = 0, last1 = 0, last2 = 0;
  size_t x;
  for (x = 0; x < d->n; x++) {
    if (d->v[x].op != DMP_INSERT) chars1 += (int64_t)d->v[x].n;
    if (d->v[x].op != DMP_DELETE) chars2 += (int64_t)d->v[x].n;
    if (chars1 > loc) break;
    last1 = chars1;
    last2 = chars2;
  }
  if (x != d->n && d->v[x].op == DMP_DELETE) return last2;
  return last2 + (loc - last1);
}

int64_t dmp_diff_levenshtein(const dmp_diffs *d) {
  int64_t lev = 0, ins = 0, del = 0;
  for (size_t x = 0; x < d->n; x++) {
    if (d->v[x].op == DMP_INSERT) ins += (int64_t)d->v[x].n;
    else if (d->v[x].op == DMP_DELETE) del += (int64_t)d->v[x].n;
    else {
      lev += ins > del ? ins : del;
      ins = del = 0;
    }
  }
  return lev + (ins > del ? ins : del);
}

void dmp_diff_text1(const dmp_diffs *d, dmp_ustr *out) {
  for (size_t x = 0; x < d->n; x++)
    if (d->v[x].op != DMP_INSERT) dmp_ustr_add(out, d->v[x].s, d->v[x].n);
}

void dmp_diff_text2(const dmp_diffs *d, dmp_ustr *out) {
  for (size_t x = 0; x < d->n; x++)
    if (d->v[x].op != DMP_DELETE) dmp_ustr_add(out, d->v[x].s, d->v[x].n);
}
