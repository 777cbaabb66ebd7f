/* unicode.c — the Unicode pieces the tokenizers need: UTF-8 decoding, the class table and
 * lower-case mappings generated from unicodedata (unicode_data.h), lossy UTF-8 as Rust's
 * from_utf8_lossy, and GPT2's byte <-> character mapping. */
#include <string.h>

#include "text/tok_internal.h"
#include "text/unicode_data.h"

unsigned tk_uc_class(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    return ulc_uc_stage2[ulc_uc_stage1[cp >> 8]][cp & 0xff];
}

uint32_t tk_utf8_next(const unsigned char *p, size_t n, size_t *len) {
    unsigned c = p[0];
    if (c < 0x80 || n < 2) {
        *len = 1;
        return c;
    }
    if (c < 0xe0) {
        *len = 2;
        return ((c & 0x1fu) << 6) | (p[1] & 0x3fu);
    }
    if (c < 0xf0 || n < 4) {
        *len = 3;
        return ((c & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
    }
    *len = 4;
    return ((c & 0x07u) << 18) | ((p[1] & 0x3fu) << 12) | ((p[2] & 0x3fu) << 6) | (p[3] & 0x3fu);
}

size_t tk_utf8_put(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xc0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

int tk_uc_lower(uint32_t cp, uint32_t out[3]) {
    size_t lo = 0, hi = sizeof ulc_uc_lower / sizeof ulc_uc_lower[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ulc_uc_lower[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < sizeof ulc_uc_lower / sizeof ulc_uc_lower[0] && ulc_uc_lower[lo][0] == cp) {
        int k = 0;
        for (int i = 1; i < 4 && ulc_uc_lower[lo][i]; i++) out[k++] = ulc_uc_lower[lo][i];
        return k;
    }
    out[0] = cp;
    return 1;
}

/* The length of the valid prefix of a UTF-8 sequence at p[0..n) (its full length when valid):
 * the "maximal subpart" rule of Unicode 3.9 that from_utf8_lossy follows. */
static size_t valid_prefix(const unsigned char *p, size_t n, int *ok) {
    unsigned c = p[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xbf;
    *ok = 0;
    if (c < 0x80) {
        *ok = 1;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) need = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        need = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return 1;
    }
    size_t i = 1;
    if (i >= n || p[i] < lo || p[i] > hi) return 1;
    for (i = 2; i < need; i++)
        if (i >= n || p[i] < 0x80 || p[i] > 0xbf) return i;
    *ok = 1;
    return need;
}

size_t tk_utf8_lossy(const unsigned char *p, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int ok;
        size_t k = valid_prefix(p + i, n - i, &ok);
        if (ok) {
            memcpy(out + o, p + i, k);
            o += k;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
        }
        i += k;
    }
    return o;
}

/* bytes_to_unicode: '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves; the
 * other 68 bytes, in order, for U+0100 onwards. */
static int printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

uint32_t tk_byte_char(unsigned b) {
    if (printable(b)) return b;
    unsigned k = 0;
    for (unsigned x = 0; x < b; x++) k += !printable(x);
    return 0x100 + k;
}

int tk_char_byte(uint32_t cp) {
    if (cp < 0x100) return printable(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68) return -1;
    unsigned k = cp - 0x100;
    for (unsigned b = 0; b < 256; b++)
        if (!printable(b) && k-- == 0) return (int)b;
    return -1;
}
