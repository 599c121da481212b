/*  fuzz_http_chunked: the incremental chunked-body decoder, fed as a socket
    would feed it.

    Input: byte 0 picks a cut point, the rest is a chunked body (and maybe
    the next response after it).  The body is decoded three ways: in one
    piece, in two pieces cut where byte 0 says, and one byte at a time;
    each piece sits in a heap buffer of its exact size.
    Property: no crash, leak or UB; a piece is used up unless the body is
    done; the payload is never longer than the input used; and the three
    ways agree on error, done, bytes used and payload, since TCP may cut a
    body anywhere (a decoder that disagrees with itself is a smuggling
    vector).                                                                */
#include "fuzz.h"
#include "mesh_http.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bool error;
    bool done;
    size_t used;                //  input bytes used
    char *payload;
    size_t payload_len;
} run_t;

//  Feeds one piece; returns false once the run is over (error or done).
static bool
s_feed (mesh_http_chunked_t *chunked, const char *piece, size_t len, run_t *run)
{
    char *work = malloc (len ? len : 1);
    FUZZ_ASSERT (work);
    memcpy (work, piece, len);
    size_t used = 0;
    int64_t got = mesh_http_chunked_decode (chunked, work, len, &used);
    if (got < 0) {
        FUZZ_ASSERT (got == -1);
        run->error = true;
        free (work);
        return false;
    }
    FUZZ_ASSERT (used <= len && (uint64_t) got <= used);
    FUZZ_ASSERT (used == len || chunked->done);
    memcpy (run->payload + run->payload_len, work, (size_t) got);
    run->payload_len += (size_t) got;
    run->used += used;
    run->done = chunked->done;
    free (work);
    return !chunked->done;
}

//  Decodes body in pieces of the given sizes (the last repeats).
static void
s_run (const char *body, size_t len, const size_t *sizes, size_t count, run_t *run)
{
    memset (run, 0, sizeof *run);
    run->payload = malloc (len ? len : 1);
    FUZZ_ASSERT (run->payload);
    mesh_http_chunked_t chunked;
    mesh_http_chunked_init (&chunked);
    size_t at = 0;
    for (size_t i = 0; at < len; i++) {
        size_t n = sizes [i < count ? i : count - 1];
        if (n > len - at)
            n = len - at;
        if (n == 0)
            continue;
        if (!s_feed (&chunked, body + at, n, run))
            break;
        at += n;
    }
}

static void
s_same (const run_t *a, const run_t *b)
{
    FUZZ_ASSERT (a->error == b->error);
    if (a->error)
        return;
    FUZZ_ASSERT (a->done == b->done && a->used == b->used);
    FUZZ_ASSERT (a->payload_len == b->payload_len);
    FUZZ_ASSERT (memcmp (a->payload, b->payload, a->payload_len) == 0);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *body = (const char *) data + 1;
    size_t len = size - 1;
    size_t cut = (size_t) data [0] * len / 255;

    run_t whole, split, bytes;
    size_t whole_sizes [] = { len };
    size_t split_sizes [] = { cut, len - cut };
    size_t byte_sizes [] = { 1 };
    s_run (body, len, whole_sizes, 1, &whole);
    s_run (body, len, split_sizes, 2, &split);
    s_run (body, len, byte_sizes, 1, &bytes);
    s_same (&whole, &split);
    s_same (&whole, &bytes);
    free (whole.payload);
    free (split.payload);
    free (bytes.payload);
    return 0;
}
