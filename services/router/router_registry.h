/*  router_registry: the live model registry and client keys.

    The registry is the config file's models[], aliases{} and keys[],
    changed by operators through the admin API without a restart.  Changes
    are kept in Redis, so every router sees the same registry and a restart
    keeps them:
        seekmesh:registry:models   hash: model name -> entry JSON, or
                                   "null" to remove a model of the file
        seekmesh:registry:keys     hash: key id -> entry JSON (key_sha256,
                                   never the key), or "null"
    Every write also PUBLISHes on seekmesh:registry; each router then reads
    both hashes again (and after every reconnect to Redis, and after a read
    that failed, in case it missed a message).  A document that does not validate is never
    installed: the previous registry stays, and the error is logged and
    counted.

    Each version of the registry is a generation: the merged document and
    the models and keys read from it.  A request keeps a reference to the
    generation it was admitted under, so a change never pulls a model out
    from under a request in flight.  Connectors get the models part as JSON
    (REGISTRY), whenever it changes and when they join.

    Admin API, on the router's admin port, with `Authorization: Bearer`
    the value of the env var router.admin_token_env (default
    SEEKMESH_ADMIN_TOKEN; unset: the API is off, 403):
        GET    /admin/models            list (with "source": config/admin)
        GET    /admin/models/NAME
        POST   /admin/models            add (409 if it exists)
        PUT    /admin/models/NAME       add or replace
        PATCH  /admin/models/NAME       change fields (JSON merge patch)
        DELETE /admin/models/NAME
        GET    /admin/keys              list (fingerprints, never keys)
        POST   /admin/keys              add; makes the key when none is
                                        given and shows it this once
        PATCH  /admin/keys/ID           change limits, models, tenant, key
        DELETE /admin/keys/ID
        POST   /admin/models/NAME/reset drop the run-time change of NAME: the
        POST   /admin/keys/ID/reset     file's entry is back (an entry only
                                        made at run time is removed)
        POST   /admin/registry/reset    drop every run-time change
        POST   /admin/reload            re-read the config file (= SIGHUP)
    Errors use the OpenAI envelope; writes answer 503 while Redis is away.
    Reactor thread only.                                                     */
#ifndef ROUTER_REGISTRY_H
#define ROUTER_REGISTRY_H

#include "mesh_admin.h"
#include "mesh_config.h"
#include "mesh_metrics.h"
#include "mesh_models.h"
#include "router_keys.h"

#include <stdbool.h>
#include <stdint.h>

struct mesh_redis_t;

typedef struct {
    int refs;
    mesh_config_t *doc;         //  the merged document; owns the strings
    mesh_models_t *models;
    router_keys_t *keys;
    char *connector_json;       //  {"models", "aliases", "connector"}
    size_t connector_json_len;
    uint64_t version;           //  of connector_json: connectors skip repeats
    char digest [17];           //  of the whole document, in hex
} router_gen_t;

router_gen_t *router_gen_ref (router_gen_t *gen);
void  router_gen_unref (router_gen_t **gen_p);

typedef struct router_registry_t router_registry_t;
//  A new generation is live (after an admin change, a message from
//  another router, or a reload)
typedef void (router_registry_fn) (void *arg, router_gen_t *gen);

//  redis may be NULL (the file's registry only; writes answer 503).
//  NULL with the config's first error in why.
router_registry_t *router_registry_new (mesh_config_t *config, struct mesh_redis_t *redis,
                                        mesh_metrics_t *metrics, router_registry_fn *fn,
                                        void *arg, char *why, size_t why_size);
void  router_registry_destroy (router_registry_t **self_p);
//  The live generation (borrowed; take a reference to keep it)
router_gen_t *router_registry_current (router_registry_t *self);
//  False while Redis is up but its changes have not been read yet
bool  router_registry_ready (router_registry_t *self, mesh_buf_t *why);
//  Re-reads the config file's models, aliases and keys.  -1 with a reason,
//  keeping the registry as it was.
int   router_registry_reload (router_registry_t *self, char *why, size_t why_size);
//  Re-reads the overlay if a read failed or the Redis connection came back
//  (call every heartbeat).
void  router_registry_tick (router_registry_t *self);
//  Serves /admin/ on admin
void  router_registry_routes (router_registry_t *self, mesh_admin_t *admin);
//  The admin API's token check, for other /admin/ routes: true, or false
//  with the 401/403 answer in response
bool  router_registry_authorized (router_registry_t *self, const mesh_admin_request_t *request,
                                  mesh_admin_response_t *response);

void  router_registry_test (bool verbose);

#endif
