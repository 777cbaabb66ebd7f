/*
 * nfc.c — Unicode Normalization Form C (UAX #15) for CLIP's normalizer: full canonical
 * decomposition (the tables of unicode_data.h applied recursively; Hangul syllables by
 * arithmetic), canonical ordering of combining marks by their class, then canonical composition
 * (a mark composes with the last starter unless a mark of the same or a higher class, or a
 * starter, stands between; Hangul L+V and LV+T by arithmetic). Text below U+0300 is NFC already
 * and is copied.
 */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"
#include "text/unicode_data.h"

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7, LCOUNT = 19, VCOUNT = 21,
       TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static unsigned ccc_of(uint32_t cp) {
    if (cp < 0x300) return 0;
    size_t lo = 0, hi = sizeof ulc_uc_ccc / sizeof ulc_uc_ccc[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ulc_uc_ccc[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < sizeof ulc_uc_ccc / sizeof ulc_uc_ccc[0] && ulc_uc_ccc[lo][0] == cp ? ulc_uc_ccc[lo][1] : 0;
}

static const uint32_t *decomp_of(uint32_t cp) {
    size_t lo = 0, hi = sizeof ulc_uc_decomp / sizeof ulc_uc_decomp[0];
    if (cp < 0xC0) return NULL;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ulc_uc_decomp[mid][0] < cp) lo = mid + 1;
        else hi = mid;
    }
    return lo < sizeof ulc_uc_decomp / sizeof ulc_uc_decomp[0] && ulc_uc_decomp[lo][0] == cp ? ulc_uc_decomp[lo] : NULL;
}

/* Appends cp's full canonical decomposition to out (at most 4 code points per character). */
static size_t decompose(uint32_t cp, uint32_t *out, int depth) {
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE, t = s % TCOUNT;
        out[0] = LBASE + s / NCOUNT;
        out[1] = VBASE + (s % NCOUNT) / TCOUNT;
        if (!t) return 2;
        out[2] = TBASE + t;
        return 3;
    }
    const uint32_t *d = depth < 8 ? decomp_of(cp) : NULL;
    if (!d) {
        out[0] = cp;
        return 1;
    }
    size_t n = decompose(d[1], out, depth + 1);
    if (d[2]) n += decompose(d[2], out + n, depth + 1);
    return n;
}

/* The primary composite of (a, b), or 0. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE && b < TBASE + TCOUNT)
        return a + (b - TBASE);
    size_t lo = 0, hi = sizeof ulc_uc_comp / sizeof ulc_uc_comp[0];
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ulc_uc_comp[mid][0] < a || (ulc_uc_comp[mid][0] == a && ulc_uc_comp[mid][1] < b)) lo = mid + 1;
        else hi = mid;
    }
    if (lo < sizeof ulc_uc_comp / sizeof ulc_uc_comp[0] && ulc_uc_comp[lo][0] == a && ulc_uc_comp[lo][1] == b)
        return ulc_uc_comp[lo][2];
    return 0;
}

ulc_status tk_nfc(const char *in, size_t n, char **out, size_t *len, ulc_ctx *ctx) {
    const unsigned char *u = (const unsigned char *)in;
    size_t i = 0;
    while (i < n && u[i] < 0xcc) i++;
    if (i == n) { /* nothing at or above U+0300 */
        *out = malloc(n + 1);
        if (!*out) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory normalizing text");
        memcpy(*out, in, n);
        *len = n;
        return ULC_OK;
    }
    uint32_t *cp = malloc((4 * n + 4) * sizeof *cp);
    unsigned char *cc = malloc(4 * n + 4);
    char *res = malloc(4 * n + 4);
    if (!cp || !cc || !res) {
        free(cp), free(cc), free(res);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory normalizing text");
    }
    size_t m = 0, l;
    for (i = 0; i < n; i += l) m += decompose(tk_utf8_next(u + i, n - i, &l), cp + m, 0);
    for (size_t k = 0; k < m; k++) cc[k] = (unsigned char)ccc_of(cp[k]);
    for (size_t k = 1; k < m; k++) /* canonical ordering: a stable insertion sort of mark runs */
        for (size_t j = k; j > 0 && cc[j] && cc[j - 1] > cc[j]; j--) {
            uint32_t t = cp[j];
            unsigned char c = cc[j];
            cp[j] = cp[j - 1], cc[j] = cc[j - 1];
            cp[j - 1] = t, cc[j - 1] = c;
        }
    size_t w = 0, starter = (size_t)-1;
    int last_cc = -1; /* the class of the last character kept after the starter */
    for (size_t k = 0; k < m; k++) {
        uint32_t c;
        int blocked = last_cc != -1 && (last_cc == 0 || last_cc >= cc[k]);
        if (starter != (size_t)-1 && !blocked && (c = compose(cp[starter], cp[k])) != 0) {
            cp[starter] = c;
            continue;
        }
        if (!cc[k]) starter = w, last_cc = -1;
        else last_cc = cc[k];
        cp[w] = cp[k], cc[w++] = cc[k];
    }
    size_t o = 0;
    for (size_t k = 0; k < w; k++) o += tk_utf8_put(cp[k], res + o);
    free(cp), free(cc);
    *out = res, *len = o;
    return ULC_OK;
}
