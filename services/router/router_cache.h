/*  router_cache: the router's side of the cache stage.

    Which requests ask (router_cache_plan): chat requests whose model has a
    cache ({"ttl_s", "max_temperature", "shared"} in the registry) or that
    say x-seekmesh-cache: ttl=SECONDS, unless they say no-store; and
    requests of a tenant with FAQ entries for the model.  Nothing else
    costs a thing: no message, no timer.

    Asking (router_cache_ask), after the quota admitted the request: a
    LOOKUP on a DEALER to the cache (ZMQ_IMMEDIATE: a cache that is away
    refuses at once, and the request goes upstream), bounded by
    router.cache.timeout_ms.  The VERDICT says what happened: hit or faq
    (the cache answered the client; the request ends here), coalesced (it
    follows another request's call; the cache says DONE when it is
    through), miss (it goes upstream and its connector copies the answer
    to the cache), bypass (it goes upstream).  No verdict in time: bypass.
    Before giving up on a lookup, what the cache has already sent is read.

    The cache's health: its connection (a socket monitor), heartbeats both
    ways every router.heartbeat_ms (a cache silent for
    router.heartbeat_liveness beats is given a fresh socket), and lookups
    left unanswered router.cache.failures times in a row, after which it
    is not asked until it answers a heartbeat.  seekmesh_cache_up says
    whether it is asked.  When it is lost, every request following a call
    gets LOST (its ingress retries it if the client has seen nothing).
    Reactor thread only.                                                    */
#ifndef ROUTER_CACHE_H
#define ROUTER_CACHE_H

#include "mesh_config.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"
#include "mesh_models.h"
#include "mesh_msg.h"

#include <stdbool.h>
#include <stdint.h>

enum {
    ROUTER_CACHE_NONE,          //  not asked: goes upstream as it is
    ROUTER_CACHE_PLANNED,       //  to ask once the quota admits it
    ROUTER_CACHE_ASKED,         //  waiting for the verdict
    ROUTER_CACHE_LEADER,        //  upstream, its answer copied to the cache
    ROUTER_CACHE_FOLLOWER,      //  answered by another request's call
    ROUTER_CACHE_ANSWERED       //  answered by the cache (hit, faq)
};

//  A request's dealings with the cache, inside the router's request
typedef struct router_cache_req_t router_cache_req_t;
struct router_cache_req_t {
    int state;
    char verdict [16];          //  what x-seekmesh-cache says: "bypass" until told otherwise
    uint32_t flags;             //  MESH_LOOKUP_*
    uint32_t ttl_s;
    uint32_t max_temp_milli;
    int64_t asked_us;
    bool deferred;              //  the bound came with the cache's socket unread
    mesh_timer_t timer;
    struct router_cache_t *link;        //  the link that asked
    void *owner;                //  the router's request
    router_cache_req_t *prev, *next;    //  among followers
};

//  What the router does when the cache has spoken (owner: its request)
typedef struct {
    void *arg;
    //  The request of id and attempt, or NULL (ended, or another attempt)
    router_cache_req_t *(*find) (void *arg, const char *id, uint32_t attempt);
    //  No answer from the cache: go upstream (req->verdict: miss or bypass)
    void (*upstream) (void *owner);
    //  The cache answered the client (hit, faq); tokens: the answer's usage
    void (*answered) (void *owner, uint64_t tokens);
    //  It follows another call: settle the quota now, keep it until done
    void (*following) (void *owner, uint64_t tokens);
    //  A follower is through; tokens: the answer's usage
    void (*done) (void *owner, uint64_t tokens);
    //  Nobody reads a leader's call any more: cancel it upstream
    void (*cancel) (void *owner, const char *outcome);
    //  The cache is gone with a follower: LOST to its ingress
    void (*lost) (void *owner);
} router_cache_hooks_t;

typedef struct router_cache_t router_cache_t;

//  Connects to router.caches (none: the cache is never asked).  NULL with
//  a reason.
router_cache_t *router_cache_new (mesh_config_t *config, void *zmq_ctx, mesh_loop_t *loop,
                                  mesh_metrics_t *metrics, const char *name,
                                  const router_cache_hooks_t *hooks, char *why, size_t why_size);
void  router_cache_destroy (router_cache_t **self_p);
//  Whether the cache is asked now
bool  router_cache_up (router_cache_t *self);
bool  router_cache_count_tokens (router_cache_t *self);

//  Decides what req (a chat request on model) asks of the cache:
//  cache_control is its x-seekmesh-cache header, faq whether its tenant has
//  FAQ entries for the model.  Sets req->state PLANNED or NONE.
void  router_cache_plan (router_cache_t *self, router_cache_req_t *req, void *owner,
                         const mesh_model_t *model, const char *cache_control, bool faq);
//  Asks: lookup has the request's fields (id, attempt, token, reply_to,
//  model, stream, body, tenant, key_id, limits); the rest is added here.
//  0: a verdict (or the bound) comes later; -1: the cache is away, go
//  upstream now (req->verdict "bypass").
int   router_cache_ask (router_cache_t *self, router_cache_req_t *req, mesh_msg_t *lookup);
//  The request ends: its timer and place among followers go
void  router_cache_forget (router_cache_t *self, router_cache_req_t *req);
//  Tells the cache about a leader or a follower: CANCEL (its client left),
//  ERROR or LOST (the router failed it, or its connector is gone).
//  False when the cache could not be told.
bool  router_cache_tell (router_cache_t *self, const mesh_msg_t *msg);
//  Every heartbeat: HEARTBEAT to the cache, its liveness
void  router_cache_tick (router_cache_t *self);

//  Parses an x-seekmesh-cache request header: "no-store", "no-cache",
//  "ttl=SECONDS", comma-separated.  -1 when it says nothing it knows.
int   router_cache_parse_control (const char *value, bool *no_store, bool *no_cache, int64_t *ttl_s);

void  router_cache_test (bool verbose);

#endif
