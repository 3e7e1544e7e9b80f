/*
 * dmp.h - diff, match and patch over UTF-16 code units: a faithful port of
 * Google's diff-match-patch (the npm diff-match-patch 1.0.5), in plain C
 * with no Lua and no libuv, so that the Lua binding (dmp_lua.c), the fuzz
 * harnesses (fuzz/) and the thread pool can all use it.
 *
 * Texts are arrays of UTF-16 code units (the reference counts offsets in
 * JavaScript string units). Strings cross the API as UTF-8: dmp_utf8_to_u16
 * validates strictly, dmp_u16_to_utf8 writes a lone surrogate as U+FFFD.
 *
 * Where the reference produces a lone surrogate (a diff or a hunk edge that
 * splits a surrogate pair, which makes its patch_toText throw), this port
 * keeps the pair whole; everywhere else its output is the reference's.
 *
 * Memory: allocation failure aborts the process (dmp_oom); every object
 * is freed by its *_free function.
 */
#ifndef CORU_DMP_H
#define CORU_DMP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint16_t dmp_u16;

enum { DMP_DELETE = -1, DMP_EQUAL = 0, DMP_INSERT = 1 };

typedef struct {
  double diff_timeout;           /* seconds; <= 0: no limit (and no half-match) */
  double diff_edit_cost;         /* 4 */
  double match_threshold;        /* 0.5 */
  double match_distance;         /* 1000 */
  double patch_delete_threshold; /* 0.5 */
  int patch_margin;              /* 4, 0..31 */
  int match_maxbits;             /* 32 (the reference's, fixed) */
  size_t index_min;              /* patch_make indexes texts from this many units (65536); not a tunable */
} dmp_opts;

void dmp_opts_default(dmp_opts *o);

typedef struct { int op; dmp_u16 *s; size_t n; } dmp_diff;
typedef struct { dmp_diff *v; size_t n, cap; } dmp_diffs;

typedef struct {
  dmp_diffs diffs;
  int64_t start1, start2, length1, length2;
} dmp_patch;
typedef struct { dmp_patch *v; size_t n, cap; } dmp_patches;

/* Strings. */
typedef struct { dmp_u16 *p; size_t n, cap; } dmp_ustr;
typedef struct { char *p; size_t n, cap; } dmp_bstr;
void dmp_ustr_free(dmp_ustr *s);
void dmp_bstr_free(dmp_bstr *s);
/* UTF-8 -> UTF-16. Returns 0, or -1 with *bad the byte offset of the first
 * invalid sequence (overlong, surrogate, > U+10FFFF, truncated). */
int dmp_utf8_to_u16(const char *s, size_t n, dmp_ustr *out, size_t *bad);
/* Validation only: 0, or -1 with *bad as above. */
int dmp_utf8_check(const char *s, size_t n, size_t *bad);
/* Advances *at by k UTF-16 units in valid UTF-8 (validate first: no check
 * here). Returns 0 when k units were passed, 1 at the end of the text
 * (fewer), -1 when unit k falls inside an astral character; *at is where it
 * stopped, at a character's start. */
int dmp_utf8_skip(const char *s, size_t n, size_t *at, uint64_t k);
/* UTF-16 -> UTF-8 (appends); a lone surrogate becomes U+FFFD. */
void dmp_u16_to_utf8(const dmp_u16 *s, size_t n, dmp_bstr *out);

/* Diffs. */
void dmp_diffs_free(dmp_diffs *d);
void dmp_diffs_push(dmp_diffs *d, int op, const dmp_u16 *s, size_t n);  /* copies s */
/* diff_main(text1, text2, checklines) with opts->diff_timeout, then the
 * surrogate repair. */
void dmp_diff_main(const dmp_opts *o, const dmp_u16 *t1, size_t n1, const dmp_u16 *t2, size_t n2,
                   int checklines, dmp_diffs *out);
void dmp_diff_cleanup_semantic(const dmp_opts *o, dmp_diffs *d);
void dmp_diff_cleanup_semantic_lossless(const dmp_opts *o, dmp_diffs *d);
void dmp_diff_cleanup_efficiency(const dmp_opts *o, dmp_diffs *d);
void dmp_diff_cleanup_merge(const dmp_opts *o, dmp_diffs *d);
/* diff_main exactly as the reference computes it (no surrogate repair). */
void dmp_diff_main_raw(const dmp_opts *o, const dmp_u16 *t1, size_t n1, const dmp_u16 *t2, size_t n2,
                       int checklines, dmp_diffs *out);
double dmp_deadline(const dmp_opts *o);
/* Never leave a surrogate pair split between two diffs (a no-op on diffs
 * that split none). */
void dmp_diff_fix_surrogates(dmp_diffs *d);
int64_t dmp_diff_x_index(const dmp_diffs *d, int64_t loc);
int64_t dmp_diff_levenshtein(const dmp_diffs *d);
void dmp_diff_text1(const dmp_diffs *d, dmp_ustr *out);
void dmp_diff_text2(const dmp_diffs *d, dmp_ustr *out);

/* Match: best offset of pattern in text near loc, or -1. Returns -2 when
 * the reference would throw ("Pattern too long"). */
int64_t dmp_match_main(const dmp_opts *o, const dmp_u16 *text, size_t n, const dmp_u16 *pat, size_t m,
                       int64_t loc);

/* Patches. */
void dmp_patches_free(dmp_patches *p);
dmp_patch *dmp_patches_add(dmp_patches *p);  /* a zeroed patch at the end */
void dmp_patches_copy(const dmp_patches *from, dmp_patches *to);  /* appends copies (patch_deepCopy) */
/* patch_make(text1, text2): diff_main + cleanup_semantic + cleanup_efficiency. */
void dmp_patch_make_texts(const dmp_opts *o, const dmp_u16 *t1, size_t n1, const dmp_u16 *t2, size_t n2,
                          dmp_patches *out);
/* patch_make(text1, diffs). */
void dmp_patch_make(const dmp_opts *o, const dmp_u16 *t1, size_t n1, const dmp_diffs *d, dmp_patches *out);
/* patch_toText as UTF-8 (appends). */
void dmp_patch_to_text(const dmp_patches *p, dmp_bstr *out);
/* patch_fromText from UTF-8 text. Returns 0, or -1 with a message in err. */
int dmp_patch_from_text(const char *s, size_t n, dmp_patches *out, char *err, size_t errlen);
/* patch_apply: *out gets the new text, results[i] (malloc'd, one per patch
 * as the reference reports them) 1 if hunk i applied. */
void dmp_patch_apply(const dmp_opts *o, const dmp_patches *p, const dmp_u16 *text, size_t n,
                     dmp_ustr *out, unsigned char **results, size_t *nresults);

/* The same on patches it may change and frees (*p ends empty): the
 * binding's private copy needs no second one. */
void dmp_patch_apply_consume(const dmp_opts *o, dmp_patches *p, const dmp_u16 *text, size_t n, dmp_ustr *out,
                             unsigned char **results, size_t *nresults);

/* patch_apply on a UTF-8 text when every hunk (after padding and
 * splitting) is found exactly where expected, as on the exact base: the
 * text is never converted, only the hunks. Returns 0 with the results as
 * dmp_patch_apply gives them and the new text in out->p[*skip, out->n -
 * *skip) (out gets the padded text); -1 when a hunk needs the search or
 * the fuzzy path, or there are no patches (use dmp_patch_apply then); -2
 * if the text is not valid UTF-8. On -1 and -2 out is left as it was. */
int dmp_patch_apply_utf8(const dmp_opts *o, const dmp_patches *p, const char *text, size_t n, dmp_bstr *out,
                         size_t *skip, unsigned char **results, size_t *nresults);

/* JavaScript's encodeURI with %20 turned back into ' ' (appends). */
void dmp_encode_uri(const dmp_u16 *s, size_t n, dmp_bstr *out);

/* ------------------------------------------------ shared by the core files */
void *dmp_xmalloc(size_t n);
void *dmp_xrealloc(void *p, size_t n);
dmp_u16 *dmp_dup(const dmp_u16 *s, size_t n);
void dmp_ustr_add(dmp_ustr *s, const dmp_u16 *p, size_t n);
void dmp_bstr_add(dmp_bstr *s, const char *p, size_t n);
/* indexOf(needle, from) / lastIndexOf(needle, from) as JavaScript counts them. */
int64_t dmp_find(const dmp_u16 *h, size_t n, const dmp_u16 *nd, size_t m, int64_t from);
int64_t dmp_rfind(const dmp_u16 *h, size_t n, const dmp_u16 *nd, size_t m, int64_t from);
/* Milliseconds on a monotonic clock (the diff deadline). */
double dmp_now_ms(void);
void dmp_diffs_insert(dmp_diffs *d, size_t at, int op, const dmp_u16 *s, size_t n); /* copies s */
void dmp_diffs_erase(dmp_diffs *d, size_t at, size_t count);
void dmp_diff_set(dmp_diff *x, const dmp_u16 *s, size_t n);  /* replaces the text (s may alias it) */
void dmp_diffs_copy(const dmp_diffs *from, dmp_diffs *to);
/* Moves every diff of src into d at position at; src ends empty. */
void dmp_diffs_insert_all(dmp_diffs *d, size_t at, dmp_diffs *src);
/* The length of the common prefix / suffix of a and b, in units. */
size_t dmp_common_prefix(const dmp_u16 *a, size_t na, const dmp_u16 *b, size_t nb);
size_t dmp_common_suffix(const dmp_u16 *a, size_t na, const dmp_u16 *b, size_t nb);
static inline int dmp_ueq(const dmp_u16 *a, size_t na, const dmp_u16 *b, size_t nb) {
  return na == nb && (!na || !memcmp(a, b, na * sizeof *a));
}
static inline int dmp_is_hi(dmp_u16 c) { return c >= 0xD800 && c <= 0xDBFF; }  /* a high (leading) surrogate */
static inline int dmp_is_lo(dmp_u16 c) { return c >= 0xDC00 && c <= 0xDFFF; }

#endif
