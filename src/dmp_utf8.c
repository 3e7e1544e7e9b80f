/*
 * dmp_utf8.c - UTF-8 for the diff-match-patch core: strict validation
 * (SIMD where the CPU has SSSE3), UTF-8 <-> UTF-16, and walking a valid
 * text by UTF-16 units. Calls only dmp_text.c. See dmp.h.
 */
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include "dmp.h"

/* ------------------------------------------------------------ convert */

int dmp_utf8_to_u16(const char *str, size_t n, dmp_ustr *out, size_t *bad) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0, need = out->n + n;
  if (need > out->cap || !out->p) {
    out->p = dmp_xrealloc(out->p, (need ? need : 1) * sizeof *out->p);
    out->cap = need ? need : 1;
  }
  dmp_u16 *o = out->p + out->n;
  while (i < n) {
#ifdef __SSE2__
    if (i + 16 <= n) {  /* sixteen ASCII bytes at once, or the ASCII ones before the first other */
      __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
      unsigned hi = (unsigned)_mm_movemask_epi8(v);
      __m128i z = _mm_setzero_si128();
      _mm_storeu_si128((__m128i *)o, _mm_unpacklo_epi8(v, z));
      _mm_storeu_si128((__m128i *)(o + 8), _mm_unpackhi_epi8(v, z));
      unsigned k = hi ? (unsigned)__builtin_ctz(hi) : 16;
      o += k;
      i += k;
      if (k == 16) continue;
    }
#endif
    if (i + 8 <= n) {  /* eight ASCII bytes at once */
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!(w & 0x8080808080808080ull)) {
        for (int k = 0; k < 8; k++) o[k] = s[i + k];
        o += 8;
        i += 8;
        continue;
      }
    }
    unsigned c = s[i];
    if (c < 0x80) { *o++ = (dmp_u16)c; i++; continue; }
    if (c >= 0xC2 && c <= 0xDF && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) {  /* the common two-byte form */
      *o++ = (dmp_u16)(((c & 0x1F) << 6) | (s[i + 1] & 0x3F));
      i += 2;
      continue;
    }
    unsigned cp, len, min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else goto fail;
    if (i + len > n) goto fail;
    for (unsigned k = 1; k < len; k++) {
      unsigned cc = s[i + k];
      if ((cc & 0xC0) != 0x80) goto fail;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto fail;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      *o++ = (dmp_u16)(0xD800 | (cp >> 10));
      *o++ = (dmp_u16)(0xDC00 | (cp & 0x3FF));
    } else {
      *o++ = (dmp_u16)cp;
    }
    i += len;
  }
  out->n = (size_t)(o - out->p);
  return 0;
fail:
  if (bad) *bad = i;
  return -1;
}

/* The validator byte by byte: 0, or -1 with *bad (if not NULL) the offset
 * of the first invalid sequence. */
static int check_scalar(const char *str, size_t n, size_t *bad) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < n) {
#ifdef __SSE2__
    if (i + 16 <= n) {  /* the ASCII bytes among the next sixteen, at once */
      unsigned hi = (unsigned)_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(s + i)));
      i += hi ? (unsigned)__builtin_ctz(hi) : 16;
      if (!hi) continue;
    }
#endif
    if (i + 8 <= n) {
      uint64_t w;
      memcpy(&w, s + i, 8);
      if (!(w & 0x8080808080808080ull)) { i += 8; continue; }
    }
    unsigned c = s[i], cp, len, min;
    if (c < 0x80) { i++; continue; }
    if (c >= 0xC2 && c <= 0xDF && i + 1 < n && (s[i + 1] & 0xC0) == 0x80) { i += 2; continue; }  /* two bytes */
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else break;
    if (i + len > n) break;
    unsigned k;
    for (k = 1; k < len && (s[i + k] & 0xC0) == 0x80; k++) cp = (cp << 6) | (s[i + k] & 0x3F);
    if (k < len || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) break;
    i += len;
  }
  if (i < n) {
    if (bad) *bad = i;
    return -1;
  }
  return 0;
}

void dmp_u16_to_utf8(const dmp_u16 *s, size_t n, dmp_bstr *out) {
  if (out->n + 3 * n + 1 > out->cap) {
    out->cap = out->n + 3 * n + 1;
    out->p = dmp_xrealloc(out->p, out->cap);
  }
  unsigned char *o = (unsigned char *)out->p + out->n;
  size_t i = 0;
  while (i < n) {
#ifdef __SSE2__
    if (i + 8 <= n) {  /* the ASCII units among the next eight, at once (room: 3 bytes a unit) */
      __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
      unsigned hi = (unsigned)_mm_movemask_epi8(_mm_cmpgt_epi16(_mm_add_epi16(v, _mm_set1_epi16((short)0x8000)),
                                                                _mm_set1_epi16((short)(0x8000 + 0x7F - 0x10000))));
      _mm_storel_epi64((__m128i *)o, _mm_packus_epi16(v, v));
      unsigned k = hi ? (unsigned)__builtin_ctz(hi) / 2 : 8;
      o += k;
      i += k;
      if (k == 8) continue;
    }
#endif
    unsigned c = s[i++];
    if (c < 0x80) { *o++ = (unsigned char)c; continue; }
    if (c < 0x800) {
      *o++ = (unsigned char)(0xC0 | (c >> 6));
      *o++ = (unsigned char)(0x80 | (c & 0x3F));
      continue;
    }
    if (c >= 0xD800 && c <= 0xDBFF && i < n && s[i] >= 0xDC00 && s[i] <= 0xDFFF) {
      unsigned cp = 0x10000 + ((c - 0xD800) << 10) + (s[i] - 0xDC00);
      i++;
      *o++ = (unsigned char)(0xF0 | (cp >> 18));
      *o++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
      *o++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
      *o++ = (unsigned char)(0x80 | (cp & 0x3F));
      continue;
    }
    if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD;  /* a lone surrogate */
    *o++ = (unsigned char)(0xE0 | (c >> 12));
    *o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    *o++ = (unsigned char)(0x80 | (c & 0x3F));
  }
  out->n = (size_t)((char *)o - out->p);
  out->p[out->n] = 0;
}

/* ----------------------------------------------------------- validate */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* Sixteen bytes at a time by three table lookups on nibbles, after Keiser
 * and Lemire, "Validating UTF-8 In Less Than One Instruction Per Byte"
 * (2021): each pair of a byte and the one before it is classified by the
 * high nibble of the first, its low nibble and the high nibble of the
 * second; a class the three agree on is an error (overlong, surrogate,
 * past U+10FFFF, a lead without its continuation, a continuation too
 * many), except two continuations, which must sit where a 3- or 4-byte
 * lead two or three bytes back expects them. Only says whether the text
 * is valid: the scalar pass finds where it is not. */
enum { TOO_SHORT = 1, TOO_LONG = 2, OVERLONG_3 = 4, TOO_LARGE = 8, SURROGATE = 16, OVERLONG_2 = 32,
       TOO_LARGE_1000 = 64, OVERLONG_4 = 64, TWO_CONTS = 128, CARRY = TOO_SHORT | TOO_LONG | TWO_CONTS };

#define B(x) ((char)(x))
__attribute__((target("ssse3"))) static int valid_ssse3(const unsigned char *s, size_t n) {
  const __m128i hi1 = _mm_setr_epi8(
      TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG,  /* 0___ ascii */
      B(TWO_CONTS), B(TWO_CONTS), B(TWO_CONTS), B(TWO_CONTS),                          /* 10__ continuation */
      TOO_SHORT | OVERLONG_2, TOO_SHORT, TOO_SHORT | OVERLONG_3 | SURROGATE,           /* 1100, 1101, 1110 */
      TOO_SHORT | TOO_LARGE | TOO_LARGE_1000 | OVERLONG_4);                            /* 1111 */
  const __m128i lo1 = _mm_setr_epi8(
      B(CARRY | OVERLONG_3 | OVERLONG_2 | OVERLONG_4), B(CARRY | OVERLONG_2), B(CARRY), B(CARRY),
      B(CARRY | TOO_LARGE), B(CARRY | TOO_LARGE | TOO_LARGE_1000), B(CARRY | TOO_LARGE | TOO_LARGE_1000),
      B(CARRY | TOO_LARGE | TOO_LARGE_1000), B(CARRY | TOO_LARGE | TOO_LARGE_1000),
      B(CARRY | TOO_LARGE | TOO_LARGE_1000), B(CARRY | TOO_LARGE | TOO_LARGE_1000),
      B(CARRY | TOO_LARGE | TOO_LARGE_1000), B(CARRY | TOO_LARGE | TOO_LARGE_1000),
      B(CARRY | TOO_LARGE | TOO_LARGE_1000 | SURROGATE), B(CARRY | TOO_LARGE | TOO_LARGE_1000),
      B(CARRY | TOO_LARGE | TOO_LARGE_1000));
  const __m128i hi2 = _mm_setr_epi8(
      TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT,  /* then ascii */
      B(TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE_1000 | OVERLONG_4),        /* then 1000 */
      B(TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE),                          /* then 1001 */
      B(TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE),                            /* then 101_ */
      B(TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE),
      TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT);                                            /* then 11__ */
  /* a last byte above these starts a character the block does not finish */
  const __m128i max = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, B(0xEF), B(0xDF), B(0xBF));
  const __m128i nib = _mm_set1_epi8(0x0F), zero = _mm_setzero_si128();
  __m128i prev = zero, incomplete = zero, err = zero;
  unsigned char tail[16];
  for (size_t i = 0; i <= n; i += 16) {
    __m128i in;
    if (i + 16 <= n) {
      in = _mm_loadu_si128((const __m128i *)(s + i));
    } else {  /* the last bytes, then zeros (ASCII): a character they cut is too short */
      memset(tail, 0, sizeof tail);
      memcpy(tail, s + i, n - i);
      in = _mm_loadu_si128((const __m128i *)tail);
    }
    if (!_mm_movemask_epi8(in)) {  /* ASCII: only the previous block's last character can be wrong */
      err = _mm_or_si128(err, incomplete);
      incomplete = zero;
    } else {
      __m128i p1 = _mm_alignr_epi8(in, prev, 15), p2 = _mm_alignr_epi8(in, prev, 14),
              p3 = _mm_alignr_epi8(in, prev, 13);
      __m128i sc = _mm_and_si128(_mm_and_si128(_mm_shuffle_epi8(hi1, _mm_and_si128(_mm_srli_epi16(p1, 4), nib)),
                                               _mm_shuffle_epi8(lo1, _mm_and_si128(p1, nib))),
                                 _mm_shuffle_epi8(hi2, _mm_and_si128(_mm_srli_epi16(in, 4), nib)));
      __m128i third = _mm_subs_epu8(p2, _mm_set1_epi8(B(0xE0 - 0x80))), fourth = _mm_subs_epu8(p3, _mm_set1_epi8(B(0xF0 - 0x80)));
      __m128i must = _mm_and_si128(_mm_or_si128(third, fourth), _mm_set1_epi8(B(0x80)));
      err = _mm_or_si128(err, _mm_xor_si128(must, sc));
      incomplete = _mm_subs_epu8(in, max);
    }
    prev = in;
  }
  return _mm_movemask_epi8(_mm_cmpeq_epi8(err, zero)) == 0xFFFF;
}
#undef B

static int have_ssse3(void) {
  static int v = -1;
  if (v < 0) v = __builtin_cpu_supports("ssse3") ? 1 : 0;
  return v;
}
#endif

int dmp_utf8_check(const char *str, size_t n, size_t *bad) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (n >= 16 && have_ssse3() && valid_ssse3((const unsigned char *)str, n)) return 0;
#endif
  return check_scalar(str, n, bad);
}

/* ------------------------------------------------------- UTF-8 walking */

static int is_cont(unsigned char c) { return (c & 0xC0) == 0x80; }

int dmp_utf8_skip(const char *str, size_t n, size_t *at, uint64_t k) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = *at;
#ifdef __SSE2__
  /* a block's units: its bytes but the continuations, plus one more for
   * each 4-byte lead (two units); a character a block cuts is counted at
   * its lead, its continuations are passed below */
  const __m128i lead = _mm_set1_epi8((char)0xC0), lead4 = _mm_set1_epi8((char)0xEF), zero = _mm_setzero_si128();
  const __m128i one = _mm_set1_epi8(1);
  while (k >= 32 && i + 16 <= n) {  /* (a block has at most 32 units) as signed bytes: continuations are
                                     * below 0xC0, 4-byte leads above 0xEF */
    __m128i v = _mm_loadu_si128((const __m128i *)(s + i));
    __m128i cont = _mm_cmplt_epi8(v, lead), four = _mm_and_si128(_mm_cmpgt_epi8(v, lead4), _mm_cmplt_epi8(v, zero));
    /* each byte's units (1, 0 for a continuation, 2 for a 4-byte lead), summed by halves */
    __m128i u = _mm_sub_epi8(_mm_add_epi8(one, cont), four);
    __m128i sum = _mm_sad_epu8(u, zero);
    unsigned units = (unsigned)(_mm_cvtsi128_si32(sum) + _mm_extract_epi16(sum, 4));
    k -= units;
    i += 16;
  }
#endif
  while (i < n && (k || is_cont(s[i]))) {
    unsigned c = s[i];
    if (c >= 0xF0) {
      if (k < 2) break;  /* unit k falls inside this astral character */
      k -= 2;
    } else if (!is_cont((unsigned char)c)) {
      k--;
    }
    i++;
  }
  *at = i;
  if (k == 0) return 0;
  return i >= n ? 1 : -1;
}
