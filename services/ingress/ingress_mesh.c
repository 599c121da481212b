/*  ingress_mesh: the ingress's side of the ZeroMQ mesh.

    It sends REQUEST (ingress_mesh_submit: to a router that can take it,
    ingress_routers.c; 503 if none, or for a refusal of the ingress's own,
    that refusal) and CANCEL (ingress_mesh_cancel: to the router that has
    the request); what it hears back, on its PULL socket, is the table
    s_from_mesh below.

    A request a router gives back untouched (ERROR flagged ELSEWHERE: it
    is draining, or has no connector yet) goes to another router at once.
    A router whose connection closes leaves the requests it had: after the
    grace (router.heartbeat_ms x heartbeat_liveness), those of which no
    event came and no connector said it serves them (HELD) are sent again,
    as the next attempt, to another router.

    Events find their request through its token: a slot index and a
    generation, so an event for a request that has ended (and whose slot was
    reused) is recognised and dropped.  Each request remembers its attempt;
    events of an older attempt are dropped too.

    The PULL socket's ZMQ_FD (a dup of it, which lws may close) is adopted
    into the lws loop as a raw file; so are the routers' socket monitors and
    the signalfd.  lws service thread only.                                 */
#include "ingress.h"
#include "ingress_audit.h"
#include "ingress_filter.h"
#include "ingress_session.h"

#include "mesh_audit.h"
#include "mesh_curve.h"
#include "mesh_dispatch.h"
#include "mesh_log.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <jansson.h>
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

static mesh_handler_fn s_on_head, s_on_chunk, s_on_end, s_on_error, s_on_lost, s_on_reply,
                       s_on_held, s_on_filters, s_on_stop, s_on_record;

static const mesh_route_t s_mesh_routes [] = {
    { MESH_MSG_HEAD,  s_on_head },      //  connector: start the SSE response
    { MESH_MSG_CHUNK, s_on_chunk },     //  connector: one SSE event (or comment)
    { MESH_MSG_END,   s_on_end },       //  connector: [DONE], or the JSON body
    { MESH_MSG_ERROR, s_on_error },     //  connector or router: error response / SSE event
    { MESH_MSG_LOST,  s_on_lost },      //  router: retry if the client has seen nothing
    { MESH_MSG_REPLY, s_on_reply },     //  router: a whole response (the model list)
    { MESH_MSG_HELD,  s_on_held },      //  connector: serves it though its router is gone
    { MESH_MSG_FILTERS, s_on_filters }, //  router: newer word lists
    { MESH_MSG_STOP,  s_on_stop },      //  router: an operator took the session over
    { MESH_MSG_RECORD, s_on_record },   //  router: an operator's action, for the audit trail
    { MESH_MSG_BATCH, mesh_dispatch_batch },    //  several of the above in one message
    { 0, NULL }
};
static const mesh_conversation_t s_from_mesh = { "router or connector", false, 256, NULL,
                                                 s_mesh_routes };

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
    slot_t *slots;
    size_t slot_count;
    uint32_t *free_slots;
    size_t free_count;
    size_t active;
    int signal_fd;
    ingress_watch_t signal_watch;
    int64_t lost_grace_ms;      //  router.heartbeat_ms x heartbeat_liveness
    int64_t orphans_until_ms;   //  look for orphans until then
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
    //  A session's router is kept until its TURN has gone (ingress_session_end)
    if (pss->router >= 0 && !pss->turn_owed) {
        ingress_routers_release (pss->ingress, pss->router);
        pss->router = -1;
    }
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
    char *verdict = NULL;
    if (pss->kind == MESH_KIND_INVALID) {
        //  Not the client's body: the refusal the router is to answer with
        json_t *refusal = json_pack ("{s:i, s:s, s:s, s:s, s:s}", "status", pss->refusal_status,
                                     "type", pss->refusal_type, "code", pss->refusal_code,
                                     "param", pss->refusal_param, "message", pss->refusal_message);
        verdict = refusal ? json_dumps (refusal, JSON_COMPACT) : NULL;
        json_decref (refusal);
        if (!verdict)
            return -1;
        msg.body = (mesh_bytes_t) { verdict, strlen (verdict) };
    }
    snprintf (msg.avoid, sizeof msg.avoid, "%s", avoid ? avoid : "");
    memcpy (msg.user, pss->user, sizeof msg.user);
    msg.estimate = pss->estimate;
    snprintf (msg.session, sizeof msg.session, "%s", pss->session);
    msg.prompt_estimate = pss->prompt_estimate;
    memcpy (msg.cache_control, pss->cache_control, sizeof msg.cache_control);
    //  The router it went to before has let go of it
    if (pss->router >= 0) {
        ingress_routers_release (self, pss->router);
        pss->router = -1;
    }
    pss->heard = pss->held = false;
    pss->orphaned_ms = 0;
    int router = ingress_routers_send_request (self, &msg, pss->tried);
    free (verdict);
    if (router < 0)
        return -1;
    pss->router = router;
    return 0;
}

void
ingress_mesh_broadcast (ingress_t *self, const mesh_msg_t *msg)
{
    if (self->routers)
        ingress_routers_broadcast (self, msg);
}

int
ingress_mesh_to_router (pss_t *pss, const mesh_msg_t *msg)
{
    if (pss->router < 0) {
        mesh_warn ("cannot send %s: the request's router is gone req=%s",
                   mesh_msg_name (msg->type), pss->id);
        return -1;
    }
    return ingress_routers_send (pss->ingress, pss->router, msg);
}

const char *
ingress_mesh_reply_to (ingress_t *self)
{
    return self->mesh->reply_to;
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
        if (pss->kind == MESH_KIND_INVALID) {
            //  Whose key it was stays unknown; the answer does not change
            ingress_mesh_release (pss);
            ingress_respond_refusal (pss);
            return;
        }
        mesh_warn ("no router can take the request req=%s", pss->id);
        pss->retry_after_ms = 1000;
        ingress_respond_error (pss, 503, "server_error", "no_router", NULL,
                               "The gateway cannot reach a router; retry shortly.");
        return;
    }
    //  A session's chat owes its router the end of its turn
    pss->turn_owed = pss->kind == MESH_KIND_CHAT && *pss->session;
}

void
ingress_mesh_cancel (pss_t *pss, const char *outcome)
{
    ingress_t *self = pss->ingress;
    if (!pss->slot)
        return;
    if (pss->router >= 0) {
        mesh_msg_t msg;
        mesh_msg_init (&msg, MESH_MSG_CANCEL, pss->id);
        msg.attempt = pss->attempt;
        snprintf (msg.outcome, sizeof msg.outcome, "%s", outcome);
        ingress_routers_send (self, pss->router, &msg);
    }
    ingress_mesh_release (pss);
}

//  Events in ------------------------------------------------------------------

static pss_t *s_request_of (ingress_t *self, const mesh_msg_t *msg);

pss_t *
ingress_mesh_request_of (ingress_t *self, const mesh_msg_t *msg)
{
    return s_request_of (self, msg);
}

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
    pss->heard = true;
    if (!pss->answered_us && msg->type != MESH_MSG_LOST)
        pss->answered_us = mesh_mono_us ();
    if (msg->type == MESH_MSG_HEAD || msg->type == MESH_MSG_END || msg->type == MESH_MSG_ERROR) {
        if (*msg->cache && pss->state == RQ_MESH) {
            memcpy (pss->cache, msg->cache, sizeof pss->cache);
            memcpy (pss->cache_ref, msg->cache_ref, sizeof pss->cache_ref);
        }
        ingress_audit_note (pss, msg);
    }
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
    ingress_filter_begin (pss, msg->tenant);
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
    if (msg->flags & MESH_CHUNK_COMMENT)
        ingress_sse_event (pss, msg->data.data, msg->data.size, true);
    else {
        ingress_filter_begin (pss, NULL);       //  a chunk before any HEAD: every list
        ingress_filter_chunk (pss, msg->data.data, msg->data.size);
    }
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
        ingress_filter_begin (pss, msg->tenant);
        ingress_filter_end (pss);
        ingress_sse_end (pss);
        return 0;
    }
    if (pss->state != RQ_MESH)
        return 0;
    snprintf (pss->answered_model, sizeof pss->answered_model, "%s", msg->model);
    memcpy (pss->limits, msg->limits, sizeof pss->limits);
    ingress_filter_begin (pss, msg->tenant);
    ingress_filter_body (pss, (int) msg->status, msg->data.data, msg->data.size);
    return 0;
}

static int
s_on_error (void *arg, mesh_inbox_t *inbox)
{
    const mesh_msg_t *msg = &inbox->msg;
    ingress_t *self = arg;
    pss_t *pss = s_request_of (self, msg);
    if (!pss)
        return 0;
    if (pss->state == RQ_MESH && (msg->flags & MESH_ERROR_ELSEWHERE) && pss->router >= 0) {
        //  The router did nothing with it: another one may take it now
        int router = pss->router;
        ingress_routers_refused (self, router);
        pss->tried |= (uint64_t) 1 << router;
        mesh_debug ("router %s cannot take it (%s), trying another req=%s",
                    ingress_routers_endpoint (self, router), msg->err_code, pss->id);
        if (s_send_request (self, pss, NULL) == 0)
            return 0;
    }
    if (pss->state == RQ_MESH) {
        bool invalid = pss->kind == MESH_KIND_INVALID && !mesh_streq (msg->err_code, "invalid_api_key");
        ingress_audit_outcome (pss, invalid ? MESH_AUDIT_INVALID
                                            : ingress_audit_error_outcome (msg->err_code));
        if (*msg->filtered)
            ingress_filter_input (pss, msg->filtered);
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

//  A connector serves this request though the router that sent it is gone:
//  it must not be sent again
static int
s_on_held (void *arg, mesh_inbox_t *inbox)
{
    pss_t *pss = s_request_of (arg, &inbox->msg);
    if (pss)
        pss->held = true;
    return 0;
}

void
ingress_mesh_router_lost (ingress_t *self, int index)
{
    ingress_mesh_t *mesh = self->mesh;
    int64_t now = mesh_mono_ms ();
    for (size_t i = 0; i < mesh->slot_count; i++) {
        pss_t *pss = mesh->slots [i].pss;
        if (pss && pss->router == index && pss->state == RQ_MESH && !pss->heard && !pss->held
        &&  !pss->orphaned_ms)
            pss->orphaned_ms = now;
    }
    mesh->orphans_until_ms = now + mesh->lost_grace_ms + 500;
}

//  Requests whose router was lost the grace ago: what no connector has
//  said it serves goes again, as the next attempt
static void
s_resend_orphans (ingress_t *self)
{
    ingress_mesh_t *mesh = self->mesh;
    int64_t now = mesh_mono_ms ();
    if (now > mesh->orphans_until_ms)
        return;
    size_t resent = 0, failed = 0;
    for (size_t i = 0; i < mesh->slot_count; i++) {
        pss_t *pss = mesh->slots [i].pss;
        if (!pss || !pss->orphaned_ms)
            continue;
        if (pss->state != RQ_MESH || pss->heard || pss->held) {
            pss->orphaned_ms = 0;       //  claimed meanwhile
            continue;
        }
        if (now - pss->orphaned_ms < mesh->lost_grace_ms)
            continue;
        //  Any connected router may take it, that one too if it is back
        //  (a new process: it knows nothing of this request)
        pss->orphaned_ms = 0;
        if (pss->attempt < self->max_attempts) {
            pss->attempt++;
            mesh_metric_inc (self->metric.resent);
            if (s_send_request (self, pss, NULL) == 0) {
                resent++;
                continue;
            }
        }
        failed++;
        pss->retry_after_ms = 1000;
        ingress_respond_error (pss, 503, "server_error", "router_lost", NULL,
                               "The gateway lost the router handling this request; retry shortly.");
    }
    if (resent || failed)
        mesh_warn ("a router was lost: %zu of its requests sent again, %zu failed", resent, failed);
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
    //  Copied: the headers are written later, when the message is gone
    snprintf (pss->reply_type, sizeof pss->reply_type, "%s",
              s_header_safe (msg->content_type) ? msg->content_type : "application/json");
    ingress_respond_body (pss, (int) msg->status, pss->reply_type, msg->data.data, msg->data.size);
    return 0;
}

//  STOP, RECORD and FILTERS speak for a router: a connector or the cache
//  (also let onto the reply endpoint) sending one is dropped and counted
static bool
s_from_router (ingress_t *self, mesh_inbox_t *inbox)
{
    if (!mesh_curve_enabled () || strcmp (mesh_curve_sender (&inbox->frame), "router") == 0)
        return true;
    mesh_warn ("dropped %s from a %s: only routers send it", mesh_msg_name (inbox->msg.type),
               mesh_curve_sender (&inbox->frame));
    mesh_metric_inc (self->bad_messages.unexpected);
    return false;
}

static int
s_on_stop (void *arg, mesh_inbox_t *inbox)
{
    if (s_from_router (arg, inbox))
        ingress_session_stop (arg, &inbox->msg);
    return 0;
}

static int
s_on_record (void *arg, mesh_inbox_t *inbox)
{
    if (s_from_router (arg, inbox))
        ingress_audit_forward (arg, &inbox->msg);
    return 0;
}

static int
s_on_filters (void *arg, mesh_inbox_t *inbox)
{
    if (s_from_router (arg, inbox))
        ingress_filter_on_filters (arg, &inbox->msg);
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
    //  Open connections get `Connection: close` with their next answer;
    //  one still idle a moment into the drain is closed with the loop
    size_t connections = ingress_listen_connections (self);
    int64_t idle_grace_ms = MESH_MIN (self->drain_ms / 2, 1000);
    if (active == 0 && unacked == 0
    &&  (connections == 0 || mesh_mono_ms () >= self->drain_started_ms + idle_grace_ms)) {
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
    self->drain_started_ms = mesh_mono_ms ();
    self->drain_deadline_ms = self->drain_started_ms + self->drain_ms;
    ingress_listen_drain (self);
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
    if (!wsi) {
        close (fd);
        return -1;
    }
    lws_set_opaque_user_data (wsi, watch);
    watch->wsi = wsi;
    return 0;
}

void
ingress_unadopt (ingress_watch_t *watch)
{
    //  Once the loop has ended, lws has closed every descriptor itself
    if (!watch->wsi || watch->ingress->stopping)
        return;
    lws_set_opaque_user_data (watch->wsi, NULL);
    lws_set_timeout (watch->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    watch->wsi = NULL;
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

bool
ingress_socket_has_input (void *socket)
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
    if (ingress_socket_has_input (mesh->pull))
        s_on_pull (self, &mesh->pull_watch);
    ingress_routers_poll (self);
    s_resend_orphans (self);
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
    mesh->lost_grace_ms = mesh_setting_int (config, "router.heartbeat_ms")
                        * mesh_setting_int (config, "router.heartbeat_liveness");

    //  Our reply endpoint: bound here, named in every REQUEST.  A process
    //  that took over from one still draining (which holds the endpoint)
    //  takes another port of the same host for its life.
    const char *endpoint = mesh_setting_str (config, "ingress.reply_endpoint");
    char bound [300];
    snprintf (bound, sizeof bound, "%s", endpoint);
    mesh->pull = mesh_zmq_socket (mesh->ctx, ZMQ_PULL);
    if (mesh_curve_bind (mesh->pull, "ingress.reply_endpoint", endpoint, why, why_size) < 0) {
        const char *colon = strrchr (endpoint, ':');
        if (!ingress_listen_successor (self) || errno != EADDRINUSE || strncmp (endpoint, "tcp://", 6)
        ||  !colon)
            return -1;
        char any [300];
        snprintf (any, sizeof any, "%.*s:*", (int) (colon - endpoint), endpoint);
        size_t size = sizeof bound;
        if (mesh_curve_bind (mesh->pull, "ingress.reply_endpoint", any, why, why_size) < 0
        ||  zmq_getsockopt (mesh->pull, ZMQ_LAST_ENDPOINT, bound, &size) < 0)
            return -1;
        mesh_info ("%s is still the old process's: replies on %s", endpoint, bound);
    }
    if (ingress_listen_reply_address (config, bound, mesh->reply_to, sizeof mesh->reply_to,
                                      why, why_size) < 0)
        return -1;
    mesh_info ("replies on %s (bound %s)", mesh->reply_to, bound);

    if (ingress_routers_start (self, why, why_size) < 0)
        return -1;
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
    ingress_routers_stop (self);
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
    return ingress_routers_ready (self, why);
}
