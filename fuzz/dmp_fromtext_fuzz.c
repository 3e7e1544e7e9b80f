/* libFuzzer: dmp_patch_from_text on arbitrary bytes. What it accepts must
 * print back (patch_to_text) to a text that parses to the same print, and
 * apply to a text made from the same bytes without crashing. */
#include <string.h>
#include "dmp_fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dmp_patches ps = {0}, ps2 = {0};
  char err[256];
  if (dmp_patch_from_text((const char *)data, size, &ps, err, sizeof err)) {
    FUZZ_CHECK(err[0] != 0, "an error message");
    return 0;
  }
  dmp_bstr t1 = {0}, t2 = {0};
  dmp_patch_to_text(&ps, &t1);
  /* "@@ -0,00 ..." reads as start -1 with length 0, which prints as "-1,0"
   * and does not parse again: the reference does the same. */
  int negative = 0;
  for (size_t i = 0; i < ps.n; i++) negative |= ps.v[i].start1 < 0 || ps.v[i].start2 < 0;
  if (!negative) {
    FUZZ_CHECK(dmp_patch_from_text(t1.p, t1.n, &ps2, err, sizeof err) == 0, "re-parse of patch_to_text");
    dmp_patch_to_text(&ps2, &t2);
    FUZZ_CHECK(t1.n == t2.n && !memcmp(t1.p, t2.p, t1.n), "patch text round trip");
  }
  dmp_opts o;
  dmp_opts_default(&o);
  o.diff_timeout = 0.05;
  dmp_ustr base = {0}, out = {0};
  fuzz_text(data, size > 200 ? 200 : size, &base);
  unsigned char *res;
  size_t nres;
  dmp_patch_apply(&o, &ps, base.p, base.n, &out, &res, &nres);
  check_apply_utf8(&o, &ps, &base, &out, res, nres);
  free(res);
  dmp_ustr_free(&base);
  dmp_ustr_free(&out);
  dmp_bstr_free(&t1);
  dmp_bstr_free(&t2);
  dmp_patches_free(&ps);
  dmp_patches_free(&ps2);
  return 0;
}
