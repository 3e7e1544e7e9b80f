/*
 * dmp_patch.c - patch lists and patch_make of diff-match-patch (hunks, their
 * context grown while the pattern is not unique), ported from the reference
 * (npm diff-match-patch 1.0.5) over UTF-16 code units.
 *
 * Where the reference rebuilds the postpatch text for every hunk, this port
 * works on a view of two segments (dmp_seg.h): the pre-patch text is a
 * prefix of text2 followed by a suffix of text1. The results are the
 * reference's; the cost is linear. Calls dmp_match.c, dmp_diff*.c and
 * dmp_text.c.
 */
#include <stdlib.h>
#include <string.h>
#include "dmp_seg.h"

typedef dmp_u16 u16;
typedef dmp_seg2 seg2;
static const u16 EMPTY[1];  /* an empty text may come as NULL */

/* -------------------------------------------------------------- patches */

void dmp_patches_free(dmp_patches *p) {
  for (size_t i = 0; i < p->n; i++) dmp_diffs_free(&p->v[i].diffs);
  free(p->v);
  memset(p, 0, sizeof *p);
}

dmp_patch *dmp_patches_add(dmp_patches *p) {
  if (p->n == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 8;
    p->v = dmp_xrealloc(p->v, p->cap * sizeof *p->v);
  }
  dmp_patch *x = &p->v[p->n++];
  memset(x, 0, sizeof *x);
  return x;
}

void dmp_patches_copy(const dmp_patches *from, dmp_patches *to) {
  for (size_t i = 0; i < from->n; i++) {
    dmp_patch *p = dmp_patches_add(to);
    dmp_diffs_copy(&from->v[i].diffs, &p->diffs);
    p->start1 = from->v[i].start1;
    p->start2 = from->v[i].start2;
    p->length1 = from->v[i].length1;
    p->length2 = from->v[i].length2;
  }
}


/* A 4-gram index of a large text, sampled at every fourth position:
 * patch_addContext_ asks, for every hunk, whether its pattern occurs twice
 * in the whole pre-patch text, which the reference answers with indexOf and
 * lastIndexOf over the full text. An occurrence at c of a pattern of 7
 * units or more holds a sampled 4-gram at offset k = (4 - c % 4) % 4. */
typedef struct { const u16 *x; size_t n; uint32_t *cnt, *pos; unsigned bits; } qindex;

static uint32_t qhash(const u16 *p, unsigned bits) {
  uint64_t k;
  memcpy(&k, p, sizeof k);
  return (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

static void qindex_build(qindex *q, const u16 *x, size_t n) {
  memset(q, 0, sizeof *q);
  q->x = x;
  q->n = n;
  if (n < 4 || n > 0xFFFFFFF0u) return;
  size_t np = (n - 3 + 3) / 4;  /* sampled positions 0, 4, 8, ... <= n - 4 */
  q->bits = 8;
  while (q->bits < 24 && ((size_t)1 << q->bits) < np / 2) q->bits++;
  size_t B = (size_t)1 << q->bits;
  q->cnt = dmp_xmalloc((B + 1) * sizeof *q->cnt);
  memset(q->cnt, 0, (B + 1) * sizeof *q->cnt);
  q->pos = dmp_xmalloc(np * sizeof *q->pos);
  uint32_t *h = dmp_xmalloc(np * sizeof *h);
  for (size_t j = 0; j < np; j++) q->cnt[(h[j] = qhash(x + 4 * j, q->bits)) + 1]++;
  for (size_t b = 0; b < B; b++) q->cnt[b + 1] += q->cnt[b];
  uint32_t *cur = dmp_xmalloc(B * sizeof *cur);
  memcpy(cur, q->cnt, B * sizeof *cur);
  for (size_t j = 0; j < np; j++) q->pos[cur[h[j]]++] = (uint32_t)(4 * j);
  free(cur);
  free(h);
}

static void qindex_free(qindex *q) { free(q->cnt); free(q->pos); }

/* Occurrences (up to limit) of pat (m >= 7) inside x[lo, hi). */
static int qindex_count(const qindex *q, const u16 *pat, size_t m, size_t lo, size_t hi, int limit) {
  if (!q->pos || hi <= lo || hi - lo < m) return 0;
  int found = 0;
  for (size_t r = 0; r < 4; r++) {
    /* the occurrences at c with (c + r) % 4 == 0: any offset k = r + 4i
     * finds them; take the one with the smallest bucket */
    size_t k = r, best = (size_t)-1;
    for (size_t kk = r; kk + 4 <= m && kk < 64; kk += 4) {
      uint32_t hh = qhash(pat + kk, q->bits);
      size_t sz = q->cnt[hh + 1] - q->cnt[hh];
      if (sz < best) { best = sz; k = kk; }
    }
    uint32_t h = qhash(pat + k, q->bits);
    const u16 *x = q->x;
    for (uint32_t j = q->cnt[h]; j < q->cnt[h + 1]; j++) {
      size_t p = q->pos[j];
      if (p < k + lo) continue;
      size_t c = p - k;
      if (c + m > hi) break;
      if (x[c] != pat[0] || x[c + m - 1] != pat[m - 1]) continue;
      if (!memcmp(x + c, pat, m * sizeof *pat) && ++found >= limit) return found;
    }
  }
  return found;
}

/* Does pat occur at two positions or more of t = i2.x[0, na) + i1.x[off, ...)? */
static int occurs_twice(const seg2 *t, const qindex *i2, const qindex *i1, const u16 *pat, size_t m) {
  if (m < 7 || !i1 || !i1->pos) {
    int64_t first = dmp_ts_find(t, pat, m, 0);
    return first != -1 && dmp_ts_find(t, pat, m, first + 1) != -1;
  }
  int n = qindex_count(i2, pat, m, 0, t->na, 2);
  if (n < 2) n += qindex_count(i1, pat, m, (size_t)(t->b - i1->x), i1->n, 2 - n);
  if (n < 2 && t->na && t->nb) {  /* across the seam: starts in [na - m + 1, na) */
    dmp_ustr w = {0};
    size_t lo = t->na >= m - 1 ? t->na - (m - 1) : 0;
    dmp_ts_sub(t, (int64_t)lo, (int64_t)(t->na + m - 1), &w);
    for (int64_t f = dmp_find(w.p, w.n, pat, m, 0); f != -1 && lo + (size_t)f < t->na && n < 2;
         f = dmp_find(w.p, w.n, pat, m, f + 1))
      n++;
    dmp_ustr_free(&w);
  }
  return n >= 2;
}

/* patch_addContext_ over the pre-patch text t (i2, i1: indexes of its two
 * texts, or NULL). */
static void add_context(const dmp_opts *o, dmp_patch *p, const seg2 *t, const qindex *i2, const qindex *i1) {
  int64_t n = (int64_t)dmp_ts_len(t);
  if (n == 0) return;
  int64_t margin = o->patch_margin, maxbits = o->match_maxbits;
  dmp_ustr pat = {0};
  dmp_ts_sub(t, p->start2, p->start2 + p->length1, &pat);
  int64_t padding = 0;
  /* while (indexOf != lastIndexOf && pattern.length < ...) */
  while ((int64_t)pat.n < maxbits - margin - margin && occurs_twice(t, i2, i1, pat.p ? pat.p : EMPTY, pat.n)) {
    padding += margin;
    pat.n = 0;
    dmp_ts_sub(t, p->start2 - padding, p->start2 + p->length1 + padding, &pat);
  }
  dmp_ustr_free(&pat);
  padding += margin;
  /* Never cut a surrogate pair at either edge (the reference does, and its
   * patch_toText then throws). */
  int64_t ps = p->start2 - padding;
  if (ps < 0) ps = 0;
  if (ps > n) ps = n;
  if (ps > 0 && ps < p->start2 && dmp_is_lo(dmp_ts_at(t, (size_t)ps)) && dmp_is_hi(dmp_ts_at(t, (size_t)ps - 1))) ps--;
  dmp_ustr prefix = {0}, suffix = {0};
  dmp_ts_sub(t, ps, p->start2, &prefix);
  int64_t se = p->start2 + p->length1 + padding, ss = p->start2 + p->length1;
  if (se > n) se = n;
  if (se < n && se > ss && se > 0 && dmp_is_hi(dmp_ts_at(t, (size_t)se - 1)) && dmp_is_lo(dmp_ts_at(t, (size_t)se))) se++;
  dmp_ts_sub(t, ss, se, &suffix);
  if (prefix.n) dmp_diffs_insert(&p->diffs, 0, DMP_EQUAL, prefix.p, prefix.n);
  if (suffix.n) dmp_diffs_push(&p->diffs, DMP_EQUAL, suffix.p, suffix.n);
  p->start1 -= (int64_t)prefix.n;
  p->start2 -= (int64_t)prefix.n;
  p->length1 += (int64_t)(prefix.n + suffix.n);
  p->length2 += (int64_t)(prefix.n + suffix.n);
  dmp_ustr_free(&prefix);
  dmp_ustr_free(&suffix);
}

void dmp_patch_make(const dmp_opts *o, const u16 *t1, size_t n1, const dmp_diffs *d, dmp_patches *out) {
  if (d->n == 0) return;
  if (!t1) t1 = EMPTY;
  dmp_ustr t2 = {0};
  dmp_diff_text2(d, &t2);
  /* prepatch text = t2[0, P) + t1[Q, n1) */
  seg2 pre = {t2.p ? t2.p : EMPTY, 0, t1, n1};
  qindex i1, i2;
  int big = n1 + t2.n >= o->index_min;
  if (big) {
    qindex_build(&i1, t1, n1);
    qindex_build(&i2, pre.a, t2.n);
  }
  dmp_patch *p = NULL;
  size_t pn = 0;  /* patchDiffLength */
  int64_t c1 = 0, c2 = 0, abs1 = 0;
  int64_t margin2 = 2 * (int64_t)o->patch_margin;
  for (size_t x = 0; x < d->n; x++) {
    const dmp_diff *df = &d->v[x];
    if (!p) p = dmp_patches_add(out), pn = 0;
    if (!pn && df->op != DMP_EQUAL) {
      p->start1 = c1;
      p->start2 = c2;
    }
    if (df->op == DMP_INSERT) {
      dmp_diffs_push(&p->diffs, df->op, df->s, df->n);
      pn++;
      p->length2 += (int64_t)df->n;
    } else if (df->op == DMP_DELETE) {
      p->length1 += (int64_t)df->n;
      dmp_diffs_push(&p->diffs, df->op, df->s, df->n);
      pn++;
    } else {
      if ((int64_t)df->n <= margin2 && pn && d->n != x + 1) {
        dmp_diffs_push(&p->diffs, df->op, df->s, df->n);
        pn++;
        p->length1 += (int64_t)df->n;
        p->length2 += (int64_t)df->n;
      } else if ((int64_t)df->n >= margin2 && pn) {
        add_context(o, p, &pre, big ? &i2 : NULL, big ? &i1 : NULL);
        p = NULL;
        /* prepatch_text = postpatch_text = t2[0, c2) + t1[abs1, n1) */
        pre.na = (size_t)c2;
        pre.b = t1 + abs1;
        pre.nb = n1 - (size_t)abs1;
        c1 = c2;
      }
    }
    if (df->op != DMP_INSERT) { c1 += (int64_t)df->n; abs1 += (int64_t)df->n; }
    if (df->op != DMP_DELETE) c2 += (int64_t)df->n;
  }
  if (p && pn) add_context(o, p, &pre, big ? &i2 : NULL, big ? &i1 : NULL);
  else if (p) out->n--, dmp_diffs_free(&out->v[out->n].diffs);
  if (big) {
    qindex_free(&i1);
    qindex_free(&i2);
  }
  dmp_ustr_free(&t2);
}

void dmp_patch_make_texts(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, dmp_patches *out) {
  if (!t1) t1 = EMPTY;
  if (!t2) t2 = EMPTY;
  dmp_diffs d = {0};
  dmp_diff_main_raw(o, t1, n1, t2, n2, 1, &d);
  if (d.n > 2) {
    dmp_diff_cleanup_semantic(o, &d);
    dmp_diff_cleanup_efficiency(o, &d);
  }
  dmp_diff_fix_surrogates(&d);
  dmp_patch_make(o, t1, n1, &d, out);
  dmp_diffs_free(&d);
}

/* ------------------------------------------------------ padding, splitting */
