/*  connector: owns every upstream connection.  The types its modules share.

    connector.c         router links, DISPATCH/CANCEL, request lifecycle,
                        events to the ingress, DONE to the router
    connector_pool.c    per-endpoint pools: connect, TLS, WebSocket
                        upgrade, keep-alive reuse, pings, idle expiry
    connector_http.c    one HTTP/1.1 exchange on a pooled connection
    connector_ws.c      one request/stream exchange on a pooled WebSocket
    connector_stream.c  what upstream bytes mean: SSE events, usage, errors,
                        a whole completion assembled from a stream
    connector_dns.c     name resolution off the reactor thread

    Everything runs on the reactor thread except the resolver's worker.    */
#ifndef CONNECTOR_H
#define CONNECTOR_H

#include "mesh_buf.h"
#include "mesh_config.h"
#include "mesh_conn.h"
#include "mesh_http.h"
#include "mesh_id.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"
#include "mesh_models.h"
#include "mesh_msg.h"
#include "mesh_sse.h"
#include "mesh_ws.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct connector_t connector_t;
typedef struct creq_t creq_t;
typedef struct upconn_t upconn_t;
typedef struct pool_t pool_t;
typedef struct resolver_t resolver_t;

//  Upstream connection states
enum { UC_RESOLVING, UC_CONNECTING, UC_UPGRADING, UC_IDLE, UC_BUSY };
//  HTTP response phases
enum { HP_HEAD, HP_LENGTH, HP_CHUNKED, HP_UNTIL_CLOSE, HP_DONE };

struct upconn_t {
    connector_t *connector;
    pool_t *pool;
    mesh_conn_t io;
    int state;
    mesh_buf_t in;
    mesh_buf_t out;
    creq_t *req;                //  the request it serves, when busy
    upconn_t *prev, *next;      //  in the pool's list of connections
    mesh_timer_t timer;         //  idle expiry; WebSocket pings
    int64_t connect_started_ms;
    bool reused;                //  served a request before this one
    bool response_started;      //  a byte of the current response arrived
    bool in_handler;            //  its event handler is on the stack
    bool dead;                  //  closed; freed when the handler returns
    //  HTTP response being read
    int phase;
    int status;
    bool keep_alive;
    bool event_stream;
    int retry_after_s;
    int64_t remaining;
    mesh_http_chunked_t chunked;
    //  WebSocket
    mesh_ws_reader_t ws;
    char ws_accept [29];
    bool ping_outstanding;
};

struct creq_t {
    connector_t *connector;
    char id [MESH_ID_LEN + 1];
    uint32_t attempt;
    uint64_t token;
    char reply_to [256];
    int router;                 //  the router link it came from
    mesh_models_t *registry;    //  a reference: the registry it was dispatched under
    const mesh_model_t *model;
    const mesh_endpoint_t *endpoint;
    uint32_t endpoint_index;
    char *auth_line;            //  its credential header line ("" for none)
    char limits [128];          //  x-ratelimit-* values from the router
    char tenant [128];          //  for the audit record, from the router
    char key_id [65];
    bool client_stream;         //  what the client asked for
    bool upstream_stream;       //  what we ask upstream for
    mesh_buf_t body;            //  the upstream request body
    upconn_t *conn;
    creq_t *wait_next;          //  in a pool's queue of requests waiting
    bool waiting;               //  in that queue now
    bool head_sent;             //  the ingress has started the response
    bool stale_retried;         //  resent once after a dead keep-alive
    int64_t dispatched_us;
    int64_t first_byte_us;
    uint64_t bytes;             //  event payload bytes sent to the ingress
    mesh_timer_t timer;         //  connect, first-byte and idle timeouts
    mesh_sse_t sse;
    mesh_buf_t response;        //  a non-stream or error body
    int stream_state;           //  STREAM_*: why the SSE parser stopped
    //  Gathered from the response
    uint64_t prompt_tokens, output_tokens, cached_tokens, reason_tokens;
    char finish [32];
    struct mesh_completion_t *assembly; //  a completion built from stream chunks
};

enum { STREAM_RUNNING, STREAM_DONE, STREAM_ERROR_EVENT, STREAM_SEND_FAILED };

//  connector.c: lifecycle of a request, called by the other modules ------

//  The request has a ready connection: send it upstream.
void connector_request_start (creq_t *req);
//  Sends a HEAD/CHUNK to the ingress; -1 if the ingress cannot take it
//  (the request has been aborted then).
int  connector_send_head (creq_t *req, int status);
int  connector_send_chunk (creq_t *req, const char *data, size_t len, uint32_t flags);
//  End a request: END (with data, for non-stream) or ERROR to the
//  ingress, DONE to the router, and free it.  A connection still attached
//  is closed; to keep it, pool_release it first.
void connector_request_finish (creq_t *req, const char *data, size_t len);
void connector_request_fail (creq_t *req, int status, const char *type, const char *code,
                             int retry_after_ms, const char *outcome, const char *fmt, ...)
    __attribute__ ((format (printf, 7, 8)));
//  Ends a request without telling the ingress (it is gone or cannot take
//  more): DONE to the router with outcome, close the connection, free.
void connector_request_abort (creq_t *req, const char *outcome);
//  Restarts the idle timer (a byte arrived).
void connector_request_progress (creq_t *req);
//  The request's keep-alive connection turned out dead before answering:
//  send the request again on another connection (once).
void connector_request_retry (creq_t *req);
mesh_loop_t *connector_loop (connector_t *self);
mesh_metrics_t *connector_metrics (connector_t *self);
resolver_t *connector_resolver (connector_t *self);
SSL_CTX *connector_tls (connector_t *self, const char *ca_file);
//  The credential header line for a model ("Authorization: Bearer …\r\n"),
//  or "" when it has none; the caller frees it.
char *connector_auth_line (const mesh_model_t *model);
int64_t connector_pool_idle_ms (connector_t *self);
int64_t connector_ws_ping_ms (connector_t *self);
int     connector_ws_pool_size (connector_t *self);

//  connector_pool.c ----------------------------------------------------------

typedef struct pools_t pools_t;
pools_t *pools_new (connector_t *connector);
void     pools_destroy (pools_t **self_p);
//  Finds a ready connection for req (now or later) and then calls
//  connector_request_start, or fails the request.
void     pools_acquire (pools_t *self, creq_t *req);
//  The response on conn is complete: detach its request and keep the
//  connection for the next one if reusable, else close it.
void     pool_release (upconn_t *conn, bool reusable);
//  Detaches its request and closes conn.  Inside conn's own handler the
//  memory is freed when the handler returns (conn->dead is set); callers
//  check conn->dead or conn->req after anything that can end a request.
void     pool_close (upconn_t *conn);
//  Removes req from whatever queue or connection holds it, closing a
//  connection that was serving it.
void     pools_abandon (pools_t *self, creq_t *req);
//  Queues bytes on conn and asks for write readiness.
void     upconn_write (upconn_t *conn, const void *data, size_t len);
size_t   pools_connections (pools_t *self);
//  Keeps the WebSocket pools of the registry's ws:// and wss:// endpoints
//  warm; pools the registry no longer names stop reconnecting.
void     pools_warm (pools_t *self, mesh_models_t *models);
//  What a WebSocket upgrade needs: the endpoint and its credential line.
const mesh_url_t *pool_url (pool_t *pool);
const char *pool_auth_line (pool_t *pool);

//  connector_http.c / connector_ws.c --------------------------------------

void http_send_request (upconn_t *conn, creq_t *req);
//  Consume conn->in.  They finish or fail the request themselves and
//  release or close the connection as needed.
void http_on_input (upconn_t *conn);
//  The server closed the connection (or it broke) while conn was busy.
void http_on_eof (upconn_t *conn);
void ws_send_upgrade (upconn_t *conn);
//  Returns 1 when the upgrade completed, 0 for more input, -1 on failure.
int  ws_on_upgrade_input (upconn_t *conn, char *why, size_t why_size);
void ws_send_request (upconn_t *conn, creq_t *req);
void ws_on_input (upconn_t *conn);
void ws_send_ping (upconn_t *conn);

//  connector_stream.c --------------------------------------------------------

//  Prepares req's SSE parser and assembly for a streamed response.
void stream_begin (creq_t *req);
//  Feeds stream bytes; returns 1 when the stream ended ([DONE]: the caller
//  releases the connection and finishes the request), 0 to go on, -1 when
//  the request ended here (failed or aborted; the connection was closed).
int  stream_feed (creq_t *req, const char *data, size_t len);
//  A complete non-stream body with status 200: ends the request.
void stream_complete_body (creq_t *req, const char *data, size_t len);
//  An upstream error response: maps it to what the client gets and ends
//  the request.
void stream_upstream_error (creq_t *req, int status, int retry_after_s,
                            const char *body, size_t len);
//  Sets req->body for upstream: the client's bytes, rewritten only when
//  the model name or the stream flag must change.  -1 if the body is not a
//  JSON object.
int  stream_prepare_body (creq_t *req, const char *body, size_t len, const char *requested);
//  The chat.completion assembled from a stream, for a non-stream client;
//  NULL if nothing was assembled.  The caller frees it.
char *stream_assembled (creq_t *req, size_t *len);
void stream_end (creq_t *req);      //  frees parser and assembly state

void connector_stream_test (bool verbose);

//  connector_dns.c -----------------------------------------------------------

typedef void (resolver_fn) (void *arg, int rc, const struct sockaddr *addr, socklen_t len);
resolver_t *resolver_new (mesh_loop_t *loop);
void        resolver_destroy (resolver_t **self_p);
//  Resolves host:port (IP literals at once, names on the worker thread)
//  and calls fn on the reactor thread.  arg must live until then.
void        resolver_lookup (resolver_t *self, const char *host, int port,
                             resolver_fn *fn, void *arg);

#endif
