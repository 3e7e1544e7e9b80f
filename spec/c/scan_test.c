/*
 * scan_test.c - the stream reader's delimiter scanner (src/scan.c), in
 * plain C: delimiters split across chunks, "\r\n", the limit, discard
 * mode. Run by `make test` (test-c). Exit status 0 when all pass.
 */
#include <stdio.h>
#include <string.h>
#include "scan.h"

static int failures, checks;
#define CHECK(cond) do { checks++; if (!(cond)) { failures++; \
  fprintf(stderr, "scan_test.c:%d: FAILED: %s\n", __LINE__, #cond); } } while (0)

/* A buffer grown chunk by chunk, as the reader does: scan after each
 * chunk, keeping *scanned between calls. */
static void test_line_split_across_chunks(void) {
  char buf[64];
  size_t n = 0, take = 0, skip = 0, scanned = 0;
  const char *chunks[] = {"hel", "lo\r", "\nrest"};
  int r = CORU_SCAN_NEED;
  for (int i = 0; i < 3 && r == CORU_SCAN_NEED; i++) {
    size_t k = strlen(chunks[i]);
    memcpy(buf + n, chunks[i], k);
    n += k;
    r = coru_scan_line(buf, n, 100, &take, &skip, &scanned);
    if (i < 2) { CHECK(r == CORU_SCAN_NEED); CHECK(scanned == n); }
  }
  CHECK(r == CORU_SCAN_OK);
  CHECK(take == 5 && memcmp(buf, "hello", 5) == 0);   /* "\r\n" left out */
  CHECK(skip == 7);                                   /* both consumed */
}

static void test_line_plain_and_empty(void) {
  size_t take, skip, scanned = 0;
  CHECK(coru_scan_line("a\nb\n", 4, 100, &take, &skip, &scanned) == CORU_SCAN_OK);
  CHECK(take == 1 && skip == 2);
  scanned = 0;
  CHECK(coru_scan_line("\n", 1, 100, &take, &skip, &scanned) == CORU_SCAN_OK);
  CHECK(take == 0 && skip == 1);
  scanned = 0;
  CHECK(coru_scan_line("\r\n", 2, 100, &take, &skip, &scanned) == CORU_SCAN_OK);
  CHECK(take == 0 && skip == 2);
  scanned = 0;   /* a lone "\r" inside a line stays */
  CHECK(coru_scan_line("a\rb\n", 4, 100, &take, &skip, &scanned) == CORU_SCAN_OK);
  CHECK(take == 3 && skip == 4);
}

static void test_line_limit(void) {
  size_t take, skip, scanned = 0;
  /* no end yet, more than max bytes: LONG, nothing to skip */
  CHECK(coru_scan_line("abcdef", 6, 4, &take, &skip, &scanned) == CORU_SCAN_LONG);
  CHECK(skip == 0);
  /* exactly max bytes without end: still waiting */
  scanned = 0;
  CHECK(coru_scan_line("abcd", 4, 4, &take, &skip, &scanned) == CORU_SCAN_NEED);
  /* the line ends here but is too long: LONG with its end known */
  scanned = 0;
  CHECK(coru_scan_line("abcdef\nx", 8, 4, &take, &skip, &scanned) == CORU_SCAN_LONG);
  CHECK(skip == 7);
  /* max bytes then "\r\n": the "\r" does not count */
  scanned = 0;
  CHECK(coru_scan_line("abcd\r\n", 6, 4, &take, &skip, &scanned) == CORU_SCAN_OK);
  CHECK(take == 4);
}

static void test_until_split_delimiter(void) {
  char buf[64];
  size_t n = 0, take = 0, skip = 0, scanned = 0;
  const char *d = "--END--";
  size_t dl = strlen(d);
  const char *chunks[] = {"body-", "-EN", "D--tail"};
  int r = CORU_SCAN_NEED;
  for (int i = 0; i < 3; i++) {
    size_t k = strlen(chunks[i]);
    memcpy(buf + n, chunks[i], k);
    n += k;
    r = coru_scan_until(buf, n, d, dl, 100, &take, &skip, &scanned);
    if (i < 2) CHECK(r == CORU_SCAN_NEED);
    CHECK(scanned <= n);
  }
  CHECK(r == CORU_SCAN_OK);
  CHECK(take == 4 && memcmp(buf, "body", 4) == 0);
  CHECK(skip == 4 + dl);
  /* limit */
  scanned = 0;
  CHECK(coru_scan_until("0123456789", 10, "|", 1, 5, &take, &skip, &scanned) == CORU_SCAN_LONG);
  scanned = 0;
  CHECK(coru_scan_until("012|", 4, "|", 1, 5, &take, &skip, &scanned) == CORU_SCAN_OK);
  CHECK(take == 3 && skip == 4);
}

/* Discard mode: the rest of an overlong record is dropped until the
 * delimiter, which may be split across any number of calls. */
static void test_discard_split(void) {
  const char *d = "\r\n\r\n";
  size_t dl = 4;
  char tail[3];
  size_t tlen = 0;
  CHECK(coru_discard_find(d, dl, tail, &tlen, "xxxx\r", 5) == NULL);
  CHECK(tlen == 3);
  CHECK(coru_discard_find(d, dl, tail, &tlen, "\n", 1) == NULL);
  const char *p = "\r\nnext";
  const char *end = coru_discard_find(d, dl, tail, &tlen, p, 6);
  CHECK(end == p + 2);      /* the record after starts at "next" */
  CHECK(tlen == 0);
  /* one-byte delimiter: no tail needed */
  tlen = 0;
  const char *q = "abc\ndef";
  CHECK(coru_discard_find("\n", 1, NULL, &tlen, q, 7) == q + 4);
  CHECK(coru_discard_find("\n", 1, NULL, &tlen, "abc", 3) == NULL);
  /* a near miss in the tail is not a delimiter */
  tlen = 0;
  CHECK(coru_discard_find(d, dl, tail, &tlen, "ab\r\n", 4) == NULL);
  CHECK(coru_discard_find(d, dl, tail, &tlen, "x\r\n\r\n", 5) != NULL);
}

int main(void) {
  test_line_split_across_chunks();
  test_line_plain_and_empty();
  test_line_limit();
  test_until_split_delimiter();
  test_discard_split();
  printf("scan_test: %d checks, %d failed\n", checks, failures);
  return failures != 0;
}
