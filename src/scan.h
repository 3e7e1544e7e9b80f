/*
 * scan.h - the stream reader's delimiter scanning, pure C (no Lua, no
 * libuv): stream.c uses it, fuzz/stream_scan_fuzz.c fuzzes it.
 */
#ifndef CORU_SCAN_H
#define CORU_SCAN_H

#include <stddef.h>

enum { CORU_SCAN_NEED, CORU_SCAN_OK, CORU_SCAN_LONG };

/* A line in p[0, n): on OK the line is p[0, *take) (without "\n" and a
 * "\r" before it) and *skip bytes are consumed. *scanned (in and out):
 * bytes known to hold no "\n". LONG: longer than max (*skip > 0 if its
 * end is in p). NEED: no line yet. */
int coru_scan_line(const char *p, size_t n, size_t max, size_t *take, size_t *skip, size_t *scanned);
/* The same with the delimiter d[0, dl) (dl >= 1), kept out of the value. */
int coru_scan_until(const char *p, size_t n, const char *d, size_t dl, size_t max,
                    size_t *take, size_t *skip, size_t *scanned);

/* Discarding the rest of an overlong record: where the delimiter ends in
 * p[0, n), or NULL if all of p is discarded. tail (capacity dl - 1, NULL
 * when dl == 1) keeps the last *tlen bytes discarded so far, so that a
 * delimiter split across two calls is found. Start with *tlen = 0. */
const char *coru_discard_find(const char *d, size_t dl, char *tail, size_t *tlen, const char *p, size_t n);

#endif
