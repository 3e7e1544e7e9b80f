/*
 * dmp_diff.c - diff_main of diff-match-patch (common ends, the strategies,
 * half-match, Myers' bisect with the deadline, line mode), ported step by
 * step from the reference (npm diff-match-patch 1.0.5) over UTF-16 code
 * units, quirks included, so that the output is the reference's. The only
 * departures are the ones the reference would fail on: dmp_diff_fix_surrogates
 * (dmp_diffs.c: never a split surrogate pair) and the line hash (a plain
 * table, where the reference's object breaks on a line "hasOwnProperty").
 * Calls dmp_diff_cleanup.c, dmp_diffs.c and dmp_text.c.
 */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "dmp.h"

typedef dmp_u16 u16;

/* ------------------------------------------------------------ diff_main */

static void diff_main_r(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, int checklines,
                        double deadline, dmp_diffs *out);

/* Append src's diffs to d (src ends empty). */
static void append_all(dmp_diffs *d, dmp_diffs *src) { dmp_diffs_insert_all(d, d->n, src); }

static void bisect_split(const dmp_opts *o, const u16 *t1, size_t n1, const u16 *t2, size_t n2, size_t x,
                         size_t y, double deadline, dmp_diffs *out) {
  dmp_diffs b = {0};
  diff_main_r(o, t1, x, t2, y, 0, deadline, out);
  diff_main_r(o, t1 + x, n1 - x, t2 + y, n2 - y, 0, deadline, &b);
  append_all(out, &b);
}

/* Where the path on diagonal k (at off in v) starts at step d: the
 * reference's choice between the neighbouring diagonals. */
static inline int64_t path_start(const int64_t *v, int64_t off, int64_t k, int64_t d) {
  return k == -d || (k != d && v[off - 1] < v[off + 1]) ? v[off + 1] : v[off - 1] + 1;
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
      int64_t k1_offset = v_offset + k1, x1 = path_start(v1, k1_offset, k1, d);
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
      int64_t k2_offset = v_offset + k2, x2 = path_start(v2, k2_offset, k2, d);
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
    size_t pl = dmp_common_prefix(lt + i, nl - i, st + j, ns - (size_t)j);
    size_t sl = dmp_common_suffix(lt, i, st, (size_t)j);
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
    int proto = dmp_ueq(ls, ln, PROTO, 9);
    size_t k = 0;
    if (!proto && (m->used + 1) * 2 > m->mask + 1) lm_grow(m, 0);
    if (!proto) {
      k = (size_t)hash_slice(ls, ln) & m->mask;
      while (m->slots[k]) {
        slice *l = &m->lines[m->slots[k] - 1];
        if (dmp_ueq(l->s, l->n, ls, ln)) break;
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
        proto = dmp_ueq(ls, ln, PROTO, 9);
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
        dmp_diffs_insert_all(out, p, &sub);
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
  if (dmp_ueq(t1, n1, t2, n2)) {
    if (n1) dmp_diffs_push(out, DMP_EQUAL, t1, n1);
    return;
  }
  size_t cp = dmp_common_prefix(t1, n1, t2, n2);
  const u16 *pre = t1;
  t1 += cp; n1 -= cp; t2 += cp; n2 -= cp;
  size_t cs = dmp_common_suffix(t1, n1, t2, n2);
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
