/* libFuzzer: for texts a and b made from the input, the diff rebuilds both
 * texts and splits no surrogate pair, and apply(from_text(to_text(make(a,
 * b))), a) gives b with every hunk applied. */
#include <string.h>
#include "dmp_fuzz_common.h"

static int split_pair(const dmp_diffs *d) {
  for (size_t i = 0; i < d->n; i++)
    if (d->v[i].n && ((d->v[i].s[0] >= 0xDC00 && d->v[i].s[0] <= 0xDFFF) ||
                      (d->v[i].s[d->v[i].n - 1] >= 0xD800 && d->v[i].s[d->v[i].n - 1] <= 0xDBFF)))
      return 1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  size_t cut = 1 + (data[0] * (size - 1)) / 256;
  dmp_opts o;
  dmp_opts_default(&o);
  o.diff_timeout = 0;  /* deterministic: no deadline, no half-match */
  if (data[1] & 1) { o.match_threshold = 0.375; o.match_distance = 100; o.patch_delete_threshold = 0.375; }
  dmp_ustr a = {0}, b = {0}, t = {0}, out = {0};
  fuzz_text(data + 1, cut - 1, &a);
  fuzz_text(data + cut, size - cut, &b);
  dmp_diffs d = {0};
  dmp_diff_main(&o, a.p, a.n, b.p, b.n, 1, &d);
  dmp_diff_text1(&d, &t);
  FUZZ_CHECK(ueq(&t, &a), "diff_text1 == a");
  t.n = 0;
  dmp_diff_text2(&d, &t);
  FUZZ_CHECK(ueq(&t, &b), "diff_text2 == b");
  FUZZ_CHECK(!split_pair(&d), "no split surrogate pair in diff_main");
  dmp_diff_cleanup_semantic(&o, &d);
  dmp_diff_fix_surrogates(&d);
  FUZZ_CHECK(!split_pair(&d), "no split surrogate pair after cleanup");
  dmp_diffs_free(&d);

  dmp_patches ps = {0}, ps2 = {0};
  dmp_patch_make_texts(&o, a.p, a.n, b.p, b.n, &ps);
  dmp_bstr text = {0};
  dmp_patch_to_text(&ps, &text);
  FUZZ_CHECK(!text.p || !strstr(text.p, "%EF%BF%BD"), "no lone surrogate in patch text");
  /* patch_make's 4-gram index (large texts) gives the same patches as the scans */
  dmp_patches psi = {0};
  dmp_bstr texti = {0};
  dmp_opts oi = o;
  oi.index_min = 0;
  dmp_patch_make_texts(&oi, a.p, a.n, b.p, b.n, &psi);
  dmp_patch_to_text(&psi, &texti);
  FUZZ_CHECK(texti.n == text.n && (!text.n || !memcmp(texti.p, text.p, text.n)), "the index changes nothing");
  dmp_bstr_free(&texti);
  dmp_patches_free(&psi);
  char err[256];
  FUZZ_CHECK(dmp_patch_from_text(text.p ? text.p : "", text.n, &ps2, err, sizeof err) == 0, "patch text parses");
  unsigned char *res;
  size_t nres;
  dmp_patch_apply(&o, &ps2, a.p, a.n, &out, &res, &nres);
  FUZZ_CHECK(ueq(&out, &b), "apply(make(a, b), a) == b");
  for (size_t i = 0; i < nres; i++) FUZZ_CHECK(res[i], "every hunk applies on the exact base");
  check_apply_utf8(&o, &ps2, &a, &out, res, nres);
  free(res);
  dmp_ustr_free(&a);
  dmp_ustr_free(&b);
  dmp_ustr_free(&t);
  dmp_ustr_free(&out);
  dmp_bstr_free(&text);
  dmp_patches_free(&ps);
  dmp_patches_free(&ps2);
  return 0;
}
