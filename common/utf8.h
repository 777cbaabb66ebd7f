/* utf8.h — strict UTF-8 validation (no overlongs, no surrogates, nothing above U+10FFFF). */
#ifndef ULC_COMMON_UTF8_H
#define ULC_COMMON_UTF8_H

#include <stddef.h>

/* Returns (size_t)-1 if p[0..n) is valid UTF-8, else the offset of the first bad byte. */
size_t ulc_utf8_invalid_at(const unsigned char *p, size_t n);

#endif
