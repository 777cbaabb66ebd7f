/*
 * onnx_export.c — IR -> ONNX, streamed. See onnx_export.h.
 *
 * Each IR object that came from ONNX carries the fields the IR does not model as packed bytes
 * (`extra`). Export decodes those bytes back into a protobuf-c struct, sets the modeled fields
 * from the IR, and packs. All protobuf-c memory comes from one scratch arena freed at the end.
 *
 * Layout written (field numbers as in onnx.proto):
 *   ModelProto  = [fields 1..6] [7: graph, length-prefixed, streamed] [fields 8.. + unknown]
 *   GraphProto  = [1: nodes, 2: name] [5: initializers, streamed] [10.. + unknown]
 *   initializer = [1..8: dims, type, segment, typed data, name] [9: raw_data, streamed]
 *                 [12..: doc, external_data, data_location + unknown]
 */
#include "export/onnx_export.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pbwire.h"
#ifdef ULC_ONNX_PB_HEADER
#include ULC_ONNX_PB_HEADER
#else
#include "onnx.pb-c.h"
#endif

#define EXT_ALIGN 4096u
#define PROTO_LIMIT ((uint64_t)INT32_MAX)

ulc_onnx_export_opts ulc_onnx_export_defaults(void) {
    ulc_onnx_export_opts o = {0};
    o.external_min_bytes = 1024;
    return o;
}

typedef struct exporter {
    const ulc_model *m;
    const ulc_graph *g;
    const ulc_onnx_export_opts *opts;
    ulc_ctx *ctx;
    ulc_arena *scratch;         /* every protobuf-c struct built or unpacked here */
    ProtobufCAllocator alloc;   /* backed by scratch */
    int external;               /* writing external data */
    char *data_path;            /* external data file (full path) */
    const char *data_location;  /* as written in the model: the file name */
    uint64_t *ext_offset;       /* per initializer index */
    unsigned char *is_ext;      /* per initializer index */
} exporter;

static void *arena_alloc_cb(void *data, size_t size) { return ulc_arena_alloc(data, size); }
static void arena_free_cb(void *data, void *p) {
    (void)data;
    (void)p;
}

static ulc_status oom(exporter *ex) { return ulc_fail(ex->ctx, ULC_ERR_NOMEM, "out of memory"); }

static void *salloc(exporter *ex, size_t n) { return ulc_arena_alloc(ex->scratch, n); }

/* Unpacks an object's extra bytes into a struct of the given descriptor (or a fresh one). */
static ProtobufCMessage *from_extra(exporter *ex, const ProtobufCMessageDescriptor *d,
                                    const ulc_bytes *extra) {
    if (extra->len) return protobuf_c_message_unpack(d, &ex->alloc, extra->len, extra->data);
    ProtobufCMessage *msg = salloc(ex, d->sizeof_message);
    if (msg) protobuf_c_message_init(d, msg);
    return msg;
}

static char *cs(const char *s) { return (char *)(uintptr_t)s; } /* protobuf-c wants char* */

/* ---- tensors ------------------------------------------------------------------------------ */

/* Encodes a tensor's data into the typed field its dtype uses (inverse of the importer). */
/* A tensor's bytes in memory: its data, or (LAZY) produced into scratch memory. */
static const uint8_t *tensor_bytes(exporter *ex, const ulc_tensor *t) {
    if (t->storage != ULC_STORAGE_LAZY) return t->data;
    uint8_t *p = salloc(ex, t->nbytes + 1);
    if (!p) return NULL;
    return t->source->read(t->source->state, 0, t->nbytes, p, ex->ctx) == ULC_OK ? p : NULL;
}

static ulc_status encode_typed(exporter *ex, Onnx__TensorProto *tp, const ulc_tensor *t) {
    const uint8_t *src = tensor_bytes(ex, t);
    if (!src && t->nbytes) return ex->ctx->status ? ex->ctx->status : oom(ex);
    int dt = t->dtype;
    switch (ulc_dtype_onnx_field(dt)) {
    case ULC_ONNX_FIELD_FLOAT:
        tp->n_float_data = t->nbytes / 4;
        tp->float_data = salloc(ex, t->nbytes);
        if (!tp->float_data) return oom(ex);
        memcpy(tp->float_data, src, t->nbytes);
        break;
    case ULC_ONNX_FIELD_DOUBLE:
        tp->n_double_data = t->nbytes / 8;
        tp->double_data = salloc(ex, t->nbytes);
        if (!tp->double_data) return oom(ex);
        memcpy(tp->double_data, src, t->nbytes);
        break;
    case ULC_ONNX_FIELD_INT64:
        tp->n_int64_data = t->nbytes / 8;
        tp->int64_data = salloc(ex, t->nbytes);
        if (!tp->int64_data) return oom(ex);
        memcpy(tp->int64_data, src, t->nbytes);
        break;
    case ULC_ONNX_FIELD_UINT64: {
        size_t n = dt == ULC_DT_U64 ? t->nbytes / 8 : t->nbytes / 4;
        tp->n_uint64_data = n;
        tp->uint64_data = salloc(ex, n * 8);
        if (!tp->uint64_data) return oom(ex);
        for (size_t i = 0; i < n; i++) {
            if (dt == ULC_DT_U64) {
                memcpy(&tp->uint64_data[i], src + 8 * i, 8);
            } else {
                uint32_t x;
                memcpy(&x, src + 4 * i, 4);
                tp->uint64_data[i] = x;
            }
        }
        break;
    }
    case ULC_ONNX_FIELD_INT32: {
        unsigned bits = ulc_dtype_bits(dt);
        size_t bytes = bits == 4 ? 1 : bits / 8;
        size_t n = t->nbytes / bytes;
        tp->n_int32_data = n;
        tp->int32_data = salloc(ex, n * 4);
        if (!tp->int32_data) return oom(ex);
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            if (bytes == 4) {
                memcpy(&v, src + 4 * i, 4);
            } else if (bytes == 2) {
                uint16_t h;
                memcpy(&h, src + 2 * i, 2);
                v = dt == ULC_DT_I16 ? (int32_t)(int16_t)h : (int32_t)h;
            } else {
                v = (dt == ULC_DT_I8 || dt == ULC_DT_I4) ? (int32_t)(int8_t)src[i]
                                                         : (int32_t)src[i];
            }
            tp->int32_data[i] = v;
        }
        break;
    }
    default: break;
    }
    return ULC_OK;
}

/* TensorProto for t with everything but raw_data (and, when streamed, external fields).
 * inline_raw: put raw_data into the struct (small attribute tensors). */
static ulc_status tensor_proto(exporter *ex, const ulc_tensor *t, int inline_raw,
                               Onnx__TensorProto **out) {
    Onnx__TensorProto *tp =
        (Onnx__TensorProto *)from_extra(ex, &onnx__tensor_proto__descriptor, &t->extra);
    if (!tp)
        return ulc_fail(ex->ctx, ULC_ERR_INTERNAL, "tensor '%s': stored fields do not decode",
                        t->name ? t->name : "");
    tp->n_dims = (size_t)t->rank;
    tp->dims = t->dims;
    tp->has_data_type = 1;
    tp->data_type = t->dtype;
    tp->name = cs(t->name);
    if (t->form == ULC_FORM_TYPED) {
        ULC_TRY(encode_typed(ex, tp, t));
    } else if (inline_raw && t->form != ULC_FORM_NONE) {
        tp->has_raw_data = 1;
        tp->raw_data.data = (uint8_t *)(uintptr_t)tensor_bytes(ex, t);
        if (!tp->raw_data.data && t->nbytes) return ex->ctx->status ? ex->ctx->status : oom(ex);
        tp->raw_data.len = t->nbytes;
    }
    *out = tp;
    return ULC_OK;
}

/* ---- attributes, nodes, value infos --------------------------------------------------------- */

static ulc_status attr_proto(exporter *ex, const ulc_attr *a, Onnx__AttributeProto **out) {
    Onnx__AttributeProto *ap =
        (Onnx__AttributeProto *)from_extra(ex, &onnx__attribute_proto__descriptor, &a->extra);
    if (!ap) return ulc_fail(ex->ctx, ULC_ERR_INTERNAL, "attribute '%s' does not decode", a->name);
    ap->name = cs(a->name);
    ap->has_type = a->has_type;
    ap->type = (Onnx__AttributeProto__AttributeType)a->type;
    ap->has_f = a->has_f;
    ap->f = a->f;
    ap->has_i = a->has_i;
    ap->i = a->i;
    ap->has_s = a->has_s;
    ap->s.data = (uint8_t *)(uintptr_t)a->s.data;
    ap->s.len = a->s.len;
    if (a->t) ULC_TRY(tensor_proto(ex, a->t, 1, &ap->t));
    if (a->floats) {
        ap->n_floats = a->n;
        ap->floats = a->floats;
    } else if (a->ints) {
        ap->n_ints = a->n;
        ap->ints = a->ints;
    } else if (a->strings) {
        ap->n_strings = a->n;
        ap->strings = salloc(ex, a->n * sizeof *ap->strings);
        if (!ap->strings) return oom(ex);
        for (size_t i = 0; i < a->n; i++) {
            ap->strings[i].data = (uint8_t *)(uintptr_t)a->strings[i].data;
            ap->strings[i].len = a->strings[i].len;
        }
    } else if (a->tensors) {
        ap->n_tensors = a->n;
        ap->tensors = salloc(ex, a->n * sizeof *ap->tensors);
        if (!ap->tensors) return oom(ex);
        for (size_t i = 0; i < a->n; i++) ULC_TRY(tensor_proto(ex, a->tensors[i], 1, &ap->tensors[i]));
    }
    *out = ap;
    return ULC_OK;
}

static ulc_status node_proto(exporter *ex, const ulc_node *n, Onnx__NodeProto **out) {
    Onnx__NodeProto *np = (Onnx__NodeProto *)from_extra(ex, &onnx__node_proto__descriptor, &n->extra);
    if (!np) return oom(ex);
    np->name = cs(n->name);
    np->op_type = cs(n->op_type);
    np->domain = cs(n->domain);
    np->doc_string = cs(n->doc_string);
    np->n_input = (size_t)n->n_inputs;
    np->input = salloc(ex, (size_t)n->n_inputs * sizeof(char *) + 1);
    np->n_output = (size_t)n->n_outputs;
    np->output = salloc(ex, (size_t)n->n_outputs * sizeof(char *) + 1);
    np->n_attribute = (size_t)n->n_attrs;
    np->attribute = salloc(ex, (size_t)n->n_attrs * sizeof(*np->attribute) + 1);
    if (!np->input || !np->output || !np->attribute) return oom(ex);
    for (int i = 0; i < n->n_inputs; i++)
        np->input[i] = cs(n->inputs[i].value ? n->inputs[i].value->name : "");
    for (int i = 0; i < n->n_outputs; i++)
        np->output[i] = cs(n->outputs[i] ? n->outputs[i]->name : "");
    for (int i = 0; i < n->n_attrs; i++) ULC_TRY(attr_proto(ex, &n->attrs[i], &np->attribute[i]));
    *out = np;
    return ULC_OK;
}

static ulc_status value_info_proto(exporter *ex, const ulc_value *v, Onnx__ValueInfoProto **out) {
    Onnx__ValueInfoProto *vi =
        (Onnx__ValueInfoProto *)from_extra(ex, &onnx__value_info_proto__descriptor, &v->extra);
    if (!vi) return oom(ex);
    vi->name = cs(v->name);
    if (v->type_blob.len) {
        vi->type = (Onnx__TypeProto *)from_extra(ex, &onnx__type_proto__descriptor, &v->type_blob);
        if (!vi->type) return oom(ex);
    } else if ((v->flags & ULC_VALUE_HAS_TYPE) || v->rank >= 0 || v->type_denotation) {
        Onnx__TypeProto *tp = salloc(ex, sizeof *tp);
        Onnx__TypeProto__Tensor *tt = salloc(ex, sizeof *tt);
        if (!tp || !tt) return oom(ex);
        onnx__type_proto__init(tp);
        onnx__type_proto__tensor__init(tt);
        tp->denotation = cs(v->type_denotation);
        tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
        tp->tensor_type = tt;
        tt->has_elem_type = (v->flags & ULC_VALUE_HAS_TYPE) != 0;
        tt->elem_type = v->dtype;
        if (v->rank >= 0) {
            Onnx__TensorShapeProto *sh = salloc(ex, sizeof *sh);
            if (!sh) return oom(ex);
            onnx__tensor_shape_proto__init(sh);
            sh->n_dim = (size_t)v->rank;
            sh->dim = salloc(ex, (size_t)v->rank * sizeof *sh->dim + 1);
            if (!sh->dim) return oom(ex);
            for (int i = 0; i < v->rank; i++) {
                Onnx__TensorShapeProto__Dimension *d = salloc(ex, sizeof *d);
                if (!d) return oom(ex);
                onnx__tensor_shape_proto__dimension__init(d);
                d->denotation = cs(v->dims[i].denotation);
                if (v->dims[i].value >= 0) {
                    d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                    d->dim_value = v->dims[i].value;
                } else if (v->dims[i].param) {
                    d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                    d->dim_param = cs(v->dims[i].param);
                }
                sh->dim[i] = d;
            }
            tt->shape = sh;
        }
        vi->type = tp;
    }
    *out = vi;
    return ULC_OK;
}

static ulc_status value_infos(exporter *ex, const ulc_ptrvec *list, size_t *n,
                              Onnx__ValueInfoProto ***out) {
    *n = list->len;
    *out = salloc(ex, list->len * sizeof **out + 1);
    if (!*out) return oom(ex);
    for (size_t i = 0; i < list->len; i++) ULC_TRY(value_info_proto(ex, list->items[i], &(*out)[i]));
    return ULC_OK;
}

/* ---- streaming ------------------------------------------------------------------------------ */

static ulc_status put_len_header(ulc_outfile *o, uint32_t number, uint64_t len, ulc_ctx *ctx) {
    uint8_t hdr[20];
    size_t k = ulc_pb_put_tag(hdr, number, ULC_PB_LEN);
    k += ulc_pb_put_varint(hdr + k, len);
    return ulc_outfile_write(o, hdr, k, ctx);
}

/* Packs msg into scratch memory. */
static ulc_status pack(exporter *ex, const ProtobufCMessage *msg, uint8_t **p, size_t *n) {
    *n = protobuf_c_message_get_packed_size(msg);
    *p = salloc(ex, *n + 1);
    if (!*p) return oom(ex);
    protobuf_c_message_pack(msg, *p);
    return ULC_OK;
}

static ulc_status out_sink(void *o, const void *p, size_t n, ulc_ctx *ctx) {
    return ulc_outfile_write(o, p, n, ctx);
}

static ulc_status write_tensor_bytes(exporter *ex, ulc_outfile *o, const ulc_tensor *t) {
    if (t->nbytes == 0) return ULC_OK;
    if (t->storage == ULC_STORAGE_BORROWED && t->map && t->map->fd >= 0)
        return ulc_outfile_copy_from(o, t->map->fd, ulc_tensor_file_offset(t), t->nbytes, ex->ctx);
    return ulc_tensor_stream(t, out_sink, o, ex->ctx); /* in memory, or produced as it goes */
}

/* One initializer, split around raw_data: head = fields 1..8, tail = 12.. + unknown. */
typedef struct init_parts {
    uint8_t *head, *tail;
    size_t head_len, tail_len;
    int raw;          /* raw_data streamed between head and tail */
    uint64_t total;   /* TensorProto payload size */
} init_parts;

static ulc_status init_split(exporter *ex, size_t idx, const ulc_tensor *t, init_parts *ip) {
    Onnx__TensorProto *tp;
    ULC_TRY(tensor_proto(ex, t, 0, &tp));
    memset(ip, 0, sizeof *ip);
    if (ex->is_ext[idx]) {
        char off[32], len[32];
        snprintf(off, sizeof off, "%" PRIu64, ex->ext_offset[idx]);
        snprintf(len, sizeof len, "%zu", t->nbytes);
        Onnx__StringStringEntryProto **kv = salloc(ex, 3 * sizeof *kv);
        if (!kv) return oom(ex);
        const char *keys[3] = {"location", "offset", "length"};
        const char *vals[3] = {ex->data_location, off, len};
        for (int i = 0; i < 3; i++) {
            kv[i] = salloc(ex, sizeof **kv);
            if (!kv[i]) return oom(ex);
            onnx__string_string_entry_proto__init(kv[i]);
            kv[i]->key = cs(keys[i]);
            kv[i]->value = ulc_arena_strdup(ex->scratch, vals[i]);
        }
        tp->n_external_data = 3;
        tp->external_data = kv;
        tp->has_data_location = 1;
        tp->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    } else if (t->form != ULC_FORM_TYPED && t->form != ULC_FORM_NONE) {
        ip->raw = 1;
    }
    /* head: fields 1..8 (unknown fields go to the tail) */
    Onnx__TensorProto head = *tp;
    head.doc_string = NULL;
    head.n_external_data = 0;
    head.has_data_location = 0;
    head.base.n_unknown_fields = 0;
    Onnx__TensorProto tail;
    onnx__tensor_proto__init(&tail);
    tail.doc_string = tp->doc_string;
    tail.n_external_data = tp->n_external_data;
    tail.external_data = tp->external_data;
    tail.has_data_location = tp->has_data_location;
    tail.data_location = tp->data_location;
    tail.base.n_unknown_fields = tp->base.n_unknown_fields;
    tail.base.unknown_fields = tp->base.unknown_fields;
    ULC_TRY(pack(ex, &head.base, &ip->head, &ip->head_len));
    ULC_TRY(pack(ex, &tail.base, &ip->tail, &ip->tail_len));
    ip->total = ip->head_len + ip->tail_len + (ip->raw ? ulc_pb_len_field_size(9, t->nbytes) : 0);
    return ULC_OK;
}

static ulc_status write_initializer(exporter *ex, ulc_outfile *o, const ulc_tensor *t,
                                    const init_parts *ip) {
    ULC_TRY(put_len_header(o, 5, ip->total, ex->ctx));
    ULC_TRY(ulc_outfile_write(o, ip->head, ip->head_len, ex->ctx));
    if (ip->raw) {
        ULC_TRY(put_len_header(o, 9, t->nbytes, ex->ctx));
        ULC_TRY(write_tensor_bytes(ex, o, t));
    }
    return ulc_outfile_write(o, ip->tail, ip->tail_len, ex->ctx);
}

/* ---- external data ---------------------------------------------------------------------------- */

static ulc_status plan_external(exporter *ex, const char *path) {
    const ulc_graph *g = ex->g;
    size_t n = g->inits.len;
    ex->ext_offset = salloc(ex, n * sizeof *ex->ext_offset + 1);
    ex->is_ext = salloc(ex, n + 1);
    if (!ex->ext_offset || !ex->is_ext) return oom(ex);
    uint64_t weights = 0;
    for (size_t i = 0; i < n; i++) weights += ((const ulc_value *)g->inits.items[i])->init->nbytes;
    /* Leave room for the graph itself under protobuf's 2 GiB message limit. */
    uint64_t limit = ex->opts->inline_limit ? ex->opts->inline_limit : PROTO_LIMIT - ((uint64_t)64 << 20);
    int too_big = weights > limit;
    ex->external = ex->opts->external_data || ex->m->had_external_data || too_big;
    if (!ex->external) return ULC_OK;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(path) + 8;
    ex->data_path = malloc(len);
    char *loc = salloc(ex, strlen(base) + 8);
    if (!ex->data_path || !loc) return oom(ex);
    snprintf(ex->data_path, len, "%s.data", path);
    snprintf(loc, strlen(base) + 8, "%s.data", base);
    ex->data_location = loc;
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const ulc_tensor *t = ((const ulc_value *)g->inits.items[i])->init;
        if (t->dtype == ULC_DT_STRING || t->form == ULC_FORM_NONE) continue;
        if (t->form != ULC_FORM_EXTERNAL && t->nbytes < ex->opts->external_min_bytes) continue;
        off = (off + EXT_ALIGN - 1) / EXT_ALIGN * EXT_ALIGN;
        ex->is_ext[i] = 1;
        ex->ext_offset[i] = off;
        off += t->nbytes;
    }
    return ULC_OK;
}

static ulc_status write_external(exporter *ex, ulc_outfile **out) {
    ulc_outfile *o;
    ULC_TRY(ulc_outfile_open(ex->data_path, &o, ex->ctx));
    const ulc_graph *g = ex->g;
    for (size_t i = 0; i < g->inits.len; i++) {
        if (!ex->is_ext[i]) continue;
        const ulc_tensor *t = ((const ulc_value *)g->inits.items[i])->init;
        ulc_status s = ulc_outfile_pad_to(o, EXT_ALIGN, ex->ctx);
        if (s == ULC_OK && ulc_outfile_tell(o) != ex->ext_offset[i])
            s = ulc_fail(ex->ctx, ULC_ERR_INTERNAL, "external data offset drifted");
        if (s == ULC_OK) s = write_tensor_bytes(ex, o, t);
        if (s != ULC_OK) {
            ulc_outfile_abort(o);
            return s;
        }
    }
    *out = o;
    return ULC_OK;
}

/* ---- model ------------------------------------------------------------------------------------ */

static ulc_status write_model(exporter *ex, ulc_outfile *o) {
    const ulc_model *m = ex->m;
    const ulc_graph *g = ex->g;
    ulc_ctx *ctx = ex->ctx;

    /* Model fields around the graph. */
    Onnx__ModelProto *mp =
        (Onnx__ModelProto *)from_extra(ex, &onnx__model_proto__descriptor, &m->extra);
    if (!mp) return ulc_fail(ctx, ULC_ERR_INTERNAL, "model fields do not decode");
    Onnx__ModelProto mhead;
    onnx__model_proto__init(&mhead);
    mhead.has_ir_version = m->has_ir_version;
    mhead.ir_version = m->ir_version;
    mhead.producer_name = cs(m->producer_name);
    mhead.producer_version = cs(m->producer_version);
    mhead.domain = cs(m->domain);
    mhead.has_model_version = m->has_model_version;
    mhead.model_version = m->model_version;
    mhead.doc_string = cs(m->doc_string);
    Onnx__ModelProto mtail = *mp; /* training_info, functions, unknown */
    mtail.n_opset_import = (size_t)m->n_opsets;
    mtail.opset_import = salloc(ex, (size_t)m->n_opsets * sizeof *mtail.opset_import + 1);
    mtail.n_metadata_props = (size_t)m->n_metadata;
    mtail.metadata_props = salloc(ex, (size_t)m->n_metadata * sizeof *mtail.metadata_props + 1);
    if (!mtail.opset_import || !mtail.metadata_props) return oom(ex);
    for (int i = 0; i < m->n_opsets; i++) {
        Onnx__OperatorSetIdProto *op = salloc(ex, sizeof *op);
        if (!op) return oom(ex);
        onnx__operator_set_id_proto__init(op);
        op->domain = m->opsets[i].has_domain ? cs(m->opsets[i].domain) : NULL;
        op->has_version = m->opsets[i].has_version;
        op->version = m->opsets[i].version;
        mtail.opset_import[i] = op;
    }
    for (int i = 0; i < m->n_metadata; i++) {
        Onnx__StringStringEntryProto *kv = salloc(ex, sizeof *kv);
        if (!kv) return oom(ex);
        onnx__string_string_entry_proto__init(kv);
        kv->key = cs(m->metadata[i].key);
        kv->value = cs(m->metadata[i].value);
        mtail.metadata_props[i] = kv;
    }

    /* Graph: nodes + name before the initializers; everything else after. */
    Onnx__GraphProto *gp = (Onnx__GraphProto *)from_extra(ex, &onnx__graph_proto__descriptor, &g->extra);
    if (!gp) return ulc_fail(ctx, ULC_ERR_INTERNAL, "graph fields do not decode");
    Onnx__GraphProto ghead;
    onnx__graph_proto__init(&ghead);
    ghead.name = cs(g->name);
    ghead.n_node = (size_t)g->n_nodes;
    ghead.node = salloc(ex, (size_t)g->n_nodes * sizeof *ghead.node + 1);
    if (!ghead.node) return oom(ex);
    size_t k = 0;
    for (const ulc_node *n = g->first; n; n = n->next) ULC_TRY(node_proto(ex, n, &ghead.node[k++]));
    Onnx__GraphProto gtail = *gp; /* sparse_initializer, quantization_annotation, unknown */
    gtail.doc_string = cs(g->doc_string);
    ULC_TRY(value_infos(ex, &g->inputs, &gtail.n_input, &gtail.input));
    ULC_TRY(value_infos(ex, &g->outputs, &gtail.n_output, &gtail.output));
    ULC_TRY(value_infos(ex, &g->value_info, &gtail.n_value_info, &gtail.value_info));

    uint8_t *mh, *mt, *gh, *gt;
    size_t mh_len, mt_len, gh_len, gt_len;
    ULC_TRY(pack(ex, &mhead.base, &mh, &mh_len));
    ULC_TRY(pack(ex, &mtail.base, &mt, &mt_len));
    ULC_TRY(pack(ex, &ghead.base, &gh, &gh_len));
    ULC_TRY(pack(ex, &gtail.base, &gt, &gt_len));

    size_t ni = g->inits.len;
    init_parts *parts = salloc(ex, ni * sizeof *parts + 1);
    if (!parts) return oom(ex);
    uint64_t graph_len = gh_len + gt_len;
    for (size_t i = 0; i < ni; i++) {
        const ulc_tensor *t = ((const ulc_value *)g->inits.items[i])->init;
        ULC_TRY(init_split(ex, i, t, &parts[i]));
        graph_len += ulc_pb_len_field_size(5, parts[i].total);
    }
    uint64_t total = mh_len + mt_len + ulc_pb_len_field_size(7, graph_len);
    if (total > PROTO_LIMIT)
        return ulc_fail(ctx, ULC_ERR_UNSUPPORTED,
                        "the model would be %" PRIu64 " bytes, beyond protobuf's 2 GiB limit; "
                        "use --external-data", total);

    ULC_TRY(ulc_outfile_write(o, mh, mh_len, ctx));
    ULC_TRY(put_len_header(o, 7, graph_len, ctx));
    ULC_TRY(ulc_outfile_write(o, gh, gh_len, ctx));
    for (size_t i = 0; i < ni; i++)
        ULC_TRY(write_initializer(ex, o, ((const ulc_value *)g->inits.items[i])->init, &parts[i]));
    ULC_TRY(ulc_outfile_write(o, gt, gt_len, ctx));
    ULC_TRY(ulc_outfile_write(o, mt, mt_len, ctx));
    if (ulc_outfile_tell(o) != total)
        return ulc_fail(ctx, ULC_ERR_INTERNAL, "wrote %" PRIu64 " bytes, planned %" PRIu64,
                        ulc_outfile_tell(o), total);
    return ULC_OK;
}

static ulc_status check_targets(exporter *ex, const char *path) {
    if (ex->opts->allow_overwrite_input) return ULC_OK;
    const char *src = ulc_model_reads_file(ex->m, path);
    if (src)
        return ulc_fail(ex->ctx, ULC_ERR_INVALID_ARG,
                        "%s: refusing to overwrite the input model (use --in-place)", path);
    src = ex->data_path ? ulc_model_reads_file(ex->m, ex->data_path) : NULL;
    if (src)
        return ulc_fail(ex->ctx, ULC_ERR_INVALID_ARG,
                        "%s: refusing to overwrite '%s', which the input model reads its "
                        "weights from (use --in-place)", path, src);
    return ULC_OK;
}

ulc_status ulc_onnx_export(const ulc_model *m, const char *path, const ulc_onnx_export_opts *opts,
                           ulc_ctx *ctx) {
    ulc_onnx_export_opts defaults = ulc_onnx_export_defaults();
    exporter ex = {0};
    ex.m = m;
    ex.g = m->graph;
    ex.opts = opts ? opts : &defaults;
    ex.ctx = ctx;
    ex.scratch = ulc_arena_create((size_t)1 << 20);
    if (!ex.scratch) return ulc_fail(ctx, ULC_ERR_NOMEM, "out of memory");
    ex.alloc.alloc = arena_alloc_cb;
    ex.alloc.free = arena_free_cb;
    ex.alloc.allocator_data = ex.scratch;

    ulc_outfile *data = NULL, *model = NULL;
    ulc_status s = plan_external(&ex, path);
    if (s == ULC_OK) s = check_targets(&ex, path);
    if (s == ULC_OK) s = ulc_outfile_open(path, &model, ctx);
    if (s == ULC_OK) s = write_model(&ex, model);
    if (s == ULC_OK && ex.external) s = write_external(&ex, &data);
    /* Data first: the model must never point at a data file that is not there yet. */
    if (s == ULC_OK && data) {
        s = ulc_outfile_commit(data, ctx);
        data = NULL;
    }
    if (s == ULC_OK) {
        s = ulc_outfile_commit(model, ctx);
        model = NULL;
    }
    ulc_outfile_abort(data);
    ulc_outfile_abort(model);
    free(ex.data_path);
    ulc_arena_free(ex.scratch);
    return s;
}
