/*
 * pretok.c — the pre-tokenizers' regexes as hand-written scanners over the Unicode class table
 * (unicode.c), each giving exactly the matches Oniguruma gives for the pattern (leftmost
 * alternative first, greedy runs, the one lookahead resolved by hand):
 *
 *   GPT2 (ByteLevel's use_regex): 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|
 *        \s+(?!\S)|\s+  — every byte belongs to some match;
 *   CLIP (Split, invert, behavior Removed): <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|
 *        'll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+  — the matches are kept, the whitespace between
 *        them dropped.
 */
#include <string.h>

#include "text/tok_internal.h"

/* ASCII classes, so the common case needs no table walk. */
static const uint8_t k_ascii[128] = {
    ['\t'] = TK_UC_S, ['\n'] = TK_UC_S, ['\v'] = TK_UC_S, ['\f'] = TK_UC_S, ['\r'] = TK_UC_S,
    [' '] = TK_UC_S,
    ['0'] = TK_UC_N, ['1'] = TK_UC_N, ['2'] = TK_UC_N, ['3'] = TK_UC_N, ['4'] = TK_UC_N,
    ['5'] = TK_UC_N, ['6'] = TK_UC_N, ['7'] = TK_UC_N, ['8'] = TK_UC_N, ['9'] = TK_UC_N,
#define L2(a) [a] = TK_UC_L, [a + 32] = TK_UC_L
    L2('A'), L2('B'), L2('C'), L2('D'), L2('E'), L2('F'), L2('G'), L2('H'), L2('I'), L2('J'),
    L2('K'), L2('L'), L2('M'), L2('N'), L2('O'), L2('P'), L2('Q'), L2('R'), L2('S'), L2('T'),
    L2('U'), L2('V'), L2('W'), L2('X'), L2('Y'), L2('Z'),
#undef L2
};

#define CLS_MASK (TK_UC_L | TK_UC_N | TK_UC_S)

/* The class (L, N, S or 0 = other) of the character at p[0..n), n > 0; *len its bytes. */
static inline unsigned cls(const unsigned char *p, size_t n, size_t *len) {
    if (p[0] < 0x80) {
        *len = 1;
        return k_ascii[p[0]];
    }
    return tk_uc_class(tk_utf8_next(p, n, len)) & CLS_MASK;
}

/* The end of the run of characters of class k starting at i. */
static size_t run(const unsigned char *p, size_t n, size_t i, unsigned k) {
    while (i < n) {
        size_t len;
        if (cls(p + i, n - i, &len) != k) break;
        i += len;
    }
    return i;
}

static size_t contraction(const unsigned char *p, size_t n) {
    if (n >= 2 && (p[1] == 's' || p[1] == 't' || p[1] == 'm' || p[1] == 'd')) return 2;
    if (n >= 3 && ((p[1] == 'r' && p[2] == 'e') || (p[1] == 'v' && p[2] == 'e') ||
                   (p[1] == 'l' && p[2] == 'l')))
        return 3;
    return 0;
}

static size_t gpt2_next(const unsigned char *p, size_t n) {
    size_t len, k;
    if (p[0] == '\'' && (k = contraction(p, n)) != 0) return k;
    unsigned c = cls(p, n, &len);
    if (p[0] == ' ' && n > 1) { /* " ?" before a letter, number or other run */
        size_t l1;
        unsigned c1 = cls(p + 1, n - 1, &l1);
        if (c1 != TK_UC_S) return run(p, n, 1 + l1, c1);
    }
    if (c != TK_UC_S) return run(p, n, len, c);
    /* \s+(?!\S) | \s+ : the whitespace run, less its last character when something follows */
    size_t i = 0, last = 0;
    while (i < n) {
        size_t l;
        if (cls(p + i, n - i, &l) != TK_UC_S) break;
        last = i;
        i += l;
    }
    if (i == n || last == 0) return i;
    return last;
}

static size_t clip_next(const unsigned char *p, size_t n, size_t *skip) {
    size_t i = 0, len, k;
    while (i < n) { /* whitespace matches no alternative: the gap is dropped */
        if (cls(p + i, n - i, &len) != TK_UC_S) break;
        i += len;
    }
    *skip = i;
    if (i == n) return 0;
    p += i, n -= i;
    if (n >= 15 && memcmp(p, "<|startoftext|>", 15) == 0) return 15;
    if (n >= 13 && memcmp(p, "<|endoftext|>", 13) == 0) return 13;
    if (p[0] == '\'' && (k = contraction(p, n)) != 0) return k;
    unsigned c = cls(p, n, &len);
    if (c == TK_UC_N) return len;
    return run(p, n, len, c);
}

size_t tk_pretok_next(tk_split mode, const unsigned char *p, size_t n, size_t *skip) {
    *skip = 0;
    switch (mode) {
    case TK_SPLIT_GPT2: return gpt2_next(p, n);
    case TK_SPLIT_CLIP: return clip_next(p, n, skip);
    case TK_SPLIT_NONE: break;
    }
    return n;
}
