/*
 * onnx_import.c — ONNX ModelProto -> IR without copying weights.
 *
 * ModelProto layout (onnx.proto, proto2), the fields this file cares about:
 *   ModelProto  { 1 ir_version, 2 producer_name, 3 producer_version, 4 domain, 5 model_version,
 *                 6 doc_string, 7 graph: GraphProto, 8 opset_import, 14 metadata_props,
 *                 20 training_info, 25 functions }
 *   GraphProto  { 1 node, 2 name, 5 initializer: TensorProto, 10 doc_string, 11 input,
 *                 12 output, 13 value_info, 14 quantization_annotation, 15 sparse_initializer }
 *   TensorProto { 1 dims, 2 data_type, 4/5/6/7/10/11 typed data, 8 name, 9 raw_data,
 *                 12 doc_string, 13 external_data, 14 data_location }
 *
 * Plan: walk the wire format of the mapped file (common/pbwire.h) to cut out, by offset, the
 * graph's initializers and their raw_data; everything else (a few KB) is gathered into small
 * buffers and decoded by protobuf-c. raw_data then becomes a BORROWED tensor pointing into the
 * mapping. For each message the IR mirrors, the fields it does not model are re-packed by
 * protobuf-c into the IR object's `extra` bytes (unknown fields included), which export merges
 * back — so nothing the importer does not understand is lost.
 */
#include "import/onnx_import.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbwire.h"
#include "common/strmap.h"
#include "ir/schema.h"
#ifdef ULC_ONNX_PB_HEADER
#include ULC_ONNX_PB_HEADER
#else
#include "onnx.pb-c.h"
#endif

enum {
    MODEL_GRAPH = 7,
    GRAPH_INITIALIZER = 5,
    TENSOR_RAW_DATA = 9,
};

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

typedef struct importer {
    const char *path;
    char *dir;            /* directory of the model: external data is relative to it */
    ulc_mapping *map;     /* the model file */
    ulc_model *m;
    ulc_graph *g;
    ulc_ctx *ctx;
    ulc_strmap *ext_maps; /* resolved path -> ulc_mapping*, external data files */
    ulc_ptrvec ext_list;  /* the same mappings, to unref */
} importer;

static ulc_status oom(importer *im) {
    return ulc_fail(im->ctx, ULC_ERR_NOMEM, "out of memory");
}

static int buf_append(buf *b, const uint8_t *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n) nc *= 2;
        uint8_t *q = realloc(b->p, nc);
        if (!q) return -1;
        b->p = q;
        b->cap = nc;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static ulc_status malformed(importer *im, const uint8_t *at, const char *where) {
    return ulc_fail(im->ctx, ULC_ERR_PARSE,
                    "not a valid ONNX model: malformed protobuf in %s at byte offset %zu", where,
                    (size_t)(at - im->map->data));
}

/* Re-packs what is left of a message after the modeled fields were cleared. */
static ulc_status pack_extra(importer *im, const ProtobufCMessage *msg, ulc_bytes *out) {
    size_t n = protobuf_c_message_get_packed_size(msg);
    out->data = NULL;
    out->len = 0;
    if (n == 0) return ULC_OK;
    uint8_t *p = ulc_arena_alloc(im->g->arena, n);
    if (!p) return oom(im);
    protobuf_c_message_pack(msg, p);
    out->data = p;
    out->len = n;
    return ULC_OK;
}

static char *adup(importer *im, const char *s) { return ulc_arena_strdup(im->g->arena, s); }

/* ---- structure check before protobuf-c ----------------------------------------------------
 *
 * protobuf-c unpacks nested messages recursively with no depth limit, so a hostile file with
 * thousands of nested subgraphs would overflow the stack, and it reads strings as C strings, so
 * a NUL byte inside an external-data location would silently cut the name. This walk follows
 * the message-typed fields of onnx.proto (and only those), bounds the nesting depth, and
 * refuses NUL bytes in external_data entries, before anything is unpacked. */

#define MAX_NESTING 100 /* protobuf's own default recursion limit: what onnx can load, ulc can */

typedef enum msg_kind {
    MK_MODEL, MK_GRAPH, MK_NODE, MK_ATTR, MK_TENSOR, MK_SPARSE, MK_VALUE_INFO, MK_TYPE,
    MK_TYPE_TENSOR, MK_TYPE_SEQ, MK_TYPE_MAP, MK_TYPE_OPT, MK_TRAINING, MK_FUNCTION, MK_KV,
    MK_NONE
} msg_kind;

/* The message type of field `number` in a message of kind k (MK_NONE: not a message). */
static msg_kind child_kind(msg_kind k, uint32_t number) {
    switch (k) {
    case MK_MODEL: return number == 7 ? MK_GRAPH : number == 20 ? MK_TRAINING : number == 25 ? MK_FUNCTION : MK_NONE;
    case MK_GRAPH:
        return number == 1 ? MK_NODE : number == 5 ? MK_TENSOR : number == 15 ? MK_SPARSE
               : (number == 11 || number == 12 || number == 13) ? MK_VALUE_INFO : MK_NONE;
    case MK_NODE: return number == 5 ? MK_ATTR : MK_NONE;
    case MK_ATTR:
        return (number == 5 || number == 10) ? MK_TENSOR : (number == 6 || number == 11) ? MK_GRAPH
               : (number == 22 || number == 23) ? MK_SPARSE : (number == 14 || number == 15) ? MK_TYPE : MK_NONE;
    case MK_TENSOR: return number == 13 ? MK_KV : MK_NONE;
    case MK_SPARSE: return (number == 1 || number == 2) ? MK_TENSOR : MK_NONE;
    case MK_VALUE_INFO: return number == 2 ? MK_TYPE : MK_NONE;
    case MK_TYPE:
        return (number == 1 || number == 8) ? MK_TYPE_TENSOR : number == 4 ? MK_TYPE_SEQ
               : number == 5 ? MK_TYPE_MAP : number == 9 ? MK_TYPE_OPT : MK_NONE;
    case MK_TYPE_SEQ:
    case MK_TYPE_OPT: return number == 1 ? MK_TYPE : MK_NONE;
    case MK_TYPE_MAP: return number == 2 ? MK_TYPE : MK_NONE;
    case MK_TRAINING: return (number == 1 || number == 2) ? MK_GRAPH : MK_NONE;
    case MK_FUNCTION: return number == 7 ? MK_NODE : number == 11 ? MK_ATTR : number == 12 ? MK_VALUE_INFO : MK_NONE;
    default: return MK_NONE;
    }
}

/* The bytes of string field `number` of a message (the last one), up to any NUL and at most
 * max bytes, for naming things in messages; "" when absent. */
static const char *pb_string_field(const uint8_t *p, size_t n, uint32_t number, int max, int *len) {
    ulc_pb_reader r = {p, p + n};
    ulc_pb_field f;
    const char *s = "";
    *len = 0;
    while (ulc_pb_next(&r, &f) > 0)
        if (f.number == number && f.wire_type == ULC_PB_LEN) {
            s = (const char *)f.payload;
            *len = (int)strnlen(s, f.len > (size_t)max ? (size_t)max : f.len);
        }
    return s;
}

static ulc_status check_structure(importer *im, const uint8_t *p, size_t n, msg_kind k, int depth) {
    if (depth > MAX_NESTING)
        return ulc_fail(im->ctx, ULC_ERR_UNSUPPORTED,
                        "subgraphs or types nest more than %d levels deep; refusing the model",
                        MAX_NESTING);
    if (n == 0) return ULC_OK; /* an empty message (p may be NULL: no offset on it) */
    ulc_pb_reader rd = {p, p + n};
    ulc_pb_field f;
    int rc;
    while ((rc = ulc_pb_next(&rd, &f)) > 0) {
        if (f.wire_type != ULC_PB_LEN) continue;
        if (k == MK_KV && memchr(f.payload, '\0', f.len)) {
            int klen;
            const char *key = pb_string_field(p, n, 1, 64, &klen); /* the entry's key */
            return ulc_fail(im->ctx, ULC_ERR_INVALID,
                            "external_data entry '%.*s' contains a NUL byte (the %s cut short "
                            "there would name a different file)", klen, key,
                            f.number == 1 ? "key" : "location");
        }
        msg_kind c = child_kind(k, f.number);
        if (c != MK_NONE) ULC_TRY(check_structure(im, f.payload, f.len, c, depth + 1));
    }
    if (rc < 0)
        return ulc_fail(im->ctx, ULC_ERR_PARSE, "not a valid ONNX model: malformed protobuf "
                        "inside a nested message");
    return ULC_OK;
}

/* ---- tensors ------------------------------------------------------------------------------ */

static int parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

static ulc_status external_mapping(importer *im, const char *tname, const char *loc,
                                   ulc_mapping **out) {
    const char *why = ulc_path_unsafe_reason(loc);
    if (why)
        return ulc_fail(im->ctx, ULC_ERR_INVALID,
                        "tensor '%s': external data location '%s' is not allowed: %s", tname, loc,
                        why);
    char *full = ulc_path_join(im->dir, loc);
    if (!full) return oom(im);
    ulc_mapping *m = ulc_strmap_get(im->ext_maps, full);
    if (m) {
        free(full);
        *out = m;
        return ULC_OK;
    }
    ulc_ctx sub;
    ulc_ctx_init_from(&sub, im->ctx);
    ulc_status s = ulc_mapping_open(full, "external data file", &m, &sub);
    if (s != ULC_OK) {
        ulc_fail(im->ctx, s, "tensor '%s': external data file '%s' (resolved to '%s'): %s",
                 tname, loc, full, ulc_ctx_message(&sub));
        free(full);
        return s;
    }
    if ((s = ulc_path_confine(im->dir, m, im->ctx->allow_external_outside, &sub)) != ULC_OK) {
        ulc_fail(im->ctx, s, "tensor '%s': external data location '%s' %s", tname, loc,
                 ulc_ctx_message(&sub));
        ulc_mapping_unref(m);
        free(full);
        return s;
    }
    /* The key must outlive the map: keep it in the arena. */
    char *key = adup(im, full);
    free(full);
    if (!key || ulc_strmap_put(im->ext_maps, key, m) != 0 ||
        ulc_ptrvec_push(&im->ext_list, m) != 0) {
        ulc_mapping_unref(m);
        return oom(im);
    }
    *out = m;
    return ULC_OK;
}

/* Copies n_src typed values into a dense little-endian buffer of dtype dt. */
static void decode_typed(const Onnx__TensorProto *tp, int dt, uint8_t *dst, size_t count) {
    switch (ulc_dtype_onnx_field(dt)) {
    case ULC_ONNX_FIELD_FLOAT: memcpy(dst, tp->float_data, count * 4); break;
    case ULC_ONNX_FIELD_DOUBLE: memcpy(dst, tp->double_data, count * 8); break;
    case ULC_ONNX_FIELD_INT64: memcpy(dst, tp->int64_data, count * 8); break;
    case ULC_ONNX_FIELD_UINT64:
        if (dt == ULC_DT_U64) {
            memcpy(dst, tp->uint64_data, count * 8);
        } else {
            for (size_t i = 0; i < count; i++) {
                uint32_t x = (uint32_t)tp->uint64_data[i];
                memcpy(dst + 4 * i, &x, 4);
            }
        }
        break;
    case ULC_ONNX_FIELD_INT32: {
        unsigned bytes = ulc_dtype_bits(dt) == 4 ? 1 : ulc_dtype_bits(dt) / 8;
        for (size_t i = 0; i < count; i++) {
            uint32_t x = (uint32_t)tp->int32_data[i];
            if (bytes == 1) dst[i] = (uint8_t)x;
            else if (bytes == 2) {
                uint16_t h = (uint16_t)x;
                memcpy(dst + 2 * i, &h, 2);
            } else memcpy(dst + 4 * i, &x, 4);
        }
        break;
    }
    default: break;
    }
}

static size_t typed_count(const Onnx__TensorProto *tp, int dt) {
    switch (ulc_dtype_onnx_field(dt)) {
    case ULC_ONNX_FIELD_FLOAT: return tp->n_float_data;
    case ULC_ONNX_FIELD_DOUBLE: return tp->n_double_data;
    case ULC_ONNX_FIELD_INT64: return tp->n_int64_data;
    case ULC_ONNX_FIELD_UINT64: return tp->n_uint64_data;
    case ULC_ONNX_FIELD_INT32: return tp->n_int32_data;
    case ULC_ONNX_FIELD_STRING: return tp->n_string_data;
    default: return 0;
    }
}

static size_t any_typed(const Onnx__TensorProto *tp) {
    return tp->n_float_data + tp->n_double_data + tp->n_int64_data + tp->n_uint64_data +
           tp->n_int32_data;
}

/* TensorProto -> ulc_tensor. raw/raw_len: raw_data cut out of the mapping by the wire walk
 * (initializers), or NULL to use tp->raw_data (attribute tensors, which are copied). */
static ulc_status convert_tensor(importer *im, Onnx__TensorProto *tp, const uint8_t *raw,
                                 size_t raw_len, const char *role, ulc_tensor **out) {
    ulc_graph *g = im->g;
    ulc_ctx *ctx = im->ctx;
    const char *tname = tp->name ? tp->name : "";
    *out = NULL;
    if (!tp->has_data_type || !ulc_dtype_valid(tp->data_type))
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "%s '%s': data_type %d is not a valid ONNX TensorProto.DataType", role,
                        tname, tp->has_data_type ? tp->data_type : 0);
    if (tp->n_dims > 64)
        return ulc_fail(ctx, ULC_ERR_INVALID, "%s '%s': %zu dimensions, at most 64 supported",
                        role, tname, tp->n_dims);
    for (size_t i = 0; i < tp->n_dims; i++)
        if (tp->dims[i] < 0)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s '%s': dimension %zu is %lld, expected a size >= 0", role, tname, i,
                            (long long)tp->dims[i]);
    ulc_tensor *t = ulc_tensor_new(g, tp->name, tp->data_type, (int)tp->n_dims, tp->dims, ctx);
    if (!t) return ulc_fail(ctx, ctx->status, "%s '%s'", role, tname);
    int dt = t->dtype;
    int overflow = 0;
    size_t need = ulc_dtype_nbytes(dt, t->numel, &overflow);
    if (overflow || need > ((size_t)1 << 46))
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "%s '%s': %llu elements of %s is an absurd size (more than 64 TiB)", role,
                        tname, (unsigned long long)t->numel, ulc_dtype_name(dt));

    int has_raw = raw != NULL || tp->has_raw_data;
    int external = tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    size_t n_typed = any_typed(tp);
    if (has_raw + external + (n_typed > 0) > 1)
        return ulc_fail(ctx, ULC_ERR_INVALID,
                        "%s '%s': data is given in more than one way (raw_data, typed fields, "
                        "external data); expected exactly one", role, tname);

    if (external) {
        const char *loc = NULL;
        uint64_t off = 0, len = 0;
        int has_len = 0;
        for (size_t i = 0; i < tp->n_external_data; i++) {
            const Onnx__StringStringEntryProto *kv = tp->external_data[i];
            if (!kv->key) continue;
            if (strcmp(kv->key, "location") == 0) loc = kv->value;
            else if (strcmp(kv->key, "offset") == 0) {
                if (parse_u64(kv->value, &off) != 0)
                    return ulc_fail(ctx, ULC_ERR_INVALID,
                                    "%s '%s': external data offset '%s' is not a byte count",
                                    role, tname, kv->value ? kv->value : "");
            } else if (strcmp(kv->key, "length") == 0) {
                if (parse_u64(kv->value, &len) != 0)
                    return ulc_fail(ctx, ULC_ERR_INVALID,
                                    "%s '%s': external data length '%s' is not a byte count",
                                    role, tname, kv->value ? kv->value : "");
                has_len = 1;
            }
        }
        if (!loc)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s '%s': data_location is EXTERNAL but no 'location' is given", role,
                            tname);
        if (dt == ULC_DT_STRING)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s '%s': string tensors cannot use external data", role, tname);
        if (has_len && len != need)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s '%s': external data length is %llu bytes, but %llu elements of "
                            "%s need %zu", role, tname, (unsigned long long)len,
                            (unsigned long long)t->numel, ulc_dtype_name(dt), need);
        ulc_mapping *em = NULL;
        ULC_TRY(external_mapping(im, tname, loc, &em));
        if (off > em->size)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s '%s': external data offset %llu is beyond the end of '%s' (%zu "
                            "bytes)", role, tname, (unsigned long long)off, loc, em->size);
        if (need > em->size - off)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s '%s': external data file '%s' has %zu bytes, but offset %llu + "
                            "length %zu needs %llu", role, tname, loc, em->size,
                            (unsigned long long)off, need, (unsigned long long)(off + need));
        ULC_TRY(ulc_tensor_set_borrowed(g, t, em, em->data ? em->data + off : NULL, need, ctx));
        t->form = ULC_FORM_EXTERNAL;
        t->ext_location = adup(im, loc);
        im->m->had_external_data = 1;
    } else if (has_raw) {
        const uint8_t *p = raw ? raw : tp->raw_data.data;
        size_t n = raw ? raw_len : tp->raw_data.len;
        if (dt == ULC_DT_STRING)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s '%s': string tensors cannot use raw_data", role, tname);
        if (n != need)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s '%s': raw_data has %zu bytes, but %llu elements of %s need %zu",
                            role, tname, n, (unsigned long long)t->numel, ulc_dtype_name(dt),
                            need);
        if (raw) {
            ULC_TRY(ulc_tensor_set_borrowed(g, t, im->map, p, n, ctx));
        } else {
            void *d = n ? malloc(n) : NULL;
            if (n && !d) return oom(im);
            if (n) memcpy(d, p, n);
            ULC_TRY(ulc_tensor_set_owned(g, t, d, n, ctx));
        }
        t->form = ULC_FORM_RAW;
    } else if (dt == ULC_DT_STRING) {
        if (tp->n_string_data != t->numel)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s '%s': %zu strings given, dims need %llu", role, tname,
                            tp->n_string_data, (unsigned long long)t->numel);
        t->form = ULC_FORM_NONE; /* string_data stays in extra */
    } else if (n_typed > 0) {
        int per = (dt == ULC_DT_C64 || dt == ULC_DT_C128) ? 2 : 1;
        size_t expect = ulc_dtype_bits(dt) == 4 ? need : (size_t)t->numel * (size_t)per;
        size_t have = typed_count(tp, dt);
        if (have != n_typed || have != expect)
            return ulc_fail(ctx, ULC_ERR_INVALID,
                            "%s '%s': %zu values in the typed data field(s), but %llu elements "
                            "of %s need %zu in its field", role, tname, n_typed,
                            (unsigned long long)t->numel, ulc_dtype_name(dt), expect);
        uint8_t *d = malloc(need ? need : 1);
        if (!d) return oom(im);
        decode_typed(tp, dt, d, have);
        ULC_TRY(ulc_tensor_set_owned(g, t, d, need, ctx));
        t->form = ULC_FORM_TYPED;
    } else {
        if (t->numel != 0)
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s '%s': no data for %llu elements", role,
                            tname, (unsigned long long)t->numel);
        t->form = ULC_FORM_NONE;
    }

    /* What stays: doc_string, segment, string_data, unknown fields. */
    Onnx__TensorProto rest = *tp;
    rest.n_dims = 0;
    rest.dims = NULL;
    rest.has_data_type = 0;
    rest.name = NULL;
    rest.has_raw_data = 0;
    rest.n_float_data = rest.n_int32_data = rest.n_int64_data = 0;
    rest.n_double_data = rest.n_uint64_data = 0;
    rest.n_external_data = 0;
    rest.has_data_location = 0;
    ULC_TRY(pack_extra(im, &rest.base, &t->extra));
    *out = t;
    return ULC_OK;
}

/* ---- value infos ---------------------------------------------------------------------------- */

static ulc_status apply_value_info(importer *im, ulc_value *v, const Onnx__ValueInfoProto *vi,
                                   const char *role) {
    ulc_graph *g = im->g;
    const Onnx__TypeProto *tp = vi->type;
    if (tp && tp->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && tp->tensor_type &&
        tp->base.n_unknown_fields == 0 && tp->tensor_type->base.n_unknown_fields == 0 &&
        (!tp->tensor_type->shape || tp->tensor_type->shape->base.n_unknown_fields == 0)) {
        const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
        v->type_blob.len = 0;
        v->type_denotation = adup(im, tp->denotation);
        if (tt->has_elem_type) {
            v->flags |= ULC_VALUE_HAS_TYPE;
            v->dtype = tt->elem_type;
        }
        if (tt->shape) {
            size_t r = tt->shape->n_dim;
            if (r > 64)
                return ulc_fail(im->ctx, ULC_ERR_INVALID,
                                "%s '%s': rank %zu is beyond the supported 64", role, v->name, r);
            ulc_dim dims[64];
            for (size_t i = 0; i < r; i++) {
                const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
                dims[i].value = -1;
                dims[i].param = NULL;
                dims[i].denotation = adup(im, d->denotation);
                if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
                    if (d->dim_value < 0)
                        return ulc_fail(im->ctx, ULC_ERR_INVALID,
                                        "%s '%s': dimension %zu is %lld, expected a size >= 0",
                                        role, v->name, i, (long long)d->dim_value);
                    dims[i].value = d->dim_value;
                } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM) {
                    dims[i].param = adup(im, d->dim_param ? d->dim_param : "");
                }
            }
            ULC_TRY(ulc_value_set_shape(g, v, (int)r, dims, im->ctx));
        }
    } else if (tp) {
        /* Sequence, map, optional, sparse tensor: opaque to the IR. */
        ULC_TRY(pack_extra(im, &tp->base, &v->type_blob));
    }
    Onnx__ValueInfoProto rest = *vi;
    rest.name = NULL;
    rest.type = NULL;
    return pack_extra(im, &rest.base, &v->extra);
}

static ulc_status add_value_infos(importer *im, Onnx__ValueInfoProto **vis, size_t n,
                                  uint32_t flag, ulc_ptrvec *list, const char *role) {
    for (size_t i = 0; i < n; i++) {
        const Onnx__ValueInfoProto *vi = vis[i];
        if (!vi->name || !*vi->name)
            return ulc_fail(im->ctx, ULC_ERR_INVALID, "graph %s #%zu has no name", role, i);
        ulc_value *v = ulc_graph_ensure_value(im->g, vi->name, im->ctx);
        if (!v) return im->ctx->status;
        if (v->flags & flag)
            return ulc_fail(im->ctx, ULC_ERR_INVALID, "'%s' is listed twice as a graph %s",
                            vi->name, role);
        v->flags |= flag;
        if (ulc_ptrvec_push(list, v) != 0) return oom(im);
        ULC_TRY(apply_value_info(im, v, vi, role));
    }
    return ULC_OK;
}

/* ---- nodes -------------------------------------------------------------------------------- */

static ulc_status convert_attr(importer *im, ulc_node *n, Onnx__AttributeProto *ap) {
    ulc_graph *g = im->g;
    char lb[160];
    if (!ap->name || !*ap->name)
        return ulc_fail(im->ctx, ULC_ERR_INVALID, "%s has an attribute without a name",
                        ulc_node_label(n, lb, sizeof lb));
    ulc_attr *a = ulc_node_add_attr(n, adup(im, ap->name));
    if (!a || !a->name) return oom(im);
    a->type = ap->has_type ? (int)ap->type : 0;
    a->has_type = ap->has_type;
    a->has_f = (unsigned char)ap->has_f;
    a->f = ap->f;
    a->has_i = (unsigned char)ap->has_i;
    a->i = ap->i;
    a->has_s = (unsigned char)ap->has_s;
    if (ap->has_s) {
        uint8_t *s = ulc_arena_alloc(g->arena, ap->s.len + 1);
        if (!s) return oom(im);
        if (ap->s.len) memcpy(s, ap->s.data, ap->s.len);
        a->s.data = s;
        a->s.len = ap->s.len;
    }
    char role[256];
    snprintf(role, sizeof role, "%s attribute '%s' tensor", ulc_node_label(n, lb, sizeof lb),
             ap->name);
    if (ap->t) ULC_TRY(convert_tensor(im, ap->t, NULL, 0, role, &a->t));
    /* At most one list is set in a valid attribute; n records its length. */
    if (ap->n_floats) {
        a->n = ap->n_floats;
        a->floats = ulc_arena_memdup(g->arena, ap->floats, ap->n_floats * sizeof(float));
        if (!a->floats) return oom(im);
    }
    if (ap->n_ints) {
        if (a->n)
            return ulc_fail(im->ctx, ULC_ERR_INVALID, "%s: attribute '%s' holds several lists",
                            lb, ap->name);
        a->n = ap->n_ints;
        a->ints = ulc_arena_memdup(g->arena, ap->ints, ap->n_ints * sizeof(int64_t));
        if (!a->ints) return oom(im);
    }
    if (ap->n_strings) {
        if (a->n)
            return ulc_fail(im->ctx, ULC_ERR_INVALID, "%s: attribute '%s' holds several lists",
                            lb, ap->name);
        a->n = ap->n_strings;
        a->strings = ulc_arena_calloc(g->arena, ap->n_strings, sizeof *a->strings);
        if (!a->strings) return oom(im);
        for (size_t i = 0; i < ap->n_strings; i++) {
            uint8_t *s = ulc_arena_alloc(g->arena, ap->strings[i].len + 1);
            if (!s) return oom(im);
            if (ap->strings[i].len) memcpy(s, ap->strings[i].data, ap->strings[i].len);
            a->strings[i].data = s;
            a->strings[i].len = ap->strings[i].len;
        }
    }
    if (ap->n_tensors) {
        if (a->n)
            return ulc_fail(im->ctx, ULC_ERR_INVALID, "%s: attribute '%s' holds several lists",
                            lb, ap->name);
        a->n = ap->n_tensors;
        a->tensors = ulc_arena_calloc(g->arena, ap->n_tensors, sizeof *a->tensors);
        if (!a->tensors) return oom(im);
        for (size_t i = 0; i < ap->n_tensors; i++)
            ULC_TRY(convert_tensor(im, ap->tensors[i], NULL, 0, role, &a->tensors[i]));
    }
    /* A list type names the list it holds: readers index a->ints, a->tensors, … by a->type
     * and a->n, so a TENSORS attribute holding strings (one list, the wrong one) is refused. */
    static const char *const held[] = {"floats", "ints", "strings", "tensors"};
    static const char *const types[] = {"FLOATS", "INTS", "STRINGS", "TENSORS"};
    int list = a->floats ? 0 : a->ints ? 1 : a->strings ? 2 : a->tensors ? 3 : -1;
    int want = a->type >= ULC_ATTR_FLOATS && a->type <= ULC_ATTR_TENSORS
                   ? a->type - ULC_ATTR_FLOATS : -1;
    if (want >= 0 && list >= 0 && list != want)
        return ulc_fail(im->ctx, ULC_ERR_INVALID, "%s: attribute '%s' has type %s but holds %s",
                        lb, ap->name, types[want], held[list]);
    Onnx__AttributeProto rest = *ap;
    rest.name = NULL;
    rest.has_type = rest.has_f = rest.has_i = rest.has_s = 0;
    rest.t = NULL;
    rest.n_floats = rest.n_ints = rest.n_strings = rest.n_tensors = 0;
    return pack_extra(im, &rest.base, &a->extra);
}

static ulc_status convert_node(importer *im, Onnx__NodeProto *np, size_t index) {
    ulc_graph *g = im->g;
    ulc_ctx *ctx = im->ctx;
    if (!np->op_type || !*np->op_type)
        return ulc_fail(ctx, ULC_ERR_INVALID, "node #%zu%s%s%s has no op_type", index,
                        np->name ? " '" : "", np->name ? np->name : "", np->name ? "'" : "");
    if (np->n_input > 1u << 20 || np->n_output > 1u << 20 || np->n_attribute > 1u << 20)
        return ulc_fail(ctx, ULC_ERR_INVALID, "node #%zu (%s) has an absurd number of inputs, "
                        "outputs or attributes", index, np->op_type);
    ulc_node *n = ulc_graph_add_node(g, np->domain, np->op_type, np->name, (int)np->n_input,
                                     (int)np->n_output, (int)np->n_attribute, ctx);
    if (!n) return ctx->status;
    n->doc_string = adup(im, np->doc_string);
    for (size_t i = 0; i < np->n_input; i++) {
        const char *nm = np->input[i];
        if (!nm || !*nm) continue; /* missing optional input */
        ulc_value *v = ulc_graph_ensure_value(g, nm, ctx);
        if (!v) return ctx->status;
        ulc_node_set_input(n, (int)i, v);
    }
    for (size_t i = 0; i < np->n_output; i++) {
        const char *nm = np->output[i];
        if (!nm || !*nm) continue;
        ulc_value *v = ulc_graph_ensure_value(g, nm, ctx);
        if (!v) return ctx->status;
        if (v->producer == n) {
            char lb[160];
            return ulc_fail(ctx, ULC_ERR_INVALID, "%s lists output '%s' twice",
                            ulc_node_label(n, lb, sizeof lb), nm);
        }
        ULC_TRY(ulc_node_set_output(n, (int)i, v, ctx));
    }
    for (size_t i = 0; i < np->n_attribute; i++) ULC_TRY(convert_attr(im, n, np->attribute[i]));
    Onnx__NodeProto rest = *np;
    rest.n_input = rest.n_output = rest.n_attribute = 0;
    rest.name = rest.op_type = rest.domain = rest.doc_string = NULL;
    return pack_extra(im, &rest.base, &n->extra);
}

/* ---- model and graph ------------------------------------------------------------------------ */

static ulc_status convert_model_fields(importer *im, Onnx__ModelProto *mp) {
    ulc_model *m = im->m;
    m->has_ir_version = mp->has_ir_version;
    m->ir_version = mp->ir_version;
    m->producer_name = adup(im, mp->producer_name);
    m->producer_version = adup(im, mp->producer_version);
    m->domain = adup(im, mp->domain);
    m->doc_string = adup(im, mp->doc_string);
    m->has_model_version = mp->has_model_version;
    m->model_version = mp->model_version;
    m->n_opsets = (int)mp->n_opset_import;
    if (m->n_opsets) {
        m->opsets = ulc_arena_calloc(im->g->arena, mp->n_opset_import, sizeof *m->opsets);
        if (!m->opsets) return oom(im);
        for (size_t i = 0; i < mp->n_opset_import; i++) {
            const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
            if (o->base.n_unknown_fields)
                return ulc_fail(im->ctx, ULC_ERR_UNSUPPORTED,
                                "opset_import #%zu carries fields this ulc does not know", i);
            m->opsets[i].has_domain = o->domain != NULL;
            m->opsets[i].domain = adup(im, o->domain ? o->domain : "");
            m->opsets[i].has_version = o->has_version;
            m->opsets[i].version = o->version;
        }
    }
    m->n_metadata = (int)mp->n_metadata_props;
    if (m->n_metadata) {
        m->metadata = ulc_arena_calloc(im->g->arena, mp->n_metadata_props, sizeof *m->metadata);
        if (!m->metadata) return oom(im);
        for (size_t i = 0; i < mp->n_metadata_props; i++) {
            m->metadata[i].key = adup(im, mp->metadata_props[i]->key);
            m->metadata[i].value = adup(im, mp->metadata_props[i]->value);
        }
    }
    Onnx__ModelProto rest = *mp;
    rest.has_ir_version = rest.has_model_version = 0;
    rest.producer_name = rest.producer_version = rest.domain = rest.doc_string = NULL;
    rest.graph = NULL;
    rest.n_opset_import = rest.n_metadata_props = 0;
    return pack_extra(im, &rest.base, &m->extra);
}

/* A graph ulc's own architecture builders made (its metadata says so) names the constants it
 * added "/scope/Constant_N"; checkpoint tensors never start with '/'. Flag those so weights-only
 * exports leave them out, as they would have right after the import from the checkpoint. */
static void mark_builder_constants(ulc_model *m) {
    int built = ulc_model_metadata(m, ULC_META_HF_CONFIG) || ulc_model_metadata(m, ULC_META_ARCH);
    for (size_t i = 0; built && i < m->graph->inits.len; i++) {
        ulc_value *v = m->graph->inits.items[i];
        if (v->name[0] == '/') v->flags |= ULC_VALUE_CONSTANT;
    }
}

typedef struct range {
    const uint8_t *p;
    size_t len;
} range;

/* A LEN field `number` goes to ranges (its payload, by reference), any other field to rest (its
 * bytes, copied). -1 when out of memory. */
static int sort_field(const ulc_pb_field *f, uint32_t number, ulc_ptrvec *ranges, buf *rest) {
    if (f->number == number && f->wire_type == ULC_PB_LEN) {
        range *r = malloc(sizeof *r);
        if (!r || ulc_ptrvec_push(ranges, r) != 0) {
            free(r);
            return -1;
        }
        r->p = f->payload;
        r->len = f->len;
        return 0;
    }
    return buf_append(rest, f->start, (size_t)(f->stop - f->start)) != 0 ? -1 : 0;
}

static ulc_status convert_initializer(importer *im, range r, size_t index, buf *scratch) {
    /* Split the TensorProto: raw_data stays in the mapping, the rest is decoded. */
    ulc_pb_reader rd = {r.p, r.p + r.len};
    ulc_pb_field f;
    int rc;
    const uint8_t *raw = NULL;
    size_t raw_len = 0;
    scratch->len = 0;
    while ((rc = ulc_pb_next(&rd, &f)) > 0) {
        if (f.number == TENSOR_RAW_DATA && f.wire_type == ULC_PB_LEN) {
            raw = f.payload;
            raw_len = f.len;
        } else if (buf_append(scratch, f.start, (size_t)(f.stop - f.start)) != 0) {
            return oom(im);
        }
    }
    if (rc < 0) return malformed(im, rd.p, "an initializer (TensorProto)");
    ulc_status cs = check_structure(im, scratch->p, scratch->len, MK_TENSOR, 2);
    if (cs != ULC_OK) {
        int nlen;
        const char *nm = pb_string_field(scratch->p, scratch->len, 8, 200, &nlen); /* its name */
        return ulc_fail(im->ctx, cs, "initializer '%.*s'", nlen, nm);
    }
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(NULL, scratch->len, scratch->p);
    if (!tp)
        return ulc_fail(im->ctx, ULC_ERR_PARSE,
                        "not a valid ONNX model: initializer #%zu does not decode as a "
                        "TensorProto", index);
    ulc_status s;
    ulc_tensor *t = NULL;
    if (!tp->name || !*tp->name) {
        s = ulc_fail(im->ctx, ULC_ERR_INVALID, "initializer #%zu has no name", index);
    } else {
        s = convert_tensor(im, tp, raw, raw_len, "initializer", &t);
    }
    if (s == ULC_OK) {
        ulc_value *v = ulc_graph_ensure_value(im->g, tp->name, im->ctx);
        if (!v) s = im->ctx->status;
        else s = ulc_value_set_init(im->g, v, t, im->ctx);
    }
    onnx__tensor_proto__free_unpacked(tp, NULL);
    return s;
}

static ulc_status convert_graph(importer *im, const range *gr, size_t n_gr) {
    ulc_ctx *ctx = im->ctx;
    ulc_graph *g = im->g;
    buf rest = {0}, scratch = {0};
    ulc_ptrvec inits = {0};
    ulc_status s = ULC_OK;
    for (size_t k = 0; k < n_gr && s == ULC_OK; k++) {
        ulc_pb_reader rd = {gr[k].p, gr[k].p + gr[k].len};
        ulc_pb_field f;
        int rc;
        while ((rc = ulc_pb_next(&rd, &f)) > 0) {
            if (sort_field(&f, GRAPH_INITIALIZER, &inits, &rest) != 0) {
                s = oom(im);
                break;
            }
        }
        if (s == ULC_OK && rc < 0) s = malformed(im, rd.p, "the graph (GraphProto)");
    }
    Onnx__GraphProto *gp = NULL;
    if (s == ULC_OK) s = check_structure(im, rest.p, rest.len, MK_GRAPH, 1);
    if (s == ULC_OK) {
        gp = onnx__graph_proto__unpack(NULL, rest.len, rest.p);
        if (!gp)
            s = ulc_fail(ctx, ULC_ERR_PARSE,
                         "not a valid ONNX model: the graph's nodes, inputs or outputs do not "
                         "decode (GraphProto)");
    }
    if (s == ULC_OK) {
        g->name = adup(im, gp->name);
        g->doc_string = adup(im, gp->doc_string);
        s = add_value_infos(im, gp->input, gp->n_input, ULC_VALUE_INPUT, &g->inputs, "input");
    }
    if (s == ULC_OK)
        s = add_value_infos(im, gp->output, gp->n_output, ULC_VALUE_OUTPUT, &g->outputs, "output");
    if (s == ULC_OK)
        s = add_value_infos(im, gp->value_info, gp->n_value_info, ULC_VALUE_VALUE_INFO,
                            &g->value_info, "value_info");
    for (size_t i = 0; i < inits.len && s == ULC_OK; i++)
        s = convert_initializer(im, *(range *)inits.items[i], i, &scratch);
    /* Sparse initializers stay opaque (in the graph's extra) but define their names. */
    for (size_t i = 0; s == ULC_OK && gp && i < gp->n_sparse_initializer; i++) {
        const Onnx__SparseTensorProto *sp = gp->sparse_initializer[i];
        if (!sp->values || !sp->values->name || !*sp->values->name) {
            s = ulc_fail(ctx, ULC_ERR_INVALID, "sparse_initializer #%zu has no values name", i);
            break;
        }
        ulc_value *v = ulc_graph_ensure_value(g, sp->values->name, ctx);
        if (!v) {
            s = ctx->status;
            break;
        }
        v->flags |= ULC_VALUE_OPAQUE_INIT;
        if (!(v->flags & ULC_VALUE_HAS_TYPE) && sp->values->has_data_type) {
            v->flags |= ULC_VALUE_HAS_TYPE;
            v->dtype = sp->values->data_type;
        }
    }
    for (size_t i = 0; s == ULC_OK && gp && i < gp->n_node; i++) s = convert_node(im, gp->node[i], i);
    if (s == ULC_OK) {
        Onnx__GraphProto grest = *gp;
        grest.n_node = grest.n_initializer = 0;
        grest.name = grest.doc_string = NULL;
        grest.n_input = grest.n_output = grest.n_value_info = 0;
        s = pack_extra(im, &grest.base, &g->extra);
    }
    if (gp) onnx__graph_proto__free_unpacked(gp, NULL);
    for (size_t i = 0; i < inits.len; i++) free(inits.items[i]);
    ulc_ptrvec_clear(&inits);
    free(rest.p);
    free(scratch.p);
    return s;
}

static ulc_status import_mapped(importer *im) {
    const ulc_mapping *map = im->map;
    ulc_ctx *ctx = im->ctx;
    if (map->size == 0)
        return ulc_fail(ctx, ULC_ERR_PARSE, "the file is empty (expected an ONNX ModelProto)");
    /* Top level: cut out the graph field(s); the rest is small and decoded whole. */
    ulc_pb_reader rd = {map->data, map->data + map->size};
    ulc_pb_field f;
    int rc;
    buf rest = {0};
    ulc_ptrvec graphs = {0};
    ulc_status s = ULC_OK;
    while ((rc = ulc_pb_next(&rd, &f)) > 0) {
        if (sort_field(&f, MODEL_GRAPH, &graphs, &rest) != 0) {
            s = oom(im);
            break;
        }
    }
    if (s == ULC_OK && rc < 0)
        s = ulc_fail(ctx, ULC_ERR_PARSE,
                     "not a valid ONNX model: malformed or truncated protobuf at byte offset %zu "
                     "of %zu", (size_t)(rd.p - map->data), map->size);
    Onnx__ModelProto *mp = NULL;
    if (s == ULC_OK) s = check_structure(im, rest.p, rest.len, MK_MODEL, 0);
    if (s == ULC_OK) {
        mp = onnx__model_proto__unpack(NULL, rest.len, rest.p);
        if (!mp)
            s = ulc_fail(ctx, ULC_ERR_PARSE,
                         "not a valid ONNX model: the ModelProto fields do not decode");
    }
    if (s == ULC_OK && graphs.len == 0)
        s = ulc_fail(ctx, ULC_ERR_PARSE, "not an ONNX model: there is no graph (ModelProto "
                     "field 7)");
    if (s == ULC_OK && !mp->has_ir_version)
        s = ulc_fail(ctx, ULC_ERR_PARSE, "not an ONNX model: ir_version is missing");
    if (s == ULC_OK) s = convert_model_fields(im, mp);
    if (s == ULC_OK) {
        range gr[16];
        size_t ng = graphs.len;
        if (ng > 16) {
            s = ulc_fail(ctx, ULC_ERR_PARSE, "not a valid ONNX model: %zu graph fields", ng);
        } else {
            for (size_t i = 0; i < ng; i++) gr[i] = *(range *)graphs.items[i];
            s = convert_graph(im, gr, ng);
        }
    }
    if (mp) onnx__model_proto__free_unpacked(mp, NULL);
    for (size_t i = 0; i < graphs.len; i++) free(graphs.items[i]);
    ulc_ptrvec_clear(&graphs);
    free(rest.p);
    return s;
}

ulc_status ulc_onnx_import(const char *path, ulc_model **out, ulc_ctx *ctx) {
    *out = NULL;
    importer im = {0};
    im.path = path;
    im.ctx = ctx;
    ulc_status s = ulc_mapping_open(path, "model", &im.map, ctx);
    if (s != ULC_OK) return s;
    im.dir = ulc_path_dirname(path);
    im.ext_maps = ulc_strmap_create();
    im.m = ulc_model_create();
    if (!im.dir || !im.ext_maps || !im.m) {
        s = ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    } else {
        im.g = im.m->graph;
        im.m->source_format = ULC_FORMAT_ONNX;
        im.m->source_path = ulc_arena_strdup(im.g->arena, path);
        s = import_mapped(&im);
        if (s == ULC_OK) s = ulc_graph_verify(im.g, ctx);
        if (s == ULC_OK) s = ulc_model_check(im.m, ctx);
        if (s == ULC_OK) mark_builder_constants(im.m);
    }
    if (s != ULC_OK) {
        ulc_fail(ctx, s, "%s", path);
        ulc_model_free(im.m);
    } else {
        *out = im.m;
    }
    for (size_t i = 0; i < im.ext_list.len; i++) ulc_mapping_unref(im.ext_list.items[i]);
    ulc_ptrvec_clear(&im.ext_list);
    ulc_strmap_free(im.ext_maps);
    ulc_mapping_unref(im.map); /* borrowed tensors hold their own references */
    free(im.dir);
    return s;
}
