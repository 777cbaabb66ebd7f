/*
 * k_elementwise.cu — the CUDA backend's elementwise ops: binary (Add … PRelu, numpy
 * broadcasting, opset < 7 legacy broadcast), variadic Max/Min/Sum/Mean and Where, and the
 * family's registration; the unary ops, Clip, Cast and CastLike are in k_elementwise_unary.cu.
 * The semantics are the CPU's (runtime/cpu/k_elementwise*.c; shared scalar math in ew_math.h);
 * the shape rules and the op → loop decoding are runtime/shape/s_elementwise.c's and
 * params_ew.h's. None has can_fuse (the CPU's have none either).
 *
 * Dtypes on this backend (others are refused in prepare, naming the dtype):
 *   Add Sub Mul Div Mod PRelu Max Min, comparisons, Pow (same dtype or mixed base/exponent),
 *   Abs Neg Sign Relu Clip: f32 f64 i32 i64;  Sum Mean and the float unary ops: f32 f64;
 *   Equal also bool; And Or Xor Not: bool;  BitwiseAnd/Or/Xor/Not: every integer dtype;
 *   BitShift: u8..u64;  Where: any dtype;  Cast/CastLike: between f32, f64, i8..i64, u8..u64,
 *   bool, with f16/bf16 targets rounded as the CPU does.
 *
 * How the loops run. A broadcast is planned once per plan (prepare), as the CPU does: the
 * output's dims of 1 dropped, adjacent dims merged where every operand stays contiguous (or
 * broadcast) across them, so same shapes are one dim, [B,T,D] + [D] is [B·T, D] with strides
 * (0, 1), [N,C,H,W] + [C,1,1] is [N·C, H·W] with strides (1, 0). The collapsed plan (dims and
 * each operand's strides) is a kernel parameter; each thread of a grid-stride loop maps its
 * output index to the operands' offsets (32-bit divisions below 2^31 elements, none when the
 * plan has one dim). Groups of four outputs are loaded and stored as one vector when the
 * innermost collapsed dim is a multiple of 4 (or the plan has one dim: then the last n % 4
 * elements go one by one) and the pointers are aligned: an operand then is four contiguous
 * elements or one broadcast value.
 */
#include "runtime/cuda/k_elementwise.h"

#include <stdlib.h>
#include <string.h>

UCU_BEGIN

#define EW_MAX_OPS 3

/* ---- broadcast plans ------------------------------------------------------------------------ */

typedef struct EwPlan {
    int rank, nops; /* collapsed rank (>= 1), operands */
    int small;      /* n < 2^31: 32-bit index arithmetic */
    int64_t n;      /* output elements */
    int64_t dims[ULC_RT_MAX_RANK];
    int64_t st[EW_MAX_OPS][ULC_RT_MAX_RANK]; /* element strides; the innermost is 0 or 1 */
} EwPlan;

static void ew_plan_make(EwPlan *p, const ulc_rt_tensor *out, const ulc_rt_tensor *const *ops, int nops) {
    memset(p, 0, sizeof *p);
    p->nops = nops;
    p->n = (int64_t)ulc_rt_numel(out);
    p->small = p->n < ((int64_t)1 << 31);
    int r = ulc_k_bcast_collapse(out, ops, nops, p->dims, p->st);
    if (r == 0) { /* one element (or none) */
        p->dims[0] = p->n;
        for (int k = 0; k < nops; k++) p->st[k][0] = 0;
        r = 1;
    }
    p->rank = r;
}

/* Offsets of output element i in each of the NOPS operands. */
template <int NOPS> __device__ __forceinline__ void ew_offsets(const EwPlan &p, int64_t i, int64_t *off) {
    if (p.rank == 1) {
        for (int k = 0; k < NOPS; k++) off[k] = i * p.st[k][0];
        return;
    }
    for (int k = 0; k < NOPS; k++) off[k] = 0;
    if (p.small) {
        uint32_t r = (uint32_t)i;
        for (int d = p.rank - 1; d > 0; d--) {
            uint32_t dim = (uint32_t)p.dims[d], q = r / dim, c = r - q * dim;
            for (int k = 0; k < NOPS; k++) off[k] += (int64_t)c * p.st[k][d];
            r = q;
        }
        for (int k = 0; k < NOPS; k++) off[k] += (int64_t)r * p.st[k][0];
    } else {
        int64_t r = i;
        for (int d = p.rank - 1; d > 0; d--) {
            int64_t q = r / p.dims[d], c = r - q * p.dims[d];
            for (int k = 0; k < NOPS; k++) off[k] += c * p.st[k][d];
            r = q;
        }
        for (int k = 0; k < NOPS; k++) off[k] += r * p.st[k][0];
    }
}

/* How many leading output elements go four at a time: the innermost collapsed dim must keep
 * groups of four inside one row (one dim: all but the last n % 4), and every operand read as
 * a vector (inner stride 1) and the output must be aligned; ok = the pointers' alignment. */
static int64_t ew_nvec(const EwPlan *p, int ok) {
    if (!ok) return 0;
    if (p->rank == 1) return p->n & ~(int64_t)3;
    return p->dims[p->rank - 1] % 4 == 0 ? p->n : 0;
}

template <class T> __device__ __forceinline__ void ew_load4(const T *base, int64_t off, int vec, T *x) {
    if (vec) {
        V4<T> t = *reinterpret_cast<const V4<T> *>(base + off);
        for (int j = 0; j < 4; j++) x[j] = t.v[j];
    } else {
        T s = base[off];
        for (int j = 0; j < 4; j++) x[j] = s;
    }
}

/* ---- binary ops --------------------------------------------------------------------------- */

#define EW_FN template <class A, class B> static __device__ __forceinline__

struct OAdd {
    EW_FN A f(A a, B b) { typedef typename EwWide<A>::type W; return (A)((W)a + (W)b); }
};
struct OSub {
    EW_FN A f(A a, B b) { typedef typename EwWide<A>::type W; return (A)((W)a - (W)b); }
};
struct OMul {
    EW_FN A f(A a, B b) { typedef typename EwWide<A>::type W; return (A)((W)a * (W)b); }
};
/* integers: truncate toward zero, x / 0 = 0, MIN / -1 = MIN */
struct ODiv {
    EW_FN A f(A a, B b) {
        typedef typename EwWide<A>::type W;
        if constexpr (EW_FLOAT(A)) return a / b;
        else if constexpr (EW_SIGNED(A)) return b == 0 ? (A)0 : b == -1 ? (A)((W)0 - (W)a) : (A)(a / b);
        else return b == 0 ? (A)0 : (A)(a / b);
    }
};
struct OMax {
    EW_FN A f(A a, B b) { return EW_FMAX(a, b); }
};
struct OMin {
    EW_FN A f(A a, B b) { return EW_FMIN(a, b); }
};
struct OPrelu {
    EW_FN A f(A a, B b) {
        typedef typename EwWide<A>::type W;
        if constexpr (EW_FLOAT(A)) return a < 0 ? a * b : a;
        else if constexpr (EW_SIGNED(A)) return a < 0 ? (A)((W)a * (W)b) : a;
        else return a;
    }
};
/* Mod fmod = 0: the divisor's sign (Python %); integers: x mod 0 = 0 */
struct OMod {
    EW_FN A f(A a, B b) {
        if constexpr (EW_FLOAT(A)) {
            A r = m_fmod(a, b);
            return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
        } else if constexpr (EW_SIGNED(A)) {
            if (b == 0 || b == -1) return 0;
            A r = (A)(a % b);
            return (r != 0 && ((r < 0) != (b < 0))) ? (A)(r + b) : r;
        } else {
            return b == 0 ? (A)0 : (A)(a % b);
        }
    }
};
/* Mod fmod = 1: the dividend's sign (C fmod) */
struct OFmod {
    EW_FN A f(A a, B b) {
        if constexpr (EW_FLOAT(A)) return m_fmod(a, b);
        else if constexpr (EW_SIGNED(A)) return (b == 0 || b == -1) ? (A)0 : (A)(a % b);
        else return b == 0 ? (A)0 : (A)(a % b);
    }
};
struct OShl {
    EW_FN A f(A a, B b) {
        typedef typename EwWide<A>::type W;
        return b >= 8 * sizeof(A) ? (A)0 : (A)((W)a << b);
    }
};
struct OShr {
    EW_FN A f(A a, B b) {
        typedef typename EwWide<A>::type W;
        return b >= 8 * sizeof(A) ? (A)0 : (A)((W)a >> b);
    }
};
struct OBand {
    EW_FN A f(A a, B b) { return (A)(a & b); }
};
struct OBor {
    EW_FN A f(A a, B b) { return (A)(a | b); }
};
struct OBxor {
    EW_FN A f(A a, B b) { return (A)(a ^ b); }
};
struct OAnd {
    EW_FN uint8_t f(A a, B b) { return (uint8_t)((a != 0) & (b != 0)); }
};
struct OOr {
    EW_FN uint8_t f(A a, B b) { return (uint8_t)((a != 0) | (b != 0)); }
};
struct OXor {
    EW_FN uint8_t f(A a, B b) { return (uint8_t)((a != 0) ^ (b != 0)); }
};
struct OEqB {
    EW_FN uint8_t f(A a, B b) { return (uint8_t)((a != 0) == (b != 0)); }
};
struct OEq {
    EW_FN uint8_t f(A a, B b) { return (uint8_t)(a == b); }
};
struct OLt {
    EW_FN uint8_t f(A a, B b) { return (uint8_t)(a < b); }
};
struct OGt {
    EW_FN uint8_t f(A a, B b) { return (uint8_t)(a > b); }
};
struct OLe {
    EW_FN uint8_t f(A a, B b) { return (uint8_t)(a <= b); }
};
struct OGe {
    EW_FN uint8_t f(A a, B b) { return (uint8_t)(a >= b); }
};
struct OFirst {
    EW_FN A f(A a, B b) { (void)b; return a; }
};
/* Pow: float^float (same dtype) powf / pow with x², x³ as products; int^int exact, wrapping;
 * mixed dtypes: pow in double converted to the base's dtype (integer exponents of an integer
 * base: exact) */
struct OPow {
    EW_FN A f(A a, B b) {
        if constexpr (std::is_same<A, B>::value && EW_FLOAT(A)) return ew_pow(a, b);
        else if constexpr (EW_FLOAT(A)) return (A)pow((double)a, (double)b);
        else if constexpr (EW_FLOAT(B)) {
            if constexpr (sizeof(A) == 4) return ew_sat_i32(pow((double)a, (double)b));
            else return ew_sat_i64(pow((double)a, (double)b));
        } else {
            return (A)ew_ipow((int64_t)a, (int64_t)b);
        }
    }
};

template <class Op, class TA, class TB, class TO>
__global__ void k_binary(const TA *a, const TB *b, TO *o, const __grid_constant__ EwPlan p, int64_t nvec) {
    const int in = p.rank - 1;
    const int va = p.st[0][in] != 0, vb = p.st[1][in] != 0;
    UCU_FOR(g, nvec / 4) {
        int64_t i = g * 4, off[2];
        ew_offsets<2>(p, i, off);
        TA xa[4];
        TB xb[4];
        ew_load4(a, off[0], va, xa);
        ew_load4(b, off[1], vb, xb);
        V4<TO> r;
        for (int j = 0; j < 4; j++) r.v[j] = (TO)Op::f(xa[j], xb[j]);
        *reinterpret_cast<V4<TO> *>(o + i) = r;
    }
    UCU_FOR(t, p.n - nvec) {
        int64_t i = nvec + t, off[2];
        ew_offsets<2>(p, i, off);
        o[i] = (TO)Op::f(a[off[0]], b[off[1]]);
    }
}

typedef ulc_status (*ew_bin_fn)(ulc_kctx *k, const void *a, const void *b, void *o, const EwPlan *p);

template <class Op, class TA, class TB, class TO>
static ulc_status bin_launch(ulc_kctx *k, const void *a, const void *b, void *o, const EwPlan *p) {
    if (p->n <= 0) return ULC_OK;
    int in = p->rank - 1;
    int ok = ew_aligned(o, sizeof(V4<TO>)) && (!p->st[0][in] || ew_aligned(a, sizeof(V4<TA>))) &&
             (!p->st[1][in] || ew_aligned(b, sizeof(V4<TB>)));
    int64_t nvec = ew_nvec(p, ok);
    auto f = k_binary<Op, TA, TB, TO>;
    UCU_LAUNCH(f, ew_grid(p->n, nvec), UCU_THREADS, 0, ucu_stream(k), (const TA *)a, (const TB *)b,
               (TO *)o, *p, nvec);
    UCU_TRY_LAUNCH(k, "elementwise binary");
    return ULC_OK;
}

static ew_bin_fn g_bin[B_COUNT_][ULC_DT_COUNT_];
static ew_bin_fn g_pow_mixed[ULC_DT_COUNT_][ULC_DT_COUNT_];
static ew_bin_fn g_first[9]; /* by element size: a copy */

static ew_bin_fn bin_fn(int op, int dt) { return dt > 0 && dt < ULC_DT_COUNT_ ? g_bin[op][dt] : NULL; }

#define EW_SET_BIN(D, T, OP, FN) g_bin[OP][ULC_DT_##D] = bin_launch<FN, T, T, T>;
#define EW_SET_CMP(D, T, OP, FN) g_bin[OP][ULC_DT_##D] = bin_launch<FN, T, T, uint8_t>;
#define EW_SET_POW_E(D, T, BD, BT) g_pow_mixed[ULC_DT_##BD][ULC_DT_##D] = bin_launch<OPow, BT, T, BT>;
#define EW_NUM4_EXP(X, BD, BT) X(F32, float, BD, BT) X(F64, double, BD, BT) \
    X(I32, int32_t, BD, BT) X(I64, int64_t, BD, BT)
#define EW_SET_POW_B(D, T, _) EW_NUM4_EXP(EW_SET_POW_E, D, T)

static void ew_fill_binary(void) {
    EW_NUM4(EW_SET_BIN, B_ADD, OAdd)
    EW_NUM4(EW_SET_BIN, B_SUB, OSub)
    EW_NUM4(EW_SET_BIN, B_MUL, OMul)
    EW_NUM4(EW_SET_BIN, B_DIV, ODiv)
    EW_NUM4(EW_SET_BIN, B_MAX, OMax)
    EW_NUM4(EW_SET_BIN, B_MIN, OMin)
    EW_NUM4(EW_SET_BIN, B_PRELU, OPrelu)
    EW_NUM4(EW_SET_BIN, B_MOD, OMod)
    EW_NUM4(EW_SET_BIN, B_FMOD, OFmod)
    EW_NUM4(EW_SET_BIN, B_POW, OPow)
    EW_NUM4(EW_SET_CMP, B_EQ, OEq)
    EW_NUM4(EW_SET_CMP, B_LT, OLt)
    EW_NUM4(EW_SET_CMP, B_GT, OGt)
    EW_NUM4(EW_SET_CMP, B_LE, OLe)
    EW_NUM4(EW_SET_CMP, B_GE, OGe)
    EW_INT8(EW_SET_BIN, B_BAND, OBand)
    EW_INT8(EW_SET_BIN, B_BOR, OBor)
    EW_INT8(EW_SET_BIN, B_BXOR, OBxor)
    EW_UINT4(EW_SET_BIN, B_SHL, OShl)
    EW_UINT4(EW_SET_BIN, B_SHR, OShr)
    g_bin[B_EQ][ULC_DT_BOOL] = bin_launch<OEqB, uint8_t, uint8_t, uint8_t>;
    g_bin[B_AND][ULC_DT_BOOL] = bin_launch<OAnd, uint8_t, uint8_t, uint8_t>;
    g_bin[B_OR][ULC_DT_BOOL] = bin_launch<OOr, uint8_t, uint8_t, uint8_t>;
    g_bin[B_XOR][ULC_DT_BOOL] = bin_launch<OXor, uint8_t, uint8_t, uint8_t>;
    EW_NUM4(EW_SET_POW_B, 0)
    g_first[1] = bin_launch<OFirst, uint8_t, uint8_t, uint8_t>;
    g_first[2] = bin_launch<OFirst, uint16_t, uint16_t, uint16_t>;
    g_first[4] = bin_launch<OFirst, uint32_t, uint32_t, uint32_t>;
    g_first[8] = bin_launch<OFirst, uint64_t, uint64_t, uint64_t>;
}

/* ---- the kernels' state ---------------------------------------------------------------------- */

typedef ulc_status (*ew_where_fn)(ulc_kctx *k, const void *c, const void *x, const void *y, void *o,
                                  const EwPlan *p);

typedef struct EwState {
    ew_bin_fn bin;  /* binary, variadic (the pairwise op; n_in = 1: a copy) */
    ew_where_fn where;
    EwPlan *plans;  /* binary, Where: 1; variadic: max(1, n_in - 1) */
    int nplans;
    int mean_dt;    /* Mean over n_in > 1: the dtype divided by n_in, else 0 */
} EwState;

static void ew_release(void *s) {
    EwState *st = (EwState *)s;
    if (!st) return;
    free(st->plans);
    free(st);
}

static ulc_status ew_state(ulc_kctx *k, int nplans, EwState **out) {
    EwState *st = (EwState *)calloc(1, sizeof *st);
    if (st && nplans > 0) st->plans = (EwPlan *)calloc((size_t)nplans, sizeof(EwPlan));
    if (!st || (nplans > 0 && !st->plans)) {
        free(st);
        return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    }
    st->nplans = nplans;
    k->state = st;
    *out = st;
    return ULC_OK;
}

/* ---- binary ------------------------------------------------------------------------------- */

static ulc_status binary_prepare(ulc_kctx *k) {
    int op = 0;
    ULC_TRY(ulc_sh_ew_binop(k, &op));
    const ulc_rt_tensor *a = k->in[0], *b = k->in[1];
    ulc_rt_tensor bv;
    ULC_TRY(ulc_sh_ew_legacy_view(k, a, b, &bv));
    ew_bin_fn fn = NULL;
    if (op == B_POW && a->dtype != b->dtype) {
        if (a->dtype > 0 && a->dtype < ULC_DT_COUNT_ && b->dtype > 0 && b->dtype < ULC_DT_COUNT_)
            fn = g_pow_mixed[a->dtype][b->dtype];
        if (!fn)
            return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                              "base %s with exponent %s is not supported by backend cuda (f32, f64, i32, i64)",
                              ulc_dtype_name(a->dtype), ulc_dtype_name(b->dtype));
    } else if (!(fn = bin_fn(op, a->dtype))) {
        return ucu_refuse_dtype(k, a->dtype);
    }
    EwState *st = NULL;
    ULC_TRY(ew_state(k, 1, &st));
    st->bin = fn;
    if (k->out[0]) {
        const ulc_rt_tensor *ops[2] = {a, &bv};
        ew_plan_make(&st->plans[0], k->out[0], ops, 2);
    }
    return ULC_OK;
}

static ulc_status binary_run(ulc_kctx *k) {
    EwState *st = (EwState *)k->state;
    if (!k->out[0]) return ULC_OK;
    return st->bin(k, k->in[0]->data, k->in[1]->data, k->out[0]->data, &st->plans[0]);
}

static const ulc_kernel k_binary_k = {0, 0, binary_prepare, binary_run, ew_release, NULL};

/* ---- variadic: out = in0 ⊕ in1, then out ⊕= in_i; Mean divides by N ------------------------- */

template <class T> __global__ void k_div_scalar(T *o, int64_t n, T d) {
    UCU_FOR(i, n) o[i] = o[i] / d;
}

static ulc_status variadic_prepare(ulc_kctx *k) {
    int op = 0;
    ULC_TRY(ulc_sh_ew_binop(k, &op));
    int dt = k->in[0]->dtype;
    ew_bin_fn fn = bin_fn(op, dt);
    if (!fn) return ucu_refuse_dtype(k, dt);
    size_t es = ulc_k_dtype_size(dt);
    if (k->n_in == 1 && (es > 8 || !g_first[es])) return ucu_refuse_dtype(k, dt);
    EwState *st = NULL;
    ULC_TRY(ew_state(k, k->n_in > 1 ? k->n_in - 1 : 1, &st));
    st->bin = k->n_in == 1 ? g_first[es] : fn;
    ulc_rt_tensor *o = k->out[0];
    if (!o) return ULC_OK;
    if (k->n_in == 1) {
        const ulc_rt_tensor *ops[2] = {k->in[0], k->in[0]};
        ew_plan_make(&st->plans[0], o, ops, 2);
    } else {
        const ulc_rt_tensor *ops[2] = {k->in[0], k->in[1]};
        ew_plan_make(&st->plans[0], o, ops, 2);
        for (int i = 2; i < k->n_in; i++) {
            const ulc_rt_tensor *ops2[2] = {o, k->in[i]};
            ew_plan_make(&st->plans[i - 1], o, ops2, 2);
        }
    }
    if (k->node->op == ULC_OP_Mean && k->n_in > 1) st->mean_dt = dt;
    return ULC_OK;
}

static ulc_status variadic_run(ulc_kctx *k) {
    EwState *st = (EwState *)k->state;
    ulc_rt_tensor *o = k->out[0];
    if (!o) return ULC_OK;
    if (k->n_in == 1) return st->bin(k, k->in[0]->data, k->in[0]->data, o->data, &st->plans[0]);
    ULC_TRY(st->bin(k, k->in[0]->data, k->in[1]->data, o->data, &st->plans[0]));
    for (int i = 2; i < k->n_in; i++) ULC_TRY(st->bin(k, o->data, k->in[i]->data, o->data, &st->plans[i - 1]));
    int64_t n = (int64_t)ulc_rt_numel(o);
    if (st->mean_dt && n > 0) {
        unsigned grid = ucu_blocks(n, UCU_THREADS);
        if (st->mean_dt == ULC_DT_F32) {
            auto f = k_div_scalar<float>;
            UCU_LAUNCH(f, grid, UCU_THREADS, 0, ucu_stream(k), (float *)o->data, n, (float)k->n_in);
        } else {
            auto f = k_div_scalar<double>;
            UCU_LAUNCH(f, grid, UCU_THREADS, 0, ucu_stream(k), (double *)o->data, n, (double)k->n_in);
        }
        UCU_TRY_LAUNCH(k, "Mean");
    }
    return ULC_OK;
}

static const ulc_kernel k_variadic_k = {0, 0, variadic_prepare, variadic_run, ew_release, NULL};

/* ---- Where(cond, x, y) ------------------------------------------------------------------------ */

template <class T>
__global__ void k_where(const uint8_t *c, const T *x, const T *y, T *o, const __grid_constant__ EwPlan p, int64_t nvec) {
    const int in = p.rank - 1;
    const int vc = p.st[0][in] != 0, vx = p.st[1][in] != 0, vy = p.st[2][in] != 0;
    UCU_FOR(g, nvec / 4) {
        int64_t i = g * 4, off[3];
        ew_offsets<3>(p, i, off);
        uint8_t xc[4];
        T xx[4], xy[4];
        ew_load4(c, off[0], vc, xc);
        ew_load4(x, off[1], vx, xx);
        ew_load4(y, off[2], vy, xy);
        V4<T> r;
        for (int j = 0; j < 4; j++) r.v[j] = xc[j] ? xx[j] : xy[j];
        *reinterpret_cast<V4<T> *>(o + i) = r;
    }
    UCU_FOR(t, p.n - nvec) {
        int64_t i = nvec + t, off[3];
        ew_offsets<3>(p, i, off);
        o[i] = c[off[0]] ? x[off[1]] : y[off[2]];
    }
}

template <class T>
static ulc_status where_launch(ulc_kctx *k, const void *c, const void *x, const void *y, void *o, const EwPlan *p) {
    if (p->n <= 0) return ULC_OK;
    int in = p->rank - 1;
    int ok = ew_aligned(o, sizeof(V4<T>)) && (!p->st[0][in] || ew_aligned(c, sizeof(V4<uint8_t>))) &&
             (!p->st[1][in] || ew_aligned(x, sizeof(V4<T>))) && (!p->st[2][in] || ew_aligned(y, sizeof(V4<T>)));
    int64_t nvec = ew_nvec(p, ok);
    auto f = k_where<T>;
    UCU_LAUNCH(f, ew_grid(p->n, nvec), UCU_THREADS, 0, ucu_stream(k), (const uint8_t *)c, (const T *)x,
               (const T *)y, (T *)o, *p, nvec);
    UCU_TRY_LAUNCH(k, "Where");
    return ULC_OK;
}

static ulc_status where_prepare(ulc_kctx *k) {
    int dt = k->in[1]->dtype;
    size_t es = ulc_k_dtype_size(dt);
    ew_where_fn fn = es == 1   ? where_launch<uint8_t>
                     : es == 2 ? where_launch<uint16_t>
                     : es == 4 ? where_launch<uint32_t>
                     : es == 8 ? where_launch<uint64_t>
                               : NULL;
    if (!fn) return ucu_refuse_dtype(k, dt);
    EwState *st = NULL;
    ULC_TRY(ew_state(k, 1, &st));
    st->where = fn;
    if (k->out[0]) ew_plan_make(&st->plans[0], k->out[0], (const ulc_rt_tensor *const *)k->in, 3);
    return ULC_OK;
}

static ulc_status where_run(ulc_kctx *k) {
    EwState *st = (EwState *)k->state;
    if (!k->out[0]) return ULC_OK;
    return st->where(k, k->in[0]->data, k->in[1]->data, k->in[2]->data, k->out[0]->data, &st->plans[0]);
}

static const ulc_kernel k_where_k = {0, 0, where_prepare, where_run, ew_release, NULL};

/* ---- registration ------------------------------------------------------------------------------ */

void ucu_reg_elementwise(ucu_table t) {
    ew_fill_binary();
    for (size_t i = 0; i < ulc_ew_n_binary; i++) t[ulc_ew_binary_ops[i]] = &k_binary_k;
    for (size_t i = 0; i < ulc_ew_n_variadic; i++) t[ulc_ew_variadic_ops[i]] = &k_variadic_k;
    t[ULC_OP_Where] = &k_where_k;
    ucu_reg_elementwise_unary(t);
}

UCU_END
