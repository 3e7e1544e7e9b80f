/*
 * dmp_patch_text.c - the text form of patches: patch_toText (each diff's
 * text escaped as JavaScript's encodeURI) and patch_fromText (decodeURI,
 * the reference's header and line rules, Floobits' empty lines). See dmp.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dmp.h"

/* encodeURI leaves these (and alphanumerics) alone. */
static int uri_keep(unsigned c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c && strchr("-_.!~*'();/?:@&=+$,#", (int)c) != NULL;
}

void dmp_encode_uri(const dmp_u16 *s, size_t n, dmp_bstr *out) {
  static const char hex[] = "0123456789ABCDEF";
  char buf[12];
  for (size_t i = 0; i < n; i++) {
    unsigned c = s[i];
    if (c < 0x80 && (uri_keep(c) || c == ' ')) {  /* ' ': encodeURI's %20, turned back */
      char ch = (char)c;
      dmp_bstr_add(out, &ch, 1);
      continue;
    }
    unsigned cp = c;
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
      cp = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
      i++;
    } else if (c >= 0xD800 && c <= 0xDFFF) {
      cp = 0xFFFD;  /* a lone surrogate: encodeURI throws; never made by this port */
    }
    unsigned char u[4];
    int k;
    if (cp < 0x80) { u[0] = (unsigned char)cp; k = 1; }
    else if (cp < 0x800) { u[0] = (unsigned char)(0xC0 | (cp >> 6)); u[1] = (unsigned char)(0x80 | (cp & 0x3F)); k = 2; }
    else if (cp < 0x10000) {
      u[0] = (unsigned char)(0xE0 | (cp >> 12)); u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
      u[2] = (unsigned char)(0x80 | (cp & 0x3F)); k = 3;
    } else {
      u[0] = (unsigned char)(0xF0 | (cp >> 18)); u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
      u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (unsigned char)(0x80 | (cp & 0x3F)); k = 4;
    }
    for (int j = 0; j < k; j++) {
      buf[3 * j] = '%';
      buf[3 * j + 1] = hex[u[j] >> 4];
      buf[3 * j + 2] = hex[u[j] & 15];
    }
    dmp_bstr_add(out, buf, (size_t)(3 * k));
  }
}

/* Decimal digits of v >= 0 at the end of buf[0, 24); returns where they start. */
static char *dec(char *end, int64_t v) {
  uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
  do { *--end = (char)('0' + u % 10); u /= 10; } while (u);
  if (v < 0) *--end = '-';
  return end;
}

/* The reference's coordinates: "start,0", "start+1" or "start+1,len". */
static void coords(dmp_bstr *out, int64_t start, int64_t len) {
  char buf[48], *end = buf + sizeof buf, *p = end;
  if (len == 0) {
    *--p = '0';
    *--p = ',';
    p = dec(p, start);
  } else if (len == 1) {
    p = dec(p, start + 1);
  } else {
    p = dec(p, len);
    *--p = ',';
    p = dec(p, start + 1);
  }
  dmp_bstr_add(out, p, (size_t)(end - p));
}

void dmp_patch_to_text(const dmp_patches *ps, dmp_bstr *out) {
  for (size_t x = 0; x < ps->n; x++) {
    const dmp_patch *p = &ps->v[x];
    dmp_bstr_add(out, "@@ -", 4);
    coords(out, p->start1, p->length1);
    dmp_bstr_add(out, " +", 2);
    coords(out, p->start2, p->length2);
    dmp_bstr_add(out, " @@\n", 4);
    for (size_t i = 0; i < p->diffs.n; i++) {
      const dmp_diff *d = &p->diffs.v[i];
      dmp_bstr_add(out, d->op == DMP_INSERT ? "+" : d->op == DMP_DELETE ? "-" : " ", 1);
      dmp_encode_uri(d->s, d->n, out);
      dmp_bstr_add(out, "\n", 1);
    }
  }
  if (!out->p) dmp_bstr_add(out, "", 0);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int pct(const char *s, size_t n, size_t i) {  /* the byte of "%XX" at i, or -1 */
  if (i + 3 > n || s[i] != '%') return -1;
  int h = hexval((unsigned char)s[i + 1]), l = hexval((unsigned char)s[i + 2]);
  return h < 0 || l < 0 ? -1 : h * 16 + l;
}

/* decodeURI (appends UTF-8 to out). Returns 0, or -1 (URIError). */
static int decode_uri(const char *s, size_t n, dmp_bstr *out) {
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && s[j] != '%') j++;
    dmp_bstr_add(out, s + i, j - i);
    if (j == n) break;
    i = j;
    int b = pct(s, n, i);
    if (b < 0) return -1;
    if (b < 0x80) {
      if (b && strchr(";/?:@&=+$,#", b)) dmp_bstr_add(out, s + i, 3);  /* reserved: kept escaped */
      else { char c = (char)b; dmp_bstr_add(out, &c, 1); }
      i += 3;
      continue;
    }
    int len = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
    if (!len) return -1;
    unsigned char u[4];
    unsigned cp = (unsigned)b & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    u[0] = (unsigned char)b;
    for (int k = 1; k < len; k++) {
      int c = pct(s, n, i + 3 * (size_t)k);
      if (c < 0 || (c & 0xC0) != 0x80) return -1;
      u[k] = (unsigned char)c;
      cp = (cp << 6) | ((unsigned)c & 0x3F);
    }
    unsigned min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    dmp_bstr_add(out, (const char *)u, (size_t)len);
    i += 3 * (size_t)len;
  }
  return 0;
}

/* \d+ as parseInt reads it; numbers past 2^53 are refused (JavaScript would
 * round them). Returns the index after the digits, or 0 on failure. */
static size_t digits(const char *s, size_t n, size_t i, int64_t *v, int *toobig) {
  size_t j = i;
  uint64_t x = 0;
  while (j < n && s[j] >= '0' && s[j] <= '9') {
    x = x * 10 + (uint64_t)(s[j] - '0');
    if (x > ((uint64_t)1 << 53)) *toobig = 1, x = (uint64_t)1 << 53;
    j++;
  }
  *v = (int64_t)x;
  return j;
}

/* /^@@ -(\d+),?(\d*) \+(\d+),?(\d*) @@$/ with the reference's reading. */
static int parse_header(const char *s, size_t n, dmp_patch *p, int *toobig) {
  if (n < 4 || memcmp(s, "@@ -", 4)) return -1;
  size_t i = 4;
  for (int side = 0; side < 2; side++) {
    int64_t start, len = 0;
    size_t j = digits(s, n, i, &start, toobig);
    if (j == i) return -1;
    i = j;
    if (i < n && s[i] == ',') i++;
    j = digits(s, n, i, &len, toobig);
    size_t nd = j - i;
    if (nd == 0) { start--; len = 1; }
    else if (nd == 1 && s[i] == '0') { len = 0; }
    else { start--; }
    i = j;
    if (side == 0) {
      p->start1 = start;
      p->length1 = len;
      if (i + 2 > n || s[i] != ' ' || s[i + 1] != '+') return -1;
      i += 2;
    } else {
      p->start2 = start;
      p->length2 = len;
    }
  }
  return i + 3 == n && !memcmp(s + i, " @@", 3) ? 0 : -1;
}

static void set_err(char *err, size_t errlen, const char *what, const char *line, size_t n) {
  if (!err || !errlen) return;
  int k = n > 80 ? 80 : (int)n;
  snprintf(err, errlen, "%s%.*s%s", what, k, line, n > 80 ? "..." : "");
}

int dmp_patch_from_text(const char *s, size_t n, dmp_patches *out, char *err, size_t errlen) {
  size_t bad;
  if (dmp_utf8_check(s, n, &bad)) {
    if (err) snprintf(err, errlen, "invalid UTF-8 at byte %zu of the patch text", bad + 1);
    return -1;
  }
  if (n == 0) return 0;
  dmp_bstr line = {0};
  dmp_ustr t = {0};  /* a line's text, as UTF-16 */
  size_t pos = 0;
  int more = 1;  /* text.split('\n') yields one more line after the last '\n' */
  dmp_patch *p = NULL;
  int in_hunk = 0, rc = 0;
  while (more) {
    const char *ls = s + pos;
    const char *nl = memchr(ls, '\n', n - pos);
    size_t ln = nl ? (size_t)(nl - ls) : n - pos;
    more = nl != NULL;
    if (!in_hunk) {
      int toobig = 0;
      p = dmp_patches_add(out);
      if (parse_header(ls, ln, p, &toobig)) { set_err(err, errlen, "Invalid patch string: ", ls, ln); rc = -1; break; }
      if (toobig) { set_err(err, errlen, "Number too large in patch header: ", ls, ln); rc = -1; break; }
      in_hunk = 1;
      pos += ln + 1;
      continue;
    }
    char sign = ln ? ls[0] : 0;
    line.n = 0;
    if (decode_uri(ls + (ln ? 1 : 0), ln ? ln - 1 : 0, &line)) {
      set_err(err, errlen, "Illegal escape in patch_fromText: ", ls, ln);
      rc = -1;
      break;
    }
    if (sign == '@') { in_hunk = 0; more = 1; continue; }  /* this line is the next header */
    if (sign == '-' || sign == '+' || sign == ' ') {
      t.n = 0;
      if (dmp_utf8_to_u16(line.p ? line.p : "", line.n, &t, &bad)) {
        set_err(err, errlen, "Illegal escape in patch_fromText: ", ls, ln);
        rc = -1;
        break;
      }
      dmp_diffs_push(&p->diffs, sign == '-' ? DMP_DELETE : sign == '+' ? DMP_INSERT : DMP_EQUAL, t.p, t.n);
    } else if (ln) {
      char what[48];
      unsigned char c = (unsigned char)sign;
      if (c >= 0x20 && c < 0x7F) snprintf(what, sizeof what, "Invalid patch mode \"%c\" in: ", c);
      else snprintf(what, sizeof what, "Invalid patch mode (byte 0x%02X) in: ", c);
      set_err(err, errlen, what, ls, ln);
      rc = -1;
      break;
    }
    pos += ln + 1;
  }
  dmp_bstr_free(&line);
  dmp_ustr_free(&t);
  if (rc) dmp_patches_free(out);
  return rc;
}
