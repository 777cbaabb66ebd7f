/*
 * half.h — IEEE binary16 and bfloat16 <-> float32, round to nearest even (NaN stays NaN,
 * overflow goes to infinity), the conversions torch uses.
 */
#ifndef ULC_COMMON_HALF_H
#define ULC_COMMON_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t ulc_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float ulc_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float ulc_bf16_to_f32(uint16_t h) { return ulc_f32_from_bits((uint32_t)h << 16); }

static inline uint16_t ulc_f32_to_bf16(float f) {
    uint32_t u = ulc_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float ulc_f16_to_f32(uint16_t h);
uint16_t ulc_f32_to_f16(float f);

#endif
