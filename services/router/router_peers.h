/*  router_peers: how many routers are alive, learnt from Redis.

    While Redis is away each router admits limit / routers on its own (the
    local limiter, router_quota), so it must know how many routers share
    the limits.  Every heartbeat each router writes itself into the sorted
    set seekmesh:routers with an expiry of router.heartbeat_ms x
    heartbeat_liveness on Redis's clock, drops the expired and reads the
    count: routers that start, scale out or die are counted within a few
    heartbeats, with no number kept equal to the real one by hand.  When
    Redis goes away the last count stands (a router that dies meanwhile
    only makes the others stricter).  router.replicas, when set, is used
    instead; before Redis first answers, mesh.instances.router.  A router
    that drains takes itself out at once.  Reactor thread only.             */
#ifndef ROUTER_PEERS_H
#define ROUTER_PEERS_H

#include "mesh_config.h"
#include "mesh_metrics.h"

#include <stdbool.h>

struct mesh_redis_t;
typedef struct router_peers_t router_peers_t;

//  redis may be NULL (no Redis: the configured count stands); name is this
//  router's, unique in the mesh
router_peers_t *router_peers_new (mesh_config_t *config, struct mesh_redis_t *redis,
                                  const char *name, mesh_metrics_t *metrics);
void router_peers_destroy (router_peers_t **self_p);

//  Says this router is alive and reads the count (every heartbeat)
void router_peers_tick (router_peers_t *self);
//  This router stops counting itself (draining)
void router_peers_leave (router_peers_t *self);
//  The routers sharing the limits now, at least 1
int  router_peers_count (router_peers_t *self);
//  fn (arg, count) whenever the count Redis gives changes, at once (the
//  local limiter's share must not wait for the next heartbeat)
typedef void (router_peers_fn) (void *arg, int count);
void router_peers_on_change (router_peers_t *self, router_peers_fn *fn, void *arg);

void router_peers_test (bool verbose);

#endif
