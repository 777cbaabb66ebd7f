/* hf_internal.h — the contract between hf_import.c and the per-architecture builders. */
#ifndef ULC_IMPORT_HF_INTERNAL_H
#define ULC_IMPORT_HF_INTERNAL_H

#include <cjson/cJSON.h>

#include "import/hf/builder.h"

/* config.json accessors: the value, or def when absent; *bad set when present but mistyped. */
double hf_num(const cJSON *cfg, const char *key, double def, int *bad);
int hf_bool(const cJSON *cfg, const char *key, int def);
const char *hf_str(const cJSON *cfg, const char *key, const char *def);
/* An int or a [h, w] pair (image_size, patch_size): out[0], out[1]. */
void hf_size2(const cJSON *cfg, const char *key, int64_t def, int64_t out[2], int *bad);
/* A list of ints (hidden_sizes, depths) into out[max]; returns the count (def when absent). */
int hf_ints(const cJSON *cfg, const char *key, const int64_t *def, int n_def, int64_t *out,
            int max, int *bad);

/* Builds the graph over the weights already in b->m. */
ulc_status hf_build_gpt2(ulc_gb *b, const cJSON *cfg);
/* GPT2LMHeadModel with a cache (past_key_values.{i}.key/value in, present.{i}.* out; gpt2.c). */
ulc_status hf_build_gpt2_decoder(ulc_gb *b, const cJSON *cfg);
#define ULC_HF_MAX_LAYERS 256 /* a decoder's layers at most */
ulc_status hf_build_vit(ulc_gb *b, const cJSON *cfg);
ulc_status hf_build_clip(ulc_gb *b, const cJSON *cfg);
ulc_status hf_build_resnet(ulc_gb *b, const cJSON *cfg);

/* torchvision ResNet state_dict names (conv1, bn1, layer1..4, fc) and nothing else. */
int hf_is_torchvision_resnet(const ulc_graph *g);
ulc_status hf_build_torchvision_resnet(ulc_gb *b);

#endif
