#include "ir/dtype.h"

#include <stdint.h>
#include <string.h>

static const struct {
    const char *name;
    unsigned bits;
    unsigned char is_float;
} k_dtypes[ULC_DT_COUNT_] = {
    [ULC_DT_UNDEFINED] = {"undefined", 0, 0}, [ULC_DT_F32] = {"f32", 32, 1},
    [ULC_DT_U8] = {"u8", 8, 0},               [ULC_DT_I8] = {"i8", 8, 0},
    [ULC_DT_U16] = {"u16", 16, 0},            [ULC_DT_I16] = {"i16", 16, 0},
    [ULC_DT_I32] = {"i32", 32, 0},            [ULC_DT_I64] = {"i64", 64, 0},
    [ULC_DT_STRING] = {"string", 0, 0},       [ULC_DT_BOOL] = {"bool", 8, 0},
    [ULC_DT_F16] = {"f16", 16, 1},            [ULC_DT_F64] = {"f64", 64, 1},
    [ULC_DT_U32] = {"u32", 32, 0},            [ULC_DT_U64] = {"u64", 64, 0},
    [ULC_DT_C64] = {"c64", 64, 0},            [ULC_DT_C128] = {"c128", 128, 0},
    [ULC_DT_BF16] = {"bf16", 16, 1},          [ULC_DT_F8E4M3FN] = {"f8e4m3fn", 8, 1},
    [ULC_DT_F8E4M3FNUZ] = {"f8e4m3fnuz", 8, 1}, [ULC_DT_F8E5M2] = {"f8e5m2", 8, 1},
    [ULC_DT_F8E5M2FNUZ] = {"f8e5m2fnuz", 8, 1}, [ULC_DT_U4] = {"u4", 4, 0},
    [ULC_DT_I4] = {"i4", 4, 0},               [ULC_DT_F4E2M1] = {"f4e2m1", 4, 1},
};

int ulc_dtype_valid(int dt) { return dt > ULC_DT_UNDEFINED && dt < ULC_DT_COUNT_; }

const char *ulc_dtype_name(int dt) {
    return (dt >= 0 && dt < ULC_DT_COUNT_) ? k_dtypes[dt].name : "?";
}

unsigned ulc_dtype_bits(int dt) { return (dt >= 0 && dt < ULC_DT_COUNT_) ? k_dtypes[dt].bits : 0; }

int ulc_dtype_is_float(int dt) {
    return (dt >= 0 && dt < ULC_DT_COUNT_) ? k_dtypes[dt].is_float : 0;
}

size_t ulc_dtype_nbytes(int dt, uint64_t n, int *overflow) {
    unsigned bits = ulc_dtype_bits(dt);
    if (bits == 4) return (size_t)(n / 2 + (n & 1));
    uint64_t bytes = bits / 8;
    if (bytes && n > UINT64_MAX / bytes) {
        *overflow = 1;
        return 0;
    }
    uint64_t total = n * bytes;
    if (total > SIZE_MAX) {
        *overflow = 1;
        return 0;
    }
    return (size_t)total;
}

ulc_onnx_field ulc_dtype_onnx_field(int dt) {
    switch (dt) {
    case ULC_DT_F32:
    case ULC_DT_C64: return ULC_ONNX_FIELD_FLOAT;
    case ULC_DT_F64:
    case ULC_DT_C128: return ULC_ONNX_FIELD_DOUBLE;
    case ULC_DT_I64: return ULC_ONNX_FIELD_INT64;
    case ULC_DT_U32:
    case ULC_DT_U64: return ULC_ONNX_FIELD_UINT64;
    case ULC_DT_STRING: return ULC_ONNX_FIELD_STRING;
    case ULC_DT_UNDEFINED: return ULC_ONNX_FIELD_NONE;
    default: return ulc_dtype_valid(dt) ? ULC_ONNX_FIELD_INT32 : ULC_ONNX_FIELD_NONE;
    }
}

static const struct {
    int dt;
    const char *name;
} k_st_names[] = {
    {ULC_DT_F64, "F64"},       {ULC_DT_F32, "F32"},         {ULC_DT_F16, "F16"},
    {ULC_DT_BF16, "BF16"},     {ULC_DT_I64, "I64"},         {ULC_DT_I32, "I32"},
    {ULC_DT_I16, "I16"},       {ULC_DT_I8, "I8"},           {ULC_DT_U8, "U8"},
    {ULC_DT_BOOL, "BOOL"},     {ULC_DT_U16, "U16"},         {ULC_DT_U32, "U32"},
    {ULC_DT_U64, "U64"},       {ULC_DT_F8E4M3FN, "F8_E4M3"}, {ULC_DT_F8E5M2, "F8_E5M2"},
};

const char *ulc_dtype_safetensors_name(int dt) {
    for (size_t i = 0; i < sizeof k_st_names / sizeof *k_st_names; i++)
        if (k_st_names[i].dt == dt) return k_st_names[i].name;
    return NULL;
}

int ulc_dtype_from_safetensors_name(const char *name) {
    for (size_t i = 0; name && i < sizeof k_st_names / sizeof *k_st_names; i++)
        if (strcmp(k_st_names[i].name, name) == 0) return k_st_names[i].dt;
    return ULC_DT_UNDEFINED;
}
