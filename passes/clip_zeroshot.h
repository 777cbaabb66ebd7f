/*
 * clip_zeroshot.h — a CLIP model as zero-shot image classifiers: the text tower's prompts become
 * constants of the graph, and each head's class scores an output over the image input.
 *
 * A head is a set of classes, each described by the same templates ("a photo of the digit {}.");
 * its class embedding is the mean of the class's normalised prompt embeddings, normalised again,
 * and its logits are exp(logit_scale) · image_embed · class_embedᵀ — CLIP's zero-shot classifier
 * (Radford et al.). The rewrite reads only what transformers' CLIPModel and its ONNX exports
 * name: the inputs input_ids (and attention_mask when present) and the outputs logits_per_image
 * and text_embeds, so it works on an imported Hugging Face directory and on an ONNX file with
 * both towers alike. With the prompts' summed scores s = Σ_t logits_per_image[:, c, t] and summed
 * embeddings e = Σ_t text_embeds[c, t], a class's logit is s / |e| (the template count cancels).
 *
 * The prompts enter as constant initializers, so the text tower folds into constants when it
 * does not train (the planner evaluates constant subgraphs once per plan), and trains with it
 * when LoRA adapters sit on it. The model keeps every weight under its own name: what a method
 * changes is found by name afterwards (jobs/clip.c copies it into the CLIP model it writes).
 */
#ifndef ULC_PASSES_CLIP_ZEROSHOT_H
#define ULC_PASSES_CLIP_ZEROSHOT_H

#include <stdint.h>

#include "common/status.h"
#include "ir/graph.h"

#define ULC_CLIP_MAX_HEADS 4

typedef struct ulc_clip_head {
    const char *output;          /* the output's name ("logits") */
    const char *embeds;          /* also output its class embeddings [classes, P] (unit rows)
                                    under this name; NULL: not */
    int64_t first;               /* its first prompt row */
    int64_t classes, templates;  /* prompts [first, first + classes·templates), class-major */
} ulc_clip_head;

typedef struct ulc_clip_prompts {
    const int64_t *ids, *mask;   /* [n, len] token ids and attention mask (1 on tokens) */
    int64_t n, len;
    ulc_clip_head heads[ULC_CLIP_MAX_HEADS];
    int n_heads;
} ulc_clip_prompts;

/* Whether m has what the rewrite reads (input_ids, logits_per_image, text_embeds); when not,
 * *why (if given) says what is missing. */
int ulc_clip_is(const ulc_model *m, const char **why);

/* Rewrites m in place into the heads' classifiers: the single input is the image input
 * (pixel_values), the outputs are the heads' logits [images, classes] in order. Fails with
 * ULC_ERR_UNSUPPORTED (what is missing) on a model that is not CLIP, ULC_ERR_INVALID on prompts
 * that do not fit it. */
ulc_status ulc_clip_zeroshot(ulc_model *m, const ulc_clip_prompts *p, ulc_ctx *ctx);

#endif
