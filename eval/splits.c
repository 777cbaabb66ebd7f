/* splits.c — the forget set's splits of the data (see splits.h). */
#include "eval/splits.h"

#include <stdlib.h>
#include <string.h>

#include "io/text_data.h"

static const char *const k_name[ULC_SPLIT_COUNT] = {"Df", "Dr", "Dft", "Drt", "Dt"};
static const char *const k_what[ULC_SPLIT_COUNT] = {"forget (train)", "retain (train)",
                                                    "forget classes (test)",
                                                    "retain classes (test)", "test"};

const char *ulc_split_name(int split) { return k_name[split]; }
const char *ulc_split_what(int split) { return k_what[split]; }

double ulc_tally_acc(const ulc_tally *t) { return t->pred ? (double)t->ok / (double)t->pred : 0; }

int ulc_forget_has_class(const ulc_forget_set *fs, int64_t y) {
    for (int k = 0; k < fs->n_classes; k++)
        if (fs->classes[k] == y) return 1;
    for (int k = 0; k < fs->n_also_classes; k++)
        if (fs->also_classes[k] == y) return 1;
    return 0;
}

/* Marks the rows of index k: a row of a safetensors file, every row of a text (texts[k] set). */
static void mark_index(const ulc_data *tr, uint8_t *texts, int64_t k, uint8_t *forget) {
    if (!tr->text) forget[k] = 1;
    else texts[k] = 1;
}

/* Text data: the rows of the marked texts. */
static void mark_text_rows(const ulc_data *tr, const uint8_t *texts, uint8_t *forget) {
    for (int64_t r = 0; tr->text && texts && r < tr->rows; r++)
        if (texts[tr->text->text_of[r]]) forget[r] = 1;
}

/* The number of indices the train data has: its rows, or its texts. */
static int64_t n_index(const ulc_data *tr) { return tr->text ? tr->text->n_texts : tr->rows; }

/* Earlier requests' rows and classes join the forget rows (they are never retain rows). */
static void forget_also(const ulc_forget_set *fs, const ulc_data *tr, uint8_t *texts,
                        uint8_t *forget) {
    for (int64_t k = 0; k < fs->n_also_rows; k++)
        if (fs->also_rows[k] >= 0 && fs->also_rows[k] < n_index(tr))
            mark_index(tr, texts, fs->also_rows[k], forget);
    for (int64_t i = 0; fs->n_also_classes && tr->label && i < tr->rows; i++)
        for (int k = 0; k < fs->n_also_classes; k++)
            if (ulc_data_label(tr, i) == fs->also_classes[k]) forget[i] = 1;
}

void ulc_splits_clear(ulc_splits *sp) {
    free(sp->train);
    free(sp->forget);
    free(sp->test);
    memset(sp, 0, sizeof *sp);
}

/* Class forgetting: the train rows of the forget classes; every class must be one of the
 * model's and have rows. */
static ulc_status forget_classes(const ulc_forget_set *fs, const ulc_iface *f, const ulc_data *tr,
                                 uint8_t *forget, ulc_ctx *ctx) {
    if (!tr->label && tr->text)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s (data.train): its texts have no 'label': "
                        "forgetting classes needs each text's (a JSONL \"label\")", tr->path);
    if (!tr->label)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s (data.train): no tensor 'label' (int64 [N]): "
                        "forgetting classes needs each row's class", tr->path);
    for (int k = 0; k < fs->n_classes; k++)
        if (!f->next_token && fs->classes[k] >= f->classes)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.classes': class %lld is "
                            "outside the model's %lld classes (output '%s')", fs->where,
                            (long long)fs->classes[k], (long long)f->classes, f->out->name);
    int64_t *seen = calloc((size_t)fs->n_classes + 1, sizeof *seen);
    if (!seen) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (splits)");
    for (int64_t i = 0; i < tr->rows; i++) {
        int64_t y = ulc_data_label(tr, i);
        for (int k = 0; k < fs->n_classes; k++)
            if (fs->classes[k] == y) {
                seen[k]++;
                forget[i] = 1;
            }
    }
    for (int k = 0; k < fs->n_classes; k++)
        if (!seen[k]) {
            long long c = (long long)fs->classes[k];
            free(seen);
            if (fs->class_names)
                return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.concepts': the concept "
                                "'%s' (class %lld) has no exemplar in data.train (%s): no row "
                                "has label %lld", fs->where, fs->class_names[c], c, tr->path, c);
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.classes': class %lld has no "
                            "rows in data.train (%s)", fs->where, c, tr->path);
        }
    free(seen);
    return ULC_OK;
}

/* Sample forgetting: the rows of the indices (texts' rows for text data), or of the texts
 * forget.file names. */
static ulc_status forget_indices(const ulc_forget_set *fs, const ulc_data *tr, uint8_t *texts,
                                 uint8_t *forget, ulc_ctx *ctx) {
    if (fs->forget_file) {
        if (!tr->text || !tr->text->forget)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: key 'forget.file': data.train (%s) was not "
                            "read with it (forget texts need text training data)", fs->where,
                            tr->path);
        memcpy(texts, tr->text->forget, (size_t)tr->text->n_texts);
        return ULC_OK;
    }
    const char *src = fs->indices_file ? fs->indices_file : fs->where;
    const char *key = fs->indices_file ? "row indices" : "key 'forget.indices'";
    int64_t n = n_index(tr);
    for (int64_t k = 0; k < fs->n_indices; k++) {
        if (fs->indices[k] >= n)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s: %s: index %lld is outside data.train's "
                            "%lld %s (0..%lld)", src, key, (long long)fs->indices[k],
                            (long long)n, tr->text ? "texts" : "rows", (long long)n - 1);
        mark_index(tr, texts, fs->indices[k], forget);
    }
    return ULC_OK;
}

ulc_status ulc_splits_make(const ulc_forget_set *fs, const ulc_iface *f, const ulc_data *tr,
                           const ulc_data *te, ulc_splits *sp, ulc_ctx *ctx) {
    memset(sp, 0, sizeof *sp);
    size_t n = (size_t)tr->rows;
    sp->train = calloc(n + 1, 1);
    sp->forget = calloc(n + 1, 1);
    uint8_t *texts = tr->text ? calloc((size_t)tr->text->n_texts + 1, 1) : NULL;
    if (!sp->train || !sp->forget || (tr->text && !texts)) {
        free(texts);
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (splits)");
    }
    ulc_status st = fs->kind == ULC_FORGET_CLASSES
                        ? forget_classes(fs, f, tr, sp->forget, ctx)
                        : forget_indices(fs, tr, texts, sp->forget, ctx);
    if (st == ULC_OK) forget_also(fs, tr, texts, sp->forget);
    mark_text_rows(tr, texts, sp->forget);
    free(texts);
    ULC_TRY(st);
    for (int64_t i = 0; i < tr->rows; i++) {
        sp->train[i] = sp->forget[i] ? ULC_SPLIT_DF : ULC_SPLIT_DR;
        sp->rows[sp->train[i]]++;
    }
    if (!sp->rows[ULC_SPLIT_DF])
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the forget set is empty", fs->where);
    if (!sp->rows[ULC_SPLIT_DR])
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s: the forget set is all %lld rows of data.train: "
                        "nothing is left to retain", fs->where, (long long)tr->rows);
    sp->present[ULC_SPLIT_DF] = sp->present[ULC_SPLIT_DR] = 1;
    if (!te) return ULC_OK;
    if (!(sp->test = calloc((size_t)te->rows + 1, 1)))
        return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory (splits)");
    if (fs->kind == ULC_FORGET_CLASSES && !te->label)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s (data.test): %s: scoring forgotten classes "
                        "needs each row's class", te->path, te->text ? "its texts have no 'label'"
                        : "no tensor 'label' (int64 [N])");
    for (int64_t i = 0; i < te->rows; i++) {
        sp->test[i] = fs->kind == ULC_FORGET_INDICES ? ULC_SPLIT_DT
                      : ulc_forget_has_class(fs, ulc_data_label(te, i)) ? ULC_SPLIT_DFT
                                                                        : ULC_SPLIT_DRT;
        sp->rows[sp->test[i]]++;
    }
    if (fs->kind == ULC_FORGET_INDICES) sp->present[ULC_SPLIT_DT] = 1;
    else sp->present[ULC_SPLIT_DFT] = sp->present[ULC_SPLIT_DRT] = 1;
    return ULC_OK;
}
