/*
 * dmp_diff_cleanup.c - the cleanups of diff-match-patch (diff_cleanupMerge,
 * diff_cleanupSemantic, diff_cleanupSemanticLossless,
 * diff_cleanupEfficiency), ported step by step from the reference (npm
 * diff-match-patch 1.0.5), quirks included. See dmp.h.
 */
#include <stdlib.h>
#include <string.h>
#include "dmp.h"

typedef dmp_u16 u16;

/* ------------------------------------------------------------ helpers */

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

static size_t common_overlap(const u16 *t1, size_t n1, const u16 *t2, size_t n2) {
  if (!n1 || !n2) return 0;
  if (n1 > n2) { t1 += n1 - n2; n1 = n2; }
  else if (n1 < n2) n2 = n1;
  size_t L = n1;
  if (dmp_ueq(t1, L, t2, L)) return L;
  size_t best = 0, length = 1;
  for (;;) {
    if (length > L) return best;  /* the pattern is all of t1: not found (t1 != t2) */
    int64_t found = dmp_find(t2, L, t1 + (L - length), length, 0);
    if (found == -1) return best;
    length += (size_t)found;
    if (found == 0 || dmp_ueq(t1 + (L - length), length, t2, length)) {
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
          size_t cl = dmp_common_prefix(ti.p, ti.n, td.p, td.n);
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
          cl = dmp_common_suffix(ti.p + ioff, ilen, td.p + doff, dlen);
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
      if (a->n <= x->n && dmp_ueq(x->s + (x->n - a->n), a->n, a->s, a->n)) {
        /* x = a + x[0 .. len - len(a)), b = a + b */
        u16 *nx = dmp_xmalloc((x->n) * sizeof *nx + 1);
        if (a->n) memcpy(nx, a->s, a->n * sizeof *nx);
        if (x->n - a->n) memcpy(nx + a->n, x->s, (x->n - a->n) * sizeof *nx);
        free(x->s);
        x->s = nx;
        diff_cat(b, a->s, a->n, 1);
        dmp_diffs_erase(d, p - 1, 1);
        changes = 1;
      } else if (b->n <= x->n && dmp_ueq(x->s, b->n, b->s, b->n)) {
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
    size_t e1 = a->n - dmp_common_suffix(a->s, a->n, x->s, x->n);
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
