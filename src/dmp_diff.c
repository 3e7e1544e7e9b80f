/*
 * dmp_diff.c - diff_main and the cleanups of diff-match-patch, ported step
 * by step from the reference (npm diff-match-patch 1.0.5) over UTF-16 code
 * units, quirks included, so that the output is the reference's. The only
 * departures are the ones the reference would fail on: dmp_diff_fix_surrogates
 * (never a split surrogate pair) and the line hash (a plain table, where the
 * reference's object breaks on a line "hasOwnProperty").
 */
#include <stdlib.h>
#include <string.h>
#include <math.h>
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

/* x->text = a + x->text (prepend = 1) or x->text + a. */
static void diff_cat(dmp_diff *x, const u16 *a, size_t n, int prepend) {
  if (!n) return;
  u16 *p = dmp_xmalloc((x->n + n) * sizeof *p);
  if (prepend) {
    memcpy(p, a, n * sizeof *p);
    if (x->n) memcpy(p + n, x->s, x->n * sizeof *p);
  } else {
    if (x->n) memcpy(p, x->s, x->n * sizeof *p);
    memcpy(p + x->n, a, n * sizeof *p);
  }
  free(x->s);
  x->s = p;
  x->n += n;
}

/* Move every diff of src into d at position at; src ends empty. */
static void insert_all(dmp_diffs *d, size_t at, dmp_diffs *src) {
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

static int ueq(const u16 *a, size_t na, const u16 *b, size_t nb) {
  return na == nb && (!na || !memcmp(a, b, na * sizeof *a));
}

/* -------------------------------------------------- prefix, suffix, overlap */

static size_t common_prefix(const u16 *a, size_t na, const u16 *b, size_t nb) {
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

static size_t common_suffix(const u16 *a, size_t na, const u16 *b, size_t nb) {
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

static size_t common_overlap(const u16 *t1, size_t n1, const u16 *t2, size_t n2) {
  if (!n1 || !n2) return 0;
  if (n1 > n2) { t1 += n1 - n2; n1 = n2; }
  else if (n1 < n2) n2 = n1;
  size_t L = n1;
  if (ueq(t1, L, t2, L)) return L;
  size_t best = 0, length = 1;
  for (;;) {
    if (length > L) return best;  /* the pattern is all of t1: not found (t1 != t2) */
    int64_t found = dmp_find(t2, L, t1 + (L - length), length, 0);
    if (found == -1) return best;
    length += (size_t)found;
    if (found == 0 || ueq(t1 + (L - length), length, t2, length)) {
      best = length;
      length++;
    }
  }
}

/* ------------------------------------------------------------ cleanups */

void dmp_diff_cleanup_merge(const dmp_opts *o, dmp_diffs *d) {
  (void)o;
  dmp_ustr td = {0}, ti = {0};
  for (;;) {
    dmp_diffs_push(d, DMP_EQUAL, NULL, 0);  /* dummy entry at the end */
    size_t p = 0, cd = 0, ci = 0;
    td.n = ti.n = 0;
    while (p < d->n) {
      dmp_diff *x = &d->v[p];
      if (x->op == DMP_INSERT) { ci++; dmp_ustr_add(&ti, x->s, x->n); p++; continue; }
      if (x->op == DMP_DELETE) { cd++; dmp_ustr_add(&td, x->s, x->n); p++; continue; }
      if (cd + ci > 1) {
        size_t ioff = 0, doff = 0, ilen = ti.n, dlen = td.n;
        if (cd && ci) {
          size_t cl = common_prefix(ti.p, ti.n, td.p, td.n);
          if (cl) {
            if (p - cd - ci > 0 && d->v[p - cd - ci - 1].op == DMP_EQUAL) {
              diff_cat(&d->v[p - cd - ci - 1], ti.p, cl, 0);
            } else {
              dmp_diffs_insert(d, 0, DMP_EQUAL, ti.p, cl);
              p++;
            }
            ioff = doff = cl;
            ilen -= cl;
            dlen -= cl;
          }
          cl = common_suffix(ti.p + ioff, ilen, td.p + doff, dlen);
          if (cl) {
            diff_cat(&d->v[p], ti.p + ioff + ilen - cl, cl, 1);
            ilen -= cl;
            dlen -= cl;
          }
        }
        p -= cd + ci;
        dmp_diffs_erase(d, p, cd + ci);
        if (dlen) { dmp_diffs_insert(d, p, DMP_DELETE, td.p + doff, dlen); p++; }
        if (ilen) { dmp_diffs_insert(d, p, DMP_INSERT, ti.p + ioff, ilen); p++; }
        p++;
      } else if (p != 0 && d->v[p - 1].op == DMP_EQUAL) {
        diff_cat(&d->v[p - 1], x->s, x->n, 0);
        dmp_diffs_erase(d, p, 1);
      } else {
        p++;
      }
      ci = cd = 0;
      td.n = ti.n = 0;
    }
    if (d->v[d->n - 1].n == 0) dmp_diffs_erase(d, d->n - 1, 1);
    /* Single edits surrounded by equalities slide to eliminate one. */
    int changes = 0;
    for (p = 1; d->n && p < d->n - 1; p++) {
      dmp_diff *a = &d->v[p - 1], *x = &d->v[p], *b = &d->v[p + 1];
      if (a->op != DMP_EQUAL || b->op != DMP_EQUAL) continue;
      if (a->n <= x->n && ueq(x->s + (x->n - a->n), a->n, a->s, a->n)) {
        /* x = a + x[0 .. len - len(a)), b = a + b */
        u16 *nx = dmp_xmalloc((x->n) * sizeof *nx + 1);
        if (a->n) memcpy(nx, a->s, a->n * sizeof *nx);
        if (x->n - a->n) memcpy(nx + a->n, x->s, (x->n - a->n) * sizeof *nx);
        free(x->s);
        x->s = nx;
        diff_cat(b, a->s, a->n, 1);
        dmp_diffs_erase(d, p - 1, 1);
        changes = 1;
      } else if (b->n <= x->n && ueq(x->s, b->n, b->s, b->n)) {
        diff_cat(a, b->s, b->n, 0);
        u16 *nx = dmp_xmalloc((x->n) * sizeof *nx + 1);
        if (x->n - b->n) memcpy(nx, x->s + b->n, (x->n - b->n) * sizeof *nx);
        if (b->n) memcpy(nx + (x->n - b->n), b->s, b->n * sizeof *nx);
        free(x->s);
        x->s = nx;
        dmp_diffs_erase(d, p + 1, 1);
        changes = 1;
      }
    }
    if (!changes) break;
  }
  dmp_ustr_free(&td);
  dmp_ustr_free(&ti);
}

/* The reference's regexes on one UTF-16 unit. */
static int is_alnum(u16 c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
static int is_space(u16 c) {
  return (c >= 9 && c <= 13) || c == 32 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000 || c == 0xFEFF;
}
static int is_break(u16 c) { return c == '\r' || c == '\n'; }

/* /\n\r?\n$/ and /^\r?\n\r?\n/ */
static int blank_end(const u16 *s, size_t n) {
  if (n >= 2 && s[n - 1] == '\n' && s[n - 2] == '\n') return 1;
  return n >= 3 && s[n - 1] == '\n' && s[n - 2] == '\r' && s[n - 3] == '\n';
}
static int blank_start(const u16 *s, size_t n) {
  size_t i = 0;
  if (i < n && s[i] == '\r') i++;
  if (!(i < n && s[i] == '\n')) return 0;
  i++;
  if (i < n && s[i] == '\r') i++;
  return i < n && s[i] == '\n';
}

static int semantic_score(const u16 *one, size_t n1, const u16 *two, size_t n2) {
  if (!n1 || !n2) return 6;
  u16 c1 = one[n1 - 1], c2 = two[0];
  int na1 = !is_alnum(c1), na2 = !is_alnum(c2);
  int ws1 = na1 && is_space(c1), ws2 = na2 && is_space(c2);
  int lb1 = ws1 && is_break(c1), lb2 = ws2 && is_break(c2);
  int bl1 = lb1 && blank_end(one, n1), bl2 = lb2 && blank_start(two, n2);
  if (bl1 || bl2) return 5;
  if (lb1 || lb2) return 4;
  if (na1 && !ws1 && ws2) return 3;
  if (ws1 || ws2) return 2;
  if (na1 || na2) return 1;
  return 0;
}

void dmp_diff_cleanup_semantic_lossless(const dmp_opts *o, dmp_diffs *d) {
  (void)o;
  dmp_ustr w = {0};
  w.p = dmp_xrealloc(w.p, 64 * sizeof *w.p);  /* never NULL, even for empty texts */
  w.cap = 64;
  for (size_t p = 1; d->n && p < d->n - 1; p++) {
    if (p < 1) continue;  /* the reference throws here (two empty equalities vanished) */
    if (d->v[p - 1].op != DMP_EQUAL || d->v[p + 1].op != DMP_EQUAL) continue;
    dmp_diff *a = &d->v[p - 1], *x = &d->v[p], *b = &d->v[p + 1];
    /* w = equality1 + edit + equality2; the three are windows [0,e1) [e1,e1+ne) [e1+ne,n). */
    w.n = 0;
    dmp_ustr_add(&w, a->s, a->n);
    dmp_ustr_add(&w, x->s, x->n);
    dmp_ustr_add(&w, b->s, b->n);
    size_t ne = x->n, n = w.n;
    size_t e1 = a->n - common_suffix(a->s, a->n, x->s, x->n);
    size_t best = e1;
    int best_score = semantic_score(w.p, e1, w.p + e1, ne) + semantic_score(w.p + e1, ne, w.p + e1 + ne, n - e1 - ne);
    /* while edit.charAt(0) === equality2.charAt(0) (an empty edit before an
     * empty equality would loop for ever in the reference: stop) */
    while (ne && e1 + ne < n && w.p[e1] == w.p[e1 + ne]) {
      e1++;
      int score = semantic_score(w.p, e1, w.p + e1, ne) + semantic_score(w.p + e1, ne, w.p + e1 + ne, n - e1 - ne);
      if (score >= best_score) {
        best_score = score;
        best = e1;
      }
    }
    if (best != a->n) {
      size_t n2 = n - best - ne;
      if (best) {
        dmp_diff_set(a, w.p, best);
      } else {
        dmp_diffs_erase(d, p - 1, 1);
        p--;
      }
      dmp_diff_set(&d->v[p], w.p + best, ne);
      if (n2) {
        dmp_diff_set(&d->v[p + 1], w.p + best + ne, n2);
      } else {
        dmp_diffs_erase(d, p + 1, 1);
        p--;
      }
    }
  }
  dmp_ustr_free(&w);
}

/* The reference's stack of equality indices is a JavaScript array whose
 * length may go negative (it then stores at index -1, -2, ...): this one
 * accepts those indices too. */
typedef struct { int64_t *v; int64_t base, n; } eqstack;
static void eq_init(eqstack *s, size_t ndiffs) {
  s->base = 2 * ((int64_t)ndiffs + 4);  /* matches <= equalities <= ndiffs: |n| < base */
  s->v = dmp_xmalloc((size_t)(2 * s->base) * sizeof *s->v);
  s->n = 0;
}
static void eq_push(eqstack *s, int64_t p) { s->v[s->base + s->n++] = p; }
static int64_t eq_top(eqstack *s) { return s->v[s->base + s->n - 1]; }

void dmp_diff_cleanup_semantic(const dmp_opts *o, dmp_diffs *d) {
  int changes = 0;
  eqstack eq;
  eq_init(&eq, d->n);
  int has_last = 0;  /* lastEquality, always the text of diffs[eq_top] */
  size_t li1 = 0, ld1 = 0, li2 = 0, ld2 = 0;
  for (int64_t p = 0; p < (int64_t)d->n; p++) {
    dmp_diff *x = &d->v[p];
    if (x->op == DMP_EQUAL) {
      eq_push(&eq, p);
      li1 = li2;
      ld1 = ld2;
      li2 = ld2 = 0;
      has_last = x->n > 0;
      continue;
    }
    if (x->op == DMP_INSERT) li2 += x->n;
    else ld2 += x->n;
    if (has_last) {
      size_t at = (size_t)eq_top(&eq), len = d->v[at].n;
      if (len <= (li1 > ld1 ? li1 : ld1) && len <= (li2 > ld2 ? li2 : ld2)) {
        dmp_diffs_insert(d, at, DMP_DELETE, d->v[at].s, len);
        d->v[at + 1].op = DMP_INSERT;
        eq.n -= 2;
        p = eq.n > 0 ? eq_top(&eq) : -1;
        li1 = ld1 = li2 = ld2 = 0;
        has_last = 0;
        changes = 1;
      }
    }
  }
  free(eq.v);
  if (changes) dmp_diff_cleanup_merge(o, d);
  dmp_diff_cleanup_semantic_lossless(o, d);
  /* Overlaps between a deletion and an insertion. */
  for (size_t p = 1; p < d->n; p++) {
    if (d->v[p - 1].op != DMP_DELETE || d->v[p].op != DMP_INSERT) continue;
    const u16 *del = d->v[p - 1].s, *ins = d->v[p].s;
    size_t nd = d->v[p - 1].n, ni = d->v[p].n;
    size_t o1 = common_overlap(del, nd, ins, ni), o2 = common_overlap(ins, ni, del, nd);
    if (o1 >= o2) {
      if (2 * o1 >= nd || 2 * o1 >= ni) {
        dmp_diffs_insert(d, p, DMP_EQUAL, ins, o1);
        dmp_diff_set(&d->v[p - 1], del, nd - o1);
        dmp_diff_set(&d->v[p + 1], ins + o1, ni - o1);
        p++;
      }
    } else {
      if (2 * o2 >= nd || 2 * o2 >= ni) {
        dmp_diffs_insert(d, p, DMP_EQUAL, del, o2);
        /* swap the two texts' owners, then trim */
        u16 *ds = d->v[p - 1].s, *is = d->v[p + 1].s;
        d->v[p - 1].op = DMP_INSERT;
        d->v[p - 1].s = is;
        d->v[p - 1].n = ni;
        d->v[p + 1].op = DMP_DELETE;
        d->v[p + 1].s = ds;
        d->v[p + 1].n = nd;
        dmp_diff_set(&d->v[p - 1], ins, ni - o2);
        dmp_diff_set(&d->v[p + 1], del + o2, nd - o2);
        p++;
      }
    }
    p++;
  }
}

void dmp_diff_cleanup_efficiency(const dmp_opts *o, dmp_diffs *d) {
  int changes = 0;
  eqstack eq;
  eq_init(&eq, d->n);
  int has_last = 0;
  int pre_ins = 0, pre_del = 0, post_ins = 0, post_del = 0;
  for (int64_t p = 0; p < (int64_t)d->n; p++) {
    dmp_diff *x = &d->v[p];
    if (x->op == DMP_EQUAL) {
      if ((double)x->n < o->diff_edit_cost && (post_ins || post_del)) {
        eq_push(&eq, p);
        pre_ins = post_ins;
        pre_del = post_del;
        has_last = x->n > 0;
      } else {
        eq.n = 0;
        has_last = 0;
      }
      post_ins = post_del = 0;
      continue;
    }
    if (x->op == DMP_DELETE) post_del = 1;
    else post_ins = 1;
    if (!has_last) continue;
    size_t at = (size_t)eq_top(&eq), len = d->v[at].n;
    if ((pre_ins && pre_del && post_ins && post_del) ||
        ((double)len < o->diff_edit_cost / 2 && pre_ins + pre_del + post_ins + post_del == 3)) {
      dmp_diffs_insert(d, at, DMP_DELETE, d->v[at].s, len);
      d->v[at + 1].op = DMP_INSERT;
      eq.n--;
      has_last = 0;
      if (pre_ins && pre_del) {
        post_ins = post_del = 1;
        eq.n = 0;
      } else {
        eq.n--;
        p = eq.n > 0 ? eq_top(&eq) : -1;
        post_ins = post_del = 0;
      }
      changes = 1;
    }
  }
  free(eq.v);
  if (changes) dmp_diff_cleanup_merge(o, d);
}

/* ------------------------------------------------------------ diff_main */

static void diff_main_r(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, int checklines,
                        double deadline, dmp_diffs *out);

/* Append src's diffs to d (src ends empty). */
static void append_all(dmp_diffs *d, dmp_diffs *src) { insert_all(d, d->n, src); }

static void bisect_split(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, size_t x,
                         size_t y, double deadline, dmp_diffs *out) {
  dmp_diffs b = {0};
  diff_main_r(o, t1, x, t2, y, 0, deadline, out);
  diff_main_r(o, t1 + x, n1 - x, t2 + y, n2 - y, 0, deadline, &b);
  append_all(out, &b);
}

static void bisect(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, double deadline,
                   dmp_diffs *out) {
  int64_t len1 = (int64_t)n1, len2 = (int64_t)n2;
  int64_t max_d = (len1 + len2 + 1) / 2;
  int64_t v_offset = max_d, v_length = 2 * max_d;
  int64_t *v1 = dmp_xmalloc((size_t)(v_length + 2) * sizeof *v1);
  int64_t *v2 = dmp_xmalloc((size_t)(v_length + 2) * sizeof *v2);
  for (int64_t i = 0; i < v_length + 2; i++) v1[i] = v2[i] = -1;
  v1[v_offset + 1] = 0;
  v2[v_offset + 1] = 0;
  int64_t delta = len1 - len2;
  int front = delta % 2 != 0;
  int64_t k1start = 0, k1end = 0, k2start = 0, k2end = 0;
  for (int64_t d = 0; d < max_d; d++) {
    if (dmp_now_ms() > deadline) break;
    for (int64_t k1 = -d + k1start; k1 <= d - k1end; k1 += 2) {
      int64_t k1_offset = v_offset + k1, x1;
      if (k1 == -d || (k1 != d && v1[k1_offset - 1] < v1[k1_offset + 1])) x1 = v1[k1_offset + 1];
      else x1 = v1[k1_offset - 1] + 1;
      int64_t y1 = x1 - k1;
      if (y1 >= 0)
        while (x1 < len1 && y1 < len2 && t1[x1] == t2[y1]) { x1++; y1++; }
      v1[k1_offset] = x1;
      if (x1 > len1) {
        k1end += 2;
      } else if (y1 > len2) {
        k1start += 2;
      } else if (front) {
        int64_t k2_offset = v_offset + delta - k1;
        if (k2_offset >= 0 && k2_offset < v_length && v2[k2_offset] != -1) {
          int64_t x2 = len1 - v2[k2_offset];
          if (x1 >= x2) {
            free(v1);
            free(v2);
            bisect_split(o, t1, n1, t2, n2, (size_t)x1, (size_t)y1, deadline, out);
            return;
          }
        }
      }
    }
    for (int64_t k2 = -d + k2start; k2 <= d - k2end; k2 += 2) {
      int64_t k2_offset = v_offset + k2, x2;
      if (k2 == -d || (k2 != d && v2[k2_offset - 1] < v2[k2_offset + 1])) x2 = v2[k2_offset + 1];
      else x2 = v2[k2_offset - 1] + 1;
      int64_t y2 = x2 - k2;
      if (y2 >= 0)
        while (x2 < len1 && y2 < len2 && t1[len1 - x2 - 1] == t2[len2 - y2 - 1]) { x2++; y2++; }
      v2[k2_offset] = x2;
      if (x2 > len1) {
        k2end += 2;
      } else if (y2 > len2) {
        k2start += 2;
      } else if (!front) {
        int64_t k1_offset = v_offset + delta - k2;
        if (k1_offset >= 0 && k1_offset < v_length && v1[k1_offset] != -1) {
          int64_t x1 = v1[k1_offset];
          int64_t y1 = v_offset + x1 - k1_offset;
          x2 = len1 - x2;
          if (x1 >= x2) {
            free(v1);
            free(v2);
            bisect_split(o, t1, n1, t2, n2, (size_t)x1, (size_t)y1, deadline, out);
            return;
          }
        }
      }
    }
  }
  free(v1);
  free(v2);
  dmp_diffs_push(out, DMP_DELETE, t1, n1);
  dmp_diffs_push(out, DMP_INSERT, t2, n2);
}

/* Half-match: five windows, as offsets into the long and short texts. */
typedef struct { int ok; size_t la, lb, sa, sb, cstart, clen; } halfm;

static halfm half_match_i(const u16 *lt, size_t nl, const u16 *st, size_t ns, size_t i) {
  halfm best = {0};
  size_t seedlen = nl / 4;
  if (seedlen > nl - i) seedlen = nl - i;
  const u16 *seed = lt + i;
  int64_t j = -1;
  while ((j = dmp_find(st, ns, seed, seedlen, j + 1)) != -1) {
    size_t pl = common_prefix(lt + i, nl - i, st + j, ns - (size_t)j);
    size_t sl = common_suffix(lt, i, st, (size_t)j);
    if (best.clen < sl + pl) {
      best.cstart = (size_t)j - sl;
      best.clen = sl + pl;
      best.la = i - sl;
      best.lb = i + pl;
      best.sa = (size_t)j - sl;
      best.sb = (size_t)j + pl;
    }
    if ((size_t)j >= ns) break;  /* indexOf(seed, ns + 1) finds what indexOf(seed, ns) did */
  }
  best.ok = best.clen * 2 >= nl;
  return best;
}

static int half_match(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, size_t w[5][2]) {
  if (o->diff_timeout <= 0) return 0;  /* don't risk a non-optimal diff without a deadline */
  const u16 *lt = n1 > n2 ? t1 : t2, *st = n1 > n2 ? t2 : t1;
  size_t nl = n1 > n2 ? n1 : n2, ns = n1 > n2 ? n2 : n1;
  if (nl < 4 || ns * 2 < nl) return 0;
  halfm h1 = half_match_i(lt, nl, st, ns, (nl + 3) / 4);
  halfm h2 = half_match_i(lt, nl, st, ns, (nl + 1) / 2);
  halfm h;
  if (!h1.ok && !h2.ok) return 0;
  else if (!h2.ok) h = h1;
  else if (!h1.ok) h = h2;
  else h = h1.clen > h2.clen ? h1 : h2;
  /* w: text1_a, text1_b, text2_a, text2_b as [start, end) of their text; w[4]: mid_common in st */
  size_t la[2] = {0, h.la}, lb[2] = {h.lb, nl}, sa[2] = {0, h.sa}, sb[2] = {h.sb, ns};
  if (n1 > n2) {
    memcpy(w[0], la, sizeof la); memcpy(w[1], lb, sizeof lb);
    memcpy(w[2], sa, sizeof sa); memcpy(w[3], sb, sizeof sb);
  } else {
    memcpy(w[0], sa, sizeof sa); memcpy(w[1], sb, sizeof sb);
    memcpy(w[2], la, sizeof la); memcpy(w[3], lb, sizeof lb);
  }
  w[4][0] = h.cstart;
  w[4][1] = h.cstart + h.clen;
  return 1;
}

/* ----------------------------------------------------- lines to chars */

typedef struct { const u16 *s; size_t n; } slice;
typedef struct {
  slice *lines; size_t nlines, cap;     /* lineArray */
  uint32_t *slots; size_t mask;          /* open addressing: index + 1, 0 empty */
  size_t used;
} linemap;

static uint64_t hash_slice(const u16 *s, size_t n) {
  uint64_t h = 1469598103934665603ull ^ n;
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {  /* four units at a time */
    uint64_t w;
    memcpy(&w, s + i, sizeof w);
    h = (h ^ w) * 0x9E3779B97F4A7C15ull;
    h ^= h >> 32;
  }
  for (; i < n; i++) { h ^= s[i]; h *= 1099511628211ull; }
  return h ^ (h >> 29);
}

static void lm_grow(linemap *m, size_t hint) {
  size_t nsz = m->slots ? (m->mask + 1) * 2 : 1024;
  while (nsz < hint) nsz *= 2;
  uint32_t *ns = dmp_xmalloc(nsz * sizeof *ns);
  memset(ns, 0, nsz * sizeof *ns);
  for (size_t i = 0; m->slots && i <= m->mask; i++) {
    if (!m->slots[i]) continue;
    slice *l = &m->lines[m->slots[i] - 1];
    size_t k = (size_t)hash_slice(l->s, l->n) & (nsz - 1);
    while (ns[k]) k = (k + 1) & (nsz - 1);
    ns[k] = m->slots[i];
  }
  free(m->slots);
  m->slots = ns;
  m->mask = nsz - 1;
}

static const u16 NL = '\n';
static const u16 PROTO[] = {'_', '_', 'p', 'r', 'o', 't', 'o', '_', '_'};

static void munge(linemap *m, const u16 *text, size_t n, size_t max_lines, dmp_ustr *chars) {
  int64_t line_start = 0, line_end = -1, len = (int64_t)n;
  while (line_end < len - 1) {
    line_end = dmp_find(text, n, &NL, 1, line_start);
    if (line_end == -1) line_end = len - 1;
    const u16 *ls = text + line_start;
    size_t ln = (size_t)(line_end + 1 - line_start);
    /* lineHash is an object: "__proto__" is never an own property there */
    int proto = ueq(ls, ln, PROTO, 9);
    size_t k = 0;
    if (!proto && (m->used + 1) * 2 > m->mask + 1) lm_grow(m, 0);
    if (!proto) {
      k = (size_t)hash_slice(ls, ln) & m->mask;
      while (m->slots[k]) {
        slice *l = &m->lines[m->slots[k] - 1];
        if (ueq(l->s, l->n, ls, ln)) break;
        k = (k + 1) & m->mask;
      }
      if (m->slots[k]) {
        u16 c = (u16)(m->slots[k] - 1);
        dmp_ustr_add(chars, &c, 1);
        line_start = line_end + 1;
        continue;
      }
    }
    if (m->nlines == max_lines) {
      ln = n - (size_t)line_start;
      line_end = len;
      if (!proto) {  /* the longer line goes in the hash: find its slot */
        proto = ueq(ls, ln, PROTO, 9);
        if (!proto) {
          k = (size_t)hash_slice(ls, ln) & m->mask;
          while (m->slots[k]) k = (k + 1) & m->mask;
        }
      }
    }
    u16 c = (u16)m->nlines;
    dmp_ustr_add(chars, &c, 1);
    if (m->nlines == m->cap) {
      m->cap = m->cap ? m->cap * 2 : 256;
      m->lines = dmp_xrealloc(m->lines, m->cap * sizeof *m->lines);
    }
    m->lines[m->nlines].s = ls;
    m->lines[m->nlines].n = ln;
    m->nlines++;
    if (!proto) { m->slots[k] = (uint32_t)m->nlines; m->used++; }
    line_start = line_end + 1;
  }
}

static void line_mode(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, double deadline,
                      dmp_diffs *out) {
  linemap m = {0};
  dmp_ustr c1 = {0}, c2 = {0}, buf = {0};
  m.cap = 256;
  m.lines = dmp_xmalloc(m.cap * sizeof *m.lines);
  m.lines[0].s = NULL;
  m.lines[0].n = 0;
  m.nlines = 1;
  /* room for a line per 32 units (at most 65,536 lines): few rehashes */
  size_t hint = (n1 + n2) / 16;
  lm_grow(&m, hint > 262144 ? 262144 : hint);
  munge(&m, t1, n1, 40000, &c1);
  munge(&m, t2, n2, 65535, &c2);
  diff_main_r(o, c1.p, c1.n, c2.p, c2.n, 0, deadline, out);
  /* chars to lines */
  for (size_t i = 0; i < out->n; i++) {
    buf.n = 0;
    for (size_t j = 0; j < out->v[i].n; j++) {
      slice *l = &m.lines[out->v[i].s[j]];
      dmp_ustr_add(&buf, l->s, l->n);
    }
    dmp_diff_set(&out->v[i], buf.p, buf.n);
  }
  free(m.lines);
  free(m.slots);
  dmp_ustr_free(&c1);
  dmp_ustr_free(&c2);
  dmp_diff_cleanup_semantic(o, out);
  /* Rediff each replacement block, character by character. */
  dmp_ustr td = {0}, ti = {0};
  dmp_diffs_push(out, DMP_EQUAL, NULL, 0);
  size_t p = 0, cd = 0, ci = 0;
  while (p < out->n) {
    dmp_diff *x = &out->v[p];
    if (x->op == DMP_INSERT) { ci++; dmp_ustr_add(&ti, x->s, x->n); }
    else if (x->op == DMP_DELETE) { cd++; dmp_ustr_add(&td, x->s, x->n); }
    else {
      if (cd >= 1 && ci >= 1) {
        dmp_diffs_erase(out, p - cd - ci, cd + ci);
        p = p - cd - ci;
        dmp_diffs sub = {0};
        diff_main_r(o, td.p, td.n, ti.p, ti.n, 0, deadline, &sub);
        size_t ns = sub.n;
        insert_all(out, p, &sub);
        p += ns;
      }
      ci = cd = 0;
      td.n = ti.n = 0;
    }
    p++;
  }
  dmp_diffs_erase(out, out->n - 1, 1);
  dmp_ustr_free(&td);
  dmp_ustr_free(&ti);
  dmp_ustr_free(&buf);
}

static void compute(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, int checklines,
                    double deadline, dmp_diffs *out) {
  if (!n1) { dmp_diffs_push(out, DMP_INSERT, t2, n2); return; }
  if (!n2) { dmp_diffs_push(out, DMP_DELETE, t1, n1); return; }
  const u16 *lt = n1 > n2 ? t1 : t2, *st = n1 > n2 ? t2 : t1;
  size_t nl = n1 > n2 ? n1 : n2, ns = n1 > n2 ? n2 : n1;
  int64_t i = dmp_find(lt, nl, st, ns, 0);
  if (i != -1) {
    int op = n1 > n2 ? DMP_DELETE : DMP_INSERT;
    dmp_diffs_push(out, op, lt, (size_t)i);
    dmp_diffs_push(out, DMP_EQUAL, st, ns);
    dmp_diffs_push(out, op, lt + i + ns, nl - (size_t)i - ns);
    return;
  }
  if (ns == 1) {
    dmp_diffs_push(out, DMP_DELETE, t1, n1);
    dmp_diffs_push(out, DMP_INSERT, t2, n2);
    return;
  }
  size_t w[5][2];
  if (half_match(o, t1, n1, t2, n2, w)) {
    dmp_diffs b = {0};
    const u16 *mid = (n1 > n2 ? t2 : t1) + w[4][0];
    size_t nmid = w[4][1] - w[4][0];
    /* copy the middle first: the windows point into t1 and t2, which stay alive */
    diff_main_r(o, t1 + w[0][0], w[0][1] - w[0][0], t2 + w[2][0], w[2][1] - w[2][0], checklines, deadline, out);
    diff_main_r(o, t1 + w[1][0], w[1][1] - w[1][0], t2 + w[3][0], w[3][1] - w[3][0], checklines, deadline, &b);
    dmp_diffs_push(out, DMP_EQUAL, mid, nmid);
    append_all(out, &b);
    return;
  }
  if (checklines && n1 > 100 && n2 > 100) {
    line_mode(o, t1, n1, t2, n2, deadline, out);
    return;
  }
  bisect(o, t1, n1, t2, n2, deadline, out);
}

static void diff_main_r(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, int checklines,
                        double deadline, dmp_diffs *out) {
  if (ueq(t1, n1, t2, n2)) {
    if (n1) dmp_diffs_push(out, DMP_EQUAL, t1, n1);
    return;
  }
  size_t cp = common_prefix(t1, n1, t2, n2);
  const u16 *pre = t1;
  t1 += cp; n1 -= cp; t2 += cp; n2 -= cp;
  size_t cs = common_suffix(t1, n1, t2, n2);
  const u16 *suf = t1 + n1 - cs;
  n1 -= cs;
  n2 -= cs;
  dmp_diffs d = {0};
  compute(o, t1, n1, t2, n2, checklines, deadline, &d);
  if (cp) dmp_diffs_insert(&d, 0, DMP_EQUAL, pre, cp);
  if (cs) dmp_diffs_push(&d, DMP_EQUAL, suf, cs);
  dmp_diff_cleanup_merge(o, &d);
  append_all(out, &d);
}

double dmp_deadline(const dmp_opts *o) {
  return o->diff_timeout <= 0 ? INFINITY : dmp_now_ms() + o->diff_timeout * 1000;
}

static const u16 EMPTY[1];

void dmp_diff_main_raw(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, int checklines,
                       dmp_diffs *out) {
  if (!t1) t1 = EMPTY;  /* an empty text may come as NULL */
  if (!t2) t2 = EMPTY;
  diff_main_r(o, t1, n1, t2, n2, checklines, dmp_deadline(o), out);
}

void dmp_diff_main(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, int checklines,
                   dmp_diffs *out) {
  dmp_diff_main_raw(o, t1, n1, t2, n2, checklines, out);
  dmp_diff_fix_surrogates(out);
}

/* ------------------------------------------------- surrogate pairs whole */

static int is_hi(u16 c) { return c >= 0xD800 && c <= 0xDBFF; }
static int is_lo(u16 c) { return c >= 0xDC00 && c <= 0xDFFF; }

typedef struct { int eq; dmp_ustr a, b; } fixitem;  /* eq: a is the text; else a = deleted, b = inserted */

void dmp_diff_fix_surrogates(dmp_diffs *d) {
  int split = 0;
  for (size_t i = 0; i < d->n && !split; i++)
    split = d->v[i].n && (is_lo(d->v[i].s[0]) || is_hi(d->v[i].s[d->v[i].n - 1]));
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
    if (e->n && is_lo(e->p[0]) && k > 0) {
      dmp_ustr_add(&it[k - 1].a, e->p, 1);
      dmp_ustr_add(&it[k - 1].b, e->p, 1);
      memmove(e->p, e->p + 1, (e->n - 1) * sizeof *e->p);
      e->n--;
    }
    if (e->n && is_hi(e->p[e->n - 1]) && k + 1 < ni) {
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
