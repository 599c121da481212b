/*  fuzz_sse: the SSE parser fed an upstream's stream in pieces.

    Input: a cut prefix (fuzz.h: byte 0 and up to 7 piece sizes), then the
    stream.  It is parsed three times: in one piece and in the pieces the
    prefix says with a 64 KiB event limit, and in those pieces again with a
    small limit (16..264 bytes, from byte 0) to reach the too-long paths.
    Property: no crash, leak or UB; each callback's bytes lie in the piece
    being fed or in the parser's own buffers, data has no CR and is under
    the limit, a comment is one line; and with the 64 KiB limit (which a
    stream shorter than 64 KiB cannot reach) the cut points change nothing:
    both parses succeed with the same events.                              */
#include "fuzz.h"
#include "mesh_sse.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EVENT_BYTES (64 * 1024)

typedef struct {
    mesh_sse_t *sse;
    const char *piece;          //  the bytes being fed
    size_t piece_len;
    uint64_t hash;              //  of the events seen, in order
    size_t events;
} sink_t;

static void
s_hash (sink_t *sink, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        sink->hash = (sink->hash ^ p [i]) * 0x100000001b3ull;
}

static bool
s_in_buf (const char *p, size_t len, const mesh_buf_t *buf)
{
    return buf->data && fuzz_within (p, len, buf->data, buf->cap);
}

static int
s_on_event (void *arg, int kind, const char *data, size_t len)
{
    sink_t *sink = arg;
    FUZZ_ASSERT (kind == MESH_SSE_DATA || kind == MESH_SSE_COMMENT);
    FUZZ_ASSERT (data || len == 0);
    if (len) {
        FUZZ_ASSERT (fuzz_within (data, len, sink->piece, sink->piece_len)
                     || s_in_buf (data, len, &sink->sse->line)
                     || s_in_buf (data, len, &sink->sse->data));
        FUZZ_ASSERT (memchr (data, '\r', len) == NULL);
    }
    if (kind == MESH_SSE_DATA)
        FUZZ_ASSERT (len < sink->sse->max_event_bytes);
    else
        FUZZ_ASSERT (len == 0 || memchr (data, '\n', len) == NULL);
    uint8_t tag = (uint8_t) kind;
    s_hash (sink, &tag, 1);
    s_hash (sink, &len, sizeof len);
    s_hash (sink, data, len);
    sink->events++;
    return 0;
}

//  Parses stream in pieces; returns mesh_sse_feed's last result.
static int
s_parse (const char *stream, size_t len, fuzz_cuts_t cuts, size_t max_event, sink_t *sink)
{
    mesh_sse_t sse;
    mesh_sse_init (&sse, max_event);
    memset (sink, 0, sizeof *sink);
    sink->sse = &sse;
    int rc = 0;
    for (size_t at = 0; at < len && rc == 0; ) {
        size_t n = fuzz_cuts_next (&cuts, len - at);
        //  A heap copy of the exact size, so a read past it is caught
        char *piece = malloc (n);
        FUZZ_ASSERT (piece);
        memcpy (piece, stream + at, n);
        sink->piece = piece;
        sink->piece_len = n;
        rc = mesh_sse_feed (&sse, piece, n, s_on_event, sink);
        FUZZ_ASSERT (rc == 0 || rc == -1);
        free (piece);
        at += n;
    }
    //  Whatever it holds, a parser is bounded by its limit
    FUZZ_ASSERT (mesh_buf_size (&sse.line) <= max_event);
    FUZZ_ASSERT (mesh_buf_size (&sse.data) <= max_event);
    mesh_sse_free (&sse);
    return rc;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    fuzz_cuts_t cuts, whole = { NULL, 0, 0 };
    size_t skip = fuzz_cuts_init (&cuts, data, size);
    const char *stream = (const char *) data + skip;
    size_t len = size - skip;
    size_t small = 16 + (size_t) (size ? data [0] >> 3 : 0) * 8;

    sink_t a, b, c;
    int rc_a = s_parse (stream, len, whole, MAX_EVENT_BYTES, &a);
    int rc_b = s_parse (stream, len, cuts, MAX_EVENT_BYTES, &b);
    s_parse (stream, len, cuts, small, &c);
    if (len < MAX_EVENT_BYTES) {
        FUZZ_ASSERT (rc_a == 0 && rc_b == 0);
        FUZZ_ASSERT (a.events == b.events && a.hash == b.hash);
    }
    return 0;
}
