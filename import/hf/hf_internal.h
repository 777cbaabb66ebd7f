/* hf_internal.h — the contract between hf_import.c and the per-architecture builders. */
#ifndef ULC_IMPORT_HF_INTERNAL_H
#define ULC_IMPORT_HF_INTERNAL_H

#include <cjson/cJSON.h>

#include "import/hf/builder.h"

/* config.json accessors: the value, or def when absent; *bad set when present but mistyped. */
double hf_num(const cJSON *cfg, const char *key, double def, int *bad);
int hf_bool(const cJSON *cfg, const char *key, int def);
const char *hf_str(const cJSON *cfg, const char *key, const char *def);

/* Builds the graph over the weights already in b->m. */
ulc_status hf_build_gpt2(hb *b, const cJSON *cfg);

#endif
