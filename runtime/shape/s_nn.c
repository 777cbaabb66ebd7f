/*
 * s_nn.c — shape rules of the neural-network ops: Conv and ConvTranspose (auto_pad, pads,
 * strides, dilations, group, output_padding/output_shape), MatMul (numpy broadcasting of the
 * batch dims), Gemm (transA/transB, C broadcast to [M, N]), MaxPool/AveragePool (ceil_mode,
 * count_include_pad, storage_order, MaxPool's Indices), the global poolings and
 * BatchNormalization (inference; the training form's running statistics). The geometry each
 * computes is shared with the kernels through params.h; the CPU kernels: runtime/cpu/k_nn*.c.
 */
#include <stdint.h>
#include <string.h>

#include "runtime/shape/rules.h"

ulc_status ulc_nn_attr_spatial(ulc_kctx *k, const char *name, int n, int64_t def, int64_t min,
                               int64_t *out) {
    const int64_t *v;
    int cnt = ulc_k_attr_ints(k, name, &v);
    if (cnt < 0) {
        for (int i = 0; i < n; i++) out[i] = def;
        return ULC_OK;
    }
    if (cnt != n)
        return ulc_k_fail(
            k, ULC_ERR_INVALID,
            "attribute %s has %d values; the input has %d spatial dims, so %d are needed", name,
            cnt, n / (strcmp(name, "pads") == 0 ? 2 : 1), n);
    for (int i = 0; i < n; i++) {
        if (v[i] < min)
            return ulc_k_fail(k, ULC_ERR_INVALID, "attribute %s[%d] = %lld; values must be >= %lld",
                              name, i, (long long)v[i], (long long)min);
        if (v[i] > ULC_RT_MAX_NUMEL) /* like a dim: sums and products of a few stay in int64 */
            return ulc_k_fail(k, ULC_ERR_INVALID, "attribute %s[%d] = %lld; values must be <= 2^48",
                              name, i, (long long)v[i]);
        out[i] = v[i];
    }
    return ULC_OK;
}

/* The refusal of a window whose geometry int64 cannot hold (checked arithmetic, kutil.h). */
static ulc_status window_overflow(ulc_kctx *k, int i) {
    return ulc_k_fail(k, ULC_ERR_INVALID,
                      "spatial dim %d: kernel, strides, dilations and pads take the window past "
                      "int64",
                      i);
}

/* ext = (kernel - 1)·dilation + 1, the dilated window; 1 on overflow. */
static int window_ext(int64_t kernel, int64_t dilation, int64_t *ext) {
    return ulc_i64_mul(kernel - 1, dilation, ext) || ulc_i64_add(*ext, 1, ext);
}

/* ceil(a / b) for a >= 0, b >= 1, without forming a + b - 1. */
static int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0); }

ulc_status ulc_nn_window_init(ulc_kctx *k, int nsp, const int64_t *in, const int64_t *kernel,
                              int ceil_mode, ulc_nn_window *w) {
    memset(w, 0, sizeof *w);
    if (nsp < 1 || nsp > ULC_NN_MAX_SP)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "%d spatial dims (1 to %d are supported)", nsp,
                          ULC_NN_MAX_SP);
    w->nsp = nsp;
    int64_t pads[2 * ULC_NN_MAX_SP];
    ULC_TRY(ulc_nn_attr_spatial(k, "strides", nsp, 1, 1, w->s));
    ULC_TRY(ulc_nn_attr_spatial(k, "dilations", nsp, 1, 1, w->d));
    const char *ap = ulc_k_attr_str(k, "auto_pad", "NOTSET");
    int mode; /* 0 NOTSET, 1 SAME_UPPER, 2 SAME_LOWER, 3 VALID */
    if (strcmp(ap, "NOTSET") == 0 || ap[0] == '\0')
        mode = 0;
    else if (strcmp(ap, "SAME_UPPER") == 0)
        mode = 1;
    else if (strcmp(ap, "SAME_LOWER") == 0)
        mode = 2;
    else if (strcmp(ap, "VALID") == 0)
        mode = 3;
    else
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
    if (mode == 0) ULC_TRY(ulc_nn_attr_spatial(k, "pads", 2 * nsp, 0, 0, pads));
    int64_t taps; /* the kernels multiply taps by output sizes: a window is at most a tensor */
    char kb[160];
    for (int i = 0; i < nsp; i++)
        if (kernel[i] < 1)
            return ulc_k_fail(k, ULC_ERR_INVALID, "kernel dim %d is %lld; it must be >= 1", i,
                              (long long)kernel[i]);
    if (!ulc_k_numel(nsp, kernel, &taps))
        return ulc_k_fail(k, ULC_ERR_INVALID, "the kernel %s has more than 2^48 taps",
                          ulc_k_dims_str(nsp, kernel, kb, sizeof kb));
    for (int i = 0; i < nsp; i++) {
        w->in[i] = in[i];
        w->k[i] = kernel[i];
        int64_t ext, s = w->s[i], o;
        if (window_ext(kernel[i], w->d[i], &ext)) return window_overflow(k, i);
        if (mode == 1 || mode == 2) {
            o = ceil_div(in[i], s);
            int64_t total; /* (o - 1)·s + ext - in */
            if (ulc_i64_mul(o - 1, s, &total) || ulc_i64_add(total, ext, &total) ||
                ulc_i64_sub(total, in[i], &total))
                return window_overflow(k, i);
            if (total < 0) total = 0;
            w->pb[i] = mode == 1 ? total / 2 : total - total / 2;
            w->pe[i] = total - w->pb[i];
        } else {
            if (mode == 0) {
                w->pb[i] = pads[i];
                w->pe[i] = pads[nsp + i];
            }
            int64_t padded, span, last, lead;
            if (ulc_i64_add(in[i], w->pb[i], &lead) || ulc_i64_add(lead, w->pe[i], &padded) ||
                ulc_i64_sub(padded, ext, &span))
                return window_overflow(k, i);
            if (span < 0)
                return ulc_k_fail(k, ULC_ERR_INVALID,
                                  "spatial dim %d: the window (%lld taps, dilated) is larger than "
                                  "the padded input (%lld)",
                                  i, (long long)ext, (long long)padded);
            o = (ceil_mode ? ceil_div(span, s) : span / s) + 1;
            /* The last window must start inside the input or its leading padding. */
            if (ceil_mode) {
                if (ulc_i64_mul(o - 1, s, &last)) return window_overflow(k, i);
                if (last >= lead) o--;
            }
        }
        if (o < 1)
            return ulc_k_fail(k, ULC_ERR_INVALID, "spatial dim %d: the output would be empty", i);
        w->out[i] = o;
    }
    return ULC_OK;
}

static ulc_status bn_infer(ulc_kctx *k) {
    const ulc_rt_tensor *x = k->in[0];
    if (k->n_in < 5)
        return ulc_k_fail(k, ULC_ERR_INVALID, "needs 5 inputs (X, scale, B, mean, var), got %d",
                          k->n_in);
    for (int i = 0; i < 5; i++)
        if (!k->in[i])
            return ulc_k_fail(k, ULC_ERR_INVALID, "input %d is missing (all 5 are required)", i);
    if (!ulc_k_is_float(x->dtype))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "X has dtype %s; float32/float64 are supported",
                          ulc_dtype_name(x->dtype));
    if (x->rank < 2)
        return ulc_k_fail(k, ULC_ERR_INVALID, "X has rank %d; BatchNormalization needs [N, C, ...]",
                          x->rank);
    int training = k->opset >= 14 ? ulc_k_attr_int(k, "training_mode", 0) != 0 : 0;
    for (int i = 1; i < k->n_out; i++) {
        if (!k->out[i]) continue;
        if (k->opset < 14 && i <= 2) {
            training = 1; /* running mean/var requested: the training form */
            continue;
        }
        if (k->opset >= 14 && i <= 2 && training) continue;
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                          "output %d (%s) is requested; only Y%s can be computed", i,
                          i >= 3 ? "saved mean/variance of training" : "running statistics",
                          training ? ", running_mean and running_var" : "");
    }
    int64_t c = x->dims[1], sp = 1;
    for (int d = 2; d < x->rank; d++) sp *= x->dims[d];
    uint64_t pn = ulc_rt_numel(k->in[1]);
    int spatial = (int)ulc_k_attr_int(k, "spatial", 1);
    int64_t p = c;
    if (k->opset < 9 && !spatial && pn == (uint64_t)(c * sp)) p = c * sp;
    if (training && p != c)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "training mode with spatial=0 is not supported");
    static const char *names[] = {"X", "scale", "B", "mean", "var"};
    for (int i = 1; i < 5; i++) {
        char buf[96];
        if (!ulc_k_is_float(k->in[i]->dtype) || ulc_rt_numel(k->in[i]) != (uint64_t)p)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "input %s is %s; expected %lld float values (one per %s of X)",
                              names[i], ulc_rt_shape_str(k->in[i], buf, sizeof buf), (long long)p,
                              p == c ? "channel" : "channel and position");
    }
    ulc_k_set(k->out[0], x->dtype, x->rank, x->dims);
    for (int i = 1; i <= 2 && i < k->n_out; i++)
        if (k->out[i])
            ulc_k_set(k->out[i], k->in[2 + i]->dtype, k->in[2 + i]->rank, k->in[2 + i]->dims);
    return ULC_OK;
}

void ulc_sh_bn_params(const ulc_kctx *k, ulc_sh_bn *b) {
    const ulc_rt_tensor *x = k->in[0];
    b->n = x->dims[0];
    int64_t c = x->dims[1], sp = 1;
    for (int d = 2; d < x->rank; d++) sp *= x->dims[d];
    b->p = (int64_t)ulc_rt_numel(k->in[1]);
    b->inner = b->p == c ? sp : 1;
    b->eps = ulc_k_attr_float(k, "epsilon", 1e-5f);
    b->momentum = ulc_k_attr_float(k, "momentum", 0.9f);
    b->training = k->opset >= 14 ? ulc_k_attr_int(k, "training_mode", 0) != 0 : 0;
    for (int i = 1; i <= 2 && i < k->n_out; i++)
        if (k->out[i]) b->training = 1;
}

static ulc_status conv_kernel_dims(ulc_kctx *k, const ulc_rt_tensor *w, int nsp, int64_t *kernel) {
    const int64_t *ks;
    int nk = ulc_k_attr_ints(k, "kernel_shape", &ks);
    if (nk >= 0 && nk != nsp)
        return ulc_k_fail(k, ULC_ERR_INVALID, "kernel_shape has %d values; X has %d spatial dims",
                          nk, nsp);
    for (int i = 0; i < nsp; i++) {
        kernel[i] = w->dims[2 + i];
        if (nk >= 0 && ks[i] != kernel[i])
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "kernel_shape[%d] = %lld but W's spatial dim %d is %lld", i,
                              (long long)ks[i], i, (long long)kernel[i]);
    }
    return ULC_OK;
}

/* Validates X, W and B and computes the geometry; shared by the rule and the kernels. */
ulc_status ulc_sh_conv_geom(ulc_kctx *k, int transpose, ulc_sh_conv *g) {
    memset(g, 0, sizeof *g);
    g->transpose = transpose;
    const ulc_rt_tensor *x = k->in[0], *w = k->n_in > 1 ? k->in[1] : NULL;
    const ulc_rt_tensor *b = k->n_in > 2 ? k->in[2] : NULL;
    char s1[96], s2[96];
    if (!x || !w) return ulc_k_fail(k, ULC_ERR_INVALID, "inputs X and W are required");
    if (!ulc_k_is_float(x->dtype))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "X has dtype %s; float32/float64 are supported",
                          ulc_dtype_name(x->dtype));
    if (w->dtype != x->dtype || (b && b->dtype != x->dtype))
        return ulc_k_fail(k, ULC_ERR_INVALID, "X, W and B must have one dtype (X %s, W %s%s%s)",
                          ulc_dtype_name(x->dtype), ulc_dtype_name(w->dtype), b ? ", B " : "",
                          b ? ulc_dtype_name(b->dtype) : "");
    if (x->rank < 3 || w->rank != x->rank)
        return ulc_k_fail(
            k, ULC_ERR_INVALID,
            "X %s and W %s must have the same rank >= 3 ([N, C, D1..] and [M, C/group, k1..])",
            ulc_rt_shape_str(x, s1, sizeof s1), ulc_rt_shape_str(w, s2, sizeof s2));
    g->dtype = x->dtype;
    g->nsp = x->rank - 2;
    g->n = x->dims[0];
    g->c = x->dims[1];
    g->g = ulc_k_attr_int(k, "group", 1);
    if (g->g < 1 || g->c % g->g != 0)
        return ulc_k_fail(k, ULC_ERR_INVALID, "group = %lld does not divide X's %lld channels",
                          (long long)g->g, (long long)g->c);
    if (!transpose) {
        g->m = w->dims[0];
        int64_t wc;
        if (ulc_i64_mul(w->dims[1], g->g, &wc) || wc != g->c || g->m % g->g != 0)
            return ulc_k_fail(
                k, ULC_ERR_INVALID,
                "W %s does not fit X %s with group %lld (need W[1]·group = C and group | M)",
                ulc_rt_shape_str(w, s1, sizeof s1), ulc_rt_shape_str(x, s2, sizeof s2),
                (long long)g->g);
    } else {
        if (ulc_i64_mul(w->dims[1], g->g, &g->m))
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "W %s with group %lld gives more output channels than int64 holds",
                              ulc_rt_shape_str(w, s1, sizeof s1), (long long)g->g);
        if (w->dims[0] != g->c)
            return ulc_k_fail(
                k, ULC_ERR_INVALID,
                "W %s does not fit X %s (ConvTranspose needs W[0] = C, W = [C, M/group, k...])",
                ulc_rt_shape_str(w, s1, sizeof s1), ulc_rt_shape_str(x, s2, sizeof s2));
    }
    if (b) {
        if (ulc_rt_numel(b) != (uint64_t)g->m || b->rank != 1)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "B is %s; expected [%lld] (one per output channel)",
                              ulc_rt_shape_str(b, s1, sizeof s1), (long long)g->m);
        g->has_bias = 1;
    }
    int64_t kernel[ULC_NN_MAX_SP];
    ULC_TRY(conv_kernel_dims(k, w, g->nsp, kernel));
    if (!transpose) return ulc_nn_window_init(k, g->nsp, x->dims + 2, kernel, 0, &g->w);
    /* ConvTranspose: out = s·(in - 1) + output_padding + ext - pb - pe, pads from output_shape
     * or auto_pad when given. */
    ulc_nn_window *wd = &g->w;
    int nsp = g->nsp;
    wd->nsp = nsp;
    int64_t opad[ULC_NN_MAX_SP], pads[2 * ULC_NN_MAX_SP], oshape[ULC_NN_MAX_SP];
    ULC_TRY(ulc_nn_attr_spatial(k, "strides", nsp, 1, 1, wd->s));
    ULC_TRY(ulc_nn_attr_spatial(k, "dilations", nsp, 1, 1, wd->d));
    ULC_TRY(ulc_nn_attr_spatial(k, "output_padding", nsp, 0, 0, opad));
    const char *ap = ulc_k_attr_str(k, "auto_pad", "NOTSET");
    int same_upper = strcmp(ap, "SAME_UPPER") == 0, same_lower = strcmp(ap, "SAME_LOWER") == 0;
    int valid = strcmp(ap, "VALID") == 0;
    if (!same_upper && !same_lower && !valid && strcmp(ap, "NOTSET") != 0 && ap[0])
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", ap);
    const int64_t *os;
    int nos = ulc_k_attr_ints(k, "output_shape", &os);
    if (nos >= 0 && nos != nsp && nos != nsp + 2)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "output_shape has %d values; expected %d (spatial dims)", nos, nsp);
    if (nos < 0 && !same_upper && !same_lower) {
        if (valid)
            memset(pads, 0, sizeof pads);
        else
            ULC_TRY(ulc_nn_attr_spatial(k, "pads", 2 * nsp, 0, 0, pads));
    }
    for (int i = 0; i < nsp; i++) {
        int64_t in = x->dims[2 + i], ext, full; /* full = s·(in - 1) + output_padding + ext */
        wd->in[i] = in;
        wd->k[i] = kernel[i];
        if (window_ext(kernel[i], wd->d[i], &ext) || ulc_i64_mul(wd->s[i], in - 1, &full) ||
            ulc_i64_add(full, opad[i], &full) || ulc_i64_add(full, ext, &full))
            return window_overflow(k, i);
        if (nos >= 0 || same_upper || same_lower) {
            if (nos >= 0)
                oshape[i] = os[nos - nsp + i];
            else if (ulc_i64_mul(in, wd->s[i], &oshape[i]))
                return window_overflow(k, i);
            int64_t total;
            if (ulc_i64_sub(full, oshape[i], &total)) return window_overflow(k, i);
            /* Python's floor division, as ONNX's reference: a negative total (output_shape
             * beyond the natural size) extends the output after the input. */
            int64_t half = total / 2 - (total < 0 && total % 2 != 0);
            wd->pb[i] = same_upper ? half : total - half;
            wd->pe[i] = total - wd->pb[i];
            wd->out[i] = oshape[i];
        } else {
            wd->pb[i] = pads[i];
            wd->pe[i] = pads[nsp + i];
            if (ulc_i64_sub(full, wd->pb[i], &wd->out[i]) ||
                ulc_i64_sub(wd->out[i], wd->pe[i], &wd->out[i]))
                return window_overflow(k, i);
        }
        if (wd->out[i] < 1)
            return ulc_k_fail(k, ULC_ERR_INVALID,
                              "spatial dim %d: the output would be empty (%lld)", i,
                              (long long)wd->out[i]);
    }
    return ULC_OK;
}

static ulc_status conv_infer_common(ulc_kctx *k, int transpose) {
    ulc_sh_conv g;
    ULC_TRY(ulc_sh_conv_geom(k, transpose, &g));
    int64_t dims[ULC_RT_MAX_RANK];
    dims[0] = g.n;
    dims[1] = g.m;
    for (int i = 0; i < g.nsp; i++) dims[2 + i] = g.w.out[i];
    ulc_k_set(k->out[0], g.dtype, g.nsp + 2, dims);
    return ULC_OK;
}

static ulc_status conv_infer(ulc_kctx *k) { return conv_infer_common(k, 0); }

static ulc_status convt_infer(ulc_kctx *k) { return conv_infer_common(k, 1); }

/* ULC_OK when the products can run in dtype dt, else the error naming it. */
static ulc_status mm_check_dtype(ulc_kctx *k, int dt) {
    if (dt == ULC_DT_F32 || dt == ULC_DT_F64 || dt == ULC_DT_I32 || dt == ULC_DT_I64 ||
        dt == ULC_DT_U32 || dt == ULC_DT_U64)
        return ULC_OK;
    return ulc_k_fail(k, ULC_ERR_UNSUPPORTED,
                      "dtype %s is not supported (float32, float64, int32, int64, uint32, uint64 are)",
                      ulc_dtype_name(dt));
}

/* Works out the numpy matmul geometry of A x B; fills s when non-NULL, out dims when non-NULL. */
ulc_status ulc_sh_matmul_geom(ulc_kctx *k, ulc_sh_matmul *s, int64_t *odims, int *orank) {
    const ulc_rt_tensor *a = k->in[0], *b = k->in[1];
    char s1[96], s2[96];
    if (a->dtype != b->dtype)
        return ulc_k_fail(k, ULC_ERR_INVALID, "A is %s but B is %s; MatMul needs one dtype",
                          ulc_dtype_name(a->dtype), ulc_dtype_name(b->dtype));
    ULC_TRY(mm_check_dtype(k, a->dtype));
    if (a->rank < 1 || b->rank < 1)
        return ulc_k_fail(k, ULC_ERR_INVALID, "A %s and B %s must have rank >= 1",
                          ulc_rt_shape_str(a, s1, sizeof s1), ulc_rt_shape_str(b, s2, sizeof s2));
    int64_t m = a->rank == 1 ? 1 : a->dims[a->rank - 2];
    int64_t ka = a->dims[a->rank - 1];
    int64_t kb = b->rank == 1 ? b->dims[0] : b->dims[b->rank - 2];
    int64_t n = b->rank == 1 ? 1 : b->dims[b->rank - 1];
    if (ka != kb)
        return ulc_k_fail(k, ULC_ERR_INVALID, "A %s and B %s: inner dims differ (%lld vs %lld)",
                          ulc_rt_shape_str(a, s1, sizeof s1), ulc_rt_shape_str(b, s2, sizeof s2),
                          (long long)ka, (long long)kb);
    int abat = a->rank > 2 ? a->rank - 2 : 0, bbat = b->rank > 2 ? b->rank - 2 : 0;
    int nb = abat > bbat ? abat : bbat;
    int64_t bdims[ULC_RT_MAX_RANK], as[ULC_RT_MAX_RANK], bs[ULC_RT_MAX_RANK];
    /* Batch strides: A's batch entries are m·k apart, B's k·n apart, row-major. */
    int64_t astr = m * ka, bstr = kb * n;
    for (int d = nb - 1; d >= 0; d--) {
        int ad = d - (nb - abat), bd = d - (nb - bbat);
        int64_t da = ad >= 0 ? a->dims[ad] : 1, db = bd >= 0 ? b->dims[bd] : 1;
        if (da != db && da != 1 && db != 1)
            return ulc_k_fail(k, ULC_ERR_INVALID, "A %s and B %s: batch dims do not broadcast",
                              ulc_rt_shape_str(a, s1, sizeof s1),
                              ulc_rt_shape_str(b, s2, sizeof s2));
        bdims[d] = da == 1 ? db : da;
        as[d] = da == 1 ? 0 : astr;
        bs[d] = db == 1 ? 0 : bstr;
        astr *= da;
        bstr *= db;
    }
    if (odims) {
        int r = 0;
        for (int d = 0; d < nb; d++) odims[r++] = bdims[d];
        if (a->rank > 1) odims[r++] = m;
        if (b->rank > 1) odims[r++] = n;
        *orank = r;
    }
    if (s) {
        s->dtype = a->dtype;
        s->m = m;
        s->n = n;
        s->k = ka;
        s->nb = nb;
        s->batch = 1;
        int b_has_batch = 0, a_dense = 1;
        for (int d = 0; d < nb; d++) {
            s->bdims[d] = bdims[d];
            s->a_bs[d] = as[d];
            s->b_bs[d] = bs[d];
            s->batch *= bdims[d];
            if (bs[d]) b_has_batch = 1;
            if (!as[d] && bdims[d] > 1) a_dense = 0;
        }
        s->fold = !b_has_batch && a_dense;
    }
    return ULC_OK;
}

static ulc_status mm_infer(ulc_kctx *k) {
    int64_t dims[ULC_RT_MAX_RANK + 2];
    int rank = 0;
    if (!k->in[0] || !k->in[1])
        return ulc_k_fail(k, ULC_ERR_INVALID, "inputs A and B are required");
    ULC_TRY(ulc_sh_matmul_geom(k, NULL, dims, &rank));
    if (rank > ULC_RT_MAX_RANK)
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "result rank %d exceeds %d", rank,
                          ULC_RT_MAX_RANK);
    ulc_k_set(k->out[0], k->in[0]->dtype, rank, dims);
    return ULC_OK;
}

ulc_status ulc_sh_gemm_geom(ulc_kctx *k, ulc_sh_gemm *s) {
    const ulc_rt_tensor *a = k->in[0], *b = k->n_in > 1 ? k->in[1] : NULL;
    const ulc_rt_tensor *c = k->n_in > 2 ? k->in[2] : NULL;
    char s1[96], s2[96];
    if (!a || !b) return ulc_k_fail(k, ULC_ERR_INVALID, "inputs A and B are required");
    if (k->opset < 11 && !c)
        return ulc_k_fail(k, ULC_ERR_INVALID, "input C is required before opset 11");
    if (a->dtype != b->dtype || (c && c->dtype != a->dtype))
        return ulc_k_fail(k, ULC_ERR_INVALID, "A, B and C must have one dtype (A %s, B %s)",
                          ulc_dtype_name(a->dtype), ulc_dtype_name(b->dtype));
    ULC_TRY(mm_check_dtype(k, a->dtype));
    if (a->rank != 2 || b->rank != 2)
        return ulc_k_fail(k, ULC_ERR_INVALID, "A %s and B %s must be matrices",
                          ulc_rt_shape_str(a, s1, sizeof s1), ulc_rt_shape_str(b, s2, sizeof s2));
    s->dtype = a->dtype;
    s->ta = ulc_k_attr_int(k, "transA", 0) != 0;
    s->tb = ulc_k_attr_int(k, "transB", 0) != 0;
    s->alpha = ulc_k_attr_float(k, "alpha", 1.0f);
    s->beta = ulc_k_attr_float(k, "beta", 1.0f);
    s->m = a->dims[s->ta ? 1 : 0];
    s->k = a->dims[s->ta ? 0 : 1];
    int64_t kb = b->dims[s->tb ? 1 : 0];
    s->n = b->dims[s->tb ? 0 : 1];
    if (kb != s->k)
        return ulc_k_fail(k, ULC_ERR_INVALID,
                          "op(A) is [%lld, %lld] but op(B) is [%lld, %lld] (transA=%d, transB=%d)",
                          (long long)s->m, (long long)s->k, (long long)kb, (long long)s->n, s->ta,
                          s->tb);
    s->has_c = c != NULL;
    if (c) {
        /* Unidirectional broadcast of C to [M, N]. */
        int64_t cm = c->rank == 2 ? c->dims[0] : 1;
        int64_t cn = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
        if (c->rank > 2 || (cm != 1 && cm != s->m) || (cn != 1 && cn != s->n))
            return ulc_k_fail(k, ULC_ERR_INVALID, "C %s does not broadcast to [%lld, %lld]",
                              ulc_rt_shape_str(c, s1, sizeof s1), (long long)s->m, (long long)s->n);
        if (k->opset < 7 && ulc_k_attr_int(k, "broadcast", 0) == 0 && (cm != s->m || cn != s->n))
            return ulc_k_fail(k, ULC_ERR_INVALID, "C %s must be [%lld, %lld] when broadcast = 0",
                              ulc_rt_shape_str(c, s1, sizeof s1), (long long)s->m, (long long)s->n);
        s->c_rs = cm == 1 ? 0 : cn;
        s->c_cs = cn == 1 ? 0 : 1;
    }
    return ULC_OK;
}

static ulc_status gemm_infer(ulc_kctx *k) {
    ulc_sh_gemm s;
    ULC_TRY(ulc_sh_gemm_geom(k, &s));
    int64_t dims[2] = {s.m, s.n};
    ulc_k_set(k->out[0], s.dtype, 2, dims);
    return ULC_OK;
}

ulc_status ulc_sh_pool_geom(ulc_kctx *k, int kind, ulc_sh_pool *s) {
    const ulc_rt_tensor *x = k->in[0];
    char buf[96];
    if (kind == POOL_AVG
            ? !ulc_k_is_float(x->dtype)
            : !(ulc_k_is_float(x->dtype) || x->dtype == ULC_DT_I8 || x->dtype == ULC_DT_U8))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "X has dtype %s; supported: float32, float64%s",
                          ulc_dtype_name(x->dtype), kind == POOL_MAX ? ", int8, uint8" : "");
    if (x->rank < 3)
        return ulc_k_fail(k, ULC_ERR_INVALID, "X is %s; pooling needs [N, C, D1, ...]",
                          ulc_rt_shape_str(x, buf, sizeof buf));
    s->kind = kind;
    s->dtype = x->dtype;
    s->nsp = x->rank - 2;
    s->planes = x->dims[0] * x->dims[1];
    const int64_t *ks;
    int nk = ulc_k_attr_ints(k, "kernel_shape", &ks);
    if (nk < 0) return ulc_k_fail(k, ULC_ERR_INVALID, "attribute kernel_shape is required");
    if (nk != s->nsp)
        return ulc_k_fail(k, ULC_ERR_INVALID, "kernel_shape has %d values; X has %d spatial dims",
                          nk, s->nsp);
    if (kind == POOL_AVG && k->opset < 19 && ulc_k_attr(k, "dilations"))
        return ulc_k_fail(k, ULC_ERR_INVALID, "AveragePool has no dilations before opset 19");
    int ceil_mode = (int)ulc_k_attr_int(k, "ceil_mode", 0);
    ULC_TRY(ulc_nn_window_init(k, s->nsp, x->dims + 2, ks, ceil_mode, &s->w));
    s->isz = (int64_t)dims_numel(s->nsp, s->w.in); /* X's dims: the walk's invariant */
    if (!ulc_k_numel(s->nsp, s->w.out, &s->osz))
        return ulc_k_fail(k, ULC_ERR_INVALID, "the output would have more than 2^48 elements");
    s->include_pad = kind == POOL_AVG && ulc_k_attr_int(k, "count_include_pad", 0) != 0;
    int64_t so = kind == POOL_MAX ? ulc_k_attr_int(k, "storage_order", 0) : 0;
    if (so != 0 && so != 1)
        return ulc_k_fail(k, ULC_ERR_INVALID, "storage_order = %lld; it must be 0 or 1",
                          (long long)so);
    s->col_major = (int)so;
    s->indices = kind == POOL_MAX && k->n_out > 1 && k->out[1];
    return ULC_OK;
}

static ulc_status pool_infer_common(ulc_kctx *k, int kind) {
    ulc_sh_pool s;
    memset(&s, 0, sizeof s);
    ULC_TRY(ulc_k_need_input(k, 0, "X"));
    ULC_TRY(ulc_sh_pool_geom(k, kind, &s));
    const ulc_rt_tensor *x = k->in[0];
    int64_t dims[ULC_RT_MAX_RANK];
    dims[0] = x->dims[0];
    dims[1] = x->dims[1];
    for (int i = 0; i < s.nsp; i++) dims[2 + i] = s.w.out[i];
    ulc_k_set(k->out[0], x->dtype, x->rank, dims);
    if (s.indices) ulc_k_set(k->out[1], ULC_DT_I64, x->rank, dims);
    return ULC_OK;
}

static ulc_status maxpool_infer(ulc_kctx *k) { return pool_infer_common(k, POOL_MAX); }

static ulc_status avgpool_infer(ulc_kctx *k) { return pool_infer_common(k, POOL_AVG); }

static ulc_status gpool_infer(ulc_kctx *k) {
    ULC_TRY(ulc_k_need_input(k, 0, "X"));
    const ulc_rt_tensor *x = k->in[0];
    char buf[96];
    if (!ulc_k_is_float(x->dtype))
        return ulc_k_fail(k, ULC_ERR_UNSUPPORTED, "X has dtype %s; float32/float64 are supported",
                          ulc_dtype_name(x->dtype));
    if (x->rank < 2)
        return ulc_k_fail(k, ULC_ERR_INVALID, "X is %s; global pooling needs [N, C, ...]",
                          ulc_rt_shape_str(x, buf, sizeof buf));
    int64_t dims[ULC_RT_MAX_RANK];
    for (int i = 0; i < x->rank; i++) dims[i] = i < 2 ? x->dims[i] : 1;
    ulc_k_set(k->out[0], x->dtype, x->rank, dims);
    return ULC_OK;
}

void ulc_shape_register_nn(ulc_shape_rule *t) {
    t[ULC_OP_Conv].infer = conv_infer;
    t[ULC_OP_ConvTranspose].infer = convt_infer;
    t[ULC_OP_MatMul].infer = mm_infer;
    t[ULC_OP_Gemm].infer = gemm_infer;
    t[ULC_OP_MaxPool].infer = maxpool_infer;
    t[ULC_OP_AveragePool].infer = avgpool_infer;
    t[ULC_OP_GlobalAveragePool].infer = gpool_infer;
    t[ULC_OP_GlobalMaxPool].infer = gpool_infer;
    t[ULC_OP_BatchNormalization].infer = bn_infer;
}
