/*  router_lease: quota taken from Redis ahead of the requests that use it,
    so that a busy key is admitted without a Redis round trip per request.

    For each key with limits, the router leases a slice of the key's
    allowance (requests and tokens per minute, budget tokens) sized from
    its own recent traffic of that key (router.quota.lease_slice_ms of it),
    and for each model with max_concurrency a block of slots.  A request is
    admitted locally while what the router holds covers it; the lease is
    topped up before it runs out and what goes unused is given back when
    the traffic slows.  Everything leased was taken from Redis first (the
    same GCRA, budget counter and lease set the per-request script uses),
    so N routers still never admit more than the limit.

    A lease never takes more than router.quota.lease_max_percent of a rate
    or budget (a block of slots: the limit less its reserve, shared by the
    routers), nor fewer than LEASE_MIN_REQUESTS requests (or slots): keys
    and models with small limits, quiet keys, and keys whose allowance is
    nearly spent (less than router.quota.lease_reserve_percent of it left in
    Redis) are checked request by request, exactly as before; a router
    refused more slots shrinks its block to the slots in use.

    A concurrency block is one entry per router: its size in the model's
    block table (seekmesh:cb:{model}), its expiry in seekmesh:cx:{model},
    counted by the per-request script with the per-request leases and
    renewed with them, so a router that dies leaks no slot beyond
    router.quota.lease_ms; taking, resizing and renewing a block costs the
    same whatever its size.  Key leases of a router that dies
    are lost: its unused requests and tokens come back as the minute
    refills them, unused budget tokens count as spent for the period.

    What is held is used through a Redis blip (a command that timed out)
    and for a third of router.quota.lease_ms into an outage (no block has
    expired by then); after that the local limiter decides, and what is
    held is given back once Redis answers.  Reactor thread only.            */
#ifndef ROUTER_LEASE_H
#define ROUTER_LEASE_H

#include "router_quota.h"

#include "mesh_loop.h"
#include "mesh_metrics.h"

#include <stdbool.h>
#include <stdint.h>

#define LEASE_MIN_REQUESTS 4

typedef struct router_lease_t router_lease_t;

typedef struct {
    int64_t slice_ms;           //  traffic a lease covers; 0: no leases
    int64_t max_percent;        //  most of a limit one router may lease
    int64_t reserve_percent;    //  below this share left: request by request
    int64_t lease_ms;           //  concurrency leases expire after this
    int routers;                //  routers sharing the limits
    const char *name;           //  the router's name, unique in the mesh
} router_lease_settings_t;

struct mesh_redis_t;

//  redis may be NULL (no leases then).
router_lease_t *router_lease_new (mesh_loop_t *loop, struct mesh_redis_t *redis,
                                  const router_lease_settings_t *settings, mesh_metrics_t *metrics);
//  Call after the Redis client is destroyed (its callbacks touch leases).
void  router_lease_destroy (router_lease_t **self_p);

//  Admits hold from what this router holds: true with the decision filled
//  in and hold->held, hold->leased set; false when the request must be
//  decided by Redis (it is counted towards the key's and model's rate, so
//  a lease is asked for when the traffic warrants one).
bool  router_lease_admit (router_lease_t *self, router_hold_t *hold, router_decision_t *decision);
//  A request admitted from a lease ended having used tokens.
void  router_lease_settle (router_lease_t *self, router_hold_t *hold, uint64_t tokens);
//  Extends the concurrency blocks' leases (with the per-request renewal).
void  router_lease_renew (router_lease_t *self);
//  Gives back everything held (a draining router).
void  router_lease_release (router_lease_t *self);

void  router_lease_test (bool verbose);

#endif
