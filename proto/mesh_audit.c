/*  mesh_audit: the audit record's codec (see mesh_audit.h).

    The field table below is the one place the wire order lives; the
    encoder, the decoder and the selftest walk it.  The reader follows
    mesh_msg.c, the other codec beside it: bounds checked before every
    read, nothing allocated, every string's length and UTF-8 checked,
    trailing bytes refused (the reader is mesh_mp.h, shared with
    mesh_msg).  Any thread.                                                  */
#include "mesh_audit.h"
#include "mesh_id.h"
#include "mesh_mp.h"
#include "mesh_util.h"

#include <assert.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIGNATURE "SA"

typedef enum { KIND_ID, KIND_U32, KIND_U64, KIND_BOOL, KIND_STR, KIND_BIN } kind_t;

//  NAME, kind, member, max: the record's fields in wire order
#define AUDIT_FIELDS(F)                                          \
    F (ID,                ID,   id,                MESH_ID_LEN)  \
    F (START_MS,          U64,  start_ms,          0)            \
    F (END_MS,            U64,  end_ms,            0)            \
    F (TENANT,            STR,  tenant,            127)          \
    F (KEY_ID,            STR,  key_id,            64)           \
    F (MODEL_REQUESTED,   STR,  model_requested,   255)          \
    F (MODEL,             STR,  model,             255)          \
    F (ENDPOINT,          STR,  endpoint,          511)          \
    F (REGION,            STR,  region,            63)           \
    F (PARAMS,            STR,  params,            4096)         \
    F (STREAM,            BOOL, stream,            0)            \
    F (STATUS,            U32,  status,            0)            \
    F (OUTCOME,           STR,  outcome,           31)           \
    F (ERROR_CODE,        STR,  error_code,        63)           \
    F (ATTEMPTS,          U32,  attempts,          0)            \
    F (CACHE_HIT,         BOOL, cache_hit,         0)            \
    F (QUEUE_US,          U64,  queue_us,          0)            \
    F (TTFT_US,           U64,  ttft_us,           0)            \
    F (TOTAL_US,          U64,  total_us,          0)            \
    F (UPSTREAM_TTFB_US,  U64,  upstream_ttfb_us,  0)            \
    F (PROMPT_TOKENS,     U64,  prompt_tokens,     0)            \
    F (COMPLETION_TOKENS, U64,  completion_tokens, 0)            \
    F (CACHED_TOKENS,     U64,  cached_tokens,     0)            \
    F (REASONING_TOKENS,  U64,  reasoning_tokens,  0)            \
    F (BYTES_OUT,         U64,  bytes_out,         0)            \
    F (PROMPT,            BIN,  prompt,            MESH_AUDIT_MAX_TEXT) \
    F (RESPONSE,          BIN,  response,          MESH_AUDIT_MAX_TEXT) \
    F (TRUNCATED,         BOOL, truncated,         0)

enum {
#define F(NAME, kind, member, max) AF_##NAME,
    AUDIT_FIELDS (F)
#undef F
    AF__COUNT
};

typedef struct {
    const char *name;
    kind_t kind;
    size_t offset;
    size_t max;
} field_t;

static const field_t s_fields [AF__COUNT] = {
#define F(NAME, kind, member, max) \
    [AF_##NAME] = { #member, KIND_##kind, offsetof (mesh_audit_record_t, member), max },
    AUDIT_FIELDS (F)
#undef F
};

#define HEADER_ELEMENTS 2           //  signature, version

//  True when a text or bytes field holds what its kind allows.
static bool
s_bytes_ok (const field_t *field, const mesh_bytes_t *bytes)
{
    if (bytes->size && !bytes->data)
        return false;
    switch (field->kind) {
        case KIND_ID:  return mesh_id_valid (bytes->data, bytes->size);
        case KIND_STR: return bytes->size <= field->max
                           && mesh_utf8_valid (bytes->data, bytes->size);
        case KIND_BIN: return bytes->size <= field->max;
        default:       return false;
    }
}

//  Encoding -----------------------------------------------------------------

static int
s_write (void *data, const char *buf, size_t len)
{
    mesh_buf_append (data, buf, len);
    return 0;
}

//  check false only in the selftest, to make frames that break the limits
static int
s_encode (const mesh_audit_record_t *record, mesh_buf_t *out, bool check)
{
    if (check)
        for (size_t i = 0; i < AF__COUNT; i++) {
            const field_t *field = &s_fields [i];
            const char *at = (const char *) record + field->offset;
            if ((field->kind == KIND_ID || field->kind == KIND_STR || field->kind == KIND_BIN)
            &&  !s_bytes_ok (field, (const mesh_bytes_t *) at))
                return -1;
        }
    msgpack_packer pk;
    msgpack_packer_init (&pk, out, s_write);
    msgpack_pack_array (&pk, HEADER_ELEMENTS + AF__COUNT);
    msgpack_pack_str_with_body (&pk, SIGNATURE, 2);
    msgpack_pack_unsigned_int (&pk, MESH_AUDIT_VERSION);
    for (size_t i = 0; i < AF__COUNT; i++) {
        const field_t *field = &s_fields [i];
        const char *at = (const char *) record + field->offset;
        switch (field->kind) {
            case KIND_U32:
                msgpack_pack_uint32 (&pk, *(const uint32_t *) at);
                break;
            case KIND_U64:
                msgpack_pack_uint64 (&pk, *(const uint64_t *) at);
                break;
            case KIND_BOOL:
                if (*(const bool *) at)
                    msgpack_pack_true (&pk);
                else
                    msgpack_pack_false (&pk);
                break;
            case KIND_ID:
            case KIND_STR: {
                const mesh_bytes_t *bytes = (const mesh_bytes_t *) at;
                msgpack_pack_str_with_body (&pk, bytes->data, bytes->size);
                break;
            }
            case KIND_BIN: {
                const mesh_bytes_t *bytes = (const mesh_bytes_t *) at;
                msgpack_pack_bin_with_body (&pk, bytes->data, bytes->size);
                break;
            }
        }
    }
    return 0;
}

int
mesh_audit_encode (const mesh_audit_record_t *record, mesh_buf_t *out)
{
    return s_encode (record, out, true);
}

//  Decoding -----------------------------------------------------------------

int
mesh_audit_decode (mesh_audit_record_t *record, const void *data, size_t size,
                   char *why, size_t why_size)
{
    mesh_mp_reader_t r = { data, (const uint8_t *) data + size };
    uint64_t count, version, len;
    const char *text;

    memset (record, 0, sizeof *record);
    if (!data || mesh_mp_read_array (&r, &count) < 0)
        return mesh_fail (why, why_size, "audit record: not a msgpack array");
    if (mesh_mp_read_raw (&r, false, &text, &len) < 0 || !mesh_memeq (text, len, SIGNATURE))
        return mesh_fail (why, why_size, "audit record: bad signature");
    if (mesh_mp_read_uint (&r, &version) < 0)
        return mesh_fail (why, why_size, "audit record: bad version");
    if (version != MESH_AUDIT_VERSION)
        return mesh_fail (why, why_size, "audit record: version %llu, expected %d",
                          (unsigned long long) version, MESH_AUDIT_VERSION);
    if (count != HEADER_ELEMENTS + AF__COUNT)
        return mesh_fail (why, why_size, "audit record: %llu elements, expected %d",
                          (unsigned long long) count, HEADER_ELEMENTS + AF__COUNT);

    for (size_t i = 0; i < AF__COUNT; i++) {
        const field_t *field = &s_fields [i];
        char *at = (char *) record + field->offset;
        uint64_t value;
        switch (field->kind) {
            case KIND_U32:
                if (mesh_mp_read_uint (&r, &value) < 0 || value > UINT32_MAX)
                    goto bad;
                *(uint32_t *) at = (uint32_t) value;
                break;
            case KIND_U64:
                if (mesh_mp_read_uint (&r, &value) < 0)
                    goto bad;
                *(uint64_t *) at = value;
                break;
            case KIND_BOOL:
                if (mesh_mp_read_bool (&r, (bool *) at) < 0)
                    goto bad;
                break;
            case KIND_ID:
            case KIND_STR:
            case KIND_BIN: {
                if (mesh_mp_read_raw (&r, field->kind == KIND_BIN, &text, &len) < 0)
                    goto bad;
                mesh_bytes_t bytes = { text, (size_t) len };
                if (!s_bytes_ok (field, &bytes))
                    goto bad;
                *(mesh_bytes_t *) at = bytes;
                break;
            }
        }
        continue;
bad:
        memset (record, 0, sizeof *record);
        return mesh_fail (why, why_size, "audit record: bad field %s", field->name);
    }
    if (r.at != r.end) {
        memset (record, 0, sizeof *record);
        return mesh_fail (why, why_size, "audit record: %zu trailing bytes",
                          (size_t) (r.end - r.at));
    }
    return 0;
}

//  Selftest -----------------------------------------------------------------

static mesh_bytes_t
s_text (const char *s)
{
    return (mesh_bytes_t) { s, strlen (s) };
}

//  True when every field of a and b holds the same value.
static bool
s_same (const mesh_audit_record_t *a, const mesh_audit_record_t *b)
{
    for (size_t i = 0; i < AF__COUNT; i++) {
        const field_t *field = &s_fields [i];
        const char *x = (const char *) a + field->offset;
        const char *y = (const char *) b + field->offset;
        switch (field->kind) {
            case KIND_U32:
                if (*(const uint32_t *) x != *(const uint32_t *) y)
                    return false;
                break;
            case KIND_U64:
                if (*(const uint64_t *) x != *(const uint64_t *) y)
                    return false;
                break;
            case KIND_BOOL:
                if (*(const bool *) x != *(const bool *) y)
                    return false;
                break;
            default: {
                const mesh_bytes_t *p = (const mesh_bytes_t *) x, *q = (const mesh_bytes_t *) y;
                if (p->size != q->size || (p->size && memcmp (p->data, q->data, p->size) != 0))
                    return false;
            }
        }
    }
    return true;
}

//  Decodes buf and checks the outcome: want 0 or -1, and on -1 that the
//  reason names what (NULL: anything).
static void
s_expect (const mesh_buf_t *buf, int want, const char *what)
{
    mesh_audit_record_t out;
    char why [128] = "";
    int rc = mesh_audit_decode (&out, mesh_buf_head (buf), mesh_buf_size (buf), why, sizeof why);
    if (rc != want || (want < 0 && what && !strstr (why, what))) {
        fprintf (stderr, "mesh_audit_test: want %d (%s), got %d: %s\n", want,
                 what ? what : "-", rc, why);
        assert (false);
    }
}

//  A record with every field set, id its request id
static mesh_audit_record_t
s_test_record (const char *id)
{
    static const char prompt [] = "{\"model\":\"deepseek-chat\",\"messages\":[]}\0binary\xff";
    static const char response [] = "{\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n"
                                    "{\"choices\":[],\"usage\":{}}";
    return (mesh_audit_record_t) {
        .id = s_text (id), .start_ms = 1780000000000ull, .end_ms = 1780000000250ull,
        .tenant = s_text ("acme"), .key_id = s_text ("key-1"),
        .model_requested = s_text ("deepseek-v4-flash"), .model = s_text ("deepseek-chat"),
        .endpoint = s_text ("https://api.deepseek.com/v1/chat/completions"),
        .region = s_text ("eu-west"), .params = s_text ("{\"temperature\":0.2,\"stream\":true}"),
        .stream = true, .status = 200, .outcome = s_text (MESH_AUDIT_OK),
        .error_code = s_text (""), .attempts = 2, .cache_hit = false, .queue_us = 1200,
        .ttft_us = 80000, .total_us = 250000, .upstream_ttfb_us = 78000,
        .prompt_tokens = 12, .completion_tokens = 34, .cached_tokens = 0,
        .reasoning_tokens = UINT64_MAX, .bytes_out = 4096,
        .prompt = { prompt, sizeof prompt - 1 }, .response = { response, sizeof response - 1 },
        .truncated = true
    };
}

//  A full record survives a round trip, field by field; truncated or
//  trailed frames are refused
static void
s_test_round_trip (const mesh_audit_record_t *given, mesh_buf_t *buf, mesh_buf_t *again)
{
    mesh_audit_record_t record = *given;
    char why [128];
    mesh_audit_record_t out;
    assert (mesh_audit_encode (&record, buf) == 0);
    assert (mesh_audit_decode (&out, buf->data, buf->len, why, sizeof why) == 0);
    assert (s_same (&record, &out));
    assert (out.prompt.data >= buf->data && out.prompt.data < buf->data + buf->len);
    //  Decoding points into the frame; re-encoding gives the same bytes
    assert (mesh_audit_encode (&out, again) == 0);
    assert (again->len == buf->len && memcmp (again->data, buf->data, buf->len) == 0);

    //  Encoding appends; a refused record appends nothing
    mesh_buf_reset (again);
    mesh_buf_append (again, "xy", 2);
    assert (mesh_audit_encode (&record, again) == 0 && again->len == buf->len + 2);
    mesh_audit_record_t bad = record;
    bad.tenant = s_text ("\xc3\x28");
    assert (mesh_audit_encode (&bad, again) == -1 && again->len == buf->len + 2);

    //  Every truncation is refused, never read past; so are trailing bytes
    for (size_t cut = 0; cut < buf->len; cut++)
        assert (mesh_audit_decode (&out, buf->data, cut, why, sizeof why) == -1);
    mesh_buf_append (buf, "\xc0", 1);
    s_expect (buf, -1, "trailing");
    assert (mesh_audit_decode (&out, NULL, 0, why, sizeof why) == -1);

    //  A minimal record: empty text, zero numbers, empty bytes from NULL
    mesh_audit_record_t empty = { .id = record.id };
    mesh_buf_reset (buf);
    assert (mesh_audit_encode (&empty, buf) == 0);
    assert (mesh_audit_decode (&out, buf->data, buf->len, why, sizeof why) == 0);
    assert (s_same (&empty, &out) && out.prompt.size == 0 && out.tenant.size == 0);
}

//  The limits of every field, each way
static void
s_test_limits (const mesh_audit_record_t *given, mesh_buf_t *buf)
{
    mesh_audit_record_t record = *given;
    //  Every text limit: the maximum passes both ways, one more fails both;
    //  frames past it (made without the checks) are refused by name
    char *big = malloc (8192);
    assert (big);
    memset (big, 'x', 8192);
    for (size_t i = 0; i < AF__COUNT; i++) {
        const field_t *field = &s_fields [i];
        if (field->kind != KIND_STR)
            continue;
        mesh_audit_record_t edge = record;
        mesh_bytes_t *text = (mesh_bytes_t *) ((char *) &edge + field->offset);
        *text = (mesh_bytes_t) { big, field->max };
        mesh_buf_reset (buf);
        assert (mesh_audit_encode (&edge, buf) == 0);
        s_expect (buf, 0, NULL);
        *text = (mesh_bytes_t) { big, field->max + 1 };
        mesh_buf_reset (buf);
        assert (mesh_audit_encode (&edge, buf) == -1 && buf->len == 0);
        assert (s_encode (&edge, buf, false) == 0);
        s_expect (buf, -1, field->name);
        //  Invalid UTF-8 and NUL, in every text field
        const char *hostile [] = { "\xc3\x28", "a\0b", "\xed\xa0\x80", "\xc0\xaf", "\xe2\x82",
                                   "\xf4\x90\x80\x80" };
        const size_t sizes [] = { 2, 3, 3, 2, 2, 4 };
        for (size_t h = 0; h < MESH_ARRAY_SIZE (hostile); h++) {
            *text = (mesh_bytes_t) { hostile [h], sizes [h] };
            mesh_buf_reset (buf);
            assert (mesh_audit_encode (&edge, buf) == -1);
            assert (s_encode (&edge, buf, false) == 0);
            s_expect (buf, -1, field->name);
        }
        //  Multi-byte UTF-8 up to the limit
        *text = s_text ("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80");
        mesh_buf_reset (buf);
        assert (mesh_audit_encode (&edge, buf) == 0);
        s_expect (buf, 0, NULL);
    }
    free (big);

    //  The request id: a ULID, nothing else
    const char *ids [] = { "", "01JD3Z8K4Q7W2X5N6M9P0R1S2", "01jd3z8k4q7w2x5n6m9p0r1s2t",
                           "01JD3Z8K4Q7W2X5N6M9P0R1S2I", "81JD3Z8K4Q7W2X5N6M9P0R1S2T" };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (ids); i++) {
        mesh_audit_record_t edge = record;
        edge.id = s_text (ids [i]);
        mesh_buf_reset (buf);
        assert (mesh_audit_encode (&edge, buf) == -1);
        assert (s_encode (&edge, buf, false) == 0);
        s_expect (buf, -1, "field id");
    }

    //  The bytes limit: 64 MiB passes, one byte more does not
    char *huge = calloc (1, MESH_AUDIT_MAX_TEXT + 1);
    assert (huge);
    mesh_audit_record_t edge = record;
    edge.response = (mesh_bytes_t) { huge, MESH_AUDIT_MAX_TEXT };
    mesh_buf_reset (buf);
    assert (mesh_audit_encode (&edge, buf) == 0);
    s_expect (buf, 0, NULL);
    edge.response.size++;
    mesh_buf_reset (buf);
    assert (mesh_audit_encode (&edge, buf) == -1 && buf->len == 0);
    assert (s_encode (&edge, buf, false) == 0);
    s_expect (buf, -1, "field response");
    free (huge);
    mesh_buf_free (buf);
    mesh_buf_init (buf);

    //  Bytes with a size but no data are a caller's bug, refused
    edge = record;
    edge.prompt = (mesh_bytes_t) { NULL, 3 };
    assert (mesh_audit_encode (&edge, buf) == -1 && buf->len == 0);
}

//  Hand-made frames: header, counts, kinds, sizes
static void
s_test_frames (const mesh_audit_record_t *record, mesh_buf_t *buf, mesh_buf_t *again)
{
    mesh_audit_record_t out;
    char why [128];
    mesh_buf_reset (again);
    assert (mesh_audit_encode (record, again) == 0);
    const unsigned char *good = (const unsigned char *) again->data;
    assert (good [0] == 0xdc && good [1] == 0 && good [2] == 30);
    assert (good [3] == 0xa2 && good [4] == 'S' && good [5] == 'A' && good [6] == 1);
    struct { const char *name; size_t at; const char *bytes; size_t size; const char *why; }
    patches [] = {
        { "version 2",        6, "\x02", 1, "version 2" },
        { "version as str",   6, "\xa1" "1", 2, "bad version" },
        { "signature SM",     5, "M", 1, "signature" },
        { "29 elements",      2, "\x1d", 1, "29 elements" },
        { "31 elements",      2, "\x1f", 1, "31 elements" },
        { "a map",            0, "\xde", 1, "array" },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (patches); i++) {
        mesh_buf_reset (buf);
        mesh_buf_append (buf, good, patches [i].at);
        mesh_buf_append (buf, patches [i].bytes, patches [i].size);
        size_t skip = patches [i].at + 1;
        mesh_buf_append (buf, good + skip, again->len - skip);
        s_expect (buf, -1, patches [i].why);
    }
    //  An array of 4G elements, a str of 4 GB: refused without reading on
    const unsigned char huge_array [] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
    assert (mesh_audit_decode (&out, huge_array, sizeof huge_array, why, sizeof why) == -1);
    const unsigned char huge_sig [] = { 0xdc, 0x00, 0x1e, 0xdb, 0xff, 0xff, 0xff, 0xff, 'S' };
    assert (mesh_audit_decode (&out, huge_sig, sizeof huge_sig, why, sizeof why) == -1);

    //  Wrong kinds, field by field: the id as bin, a number as str, bool
    //  as int, status past u32, a negative int, bytes as str
    size_t start_at = 7;                            //  the id's str header
    struct { const char *field; const char *bytes; size_t size; } kinds [] = {
        { "start_ms", "\xa1" "1", 2 },
        { "start_ms", "\xff", 1 },                  //  negative fixint
        { "start_ms", "\xd3\0\0\0\0\0\0\0\1", 9 },  //  int64
        { "start_ms", "\xcb\0\0\0\0\0\0\0\0", 9 },  //  float64
        { "start_ms", "\xc0", 1 },                  //  nil
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (kinds); i++) {
        //  [header][id][start_ms ...]: replace start_ms (uint64 0xcf + 8)
        size_t at = start_at + 1 + MESH_ID_LEN;
        assert (good [at] == 0xcf);
        mesh_buf_reset (buf);
        mesh_buf_append (buf, good, at);
        mesh_buf_append (buf, kinds [i].bytes, kinds [i].size);
        mesh_buf_append (buf, good + at + 9, again->len - at - 9);
        s_expect (buf, -1, kinds [i].field);
    }
    //  The id as bin
    mesh_buf_reset (buf);
    mesh_buf_append (buf, good, start_at);
    mesh_buf_append (buf, "\xc4\x1a", 2);
    mesh_buf_append (buf, good + start_at + 1, again->len - start_at - 1);
    s_expect (buf, -1, "field id");
}

//  Field by field through a record made of hand-picked kinds
static void
s_test_fields (const char *id, mesh_buf_t *buf, mesh_buf_t *again)
{
    //  Status past u32, bool as 1, prompt as str
    mesh_audit_record_t small = { .id = s_text (id) };
    mesh_buf_reset (again);
    assert (mesh_audit_encode (&small, again) == 0);
    //  Minimal record layout: header 7, id 27, start 1, end 1, 7 empty strs,
    //  stream 1, status 1, ...
    const unsigned char *good = (const unsigned char *) again->data;
    size_t stream_at = 7 + 27 + 2 + 7;
    assert (good [stream_at] == 0xc2 && good [stream_at + 1] == 0x00);
    struct { size_t at; const char *bytes; size_t size; const char *field; } swaps [] = {
        { stream_at,     "\x01", 1, "field stream" },
        { stream_at + 1, "\xcf\0\0\0\1\0\0\0\0", 9, "field status" },
        { stream_at + 1, "\xce\xff\xff\xff\xff", 5, NULL },          //  u32 max passes
        { stream_at + 1, "\xcf\0\0\0\0\0\0\0\xc8", 9, NULL },        //  non-minimal passes
        { 7 + 27 + 2, "\xd9\x00", 2, NULL },                         //  str8 "" passes
        { 7 + 27 + 2, "\xc4\x00", 2, "field tenant" },               //  bin for a str
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (swaps); i++) {
        mesh_buf_reset (buf);
        mesh_buf_append (buf, good, swaps [i].at);
        mesh_buf_append (buf, swaps [i].bytes, swaps [i].size);
        mesh_buf_append (buf, good + swaps [i].at + 1, again->len - swaps [i].at - 1);
        s_expect (buf, swaps [i].field ? -1 : 0, swaps [i].field);
    }
    //  The prompt (bin) sent as a str: the last three fields are c4 00 c4 00 c2
    size_t tail = again->len - 5;
    assert (memcmp (good + tail, "\xc4\x00\xc4\x00\xc2", 5) == 0);
    mesh_buf_reset (buf);
    mesh_buf_append (buf, good, tail);
    mesh_buf_append (buf, "\xa0\xc4\x00\xc2", 4);
    s_expect (buf, -1, "field prompt");
    //  A bin that declares more than the frame holds
    mesh_buf_reset (buf);
    mesh_buf_append (buf, good, tail);
    mesh_buf_append (buf, "\xc6\x7f\xff\xff\xff", 5);
    s_expect (buf, -1, "field prompt");
    //  The truncated flag as nil
    mesh_buf_reset (buf);
    mesh_buf_append (buf, good, again->len - 1);
    mesh_buf_append (buf, "\xc0", 1);
    s_expect (buf, -1, "field truncated");
}

void
mesh_audit_test (bool verbose)
{
    (void) verbose;
    char id [MESH_ID_LEN + 1];
    mesh_id_new (id);
    mesh_buf_t buf, again;
    mesh_buf_init (&buf);
    mesh_buf_init (&again);
    mesh_audit_record_t record = s_test_record (id);
    s_test_round_trip (&record, &buf, &again);
    s_test_limits (&record, &buf);
    s_test_frames (&record, &buf, &again);
    s_test_fields (id, &buf, &again);
    mesh_buf_free (&buf);
    mesh_buf_free (&again);
}
