/*
 * s_elementwise.c — shape rules of the elementwise ops: binary (numpy broadcasting; opset < 7
 * legacy broadcast/axis; comparisons give bool; PRelu's slope broadcasts to X), variadic
 * Max/Min/Sum/Mean, Where, the unary ops and Clip (same shape; IsNaN/IsInf give bool), Cast
 * and CastLike (the target's dtype; halves computed as float32). The dtypes each op accepts are
 * the loop sets of params_ew.h; the CPU kernels: runtime/cpu/k_elementwise*.c.
 */
#include <float.h>
#include <stdint.h>
#include <string.h>

#include "runtime/shape/params_ew.h"
#include "runtime/shape/rules.h"

static const char *dtn(int dt) { return ulc_dtype_name(dt); }

/* ---- dtypes each loop set is defined for ------------------------------------------------ */

static int is_num(int dt) { return ulc_k_is_float(dt) || ulc_k_is_int(dt); }
static int is_sint(int dt) {
    return dt == ULC_DT_I8 || dt == ULC_DT_I16 || dt == ULC_DT_I32 || dt == ULC_DT_I64;
}
static int is_uint(int dt) { return ulc_k_is_int(dt) && !is_sint(dt); }

int ulc_sh_binary_dtype_ok(int op, int dt) {
    switch (op) {
    case B_ADD: case B_SUB: case B_MUL: case B_DIV: case B_MAX: case B_MIN: case B_PRELU:
    case B_MOD: case B_FMOD: case B_LT: case B_GT: case B_LE: case B_GE: return is_num(dt);
    case B_BAND: case B_BOR: case B_BXOR: return ulc_k_is_int(dt);
    case B_SHL: case B_SHR: return is_uint(dt);
    case B_EQ: return is_num(dt) || dt == ULC_DT_BOOL;
    case B_AND: case B_OR: case B_XOR: return dt == ULC_DT_BOOL;
    case B_POW: return ulc_sh_pow_dtypes_ok(dt, dt);
    default: return 0;
    }
}

int ulc_sh_pow_dtypes_ok(int a, int b) {
    int base = a == ULC_DT_F32 || a == ULC_DT_F64 || a == ULC_DT_I32 || a == ULC_DT_I64;
    return base && is_num(b);
}

int ulc_sh_unary_dtype_ok(int u, int dt) {
    switch (u) {
    case U_ABS: case U_SIGN: case U_CLIP: return is_num(dt);
    case U_NEG: case U_RELU: return ulc_k_is_float(dt) || is_sint(dt);
    case U_BNOT: return ulc_k_is_int(dt);
    case U_NOT: return dt == ULC_DT_BOOL;
    default: return u >= 0 && u < U_COUNT_ && ulc_k_is_float(dt);
    }
}

/* Cast's sources are the computed dtypes, its targets those plus float16/bfloat16. */
static int cast_dtype_ok(int dt, int target) {
    return is_num(dt) || dt == ULC_DT_BOOL || (target && (dt == ULC_DT_F16 || dt == ULC_DT_BF16));
}

int ulc_sh_cast_dtypes_ok(int src, int to) { return cast_dtype_ok(src, 0) && cast_dtype_ok(to, 1); }

static int ew_is_cmp(int b) {
    return b == B_EQ || b == B_LT || b == B_GT || b == B_LE || b == B_GE;
}

/* The op's loop set, from op and attributes. */
ulc_status ulc_sh_ew_binop(ulc_kctx *k, int *out) {
    switch (k->node->op) {
    case ULC_OP_Add: case ULC_OP_Sum: case ULC_OP_Mean: *out = B_ADD; break;
    case ULC_OP_Sub: *out = B_SUB; break;
    case ULC_OP_Mul: *out = B_MUL; break;
    case ULC_OP_Div: *out = B_DIV; break;
    case ULC_OP_Pow: *out = B_POW; break;
    case ULC_OP_Mod: {
        int64_t f = ulc_k_attr_int(k, "fmod", 0);
        if (f != 0 && f != 1)
            return ulc_k_fail(k, ULC_ERR_INVALID, "attribute fmod must be 0 or 1, got %lld",
                              (long long)f);
        *out = f ? B_FMOD : B_MOD;
        break;
    }
    case ULC_OP_BitShift: {
        const char *d = ulc_k_attr_str(k, "direction", NULL);
        if (!d || (strcmp(d, "LEFT") != 0 && strcmp(d, "RIGHT") != 0))
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "attribute direction must be \"LEFT\" or \"RIGHT\" (got %s%s%s)",
                              d ? "\"" : "", d ? d : "none", d ? "\"" : "");
        *out = strcmp(d, "LEFT") == 0 ? B_SHL : B_SHR;
        break;
    }
    case ULC_OP_BitwiseAnd: *out = B_BAND; break;
    case ULC_OP_BitwiseOr: *out = B_BOR; break;
    case ULC_OP_BitwiseXor: *out = B_BXOR; break;
    case ULC_OP_And: *out = B_AND; break;
    case ULC_OP_Or: *out = B_OR; break;
    case ULC_OP_Xor: *out = B_XOR; break;
    case ULC_OP_Equal: *out = B_EQ; break;
    case ULC_OP_Less: *out = B_LT; break;
    case ULC_OP_Greater: *out = B_GT; break;
    case ULC_OP_LessOrEqual: *out = B_LE; break;
    case ULC_OP_GreaterOrEqual: *out = B_GE; break;
    case ULC_OP_Max: *out = B_MAX; break;
    case ULC_OP_Min: *out = B_MIN; break;
    case ULC_OP_PRelu: *out = B_PRELU; break;
    default: return ulc_k_fail(k, ULC_ERR_INTERNAL, "not an elementwise binary op");
    }
    return ULC_OK;
}

/* Opset < 7 Add/Sub/Mul/Div/Pow/And/Or/Xor/Equal/Less/Greater: without broadcast = 1 the
 * shapes must match; with it, B's dims line up with A's from `axis` (default: the trailing
 * dims) — written here as B reshaped to A's rank with 1s around, then numpy rules apply. */
ulc_status ulc_sh_ew_legacy_view(ulc_kctx *k, const ulc_rt_tensor *a, const ulc_rt_tensor *b,
                                 ulc_rt_tensor *bv) {
    *bv = *b;
    if (k->opset >= 7) return ULC_OK;
    switch (k->node->op) {
    case ULC_OP_Add: case ULC_OP_Sub: case ULC_OP_Mul: case ULC_OP_Div: case ULC_OP_Pow:
    case ULC_OP_And: case ULC_OP_Or: case ULC_OP_Xor: case ULC_OP_Equal: case ULC_OP_Less:
    case ULC_OP_Greater: break;
    default: return ULC_OK;
    }
    char s1[96], s2[96];
    if (ulc_k_attr_int(k, "broadcast", 0) == 0) {
        int same = a->rank == b->rank;
        for (int d = 0; same && d < a->rank; d++) same = a->dims[d] == b->dims[d];
        if (!same)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "inputs %s and %s differ in shape and broadcast is 0 (opset %lld)",
                              ulc_rt_shape_str(a, s1, sizeof s1),
                              ulc_rt_shape_str(b, s2, sizeof s2),
                              (long long)k->opset);
        return ULC_OK;
    }
    int64_t axis = ulc_k_attr_int(k, "axis", a->rank - b->rank);
    if (axis < 0) axis += a->rank;
    if (b->rank > a->rank || axis < 0 || axis > a->rank - b->rank) /* no axis + rank: overflow */
        return ulc_k_fail(k, ULC_ERR_INVALID, "B %s does not fit in A %s at axis %lld",
                          ulc_rt_shape_str(b, s2, sizeof s2), ulc_rt_shape_str(a, s1, sizeof s1),
                          (long long)axis);
    bv->rank = a->rank;
    for (int d = 0; d < a->rank; d++)
        bv->dims[d] = (d >= axis && d < axis + b->rank) ? b->dims[d - axis] : 1;
    return ULC_OK;
}

static ulc_status binary_infer(ulc_kctx *k) {
    int op = 0;
    ULC_TRY(ulc_sh_ew_binop(k, &op));
    if (k->n_in != 2 || !k->in[0] || !k->in[1])
        return ulc_k_fail(k, ULC_ERR_INVALID, "expects 2 inputs, got %d", k->n_in);
    const ulc_rt_tensor *a = k->in[0], *b = k->in[1];
    ulc_rt_tensor bv;
    ULC_TRY(ulc_sh_ew_legacy_view(k, a, b, &bv));
    if (op == B_POW) {
        int ok = a->dtype == b->dtype ? ulc_sh_binary_dtype_ok(B_POW, a->dtype)
                                      : ulc_sh_pow_dtypes_ok(a->dtype, b->dtype);
        if (!ok)
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                              "base %s with exponent %s is not supported (base: f32, f64, i32 or "
                              "i64; exponent: any numeric dtype)",
                              dtn(a->dtype), dtn(b->dtype));
    } else {
        if (a->dtype != b->dtype)
            return ulc_k_fail(k, ULC_ERR_INVALID, "inputs have different dtypes (%s and %s)",
                              dtn(a->dtype), dtn(b->dtype));
        if (!ulc_sh_binary_dtype_ok(op, a->dtype))
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "dtype %s is not supported by this op",
                              dtn(a->dtype));
    }
    ulc_rt_tensor *o = k->out[0];
    if (!o) return ULC_OK;
    const ulc_rt_tensor *ts[2] = {a, &bv};
    ULC_TRY(ulc_k_broadcast(k, ts, 2, o));
    if (op == B_PRELU) { /* slope broadcasts to x, never the other way */
        int same = o->rank == a->rank;
        for (int d = 0; same && d < a->rank; d++) same = o->dims[d] == a->dims[d];
        char s1[96], s2[96];
        if (!same)
            return ulc_k_fail(k, ULC_ERR_INVALID, "slope %s does not broadcast to X %s",
                              ulc_rt_shape_str(b, s2, sizeof s2),
                              ulc_rt_shape_str(a, s1, sizeof s1));
    }
    o->dtype = ew_is_cmp(op) ? ULC_DT_BOOL : a->dtype;
    return ULC_OK;
}

/* Max Min Sum Mean: out = in0 ⊕ in1, then out ⊕= in_i for the rest; Mean divides by N. */
static ulc_status variadic_infer(ulc_kctx *k) {
    int op = 0;
    ULC_TRY(ulc_sh_ew_binop(k, &op));
    if (k->n_in < 1) return ulc_k_fail(k, ULC_ERR_INVALID, "expects at least one input");
    for (int i = 0; i < k->n_in; i++) {
        if (!k->in[i]) return ulc_k_fail(k, ULC_ERR_INVALID, "input %d is missing", i);
        if (k->in[i]->dtype != k->in[0]->dtype)
            return ulc_k_fail(k, ULC_ERR_INVALID, "input %d is %s but input 0 is %s", i,
                              dtn(k->in[i]->dtype), dtn(k->in[0]->dtype));
    }
    int dt = k->in[0]->dtype;
    int ok = ulc_sh_binary_dtype_ok(op, dt);
    if ((k->node->op == ULC_OP_Sum || k->node->op == ULC_OP_Mean) && !ulc_k_is_float(dt)) ok = 0;
    if (!ok)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "dtype %s is not supported by this op", dtn(dt));
    if (!k->out[0]) return ULC_OK;
    ULC_TRY(ulc_k_broadcast(k, (const ulc_rt_tensor *const *)k->in, k->n_in, k->out[0]));
    k->out[0]->dtype = dt;
    return ULC_OK;
}

static ulc_status where_infer(ulc_kctx *k) {
    if (k->n_in != 3 || !k->in[0] || !k->in[1] || !k->in[2])
        return ulc_k_fail(k, ULC_ERR_INVALID, "expects 3 inputs (condition, X, Y)");
    if (k->in[0]->dtype != ULC_DT_BOOL)
        return ulc_k_fail(k, ULC_ERR_INVALID, "condition must be bool, got %s",
                          dtn(k->in[0]->dtype));
    if (k->in[1]->dtype != k->in[2]->dtype)
        return ulc_k_fail(k, ULC_ERR_INVALID, "X is %s but Y is %s", dtn(k->in[1]->dtype),
                          dtn(k->in[2]->dtype));
    if (!ulc_k_dtype_size(k->in[1]->dtype))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "dtype %s is not supported",
                          dtn(k->in[1]->dtype));
    if (!k->out[0]) return ULC_OK;
    ULC_TRY(ulc_k_broadcast(k, (const ulc_rt_tensor *const *)k->in, 3, k->out[0]));
    k->out[0]->dtype = k->in[1]->dtype;
    return ULC_OK;
}

/* The op's loop set and its attributes. */
ulc_status ulc_sh_ew_unop(ulc_kctx *k, int *u, ew_upar *p) {
    memset(p, 0, sizeof *p);
    switch (k->node->op) {
    case ULC_OP_Abs: *u = U_ABS; break;
    case ULC_OP_Neg: *u = U_NEG; break;
    case ULC_OP_Sign: *u = U_SIGN; break;
    case ULC_OP_Relu: *u = U_RELU; break;
    case ULC_OP_Floor: *u = U_FLOOR; break;
    case ULC_OP_Ceil: *u = U_CEIL; break;
    case ULC_OP_Round: *u = U_ROUND; break;
    case ULC_OP_Sqrt: *u = U_SQRT; break;
    case ULC_OP_Reciprocal: *u = U_RECIP; break;
    case ULC_OP_Exp: *u = U_EXP; break;
    case ULC_OP_Log: *u = U_LOG; break;
    case ULC_OP_Erf: *u = U_ERF; break;
    case ULC_OP_Tanh: *u = U_TANH; break;
    case ULC_OP_Sigmoid: *u = U_SIGMOID; break;
    case ULC_OP_Sin: *u = U_SIN; break;
    case ULC_OP_Cos: *u = U_COS; break;
    case ULC_OP_Tan: *u = U_TAN; break;
    case ULC_OP_Asin: *u = U_ASIN; break;
    case ULC_OP_Acos: *u = U_ACOS; break;
    case ULC_OP_Atan: *u = U_ATAN; break;
    case ULC_OP_Sinh: *u = U_SINH; break;
    case ULC_OP_Cosh: *u = U_COSH; break;
    case ULC_OP_Asinh: *u = U_ASINH; break;
    case ULC_OP_Acosh: *u = U_ACOSH; break;
    case ULC_OP_Atanh: *u = U_ATANH; break;
    case ULC_OP_Softsign: *u = U_SOFTSIGN; break;
    case ULC_OP_Softplus: *u = U_SOFTPLUS; break;
    case ULC_OP_Mish: *u = U_MISH; break;
    case ULC_OP_Not: *u = U_NOT; break;
    case ULC_OP_BitwiseNot: *u = U_BNOT; break;
    case ULC_OP_IsNaN: *u = U_ISNAN; break;
    case ULC_OP_Elu:
        *u = U_ELU;
        p->alpha = ulc_k_attr_float(k, "alpha", 1.0f);
        break;
    case ULC_OP_Selu:
        *u = U_SELU;
        p->alpha = ulc_k_attr_float(k, "alpha", 1.67326319217681884765625f);
        p->gamma = ulc_k_attr_float(k, "gamma", 1.05070102214813232421875f);
        break;
    case ULC_OP_Celu:
        *u = U_CELU;
        p->alpha = ulc_k_attr_float(k, "alpha", 1.0f);
        if (p->alpha == 0) return ulc_k_fail(k, ULC_ERR_INVALID, "attribute alpha must not be 0");
        break;
    case ULC_OP_LeakyRelu:
        *u = U_LEAKY;
        p->alpha = ulc_k_attr_float(k, "alpha", 0.01f);
        break;
    case ULC_OP_HardSigmoid:
        *u = U_HSIG;
        p->alpha = ulc_k_attr_float(k, "alpha", 0.2f);
        p->beta = ulc_k_attr_float(k, "beta", 0.5f);
        break;
    case ULC_OP_HardSwish: *u = U_HSWISH; break;
    case ULC_OP_ThresholdedRelu:
        *u = U_THRELU;
        p->alpha = ulc_k_attr_float(k, "alpha", 1.0f);
        break;
    case ULC_OP_Shrink:
        *u = U_SHRINK;
        p->beta = ulc_k_attr_float(k, "bias", 0.0f);
        p->gamma = ulc_k_attr_float(k, "lambd", 0.5f);
        break;
    case ULC_OP_FastGelu: { /* ulc's (ir/ops_ulc.def): tanh unless approximate = "none" */
        const char *a = ulc_k_attr_str(k, "approximate", "tanh");
        if (strcmp(a, "none") == 0) *u = U_GELU;
        else if (strcmp(a, "tanh") == 0) *u = U_GELU_TANH;
        else
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "attribute approximate=\"%s\" is not supported "
                              "(\"none\" or \"tanh\")", a);
        break;
    }
    case ULC_OP_Gelu: {
        const char *a = ulc_k_attr_str(k, "approximate", "none");
        if (strcmp(a, "none") == 0) *u = U_GELU;
        else if (strcmp(a, "tanh") == 0) *u = U_GELU_TANH;
        else
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                              "attribute approximate=\"%s\" is not supported "
                              "(\"none\" or \"tanh\")",
                              a);
        break;
    }
    case ULC_OP_IsInf:
        *u = U_ISINF;
        p->flags = (ulc_k_attr_int(k, "detect_negative", 1) ? 1 : 0) |
                   (ulc_k_attr_int(k, "detect_positive", 1) ? 2 : 0);
        break;
    case ULC_OP_Clip: *u = U_CLIP; break;
    default: return ulc_k_fail(k, ULC_ERR_INTERNAL, "not an elementwise unary op");
    }
    return ULC_OK;
}

static ulc_status unary_infer(ulc_kctx *k) {
    int u = 0;
    ew_upar p;
    ULC_TRY(ulc_sh_ew_unop(k, &u, &p));
    if (k->n_in < 1 || !k->in[0]) return ulc_k_fail(k, ULC_ERR_INVALID, "input 0 is missing");
    const ulc_rt_tensor *x = k->in[0];
    if (!ulc_sh_unary_dtype_ok(u, x->dtype)) {
        const char *want = u == U_NOT ? "bool"
                           : u == U_BNOT ? "an integer dtype"
                           : (u == U_ABS || u == U_SIGN || u == U_CLIP) ? "a numeric dtype"
                           : u == U_NEG || u == U_RELU ? "float or a signed integer dtype"
                                                       : "f32 or f64";
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "input dtype %s is not supported (expected %s)",
                          dtn(x->dtype), want);
    }
    if (!k->out[0]) return ULC_OK;
    ulc_k_set(k->out[0], (u == U_ISNAN || u == U_ISINF) ? ULC_DT_BOOL : x->dtype, x->rank, x->dims);
    return ULC_OK;
}

/* The dtype's lowest and highest values into lo / hi. */
static void ew_type_range(int dt, unsigned char *lo, unsigned char *hi) {
#define RANGE(D, T, L, H)                                                                         \
    case ULC_DT_##D: {                                                                            \
        T l = L, h = H;                                                                           \
        memcpy(lo, &l, sizeof l);                                                                 \
        memcpy(hi, &h, sizeof h);                                                                 \
        break;                                                                                    \
    }
    switch (dt) {
        RANGE(F32, float, -FLT_MAX, FLT_MAX)
        RANGE(F64, double, -DBL_MAX, DBL_MAX)
        RANGE(I8, int8_t, INT8_MIN, INT8_MAX)
        RANGE(I16, int16_t, INT16_MIN, INT16_MAX)
        RANGE(I32, int32_t, INT32_MIN, INT32_MAX)
        RANGE(I64, int64_t, INT64_MIN, INT64_MAX)
        RANGE(U8, uint8_t, 0, UINT8_MAX)
        RANGE(U16, uint16_t, 0, UINT16_MAX)
        RANGE(U32, uint32_t, 0, UINT32_MAX)
        RANGE(U64, uint64_t, 0, UINT64_MAX)
    default: break;
    }
#undef RANGE
}

/* Bounds: opset ≥ 11 from the optional scalar inputs 1 and 2; before, float attributes. With
 * data = 0 only the inputs' dtypes and sizes are checked (the shape rule). */
ulc_status ulc_sh_clip_bounds(ulc_kctx *k, int data, ew_upar *p) {
    const ulc_rt_tensor *x = k->in[0];
    size_t es = ulc_k_dtype_size(x->dtype);
    ew_type_range(x->dtype, p->lo, p->hi);
    if (k->opset < 11) {
        if (!ulc_k_is_float(x->dtype))
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                              "input dtype %s: Clip before opset 11 takes float inputs",
                              dtn(x->dtype));
        double lo = ulc_k_attr_float(k, "min", -FLT_MAX), hi = ulc_k_attr_float(k, "max", FLT_MAX);
        if (x->dtype == ULC_DT_F32) {
            float l = (float)lo, h = (float)hi;
            memcpy(p->lo, &l, 4);
            memcpy(p->hi, &h, 4);
        } else {
            memcpy(p->lo, &lo, 8);
            memcpy(p->hi, &hi, 8);
        }
        return ULC_OK;
    }
    for (int i = 1; i < 3 && i < k->n_in; i++) {
        const ulc_rt_tensor *b = k->in[i];
        if (!b) continue;
        char s[96];
        if (b->dtype != x->dtype || ulc_rt_numel(b) != 1)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "%s must be a scalar of the input's dtype %s, got %s",
                              i == 1 ? "min" : "max", dtn(x->dtype),
                              ulc_rt_shape_str(b, s, sizeof s));
        if (data) memcpy(i == 1 ? p->lo : p->hi, ulc_k_host_bytes(b), es);
    }
    return ULC_OK;
}

static ulc_status clip_infer(ulc_kctx *k) {
    ULC_TRY(unary_infer(k));
    ew_upar p;
    memset(&p, 0, sizeof p);
    return ulc_sh_clip_bounds(k, 0, &p);
}

/* Cast-1..5 name `to` by its TensorProto name. */
static int cast_dtype_from_name(const char *s) {
    static const struct {
        const char *name;
        int dt;
    } names[] = {{"FLOAT", ULC_DT_F32},    {"UINT8", ULC_DT_U8},       {"INT8", ULC_DT_I8},
                 {"UINT16", ULC_DT_U16},   {"INT16", ULC_DT_I16},      {"INT32", ULC_DT_I32},
                 {"INT64", ULC_DT_I64},    {"STRING", ULC_DT_STRING},  {"BOOL", ULC_DT_BOOL},
                 {"FLOAT16", ULC_DT_F16},  {"DOUBLE", ULC_DT_F64},     {"UINT32", ULC_DT_U32},
                 {"UINT64", ULC_DT_U64},   {"COMPLEX64", ULC_DT_C64},  {"COMPLEX128", ULC_DT_C128},
                 {"BFLOAT16", ULC_DT_BF16}};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(s, names[i].name) == 0) return names[i].dt;
    return ULC_DT_UNDEFINED;
}

/* The declared target dtype (ulc_dtype; F16/BF16 kept). */
static ulc_status cast_target(ulc_kctx *k, int *dt) {
    if (k->node->op == ULC_OP_CastLike) {
        if (k->n_in < 2 || !k->in[1])
            return ulc_k_fail(k, ULC_ERR_INVALID, "expects 2 inputs (input, target_type)");
        *dt = k->in[1]->dtype;
        /* the planner computes a half `like` as float32: its declared dtype says what to
         * round to */
        const ulc_value *v = k->node->inputs[1].value;
        if (v && (v->flags & ULC_VALUE_HAS_TYPE) && ulc_k_compute_dtype(v->dtype) == *dt)
            *dt = v->dtype;
        return ULC_OK;
    }
    const ulc_attr *a = ulc_k_attr(k, "to");
    if (a && a->type == ULC_ATTR_INT) {
        *dt = a->i > 0 && a->i < ULC_DT_COUNT_ ? (int)a->i : ULC_DT_UNDEFINED;
        if (*dt == ULC_DT_UNDEFINED)
            return ulc_k_fail(k, ULC_ERR_INVALID, "attribute to=%lld is not a tensor dtype",
                              (long long)a->i);
    } else if (a && a->type == ULC_ATTR_STRING && a->s.data) {
        *dt = cast_dtype_from_name((const char *)a->s.data);
        if (*dt == ULC_DT_UNDEFINED)
            return ulc_k_fail(k, ULC_ERR_INVALID, "attribute to=\"%s\" is not a tensor dtype name",
                              (const char *)a->s.data);
    } else {
        return ulc_k_fail(k, ULC_ERR_INVALID, "attribute to (the target dtype) is missing");
    }
    return ULC_OK;
}

/* The target dtype of Cast / CastLike (F16/BF16 kept) into *to and the dtype it is computed
 * in into *out_dt, or an error naming the unsupported side. */
ulc_status ulc_sh_cast_target(ulc_kctx *k, int *to, int *out_dt) {
    if (k->n_in < 1 || !k->in[0]) return ulc_k_fail(k, ULC_ERR_INVALID, "input 0 is missing");
    *to = ULC_DT_UNDEFINED;
    ULC_TRY(cast_target(k, to));
    int src = k->in[0]->dtype;
    if (!ulc_sh_cast_dtypes_ok(src, *to))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "cast from %s to %s is not supported: the cpu runtime casts between "
                          "f32, f64, f16, bf16, i8..i64, u8..u64 and bool (no string, float8, "
                          "4-bit or complex)",
                          ulc_dtype_name(src), ulc_dtype_name(*to));
    *out_dt = ulc_k_compute_dtype(*to);
    return ULC_OK;
}

static ulc_status cast_infer(ulc_kctx *k) {
    int to = ULC_DT_UNDEFINED, dt = ULC_DT_UNDEFINED;
    ULC_TRY(ulc_sh_cast_target(k, &to, &dt));
    if (k->out[0]) ulc_k_set(k->out[0], dt, k->in[0]->rank, k->in[0]->dims);
    return ULC_OK;
}

const ulc_op ulc_ew_binary_ops[] = {
    ULC_OP_Add, ULC_OP_Sub, ULC_OP_Mul, ULC_OP_Div, ULC_OP_Pow, ULC_OP_Mod, ULC_OP_BitShift,
    ULC_OP_BitwiseAnd, ULC_OP_BitwiseOr, ULC_OP_BitwiseXor, ULC_OP_And, ULC_OP_Or, ULC_OP_Xor,
    ULC_OP_Equal, ULC_OP_Less, ULC_OP_Greater, ULC_OP_LessOrEqual, ULC_OP_GreaterOrEqual,
    ULC_OP_PRelu};
const ulc_op ulc_ew_variadic_ops[] = {ULC_OP_Max, ULC_OP_Min, ULC_OP_Sum, ULC_OP_Mean};
const ulc_op ulc_ew_unary_ops[] = {
    ULC_OP_Abs, ULC_OP_Neg, ULC_OP_Sign, ULC_OP_Relu, ULC_OP_Floor, ULC_OP_Ceil,
    ULC_OP_Round, ULC_OP_Sqrt, ULC_OP_Reciprocal, ULC_OP_Exp, ULC_OP_Log, ULC_OP_Erf,
    ULC_OP_Tanh, ULC_OP_Sigmoid, ULC_OP_Sin, ULC_OP_Cos, ULC_OP_Tan, ULC_OP_Asin,
    ULC_OP_Acos, ULC_OP_Atan, ULC_OP_Sinh, ULC_OP_Cosh, ULC_OP_Asinh, ULC_OP_Acosh,
    ULC_OP_Atanh, ULC_OP_Softsign, ULC_OP_Softplus, ULC_OP_Elu, ULC_OP_Selu, ULC_OP_Celu,
    ULC_OP_LeakyRelu, ULC_OP_HardSigmoid, ULC_OP_HardSwish, ULC_OP_ThresholdedRelu,
    ULC_OP_Mish, ULC_OP_Shrink, ULC_OP_Gelu, ULC_OP_Not, ULC_OP_BitwiseNot, ULC_OP_IsNaN,
    ULC_OP_IsInf, ULC_OP_FastGelu};
const size_t ulc_ew_n_binary = sizeof ulc_ew_binary_ops / sizeof *ulc_ew_binary_ops;
const size_t ulc_ew_n_variadic = sizeof ulc_ew_variadic_ops / sizeof *ulc_ew_variadic_ops;
const size_t ulc_ew_n_unary = sizeof ulc_ew_unary_ops / sizeof *ulc_ew_unary_ops;

void ulc_shape_register_elementwise(ulc_shape_rule *t) {
    for (size_t i = 0; i < ulc_ew_n_binary; i++) t[ulc_ew_binary_ops[i]].infer = binary_infer;
    for (size_t i = 0; i < ulc_ew_n_variadic; i++)
        t[ulc_ew_variadic_ops[i]].infer = variadic_infer;
    for (size_t i = 0; i < ulc_ew_n_unary; i++) t[ulc_ew_unary_ops[i]].infer = unary_infer;
    t[ULC_OP_Where].infer = where_infer;
    t[ULC_OP_Clip].infer = clip_infer;
    t[ULC_OP_Cast].infer = cast_infer;
    t[ULC_OP_CastLike].infer = cast_infer;
}
