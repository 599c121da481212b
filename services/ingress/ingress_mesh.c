/*  ingress_mesh: the ingress's side of the ZeroMQ mesh.

    It sends REQUEST (ingress_mesh_submit: to a router with a live link,
    round robin; 503 if none) and CANCEL (ingress_mesh_cancel: to the
    router that has the request); what it hears back, on its PULL socket,
    is the table s_from_mesh below.

    Events find their request through its token: a slot index and a
    generation, so an event for a request that has ended (and whose slot was
    reused) is recognised and dropped.  Each request remembers its attempt;
    events of an older attempt are dropped too.

    The PULL socket's ZMQ_FD (a dup of it, which lws may close) is adopted
    into the lws loop as a raw file; so are the routers' socket monitors and
    the signalfd.  lws service thread only.                                 */
#include "ingress.h"
#include "ingress_audit.h"

#include "mesh_audit.h"
#include "mesh_curve.h"
#include "mesh_dispatch.h"
#include "mesh_log.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <ev.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>

//  What the ingress hears --------------------------------------------------------

static mesh_handler_fn s_on_head, s_on_chunk, s_on_end, s_on_error, s_on_lost, s_on_reply;

static const mesh_route_t s_mesh_routes [] = {
    { MESH_MSG_HEAD,  s_on_head },      //  connector: start the SSE response
    { MESH_MSG_CHUNK, s_on_chunk },     //  connector: one SSE event (or comment)
    { MESH_MSG_END,   s_on_end },       //  connector: [DONE], or the JSON body
    { MESH_MSG_ERROR, s_on_error },     //  connector or router: error response / SSE event
    { MESH_MSG_LOST,  s_on_lost },      //  router: retry if the client has seen nothing
    { MESH_MSG_REPLY, s_on_reply },     //  router: a whole response (the model list)
    { MESH_MSG_BATCH, mesh_dispatch_batch },    //  several of the above in one message
    { 0, NULL }
};
static const mesh_conversation_t s_from_mesh = { "router or connector", false, 256, NULL,
                                                 s_mesh_routes };

typedef struct ingress_router_t {
    char endpoint [256];
    void *socket;               //  PUSH
    void *monitor;              //  PAIR: its connect/disconnect events
    bool connected;
    ingress_watch_t watch;      //  on the monitor; arg: the router
} router_t;

typedef struct {
    pss_t *pss;
    uint32_t generation;
} slot_t;

struct ingress_mesh_t {
    void *ctx;
    void *pull;
    char reply_to [256];
    ingress_watch_t pull_watch;
    lws_sorted_usec_list_t more_sul;    //  continues a capped drain
    lws_sorted_usec_list_t sweep_sul;   //  the periodic ZMQ_EVENTS check
    router_t routers [INGRESS_MAX_ROUTERS];
    size_t router_count;
    size_t next_router;
    slot_t *slots;
    size_t slot_count;
    uint32_t *free_slots;
    size_t free_count;
    size_t active;
    int signal_fd;
    ingress_watch_t signal_watch;
};

//  Slots ----------------------------------------------------------------------

static void
s_slot_take (ingress_mesh_t *mesh, pss_t *pss)
{
    if (mesh->free_count == 0) {
        size_t grow = mesh->slot_count ? mesh->slot_count : 256;
        mesh->slots = realloc (mesh->slots, (mesh->slot_count + grow) * sizeof *mesh->slots);
        mesh->free_slots = realloc (mesh->free_slots, (mesh->slot_count + grow) * sizeof *mesh->free_slots);
        assert (mesh->slots && mesh->free_slots);
        for (size_t i = 0; i < grow; i++) {
            mesh->slots [mesh->slot_count + i] = (slot_t) { NULL, 1 };
            mesh->free_slots [mesh->free_count++] = (uint32_t) (mesh->slot_count + grow - 1 - i);
        }
        mesh->slot_count += grow;
    }
    uint32_t index = mesh->free_slots [--mesh->free_count];
    mesh->slots [index].pss = pss;
    pss->slot = index + 1;
    pss->token = (uint64_t) mesh->slots [index].generation << 32 | index;
    mesh->active++;
}

void
ingress_mesh_release (pss_t *pss)
{
    ingress_mesh_t *mesh = pss->ingress->mesh;
    if (!pss->slot)
        return;
    uint32_t index = pss->slot - 1;
    mesh->slots [index].pss = NULL;
    mesh->slots [index].generation++;
    mesh->free_slots [mesh->free_count++] = index;
    pss->slot = 0;
    mesh->active--;
    mesh_metric_set (pss->ingress->metric.active, (double) mesh->active);
}

static pss_t *
s_slot_find (ingress_mesh_t *mesh, const mesh_msg_t *msg)
{
    uint32_t index = (uint32_t) msg->token;
    uint32_t generation = (uint32_t) (msg->token >> 32);
    if (index >= mesh->slot_count || mesh->slots [index].generation != generation)
        return NULL;
    pss_t *pss = mesh->slots [index].pss;
    if (!pss || strcmp (pss->id, msg->id) != 0)
        return NULL;
    return pss;
}

size_t
ingress_mesh_active (ingress_t *self)
{
    return self->mesh->active;
}

//  Requests out ---------------------------------------------------------------

static int
s_send_request (ingress_t *self, pss_t *pss, const char *avoid)
{
    ingress_mesh_t *mesh = self->mesh;
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_REQUEST, pss->id);
    msg.attempt = pss->attempt;
    msg.token = pss->token;
    memcpy (msg.reply_to, mesh->reply_to, sizeof msg.reply_to);
    msg.kind = (uint32_t) pss->kind;
    msg.key_hash = (mesh_bytes_t) { (const char *) pss->key_hash, sizeof pss->key_hash };
    snprintf (msg.model, sizeof msg.model, "%s", pss->model);
    msg.stream = pss->stream;
    msg.body = (mesh_bytes_t) { mesh_buf_head (&pss->body), mesh_buf_size (&pss->body) };
    snprintf (msg.avoid, sizeof msg.avoid, "%s", avoid ? avoid : "");
    memcpy (msg.user, pss->user, sizeof msg.user);
    msg.estimate = pss->estimate;
    msg.prompt_estimate = pss->prompt_estimate;
    //  Round robin over the routers we are connected to; a PUSH socket
    //  with ZMQ_IMMEDIATE refuses at once when its router is away
    for (size_t tried = 0; tried < mesh->router_count; tried++) {
        size_t at = mesh->next_router++ % mesh->router_count;
        router_t *router = &mesh->routers [at];
        if (mesh_msg_send (router->socket, &msg, NULL, 0, ZMQ_DONTWAIT) == 0) {
            pss->router = (int) at;
            return 0;
        }
    }
    return -1;
}

void *
ingress_mesh_context (ingress_t *self)
{
    return self->mesh->ctx;
}

void
ingress_mesh_submit (pss_t *pss)
{
    ingress_t *self = pss->ingress;
    s_slot_take (self->mesh, pss);
    mesh_metric_set (self->metric.active, (double) self->mesh->active);
    if (s_send_request (self, pss, NULL) < 0) {
        mesh_warn ("no router can take the request req=%s", pss->id);
        pss->retry_after_ms = 1000;
        ingress_respond_error (pss, 503, "server_error", "no_router", NULL,
                               "The gateway cannot reach a router; retry shortly.");
    }
}

void
ingress_mesh_cancel (pss_t *pss, const char *outcome)
{
    ingress_t *self = pss->ingress;
    if (!pss->slot)
        return;
    router_t *router = &self->mesh->routers [pss->router];
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_CANCEL, pss->id);
    msg.attempt = pss->attempt;
    snprintf (msg.outcome, sizeof msg.outcome, "%s", outcome);
    if (mesh_msg_send (router->socket, &msg, NULL, 0, ZMQ_DONTWAIT) < 0)
        mesh_warn ("cannot send CANCEL to %s: %s req=%s", router->endpoint, zmq_strerror (errno), pss->id);
    ingress_mesh_release (pss);
}

//  Events in ------------------------------------------------------------------

//  The request an event is for, or NULL when it has ended or the event is
//  of an older attempt (REPLY has no attempt)
static pss_t *
s_request_of (ingress_t *self, const mesh_msg_t *msg)
{
    pss_t *pss = s_slot_find (self->mesh, msg);
    if (!pss) {
        mesh_debug ("%s for a request that has ended req=%s", mesh_msg_name (msg->type), msg->id);
        return NULL;
    }
    if (msg->type != MESH_MSG_REPLY && msg->attempt != pss->attempt)
        return NULL;
    if (!pss->answered_us && msg->type != MESH_MSG_LOST)
        pss->answered_us = mesh_mono_us ();
    if (msg->type == MESH_MSG_HEAD || msg->type == MESH_MSG_END || msg->type == MESH_MSG_ERROR)
        ingress_audit_note (pss, msg);
    return pss;
}

static int
s_on_head (void *arg, mesh_inbox_t *inbox)
{
    const mesh_msg_t *msg = &inbox->msg;
    pss_t *pss = s_request_of (arg, msg);
    if (!pss)
        return 0;
    if (pss->state != RQ_MESH || !pss->stream)
        return 0;
    snprintf (pss->answered_model, sizeof pss->answered_model, "%s", msg->model);
    memcpy (pss->limits, msg->limits, sizeof pss->limits);
    ingress_sse_begin (pss);
    return 0;
}

static int
s_on_chunk (void *arg, mesh_inbox_t *inbox)
{
    const mesh_msg_t *msg = &inbox->msg;
    pss_t *pss = s_request_of (arg, msg);
    if (!pss)
        return 0;
    if (!pss->stream)
        return 0;
    if (pss->state == RQ_MESH)
        ingress_sse_begin (pss);
    ingress_sse_event (pss, msg->data.data, msg->data.size, msg->flags & MESH_CHUNK_COMMENT);
    return 0;
}

static int
s_on_end (void *arg, mesh_inbox_t *inbox)
{
    const mesh_msg_t *msg = &inbox->msg;
    pss_t *pss = s_request_of (arg, msg);
    if (!pss)
        return 0;
    if (pss->stream) {
        if (pss->state == RQ_MESH) {
            snprintf (pss->answered_model, sizeof pss->answered_model, "%s", msg->model);
            ingress_sse_begin (pss);
        }
        ingress_sse_end (pss);
        return 0;
    }
    if (pss->state != RQ_MESH)
        return 0;
    snprintf (pss->answered_model, sizeof pss->answered_model, "%s", msg->model);
    memcpy (pss->limits, msg->limits, sizeof pss->limits);
    ingress_respond_body (pss, (int) msg->status, "application/json", msg->data.data, msg->data.size);
    return 0;
}

static int
s_on_error (void *arg, mesh_inbox_t *inbox)
{
    const mesh_msg_t *msg = &inbox->msg;
    pss_t *pss = s_request_of (arg, msg);
    if (!pss)
        return 0;
    if (pss->state == RQ_MESH) {
        ingress_audit_outcome (pss, ingress_audit_error_outcome (msg->err_code));
        pss->retry_after_ms = (int) msg->retry_after_ms;
        pss->should_retry = (int) (msg->flags & (MESH_ERROR_RETRY_YES | MESH_ERROR_RETRY_NO));
        memcpy (pss->limits, msg->limits, sizeof pss->limits);
        if (*msg->model)
            snprintf (pss->answered_model, sizeof pss->answered_model, "%s", msg->model);
        ingress_respond_error (pss, (int) msg->status, msg->err_type, msg->err_code, msg->param,
                               msg->message);
    }
    else
    if (pss->sse) {
        ingress_audit_outcome (pss, MESH_AUDIT_UPSTREAM_ERROR);
        ingress_sse_error (pss, msg->err_type, msg->err_code, msg->message);
    }
    return 0;
}

static int
s_on_lost (void *arg, mesh_inbox_t *inbox)
{
    ingress_t *self = arg;
    const mesh_msg_t *msg = &inbox->msg;
    pss_t *pss = s_request_of (self, msg);
    if (!pss)
        return 0;
    if (pss->state == RQ_MESH && pss->attempt < self->max_attempts) {
        //  The client has seen nothing: try again, elsewhere
        pss->attempt++;
        mesh_metric_inc (self->metric.retries);
        mesh_info ("connector %s lost, retrying (attempt %u) req=%s", msg->sender, pss->attempt, pss->id);
        if (s_send_request (self, pss, msg->sender) == 0)
            return 0;
    }
    mesh_warn ("connector %s lost mid-response req=%s", msg->sender, pss->id);
    ingress_audit_outcome (pss, MESH_AUDIT_CONNECTOR_LOST);
    if (pss->state == RQ_MESH)
        ingress_respond_error (pss, 502, "server_error", "connector_lost", NULL,
                               "The gateway lost the connection serving this request.");
    else
        ingress_sse_error (pss, "server_error", "connector_lost",
                           "The gateway lost the connection serving this stream.");
    return 0;
}

//  A media type from the bus is a header value: printable ASCII only
static bool
s_header_safe (const char *value)
{
    for (const char *p = value; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return false;
    return *value != 0;
}

static int
s_on_reply (void *arg, mesh_inbox_t *inbox)
{
    const mesh_msg_t *msg = &inbox->msg;
    pss_t *pss = s_request_of (arg, msg);
    if (!pss)
        return 0;
    if (pss->state != RQ_MESH)
        return 0;
    ingress_respond_body (pss, (int) msg->status,
                          s_header_safe (msg->content_type) ? msg->content_type : "application/json",
                          msg->data.data, msg->data.size);
    return 0;
}


static void s_drain (ingress_t *self);

static void
s_on_more (lws_sorted_usec_list_t *sul)
{
    ingress_mesh_t *mesh = lws_container_of (sul, ingress_mesh_t, more_sul);
    s_drain (mesh->pull_watch.ingress);
}

//  Takes a bounded batch of events; comes back at once for the rest
static void
s_drain (ingress_t *self)
{
    ingress_mesh_t *mesh = self->mesh;
    if (mesh_dispatch (mesh->pull, &s_from_mesh, self, &self->bad_messages) == 0)
        return;                 //  drained: ZMQ_FD will wake us again
    lws_sul_schedule (self->context, 0, &mesh->more_sul, s_on_more, 1);
}

static void
s_on_pull (ingress_t *self, ingress_watch_t *watch)
{
    (void) watch;
    s_drain (self);
}

static void
s_on_monitor (ingress_t *self, ingress_watch_t *watch)
{
    (void) self;
    router_t *router = watch->arg;
    int event, value;
    while (mesh_zmq_monitor_read (router->monitor, &event, &value)) {
        if (event == ZMQ_EVENT_CONNECTED) {
            router->connected = true;
            mesh_info ("router %s connected", router->endpoint);
        }
        else
        if (event == ZMQ_EVENT_DISCONNECTED) {
            router->connected = false;
            mesh_warn ("router %s disconnected", router->endpoint);
        }
    }
}

void
ingress_stop (ingress_t *self)
{
    ev_break (self->loop, EVBREAK_ALL);
}

//  While draining, look every 50 ms whether the last request has ended and
//  the audit service has acknowledged the last record
static void
s_on_drain (lws_sorted_usec_list_t *sul)
{
    ingress_t *self = lws_container_of (sul, ingress_t, drain_sul);
    size_t active = ingress_mesh_active (self), unacked = ingress_audit_unacked (self);
    if (active == 0 && unacked == 0) {
        ingress_stop (self);
        return;
    }
    if (mesh_mono_ms () >= self->drain_deadline_ms) {
        mesh_warn ("drain deadline: %zu requests in flight, %zu audit records unacknowledged",
                   active, unacked);
        ingress_stop (self);
        return;
    }
    lws_sul_schedule (self->context, 0, &self->drain_sul, s_on_drain, 50 * LWS_US_PER_MS);
}

void
ingress_drain (ingress_t *self)
{
    self->draining = true;
    self->drain_deadline_ms = mesh_mono_ms () + self->drain_ms;
    s_on_drain (&self->drain_sul);
}

static void
s_on_signal (ingress_t *self, ingress_watch_t *watch)
{
    struct signalfd_siginfo info;
    while (read (watch->fd, &info, sizeof info) == sizeof info) {
        if (self->draining) {
            ingress_stop (self);        //  a second signal: leave now
            continue;
        }
        mesh_info ("signal %u: draining", info.ssi_signo);
        ingress_drain (self);
    }
}

//  Adoption into the lws loop ---------------------------------------------

static int
s_fd_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void) user; (void) in; (void) len;
    if (reason == LWS_CALLBACK_RAW_RX_FILE) {
        ingress_watch_t *watch = lws_get_opaque_user_data (wsi);
        if (watch)
            watch->fn (watch->ingress, watch);
    }
    return 0;
}

const struct lws_protocols ingress_fd_protocol = {
    "mesh-fd", s_fd_callback, 0, 0, 0, NULL, 0
};

int
ingress_adopt_fd (ingress_t *self, ingress_watch_t *watch, int fd, ingress_watch_fn *fn)
{
    watch->ingress = self;
    watch->fd = fd;
    watch->fn = fn;
    lws_sock_file_fd_type descriptor;
    descriptor.filefd = fd;
    struct lws *wsi = lws_adopt_descriptor_vhost (self->api_vhost, LWS_ADOPT_RAW_FILE_DESC,
                                                  descriptor, "mesh-fd", NULL);
    if (!wsi)
        return -1;
    lws_set_opaque_user_data (wsi, watch);
    return 0;
}

//  ZMQ_FD belongs to ZeroMQ: lws gets a duplicate it may close.  The fd
//  only signals changes, and a socket that has never been read may hold
//  messages without ever signalling, so the handler runs once right away.
int
ingress_adopt_socket (ingress_t *self, ingress_watch_t *watch, void *socket, ingress_watch_fn *fn)
{
    int fd;
    size_t size = sizeof fd;
    if (zmq_getsockopt (socket, ZMQ_FD, &fd, &size) < 0)
        return -1;
    int copy = dup (fd);
    if (copy < 0)
        return -1;
    watch->socket = socket;
    if (ingress_adopt_fd (self, watch, copy, fn) < 0)
        return -1;
    fn (self, watch);
    return 0;
}

static bool
s_has_input (void *socket)
{
    int events = 0;
    size_t size = sizeof events;
    return zmq_getsockopt (socket, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN);
}

//  Belt and braces against a missed edge: every 100 ms, look at each
//  socket's ZMQ_EVENTS and run the handler of one that has input
static void
s_on_sweep (lws_sorted_usec_list_t *sul)
{
    ingress_mesh_t *mesh = lws_container_of (sul, ingress_mesh_t, sweep_sul);
    ingress_t *self = mesh->pull_watch.ingress;
    if (s_has_input (mesh->pull))
        s_on_pull (self, &mesh->pull_watch);
    for (size_t i = 0; i < mesh->router_count; i++)
        if (s_has_input (mesh->routers [i].monitor))
            s_on_monitor (self, &mesh->routers [i].watch);
    lws_sul_schedule (self->context, 0, &mesh->sweep_sul, s_on_sweep, 100 * LWS_US_PER_MS);
}

int
ingress_mesh_start (ingress_t *self, char *why, size_t why_size)
{
    mesh_config_t *config = self->config;
    ingress_mesh_t *mesh = calloc (1, sizeof *mesh);
    assert (mesh);
    self->mesh = mesh;
    mesh->ctx = zmq_ctx_new ();
    if (mesh_curve_start (config, mesh->ctx, "ingress", self->metrics, why, why_size) < 0)
        return -1;
    mesh->signal_fd = -1;

    //  Our reply endpoint: bound here, named in every REQUEST
    const char *endpoint = mesh_setting_str (config, "ingress.reply_endpoint");
    const char *advertise = mesh_setting_str (config, "ingress.reply_advertise");
    if (*advertise)
        snprintf (mesh->reply_to, sizeof mesh->reply_to, "%s", advertise);
    else
    if (strstr (endpoint, "://*") || strstr (endpoint, "://0.0.0.0")) {
        snprintf (why, why_size, "config %s: ingress.reply_endpoint binds every address; set "
                  "ingress.reply_advertise to the address peers should use", mesh_config_file (config));
        return -1;
    }
    else
        snprintf (mesh->reply_to, sizeof mesh->reply_to, "%s", endpoint);
    mesh->pull = mesh_zmq_socket (mesh->ctx, ZMQ_PULL);
    if (mesh_curve_bind (mesh->pull, "ingress.reply_endpoint", endpoint, why, why_size) < 0)
        return -1;
    mesh_info ("replies on %s", mesh->reply_to);

    //  The routers: ingress.routers, or every instance of router.listen
    size_t count = mesh_setting_count (config, "ingress.routers");
    if (count == 0 || count > INGRESS_MAX_ROUTERS) {
        snprintf (why, why_size, "config %s: ingress.routers: between 1 and %d routers, not %zu",
                  mesh_config_file (config), INGRESS_MAX_ROUTERS, count);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        router_t *router = &mesh->routers [mesh->router_count++];
        snprintf (router->endpoint, sizeof router->endpoint, "%s",
                  mesh_setting_item (config, "ingress.routers", i));
        router->socket = mesh_zmq_socket (mesh->ctx, ZMQ_PUSH);
        int one = 1;
        zmq_setsockopt (router->socket, ZMQ_IMMEDIATE, &one, sizeof one);
        char name [64];
        snprintf (name, sizeof name, "inproc://ingress-router-monitor-%zu", i);
        if (zmq_socket_monitor (router->socket, name, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) < 0
        ||  !(router->monitor = zmq_socket (mesh->ctx, ZMQ_PAIR))
        ||  zmq_connect (router->monitor, name) < 0) {
            snprintf (why, why_size, "cannot watch router %s: %s", router->endpoint, zmq_strerror (errno));
            return -1;
        }
        if (mesh_curve_connect (router->socket, "router", router->endpoint, why, why_size) < 0)
            return -1;
        router->watch.arg = router;
        if (ingress_adopt_socket (self, &router->watch, router->monitor, s_on_monitor) < 0) {
            snprintf (why, why_size, "cannot watch the router socket");
            return -1;
        }
        mesh_info ("router %s", router->endpoint);
    }
    if (ingress_adopt_socket (self, &mesh->pull_watch, mesh->pull, s_on_pull) < 0) {
        snprintf (why, why_size, "cannot watch the reply socket");
        return -1;
    }
    lws_sul_schedule (self->context, 0, &mesh->sweep_sul, s_on_sweep, 100 * LWS_US_PER_MS);

    //  Signals arrive as reads on a signalfd, in the same loop
    sigset_t mask;
    sigemptyset (&mask);
    sigaddset (&mask, SIGTERM);
    sigaddset (&mask, SIGINT);
    pthread_sigmask (SIG_BLOCK, &mask, NULL);
    mesh->signal_fd = signalfd (-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (mesh->signal_fd < 0 || ingress_adopt_fd (self, &mesh->signal_watch, mesh->signal_fd, s_on_signal) < 0) {
        snprintf (why, why_size, "cannot watch signals: %s", strerror (errno));
        return -1;
    }
    return 0;
}

void
ingress_mesh_stop (ingress_t *self)
{
    ingress_mesh_t *mesh = self->mesh;
    if (!mesh)
        return;
    lws_sul_cancel (&mesh->more_sul);
    lws_sul_cancel (&mesh->sweep_sul);
    for (size_t i = 0; i < mesh->router_count; i++) {
        router_t *router = &mesh->routers [i];
        if (router->socket) {
            zmq_socket_monitor (router->socket, NULL, 0);
            zmq_close (router->socket);
        }
        if (router->monitor)
            zmq_close (router->monitor);
    }
    if (mesh->pull)
        zmq_close (mesh->pull);
    zmq_ctx_term (mesh->ctx);
    free (mesh->slots);
    free (mesh->free_slots);
    free (mesh);
    self->mesh = NULL;
}

bool
ingress_mesh_ready (ingress_t *self, mesh_buf_t *why)
{
    if (self->draining) {
        mesh_buf_append_str (why, "draining");
        return false;
    }
    for (size_t i = 0; i < self->mesh->router_count; i++)
        if (self->mesh->routers [i].connected)
            return true;
    mesh_buf_append_str (why, "no router connected");
    return false;
}
