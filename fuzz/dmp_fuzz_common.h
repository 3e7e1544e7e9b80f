/* Shared by the dmp fuzz harnesses: map fuzz bytes onto valid UTF-16 text
 * over a small alphabet that mixes ASCII, encodeURI's special characters,
 * combining marks, NUL, CR and whole surrogate pairs. */
#ifndef DMP_FUZZ_COMMON_H
#define DMP_FUZZ_COMMON_H
#include <stdio.h>
#include <stdlib.h>
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
#endif
