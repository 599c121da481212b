/*  fuzz_http_response: mesh_http_parse_response on arbitrary bytes, as the
    connector reads an upstream's answer (and its WebSocket upgrade); when
    the head says chunked, the rest goes through the chunked decoder as the
    connector would feed it.

    Property: no crash, leak or UB; the head properties of fuzz_http.h; a
    status of 100..999; the decoder never claims more payload than input.  */
#include "fuzz_http.h"

#include <stdlib.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *buf = (const char *) data;
    mesh_http_head_t head;
    int n = fuzz_http_check (mesh_http_parse_response, buf, size, &head);
    if (n <= 0)
        return 0;
    FUZZ_ASSERT (head.status >= 100 && head.status <= 999);
    if (!head.chunked)
        return 0;
    //  The body, decoded in place in a buffer of its exact size
    size_t len = size - (size_t) n;
    char *body = malloc (len ? len : 1);
    FUZZ_ASSERT (body);
    memcpy (body, buf + n, len);
    mesh_http_chunked_t chunked;
    mesh_http_chunked_init (&chunked);
    size_t used = 0;
    int64_t payload = mesh_http_chunked_decode (&chunked, body, len, &used);
    FUZZ_ASSERT (payload >= -1);
    if (payload >= 0) {
        FUZZ_ASSERT (used <= len && (size_t) payload <= used);
        FUZZ_ASSERT (used == len || chunked.done);
    }
    free (body);
    return 0;
}
