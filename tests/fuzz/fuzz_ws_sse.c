/*  fuzz_ws_sse: WebSocket frames carrying an SSE stream, read as the
    connector reads a ws:// upstream: mesh_ws_read over the bytes as they
    arrive, every DATA payload fed straight into an SSE parser.

    Input: a cut prefix (fuzz.h), then the wire bytes.  Byte 0's upper five
    bits pick the message limit (0: 64 MiB, as the connector; else 32 <<
    n bytes).  The bytes are read as a client (frames must be unmasked) and
    again as a server (frames must be masked), each once in one piece and
    once in the prefix's pieces; unconsumed bytes are kept and sent again
    with the next piece, each call's buffer a heap block of its exact size.
    Property: no crash, leak or UB; DATA lies inside the buffer being read;
    control payloads are whole and at most 125 bytes, a close payload is
    never 1 byte (a close stops the reading, as in the connector); what the reader leaves unconsumed is at most a partial
    header or control frame; and the cut points change nothing: the same
    events, payload bytes, SSE events, error and leftover.                 */
#include "fuzz.h"
#include "mesh_sse.h"
#include "mesh_ws.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EVENT_BYTES (64 * 1024)

typedef struct {
    const uint8_t *buf;         //  the buffer mesh_ws_read is reading
    size_t len;
    mesh_sse_t sse;
    uint64_t ws_hash;           //  of every frame event, in order
    uint64_t sse_hash;          //  of every SSE event, in order
    size_t messages;
} reader_sink_t;

static void
s_hash (uint64_t *hash, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        *hash = (*hash ^ p [i]) * 0x100000001b3ull;
}

static int
s_on_sse (void *arg, int kind, const char *data, size_t len)
{
    reader_sink_t *sink = arg;
    FUZZ_ASSERT (kind == MESH_SSE_DATA || kind == MESH_SSE_COMMENT);
    FUZZ_ASSERT (len < MAX_EVENT_BYTES);
    uint8_t tag = (uint8_t) (0x10 + kind);
    s_hash (&sink->sse_hash, &tag, 1);
    s_hash (&sink->sse_hash, &len, sizeof len);
    s_hash (&sink->sse_hash, data, len);
    return 0;
}

static int
s_on_frame (void *arg, int event, uint8_t *data, size_t len)
{
    reader_sink_t *sink = arg;
    uint8_t tag = (uint8_t) event;
    switch (event) {
        case MESH_WS_EV_DATA:
            //  Split anywhere, so only the bytes count, not the pieces
            FUZZ_ASSERT (len > 0 && fuzz_within (data, len, sink->buf, sink->len));
            s_hash (&sink->ws_hash, data, len);
            return mesh_sse_feed (&sink->sse, (const char *) data, len, s_on_sse, sink);
        case MESH_WS_EV_MESSAGE_END:
            FUZZ_ASSERT (len == 0);
            sink->messages++;
            break;
        case MESH_WS_EV_PING:
        case MESH_WS_EV_PONG:
            FUZZ_ASSERT (len <= 125 && fuzz_within (data, len, sink->buf, sink->len));
            break;
        case MESH_WS_EV_CLOSE:
            //  The connector stops reading at a close, and so do we
            FUZZ_ASSERT (len <= 125 && len != 1 && fuzz_within (data, len, sink->buf, sink->len));
            s_hash (&sink->ws_hash, &tag, 1);
            s_hash (&sink->ws_hash, data, len);
            return -1;
        default:
            FUZZ_ASSERT (!"unknown event");
    }
    s_hash (&sink->ws_hash, &tag, 1);
    s_hash (&sink->ws_hash, &len, sizeof len);
    s_hash (&sink->ws_hash, data, len);
    return 0;
}

typedef struct {
    bool error;
    size_t left;                //  bytes never consumed
    uint64_t ws_hash;
    uint64_t sse_hash;
    size_t messages;
} outcome_t;

static void
s_read (const uint8_t *wire, size_t len, fuzz_cuts_t cuts, bool server,
        uint64_t max_message, outcome_t *out)
{
    mesh_ws_reader_t reader;
    mesh_ws_reader_init (&reader, server, max_message);
    reader_sink_t sink;
    memset (&sink, 0, sizeof sink);
    mesh_sse_init (&sink.sse, MAX_EVENT_BYTES);
    memset (out, 0, sizeof *out);

    uint8_t *pending = NULL;    //  bytes the reader left for later
    size_t pending_len = 0;
    for (size_t at = 0; at < len; ) {
        size_t n = fuzz_cuts_next (&cuts, len - at);
        size_t have = pending_len + n;
        uint8_t *buf = malloc (have);
        FUZZ_ASSERT (buf);
        if (pending_len)
            memcpy (buf, pending, pending_len);
        memcpy (buf + pending_len, wire + at, n);
        at += n;
        free (pending);
        pending = NULL;
        sink.buf = buf;
        sink.len = have;
        int64_t used = mesh_ws_read (&reader, buf, have, s_on_frame, &sink);
        if (used < 0) {
            FUZZ_ASSERT (used == -1);
            out->error = true;
            free (buf);
            pending_len = 0;
            break;
        }
        FUZZ_ASSERT ((uint64_t) used <= have);
        pending_len = have - (size_t) used;
        //  Only a partial frame header or control frame waits
        FUZZ_ASSERT (pending_len < MESH_WS_MAX_HEADER + 125);
        if (pending_len) {
            pending = malloc (pending_len);
            FUZZ_ASSERT (pending);
            memcpy (pending, buf + used, pending_len);
        }
        free (buf);
    }
    free (pending);
    out->left = pending_len;
    out->ws_hash = sink.ws_hash;
    out->sse_hash = sink.sse_hash;
    out->messages = sink.messages;
    mesh_sse_free (&sink.sse);
}

static void
s_same (const outcome_t *a, const outcome_t *b)
{
    FUZZ_ASSERT (a->error == b->error);
    FUZZ_ASSERT (a->ws_hash == b->ws_hash && a->messages == b->messages);
    FUZZ_ASSERT (a->sse_hash == b->sse_hash);
    if (!a->error)
        FUZZ_ASSERT (a->left == b->left);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    fuzz_cuts_t cuts, whole = { NULL, 0, 0 };
    size_t skip = fuzz_cuts_init (&cuts, data, size);
    const uint8_t *wire = data + skip;
    size_t len = size - skip;
    unsigned limit = size ? data [0] >> 3 : 0;
    uint64_t max_message = limit ? (uint64_t) 32 << limit : 64u * 1024 * 1024;

    for (int server = 0; server <= 1; server++) {
        outcome_t a, b;
        s_read (wire, len, whole, server, max_message, &a);
        s_read (wire, len, cuts, server, max_message, &b);
        if (len < MAX_EVENT_BYTES)
            s_same (&a, &b);
    }
    return 0;
}
