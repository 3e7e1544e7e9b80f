/* Shared by the dmp fuzz harnesses: map fuzz bytes onto valid UTF-16 text
 * over a small alphabet that mixes ASCII, encodeURI's special characters,
 * combining marks, NUL, CR and whole surrogate pairs. */
#ifndef DMP_FUZZ_COMMON_H
#define DMP_FUZZ_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dmp.h"

static void fuzz_text(const uint8_t *d, size_t n, dmp_ustr *out) {
  static const dmp_u16 one[] = {'a', 'b', 'c', '\n', ' ', '%', 0xE9, 0x4E2D, 0x0301, '\r', 0, '+', '#', 'x'};
  static const dmp_u16 two[][2] = {{0xD83D, 0xDE00}, {0xD83D, 0xDE01}};
  for (size_t i = 0; i < n; i++) {
    unsigned k = d[i] % 16;
    if (k < 14) dmp_ustr_add(out, &one[k], 1);
    else dmp_ustr_add(out, two[k - 14], 2);
  }
}

#define FUZZ_CHECK(cond, what)                                    \
  do {                                                            \
    if (!(cond)) {                                                \
      fprintf(stderr, "dmp fuzz: %s failed: %s\n", what, #cond);  \
      abort();                                                    \
    }                                                             \
  } while (0)

static int ueq(const dmp_ustr *a, const dmp_ustr *b) {
  if (a->n != b->n) return 0;
  for (size_t i = 0; i < a->n; i++) if (a->p[i] != b->p[i]) return 0;
  return 1;
}
/* The binding's UTF-8 path of patch_apply (taken when every hunk is found
 * where expected) must give what the general path gave (out, res), or
 * decline. */
static void check_apply_utf8(const dmp_opts *o, const dmp_patches *ps, const dmp_ustr *base, const dmp_ustr *out,
                             const unsigned char *res, size_t nres) {
  dmp_bstr b8 = {0}, o8 = {0}, f8 = {0};
  dmp_u16_to_utf8(base->p, base->n, &b8);
  size_t skip = 0, nr = 0;
  unsigned char *r = NULL;
  int rc = dmp_patch_apply_utf8(o, ps, b8.p ? b8.p : "", b8.n, &f8, &skip, &r, &nr);
  FUZZ_CHECK(rc != -2, "the UTF-8 path accepts valid UTF-8");
  if (rc == 0) {
    dmp_u16_to_utf8(out->p, out->n, &o8);
    FUZZ_CHECK(f8.n - 2 * skip == o8.n && (!o8.n || !memcmp(f8.p + skip, o8.p, o8.n)), "UTF-8 path text == general");
    FUZZ_CHECK(nr == nres && (!nr || !memcmp(r, res, nr)), "UTF-8 path results == general");
  }
  free(r);
  dmp_bstr_free(&b8);
  dmp_bstr_free(&o8);
  dmp_bstr_free(&f8);
}
#endif
