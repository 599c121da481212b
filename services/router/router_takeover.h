/*  router_takeover: human operators on sessions.

    Admin API (the registry's token; the operator names themself, the
    token being shared: "operator" in the body, default "operator"):
        GET  /admin/sessions              the live sessions: id, tenant,
                                          last activity, turns, operator
        GET  /admin/sessions/ID           one, with its messages
        GET  /admin/sessions/ID/watch     a live transcript (SSE): the
                                          history, then each user message,
                                          answer, operator message,
                                          takeover and release as it comes
        POST /admin/sessions/ID/takeover  {"operator"}
        POST /admin/sessions/ID/say       {"operator", "text"}
        POST /admin/sessions/ID/release   {"operator"}
    A takeover, say or release is stored (router_store), announced to every
    router (an event: the one holding a request of the session acts on it,
    router_session.c) and recorded in the audit trail: a record (outcome
    takeover, operator_message or release; params {session, operator}; an
    operator message's text as its prompt, sealed like any) that the router
    hands to an ingress it heard from lately (RECORD), which delivers it
    with its own.  With no ingress heard from, the action is refused (503)
    before it is done: none goes unrecorded.

    An operator's answer reaches the client as a model's would, in the
    OpenAI shape (router_takeover_answer): a stream's HEAD, chunks and END,
    or an END with the chat.completion, model "human".

    Reactor thread only.                                                     */
#ifndef ROUTER_TAKEOVER_H
#define ROUTER_TAKEOVER_H

#include "mesh_admin.h"
#include "mesh_id.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"
#include "mesh_zmq.h"
#include "router_filters.h"
#include "router_registry.h"
#include "router_store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTER_HUMAN_MODEL "human"

//  Where a request's answers go, and whose request it is
typedef struct {
    char id [MESH_ID_LEN + 1];
    uint32_t attempt;
    uint64_t token;
    char reply_to [256];
    bool stream;
    char tenant [128];
    char key_id [65];
} router_target_t;

typedef struct router_takeover_t router_takeover_t;

router_takeover_t *router_takeover_new (router_store_t *store, mesh_loop_t *loop, mesh_outbox_t *outbox,
                                        router_filters_t *filters, mesh_metrics_t *metrics,
                                        int64_t ttl_s);
void router_takeover_destroy (router_takeover_t **self_p);
//  Serves /admin/sessions on admin (before the registry's /admin/)
void router_takeover_routes (router_takeover_t *self, mesh_admin_t *admin, router_registry_t *registry);
//  Every heartbeat: keep-alives to the watchers
void router_takeover_tick (router_takeover_t *self);

//  A human answer's stream begins (HEAD, model "human"): the ingress sends
//  the headers and keep-alive comments while the operator types
void router_takeover_head (mesh_outbox_t *outbox, const router_target_t *target);
//  The human answer text, in the OpenAI shape the request asked for
void router_takeover_answer (mesh_outbox_t *outbox, const router_target_t *target, const char *text);

void router_takeover_test (bool verbose);

#endif
