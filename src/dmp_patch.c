/*
 * dmp_patch.c - match (bitap) and patch (make, context, padding, split,
 * apply) of diff-match-patch, ported from the reference (npm
 * diff-match-patch 1.0.5) over UTF-16 code units.
 *
 * Where the reference rebuilds a whole string for every hunk (patch_make's
 * postpatch text, patch_apply's text), this port works on a view of two
 * segments: patch_make's pre-patch text is a prefix of text2 followed by a
 * suffix of text1, and patch_apply's text is a gap buffer whose gap sits at
 * the last edit. The results are the reference's; the cost is linear.
 */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "dmp.h"

typedef dmp_u16 u16;
static const u16 EMPTY[1];  /* an empty text may come as NULL */

/* ------------------------------------------------------ two-segment text */

typedef struct { const u16 *a; size_t na; const u16 *b; size_t nb; } seg2;

static size_t ts_len(const seg2 *t) { return t->na + t->nb; }
static u16 ts_at(const seg2 *t, size_t i) { return i < t->na ? t->a[i] : t->b[i - t->na]; }

/* text.substring(s, e) as JavaScript clamps and orders it, appended to out. */
static void ts_sub(const seg2 *t, int64_t s, int64_t e, dmp_ustr *out) {
  int64_t n = (int64_t)ts_len(t);
  if (s < 0) s = 0;
  if (e < 0) e = 0;
  if (s > n) s = n;
  if (e > n) e = n;
  if (s > e) { int64_t x = s; s = e; e = x; }
  size_t S = (size_t)s, E = (size_t)e;
  if (S < t->na) dmp_ustr_add(out, t->a + S, (E < t->na ? E : t->na) - S);
  if (E > t->na) {
    size_t bs = S > t->na ? S - t->na : 0;
    dmp_ustr_add(out, t->b + bs, E - t->na - bs);
  }
}

/* Does [pos, pos + m) hold pat? (pos + m <= len) */
static int ts_eq(const seg2 *t, size_t pos, const u16 *pat, size_t m) {
  if (!m) return 1;
  if (pos + m <= t->na) return !m || !memcmp(t->a + pos, pat, m * sizeof *pat);
  if (pos >= t->na) return !memcmp(t->b + (pos - t->na), pat, m * sizeof *pat);
  size_t k = t->na - pos;
  return !memcmp(t->a + pos, pat, k * sizeof *pat) && !memcmp(t->b, pat + k, (m - k) * sizeof *pat);
}

/* indexOf(pat, from) */
static int64_t ts_find(const seg2 *t, const u16 *pat, size_t m, int64_t from) {
  size_t n = ts_len(t);
  if (from < 0) from = 0;
  if ((size_t)from > n) from = (int64_t)n;
  if (m == 0) return from;
  if (!t->nb) return dmp_find(t->a, t->na, pat, m, from);
  if (!t->na) return dmp_find(t->b, t->nb, pat, m, from);
  size_t f = (size_t)from;
  if (f < t->na) {
    int64_t i = dmp_find(t->a, t->na, pat, m, from);
    if (i != -1) return i;
    /* occurrences across the seam start in [na - m + 1, na) */
    size_t lo = t->na >= m - 1 ? t->na - (m - 1) : 0;
    if (lo < f) lo = f;
    for (size_t p = lo; p < t->na && p + m <= n; p++)
      if (ts_at(t, p) == pat[0] && ts_eq(t, p, pat, m)) return (int64_t)p;
  }
  size_t bf = f > t->na ? f - t->na : 0;
  int64_t i = dmp_find(t->b, t->nb, pat, m, (int64_t)bf);
  return i == -1 ? -1 : i + (int64_t)t->na;
}

/* lastIndexOf(pat, from) */
static int64_t ts_rfind(const seg2 *t, const u16 *pat, size_t m, int64_t from) {
  size_t n = ts_len(t);
  if (m > n) return -1;
  int64_t top = (int64_t)(n - m);
  if (from < top) top = from;
  if (top < 0) top = 0;
  if (m == 0) return top;
  for (int64_t p = top; p >= 0; p--) {
    if ((size_t)p >= t->na) {  /* inside b: jump with the plain search */
      int64_t i = dmp_rfind(t->b, t->nb, pat, m, p - (int64_t)t->na);
      if (i != -1) return i + (int64_t)t->na;
      p = (int64_t)t->na;
      continue;
    }
    if ((size_t)p + m <= t->na) return dmp_rfind(t->a, t->na, pat, m, p);
    if (ts_at(t, (size_t)p) == pat[0] && ts_eq(t, (size_t)p, pat, m)) return p;
  }
  return -1;
}

/* ---------------------------------------------------------------- match */

/* match_alphabet_: the pattern's units (at most 32) and their masks, in a
 * small open-addressed table; a unit not in the pattern has mask 0. */
typedef struct { uint32_t mask[128]; dmp_u16 key[128]; unsigned char used[128]; } alphabet;

static unsigned alpha_slot(const alphabet *a, dmp_u16 c) {
  unsigned k = ((unsigned)c * 40503u >> 7) & 127;
  while (a->used[k] && a->key[k] != c) k = (k + 1) & 127;
  return k;
}

static uint32_t alpha_get(const alphabet *a, dmp_u16 c) {
  unsigned k = alpha_slot(a, c);
  return a->used[k] ? a->mask[k] : 0;
}

typedef struct {
  alphabet alpha;
  uint32_t *rd, *last;  /* bitap rows */
  size_t cap;
} matcher;

static void matcher_free(matcher *mt) {
  free(mt->rd);
  free(mt->last);
}

static double bitap_score(const dmp_opts *o, double e, int64_t x, int64_t loc, size_t m) {
  double accuracy = e / (double)m;
  double proximity = (double)llabs(loc - x);
  if (!o->match_distance) return proximity ? 1.0 : accuracy;
  return accuracy + proximity / o->match_distance;
}

static int64_t bitap(const dmp_opts *o, matcher *mt, const seg2 *t, const u16 *pat, size_t m, int64_t loc) {
  size_t n = ts_len(t);
  alphabet *s = &mt->alpha;
  memset(s->used, 0, sizeof s->used);
  for (size_t i = 0; i < m; i++) {
    unsigned k = alpha_slot(s, pat[i]);
    if (!s->used[k]) { s->used[k] = 1; s->key[k] = pat[i]; s->mask[k] = 0; }
    s->mask[k] |= (uint32_t)1 << (m - i - 1);
  }
  double score_threshold = o->match_threshold;
  int64_t best_loc = ts_find(t, pat, m, loc);
  if (best_loc != -1) {
    score_threshold = fmin(bitap_score(o, 0, best_loc, loc, m), score_threshold);
    best_loc = ts_rfind(t, pat, m, loc + (int64_t)m);
    if (best_loc != -1) score_threshold = fmin(bitap_score(o, 0, best_loc, loc, m), score_threshold);
  }
  uint32_t matchmask = (uint32_t)1 << (m - 1);
  best_loc = -1;
  int64_t bin_min, bin_mid, bin_max = (int64_t)(m + n);
  /* The rows hold only the first pass's window [base, finish + 1]: every
   * later window lies inside it. R(x, j) is x[j] of the reference. */
  uint32_t *rd = NULL, *last_rd = NULL;
  int64_t base = 0;
#define R(x, j) ((x)[(j) - base])
  int64_t last_size = 0;  /* entries of last_rd that exist (the others read as 0) */
  for (size_t d = 0; d < m; d++) {
    bin_min = 0;
    bin_mid = bin_max;
    while (bin_min < bin_mid) {
      if (bitap_score(o, (double)d, loc + bin_mid, loc, m) <= score_threshold) bin_min = bin_mid;
      else bin_max = bin_mid;
      bin_mid = (bin_max - bin_min) / 2 + bin_min;
    }
    bin_max = bin_mid;
    int64_t start = loc - bin_mid + 1 > 1 ? loc - bin_mid + 1 : 1;
    int64_t finish = (loc + bin_mid < (int64_t)n ? loc + bin_mid : (int64_t)n) + (int64_t)m;
    /* rd = Array(finish + 2): every entry undefined (0) but the ones set
     * below. A pass reads and writes [start, finish + 1], where start may
     * drop by up to m during the pass (start = 2 * loc - best_loc), and each
     * later window lies inside the first one: the rows cover [base, finish
     * + 1] of the first pass, and each pass zeroes that much. */
    if (d == 0) {
      base = start - (int64_t)m > 1 ? start - (int64_t)m : 1;
      if (base > finish + 1) base = finish + 1;
      size_t need = (size_t)(finish + 2 - base);
      if (need > mt->cap) {
        mt->rd = dmp_xrealloc(mt->rd, need * sizeof *mt->rd);
        mt->last = dmp_xrealloc(mt->last, need * sizeof *mt->last);
        mt->cap = need;
      }
      rd = mt->rd;
      last_rd = mt->last;
    }
    memset(rd, 0, (size_t)(finish + 2 - base) * sizeof *rd);
    R(rd, finish + 1) = ((uint32_t)1 << d) - 1;
    for (int64_t j = finish; j >= start; j--) {
      uint32_t charMatch = (size_t)(j - 1) < n ? alpha_get(s, ts_at(t, (size_t)(j - 1))) : 0;
      if (d == 0) {
        R(rd, j) = ((R(rd, j + 1) << 1) | 1) & charMatch;
      } else {
        uint32_t l1 = j + 1 < last_size ? R(last_rd, j + 1) : 0, l0 = j < last_size ? R(last_rd, j) : 0;
        R(rd, j) = (((R(rd, j + 1) << 1) | 1) & charMatch) | (((l1 | l0) << 1) | 1) | l1;
      }
      if (R(rd, j) & matchmask) {
        double score = bitap_score(o, (double)d, j - 1, loc, m);
        if (score <= score_threshold) {
          score_threshold = score;
          best_loc = j - 1;
          if (best_loc > loc) start = 2 * loc - best_loc > 1 ? 2 * loc - best_loc : 1;
          else break;
        }
      }
    }
    if (bitap_score(o, (double)(d + 1), loc, loc, m) > score_threshold) break;
    uint32_t *tmp = last_rd;
    last_rd = rd;
    rd = tmp;
    last_size = finish + 2;
  }
#undef R
  return best_loc;
}

/* match_main over a two-segment text; -2: the pattern is longer than Match_MaxBits. */
static int64_t match_main_ts(const dmp_opts *o, matcher *mt, const seg2 *t, const u16 *pat, size_t m, int64_t loc) {
  size_t n = ts_len(t);
  if (loc > (int64_t)n) loc = (int64_t)n;
  if (loc < 0) loc = 0;
  if (m == n && ts_eq(t, 0, pat, m)) return 0;
  if (!n) return -1;
  if ((size_t)loc + m <= n && ts_eq(t, (size_t)loc, pat, m)) return loc;
  if (m > (size_t)o->match_maxbits) return -2;
  return bitap(o, mt, t, pat, m, loc);
}

int64_t dmp_match_main(const dmp_opts *o, const u16 *text, size_t n, const u16 *pat, size_t m, int64_t loc) {
  matcher mt = {0};
  seg2 t = {text ? text : EMPTY, n, EMPTY, 0};
  int64_t r = match_main_ts(o, &mt, &t, pat, m, loc);
  matcher_free(&mt);
  return r;
}

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

static int is_hi(u16 c) { return c >= 0xD800 && c <= 0xDBFF; }
static int is_lo(u16 c) { return c >= 0xDC00 && c <= 0xDFFF; }

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
    int64_t first = ts_find(t, pat, m, 0);
    return first != -1 && ts_find(t, pat, m, first + 1) != -1;
  }
  int n = qindex_count(i2, pat, m, 0, t->na, 2);
  if (n < 2) n += qindex_count(i1, pat, m, (size_t)(t->b - i1->x), i1->n, 2 - n);
  if (n < 2 && t->na && t->nb) {  /* across the seam: starts in [na - m + 1, na) */
    dmp_ustr w = {0};
    size_t lo = t->na >= m - 1 ? t->na - (m - 1) : 0;
    ts_sub(t, (int64_t)lo, (int64_t)(t->na + m - 1), &w);
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
  int64_t n = (int64_t)ts_len(t);
  if (n == 0) return;
  int64_t margin = o->patch_margin, maxbits = o->match_maxbits;
  dmp_ustr pat = {0};
  ts_sub(t, p->start2, p->start2 + p->length1, &pat);
  int64_t padding = 0;
  /* while (indexOf != lastIndexOf && pattern.length < ...) */
  while ((int64_t)pat.n < maxbits - margin - margin && occurs_twice(t, i2, i1, pat.p ? pat.p : EMPTY, pat.n)) {
    padding += margin;
    pat.n = 0;
    ts_sub(t, p->start2 - padding, p->start2 + p->length1 + padding, &pat);
  }
  dmp_ustr_free(&pat);
  padding += margin;
  /* Never cut a surrogate pair at either edge (the reference does, and its
   * patch_toText then throws). */
  int64_t ps = p->start2 - padding;
  if (ps < 0) ps = 0;
  if (ps > n) ps = n;
  if (ps > 0 && ps < p->start2 && is_lo(ts_at(t, (size_t)ps)) && is_hi(ts_at(t, (size_t)ps - 1))) ps--;
  dmp_ustr prefix = {0}, suffix = {0};
  ts_sub(t, ps, p->start2, &prefix);
  int64_t se = p->start2 + p->length1 + padding, ss = p->start2 + p->length1;
  if (se > n) se = n;
  if (se < n && se > ss && se > 0 && is_hi(ts_at(t, (size_t)se - 1)) && is_lo(ts_at(t, (size_t)se))) se++;
  ts_sub(t, ss, se, &suffix);
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

static void patches_copy(const dmp_patches *from, dmp_patches *to) {
  for (size_t i = 0; i < from->n; i++) {
    dmp_patch *p = dmp_patches_add(to);
    dmp_diffs_copy(&from->v[i].diffs, &p->diffs);
    p->start1 = from->v[i].start1;
    p->start2 = from->v[i].start2;
    p->length1 = from->v[i].length1;
    p->length2 = from->v[i].length2;
  }
}

/* patch_addPadding: returns the padding length; pad gets the units 1..n. */
static size_t add_padding(const dmp_opts *o, dmp_patches *ps, u16 *pad) {
  size_t plen = (size_t)o->patch_margin;
  for (size_t x = 1; x <= plen; x++) pad[x - 1] = (u16)x;
  for (size_t x = 0; x < ps->n; x++) {
    ps->v[x].start1 += (int64_t)plen;
    ps->v[x].start2 += (int64_t)plen;
  }
  dmp_patch *p = &ps->v[0];
  dmp_diffs *d = &p->diffs;
  if (d->n == 0 || d->v[0].op != DMP_EQUAL) {
    dmp_diffs_insert(d, 0, DMP_EQUAL, pad, plen);
    p->start1 -= (int64_t)plen;
    p->start2 -= (int64_t)plen;
    p->length1 += (int64_t)plen;
    p->length2 += (int64_t)plen;
  } else if (plen > d->v[0].n) {
    size_t extra = plen - d->v[0].n;
    dmp_ustr t = {0};
    dmp_ustr_add(&t, pad + d->v[0].n, extra);
    dmp_ustr_add(&t, d->v[0].s, d->v[0].n);
    dmp_diff_set(&d->v[0], t.p, t.n);
    dmp_ustr_free(&t);
    p->start1 -= (int64_t)extra;
    p->start2 -= (int64_t)extra;
    p->length1 += (int64_t)extra;
    p->length2 += (int64_t)extra;
  }
  p = &ps->v[ps->n - 1];
  d = &p->diffs;
  if (d->n == 0 || d->v[d->n - 1].op != DMP_EQUAL) {
    dmp_diffs_push(d, DMP_EQUAL, pad, plen);
    p->length1 += (int64_t)plen;
    p->length2 += (int64_t)plen;
  } else if (plen > d->v[d->n - 1].n) {
    dmp_diff *last = &d->v[d->n - 1];
    size_t extra = plen - last->n;
    dmp_ustr t = {0};
    dmp_ustr_add(&t, last->s, last->n);
    dmp_ustr_add(&t, pad, extra);
    dmp_diff_set(last, t.p, t.n);
    dmp_ustr_free(&t);
    p->length1 += (int64_t)extra;
    p->length2 += (int64_t)extra;
  }
  return plen;
}

/* patch_splitMax: patches longer than Match_MaxBits become several. */
static void split_max(const dmp_opts *o, dmp_patches *ps) {
  int64_t size = o->match_maxbits, margin = o->patch_margin;
  dmp_patches out = {0};
  dmp_ustr pre = {0}, tmp = {0};
  for (size_t x = 0; x < ps->n; x++) {
    dmp_patch *big = &ps->v[x];
    if (big->length1 <= size) {
      dmp_patch *p = dmp_patches_add(&out);
      *p = *big;
      memset(&big->diffs, 0, sizeof big->diffs);
      continue;
    }
    int64_t start1 = big->start1, start2 = big->start2;
    pre.n = 0;
    size_t bi = 0;  /* bigpatch.diffs[0] is big->diffs.v[bi] */
    while (bi < big->diffs.n) {
      dmp_patch np = {0};
      int empty = 1;
      np.start1 = start1 - (int64_t)pre.n;
      np.start2 = start2 - (int64_t)pre.n;
      if (pre.n) {
        np.length1 = np.length2 = (int64_t)pre.n;
        dmp_diffs_push(&np.diffs, DMP_EQUAL, pre.p, pre.n);
      }
      while (bi < big->diffs.n && np.length1 < size - margin) {
        dmp_diff *bd = &big->diffs.v[bi];
        int type = bd->op;
        if (type == DMP_INSERT) {
          np.length2 += (int64_t)bd->n;
          start2 += (int64_t)bd->n;
          dmp_diffs_push(&np.diffs, bd->op, bd->s, bd->n);
          bi++;
          empty = 0;
        } else if (type == DMP_DELETE && np.diffs.n == 1 && np.diffs.v[0].op == DMP_EQUAL &&
                   (int64_t)bd->n > 2 * size) {
          np.length1 += (int64_t)bd->n;
          start1 += (int64_t)bd->n;
          empty = 0;
          dmp_diffs_push(&np.diffs, type, bd->s, bd->n);
          bi++;
        } else {
          int64_t k = size - np.length1 - margin;
          size_t tl = k < 0 ? 0 : ((size_t)k < bd->n ? (size_t)k : bd->n);
          np.length1 += (int64_t)tl;
          start1 += (int64_t)tl;
          if (type == DMP_EQUAL) {
            np.length2 += (int64_t)tl;
            start2 += (int64_t)tl;
          } else {
            empty = 0;
          }
          dmp_diffs_push(&np.diffs, type, bd->s, tl);
          if (tl == bd->n) bi++;
          else dmp_diff_set(bd, bd->s + tl, bd->n - tl);
        }
      }
      tmp.n = 0;
      dmp_diff_text2(&np.diffs, &tmp);
      size_t keep = tmp.n > (size_t)margin ? (size_t)margin : tmp.n;
      pre.n = 0;
      if (keep) dmp_ustr_add(&pre, tmp.p + tmp.n - keep, keep);
      /* postcontext = diff_text1(remaining).substring(0, margin) */
      tmp.n = 0;
      for (size_t j = bi; j < big->diffs.n && tmp.n < (size_t)margin; j++)
        if (big->diffs.v[j].op != DMP_INSERT) dmp_ustr_add(&tmp, big->diffs.v[j].s, big->diffs.v[j].n);
      size_t post = tmp.n > (size_t)margin ? (size_t)margin : tmp.n;
      if (post) {
        np.length1 += (int64_t)post;
        np.length2 += (int64_t)post;
        dmp_diffs *nd = &np.diffs;
        if (nd->n && nd->v[nd->n - 1].op == DMP_EQUAL) {
          dmp_diff *last = &nd->v[nd->n - 1];
          dmp_ustr t = {0};
          dmp_ustr_add(&t, last->s, last->n);
          dmp_ustr_add(&t, tmp.p, post);
          dmp_diff_set(last, t.p, t.n);
          dmp_ustr_free(&t);
        } else {
          dmp_diffs_push(nd, DMP_EQUAL, tmp.p, post);
        }
      }
      if (!empty) *dmp_patches_add(&out) = np;
      else dmp_diffs_free(&np.diffs);
    }
  }
  dmp_ustr_free(&pre);
  dmp_ustr_free(&tmp);
  dmp_patches_free(ps);
  *ps = out;
}

/* ---------------------------------------------------------------- apply */

typedef struct { u16 *p; size_t n, cap, g, gl; } gapbuf;  /* text = p[0, g) + p[g + gl, cap) */

static seg2 gb_view(const gapbuf *b) {
  seg2 t = {b->p, b->g, b->p + b->g + b->gl, b->n - b->g};
  return t;
}

static void gb_move(gapbuf *b, size_t pos) {
  if (pos < b->g) memmove(b->p + pos + b->gl, b->p + pos, (b->g - pos) * sizeof *b->p);
  else if (pos > b->g) memmove(b->p + b->g, b->p + b->g + b->gl, (pos - b->g) * sizeof *b->p);
  b->g = pos;
}

/* text = text.substring(0, pos) + ins + text.substring(pos + del) */
static void gb_replace(gapbuf *b, size_t pos, size_t del, const u16 *ins, size_t m) {
  gb_move(b, pos);
  b->gl += del;
  b->n -= del;
  if (b->gl < m) {
    size_t cap = b->cap * 2 > b->n + m + 1024 ? b->cap * 2 : b->n + m + 1024;
    u16 *np = dmp_xmalloc(cap * sizeof *np);
    size_t tail = b->n - b->g;
    if (b->g) memcpy(np, b->p, b->g * sizeof *np);
    if (tail) memcpy(np + cap - tail, b->p + b->g + b->gl, tail * sizeof *np);
    free(b->p);
    b->p = np;
    b->gl = cap - b->n;
    b->cap = cap;
  }
  if (m) memcpy(b->p + b->g, ins, m * sizeof *ins);
  b->g += m;
  b->gl -= m;
  b->n += m;
}

static size_t clampz(int64_t v, size_t n) { return v < 0 ? 0 : ((uint64_t)v > n ? n : (size_t)v); }

void dmp_patch_apply(const dmp_opts *o, const dmp_patches *in, const u16 *text, size_t n, dmp_ustr *out,
                     unsigned char **results, size_t *nresults) {
  dmp_patches ps = {0};
  patches_copy(in, &ps);  /* the reference's patch_deepCopy */
  dmp_patch_apply_consume(o, &ps, text, n, out, results, nresults);
}

void dmp_patch_apply_consume(const dmp_opts *o, dmp_patches *in, const u16 *text, size_t n, dmp_ustr *out,
                             unsigned char **results, size_t *nresults) {
  if (!text) text = EMPTY;
  *results = NULL;
  *nresults = 0;
  if (in->n == 0) {
    dmp_ustr_add(out, text, n);
    return;
  }
  dmp_patches ps = *in;
  memset(in, 0, sizeof *in);
  u16 pad[64];
  size_t plen = add_padding(o, &ps, pad);
  /* The gap starts at the front: hunks come in order, so it only moves forward. */
  gapbuf b = {0};
  b.cap = n + 2 * plen + 1024;
  b.p = dmp_xmalloc(b.cap * sizeof *b.p);
  b.n = n + 2 * plen;
  b.g = 0;
  b.gl = b.cap - b.n;
  memcpy(b.p + b.gl, pad, plen * sizeof *pad);
  if (n) memcpy(b.p + b.gl + plen, text, n * sizeof *text);
  memcpy(b.p + b.gl + plen + n, pad, plen * sizeof *pad);
  split_max(o, &ps);
  unsigned char *res = dmp_xmalloc(ps.n ? ps.n : 1);
  matcher mt = {0};
  dmp_ustr t1 = {0}, t2 = {0}, tt = {0};
  int64_t delta = 0, maxbits = o->match_maxbits;
  for (size_t x = 0; x < ps.n; x++) {
    dmp_patch *p = &ps.v[x];
    int64_t expected = p->start2 + delta;
    t1.n = 0;
    dmp_diff_text1(&p->diffs, &t1);
    int64_t n1 = (int64_t)t1.n, start_loc, end_loc = -1;
    seg2 v = gb_view(&b);
    if (n1 > maxbits) {
      start_loc = match_main_ts(o, &mt, &v, t1.p, (size_t)maxbits, expected);
      if (start_loc != -1) {
        end_loc = match_main_ts(o, &mt, &v, t1.p + n1 - maxbits, (size_t)maxbits, expected + n1 - maxbits);
        if (end_loc == -1 || start_loc >= end_loc) start_loc = -1;
      }
    } else {
      start_loc = match_main_ts(o, &mt, &v, t1.p, t1.n, expected);
    }
    if (start_loc == -1) {
      res[x] = 0;
      delta -= p->length2 - p->length1;
      continue;
    }
    res[x] = 1;
    delta = start_loc - expected;
    tt.n = 0;
    if (end_loc == -1) ts_sub(&v, start_loc, start_loc + n1, &tt);
    else ts_sub(&v, start_loc, end_loc + maxbits, &tt);
    if (tt.n == t1.n && (!t1.n || !memcmp(tt.p, t1.p, t1.n * sizeof *t1.p))) {
      t2.n = 0;
      dmp_diff_text2(&p->diffs, &t2);
      size_t at = clampz(start_loc, b.n), to = clampz(start_loc + n1, b.n);
      gb_replace(&b, at, to > at ? to - at : 0, t2.p, t2.n);
      continue;
    }
    dmp_diffs d = {0};
    dmp_diff_main_raw(o, t1.p, t1.n, tt.p, tt.n, 0, &d);
    if (n1 > maxbits && (double)dmp_diff_levenshtein(&d) / (double)n1 > o->patch_delete_threshold) {
      res[x] = 0;
    } else {
      dmp_diff_cleanup_semantic_lossless(o, &d);
      int64_t index1 = 0, index2 = 0;
      for (size_t y = 0; y < p->diffs.n; y++) {
        dmp_diff *mod = &p->diffs.v[y];
        if (mod->op != DMP_EQUAL) index2 = dmp_diff_x_index(&d, index1);
        if (mod->op == DMP_INSERT) {
          gb_replace(&b, clampz(start_loc + index2, b.n), 0, mod->s, mod->n);
        } else if (mod->op == DMP_DELETE) {
          size_t a = clampz(start_loc + index2, b.n);
          size_t e = clampz(start_loc + dmp_diff_x_index(&d, index1 + (int64_t)mod->n), b.n);
          if (e >= a) {
            gb_replace(&b, a, e - a, NULL, 0);
          } else {  /* substring(0, a) + substring(e): text[e, a) twice */
            seg2 w = gb_view(&b);
            t2.n = 0;
            ts_sub(&w, (int64_t)e, (int64_t)a, &t2);
            gb_replace(&b, a, 0, t2.p, t2.n);
          }
        }
        if (mod->op != DMP_DELETE) index1 += (int64_t)mod->n;
      }
    }
    dmp_diffs_free(&d);
  }
  seg2 v = gb_view(&b);
  ts_sub(&v, (int64_t)plen, (int64_t)b.n - (int64_t)plen, out);
  free(b.p);
  matcher_free(&mt);
  dmp_ustr_free(&t1);
  dmp_ustr_free(&t2);
  dmp_ustr_free(&tt);
  *results = res;
  *nresults = ps.n;
  dmp_patches_free(&ps);
}

/* ------------------------------------------- apply, every hunk exact, UTF-8 */

static int lone_end(const dmp_ustr *t) { return t->n && (is_lo(t->p[0]) || is_hi(t->p[t->n - 1])); }

int dmp_patch_apply_utf8(const dmp_opts *o, const dmp_patches *in, const char *text, size_t n, dmp_bstr *out,
                         size_t *skip, unsigned char **results, size_t *nresults) {
  if (!in->n) return -1;
  dmp_patches ps = {0};
  patches_copy(in, &ps);
  u16 pad[64];
  size_t plen = add_padding(o, &ps, pad);
  split_max(o, &ps);
  size_t sn = n + 2 * plen;  /* the padded text: the pad units are the bytes 1..plen */
  char *src = dmp_xmalloc(sn ? sn : 1);
  for (size_t k = 0; k < plen; k++) src[k] = src[plen + n + k] = (char)pad[k];
  if (n) memcpy(src + plen, text, n);
  unsigned char *res = dmp_xmalloc(ps.n ? ps.n : 1);
  dmp_bstr b1 = {0};
  size_t base = out->n;  /* out gets the padded text from here */
  dmp_ustr t = {0};
  size_t bi = 0;    /* the next byte of src not yet copied or replaced */
  int64_t ou = 0;   /* UTF-16 units of the text before it (o2's) */
  int rc = -1;
  for (size_t x = 0; x < ps.n; x++) {
    dmp_patch *p = &ps.v[x];
    /* delta stays 0 while every hunk is found where expected */
    int64_t expected = p->start2;
    t.n = 0;
    dmp_diff_text1(&p->diffs, &t);
    if (lone_end(&t) || expected < ou) goto done;
    size_t from = bi;
    int w = dmp_utf8_units(src, sn, &bi, (uint64_t)(expected - ou));
    if (w) { rc = w == -2 ? -2 : -1; goto done; }
    dmp_bstr_add(out, src + from, bi - from);
    ou = expected;
    /* match_main's exact test (and, past match_maxbits, the two ends and
     * the whole, which this implies); UTF-8 bytes are equal exactly when
     * the units are, and bytes equal to valid UTF-8 are valid */
    b1.n = 0;
    dmp_u16_to_utf8(t.p, t.n, &b1);
    if (b1.n > sn - bi || (b1.n && memcmp(src + bi, b1.p, b1.n))) goto done;
    bi += b1.n;
    t.n = 0;
    dmp_diff_text2(&p->diffs, &t);
    if (lone_end(&t)) goto done;
    dmp_u16_to_utf8(t.p, t.n, out);
    ou += (int64_t)t.n;
    res[x] = 1;
  }
  size_t from = bi;
  int w = dmp_utf8_units(src, sn, &bi, UINT64_MAX);  /* the rest: validated, copied */
  if (w != 1) { rc = w == -2 ? -2 : -1; goto done; }
  dmp_bstr_add(out, src + from, sn - from);
  /* text.substring(pad, length - pad): the pad bytes must still be there */
  size_t m = out->n - base;
  const char *q = out->p + base;
  if (m < 2 * plen) goto done;
  for (size_t k = 0; k < plen; k++)
    if ((unsigned char)q[k] != pad[k] || (unsigned char)q[m - plen + k] != pad[k]) goto done;
  *skip = plen;
  *results = res;
  *nresults = ps.n;
  res = NULL;
  rc = 0;
done:
  if (rc) {
    out->n = base;
    if (out->p) out->p[base] = 0;
  }
  free(res);
  free(src);
  dmp_bstr_free(&b1);
  dmp_ustr_free(&t);
  dmp_patches_free(&ps);
  return rc;
}
