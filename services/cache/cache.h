/*  cache: the response cache stage.  The types its modules share.

    cache.c         the bus: LOOKUP from routers (answer, coalesce, or say
                    miss), the answers of cacheable requests from connectors
                    (fan them out, keep them), cancellations, heartbeats
    cache_flight.c  identical requests in flight: one upstream call, its
                    followers, what they were sent and what late joiners get
    cache_entry.c   a kept answer: its codec (what Redis holds) and how it
                    is served again (a body with a new id, DeepSeek-shaped
                    stream chunks)
    cache_l1.c      answers in memory under a byte bound, evicted by LRU or
                    S3-FIFO
    cache_l2.c      answers in Redis with their TTL, sealed with AES-256-GCM
                    when a key ring is configured

    Everything runs on the one reactor thread.                              */
#ifndef CACHE_H
#define CACHE_H

#include "mesh_buf.h"
#include "mesh_config.h"
#include "mesh_id.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mesh_redis_t;

//  cache.c ----------------------------------------------------------------------

typedef struct cache_t cache_t;

//  Binds cache.listen, connects Redis.  NULL with a reason.
cache_t *cache_new (mesh_config_t *config, void *zmq_ctx, mesh_loop_t *loop, mesh_metrics_t *metrics,
                    char *why, size_t why_size);
void     cache_destroy (cache_t **self_p);
bool     cache_ready (cache_t *self, mesh_buf_t *why);
//  SIGTERM: lookups are answered "bypass" at once; calls in flight finish.
//  Returns what is still in flight.
size_t   cache_drain (cache_t *self);
size_t   cache_inflight (cache_t *self);
void     cache_test (bool verbose);

//  cache_entry.c ------------------------------------------------------------------

//  A kept answer: the chat.completion as the upstream (or the assembler)
//  gave it, and what serving it again needs, made once when it is kept
typedef struct cache_entry_t cache_entry_t;
struct cache_entry_t {
    char key [65];              //  hex SHA-256 of scope, model and canonical request
    char *model;                //  the registry model that answered
    int64_t stored_ms;          //  wall clock
    int64_t expires_ms;
    uint64_t prompt_tokens, output_tokens, cached_tokens, reason_tokens;
    char finish [32];           //  the first choice's finish_reason
    char *body;                 //  the chat.completion, compact JSON
    size_t body_len;
    char *tail;                 //  the body's members after id, object, created
    size_t tail_len;            //  (",\"model\":…}")
    char **chunks;              //  a stream's chunks, each after id, object, created
    size_t *chunk_lens;
    size_t chunk_count;
    size_t bytes;               //  memory held: what L1's bound counts
    //  L1's (cache_l1.c)
    cache_entry_t *prev, *next;
    uint8_t freq;
    uint8_t queue;
};

//  Keeps body (a chat.completion) for key, answered by model, for ttl_ms.
//  A stream is cut into text pieces of at most piece_bytes.  NULL with a
//  reason when the body is no complete answer (not a chat.completion, a
//  choice without finish_reason, errors).
cache_entry_t *cache_entry_new (const char *key, const char *model, const char *body, size_t len,
                                int64_t now_ms, int64_t ttl_ms, size_t piece_bytes,
                                char *why, size_t why_size);
//  An answer that is text alone (a FAQ entry's) as model's, no usage
cache_entry_t *cache_entry_text (const char *model, const char *text, size_t piece_bytes);
void cache_entry_destroy (cache_entry_t **self_p);
//  What Redis keeps: ["SE", 1, model, stored_ms, expires_ms, body]
void cache_entry_encode (const cache_entry_t *self, mesh_buf_t *out);
//  From Redis's bytes (outside input: never an assert).  NULL with a reason.
cache_entry_t *cache_entry_decode (const char *key, const char *data, size_t len, size_t piece_bytes,
                                   char *why, size_t why_size);
//  The answer as a non-stream body with this id and created, replacing out
void cache_entry_body (const cache_entry_t *self, const char *id, int64_t created, mesh_buf_t *out);
//  Stream chunk i (an SSE data payload) with this id and created
void cache_entry_chunk (const cache_entry_t *self, size_t i, const char *id, int64_t created,
                        mesh_buf_t *out);
//  A new completion id: "chatcmpl-" and 32 random hex digits
void cache_entry_new_id (char id [48]);
void cache_entry_test (bool verbose);

//  cache_l1.c ---------------------------------------------------------------------

typedef enum { CACHE_L1_LRU, CACHE_L1_S3FIFO } cache_l1_policy_t;
typedef struct cache_l1_t cache_l1_t;

cache_l1_t *cache_l1_new (size_t max_bytes, cache_l1_policy_t policy);
void  cache_l1_destroy (cache_l1_t **self_p);
//  The entry kept for key, or NULL (none, or it expired: then it goes).
//  Counts the access for the policy.  Borrowed until the next put.
cache_entry_t *cache_l1_get (cache_l1_t *self, const char *key, int64_t now_ms);
//  Keeps entry (L1 owns it from now on), replacing one with its key, and
//  evicts what the bound needs.  An entry larger than the bound is dropped.
void  cache_l1_put (cache_l1_t *self, cache_entry_t *entry);
bool  cache_l1_remove (cache_l1_t *self, const char *key);
size_t   cache_l1_bytes (cache_l1_t *self);
size_t   cache_l1_count (cache_l1_t *self);
uint64_t cache_l1_evictions (cache_l1_t *self);
void  cache_l1_test (bool verbose);

//  cache_l2.c ---------------------------------------------------------------------

typedef struct cache_l2_t cache_l2_t;
//  entry: what Redis kept for the key, or NULL (none, unreadable, Redis
//  failed or timed out); the callee owns it
typedef void (cache_l2_fn) (void *arg, cache_entry_t *entry);

//  Connects to redis.url and loads cache.key_file / cache.keys_env.  NULL
//  with a reason (a bad URL or key ring).
cache_l2_t *cache_l2_new (mesh_config_t *config, mesh_loop_t *loop, mesh_metrics_t *metrics,
                          char *why, size_t why_size);
void  cache_l2_destroy (cache_l2_t **self_p);
bool  cache_l2_ready (cache_l2_t *self);
bool  cache_l2_sealed (cache_l2_t *self);
//  Asks Redis for key; fn is called once, later.  -1 (fn never called)
//  when Redis is away.
int   cache_l2_get (cache_l2_t *self, const char *key, cache_l2_fn *fn, void *arg);
//  Keeps entry in Redis until it expires (best effort)
void  cache_l2_put (cache_l2_t *self, const cache_entry_t *entry);
struct mesh_redis_t *cache_l2_redis (cache_l2_t *self);
//  Seals and opens what goes to Redis (exposed for the selftest and fuzzing)
void  cache_l2_test (bool verbose);

#endif
