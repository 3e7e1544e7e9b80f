/* libFuzzer: the UTF-8 layer on arbitrary bytes. dmp_utf8_check (SIMD where
 * the CPU allows) must agree with the converter's own byte-by-byte checks
 * on validity and on the offset of the first invalid sequence; on valid
 * text, dmp_utf8_skip by k units must stop where the first k units of the
 * conversion end. */
#include <string.h>
#include "dmp_fuzz_common.h"

/* The byte offset where the first k units of s end, or -1 inside a pair. */
static int64_t offset_of(const char *s, size_t n, size_t k) {
  size_t i = 0, u = 0;
  while (i < n && u < k) {
    unsigned c = (unsigned char)s[i];
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    u += len == 4 ? 2 : 1;
    if (u > k) return -1;
    i += len;
  }
  return (int64_t)i;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  size_t bad1 = 0, bad2 = 0;
  dmp_ustr u = {0};
  int r1 = dmp_utf8_check(s, size, &bad1), r2 = dmp_utf8_to_u16(s, size, &u, &bad2);
  FUZZ_CHECK(r1 == r2, "dmp_utf8_check and dmp_utf8_to_u16 agree on validity");
  FUZZ_CHECK(r1 == 0 || bad1 == bad2, "dmp_utf8_check and dmp_utf8_to_u16 agree on the first bad byte");
  if (r1 == 0) {
    for (size_t k = 0; k <= u.n + 1; k += 1 + k / 7) {
      size_t at = 0;
      int r = dmp_utf8_skip(s, size, &at, k);
      int64_t want = k > u.n ? (int64_t)size : offset_of(s, size, k);
      if (k > u.n) FUZZ_CHECK(r == 1 && at == size, "dmp_utf8_skip past the end");
      else if (want < 0) FUZZ_CHECK(r == -1, "dmp_utf8_skip inside a surrogate pair");
      else FUZZ_CHECK(r == 0 && (int64_t)at == want, "dmp_utf8_skip stops after k units");
    }
  }
  dmp_ustr_free(&u);
  return 0;
}
