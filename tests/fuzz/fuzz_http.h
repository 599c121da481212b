/*  fuzz_http.h: the properties of a parsed HTTP head, shared by the
    request and response targets.                                            */
#ifndef FUZZ_HTTP_H
#define FUZZ_HTTP_H

#include "fuzz.h"
#include "mesh_http.h"

#include <string.h>

#define FUZZ_MAX_HEAD 8192

typedef int (fuzz_http_parse_fn) (const char *buf, size_t len, size_t max_head,
                                  mesh_http_head_t *head);

//  Parses buf [0 .. size) and checks what the parser promises: a return of
//  -1, 0 (only while shorter than max_head) or the head's length; every
//  pointer inside the head; no smuggling shape let through; a prefix of a
//  complete head is incomplete; lookups stay inside the head.  Returns the
//  head's length.
static inline int
fuzz_http_check (fuzz_http_parse_fn *parse, const char *buf, size_t size, mesh_http_head_t *head)
{
    int n = parse (buf, size, FUZZ_MAX_HEAD, head);
    FUZZ_ASSERT (n >= -1);
    if (n == 0)
        FUZZ_ASSERT (size < FUZZ_MAX_HEAD);
    if (n <= 0)
        return n;
    FUZZ_ASSERT ((size_t) n <= size && n <= FUZZ_MAX_HEAD);
    FUZZ_ASSERT (head->header_count <= MESH_HTTP_MAX_HEADERS);
    FUZZ_ASSERT (head->content_length >= -1);
    FUZZ_ASSERT (!(head->chunked && head->content_length >= 0));
    FUZZ_ASSERT (head->minor_version >= 0 && head->minor_version <= 9);
    for (size_t i = 0; i < head->header_count; i++) {
        const mesh_http_header_t *h = &head->headers [i];
        FUZZ_ASSERT (h->name_len > 0 && fuzz_within (h->name, h->name_len, buf, (size_t) n));
        FUZZ_ASSERT (fuzz_within (h->value, h->value_len, buf, (size_t) n));
        FUZZ_ASSERT (memchr (h->name, ':', h->name_len) == NULL);
        for (size_t k = 0; k < h->value_len; k++)
            FUZZ_ASSERT (h->value [k] != '\r' && h->value [k] != '\n');
        if (h->value_len) {
            char first = h->value [0], last = h->value [h->value_len - 1];
            FUZZ_ASSERT (first != ' ' && first != '\t' && last != ' ' && last != '\t');
        }
    }
    static const char *names [] = {
        "host", "Content-Length", "transfer-encoding", "connection", "upgrade",
        "sec-websocket-accept", "x-absent-header"
    };
    for (size_t i = 0; i < sizeof names / sizeof names [0]; i++) {
        size_t len = (size_t) -1;
        const char *value = mesh_http_header (head, names [i], &len);
        if (value) {
            FUZZ_ASSERT (fuzz_within (value, len, buf, (size_t) n));
            mesh_http_has_token (value, len, "close");
            mesh_http_has_token (value, len, "chunked");
        }
        else
            FUZZ_ASSERT (len == (size_t) -1);
    }
    //  The head ends at its first blank line: one byte less is incomplete
    mesh_http_head_t again;
    FUZZ_ASSERT (parse (buf, (size_t) n - 1, FUZZ_MAX_HEAD, &again) == 0);
    //  and the bytes after it change nothing
    FUZZ_ASSERT (parse (buf, (size_t) n, FUZZ_MAX_HEAD, &again) == n);
    FUZZ_ASSERT (again.header_count == head->header_count);
    FUZZ_ASSERT (again.content_length == head->content_length);
    FUZZ_ASSERT (again.chunked == head->chunked && again.keep_alive == head->keep_alive);
    return n;
}

#endif
