/*
 * stream_scan_fuzz.c - libFuzzer harness for the stream reader's scanner
 * (src/scan.c): read_line / read_until over data cut into random chunks,
 * with the maximum line length and the discard of an overlong record,
 * checked against a reference that sees the whole input at once.
 *
 * FUZZ_SRCS: src/scan.c
 *
 * Input: [mode][delimiter length][max][delimiter bytes...][data...]; data
 * bytes are mapped onto a small alphabet (so delimiters occur) and their
 * high bit ends a chunk (so delimiters are split across chunks).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "scan.h"

static const char alphabet[] = "ab\r\nXY";

typedef struct { size_t len; int ok; } rec;    /* what the reader got */

/* The reader as stream.c runs it: a buffer, the scanned count, the discard
 * of an overlong record, fed chunk by chunk; a reader always waiting. */
typedef struct {
  int line;
  const char *d;
  size_t dl, max;
  char *buf;
  size_t len, cap, scanned;
  int discard;
  char *tail;
  size_t tlen;
  rec *out;
  size_t nout;
  const char *data0;   /* for checking the values against the input */
} reader;

static void append(reader *r, const char *p, size_t n) {
  if (r->len + n > r->cap) {
    r->cap = (r->len + n) * 2 + 16;
    r->buf = realloc(r->buf, r->cap);
    if (!r->buf) abort();
  }
  memcpy(r->buf + r->len, p, n);
  r->len += n;
}

static void consume(reader *r, size_t n) {
  memmove(r->buf, r->buf + n, r->len - n);
  r->len -= n;
  r->scanned = 0;
}

static void feed(reader *r, const char *p, size_t n) {
  if (r->discard) {
    const char *end = coru_discard_find(r->d, r->dl, r->tail, &r->tlen, p, n);
    if (!end) return;
    r->discard = 0;
    n -= (size_t)(end - p);
    p = end;
  }
  append(r, p, n);
  for (;;) {
    size_t take = 0, skip = 0, scanned = r->scanned;
    int s = r->line ? coru_scan_line(r->buf, r->len, r->max, &take, &skip, &scanned)
                    : coru_scan_until(r->buf, r->len, r->d, r->dl, r->max, &take, &skip, &scanned);
    if (s == CORU_SCAN_NEED) {
      if (scanned > r->len) abort();   /* scanned never passes the data */
      r->scanned = scanned;
      return;
    }
    if (s == CORU_SCAN_OK) {
      if (take > r->max || skip > r->len || take > skip) abort();
      r->out[r->nout++] = (rec){take, 1};
      consume(r, skip);
      continue;
    }
    r->out[r->nout++] = (rec){0, 0};    /* LONG */
    if (skip) { if (skip > r->len) abort(); consume(r, skip); continue; }
    r->discard = 1;
    r->tlen = 0;
    if (coru_discard_find(r->d, r->dl, r->tail, &r->tlen, r->buf, r->len)) abort();  /* held no delimiter */
    r->len = 0;
    r->scanned = 0;
    return;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t n) {
  if (n < 3) return 0;
  reader r;
  memset(&r, 0, sizeof r);
  r.line = in[0] & 1;
  size_t dl = r.line ? 1 : 1 + in[1] % 6;
  r.max = 1 + in[2] % 40;
  in += 3; n -= 3;
  if (n < dl) return 0;
  char delim[8];
  for (size_t i = 0; i < dl; i++) delim[i] = alphabet[in[i] % 6];
  if (r.line) delim[0] = '\n';
  in += dl; n -= dl;
  r.d = delim;
  r.dl = dl;
  char tail[8];
  r.tail = dl > 1 ? tail : NULL;
  char *data = malloc(n + 1);
  r.out = malloc((n + 2) * sizeof *r.out);
  if (!data || !r.out) abort();
  for (size_t i = 0; i < n; i++) data[i] = alphabet[(in[i] & 0x7f) % 6];
  r.data0 = data;

  /* feed in chunks: a byte with its high bit set ends a chunk */
  size_t from = 0;
  for (size_t i = 0; i < n; i++) {
    if ((in[i] & 0x80) || i + 1 == n) {
      feed(&r, data + from, i + 1 - from);
      from = i + 1;
    }
  }

  /* the reference: records are the data between delimiters (earliest,
   * non-overlapping); a record the reader gets must be that record (for
   * read_line without a "\r" before "\n"); it may be refused as too long
   * only if it is longer than max or its delimiter arrived past max */
  size_t k = 0, start = 0;
  while (start <= n) {
    const char *hit = memmem(data + start, n - start, delim, dl);
    if (!hit) break;
    size_t raw = (size_t)(hit - (data + start));
    size_t val = raw;
    if (r.line && val > 0 && data[start + val - 1] == '\r') val--;
    if (k >= r.nout) abort();                        /* a record was lost */
    rec got = r.out[k++];
    if (got.ok) {
      if (got.len != val) abort();                    /* wrong record */
    } else if (val <= r.max && raw + dl - 1 <= r.max) {
      abort();                                        /* refused a record within the limit */
    }
    start += raw + dl;
  }
  /* at most one more: the unfinished last record, refused as too long */
  if (r.nout > k + 1 || (r.nout == k + 1 && r.out[k].ok)) abort();
  free(data);
  free(r.out);
  free(r.buf);
  return 0;
}
