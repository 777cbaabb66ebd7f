/*
 * forget_class.c — make a classifier forget one class through ulc's C API (docs/api.md).
 *
 *     cc forget_class.c $(pkg-config --cflags --libs ulc) -o forget_class
 *     ./forget_class models/digits/digits_resnet.onnx models/digits/train.safetensors \
 *         models/digits/test.safetensors 3 digits_forget3.onnx [report.json]
 *
 * It loads the model, asks for class CLASS to be forgotten from the training data with RFA
 * (LoRA adapters placed as the paper does, then merged back into the weights), prints the
 * accuracies before and after on the forget set (Df) and on the held-out retain classes (Drt),
 * saves the unlearned model and, when asked, the report. Exit status: 0 on success, 1 on a usage
 * error, 2 when a ulc call fails (its message on stderr), 3 when a gate of the request failed.
 */
#include <stdio.h>
#include <stdlib.h>

#include <ulc.h>

/* The passes of models/digits/forget_digit.json: RFA for 5 epochs at lr 5e-3 on rank-8 adapters. */
static const char *const k_passes =
    "lora-inject{rank=8,alpha=32,placement=rfa},"
    "rfa{epochs=5,batch_size=128,lr=0.005,optimizer=adamw,weight_decay=0.01,gamma=0.5,norm=l2sq},"
    "lora-merge";

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int ok = fputs(text, f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s MODEL TRAIN TEST CLASS OUT [REPORT.json]\n", argv[0]);
        return 1;
    }
    char *end = NULL;
    int64_t cls = strtoll(argv[4], &end, 10);
    if (*argv[4] == '\0' || *end != '\0') {
        fprintf(stderr, "%s: CLASS must be an integer, got '%s'\n", argv[0], argv[4]);
        return 1;
    }

    ulc_ctx *ctx = NULL;
    ulc_model *m = NULL;
    ulc_request *rq = NULL;
    ulc_result *res = NULL;
    int rc = 2;
    if (ulc_ctx_create(&ctx) != ULC_OK) {
        fprintf(stderr, "ulc: out of memory\n");
        return 2;
    }
    printf("ulc %s\n", ulc_version());
    if (ulc_model_load(argv[1], &m, ctx) != ULC_OK ||
        ulc_request_create(argv[2], &rq, ctx) != ULC_OK ||
        ulc_request_set_test_data(rq, argv[3], ctx) != ULC_OK ||
        ulc_request_forget_classes(rq, &cls, 1, ctx) != ULC_OK ||
        ulc_request_set_passes(rq, k_passes, ctx) != ULC_OK)
        goto done;
    ulc_request_set_seed(rq, 0);
    if (ulc_forget(m, rq, &res, ctx) != ULC_OK) /* m is now the unlearned model */
        goto done;
    printf("forget set (Df):          %6.2f%% -> %6.2f%%\n", 100 * ulc_result_accuracy(res, "Df", 0),
           100 * ulc_result_accuracy(res, "Df", 1));
    printf("retain, training (Dr):    %6.2f%% -> %6.2f%%\n", 100 * ulc_result_accuracy(res, "Dr", 0),
           100 * ulc_result_accuracy(res, "Dr", 1));
    printf("forget class, test (Dft): %6.2f%% -> %6.2f%%\n", 100 * ulc_result_accuracy(res, "Dft", 0),
           100 * ulc_result_accuracy(res, "Dft", 1));
    printf("retain, test (Drt):       %6.2f%% -> %6.2f%%\n", 100 * ulc_result_accuracy(res, "Drt", 0),
           100 * ulc_result_accuracy(res, "Drt", 1));
    if (ulc_model_save(m, argv[5], ctx) != ULC_OK) goto done;
    printf("saved %s\n", argv[5]);
    if (argc == 7) {
        if (write_text(argv[6], ulc_result_report(res)) != 0) {
            fprintf(stderr, "%s: cannot write the report '%s'\n", argv[0], argv[6]);
            goto done;
        }
        printf("report %s\n", argv[6]);
    }
    rc = ulc_result_gates_failed(res) ? 3 : 0;
done:
    if (rc == 2) fprintf(stderr, "ulc: %s\n", ulc_ctx_message(ctx));
    ulc_result_free(res);
    ulc_request_free(rq);
    ulc_model_free(m);
    ulc_ctx_free(ctx);
    return rc;
}
