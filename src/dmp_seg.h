/*
 * dmp_seg.h - internal to the match and patch files of the dmp core: a text
 * seen as two segments (patch_make's pre-patch text is a prefix of text2
 * followed by a suffix of text1; patch_apply's is a gap buffer whose gap
 * sits at the last edit) and match_main over it (dmp_match.c).
 */
#ifndef CORU_DMP_SEG_H
#define CORU_DMP_SEG_H

#include "dmp.h"

typedef struct { const dmp_u16 *a; size_t na; const dmp_u16 *b; size_t nb; } dmp_seg2;

static inline size_t dmp_ts_len(const dmp_seg2 *t) { return t->na + t->nb; }
static inline dmp_u16 dmp_ts_at(const dmp_seg2 *t, size_t i) { return i < t->na ? t->a[i] : t->b[i - t->na]; }
/* Does [pos, pos + m) hold pat? (pos + m <= len) */
static inline int dmp_ts_eq(const dmp_seg2 *t, size_t pos, const dmp_u16 *pat, size_t m) {
  if (!m) return 1;
  if (pos + m <= t->na) return !memcmp(t->a + pos, pat, m * sizeof *pat);
  if (pos >= t->na) return !memcmp(t->b + (pos - t->na), pat, m * sizeof *pat);
  size_t k = t->na - pos;
  return !memcmp(t->a + pos, pat, k * sizeof *pat) && !memcmp(t->b, pat + k, (m - k) * sizeof *pat);
}
/* text.substring(s, e) as JavaScript clamps and orders it, appended to out. */
void dmp_ts_sub(const dmp_seg2 *t, int64_t s, int64_t e, dmp_ustr *out);
/* indexOf(pat, from), lastIndexOf(pat, from) */
int64_t dmp_ts_find(const dmp_seg2 *t, const dmp_u16 *pat, size_t m, int64_t from);
int64_t dmp_ts_rfind(const dmp_seg2 *t, const dmp_u16 *pat, size_t m, int64_t from);

/* match_alphabet_: the pattern's units (at most 32) and their masks, in a
 * small open-addressed table; a unit not in the pattern has mask 0. */
typedef struct { uint32_t mask[128]; dmp_u16 key[128]; unsigned char used[128]; } dmp_alphabet;
/* bitap's state, reused from one match to the next (zero it to start). */
typedef struct {
  dmp_alphabet alpha;
  uint32_t *rd, *last;  /* bitap rows */
  size_t cap;
} dmp_matcher;
void dmp_matcher_free(dmp_matcher *mt);
/* match_main over a two-segment text; -2: the pattern is longer than Match_MaxBits. */
int64_t dmp_match_seg(const dmp_opts *o, dmp_matcher *mt, const dmp_seg2 *t, const dmp_u16 *pat, size_t m,
                      int64_t loc);

#endif
