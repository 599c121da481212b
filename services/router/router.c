/*  router: request admission and dispatch.

    Its whole conversation:

    from        message     handler             does
    ---------   ---------   -----------------   ------------------------------
    ingress     REQUEST     s_on_request        auth, model, pick, DISPATCH
    ingress     CANCEL      s_on_cancel         CANCEL to the holding connector
    connector   READY       s_on_beat           register, credit
    connector   HEARTBEAT   s_on_beat           liveness, credit
    connector   DONE        s_on_done           release the request
    timer       -           s_on_heartbeat      HEARTBEAT to connectors; expire
    monitor     -           s_on_monitor        a connector's connection closed
    (lost)      -           s_on_connector_lost LOST to the ingress of each
                                                request the connector held

    Replies to an ingress (ERROR, REPLY, LOST) go through the outbox to the
    reply endpoint named in the request.  Reactor thread only.               */
#include "router.h"
#include "router_connectors.h"
#include "router_keys.h"

#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_models.h"
#include "mesh_msg.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

struct router_t {
    mesh_config_t *config;
    mesh_loop_t *loop;
    void *ctx;
    char name [64];

    void *ingress;              //  PULL: REQUEST, CANCEL
    void *connectors_socket;    //  ROUTER: READY, HEARTBEAT, DONE
    void *monitor;              //  PAIR: the ROUTER socket's disconnects
    mesh_outbox_t *outbox;      //  PUSH to ingress reply endpoints

    mesh_models_t *models;
    router_keys_t *keys;
    router_connectors_t *connectors;
    mesh_map_t *requests;       //  id -> router_request_t
    bool draining;

    int64_t heartbeat_ms;
    int64_t liveness;
    mesh_timer_t heartbeat_timer;

    struct {
        mesh_metric_t *admitted;
        mesh_metric_t *refused_auth;
        mesh_metric_t *refused_model;
        mesh_metric_t *refused_forbidden;
        mesh_metric_t *refused_capacity;
        mesh_metric_t *models_listed;
        mesh_metric_t *done;
        mesh_metric_t *cancelled;
        mesh_metric_t *lost_requests;
        mesh_metric_t *connectors_lost;
        mesh_metric_t *connectors;
        mesh_metric_t *inflight;
        mesh_metric_t *bad_messages;
        mesh_metric_t *dispatch_seconds;
    } metric;
};

//  Replies to the ingress ---------------------------------------------------

static void
s_send_ingress (router_t *self, const char *reply_to, const mesh_msg_t *msg)
{
    if (mesh_outbox_send (self->outbox, reply_to, msg) < 0)
        mesh_warn ("cannot send %s to %s: %s req=%s", mesh_msg_name (msg->type), reply_to,
                   zmq_strerror (errno), msg->id);
}

static void
s_refuse (router_t *self, const mesh_msg_t *request, int status, const char *type,
          const char *code, const char *param, int retry_after_ms, const char *fmt, ...)
    __attribute__ ((format (printf, 8, 9)));

static void
s_refuse (router_t *self, const mesh_msg_t *request, int status, const char *type,
          const char *code, const char *param, int retry_after_ms, const char *fmt, ...)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_ERROR, request->id);
    msg.attempt = request->attempt;
    msg.token = request->token;
    msg.status = (uint32_t) status;
    snprintf (msg.err_type, sizeof msg.err_type, "%s", type);
    snprintf (msg.err_code, sizeof msg.err_code, "%s", code);
    snprintf (msg.param, sizeof msg.param, "%s", param ? param : "");
    msg.retry_after_ms = (uint32_t) retry_after_ms;
    msg.flags = retry_after_ms ? MESH_ERROR_RETRY_YES : MESH_ERROR_RETRY_NO;
    va_list args;
    va_start (args, fmt);
    vsnprintf (msg.message, sizeof msg.message, fmt, args);
    va_end (args);
    s_send_ingress (self, request->reply_to, &msg);
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
s_reply_models (router_t *self, const mesh_msg_t *request, const router_key_t *key)
{
    json_t *reply;
    if (*request->model) {
        mesh_model_t *model = mesh_models_find (self->models, request->model);
        if (!model || !router_key_allows (key, model)) {
            s_refuse (self, request, 404, "invalid_request_error", "model_not_found", "model", 0,
                      "The model `%s` does not exist or you do not have access to it.", request->model);
            return;
        }
        reply = s_model_object (request->model);
    }
    else {
        json_t *data = json_array ();
        for (size_t i = 0; i < mesh_models_count (self->models); i++) {
            mesh_model_t *model = mesh_models_at (self->models, i);
            if (router_key_allows (key, model))
                json_array_append_new (data, s_model_object (model->name));
        }
        for (size_t i = 0; i < mesh_models_alias_count (self->models); i++) {
            const char *alias;
            mesh_model_t *model = mesh_models_alias_at (self->models, i, &alias);
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

//  Requests -----------------------------------------------------------------

static void
s_request_free (router_t *self, router_request_t *request)
{
    mesh_map_remove (self->requests, request->id);
    router_request_detach (request);
    free (request);
    mesh_metric_set (self->metric.inflight, (double) mesh_map_size (self->requests));
}

//  The connector is gone: tell each request's ingress, which retries what
//  its client has not seen yet and fails the rest.
static void
s_on_connector_lost (void *arg, router_connector_t *connector)
{
    router_t *self = arg;
    mesh_metric_inc (self->metric.connectors_lost);
    while (connector->requests) {
        router_request_t *request = connector->requests;
        mesh_msg_t msg;
        mesh_msg_init (&msg, MESH_MSG_LOST, request->id);
        msg.attempt = request->attempt;
        msg.token = request->token;
        snprintf (msg.sender, sizeof msg.sender, "%.*s", (int) connector->identity_size,
                  connector->identity);
        s_send_ingress (self, request->reply_to, &msg);
        mesh_metric_inc (self->metric.lost_requests);
        s_request_free (self, request);
    }
}

static void
s_on_request (router_t *self, const mesh_msg_t *msg)
{
    if (self->draining) {
        s_refuse (self, msg, 503, "server_error", "draining", NULL, 1000,
                  "This router is shutting down; retry shortly.");
        return;
    }
    const router_key_t *key = router_keys_find (self->keys, msg->key_hash.data, msg->key_hash.size);
    if (!key) {
        mesh_metric_inc (self->metric.refused_auth);
        s_refuse (self, msg, 401, "authentication_error", "invalid_api_key", NULL, 0,
                  "Incorrect API key provided.");
        return;
    }
    if (msg->kind == MESH_KIND_MODELS) {
        s_reply_models (self, msg, key);
        return;
    }
    mesh_model_t *model = mesh_models_find (self->models, msg->model);
    if (!model) {
        mesh_metric_inc (self->metric.refused_model);
        s_refuse (self, msg, 404, "invalid_request_error", "model_not_found", "model", 0,
                  "The model `%s` does not exist or you do not have access to it.", msg->model);
        return;
    }
    if (!router_key_allows (key, model)) {
        mesh_metric_inc (self->metric.refused_forbidden);
        s_refuse (self, msg, 403, "permission_error", "model_not_allowed", "model", 0,
                  "This API key is not allowed to use the model `%s`.", msg->model);
        return;
    }
    //  The response cache is asked here, once seekmesh-cache exists.

    router_request_t *request = mesh_map_get (self->requests, msg->id);
    if (request)                //  a retry of a request we still track
        s_request_free (self, request);
    request = calloc (1, sizeof *request);
    assert (request);
    memcpy (request->id, msg->id, sizeof request->id);
    request->attempt = msg->attempt;
    request->token = msg->token;
    snprintf (request->reply_to, sizeof request->reply_to, "%s", msg->reply_to);
    request->model = model;
    request->dispatched_us = mesh_loop_now_us (self->loop);

    mesh_msg_t dispatch;
    mesh_msg_init (&dispatch, MESH_MSG_DISPATCH, msg->id);
    dispatch.attempt = msg->attempt;
    dispatch.token = msg->token;
    memcpy (dispatch.reply_to, msg->reply_to, sizeof dispatch.reply_to);
    snprintf (dispatch.model, sizeof dispatch.model, "%s", model->name);
    memcpy (dispatch.requested, msg->model, sizeof dispatch.requested);
    dispatch.stream = msg->stream;
    dispatch.body = msg->body;
    snprintf (dispatch.tenant, sizeof dispatch.tenant, "%s", key->tenant);

    //  A connector that vanished without our noticing yet refuses the send
    //  (ROUTER_MANDATORY): forget it and try the next
    router_connector_t *connector;
    while ((connector = router_connectors_pick (self->connectors, msg->avoid))) {
        if (mesh_msg_send (self->connectors_socket, &dispatch, connector->identity,
                           connector->identity_size, ZMQ_DONTWAIT) == 0)
            break;
        mesh_warn ("dispatch to %s failed: %s req=%s", connector->identity,
                   zmq_strerror (errno), msg->id);
        router_connectors_remove (self->connectors, connector, s_on_connector_lost, self);
    }
    if (!connector) {
        free (request);
        mesh_metric_inc (self->metric.refused_capacity);
        s_refuse (self, msg, 503, "server_error", "no_capacity", NULL, 1000,
                  "No upstream connector is available; retry shortly.");
        return;
    }
    router_request_attach (request, connector);
    mesh_map_put (self->requests, request->id, request);
    mesh_metric_inc (self->metric.admitted);
    mesh_metric_set (self->metric.inflight, (double) mesh_map_size (self->requests));
    mesh_metric_observe (self->metric.dispatch_seconds,
                         (double) (mesh_mono_us () - request->dispatched_us) / 1e6);
    mesh_debug ("dispatched to %s model=%s attempt=%u req=%s", connector->identity,
                model->name, msg->attempt, msg->id);
}

static void
s_on_cancel (router_t *self, const mesh_msg_t *msg)
{
    router_request_t *request = mesh_map_get (self->requests, msg->id);
    if (!request || request->attempt != msg->attempt || !request->connector)
        return;                 //  done already, or another router's
    request->cancelled = true;
    mesh_msg_t cancel;
    mesh_msg_init (&cancel, MESH_MSG_CANCEL, msg->id);
    cancel.attempt = msg->attempt;
    memcpy (cancel.outcome, msg->outcome, sizeof cancel.outcome);
    if (mesh_msg_send (self->connectors_socket, &cancel, request->connector->identity,
                       request->connector->identity_size, ZMQ_DONTWAIT) < 0)
        mesh_warn ("cannot forward CANCEL: %s req=%s", zmq_strerror (errno), msg->id);
    mesh_metric_inc (self->metric.cancelled);
}

static void
s_on_beat (router_t *self, const mesh_inbox_t *inbox)
{
    bool known = router_connectors_find (self->connectors, inbox->identity, inbox->identity_size);
    router_connector_t *connector = router_connectors_seen (
        self->connectors, inbox->identity, inbox->identity_size, inbox->msg.capacity,
        inbox->msg.inflight, mesh_loop_now_ms (self->loop));
    if (connector && inbox->source_fd >= 0)
        connector->fd = inbox->source_fd;
    if (connector && !known) {
        mesh_metric_set (self->metric.connectors, (double) router_connectors_count (self->connectors));
        //  Answer at once so a new connector knows this router is alive
        mesh_msg_t beat;
        mesh_msg_init (&beat, MESH_MSG_HEARTBEAT, NULL);
        snprintf (beat.sender, sizeof beat.sender, "%s", self->name);
        mesh_msg_send (self->connectors_socket, &beat, connector->identity,
                       connector->identity_size, ZMQ_DONTWAIT);
    }
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
    return 0;
}

static void
s_on_done (router_t *self, const mesh_inbox_t *inbox)
{
    const mesh_msg_t *msg = &inbox->msg;
    router_request_t *request = mesh_map_get (self->requests, msg->id);
    if (!request || request->attempt != msg->attempt || !request->connector
    ||  request->connector->identity_size != inbox->identity_size
    ||  memcmp (request->connector->identity, inbox->identity, inbox->identity_size) != 0)
        return;                 //  an older attempt, or not ours
    mesh_debug ("done status=%u outcome=%s tokens=%llu+%llu req=%s", msg->status, msg->outcome,
                (unsigned long long) msg->prompt_tokens,
                (unsigned long long) msg->output_tokens, msg->id);
    mesh_metric_inc (self->metric.done);
    s_request_free (self, request);
}

//  Sockets ------------------------------------------------------------------

static int
s_on_ingress_socket (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    router_t *self = arg;
    for (int batch = 0; batch < 64; batch++) {
        mesh_inbox_t inbox;
        char why [128];
        int rc = mesh_msg_recv (socket, &inbox, false, why, sizeof why);
        if (rc == 0)
            break;
        if (rc < 0) {
            mesh_warn ("dropped a malformed message from an ingress: %s", why);
            mesh_metric_inc (self->metric.bad_messages);
            continue;
        }
        if (inbox.msg.type == MESH_MSG_REQUEST)
            s_on_request (self, &inbox.msg);
        else
        if (inbox.msg.type == MESH_MSG_CANCEL)
            s_on_cancel (self, &inbox.msg);
        else {
            mesh_warn ("unexpected %s from an ingress", mesh_msg_name (inbox.msg.type));
            mesh_metric_inc (self->metric.bad_messages);
        }
        mesh_inbox_close (&inbox);
    }
    return 0;
}

static int
s_on_connectors_socket (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    router_t *self = arg;
    for (int batch = 0; batch < 64; batch++) {
        mesh_inbox_t inbox;
        char why [128];
        int rc = mesh_msg_recv (socket, &inbox, true, why, sizeof why);
        if (rc == 0)
            break;
        if (rc < 0) {
            mesh_warn ("dropped a malformed message from a connector: %s", why);
            mesh_metric_inc (self->metric.bad_messages);
            continue;
        }
        switch (inbox.msg.type) {
            case MESH_MSG_READY:
            case MESH_MSG_HEARTBEAT:
                s_on_beat (self, &inbox);
                break;
            case MESH_MSG_DONE:
                s_on_done (self, &inbox);
                break;
            default:
                mesh_warn ("unexpected %s from a connector", mesh_msg_name (inbox.msg.type));
                mesh_metric_inc (self->metric.bad_messages);
        }
        mesh_inbox_close (&inbox);
    }
    return 0;
}

static int
s_on_heartbeat (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    router_t *self = arg;
    router_connectors_expire (self->connectors, mesh_loop_now_ms (loop), s_on_connector_lost, self);
    mesh_msg_t beat;
    mesh_msg_init (&beat, MESH_MSG_HEARTBEAT, NULL);
    snprintf (beat.sender, sizeof beat.sender, "%s", self->name);
    for (size_t i = 0; i < router_connectors_count (self->connectors); i++) {
        router_connector_t *connector = router_connectors_at (self->connectors, i);
        mesh_msg_send (self->connectors_socket, &beat, connector->identity,
                       connector->identity_size, ZMQ_DONTWAIT);
    }
    mesh_metric_set (self->metric.connectors, (double) router_connectors_count (self->connectors));
    mesh_loop_timer_start (loop, timer, self->heartbeat_ms, s_on_heartbeat, self);
    return 0;
}

//  Lifecycle ----------------------------------------------------------------

static void
s_metrics (router_t *self, mesh_metrics_t *metrics)
{
    const char *refused = "seekmesh_router_refused_total";
    const char *refused_help = "Requests refused by the router, by reason.";
    self->metric.admitted = mesh_metrics_counter (metrics, "seekmesh_router_admitted_total",
        "Requests dispatched to a connector.", NULL);
    self->metric.refused_auth = mesh_metrics_counter (metrics, refused, refused_help, "reason=\"auth\"");
    self->metric.refused_model = mesh_metrics_counter (metrics, refused, refused_help, "reason=\"unknown_model\"");
    self->metric.refused_forbidden = mesh_metrics_counter (metrics, refused, refused_help, "reason=\"forbidden\"");
    self->metric.refused_capacity = mesh_metrics_counter (metrics, refused, refused_help, "reason=\"no_capacity\"");
    self->metric.models_listed = mesh_metrics_counter (metrics, "seekmesh_router_models_listed_total",
        "Model list requests answered.", NULL);
    self->metric.done = mesh_metrics_counter (metrics, "seekmesh_router_done_total",
        "Requests reported finished by connectors.", NULL);
    self->metric.cancelled = mesh_metrics_counter (metrics, "seekmesh_router_cancelled_total",
        "Cancellations forwarded to connectors.", NULL);
    self->metric.lost_requests = mesh_metrics_counter (metrics, "seekmesh_router_lost_requests_total",
        "Requests whose connector was lost while holding them.", NULL);
    self->metric.connectors_lost = mesh_metrics_counter (metrics, "seekmesh_router_connectors_lost_total",
        "Connectors declared lost after missed heartbeats.", NULL);
    self->metric.connectors = mesh_metrics_gauge (metrics, "seekmesh_router_connectors",
        "Connectors alive.", NULL);
    self->metric.inflight = mesh_metrics_gauge (metrics, "seekmesh_router_inflight",
        "Requests dispatched and not yet done.", NULL);
    self->metric.bad_messages = mesh_metrics_counter (metrics, "seekmesh_router_bad_messages_total",
        "Malformed or unexpected messages dropped.", NULL);
    self->metric.dispatch_seconds = mesh_metrics_histogram (metrics, "seekmesh_router_dispatch_seconds",
        "Time from receiving a request to dispatching it.", NULL);
}

static int
s_bind (void *socket, const char *endpoint, char *why, size_t why_size)
{
    if (zmq_bind (socket, endpoint) == 0)
        return 0;
    snprintf (why, why_size, "cannot bind %s: %s", endpoint, zmq_strerror (errno));
    return -1;
}

router_t *
router_new (mesh_config_t *config, void *ctx, mesh_loop_t *loop, mesh_metrics_t *metrics,
            char *why, size_t why_size)
{
    router_t *self = calloc (1, sizeof *self);
    assert (self);
    self->config = config;
    self->loop = loop;
    self->ctx = ctx;
    int instance = mesh_config_instance ();
    snprintf (self->name, sizeof self->name, "router-%d-%d", instance, (int) getpid ());
    self->heartbeat_ms = mesh_config_int (config, "router.heartbeat_ms", 500);
    self->liveness = mesh_config_int (config, "router.heartbeat_liveness", 3);
    int stride = (int) mesh_config_int (config, "mesh.port_stride", 10);
    const char *listen = mesh_config_str (config, "router.listen", "tcp://127.0.0.1:5555");
    const char *connector_listen = mesh_config_str (config, "router.connector_listen",
                                                    "tcp://127.0.0.1:5556");
    self->models = mesh_models_load (config);
    self->keys = router_keys_load (config, self->models);
    if (self->heartbeat_ms <= 0 || self->liveness <= 0)
        mesh_config_invalid (config, "router.heartbeat_ms", "heartbeats need a positive interval and liveness");
    if (mesh_config_failed (config)) {
        snprintf (why, why_size, "%s", mesh_config_failed (config));
        router_destroy (&self);
        return NULL;
    }
    s_metrics (self, metrics);
    self->connectors = router_connectors_new ();
    router_connectors_liveness (self->connectors, self->heartbeat_ms, self->liveness);
    self->requests = mesh_map_new ();
    self->outbox = mesh_outbox_new (ctx, loop, NULL, NULL);

    char endpoint [256];
    self->ingress = mesh_zmq_socket (ctx, ZMQ_PULL);
    if (mesh_endpoint_offset (listen, instance * stride, endpoint, sizeof endpoint) < 0) {
        snprintf (why, why_size, "config %s: router.listen: \"%s\" needs a port",
                  mesh_config_file (config), listen);
        router_destroy (&self);
        return NULL;
    }
    if (s_bind (self->ingress, endpoint, why, why_size) < 0) {
        router_destroy (&self);
        return NULL;
    }
    mesh_info ("requests on %s", endpoint);
    self->connectors_socket = mesh_zmq_socket (ctx, ZMQ_ROUTER);
    int one = 1;
    zmq_setsockopt (self->connectors_socket, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt (self->connectors_socket, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    if (mesh_endpoint_offset (connector_listen, instance * stride, endpoint, sizeof endpoint) < 0) {
        snprintf (why, why_size, "config %s: router.connector_listen: \"%s\" needs a port",
                  mesh_config_file (config), connector_listen);
        router_destroy (&self);
        return NULL;
    }
    if (s_bind (self->connectors_socket, endpoint, why, why_size) < 0) {
        router_destroy (&self);
        return NULL;
    }
    mesh_info ("connectors on %s", endpoint);
    char monitor [64];
    snprintf (monitor, sizeof monitor, "inproc://router-monitor-%p", (void *) self);
    if (zmq_socket_monitor (self->connectors_socket, monitor, ZMQ_EVENT_DISCONNECTED) < 0
    ||  !(self->monitor = zmq_socket (ctx, ZMQ_PAIR))
    ||  zmq_connect (self->monitor, monitor) < 0) {
        snprintf (why, why_size, "cannot monitor %s: %s", endpoint, zmq_strerror (errno));
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
    if (self->requests) {
        size_t cursor = 0;
        router_request_t *request;
        while ((request = mesh_map_next (self->requests, &cursor, NULL))) {
            router_request_detach (request);
            free (request);
        }
        mesh_map_destroy (&self->requests);
    }
    router_connectors_destroy (&self->connectors);
    router_keys_destroy (&self->keys);
    mesh_models_destroy (&self->models);
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
    return true;
}

size_t
router_drain (router_t *self)
{
    if (!self->draining) {
        self->draining = true;
        //  Closing the request socket makes ingresses send to other routers
        mesh_loop_zmq_remove (self->loop, self->ingress);
        zmq_close (self->ingress);
        self->ingress = NULL;
    }
    return mesh_map_size (self->requests);
}

size_t
router_inflight (router_t *self)
{
    return mesh_map_size (self->requests);
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
