#include "common/pbwire.h"

static int get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (p >= end) return -1;
        uint8_t b = *p++;
        if (shift == 63 && b > 1) return -1; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *pp = p;
            *out = v;
            return 0;
        }
    }
    return -1;
}

int ulc_pb_next(ulc_pb_reader *r, ulc_pb_field *f) {
    if (r->p >= r->end) return 0;
    const uint8_t *p = r->p;
    uint64_t tag;
    if (get_varint(&p, r->end, &tag) != 0) return -1;
    uint64_t number = tag >> 3;
    if (number == 0 || number > 0x1fffffff) return -1;
    f->start = r->p;
    f->number = (uint32_t)number;
    f->wire_type = (int)(tag & 7);
    f->varint = 0;
    switch (f->wire_type) {
    case ULC_PB_VARINT: {
        f->payload = p;
        if (get_varint(&p, r->end, &f->varint) != 0) return -1;
        f->len = (size_t)(p - f->payload);
        break;
    }
    case ULC_PB_I64:
    case ULC_PB_I32: {
        size_t n = f->wire_type == ULC_PB_I64 ? 8 : 4;
        if ((size_t)(r->end - p) < n) return -1;
        f->payload = p;
        f->len = n;
        p += n;
        break;
    }
    case ULC_PB_LEN: {
        uint64_t len;
        if (get_varint(&p, r->end, &len) != 0) return -1;
        if (len > (uint64_t)(r->end - p)) return -1;
        f->payload = p;
        f->len = (size_t)len;
        p += len;
        break;
    }
    default:
        return -1; /* groups and reserved wire types */
    }
    f->stop = p;
    r->p = p;
    return 1;
}

size_t ulc_pb_put_varint(uint8_t *out, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

size_t ulc_pb_varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t ulc_pb_put_tag(uint8_t *out, uint32_t number, int wire_type) {
    return ulc_pb_put_varint(out, ((uint64_t)number << 3) | (uint64_t)wire_type);
}

uint64_t ulc_pb_len_field_size(uint32_t number, uint64_t payload_len) {
    return ulc_pb_varint_size((uint64_t)number << 3) + ulc_pb_varint_size(payload_len) +
           payload_len;
}
