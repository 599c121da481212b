/*  fuzz_http_request: mesh_http_parse_request on arbitrary bytes, as the
    mock and the admin servers read them off a socket.

    Property: no crash, leak or UB; the result is -1, 0 or the head's
    length; every pointer the head holds lies inside the head; a head that
    parses has no Content-Length next to chunked; cutting the last byte of
    a complete head makes it incomplete (fuzz_http.h).  Round trip: the
    head written again in canonical form (method, target, version, each
    header as name ": " value, CRLF line ends) parses to the same head.    */
#include "fuzz_http.h"

#include <ctype.h>
#include <stdio.h>

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
        //  The round trip
        static char again [FUZZ_MAX_HEAD * 2];
        size_t len = (size_t) snprintf (again, sizeof again, "%.*s %.*s HTTP/1.%d\r\n",
                                        (int) head.method_len, head.method, (int) head.target_len,
                                        head.target, head.minor_version);
        for (size_t i = 0; i < head.header_count && len < sizeof again; i++)
            len += (size_t) snprintf (again + len, sizeof again - len, "%.*s: %.*s\r\n",
                                      (int) head.headers [i].name_len, head.headers [i].name,
                                      (int) head.headers [i].value_len, head.headers [i].value);
        if (len + 2 < sizeof again) {
            memcpy (again + len, "\r\n", 2);
            len += 2;
            mesh_http_head_t copy;
            int m = mesh_http_parse_request (again, len, sizeof again, &copy);
            FUZZ_ASSERT (m == (int) len);
            FUZZ_ASSERT (copy.method_len == head.method_len
                      && memcmp (copy.method, head.method, head.method_len) == 0);
            FUZZ_ASSERT (copy.target_len == head.target_len
                      && memcmp (copy.target, head.target, head.target_len) == 0);
            FUZZ_ASSERT (copy.minor_version == head.minor_version);
            FUZZ_ASSERT (copy.header_count == head.header_count);
            for (size_t i = 0; i < head.header_count; i++) {
                FUZZ_ASSERT (copy.headers [i].name_len == head.headers [i].name_len);
                FUZZ_ASSERT (memcmp (copy.headers [i].name, head.headers [i].name,
                                     head.headers [i].name_len) == 0);
                FUZZ_ASSERT (copy.headers [i].value_len == head.headers [i].value_len);
                FUZZ_ASSERT (memcmp (copy.headers [i].value, head.headers [i].value,
                                     head.headers [i].value_len) == 0);
            }
            FUZZ_ASSERT (copy.content_length == head.content_length && copy.chunked == head.chunked);
            FUZZ_ASSERT (copy.keep_alive == head.keep_alive && copy.upgrade == head.upgrade);
        }
    }
    return 0;
}
