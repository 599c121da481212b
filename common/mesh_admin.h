/*  mesh_admin: the admin HTTP port every service has.

    GET /healthz  200 while the process runs its loop
    GET /readyz   200 when the service's ready check passes, else 503 and why
    GET /metrics  Prometheus text exposition of the service's registry
    plus any routes a service adds (the router's /admin/...).

    Served on a mesh_loop (mesh_admin_listen), or through another server's
    transport (the ingress serves it from libwebsockets) by calling
    mesh_admin_handle.  Runs on the reactor thread.

    On a mesh_loop the port defends itself: at most MESH_ADMIN_MAX_CLIENTS
    connections (more are closed as soon as they are accepted), a
    connection idle for the idle time with no response owed is closed, and
    when accept() fails for want of file descriptors the port stops
    accepting for 100 ms instead of being woken again at once.            */
#ifndef MESH_ADMIN_H
#define MESH_ADMIN_H

#include "mesh_buf.h"
#include "mesh_http.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct mesh_admin_t mesh_admin_t;

typedef struct {
    const char *method;
    size_t method_len;
    const char *path;           //  without the query
    size_t path_len;
    const char *query;          //  after '?', or empty
    size_t query_len;
    const char *authorization;  //  the Authorization header, or NULL
    size_t authorization_len;
    const char *body;
    size_t body_len;
    void *transport;            //  the connection, when it can wait (mesh_admin_defer)
} mesh_admin_request_t;

typedef struct {
    int status;
    const char *content_type;
    mesh_buf_t body;
} mesh_admin_response_t;

//  A route handler fills the response; returns 0.
typedef int (mesh_admin_fn) (void *arg, const mesh_admin_request_t *request,
                             mesh_admin_response_t *response);
//  Returns true when ready; otherwise appends the reason to why.
typedef bool (mesh_admin_ready_fn) (void *arg, mesh_buf_t *why);

#define MESH_ADMIN_MAX_CLIENTS 64
#define MESH_ADMIN_IDLE_MS 10000

mesh_admin_t *mesh_admin_new (mesh_metrics_t *metrics);
//  How long a connection may sit idle (default MESH_ADMIN_IDLE_MS).
void mesh_admin_set_idle_ms (mesh_admin_t *self, int64_t idle_ms);
void mesh_admin_destroy (mesh_admin_t **self_p);
void mesh_admin_set_ready (mesh_admin_t *self, mesh_admin_ready_fn *fn, void *arg);
//  Routes requests whose path starts with prefix.
void mesh_admin_route (mesh_admin_t *self, const char *prefix, mesh_admin_fn *fn, void *arg);
//  Listens on address ("127.0.0.1:9081") in loop.  -1 with a reason.
int  mesh_admin_listen (mesh_admin_t *self, mesh_loop_t *loop, const char *address,
                        char *why, size_t why_size);
//  A route that can only answer later (after a Redis round trip, say)
//  calls this from its handler, leaves the response alone and returns.
//  The connection then waits, pipelined requests and all, until
//  mesh_admin_complete, which must be called exactly once, even if the
//  client has gone meanwhile.  NULL when the transport cannot wait (the
//  ingress's): the handler must answer at once.
typedef struct mesh_admin_pending_t mesh_admin_pending_t;
mesh_admin_pending_t *mesh_admin_defer (const mesh_admin_request_t *request);
//  Sends the deferred response; takes body's contents (frees them).
void mesh_admin_complete (mesh_admin_pending_t *pending, int status, const char *content_type,
                          mesh_buf_t *body);
//  Or answers it as a stream (Server-Sent Events, say): the head now,
//  without a length (the connection closes after it), then each piece as
//  it comes.  A write returns -1 once the client has gone, or when it reads
//  too slowly (MESH_ADMIN_MAX_STREAM_BYTES unsent: it is closed); either
//  way mesh_admin_stream_end must follow, exactly once, and frees pending.
#define MESH_ADMIN_MAX_STREAM_BYTES (1024 * 1024)
void mesh_admin_stream_begin (mesh_admin_pending_t *pending, int status, const char *content_type);
int  mesh_admin_stream_write (mesh_admin_pending_t *pending, const char *data, size_t len);
void mesh_admin_stream_end (mesh_admin_pending_t *pending);

//  Answers one request; the caller frees response->body.
void mesh_admin_handle (mesh_admin_t *self, const mesh_admin_request_t *request,
                        mesh_admin_response_t *response);

void mesh_admin_test (bool verbose);

#endif
