/*  router: the policy stage.  Authenticates keys, resolves models and A/B
    variants, reserves quotas in Redis, picks an upstream endpoint (outlier
    ejection, circuit breakers) and the connector with the most free
    capacity; retries failures before the first byte within a retry budget,
    falls back to a model's fallback, forwards cancellations, and hands
    requests of a lost connector back to their ingress.  Serves the live
    registry's admin API.  Reactor thread only.                              */
#ifndef ROUTER_H
#define ROUTER_H

#include "mesh_admin.h"
#include "mesh_buf.h"
#include "mesh_config.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct router_t router_t;

//  Binds the router's sockets and starts its heartbeat.  NULL with a reason.
router_t *router_new (mesh_config_t *config, void *zmq_ctx, mesh_loop_t *loop,
                      mesh_metrics_t *metrics, char *why, size_t why_size);
void      router_destroy (router_t **self_p);
//  Ready while at least one connector is alive.
bool      router_ready (router_t *self, mesh_buf_t *why);
//  Stops taking requests; returns the number still in flight.
size_t    router_drain (router_t *self);
size_t    router_inflight (router_t *self);
//  Serves the registry's /admin/ routes on admin.
void      router_routes (router_t *self, mesh_admin_t *admin);
//  Re-reads the config file's models, aliases and keys (SIGHUP).  -1 with
//  a reason, keeping what it had.
int       router_reload (router_t *self, char *why, size_t why_size);

void      router_test (bool verbose);

#endif
