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
 * order (the same bits on every run, as oneDNN's are for a given thread count).
 */
#include <stdlib.h>
#include <string.h>

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
    int64_t work = j.osz * j.ksz * (g->weight ? g->n * (g->c / g->g) : g->m / g->g);
    int64_t grain = (1 << 16) / (work + 1) + 1;
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
} cg_state;

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

/* Builds the backward primitive for the plan's shapes; leaves s->prim NULL when oneDNN has no
 * implementation for the case. */
static ulc_status cg_dnnl_build(ulc_kctx *k, cg_state *s) {
    const ulc_sh_conv_grad *g = &s->g;
    dnnl_engine_t eng;
    ULC_TRY(ulc_nn_dnnl(k, &eng, NULL));
    int nsp = g->nsp, rank = nsp + 2, grouped = g->g > 1, wrank = rank + grouped;
    dnnl_dims_t sd, wd, dd, bd, str, dil, pl, pr;
    sd[0] = dd[0] = g->n;
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
        pl[i] = g->w.pb[i];
        pr[i] = g->w.pe[i];
    }
    dnnl_memory_desc_t src_plain, wei_plain, dst_plain, bias_md, src_any, wei_any, dst_any;
    dnnl_format_tag_t tag = ulc_nn_plain_tag(rank);
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&src_plain, rank, sd, dnnl_f32, tag);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&dst_plain, rank, dd, dnnl_f32, tag);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&wei_plain, wrank, wd, dnnl_f32, ulc_nn_plain_tag(wrank));
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_a);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&src_any, rank, sd, dnnl_f32, dnnl_format_tag_any);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&dst_any, rank, dd, dnnl_f32, dnnl_format_tag_any);
    if (st == dnnl_success)
        st = dnnl_memory_desc_init_by_tag(&wei_any, wrank, wd, dnnl_f32, dnnl_format_tag_any);
    ULC_TRY(ulc_nn_dnnl_check(k, st, "memory descriptors for the convolution gradient"));

    /* The forward primitive is only the hint oneDNN's backward descriptors require. */
    const dnnl_memory_desc_t *bias = g->weight && g->bias ? &bias_md : NULL;
    dnnl_convolution_desc_t fd, bwd;
    st = dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training,
                                                    dnnl_convolution_direct, &src_any, &wei_any,
                                                    bias, &dst_any, str, dil, pl, pr);
    if (st != dnnl_success) return ULC_OK; /* a geometry oneDNN does not take */
    dnnl_primitive_desc_t fwd = NULL, pd = NULL;
    st = dnnl_primitive_desc_create(&fwd, &fd, NULL, eng, NULL);
    if (st == dnnl_unimplemented) return ULC_OK;
    ULC_TRY(ulc_nn_dnnl_check(k, st, "forward hint of the convolution gradient"));
    if (!g->weight)
        st = dnnl_dilated_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct,
                                                              &src_any, &wei_any, &dst_any, str,
                                                              dil, pl, pr);
    else
        st = dnnl_dilated_convolution_backward_weights_desc_init(
            &bwd, dnnl_convolution_direct, &src_any, &wei_any, bias, &dst_any, str, dil, pl, pr);
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &bwd, NULL, eng, fwd);
    dnnl_primitive_desc_destroy(fwd);
    if (st == dnnl_unimplemented || (st != dnnl_success && st != dnnl_out_of_memory)) return ULC_OK;
    ULC_TRY(ulc_nn_dnnl_check(k, st, "convolution gradient primitive descriptor"));

    ulc_status us = ULC_OK;
    if (!g->weight) {
        us = cg_arg_add(k, s, eng, DNNL_ARG_DIFF_DST, 0, 0,
                        dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0), &dst_plain);
        if (us == ULC_OK)
            us = cg_arg_add(k, s, eng, DNNL_ARG_WEIGHTS, 0, 1,
                            dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0), &wei_plain);
        if (us == ULC_OK)
            us = cg_arg_add(k, s, eng, DNNL_ARG_DIFF_SRC, 1, 0,
                            dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0), &src_plain);
    } else {
        us = cg_arg_add(k, s, eng, DNNL_ARG_DIFF_DST, 0, 0,
                        dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0), &dst_plain);
        if (us == ULC_OK)
            us = cg_arg_add(k, s, eng, DNNL_ARG_SRC, 0, 1,
                            dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0), &src_plain);
        if (us == ULC_OK)
            us = cg_arg_add(k, s, eng, DNNL_ARG_DIFF_WEIGHTS, 1, 0,
                            dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0),
                            &wei_plain);
        if (us == ULC_OK && bias)
            us = cg_arg_add(k, s, eng, DNNL_ARG_DIFF_BIAS, 1, 1,
                            dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 1),
                            &bias_md);
    }
    if (us == ULC_OK)
        us = ulc_nn_dnnl_check(k, dnnl_primitive_create(&s->prim, pd),
                               "convolution gradient primitive");
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

/* ConvGradData of a 3×3, stride-1, dilation-1, single-group 2-D convolution with pads <= 2 is
 * the forward 3×3 convolution of dy with pads 2 - pb and W's taps reversed (its channels
 * swapped): the Winograd path takes it when the channel counts are multiples of 8. Fills wg and
 * returns 1 when it does. */
static int cgd_wino_geom(const ulc_sh_conv_grad *g, ulc_wino_geom *wg) {
    const ulc_nn_window *w = &g->w;
    if (g->weight || g->nsp != 2 || g->g != 1 || !ulc_wino_enabled()) return 0;
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
    if (f->act != ULC_ACT_NONE || !y || (!f->addend && !f->mask)) return 0;
    if (!same_as(f->addend, y) || !same_as(f->mask, y) || ulc_nn_blocked(f->mask)) return 0;
    ulc_sh_conv_grad g;
    ulc_wino_geom wg;
    return ulc_sh_conv_grad_geom((ulc_kctx *)k, 0, &g) == ULC_OK && cgd_wino_geom(&g, &wg);
}

static ulc_status cgd_wino_prepare(ulc_kctx *k, cg_state *s) {
    ulc_wino_geom wg;
    if (!cgd_wino_geom(&s->g, &wg)) return ULC_OK;
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
    if (s->g.nsp <= 3 && !empty && !s->wino) ULC_TRY(cg_dnnl_build(k, s));
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
