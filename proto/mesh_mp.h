/*  mesh_mp: the strict msgpack reader both wire codecs use (mesh_msg for
    the mesh's messages, mesh_audit for audit records).

    msgpack-c only encodes here: its unpacker allocates a container's
    declared size before reading it.  This reader allocates nothing, checks
    the bounds before every read and accepts only the forms the codecs
    write (unsigned ints, arrays, str and bin).  Each call returns 0, or -1
    on short or unexpected input.                                           */
#ifndef MESH_MP_H
#define MESH_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *at;
    const uint8_t *end;
} mesh_mp_reader_t;

static inline int
mesh_mp_need (mesh_mp_reader_t *r, size_t n)
{
    return (size_t) (r->end - r->at) >= n ? 0 : -1;
}

//  A big-endian value of n bytes
static inline int
mesh_mp_read_be (mesh_mp_reader_t *r, int n, uint64_t *value)
{
    if (mesh_mp_need (r, (size_t) n) < 0)
        return -1;
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | r->at [i];
    r->at += n;
    *value = v;
    return 0;
}

static inline int
mesh_mp_read_uint (mesh_mp_reader_t *r, uint64_t *value)
{
    if (mesh_mp_need (r, 1) < 0)
        return -1;
    uint8_t b = *r->at++;
    if (b <= 0x7f) {
        *value = b;
        return 0;
    }
    switch (b) {
        case 0xcc: return mesh_mp_read_be (r, 1, value);
        case 0xcd: return mesh_mp_read_be (r, 2, value);
        case 0xce: return mesh_mp_read_be (r, 4, value);
        case 0xcf: return mesh_mp_read_be (r, 8, value);
        default:   return -1;
    }
}

static inline int
mesh_mp_read_bool (mesh_mp_reader_t *r, bool *value)
{
    if (mesh_mp_need (r, 1) < 0 || (*r->at != 0xc2 && *r->at != 0xc3))
        return -1;
    *value = *r->at++ == 0xc3;
    return 0;
}

static inline int
mesh_mp_read_array (mesh_mp_reader_t *r, uint64_t *count)
{
    if (mesh_mp_need (r, 1) < 0)
        return -1;
    uint8_t b = *r->at++;
    if ((b & 0xf0) == 0x90) {
        *count = b & 0x0f;
        return 0;
    }
    if (b == 0xdc)
        return mesh_mp_read_be (r, 2, count);
    if (b == 0xdd)
        return mesh_mp_read_be (r, 4, count);
    return -1;
}

//  A str (want_bin false) or bin (true): its body in place
static inline int
mesh_mp_read_raw (mesh_mp_reader_t *r, bool want_bin, const char **data, uint64_t *len)
{
    if (mesh_mp_need (r, 1) < 0)
        return -1;
    uint8_t b = *r->at++;
    int rc;
    if (!want_bin && (b & 0xe0) == 0xa0) {
        *len = b & 0x1f;
        rc = 0;
    }
    else
    if (b == (want_bin ? 0xc4 : 0xd9))
        rc = mesh_mp_read_be (r, 1, len);
    else
    if (b == (want_bin ? 0xc5 : 0xda))
        rc = mesh_mp_read_be (r, 2, len);
    else
    if (b == (want_bin ? 0xc6 : 0xdb))
        rc = mesh_mp_read_be (r, 4, len);
    else
        return -1;
    if (rc < 0 || mesh_mp_need (r, *len) < 0)
        return -1;
    *data = (const char *) r->at;
    r->at += *len;
    return 0;
}

#endif
