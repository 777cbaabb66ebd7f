/*
 * k_elementwise_cast.c — Cast(x; to) and CastLike(x, like): y = x converted to dtype `to`
 * (CastLike: like's dtype), elementwise, same shape.
 *
 * Conversions between f32, f64, i8..i64, u8..u64 and bool:
 *   float → integer  truncates toward zero (C). Out of range, where C leaves it undefined: i64
 *                    and i32 saturate, the narrower types and u32 take the saturated int64 value
 *                    modulo 2^bits (what numpy gives on x86: 300.0 → u8 44), u64 takes negative
 *                    values modulo 2^64; NaN → 0.
 *   integer → integer  modulo 2^bits (C); integer → float  rounds to nearest (C)
 *   x → bool  x != 0 (NaN → true);  bool → x  0 or 1
 *   to = FLOAT16 / BFLOAT16: the runtime computes halves as float32 (kernel.h), so the value is
 *   rounded to half precision, round to nearest even, and kept as float32; NaN and ±inf stay,
 *   overflow goes to ±inf (f16). A double or a 64-bit integer is first rounded to float32 *to
 *   odd* (truncate, then set the last bit when inexact), which makes the second rounding to
 *   half exact (double rounding through plain round-to-nearest float32 could go the wrong way).
 * Half inputs reach the kernel as their float32 values. `to` as a string (Cast-1..5) is read
 * too. Not supported, with ULC_ERR_UNSUPPORTED: string, float8, 4-bit and complex types, either
 * way (opset 19's `saturate` only concerns float8).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/half.h"
#include "runtime/cpu/cpu.h"
#include "runtime/cpu/k_elementwise.h"
#include "runtime/shape/params_ew.h"

/* Destination codes beyond ulc_dtype: float32 storage, rounded to half / bfloat16. */
enum { CAST_H16 = ULC_DT_COUNT_, CAST_B16, CAST_NDST_ };

/* ---- scalar conversions ------------------------------------------------------------------- */

static inline int64_t cv_sat_i64(double v) {
    if (v != v) return 0;
    if (v >= 9223372036854775807.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

static inline int32_t cv_sat_i32(double v) {
    if (v != v) return 0;
    if (v >= 2147483647.0) return INT32_MAX;
    if (v <= -2147483648.0) return INT32_MIN;
    return (int32_t)v;
}

static inline uint64_t cv_f2u64(double v) {
    if (v != v) return 0;
    if (v >= 18446744073709551616.0) return UINT64_MAX;
    if (v < 0) return (uint64_t)cv_sat_i64(v);
    return (uint64_t)v;
}

/* double → float rounded to odd (see the header comment) */
static inline float cv_f32_odd(double d) {
    float f = (float)d;
    if ((double)f != d && d == d) {
        uint32_t u = ulc_f32_bits(f);
        if (fabs((double)f) > fabs(d)) u -= 1; /* truncate toward zero */
        f = ulc_f32_from_bits(u | 1u);
    }
    return f;
}

/* uint64 → double rounded to odd: exact below 2^53, else the 53 leading bits with a sticky
 * last bit */
static inline double cv_u64_odd(uint64_t u) {
    if (u < (UINT64_C(1) << 53)) return (double)u;
    int sh = 11 - __builtin_clzll(u); /* bit length - 53 */
    uint64_t m = u >> sh;
    if (u & ((UINT64_C(1) << sh) - 1)) m |= 1;
    return ldexp((double)m, sh);
}

static inline double cv_i64_odd(int64_t v) {
    if (v >= 0) return cv_u64_odd((uint64_t)v);
    return -cv_u64_odd((uint64_t)0 - (uint64_t)v);
}

static inline float cv_h16(float f) { return ulc_f16_to_f32(ulc_f32_to_f16(f)); }
static inline float cv_b16(float f) { return ulc_bf16_to_f32(ulc_f32_to_bf16(f)); }

/* Integer sources. Plain C conversions are macros on the source's own type, so the loops
 * vectorise (u8/bool → f32 without a detour through int64); the half roundings and bool are
 * functions. cvi: signed sources, cvu: unsigned ones. */
#define CVI_F32(v) ((float)(v))
#define CVI_F64(v) ((double)(v))
#define CVI_I8(v) ((int8_t)(v))
#define CVI_I16(v) ((int16_t)(v))
#define CVI_I32(v) ((int32_t)(v))
#define CVI_I64(v) ((int64_t)(v))
#define CVI_U8(v) ((uint8_t)(v))
#define CVI_U16(v) ((uint16_t)(v))
#define CVI_U32(v) ((uint32_t)(v))
#define CVI_U64(v) ((uint64_t)(v))
#define CVI_BOOL(v) ((uint8_t)((v) != 0))
#define CVI_H16(v) cvi_h16((int64_t)(v))
#define CVI_B16(v) cvi_b16((int64_t)(v))
#define CVU_H16(v) cvu_h16((uint64_t)(v))
#define CVU_B16(v) cvu_b16((uint64_t)(v))
static inline float cvi_h16(int64_t v) { return cv_h16(cv_f32_odd(cv_i64_odd(v))); }
static inline float cvu_h16(uint64_t v) { return cv_h16(cv_f32_odd(cv_u64_odd(v))); }
static inline float cvi_b16(int64_t v) { return cv_b16(cv_f32_odd(cv_i64_odd(v))); }
static inline float cvu_b16(uint64_t v) { return cv_b16(cv_f32_odd(cv_u64_odd(v))); }

/* float sources (as double): see the header comment for out-of-range values */
static inline float cvf_F32(double v) { return (float)v; }
static inline double cvf_F64(double v) { return v; }
static inline int8_t cvf_I8(double v) { return (int8_t)cv_sat_i64(v); }
static inline int16_t cvf_I16(double v) { return (int16_t)cv_sat_i64(v); }
static inline int32_t cvf_I32(double v) { return cv_sat_i32(v); }
static inline int64_t cvf_I64(double v) { return cv_sat_i64(v); }
static inline uint8_t cvf_U8(double v) { return (uint8_t)cv_sat_i64(v); }
static inline uint16_t cvf_U16(double v) { return (uint16_t)cv_sat_i64(v); }
static inline uint32_t cvf_U32(double v) { return (uint32_t)cv_sat_i64(v); }
static inline uint64_t cvf_U64(double v) { return cv_f2u64(v); }
static inline uint8_t cvf_BOOL(double v) { return v != 0; }
static inline float cvf_H16(double v) { return cv_h16(cv_f32_odd(v)); }
static inline float cvf_B16(double v) { return cv_b16(cv_f32_odd(v)); }

/* ---- loops: one per (source, destination) ---------------------------------------------------- */

typedef void (*cast_fn)(const void *x, void *y, int64_t n);

/* X(S, C type, conversion family) */
#define CAST_SOURCES(X)                                                                           \
    X(F32, float, cvf) X(F64, double, cvf) X(I8, int8_t, cvi) X(I16, int16_t, cvi)                \
    X(I32, int32_t, cvi) X(I64, int64_t, cvi) X(U8, uint8_t, cvu) X(U16, uint16_t, cvu)            \
    X(U32, uint32_t, cvu) X(U64, uint64_t, cvu) X(BOOL, uint8_t, cvb)
/* X(S, ST, K, D, C type of D's storage) */
#define CAST_DESTS(X, S, ST, K)                                                                   \
    X(S, ST, K, F32, float) X(S, ST, K, F64, double) X(S, ST, K, I8, int8_t)                      \
    X(S, ST, K, I16, int16_t) X(S, ST, K, I32, int32_t) X(S, ST, K, I64, int64_t)                 \
    X(S, ST, K, U8, uint8_t) X(S, ST, K, U16, uint16_t) X(S, ST, K, U32, uint32_t)                \
    X(S, ST, K, U64, uint64_t) X(S, ST, K, BOOL, uint8_t) X(S, ST, K, H16, float)                 \
    X(S, ST, K, B16, float)

#define CAST_CONV_cvf(D, v) cvf_##D((double)(v))
#define CAST_CONV_cvi(D, v) CVI_##D(v)
#define CAST_CONV_cvu(D, v) CAST_CVU_##D(v)
#define CAST_CONV_cvb(D, v) CVI_##D((uint8_t)((v) != 0)) /* bool: 0 or 1, whatever the byte */
/* unsigned sources: the plain conversions are the signed ones; the half roundings differ */
#define CAST_CVU_F32 CVI_F32
#define CAST_CVU_F64 CVI_F64
#define CAST_CVU_I8 CVI_I8
#define CAST_CVU_I16 CVI_I16
#define CAST_CVU_I32 CVI_I32
#define CAST_CVU_I64 CVI_I64
#define CAST_CVU_U8 CVI_U8
#define CAST_CVU_U16 CVI_U16
#define CAST_CVU_U32 CVI_U32
#define CAST_CVU_U64 CVI_U64
#define CAST_CVU_BOOL CVI_BOOL
#define CAST_CVU_H16 CVU_H16
#define CAST_CVU_B16 CVU_B16

#define CAST_DEF_PAIR(S, ST, K, D, DT)                                                            \
    static void cast_##S##_##D(const void *px, void *py, int64_t n) {                             \
        const ST *x = (const ST *)px;                                                             \
        DT *y = (DT *)py;                                                                         \
        for (int64_t i = 0; i < n; i++) y[i] = CAST_CONV_##K(D, x[i]);                            \
    }
#define CAST_DEF_SOURCE(S, ST, K) CAST_DESTS(CAST_DEF_PAIR, S, ST, K)
CAST_SOURCES(CAST_DEF_SOURCE)

static cast_fn g_cast[ULC_DT_COUNT_][CAST_NDST_];

static void cast_fill(void) {
#define CAST_SET_PAIR(S, ST, K, D, DT) g_cast[ULC_DT_##S][CAST_DST_##D] = cast_##S##_##D;
#define CAST_SET_SOURCE(S, ST, K) CAST_DESTS(CAST_SET_PAIR, S, ST, K)
    enum {
        CAST_DST_F32 = ULC_DT_F32, CAST_DST_F64 = ULC_DT_F64, CAST_DST_I8 = ULC_DT_I8,
        CAST_DST_I16 = ULC_DT_I16, CAST_DST_I32 = ULC_DT_I32, CAST_DST_I64 = ULC_DT_I64,
        CAST_DST_U8 = ULC_DT_U8, CAST_DST_U16 = ULC_DT_U16, CAST_DST_U32 = ULC_DT_U32,
        CAST_DST_U64 = ULC_DT_U64, CAST_DST_BOOL = ULC_DT_BOOL, CAST_DST_H16 = CAST_H16,
        CAST_DST_B16 = CAST_B16
    };
    CAST_SOURCES(CAST_SET_SOURCE)
#undef CAST_SET_PAIR
#undef CAST_SET_SOURCE
}

/* ---- kernels --------------------------------------------------------------------------------- */

/* The loop for the node (the shape rule checked that there is one). */
static ulc_status cast_resolve(ulc_kctx *k, cast_fn *fn, int *out_dt) {
    int to = ULC_DT_UNDEFINED;
    ULC_TRY(ulc_sh_cast_target(k, &to, out_dt));
    int src = k->in[0]->dtype;
    int dst = to == ULC_DT_F16 ? CAST_H16 : to == ULC_DT_BF16 ? CAST_B16 : to;
    *fn = g_cast[src][dst];
    return ULC_OK;
}

typedef struct cast_job {
    cast_fn fn;
    const char *x;
    char *y;
    size_t ex, ey;
} cast_job;

static void cast_body(int64_t i0, int64_t i1, void *arg) {
    const cast_job *j = arg;
    j->fn(j->x + i0 * (int64_t)j->ex, j->y + i0 * (int64_t)j->ey, i1 - i0);
}

static ulc_status cast_run(ulc_kctx *k) {
    cast_fn fn = NULL;
    int dt = ULC_DT_UNDEFINED;
    ULC_TRY(cast_resolve(k, &fn, &dt));
    ulc_rt_tensor *y = k->out[0];
    const ulc_rt_tensor *x = k->in[0];
    if (!y) return ULC_OK;
    int64_t n = (int64_t)ulc_rt_numel(x);
    if (n <= 0) return ULC_OK;
    if (x->dtype == dt && fn != g_cast[x->dtype][CAST_H16] && fn != g_cast[x->dtype][CAST_B16]) {
        if (y->data != x->data) memcpy(y->data, x->data, (size_t)n * ulc_k_dtype_size(dt));
        return ULC_OK;
    }
    cast_job j = {fn, x->data, y->data, ulc_k_dtype_size(x->dtype), ulc_k_dtype_size(dt)};
    ulc_k_parallel(n, 32768, cast_body, &j);
    return ULC_OK;
}

static const ulc_kernel k_cast = {.run = cast_run};

void ulc_cpu_register_cast(const ulc_kernel **table) {
    cast_fill();
    /* the shape rule (runtime/shape/s_elementwise.c) accepts exactly the pairs with a loop */
    for (int s = 1; s < ULC_DT_COUNT_; s++)
        for (int t = 1; t < ULC_DT_COUNT_; t++) {
            int d = t == ULC_DT_F16 ? CAST_H16 : t == ULC_DT_BF16 ? CAST_B16 : t;
            ULC_ASSERT((g_cast[s][d] != NULL) == ulc_sh_cast_dtypes_ok(s, t));
        }
    table[ULC_OP_Cast] = &k_cast;
    table[ULC_OP_CastLike] = &k_cast;
}
