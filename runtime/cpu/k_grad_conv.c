/*
 * k_grad_conv.c — ConvGradData and ConvGradWeight (domain "ulc"; contract in ir/ops_ulc.def):
 * the gradients of Conv (k_nn_conv.c) with respect to X and to W (and B).
 *
 *   ConvGradData(dy, W, x_shape)  dx[n,c,i] = Σ_{m in group(c), k, o: o·s - pb + k·d = i}
 *                                               dy[n,m,o] · W[m,c',k]
 *   ConvGradWeight(dy, x)         dW[m,c',k] = Σ_{n, o} dy[n,m,o] · x[n,c, o·s - pb + k·d]
 *                                 (taps in the padding read 0), dB[m] = Σ_{n, o} dy[n,m,o]
 *
 * Geometry is the forward's: strides, dilations, pads, auto_pad and group through
 * ulc_nn_window_init on X's dims, the kernel from W (ConvGradData; kernel_shape, when given,
 * must agree) or from kernel_shape (ConvGradWeight, where it is required), and dy must have the
 * forward's output shape [N, M, out...].
 *
 * Float32 with 1 to 3 spatial dims runs oneDNN's backward-data / backward-weights convolution
 * (with diff_bias when dB is asked for), built in prepare with a forward-training primitive as
 * its hint. oneDNN picks the layouts it computes in ("any"); the plain tensors are reordered to
 * and from them in the shared scratch buffer on every run, except a constant W of ConvGradData
 * (a frozen weight: the usual case), which is reordered once in prepare. Everything else — 4+
 * spatial dims, empty tensors, geometries oneDNN declines — runs direct loops over the same
 * geometry: one (n, c) plane of dx, or one output channel m of dW, per item, sums in a fixed
 * order.
 *
 * The bits never depend on the thread count. ConvGradData reduces over output channels and taps
 * inside one thread whatever oneDNN's thread count. ConvGradWeight sums over the batch, and
 * oneDNN splits that sum by its thread count; so the batch is cut into parts by the shapes alone
 * (cgw_parts), each part runs a single-threaded backward-weights primitive on whichever thread
 * is free, and the parts' dW and dB are added in part order. A run on one thread, on every core,
 * or on however many threads the load leaves (runtime/threads.c) gives the same bytes.
 */
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "runtime/cpu/k_nn.h"

void ulc_cpu_register_grad_conv(const ulc_kernel **table);

/* ---- direct loops ---------------------------------------------------------------------------- */

typedef struct cg_ref_job {
    const ulc_sh_conv_grad *g;
    const float *dy, *w, *x; /* w: ConvGradData, x: ConvGradWeight */
    float *dx, *dw, *db;
    int64_t isz, osz, ksz;
} cg_ref_job;

/* Input offset of output position o (coordinates oc) and tap kk (coordinates kc), or -1 when
 * the tap lies in the padding. */
static int64_t cg_tap(const ulc_nn_window *w, const int64_t *oc, const int64_t *kc) {
    int64_t off = 0;
    for (int d = 0; d < w->nsp; d++) {
        int64_t i = oc[d] * w->s[d] - w->pb[d] + kc[d] * w->d[d];
        if (i < 0 || i >= w->in[d]) return -1;
        off = off * w->in[d] + i;
    }
    return off;
}

static void cg_coords(int nsp, const int64_t *dims, int64_t flat, int64_t *c) {
    for (int d = nsp - 1; d >= 0; d--) {
        c[d] = flat % dims[d];
        flat /= dims[d];
    }
}

/* ConvGradData: one (n, c) plane of dx per item; output channels, then positions, then taps. */
static void cgd_ref(int64_t r0, int64_t r1, void *arg) {
    const cg_ref_job *j = arg;
    const ulc_sh_conv_grad *g = j->g;
    int64_t cg = g->c / g->g, mg = g->m / g->g;
    for (int64_t r = r0; r < r1; r++) {
        int64_t n = r / g->c, c = r % g->c, grp = c / cg, ci = c % cg;
        float *dx = j->dx + r * j->isz;
        memset(dx, 0, (size_t)j->isz * sizeof(float));
        for (int64_t mm = 0; mm < mg; mm++) {
            int64_t m = grp * mg + mm;
            const float *dy = j->dy + (n * g->m + m) * j->osz;
            const float *w = j->w + (m * cg + ci) * j->ksz;
            for (int64_t o = 0; o < j->osz; o++) {
                int64_t oc[ULC_NN_MAX_SP], kc[ULC_NN_MAX_SP];
                cg_coords(g->nsp, g->w.out, o, oc);
                for (int64_t kk = 0; kk < j->ksz; kk++) {
                    cg_coords(g->nsp, g->w.k, kk, kc);
                    int64_t off = cg_tap(&g->w, oc, kc);
                    if (off >= 0) dx[off] += dy[o] * w[kk];
                }
            }
        }
    }
}

/* ConvGradWeight: one output channel m per item (its C/group · k weights and its bias). */
static void cgw_ref(int64_t m0, int64_t m1, void *arg) {
    const cg_ref_job *j = arg;
    const ulc_sh_conv_grad *g = j->g;
    int64_t cg = g->c / g->g, mg = g->m / g->g;
    for (int64_t m = m0; m < m1; m++) {
        int64_t grp = m / mg;
        for (int64_t ci = 0; ci < cg; ci++) {
            int64_t c = grp * cg + ci;
            for (int64_t kk = 0; kk < j->ksz; kk++) {
                int64_t kc[ULC_NN_MAX_SP], oc[ULC_NN_MAX_SP];
                cg_coords(g->nsp, g->w.k, kk, kc);
                double acc = 0;
                for (int64_t n = 0; n < g->n; n++) {
                    const float *dy = j->dy + (n * g->m + m) * j->osz;
                    const float *x = j->x + (n * g->c + c) * j->isz;
                    for (int64_t o = 0; o < j->osz; o++) {
                        cg_coords(g->nsp, g->w.out, o, oc);
                        int64_t off = cg_tap(&g->w, oc, kc);
                        if (off >= 0) acc += (double)dy[o] * x[off];
                    }
                }
                j->dw[(m * cg + ci) * j->ksz + kk] = (float)acc;
            }
        }
        if (j->db) {
            double acc = 0;
            for (int64_t n = 0; n < g->n; n++) {
                const float *dy = j->dy + (n * g->m + m) * j->osz;
                for (int64_t o = 0; o < j->osz; o++) acc += dy[o];
            }
            j->db[m] = (float)acc;
        }
    }
}

static void cg_ref_run(ulc_kctx *k, const ulc_sh_conv_grad *g) {
    cg_ref_job j = {g, k->in[0]->data, NULL, NULL, NULL, NULL, NULL, 1, 1, 1};
    for (int d = 0; d < g->nsp; d++) {
        j.isz *= g->w.in[d];
        j.osz *= g->w.out[d];
        j.ksz *= g->w.k[d];
    }
    int64_t grain = ulc_k_grain(1 << 16, (double)j.osz * (double)j.ksz *
                                             (double)(g->weight ? g->n * (g->c / g->g) : g->m / g->g));
    if (!g->weight) {
        j.w = k->in[1]->data;
        j.dx = k->out[0]->data;
        ulc_k_parallel(g->n * g->c, grain, cgd_ref, &j);
    } else {
        j.x = k->in[1]->data;
        j.dw = k->out[0]->data;
        j.db = g->bias ? k->out[1]->data : NULL;
        ulc_k_parallel(g->m, grain, cgw_ref, &j);
    }
}

/* ---- oneDNN ---------------------------------------------------------------------------------- */

/* One tensor the primitive reads or writes: the plain tensor (k->in[slot] or k->out[slot]) is
 * used in place when oneDNN's layout is plain, else reordered through scratch (or, for a
 * constant input, once in prepare into `packed`). */
typedef struct cg_arg {
    int arg;              /* DNNL_ARG_* */
    int is_out, slot;
    dnnl_memory_t m;      /* in the primitive's layout */
    dnnl_memory_t m_user; /* the plain tensor, when reordered */
    dnnl_primitive_t r;   /* plain → primitive (inputs) or back (outputs); NULL: none */
    size_t bytes;         /* scratch per run (64-byte multiple) */
    void *packed;
} cg_arg;

typedef struct cg_state {
    ulc_sh_conv_grad g;
    dnnl_primitive_t prim; /* NULL: the direct loops run */
    cg_arg a[4];
    int na;
    int scratch_held;
    ulc_wino *wino; /* ConvGradData on the Winograd path (k_nn_wino.c); nothing else is built */
    struct cgw_state *cgw; /* ConvGradWeight on oneDNN, in parts of the batch */
} cg_state;

static void cgw_free(struct cgw_state *w);

static void cg_release(void *p) {
    cg_state *s = p;
    if (!s) return;
    if (s->prim) dnnl_primitive_destroy(s->prim);
    for (int i = 0; i < s->na; i++) {
        cg_arg *a = &s->a[i];
        if (a->r) dnnl_primitive_destroy(a->r);
        if (a->m) dnnl_memory_destroy(a->m);
        if (a->m_user) dnnl_memory_destroy(a->m_user);
        free(a->packed);
    }
    if (s->scratch_held) ulc_nn_scratch_drop();
    ulc_wino_free(s->wino);
    cgw_free(s->cgw);
    free(s);
}

/* Adds an argument whose primitive layout is `md` and whose plain layout is `plain`. */
static ulc_status cg_arg_add(ulc_kctx *k, cg_state *s, dnnl_engine_t eng, int arg, int is_out,
                             int slot, const dnnl_memory_desc_t *md,
                             const dnnl_memory_desc_t *plain) {
    cg_arg *a = &s->a[s->na++];
    a->arg = arg;
    a->is_out = is_out;
    a->slot = slot;
    dnnl_status_t st = dnnl_memory_create(&a->m, md, eng, DNNL_MEMORY_NONE);
    if (st == dnnl_success && !dnnl_memory_desc_equal(md, plain)) {
        st = is_out ? ulc_nn_reorder_create(md, plain, &a->r) : ulc_nn_reorder_create(plain, md, &a->r);
        if (st == dnnl_success) st = dnnl_memory_create(&a->m_user, plain, eng, DNNL_MEMORY_NONE);
        if (st == dnnl_success && !is_out && (k->const_inputs & (1u << slot))) {
            /* a plan constant: reorder it once */
            size_t b = dnnl_memory_desc_get_size(md);
            a->packed = ulc_nn_alloc(b);
            if (!a->packed) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory packing input %d", slot);
            st = dnnl_memory_set_data_handle(a->m_user, k->in[slot]->data);
            if (st == dnnl_success) st = dnnl_memory_set_data_handle(a->m, a->packed);
            if (st == dnnl_success) st = ulc_nn_reorder_run(a->r, a->m_user, a->m);
            if (st == dnnl_success) {
                dnnl_primitive_destroy(a->r);
                a->r = NULL;
            }
        } else if (st == dnnl_success) {
            a->bytes = ulc_nn_align64(dnnl_memory_desc_get_size(md));
        }
    }
    return ulc_nn_dnnl_check(k, st, "memory and reorders of the convolution gradient");
}

/* The plain memory descriptors of a batch of n rows. */
typedef struct cg_mds {
    dnnl_memory_desc_t src, wei, dst, bias;
} cg_mds;

/* The backward primitive descriptor for a batch of n rows (*pd NULL when oneDNN has no
 * implementation for the case) and the plain descriptors. bf (ConvGradData only): dY and W read
 * as bfloat16, dX written in float32 (*pd NULL where oneDNN has only its reference loop). */
static ulc_status cg_pd_create(ulc_kctx *k, const ulc_sh_conv_grad *g, int64_t n, int bias_out,
                               const_dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd,
                               cg_mds *pl, int bf) {
    *pd = NULL;
    dnnl_data_type_t ct = bf ? dnnl_bf16 : dnnl_f32;
    dnnl_engine_t eng;
    ULC_TRY(ulc_nn_dnnl(k, &eng, NULL));
    int nsp = g->nsp, rank = nsp + 2, grouped = g->g > 1, wrank = rank + grouped;
    dnnl_dims_t sd, wd, dd, bd, str, dil, pb, pe;
    sd[0] = dd[0] = n;
    sd[1] = g->c;
    dd[1] = g->m;
    bd[0] = g->m;
    int wo = 0;
    if (grouped) wd[wo++] = g->g;
    wd[wo++] = g->m / g->g;
    wd[wo++] = g->c / g->g;
    for (int i = 0; i < nsp; i++) {
        sd[2 + i] = g->w.in[i];
        dd[2 + i] = g->w.out[i];
        wd[wo + i] = g->w.k[i];
        str[i] = g->w.s[i];
        dil[i] = g->w.d[i] - 1;
        pb[i] = g->w.pb[i];
        pe[i] = g->w.pe[i];
    }
    dnnl_memory_desc_t src_any, wei_any, dst_any, src_hint;
    dnnl_format_tag_t tag = ulc_nn_plain_tag(rank);
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&pl->src, rank, sd, dnnl_f32, tag);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&pl->dst, rank, dd, dnnl_f32, tag);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&pl->wei, wrank, wd, dnnl_f32, ulc_nn_plain_tag(wrank));
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&pl->bias, 1, bd, dnnl_f32, dnnl_a);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&src_any, rank, sd, dnnl_f32, dnnl_format_tag_any);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&src_hint, rank, sd, ct, dnnl_format_tag_any);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&dst_any, rank, dd, ct, dnnl_format_tag_any);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&wei_any, wrank, wd, ct, dnnl_format_tag_any);
    ULC_TRY(ulc_nn_dnnl_check(k, st, "memory descriptors for the convolution gradient"));

    /* The forward primitive is only the hint oneDNN's backward descriptors require. */
    const dnnl_memory_desc_t *bias = g->weight && bias_out ? &pl->bias : NULL;
    dnnl_convolution_desc_t fd, bwd;
    st = dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training,
                                                    dnnl_convolution_direct, &src_hint, &wei_any,
                                                    bias, &dst_any, str, dil, pb, pe);
    if (st != dnnl_success) return ULC_OK; /* a geometry oneDNN does not take */
    dnnl_primitive_desc_t fwd = NULL;
    st = dnnl_primitive_desc_create(&fwd, &fd, NULL, eng, NULL);
    if (st == dnnl_unimplemented) return ULC_OK;
    ULC_TRY(ulc_nn_dnnl_check(k, st, "forward hint of the convolution gradient"));
    if (!g->weight)
        st = dnnl_dilated_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct,
                                                              &src_any, &wei_any, &dst_any, str,
                                                              dil, pb, pe);
    else
        st = dnnl_dilated_convolution_backward_weights_desc_init(
            &bwd, dnnl_convolution_direct, &src_any, &wei_any, bias, &dst_any, str, dil, pb, pe);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(pd, &bwd, attr, eng, fwd);
    dnnl_primitive_desc_destroy(fwd);
    if (st == dnnl_unimplemented || (st != dnnl_success && st != dnnl_out_of_memory)) {
        *pd = NULL;
        return ULC_OK;
    }
    if (st == dnnl_success && bf && ulc_nn_impl_is_ref(*pd)) {
        dnnl_primitive_desc_destroy(*pd);
        *pd = NULL;
        return ULC_OK;
    }
    return ulc_nn_dnnl_check(k, st, "convolution gradient primitive descriptor");
}

/* Builds ConvGradData's primitive for the plan's shapes; leaves s->prim NULL when oneDNN has no
 * implementation for the case. */
static ulc_status cgd_dnnl_build(ulc_kctx *k, cg_state *s) {
    dnnl_engine_t eng;
    ULC_TRY(ulc_nn_dnnl(k, &eng, NULL));
    dnnl_primitive_desc_t pd;
    cg_mds pl;
    pd = NULL;
    if (k->precision == ULC_PRECISION_BF16) ULC_TRY(cg_pd_create(k, &s->g, s->g.n, 0, NULL, &pd, &pl, 1));
    if (!pd) ULC_TRY(cg_pd_create(k, &s->g, s->g.n, 0, NULL, &pd, &pl, 0));
    if (!pd) return ULC_OK;
    ulc_status us = cg_arg_add(k, s, eng, DNNL_ARG_DIFF_DST, 0, 0,
                               dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0), &pl.dst);
    if (us == ULC_OK)
        us = cg_arg_add(k, s, eng, DNNL_ARG_WEIGHTS, 0, 1,
                        dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &pl.wei);
    if (us == ULC_OK)
        us = cg_arg_add(k, s, eng, DNNL_ARG_DIFF_SRC, 1, 0,
                        dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0), &pl.src);
    if (us == ULC_OK)
        us = ulc_nn_dnnl_check(k, dnnl_primitive_create(&s->prim, pd), "convolution gradient primitive");
    dnnl_primitive_desc_destroy(pd);
    if (us != ULC_OK) return us;
    size_t need = 0;
    for (int i = 0; i < s->na; i++) need += s->a[i].bytes;
    if (need) {
        ulc_nn_scratch_hold();
        s->scratch_held = 1;
    }
    return ULC_OK;
}

/* ---- ConvGradWeight in parts of the batch ----------------------------------------------------- */

enum { CGW_MAX_PARTS = 32 };

/* How many parts the batch is cut into, from the shapes alone: a million multiply-adds per part
 * or more (a single-threaded primitive's call costs microseconds), at most one part per row and
 * CGW_MAX_PARTS, and at most 64 MiB of partial dW. */
static int cgw_parts(const ulc_sh_conv_grad *g) {
    double per_row = 2.0 * (double)(g->m / g->g) * (double)(g->c / g->g) * (double)g->g;
    double wbytes = 4.0 * (double)(g->m / g->g) * (double)(g->c / g->g) * (double)g->g;
    for (int d = 0; d < g->nsp; d++) {
        per_row *= (double)g->w.k[d] * (double)g->w.out[d];
        wbytes *= (double)g->w.k[d];
    }
    double p = per_row * (double)g->n / 2e6;
    double by_mem = (64.0 * 1024 * 1024) / wbytes;
    if (p > by_mem) p = by_mem;
    if (p > (double)g->n) p = (double)g->n;
    if (p > CGW_MAX_PARTS) p = CGW_MAX_PARTS;
    return p < 1 ? 1 : (int)p;
}

/* Rows [n0, n0 + n) of part i of p over a batch of N. */
static void cgw_part_rows(int64_t N, int p, int i, int64_t *n0, int64_t *n) {
    *n0 = N * i / p;
    *n = N * (i + 1) / p - *n0;
}

/* A primitive and its scratchpad size. Everything here runs with a scratchpad of our own per
 * part ("user" mode): oneDNN supports running one primitive from several threads at once only
 * that way. */
typedef struct cgw_prim {
    dnnl_primitive_t p;
    size_t pad; /* scratchpad bytes (64-byte multiple) */
} cgw_prim;

/* The backward-weights primitive for parts of `rows` rows, built for one thread, with the
 * reorders of its inputs (p NULL where oneDNN computes in the plain layout). */
typedef struct cgw_var {
    int64_t rows;
    cgw_prim conv, r_dst, r_src;
    dnnl_memory_desc_t dst_md, src_md, dst_pl, src_pl, pad_md;
    size_t dst_bytes, src_bytes;
} cgw_var;

/* One part's memory objects (only the thread running the part touches them). */
typedef struct cgw_part {
    int var;
    int64_t n0;
    dnnl_memory_t dst_user, dst, src_user, src, dw, pad;
    size_t off; /* its scratch: reordered dy and x, its partial dW, its scratchpad */
} cgw_part;

typedef struct cgw_state {
    int parts;
    cgw_var var[2];
    int nvar;
    dnnl_memory_desc_t w_md, w_pl;
    dnnl_primitive_t r_w;       /* the summed dW in the primitive's layout → plain; NULL: plain */
    dnnl_memory_t acc_w, out_w; /* for r_w */
    size_t w_bytes, scratch;
    cgw_part part[CGW_MAX_PARTS];
} cgw_state;

static void cgw_free(cgw_state *w) {
    if (!w) return;
    for (int i = 0; i < w->nvar; i++) {
        cgw_prim *ps[] = {&w->var[i].conv, &w->var[i].r_dst, &w->var[i].r_src};
        for (size_t j = 0; j < sizeof ps / sizeof *ps; j++)
            if (ps[j]->p) dnnl_primitive_destroy(ps[j]->p);
    }
    for (int i = 0; i < w->parts; i++) {
        cgw_part *p = &w->part[i];
        dnnl_memory_t ms[] = {p->dst_user, p->dst, p->src_user, p->src, p->dw, p->pad};
        for (size_t j = 0; j < sizeof ms / sizeof *ms; j++)
            if (ms[j]) dnnl_memory_destroy(ms[j]);
    }
    if (w->r_w) dnnl_primitive_destroy(w->r_w);
    if (w->acc_w) dnnl_memory_destroy(w->acc_w);
    if (w->out_w) dnnl_memory_destroy(w->out_w);
    free(w);
}

/* Creates the primitive of pd into *out with its scratchpad size; destroys pd. */
static dnnl_status_t cgw_prim_create(dnnl_primitive_desc_t pd, cgw_prim *out) {
    const dnnl_memory_desc_t *pad = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    out->pad = pad ? ulc_nn_align64(dnnl_memory_desc_get_size(pad)) : 0;
    dnnl_status_t st = dnnl_primitive_create(&out->p, pd);
    dnnl_primitive_desc_destroy(pd);
    return st;
}

static dnnl_status_t cgw_reorder_create(dnnl_engine_t eng, const dnnl_memory_desc_t *from,
                                        const dnnl_memory_desc_t *to,
                                        const_dnnl_primitive_attr_t attr, cgw_prim *out) {
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_reorder_primitive_desc_create(&pd, from, eng, to, eng, attr);
    return st == dnnl_success ? cgw_prim_create(pd, out) : st;
}

/* The primitives of variant v; *ok 0 when oneDNN has none, or when its dW layout differs from
 * the first variant's (the parts' partial sums are added in one layout). */
static ulc_status cgw_var_build(ulc_kctx *k, const ulc_sh_conv_grad *g, cgw_state *w, cgw_var *v,
                                const_dnnl_primitive_attr_t attr, int *ok) {
    dnnl_engine_t eng;
    ULC_TRY(ulc_nn_dnnl(k, &eng, NULL));
    dnnl_primitive_desc_t pd;
    cg_mds pl;
    *ok = 0;
    ULC_TRY(cg_pd_create(k, g, v->rows, 0, attr, &pd, &pl, 0));
    if (!pd) return ULC_OK;
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
    if (v == &w->var[0]) {
        w->w_md = *wmd;
        w->w_pl = pl.wei;
    }
    if (!dnnl_memory_desc_equal(wmd, &w->w_md)) {
        dnnl_primitive_desc_destroy(pd);
        return ULC_OK;
    }
    v->dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
    v->src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    v->dst_pl = pl.dst;
    v->src_pl = pl.src;
    dnnl_status_t st = cgw_prim_create(pd, &v->conv);
    if (st == dnnl_success && !dnnl_memory_desc_equal(&v->dst_md, &pl.dst)) {
        st = cgw_reorder_create(eng, &pl.dst, &v->dst_md, attr, &v->r_dst);
        v->dst_bytes = ulc_nn_align64(dnnl_memory_desc_get_size(&v->dst_md));
    }
    if (st == dnnl_success && !dnnl_memory_desc_equal(&v->src_md, &pl.src)) {
        st = cgw_reorder_create(eng, &pl.src, &v->src_md, attr, &v->r_src);
        v->src_bytes = ulc_nn_align64(dnnl_memory_desc_get_size(&v->src_md));
    }
    if (st == dnnl_success) {
        /* one scratchpad per part serves its reorders and its convolution in turn */
        size_t pad = v->conv.pad > v->r_dst.pad ? v->conv.pad : v->r_dst.pad;
        if (v->r_src.pad > pad) pad = v->r_src.pad;
        dnnl_dims_t d = {(dnnl_dim_t)(pad ? pad : 64)};
        st = dnnl_memory_desc_init_by_tag(&v->pad_md, 1, d, dnnl_u8, dnnl_a);
    }
    ULC_TRY(ulc_nn_dnnl_check(k, st, "backward-weights convolution primitive"));
    *ok = 1;
    return ULC_OK;
}

/* Every part's memory objects and the scratch layout. */
static dnnl_status_t cgw_part_mems(const ulc_sh_conv_grad *g, cgw_state *w, dnnl_engine_t eng) {
    dnnl_status_t st = dnnl_success;
    size_t off = 0;
    for (int i = 0; i < w->parts && st == dnnl_success; i++) {
        cgw_part *p = &w->part[i];
        int64_t n;
        cgw_part_rows(g->n, w->parts, i, &p->n0, &n);
        p->var = n == w->var[0].rows ? 0 : 1;
        const cgw_var *v = &w->var[p->var];
        p->off = off;
        off += v->dst_bytes + v->src_bytes + w->w_bytes +
               ulc_nn_align64(dnnl_memory_desc_get_size(&v->pad_md));
        st = dnnl_memory_create(&p->dst, &v->dst_md, eng, DNNL_MEMORY_NONE);
        if (st == dnnl_success) st = dnnl_memory_create(&p->src, &v->src_md, eng, DNNL_MEMORY_NONE);
        if (st == dnnl_success && v->r_dst.p)
            st = dnnl_memory_create(&p->dst_user, &v->dst_pl, eng, DNNL_MEMORY_NONE);
        if (st == dnnl_success && v->r_src.p)
            st = dnnl_memory_create(&p->src_user, &v->src_pl, eng, DNNL_MEMORY_NONE);
        if (st == dnnl_success) st = dnnl_memory_create(&p->dw, &w->w_md, eng, DNNL_MEMORY_NONE);
        if (st == dnnl_success) st = dnnl_memory_create(&p->pad, &v->pad_md, eng, DNNL_MEMORY_NONE);
    }
    w->scratch = off;
    return st;
}

/* The variants (built for one thread: inside the parts' parallel loop each runs on the thread
 * that took the part), the parts and the final reorder. UNSUPPORTED when oneDNN has none. */
static ulc_status cgw_build_parts(ulc_kctx *k, const ulc_sh_conv_grad *g, cgw_state *w) {
    dnnl_engine_t eng;
    ULC_TRY(ulc_nn_dnnl(k, &eng, NULL));
    dnnl_primitive_attr_t attr;
    ULC_TRY(ulc_nn_dnnl_check(k, dnnl_primitive_attr_create(&attr), "primitive attributes"));
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    int64_t n0, lo, hi;
    cgw_part_rows(g->n, w->parts, 0, &n0, &lo);
    cgw_part_rows(g->n, w->parts, w->parts - 1, &n0, &hi);
    int ok = 0;
    ulc_status us = ulc_nn_dnnl_check(k, st, "primitive attributes");
    w->var[0].rows = lo;
    w->nvar = 1;
    if (us == ULC_OK) us = cgw_var_build(k, g, w, &w->var[0], attr, &ok);
    if (us == ULC_OK && ok && hi != lo) {
        w->var[1].rows = hi;
        w->nvar = 2;
        us = cgw_var_build(k, g, w, &w->var[1], attr, &ok);
    }
    dnnl_primitive_attr_destroy(attr);
    if (us != ULC_OK) return us;
    if (!ok) return ULC_ERR_UNSUPPORTED;
    w->w_bytes = ulc_nn_align64(dnnl_memory_desc_get_size(&w->w_md));
    st = cgw_part_mems(g, w, eng);
    if (st == dnnl_success && !dnnl_memory_desc_equal(&w->w_md, &w->w_pl)) {
        st = ulc_nn_reorder_create(&w->w_md, &w->w_pl, &w->r_w);
        if (st == dnnl_success) st = dnnl_memory_create(&w->acc_w, &w->w_md, eng, DNNL_MEMORY_NONE);
        if (st == dnnl_success) st = dnnl_memory_create(&w->out_w, &w->w_pl, eng, DNNL_MEMORY_NONE);
    }
    return ulc_nn_dnnl_check(k, st, "memory of the backward-weights parts");
}

/* Builds ConvGradWeight's parts; leaves s->cgw NULL when oneDNN has no implementation. */
static ulc_status cgw_dnnl_build(ulc_kctx *k, cg_state *s) {
    cgw_state *w = calloc(1, sizeof *w);
    if (!w) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    w->parts = cgw_parts(&s->g);
#ifdef _OPENMP
    /* oneDNN fixes a primitive's thread split when it is created: one thread per part */
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    ulc_status st = cgw_build_parts(k, &s->g, w);
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    if (st != ULC_OK) {
        cgw_free(w);
        return st == ULC_ERR_UNSUPPORTED ? ULC_OK : st; /* unsupported: the direct loops run */
    }
    s->cgw = w;
    ulc_nn_scratch_hold();
    s->scratch_held = 1;
    return ULC_OK;
}

static dnnl_status_t cgw_exec(const cgw_prim *p, dnnl_stream_t stream, dnnl_memory_t pad,
                              int n, const dnnl_exec_arg_t *args) {
    dnnl_exec_arg_t a[5];
    memcpy(a, args, (size_t)n * sizeof *a);
    a[n] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, pad};
    return dnnl_primitive_execute(p->p, stream, n + 1, a);
}

/* One input of a part: the plain rows themselves when oneDNN computes in the plain layout (no
 * reorder), else reordered from them (user) into buf (m). */
static dnnl_status_t cgw_stage(const cgw_prim *r, dnnl_memory_t user, dnnl_memory_t m,
                               void *rows, void *buf, dnnl_memory_t pad, dnnl_stream_t stream) {
    if (!r->p) return dnnl_memory_set_data_handle(m, rows);
    dnnl_status_t st = dnnl_memory_set_data_handle(user, rows);
    if (st == dnnl_success) st = dnnl_memory_set_data_handle(m, buf);
    if (st != dnnl_success) return st;
    return cgw_exec(r, stream, pad, 2, (dnnl_exec_arg_t[]){{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, m}});
}

/* Part i: its rows' dy and x reordered into its scratch when oneDNN's layout is not plain, then
 * the single-threaded primitive into its partial dW. */
static dnnl_status_t cgw_run_part(ulc_kctx *k, const cgw_state *w, int i, char *scratch,
                                  dnnl_stream_t stream) {
    const cgw_part *p = &w->part[i];
    const cgw_var *v = &w->var[p->var];
    int64_t nb = k->in[0]->dims[0];
    size_t dy_row = nb ? (size_t)(ulc_rt_numel(k->in[0]) / (uint64_t)nb) : 0;
    size_t x_row = nb ? (size_t)(ulc_rt_numel(k->in[1]) / (uint64_t)nb) : 0;
    float *dy = (float *)k->in[0]->data + (size_t)p->n0 * dy_row;
    float *x = (float *)k->in[1]->data + (size_t)p->n0 * x_row;
    char *q = scratch + p->off;
    char *pad = q + v->dst_bytes + v->src_bytes + w->w_bytes;
    dnnl_status_t st = dnnl_memory_set_data_handle(p->pad, pad);
    if (st == dnnl_success) st = cgw_stage(&v->r_dst, p->dst_user, p->dst, dy, q, p->pad, stream);
    q += v->dst_bytes;
    if (st == dnnl_success) st = cgw_stage(&v->r_src, p->src_user, p->src, x, q, p->pad, stream);
    q += v->src_bytes;
    if (st == dnnl_success) st = dnnl_memory_set_data_handle(p->dw, q);
    if (st != dnnl_success) return st;
    return cgw_exec(&v->conv, stream, p->pad, 3,
                    (dnnl_exec_arg_t[]){{DNNL_ARG_DIFF_DST, p->dst}, {DNNL_ARG_SRC, p->src},
                                        {DNNL_ARG_DIFF_WEIGHTS, p->dw}});
}

typedef struct cgw_sum_job {
    const cgw_state *w;
    const char *scratch;
    float *out;
} cgw_sum_job;

/* out[e] = the parts' partial dW element e, added in part order. */
static void cgw_sum_body(int64_t e0, int64_t e1, void *arg) {
    const cgw_sum_job *j = arg;
    const cgw_state *w = j->w;
    for (int i = 0; i < w->parts; i++) {
        const cgw_part *p = &w->part[i];
        const cgw_var *v = &w->var[p->var];
        const float *src = (const float *)(j->scratch + p->off + v->dst_bytes + v->src_bytes);
        if (i == 0)
            memcpy(j->out + e0, src + e0, (size_t)(e1 - e0) * sizeof(float));
        else
            for (int64_t e = e0; e < e1; e++) j->out[e] += src[e];
    }
}

typedef struct cgw_bias_job {
    const float *dy;
    float *db;
    int64_t n, m, osz;
} cgw_bias_job;

/* dB[m] = Σ over rows, then positions, of dy[n, m, ·], in double: one channel per item. */
static void cgw_bias_body(int64_t m0, int64_t m1, void *arg) {
    const cgw_bias_job *j = arg;
    for (int64_t m = m0; m < m1; m++) {
        double acc = 0;
        for (int64_t n = 0; n < j->n; n++) {
            const float *dy = j->dy + (n * j->m + m) * j->osz;
            for (int64_t o = 0; o < j->osz; o++) acc += dy[o];
        }
        j->db[m] = (float)acc;
    }
}

static ulc_status cgw_dnnl_run(ulc_kctx *k, cg_state *s) {
    const cgw_state *w = s->cgw;
    dnnl_stream_t stream;
    ulc_nn_scratch sc;
    size_t acc_bytes = w->r_w ? w->w_bytes : 0;
    ULC_TRY(ulc_nn_run_begin(k, w->scratch + acc_bytes, &stream, &sc));
    int bad = 0;
    dnnl_status_t st = dnnl_success;
#pragma omp parallel for schedule(dynamic, 1) if (w->parts > 1)
    for (int i = 0; i < w->parts; i++) {
        dnnl_status_t pst = cgw_run_part(k, w, i, sc.p, stream);
        if (pst != dnnl_success) {
#pragma omp critical(ulc_cgw_error)
            if (!bad) {
                bad = 1;
                st = pst;
            }
        }
    }
    if (!bad) {
        float *acc = w->r_w ? (float *)((char *)sc.p + w->scratch) : k->out[0]->data;
        cgw_sum_job j = {w, sc.p, acc};
        int64_t nw = (int64_t)(dnnl_memory_desc_get_size(&w->w_md) / sizeof(float));
        ulc_k_parallel(nw, 1 << 14, cgw_sum_body, &j);
        if (s->g.bias) {
            int64_t osz = 1;
            for (int d = 0; d < s->g.nsp; d++) osz *= s->g.w.out[d];
            cgw_bias_job b = {k->in[0]->data, k->out[1]->data, s->g.n, s->g.m, osz};
            ulc_k_parallel(s->g.m, (1 << 16) / (s->g.n * osz + 1) + 1, cgw_bias_body, &b);
        }
        if (w->r_w) {
            st = dnnl_memory_set_data_handle(w->acc_w, acc);
            if (st == dnnl_success) st = dnnl_memory_set_data_handle(w->out_w, k->out[0]->data);
            if (st == dnnl_success) st = ulc_nn_reorder_run(w->r_w, w->acc_w, w->out_w);
        }
    }
    ulc_nn_scratch_done(&sc);
    return ulc_nn_dnnl_check(k, st, "executing the backward-weights convolution");
}

/* ConvGradData of a 3×3, stride-1, dilation-1, single-group 2-D convolution with pads <= 2 is
 * the forward 3×3 convolution of dy with pads 2 - pb and W's taps reversed (its channels
 * swapped): the Winograd path takes it when the channel counts are multiples of 8. Fills wg and
 * returns 1 when it does. Under ULC_PRECISION_BF16 oneDNN's bfloat16 backward runs instead. */
static int cgd_wino_geom(const ulc_kctx *k, const ulc_sh_conv_grad *g, ulc_wino_geom *wg) {
    const ulc_nn_window *w = &g->w;
    if (g->weight || g->nsp != 2 || g->g != 1 || !ulc_wino_enabled()) return 0;
    if (k->precision == ULC_PRECISION_BF16 && !getenv("ULC_BF16_WINO")) return 0;
    for (int i = 0; i < 2; i++)
        if (w->k[i] != 3 || w->s[i] != 1 || w->d[i] != 1 || w->pb[i] > 2) return 0;
    *wg = (ulc_wino_geom){g->n, g->m, g->c, w->out[0], w->out[1], w->in[0], w->in[1],
                          2 - w->pb[0], 2 - w->pb[1], 0, 3, 3, 1, 1};
    return ulc_wino_fits(wg);
}

/* Absent, or float32 of y's shape (no broadcasting). */
static int same_as(const ulc_rt_tensor *t, const ulc_rt_tensor *y) {
    return !t || (t->dtype == ULC_DT_F32 && ulc_rt_same_shape(t, y));
}

/* On the Winograd path dx is written with an addend of its own shape added (the Add that sums
 * a gradient's fan-in) and then a ReluGrad's mask applied (dx = mask > 0 ? dx : 0, the
 * gradient through the Relu before this convolution); the other paths fuse nothing. */
static int cgd_can_fuse(const ulc_kctx *k, const ulc_kfuse *f) {
    const ulc_rt_tensor *y = k->out[0];
    if (f->act != ULC_ACT_NONE || f->residual || !y || (!f->addend && !f->mask)) return 0;
    if (!same_as(f->addend, y) || !same_as(f->mask, y) || ulc_nn_blocked(f->mask)) return 0;
    ulc_sh_conv_grad g;
    ulc_wino_geom wg;
    return ulc_sh_conv_grad_geom((ulc_kctx *)k, 0, &g) == ULC_OK && cgd_wino_geom(k, &g, &wg);
}

static ulc_status cgd_wino_prepare(ulc_kctx *k, cg_state *s) {
    ulc_wino_geom wg;
    if (!cgd_wino_geom(k, &s->g, &wg)) return ULC_OK;
    ULC_TRY(ulc_wino_prepare(k, &wg, 1, &s->wino));
    s->scratch_held = s->wino != NULL;
    return ULC_OK;
}

static ulc_status cgd_wino_run(ulc_kctx *k, cg_state *s) {
    const ulc_rt_tensor *z = k->fuse ? k->fuse->addend : NULL;
    const ulc_rt_tensor *mask = k->fuse ? k->fuse->mask : NULL;
    ulc_wino_io io = {.x = k->in[0]->data,
                      .y = k->out[0]->data,
                      .add_full = z ? z->data : NULL,
                      .zb = ulc_nn_blocked(z),
                      .act = ULC_ACT_NONE,
                      .mask = mask ? mask->data : NULL};
    return ulc_wino_exec(k, s->wino, 1, &io);
}

static ulc_status cg_prepare_common(ulc_kctx *k, int weight) {
    cg_state *s = calloc(1, sizeof *s);
    if (!s) return ulc_k_fail(k, ULC_ERR_NOMEM, "out of memory");
    k->state = s;
    ULC_TRY(ulc_sh_conv_grad_geom(k, weight, &s->g));
    int empty = ulc_rt_numel(k->in[0]) == 0 || ulc_rt_numel(k->in[1]) == 0 ||
                ulc_rt_numel(k->out[0]) == 0;
    if (!weight) ULC_TRY(cgd_wino_prepare(k, s));
    /* can_fuse offers fusion on the Winograd path only, and prepare takes it on the same test */
    if (k->fuse && !s->wino)
        return ulc_k_fail(k, ULC_ERR_INTERNAL, "fused work reached ConvGradData off the Winograd path");
    if (s->g.nsp <= 3 && !empty && !s->wino) ULC_TRY(weight ? cgw_dnnl_build(k, s) : cgd_dnnl_build(k, s));
    return ULC_OK;
}

static ulc_status cgd_prepare(ulc_kctx *k) { return cg_prepare_common(k, 0); }
static ulc_status cgw_prepare(ulc_kctx *k) { return cg_prepare_common(k, 1); }

static ulc_status cg_dnnl_run(ulc_kctx *k, cg_state *s) {
    dnnl_stream_t stream;
    size_t need = 0;
    for (int i = 0; i < s->na; i++) need += s->a[i].bytes;
    ulc_nn_scratch sc;
    ULC_TRY(ulc_nn_run_begin(k, need, &stream, &sc));
    char *p = sc.p;
    dnnl_exec_arg_t args[4];
    dnnl_status_t st = dnnl_success;
    for (int i = 0; i < s->na && st == dnnl_success; i++) {
        cg_arg *a = &s->a[i];
        void *data = a->is_out ? k->out[a->slot]->data : k->in[a->slot]->data;
        args[i] = (dnnl_exec_arg_t){a->arg, a->m};
        if (a->packed) {
            st = dnnl_memory_set_data_handle(a->m, a->packed);
        } else if (a->r) {
            st = dnnl_memory_set_data_handle(a->m_user, data);
            if (st == dnnl_success) st = dnnl_memory_set_data_handle(a->m, p);
            p += a->bytes;
            if (st == dnnl_success && !a->is_out) st = ulc_nn_reorder_run(a->r, a->m_user, a->m);
        } else {
            st = dnnl_memory_set_data_handle(a->m, data);
        }
    }
    if (st == dnnl_success) st = dnnl_primitive_execute(s->prim, stream, s->na, args);
    for (int i = 0; i < s->na && st == dnnl_success; i++)
        if (s->a[i].is_out && s->a[i].r) st = ulc_nn_reorder_run(s->a[i].r, s->a[i].m, s->a[i].m_user);
    ulc_nn_scratch_done(&sc);
    return ulc_nn_dnnl_check(k, st, "executing the convolution gradient");
}

static ulc_status cg_run(ulc_kctx *k) {
    cg_state *s = k->state;
    if (s->wino) return cgd_wino_run(k, s);
    if (s->cgw) return cgw_dnnl_run(k, s);
    if (s->prim) return cg_dnnl_run(k, s);
    cg_ref_run(k, &s->g);
    return ULC_OK;
}

static const ulc_kernel k_conv_grad_data = {.prepare = cgd_prepare, .run = cg_run,
                                            .release = cg_release, .can_fuse = cgd_can_fuse};
static const ulc_kernel k_conv_grad_weight = {.prepare = cgw_prepare,
                                              .run = cg_run, .release = cg_release};

void ulc_cpu_register_grad_conv(const ulc_kernel **table) {
    table[ULC_OP_ConvGradData] = &k_conv_grad_data;
    table[ULC_OP_ConvGradWeight] = &k_conv_grad_weight;
}
