/* report_extra.c — the report's sections for the extra metrics (report_internal.h): a text
 * model's perplexity and extraction, ssd's dampened weights, CLIP's knowledge-tracing metrics, the activation distance to
 * the reference, per-layer features against the input, the relearning probe. */
#include <stdio.h>
#include <stdlib.h>

#include "eval/report_internal.h"

/* The extra sections' parts, written as Markdown or as HTML. */
static void ex_heading(sbuf *b, int html, const char *text) {
    rp_printf(b, html ? "<h2>%s</h2>\n" : "\n## %s\n\n", text);
}

static void ex_para(sbuf *b, int html, const char *text) {
    rp_printf(b, html ? "<p>%s</p>\n" : "%s\n\n", text);
}

/* A table row; head: header cells. Cells numbered in `left` (a bit per column) are text (escaped,
 * left-aligned), the others numbers. */
static void ex_row(sbuf *b, int html, int head, const char *const *cells, int n, unsigned left) {
    rp_puts(b, html ? "<tr>" : "|");
    for (int i = 0; i < n; i++) {
        int text = (left >> i) & 1u;
        if (html) rp_puts(b, head ? "<th>" : text ? "<td>" : "<td class=\"n\">");
        else rp_puts(b, " ");
        if (html) rp_html(b, cells[i]);
        else rp_md(b, cells[i]);
        rp_puts(b, html ? (head ? "</th>" : "</td>") : " |");
    }
    rp_puts(b, html ? "</tr>\n" : "\n");
    if (head && !html) {
        rp_puts(b, "|");
        for (int i = 0; i < n; i++) rp_puts(b, (left >> i) & 1u ? "---|" : "---:|");
        rp_puts(b, "\n");
    }
}

#define MAX_LAYER_BARS 64

/* A text model's sections (docs/metrics.md, "Language models"): perplexity per split before and
 * after, and extraction (ROUGE-L recall and exact match on Df and Dr). */
static void render_lm(sbuf *b, const cJSON *r, int html) {
    char c[5][128], text[512];
    const char *cells[5] = {c[0], c[1], c[2], c[3], c[4]};
    const cJSON *ppl = rp_get(r, "perplexity"), *ex = rp_get(r, "extraction");
    if (cJSON_IsObject(ppl)) {
        static const char *const head[4] = {"split", "what", "before", "after"};
        ex_heading(b, html, "Perplexity");
        ex_para(b, html, "exp of the mean next-token loss over the split's predicted tokens (lower: "
                         "the model finds the text more likely).");
        if (html) rp_puts(b, "<table>\n");
        ex_row(b, html, 1, head, 4, 3u);
        for (int k = 0; k < N_SPLITS; k++) {
            const cJSON *bi = rp_get2(ppl, "before", rp_splits[k]), *ai = rp_get2(ppl, "after", rp_splits[k]);
            if (!bi && !ai) continue;
            snprintf(c[0], sizeof c[0], "%s", rp_splits[k]);
            snprintf(c[1], sizeof c[1], "%s", rp_split_what[k]);
            rp_cell4(c[2], sizeof c[2], bi);
            rp_cell4(c[3], sizeof c[3], ai);
            ex_row(b, html, 0, cells, 4, 3u);
        }
        if (html) rp_puts(b, "</table>\n");
    }
    if (!cJSON_IsObject(ex)) return;
    static const char *const head[5] = {"rows", "ROUGE-L before", "ROUGE-L after", "exact before",
                                        "exact after"};
    double pre = 0, tok = 0;
    rp_num(rp_get(ex, "prefix"), &pre);
    rp_num(rp_get(ex, "max_tokens"), &tok);
    ex_heading(b, html, "Extraction");
    snprintf(text, sizeof text, "Greedy continuation of each row's first min(%.0f, L/2) tokens, "
             "up to %.0f tokens, against the true suffix: ROUGE-L recall and the exact-match rate "
             "(Df: what should be forgotten; Dr: for contrast).", pre, tok);
    ex_para(b, html, text);
    const cJSON *skip = rp_get2(ex, "after", "skipped");
    if (cJSON_IsString(skip)) { /* the reason names an input: escaped */
        rp_puts(b, html ? "<p>Skipped: " : "Skipped: ");
        if (html) rp_html(b, skip->valuestring);
        else rp_md(b, skip->valuestring);
        rp_puts(b, html ? ".</p>\n" : ".\n\n");
        return;
    }
    if (html) rp_puts(b, "<table>\n");
    const char *hc[6] = {"split", head[0], head[1], head[2], head[3], head[4]};
    ex_row(b, html, 1, hc, 6, 1u);
    for (int side = 0; side < 2; side++) {
        const char *sp = side ? "Dr" : "Df";
        const cJSON *bs = rp_get2(ex, "before", sp), *as = rp_get2(ex, "after", sp);
        char rows[32];
        double n = 0;
        rp_num(rp_get(as, "rows"), &n);
        snprintf(rows, sizeof rows, "%.0f", n);
        rp_cell4(c[1], sizeof c[1], rp_get(bs, "rouge_l"));
        rp_cell4(c[2], sizeof c[2], rp_get(as, "rouge_l"));
        rp_cell4(c[3], sizeof c[3], rp_get(bs, "exact"));
        rp_cell4(c[4], sizeof c[4], rp_get(as, "exact"));
        const char *row[6] = {sp, rows, c[1], c[2], c[3], c[4]};
        ex_row(b, html, 0, row, 6, 1u);
    }
    if (html) rp_puts(b, "</table>\n");
}

/* A CLIP request's section (docs/metrics.md, "CLIP"): zero-shot accuracies before and after,
 * and Q, U, Q-U. */
static void render_clip(sbuf *b, const cJSON *r, int html) {
    static const char *const keys[6] = {"df_fine", "dr_fine", "df_coarse", "dr_coarse", "heldout",
                                        "retrieval_r1"};
    static const char *const what[6] = {
        "Df fine (the forgotten concepts)", "Dr fine (the kept concepts)",
        "Df coarse (their parents)",        "Dr coarse",
        "held-out data, zero-shot",         "retrieval R@1, kept captions"};
    static const char *const head[3] = {"CLIP zero-shot", "before", "after"};
    const cJSON *clip = rp_get(r, "clip");
    if (!cJSON_IsObject(clip)) return;
    char c[3][128], text[256];
    const char *cells[3] = {c[0], c[1], c[2]};
    ex_heading(b, html, "CLIP: knowledge-tracing metrics");
    ex_para(b, html, "Zero-shot accuracy on the test rows of the forgotten concepts (Df) and of the "
                     "rest (Dr), over the fine classes and over their coarse classes; Ā(S) = "
                     "min(1, after/before), Q = 1 − Ā(Df fine), U = mean of Ā(Dr fine), Ā(Dr "
                     "coarse), Ā(Df coarse), Q-U their harmonic mean.");
    if (html) rp_puts(b, "<table>\n");
    ex_row(b, html, 1, head, 3, 1u);
    for (int k = 0; k < 6; k++) {
        const cJSON *av = rp_get2(clip, "after", keys[k]);
        if (!cJSON_IsNumber(av)) continue;
        snprintf(c[0], sizeof c[0], "%s", what[k]);
        rp_cell4(c[1], sizeof c[1], rp_get2(clip, "before", keys[k]));
        rp_cell4(c[2], sizeof c[2], av);
        ex_row(b, html, 0, cells, 3, 1u);
    }
    rp_puts(b, html ? "</table>\n" : "\n");
    double q = 0, u = 0, qu = 0;
    if (rp_num(rp_get(clip, "Q"), &q) && rp_num(rp_get(clip, "U"), &u)) {
        rp_num(rp_get(clip, "QU"), &qu);
        snprintf(text, sizeof text, "Q %.2f, U %.2f, Q-U %.2f (×100).", 100 * q, 100 * u, 100 * qu);
        ex_para(b, html, text);
    }
}

/* One recovery count of the probe as text: "3 steps", or "not within N steps". */
static void recovery(char *buf, size_t n, const cJSON *v, double steps) {
    double s = 0;
    if (rp_num(v, &s)) snprintf(buf, n, "%.0f step%s", s, s == 1 ? "" : "s");
    else snprintf(buf, n, "not within %.0f steps", steps);
}

/* The relearning probe: how many steps bring Df back (and the reference's, when probed), the
 * curve (HTML) and the per-step table. */
static void render_relearn(sbuf *b, const cJSON *rl, int html) {
    static const char *const head[5] = {"step", "Df accuracy", "loss", "Df perplexity",
                                        "reference Df accuracy"};
    char c[5][64], text[512], r50[2][48], r90[2][48];
    const char *cells[5] = {c[0], c[1], c[2], c[3], c[4]};
    if (!cJSON_IsObject(rl)) return;
    double lr = 0, bs = 0, nf = 0, steps = 0;
    rp_num(rp_get(rl, "lr"), &lr);
    rp_num(rp_get(rl, "batch_size"), &bs);
    rp_num(rp_get(rl, "forget_rows"), &nf);
    rp_num(rp_get(rl, "steps"), &steps);
    const cJSON *ref = rp_get(rl, "reference");
    ex_heading(b, html, "Relearning probe");
    if (html) {
        rp_puts(b, "<figure>\n");
        rp_svg_series(b, "Df accuracy while fine-tuning on Df", "Df accuracy",
                   rp_get(rl, "forget_acc"), 0, 1, COLOR_AFTER);
        rp_puts(b, "</figure>\n");
    }
    snprintf(text, sizeof text, "The output fine-tuned on the %.0f Df rows (plain SGD, lr %g, "
             "batches of %.0f); Df accuracy after each step (step 0: before). Fast recovery "
             "means the knowledge is still in the weights.", nf, lr, bs);
    ex_para(b, html, text);
    for (int k = 0; k < 2; k++) {
        const cJSON *o = k ? ref : rl;
        recovery(r50[k], sizeof r50[k], rp_get(o, "steps_to_50"), steps);
        recovery(r90[k], sizeof r90[k], rp_get(o, "steps_to_90"), steps);
    }
    snprintf(text, sizeof text, "Df accuracy back to 50%%: %s; to 90%%: %s.", r50[0], r90[0]);
    ex_para(b, html, text);
    if (cJSON_IsObject(ref)) {
        snprintf(text, sizeof text, "The reference model, probed alike (the same rows, seed and "
                 "steps): back to 50%%: %s; to 90%%: %s.", r50[1], r90[1]);
        ex_para(b, html, text);
    }
    if (html) rp_puts(b, "<details><summary>Per-step table</summary>\n<table>\n");
    const cJSON *acc = rp_get(rl, "forget_acc"), *loss = rp_get(rl, "loss");
    const cJSON *ppl = rp_get(rl, "forget_ppl"); /* text models */
    const cJSON *racc = rp_get(ref, "forget_acc");
    int has_ppl = cJSON_IsArray(ppl), has_ref = cJSON_IsArray(racc);
    const char *hd[5] = {head[0], head[1], head[2], head[3], head[4]};
    if (!has_ppl) hd[3] = head[4];
    int cols = 3 + has_ppl + has_ref;
    ex_row(b, html, 1, hd, cols, 0);
    int k = 0;
    for (const cJSON *e = acc ? acc->child : NULL; e; e = e->next, k++) {
        double a = 0, l = 0;
        rp_num(e, &a);
        snprintf(c[0], sizeof c[0], "%d", k);
        snprintf(c[1], sizeof c[1], "%.2f%%", 100 * a);
        if (k && rp_num(cJSON_GetArrayItem(loss, k - 1), &l)) snprintf(c[2], sizeof c[2], "%.6g", l);
        else snprintf(c[2], sizeof c[2], "—");
        char *last = c[3];
        if (has_ppl) rp_cell4(c[3], sizeof c[3], cJSON_GetArrayItem(ppl, k)), last = c[4];
        if (has_ref && rp_num(cJSON_GetArrayItem(racc, k), &a)) snprintf(last, 64, "%.2f%%", 100 * a);
        else if (has_ref) snprintf(last, 64, "—");
        ex_row(b, html, 0, cells, cols, 0);
    }
    if (html) rp_puts(b, "</table></details>\n");
}

/* The extra metrics (docs/metrics.md): activation distance to the reference, per-layer features
 * against the input, the relearning probe; HTML adds the CKA bars and the relearning curve. */
/* ssd's section: how much of the model it dampened. */
static void render_dampened(sbuf *b, const cJSON *r, int html) {
    const cJSON *d = rp_get(r, "dampened");
    double w = 0, ow = 0, t = 0, ot = 0;
    if (!cJSON_IsObject(d) || !rp_num(rp_get(d, "of_weights"), &ow)) return;
    rp_num(rp_get(d, "weights"), &w);
    rp_num(rp_get(d, "tensors"), &t);
    rp_num(rp_get(d, "of_tensors"), &ot);
    char text[256];
    ex_heading(b, html, "Dampened weights");
    snprintf(text, sizeof text, "Selective synaptic dampening scaled %.0f of the %.0f weights it "
             "could (%.2f%%), in %.0f of %.0f tensors; every other weight kept its bytes.", w, ow,
             ow > 0 ? 100 * w / ow : 0.0, t, ot);
    ex_para(b, html, text);
}

void rp_render_extra(sbuf *b, const cJSON *r, int html) {
    char c[7][128], text[512];
    const char *cells[7];
    for (int i = 0; i < 7; i++) cells[i] = c[i];
    render_dampened(b, r, html);
    render_lm(b, r, html);
    render_clip(b, r, html);
    const cJSON *ad = rp_get(r, "activation_distance");
    if (cJSON_IsObject(ad)) {
        static const char *const head[2] = {"before", "after"};
        ex_heading(b, html, "Activation distance to the reference");
        ex_para(b, html, "Mean L2 distance of the softmax outputs to the reference model's on the "
                         "Df rows.");
        rp_cell4(c[0], sizeof c[0], rp_get(ad, "original"));
        rp_cell4(c[1], sizeof c[1], rp_get(ad, "model"));
        if (html) rp_puts(b, "<table>\n");
        ex_row(b, html, 1, head, 2, 0);
        ex_row(b, html, 0, cells, 2, 0);
        if (html) rp_puts(b, "</table>\n");
    }
    const cJSON *fe = rp_get(r, "features");
    const cJSON *layers = rp_get(fe, "layers");
    int nl = cJSON_GetArraySize(layers);
    if (cJSON_IsObject(fe)) {
        static const char *const head[7] = {"#", "layer", "features", "L1 Df", "L1 Dr", "CKA Df",
                                            "CKA Dr"};
        double nf = 0, nr = 0;
        rp_num(rp_get(fe, "rows_forget"), &nf);
        rp_num(rp_get(fe, "rows_retain"), &nr);
        ex_heading(b, html, "Features against the input model");
        int shown = nl < MAX_LAYER_BARS ? nl : MAX_LAYER_BARS;
        if (html && shown > 0) {
            bar_group *g = calloc((size_t)shown, sizeof *g);
            if (!g) {
                b->oom = 1;
                return;
            }
            int i = 0;
            for (const cJSON *e = layers->child; e && i < shown; e = e->next, i++) {
                snprintf(g[i].label, sizeof g[i].label, "%d", i + 1);
                g[i].has[0] = rp_num(rp_get(e, "cka_forget"), &g[i].v[0]);
                g[i].has[1] = rp_num(rp_get(e, "cka_retain"), &g[i].v[1]);
            }
            static const char *const series[2] = {"CKA on Df", "CKA on Dr"};
            rp_puts(b, "<figure>\n");
            rp_svg_bars(b, "Linear CKA per layer, output vs input model", "linear CKA", series, 0, g,
                     shown);
            rp_puts(b, "</figure>\n");
            free(g);
        }
        snprintf(text, sizeof text, "Per layer, on %.0f Df and %.0f Dr rows: mean L1 distance of "
                 "the outputs and linear CKA (1 = the same representation).%s", nf, nr,
                 html && nl > shown ? " Only the first layers are drawn; the table lists all." : "");
        ex_para(b, html, text);
        if (html) rp_puts(b, "<details><summary>Per-layer table</summary>\n<table>\n");
        ex_row(b, html, 1, head, 7, 1u << 1);
        int i = 0;
        for (const cJSON *e = layers ? layers->child : NULL; e; e = e->next) {
            double d = 0;
            rp_num(rp_get(e, "features"), &d);
            snprintf(c[0], sizeof c[0], "%d", ++i);
            cells[1] = rp_str(rp_get(e, "name")); /* any length */
            snprintf(c[2], sizeof c[2], "%.0f", d);
            rp_cell4(c[3], sizeof c[3], rp_get(e, "l1_forget"));
            rp_cell4(c[4], sizeof c[4], rp_get(e, "l1_retain"));
            rp_cell4(c[5], sizeof c[5], rp_get(e, "cka_forget"));
            rp_cell4(c[6], sizeof c[6], rp_get(e, "cka_retain"));
            ex_row(b, html, 0, cells, 7, 1u << 1);
        }
        if (html) rp_puts(b, "</table></details>\n");
        cells[1] = c[1];
    }
    render_relearn(b, rp_get(r, "relearn"), html);
}
