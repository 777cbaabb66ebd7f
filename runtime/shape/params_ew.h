/*
 * params_ew.h — the elementwise ops' decoding, shared by their shape rules
 * (runtime/shape/s_elementwise.c) and every backend's elementwise kernels: which loop an op
 * node runs (B_* / U_* with its attributes), the opset < 7 broadcast, Clip's bounds, Cast's
 * target, and the dtypes each loop set is defined for (a backend provides a loop for every one
 * of them; the CPU backend checks that it does when it registers).
 */
#ifndef ULC_RUNTIME_SHAPE_PARAMS_EW_H
#define ULC_RUNTIME_SHAPE_PARAMS_EW_H

#include "runtime/kutil.h"

/* Binary loop sets (Add … PRelu; Max/Min/Sum/Mean fold their inputs pairwise). */
enum {
    B_ADD, B_SUB, B_MUL, B_DIV, B_MOD, B_FMOD, B_SHL, B_SHR, B_BAND, B_BOR, B_BXOR, B_AND, B_OR,
    B_XOR, B_EQ, B_LT, B_GT, B_LE, B_GE, B_MAX, B_MIN, B_PRELU, B_POW, B_COUNT_
};

/* Unary loop sets (Clip is U_CLIP). */
enum {
    U_ABS, U_NEG, U_SIGN, U_RELU, U_FLOOR, U_CEIL, U_ROUND, U_SQRT, U_RECIP, U_EXP, U_LOG, U_ERF,
    U_TANH, U_SIGMOID, U_SIN, U_COS, U_TAN, U_ASIN, U_ACOS, U_ATAN, U_SINH, U_COSH, U_ASINH,
    U_ACOSH, U_ATANH, U_SOFTSIGN, U_SOFTPLUS, U_ELU, U_SELU, U_CELU, U_LEAKY, U_HSIG, U_HSWISH,
    U_THRELU, U_MISH, U_SHRINK, U_GELU, U_GELU_TANH, U_NOT, U_BNOT, U_ISNAN, U_ISINF, U_CLIP,
    U_COUNT_
};

/* A unary loop's parameters. */
typedef struct ew_upar {
    double alpha, beta, gamma;
    unsigned char lo[8], hi[8]; /* Clip bounds, as the input's dtype */
    int flags;                  /* IsInf: 1 detect negative, 2 detect positive */
} ew_upar;

/* The op's loop set, from op and attributes. */
ulc_status ulc_sh_ew_binop(ulc_kctx *k, int *out);

/* Opset < 7 Add/Sub/Mul/Div/Pow/And/Or/Xor/Equal/Less/Greater: without broadcast = 1 the
 * shapes must match; with it, B's dims line up with A's from `axis` (default: the trailing
 * dims) — written here as B reshaped to A's rank with 1s around, then numpy rules apply. */
ulc_status ulc_sh_ew_legacy_view(ulc_kctx *k, const ulc_rt_tensor *a, const ulc_rt_tensor *b,
                                 ulc_rt_tensor *bv);

/* The op's loop set and its attributes. */
ulc_status ulc_sh_ew_unop(ulc_kctx *k, int *u, ew_upar *p);

/* Bounds: opset ≥ 11 from the optional scalar inputs 1 and 2; before, float attributes. With
 * data = 0 only the inputs' dtypes and sizes are checked (the shape rule). */
ulc_status ulc_sh_clip_bounds(ulc_kctx *k, int data, ew_upar *p);

/* 1 when binary loop set op is defined for dtype dt (both operands; Pow: same-dtype base and
 * exponent). */
int ulc_sh_binary_dtype_ok(int op, int dt);
/* 1 when Pow is defined for base dtype a with exponent dtype b. */
int ulc_sh_pow_dtypes_ok(int a, int b);
/* 1 when unary loop set u is defined for dtype dt. */
int ulc_sh_unary_dtype_ok(int u, int dt);

/* 1 when Cast is defined from dtype src to dtype to. */
int ulc_sh_cast_dtypes_ok(int src, int to);
/* The target dtype of Cast / CastLike (F16/BF16 kept) into *to and the dtype it is computed
 * in into *out_dt, or an error naming the unsupported side. */
ulc_status ulc_sh_cast_target(ulc_kctx *k, int *to, int *out_dt);

/* The elementwise op families, one list each for the shape rules and every backend's kernel
 * table (s_elementwise.c defines them). */
extern const ulc_op ulc_ew_binary_ops[], ulc_ew_variadic_ops[], ulc_ew_unary_ops[];
extern const size_t ulc_ew_n_binary, ulc_ew_n_variadic, ulc_ew_n_unary;

#endif
