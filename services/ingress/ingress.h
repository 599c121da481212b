/*  ingress: the OpenAI-compatible front door.  The types its modules share.

    ingress_http.c      the lws protocol callback: requests in, responses
                        out (JSON bodies and SSE), limits, client disconnects
    ingress_mesh.c      ZeroMQ: REQUEST/CANCEL to routers, events from
                        connectors and routers, request slots
    ingress_routers.c   the routers: names resolved into every address,
                        one PUSH socket each, which one takes a request
    ingress_listen.c    the listening sockets, handed over on a restart,
                        and the reply address peers are told
    ingress_admin.c     /healthz, /readyz, /metrics on the admin vhost
    ingress_validate.c  the request body validator
    ingress_audit.c     one audit record per request: what goes in it
    ingress_guard.c     connection caps, the unauthenticated-request limiter
    ingress_filter.c    the sensitive-word filter on what clients receive
    ingress_session.c   requests of a session: its id, TURN, STOP
    ingress_audit_link.c  the spool of records and the DEALER link that
                        carries them to seekmesh-audit (AUDIT / ACK)

    Everything runs on the one lws service thread, on a libev loop (epoll:
    lws' own poll() loop stalls streams at 10,000 connections): ZeroMQ
    sockets and the signalfd are adopted into it as raw file descriptors.    */
#ifndef INGRESS_H
#define INGRESS_H

#include "mesh_admin.h"
#include "mesh_buf.h"
#include "mesh_config.h"
#include "mesh_dispatch.h"
#include "mesh_id.h"
#include "mesh_metrics.h"
#include "mesh_msg.h"
#include "ingress_timer.h"

#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>

#define INGRESS_H2_BODY_WAIT_MS 1500      //  an h2 body not begun by then is none
#define INGRESS_MAX_ROUTERS 64            //  a request's tried routers are a 64-bit mask

//  Request states of a connection (an h2 stream or an h1 transaction)
enum {
    RQ_IDLE,            //  no request: between keep-alive transactions
    RQ_BODY,            //  reading the request body
    RQ_MESH,            //  in the mesh; nothing written to the client yet
    RQ_RESPONDING,      //  response headers queued or written
};

typedef struct ingress_t ingress_t;

//  Per-request state: lws allocates one per wsi (per h1 connection, reused
//  across keep-alive transactions, or per h2 stream)
typedef struct {
    ingress_t *ingress;
    struct lws *wsi;
    int state;
    char id [MESH_ID_LEN + 1];
    uint32_t slot;              //  index + 1 in the slot table; 0: none
    uint64_t token;
    int router;                 //  the router the request went to, or -1
    uint64_t tried;             //  routers that refused it or were lost with it
    bool heard;                 //  an event of its attempt arrived
    bool held;                  //  a connector said it serves it (HELD)
    int64_t orphaned_ms;        //  its router was lost then (0: not)
    uint32_t attempt;
    int kind;                   //  MESH_KIND_CHAT, _MODELS or _INVALID
    bool stream;
    bool h2;
    unsigned char key_hash [32];
    char model [256];
    char user [128];
    uint32_t estimate;
    uint32_t prompt_estimate;
    char cache_control [128];   //  the client's x-seekmesh-cache
    mesh_buf_t body;            //  kept until the end, for a retry
    int64_t content_length;     //  declared by the client, or -1
    int64_t received_us;
    int64_t submitted_us;       //  REQUEST sent (the first attempt)
    int64_t answered_us;        //  the first answer from the mesh came
    int64_t first_write_us;

    //  The response
    int status;
    const char *content_type;   //  a literal, or reply_type
    char reply_type [128];      //  a router's REPLY's media type, copied
    char answered_model [256];
    char limits [128];          //  x-ratelimit-* values from the router
    int retry_after_ms;
    int should_retry;           //  MESH_ERROR_RETRY_YES / _NO, or 0
    //  A refusal of the ingress's own (kind MESH_KIND_INVALID), sent to a
    //  router to learn whose key it is; answered as it is if none can
    int refusal_status;
    char refusal_type [32];
    char refusal_code [48];
    char refusal_param [96];
    char refusal_message [512];
    bool guard_noted;           //  the refusal drew from the address's bucket
    char cache [16];            //  x-seekmesh-cache: what the cache did ("" = bypass)
    char cache_ref [64];        //  the FAQ entry, or the leader's request id
    bool sse;
    bool headers_written;
    bool finished;              //  everything is in out
    bool close_after;           //  close the connection when flushed
    mesh_buf_t out;             //  response bytes not yet written
    int64_t last_write_ms;

    //  The audit record (ingress_audit.c): what it says beyond the above
    bool audit_pending;         //  a record is owed for this request
    bool body_complete;         //  the whole body was read
    const char *outcome;        //  MESH_AUDIT_*, once decided; else derived
    char error_code [64];       //  the error envelope's code
    int64_t start_wall_ms;
    char tenant [128];          //  from HEAD, END, ERROR
    char key_id [65];
    char region [64];
    char *endpoint_url;         //  malloc'd: the upstream endpoint (HEAD, END)
    char *params;               //  malloc'd: the validator's parameters JSON
    uint64_t upstream_ttfb_us;
    uint64_t prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens;
    uint64_t bytes_out;         //  body bytes written to the client
    struct mesh_completion_t *reply;    //  a stream's answer, assembled (ingress_audit.c)
    bool truncated;
    mesh_buf_t response;        //  what the client got, up to the bound

    //  The word filter (ingress_filter.c) and the session (ingress_session.c)
    struct ingress_words_t *words;
    bool words_decided;         //  ingress_filter_begin has looked at the lists
    char session [129];         //  the session it belongs to, or ""
    bool turn_owed;             //  its router waits for a TURN

    ingress_timer_t keepalive_timer;
    ingress_timer_t timeout_timer;      //  the request's deadline, or its body's
} pss_t;

struct ingress_t {
    mesh_config_t *config;
    struct ev_loop *loop;       //  libev: epoll, where lws' default is poll
    struct lws_context *context;
    struct lws_vhost *api_vhost;
    mesh_metrics_t *metrics;
    mesh_admin_t *admin;
    bool draining;
    bool stopping;              //  the loop has ended: connections are cut
    int64_t drain_ms;
    int64_t drain_started_ms;
    int64_t drain_deadline_ms;
    lws_sorted_usec_list_t drain_sul;

    int64_t max_body_bytes;
    int64_t max_out_bytes;
    int64_t keepalive_interval_ms;
    int64_t request_timeout_ms;
    uint32_t max_attempts;
    uint32_t default_max_tokens;
    int64_t body_timeout_ms;
    int header_timeout_s;
    int idle_timeout_s;
    //  Per-request timers, one queue per delay (ingress_timer.h), and the
    //  one lws timer that runs them
    ingress_timers_t request_timers, body_timers, keepalive_timers;
    ingress_timers_t body_wait_timers;      //  an HTTP/2 request that may have no body:
                                            //  INGRESS_H2_BODY_WAIT_MS
    lws_sorted_usec_list_t timers_sul;
    int64_t timers_due_us;                  //  when timers_sul fires; 0: not armed

    struct ingress_mesh_t *mesh;
    struct ingress_routers_t *routers;
    struct ingress_listen_t *listen;
    struct ingress_audit_t *audit;
    struct ingress_guard_t *guard;          //  client connections (API vhosts)
    struct ingress_guard_t *admin_guard;    //  admin connections
    int64_t refusal_logged_ms;              //  connection refusals: a line a second
    struct ingress_filter_t *filter;

    struct {
        mesh_metric_t *by_class [6];        //  1xx .. 5xx, by first digit
        mesh_metric_t *active;
        mesh_metric_t *seconds;
        mesh_metric_t *ttfb;
        mesh_metric_t *stage [3];           //  read, mesh, write (ingress_http.c)
        mesh_metric_t *client_gone;
        mesh_metric_t *retries;
        mesh_metric_t *connections;
        mesh_metric_t *refused_full;        //  connections over the global cap
        mesh_metric_t *refused_address;     //  ... over the cap of their address
        mesh_metric_t *throttled;           //  requests of a throttled address
        mesh_metric_t *body_timeouts;
        mesh_metric_t *resent;
    } metric;
    mesh_dispatch_counters_t bad_messages;
};

//  ingress_http.c -------------------------------------------------------------

extern const struct lws_protocols ingress_http_protocol;
//  Queues a complete JSON response (the error envelope when type is set).
//  Answers the refusal of a MESH_KIND_INVALID request as it is.
void ingress_respond_refusal (pss_t *pss);
void ingress_respond_error (pss_t *pss, int status, const char *type, const char *code,
                            const char *param, const char *message);
void ingress_respond_body (pss_t *pss, int status, const char *content_type,
                           const char *body, size_t len);
//  Starts an SSE response (200), appends events, ends it.
void ingress_sse_begin (pss_t *pss);
void ingress_sse_event (pss_t *pss, const char *data, size_t len, bool comment);
void ingress_sse_end (pss_t *pss);
//  An error after the response began: one error event, then the close.
void ingress_sse_error (pss_t *pss, const char *type, const char *code, const char *message);
void ingress_http_metrics (ingress_t *self);
//  The request was refused before a router authenticated its key (no key,
//  an unknown key, a body the validator refused): recorded without its
//  body, and counted against its address's unauthenticated allowance.
bool ingress_unauthenticated (const pss_t *pss);

//  ingress_mesh.c -------------------------------------------------------------

typedef struct ingress_mesh_t ingress_mesh_t;
extern const struct lws_protocols ingress_fd_protocol;

//  A file descriptor adopted into the lws loop, and what to run when it is
//  readable
typedef struct ingress_watch_t ingress_watch_t;
typedef void (ingress_watch_fn) (ingress_t *self, ingress_watch_t *watch);
struct ingress_watch_t {
    ingress_t *ingress;
    int fd;
    ingress_watch_fn *fn;
    void *socket;               //  the ZeroMQ socket behind it, if any
    void *arg;                  //  the handler's
    struct lws *wsi;            //  lws' handle on fd
};
//  Adopts fd (lws closes it at the end).  -1 on failure (fd closed).
int  ingress_adopt_fd (ingress_t *self, ingress_watch_t *watch, int fd, ingress_watch_fn *fn);
//  Stops watching and closes the fd; nothing if never adopted.
void ingress_unadopt (ingress_watch_t *watch);
//  True when a ZeroMQ socket has a message to read (ZMQ_EVENTS)
bool ingress_socket_has_input (void *socket);
//  Adopts a duplicate of a ZeroMQ socket's ZMQ_FD, and runs fn once at
//  once (the fd only signals changes).  -1 on failure.
int  ingress_adopt_socket (ingress_t *self, ingress_watch_t *watch, void *socket,
                           ingress_watch_fn *fn);
//  The ZeroMQ context every ingress socket lives in
void *ingress_mesh_context (ingress_t *self);
//  Binds the reply socket, connects to the routers and adopts the sockets
//  into the lws loop.  -1 with a reason.
int  ingress_mesh_start (ingress_t *self, char *why, size_t why_size);
void ingress_mesh_stop (ingress_t *self);
//  Gives pss a slot and sends its REQUEST; on failure responds 503.
void ingress_mesh_submit (pss_t *pss);
//  The client is gone (or the request timed out): CANCEL, free the slot.
void ingress_mesh_cancel (pss_t *pss, const char *outcome);
//  The request ended: free the slot.
void ingress_mesh_release (pss_t *pss);
bool ingress_mesh_ready (ingress_t *self, mesh_buf_t *why);
//  Router index lost its connection: its requests that nothing has claimed
//  (no event, no HELD) go to another router after the grace
void ingress_mesh_router_lost (ingress_t *self, int index);
size_t ingress_mesh_active (ingress_t *self);
//  Sends msg to every router this ingress is connected to
void ingress_mesh_broadcast (ingress_t *self, const mesh_msg_t *msg);
//  Sends msg to the router that has pss's request.  0, or -1
int  ingress_mesh_to_router (pss_t *pss, const mesh_msg_t *msg);
//  The reply endpoint named in REQUESTs
const char *ingress_mesh_reply_to (ingress_t *self);
//  The request an event is for (its slot and attempt), or NULL
pss_t *ingress_mesh_request_of (ingress_t *self, const mesh_msg_t *msg);

//  ingress_routers.c ----------------------------------------------------------

typedef struct ingress_routers_t ingress_routers_t;
//  Resolves ingress.routers and connects to each router.  -1 with a reason.
int  ingress_routers_start (ingress_t *self, char *why, size_t why_size);
void ingress_routers_stop (ingress_t *self);
//  Sends a REQUEST to a router that may take it (none of those in tried);
//  its index (the request now counts on it), or -1 when none can.
int  ingress_routers_send_request (ingress_t *self, const mesh_msg_t *msg, uint64_t tried);
//  Sends to router index (a CANCEL).  -1 if it cannot.
int  ingress_routers_send (ingress_t *self, int index, const mesh_msg_t *msg);
//  A request that went to router index is over there
void ingress_routers_release (ingress_t *self, int index);
//  Sends msg to every connected router (SYNC)
void ingress_routers_broadcast (ingress_t *self, const mesh_msg_t *msg);
//  Router index said it cannot take work now (draining, no connector)
void ingress_routers_refused (ingress_t *self, int index);
const char *ingress_routers_endpoint (ingress_t *self, int index);
//  Runs the monitors' handlers that have input (a missed wake-up)
void ingress_routers_poll (ingress_t *self);
bool ingress_routers_ready (ingress_t *self, mesh_buf_t *why);

//  ingress_mesh.c, lifecycle --------------------------------------------------

//  SIGTERM (or a successor took over): stop accepting connections, answer
//  the requests that still come on open ones with `Connection: close`, let
//  those in flight finish (up to mesh.drain_ms), then stop the loop.  A
//  second signal stops it at once.
void ingress_drain (ingress_t *self);
void ingress_stop (ingress_t *self);

//  ingress_listen.c -----------------------------------------------------------

typedef struct ingress_listen_t ingress_listen_t;
//  The listening sockets: taken over from a running process of this
//  instance (ingress.handover_path) or bound.  Before the vhosts exist;
//  blocks at most a few seconds.  -1 with a reason.
int  ingress_listen_open (ingress_t *self, char *why, size_t why_size);
//  Makes the vhosts (api, api-tls: fed by our sockets; admin: lws
//  listens, once an old process has let go of the port), accepts, and
//  completes or offers the handover.  -1 with a reason.
int  ingress_listen_start (ingress_t *self, const struct lws_protocols *api,
                           const struct lws_protocols *admin, char *why, size_t why_size);
//  This process took its sockets over from another one
bool ingress_listen_successor (ingress_t *self);
//  Draining without a successor: accept what is queued, then stop listening
void ingress_listen_drain (ingress_t *self);
//  Client connections open now (ingress_guard counts them)
size_t ingress_listen_connections (ingress_t *self);
//  After lws_context_destroy
void ingress_listen_stop (ingress_t *self);
//  What peers are told to answer to (REQUEST's reply_to), given the reply
//  endpoint as bound.  -1 with a reason when there is nothing to tell.
int  ingress_listen_reply_address (mesh_config_t *config, const char *bound, char *out, size_t size,
                                   char *why, size_t why_size);
void ingress_listen_test (bool verbose);

//  ingress_admin.c ------------------------------------------------------------

extern const struct lws_protocols ingress_admin_protocol;

#endif
