/*  cache_flight: identical cacheable requests in flight share one upstream
    call.

    A flight is one cache key being answered.  It begins with a lookup in
    Redis (the requests that arrive meanwhile wait with the first), then,
    unless Redis had the answer, one of them leads: the router dispatches it
    upstream and its connector copies the call's events (HEAD, CHUNK, END,
    ERROR) to the cache, besides sending them to the leader's ingress.  The
    others follow: each gets what the call sent so far, then the live
    events, under its own token, limits and audit fields, with
    x-seekmesh-cache "coalesced" and the leader's request id.  At the end
    the answer is kept (L1 and Redis) and every follower's router hears
    DONE.

    Bounds: at most max_followers per call; what late joiners are replayed
    is kept up to max_flight_bytes (past it the call takes no more
    followers and new identical requests start their own).  Who leaves:
    a follower's leaving (CANCEL) never stops the call; the leader's client
    leaving (CANCEL from its router, or from its connector when its ingress
    is gone) stops it only when no follower reads it, by a CANCEL to the
    leader's router.  Failures: the leader's error goes to every follower;
    a lost connector makes the followers wait retry_grace_ms for the
    leader's retry (a LOOKUP with the same id and the next attempt), and
    a follower that has seen nothing is sent LOST so its ingress retries it
    (nothing is ever half-spliced); a call the cache hears nothing of for
    idle_ms is given up with an error.  Reactor thread only.               */
#ifndef CACHE_FLIGHT_H
#define CACHE_FLIGHT_H

#include "cache.h"

#include "mesh_msg.h"

//  A request the cache answers, as its LOOKUP described it
typedef struct {
    char id [MESH_ID_LEN + 1];
    uint32_t attempt;
    uint64_t token;
    char reply_to [256];
    bool stream;
    char model [256];           //  the registry model it asked for
    char tenant [128];
    char key_id [65];
    char limits [128];
    char router [256];          //  the identity of the router that asked
    size_t router_size;
    int64_t deadline_ms;        //  wall clock: past it, the router went upstream
    int64_t received_us;        //  for the lookup latency
} cache_client_t;

typedef struct {
    size_t max_followers;
    size_t max_flight_bytes;
    size_t max_entry_bytes;
    int64_t idle_ms;
    int64_t retry_grace_ms;
    int64_t margin_ms;
} cache_flight_settings_t;

typedef struct cache_flights_t cache_flights_t;
typedef struct cache_flight_t cache_flight_t;

cache_flights_t *cache_flights_new (cache_t *cache, mesh_loop_t *loop, mesh_metrics_t *metrics,
                                    const cache_flight_settings_t *settings);
void    cache_flights_destroy (cache_flights_t **self_p);
//  Flights in progress, and their followers (for draining, and gauges)
size_t  cache_flights_count (cache_flights_t *self);

//  The flight of key that a new identical request may join or wait with, or NULL
cache_flight_t *cache_flights_joinable (cache_flights_t *self, const char *key);
//  The flight led by request id, or NULL
cache_flight_t *cache_flights_led_by (cache_flights_t *self, const char *id);

//  A flight whose answer is looked for in Redis first; client waits with
//  it.  Its verdict comes from cache_flights_l2_answer (or the wait's
//  bound).  l2_serial identifies this lookup.
cache_flight_t *cache_flights_look (cache_flights_t *self, const char *key, const cache_client_t *client,
                                    int64_t ttl_s, uint64_t *l2_serial);
//  A flight that goes upstream at once, led by client (verdict: miss).
//  joinable: new identical requests may follow it.
cache_flight_t *cache_flights_lead (cache_flights_t *self, const char *key, const cache_client_t *client,
                                    int64_t ttl_s, bool joinable);
//  client waits with a flight still in Redis, or follows one upstream
//  (verdict coalesced, catch-up sent).  -1 when the flight cannot take it
//  (then it goes upstream on its own).
int     cache_flight_add (cache_flight_t *flight, const cache_client_t *client);
//  The leader is tried again (a new attempt, perhaps through another router)
void    cache_flight_retry (cache_flight_t *flight, const cache_client_t *client);
//  Redis answered the lookup numbered serial of key: entry (owned, may be NULL)
void    cache_flights_l2_answer (cache_flights_t *self, const char *key, uint64_t serial,
                                 cache_entry_t *entry);

//  An event of a leader's call: HEAD, CHUNK, END, ERROR (from its connector,
//  or ERROR from its router), LOST (from its router)
void    cache_flights_event (cache_flights_t *self, const mesh_msg_t *msg);
//  A client left: a follower, a waiter or a leader (from its router, or its
//  connector when its ingress is gone; outcome "cache_late" from a router
//  that went upstream before the verdict came)
void    cache_flights_cancel (cache_flights_t *self, const mesh_msg_t *msg);
//  The ingress behind reply_to is gone: its followers are let go
void    cache_flights_ingress_lost (cache_flights_t *self, const char *reply_to);

void    cache_flight_test (bool verbose);

//  What cache.c does for the flights --------------------------------------------

//  Sends msg to the client's ingress.  -1 if it cannot take it.
int     cache_send_ingress (cache_t *self, const cache_client_t *client, mesh_msg_t *msg);
//  Sends msg to a router by its identity
void    cache_send_router (cache_t *self, const char *identity, size_t size, const mesh_msg_t *msg);
//  Tells client's router what the cache did with its lookup
void    cache_verdict (cache_t *self, const cache_client_t *client, const char *verdict,
                       uint64_t prompt_tokens, uint64_t output_tokens);
//  Answers client with entry (a stream: HEAD, chunks, END; else END with
//  the body), saying verdict and ref in x-seekmesh-cache and the audit
void    cache_serve (cache_t *self, const cache_client_t *client, const cache_entry_t *entry,
                     const char *verdict, const char *ref);
//  Keeps an upstream's answer (L1 and Redis)
void    cache_keep (cache_t *self, const char *key, const char *model, const char *body, size_t len,
                    int64_t ttl_s);
//  Keeps an entry read from Redis in L1 (takes it)
void    cache_keep_l1 (cache_t *self, cache_entry_t *entry);
//  True while the client's router still waits for the verdict
bool    cache_in_time (cache_t *self, const cache_client_t *client);

#endif
