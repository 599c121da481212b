/*  mesh_msg: encoder (msgpack-c packer) and strict decoder for the schema
    in mesh_msg.def.                                                         */
#include "mesh_msg.h"
#include "mesh_loop.h"
#include "mesh_mp.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef enum { KIND_U32, KIND_U64, KIND_BOOL, KIND_STR, KIND_BIN } kind_t;

//  Field numbers: MF_ATTEMPT, MF_TOKEN, ...
enum {
#define F(NAME, kind, member, max) MF_##NAME,
    MESH_FIELDS (F)
#undef F
    MF__COUNT
};

typedef struct {
    const char *name;
    kind_t kind;
    size_t offset;
    size_t max;
} field_t;

static const field_t s_fields [MF__COUNT] = {
#define F(NAME, kind, member, max) \
    [MF_##NAME] = { #NAME, KIND_##kind, offsetof (mesh_msg_t, member), max },
    MESH_FIELDS (F)
#undef F
};

//  Each message's field list, in wire order
#define F(x) MF_##x,
#define M(NAME, code, id, fields) static const uint8_t s_list_##NAME [] = { fields };
MESH_MESSAGES (M)
#undef M
#undef F

typedef struct {
    const char *name;
    bool has_id;
    const uint8_t *fields;
    size_t count;
} message_t;

enum { NONE = 0, REQ = 1 };
static const message_t s_messages [MESH_MSG_MAX] = {
#define F(x)
#define M(NAME, code, id, fields) \
    [code] = { #NAME, id, s_list_##NAME, sizeof s_list_##NAME },
    MESH_MESSAGES (M)
#undef M
#undef F
};

#define HEADER_ELEMENTS 4

const char *
mesh_msg_name (uint32_t type)
{
    return type < MESH_MSG_MAX && s_messages [type].name ? s_messages [type].name : "?";
}

void
mesh_msg_init (mesh_msg_t *msg, uint32_t type, const char *id)
{
    memset (msg, 0, offsetof (mesh_msg_t, attempt));
    msg->type = type;
    if (id)
        snprintf (msg->id, sizeof msg->id, "%s", id);
    //  Fields: zero only what this type uses, the struct is large
    const message_t *def = &s_messages [type];
    assert (type < MESH_MSG_MAX && def->name);
    for (size_t i = 0; i < def->count; i++) {
        const field_t *field = &s_fields [def->fields [i]];
        char *at = (char *) msg + field->offset;
        switch (field->kind) {
            case KIND_U32:  *(uint32_t *) at = 0; break;
            case KIND_U64:  *(uint64_t *) at = 0; break;
            case KIND_BOOL: *(bool *) at = false; break;
            case KIND_STR:  *at = 0; break;
            case KIND_BIN:  *(mesh_bytes_t *) at = (mesh_bytes_t) { NULL, 0 }; break;
        }
    }
}

//  Encoding -----------------------------------------------------------------

static int
s_write (void *data, const char *buf, size_t len)
{
    mesh_buf_append (data, buf, len);
    return 0;
}

int
mesh_msg_encode (const mesh_msg_t *msg, mesh_buf_t *out)
{
    if (msg->type >= MESH_MSG_MAX || !s_messages [msg->type].name)
        return -1;
    const message_t *def = &s_messages [msg->type];
    size_t id_len = strlen (msg->id);
    if (def->has_id ? !mesh_id_valid (msg->id, id_len) : id_len != 0)
        return -1;
    size_t start = out->len;
    msgpack_packer pk;
    msgpack_packer_init (&pk, out, s_write);
    msgpack_pack_array (&pk, HEADER_ELEMENTS + def->count);
    msgpack_pack_str_with_body (&pk, MESH_PROTO_SIGNATURE, 2);
    msgpack_pack_unsigned_int (&pk, MESH_PROTO_VERSION);
    msgpack_pack_unsigned_int (&pk, msg->type);
    msgpack_pack_str_with_body (&pk, msg->id, id_len);
    for (size_t i = 0; i < def->count; i++) {
        const field_t *field = &s_fields [def->fields [i]];
        const char *at = (const char *) msg + field->offset;
        switch (field->kind) {
            case KIND_U32:
                if (field->max && *(const uint32_t *) at > field->max)
                    goto bad;
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
            case KIND_STR: {
                size_t len = strnlen (at, field->max + 1);
                if (len > field->max)
                    goto bad;
                msgpack_pack_str_with_body (&pk, at, len);
                break;
            }
            case KIND_BIN: {
                const mesh_bytes_t *bytes = (const mesh_bytes_t *) at;
                if (bytes->size > field->max)
                    goto bad;
                msgpack_pack_bin_with_body (&pk, bytes->data, bytes->size);
                break;
            }
        }
    }
    return 0;
bad:
    out->len = start;
    return -1;
}

//  Decoding -----------------------------------------------------------------

int
mesh_msg_decode (mesh_msg_t *msg, const void *data, size_t size, char *why, size_t why_size)
{
    mesh_mp_reader_t r = { data, (const uint8_t *) data + size };
    uint64_t count, version, type;
    const char *text;
    uint64_t len;

    if (mesh_mp_read_array (&r, &count) < 0)
        return mesh_fail (why, why_size, "not a msgpack array");
    if (mesh_mp_read_raw (&r, false, &text, &len) < 0
    ||  !mesh_memeq (text, len, MESH_PROTO_SIGNATURE))
        return mesh_fail (why, why_size, "bad signature");
    if (mesh_mp_read_uint (&r, &version) < 0)
        return mesh_fail (why, why_size, "bad version");
    if (version != MESH_PROTO_VERSION)
        return mesh_fail (why, why_size, "protocol version %llu, expected %d",
                          (unsigned long long) version, MESH_PROTO_VERSION);
    if (mesh_mp_read_uint (&r, &type) < 0 || type >= MESH_MSG_MAX || !s_messages [type].name)
        return mesh_fail (why, why_size, "unknown message type");
    const message_t *def = &s_messages [type];
    if (count != HEADER_ELEMENTS + def->count)
        return mesh_fail (why, why_size, "%s: %llu elements, expected %zu", def->name,
                          (unsigned long long) count, HEADER_ELEMENTS + def->count);
    mesh_msg_init (msg, (uint32_t) type, NULL);
    if (mesh_mp_read_raw (&r, false, &text, &len) < 0
    ||  (def->has_id ? !mesh_id_valid (text, len) : len != 0))
        return mesh_fail (why, why_size, "%s: bad request id", def->name);
    memcpy (msg->id, text, len);
    msg->id [len] = 0;

    for (size_t i = 0; i < def->count; i++) {
        const field_t *field = &s_fields [def->fields [i]];
        char *at = (char *) msg + field->offset;
        uint64_t value;
        switch (field->kind) {
            case KIND_U32:
                if (mesh_mp_read_uint (&r, &value) < 0 || value > (field->max ? field->max : UINT32_MAX))
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
            case KIND_STR:
                if (mesh_mp_read_raw (&r, false, &text, &len) < 0 || len > field->max
                ||  !mesh_utf8_valid (text, len))
                    goto bad;
                memcpy (at, text, len);
                at [len] = 0;
                break;
            case KIND_BIN:
                if (mesh_mp_read_raw (&r, true, &text, &len) < 0 || len > field->max)
                    goto bad;
                *(mesh_bytes_t *) at = (mesh_bytes_t) { text, len };
                break;
        }
        continue;
bad:
        return mesh_fail (why, why_size, "%s: bad field %s", def->name, field->name);
    }
    if (r.at != r.end)
        return mesh_fail (why, why_size, "%s: %zu trailing bytes", def->name,
                          (size_t) (r.end - r.at));
    return 0;
}

//  Batches ------------------------------------------------------------------

int
mesh_msg_batch_add (mesh_buf_t *batch, const mesh_msg_t *msg)
{
    size_t at = batch->len;
    mesh_buf_append (batch, "\0\0\0\0", 4);
    if (mesh_msg_encode (msg, batch) < 0) {
        batch->len = at;
        return -1;
    }
    uint32_t len = (uint32_t) (batch->len - at - 4);
    unsigned char prefix [4] = { (unsigned char) len, (unsigned char) (len >> 8),
                                 (unsigned char) (len >> 16), (unsigned char) (len >> 24) };
    memcpy (batch->data + at, prefix, 4);
    return 0;
}

int
mesh_msg_batch_next (mesh_bytes_t data, size_t *offset, mesh_bytes_t *part)
{
    if (*offset == data.size)
        return 0;
    if (data.size - *offset < 4)
        return -1;
    const unsigned char *p = (const unsigned char *) data.data + *offset;
    size_t len = (size_t) p [0] | (size_t) p [1] << 8 | (size_t) p [2] << 16 | (size_t) p [3] << 24;
    if (len > data.size - *offset - 4)
        return -1;
    *part = (mesh_bytes_t) { (const char *) p + 4, len };
    *offset += 4 + len;
    return 1;
}

//  ZeroMQ -------------------------------------------------------------------

static __thread mesh_buf_t s_send_buf;

int
mesh_msg_send_batch (void *socket, const mesh_buf_t *batch, size_t count, const void *identity,
                     size_t identity_size, int flags)
{
    if (count == 0)
        return 0;
    if (identity && zmq_send (socket, identity, identity_size, flags | ZMQ_SNDMORE) < 0)
        return -1;
    int rc;
    if (count == 1)
        rc = zmq_send (socket, mesh_buf_head (batch) + 4, mesh_buf_size (batch) - 4, flags);
    else {
        mesh_msg_t msg;
        mesh_msg_init (&msg, MESH_MSG_BATCH, NULL);
        msg.data = (mesh_bytes_t) { mesh_buf_head (batch), mesh_buf_size (batch) };
        mesh_buf_reset (&s_send_buf);
        if (mesh_msg_encode (&msg, &s_send_buf) < 0) {
            errno = EINVAL;
            return -1;
        }
        rc = zmq_send (socket, mesh_buf_head (&s_send_buf), mesh_buf_size (&s_send_buf), flags);
        mesh_buf_trim (&s_send_buf, 1 << 20);
    }
    if (rc < 0)
        return -1;
    mesh_loop_zmq_sent (socket);
    return 0;
}

int
mesh_msg_send (void *socket, const mesh_msg_t *msg, const void *identity,
               size_t identity_size, int flags)
{
    mesh_buf_reset (&s_send_buf);
    if (mesh_msg_encode (msg, &s_send_buf) < 0) {
        errno = EINVAL;
        return -1;
    }
    if (identity && zmq_send (socket, identity, identity_size, flags | ZMQ_SNDMORE) < 0)
        return -1;
    if (zmq_send (socket, mesh_buf_head (&s_send_buf), mesh_buf_size (&s_send_buf), flags) < 0)
        return -1;
    mesh_loop_zmq_sent (socket);
    //  Keep the buffer from pinning a large body's worth of memory
    mesh_buf_trim (&s_send_buf, 1 << 20);
    return 0;
}

//  Drops the rest of a multipart message.
static void
s_skip_more (void *socket, zmq_msg_t *frame)
{
    while (zmq_msg_more (frame)) {
        zmq_msg_close (frame);
        zmq_msg_init (frame);
        if (zmq_msg_recv (frame, socket, ZMQ_DONTWAIT) < 0)
            break;
    }
}

int
mesh_msg_recv (void *socket, mesh_inbox_t *inbox, bool router, char *why, size_t why_size)
{
    inbox->identity_size = 0;
    inbox->source_fd = -1;
    zmq_msg_init (&inbox->frame);
    if (zmq_msg_recv (&inbox->frame, socket, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&inbox->frame);
        return 0;
    }
    if (router) {
        size_t size = zmq_msg_size (&inbox->frame);
        if (!zmq_msg_more (&inbox->frame) || size > sizeof inbox->identity) {
            s_skip_more (socket, &inbox->frame);
            zmq_msg_close (&inbox->frame);
            return mesh_fail (why, why_size, "message without a body after the identity");
        }
        memcpy (inbox->identity, zmq_msg_data (&inbox->frame), size);
        inbox->identity_size = size;
        zmq_msg_close (&inbox->frame);
        zmq_msg_init (&inbox->frame);
        if (zmq_msg_recv (&inbox->frame, socket, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&inbox->frame);
            return mesh_fail (why, why_size, "identity without a body");
        }
    }
    if (zmq_msg_more (&inbox->frame)) {
        s_skip_more (socket, &inbox->frame);
        zmq_msg_close (&inbox->frame);
        return mesh_fail (why, why_size, "more than one body frame");
    }
    inbox->source_fd = zmq_msg_get (&inbox->frame, ZMQ_SRCFD);
    if (mesh_msg_decode (&inbox->msg, zmq_msg_data (&inbox->frame),
                         zmq_msg_size (&inbox->frame), why, why_size) < 0) {
        zmq_msg_close (&inbox->frame);
        return -1;
    }
    return 1;
}

void
mesh_inbox_close (mesh_inbox_t *inbox)
{
    zmq_msg_close (&inbox->frame);
}

//  Selftest -----------------------------------------------------------------

void
mesh_msg_test (bool verbose)
{
    (void) verbose;
    char id [MESH_ID_LEN + 1];
    mesh_id_new (id);
    mesh_buf_t buf;
    mesh_buf_init (&buf);

    //  A REQUEST survives a round trip, bytes and all
    mesh_msg_t msg, out;
    mesh_msg_init (&msg, MESH_MSG_REQUEST, id);
    msg.attempt = 2;
    msg.token = 0x1122334455667788ull;
    strcpy (msg.reply_to, "tcp://127.0.0.1:5559");
    msg.kind = MESH_KIND_CHAT;
    unsigned char hash [32];
    memset (hash, 0xab, sizeof hash);
    msg.key_hash = (mesh_bytes_t) { (const char *) hash, 32 };
    strcpy (msg.model, "deepseek-chat");
    msg.stream = true;
    const char *body = "{\"model\":\"deepseek-chat\"}";
    msg.body = (mesh_bytes_t) { body, strlen (body) };
    assert (mesh_msg_encode (&msg, &buf) == 0);
    char why [128];
    assert (mesh_msg_decode (&out, buf.data, buf.len, why, sizeof why) == 0);
    assert (out.type == MESH_MSG_REQUEST);
    assert (mesh_streq (out.id, id));
    assert (out.attempt == 2 && out.token == 0x1122334455667788ull);
    assert (mesh_streq (out.reply_to, "tcp://127.0.0.1:5559"));
    assert (out.stream && out.kind == MESH_KIND_CHAT);
    assert (out.key_hash.size == 32 && memcmp (out.key_hash.data, hash, 32) == 0);
    assert (out.body.size == strlen (body) && memcmp (out.body.data, body, out.body.size) == 0);
    assert (mesh_streq (mesh_msg_name (out.type), "REQUEST"));

    //  Every truncation of a valid message is rejected, never read past
    for (size_t cut = 0; cut < buf.len; cut++)
        assert (mesh_msg_decode (&out, buf.data, cut, why, sizeof why) == -1);
    //  Trailing bytes are rejected
    mesh_buf_append (&buf, "x", 1);
    assert (mesh_msg_decode (&out, buf.data, buf.len, why, sizeof why) == -1);
    assert (strstr (why, "trailing"));

    //  A message type without a request id
    mesh_buf_reset (&buf);
    mesh_msg_init (&msg, MESH_MSG_HEARTBEAT, NULL);
    strcpy (msg.sender, "connector-1");
    msg.inflight = 7;
    assert (mesh_msg_encode (&msg, &buf) == 0);
    assert (mesh_msg_decode (&out, buf.data, buf.len, why, sizeof why) == 0);
    assert (out.type == MESH_MSG_HEARTBEAT && out.inflight == 7 && out.id [0] == 0);

    //  The encoder refuses what the schema forbids
    mesh_msg_init (&msg, MESH_MSG_CHUNK, "not-an-id");
    assert (mesh_msg_encode (&msg, &buf) == -1);

    //  Hostile inputs: wrong version, huge declared sizes, wrong kinds
    const unsigned char version2 [] = { 0x94, 0xa2, 'S', 'M', MESH_PROTO_VERSION + 1, 0x0a, 0xa0 };
    assert (mesh_msg_decode (&out, version2, sizeof version2, why, sizeof why) == -1);
    assert (strstr (why, "version"));
    const unsigned char huge_array [] = { 0xdd, 0xff, 0xff, 0xff, 0xff };
    assert (mesh_msg_decode (&out, huge_array, sizeof huge_array, why, sizeof why) == -1);
    const unsigned char huge_str [] = { 0x97, 0xa2, 'S', 'M', MESH_PROTO_VERSION, 0x0a, 0xa0, 0xdb,
                                        0xff, 0xff, 0xff, 0xff };
    assert (mesh_msg_decode (&out, huge_str, sizeof huge_str, why, sizeof why) == -1);
    const unsigned char negative [] = { 0x97, 0xa2, 'S', 'M', MESH_PROTO_VERSION, 0x0a, 0xa0, 0xa1,
                                        'c', 0x05, 0xff };
    assert (mesh_msg_decode (&out, negative, sizeof negative, why, sizeof why) == -1);
    assert (strstr (why, "INFLIGHT"));
    //  Invalid UTF-8 in a string field
    const unsigned char bad_utf8 [] = { 0x97, 0xa2, 'S', 'M', MESH_PROTO_VERSION, 0x0a, 0xa0, 0xa2,
                                        0xc3, 0x28, 0x00, 0x00 };
    assert (mesh_msg_decode (&out, bad_utf8, sizeof bad_utf8, why, sizeof why) == -1);
    assert (strstr (why, "SENDER"));
    const unsigned char good [] = { 0x97, 0xa2, 'S', 'M', MESH_PROTO_VERSION, 0x0a, 0xa0, 0xa2,
                                    0xc3, 0xa9, 0x03, 0x05 };
    assert (mesh_msg_decode (&out, good, sizeof good, why, sizeof why) == 0);
    assert (out.inflight == 5 && out.capacity == 3 && mesh_streq (out.sender, "\xc3\xa9"));
    assert (mesh_utf8_valid ("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
    assert (!mesh_utf8_valid ("\xed\xa0\x80", 3));       //  surrogate
    assert (!mesh_utf8_valid ("\xc0\xaf", 2));           //  overlong
    assert (!mesh_utf8_valid ("\xe2\x82", 2));           //  truncated

    //  Over ZeroMQ, through a ROUTER: identity and body arrive together
    void *ctx = zmq_ctx_new ();
    void *router = zmq_socket (ctx, ZMQ_ROUTER);
    void *dealer = zmq_socket (ctx, ZMQ_DEALER);
    zmq_setsockopt (dealer, ZMQ_ROUTING_ID, "conn-1", 6);
    assert (zmq_bind (router, "inproc://mesh-msg-test") == 0);
    assert (zmq_connect (dealer, "inproc://mesh-msg-test") == 0);
    mesh_msg_init (&msg, MESH_MSG_READY, NULL);
    strcpy (msg.sender, "conn-1");
    msg.capacity = 100;
    assert (mesh_msg_send (dealer, &msg, NULL, 0, 0) == 0);
    zmq_send (dealer, "garbage", 7, 0);
    mesh_inbox_t inbox;
    int rc;
    while ((rc = mesh_msg_recv (router, &inbox, true, why, sizeof why)) == 0)
        zmq_poll (NULL, 0, 1);
    assert (rc == 1);
    assert (inbox.identity_size == 6 && memcmp (inbox.identity, "conn-1", 6) == 0);
    assert (inbox.msg.type == MESH_MSG_READY && inbox.msg.capacity == 100);
    mesh_inbox_close (&inbox);
    while ((rc = mesh_msg_recv (router, &inbox, true, why, sizeof why)) == 0)
        zmq_poll (NULL, 0, 1);
    assert (rc == -1);
    zmq_close (router);
    zmq_close (dealer);
    zmq_ctx_term (ctx);

    //  Batches: messages behind their lengths, read back in order; lengths
    //  that do not add up are refused
    mesh_buf_t batch;
    mesh_buf_init (&batch);
    mesh_msg_t one;
    mesh_msg_init (&one, MESH_MSG_HEARTBEAT, NULL);
    assert (mesh_msg_batch_add (&batch, &one) == 0);
    mesh_msg_init (&one, MESH_MSG_CHUNK, id);
    one.data = (mesh_bytes_t) { "xyz", 3 };
    assert (mesh_msg_batch_add (&batch, &one) == 0);
    mesh_msg_init (&one, MESH_MSG_ERROR, id);
    one.status = 1000;                  //  past its maximum: nothing added
    size_t before = mesh_buf_size (&batch);
    assert (mesh_msg_batch_add (&batch, &one) == -1 && mesh_buf_size (&batch) == before);
    mesh_bytes_t all = { mesh_buf_head (&batch), mesh_buf_size (&batch) }, part;
    size_t offset = 0;
    mesh_msg_t back;
    assert (mesh_msg_batch_next (all, &offset, &part) == 1);
    assert (mesh_msg_decode (&back, part.data, part.size, why, sizeof why) == 0 && back.type == MESH_MSG_HEARTBEAT);
    assert (mesh_msg_batch_next (all, &offset, &part) == 1);
    assert (mesh_msg_decode (&back, part.data, part.size, why, sizeof why) == 0 && back.type == MESH_MSG_CHUNK);
    assert (back.data.size == 3 && memcmp (back.data.data, "xyz", 3) == 0);
    assert (mesh_msg_batch_next (all, &offset, &part) == 0);
    mesh_bytes_t cut = { all.data, all.size - 1 };
    offset = 0;
    assert (mesh_msg_batch_next (cut, &offset, &part) == 1);
    assert (mesh_msg_batch_next (cut, &offset, &part) == -1);
    mesh_bytes_t stub = { all.data, 3 };
    offset = 0;
    assert (mesh_msg_batch_next (stub, &offset, &part) == -1);
    mesh_buf_free (&batch);

    //  Numbers past their maximum: refused both ways (a status of 2^31
    //  would index past a table of status classes)
    mesh_msg_t big;
    mesh_msg_init (&big, MESH_MSG_ERROR, id);
    big.attempt = 1;
    big.status = 600;
    mesh_buf_reset (&buf);
    assert (mesh_msg_encode (&big, &buf) == -1);
    big.status = 599;
    assert (mesh_msg_encode (&big, &buf) == 0);
    //  The same bytes with the status (cd 02 57) made 2^31 (ce 80 00 00 00)
    mesh_buf_t forged;
    mesh_buf_init (&forged);
    const char *at = memmem (mesh_buf_head (&buf), mesh_buf_size (&buf), "\xcd\x02\x57", 3);
    assert (at);
    mesh_buf_append (&forged, mesh_buf_head (&buf), (size_t) (at - mesh_buf_head (&buf)));
    mesh_buf_append (&forged, "\xce\x80\x00\x00\x00", 5);
    mesh_buf_append (&forged, at + 3, (size_t) (mesh_buf_head (&buf) + mesh_buf_size (&buf) - at - 3));
    mesh_msg_t decoded;
    assert (mesh_msg_decode (&decoded, mesh_buf_head (&forged), mesh_buf_size (&forged), why, sizeof why) == -1);
    assert (strcasestr (why, "status"));
    mesh_buf_free (&forged);
    mesh_buf_free (&buf);
}
