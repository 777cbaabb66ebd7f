/*
 * test_api.c — the public C API's contract through libulc.so, with include/ulc.h alone: statuses
 * and messages on bad input (naming the file or the call), NULL-safe frees, refusals (an
 * unlearning method through ulc_model_apply, a request with no forget set), the model left as
 * it was by a refused call, and one small run: a request built in code with sample forgetting,
 * its result and the history it leaves in the model; ulc_merge on a committed PEFT adapter, its
 * refusals, and merge then unmerge. Runs from the source root (models/digits, tests/fixtures).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ulc.h"

static int g_failed, g_checks;

#define CHECK(cond)                                                                               \
    do {                                                                                          \
        g_checks++;                                                                               \
        if (!(cond)) {                                                                            \
            g_failed++;                                                                           \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);              \
        }                                                                                         \
    } while (0)

/* st is the expected failure and the context's message contains want. */
#define CHECK_FAIL(call, st_want, want)                                                           \
    do {                                                                                          \
        ulc_status st_ = (call);                                                                  \
        g_checks++;                                                                               \
        if (st_ != (st_want) || !strstr(ulc_ctx_message(ctx), (want))) {                          \
            g_failed++;                                                                           \
            fprintf(stderr, "%s:%d: %s: got '%s' (%s), expected %s with '%s'\n", __FILE__,        \
                    __LINE__, #call, ulc_ctx_message(ctx), ulc_status_str(st_),                   \
                    ulc_status_str(st_want), (want));                                             \
        }                                                                                         \
    } while (0)

#define MODEL "models/digits/digits_resnet.onnx"
#define TRAIN "models/digits/train.safetensors"
#define TEST "models/digits/test.safetensors"

static void test_basics(void) {
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", ULC_VERSION_MAJOR, ULC_VERSION_MINOR, ULC_VERSION_PATCH);
    CHECK(strcmp(ulc_version(), v) == 0);
    for (int s = ULC_OK; s <= ULC_ERR_INTERNAL; s++) CHECK(ulc_status_str((ulc_status)s)[0] != '\0');
    CHECK(strcmp(ulc_status_str(ULC_ERR_PARSE), "parse error") == 0);
    /* every free accepts NULL */
    ulc_ctx_free(NULL);
    ulc_model_free(NULL);
    ulc_request_free(NULL);
    ulc_result_free(NULL);
    CHECK(ulc_ctx_create(NULL) == ULC_ERR_INVALID_ARG);
    ulc_ctx *ctx = NULL;
    CHECK(ulc_ctx_create(&ctx) == ULC_OK && ctx);
    CHECK(strcmp(ulc_ctx_message(ctx), "ok") == 0);
    /* the accessors of a missing result */
    CHECK(isnan(ulc_result_accuracy(NULL, "Df", 1)));
    CHECK(ulc_result_report(NULL) == NULL);
    CHECK(ulc_result_gates_failed(NULL) == 0);
    CHECK(ulc_model_history(NULL) == NULL);
    ulc_request_set_seed(NULL, 1);
    ulc_request_set_threads(NULL, 1);
    ulc_ctx_free(ctx);
}

static void test_model_errors(const char *tmpdir) {
    ulc_ctx *ctx = NULL;
    ulc_model *m = (ulc_model *)&m; /* must be reset to NULL on failure */
    ulc_ctx_create(&ctx);
    CHECK_FAIL(ulc_model_load("no/such/model.onnx", &m, ctx), ULC_ERR_IO, "no/such/model.onnx");
    CHECK(m == NULL);
    /* the next call's message replaces the last one */
    char junk[512];
    snprintf(junk, sizeof junk, "%s/junk.onnx", tmpdir);
    FILE *f = fopen(junk, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs("not a model", f);
        fclose(f);
    }
    CHECK_FAIL(ulc_model_load(junk, &m, ctx), ULC_ERR_PARSE, junk);
    CHECK(strstr(ulc_ctx_message(ctx), "no/such") == NULL);
    CHECK_FAIL(ulc_model_load(NULL, &m, ctx), ULC_ERR_INVALID_ARG, "ulc_model_load");
    CHECK(ulc_model_load("no/such/model.onnx", &m, NULL) == ULC_ERR_IO); /* no context: status only */

    CHECK(ulc_model_load(MODEL, &m, ctx) == ULC_OK && m);
    CHECK(strcmp(ulc_ctx_message(ctx), "ok") == 0);
    CHECK(ulc_model_history(m) == NULL);
    /* an unlearning method is refused (m untouched), other passes run */
    CHECK_FAIL(ulc_model_apply(m, "lora-inject{rank=4},rfa,lora-merge", ctx), ULC_ERR_INVALID_ARG,
               "ulc_forget");
    CHECK(strstr(ulc_ctx_message(ctx), "'rfa' is an unlearning method") != NULL);
    CHECK_FAIL(ulc_model_apply(m, "delete{epochs=1}", ctx), ULC_ERR_INVALID_ARG, "ulc_forget");
    CHECK_FAIL(ulc_model_apply(m, "no-such-pass", ctx), ULC_ERR_INVALID_ARG, "no-such-pass");
    CHECK_FAIL(ulc_model_apply(m, NULL, ctx), ULC_ERR_INVALID_ARG, "ulc_model_apply");
    /* saving: never over a file the model reads, a name that tells the format */
    CHECK_FAIL(ulc_model_save(m, MODEL, ctx), ULC_ERR_INVALID_ARG, MODEL);
    char out[512];
    snprintf(out, sizeof out, "%s/model.txt", tmpdir);
    CHECK_FAIL(ulc_model_save(m, out, ctx), ULC_ERR_INVALID_ARG, out);
    CHECK_FAIL(ulc_model_save(m, "no/such/dir/out.onnx", ctx), ULC_ERR_IO, "no/such/dir");
    snprintf(out, sizeof out, "%s/same.onnx", tmpdir);
    CHECK(ulc_model_save(m, out, ctx) == ULC_OK);
    ulc_model *back = NULL;
    CHECK(ulc_model_load(out, &back, ctx) == ULC_OK);
    CHECK(back && ulc_model_history(back) == NULL);
    ulc_model_free(back);
    CHECK(ulc_model_apply(m, "cleanup", ctx) == ULC_OK);
    ulc_model_free(m);
    ulc_ctx_free(ctx);
}

static void test_request_errors(void) {
    ulc_ctx *ctx = NULL;
    ulc_ctx_create(&ctx);
    ulc_request *rq = (ulc_request *)&rq;
    CHECK_FAIL(ulc_request_create("no/such/train.safetensors", &rq, ctx), ULC_ERR_IO,
               "no/such/train.safetensors");
    CHECK(rq == NULL);
    CHECK_FAIL(ulc_request_from_spec("no/such/spec.json", &rq, ctx), ULC_ERR_IO, "no/such/spec.json");
    CHECK(rq == NULL);
    CHECK(ulc_request_from_spec("models/digits/forget_digit.json", &rq, ctx) == ULC_OK && rq);
    ulc_request_free(rq);
    rq = NULL;

    CHECK(ulc_request_create(TRAIN, &rq, ctx) == ULC_OK && rq);
    int64_t bad[] = {3, -1}, twice[] = {2, 2};
    CHECK_FAIL(ulc_request_forget_classes(rq, bad, 0, ctx), ULC_ERR_INVALID_ARG, "empty");
    CHECK_FAIL(ulc_request_forget_classes(rq, bad, 2, ctx), ULC_ERR_INVALID_ARG, "-1");
    CHECK_FAIL(ulc_request_forget_classes(rq, twice, 2, ctx), ULC_ERR_INVALID_ARG,
               "ulc_request_forget_classes");
    CHECK_FAIL(ulc_request_forget_classes(rq, NULL, 1, ctx), ULC_ERR_INVALID_ARG, "classes is NULL");
    CHECK_FAIL(ulc_request_forget_rows(rq, bad, 2, ctx), ULC_ERR_INVALID_ARG, "ulc_request_forget_rows");
    CHECK_FAIL(ulc_request_set_test_data(rq, "no/such/test.safetensors", ctx), ULC_ERR_IO,
               "no/such/test.safetensors");
    ulc_ctx_clear(ctx); /* ulc_request_set_passes reports into the context as it finds it */
    CHECK_FAIL(ulc_request_set_passes(rq, "cleanup", ctx), ULC_ERR_INVALID_ARG,
               "expected one unlearning method");
    ulc_ctx_clear(ctx);
    CHECK_FAIL(ulc_request_set_passes(rq, "rfa,delete", ctx), ULC_ERR_INVALID_ARG, "found 2");
    ulc_ctx_clear(ctx);
    CHECK_FAIL(ulc_request_set_passes(rq, "rfa{gamma=7}", ctx), ULC_ERR_INVALID_ARG, "gamma");

    /* no forget set: a clear refusal, before any work, and the model is unchanged */
    ulc_model *m = NULL;
    ulc_result *res = (ulc_result *)&res;
    CHECK(ulc_model_load(MODEL, &m, ctx) == ULC_OK);
    CHECK_FAIL(ulc_forget(m, rq, &res, ctx), ULC_ERR_INVALID_ARG, "names no forget set");
    CHECK(strstr(ulc_ctx_message(ctx), "ulc_request_forget_classes") != NULL);
    CHECK(res == NULL);
    CHECK(ulc_model_history(m) == NULL);
    CHECK_FAIL(ulc_forget(NULL, rq, &res, ctx), ULC_ERR_INVALID_ARG, "m is NULL");
    CHECK_FAIL(ulc_forget(m, rq, NULL, ctx), ULC_ERR_INVALID_ARG, "out is NULL");
    /* a class the data does not have */
    int64_t absent = 42;
    CHECK(ulc_request_forget_classes(rq, &absent, 1, ctx) == ULC_OK);
    CHECK_FAIL(ulc_forget(m, rq, &res, ctx), ULC_ERR_INVALID, "42");
    CHECK(res == NULL);
    ulc_model_free(m);
    ulc_request_free(rq);
    ulc_ctx_free(ctx);
}

/* Sample forgetting with a request built in code, twice on the same model: results, history. */
static void test_forget_rows(const char *tmpdir) {
    ulc_ctx *ctx = NULL;
    ulc_model *m = NULL;
    ulc_request *rq = NULL;
    ulc_result *res = NULL;
    ulc_ctx_create(&ctx);
    int64_t rows[] = {0, 5, 17, 42, 99};
    ulc_status st = ulc_model_load(MODEL, &m, ctx);
    if (st == ULC_OK) st = ulc_request_create(TRAIN, &rq, ctx);
    if (st == ULC_OK) st = ulc_request_forget_rows(rq, rows, 5, ctx);
    if (st == ULC_OK) st = ulc_request_set_test_data(rq, TEST, ctx);
    if (st == ULC_OK) st = ulc_request_set_passes(rq, "finetune{epochs=1,lr=0.001}", ctx);
    ulc_request_set_seed(rq, 7);
    ulc_request_set_threads(rq, 1);
    if (st == ULC_OK) st = ulc_forget(m, rq, &res, ctx);
    CHECK(st == ULC_OK);
    if (st != ULC_OK) fprintf(stderr, "ulc_forget: %s\n", ulc_ctx_message(ctx));
    if (st == ULC_OK) {
        double df0 = ulc_result_accuracy(res, "Df", 0), dt1 = ulc_result_accuracy(res, "Dt", 1);
        CHECK(df0 >= 0 && df0 <= 1 && dt1 >= 0 && dt1 <= 1);
        CHECK(isnan(ulc_result_accuracy(res, "Dft", 1))); /* sample forgetting: no forget classes */
        CHECK(isnan(ulc_result_accuracy(res, "nope", 0)));
        const char *rep = ulc_result_report(res);
        CHECK(rep && rep[0] == '{' && strstr(rep, "\"method\":\"finetune\"") &&
              strstr(rep, "\"seed\":7"));
        CHECK(ulc_result_gates_failed(res) == 0);
        const char *h = ulc_model_history(m);
        CHECK(h && strstr(h, "\"rows\":[0,5,17,42,99]") && strstr(h, "\"method\":\"finetune\""));
        char out[512];
        snprintf(out, sizeof out, "%s/rows.onnx", tmpdir);
        CHECK(ulc_model_save(m, out, ctx) == ULC_OK);
        ulc_model *back = NULL;
        CHECK(ulc_model_load(out, &back, ctx) == ULC_OK);
        CHECK(back && ulc_model_history(back) && strcmp(ulc_model_history(back), h) == 0);
        ulc_model_free(back);
        /* a second request on the changed model: no input file any more, the rows carried */
        ulc_result_free(res);
        res = NULL;
        int64_t more[] = {3};
        CHECK(ulc_request_forget_rows(rq, more, 1, ctx) == ULC_OK);
        st = ulc_forget(m, rq, &res, ctx);
        CHECK(st == ULC_OK);
        if (st != ULC_OK) fprintf(stderr, "ulc_forget (second): %s\n", ulc_ctx_message(ctx));
        rep = ulc_result_report(res);
        CHECK(rep && strstr(rep, "\"input\":null") && strstr(rep, "\"carried_rows\":5"));
        h = ulc_model_history(m);
        CHECK(h && strstr(h, "\"rows\":[3]"));
    }
    ulc_result_free(res);
    ulc_request_free(rq);
    ulc_model_free(m);
    ulc_ctx_free(ctx);
}

#define PEFT_BASE "tests/fixtures/peft_0_21/base.safetensors"
#define PEFT_ADAPTER "tests/fixtures/peft_0_21/lora_plain"

/* The bytes of a file (NULL when it cannot be read); *n its size. */
static unsigned char *read_all(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *b = NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (*n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (b = malloc((size_t)*n + 1)) && fread(b, 1, (size_t)*n, f) != (size_t)*n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

/* ulc_merge: refusals before any file is read, a merge, and the unmerge of it giving back a
 * model of the base's tensors (the same size: same names, dtypes and shapes). */
static void test_merge(const char *tmpdir) {
    ulc_ctx *ctx = NULL;
    ulc_ctx_create(&ctx);
    const char *ads[] = {PEFT_ADAPTER}, *none[] = {NULL};
    double nan_w[] = {NAN};
    char out[512], back[512];
    snprintf(out, sizeof out, "%s/merged.safetensors", tmpdir);
    snprintf(back, sizeof back, "%s/unmerged.safetensors", tmpdir);
    CHECK_FAIL(ulc_merge(NULL, ads, NULL, 1, out, 0, 0, ctx), ULC_ERR_INVALID_ARG, "no base");
    CHECK_FAIL(ulc_merge(PEFT_BASE, ads, NULL, 1, "", 0, 0, ctx), ULC_ERR_INVALID_ARG, "no output");
    CHECK_FAIL(ulc_merge(PEFT_BASE, ads, NULL, 0, out, 0, 0, ctx), ULC_ERR_INVALID_ARG, "no adapter");
    CHECK_FAIL(ulc_merge(PEFT_BASE, none, NULL, 1, out, 0, 0, ctx), ULC_ERR_INVALID_ARG, "no path");
    CHECK_FAIL(ulc_merge(PEFT_BASE, ads, nan_w, 1, out, 0, 0, ctx), ULC_ERR_INVALID_ARG, "weight");
    CHECK_FAIL(ulc_merge(PEFT_BASE, ads, NULL, 1, out, 0x10u, 0, ctx), ULC_ERR_INVALID_ARG, "flags");
    CHECK_FAIL(ulc_merge(PEFT_BASE, (const char *[]){"no/such/adapter"}, NULL, 1, out, 0, 0, ctx),
               ULC_ERR_IO, "no/such/adapter");
    CHECK_FAIL(ulc_merge(PEFT_BASE, ads, NULL, 1, PEFT_BASE, 0, 0, ctx), ULC_ERR_INVALID_ARG,
               PEFT_BASE); /* never over the base without ULC_MERGE_IN_PLACE */
    ulc_status st = ulc_merge(PEFT_BASE, ads, NULL, 1, out, 0, 1, ctx);
    CHECK(st == ULC_OK && strcmp(ulc_ctx_message(ctx), "ok") == 0);
    if (st != ULC_OK) fprintf(stderr, "ulc_merge: %s\n", ulc_ctx_message(ctx));
    st = ulc_merge(out, ads, (const double[]){1.0}, 1, back, ULC_MERGE_UNMERGE, 0, ctx);
    CHECK(st == ULC_OK);
    if (st != ULC_OK) fprintf(stderr, "ulc_merge (unmerge): %s\n", ulc_ctx_message(ctx));
    long nb = 0, nm = 0, nu = 0;
    unsigned char *b = read_all(PEFT_BASE, &nb), *m = read_all(out, &nm), *u = read_all(back, &nu);
    CHECK(b && m && u && nb == nm && nb == nu);
    CHECK(b && m && nb == nm && memcmp(b, m, (size_t)nb) != 0); /* the merge changed weights */
    free(b);
    free(m);
    free(u);
    ulc_ctx_free(ctx);
}

int main(int argc, char **argv) {
    const char *tmpdir = argc > 1 ? argv[1] : "/tmp";
    test_basics();
    test_model_errors(tmpdir);
    test_request_errors();
    test_forget_rows(tmpdir);
    test_merge(tmpdir);
    printf("api: %d checks, %d failed\n", g_checks, g_failed);
    return g_failed ? 1 : 0;
}
