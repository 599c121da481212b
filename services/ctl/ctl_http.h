/*  ctl_http: one blocking HTTP/1.1 exchange over plain TCP, for
    seekmeshctl.

    A new connection per request, `Connection: close`, every connect, send
    and receive bounded by a timeout.  The response head is read with
    mesh_http; the body by Content-Length, chunked coding or end of stream.
    No TLS: the admin ports listen on loopback or a private network.
    Single-threaded.                                                         */
#ifndef CTL_HTTP_H
#define CTL_HTTP_H

#include "mesh_buf.h"

#include <stdbool.h>
#include <stddef.h>

#define CTL_HTTP_MAX_BODY_BYTES (64 * 1024 * 1024)

typedef struct {
    int status;
    mesh_buf_t body;            //  the payload, chunked coding removed
} ctl_http_response_t;

//  Reads "HOST:PORT", "[V6]:PORT" or "http://HOST[:PORT][/]" into host and
//  port (numeric, as text).  -1 with a reason.
int  ctl_http_parse_address (const char *text, char *host, size_t host_size,
                             char *port, size_t port_size, char *why, size_t why_size);
//  Appends text to path as one segment: everything outside RFC 3986's
//  unreserved characters is percent-encoded, "/" included.
void ctl_http_escape (mesh_buf_t *path, const char *text);
//  Sends method path with headers (complete "Name: value\r\n" lines, or "")
//  and body (NULL: none) and reads the whole response.  0 with *response
//  filled (the caller frees response->body, also after -1), or -1 with a
//  reason when it could not connect, send or read a well-formed response
//  within timeout_ms of each step.
int  ctl_http_request (const char *host, const char *port, int timeout_ms,
                       const char *method, const char *path, const char *headers,
                       const char *body, size_t body_len,
                       ctl_http_response_t *response, char *why, size_t why_size);

//  A GET whose 2xx body streams (Server-Sent Events): each piece goes to
//  fn as it arrives, with up to idle_ms between pieces (-1: no limit),
//  until the server ends it; 0 then.  Otherwise as ctl_http_request (a
//  body that is not 2xx is collected in response->body).
typedef void (ctl_http_data_fn) (void *arg, const char *data, size_t size);
int  ctl_http_stream (const char *host, const char *port, int timeout_ms, int idle_ms,
                      const char *path, const char *headers, ctl_http_response_t *response,
                      ctl_http_data_fn *fn, void *arg, char *why, size_t why_size);

void ctl_http_test (bool verbose);

#endif
