/*
 * k_nn_conv.c — Conv and ConvTranspose (math in k_nn.c's header comment).
 *
 * float32 with 1 to 3 spatial dims runs as a oneDNN convolution (ConvTranspose: deconvolution)
 * built in prepare for the plan's shapes. oneDNN picks the layouts its fastest implementation
 * wants ("any"): weights that are plan constants are reordered into that layout once, in
 * prepare. Activations the planner laid out as NCHW8C (runtime.h; Conv accepts X, writes Y and
 * reads a fused addend so) are oneDNN's nChw8c, what its AVX2 kernels pick, and are used in
 * place: a chain conv → conv/pool → conv makes no layout copies. A plain X or Y (graph inputs
 * and outputs, other readers) is reordered to and from the primitive's layout in a scratch
 * buffer on every run, as is a blocked one the primitive happens not to want. A node that has
 * blocked tensors but runs a path that reads plain ones (the direct loop, fused work applied
 * after the primitive) converts them to plain copies around the run (conv_run_wrapped).
 * Everything else — float64, 4+ spatial dims, geometries oneDNN
 * declines (negative padding) — runs a direct loop over the same geometry.
 *
 * Fusion (kernel.h's can_fuse): y = act(conv + addend). On the oneDNN path an addend of Y's
 * shape becomes a sum post-op (the addend is put in the destination first), a per-channel one a
 * binary post-op, and the activation an eltwise post-op; anything else, and the direct loops,
 * apply the fused work in one pass over Y afterwards.
 */
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/k_nn.h"

/* ---- direct loops (float64, and float32 where oneDNN does not apply) ---------------------- */

typedef struct conv_ref_job {
    const ulc_sh_conv *g;
    const void *x, *w, *b;
    void *y;
} conv_ref_job;

/* One (n, m) output plane per item. Taps are enumerated as a flat index decomposed per output
 * position: slow, but this path only serves float64 and rare shapes. */
#define DEFINE_CONV_REF(NAME, T)                                                                   \
    static void NAME(int64_t r0, int64_t r1, void *arg) {                                          \
        const conv_ref_job *j = arg;                                                               \
        const ulc_sh_conv *g = j->g;                                                                 \
        const ulc_nn_window *w = &g->w;                                                            \
        int nsp = g->nsp;                                                                          \
        int64_t osz = 1, isz = 1, ksz = 1;                                                         \
        for (int d = 0; d < nsp; d++) {                                                            \
            osz *= w->out[d];                                                                      \
            isz *= w->in[d];                                                                       \
            ksz *= w->k[d];                                                                        \
        }                                                                                          \
        int64_t cg = g->c / g->g, mg = g->m / g->g;                                                \
        const T *X = j->x, *W = j->w, *B = j->b;                                                   \
        T *Y = j->y;                                                                               \
        for (int64_t r = r0; r < r1; r++) {                                                        \
            int64_t n = r / g->m, m = r % g->m, grp = m / mg, mm = m % mg;                         \
            T *y = Y + r * osz;                                                                    \
            for (int64_t o = 0; o < osz; o++) {                                                    \
                int64_t oc[ULC_NN_MAX_SP], rem = o;                                                \
                for (int d = nsp - 1; d >= 0; d--) {                                               \
                    oc[d] = rem % w->out[d];                                                       \
                    rem /= w->out[d];                                                              \
                }                                                                                  \
                double acc = B ? (double)B[m] : 0.0;                                               \
                for (int64_t kk = 0; kk < ksz; kk++) {                                             \
                    int64_t kc[ULC_NN_MAX_SP], krem = kk, off = 0;                                 \
                    int inside = 1;                                                                \
                    for (int d = nsp - 1; d >= 0; d--) {                                           \
                        kc[d] = krem % w->k[d];                                                    \
                        krem /= w->k[d];                                                           \
                    }                                                                              \
                    for (int d = 0; d < nsp && inside; d++) {                                      \
                        int64_t i;                                                                 \
                        if (!g->transpose) {                                                       \
                            i = oc[d] * w->s[d] - w->pb[d] + kc[d] * w->d[d];                      \
                        } else {                                                                   \
                            int64_t t = oc[d] + w->pb[d] - kc[d] * w->d[d];                        \
                            if (t < 0 || t % w->s[d] != 0) {                                       \
                                inside = 0;                                                        \
                                break;                                                             \
                            }                                                                      \
                            i = t / w->s[d];                                                       \
                        }                                                                          \
                        if (i < 0 || i >= w->in[d]) inside = 0;                                    \
                        off = off * w->in[d] + i;                                                  \
                    }                                                                              \
                    if (!inside) continue;                                                         \
                    for (int64_t ci = 0; ci < cg; ci++) {                                          \
                        int64_t c = grp * cg + ci;                                                 \
                        T xv = X[(n * g->c + c) * isz + off];                                      \
                        T wv = g->transpose ? W[(c * mg + mm) * ksz + kk]                          \
                                            : W[(m * cg + ci) * ksz + kk];                         \
                        acc += (double)xv * (double)wv;                                            \
                    }                                                                              \
                }                                                                                  \
                y[o] = (T)acc;                                                                     \
            }                                                                                      \
        }                                                                                          \
    }

DEFINE_CONV_REF(conv_ref_f32, float)
DEFINE_CONV_REF(conv_ref_f64, double)

static void conv_ref_run(ulc_kctx *k, const ulc_sh_conv *g) {
    conv_ref_job j = {g, k->in[0]->data, k->in[1]->data, g->has_bias ? k->in[2]->data : NULL,
                      k->out[0]->data};
    double work = (double)(g->c / g->g); /* per output plane: out · C/group · kernel taps */
    for (int d = 0; d < g->nsp; d++) work *= (double)g->w.out[d] * (double)g->w.k[d];
    int64_t grain = ulc_k_grain(1 << 16, work);
    ulc_k_parallel(g->n * g->m, grain, g->dtype == ULC_DT_F32 ? conv_ref_f32 : conv_ref_f64, &j);
    ulc_nn_fuse_apply(k->fuse, k->out[0], 0);
}

/* ---- oneDNN convolution / deconvolution ----------------------------------------------------- */

typedef struct conv_state {
    ulc_sh_conv g;
    int use_dnnl;
    int post_ops; /* k->fuse is applied by oneDNN (else afterwards) */
    ulc_nn_addend add_kind;
    dnnl_primitive_t conv;
    dnnl_primitive_t r_src, r_dst, r_wei; /* NULL when that layout is already plain */
    dnnl_primitive_t r_z; /* the addend into the destination's layout (sum) */
    dnnl_memory_t m_src_user, m_src, m_wei_user, m_wei, m_bias, m_dst, m_dst_user, m_add, m_z;
    void *wei_packed; /* constant W in the primitive's layout */
    size_t src_bytes, dst_bytes, wei_bytes; /* scratch needed per run (0 = none) */
    size_t z_bytes; /* the sum addend's bytes when it is copied into the destination as is */
    int scratch_held;
    /* Layouts the primitive reads and writes in place: X, Y and the fused addend as NCHW8C
     * (runtime.h) when the planner made them so and the oneDNN path takes them directly. */
    int xb, yb, zb;
    /* 1: some of them are NCHW8C but this node runs a path that cannot read them (the direct
     * loop, fused work applied after the primitive): run converts them to plain copies in
     * wrap_buf (x, y, addend, each plain size) and Y back. */
    int wrap;
    float *wrap_buf;
    size_t wrap_x, wrap_y; /* offsets (floats) of y's and the addend's plain copies */
    ulc_wino *wino; /* the Winograd path (k_nn_wino.c) runs this node; nothing else is built */
} conv_state;

static void conv_dnnl_free(conv_state *s) {
    dnnl_primitive_t prims[] = {s->conv, s->r_src, s->r_dst, s->r_wei, s->r_z};
    for (size_t i = 0; i < sizeof prims / sizeof prims[0]; i++)
        if (prims[i]) dnnl_primitive_destroy(prims[i]);
    dnnl_memory_t mems[] = {s->m_src_user, s->m_src, s->m_dst_user, s->m_wei_user, s->m_wei,
                            s->m_bias,     s->m_dst, s->m_add,      s->m_z};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(s->wei_packed);
    if (s->scratch_held) ulc_nn_scratch_drop();
    ulc_sh_conv g = s->g;
    ulc_nn_addend add_kind = s->add_kind;
    memset(s, 0, sizeof *s);
    s->g = g;
    s->add_kind = add_kind;
}

static void conv_state_free(conv_state *s) {
    float *wb = s->wrap_buf;
    ulc_wino *wino = s->wino;
    conv_dnnl_free(s);
    free(wb);
    if (wino) {
        ulc_wino_free(wino);
        ulc_nn_scratch_drop();
    }
}

static void conv_release(void *p) {
    conv_state *s = p;
    if (!s) return;
    conv_state_free(s);
    free(s);
}

/* oneDNN's form of k->fuse: sum or binary add, then eltwise. */
static dnnl_status_t conv_post_ops(const ulc_kfuse *f, ulc_nn_addend add,
                                   const dnnl_memory_desc_t *add_md, dnnl_primitive_attr_t attr) {
    dnnl_post_ops_t po;
    dnnl_status_t st = dnnl_post_ops_create(&po);
    if (st != dnnl_success) return st;
    if (add == ULC_NN_ADD_FULL) st = dnnl_post_ops_append_sum(po, 1.0f);
    if (add == ULC_NN_ADD_CHANNEL) st = dnnl_post_ops_append_binary(po, dnnl_binary_add, add_md);
    if (st == dnnl_success) st = ulc_nn_append_act(po, f);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(attr, po);
    dnnl_post_ops_destroy(po);
    return st;
}

/* Plain tag of ONNX's weight layout: Conv W [M, C/g, k..] is (g)oi..., ConvTranspose W
 * [C, M/g, k..] is (g)io... in oneDNN's (g, o, i, k..) dims order. */
static dnnl_format_tag_t conv_wei_tag(int transpose, int grouped, int nsp) {
    if (!transpose) return ulc_nn_plain_tag(nsp + 2 + grouped);
    static const dnnl_format_tag_t io[3] = {dnnl_bac, dnnl_bacd, dnnl_bacde};
    static const dnnl_format_tag_t gio[3] = {dnnl_acbd, dnnl_acbde, dnnl_acbdef};
    return grouped ? gio[nsp - 1] : io[nsp - 1];
}

/* oneDNN's dims for the convolution of g: source sd, weights wd, destination dd, a per-channel
 * addend ad, strides, dilations (oneDNN counts them from 0) and pads. 0 when a pad is negative
 * (the direct loop handles those). */
static int conv_dnnl_dims(const ulc_sh_conv *g, dnnl_dims_t sd, dnnl_dims_t wd, dnnl_dims_t dd,
                          dnnl_dims_t ad, dnnl_dims_t str, dnnl_dims_t dil, dnnl_dims_t pl,
                          dnnl_dims_t pr) {
    int nsp = g->nsp, grouped = g->g > 1;
    sd[0] = dd[0] = g->n;
    sd[1] = g->c;
    dd[1] = g->m;
    ad[0] = 1;
    ad[1] = g->m;
    int wo = 0;
    if (grouped) wd[wo++] = g->g;
    wd[wo++] = g->m / g->g;
    wd[wo++] = g->c / g->g;
    for (int i = 0; i < nsp; i++) {
        sd[2 + i] = g->w.in[i];
        dd[2 + i] = g->w.out[i];
        ad[2 + i] = 1;
        wd[wo + i] = g->w.k[i];
        str[i] = g->w.s[i];
        dil[i] = g->w.d[i] - 1;
        pl[i] = g->w.pb[i];
        if (!g->transpose) {
            pr[i] = g->w.pe[i];
        } else {
            /* oneDNN: out = (in - 1)·s + ext - pl - pr; output_padding / output_shape are
             * folded into pr. */
            int64_t ext = (g->w.k[i] - 1) * g->w.d[i] + 1;
            pr[i] = (g->w.in[i] - 1) * g->w.s[i] + ext - pl[i] - g->w.out[i];
        }
        if (pl[i] < 0 || pr[i] < 0) return 0;
    }
    return 1;
}

/* Builds the primitive (with post-ops when with_post). Returns ULC_OK with s->use_dnnl = 0 when
 * oneDNN has no implementation for the case. Under ULC_PRECISION_BF16 a convolution reads X and
 * W as bfloat16 (X rounded by the source reorder on each run, W once at prepare) and writes Y in
 * float32, falling back to float32 where oneDNN has no bfloat16 kernel for it. */
static ulc_status conv_dnnl_build_dt(ulc_kctx *k, conv_state *s, int with_post, dnnl_data_type_t cdt);

static ulc_status conv_dnnl_build(ulc_kctx *k, conv_state *s, int with_post) {
    if (k->precision == ULC_PRECISION_BF16 && !s->g.transpose) {
        ULC_TRY(conv_dnnl_build_dt(k, s, with_post, dnnl_bf16));
        if (s->use_dnnl) return ULC_OK;
    }
    return conv_dnnl_build_dt(k, s, with_post, dnnl_f32);
}

static ulc_status conv_dnnl_build_dt(ulc_kctx *k, conv_state *s, int with_post, dnnl_data_type_t cdt) {
    const ulc_sh_conv *g = &s->g;
    dnnl_engine_t eng;
    ULC_TRY(ulc_nn_dnnl(k, &eng, NULL));
    int nsp = g->nsp, rank = nsp + 2, grouped = g->g > 1, wrank = rank + grouped;
    dnnl_dims_t sd, wd, bd, dd, str, dil, pl, pr, ad;
    if (!conv_dnnl_dims(g, sd, wd, dd, ad, str, dil, pl, pr)) return ULC_OK; /* negative pads */
    bd[0] = g->m;
    /* src_plain / dst_plain / z_user: how X, Y and a sum addend lie in memory (plain, or
     * NCHW8C where s->xb / yb / zb say so). */
    dnnl_memory_desc_t src_plain, wei_plain, bias_md, dst_plain, src_any, wei_any, dst_any, add_md;
    dnnl_memory_desc_t z_user;
    dnnl_status_t st =
        s->xb ? ulc_nn_md4(&src_plain, sd, 1)
              : dnnl_memory_desc_init_by_tag(&src_plain, rank, sd, dnnl_f32, ulc_nn_plain_tag(rank));
    if (st == dnnl_success)
        st = s->yb ? ulc_nn_md4(&dst_plain, dd, 1)
                   : dnnl_memory_desc_init_by_tag(&dst_plain, rank, dd, dnnl_f32,
                                                  ulc_nn_plain_tag(rank));
    if (st == dnnl_success)
        st = s->zb ? ulc_nn_md4(&z_user, dd, 1)
                   : dnnl_memory_desc_init_by_tag(&z_user, rank, dd, dnnl_f32,
                                                  ulc_nn_plain_tag(rank));
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&add_md, rank, ad, dnnl_f32, ulc_nn_plain_tag(rank));
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&wei_plain, wrank, wd, dnnl_f32,
                                          conv_wei_tag(g->transpose, grouped, nsp));
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_a);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&src_any, rank, sd, cdt, dnnl_format_tag_any);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&dst_any, rank, dd, dnnl_f32, dnnl_format_tag_any);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&wei_any, wrank, wd, cdt, dnnl_format_tag_any);
    ULC_TRY(ulc_nn_dnnl_check(k, st, "memory descriptors for the convolution"));

    dnnl_convolution_desc_t cd;
    dnnl_deconvolution_desc_t dcd;
    const void *op_desc;
    const dnnl_memory_desc_t *bias = g->has_bias ? &bias_md : NULL;
    if (!g->transpose) {
        st = dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                        dnnl_convolution_direct, &src_any, &wei_any,
                                                        bias, &dst_any, str, dil, pl, pr);
        op_desc = &cd;
    } else {
        st = dnnl_dilated_deconvolution_forward_desc_init(
            &dcd, dnnl_forward_inference, dnnl_deconvolution_direct, &src_any, &wei_any, bias,
            &dst_any, str, dil, pl, pr);
        op_desc = &dcd;
    }
    if (st != dnnl_success) return ULC_OK; /* a geometry oneDNN does not take */
    dnnl_primitive_attr_t attr = NULL;
    st = dnnl_primitive_attr_create(&attr);
    if (st == dnnl_success && with_post) st = conv_post_ops(k->fuse, s->add_kind, &add_md, attr);
    dnnl_primitive_desc_t pd = NULL;
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, op_desc, attr, eng, NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (st == dnnl_unimplemented) return ULC_OK;
    ULC_TRY(ulc_nn_dnnl_check(k, st, "convolution primitive descriptor"));
    if (cdt == dnnl_bf16 && ulc_nn_impl_is_ref(pd)) {
        dnnl_primitive_desc_destroy(pd); /* only oneDNN's reference loop: float32's kernels instead */
        return ULC_OK;
    }

    const dnnl_memory_desc_t *src_md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *wei_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *dst_md = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    int want_z = with_post && s->add_kind == ULC_NN_ADD_FULL;
    st = dnnl_primitive_create(&s->conv, pd);
    if (st == dnnl_success) st = dnnl_memory_create(&s->m_src, src_md, eng, DNNL_MEMORY_NONE);
    if (st == dnnl_success) st = dnnl_memory_create(&s->m_wei, wei_md, eng, DNNL_MEMORY_NONE);
    if (st == dnnl_success) st = dnnl_memory_create(&s->m_dst, dst_md, eng, DNNL_MEMORY_NONE);
    if (st == dnnl_success && g->has_bias)
        st = dnnl_memory_create(&s->m_bias, &bias_md, eng, DNNL_MEMORY_NONE);
    if (st == dnnl_success && with_post && s->add_kind == ULC_NN_ADD_CHANNEL)
        st = dnnl_memory_create(&s->m_add, &add_md, eng, DNNL_MEMORY_NONE);
    if (st == dnnl_success && !dnnl_memory_desc_equal(src_md, &src_plain)) {
        st = ulc_nn_reorder_create(&src_plain, src_md, &s->r_src);
        if (st == dnnl_success)
            st = dnnl_memory_create(&s->m_src_user, &src_plain, eng, DNNL_MEMORY_NONE);
        s->src_bytes = ulc_nn_align64(dnnl_memory_desc_get_size(src_md));
    }
    if (st == dnnl_success && !dnnl_memory_desc_equal(dst_md, &dst_plain)) {
        st = ulc_nn_reorder_create(dst_md, &dst_plain, &s->r_dst);
        if (st == dnnl_success)
            st = dnnl_memory_create(&s->m_dst_user, &dst_plain, eng, DNNL_MEMORY_NONE);
        s->dst_bytes = ulc_nn_align64(dnnl_memory_desc_get_size(dst_md));
    }
    if (st == dnnl_success && want_z) {
        /* The addend goes into the destination first: a copy when the layouts agree. */
        if (!dnnl_memory_desc_equal(dst_md, &z_user)) {
            st = ulc_nn_reorder_create(&z_user, dst_md, &s->r_z);
            if (st == dnnl_success) st = dnnl_memory_create(&s->m_z, &z_user, eng, DNNL_MEMORY_NONE);
        } else {
            s->z_bytes = dnnl_memory_desc_get_size(dst_md);
        }
    }
    int wei_reorder = !dnnl_memory_desc_equal(wei_md, &wei_plain);
    if (st == dnnl_success && wei_reorder) {
        st = ulc_nn_reorder_create(&wei_plain, wei_md, &s->r_wei);
        if (st == dnnl_success)
            st = dnnl_memory_create(&s->m_wei_user, &wei_plain, eng, DNNL_MEMORY_NONE);
    }
    /* wei_md lives in pd: its size is read before pd goes */
    size_t wb = wei_reorder ? dnnl_memory_desc_get_size(wei_md) : 0;
    dnnl_primitive_desc_destroy(pd);
    ULC_TRY(ulc_nn_dnnl_check(k, st, "convolution primitive and its reorders"));
    if (wei_reorder) {
        if (k->const_inputs & 2u) {
            /* W is a plan constant: reorder it once and keep it. */
            s->wei_packed = ulc_nn_alloc(wb);
            if (!s->wei_packed) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory packing W");
            st = dnnl_memory_set_data_handle(s->m_wei_user, k->in[1]->data);
            if (st == dnnl_success) st = dnnl_memory_set_data_handle(s->m_wei, s->wei_packed);
            if (st == dnnl_success) st = ulc_nn_reorder_run(s->r_wei, s->m_wei_user, s->m_wei);
            ULC_TRY(ulc_nn_dnnl_check(k, st, "reordering W"));
            dnnl_primitive_destroy(s->r_wei);
            s->r_wei = NULL;
        } else {
            s->wei_bytes = ulc_nn_align64(wb);
        }
    }
    s->use_dnnl = 1;
    s->post_ops = with_post;
    if (s->src_bytes + s->dst_bytes + s->wei_bytes) {
        ulc_nn_scratch_hold();
        s->scratch_held = 1;
    }
    return ULC_OK;
}

/* The engine of k_nn_wino.c: Winograd for 3×3 stride 1, im2col for other kernels of 4 taps or
 * more (1×1 convolutions stay on oneDNN); dilation 1, one group, float32 2-D, channel counts that
 * are multiples of 8, and fused work it applies itself (an addend of Y's shape or per channel;
 * no activation, Relu or LeakyRelu). Sets s->wino when it takes the node. */
static ulc_status conv_wino_prepare(ulc_kctx *k, conv_state *s) {
    const ulc_sh_conv *g = &s->g;
    const ulc_nn_window *w = &g->w;
    if (g->transpose || g->dtype != ULC_DT_F32 || g->nsp != 2 || g->g != 1 || !ulc_wino_enabled())
        return ULC_OK;
    if (k->precision == ULC_PRECISION_BF16 && !getenv("ULC_BF16_WINO")) return ULC_OK;
    int wino = 1;
    for (int i = 0; i < 2; i++) {
        if (w->d[i] != 1) return ULC_OK;
        if (w->k[i] != 3 || w->s[i] != 1) wino = 0;
    }
    /* other kernels run im2col on the same engine where that beats oneDNN's direct kernels
     * (measured on AVX2: 3×3 stride 2 by up to 1.6×; 1×1 convolutions lose, they stay there) */
    if (!wino && w->k[0] * w->k[1] < 4) return ULC_OK;
    /* Few tiles (ResNet's 7×7 stage at batch 1: 16 of F(2,3)) make a layer bound by reading its
     * weights, and Winograd's transformed ones are 16/9 of them: oneDNN's direct kernel, which
     * reads W itself, then wins (on AVX-512: 1.2 against 1.4 ms per 512-channel layer). */
    if (wino && ulc_k_avx512() && g->n * ((w->out[0] + 1) / 2) * ((w->out[1] + 1) / 2) < 32) return ULC_OK;
    if (k->fuse) {
        ulc_kact a = k->fuse->act;
        if (a != ULC_ACT_NONE && a != ULC_ACT_RELU && a != ULC_ACT_LEAKY_RELU) return ULC_OK;
        if (s->add_kind == ULC_NN_ADD_OTHER) return ULC_OK;
    }
    ulc_wino_geom wg = {g->n, g->c, g->m, w->in[0], w->in[1], w->out[0], w->out[1], w->pb[0],
                        w->pb[1], 0, w->k[0], w->k[1], w->s[0], w->s[1]};
    return ulc_wino_prepare(k, &wg, 0, &s->wino); /* empty tensors do not fit */
}

static ulc_status conv_wino_run(ulc_kctx *k, conv_state *s) {
    const ulc_kfuse *f = k->fuse;
    ulc_wino_io io = {
        .x = k->in[0]->data,
        .y = k->out[0]->data,
        .xb = ulc_nn_blocked(k->in[0]),
        .yb = ulc_nn_blocked(k->out[0]),
        .bias = s->g.has_bias ? k->in[2]->data : NULL,
        .add_channel = s->add_kind == ULC_NN_ADD_CHANNEL ? f->addend->data : NULL,
        .add_full = s->add_kind == ULC_NN_ADD_FULL ? f->addend->data : NULL,
        .zb = s->add_kind == ULC_NN_ADD_FULL && ulc_nn_blocked(f->addend),
        .act = f ? (int)f->act : ULC_ACT_NONE,
        .alpha = f ? f->a : 0.0f,
    };
    return ulc_wino_exec(k, s->wino, 0, &io);
}

static ulc_status conv_prepare_common(ulc_kctx *k, int transpose) {
    conv_state *s = calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = s;
    ULC_TRY(ulc_sh_conv_geom(k, transpose, &s->g));
    int empty = ulc_rt_numel(k->in[0]) == 0 || ulc_rt_numel(k->in[1]) == 0;
    int dnnl_ok = s->g.dtype == ULC_DT_F32 && s->g.nsp <= 3 && !empty;
    s->add_kind = ulc_nn_addend_kind(k->fuse, k->out[0]);
    int post = k->fuse && s->add_kind != ULC_NN_ADD_OTHER;
    int xb = ulc_nn_blocked(k->in[0]), yb = ulc_nn_blocked(k->out[0]);
    int zb = k->fuse && ulc_nn_blocked(k->fuse->addend);
    s->xb = xb;
    s->yb = yb;
    s->zb = zb;
    if (dnnl_ok) ULC_TRY(conv_wino_prepare(k, s));
    if (s->wino) return ULC_OK;
    if (dnnl_ok) ULC_TRY(conv_dnnl_build(k, s, post));
    if (dnnl_ok && !s->use_dnnl && post) {
        /* oneDNN declined the post-ops: without them, the fused work runs afterwards */
        conv_dnnl_free(s);
        s->xb = xb;
        s->yb = yb;
        s->zb = zb;
        ULC_TRY(conv_dnnl_build(k, s, 0));
    }
    int direct = s->use_dnnl && (!k->fuse || s->post_ops);
    if ((xb || yb || zb) && !direct) {
        /* A blocked tensor on a path that reads plain ones: plain copies around the run. */
        conv_dnnl_free(s);
        if (dnnl_ok) ULC_TRY(conv_dnnl_build(k, s, post));
        if (dnnl_ok && !s->use_dnnl && post) {
            conv_dnnl_free(s);
            ULC_TRY(conv_dnnl_build(k, s, 0));
        }
        size_t nx = xb ? (size_t)ulc_rt_numel(k->in[0]) : 0;
        size_t ny = yb ? (size_t)ulc_rt_numel(k->out[0]) : 0;
        size_t nz = zb ? (size_t)ulc_rt_numel(k->fuse->addend) : 0;
        s->wrap = 1;
        s->wrap_x = nx;
        s->wrap_y = nx + ny;
        s->xb = xb;
        s->yb = yb;
        s->zb = zb;
        s->wrap_buf = ulc_nn_alloc((nx + ny + nz) * sizeof(float));
        if (!s->wrap_buf && nx + ny + nz)
            return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory (plain copies of blocked tensors)");
    }
    if (s->wei_packed) k->packed_inputs |= 2u; /* reordered once: run reads the copy */
    return ULC_OK;
}

static ulc_status conv_prepare(ulc_kctx *k) { return conv_prepare_common(k, 0); }
static ulc_status convt_prepare(ulc_kctx *k) { return conv_prepare_common(k, 1); }

static ulc_status conv_dnnl_run(ulc_kctx *k, conv_state *s) {
    dnnl_stream_t stream;
    size_t need = s->src_bytes + s->dst_bytes + s->wei_bytes;
    ulc_nn_scratch sc;
    ULC_TRY(ulc_nn_run_begin(k, need, &stream, &sc));
    char *src_buf = sc.p, *dst_buf = src_buf + s->src_bytes, *wei_buf = dst_buf + s->dst_bytes;
    void *x = k->in[0]->data, *y = k->out[0]->data;
    dnnl_status_t st = dnnl_success;
    if (s->r_src) {
        st = dnnl_memory_set_data_handle(s->m_src_user, x);
        if (st == dnnl_success) st = dnnl_memory_set_data_handle(s->m_src, src_buf);
        if (st == dnnl_success) st = ulc_nn_reorder_run(s->r_src, s->m_src_user, s->m_src);
    } else {
        st = dnnl_memory_set_data_handle(s->m_src, x);
    }
    if (st == dnnl_success) {
        if (s->wei_packed) {
            st = dnnl_memory_set_data_handle(s->m_wei, s->wei_packed);
        } else if (s->r_wei) {
            st = dnnl_memory_set_data_handle(s->m_wei_user, k->in[1]->data);
            if (st == dnnl_success) st = dnnl_memory_set_data_handle(s->m_wei, wei_buf);
            if (st == dnnl_success) st = ulc_nn_reorder_run(s->r_wei, s->m_wei_user, s->m_wei);
        } else {
            st = dnnl_memory_set_data_handle(s->m_wei, k->in[1]->data);
        }
    }
    if (st == dnnl_success && s->m_bias)
        st = dnnl_memory_set_data_handle(s->m_bias, k->in[2]->data);
    if (st == dnnl_success)
        st = dnnl_memory_set_data_handle(s->m_dst, s->r_dst ? (void *)dst_buf : y);
    if (st == dnnl_success && s->post_ops && s->add_kind == ULC_NN_ADD_FULL) {
        /* The sum post-op adds what the destination holds: put the addend there first. */
        void *z = k->fuse->addend->data, *d = s->r_dst ? (void *)dst_buf : y;
        if (s->r_z) {
            st = dnnl_memory_set_data_handle(s->m_z, z);
            if (st == dnnl_success) st = ulc_nn_reorder_run(s->r_z, s->m_z, s->m_dst);
        } else if (z != d) {
            memcpy(d, z, s->z_bytes);
        }
    }
    if (st == dnnl_success && s->m_add)
        st = dnnl_memory_set_data_handle(s->m_add, k->fuse->addend->data);
    if (st == dnnl_success) {
        dnnl_exec_arg_t args[5];
        int na = 0;
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, s->m_src};
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, s->m_wei};
        if (s->m_bias) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, s->m_bias};
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, s->m_dst};
        if (s->m_add)
            args[na++] =
                (dnnl_exec_arg_t){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, s->m_add};
        st = dnnl_primitive_execute(s->conv, stream, na, args);
    }
    if (st == dnnl_success && s->r_dst) {
        st = dnnl_memory_set_data_handle(s->m_dst_user, y);
        if (st == dnnl_success) st = ulc_nn_reorder_run(s->r_dst, s->m_dst, s->m_dst_user);
    }
    ulc_nn_scratch_done(&sc);
    ULC_TRY(ulc_nn_dnnl_check(k, st, "executing the convolution"));
    if (!s->post_ops) ulc_nn_fuse_apply(k->fuse, k->out[0], 0);
    return ULC_OK;
}

static ulc_status conv_run_plain(ulc_kctx *k, conv_state *s) {
    if (s->use_dnnl) return conv_dnnl_run(k, s);
    conv_ref_run(k, &s->g);
    return ULC_OK;
}

/* s->wrap: the same run over plain copies of the blocked tensors (a plain view of k). */
static ulc_status conv_run_wrapped(ulc_kctx *k, conv_state *s) {
    ulc_rt_tensor tx = *k->in[0], ty = *k->out[0], tz;
    ulc_rt_tensor *ins[3] = {&tx, k->n_in > 1 ? k->in[1] : NULL, k->n_in > 2 ? k->in[2] : NULL};
    ulc_rt_tensor *outs[1] = {&ty};
    ulc_kfuse f;
    ulc_kctx kk = *k;
    kk.in = ins;
    kk.n_in = k->n_in < 3 ? k->n_in : 3;
    kk.out = outs;
    kk.n_out = 1;
    if (s->xb) {
        tx.data = s->wrap_buf;
        tx.layout = ULC_LAYOUT_PLAIN;
        tx.nbytes = ulc_rt_numel(&tx) * sizeof(float);
        ulc_nn_nchw8c_to_plain(k->in[0]->data, tx.data, tx.dims[0], tx.dims[1],
                               tx.dims[2] * tx.dims[3]);
    }
    if (s->yb) {
        ty.data = s->wrap_buf + s->wrap_x;
        ty.layout = ULC_LAYOUT_PLAIN;
        ty.nbytes = ulc_rt_numel(&ty) * sizeof(float);
    }
    if (s->zb) {
        f = *k->fuse;
        tz = *f.addend;
        tz.data = s->wrap_buf + s->wrap_y;
        tz.layout = ULC_LAYOUT_PLAIN;
        tz.nbytes = ulc_rt_numel(&tz) * sizeof(float);
        ulc_nn_nchw8c_to_plain(f.addend->data, tz.data, tz.dims[0], tz.dims[1],
                               tz.dims[2] * tz.dims[3]);
        f.addend = &tz;
        kk.fuse = &f;
    }
    ULC_TRY(conv_run_plain(&kk, s));
    if (s->yb)
        ulc_nn_plain_to_nchw8c(ty.data, k->out[0]->data, ty.dims[0], ty.dims[1],
                               ty.dims[2] * ty.dims[3]);
    return ULC_OK;
}

static ulc_status conv_run(ulc_kctx *k) {
    conv_state *s = k->state;
    if (s->wino) return conv_wino_run(k, s);
    return s->wrap ? conv_run_wrapped(k, s) : conv_run_plain(k, s);
}

static const ulc_kernel k_conv = {.blocked_inputs = 1u, .flags = ULC_K_BLOCKED_OUT | ULC_K_BLOCKED_ADDEND, .prepare = conv_prepare, .run = conv_run, .release = conv_release, .can_fuse = ulc_nn_can_fuse};
static const ulc_kernel k_convt = {.prepare = convt_prepare, .run = conv_run, .release = conv_release, .can_fuse = ulc_nn_can_fuse};

void ulc_nn_register_conv(const ulc_kernel **table) {
    table[ULC_OP_Conv] = &k_conv;
    table[ULC_OP_ConvTranspose] = &k_convt;
}
