/*  router_quota: exact quotas across router replicas, reserved in Redis
    before a request runs and settled after it ends.

    Per key: requests per minute and tokens per minute (GCRA: a full
    minute's worth may come at once, then it refills at the limit's pace,
    so a limit of N admits exactly N in a burst, however many routers ask);
    an optional token budget per hour, day or month, which fails closed.
    Per model: at most max_concurrency requests at once, held as leases that
    expire (a crashed router or connector cannot leak a slot); the router
    renews the leases of what it holds.  Everything one request needs is
    checked and taken in one Lua script, so concurrent bursts cannot slip
    between the checks.  Token reservations are estimates (prompt size and
    max_tokens); settling corrects them with the usage the upstream
    reported.

    When Redis is slow or gone (mesh_redis refuses at once, or a command
    times out within router.redis.command_timeout_ms), rate and concurrency
    limits fall back to a local limiter with limit / routers, the gauge
    seekmesh_ratelimit_degraded says so, and keys with a budget are refused
    (fail closed) until Redis answers again.  Reactor thread only.          */
#ifndef ROUTER_QUOTA_H
#define ROUTER_QUOTA_H

#include "mesh_config.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct router_quota_t router_quota_t;

//  What one request asks for and what it holds
typedef struct {
    char key_id [128];
    char model [256];
    int64_t rpm;                //  0: no limit
    int64_t tpm;
    int64_t concurrency;        //  the model's max_concurrency
    int64_t budget;             //  tokens per budget period; 0: none
    int64_t budget_period_s;    //  3600, 86400 or 2678400 (a month)
    uint32_t estimate;          //  tokens reserved
    uint32_t prompt_estimate;   //  of which the prompt: settled when the
                                //  upstream reports no usage
    bool held;                  //  a reservation was taken (settle it)
    bool local;                 //  ... by the local limiter, Redis being away
    bool leased;                //  ... from quota leased ahead (router_lease)
} router_hold_t;

typedef struct {
    bool allowed;
    int status;                 //  429 (rate, concurrency), 402 (budget), 503
    const char *type;
    const char *code;
    int retry_after_ms;
    char message [256];
    char limits [128];          //  "rpm,remaining,reset_ms,tpm,remaining,reset_ms"
} router_decision_t;

typedef void (router_decision_fn) (void *arg, const router_decision_t *decision);

//  routers: how many router replicas share the limits (the local limiter
//  grants limit / routers).  NULL with a reason on a bad Redis URL.
router_quota_t *router_quota_new (mesh_config_t *config, mesh_loop_t *loop, mesh_metrics_t *metrics,
                                  int routers, char *why, size_t why_size);
void  router_quota_destroy (router_quota_t **self_p);

//  Decides; fn is called exactly once, possibly before this returns (no
//  limit to check, or Redis away).  The hold must stay put until then.
void  router_quota_reserve (router_quota_t *self, router_hold_t *hold, const char *request_id,
                            router_decision_fn *fn, void *arg);
//  The request ended having used `tokens` (0 when it failed): releases its
//  concurrency lease and corrects the token reservations.
void  router_quota_settle (router_quota_t *self, router_hold_t *hold, const char *request_id,
                           uint64_t tokens);
//  The tokens to settle a finished request at, from the usage its DONE
//  reports.  An upstream that reported none (a client gone mid-stream, an
//  upstream that reports usage only when asked) is charged the prompt's
//  estimate plus the output the connector counted: never 0, so leaving
//  early does not dodge a token limit.
uint64_t router_quota_used (const router_hold_t *hold, uint64_t prompt_tokens, uint64_t output_tokens);
//  Extends the leases of requests in flight (call every lease_ms / 3 with
//  the ids held on each model).
void  router_quota_renew (router_quota_t *self, const char *model, const char **ids, size_t count);
int64_t router_quota_lease_ms (router_quota_t *self);
//  Follows Redis's state without traffic (call every heartbeat): the
//  degraded gauge says whether limits are exact right now.
void  router_quota_tick (router_quota_t *self);
bool  router_quota_degraded (router_quota_t *self);
//  How many routers share the limits now (router_peers)
void  router_quota_routers (router_quota_t *self, int routers);
//  The Redis client, shared with the live registry; NULL if there is none.
struct mesh_redis_t *router_quota_redis (router_quota_t *self);
//  Gives back the quota leased ahead (a draining router).
void  router_quota_release (router_quota_t *self);
//  The Redis keys one request touches.
void  router_quota_names (const router_hold_t *hold, char rpm [300], char tpm [300],
                          char leases [300], char budget [320]);

void  router_quota_test (bool verbose);

#endif
