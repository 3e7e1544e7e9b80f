/*
 * dmp_match.c - match_main of diff-match-patch (an exact match at the
 * expected location, else bitap with the reference's scoring), ported from
 * the reference (npm diff-match-patch 1.0.5) over UTF-16 code units, on a
 * two-segment text (dmp_seg.h). Calls only dmp_text.c.
 */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "dmp_seg.h"

typedef dmp_u16 u16;
typedef dmp_seg2 seg2;
static const u16 EMPTY[1];  /* an empty text may come as NULL */

/* ------------------------------------------------------ two-segment text */

void dmp_ts_sub(const seg2 *t, int64_t s, int64_t e, dmp_ustr *out) {
  int64_t n = (int64_t)dmp_ts_len(t);
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

int64_t dmp_ts_find(const seg2 *t, const u16 *pat, size_t m, int64_t from) {
  size_t n = dmp_ts_len(t);
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
      if (dmp_ts_at(t, p) == pat[0] && dmp_ts_eq(t, p, pat, m)) return (int64_t)p;
  }
  size_t bf = f > t->na ? f - t->na : 0;
  int64_t i = dmp_find(t->b, t->nb, pat, m, (int64_t)bf);
  return i == -1 ? -1 : i + (int64_t)t->na;
}

int64_t dmp_ts_rfind(const seg2 *t, const u16 *pat, size_t m, int64_t from) {
  size_t n = dmp_ts_len(t);
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
    if (dmp_ts_at(t, (size_t)p) == pat[0] && dmp_ts_eq(t, (size_t)p, pat, m)) return p;
  }
  return -1;
}

/* ---------------------------------------------------------------- match */

static unsigned alpha_slot(const dmp_alphabet *a, dmp_u16 c) {
  unsigned k = ((unsigned)c * 40503u >> 7) & 127;
  while (a->used[k] && a->key[k] != c) k = (k + 1) & 127;
  return k;
}

static uint32_t alpha_get(const dmp_alphabet *a, dmp_u16 c) {
  unsigned k = alpha_slot(a, c);
  return a->used[k] ? a->mask[k] : 0;
}

void dmp_matcher_free(dmp_matcher *mt) {
  free(mt->rd);
  free(mt->last);
}

static double bitap_score(const dmp_opts *o, double e, int64_t x, int64_t loc, size_t m) {
  double accuracy = e / (double)m;
  double proximity = (double)llabs(loc - x);
  if (!o->match_distance) return proximity ? 1.0 : accuracy;
  return accuracy + proximity / o->match_distance;
}

static int64_t bitap(const dmp_opts *o, dmp_matcher *mt, const seg2 *t, const u16 *pat, size_t m, int64_t loc) {
  size_t n = dmp_ts_len(t);
  dmp_alphabet *s = &mt->alpha;
  memset(s->used, 0, sizeof s->used);
  for (size_t i = 0; i < m; i++) {
    unsigned k = alpha_slot(s, pat[i]);
    if (!s->used[k]) { s->used[k] = 1; s->key[k] = pat[i]; s->mask[k] = 0; }
    s->mask[k] |= (uint32_t)1 << (m - i - 1);
  }
  double score_threshold = o->match_threshold;
  int64_t best_loc = dmp_ts_find(t, pat, m, loc);
  if (best_loc != -1) {
    score_threshold = fmin(bitap_score(o, 0, best_loc, loc, m), score_threshold);
    best_loc = dmp_ts_rfind(t, pat, m, loc + (int64_t)m);
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
      uint32_t charMatch = (size_t)(j - 1) < n ? alpha_get(s, dmp_ts_at(t, (size_t)(j - 1))) : 0;
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

int64_t dmp_match_seg(const dmp_opts *o, dmp_matcher *mt, const seg2 *t, const u16 *pat, size_t m, int64_t loc) {
  size_t n = dmp_ts_len(t);
  if (loc > (int64_t)n) loc = (int64_t)n;
  if (loc < 0) loc = 0;
  if (m == n && dmp_ts_eq(t, 0, pat, m)) return 0;
  if (!n) return -1;
  if ((size_t)loc + m <= n && dmp_ts_eq(t, (size_t)loc, pat, m)) return loc;
  if (m > (size_t)o->match_maxbits) return -2;
  return bitap(o, mt, t, pat, m, loc);
}

int64_t dmp_match_main(const dmp_opts *o, const u16 *text, size_t n, const u16 *pat, size_t m, int64_t loc) {
  dmp_matcher mt = {0};
  seg2 t = {text ? text : EMPTY, n, EMPTY, 0};
  int64_t r = dmp_match_seg(o, &mt, &t, pat, m, loc);
  dmp_matcher_free(&mt);
  return r;
}
