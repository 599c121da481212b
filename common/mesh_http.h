/*  mesh_http: HTTP/1.x message heads and chunked bodies, for the mock's
    server side, the connector's upstream client and the admin servers.

    The head parser is stateless: call it again with more bytes until it
    returns the head's length.  It points into the caller's buffer; it never
    copies or allocates.  It refuses what request smugglers rely on: a space
    before a header colon, folded lines, a Content-Length that disagrees
    with itself or comes with Transfer-Encoding, codings other than chunked.
    Any thread.                                                               */
#ifndef MESH_HTTP_H
#define MESH_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_HTTP_MAX_HEADERS 64

typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} mesh_http_header_t;

typedef struct {
    //  Request line
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    //  Status line
    int status;
    //  Both
    int minor_version;                  //  HTTP/1.<minor>
    mesh_http_header_t headers [MESH_HTTP_MAX_HEADERS];
    size_t header_count;
    //  From the headers
    int64_t content_length;             //  -1 when absent
    bool chunked;
    bool keep_alive;
    bool upgrade;                       //  Connection: upgrade
} mesh_http_head_t;

//  Return the head's length in bytes (body starts there), 0 when the head
//  is not complete yet (and shorter than max_head), -1 when malformed or
//  longer than max_head.
int  mesh_http_parse_request (const char *buf, size_t len, size_t max_head,
                              mesh_http_head_t *head);
int  mesh_http_parse_response (const char *buf, size_t len, size_t max_head,
                               mesh_http_head_t *head);

//  Value of the first header called name (any case), or NULL.
const char *mesh_http_header (const mesh_http_head_t *head, const char *name,
                              size_t *value_len);
//  True if the comma-separated header value list contains token (any case).
bool mesh_http_has_token (const char *value, size_t len, const char *token);

//  Incremental chunked-body decoder.
typedef struct {
    int state;
    uint64_t remaining;                 //  bytes left in the current chunk
    int digits;
    bool done;                          //  the last chunk and trailers were read
} mesh_http_chunked_t;

void    mesh_http_chunked_init (mesh_http_chunked_t *self);
//  Decodes buf [0 .. len) in place: the payload is moved to the front of buf.
//  Returns the payload length, or -1 on malformed framing.  *consumed is
//  how many input bytes were used (less than len only once done is set).
int64_t mesh_http_chunked_decode (mesh_http_chunked_t *self, char *buf, size_t len,
                                  size_t *consumed);

//  Reason phrase for a status code ("Too Many Requests").
const char *mesh_http_reason (int status);
//  Whether sending the same request again can succeed, for x-should-retry
//  on an error answer with this status and error code: true for 408, 409,
//  429 and 5xx (what the openai SDKs retry by default), except the codes
//  whose cause a retry does not change (a spent budget or balance, an
//  upstream that refuses our credentials, does not know the model, fails
//  TLS, or sends an answer over the limit; 501).
bool mesh_http_should_retry (int status, const char *code);

void mesh_http_test (bool verbose);

#endif
