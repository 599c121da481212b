/*  connector: serves dispatched requests from upstream and streams the
    answer straight to the ingress.

    What it hears from routers is the table s_from_router below.  It also
    wakes up for: its heartbeat timer (s_on_heartbeat: HEARTBEAT, with its
    credit, to routers; a fresh socket for a silent router), upstream bytes
    (connector_http / connector_ws: HEAD, CHUNK, END or ERROR to the
    ingress, DONE to the router) and the outbox losing an ingress
    (s_on_ingress_lost: abort what that ingress asked for).

    One DEALER per router (Paranoid Pirate: a router silent for `liveness`
    heartbeats gets a fresh socket and a new READY).  connector.routers
    names the routers; a name stands for every address it resolves to,
    looked up again every mesh.resolve_interval_ms (mesh_discovery): a
    router that appears gets a link, one that leaves its name's answer gets
    no new link once its requests are over or it falls silent.  A link's
    socket monitor sends READY as soon as a restarted router is reachable
    again, and when a router's connection closes tells the ingress of each
    request that router dispatched here that it is still being served
    (HELD), so the ingress does not send it again elsewhere.
    Reactor thread only.                                                    */
#include "connector.h"
#include "connector_main.h"

#include "mesh_curve.h"
#include "mesh_discovery.h"
#include "mesh_dispatch.h"
#include "mesh_http.h"
#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_msg.h"
#include "mesh_peer.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_ROUTERS 64

typedef struct {
    connector_t *connector;
    char endpoint [280];
    bool used;                  //  the slot holds a router
    bool listed;                //  its name still resolves to it
    bool connected;             //  its TCP connection is up (monitor)
    bool ever_connected;
    size_t refs;                //  requests it dispatched here, not over
    void *socket;               //  DEALER
    void *monitor;              //  PAIR: the socket's connects and disconnects
    mesh_peer_t peer;           //  the router's liveness
    mesh_buf_t dones;           //  DONE messages waiting to go: a batch
    size_t done_count;          //  (mesh_msg_batch_add)
    mesh_timer_t done_timer;
} router_link_t;

//  What the connector hears --------------------------------------------------

static mesh_handler_fn s_on_router_message, s_on_dispatch, s_on_cancel, s_on_router_heartbeat,
                       s_on_registry;

static const mesh_route_t s_router_routes [] = {
    { MESH_MSG_DISPATCH,  s_on_dispatch },          //  start the upstream call
    { MESH_MSG_CANCEL,    s_on_cancel },            //  abort it (no token burn)
    { MESH_MSG_HEARTBEAT, s_on_router_heartbeat },  //  the router is alive
    { MESH_MSG_REGISTRY,  s_on_registry },          //  the live model registry
    { 0, NULL }
};
//  Every message from a router is also a sign of life (s_on_router_message)
static const mesh_conversation_t s_from_router = { "router", false, 64, s_on_router_message,
                                                   s_router_routes };

struct connector_t {
    mesh_config_t *config;
    mesh_loop_t *loop;
    mesh_metrics_t *metrics;
    void *ctx;
    char name [128];
    uint32_t capacity;
    int64_t heartbeat_ms;
    int64_t liveness;
    int64_t pool_idle_ms;
    int64_t ws_ping_ms;
    int ws_pool_size;
    int64_t done_flush_ms;
    bool draining;

    router_link_t routers [MAX_ROUTERS];
    size_t router_count;        //  slots ever used: routers [0, router_count)
    mesh_timer_t heartbeat_timer;
    mesh_discovery_t *discovery;
    int64_t resolve_interval_ms;
    mesh_timer_t resolve_timer;
    unsigned monitors;          //  names inproc monitor endpoints

    mesh_models_t *models;      //  the registry: from the config, then from routers
    uint64_t registry_version;
    mesh_map_t *requests;       //  id -> connector_req_t
    mesh_outbox_t *outbox;
    connector_tee_t *tee;       //  copies of cacheable calls to the cache
    connector_pools_t *pools;
    mesh_resolver_t *resolver;  //  upstream and router names

    struct {
        mesh_metric_t *ok;
        mesh_metric_t *failed;
        mesh_metric_t *cancelled;
        mesh_metric_t *aborted;
        mesh_metric_t *refused;
        mesh_metric_t *inflight;
        mesh_metric_t *ttfb;
        mesh_metric_t *duration;
        mesh_metric_t *stage [3];       //  prepare, upstream, reply
        mesh_metric_t *router_reconnects;
        mesh_metric_t *routers_connected;
    } metric;
    mesh_dispatch_counters_t bad_messages;
};

//  Credentials ------------------------------------------------------------------

char *
connector_auth_line (const mesh_model_t *model)
{
    const char *key = model->auth_env ? getenv (model->auth_env) : NULL;
    if (!model->auth_header || !key || !*key || strpbrk (key, "\r\n"))
        return strdup ("");
    bool bearer = strcasecmp (model->auth_header, "Authorization") == 0;
    size_t size = strlen (model->auth_header) + strlen (key) + 16;
    char *line = malloc (size);
    assert (line);
    snprintf (line, size, "%s: %s%s\r\n", model->auth_header, bearer ? "Bearer " : "", key);
    return line;
}

//  Messages to the router and the ingress ---------------------------------

//  DONE messages go to the router in batches: each one sent alone would
//  wake the router (and two I/O threads) once more per request, for news
//  that only frees credit.  A batch leaves after done_flush_ms, or at once
//  when it is large, as one BATCH message.
static void
s_flush_dones (router_link_t *link)
{
    mesh_loop_timer_stop (link->connector->loop, &link->done_timer);
    if (link->socket && link->done_count
    &&  mesh_msg_send_batch (link->socket, &link->dones, link->done_count, NULL, 0, ZMQ_DONTWAIT) < 0)
        mesh_debug ("cannot send %zu DONE to %s: %s", link->done_count, link->endpoint,
                    zmq_strerror (errno));
    mesh_buf_reset (&link->dones);
    link->done_count = 0;
    mesh_buf_trim (&link->dones, 64 * 1024);
}

static int
s_on_done_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    s_flush_dones (arg);
    return 0;
}

static void
s_send_done (connector_req_t *req, uint32_t status, const char *outcome)
{
    connector_t *self = req->connector;
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_DONE, req->id);
    msg.attempt = req->attempt;
    msg.status = status;
    snprintf (msg.outcome, sizeof msg.outcome, "%s", outcome);
    msg.prompt_tokens = req->prompt_tokens;
    msg.output_tokens = req->output_tokens;
    if (msg.prompt_tokens == 0 && msg.output_tokens == 0)
        msg.output_tokens = req->pieces;        //  counted; the router adds the prompt
    msg.cached_tokens = req->cached_tokens;
    msg.reason_tokens = req->reason_tokens;
    int64_t now = mesh_mono_us ();
    msg.ttfb_us = req->first_byte_us ? (uint64_t) (req->first_byte_us - req->dispatched_us) : 0;
    msg.total_us = (uint64_t) (now - req->dispatched_us);
    msg.bytes = req->bytes;
    msg.endpoint = req->endpoint_index;
    router_link_t *link = &self->routers [req->router];
    if (mesh_msg_batch_add (&link->dones, &msg) < 0)
        return;
    if (++link->done_count >= 256 || self->done_flush_ms == 0)
        s_flush_dones (link);
    else
    if (!mesh_timer_armed (&link->done_timer))
        mesh_loop_timer_start (self->loop, &link->done_timer, self->done_flush_ms, s_on_done_timer, link);
}

//  The leader of a cached call has lost its ingress: the cache decides
//  whether the call goes on (other clients may read it)
static void
s_tee_ingress_gone (connector_req_t *req)
{
    req->ingress_gone = true;
    mesh_msg_t cancel;
    mesh_msg_init (&cancel, MESH_MSG_CANCEL, req->id);
    cancel.attempt = req->attempt;
    snprintf (cancel.outcome, sizeof cancel.outcome, "client_gone");
    if (connector_tee_send (req->connector->tee, &cancel) < 0)
        req->tee = false;
}

static int
s_send_ingress (connector_req_t *req, const mesh_msg_t *msg)
{
    int rc = 0;
    if (!req->ingress_gone && mesh_outbox_send (req->connector->outbox, req->reply_to, msg) < 0) {
        mesh_warn ("cannot send %s to %s: %s req=%s", mesh_msg_name (msg->type), req->reply_to,
                   zmq_strerror (errno), req->id);
        rc = -1;
        if (req->tee)
            s_tee_ingress_gone (req);
    }
    if (req->tee && connector_tee_send (req->connector->tee, msg) < 0)
        req->tee = false;           //  a gap: the cache gives the call up
    //  A cached call with a reader in the cache goes on without its ingress
    return req->tee ? 0 : rc;
}

//  Who asked and where it went, for the ingress's audit record
static void
s_audit_fields (connector_req_t *req, mesh_msg_t *msg)
{
    memcpy (msg->tenant, req->tenant, sizeof msg->tenant);
    memcpy (msg->key_id, req->key_id, sizeof msg->key_id);
    snprintf (msg->url, sizeof msg->url, "%s", req->endpoint->text);
    snprintf (msg->region, sizeof msg->region, "%s", req->endpoint->region);
    msg->ttfb_us = req->first_byte_us ? (uint64_t) (req->first_byte_us - req->dispatched_us) : 0;
    memcpy (msg->cache, req->cache, sizeof msg->cache);
}

int
connector_send_head (connector_req_t *req, int status)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_HEAD, req->id);
    msg.attempt = req->attempt;
    msg.token = req->token;
    msg.status = (uint32_t) status;
    snprintf (msg.model, sizeof msg.model, "%s", req->model->name);
    memcpy (msg.limits, req->limits, sizeof msg.limits);
    s_audit_fields (req, &msg);
    req->head_sent = true;
    return s_send_ingress (req, &msg);
}

int
connector_send_chunk (connector_req_t *req, const char *data, size_t len, uint32_t flags)
{
    if (!req->head_sent && connector_send_head (req, 200) < 0)
        return -1;
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_CHUNK, req->id);
    msg.attempt = req->attempt;
    msg.token = req->token;
    msg.flags = flags;
    msg.data = (mesh_bytes_t) { data, len };
    req->bytes += len;
    return s_send_ingress (req, &msg);
}

//  Request lifecycle ----------------------------------------------------------

static void s_link_done (connector_t *self, router_link_t *link);

static void
s_request_free (connector_req_t *req)
{
    connector_t *self = req->connector;
    router_link_t *link = &self->routers [req->router];
    assert (link->refs > 0);
    link->refs--;
    s_link_done (self, link);
    mesh_map_remove (self->requests, req->id);
    connector_pools_abandon (self->pools, req);
    mesh_loop_timer_stop (self->loop, &req->timer);
    connector_stream_end (req);
    mesh_buf_free (&req->body);
    mesh_buf_free (&req->response);
    free (req->auth_line);
    mesh_models_destroy (&req->registry);
    free (req);
    mesh_metric_set (self->metric.inflight, (double) mesh_map_size (self->requests));
}

void
connector_request_finish (connector_req_t *req, const char *data, size_t len)
{
    connector_t *self = req->connector;
    char *assembled = NULL;
    if (!data && !req->client_stream) {
        assembled = connector_stream_assembled (req, &len);
        if (!assembled) {
            connector_request_fail (req, 502, "upstream_error", "upstream_protocol", 0,
                                    "upstream_error", "The upstream stream ended without a completion.");
            return;
        }
        data = assembled;
    }
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_END, req->id);
    msg.attempt = req->attempt;
    msg.token = req->token;
    msg.status = 200;
    snprintf (msg.model, sizeof msg.model, "%s", req->model->name);
    msg.data = (mesh_bytes_t) { data, data ? len : 0 };
    snprintf (msg.finish, sizeof msg.finish, "%s", req->finish);
    msg.prompt_tokens = req->prompt_tokens;
    msg.output_tokens = req->output_tokens;
    msg.cached_tokens = req->cached_tokens;
    msg.reason_tokens = req->reason_tokens;
    memcpy (msg.limits, req->limits, sizeof msg.limits);
    s_audit_fields (req, &msg);
    if (data)
        req->bytes += len;
    int64_t ended_us = mesh_mono_us ();
    bool delivered = s_send_ingress (req, &msg) == 0;
    if (req->sent_us) {
        mesh_metric_observe (self->metric.stage [0], (double) (req->sent_us - req->dispatched_us) / 1e6);
        mesh_metric_observe (self->metric.stage [1], (double) (ended_us - req->sent_us) / 1e6);
        mesh_metric_observe (self->metric.stage [2], (double) (mesh_mono_us () - ended_us) / 1e6);
    }
    free (assembled);
    s_send_done (req, 200, delivered ? "ok" : "ingress_unreachable");
    mesh_metric_inc (delivered ? self->metric.ok : self->metric.aborted);
    mesh_metric_observe (self->metric.duration,
                         (double) (mesh_mono_us () - req->dispatched_us) / 1e6);
    s_request_free (req);
}

//  Whether the router may try elsewhere, and whether the endpoint is to
//  blame (for outlier ejection).  A rate limit is worth a retry elsewhere
//  but says nothing bad about the host; a refused credential or an unknown
//  model would fail the same way anywhere; a timeout after the request
//  went out may have left it running upstream, so it is not sent twice
//  (the model's fallback may still take it); a connector that cannot take
//  the request blames no endpoint.
static uint32_t
s_fail_flags (int status, const char *code)
{
    uint32_t flags = mesh_http_should_retry (status, code) ? MESH_ERROR_RETRY_YES : MESH_ERROR_RETRY_NO;
    bool retryable = status == 429 || status == 502 || status == 503 || status == 504;
    if (mesh_streq (code, "upstream_auth_failed") || mesh_streq (code, "upstream_not_found")
    ||  mesh_streq (code, "upstream_response_too_large") || mesh_streq (code, "upstream_tls")
    ||  mesh_streq (code, "upstream_timeout") || mesh_streq (code, "upstream_stalled"))
        retryable = false;
    if (retryable)
        flags |= MESH_FAIL_RETRYABLE;
    bool connector_side = mesh_streq (code, "connector_full") || mesh_streq (code, "draining")
                       || mesh_streq (code, "model_not_configured")
                       || mesh_streq (code, "connector_shutdown");
    if (status >= 500 && status != 501 && !connector_side)
        flags |= MESH_FAIL_ENDPOINT;
    return flags;
}

//  Before any byte reached the client a failure goes to the router, which
//  retries, falls back or answers the client; after, the client gets an
//  error event straight away and the router a DONE.
void
connector_request_fail (connector_req_t *req, int status, const char *type, const char *code,
                        int retry_after_ms, const char *outcome, const char *fmt, ...)
{
    connector_t *self = req->connector;
    mesh_msg_t msg;
    bool before = !req->head_sent;
    mesh_msg_init (&msg, before ? MESH_MSG_FAIL : MESH_MSG_ERROR, req->id);
    msg.attempt = req->attempt;
    msg.status = (uint32_t) status;
    snprintf (msg.err_type, sizeof msg.err_type, "%s", type);
    snprintf (msg.err_code, sizeof msg.err_code, "%s", code);
    va_list args;
    va_start (args, fmt);
    vsnprintf (msg.message, sizeof msg.message, fmt, args);
    va_end (args);
    msg.retry_after_ms = (uint32_t) retry_after_ms;
    msg.flags = s_fail_flags (status, code);
    mesh_info ("upstream request failed: %d %s (%s) model=%s endpoint=%u req=%s", status, code,
               before ? "before the response" : "mid-stream", req->model->name,
               req->endpoint_index, req->id);
    if (before) {
        msg.endpoint = req->endpoint_index;
        snprintf (msg.outcome, sizeof msg.outcome, "%s", outcome);
        router_link_t *link = &self->routers [req->router];
        if (!link->socket || mesh_msg_send (link->socket, &msg, NULL, 0, ZMQ_DONTWAIT) < 0)
            mesh_warn ("cannot send FAIL to %s: %s req=%s", link->endpoint, zmq_strerror (errno), req->id);
    }
    else {
        msg.token = req->token;
        msg.flags &= MESH_ERROR_RETRY_YES | MESH_ERROR_RETRY_NO;
        memcpy (msg.limits, req->limits, sizeof msg.limits);
        snprintf (msg.model, sizeof msg.model, "%s", req->model->name);
        memcpy (msg.tenant, req->tenant, sizeof msg.tenant);
        memcpy (msg.key_id, req->key_id, sizeof msg.key_id);
        memcpy (msg.cache, req->cache, sizeof msg.cache);
        s_send_ingress (req, &msg);
        s_send_done (req, (uint32_t) status, outcome);
    }
    mesh_metric_inc (self->metric.failed);
    s_request_free (req);
}

void
connector_request_abort (connector_req_t *req, const char *outcome)
{
    connector_t *self = req->connector;
    mesh_debug ("aborted: %s req=%s", outcome, req->id);
    s_send_done (req, 499, outcome);
    mesh_metric_inc (self->metric.aborted);
    s_request_free (req);
}

static int
s_on_request_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    connector_req_t *req = arg;
    if (!req->conn)
        connector_request_fail (req, 504, "upstream_error", "upstream_connect_timeout", 1000,
                                "timeout", "Connecting to the upstream timed out after %lld ms.",
                                (long long) req->model->connect_timeout_ms);
    else
    if (!req->first_byte_us)
        connector_request_fail (req, 504, "upstream_error", "upstream_timeout", 1000, "timeout",
                                "The upstream did not answer within %lld ms.",
                                (long long) req->model->first_byte_timeout_ms);
    else
        connector_request_fail (req, 504, "upstream_error", "upstream_stalled", 1000, "timeout",
                                "The upstream stream stalled for %lld ms.",
                                (long long) req->model->idle_timeout_ms);
    return 0;
}

//  The pool sent the request upstream: now the first byte is awaited
static void
s_on_sent (connector_req_t *req)
{
    req->sent_us = mesh_mono_us ();
    mesh_loop_timer_start (req->connector->loop, &req->timer, req->model->first_byte_timeout_ms,
                           s_on_request_timer, req);
}

static void
s_on_unreachable (connector_req_t *req, const char *why)
{
    connector_request_fail (req, 502, "upstream_error", "upstream_unreachable", 0,
                            "upstream_error", "Cannot reach the upstream: %s", why);
}

void
connector_request_progress (connector_req_t *req)
{
    connector_t *self = req->connector;
    if (!req->first_byte_us) {
        req->first_byte_us = mesh_loop_now_us (self->loop);
        mesh_metric_observe (self->metric.ttfb, (double) (req->first_byte_us - req->dispatched_us) / 1e6);
    }
    mesh_loop_timer_start (self->loop, &req->timer, req->model->idle_timeout_ms,
                           s_on_request_timer, req);
}

void
connector_request_retry (connector_req_t *req)
{
    req->stale_retried = true;
    mesh_buf_reset (&req->response);
    mesh_loop_timer_start (req->connector->loop, &req->timer, req->model->connect_timeout_ms,
                           s_on_request_timer, req);
    connector_pools_acquire (req->connector->pools, req);
}

//  Router messages ----------------------------------------------------------

//  The request cannot even start here: the router decides what next
static void
s_refuse (connector_t *self, int router, const mesh_msg_t *msg, int status, const char *code,
          const char *message)
{
    mesh_msg_t fail;
    mesh_msg_init (&fail, MESH_MSG_FAIL, msg->id);
    fail.attempt = msg->attempt;
    fail.status = (uint32_t) status;
    strcpy (fail.err_type, "server_error");
    snprintf (fail.err_code, sizeof fail.err_code, "%s", code);
    snprintf (fail.message, sizeof fail.message, "%s", message);
    fail.retry_after_ms = status == 503 ? 1000 : 0;
    fail.flags = s_fail_flags (status, code);
    fail.endpoint = msg->endpoint;
    snprintf (fail.outcome, sizeof fail.outcome, "refused");
    if (self->routers [router].socket)
        mesh_msg_send (self->routers [router].socket, &fail, NULL, 0, ZMQ_DONTWAIT);
    mesh_metric_inc (self->metric.refused);
}

static int
s_on_dispatch (void *arg, mesh_inbox_t *inbox)
{
    router_link_t *link = arg;
    connector_t *self = link->connector;
    int router = (int) (link - self->routers);
    const mesh_msg_t *msg = &inbox->msg;
    if (self->draining) {
        s_refuse (self, router, msg, 503, "draining", "This connector is shutting down; retry shortly.");
        return 0;
    }
    if (mesh_map_size (self->requests) >= self->capacity) {
        s_refuse (self, router, msg, 503, "connector_full", "The connector is at capacity; retry shortly.");
        return 0;
    }
    const mesh_model_t *model = mesh_models_find (self->models, msg->model);
    if (!model || msg->endpoint >= model->endpoint_count) {
        s_refuse (self, router, msg, 502, "model_not_configured",
                  "The connector has no such upstream for this model.");
        return 0;
    }
    connector_req_t *old = mesh_map_get (self->requests, msg->id);
    if (old)                    //  a newer attempt supersedes what we hold
        connector_request_abort (old, "superseded");

    connector_req_t *req = calloc (1, sizeof *req);
    assert (req);
    req->connector = self;
    memcpy (req->id, msg->id, sizeof req->id);
    req->attempt = msg->attempt;
    req->token = msg->token;
    memcpy (req->reply_to, msg->reply_to, sizeof req->reply_to);
    req->router = router;
    link->refs++;
    req->registry = mesh_models_ref (self->models);
    req->model = model;
    req->endpoint_index = msg->endpoint;
    req->endpoint = &model->endpoints [msg->endpoint];
    req->auth_line = connector_auth_line (model);
    memcpy (req->limits, msg->limits, sizeof req->limits);
    memcpy (req->tenant, msg->tenant, sizeof req->tenant);
    memcpy (req->key_id, msg->key_id, sizeof req->key_id);
    memcpy (req->cache, msg->cache, sizeof req->cache);
    req->tee = mesh_streq (msg->cache, "miss") && connector_tee_on (self->tee);
    req->client_stream = msg->stream;
    req->dispatched_us = mesh_loop_now_us (self->loop);
    mesh_map_put (self->requests, req->id, req);
    mesh_metric_set (self->metric.inflight, (double) mesh_map_size (self->requests));
    if (connector_stream_prepare_body (req, msg->body.data, msg->body.size, msg->requested) < 0) {
        connector_request_fail (req, 400, "invalid_request_error", "invalid_json", 0, "bad_request",
                                "The request body is not a JSON object.");
        return 0;
    }
    mesh_loop_timer_start (self->loop, &req->timer, model->connect_timeout_ms, s_on_request_timer, req);
    mesh_debug ("dispatch model=%s stream=%d attempt=%u req=%s", model->name, req->client_stream,
                req->attempt, req->id);
    connector_pools_acquire (self->pools, req);
    return 0;
}

static int
s_on_cancel (void *arg, mesh_inbox_t *inbox)
{
    connector_t *self = ((router_link_t *) arg)->connector;
    const mesh_msg_t *msg = &inbox->msg;
    connector_req_t *req = mesh_map_get (self->requests, msg->id);
    if (!req || req->attempt != msg->attempt)
        return 0;
    mesh_metric_inc (self->metric.cancelled);
    connector_request_abort (req, *msg->outcome ? msg->outcome : "cancelled");
    return 0;
}

//  The ingress behind endpoint is gone: nobody will read what we send
static void
s_on_ingress_lost (void *arg, const char *endpoint)
{
    connector_t *self = arg;
    size_t count = mesh_map_size (self->requests), found = 0;
    if (count == 0)
        return;
    connector_req_t **victims = calloc (count, sizeof *victims);
    assert (victims);
    size_t cursor = 0;
    connector_req_t *req;
    while ((req = mesh_map_next (self->requests, &cursor, NULL)))
        if (mesh_streq (req->reply_to, endpoint))
            victims [found++] = req;
    for (size_t i = 0; i < found; i++) {
        if (victims [i]->tee && !victims [i]->ingress_gone) {
            s_tee_ingress_gone (victims [i]);
            if (victims [i]->tee)
                continue;           //  the cache decides
        }
        connector_request_abort (victims [i], "client_gone");
    }
    if (found)
        mesh_warn ("ingress %s lost: aborted %zu upstream calls", endpoint, found);
    free (victims);
}

static void s_check_credentials (connector_t *self);

//  A router sends the live registry when it changes and when we join.  A
//  request in flight keeps the registry it was dispatched under.
static int
s_on_registry (void *arg, mesh_inbox_t *inbox)
{
    connector_t *self = ((router_link_t *) arg)->connector;
    const mesh_msg_t *msg = &inbox->msg;
    if (msg->version && msg->version == self->registry_version)
        return 0;                 //  the same, from another router
    char why [512];
    mesh_models_t *models = mesh_models_from_json (msg->data.data, msg->data.size, "registry",
                                                   why, sizeof why);
    if (!models) {
        mesh_warn ("registry %llu from %s refused: %s", (unsigned long long) msg->version,
                   msg->sender, why);
        return 0;
    }
    mesh_models_destroy (&self->models);
    self->models = models;
    self->registry_version = msg->version;
    connector_pools_warm (self->pools, self->models);
    s_check_credentials (self);
    mesh_info ("registry %llu: %zu models", (unsigned long long) msg->version, mesh_models_count (models));
    return 0;
}

static void s_link_open (connector_t *self, router_link_t *link);

static void
s_send_beat (connector_t *self, router_link_t *link, int type)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, (uint32_t) type, NULL);
    snprintf (msg.sender, sizeof msg.sender, "%s", self->name);
    msg.capacity = self->draining ? 0 : self->capacity;
    msg.inflight = (uint32_t) mesh_map_size (self->requests);
    if (link->socket)
        mesh_msg_send (link->socket, &msg, NULL, 0, ZMQ_DONTWAIT);
}

//  Any message from a router says it is alive
static int
s_on_router_message (void *arg, mesh_inbox_t *inbox)
{
    (void) inbox;
    router_link_t *link = arg;
    mesh_peer_seen (&link->peer, mesh_loop_now_ms (link->connector->loop));
    return 0;
}

//  A HEARTBEAT carries nothing more than its arrival
static int
s_on_router_heartbeat (void *arg, mesh_inbox_t *inbox)
{
    (void) arg;
    (void) inbox;
    return 0;
}

static int
s_on_router (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    router_link_t *link = arg;
    return mesh_dispatch (socket, &s_from_router, link, &link->connector->bad_messages) == 0
         ? MESH_LOOP_DRAINED : 0;
}

static void
s_count_connected (connector_t *self)
{
    size_t connected = 0;
    for (size_t i = 0; i < self->router_count; i++)
        connected += self->routers [i].used && self->routers [i].connected;
    if (self->metric.routers_connected)
        mesh_metric_set (self->metric.routers_connected, (double) connected);
}

//  The router's connection closed: for each request it dispatched here,
//  tell the ingress that this connector still serves it
static void
s_say_held (connector_t *self, router_link_t *link)
{
    int index = (int) (link - self->routers);
    size_t cursor = 0, held = 0;
    connector_req_t *req;
    while ((req = mesh_map_next (self->requests, &cursor, NULL))) {
        if (req->router != index)
            continue;
        mesh_msg_t msg;
        mesh_msg_init (&msg, MESH_MSG_HELD, req->id);
        msg.attempt = req->attempt;
        msg.token = req->token;
        snprintf (msg.sender, sizeof msg.sender, "%s", self->name);
        if (s_send_ingress (req, &msg) == 0)
            held++;
    }
    if (held)
        mesh_info ("router %s gone: %zu of its requests still served here", link->endpoint, held);
}

static int
s_on_link_monitor (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    router_link_t *link = arg;
    connector_t *self = link->connector;
    int event, value;
    while (mesh_zmq_monitor_read (socket, &event, &value)) {
        if (event == ZMQ_EVENT_CONNECTED && !link->connected) {
            link->connected = true;
            //  A router that came back learns of us now, not at our next beat
            if (link->ever_connected)
                s_send_beat (self, link, MESH_MSG_READY);
            link->ever_connected = true;
        }
        else
        if (event == ZMQ_EVENT_DISCONNECTED && link->connected) {
            link->connected = false;
            mesh_debug ("router %s disconnected", link->endpoint);
            s_say_held (self, link);
        }
    }
    s_count_connected (self);
    return 0;
}

static void
s_link_open (connector_t *self, router_link_t *link)
{
    link->socket = mesh_zmq_socket (self->ctx, ZMQ_DEALER);
    assert (link->socket);
    //  A restarted router is found again within a quarter second
    int reconnect_max = 250;
    zmq_setsockopt (link->socket, ZMQ_RECONNECT_IVL_MAX, &reconnect_max, sizeof reconnect_max);
    zmq_setsockopt (link->socket, ZMQ_ROUTING_ID, self->name, strlen (self->name));
    char name [64];
    snprintf (name, sizeof name, "inproc://connector-link-monitor-%u", self->monitors++);
    if (zmq_socket_monitor (link->socket, name, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) == 0
    &&  (link->monitor = zmq_socket (self->ctx, ZMQ_PAIR))
    &&  zmq_connect (link->monitor, name) == 0)
        mesh_loop_zmq_add (self->loop, link->monitor, s_on_link_monitor, link);
    else
        mesh_warn ("router link %s: cannot watch its connection: %s", link->endpoint,
                   zmq_strerror (errno));
    link->connected = link->ever_connected = false;
    char why [512];
    if (mesh_curve_connect (link->socket, "router", link->endpoint, why, sizeof why) < 0)
        mesh_error ("router link: %s", why);
    mesh_loop_zmq_add (self->loop, link->socket, s_on_router, link);
    mesh_peer_init (&link->peer, self->heartbeat_ms, self->liveness, mesh_loop_now_ms (self->loop));
    s_send_beat (self, link, MESH_MSG_READY);
}

static void
s_link_close (connector_t *self, router_link_t *link)
{
    s_flush_dones (link);
    if (link->monitor) {
        mesh_loop_zmq_remove (self->loop, link->monitor);
        zmq_socket_monitor (link->socket, NULL, 0);
        zmq_close (link->monitor);
        link->monitor = NULL;
    }
    if (!link->socket)
        return;
    mesh_loop_zmq_remove (self->loop, link->socket);
    zmq_close (link->socket);
    link->socket = NULL;
    link->connected = false;
    s_count_connected (self);
}

//  A router no longer listed: its link goes once its requests are over
static void
s_link_done (connector_t *self, router_link_t *link)
{
    if (!link->used || link->listed || link->refs > 0)
        return;
    mesh_info ("router link %s closed", link->endpoint);
    s_link_close (self, link);
    mesh_buf_free (&link->dones);
    link->used = false;
}

//  mesh_discovery: a router appeared or left its name's answer
static void
s_on_peer (void *arg, const char *endpoint, bool up)
{
    connector_t *self = arg;
    router_link_t *link = NULL, *free_slot = NULL;
    for (size_t i = 0; i < MAX_ROUTERS; i++) {
        router_link_t *at = &self->routers [i];
        if (at->used && strcmp (at->endpoint, endpoint) == 0)
            link = at;
        else
        if (!at->used && at->refs == 0 && !free_slot)
            free_slot = at;
    }
    if (!up) {
        if (link) {
            link->listed = false;
            s_link_done (self, link);
        }
        return;
    }
    if (link) {
        link->listed = true;
        if (!link->socket)
            s_link_open (self, link);
        return;
    }
    if (!free_slot) {
        mesh_error ("router %s: already %d routers, not serving it", endpoint, MAX_ROUTERS);
        return;
    }
    link = free_slot;
    memset (&link->peer, 0, sizeof link->peer);
    link->connector = self;
    snprintf (link->endpoint, sizeof link->endpoint, "%s", endpoint);
    link->used = link->listed = true;
    size_t index = (size_t) (link - self->routers);
    if (index >= self->router_count)
        self->router_count = index + 1;
    s_link_open (self, link);
    mesh_info ("router link %s", endpoint);
}

static int
s_on_resolve_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    connector_t *self = arg;
    mesh_discovery_refresh (self->discovery);
    mesh_loop_timer_start (loop, timer, self->resolve_interval_ms, s_on_resolve_timer, self);
    return 0;
}

static int
s_on_heartbeat (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    connector_t *self = arg;
    int64_t now = mesh_loop_now_ms (loop);
    for (size_t i = 0; i < self->router_count; i++) {
        router_link_t *link = &self->routers [i];
        if (!link->used || !link->socket)
            continue;
        if (mesh_peer_expired (&link->peer, now)) {
            if (!link->listed) {
                //  Gone from its name's answer and silent: let it go
                s_link_close (self, link);
                s_link_done (self, link);
                continue;
            }
            //  Paranoid Pirate: a fresh socket drops whatever is queued for
            //  a router that is gone, and READY introduces us again
            mesh_debug ("router %s silent, reconnecting", link->endpoint);
            mesh_metric_inc (self->metric.router_reconnects);
            s_link_close (self, link);
            s_link_open (self, link);
        }
        else
            s_send_beat (self, link, MESH_MSG_HEARTBEAT);
    }
    mesh_loop_timer_start (loop, timer, self->heartbeat_ms, s_on_heartbeat, self);
    return 0;
}

//  Lifecycle ------------------------------------------------------------------

static void
s_metrics (connector_t *self)
{
    mesh_metrics_t *m = self->metrics;
    const char *done = "seekmesh_connector_requests_total";
    const char *done_help = "Upstream requests ended, by outcome.";
    self->metric.ok = mesh_metrics_counter (m, done, done_help, "outcome=\"ok\"");
    self->metric.failed = mesh_metrics_counter (m, done, done_help, "outcome=\"failed\"");
    self->metric.cancelled = mesh_metrics_counter (m, done, done_help, "outcome=\"cancelled\"");
    self->metric.aborted = mesh_metrics_counter (m, done, done_help, "outcome=\"aborted\"");
    self->metric.refused = mesh_metrics_counter (m, done, done_help, "outcome=\"refused\"");
    self->metric.inflight = mesh_metrics_gauge (m, "seekmesh_connector_inflight",
        "Upstream requests in progress.", NULL);
    self->metric.ttfb = mesh_metrics_histogram (m, "seekmesh_connector_upstream_ttfb_seconds",
        "Time from dispatch to the upstream's first response byte.", NULL);
    self->metric.duration = mesh_metrics_histogram (m, "seekmesh_connector_request_seconds",
        "Time from dispatch to the end of a successful response.", NULL);
    //  Where a request's time goes here, for the benchmark's budget: prepare
    //  (DISPATCH to the request written upstream), upstream (written to the
    //  response complete), reply (complete to END sent)
    static const char *stages [3] = { "stage=\"prepare\"", "stage=\"upstream\"", "stage=\"reply\"" };
    for (int i = 0; i < 3; i++)
        self->metric.stage [i] = mesh_metrics_histogram (m, "seekmesh_connector_stage_seconds",
            "Time successful requests spend in each stage of the connector (prepare, upstream, reply).",
            stages [i]);
    mesh_dispatch_counters (&self->bad_messages, m, "connector");
    self->metric.router_reconnects = mesh_metrics_counter (m, "seekmesh_connector_router_reconnects_total",
        "Router links reset after missed heartbeats.", NULL);
    self->metric.routers_connected = mesh_metrics_gauge (m, "seekmesh_connector_routers_connected",
        "Routers this connector has a live connection to.", NULL);
}

//  Says which models will be called without their credential.
static void
s_check_credentials (connector_t *self)
{
    for (size_t i = 0; i < mesh_models_count (self->models); i++) {
        const mesh_model_t *model = mesh_models_at (self->models, i);
        const char *key = model->auth_env ? getenv (model->auth_env) : NULL;
        if (model->auth_header && (!key || !*key))
            mesh_warn ("model %s: %s is not set, calling the upstream without credentials",
                       model->name, model->auth_env);
        else
        if (key && strpbrk (key, "\r\n"))
            mesh_warn ("model %s: the key in %s has a line break: not sent", model->name, model->auth_env);
    }
}

connector_t *
connector_new (mesh_config_t *config, void *ctx, mesh_loop_t *loop, mesh_metrics_t *metrics,
               char *why, size_t why_size)
{
    connector_t *self = calloc (1, sizeof *self);
    assert (self);
    self->config = config;
    self->loop = loop;
    self->metrics = metrics;
    self->ctx = ctx;
    int instance = mesh_config_instance ();
    unsigned char nonce [4];
    mesh_random (nonce, sizeof nonce);
    snprintf (self->name, sizeof self->name, "connector-%d-%d-%02x%02x%02x%02x", instance,
              (int) getpid (), nonce [0], nonce [1], nonce [2], nonce [3]);
    self->capacity = (uint32_t) mesh_setting_int (config, "connector.capacity");
    self->heartbeat_ms = mesh_setting_int (config, "router.heartbeat_ms");
    self->liveness = mesh_setting_int (config, "router.heartbeat_liveness");
    self->pool_idle_ms = mesh_setting_int (config, "connector.pool_idle_ms");
    self->ws_ping_ms = mesh_setting_int (config, "connector.ws_ping_ms");
    self->ws_pool_size = (int) mesh_setting_int (config, "connector.ws_pool_size");
    self->done_flush_ms = mesh_setting_int (config, "connector.done_flush_ms");
    self->models = mesh_models_load (config);

    self->resolve_interval_ms = mesh_setting_int (config, "mesh.resolve_interval_ms");
    size_t count = mesh_setting_count (config, "connector.routers");
    if (count == 0 || count > MAX_ROUTERS)
        mesh_config_invalid (config, "connector.routers", "between 1 and %d routers, not %zu",
                             MAX_ROUTERS, count);
    if (mesh_config_failed (config)) {
        snprintf (why, why_size, "%s", mesh_config_failed (config));
        connector_destroy (&self);
        return NULL;
    }
    s_metrics (self);
    s_check_credentials (self);
    self->requests = mesh_map_new ();
    self->outbox = mesh_outbox_new (ctx, loop, s_on_ingress_lost, self);
    self->tee = connector_tee_new (config, ctx, metrics, self->name);
    self->resolver = mesh_resolver_new ();
    mesh_resolver_attach (self->resolver, loop);
    connector_pool_settings_t pool_settings = {
        .loop = loop, .metrics = metrics, .resolver = self->resolver,
        .idle_ms = self->pool_idle_ms, .ping_ms = self->ws_ping_ms, .warm_size = self->ws_pool_size,
        .http = &connector_http_protocol, .websocket = &connector_ws_protocol,
        .on_sent = s_on_sent, .on_unreachable = s_on_unreachable, .credential = connector_auth_line
    };
    self->pools = connector_pools_new (&pool_settings);
    //  The routers: connector.routers, or every instance of router.connector_listen
    self->discovery = mesh_discovery_new (self->resolver, "router", s_on_peer, self);
    for (size_t i = 0; i < count; i++)
        if (mesh_discovery_add (self->discovery, mesh_setting_item (config, "connector.routers", i)) < 0) {
            snprintf (why, why_size, "config %s: connector.routers: \"%s\" is not tcp://host:port or ipc://path",
                      mesh_config_file (config), mesh_setting_item (config, "connector.routers", i));
            connector_destroy (&self);
            return NULL;
        }
    mesh_loop_timer_start (loop, &self->resolve_timer, self->resolve_interval_ms, s_on_resolve_timer, self);
    connector_pools_warm (self->pools, self->models);
    mesh_loop_timer_start (loop, &self->heartbeat_timer, self->heartbeat_ms, s_on_heartbeat, self);
    mesh_info ("%s ready, capacity %u", self->name, self->capacity);
    return self;
}

void
connector_destroy (connector_t **self_p)
{
    assert (self_p);
    connector_t *self = *self_p;
    if (!self)
        return;
    if (self->requests) {
        //  Whatever is left ends now: tell the ingresses
        size_t count = mesh_map_size (self->requests), n = 0;
        connector_req_t **left = calloc (count + 1, sizeof *left);
        size_t cursor = 0;
        connector_req_t *req;
        while ((req = mesh_map_next (self->requests, &cursor, NULL)))
            left [n++] = req;
        for (size_t i = 0; i < n; i++)
            connector_request_fail (left [i], 503, "server_error", "connector_shutdown", 1000,
                                    "aborted", "The connector shut down before the response ended.");
        free (left);
        mesh_map_destroy (&self->requests);
    }
    mesh_loop_timer_stop (self->loop, &self->heartbeat_timer);
    mesh_loop_timer_stop (self->loop, &self->resolve_timer);
    mesh_discovery_destroy (&self->discovery);
    for (size_t i = 0; i < self->router_count; i++) {
        s_link_close (self, &self->routers [i]);
        mesh_buf_free (&self->routers [i].dones);
    }
    connector_pools_destroy (&self->pools);
    mesh_resolver_destroy (&self->resolver);
    connector_tee_destroy (&self->tee);
    mesh_outbox_destroy (&self->outbox);
    mesh_models_destroy (&self->models);
    free (self);
    *self_p = NULL;
}

bool
connector_ready (connector_t *self, mesh_buf_t *why)
{
    if (self->draining) {
        mesh_buf_append_str (why, "draining");
        return false;
    }
    return true;
}

size_t
connector_drain (connector_t *self)
{
    if (!self->draining) {
        self->draining = true;
        //  Capacity 0 in the next beats: routers stop sending work
        for (size_t i = 0; i < self->router_count; i++)
            s_send_beat (self, &self->routers [i], MESH_MSG_HEARTBEAT);
    }
    return mesh_map_size (self->requests);
}

size_t
connector_inflight (connector_t *self)
{
    return mesh_map_size (self->requests);
}
