/*
 * graph.h — ulc's graph IR: one model, one graph, values in SSA form, nodes with ONNX semantics.
 *
 * Ownership: a ulc_model owns its graph; the graph owns an arena in which every node, value,
 * name, attribute and dims array lives, and dies with ulc_model_free. Weight bytes are separate
 * and tagged: OWNED (malloc'd, freed with the graph), BORROWED (inside a file mapping that the
 * graph keeps a reference on), DEVICE (reserved for backends).
 *
 * Values: every tensor name in the graph is a ulc_value with a dtype, an optional shape whose
 * dims are concrete (value >= 0) or symbolic ("N") or unknown, one producer (a node, or none for
 * graph inputs and initializers) and a list of uses. Flags mark INPUT/OUTPUT/INITIALIZER and,
 * for training, PARAM/LOSS/FROZEN.
 *
 * Nodes: ONNX domain + op_type + attributes, inputs as uses (a use with a NULL value is a
 * missing optional input, written "" in ONNX), outputs as values (NULL = unused optional output).
 * Nodes sit in a doubly linked list, in topological order once verified.
 *
 * Format extras: whatever an importer understands but the IR does not model (ONNX doc strings
 * of messages the IR does not mirror, functions, training info, subgraph attributes, unknown
 * protobuf fields) is kept as opaque serialized bytes in `extra` fields and written back
 * verbatim by the matching exporter. The IR never interprets them.
 *
 *     ulc_model *m = ulc_model_create();
 *     ulc_graph *g = m->graph;
 *     ulc_value *x = ulc_graph_add_value(g, "x", ctx);   ... ulc_value_set_shape(...)
 *     ulc_node *n = ulc_graph_add_node(g, "", "Relu", "relu0", 1, 1, ctx);
 *     ulc_node_set_input(n, 0, x); ulc_node_set_output(n, 0, y, ctx);
 *     ulc_graph_verify(g, ctx); ulc_graph_print(g, stdout);
 *     ulc_model_free(m);
 *
 * Code that writes graph (rather than mirroring a file's nodes) uses ir/builder.h on top.
 */
#ifndef ULC_IR_GRAPH_H
#define ULC_IR_GRAPH_H

#include <stdint.h>
#include <stdio.h>

#include "common/arena.h"
#include "common/file.h"
#include "common/ptrvec.h"
#include "common/status.h"
#include "common/strmap.h"
#include "ir/dtype.h"
#include "ir/op.h"

typedef struct ulc_bytes {
    const uint8_t *data; /* arena-owned; NULL when len == 0 */
    size_t len;
} ulc_bytes;

/* ---- weights ----------------------------------------------------------------------------- */

typedef enum ulc_storage {
    ULC_STORAGE_NONE = 0, /* no data (string tensors, opaque values) */
    ULC_STORAGE_OWNED,    /* malloc'd, freed with the graph */
    ULC_STORAGE_BORROWED, /* points into `map`, which the tensor holds a reference on */
    ULC_STORAGE_DEVICE,   /* backend memory; not produced by importers */
    ULC_STORAGE_LAZY      /* produced on demand by `source` (a pass's pending result), so
                             writers can stream it without ever holding all of it */
} ulc_storage;

/* The producer behind a LAZY tensor. read() writes bytes [off, off + len) of the tensor to
 * dst; writers ask for consecutive chunks whose offsets are multiples of `granule` (a merge's:
 * four rows' bytes; 0 = any), and the lengths too but for the last. A failing read (say, a merge that would produce a NaN) fails the write that
 * asked. release() frees state when the graph goes. */
typedef struct ulc_tensor_source {
    ulc_status (*read)(void *state, uint64_t off, size_t len, void *dst, ulc_ctx *ctx);
    void (*release)(void *state);
    void *state;
    size_t granule;
} ulc_tensor_source;

/* Where the bytes sat in the source file, so exporters can decide how to write them. */
typedef enum ulc_tensor_form {
    ULC_FORM_RAW = 0,  /* ONNX raw_data (or a safetensors blob) */
    ULC_FORM_TYPED,    /* ONNX typed repeated fields (float_data, int32_data, ...) */
    ULC_FORM_EXTERNAL, /* ONNX external data file */
    ULC_FORM_NONE      /* no data field at all (e.g. string tensors kept in `extra`) */
} ulc_tensor_form;

/* A constant tensor: an initializer, or an attribute value. Data is little-endian, dense,
 * row-major, packed for 4-bit types. */
typedef struct ulc_tensor {
    const char *name;   /* may be NULL for unnamed attribute tensors */
    int dtype;          /* ulc_dtype code (kept as int: unknown codes survive) */
    int rank;
    int64_t *dims;      /* rank entries, all >= 0 */
    uint64_t numel;
    ulc_storage storage;
    const void *data;   /* nbytes bytes, possibly unaligned when BORROWED */
    size_t nbytes;
    ulc_mapping *map;   /* BORROWED: the mapping data points into (referenced) */
    ulc_tensor_source *source; /* LAZY: the producer (data is NULL) */
    ulc_tensor_form form;
    const char *ext_location; /* EXTERNAL: location as written in the source */
    ulc_bytes extra;          /* format extras (ONNX: doc_string, segment, unknown fields) */
} ulc_tensor;

/* Offset of data inside its mapping's file, for kernel-side copies (BORROWED only). */
uint64_t ulc_tensor_file_offset(const ulc_tensor *t);

/* ---- values -------------------------------------------------------------------------------- */

enum {
    ULC_VALUE_INPUT = 1u << 0,
    ULC_VALUE_OUTPUT = 1u << 1,
    ULC_VALUE_INITIALIZER = 1u << 2, /* has `init` */
    ULC_VALUE_PARAM = 1u << 3,       /* trainable */
    ULC_VALUE_LOSS = 1u << 4,
    ULC_VALUE_FROZEN = 1u << 5,      /* a weight the request keeps as it is: no method trains it
                                        (a CLIP request's other tower) */
    ULC_VALUE_HAS_TYPE = 1u << 6,    /* dtype is known (from a value_info, a tensor or inference) */
    ULC_VALUE_VALUE_INFO = 1u << 7,  /* listed in the graph's value_info */
    ULC_VALUE_OPAQUE_INIT = 1u << 8, /* defined by a format extra (ONNX sparse_initializer) */
    ULC_VALUE_CONSTANT = 1u << 9,    /* an initializer that is part of the graph's structure (a
                                        builder's shape vector or scalar), not a model weight:
                                        weights-only formats (safetensors) leave it out */
};

typedef struct ulc_dim {
    int64_t value;          /* >= 0 when concrete, -1 otherwise */
    const char *param;      /* symbolic name ("N", "batch"), or NULL */
    const char *denotation; /* ONNX dimension denotation, usually NULL */
} ulc_dim;

typedef struct ulc_use ulc_use;
typedef struct ulc_node ulc_node;

typedef struct ulc_value {
    const char *name;
    uint32_t flags;
    int dtype;            /* meaningful with ULC_VALUE_HAS_TYPE */
    int rank;             /* -1: shape unknown */
    ulc_dim *dims;        /* rank entries */
    ulc_node *producer;   /* NULL for inputs, initializers, and dangling value_info entries */
    int producer_slot;
    ulc_use *first_use;   /* intrusive list of the uses reading this value */
    ulc_tensor *init;     /* ULC_VALUE_INITIALIZER: the data */
    ulc_bytes type_blob;  /* non-tensor ONNX TypeProto (sequence, map, ...), opaque */
    const char *type_denotation;
    ulc_bytes extra;      /* format extras of the value's description (ONNX ValueInfoProto) */
    int id;               /* dense index assigned at creation, stable for the graph's life */
} ulc_value;

struct ulc_use {
    ulc_value *value; /* NULL: missing optional input */
    ulc_node *node;
    int slot;
    ulc_use *next, *prev; /* siblings in value->first_use */
};

/* ---- attributes ------------------------------------------------------------------------------ */

typedef enum ulc_attr_type {
    ULC_ATTR_UNDEFINED = 0,
    ULC_ATTR_FLOAT = 1,
    ULC_ATTR_INT = 2,
    ULC_ATTR_STRING = 3,
    ULC_ATTR_TENSOR = 4,
    ULC_ATTR_GRAPH = 5, /* opaque: in extra */
    ULC_ATTR_FLOATS = 6,
    ULC_ATTR_INTS = 7,
    ULC_ATTR_STRINGS = 8,
    ULC_ATTR_TENSORS = 9,
    ULC_ATTR_GRAPHS = 10,         /* opaque */
    ULC_ATTR_SPARSE_TENSOR = 11,  /* opaque */
    ULC_ATTR_SPARSE_TENSORS = 12, /* opaque */
    ULC_ATTR_TYPE_PROTO = 13,     /* opaque */
    ULC_ATTR_TYPE_PROTOS = 14     /* opaque */
} ulc_attr_type;

typedef struct ulc_attr {
    const char *name;
    int type;          /* ulc_attr_type (int: unknown codes survive) */
    int has_type;      /* the source stated the type explicitly */
    float f;
    int64_t i;
    ulc_bytes s;       /* STRING: bytes, not necessarily NUL-terminated (data is, for convenience) */
    ulc_tensor *t;
    size_t n;          /* element count of the list below */
    float *floats;
    int64_t *ints;
    ulc_bytes *strings;
    ulc_tensor **tensors;
    /* Presence of scalar fields, kept so that a model states exactly what it stated before. */
    unsigned char has_f, has_i, has_s;
    ulc_bytes extra;   /* ONNX: graphs, sparse tensors, type protos, doc_string, ref_attr_name, unknown */
} ulc_attr;

/* ---- nodes --------------------------------------------------------------------------------- */

struct ulc_node {
    const char *name;    /* may be NULL (ONNX allows unnamed nodes) */
    const char *domain;  /* NULL = absent; "" and "ai.onnx" = the default domain */
    const char *op_type;
    ulc_op op;           /* ULC_OP_UNKNOWN for ops outside the table or other domains */
    int n_inputs, n_outputs, n_attrs;
    ulc_use *inputs;     /* n_inputs */
    ulc_value **outputs; /* n_outputs */
    ulc_attr *attrs;     /* n_attrs, source order */
    const char *doc_string; /* NULL = absent */
    ulc_bytes extra;
    ulc_node *prev, *next;
    int id;
};

/* ---- graph and model ----------------------------------------------------------------------- */

typedef struct ulc_graph {
    ulc_arena *arena;
    const char *name;
    const char *doc_string;
    ulc_node *first, *last;
    int n_nodes;
    ulc_strmap *by_name; /* value name -> ulc_value */
    ulc_ptrvec values;   /* every value, creation order */
    ulc_ptrvec inputs;   /* ordered graph inputs */
    ulc_ptrvec outputs;  /* ordered graph outputs */
    ulc_ptrvec inits;    /* initializers, in source order */
    ulc_ptrvec value_info; /* values listed as value_info, in source order */
    ulc_ptrvec maps;     /* ulc_mapping* referenced by borrowed weights (one ref each) */
    ulc_ptrvec owned;    /* malloc'd weight buffers to free */
    ulc_ptrvec sources;  /* ulc_tensor_source* of LAZY tensors, released with the graph */
    ulc_bytes extra;
    int next_node_id;
} ulc_graph;

typedef struct ulc_opset {
    const char *domain; /* "" for the default domain */
    int64_t version;
    int has_domain, has_version;
} ulc_opset;

typedef struct ulc_kv {
    const char *key, *value;
} ulc_kv;

typedef enum ulc_source_format {
    ULC_FORMAT_NONE = 0,
    ULC_FORMAT_ONNX,
    ULC_FORMAT_SAFETENSORS,
    ULC_FORMAT_HF /* a Hugging Face checkpoint directory, its graph built from config.json */
} ulc_source_format;

/* Metadata keys ulc writes itself ("ulc." + name); weights-only formats leave them out. */
#define ULC_META_PREFIX "ulc."
#define ULC_META_HF_CONFIG "ulc.hf_config"  /* config.json text of a Hugging Face architecture */
#define ULC_META_ARCH "ulc.architecture"     /* a known weights-only naming ("torchvision.resnet") */

typedef struct ulc_model {
    ulc_graph *graph;
    ulc_source_format source_format;
    const char *source_path;
    /* ONNX ModelProto fields the IR mirrors; has_* records presence for exact round trips. */
    int64_t ir_version;
    int has_ir_version;
    const char *producer_name, *producer_version, *domain, *doc_string;
    int64_t model_version;
    int has_model_version;
    int n_opsets;
    ulc_opset *opsets;
    int n_metadata;
    ulc_kv *metadata;
    int had_external_data; /* some tensor came from an external file */
    ulc_bytes extra;       /* ONNX: functions, training_info, unknown fields */
    ulc_ptrvec lora;       /* ulc_lora_record* (ir/lora.h, in the arena): injected adapters */
} ulc_model;

/* Creates an empty model with an empty graph; NULL on allocation failure. */
ulc_model *ulc_model_create(void);
/* Frees the model, its graph, owned weights and mapping references. Accepts NULL. */
void ulc_model_free(ulc_model *m);
/* Opset version for a domain ("" or "ai.onnx" for the default), or -1 if not imported. The
 * default domain always has one, the one every builder, analysis and session uses: the imported
 * version, else (a model built in code; ONNX files must import one, ir/schema.h) the newest ulc
 * implements, ULC_ONNX_OPSET_MAX. */
int64_t ulc_model_opset(const ulc_model *m, const char *domain);
/* The metadata value under key, or NULL. */
const char *ulc_model_metadata(const ulc_model *m, const char *key);
/* Adds key = value (arena copies) unless the key is already there: the first value stays. */
ulc_status ulc_model_add_metadata(ulc_model *m, const char *key, const char *value, ulc_ctx *ctx);
/* Sets key to value, replacing the value it has (the order of keys is kept). */
ulc_status ulc_model_set_metadata(ulc_model *m, const char *key, const char *value, ulc_ctx *ctx);

/* If path names the same file as the model's source or a file its weights are borrowed from,
 * returns that file's path (so writers can refuse to clobber their own input); else NULL. */
const char *ulc_model_reads_file(const ulc_model *m, const char *path);

/* Values. add_value fails (ULC_ERR_INVALID) if the name exists; get_value returns NULL if absent.
 * ensure_value returns the existing value or creates it. */
ulc_value *ulc_graph_add_value(ulc_graph *g, const char *name, ulc_ctx *ctx);
ulc_value *ulc_graph_get_value(const ulc_graph *g, const char *name);
ulc_value *ulc_graph_ensure_value(ulc_graph *g, const char *name, ulc_ctx *ctx);
ulc_status ulc_value_set_shape(ulc_graph *g, ulc_value *v, int rank, const ulc_dim *dims,
                               ulc_ctx *ctx);
int ulc_value_num_uses(const ulc_value *v);

/* Tensors. ulc_tensor_new allocates the struct (and dims) in the arena; the data is attached
 * with one of the set_data functions. */
ulc_tensor *ulc_tensor_new(ulc_graph *g, const char *name, int dtype, int rank,
                           const int64_t *dims, ulc_ctx *ctx);
/* Takes ownership of a malloc'd buffer. */
ulc_status ulc_tensor_set_owned(ulc_graph *g, ulc_tensor *t, void *data, size_t nbytes,
                                ulc_ctx *ctx);
/* Borrows bytes inside a mapping (the graph takes its own reference). */
ulc_status ulc_tensor_set_borrowed(ulc_graph *g, ulc_tensor *t, ulc_mapping *map,
                                   const void *data, size_t nbytes, ulc_ctx *ctx);
/* Attaches a producer (the graph owns source, a malloc'd struct, and releases it). */
ulc_status ulc_tensor_set_lazy(ulc_graph *g, ulc_tensor *t, ulc_tensor_source *source,
                               size_t nbytes, ulc_ctx *ctx);
/* A LAZY tensor's bytes produced into an owned buffer (any other tensor: nothing to do). */
ulc_status ulc_tensor_materialize(ulc_graph *g, ulc_tensor *t, ulc_ctx *ctx);
typedef ulc_status (*ulc_stream_sink_fn)(void *arg, const void *p, size_t n, ulc_ctx *ctx);
typedef ulc_status (*ulc_stream_skip_fn)(void *arg, uint64_t n, ulc_ctx *ctx);

/* Calls sink with t's bytes in order: one call for data in memory, 1 MiB at a time for a LAZY
 * tensor (never the whole of it at once). For a LAZY tensor of several chunks, sink runs on a
 * writer thread while the source produces the next chunks: one call at a time, in order, but
 * not on the caller's thread. Not for DEVICE/NONE tensors. */
ulc_status ulc_tensor_stream(const ulc_tensor *t, ulc_stream_sink_fn sink, void *arg, ulc_ctx *ctx);

/* A stream of several tensors (and skipped regions) to one sink, e.g. a file's whole data
 * section: LAZY tensors are produced on the caller's thread into a ring of 1 MiB buffers while
 * a writer thread calls sink (or skip) with earlier items, in order, across tensor boundaries.
 * Tensors in memory are written from where they are: they must outlive close. A failure is
 * returned by the call that meets it: a source's by put, the sink's by the next put or skip or
 * by close. After any failure the caller must treat the output as bad (close then only waits).
 *
 *     ulc_stream *s;  ulc_stream_open(sink, skip, arg, &s, ctx);
 *     ulc_stream_put(s, t, ctx); ulc_stream_skip(s, 4096, ctx); ...
 *     ulc_stream_close(s, ctx);   // waits for the writer; frees s (ctx NULL: no message) */
typedef struct ulc_stream ulc_stream;
ulc_status ulc_stream_open(ulc_stream_sink_fn sink, ulc_stream_skip_fn skip, void *arg,
                           ulc_stream **out, ulc_ctx *ctx);
ulc_status ulc_stream_put(ulc_stream *s, const ulc_tensor *t, ulc_ctx *ctx);
ulc_status ulc_stream_skip(ulc_stream *s, uint64_t n, ulc_ctx *ctx);
ulc_status ulc_stream_close(ulc_stream *s, ulc_ctx *ctx);
/* Makes value v an initializer holding t (sets flags, dtype and shape from t). */
ulc_status ulc_value_set_init(ulc_graph *g, ulc_value *v, ulc_tensor *t, ulc_ctx *ctx);

/* Nodes. Appended at the end of the node list, with n_in empty input uses and n_out NULL
 * outputs; attributes are reserved (n_attrs = 0, capacity n_attr_cap). */
ulc_node *ulc_graph_add_node(ulc_graph *g, const char *domain, const char *op_type,
                             const char *name, int n_in, int n_out, int n_attr_cap,
                             ulc_ctx *ctx);
/* Sets input slot i to v (NULL = missing), maintaining use lists. */
void ulc_node_set_input(ulc_node *n, int i, ulc_value *v);
/* Sets output slot i to v; fails if v already has a producer. */
ulc_status ulc_node_set_output(ulc_node *n, int i, ulc_value *v, ulc_ctx *ctx);
/* Next free attribute slot (within the capacity given at creation), zeroed; NULL if full. */
ulc_attr *ulc_node_add_attr(ulc_node *n, const char *name);
const ulc_attr *ulc_node_attr(const ulc_node *n, const char *name);
/* Unlinks and detaches a node (uses and producers cleared); its memory stays in the arena. */
void ulc_graph_remove_node(ulc_graph *g, ulc_node *n);
/* Reorders nodes topologically, keeping source order among ready nodes. Fails on a cycle. */
ulc_status ulc_graph_toposort(ulc_graph *g, ulc_ctx *ctx);

/* Checks structural invariants: unique names, SSA (one producer), every input defined before
 * use (graph input, initializer, or an earlier node's output), graph outputs defined, tensor
 * data sizes consistent with dtype and dims, attribute payloads consistent with their types,
 * no cycles. The message names the node or value at fault. */
ulc_status ulc_graph_verify(const ulc_graph *g, ulc_ctx *ctx);

/* Writes a readable text form of the model (header, inputs, initializers, nodes, outputs). */
void ulc_model_print(const ulc_model *m, FILE *out);

/* Display helpers: "n0:Conv" style label for messages; writes into buf. */
const char *ulc_node_label(const ulc_node *n, char *buf, size_t size);

#endif
