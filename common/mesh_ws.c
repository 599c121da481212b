/*  mesh_ws: WebSocket frame reader and writer.                               */
#include "mesh_ws.h"
#include "mesh_util.h"

#include <assert.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

void
mesh_ws_reader_init (mesh_ws_reader_t *self, bool expect_masked, uint64_t max_message_bytes)
{
    memset (self, 0, sizeof *self);
    self->expect_masked = expect_masked;
    self->max_message_bytes = max_message_bytes;
}

static bool
s_is_control (uint8_t opcode)
{
    return opcode & 0x8;
}

int64_t
mesh_ws_read (mesh_ws_reader_t *self, uint8_t *buf, size_t len, mesh_ws_fn *fn, void *arg)
{
    size_t at = 0;
    while (at < len) {
        if (!self->in_frame) {
            //  Frame header
            size_t avail = len - at;
            if (avail < 2)
                break;
            uint8_t b0 = buf [at], b1 = buf [at + 1];
            uint8_t opcode = b0 & 0x0f;
            bool fin = b0 & 0x80;
            bool masked = b1 & 0x80;
            if (b0 & 0x70)
                return -1;                          //  reserved bits: no extensions
            if (masked != self->expect_masked)
                return -1;
            if (opcode != MESH_WS_CONTINUATION && opcode != MESH_WS_TEXT
            &&  opcode != MESH_WS_BINARY && opcode != MESH_WS_CLOSE
            &&  opcode != MESH_WS_PING && opcode != MESH_WS_PONG)
                return -1;
            size_t header = 2;
            uint64_t length = b1 & 0x7f;
            if (length == 126)
                header += 2;
            else
            if (length == 127)
                header += 8;
            if (masked)
                header += 4;
            if (avail < header)
                break;
            if (length == 126)
                length = (uint64_t) buf [at + 2] << 8 | buf [at + 3];
            else
            if (length == 127) {
                length = 0;
                for (int i = 0; i < 8; i++)
                    length = length << 8 | buf [at + 2 + i];
                if (length >> 63)
                    return -1;
            }
            if (s_is_control (opcode)) {
                if (!fin || length > 125)
                    return -1;
                //  Control frames are reported whole: wait for all of it
                if (avail < header + length)
                    break;
            }
            else
            if (opcode == MESH_WS_CONTINUATION) {
                if (!self->in_message)
                    return -1;
            }
            else
            if (self->in_message)
                return -1;                          //  new message inside a fragmented one
            if (masked)
                memcpy (self->mask, buf + at + header - 4, 4);
            at += header;
            self->opcode = opcode;
            self->fin = fin;
            self->masked = masked;
            self->remaining = length;
            self->mask_offset = 0;
            self->in_frame = true;

            if (s_is_control (opcode)) {
                uint8_t *payload = buf + at;
                if (masked)
                    mesh_ws_mask (payload, (size_t) length, self->mask, 0);
                at += (size_t) length;
                self->in_frame = false;
                int event = opcode == MESH_WS_PING ? MESH_WS_EV_PING
                          : opcode == MESH_WS_PONG ? MESH_WS_EV_PONG : MESH_WS_EV_CLOSE;
                if (event == MESH_WS_EV_CLOSE && length == 1)
                    return -1;
                if (fn (arg, event, payload, (size_t) length) < 0)
                    return -1;
                continue;
            }
            if (opcode != MESH_WS_CONTINUATION) {
                self->in_message = true;
                self->message_bytes = 0;
            }
            self->message_bytes += length;
            if (self->message_bytes > self->max_message_bytes)
                return -1;
        }
        //  Payload of a data frame: hand over what we have
        size_t n = (size_t) MESH_MIN ((uint64_t) (len - at), self->remaining);
        if (n > 0) {
            if (self->masked)
                mesh_ws_mask (buf + at, n, self->mask, self->mask_offset);
            self->mask_offset += n;
            self->remaining -= n;
            if (fn (arg, MESH_WS_EV_DATA, buf + at, n) < 0)
                return -1;
            at += n;
        }
        if (self->remaining == 0) {
            self->in_frame = false;
            if (self->fin) {
                self->in_message = false;
                if (fn (arg, MESH_WS_EV_MESSAGE_END, NULL, 0) < 0)
                    return -1;
            }
        }
    }
    return (int64_t) at;
}

size_t
mesh_ws_header (uint8_t *out, int opcode, bool fin, const uint8_t *mask, uint64_t length)
{
    size_t n = 0;
    out [n++] = (uint8_t) ((fin ? 0x80 : 0) | (opcode & 0x0f));
    uint8_t mask_bit = mask ? 0x80 : 0;
    if (length < 126)
        out [n++] = mask_bit | (uint8_t) length;
    else
    if (length <= 0xffff) {
        out [n++] = mask_bit | 126;
        out [n++] = (uint8_t) (length >> 8);
        out [n++] = (uint8_t) length;
    }
    else {
        out [n++] = mask_bit | 127;
        for (int i = 7; i >= 0; i--)
            out [n++] = (uint8_t) (length >> (i * 8));
    }
    if (mask) {
        memcpy (out + n, mask, 4);
        n += 4;
    }
    return n;
}

void
mesh_ws_mask (uint8_t *data, size_t len, const uint8_t mask [4], uint64_t offset)
{
    for (size_t i = 0; i < len; i++)
        data [i] ^= mask [(offset + i) & 3];
}

void
mesh_ws_accept_key (const char *key, size_t key_len, char out [29])
{
    static const char guid [] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest [SHA_DIGEST_LENGTH];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new ();
    assert (ctx);
    EVP_DigestInit_ex (ctx, EVP_sha1 (), NULL);
    EVP_DigestUpdate (ctx, key, key_len);
    EVP_DigestUpdate (ctx, guid, sizeof guid - 1);
    EVP_DigestFinal_ex (ctx, digest, NULL);
    EVP_MD_CTX_free (ctx);
    EVP_EncodeBlock ((unsigned char *) out, digest, SHA_DIGEST_LENGTH);
}

//  Selftest -----------------------------------------------------------------

typedef struct {
    char data [4096];
    size_t len;
    int messages, pings, closes;
} test_sink_t;

static int
s_test_sink (void *arg, int event, uint8_t *data, size_t len)
{
    test_sink_t *sink = arg;
    if (event == MESH_WS_EV_DATA) {
        memcpy (sink->data + sink->len, data, len);
        sink->len += len;
    }
    else
    if (event == MESH_WS_EV_MESSAGE_END)
        sink->messages++;
    else
    if (event == MESH_WS_EV_PING)
        sink->pings++;
    else
    if (event == MESH_WS_EV_CLOSE)
        sink->closes++;
    return 0;
}

void
mesh_ws_test (bool verbose)
{
    (void) verbose;
    //  RFC 6455 section 1.3's example
    char accept [29];
    mesh_ws_accept_key ("dGhlIHNhbXBsZSBub25jZQ==", 24, accept);
    assert (strcmp (accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);

    //  A stream: fragmented message with a ping in the middle, a 300-byte
    //  message (16-bit length), a masked frame is refused by a client
    uint8_t wire [1024];
    size_t n = 0;
    n += mesh_ws_header (wire + n, MESH_WS_BINARY, false, NULL, 5);
    memcpy (wire + n, "data:", 5); n += 5;
    n += mesh_ws_header (wire + n, MESH_WS_PING, true, NULL, 2);
    memcpy (wire + n, "hi", 2); n += 2;
    n += mesh_ws_header (wire + n, MESH_WS_CONTINUATION, true, NULL, 3);
    memcpy (wire + n, " x\n", 3); n += 3;
    n += mesh_ws_header (wire + n, MESH_WS_TEXT, true, NULL, 300);
    memset (wire + n, 'y', 300); n += 300;
    n += mesh_ws_header (wire + n, MESH_WS_CLOSE, true, NULL, 2);
    wire [n++] = 0x03; wire [n++] = 0xe8;

    for (size_t step = 1; step <= n; step++) {
        mesh_ws_reader_t reader;
        mesh_ws_reader_init (&reader, false, 1 << 20);
        test_sink_t sink = { .len = 0 };
        uint8_t work [1024];
        size_t have = 0, fed = 0;
        while (fed < n || have > 0) {
            size_t take = MESH_MIN (step, n - fed);
            memcpy (work + have, wire + fed, take);
            have += take;
            fed += take;
            int64_t used = mesh_ws_read (&reader, work, have, s_test_sink, &sink);
            assert (used >= 0);
            memmove (work, work + used, have - (size_t) used);
            have -= (size_t) used;
            if (take == 0)
                break;
        }
        assert (have == 0);
        assert (sink.len == 308 && memcmp (sink.data, "data: x\n", 8) == 0);
        assert (sink.messages == 2 && sink.pings == 1 && sink.closes == 1);
    }

    //  Masked frames, read by a server; the payload comes out unmasked
    uint8_t mask [4] = { 1, 2, 3, 4 };
    n = mesh_ws_header (wire, MESH_WS_TEXT, true, mask, 5);
    memcpy (wire + n, "hello", 5);
    mesh_ws_mask (wire + n, 5, mask, 0);
    n += 5;
    mesh_ws_reader_t reader;
    mesh_ws_reader_init (&reader, true, 1 << 20);
    test_sink_t sink = { .len = 0 };
    assert (mesh_ws_read (&reader, wire, n, s_test_sink, &sink) == (int64_t) n);
    assert (sink.len == 5 && memcmp (sink.data, "hello", 5) == 0);
    mesh_ws_reader_init (&reader, false, 1 << 20);
    assert (mesh_ws_read (&reader, wire, n, s_test_sink, &sink) == -1);

    //  Protocol errors
    const uint8_t rsv [] = { 0xc1, 0x00 };
    const uint8_t bad_opcode [] = { 0x83, 0x00 };
    const uint8_t long_ping [] = { 0x89, 0x7e, 0x00, 0x80 };
    const uint8_t frag_ping [] = { 0x09, 0x00 };
    const uint8_t orphan [] = { 0x80, 0x00 };
    const uint8_t huge [] = { 0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0 };
    const uint8_t *bad [] = { rsv, bad_opcode, long_ping, frag_ping, orphan, huge };
    const size_t bad_len [] = { 2, 2, 4, 2, 2, 10 };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++) {
        uint8_t copy [16];
        memcpy (copy, bad [i], bad_len [i]);
        mesh_ws_reader_init (&reader, false, 1 << 20);
        assert (mesh_ws_read (&reader, copy, bad_len [i], s_test_sink, &sink) == -1);
    }
    //  A message over the limit
    n = mesh_ws_header (wire, MESH_WS_BINARY, true, NULL, 100);
    mesh_ws_reader_init (&reader, false, 50);
    assert (mesh_ws_read (&reader, wire, n, s_test_sink, &sink) == -1);
}
