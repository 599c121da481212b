/*  router_session: session memory.  The router owns sessions: it is where
    a request's key (tenant and key id, who owns a session) is known, where
    Redis is, and the last stage before an upstream call, so the history
    goes before the client's messages here and nowhere else.

    A request with a session (REQUEST.session) is a turn:
      1 it takes the session's lock (a lease of sessions.lock_ms, renewed
        while the turn lives), or waits for the turn before it to end
        (sessions.wait_ms at most, then 409 session_busy), and reads the
        history (one script: a session of another tenant or key is 404
        session_not_found and is not touched);
      2 the history is opened and merged with the request's messages
        (router_history: overlap, the bound); each new user message is
        announced to watchers;
      3 a session taken over by an operator does not go upstream: an
        operator message already waiting answers it at once; otherwise it
        waits (parked: a stream gets its headers and the ingress's keep-
        alive comments) for the operator's next message, or
        sessions.human_timeout_s, then sessions.holding_message; a release
        sends it upstream after all;
      4 otherwise it goes upstream with the merged messages (DISPATCH);
        when the operator takes the session over meanwhile, a stream is
        ended (STOP: finish_reason stop);
      5 the ingress reports the end (TURN) with the answer the client got;
        the history gains the new messages and the answer, trimmed, sealed,
        stored with the TTL, and the lock goes (a turn without an answer
        only unlocks).  A TURN that never comes (the ingress died) is given
        up after ingress.request_timeout_ms.
    GET /v1/sessions/ID and DELETE (REQUEST kinds 4 and 5) read and forget
    a session of the key's own.

    Reactor thread only.                                                     */
#ifndef ROUTER_SESSION_H
#define ROUTER_SESSION_H

#include "mesh_admin.h"
#include "mesh_config.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"
#include "mesh_msg.h"
#include "mesh_zmq.h"
#include "router_filters.h"
#include "router_registry.h"
#include "router_takeover.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mesh_redis_t;
typedef struct router_session_t router_session_t;

//  What the session stage decided for a request
enum {
    ROUTER_SESSION_DISPATCH = 1,    //  send body upstream (tokens: its estimate)
    ROUTER_SESSION_REFUSE,          //  answer with this error
    ROUTER_SESSION_PARKED,          //  waiting for an operator: keep it
    ROUTER_SESSION_ANSWERED         //  answered here (an operator, the holding message): end it
};

typedef struct {
    int decision;
    const char *body;               //  DISPATCH: borrowed until the call returns
    size_t len;
    uint64_t tokens;
    int status;                     //  REFUSE
    const char *type, *code, *message;
    int retry_after_ms;
} router_session_result_t;

typedef void (router_session_fn) (void *arg, const router_session_result_t *result);

//  NULL with a reason (settings, the key ring).  redis may be NULL:
//  sessions are then refused (503).
router_session_t *router_session_new (mesh_config_t *config, mesh_loop_t *loop,
                                      struct mesh_redis_t *redis, mesh_outbox_t *outbox,
                                      mesh_metrics_t *metrics, router_filters_t *filters,
                                      char *why, size_t why_size);
void router_session_destroy (router_session_t **self_p);
//  The session stage of a chat request (body: the client's JSON); fn is
//  called once with the decision, later (never from inside this call),
//  and again after PARKED (DISPATCH or ANSWERED) unless cancelled
void router_session_begin (router_session_t *self, const router_target_t *target,
                           const char *session, const char *body, size_t len,
                           router_session_fn *fn, void *arg);
//  The request ended at the router before its turn did (a refusal, the
//  client gone while it waited): fn is not called again
void router_session_cancel (router_session_t *self, const char *request);
//  TURN from an ingress
void router_session_turn (router_session_t *self, const mesh_msg_t *msg);
//  GET or DELETE of a session (kind 4, 5): answers the ingress itself
void router_session_reply (router_session_t *self, const router_target_t *target, int kind,
                           const char *session);
//  Every heartbeat: leases, turns given up, the watchers' keep-alives
void router_session_tick (router_session_t *self);
//  The operators' admin API (router_takeover)
void router_session_routes (router_session_t *self, mesh_admin_t *admin, router_registry_t *registry);

void router_session_test (bool verbose);

#endif
