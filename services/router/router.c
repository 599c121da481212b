/*  router: admission, quotas and dispatch, with retries and fallback.

    What it hears on its sockets is the table s_from_ingress /
    s_from_connectors below.  It also wakes up for: a quota decision from
    Redis (s_on_decision: refuse, or route: breaker, endpoint, connector,
    DISPATCH), its heartbeat timer (s_on_heartbeat: HEARTBEAT to
    connectors, expiry, lease renewal), the connector socket's monitor (a
    connection closed: s_on_connector_lost sends LOST for each request the
    connector held) and registry changes (s_on_registry: REGISTRY to every
    connector).

    A request lives here from REQUEST to DONE (or to its refusal, FAIL
    without a retry, or the loss of its connector).  It keeps the frame it
    came in, so a retry or a fallback can send the body again, and a
    reference to the registry generation it was admitted under.

    Cacheable requests (router_cache.h) ask the cache stage once the quota
    admits them; its verdict either ends them here (a hit or a FAQ answer,
    sent by the cache itself), keeps them until the call they follow is
    through, or sends them upstream, a leader's answer copied to the cache.

    Replies to an ingress (ERROR, REPLY, LOST) go through the outbox to the
    reply endpoint named in the request.

    A request admitted while every connector is at its capacity waits (a
    FIFO) up to router.queue_timeout_ms for credit.  Requests this router
    cannot start at all are answered ERROR flagged ELSEWHERE, and the
    ingress gives them to another router: while it has no connector (a
    restarted router, until its connectors have said READY), and while it
    drains (it keeps its socket open, answering so, until requests stop
    coming).  Reactor thread only.                                           */
#include "router.h"
#include "router_cache.h"
#include "router_connectors.h"
#include "router_faq.h"
#include "router_filters.h"
#include "router_keys.h"
#include "router_load.h"
#include "router_peers.h"
#include "router_policy.h"
#include "router_quota.h"
#include "router_registry.h"
#include "router_session.h"

#include "mesh_curve.h"
#include "mesh_dispatch.h"
#include "mesh_http.h"
#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_models.h"
#include "mesh_msg.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

//  Metrics of one (key, model) pair
typedef struct {
    char *name;
    char labels [420];
    mesh_metric_t *admitted;
    mesh_metric_t *inflight;
    mesh_metric_t *queued;
} series_t;

typedef struct request_t request_t;

struct router_t {
    mesh_config_t *config;
    mesh_loop_t *loop;
    mesh_metrics_t *metrics;
    void *ctx;
    char name [64];

    void *ingress;              //  PULL: REQUEST, CANCEL
    void *connectors_socket;    //  ROUTER: READY, HEARTBEAT, FAIL, DONE
    void *monitor;              //  PAIR: the ROUTER socket's disconnects
    mesh_outbox_t *outbox;      //  PUSH to ingress reply endpoints

    router_registry_t *registry;
    router_policy_t *policy;
    router_quota_t *quota;
    router_connectors_t *connectors;
    router_load_t *load;
    router_peers_t *peers;
    router_filters_t *filters;  //  the word lists: the input check, FILTERS to ingresses
    router_session_t *sessions; //  session memory and operators
    router_cache_t *cache;      //  the cache stage
    router_faq_t *faq;          //  FAQ entries: whom the cache may answer
    mesh_map_t *requests;       //  id -> request_t
    request_t *queue_head, *queue_tail;     //  waiting for connector credit
    int64_t queue_timeout_ms;
    mesh_timer_t queue_timer;
    int64_t last_request_ms;    //  while draining: when the last REQUEST came
    mesh_map_t *series;         //  "key\x1fmodel" -> series_t
    bool draining;
    bool stopping;              //  in router_destroy

    int64_t heartbeat_ms;
    int64_t liveness;
    int64_t renewed_ms;         //  when leases were last renewed
    mesh_timer_t heartbeat_timer;

    struct {
        mesh_metric_t *models_listed;
        mesh_metric_t *done;
        mesh_metric_t *cancelled;
        mesh_metric_t *fallbacks;
        mesh_metric_t *lost_requests;
        mesh_metric_t *connectors_lost;
        mesh_metric_t *connectors;
        mesh_metric_t *inflight;
        mesh_metric_t *dispatch_seconds;
    } metric;
    mesh_dispatch_counters_t bad_messages;
};

struct request_t {
    router_request_t base;      //  first: what the connector table holds
    router_t *router;
    router_gen_t *gen;          //  the registry it was admitted under
    zmq_msg_t frame;            //  the REQUEST as it came: body owner
    mesh_bytes_t body;
    char requested [256];       //  the model name the client gave
    char tenant [128];
    char key_id [65];
    char sticky [128];          //  user, or request id: picks variants
    char avoid [128];           //  a connector not to use
    bool stream;
    int endpoint;               //  being tried
    int avoid_endpoint;         //  the one that just failed, or -1
    uint32_t tries;             //  on the current model
    bool fell_back;
    bool in_retry;              //  counted in the retry budget
    bool pending;               //  waiting for the quota's decision
    bool admitted;
    bool queued;                //  waiting for connector credit
    int64_t queued_until_ms;
    request_t *queue_prev, *queue_next;
    int status;                 //  how it ended, for the scale-out hint
    bool in_session;            //  in its session's stage (router_session): no quota yet
    bool parked;                //  waiting for a session's operator
    char *session_body;         //  the body with the session's history, when it has one
    router_hold_t hold;
    char limits [128];
    series_t *series;
    router_cache_req_t cache;   //  what it asks of the cache stage
};

//  What the router hears ----------------------------------------------------

static mesh_handler_fn s_on_request, s_on_cancel, s_on_beat, s_on_fail, s_on_done, s_on_sync,
                       s_on_turn;

static const mesh_route_t s_ingress_routes [] = {
    { MESH_MSG_REQUEST,   s_on_request },   //  auth, model, variant, quota
    { MESH_MSG_CANCEL,    s_on_cancel },    //  CANCEL to the holding connector
    { MESH_MSG_SYNC,      s_on_sync },      //  FILTERS if the ingress's word lists are older
    { MESH_MSG_TURN,      s_on_turn },      //  a session's request ended: its history
    { 0, NULL }
};
static const mesh_conversation_t s_from_ingress = { "ingress", false, 64, NULL, s_ingress_routes };

static const mesh_route_t s_connector_routes [] = {
    { MESH_MSG_READY,     s_on_beat },      //  register, credit, REGISTRY
    { MESH_MSG_HEARTBEAT, s_on_beat },      //  liveness, credit
    { MESH_MSG_FAIL,      s_on_fail },      //  retry elsewhere, fall back, or ERROR
    { MESH_MSG_DONE,      s_on_done },      //  settle the quota, release the credit
    { MESH_MSG_BATCH,     mesh_dispatch_batch },    //  DONEs, several in a message
    { 0, NULL }
};
static const mesh_conversation_t s_from_connectors = { "connector", true, 64, NULL,
                                                       s_connector_routes };

//  Replies to the ingress ---------------------------------------------------

static void
s_send_ingress (router_t *self, const char *reply_to, const mesh_msg_t *msg)
{
    if (mesh_outbox_send (self->outbox, reply_to, msg) < 0)
        mesh_warn ("cannot send %s to %s: %s req=%s", mesh_msg_name (msg->type), reply_to,
                   zmq_strerror (errno), msg->id);
}

//  What an ERROR needs to know about where it goes
typedef struct {
    const char *id;
    uint32_t attempt;
    uint64_t token;
    const char *reply_to;
    const char *model;          //  the model that answered, or ""
    const char *limits;
    const char *tenant;         //  once the key is known, for the audit record
    const char *key_id;
    uint32_t flags;             //  more ERROR flags (MESH_ERROR_ELSEWHERE)
    const char *filtered;       //  the word list entries that refused it, or NULL
    const char *cache;          //  x-seekmesh-cache: what the cache did, or NULL
} target_t;

static void
s_error (router_t *self, const target_t *to, int status, const char *type, const char *code,
         const char *param, int retry_after_ms, const char *fmt, ...)
    __attribute__ ((format (printf, 8, 9)));

static void
s_error (router_t *self, const target_t *to, int status, const char *type, const char *code,
         const char *param, int retry_after_ms, const char *fmt, ...)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_ERROR, to->id);
    msg.attempt = to->attempt;
    msg.token = to->token;
    msg.status = (uint32_t) status;
    snprintf (msg.err_type, sizeof msg.err_type, "%s", type);
    snprintf (msg.err_code, sizeof msg.err_code, "%s", code);
    snprintf (msg.param, sizeof msg.param, "%s", param ? param : "");
    snprintf (msg.model, sizeof msg.model, "%s", to->model ? to->model : "");
    snprintf (msg.limits, sizeof msg.limits, "%s", to->limits ? to->limits : "");
    snprintf (msg.tenant, sizeof msg.tenant, "%s", to->tenant ? to->tenant : "");
    snprintf (msg.key_id, sizeof msg.key_id, "%s", to->key_id ? to->key_id : "");
    snprintf (msg.filtered, sizeof msg.filtered, "%s", to->filtered ? to->filtered : "");
    snprintf (msg.cache, sizeof msg.cache, "%s", to->cache ? to->cache : "");
    if (retry_after_ms > 60000)
        retry_after_ms = 60000;
    msg.retry_after_ms = (uint32_t) (retry_after_ms > 0 ? retry_after_ms : 0);
    msg.flags = (mesh_http_should_retry (status, code) ? MESH_ERROR_RETRY_YES : MESH_ERROR_RETRY_NO)
              | to->flags;
    va_list args;
    va_start (args, fmt);
    vsnprintf (msg.message, sizeof msg.message, fmt, args);
    va_end (args);
    s_send_ingress (self, to->reply_to, &msg);
}

static target_t
s_target_of_msg (const mesh_msg_t *msg)
{
    return (target_t) { msg->id, msg->attempt, msg->token, msg->reply_to, "", "", "", "", 0, NULL, NULL };
}

static target_t
s_target_of (request_t *request)
{
    return (target_t) { request->base.id, request->base.attempt, request->base.token,
                        request->base.reply_to, request->base.model ? request->base.model->name : "",
                        request->limits, request->tenant, request->key_id, 0, NULL, request->cache.verdict };
}

//  Metrics ------------------------------------------------------------------

//  Label values come from the registry (names checked by the admin API),
//  never from a client; quotes and backslashes are dropped all the same
static void
s_label (char *out, size_t size, const char *value)
{
    size_t len = 0;
    for (const char *p = value; *p && len + 1 < size; p++)
        if (*p != '"' && *p != '\\' && *p != '\n')
            out [len++] = *p;
    out [len] = 0;
}

static series_t *
s_series (router_t *self, const char *key_id, const char *model)
{
    char name [400];
    snprintf (name, sizeof name, "%s\x1f%s", key_id, model);
    series_t *series = mesh_map_get (self->series, name);
    if (series)
        return series;
    series = calloc (1, sizeof *series);
    assert (series);
    series->name = strdup (name);
    char key_label [130], model_label [260];
    s_label (key_label, sizeof key_label, key_id);
    s_label (model_label, sizeof model_label, model);
    snprintf (series->labels, sizeof series->labels, "key=\"%s\",model=\"%s\"", key_label, model_label);
    series->admitted = mesh_metrics_counter (self->metrics, "seekmesh_router_admitted_total",
        "Requests admitted (past auth and quotas), by key and model.", series->labels);
    series->inflight = mesh_metrics_gauge (self->metrics, "seekmesh_router_requests_inflight",
        "Requests admitted and not yet finished, by key and model.", series->labels);
    series->queued = mesh_metrics_gauge (self->metrics, "seekmesh_router_quota_queued",
        "Requests waiting for the quota decision (a Redis round trip), by key and model.",
        series->labels);
    mesh_map_put (self->series, series->name, series);
    return series;
}

//  reason: auth, invalid, unknown_model, forbidden, content_filter, session,
//  rate_limit, concurrency, budget, budget_unverifiable, circuit_open,
//  no_endpoint, no_capacity, upstream, draining
static void
s_count_refusal (router_t *self, series_t *series, const char *reason)
{
    char labels [520];
    snprintf (labels, sizeof labels, "%s,reason=\"%s\"",
              series ? series->labels : "key=\"\",model=\"\"", reason);
    mesh_metric_inc (mesh_metrics_counter (self->metrics, "seekmesh_router_refused_total",
                     "Requests refused or failed by the router, by key, model and reason.", labels));
}

static void
s_count_upstream_failure (router_t *self, const mesh_model_t *model, uint32_t endpoint,
                          const char *code)
{
    char labels [900], model_label [260], url [500], code_label [64];
    s_label (model_label, sizeof model_label, model->name);
    s_label (url, sizeof url, endpoint < model->endpoint_count ? model->endpoints [endpoint].text : "");
    s_label (code_label, sizeof code_label, code);
    snprintf (labels, sizeof labels, "model=\"%s\",endpoint=\"%s\",kind=\"%s\"", model_label, url,
              code_label);
    mesh_metric_inc (mesh_metrics_counter (self->metrics, "seekmesh_router_upstream_failures_total",
                     "Upstream calls that failed before the first byte, by model, endpoint and kind.",
                     labels));
}

//  Requests -----------------------------------------------------------------

//  A leader's failure, told to the cache, so that the requests following
//  its call get the same error
static void
s_tell_cache_error (request_t *request, int status, const char *type, const char *code,
                    int retry_after_ms, const char *message)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_ERROR, request->base.id);
    msg.attempt = request->base.attempt;
    msg.status = (uint32_t) status;
    snprintf (msg.err_type, sizeof msg.err_type, "%s", type);
    snprintf (msg.err_code, sizeof msg.err_code, "%s", code);
    snprintf (msg.message, sizeof msg.message, "%s", message);
    msg.retry_after_ms = (uint32_t) (retry_after_ms > 0 ? MESH_MIN (retry_after_ms, 60000) : 0);
    msg.flags = retry_after_ms > 0 ? MESH_ERROR_RETRY_YES : MESH_ERROR_RETRY_NO;
    snprintf (msg.model, sizeof msg.model, "%s", request->base.model ? request->base.model->name : "");
    router_cache_tell (request->router->cache, &msg);
}

//  The request is finished here: settles its quota with the tokens it used
//  and forgets it
//  Connector credit -------------------------------------------------------------

static void
s_unqueue (request_t *request)
{
    router_t *self = request->router;
    if (request->queue_prev)
        request->queue_prev->queue_next = request->queue_next;
    else
        self->queue_head = request->queue_next;
    if (request->queue_next)
        request->queue_next->queue_prev = request->queue_prev;
    else
        self->queue_tail = request->queue_prev;
    request->queue_prev = request->queue_next = NULL;
    request->queued = false;
    router_load_wait (self->load, request->base.model->name, -1);
}

static int s_on_queue_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg);

static void
s_enqueue (request_t *request)
{
    router_t *self = request->router;
    request->queued = true;
    request->queued_until_ms = mesh_loop_now_ms (self->loop) + self->queue_timeout_ms;
    request->queue_prev = self->queue_tail;
    request->queue_next = NULL;
    if (self->queue_tail)
        self->queue_tail->queue_next = request;
    else
        self->queue_head = request;
    self->queue_tail = request;
    router_load_wait (self->load, request->base.model->name, 1);
    if (!mesh_timer_armed (&self->queue_timer))
        mesh_loop_timer_start (self->loop, &self->queue_timer, 10, s_on_queue_timer, self);
}

static void s_route (request_t *request);

//  Credit came back (a request ended, a connector joined or beat): the
//  waiting requests go, first come first served, while there is room
static void
s_dequeue (router_t *self)
{
    while (self->queue_head && router_connectors_pick (self->connectors, self->queue_head->avoid)) {
        request_t *request = self->queue_head;
        s_unqueue (request);
        s_route (request);
    }
}

static void s_refuse_request (request_t *request, const char *reason, int status, const char *type,
                              const char *code, int retry_after_ms, const char *message);

static int
s_on_queue_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    router_t *self = arg;
    s_dequeue (self);
    int64_t now = mesh_loop_now_ms (loop);
    while (self->queue_head && self->queue_head->queued_until_ms <= now)
        s_refuse_request (self->queue_head, "no_capacity", 503, "server_error", "no_capacity", 1000,
                          "Every upstream connector is at its capacity; retry shortly.");
    if (self->queue_head)
        mesh_loop_timer_start (loop, timer, 10, s_on_queue_timer, self);
    return 0;
}

static void
s_request_end (request_t *request, uint64_t tokens)
{
    router_t *self = request->router;
    assert (!request->pending);
    if (request->queued)
        s_unqueue (request);
    if (request->status && request->base.model)
        router_load_outcome (self->load, request->base.model->name, request->status);
    router_cache_forget (self->cache, &request->cache);
    router_quota_settle (self->quota, &request->hold, request->base.id, tokens);
    if (request->in_retry)
        router_policy_retry_end (self->policy);
    if (request->base.connector)
        router_request_detach (&request->base);
    if (request->admitted)
        mesh_metric_add (request->series->inflight, -1);
    if (mesh_map_get (self->requests, request->base.id) == request)
        mesh_map_remove (self->requests, request->base.id);
    router_gen_unref (&request->gen);
    zmq_msg_close (&request->frame);
    free (request->session_body);
    free (request);
    mesh_metric_set (self->metric.inflight, (double) mesh_map_size (self->requests));
}

static void
s_refuse_request (request_t *request, const char *reason, int status, const char *type,
                  const char *code, int retry_after_ms, const char *message)
{
    router_t *self = request->router;
    s_count_refusal (self, request->series, reason);
    target_t to = s_target_of (request);
    //  Without a single connector, another router may do better
    if (mesh_streq (code, "no_capacity") && router_connectors_count (self->connectors) == 0)
        to.flags |= MESH_ERROR_ELSEWHERE;
    s_error (self, &to, status, type, code, NULL, retry_after_ms, "%s", message);
    request->status = status;
    if (request->cache.state == ROUTER_CACHE_LEADER)
        s_tell_cache_error (request, status, type, code, retry_after_ms, message);
    s_request_end (request, 0);
}

static void s_route (request_t *request);

static bool s_ask_cache (request_t *request);
static void
s_on_decision (void *arg, const router_decision_t *decision)
{
    request_t *request = arg;
    router_t *self = request->router;
    request->pending = false;
    mesh_metric_add (request->series->queued, -1);
    router_load_wait (self->load, request->hold.model, -1);
    if (self->stopping)
        return;                 //  router_destroy frees it
    if (request->base.cancelled) {
        s_request_end (request, 0);
        return;
    }
    if (*decision->limits && !request->fell_back)
        snprintf (request->limits, sizeof request->limits, "%s", decision->limits);
    if (!decision->allowed) {
        const char *reason = mesh_streq (decision->code, "rate_limit_exceeded") ? "rate_limit"
                           : mesh_streq (decision->code, "concurrency_limit_exceeded") ? "concurrency"
                           : mesh_streq (decision->code, "budget_exhausted") ? "budget"
                           : "budget_unverifiable";
        mesh_debug ("quota refused: %s key=%s model=%s req=%s", decision->code,
                    request->hold.key_id, request->hold.model, request->base.id);
        s_refuse_request (request, reason, decision->status, decision->type, decision->code,
                          decision->retry_after_ms, decision->message);
        return;
    }
    if (!request->admitted) {
        request->admitted = true;
        mesh_metric_inc (request->series->admitted);
        mesh_metric_add (request->series->inflight, 1);
    }
    if (request->cache.state == ROUTER_CACHE_PLANNED && s_ask_cache (request))
        return;                 //  its verdict (or the bound) routes it
    s_route (request);
}

//  Asks the quota for the request's current model
static void
s_reserve (request_t *request)
{
    router_t *self = request->router;
    request->pending = true;
    mesh_metric_add (request->series->queued, 1);
    router_load_wait (self->load, request->hold.model, 1);
    router_quota_reserve (self->quota, &request->hold, request->base.id, s_on_decision, request);
}

//  The session stage decided (router_session.h)
static void
s_on_session (void *arg, const router_session_result_t *result)
{
    request_t *request = arg;
    router_t *self = request->router;
    if (self->stopping)
        return;
    request->in_session = false;
    if (result->decision == ROUTER_SESSION_DISPATCH) {
        //  The history goes before the client's messages
        request->parked = false;
        free (request->session_body);
        request->session_body = malloc (result->len + 1);
        assert (request->session_body);
        memcpy (request->session_body, result->body, result->len);
        request->body = (mesh_bytes_t) { request->session_body, result->len };
        uint64_t estimate = request->hold.estimate - MESH_MIN (request->hold.estimate, request->hold.prompt_estimate)
                          + result->tokens;
        request->hold.estimate = (uint32_t) MESH_MIN (estimate, (uint64_t) UINT32_MAX);
        request->hold.prompt_estimate = (uint32_t) MESH_MIN (result->tokens, (uint64_t) UINT32_MAX);
        s_reserve (request);
    }
    else
    if (result->decision == ROUTER_SESSION_PARKED)
        request->parked = true;
    else
    if (result->decision == ROUTER_SESSION_REFUSE)
        s_refuse_request (request, "session", result->status, result->type, result->code,
                          result->retry_after_ms, result->message);
    else
        s_request_end (request, 0);     //  answered by the session's operator
}

//  The primary model cannot serve: try its fallback, once.  The key's
//  request was counted already; the fallback's concurrency is its own.
static bool
s_fall_back (request_t *request, const char *why)
{
    router_t *self = request->router;
    const mesh_model_t *primary = request->base.model;
    if (request->fell_back || !primary->fallback)
        return false;
    mesh_model_t *fallback = mesh_models_find (request->gen->models, primary->fallback);
    if (!fallback)
        return false;
    fallback = router_policy_variant (self->policy, request->gen->models, fallback, request->sticky);
    if (!fallback || fallback->endpoint_count == 0)
        return false;
    mesh_info ("falling back from %s to %s (%s) req=%s", primary->name, fallback->name, why,
               request->base.id);
    char labels [600], from [260], to [260];
    s_label (from, sizeof from, primary->name);
    s_label (to, sizeof to, fallback->name);
    snprintf (labels, sizeof labels, "model=\"%s\",fallback=\"%s\"", from, to);
    mesh_metric_inc (mesh_metrics_counter (self->metrics, "seekmesh_router_fallbacks_total",
                     "Requests served by a model's fallback, by model and fallback.", labels));
    router_quota_settle (self->quota, &request->hold, request->base.id, 0);
    request->hold.rpm = 0;
    request->hold.concurrency = fallback->max_concurrency;
    snprintf (request->hold.model, sizeof request->hold.model, "%s", fallback->name);
    request->base.model = fallback;
    request->fell_back = true;
    request->tries = 0;
    request->avoid_endpoint = -1;
    s_reserve (request);
    return true;
}

static void s_on_connector_lost (void *arg, router_connector_t *connector);

//  Breaker, endpoint, connector, DISPATCH; or the fallback; or an error
static void
s_route (request_t *request)
{
    router_t *self = request->router;
    const mesh_model_t *model = request->base.model;
    int64_t now = mesh_loop_now_ms (self->loop);
    int endpoint = -1;
    const char *why = NULL;
    if (!router_policy_admit (self->policy, model, now))
        why = "circuit_open";
    else
    if ((endpoint = router_policy_endpoint (self->policy, model, request->avoid_endpoint, now)) < 0)
        why = "no_endpoint";
    if (why) {
        if (s_fall_back (request, why))
            return;
        char message [400];
        snprintf (message, sizeof message, mesh_streq (why, "circuit_open")
                  ? "The model %.200s is failing upstream and is paused; retry shortly."
                  : "Every upstream endpoint of %.200s is failing; retry shortly.", model->name);
        s_refuse_request (request, why, 503, "server_error",
                          mesh_streq (why, "circuit_open") ? "model_unavailable" : "no_healthy_upstream",
                          1000, message);
        return;
    }
    request->endpoint = endpoint;
    request->tries++;

    mesh_msg_t dispatch;
    mesh_msg_init (&dispatch, MESH_MSG_DISPATCH, request->base.id);
    dispatch.attempt = request->base.attempt;
    dispatch.token = request->base.token;
    memcpy (dispatch.reply_to, request->base.reply_to, sizeof dispatch.reply_to);
    snprintf (dispatch.model, sizeof dispatch.model, "%s", model->name);
    memcpy (dispatch.requested, request->requested, sizeof dispatch.requested);
    dispatch.stream = request->stream;
    dispatch.body = request->body;
    memcpy (dispatch.tenant, request->tenant, sizeof dispatch.tenant);
    memcpy (dispatch.key_id, request->key_id, sizeof dispatch.key_id);
    dispatch.endpoint = (uint32_t) endpoint;
    memcpy (dispatch.limits, request->limits, sizeof dispatch.limits);
    memcpy (dispatch.cache, request->cache.verdict, sizeof dispatch.cache);

    //  A connector that vanished without our noticing yet refuses the send
    //  (ROUTER_MANDATORY): forget it and try the next
    router_connector_t *connector;
    while ((connector = router_connectors_pick (self->connectors, request->avoid))) {
        if (mesh_msg_send (self->connectors_socket, &dispatch, connector->identity,
                           connector->identity_size, ZMQ_DONTWAIT) == 0)
            break;
        mesh_warn ("dispatch to %s failed: %s req=%s", connector->identity,
                   zmq_strerror (errno), request->base.id);
        router_connectors_remove (self->connectors, connector, s_on_connector_lost, self);
    }
    if (!connector && self->queue_timeout_ms > 0 && router_connectors_count (self->connectors) > 0) {
        //  Every connector is busy: wait for credit, a little
        request->tries--;
        s_enqueue (request);
        return;
    }
    if (!connector) {
        s_refuse_request (request, "no_capacity", 503, "server_error", "no_capacity", 1000,
                          "No upstream connector is available; retry shortly.");
        return;
    }
    router_request_attach (&request->base, connector);
    mesh_metric_observe (self->metric.dispatch_seconds,
                         (double) (mesh_mono_us () - request->base.dispatched_us) / 1e6);
    mesh_debug ("dispatched to %s model=%s endpoint=%d try=%u attempt=%u req=%s",
                connector->identity, model->name, endpoint, request->tries,
                request->base.attempt, request->base.id);
}

//  The cache stage ------------------------------------------------------------

static void s_cancel_upstream (request_t *request, const char *outcome);

//  LOOKUP: true when a verdict (or the bound) comes later
static bool
s_ask_cache (request_t *request)
{
    router_t *self = request->router;
    mesh_msg_t lookup;
    mesh_msg_init (&lookup, MESH_MSG_LOOKUP, request->base.id);
    lookup.attempt = request->base.attempt;
    lookup.token = request->base.token;
    memcpy (lookup.reply_to, request->base.reply_to, sizeof lookup.reply_to);
    snprintf (lookup.model, sizeof lookup.model, "%s", request->base.model->name);
    lookup.stream = request->stream;
    lookup.body = request->body;
    memcpy (lookup.tenant, request->tenant, sizeof lookup.tenant);
    memcpy (lookup.key_id, request->key_id, sizeof lookup.key_id);
    memcpy (lookup.limits, request->limits, sizeof lookup.limits);
    return router_cache_ask (self->cache, &request->cache, &lookup) == 0;
}

static router_cache_req_t *
s_cache_find (void *arg, const char *id, uint32_t attempt)
{
    router_t *self = arg;
    request_t *request = mesh_map_get (self->requests, id);
    return request && request->base.attempt == attempt && !request->pending ? &request->cache : NULL;
}

//  No answer from the cache: upstream (a leader even when its client has
//  gone: the cache cancels the call if no follower reads it)
static void
s_cache_upstream (void *owner)
{
    request_t *request = owner;
    if (request->base.cancelled && request->cache.state != ROUTER_CACHE_LEADER) {
        s_request_end (request, 0);
        return;
    }
    s_route (request);
}

//  A hit or FAQ answer counts against the key's requests, not its tokens
//  (unless router.cache.count_tokens)
static void
s_cache_answered (void *owner, uint64_t tokens)
{
    request_t *request = owner;
    s_request_end (request, router_cache_count_tokens (request->router->cache) ? tokens : 0);
}

//  A follower holds no upstream slot: settled now, unless its tokens count
static void
s_cache_following (void *owner, uint64_t tokens)
{
    request_t *request = owner;
    router_t *self = request->router;
    (void) tokens;
    if (!router_cache_count_tokens (self->cache))
        router_quota_settle (self->quota, &request->hold, request->base.id, 0);
}

static void
s_cache_done (void *owner, uint64_t tokens)
{
    request_t *request = owner;
    s_request_end (request, router_cache_count_tokens (request->router->cache) ? tokens : 0);
}

static void
s_cache_cancel (void *owner, const char *outcome)
{
    request_t *request = owner;
    if (request->base.connector)
        s_cancel_upstream (request, outcome);
}

//  The cache is gone with a follower: its ingress retries it if the client
//  has seen nothing (LOST, as for a connector)
static void
s_cache_lost (void *owner)
{
    request_t *request = owner;
    router_t *self = request->router;
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_LOST, request->base.id);
    msg.attempt = request->base.attempt;
    msg.token = request->base.token;
    snprintf (msg.sender, sizeof msg.sender, "cache");
    s_send_ingress (self, request->base.reply_to, &msg);
    s_request_end (request, 0);
}

//  The connector is gone: tell each request's ingress, which retries what
//  its client has not seen yet and fails the rest.
static void
s_on_connector_lost (void *arg, router_connector_t *connector)
{
    router_t *self = arg;
    mesh_metric_inc (self->metric.connectors_lost);
    while (connector->requests) {
        request_t *request = (request_t *) connector->requests;
        mesh_msg_t msg;
        mesh_msg_init (&msg, MESH_MSG_LOST, request->base.id);
        msg.attempt = request->base.attempt;
        msg.token = request->base.token;
        snprintf (msg.sender, sizeof msg.sender, "%.*s", (int) connector->identity_size,
                  connector->identity);
        s_send_ingress (self, request->base.reply_to, &msg);
        if (request->cache.state == ROUTER_CACHE_LEADER)
            router_cache_tell (self->cache, &msg);      //  its followers wait for the retry
        mesh_metric_inc (self->metric.lost_requests);
        request->status = 502;
        s_request_end (request, 0);
    }
}

static json_t *
s_model_object (const char *id)
{
    return json_pack ("{s:s, s:s, s:i, s:s}", "id", id, "object", "model", "created", 0,
                      "owned_by", "seekmesh");
}

//  GET /v1/models: the models and aliases this key may use;
//  GET /v1/models/{id}: one of them (the ingress puts the id in `model`)
static void
s_reply_models (router_t *self, router_gen_t *gen, const mesh_msg_t *request, const router_key_t *key)
{
    json_t *reply;
    if (*request->model) {
        mesh_model_t *model = mesh_models_find (gen->models, request->model);
        if (!model || !router_key_allows (key, model)) {
            target_t to = s_target_of_msg (request);
            s_error (self, &to, 404, "invalid_request_error", "model_not_found", "model", 0,
                     "The model `%s` does not exist or you do not have access to it.", request->model);
            return;
        }
        reply = s_model_object (request->model);
    }
    else {
        json_t *data = json_array ();
        for (size_t i = 0; i < mesh_models_count (gen->models); i++) {
            mesh_model_t *model = mesh_models_at (gen->models, i);
            if (router_key_allows (key, model))
                json_array_append_new (data, s_model_object (model->name));
        }
        for (size_t i = 0; i < mesh_models_alias_count (gen->models); i++) {
            const char *alias;
            mesh_model_t *model = mesh_models_alias_at (gen->models, i, &alias);
            if (router_key_allows (key, model))
                json_array_append_new (data, s_model_object (alias));
        }
        reply = json_pack ("{s:s, s:o}", "object", "list", "data", data);
    }
    char *text = json_dumps (reply, JSON_COMPACT);
    json_decref (reply);
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_REPLY, request->id);
    msg.token = request->token;
    msg.status = 200;
    strcpy (msg.content_type, "application/json");
    msg.data = (mesh_bytes_t) { text, strlen (text) };
    s_send_ingress (self, request->reply_to, &msg);
    free (text);
    mesh_metric_inc (self->metric.models_listed);
}

//  Where a request's answers may go: a ZeroMQ endpoint (tcp:// or ipc://),
//  and when its host is a numeric address, the address the request came
//  from.  (A name is taken from an ingress CURVE authenticated.)  Answers
//  to anywhere else are never sent: no socket is made for them.
static bool
s_reply_to_ok (mesh_inbox_t *inbox)
{
    const char *reply_to = inbox->msg.reply_to;
    if (strncmp (reply_to, "ipc://", 6) == 0)
        return reply_to [6] != 0;
    if (strncmp (reply_to, "tcp://", 6) != 0)
        return false;
    const char *host = reply_to + 6, *colon = strrchr (host, ':');
    if (!colon || colon == host)
        return false;
    char address [64];
    snprintf (address, sizeof address, "%.*s", (int) MESH_MIN ((size_t) (colon - host), sizeof address - 1), host);
    struct in6_addr any;
    bool numeric = inet_pton (AF_INET, address, &any) == 1 || inet_pton (AF_INET6, address, &any) == 1;
    if (!numeric)
        return mesh_curve_enabled () && strcmp (mesh_curve_sender (&inbox->frame), "ingress") == 0;
    const char *peer = zmq_msg_gets (&inbox->frame, "Peer-Address");
    return !peer || strcmp (peer, address) == 0;
}

//  A request the ingress refused (MESH_KIND_INVALID): its verdict, in the
//  body, is answered once the key is known, so that the audit record names
//  the tenant; an unknown key is a 401 first, as OpenAI answers
static void
s_on_invalid (router_t *self, router_gen_t *gen, const mesh_msg_t *msg, target_t *to)
{
    const router_key_t *key = router_keys_find (gen->keys, msg->key_hash.data, msg->key_hash.size);
    if (!key) {
        s_count_refusal (self, NULL, "auth");
        s_error (self, to, 401, "authentication_error", "invalid_api_key", NULL, 0,
                 "Incorrect API key provided.");
        return;
    }
    to->tenant = key->tenant;
    to->key_id = key->id;
    json_t *verdict = json_loadb (msg->body.data, msg->body.size, 0, NULL);
    int status = (int) json_integer_value (json_object_get (verdict, "status"));
    const char *type = json_string_value (json_object_get (verdict, "type"));
    const char *code = json_string_value (json_object_get (verdict, "code"));
    const char *param = json_string_value (json_object_get (verdict, "param"));
    const char *message = json_string_value (json_object_get (verdict, "message"));
    if (status < 400 || status > 499 || !type || !code || !message) {
        mesh_warn ("a refused request without a usable verdict req=%s", msg->id);
        status = 400, type = "invalid_request_error", code = "invalid_request", message = "Invalid request.";
    }
    s_count_refusal (self, NULL, "invalid");
    s_error (self, to, status, type, code, param, 0, "%s", message);
    json_decref (verdict);
}

//  Whom a session stage answers: the client of msg, under key
static router_target_t
s_session_target (const mesh_msg_t *msg, const router_key_t *key)
{
    router_target_t target = { .attempt = msg->attempt, .token = msg->token };
    memcpy (target.id, msg->id, sizeof target.id);
    snprintf (target.reply_to, sizeof target.reply_to, "%s", msg->reply_to);
    snprintf (target.tenant, sizeof target.tenant, "%s", key->tenant);
    snprintf (target.key_id, sizeof target.key_id, "%s", key->id);
    return target;
}

//  The model msg asks for, if key may use it and the word lists let its
//  messages through; otherwise the client is answered and this is NULL.
//  A block word is refused here, before any upstream call.
static mesh_model_t *
s_admit (router_t *self, router_gen_t *gen, const mesh_msg_t *msg, const router_key_t *key,
         target_t *to)
{
    mesh_model_t *model = mesh_models_find (gen->models, msg->model);
    if (!model) {
        s_count_refusal (self, NULL, "unknown_model");
        s_error (self, to, 404, "invalid_request_error", "model_not_found", "model", 0,
                 "The model `%s` does not exist or you do not have access to it.", msg->model);
        return NULL;
    }
    if (!router_key_allows (key, model)) {
        s_count_refusal (self, s_series (self, key->id, model->name), "forbidden");
        s_error (self, to, 403, "permission_error", "model_not_allowed", "model", 0,
                 "This API key is not allowed to use the model `%s`.", msg->model);
        return NULL;
    }
    char filtered [sizeof msg->filtered], param [96];
    if (router_filters_refuse (self->filters, msg->id, key->tenant, msg->body.data, msg->body.size,
                               filtered, sizeof filtered, param, sizeof param)) {
        s_count_refusal (self, s_series (self, key->id, model->name), "content_filter");
        to->filtered = filtered;
        s_error (self, to, 400, "invalid_request_error", "content_filter", param, 0,
                 "The request was refused: its messages contain content the gateway's word "
                 "lists do not allow.");
        return NULL;
    }
    return model;
}

//  A retry of a request we still track (its ingress lost track of it):
//  the old one ends, so the new one takes its place in the table
static void
s_forget_retried (router_t *self, const char *id)
{
    request_t *request = mesh_map_get (self->requests, id);
    if (!request)
        return;
    if (request->in_session || request->parked)
        router_session_cancel (self->sessions, id);     //  its stage tells it nothing more
    if (request->pending) {
        request->base.cancelled = true;
        mesh_map_remove (self->requests, id);           //  ends at its decision
    }
    else
        s_request_end (request, 0);     //  dispatched or waiting for credit
}

//  A request for msg under key; takes the frame from inbox, which holds
//  the body, to keep it for retries and fallbacks
static request_t *
s_request_new (router_t *self, router_gen_t *gen, const mesh_msg_t *msg, const router_key_t *key,
               mesh_inbox_t *inbox)
{
    request_t *request = calloc (1, sizeof *request);
    assert (request);
    request->router = self;
    memcpy (request->base.id, msg->id, sizeof request->base.id);
    request->base.attempt = msg->attempt;
    request->base.token = msg->token;
    snprintf (request->base.reply_to, sizeof request->base.reply_to, "%s", msg->reply_to);
    request->base.dispatched_us = mesh_loop_now_us (self->loop);
    request->gen = router_gen_ref (gen);
    memcpy (request->requested, msg->model, sizeof request->requested);
    snprintf (request->tenant, sizeof request->tenant, "%s", key->tenant);
    snprintf (request->key_id, sizeof request->key_id, "%s", key->id);
    snprintf (request->sticky, sizeof request->sticky, "%s", *msg->user ? msg->user : msg->id);
    memcpy (request->avoid, msg->avoid, sizeof request->avoid);
    request->stream = msg->stream;
    request->avoid_endpoint = -1;
    size_t offset = (size_t) (msg->body.data - (const char *) zmq_msg_data (&inbox->frame));
    zmq_msg_init (&request->frame);
    zmq_msg_move (&request->frame, &inbox->frame);
    request->body = (mesh_bytes_t) { (const char *) zmq_msg_data (&request->frame) + offset,
                                     msg->body.size };
    return request;
}

//  Picks the variant that serves the request and what the quota stage
//  holds for it (the key's limits, the model's concurrency, the estimates)
static void
s_request_plan (request_t *request, router_gen_t *gen, const mesh_msg_t *msg,
                const router_key_t *key, mesh_model_t *model)
{
    router_t *self = request->router;
    model = router_policy_variant (self->policy, gen->models, model, request->sticky);
    request->base.model = model;
    router_hold_t *hold = &request->hold;
    snprintf (hold->key_id, sizeof hold->key_id, "%s", *key->id ? key->id : key->tenant);
    snprintf (hold->model, sizeof hold->model, "%s", model->name);
    hold->rpm = key->rpm;
    hold->tpm = key->tpm;
    hold->budget = key->budget;
    hold->budget_period_s = key->budget_period_s;
    hold->concurrency = model->max_concurrency;
    hold->estimate = msg->estimate;
    hold->prompt_estimate = msg->prompt_estimate;
    request->series = s_series (self, key->id, model->name);
    router_cache_plan (self->cache, &request->cache, request, model, msg->cache_control,
                       router_faq_covers (self->faq, key->tenant, model->name));
}

static int
s_on_request (void *arg, mesh_inbox_t *inbox)
{
    router_t *self = arg;
    const mesh_msg_t *msg = &inbox->msg;
    if (!s_reply_to_ok (inbox)) {
        const char *peer = zmq_msg_gets (&inbox->frame, "Peer-Address");
        mesh_warn ("REQUEST from %s asks for its answers at \"%s\": not where it came from, dropped req=%s",
                   peer ? peer : "?", msg->reply_to, msg->id);
        mesh_metric_inc (self->bad_messages.unexpected);
        return 0;
    }
    target_t to = s_target_of_msg (msg);
    if (msg->kind == MESH_KIND_INVALID) {
        s_on_invalid (self, router_registry_current (self->registry), msg, &to);
        return 0;
    }
    if (self->draining) {
        //  Untouched: the ingress gives it to another router
        self->last_request_ms = mesh_loop_now_ms (self->loop);
        s_count_refusal (self, NULL, "draining");
        to.flags = MESH_ERROR_ELSEWHERE;
        s_error (self, &to, 503, "server_error", "draining", NULL, 1000,
                 "This router is shutting down; retry shortly.");
        return 0;
    }
    router_gen_t *gen = router_registry_current (self->registry);
    const router_key_t *key = router_keys_find (gen->keys, msg->key_hash.data, msg->key_hash.size);
    if (!key) {
        s_count_refusal (self, NULL, "auth");
        s_error (self, &to, 401, "authentication_error", "invalid_api_key", NULL, 0,
                 "Incorrect API key provided.");
        return 0;
    }
    if (msg->kind == MESH_KIND_MODELS) {
        s_reply_models (self, gen, msg, key);
        return 0;
    }
    if (msg->kind == MESH_KIND_SESSION_GET || msg->kind == MESH_KIND_SESSION_DELETE) {
        router_target_t target = s_session_target (msg, key);
        router_session_reply (self->sessions, &target, (int) msg->kind, msg->session);
        return 0;
    }
    //  The key is known: every answer from here names who asked
    to.tenant = key->tenant;
    to.key_id = key->id;
    mesh_model_t *model = s_admit (self, gen, msg, key, &to);
    if (!model)
        return 0;
    s_forget_retried (self, msg->id);
    request_t *request = s_request_new (self, gen, msg, key, inbox);
    s_request_plan (request, gen, msg, key, model);
    mesh_map_put (self->requests, request->base.id, request);
    mesh_metric_set (self->metric.inflight, (double) mesh_map_size (self->requests));
    if (*msg->session) {
        //  Its session first: the history, a turn before it, an operator
        router_target_t target = s_session_target (msg, key);
        target.stream = msg->stream;
        request->in_session = true;
        router_session_begin (self->sessions, &target, msg->session, request->body.data,
                              request->body.size, s_on_session, request);
        return 0;
    }
    s_reserve (request);
    return 0;
}

static int
s_on_cancel (void *arg, mesh_inbox_t *inbox)
{
    router_t *self = arg;
    const mesh_msg_t *msg = &inbox->msg;
    request_t *request = mesh_map_get (self->requests, msg->id);
    if (!request || request->base.attempt != msg->attempt)
        return 0;                 //  done already, or another router's
    request->base.cancelled = true;
    mesh_metric_inc (self->metric.cancelled);
    if (request->in_session || request->parked) {
        //  Waiting for its session or its operator: no decision will come
        router_session_cancel (self->sessions, request->base.id);
        s_request_end (request, 0);
        return 0;
    }
    //  The cache decides for what it has a part in: a follower leaves its
    //  call; a leader's call goes on while followers read it
    int state = request->cache.state;
    if ((state == ROUTER_CACHE_ASKED || state == ROUTER_CACHE_LEADER || state == ROUTER_CACHE_FOLLOWER)
    &&  router_cache_tell (self->cache, msg))
        return 0;
    if (state == ROUTER_CACHE_FOLLOWER || request->queued) {
        //  the cache is gone (nothing to stop), or it waits for credit
        s_request_end (request, 0);
        return 0;
    }
    if (!request->base.connector)
        return 0;                 //  waiting for its quota: ends at the decision
    s_cancel_upstream (request, msg->outcome);
    return 0;
}

//  CANCEL to the connector holding the request
static void
s_cancel_upstream (request_t *request, const char *outcome)
{
    router_t *self = request->router;
    mesh_msg_t cancel;
    mesh_msg_init (&cancel, MESH_MSG_CANCEL, request->base.id);
    cancel.attempt = request->base.attempt;
    snprintf (cancel.outcome, sizeof cancel.outcome, "%s", outcome);
    if (mesh_msg_send (self->connectors_socket, &cancel, request->base.connector->identity,
                       request->base.connector->identity_size, ZMQ_DONTWAIT) < 0)
        mesh_warn ("cannot forward CANCEL: %s req=%s", zmq_strerror (errno), request->base.id);
}

//  A session's request ended at its ingress: the answer for its history
static int
s_on_turn (void *arg, mesh_inbox_t *inbox)
{
    router_t *self = arg;
    router_session_turn (self->sessions, &inbox->msg);
    return 0;
}

//  An ingress says which word lists it has; its reply endpoint is checked
//  like a REQUEST's
static int
s_on_sync (void *arg, mesh_inbox_t *inbox)
{
    router_t *self = arg;
    if (!s_reply_to_ok (inbox)) {
        mesh_metric_inc (self->bad_messages.unexpected);
        return 0;
    }
    router_filters_sync (self->filters, inbox->msg.reply_to, inbox->msg.version);
    return 0;
}

static void
s_send_registry (router_t *self, router_connector_t *connector)
{
    router_gen_t *gen = router_registry_current (self->registry);
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_REGISTRY, NULL);
    snprintf (msg.sender, sizeof msg.sender, "%s", self->name);
    msg.version = gen->version;
    msg.data = (mesh_bytes_t) { gen->connector_json, gen->connector_json_len };
    if (mesh_msg_send (self->connectors_socket, &msg, connector->identity, connector->identity_size,
                       ZMQ_DONTWAIT) < 0)
        mesh_warn ("cannot send the registry to %s: %s", connector->identity, zmq_strerror (errno));
}

static void
s_on_registry (void *arg, router_gen_t *gen)
{
    router_t *self = arg;
    (void) gen;
    for (size_t i = 0; i < router_connectors_count (self->connectors); i++)
        s_send_registry (self, router_connectors_at (self->connectors, i));
}

static int
s_on_beat (void *arg, mesh_inbox_t *inbox)
{
    router_t *self = arg;
    //  A connector speaks for itself only: the name it gives is its
    //  connection's identity, and a connector's name
    size_t name_len = strlen (inbox->msg.sender);
    if (inbox->identity_size != name_len || memcmp (inbox->identity, inbox->msg.sender, name_len) != 0
    ||  strncmp (inbox->msg.sender, "connector-", 10) != 0) {
        mesh_warn ("%s from \"%s\" over a connection named otherwise, dropped",
                   mesh_msg_name (inbox->msg.type), inbox->msg.sender);
        mesh_metric_inc (self->bad_messages.unexpected);
        return 0;
    }
    bool known = router_connectors_find (self->connectors, inbox->identity, inbox->identity_size);
    router_connector_t *connector = router_connectors_seen (
        self->connectors, inbox->identity, inbox->identity_size, inbox->msg.capacity,
        inbox->msg.inflight, mesh_loop_now_ms (self->loop));
    if (connector && inbox->source_fd >= 0)
        connector->fd = inbox->source_fd;
    if (connector && !known) {
        mesh_metric_set (self->metric.connectors, (double) router_connectors_count (self->connectors));
        //  Answer at once so a new connector knows this router is alive,
        //  and give it the registry
        mesh_msg_t beat;
        mesh_msg_init (&beat, MESH_MSG_HEARTBEAT, NULL);
        snprintf (beat.sender, sizeof beat.sender, "%s", self->name);
        mesh_msg_send (self->connectors_socket, &beat, connector->identity,
                       connector->identity_size, ZMQ_DONTWAIT);
        s_send_registry (self, connector);
    }
    s_dequeue (self);
    return 0;
}

//  A connection to the connectors' socket closed: a connector that dies
//  (kill -9 included) is lost now, not after the missed heartbeats, which
//  remain the detector for a process that freezes
static int
s_on_monitor (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    router_t *self = arg;
    int event, value;
    while (mesh_zmq_monitor_read (socket, &event, &value)) {
        if (event != ZMQ_EVENT_DISCONNECTED)
            continue;
        router_connector_t *connector = router_connectors_by_fd (self->connectors, value);
        if (connector) {
            mesh_warn ("connector %s disconnected, held %u requests", connector->identity,
                       connector->inflight);
            router_connectors_remove (self->connectors, connector, s_on_connector_lost, self);
            mesh_metric_set (self->metric.connectors, (double) router_connectors_count (self->connectors));
        }
    }
    return MESH_LOOP_DRAINED;
}

//  The request this connector message is about, if it is the attempt the
//  connector holds (older attempts and other routers' requests: NULL)
static request_t *
s_held_request (router_t *self, const mesh_inbox_t *inbox)
{
    const mesh_msg_t *msg = &inbox->msg;
    request_t *request = mesh_map_get (self->requests, msg->id);
    if (!request || request->base.attempt != msg->attempt || !request->base.connector
    ||  request->base.connector->identity_size != inbox->identity_size
    ||  memcmp (request->base.connector->identity, inbox->identity, inbox->identity_size) != 0)
        return NULL;
    return request;
}

//  The upstream call failed before any byte reached the client
static int
s_on_fail (void *arg, mesh_inbox_t *inbox)
{
    router_t *self = arg;
    const mesh_msg_t *msg = &inbox->msg;
    request_t *request = s_held_request (self, inbox);
    if (!request)
        return 0;
    const mesh_model_t *model = request->base.model;
    router_request_detach (&request->base);
    if (request->in_retry) {
        router_policy_retry_end (self->policy);
        request->in_retry = false;
    }
    int64_t now = mesh_loop_now_ms (self->loop);
    router_policy_failure (self->policy, model, msg->endpoint, msg->flags & MESH_FAIL_ENDPOINT, now);
    s_count_upstream_failure (self, model, msg->endpoint, msg->err_code);
    mesh_debug ("failed: %u %s model=%s endpoint=%u try=%u req=%s", msg->status, msg->err_code,
                model->name, msg->endpoint, request->tries, msg->id);
    if (request->base.cancelled) {
        s_request_end (request, 0);
        return 0;
    }
    //  A connector that cannot take it: another connector may
    if (mesh_streq (msg->err_code, "connector_full") || mesh_streq (msg->err_code, "draining")
    ||  mesh_streq (msg->err_code, "model_not_configured"))
        snprintf (request->avoid, sizeof request->avoid, "%.*s", (int) inbox->identity_size,
                  inbox->identity);
    if ((msg->flags & MESH_FAIL_RETRYABLE) && request->tries < router_policy_max_tries (self->policy)
    &&  router_policy_retry_allowed (self->policy, mesh_map_size (self->requests))) {
        router_policy_retry_begin (self->policy);
        request->in_retry = true;
        request->avoid_endpoint = (int) msg->endpoint;
        s_route (request);
        s_dequeue (self);
        return 0;
    }
    if ((msg->status == 429 || msg->status >= 500) && s_fall_back (request, msg->err_code))
        return 0;
    s_count_refusal (self, request->series, "upstream");
    mesh_msg_t error;
    mesh_msg_init (&error, MESH_MSG_ERROR, msg->id);
    error.attempt = request->base.attempt;
    error.token = request->base.token;
    error.status = msg->status;
    memcpy (error.err_type, msg->err_type, sizeof error.err_type);
    memcpy (error.err_code, msg->err_code, sizeof error.err_code);
    memcpy (error.message, msg->message, sizeof error.message);
    error.retry_after_ms = msg->retry_after_ms;
    error.flags = msg->flags & (MESH_ERROR_RETRY_YES | MESH_ERROR_RETRY_NO);
    memcpy (error.limits, request->limits, sizeof error.limits);
    snprintf (error.model, sizeof error.model, "%s", model->name);
    memcpy (error.tenant, request->tenant, sizeof error.tenant);
    memcpy (error.key_id, request->key_id, sizeof error.key_id);
    memcpy (error.cache, request->cache.verdict, sizeof error.cache);
    s_send_ingress (self, request->base.reply_to, &error);
    request->status = (int) msg->status;
    if (request->cache.state == ROUTER_CACHE_LEADER)
        router_cache_tell (self->cache, &error);        //  its followers get it too
    s_request_end (request, 0);
    s_dequeue (self);
    return 0;
}

static int
s_on_done (void *arg, mesh_inbox_t *inbox)
{
    router_t *self = arg;
    const mesh_msg_t *msg = &inbox->msg;
    request_t *request = s_held_request (self, inbox);
    if (!request)
        return 0;
    mesh_debug ("done status=%u outcome=%s tokens=%llu+%llu req=%s", msg->status, msg->outcome,
                (unsigned long long) msg->prompt_tokens,
                (unsigned long long) msg->output_tokens, msg->id);
    int64_t now = mesh_loop_now_ms (self->loop);
    const mesh_model_t *model = request->base.model;
    if (msg->status >= 500 && msg->status != 501)
        router_policy_failure (self->policy, model, msg->endpoint, true, now);
    else
    if (msg->status == 499)     //  cancelled: says nothing of the upstream
        router_policy_failure (self->policy, model, msg->endpoint, false, now);
    else
        router_policy_success (self->policy, model, msg->endpoint, now);
    mesh_metric_inc (self->metric.done);
    request->status = (int) msg->status;
    s_request_end (request, router_quota_used (&request->hold, msg->prompt_tokens, msg->output_tokens));
    s_dequeue (self);
    return 0;
}

//  Sockets ------------------------------------------------------------------

static int
s_on_ingress_socket (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    router_t *self = arg;
    return mesh_dispatch (socket, &s_from_ingress, self, &self->bad_messages) == 0 ? MESH_LOOP_DRAINED : 0;
}

static int
s_on_connectors_socket (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    router_t *self = arg;
    return mesh_dispatch (socket, &s_from_connectors, self, &self->bad_messages) == 0 ? MESH_LOOP_DRAINED : 0;
}

static int
s_by_model (const void *a, const void *b)
{
    const request_t *x = *(request_t * const *) a, *y = *(request_t * const *) b;
    return strcmp (x->hold.model, y->hold.model);
}

//  Concurrency leases expire unless renewed: renew those of the requests
//  in flight, model by model
static void
s_renew_leases (router_t *self)
{
    size_t count = 0, cursor = 0;
    request_t **held = calloc (mesh_map_size (self->requests) + 1, sizeof *held);
    assert (held);
    request_t *request;
    while ((request = mesh_map_next (self->requests, &cursor, NULL)))
        if (request->hold.held && !request->hold.local && !request->hold.leased
        &&  request->hold.concurrency > 0)
            held [count++] = request;
    qsort (held, count, sizeof *held, s_by_model);
    const char **ids = calloc (count + 1, sizeof *ids);
    assert (ids);
    for (size_t start = 0; start < count; ) {
        size_t end = start;
        while (end < count && mesh_streq (held [end]->hold.model, held [start]->hold.model)) {
            ids [end - start] = held [end]->base.id;
            end++;
        }
        router_quota_renew (self->quota, held [start]->hold.model, ids, end - start);
        start = end;
    }
    free (ids);
    free (held);
}

static int
s_on_heartbeat (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    router_t *self = arg;
    int64_t now = mesh_loop_now_ms (loop);
    router_connectors_expire (self->connectors, now, s_on_connector_lost, self);
    mesh_msg_t beat;
    mesh_msg_init (&beat, MESH_MSG_HEARTBEAT, NULL);
    snprintf (beat.sender, sizeof beat.sender, "%s", self->name);
    for (size_t i = 0; i < router_connectors_count (self->connectors); i++) {
        router_connector_t *connector = router_connectors_at (self->connectors, i);
        mesh_msg_send (self->connectors_socket, &beat, connector->identity,
                       connector->identity_size, ZMQ_DONTWAIT);
    }
    mesh_metric_set (self->metric.connectors, (double) router_connectors_count (self->connectors));
    router_quota_tick (self->quota);
    router_peers_tick (self->peers);
    router_registry_tick (self->registry);
    router_filters_tick (self->filters);
    router_session_tick (self->sessions);
    router_cache_tick (self->cache);
    router_faq_tick (self->faq);
    if (now - self->renewed_ms >= router_quota_lease_ms (self->quota) / 3) {
        s_renew_leases (self);
        self->renewed_ms = now;
    }
    mesh_loop_timer_start (loop, timer, self->heartbeat_ms, s_on_heartbeat, self);
    return 0;
}

//  Lifecycle ----------------------------------------------------------------

static void
s_metrics (router_t *self, mesh_metrics_t *metrics)
{
    self->metric.models_listed = mesh_metrics_counter (metrics, "seekmesh_router_models_listed_total",
        "Model list requests answered.", NULL);
    self->metric.done = mesh_metrics_counter (metrics, "seekmesh_router_done_total",
        "Requests reported finished by connectors.", NULL);
    self->metric.cancelled = mesh_metrics_counter (metrics, "seekmesh_router_cancelled_total",
        "Cancellations received from ingresses.", NULL);
    self->metric.lost_requests = mesh_metrics_counter (metrics, "seekmesh_router_lost_requests_total",
        "Requests whose connector was lost while holding them.", NULL);
    self->metric.connectors_lost = mesh_metrics_counter (metrics, "seekmesh_router_connectors_lost_total",
        "Connectors declared lost after missed heartbeats.", NULL);
    self->metric.connectors = mesh_metrics_gauge (metrics, "seekmesh_router_connectors",
        "Connectors alive.", NULL);
    self->metric.inflight = mesh_metrics_gauge (metrics, "seekmesh_router_inflight",
        "Requests this router holds (waiting for quota or dispatched), all keys and models.", NULL);
    mesh_dispatch_counters (&self->bad_messages, metrics, "router");
    self->metric.dispatch_seconds = mesh_metrics_histogram (metrics, "seekmesh_router_dispatch_seconds",
        "Time from receiving a request to dispatching it (quota decision included).", NULL);
}

//  The routers sharing the limits changed: the local limiter's share at once
static void
s_on_peers (void *arg, int count)
{
    router_t *self = arg;
    router_quota_routers (self->quota, count);
}

router_t *
router_new (mesh_config_t *config, void *ctx, mesh_loop_t *loop, mesh_metrics_t *metrics,
            char *why, size_t why_size)
{
    router_t *self = calloc (1, sizeof *self);
    assert (self);
    self->config = config;
    self->loop = loop;
    self->metrics = metrics;
    self->ctx = ctx;
    int instance = mesh_config_instance ();
    snprintf (self->name, sizeof self->name, "router-%d-%d", instance, (int) getpid ());
    self->heartbeat_ms = mesh_setting_int (config, "router.heartbeat_ms");
    self->liveness = mesh_setting_int (config, "router.heartbeat_liveness");
    const char *listen = mesh_setting_str (config, "router.listen");
    const char *connector_listen = mesh_setting_str (config, "router.connector_listen");
    self->queue_timeout_ms = mesh_setting_int (config, "router.queue_timeout_ms");
    self->policy = router_policy_new (config, metrics);
    self->load = router_load_new (config, metrics);
    if (!mesh_config_failed (config))
        self->quota = router_quota_new (config, loop, metrics, 1, why, why_size);
    if (mesh_config_failed (config) || !self->quota) {
        if (mesh_config_failed (config))
            snprintf (why, why_size, "%s", mesh_config_failed (config));
        router_destroy (&self);
        return NULL;
    }
    self->registry = router_registry_new (config, router_quota_redis (self->quota), metrics,
                                          s_on_registry, self, why, why_size);
    if (!self->registry) {
        router_destroy (&self);
        return NULL;
    }
    s_metrics (self, metrics);
    //  The local limiter's share: limit / the routers alive
    self->peers = router_peers_new (config, router_quota_redis (self->quota), self->name, metrics);
    router_quota_routers (self->quota, router_peers_count (self->peers));
    router_peers_on_change (self->peers, s_on_peers, self);
    self->faq = router_faq_new (router_quota_redis (self->quota), metrics, self->registry);
    router_cache_hooks_t hooks = {
        .arg = self, .find = s_cache_find, .upstream = s_cache_upstream, .answered = s_cache_answered,
        .following = s_cache_following, .done = s_cache_done, .cancel = s_cache_cancel,
        .lost = s_cache_lost
    };
    self->cache = router_cache_new (config, ctx, loop, metrics, self->name, &hooks, why, why_size);
    if (!self->cache) {
        router_destroy (&self);
        return NULL;
    }
    self->connectors = router_connectors_new ();
    router_connectors_liveness (self->connectors, self->heartbeat_ms, self->liveness);
    self->requests = mesh_map_new ();
    self->series = mesh_map_new ();
    self->outbox = mesh_outbox_new (ctx, loop, NULL, NULL);
    self->filters = router_filters_new (loop, router_quota_redis (self->quota), self->outbox, metrics,
                                        self->name);
    self->sessions = router_session_new (config, loop, router_quota_redis (self->quota), self->outbox,
                                         metrics, self->filters, why, why_size);
    if (!self->sessions) {
        router_destroy (&self);
        return NULL;
    }
    self->renewed_ms = mesh_loop_now_ms (loop);

    self->ingress = mesh_zmq_socket (ctx, ZMQ_PULL);
    if (mesh_curve_bind (self->ingress, "router.listen", listen, why, why_size) < 0) {
        router_destroy (&self);
        return NULL;
    }
    mesh_info ("requests on %s", listen);
    self->connectors_socket = mesh_zmq_socket (ctx, ZMQ_ROUTER);
    int one = 1;
    zmq_setsockopt (self->connectors_socket, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt (self->connectors_socket, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    if (mesh_curve_bind (self->connectors_socket, "router.connector_listen", connector_listen,
                         why, why_size) < 0) {
        router_destroy (&self);
        return NULL;
    }
    mesh_info ("connectors on %s", connector_listen);
    char monitor [64];
    snprintf (monitor, sizeof monitor, "inproc://router-monitor-%p", (void *) self);
    if (zmq_socket_monitor (self->connectors_socket, monitor, ZMQ_EVENT_DISCONNECTED) < 0
    ||  !(self->monitor = zmq_socket (ctx, ZMQ_PAIR))
    ||  zmq_connect (self->monitor, monitor) < 0) {
        snprintf (why, why_size, "cannot monitor %s: %s", connector_listen, zmq_strerror (errno));
        router_destroy (&self);
        return NULL;
    }
    mesh_loop_zmq_add (loop, self->monitor, s_on_monitor, self);
    mesh_loop_zmq_add (loop, self->ingress, s_on_ingress_socket, self);
    mesh_loop_zmq_add (loop, self->connectors_socket, s_on_connectors_socket, self);
    mesh_loop_timer_start (loop, &self->heartbeat_timer, self->heartbeat_ms, s_on_heartbeat, self);
    return self;
}

void
router_destroy (router_t **self_p)
{
    assert (self_p);
    router_t *self = *self_p;
    if (!self)
        return;
    mesh_loop_timer_stop (self->loop, &self->heartbeat_timer);
    mesh_loop_timer_stop (self->loop, &self->queue_timer);
    if (self->ingress) {
        mesh_loop_zmq_remove (self->loop, self->ingress);
        zmq_close (self->ingress);
    }
    if (self->monitor) {
        mesh_loop_zmq_remove (self->loop, self->monitor);
        zmq_socket_monitor (self->connectors_socket, NULL, 0);
        zmq_close (self->monitor);
    }
    if (self->connectors_socket) {
        mesh_loop_zmq_remove (self->loop, self->connectors_socket);
        zmq_close (self->connectors_socket);
    }
    mesh_outbox_destroy (&self->outbox);
    //  Redis first: its callbacks (quota decisions, admin writes) run now,
    //  while requests and the registry still exist
    self->stopping = true;
    router_quota_destroy (&self->quota);
    router_peers_destroy (&self->peers);
    if (self->requests) {
        size_t cursor = 0;
        request_t *request;
        while ((request = mesh_map_next (self->requests, &cursor, NULL))) {
            if (self->cache)
                router_cache_forget (self->cache, &request->cache);
            if (request->base.connector)
                router_request_detach (&request->base);
            router_gen_unref (&request->gen);
            zmq_msg_close (&request->frame);
            free (request->session_body);
            free (request);
        }
        mesh_map_destroy (&self->requests);
    }
    if (self->series) {
        size_t cursor = 0;
        series_t *series;
        while ((series = mesh_map_next (self->series, &cursor, NULL))) {
            free (series->name);
            free (series);
        }
        mesh_map_destroy (&self->series);
    }
    router_connectors_destroy (&self->connectors);
    router_load_destroy (&self->load);
    router_session_destroy (&self->sessions);
    router_filters_destroy (&self->filters);
    router_cache_destroy (&self->cache);
    router_faq_destroy (&self->faq);
    router_registry_destroy (&self->registry);
    router_policy_destroy (&self->policy);
    free (self);
    *self_p = NULL;
}

bool
router_ready (router_t *self, mesh_buf_t *why)
{
    if (self->draining) {
        mesh_buf_append_str (why, "draining");
        return false;
    }
    if (router_connectors_count (self->connectors) == 0) {
        mesh_buf_append_str (why, "no connector has joined");
        return false;
    }
    return router_registry_ready (self->registry, why);
}

size_t
router_drain (router_t *self)
{
    if (!self->draining) {
        //  The request socket stays open: what comes is given back
        //  untouched (ELSEWHERE), and ingresses send to the other routers
        self->draining = true;
        self->last_request_ms = mesh_loop_now_ms (self->loop);
        router_peers_leave (self->peers);
        router_quota_release (self->quota);     //  the leases' unused part goes back
    }
    return router_inflight (self);
}

size_t
router_inflight (router_t *self)
{
    size_t left = mesh_map_size (self->requests);
    //  Draining, a router also waits until requests stop coming, so that
    //  none sent just before its ingress heard is lost with the socket
    if (self->draining && self->ingress
    &&  mesh_loop_now_ms (self->loop) - self->last_request_ms < 2 * self->heartbeat_ms)
        left++;
    return left;
}

void
router_routes (router_t *self, mesh_admin_t *admin)
{
    router_filters_routes (self->filters, admin, self->registry);
    router_session_routes (self->sessions, admin, self->registry);
    router_faq_routes (self->faq, admin);          //  before the registry's /admin/
    router_registry_routes (self->registry, admin);
}

int
router_reload (router_t *self, char *why, size_t why_size)
{
    return router_registry_reload (self->registry, why, why_size);
}

void
router_test (bool verbose)
{
    (void) verbose;
    //  The router's behaviour is proven against real processes by the
    //  integration tests; here: a bad config is refused with its reason
    const char *text = "{ \"router\": { \"heartbeat_ms\": 0 } }";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "r.json", why, sizeof why);
    void *ctx = zmq_ctx_new ();
    mesh_loop_t *loop = mesh_loop_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    router_t *router = router_new (config, ctx, loop, metrics, why, sizeof why);
    assert (router == NULL);
    assert (strstr (why, "router.heartbeat_ms"));
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
    mesh_config_destroy (&config);
    zmq_ctx_term (ctx);
}
