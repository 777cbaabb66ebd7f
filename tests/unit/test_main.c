/*
 * test_main.c — unit tests for common/, ir/ and the ONNX import/export round trip built from
 * C. Each test is a function registered in k_tests; CHECK records a failure and continues.
 * Ends with the line "N passed, M failed".
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/file.h"
#include "common/pbwire.h"
#include "common/sha256.h"
#include "common/ptrvec.h"
#include "common/status.h"
#include "common/strmap.h"
#include "export/onnx_export.h"
#include "import/onnx_import.h"
#include "ir/digest.h"
#include "ir/graph.h"

#include "tests/unit/check.h"

static char g_tmpdir[256];

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", g_tmpdir, name);
}

/* ---- common ------------------------------------------------------------------------------- */

static void test_status_chain(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    CHECK(ulc_fail(&ctx, ULC_ERR_PARSE, "inner %d", 7) == ULC_ERR_PARSE);
    CHECK(ulc_fail(&ctx, ULC_ERR_IO, "outer") == ULC_ERR_PARSE); /* innermost status wins */
    CHECK(strcmp(ulc_ctx_message(&ctx), "outer: inner 7") == 0);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(ulc_fail(&ctx, ULC_ERR_IO, "%s", big) == ULC_ERR_PARSE);
    CHECK(strlen(ulc_ctx_message(&ctx)) < ULC_CTX_MSG_MAX);
    ulc_ctx_clear(&ctx);
    CHECK(ctx.status == ULC_OK);
    CHECK(strcmp(ulc_status_str(ULC_ERR_IO), "I/O error") == 0);
}

static void test_arena(void) {
    ulc_arena *a = ulc_arena_create(256);
    CHECK(a != NULL);
    for (int i = 1; i < 200; i++) {
        unsigned char *p = ulc_arena_alloc(a, (size_t)i * 3);
        CHECK(p != NULL);
        CHECK(((uintptr_t)p & 15u) == 0);
        int zero = 1;
        for (int k = 0; k < i * 3; k++) zero &= p[k] == 0;
        CHECK(zero);
        memset(p, 0xab, (size_t)i * 3);
    }
    void *big = ulc_arena_alloc(a, 1 << 20);
    CHECK(big != NULL);
    CHECK(ulc_arena_calloc(a, SIZE_MAX / 2, 4) == NULL); /* overflow is refused */
    CHECK(strcmp(ulc_arena_strdup(a, "conv1.weight"), "conv1.weight") == 0);
    CHECK(ulc_arena_strdup(a, NULL) == NULL);
    CHECK(strcmp(ulc_arena_strndup(a, "abcdef", 3), "abc") == 0);
    ulc_arena_free(a);
    ulc_arena_free(NULL);
}

static void test_strmap(void) {
    ulc_strmap *m = ulc_strmap_create();
    static char keys[5000][16];
    for (int i = 0; i < 5000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        CHECK(ulc_strmap_put(m, keys[i], (void *)(intptr_t)(i + 1)) == 0);
    }
    CHECK(ulc_strmap_size(m) == 5000);
    for (int i = 0; i < 5000; i += 7) CHECK(ulc_strmap_get(m, keys[i]) == (void *)(intptr_t)(i + 1));
    CHECK(ulc_strmap_get(m, "missing") == NULL);
    for (int i = 0; i < 5000; i += 2) CHECK(ulc_strmap_remove(m, keys[i]) == 1);
    CHECK(ulc_strmap_remove(m, keys[0]) == 0);
    CHECK(ulc_strmap_size(m) == 2500);
    CHECK(ulc_strmap_get(m, keys[2]) == NULL);
    CHECK(ulc_strmap_get(m, keys[3]) == (void *)(intptr_t)4);
    CHECK(ulc_strmap_put(m, keys[3], NULL) == 0 && ulc_strmap_get(m, keys[3]) == NULL);
    ulc_strmap_free(m);
}

static void test_ptrvec(void) {
    ulc_ptrvec v = {0};
    int a, b;
    for (int i = 0; i < 100; i++) CHECK(ulc_ptrvec_push(&v, i % 2 ? (void *)&a : (void *)&b) == 0);
    CHECK(ulc_ptrvec_find(&v, &b) == 0 && ulc_ptrvec_find(&v, &a) == 1);
    CHECK(ulc_ptrvec_remove(&v, &b) == 50 && v.len == 50);
    CHECK(ulc_ptrvec_find(&v, &b) == -1);
    ulc_ptrvec_clear(&v);
    CHECK(v.len == 0 && v.items == NULL);
}

static void test_pbwire(void) {
    uint64_t vals[] = {0, 1, 127, 128, 300, 1ull << 35, UINT64_MAX};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        uint8_t buf[32];
        size_t n = ulc_pb_put_tag(buf, 3, ULC_PB_VARINT);
        n += ulc_pb_put_varint(buf + n, vals[i]);
        CHECK(ulc_pb_varint_size(vals[i]) == n - 1);
        ulc_pb_reader r = {buf, buf + n};
        ulc_pb_field f;
        CHECK(ulc_pb_next(&r, &f) == 1);
        CHECK(f.number == 3 && f.wire_type == ULC_PB_VARINT && f.varint == vals[i]);
        CHECK(ulc_pb_next(&r, &f) == 0);
    }
    /* LEN field, then malformed inputs. */
    uint8_t msg[] = {0x4a, 0x03, 'a', 'b', 'c'}; /* field 9, LEN 3 */
    ulc_pb_reader r = {msg, msg + sizeof msg};
    ulc_pb_field f;
    CHECK(ulc_pb_next(&r, &f) == 1 && f.number == 9 && f.len == 3 && f.payload == msg + 2);
    CHECK(ulc_pb_len_field_size(9, 3) == sizeof msg);
    ulc_pb_reader shortlen = {msg, msg + 4}; /* length 3 beyond end */
    CHECK(ulc_pb_next(&shortlen, &f) == -1);
    uint8_t trunc_varint[] = {0x08, 0x80, 0x80};
    ulc_pb_reader tv = {trunc_varint, trunc_varint + 3};
    CHECK(ulc_pb_next(&tv, &f) == -1);
    uint8_t group[] = {0x0b}; /* field 1, wire type 3 (start group) */
    ulc_pb_reader gr = {group, group + 1};
    CHECK(ulc_pb_next(&gr, &f) == -1);
    uint8_t field0[] = {0x00, 0x01};
    ulc_pb_reader f0 = {field0, field0 + 2};
    CHECK(ulc_pb_next(&f0, &f) == -1);
    uint8_t toolong[12];
    memset(toolong, 0xff, sizeof toolong);
    toolong[0] = 0x08;
    ulc_pb_reader tl = {toolong, toolong + sizeof toolong};
    CHECK(ulc_pb_next(&tl, &f) == -1);
}

static void test_paths(void) {
    CHECK(ulc_path_unsafe_reason("weights.bin") == NULL);
    CHECK(ulc_path_unsafe_reason("sub/dir/w.bin") == NULL);
    CHECK(ulc_path_unsafe_reason("..hidden") == NULL);
    CHECK(ulc_path_unsafe_reason("/etc/passwd") != NULL);
    CHECK(ulc_path_unsafe_reason("../w.bin") != NULL);
    CHECK(ulc_path_unsafe_reason("a/../../w.bin") != NULL);
    CHECK(ulc_path_unsafe_reason("a/..") != NULL);
    CHECK(ulc_path_unsafe_reason("") != NULL);
    char *d = ulc_path_dirname("a/b/c.onnx");
    CHECK(strcmp(d, "a/b") == 0);
    free(d);
    d = ulc_path_dirname("c.onnx");
    CHECK(strcmp(d, ".") == 0);
    free(d);
    char *j = ulc_path_join(".", "x.bin");
    CHECK(strcmp(j, "x.bin") == 0);
    free(j);
    j = ulc_path_join("dir/", "x.bin");
    CHECK(strcmp(j, "dir/x.bin") == 0);
    free(j);
}

static int count_dir_entries(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static void test_outfile(void) {
    char sub[300], path[400];
    tmp_path(sub, sizeof sub, "outfile");
    mkdir(sub, 0755);
    snprintf(path, sizeof path, "%s/out.bin", sub);
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_outfile *o;
    CHECK(ulc_outfile_open(path, &o, &ctx) == ULC_OK);
    CHECK(ulc_outfile_write(o, "abc", 3, &ctx) == ULC_OK);
    CHECK(ulc_outfile_pad_to(o, 4096, &ctx) == ULC_OK);
    CHECK(ulc_outfile_tell(o) == 4096);
    CHECK(!ulc_path_exists(path)); /* nothing visible before commit */
    CHECK(ulc_outfile_commit(o, &ctx) == ULC_OK);
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_size == 4096);
    CHECK((st.st_mode & 0777) != 0600); /* plain-create permissions, not mkstemp's */

    /* copy_from: the committed file's bytes copied into a second one. */
    ulc_mapping *m;
    CHECK(ulc_mapping_open(path, "test", &m, &ctx) == ULC_OK);
    char path2[400];
    snprintf(path2, sizeof path2, "%s/copy.bin", sub);
    CHECK(ulc_outfile_open(path2, &o, &ctx) == ULC_OK);
    CHECK(ulc_outfile_copy_from(o, m->fd, 1, 2, &ctx) == ULC_OK);
    CHECK(ulc_outfile_commit(o, &ctx) == ULC_OK);
    ulc_mapping *m2;
    CHECK(ulc_mapping_open(path2, "test", &m2, &ctx) == ULC_OK);
    CHECK(m2->size == 2 && memcmp(m2->data, "bc", 2) == 0);
    ulc_mapping_unref(m2);
    ulc_mapping_unref(m);

    /* copy_at + skip: regions copied by the background thread while the caller writes around
     * them, queued out of order, one of them the last bytes of the file. */
    CHECK(ulc_mapping_open(path, "test", &m, &ctx) == ULC_OK);
    snprintf(path2, sizeof path2, "%s/holes.bin", sub);
    CHECK(ulc_outfile_open(path2, &o, &ctx) == ULC_OK);
    CHECK(ulc_outfile_copy_at(o, 4 + 4096 + 2, m->fd, 0, 3, &ctx) == ULC_OK); /* "abc" at the end */
    CHECK(ulc_outfile_copy_at(o, 4, m->fd, 0, 4096, &ctx) == ULC_OK);
    CHECK(ulc_outfile_copy_at(o, 0, m->fd, 0, 0, &ctx) == ULC_OK); /* nothing */
    CHECK(ulc_outfile_write(o, "HDR:", 4, &ctx) == ULC_OK);
    CHECK(ulc_outfile_skip(o, 4096, &ctx) == ULC_OK);
    CHECK(ulc_outfile_write(o, "--", 2, &ctx) == ULC_OK);
    CHECK(ulc_outfile_skip(o, 3, &ctx) == ULC_OK);
    CHECK(ulc_outfile_tell(o) == 4 + 4096 + 2 + 3);
    CHECK(ulc_outfile_commit(o, &ctx) == ULC_OK);
    CHECK(ulc_mapping_open(path2, "test", &m2, &ctx) == ULC_OK);
    CHECK(m2->size == 4 + 4096 + 2 + 3);
    CHECK(memcmp(m2->data, "HDR:abc", 7) == 0 && m2->data[7] == 0 && m2->data[4099] == 0);
    CHECK(memcmp(m2->data + 4100, "--abc", 5) == 0);
    ulc_mapping_unref(m2);
    /* a copy that fails (the source is too short) fails the commit: nothing is left */
    snprintf(path2, sizeof path2, "%s/failed.bin", sub);
    CHECK(ulc_outfile_open(path2, &o, &ctx) == ULC_OK);
    CHECK(ulc_outfile_copy_at(o, 0, m->fd, 4000, 200, &ctx) == ULC_OK);
    CHECK(ulc_outfile_skip(o, 200, &ctx) == ULC_OK);
    CHECK(ulc_outfile_commit(o, &ctx) == ULC_ERR_IO);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "unexpected end of file");
    ulc_ctx_clear(&ctx);
    CHECK(!ulc_path_exists(path2));
    /* abort with copies queued: stops, removes the temporary */
    int n0 = count_dir_entries(sub);
    CHECK(ulc_outfile_open(path2, &o, &ctx) == ULC_OK);
    for (int k = 0; k < 64; k++) CHECK(ulc_outfile_copy_at(o, 4096 * (uint64_t)k, m->fd, 0, 4096, &ctx) == ULC_OK);
    ulc_outfile_abort(o);
    CHECK(!ulc_path_exists(path2) && count_dir_entries(sub) == n0);
    ulc_mapping_unref(m);

    /* abort: the destination keeps its old content, no temporary is left. */
    int before = count_dir_entries(sub);
    CHECK(ulc_outfile_open(path, &o, &ctx) == ULC_OK);
    CHECK(ulc_outfile_write(o, "zzzz", 4, &ctx) == ULC_OK);
    ulc_outfile_abort(o);
    CHECK(stat(path, &st) == 0 && st.st_size == 4096);
    CHECK(count_dir_entries(sub) == before);

    /* errors */
    char bad[400];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.onnx", sub);
    CHECK(ulc_outfile_open(bad, &o, &ctx) == ULC_ERR_IO);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "cannot create output file");
    ulc_ctx_clear(&ctx);
    CHECK(ulc_mapping_open(bad, "model", &m, &ctx) == ULC_ERR_IO);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "cannot open model");
    ulc_ctx_clear(&ctx);
    CHECK(ulc_mapping_open(sub, "model", &m, &ctx) == ULC_ERR_IO);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "not a regular file");
}

/* ---- ir -------------------------------------------------------------------------------------- */

static void test_dtype_and_ops(void) {
    int of = 0;
    CHECK(ulc_dtype_nbytes(ULC_DT_F32, 10, &of) == 40 && !of);
    CHECK(ulc_dtype_nbytes(ULC_DT_I4, 5, &of) == 3 && !of);
    CHECK(ulc_dtype_nbytes(ULC_DT_BF16, 3, &of) == 6);
    ulc_dtype_nbytes(ULC_DT_F64, UINT64_MAX / 4, &of);
    CHECK(of);
    CHECK(!ulc_dtype_valid(0) && !ulc_dtype_valid(99) && ulc_dtype_valid(ULC_DT_F4E2M1));
    CHECK(strcmp(ulc_dtype_name(ULC_DT_BF16), "bf16") == 0);
    CHECK(ulc_dtype_onnx_field(ULC_DT_F16) == ULC_ONNX_FIELD_INT32);
    CHECK(ulc_dtype_onnx_field(ULC_DT_U32) == ULC_ONNX_FIELD_UINT64);
    CHECK(ulc_op_lookup("", "Conv") == ULC_OP_Conv);
    CHECK(ulc_op_lookup("ai.onnx", "MatMul") == ULC_OP_MatMul);
    CHECK(ulc_op_lookup("com.microsoft", "MatMul") == ULC_OP_UNKNOWN);
    CHECK(ulc_op_lookup(NULL, "NoSuchOp") == ULC_OP_UNKNOWN);
    /* every table entry finds itself: the table is sorted */
    for (int op = 1; op < ULC_OP_COUNT_; op++) {
        if (op == ULC_OP_ULC_FIRST_) continue;
        CHECK(ulc_op_lookup(ulc_op_domain((ulc_op)op), ulc_op_name((ulc_op)op)) == (ulc_op)op);
    }
    CHECK(ulc_op_lookup("ulc", "ReluGrad") == ULC_OP_ReluGrad);
    CHECK(ulc_op_lookup("", "ReluGrad") == ULC_OP_UNKNOWN);
    CHECK(ulc_op_lookup("ulc", "Relu") == ULC_OP_UNKNOWN);
}

/* x -> Relu -> y ; Add(y, w) -> z ; output z */
static ulc_model *build_small(ulc_ctx *ctx) {
    ulc_model *m = ulc_model_create();
    ulc_graph *g = m->graph;
    m->has_ir_version = 1;
    m->ir_version = 8;
    m->producer_name = "ulc-test";
    m->n_opsets = 1;
    m->opsets = ulc_arena_calloc(g->arena, 1, sizeof *m->opsets);
    m->opsets[0].domain = "";
    m->opsets[0].version = 17;
    m->opsets[0].has_version = 1;
    g->name = "small";
    ulc_value *x = ulc_graph_add_value(g, "x", ctx);
    ulc_value *y = ulc_graph_add_value(g, "y", ctx);
    ulc_value *z = ulc_graph_add_value(g, "z", ctx);
    ulc_value *w = ulc_graph_add_value(g, "w", ctx);
    ulc_dim dims[2] = {{-1, "N", NULL}, {4, NULL, NULL}};
    x->flags |= ULC_VALUE_INPUT | ULC_VALUE_HAS_TYPE;
    x->dtype = ULC_DT_F32;
    ulc_value_set_shape(g, x, 2, dims, ctx);
    ulc_ptrvec_push(&g->inputs, x);
    z->flags |= ULC_VALUE_OUTPUT | ULC_VALUE_HAS_TYPE;
    z->dtype = ULC_DT_F32;
    ulc_value_set_shape(g, z, 2, dims, ctx);
    ulc_ptrvec_push(&g->outputs, z);
    int64_t wd[1] = {4};
    ulc_tensor *t = ulc_tensor_new(g, "w", ULC_DT_F32, 1, wd, ctx);
    float *data = malloc(16);
    for (int i = 0; i < 4; i++) data[i] = (float)i * 0.5f;
    ulc_tensor_set_owned(g, t, data, 16, ctx);
    ulc_value_set_init(g, w, t, ctx);
    ulc_node *relu = ulc_graph_add_node(g, "", "Relu", "relu0", 1, 1, 0, ctx);
    ulc_node_set_input(relu, 0, x);
    ulc_node_set_output(relu, 0, y, ctx);
    ulc_node *add = ulc_graph_add_node(g, "", "Add", "add0", 2, 1, 1, ctx);
    ulc_node_set_input(add, 0, y);
    ulc_node_set_input(add, 1, w);
    ulc_node_set_output(add, 0, z, ctx);
    return m;
}

static void test_graph_build_verify(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_small(&ctx);
    ulc_graph *g = m->graph;
    CHECK(ctx.status == ULC_OK);
    CHECK(ulc_graph_verify(g, &ctx) == ULC_OK);
    ulc_value *y = ulc_graph_get_value(g, "y");
    CHECK(ulc_value_num_uses(y) == 1);
    CHECK(ulc_graph_get_value(g, "w")->init->numel == 4);
    CHECK(g->first->op == ULC_OP_Relu && g->last->op == ULC_OP_Add);
    /* a second producer is refused */
    ulc_node *bad = ulc_graph_add_node(g, "", "Neg", "neg0", 1, 1, 0, &ctx);
    ulc_node_set_input(bad, 0, ulc_graph_get_value(g, "x"));
    CHECK(ulc_node_set_output(bad, 0, y, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "produced by two nodes");
    ulc_ctx_clear(&ctx);
    ulc_graph_remove_node(g, bad);
    CHECK(g->n_nodes == 2 && ulc_value_num_uses(ulc_graph_get_value(g, "x")) == 1);
    CHECK(ulc_graph_verify(g, &ctx) == ULC_OK);
    /* duplicate names are refused */
    CHECK(ulc_graph_add_value(g, "x", &ctx) == NULL);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "defined twice");
    ulc_ctx_clear(&ctx);
    /* undefined input */
    ulc_value *ghost = ulc_graph_add_value(g, "ghost", &ctx);
    ulc_node *n2 = ulc_graph_add_node(g, "", "Neg", "neg1", 1, 1, 0, &ctx);
    ulc_node_set_input(n2, 0, ghost);
    CHECK(ulc_graph_verify(g, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "node 'neg1' (Neg) reads 'ghost'");
    ulc_ctx_clear(&ctx);
    ulc_graph_remove_node(g, n2);
    /* tensor size mismatch */
    ulc_tensor *t = ulc_graph_get_value(g, "w")->init;
    t->nbytes = 12;
    CHECK(ulc_graph_verify(g, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "holds 12 bytes but 4 elements of f32 need 16");
    t->nbytes = 16;
    ulc_ctx_clear(&ctx);
    /* negative dims in a new tensor */
    int64_t neg[2] = {2, -3};
    CHECK(ulc_tensor_new(g, "neg", ULC_DT_F32, 2, neg, &ctx) == NULL);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "expected >= 0");
    ulc_ctx_clear(&ctx);
    ulc_model_free(m);
    ulc_model_free(NULL);
}

static void test_toposort(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_small(&ctx);
    ulc_graph *g = m->graph;
    /* move Relu after Add: not topological */
    ulc_node *relu = g->first, *add = g->last;
    g->first = add;
    g->last = relu;
    add->prev = NULL;
    add->next = relu;
    relu->prev = add;
    relu->next = NULL;
    CHECK(ulc_graph_verify(g, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "before the node that produces it");
    ulc_ctx_clear(&ctx);
    CHECK(ulc_graph_toposort(g, &ctx) == ULC_OK);
    CHECK(g->first == relu && g->last == add);
    CHECK(ulc_graph_verify(g, &ctx) == ULC_OK);
    /* a cycle: Relu reads z, which Add produces from Relu's output */
    ulc_node_set_input(relu, 0, ulc_graph_get_value(g, "z"));
    CHECK(ulc_graph_toposort(g, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "cycle");
    ulc_model_free(m);
}

static void test_print(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_small(&ctx);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ulc_model_print(m, f);
    fclose(f);
    CHECK_CONTAINS(buf, "input  %x: f32[N,4]");
    CHECK_CONTAINS(buf, "%y = Relu(%x)");
    CHECK_CONTAINS(buf, "%z = Add(%y, %w)");
    CHECK_CONTAINS(buf, "init   %w: f32[4] {0, 0.5, 1, 1.5}");
    CHECK_CONTAINS(buf, "opsets=[ai.onnx:17]");
    free(buf);
    ulc_model_free(m);
}

/* ---- onnx round trip of a C-built graph ------------------------------------------------------- */

static void test_onnx_roundtrip(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_small(&ctx);
    char path[300], path2[300];
    tmp_path(path, sizeof path, "small.onnx");
    tmp_path(path2, sizeof path2, "small2.onnx");
    CHECK(ulc_onnx_export(m, path, NULL, &ctx) == ULC_OK);
    ulc_model *r = NULL;
    CHECK(ulc_onnx_import(path, &r, &ctx) == ULC_OK);
    if (r) {
        CHECK(r->graph->n_nodes == 2);
        CHECK(r->ir_version == 8 && strcmp(r->producer_name, "ulc-test") == 0);
        CHECK(ulc_model_opset(r, "") == 17 && ulc_model_opset(r, "ai.onnx") == 17);
        const ulc_tensor *t = ulc_graph_get_value(r->graph, "w")->init;
        CHECK(t->storage == ULC_STORAGE_BORROWED && t->nbytes == 16);
        CHECK(memcmp(t->data, ulc_graph_get_value(m->graph, "w")->init->data, 16) == 0);
        const ulc_value *x = ulc_graph_get_value(r->graph, "x");
        CHECK(x->rank == 2 && x->dims[0].value == -1 && strcmp(x->dims[0].param, "N") == 0);
        /* export of the import is byte-identical to the first export */
        CHECK(ulc_onnx_export(r, path2, NULL, &ctx) == ULC_OK);
        ulc_mapping *a, *b;
        CHECK(ulc_mapping_open(path, "a", &a, &ctx) == ULC_OK);
        CHECK(ulc_mapping_open(path2, "b", &b, &ctx) == ULC_OK);
        CHECK(a->size == b->size && memcmp(a->data, b->data, a->size) == 0);
        ulc_mapping_unref(a);
        ulc_mapping_unref(b);
        /* export over the source is refused unless allowed */
        ulc_onnx_export_opts o = ulc_onnx_export_defaults();
        CHECK(ulc_onnx_export(r, path, &o, &ctx) == ULC_ERR_INVALID_ARG);
        CHECK_CONTAINS(ulc_ctx_message(&ctx), "refusing to overwrite the input model");
        ulc_ctx_clear(&ctx);
        o.allow_overwrite_input = 1;
        CHECK(ulc_onnx_export(r, path, &o, &ctx) == ULC_OK);
        /* the borrowed weights are still readable: the old file stays mapped */
        float last;
        memcpy(&last, (const char *)t->data + 12, 4); /* borrowed data may be unaligned */
        CHECK(last == 1.5f);
    }
    ulc_model_free(r);
    ulc_model_free(m);
}

/* Weights beyond the inline limit (2 GiB in real use, 8 bytes here) switch export to external
 * data by itself, with aligned offsets, and the result imports back to the same weights. */
static void test_onnx_auto_external(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_small(&ctx);
    char path[300], data[320];
    tmp_path(path, sizeof path, "auto_ext.onnx");
    snprintf(data, sizeof data, "%s.data", path);
    ulc_onnx_export_opts o = ulc_onnx_export_defaults();
    o.external_min_bytes = 4;
    CHECK(ulc_onnx_export(m, path, &o, &ctx) == ULC_OK);
    CHECK(!ulc_path_exists(data)); /* 16 bytes of weights: inline */
    o.inline_limit = 8;
    CHECK(ulc_onnx_export(m, path, &o, &ctx) == ULC_OK);
    CHECK(ulc_path_exists(data));
    ulc_model *r = NULL;
    CHECK(ulc_onnx_import(path, &r, &ctx) == ULC_OK);
    if (r) {
        const ulc_tensor *t = ulc_graph_get_value(r->graph, "w")->init;
        CHECK(t->form == ULC_FORM_EXTERNAL && r->had_external_data);
        CHECK(ulc_tensor_file_offset(t) % 4096 == 0);
        CHECK(memcmp(t->data, ulc_graph_get_value(m->graph, "w")->init->data, 16) == 0);
    }
    ulc_model_free(r);
    ulc_model_free(m);
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

static void test_onnx_bad_bytes(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    char path[300];
    tmp_path(path, sizeof path, "bad.onnx");
    ulc_model *m = NULL;
    write_file(path, "", 0);
    CHECK(ulc_onnx_import(path, &m, &ctx) == ULC_ERR_PARSE && m == NULL);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "the file is empty");
    ulc_ctx_clear(&ctx);
    const uint8_t trunc[] = {0x08, 0x08, 0x3a, 0x40, 0x0a}; /* ir_version 8, graph LEN 64 > rest */
    write_file(path, trunc, sizeof trunc);
    CHECK(ulc_onnx_import(path, &m, &ctx) == ULC_ERR_PARSE);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "truncated protobuf at byte offset 2");
    ulc_ctx_clear(&ctx);
    const uint8_t nograph[] = {0x08, 0x08};
    write_file(path, nograph, sizeof nograph);
    CHECK(ulc_onnx_import(path, &m, &ctx) == ULC_ERR_PARSE);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "there is no graph");
    ulc_ctx_clear(&ctx);
}

/* Every truncation and a few thousand seeded byte mutations of a valid model: import must
 * return a status (never crash or leak — the ASan build runs this too). */
static void test_onnx_mutations(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = build_small(&ctx);
    char path[300], mut[300];
    tmp_path(path, sizeof path, "mut_src.onnx");
    tmp_path(mut, sizeof mut, "mut.onnx");
    CHECK(ulc_onnx_export(m, path, NULL, &ctx) == ULC_OK);
    ulc_model_free(m);
    ulc_mapping *src;
    if (ulc_mapping_open(path, "src", &src, &ctx) != ULC_OK) {
        CHECK(0);
        return;
    }
    size_t n = src->size;
    uint8_t *buf = malloc(n);
    int ok_count = 0, err_count = 0;
    for (size_t cut = 0; cut < n; cut++) {
        write_file(mut, src->data, cut);
        ulc_model *r = NULL;
        ulc_ctx_clear(&ctx);
        ulc_status s = ulc_onnx_import(mut, &r, &ctx);
        CHECK(s != ULC_OK || r != NULL);
        CHECK(s == ULC_OK || strlen(ulc_ctx_message(&ctx)) > 0);
        if (s == ULC_OK) ok_count++;
        else err_count++;
        ulc_model_free(r);
    }
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, src->data, n);
        int flips = 1 + iter % 4;
        for (int k = 0; k < flips; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t pos = (size_t)(rng >> 33) % n;
            buf[pos] = (uint8_t)(rng >> 13);
        }
        write_file(mut, buf, n);
        ulc_model *r = NULL;
        ulc_ctx_clear(&ctx);
        ulc_status s = ulc_onnx_import(mut, &r, &ctx);
        if (s == ULC_OK) {
            /* whatever imported must also export and verify */
            char out[300];
            tmp_path(out, sizeof out, "mut_out.onnx");
            ulc_status e = ulc_onnx_export(r, out, NULL, &ctx);
            CHECK(e == ULC_OK || e == ULC_ERR_UNSUPPORTED);
            ok_count++;
        } else {
            err_count++;
        }
        ulc_model_free(r);
    }
    CHECK(err_count > 0 && ok_count > 0);
    free(buf);
    ulc_mapping_unref(src);
}

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

/* A LAZY source producing byte i = (i * 7) & 255, failing at fail_at (if set). */
typedef struct counting_source {
    uint64_t fail_at;
    int calls, released;
    size_t largest;
} counting_source;

static ulc_status counting_read(void *state, uint64_t off, size_t len, void *dst, ulc_ctx *ctx) {
    counting_source *cs = state;
    cs->calls++;
    if (len > cs->largest) cs->largest = len;
    if (cs->fail_at && off + len > cs->fail_at)
        return ulc_fail(ctx, ULC_ERR_INVALID, "source fails at %llu", (unsigned long long)cs->fail_at);
    for (size_t i = 0; i < len; i++) ((uint8_t *)dst)[i] = (uint8_t)(((off + i) * 7) & 255);
    return ULC_OK;
}

static void counting_release(void *state) { ((counting_source *)state)->released++; }

typedef struct sink_state {
    uint8_t *buf;
    size_t at;
} sink_state;

static ulc_status collect(void *arg, const void *p, size_t n, ulc_ctx *ctx) {
    (void)ctx;
    sink_state *ss = arg;
    memcpy(ss->buf + ss->at, p, n);
    ss->at += n;
    return ULC_OK;
}

/* A sink that fails on its third call. */
static ulc_status failing_sink(void *arg, const void *p, size_t n, ulc_ctx *ctx) {
    (void)p, (void)n;
    int *calls = arg;
    if (++*calls == 3) return ulc_fail(ctx, ULC_ERR_IO, "the sink fails on call %d", *calls);
    return ULC_OK;
}

/* A skip for the stream test: zeros in the collected bytes, so the order shows. */
static ulc_status collect_skip(void *arg, uint64_t n, ulc_ctx *ctx) {
    (void)ctx;
    sink_state *ss = arg;
    memset(ss->buf + ss->at, 0xEE, (size_t)n);
    ss->at += (size_t)n;
    return ULC_OK;
}

/* ulc_stream: two LAZY tensors (several chunks each), a skip and a tensor in memory, in order,
 * written by the writer thread while the sources produce; a failing source stops it. */
static void test_stream(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = ulc_model_create();
    const size_t n = (size_t)3 << 20;
    int64_t dims[1] = {(int64_t)n};
    counting_source cs = {0, 0, 0, 0};
    ulc_tensor *a = ulc_tensor_new(m->graph, "a", ULC_DT_U8, 1, dims, &ctx);
    ulc_tensor *b = ulc_tensor_new(m->graph, "b", ULC_DT_U8, 1, dims, &ctx);
    int64_t d3[1] = {5};
    ulc_tensor *c = ulc_tensor_new(m->graph, "c", ULC_DT_U8, 1, d3, &ctx);
    ulc_tensor_source *sa = calloc(1, sizeof *sa), *sb = calloc(1, sizeof *sb);
    CHECK(a && b && c && sa && sb);
    *sa = (ulc_tensor_source){counting_read, counting_release, &cs, 0};
    *sb = (ulc_tensor_source){counting_read, counting_release, &cs, 3};
    CHECK(ulc_tensor_set_lazy(m->graph, a, sa, n, &ctx) == ULC_OK);
    CHECK(ulc_tensor_set_lazy(m->graph, b, sb, n, &ctx) == ULC_OK);
    char *hello = malloc(5);
    CHECK(hello != NULL);
    memcpy(hello, "hello", 5);
    CHECK(ulc_tensor_set_owned(m->graph, c, hello, 5, &ctx) == ULC_OK);
    sink_state ss = {malloc(2 * n + 100 + 5), 0};
    ulc_stream *st;
    CHECK(ulc_stream_open(collect, collect_skip, &ss, &st, &ctx) == ULC_OK);
    CHECK(ulc_stream_put(st, a, &ctx) == ULC_OK);
    CHECK(ulc_stream_skip(st, 100, &ctx) == ULC_OK);
    CHECK(ulc_stream_put(st, c, &ctx) == ULC_OK);
    CHECK(ulc_stream_put(st, b, &ctx) == ULC_OK);
    CHECK(ulc_stream_close(st, &ctx) == ULC_OK);
    CHECK(ss.at == 2 * n + 105 && cs.calls >= 6 && cs.largest <= ((size_t)1 << 20));
    int good = 1;
    for (size_t i = 0; i < n; i++)
        good &= ss.buf[i] == (uint8_t)((i * 7) & 255) && ss.buf[n + 105 + i] == (uint8_t)((i * 7) & 255);
    for (size_t i = 0; i < 100; i++) good &= ss.buf[n + i] == 0xEE;
    CHECK(good && memcmp(ss.buf + n + 100, "hello", 5) == 0);
    /* a source failing in the second tensor: put says why, close returns OK (nothing more) */
    cs.fail_at = n / 2;
    ss.at = 0;
    CHECK(ulc_stream_open(collect, collect_skip, &ss, &st, &ctx) == ULC_OK);
    CHECK(ulc_stream_put(st, c, &ctx) == ULC_OK);
    CHECK(ulc_stream_put(st, a, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "source fails at");
    ulc_ctx_clear(&ctx);
    CHECK(ulc_stream_close(st, NULL) == ULC_OK);
    /* a sink failing: a later put or close reports the sink's message */
    cs.fail_at = 0;
    int calls = 0;
    CHECK(ulc_stream_open(failing_sink, NULL, &calls, &st, &ctx) == ULC_OK);
    ulc_status s1 = ulc_stream_put(st, a, &ctx);
    ulc_status s2 = s1 == ULC_OK ? ulc_stream_close(st, &ctx) : ulc_stream_close(st, NULL);
    CHECK((s1 == ULC_ERR_IO) != (s2 == ULC_ERR_IO));
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "the sink fails on call 3");
    ulc_ctx_clear(&ctx);
    free(ss.buf);
    ulc_model_free(m);
    CHECK(cs.released == 2);
}


static void test_lazy_tensors(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    ulc_model *m = ulc_model_create();
    const size_t n = (size_t)10 << 20; /* 10 MiB: several stream chunks, a short last one */
    int64_t dims[1] = {(int64_t)n / 4};
    counting_source cs = {0, 0, 0, 0};
    ulc_tensor *t = ulc_tensor_new(m->graph, "lazy", ULC_DT_F32, 1, dims, &ctx);
    ulc_tensor_source *src = calloc(1, sizeof *src);
    CHECK(t && src);
    *src = (ulc_tensor_source){counting_read, counting_release, &cs, 12};
    CHECK(ulc_tensor_set_lazy(m->graph, t, src, n, &ctx) == ULC_OK);
    CHECK(t->storage == ULC_STORAGE_LAZY && t->data == NULL);
    sink_state ss = {malloc(n), 0};
    CHECK(ulc_tensor_stream(t, collect, &ss, &ctx) == ULC_OK);
    CHECK(ss.at == n && cs.calls >= 3 && cs.largest < n && cs.largest % 12 == 0);
    int good = 1;
    for (size_t i = 0; i < n; i++) good &= ss.buf[i] == (uint8_t)((i * 7) & 255);
    CHECK(good);
    /* a failing source fails the stream and says why */
    cs.fail_at = n / 2;
    ss.at = 0;
    CHECK(ulc_tensor_stream(t, collect, &ss, &ctx) == ULC_ERR_INVALID);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "source fails at");
    CHECK(ulc_tensor_materialize(m->graph, t, &ctx) == ULC_ERR_INVALID);
    CHECK(t->storage == ULC_STORAGE_LAZY);
    ulc_ctx_clear(&ctx);
    cs.fail_at = 0;
    /* a failing sink (on the writer thread) fails the stream with its own message */
    int calls = 0;
    CHECK(ulc_tensor_stream(t, failing_sink, &calls, &ctx) == ULC_ERR_IO);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "the sink fails on call 3");
    CHECK(calls == 3);
    ulc_ctx_clear(&ctx);
    CHECK(ulc_tensor_materialize(m->graph, t, &ctx) == ULC_OK);
    CHECK(t->storage == ULC_STORAGE_OWNED && t->data && memcmp(t->data, ss.buf, n) == 0);
    free(ss.buf);
    ulc_model_free(m);
    CHECK(cs.released == 1); /* the graph released the source */
}

/* ---- sha256 (FIPS 180-4; vectors from NIST's SHA examples and the CAVP byte tests) -------- */

static void test_sha256(void) {
    char hex[ULC_SHA256_HEX];
    ulc_sha256_buf_hex("", 0, hex);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    ulc_sha256_buf_hex("abc", 3, hex);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    static const char two_blocks[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    ulc_sha256_buf_hex(two_blocks, strlen(two_blocks), hex); /* the 448-bit message */
    CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    /* a million 'a', fed in uneven pieces so the partial-block path runs */
    char *a = malloc(1000000);
    CHECK(a != NULL);
    if (!a) return;
    memset(a, 'a', 1000000);
    ulc_sha256 s;
    uint8_t d[ULC_SHA256_BYTES];
    ulc_sha256_init(&s);
    for (size_t off = 0, step = 1; off < 1000000; off += step, step = step * 3 % 997 + 1)
        ulc_sha256_update(&s, a + off, off + step > 1000000 ? 1000000 - off : step);
    ulc_sha256_final(&s, d);
    ulc_sha256_hex(d, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    ulc_sha256_buf_hex(a, 1000000, hex); /* and in one piece */
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    /* lengths around the padding boundary (55, 56, 64 bytes of 'a'), checked against Python's
     * hashlib */
    ulc_sha256_buf_hex(a, 55, hex);
    CHECK(strcmp(hex, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318") == 0);
    ulc_sha256_buf_hex(a, 56, hex);
    CHECK(strcmp(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a") == 0);
    ulc_sha256_buf_hex(a, 64, hex);
    CHECK(strcmp(hex, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb") == 0);
    /* a file, and an empty file, through the mapping */
    char path[300];
    tmp_path(path, sizeof path, "sha.bin");
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fwrite(a, 1, 1000000, f);
        fclose(f);
    }
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    CHECK(ulc_sha256_file(path, hex, &ctx) == ULC_OK);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    f = fopen(path, "wb");
    if (f) fclose(f);
    CHECK(ulc_sha256_file(path, hex, &ctx) == ULC_OK);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    tmp_path(path, sizeof path, "no-such-file");
    CHECK(ulc_sha256_file(path, hex, &ctx) == ULC_ERR_IO);
    CHECK_CONTAINS(ulc_ctx_message(&ctx), "no-such-file");
    free(a);
}

/* ---- the weights hash (ir/digest.h; the golden values from the Python reference in
 * tests/e2e/test_verify.py's weights_sha256) ---------------------------------------------------- */

/* Adds initializer name (dtype, one dim, data copied) to m; flags added to the value's. */
static void add_weight(ulc_model *m, const char *name, int dtype, int64_t dim, const void *data,
                       size_t n, uint32_t flags, ulc_ctx *ctx) {
    ulc_value *v = ulc_graph_add_value(m->graph, name, ctx);
    ulc_tensor *t = ulc_tensor_new(m->graph, name, dtype, 1, &dim, ctx);
    void *b = malloc(n);
    CHECK(v && t && b);
    memcpy(b, data, n);
    CHECK(ulc_tensor_set_owned(m->graph, t, b, n, ctx) == ULC_OK);
    CHECK(ulc_value_set_init(m->graph, v, t, ctx) == ULC_OK);
    v->flags |= flags;
}

static void test_weights_sha256(void) {
    ulc_ctx ctx;
    ulc_ctx_init(&ctx);
    const float bf[2] = {1.0f, 2.5f};
    const uint8_t au[3] = {7, 8, 9};
    const char *golden = "5e350a9233628cb23ecaa6b6e09c87de7a99b9f9dba5b1e9773d4995fa46cafb";
    char h1[ULC_SHA256_HEX], h2[ULC_SHA256_HEX];
    /* name order, not insertion order; metadata and graph constants do not count */
    ulc_model *m1 = ulc_model_create(), *m2 = ulc_model_create();
    add_weight(m1, "b", ULC_DT_F32, 2, bf, sizeof bf, 0, &ctx);
    add_weight(m1, "a", ULC_DT_U8, 3, au, sizeof au, 0, &ctx);
    add_weight(m2, "/Constant_1", ULC_DT_U8, 3, au, sizeof au, ULC_VALUE_CONSTANT, &ctx);
    add_weight(m2, "a", ULC_DT_U8, 3, au, sizeof au, 0, &ctx);
    add_weight(m2, "b", ULC_DT_F32, 2, bf, sizeof bf, 0, &ctx);
    CHECK(ulc_model_set_metadata(m2, "ulc_history", "[]", &ctx) == ULC_OK);
    CHECK(ulc_model_weights_sha256(m1, h1, &ctx) == ULC_OK);
    CHECK(ulc_model_weights_sha256(m2, h2, &ctx) == ULC_OK);
    CHECK(strcmp(h1, golden) == 0 && strcmp(h2, golden) == 0);
    /* one byte, or a shape with the same bytes, changes it */
    ((uint8_t *)ulc_graph_get_value(m2->graph, "a")->init->data)[1] ^= 1;
    CHECK(ulc_model_weights_sha256(m2, h2, &ctx) == ULC_OK && strcmp(h2, golden) != 0);
    ((uint8_t *)ulc_graph_get_value(m2->graph, "a")->init->data)[1] ^= 1;
    int64_t d2[2] = {1, 2}; /* b as [1, 2] */
    ulc_tensor *b2 = ulc_tensor_new(m2->graph, "b", ULC_DT_F32, 2, d2, &ctx);
    float *bb = malloc(sizeof bf);
    CHECK(b2 && bb);
    memcpy(bb, bf, sizeof bf);
    CHECK(ulc_tensor_set_owned(m2->graph, b2, bb, sizeof bf, &ctx) == ULC_OK);
    ulc_graph_get_value(m2->graph, "b")->init = b2;
    CHECK(ulc_model_weights_sha256(m2, h2, &ctx) == ULC_OK && strcmp(h2, golden) != 0);
    /* a LAZY tensor of several stream chunks hashes as its bytes would */
    const size_t n = (size_t)3 << 20;
    int64_t dn = (int64_t)n;
    counting_source cs = {0, 0, 0, 0};
    ulc_value *v = ulc_graph_add_value(m1->graph, "big", &ctx);
    ulc_tensor *t = ulc_tensor_new(m1->graph, "big", ULC_DT_U8, 1, &dn, &ctx);
    ulc_tensor_source *src = calloc(1, sizeof *src);
    CHECK(v && t && src);
    *src = (ulc_tensor_source){counting_read, counting_release, &cs, 0};
    CHECK(ulc_tensor_set_lazy(m1->graph, t, src, n, &ctx) == ULC_OK);
    CHECK(ulc_value_set_init(m1->graph, v, t, &ctx) == ULC_OK);
    CHECK(ulc_model_weights_sha256(m1, h1, &ctx) == ULC_OK);
    CHECK(strcmp(h1, "96d15d3731c59ff4b546d3f77447b0a8db16146c1837b58f3a14eb29122a9589") == 0);
    CHECK(cs.calls >= 3 && t->storage == ULC_STORAGE_LAZY); /* streamed, not materialized */
    ulc_model_free(m1);
    ulc_model_free(m2);
}

static const test_case k_tests[] = {
    {"status_chain", test_status_chain},
    {"arena", test_arena},
    {"strmap", test_strmap},
    {"ptrvec", test_ptrvec},
    {"pbwire", test_pbwire},
    {"paths", test_paths},
    {"outfile", test_outfile},
    {"stream", test_stream},
    {"dtype_and_ops", test_dtype_and_ops},
    {"graph_build_verify", test_graph_build_verify},
    {"toposort", test_toposort},
    {"print", test_print},
    {"onnx_roundtrip", test_onnx_roundtrip},
    {"onnx_auto_external", test_onnx_auto_external},
    {"onnx_bad_bytes", test_onnx_bad_bytes},
    {"onnx_mutations", test_onnx_mutations},
    {"lazy_tensors", test_lazy_tensors},
    {"sha256", test_sha256},
    {"weights_sha256", test_weights_sha256},
};

int main(int argc, char **argv) {
    snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/ulc-unit-XXXXXX");
    if (!mkdtemp(g_tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof k_tests / sizeof *k_tests; i++) {
        if (argc > 1 && !strstr(k_tests[i].name, argv[1])) continue;
        int before = g_failed_checks;
        k_tests[i].fn();
        int ok = g_failed_checks == before;
        printf("%s %s\n", ok ? "PASS" : "FAIL", k_tests[i].name);
        if (ok) passed++;
        else failed++;
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", g_tmpdir);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
