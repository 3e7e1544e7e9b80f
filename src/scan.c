/*
 * scan.c - delimiter scanning of the stream reader (see scan.h).
 */
#define _GNU_SOURCE
#include <string.h>
#include "scan.h"

int coru_scan_line(const char *p, size_t n, size_t max, size_t *take, size_t *skip, size_t *scanned) {
  size_t from = *scanned;
  const char *nl = from < n ? memchr(p + from, '\n', n - from) : NULL;
  if (!nl) {
    *scanned = n;
    *skip = 0;
    return n > max ? CORU_SCAN_LONG : CORU_SCAN_NEED;
  }
  size_t i = (size_t)(nl - p);
  *skip = i + 1;
  *take = (i > 0 && p[i - 1] == '\r') ? i - 1 : i;
  return *take > max ? CORU_SCAN_LONG : CORU_SCAN_OK;
}

int coru_scan_until(const char *p, size_t n, const char *d, size_t dl, size_t max,
                    size_t *take, size_t *skip, size_t *scanned) {
  size_t from = *scanned;
  const char *hit = from <= n && n - from >= dl ? memmem(p + from, n - from, d, dl) : NULL;
  if (!hit) {
    *scanned = n >= dl ? n - dl + 1 : 0;
    *skip = 0;
    return n > max ? CORU_SCAN_LONG : CORU_SCAN_NEED;
  }
  *take = (size_t)(hit - p);
  *skip = *take + dl;
  return *take > max ? CORU_SCAN_LONG : CORU_SCAN_OK;
}

const char *coru_discard_find(const char *d, size_t dl, char *tail, size_t *tlen, const char *p, size_t n) {
  size_t t = *tlen;
  /* a delimiter that began in the tail: the longest such start is the earliest */
  for (size_t k = t < dl - 1 ? t : dl - 1; k >= 1; k--) {
    if (n < dl - k || memcmp(tail + t - k, d, k) != 0) continue;
    if (memcmp(p, d + k, dl - k) == 0) { *tlen = 0; return p + (dl - k); }
  }
  const char *hit = memmem(p, n, d, dl);
  if (hit) { *tlen = 0; return hit + dl; }
  if (dl > 1) {   /* keep the last dl - 1 bytes of tail + p */
    size_t keep = dl - 1;
    if (n >= keep) { memcpy(tail, p + n - keep, keep); t = keep; }
    else {
      size_t from_tail = t + n > keep ? keep - n : t;
      memmove(tail, tail + t - from_tail, from_tail);
      memcpy(tail + from_tail, p, n);
      t = from_tail + n;
    }
    *tlen = t;
  }
  return NULL;
}
