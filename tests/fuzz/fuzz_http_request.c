/*  fuzz_http_request: mesh_http_parse_request on arbitrary bytes, as the
    mock and the admin servers read them off a socket.

    Property: no crash, leak or UB; the result is -1, 0 or the head's
    length; every pointer the head holds lies inside the head; a head that
    parses has no Content-Length next to chunked; cutting the last byte of
    a complete head makes it incomplete (fuzz_http.h).                      */
#include "fuzz_http.h"

#include <ctype.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *buf = (const char *) data;
    mesh_http_head_t head;
    int n = fuzz_http_check (mesh_http_parse_request, buf, size, &head);
    if (n > 0) {
        FUZZ_ASSERT (head.method_len > 0 && fuzz_within (head.method, head.method_len, buf, (size_t) n));
        FUZZ_ASSERT (head.target_len > 0 && fuzz_within (head.target, head.target_len, buf, (size_t) n));
        for (size_t i = 0; i < head.target_len; i++)
            FUZZ_ASSERT ((unsigned char) head.target [i] > 0x20);
        for (size_t i = 0; i < head.method_len; i++)
            FUZZ_ASSERT (!isspace ((unsigned char) head.method [i]));
    }
    return 0;
}
