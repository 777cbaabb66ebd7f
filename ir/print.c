/* print.c — the IR's text form, for --print-ir-after and debugging:
 *
 *   model ir_version=8 producer="pytorch" 2.0 opsets=[ai.onnx:17]
 *   graph "main_graph"
 *     input  %input: f32[N,3,224,224]
 *     init   %fc.weight: f32[1000,512] (2.0 MB, borrowed)
 *     %x1 = Conv(%input, %conv1.weight) {dilations=[1,1], group=1, kernel_shape=[7,7]} # node "Conv_0"
 *     output %logits: f32[N,1000]
 */
#include <inttypes.h>
#include <string.h>

#include "ir/graph.h"

static void print_str(FILE *o, const uint8_t *p, size_t n) {
    fputc('"', o);
    for (size_t i = 0; i < n; i++) {
        unsigned c = p[i];
        if (c == '"' || c == '\\') fprintf(o, "\\%c", c);
        else if (c < 32 || c >= 127) fprintf(o, "\\x%02x", c);
        else fputc((int)c, o);
    }
    fputc('"', o);
}

static void print_type(FILE *o, const ulc_value *v) {
    if (v->type_blob.len) {
        fputs("<non-tensor type>", o);
        return;
    }
    fputs((v->flags & ULC_VALUE_HAS_TYPE) ? ulc_dtype_name(v->dtype) : "?", o);
    if (v->rank < 0) return;
    fputc('[', o);
    for (int i = 0; i < v->rank; i++) {
        if (i) fputc(',', o);
        if (v->dims[i].value >= 0) fprintf(o, "%" PRId64, v->dims[i].value);
        else if (v->dims[i].param) fputs(v->dims[i].param, o);
        else fputc('?', o);
    }
    fputc(']', o);
}

static void print_tensor_brief(FILE *o, const ulc_tensor *t) {
    fprintf(o, "%s[", ulc_dtype_name(t->dtype));
    for (int i = 0; i < t->rank; i++) fprintf(o, "%s%" PRId64, i ? "," : "", t->dims[i]);
    fprintf(o, "]");
    if (t->dtype == ULC_DT_F32 && t->numel > 0 && t->numel <= 8 && t->data) {
        const uint8_t *p = t->data;
        fputs(" {", o);
        for (uint64_t i = 0; i < t->numel; i++) {
            float f;
            memcpy(&f, p + 4 * i, 4);
            fprintf(o, "%s%g", i ? ", " : "", (double)f);
        }
        fputc('}', o);
    } else if (t->dtype == ULC_DT_I64 && t->numel > 0 && t->numel <= 8 && t->data) {
        const uint8_t *p = t->data;
        fputs(" {", o);
        for (uint64_t i = 0; i < t->numel; i++) {
            int64_t x;
            memcpy(&x, p + 8 * i, 8);
            fprintf(o, "%s%" PRId64, i ? ", " : "", x);
        }
        fputc('}', o);
    }
}

static void print_attr(FILE *o, const ulc_attr *a) {
    fprintf(o, "%s=", a->name);
    switch (a->type) {
    case ULC_ATTR_FLOAT: fprintf(o, "%g", (double)a->f); break;
    case ULC_ATTR_INT: fprintf(o, "%" PRId64, a->i); break;
    case ULC_ATTR_STRING: print_str(o, a->s.data, a->s.len); break;
    case ULC_ATTR_TENSOR:
        if (a->t) print_tensor_brief(o, a->t);
        break;
    case ULC_ATTR_FLOATS:
    case ULC_ATTR_INTS:
    case ULC_ATTR_STRINGS:
        fputc('[', o);
        for (size_t i = 0; i < a->n; i++) {
            if (i) fputc(',', o);
            if (a->type == ULC_ATTR_FLOATS) fprintf(o, "%g", (double)a->floats[i]);
            else if (a->type == ULC_ATTR_INTS) fprintf(o, "%" PRId64, a->ints[i]);
            else print_str(o, a->strings[i].data, a->strings[i].len);
        }
        fputc(']', o);
        break;
    case ULC_ATTR_TENSORS: fprintf(o, "<%zu tensors>", a->n); break;
    case ULC_ATTR_GRAPH: fputs("<graph>", o); break;
    case ULC_ATTR_GRAPHS: fputs("<graphs>", o); break;
    default: fprintf(o, "<attribute type %d>", a->type); break;
    }
}

static void print_size(FILE *o, size_t n) {
    if (n >= (size_t)1 << 20) fprintf(o, "%.1f MiB", (double)n / (1 << 20));
    else if (n >= 1024) fprintf(o, "%.1f KiB", (double)n / 1024);
    else fprintf(o, "%zu B", n);
}

void ulc_model_print(const ulc_model *m, FILE *o) {
    const ulc_graph *g = m->graph;
    fprintf(o, "model");
    if (m->has_ir_version) fprintf(o, " ir_version=%" PRId64, m->ir_version);
    if (m->producer_name) fprintf(o, " producer=\"%s\"", m->producer_name);
    if (m->producer_version) fprintf(o, " %s", m->producer_version);
    fputs(" opsets=[", o);
    for (int i = 0; i < m->n_opsets; i++)
        fprintf(o, "%s%s:%" PRId64, i ? ", " : "",
                (m->opsets[i].domain && *m->opsets[i].domain) ? m->opsets[i].domain : "ai.onnx",
                m->opsets[i].version);
    fputs("]\n", o);
    fprintf(o, "graph \"%s\"\n", g->name ? g->name : "");
    for (size_t i = 0; i < g->inputs.len; i++) {
        const ulc_value *v = g->inputs.items[i];
        fprintf(o, "  input  %%%s: ", v->name);
        print_type(o, v);
        fputc('\n', o);
    }
    for (size_t i = 0; i < g->inits.len; i++) {
        const ulc_value *v = g->inits.items[i];
        const ulc_tensor *t = v->init;
        fprintf(o, "  init   %%%s: ", v->name);
        print_tensor_brief(o, t);
        fputs(" (", o);
        print_size(o, t->nbytes);
        fprintf(o, ", %s)\n", t->storage == ULC_STORAGE_BORROWED ? "borrowed"
                              : t->storage == ULC_STORAGE_OWNED  ? "owned"
                              : t->storage == ULC_STORAGE_DEVICE ? "device"
                                                                 : "no data");
    }
    for (const ulc_node *n = g->first; n; n = n->next) {
        fputs("  ", o);
        int named = 0;
        for (int i = 0; i < n->n_outputs; i++) {
            fprintf(o, "%s%s%s", i ? ", " : "", n->outputs[i] ? "%" : "_",
                    n->outputs[i] ? n->outputs[i]->name : "");
            named = 1;
        }
        if (named) fputs(" = ", o);
        if (!ulc_domain_is_default(n->domain)) fprintf(o, "%s.", n->domain);
        fprintf(o, "%s(", n->op_type);
        for (int i = 0; i < n->n_inputs; i++) {
            const ulc_value *v = n->inputs[i].value;
            fprintf(o, "%s%s%s", i ? ", " : "", v ? "%" : "_", v ? v->name : "");
        }
        fputc(')', o);
        if (n->n_attrs) {
            fputs(" {", o);
            for (int i = 0; i < n->n_attrs; i++) {
                if (i) fputs(", ", o);
                print_attr(o, &n->attrs[i]);
            }
            fputc('}', o);
        }
        if (n->name && *n->name) fprintf(o, "  # \"%s\"", n->name);
        fputc('\n', o);
    }
    for (size_t i = 0; i < g->outputs.len; i++) {
        const ulc_value *v = g->outputs.items[i];
        fprintf(o, "  output %%%s: ", v->name);
        print_type(o, v);
        fputc('\n', o);
    }
}
