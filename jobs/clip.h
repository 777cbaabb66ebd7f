/*
 * clip.h — CLIP requests: a spec's "clip" object (docs/spec.md, "CLIP"), the prompts tokenized
 * with the model's own tokenizer, the model turned into zero-shot classifiers over its image
 * input (passes/clip_zeroshot.h), and the weights a method changed copied back into the CLIP
 * model that is written.
 *
 *   "clip": {"classes": ["zero", "one", ...], "templates": ["a photo of the digit {}."],
 *            "coarse": {"zero": "even", "one": "odd", ...},
 *            "coarse_templates": ["a photo of an {} digit."],
 *            "tower": "image",
 *            "captions": "captions.txt",
 *            "heldout": {"data": "heldout.safetensors", "classes": [...], "templates": [...]}}
 *
 * The zero-shot model's outputs: `logits` (the fine classes, what every method and accuracy
 * scores), `logits_coarse` (with "coarse": the coarse classes, in first-seen order of the
 * mapping's values), `logits_heldout` (with "heldout"), `logits_captions` (with "captions": the
 * distinct captions, each its own class, template "{}"); its input is the image input.
 */
#ifndef ULC_JOBS_CLIP_H
#define ULC_JOBS_CLIP_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/status.h"
#include "eval/forget_eval.h"
#include "io/data.h"
#include "ir/graph.h"

#define ULC_CLIP_FINE "logits"
#define ULC_CLIP_COARSE "logits_coarse"
#define ULC_CLIP_HELDOUT "logits_heldout"
#define ULC_CLIP_CAPTIONS "logits_captions"
#define ULC_CLIP_CAPTIONS "logits_captions"

typedef struct ulc_strs {
    char **v;
    int n;
} ulc_strs;

typedef struct ulc_clip_spec {
    int given;
    ulc_strs classes, templates;
    ulc_strs coarse;           /* the coarse classes, first-seen order; empty: no taxonomy */
    int64_t *coarse_of;        /* [classes.n]: each fine class's coarse class (NULL: none) */
    ulc_strs coarse_templates; /* empty: the templates */
    char *tower;               /* which tower LoRA adapters go on: image (default), text, both */
    char *captions;            /* resolved path: one caption per data.test row, or NULL */
    char *heldout_data;        /* resolved path, or NULL */
    ulc_strs heldout_classes, heldout_templates;
} ulc_clip_spec;

void ulc_clip_spec_clear(ulc_clip_spec *c);

/* Parses the "clip" object of the spec at path (files relative to dir) into c, checking every
 * key: non-empty class and template lists, each template holding "{}" exactly once, no class
 * named twice, a coarse class for every fine class when "coarse" is given. */
ulc_status ulc_clip_spec_parse(const char *path, const char *dir, const cJSON *clip,
                               ulc_clip_spec *c, ulc_ctx *ctx);

/* Reads the JSON file at path: a forget spec with a "clip" key, or the "clip" object itself
 * (`ulc eval --clip FILE`); its files are relative to its directory. */
ulc_status ulc_clip_spec_read(const char *path, ulc_clip_spec *c, ulc_ctx *ctx);

/* forget.concepts (a list of class names) as fine class indices, malloc'd; an unknown or
 * repeated name is an error naming it. */
ulc_status ulc_clip_concepts(const char *path, const cJSON *list, const ulc_clip_spec *c,
                             int64_t **classes, int *n, ulc_ctx *ctx);

/* The weights of c->tower, as globs of module and weight names ("vision_model.*|
 * visual_projection|visual_projection.*", ...): where LoRA adapters go, and the only weights any
 * method trains (ulc_clip_view freezes the others). */
const char *ulc_clip_tower_globs(const ulc_clip_spec *c);

/* The features a CLIP request compares (eval/forget_eval.h, the report's CKA and L1 per layer):
 * the last ULC_CLIP_FEATURE_LAYERS linear layers of c->tower that run on the image rows (a
 * transformer block's q, k, v, out, fc1, fc2 and the projection: the image tower's; the text
 * tower runs on the prompts, not on the rows), then the fine head's class scores (ULC_CLIP_FINE),
 * where a text tower's change reaches the rows. Not the patch convolution: LoRA never adapts it. */
#define ULC_CLIP_FEATURE_LAYERS 7
ulc_fe_layers ulc_clip_feature_layers(const ulc_clip_spec *c);

/* What a CLIP request's evaluation reads besides the model: each test row's caption (its index
 * among the distinct captions) and the held-out data. */
typedef struct ulc_clip_run {
    int64_t *caption_of;
    int64_t n_caption_rows;
    ulc_data heldout;
    int has_heldout;
} ulc_clip_run;
void ulc_clip_run_clear(ulc_clip_run *r);

/* Rewrites the CLIP model m (read from model_path) into the zero-shot classifiers of c: the
 * prompts tokenized with the tokenizer at tokenizer (NULL: model_path's directory), padded to
 * the longest with the end token and masked. `where` names the spec in messages. With run, the
 * captions file is read into it. Every weight outside c->tower is flagged ULC_VALUE_FROZEN. */
ulc_status ulc_clip_view(ulc_model *m, const ulc_clip_spec *c, const char *tokenizer,
                         const char *model_path, const char *where, ulc_clip_run *run,
                         ulc_ctx *ctx);

/* The request's CLIP data checked before any work: a caption per row of `test` (the rows the
 * metrics score), the held-out data loaded into run (bound to f) with every label one of
 * clip.heldout.classes. `where` names the spec. Idempotent. */
ulc_status ulc_clip_check_data(const char *where, const ulc_clip_spec *c, ulc_clip_run *run,
                               const ulc_iface *f, const ulc_data *test, const char *model_path,
                               ulc_ctx *ctx);

/* The request's CLIP metrics (eval/clip_eval.h) of `after` — and of `before` (the original; may
 * be NULL), with Ā, Q, U and Q-U — on `test` (bound to f), forgetting the classes fs: the
 * report's "clip" object into *out. The held-out data is loaded into run on first use. */
ulc_status ulc_clip_metrics(const ulc_model *before, const char *before_name,
                            const ulc_model *after, const char *after_name,
                            const ulc_clip_spec *c, ulc_clip_run *run, const ulc_iface *f,
                            const ulc_data *test, const int64_t *forget, int n_forget,
                            const char *model_path, int threads, cJSON **out, ulc_ctx *ctx);

/* The fine classes' similarity from CLIP's text tower: S[k][l] = max(0, cos(e_k, e_l)) with e
 * the class embeddings of the prompts (MeGU's offline similarity): a malloc'd K×K, row-major. */
ulc_status ulc_clip_class_similarity(const char *model_path, const ulc_clip_spec *c,
                                     const char *tokenizer, const char *where, double **S,
                                     ulc_ctx *ctx);

/* Every initializer of dst whose same-named initializer in view holds other bytes (a weight the
 * method changed) gets view's bytes (copied into dst); the `ulc.` metadata of view (the request
 * history) replaces dst's. *changed counts the tensors copied. */
ulc_status ulc_clip_take_weights(ulc_model *dst, const ulc_model *view, int *changed,
                                 ulc_ctx *ctx);

#endif
