/*  router_filters: the sensitive-word lists, kept in Redis and changed at
    run time; the router's own use of them (a request whose messages hold a
    block word is refused before any upstream call); and their way to every
    ingress, which filters what the clients receive (ingress_filter.c).

    Redis:
        seekmesh:filters           hash: entry id -> {"id", "tenant" (null:
                                   the global list), "word", "action":
                                   "block"|"mask", "added_ms"}
        seekmesh:filters:seq       the last entry number (ids are f1, f2, ...)
        seekmesh:filters:version   bumped by every change
    and every change PUBLISHes its version on seekmesh:filters.  Each router
    reads the lists again on that message, when it finds a newer version
    (it asks every heartbeat), and after Redis comes back; it compiles them
    into one automaton (mesh_wordfilter) and keeps the document it sends
    ingresses.  An entry that does not compile is skipped, logged and
    counted; the others stay in force.

    Ingresses: each sends SYNC (its version) to every router about once a
    second; a router answers FILTERS when its version is newer, and sends
    FILTERS at once to every ingress it heard from in the last 5 s when a
    newer version is installed, so a change is in force everywhere within
    a second.  Versions only go up: an ingress that has a version newer
    than Redis's (Redis emptied) makes the router raise Redis's above it.
    The ingresses heard from are also where the router's own audit records
    go (router_filters_ingress).

    Admin API (the registry's token):
        GET    /admin/filters[?tenant=T]    the entries (all, or one list)
        POST   /admin/filters               {"word", "tenant", "action"}
        DELETE /admin/filters/ID
        POST   /admin/filters/test          {"text", "tenant"}: what the
                                            filter in force here makes of it
    Writes answer 503 while Redis is away.  Reactor thread only.            */
#ifndef ROUTER_FILTERS_H
#define ROUTER_FILTERS_H

#include "mesh_admin.h"
#include "mesh_config.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"
#include "mesh_zmq.h"
#include "router_registry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mesh_redis_t;
typedef struct router_filters_t router_filters_t;

//  redis may be NULL (no lists, writes answer 503); outbox reaches the
//  ingresses; sender names this router in FILTERS.
router_filters_t *router_filters_new (mesh_loop_t *loop, struct mesh_redis_t *redis,
                                      mesh_outbox_t *outbox, mesh_metrics_t *metrics,
                                      const char *sender);
void router_filters_destroy (router_filters_t **self_p);
//  Every heartbeat: asks Redis for the version, reads again what it missed
void router_filters_tick (router_filters_t *self);
//  An ingress (its reply endpoint checked by the caller) has version
void router_filters_sync (router_filters_t *self, const char *reply_to, uint64_t version);
//  A request of tenant whose client messages (body: the request JSON)
//  hold a block word: true, with the matches as a JSON array of {"list",
//  "entry", "action"} in filtered and the message in param
//  ("messages.[2].content"); counted and logged with the request id.
bool router_filters_refuse (router_filters_t *self, const char *id, const char *tenant,
                            const char *body, size_t len, char *filtered, size_t filtered_size,
                            char *param, size_t param_size);
//  An ingress heard from in the last seconds (round robin), or NULL
const char *router_filters_ingress (router_filters_t *self);
//  Serves /admin/filters on admin (before the registry's /admin/)
void router_filters_routes (router_filters_t *self, mesh_admin_t *admin, router_registry_t *registry);

void router_filters_test (bool verbose);

#endif
