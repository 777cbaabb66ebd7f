/*
 * dtype.h — element types. The numbering is ONNX's TensorProto.DataType, so ONNX files map
 * one-to-one; safetensors dtypes map onto the same enum.
 */
#ifndef ULC_IR_DTYPE_H
#define ULC_IR_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum ulc_dtype {
    ULC_DT_UNDEFINED = 0,
    ULC_DT_F32 = 1,
    ULC_DT_U8 = 2,
    ULC_DT_I8 = 3,
    ULC_DT_U16 = 4,
    ULC_DT_I16 = 5,
    ULC_DT_I32 = 6,
    ULC_DT_I64 = 7,
    ULC_DT_STRING = 8, /* kept opaque: never computed on */
    ULC_DT_BOOL = 9,
    ULC_DT_F16 = 10,
    ULC_DT_F64 = 11,
    ULC_DT_U32 = 12,
    ULC_DT_U64 = 13,
    ULC_DT_C64 = 14,
    ULC_DT_C128 = 15,
    ULC_DT_BF16 = 16,
    ULC_DT_F8E4M3FN = 17,
    ULC_DT_F8E4M3FNUZ = 18,
    ULC_DT_F8E5M2 = 19,
    ULC_DT_F8E5M2FNUZ = 20,
    ULC_DT_U4 = 21, /* two per byte */
    ULC_DT_I4 = 22, /* two per byte */
    ULC_DT_F4E2M1 = 23, /* two per byte */
    ULC_DT_COUNT_
} ulc_dtype;

/* Short lowercase name ("f32", "bf16", "string"); "dtype(N)" style names are not returned:
 * unknown codes give "?". */
const char *ulc_dtype_name(int dt);
/* 1 if dt is one of the codes above (UNDEFINED excluded). */
int ulc_dtype_valid(int dt);
/* Bits per element (4 for the packed 4-bit types, 0 for string/undefined). */
unsigned ulc_dtype_bits(int dt);
/* Bytes needed for n elements (rounding packed 4-bit types up); 0 for string.
 * Sets *overflow when the result does not fit in size_t. */
size_t ulc_dtype_nbytes(int dt, uint64_t n, int *overflow);
int ulc_dtype_is_float(int dt);



/* ONNX TensorProto typed field that carries elements of a dtype when raw_data is not used. */
typedef enum ulc_onnx_field {
    ULC_ONNX_FIELD_NONE = 0,
    ULC_ONNX_FIELD_FLOAT,  /* float_data: f32, c64 (2 per element) */
    ULC_ONNX_FIELD_INT32,  /* int32_data: i32 i16 i8 u16 u8 bool f16 bf16 f8*, 4-bit (1 per byte) */
    ULC_ONNX_FIELD_STRING, /* string_data */
    ULC_ONNX_FIELD_INT64,  /* int64_data: i64 */
    ULC_ONNX_FIELD_DOUBLE, /* double_data: f64, c128 (2 per element) */
    ULC_ONNX_FIELD_UINT64  /* uint64_data: u32 u64 */
} ulc_onnx_field;

ulc_onnx_field ulc_dtype_onnx_field(int dt);

/* safetensors dtype names ("F32", "BF16", "F8_E4M3", ...): NULL when safetensors has no name for
 * dt; from_name returns ULC_DT_UNDEFINED for an unknown name. */
const char *ulc_dtype_safetensors_name(int dt);
int ulc_dtype_from_safetensors_name(const char *name);
#endif
