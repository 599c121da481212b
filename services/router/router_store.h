/*  router_store: what Redis holds of the sessions, sealed, and the events
    routers tell each other about them.

    Redis (ID: the session id; braces keep a session's keys in one slot):
        seekmesh:s:{ID}          hash: tenant, key_id (the owner), created_ms,
                                 updated_ms, turns (answered, ever), history (sealed: the
                                 messages, JSON), takeover (the operator
                                 who has it, absent when none), takeover_ms;
                                 expires sessions.ttl_s after its last turn
        seekmesh:s:{ID}:lock     the request id of the turn in progress; a
                                 lease of sessions.lock_ms, renewed while it
                                 runs
        seekmesh:s:{ID}:say      list: the operator's messages no request
                                 has taken yet (sealed)
        seekmesh:sessions        sorted set: ID by last activity (ms)
    and on the channel seekmesh:sessions, events: "TYPE ID\n" + the sealed
    JSON of the event (user, assistant, operator, takeover, release, say,
    unlock, deleted).  Nothing of a conversation is in Redis in clear.

    Sealing is the audit's (mesh_audit_seal: AES-256-GCM under a key ring,
    the key id in each sealed field), with the field's "id" a 26-character
    digest of the session id, so a ciphertext moved to another session (or
    field) fails to open.  The key ring is sessions.key_file and/or the
    variable sessions.keys_env; with neither, a development key is made in
    <run dir>/sessions/keys (under a lock: the routers of a mesh share it)
    and the log says so.  Every router of a mesh needs the same keys; a
    router without any (the key file cannot be read or made) starts all the
    same, with sessions off: it logs why, and their requests get 503.

    Reactor thread only.                                                     */
#ifndef ROUTER_STORE_H
#define ROUTER_STORE_H

#include "mesh_buf.h"
#include "mesh_config.h"
#include "mesh_loop.h"
#include "mesh_redis.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROUTER_SESSION_ID_MAX 128

typedef struct router_store_t router_store_t;

//  Never NULL: without a key ring (why logged) or Redis (redis NULL) every
//  call fails at once (-1) and sessions answer 503.
router_store_t *router_store_new (mesh_config_t *config, mesh_loop_t *loop, mesh_redis_t *redis,
                                  char *why, size_t why_size);
void router_store_destroy (router_store_t **self_p);
bool router_store_ready (router_store_t *self);
//  A session id: 1-128 letters, digits and . _ : -
bool router_store_valid_id (const char *id);

//  Seals plain as field of session into out.  0, or -1
int  router_store_seal (router_store_t *self, const char *session, const char *field,
                        const char *plain, size_t len, mesh_buf_t *out);
//  Opens it into out (NUL-terminated).  NULL, or why not
const char *router_store_open (router_store_t *self, const char *session, const char *field,
                               const void *blob, size_t size, mesh_buf_t *out);

//  The scripts.  Each is 0 with fn called later with the reply (NULL: it
//  failed), or -1 at once (Redis away).
//  begin: {-1} another owner's; {0} another turn holds it; else {1,
//  history, takeover, turns, says waiting}, the lock now the request's
int  router_store_begin (router_store_t *self, const char *session, const char *request,
                         const char *tenant, const char *key_id, int64_t lock_ms,
                         mesh_redis_fn *fn, void *arg);
//  commit: 1 (stored, unlocked), 0 (the lock was not the request's)
int  router_store_commit (router_store_t *self, const char *session, const char *request,
                          const mesh_buf_t *history, size_t turns, const char *tenant,
                          const char *key_id, int64_t ttl_s, mesh_redis_fn *fn, void *arg);
//  unlock: 1 (unlocked), 0 (not the request's); fn may be NULL
int  router_store_unlock (router_store_t *self, const char *session, const char *request,
                          mesh_redis_fn *fn, void *arg);
//  Renews the leases of these turns (session and request id each)
int  router_store_renew (router_store_t *self, const char **sessions, const char **requests,
                         size_t count, int64_t lock_ms);
//  get: nil (none), or [tenant, key_id, history, takeover, turns,
//  created_ms, updated_ms]
int  router_store_get (router_store_t *self, const char *session, mesh_redis_fn *fn, void *arg);
//  delete: 1 deleted, 0 none, -1 another owner's
int  router_store_delete (router_store_t *self, const char *session, const char *tenant,
                          const char *key_id, mesh_redis_fn *fn, void *arg);
//  takeover / release: nil (no such session), else [tenant, key_id,
//  the operator who had it ("" none)]
int  router_store_takeover (router_store_t *self, const char *session, const char *operator_name,
                            mesh_redis_fn *fn, void *arg);
int  router_store_release (router_store_t *self, const char *session, mesh_redis_fn *fn, void *arg);
//  say: nil (no such session), else [tenant, key_id, operator]; the text
//  (sealed) waits in the session's list, unless no operator has it ("")
int  router_store_say (router_store_t *self, const char *session, const mesh_buf_t *sealed,
                       int64_t ttl_s, mesh_redis_fn *fn, void *arg);
//  take: the waiting messages (sealed), emptied
int  router_store_take_says (router_store_t *self, const char *session, mesh_redis_fn *fn, void *arg);
//  list: [id, updated_ms, tenant, turns, takeover] x n, latest first,
//  those of the last ttl_s (older entries of the index are dropped)
int  router_store_list (router_store_t *self, int64_t ttl_s, int limit, mesh_redis_fn *fn, void *arg);

//  Events: publish (payload sealed; not taken) and listen (payload opened;
//  borrowed; NULL when it could not be opened)
typedef void (router_store_event_fn) (void *arg, const char *type, const char *session, json_t *payload);
void router_store_publish (router_store_t *self, const char *type, const char *session, json_t *payload);
void router_store_listen (router_store_t *self, router_store_event_fn *fn, void *arg);

void router_store_test (bool verbose);

#endif
