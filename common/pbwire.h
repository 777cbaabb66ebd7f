/*
 * pbwire.h — the protobuf wire format at the level of single fields, for the places where ulc
 * must not let a protobuf library materialise a message: ONNX weights are split out of their
 * TensorProtos by offset (zero-copy import) and streamed into the output (export), so no
 * buffer ever holds a whole model.
 *
 * Layout of a message: a sequence of fields, each `varint(tag) payload` where tag =
 * field_number << 3 | wire_type, and the payload is a varint (type 0), 8 bytes (1),
 * varint(length) + bytes (2) or 4 bytes (5). Groups (3, 4) are obsolete and rejected.
 *
 *     ulc_pb_reader r = {p, end};
 *     ulc_pb_field f;
 *     while ((rc = ulc_pb_next(&r, &f)) > 0) { if (f.number == 9) raw = f.payload; ... }
 *     if (rc < 0) error at offset ulc_pb_error_offset(...)
 */
#ifndef ULC_COMMON_PBWIRE_H
#define ULC_COMMON_PBWIRE_H

#include <stddef.h>
#include <stdint.h>

enum { ULC_PB_VARINT = 0, ULC_PB_I64 = 1, ULC_PB_LEN = 2, ULC_PB_I32 = 5 };

typedef struct ulc_pb_reader {
    const uint8_t *p, *end;
} ulc_pb_reader;

typedef struct ulc_pb_field {
    uint32_t number;
    int wire_type;
    const uint8_t *start;   /* first byte of the tag */
    const uint8_t *payload; /* LEN: first payload byte; others: first value byte */
    size_t len;             /* LEN: payload length; others: encoded value length */
    uint64_t varint;        /* VARINT: the value */
    const uint8_t *stop;    /* one past the field's last byte */
} ulc_pb_field;

/* 1: a field was read; 0: clean end of input; -1: malformed (r->p points at the bad field). */
int ulc_pb_next(ulc_pb_reader *r, ulc_pb_field *f);

/* Encoding. Each returns the number of bytes written to out (at most 10 per varint). */
size_t ulc_pb_put_varint(uint8_t *out, uint64_t v);
size_t ulc_pb_varint_size(uint64_t v);
size_t ulc_pb_put_tag(uint8_t *out, uint32_t number, int wire_type);
/* Size of a LEN field with this number and payload length (tag + length prefix + payload). */
uint64_t ulc_pb_len_field_size(uint32_t number, uint64_t payload_len);

#endif
