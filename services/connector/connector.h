/*  connector: owns every upstream connection.  The types its modules share.

    connector.c         router links, DISPATCH/CANCEL, request lifecycle,
                        events to the ingress, DONE to the router
    connector_pool.c    per-endpoint pools: connect, TLS, the protocol's
                        setup, keep-alive reuse, keep-alives, idle expiry
    connector_http.c    the HTTP/1.1 protocol: one exchange per request
    connector_ws.c      the WebSocket protocol: upgrade, one request and
                        its stream per message, pings
    connector_stream.c  what upstream bytes mean: SSE events, usage, errors,
                        a whole completion assembled from a stream
    connector_tee.c     the copies of cacheable calls' events to the cache

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
#include "mesh_resolver.h"
#include "mesh_sse.h"
#include "mesh_ws.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct connector_t connector_t;
typedef struct connector_req_t connector_req_t;
typedef struct connector_conn_t connector_conn_t;
typedef struct connector_pool_t connector_pool_t;
typedef struct connector_pools_t connector_pools_t;
typedef struct connector_protocol_t connector_protocol_t;
typedef struct connector_tee_t connector_tee_t;

//  Upstream connection states
enum { UC_RESOLVING, UC_CONNECTING, UC_UPGRADING, UC_IDLE, UC_BUSY };
//  HTTP response phases
enum { HP_HEAD, HP_LENGTH, HP_CHUNKED, HP_UNTIL_CLOSE, HP_DONE };

struct connector_conn_t {
    connector_pool_t *pool;
    const connector_protocol_t *protocol;
    mesh_conn_t io;
    int state;
    mesh_buf_t in;
    mesh_buf_t out;
    connector_req_t *req;                //  the request it serves, when busy
    connector_conn_t *prev, *next;      //  in the pool's list of connections
    mesh_timer_t timer;         //  idle expiry, keep-alives, an HTTP drain
    int64_t connect_started_ms;
    bool reused;                //  served a request before this one
    bool response_started;      //  a byte of the current response arrived
    bool in_handler;            //  its event handler is on the stack
    bool dead;                  //  closed; freed when the handler returns
    //  HTTP response being read
    int phase;
    int status;
    bool keep_alive;
    bool answered_early;        //  the head came before the request was all written
    bool event_stream;
    int retry_after_s;
    int64_t remaining;
    mesh_http_chunked_t chunked;
    //  WebSocket
    mesh_ws_reader_t ws;
    char ws_accept [29];
    bool ping_outstanding;
};

struct connector_req_t {
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
    char cache [16];            //  x-seekmesh-cache, from the router: miss, bypass
    bool tee;                   //  a miss: events are copied to the cache
    bool ingress_gone;          //  the ingress went; the cache decides whether to go on
    bool client_stream;         //  what the client asked for
    bool upstream_stream;       //  what we ask upstream for
    bool client_usage;          //  the client asked for the usage chunk
                                //  (stream_options.include_usage)
    mesh_buf_t body;            //  the upstream request body
    connector_conn_t *conn;
    connector_req_t *wait_next;          //  in a pool's queue of requests waiting
    bool waiting;               //  in that queue now
    bool head_sent;             //  the ingress has started the response
    bool stale_retried;         //  resent once after a dead keep-alive
    int64_t dispatched_us;
    int64_t first_byte_us;
    int64_t sent_us;            //  the request was written upstream
    uint64_t bytes;             //  event payload bytes sent to the ingress
    mesh_timer_t timer;         //  connect, first-byte and idle timeouts
    mesh_sse_t sse;
    mesh_buf_t response;        //  a non-stream or error body
    int stream_state;           //  STREAM_*: why the SSE parser stopped
    //  Gathered from the response
    uint64_t prompt_tokens, output_tokens, cached_tokens, reason_tokens;
    uint64_t pieces;            //  data events received: the output tokens
                                //  when the upstream reports no usage
    char finish [32];
    struct mesh_completion_t *assembly; //  a completion built from stream chunks
};

enum { STREAM_RUNNING, STREAM_DONE, STREAM_ERROR_EVENT, STREAM_SEND_FAILED };

//  connector.c: lifecycle of a request, called by the other modules ------

//  Sends a HEAD/CHUNK to the ingress; -1 if the ingress cannot take it
//  (the request has been aborted then).
int  connector_send_head (connector_req_t *req, int status);
int  connector_send_chunk (connector_req_t *req, const char *data, size_t len, uint32_t flags);
//  End a request: END (with data, for non-stream) or ERROR to the
//  ingress, DONE to the router, and free it.  A connection still attached
//  is closed; to keep it, connector_pool_release it first.
void connector_request_finish (connector_req_t *req, const char *data, size_t len);
void connector_request_fail (connector_req_t *req, int status, const char *type, const char *code,
                             int retry_after_ms, const char *outcome, const char *fmt, ...)
    __attribute__ ((format (printf, 7, 8)));
//  Ends a request without telling the ingress (it is gone or cannot take
//  more): DONE to the router with outcome, close the connection, free.
void connector_request_abort (connector_req_t *req, const char *outcome);
//  Restarts the idle timer (a byte arrived).
void connector_request_progress (connector_req_t *req);
//  The request's keep-alive connection turned out dead before answering:
//  send the request again on another connection (once).
void connector_request_retry (connector_req_t *req);
//  The credential header line for a model ("Authorization: Bearer …\r\n"),
//  or "" when it has none; the caller frees it.
char *connector_auth_line (const mesh_model_t *model);

//  connector_pool.c ----------------------------------------------------------

//  How a connection speaks to its upstream (connector_http.c,
//  connector_ws.c).  The pool drives connections through connect, TLS and
//  the protocol's own setup and hands them to requests; the protocol
//  writes requests and reads responses.  A warm protocol's pool keeps
//  ws_pool_size connections open, reconnects with backoff, and keeps idle
//  ones alive itself; a cold one's idle connections close after idle_ms,
//  and an idle one that speaks is closed.
struct connector_protocol_t {
    const char *name;
    bool warm;
    //  After connect (and TLS): begin the protocol's setup; NULL: ready at once
    void (*setup_start) (connector_conn_t *conn);
    //  Setup input in conn->in: 1 ready, 0 more needed, -1 failed (why)
    int  (*setup_input) (connector_conn_t *conn, char *why, size_t why_size);
    //  conn->req has the connection: queue the request on it
    void (*send_request) (connector_conn_t *conn, connector_req_t *req);
    //  Bytes in conn->in (busy, or idle when warm); may end the request
    void (*on_input) (connector_conn_t *conn);
    //  The connection closed or broke while it served conn->req
    void (*on_eof) (connector_conn_t *conn, const char *why);
    //  Every ping_ms while open (warm only): a keep-alive; -1 if the last
    //  one went unanswered
    int  (*keepalive) (connector_conn_t *conn);
};

extern const connector_protocol_t connector_http_protocol;
extern const connector_protocol_t connector_ws_protocol;

//  What the pools need from the connector, given when they are made
typedef struct {
    mesh_loop_t *loop;
    mesh_metrics_t *metrics;
    mesh_resolver_t *resolver;      //  upstream host names
    int64_t idle_ms;                //  connector.pool_idle_ms
    int64_t ping_ms;                //  connector.ws_ping_ms
    int warm_size;                  //  connector.ws_pool_size
    //  The protocols of http(s):// and ws(s):// endpoints
    const connector_protocol_t *http;
    const connector_protocol_t *websocket;
    //  A request's request went out on its connection: time its answer
    void (*on_sent) (connector_req_t *req);
    //  No connection could be made for a request
    void (*on_unreachable) (connector_req_t *req, const char *why);
    //  A model's credential header line, which the caller frees
    char *(*credential) (const mesh_model_t *model);
} connector_pool_settings_t;

connector_pools_t *connector_pools_new (const connector_pool_settings_t *settings);
void     connector_pools_destroy (connector_pools_t **self_p);
//  Finds a ready connection for req (now or later), sends req on it and
//  calls on_sent; or calls on_unreachable.
void     connector_pools_acquire (connector_pools_t *self, connector_req_t *req);
//  The response on conn is complete: detach its request and keep the
//  connection for the next one if reusable, else close it.
void     connector_pool_release (connector_conn_t *conn, bool reusable);
//  Detaches its request and closes conn.  Inside conn's own handler the
//  memory is freed when the handler returns (conn->dead is set); callers
//  check conn->dead or conn->req after anything that can end a request.
void     connector_pool_close (connector_conn_t *conn);
//  Removes req from whatever queue or connection holds it, closing a
//  connection that was serving it.
void     connector_pools_abandon (connector_pools_t *self, connector_req_t *req);
//  Queues bytes on conn; the pool writes them.
void     connector_conn_write (connector_conn_t *conn, const void *data, size_t len);
//  The pool's loop, for a protocol's timers
mesh_loop_t *connector_conn_loop (connector_conn_t *conn);
size_t   connector_pools_connections (connector_pools_t *self);
//  Keeps the warm pools of the registry's endpoints (ws://, wss://) open;
//  pools the registry no longer names stop reconnecting.
void     connector_pools_warm (connector_pools_t *self, mesh_models_t *models);
//  What a WebSocket upgrade needs: the endpoint and its credential line.
const mesh_url_t *connector_pool_url (connector_pool_t *pool);
const char *connector_pool_auth_line (connector_pool_t *pool);

void connector_pool_test (bool verbose);

//  connector_http.c / connector_ws.c: the protocols above, and their
//  selftests (through a whole connector, against upstreams on loopback)

void connector_http_test (bool verbose);
void connector_ws_test (bool verbose);

//  connector_stream.c --------------------------------------------------------

//  Prepares req's SSE parser and assembly for a streamed response.
void connector_stream_begin (connector_req_t *req);
//  Feeds stream bytes; returns 1 when the stream ended ([DONE]: the caller
//  releases the connection and finishes the request), 0 to go on, -1 when
//  the request ended here (failed or aborted; the connection was closed).
int  connector_stream_feed (connector_req_t *req, const char *data, size_t len);
//  A complete non-stream body with status 200: ends the request.
void connector_stream_complete_body (connector_req_t *req, const char *data, size_t len);
//  An upstream error response: maps it to what the client gets and ends
//  the request.
void connector_stream_upstream_error (connector_req_t *req, int status, int retry_after_s,
                            const char *body, size_t len);
//  Sets req->body for upstream: the client's bytes, rewritten only when
//  the model name or the stream flag must change.  -1 if the body is not a
//  JSON object.
int  connector_stream_prepare_body (connector_req_t *req, const char *body, size_t len, const char *requested);
//  The chat.completion assembled from a stream, for a non-stream client;
//  NULL if nothing was assembled.  The caller frees it.
char *connector_stream_assembled (connector_req_t *req, size_t *len);
void connector_stream_end (connector_req_t *req);      //  frees parser and assembly state

void connector_stream_test (bool verbose);

//  connector_tee.c -----------------------------------------------------------

//  The link to connector.caches (none: nothing is copied).  Config errors
//  go through mesh_config_invalid.
connector_tee_t *connector_tee_new (mesh_config_t *config, void *zmq_ctx, mesh_metrics_t *metrics,
                                    const char *name);
void connector_tee_destroy (connector_tee_t **self_p);
bool connector_tee_on (connector_tee_t *self);
//  A copy of msg to the cache: 0, or -1 (away, full)
int  connector_tee_send (connector_tee_t *self, const mesh_msg_t *msg);
void connector_tee_test (bool verbose);
#endif
