/*
 * dmp_patch_apply.c - patch_apply of diff-match-patch (a copy of the
 * patches, padding, split_max, each hunk looked for with match_main, large
 * hunks by their two ends, fuzzy hunks through a character diff), ported
 * from the reference (npm diff-match-patch 1.0.5) over UTF-16 code units.
 *
 * Where the reference rebuilds the whole text for every hunk, this port
 * edits a gap buffer whose gap sits at the last edit, seen as two segments
 * (dmp_seg.h). dmp_patch_apply_utf8 is the exact-base path on UTF-8 text.
 * Calls dmp_patch.c, dmp_match.c, dmp_diff*.c and dmp_text.c.
 */
#include <stdlib.h>
#include <string.h>
#include "dmp_seg.h"

typedef dmp_u16 u16;
typedef dmp_seg2 seg2;
static const u16 EMPTY[1];  /* an empty text may come as NULL */

/* ------------------------------------------------------ padding, splitting */

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
  dmp_patches_copy(in, &ps);  /* the reference's patch_deepCopy */
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
  dmp_matcher mt = {0};
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
      start_loc = dmp_match_seg(o, &mt, &v, t1.p, (size_t)maxbits, expected);
      if (start_loc != -1) {
        end_loc = dmp_match_seg(o, &mt, &v, t1.p + n1 - maxbits, (size_t)maxbits, expected + n1 - maxbits);
        if (end_loc == -1 || start_loc >= end_loc) start_loc = -1;
      }
    } else {
      start_loc = dmp_match_seg(o, &mt, &v, t1.p, t1.n, expected);
    }
    if (start_loc == -1) {
      res[x] = 0;
      delta -= p->length2 - p->length1;
      continue;
    }
    res[x] = 1;
    delta = start_loc - expected;
    tt.n = 0;
    if (end_loc == -1) dmp_ts_sub(&v, start_loc, start_loc + n1, &tt);
    else dmp_ts_sub(&v, start_loc, end_loc + maxbits, &tt);
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
            dmp_ts_sub(&w, (int64_t)e, (int64_t)a, &t2);
            gb_replace(&b, a, 0, t2.p, t2.n);
          }
        }
        if (mod->op != DMP_DELETE) index1 += (int64_t)mod->n;
      }
    }
    dmp_diffs_free(&d);
  }
  seg2 v = gb_view(&b);
  dmp_ts_sub(&v, (int64_t)plen, (int64_t)b.n - (int64_t)plen, out);
  free(b.p);
  dmp_matcher_free(&mt);
  dmp_ustr_free(&t1);
  dmp_ustr_free(&t2);
  dmp_ustr_free(&tt);
  *results = res;
  *nresults = ps.n;
  dmp_patches_free(&ps);
}

/* ------------------------------------------- apply, every hunk exact, UTF-8 */

static int lone_end(const dmp_ustr *t) { return t->n && (dmp_is_lo(t->p[0]) || dmp_is_hi(t->p[t->n - 1])); }

int dmp_patch_apply_utf8(const dmp_opts *o, const dmp_patches *in, const char *text, size_t n, dmp_bstr *out,
                         size_t *skip, unsigned char **results, size_t *nresults) {
  if (!in->n) return -1;
  if (dmp_utf8_check(text, n, NULL)) return -2;
  dmp_patches ps = {0};
  dmp_patches_copy(in, &ps);
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
    if (dmp_utf8_skip(src, sn, &bi, (uint64_t)(expected - ou))) goto done;
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
  dmp_bstr_add(out, src + bi, sn - bi);  /* the rest */
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
