/*  router_faq: FAQ entries on the router: the admin API that writes them,
    and what the router needs to know of them to decide whether a request
    is worth showing the cache (a tenant with entries for the model).

    Admin API, on the router's admin port, with the registry's token
    (router_registry.h):
        GET    /admin/faq[?tenant=T]    list
        POST   /admin/faq               add (the id is made here): 201
        PUT    /admin/faq/ID            add or replace with this id
        GET    /admin/faq/ID
        DELETE /admin/faq/ID
        POST   /admin/faq/test          {"tenant", "model", "question"}:
                                        the entry that would answer, or null
    Entries are mesh_faq.h's JSON, kept in Redis by mesh_faq_store (every
    router and the cache read them from there); writes answer 503 while
    Redis is away.  Reactor thread only.                                    */
#ifndef ROUTER_FAQ_H
#define ROUTER_FAQ_H

#include "router_registry.h"

#include "mesh_admin.h"
#include "mesh_metrics.h"

#include <stdbool.h>

struct mesh_redis_t;
typedef struct router_faq_t router_faq_t;

router_faq_t *router_faq_new (struct mesh_redis_t *redis, mesh_metrics_t *metrics,
                              router_registry_t *registry);
void  router_faq_destroy (router_faq_t **self_p);
//  True when tenant has FAQ entries that may answer on model
bool  router_faq_covers (router_faq_t *self, const char *tenant, const char *model);
//  Every heartbeat: read the entries again if a read failed
void  router_faq_tick (router_faq_t *self);
//  Serves /admin/faq on admin (before the registry's /admin/)
void  router_faq_routes (router_faq_t *self, mesh_admin_t *admin);

void  router_faq_test (bool verbose);

#endif
