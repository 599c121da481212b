/*  router_keys: client API keys.

    Keys come from the registry's keys[]: { "id", "tenant", "key" (local
    config only) or "key_sha256" (hex), "models": [allowed names],
    "rpm", "tpm" (requests and tokens per minute; 0 or absent: no limit),
    "budget" (tokens per budget_period: "hour", "day" or "month") }.  Only
    SHA-256 digests are kept; the ingress sends the digest of the key it was
    given, never the key.  Lookup is a binary search on digests followed by
    a constant-time comparison.  Read-only after load; reactor thread.      */
#ifndef ROUTER_KEYS_H
#define ROUTER_KEYS_H

#include "mesh_config.h"
#include "mesh_models.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    unsigned char digest [32];
    const char *id;
    const char *tenant;
    bool *allowed;              //  per model index; NULL: every model
    int64_t rpm;                //  0: no limit
    int64_t tpm;
    int64_t budget;             //  tokens per period; 0: none
    int64_t budget_period_s;
} router_key_t;

//  A budget's period when a key names none
#define ROUTER_KEYS_DEFAULT_PERIOD "day"

//  "hour", "day", "month" as seconds (a month is counted per calendar
//  month; its length here only marks it); 0 for anything else.
int64_t router_keys_period (const char *name);
//  The name of a period in seconds: "hour", "day" or "month".
const char *router_keys_period_name (int64_t period_s);

typedef struct router_keys_t router_keys_t;

//  Errors are recorded on config.
router_keys_t *router_keys_load (mesh_config_t *config, mesh_models_t *models);
void           router_keys_destroy (router_keys_t **self_p);
size_t         router_keys_count (router_keys_t *self);
//  The index-th key, in digest order; NULL past the end
const router_key_t *router_keys_at (router_keys_t *self, size_t index);
//  The key whose digest this is, or NULL.  digest_size must be 32.
const router_key_t *router_keys_find (router_keys_t *self, const void *digest, size_t digest_size);
bool           router_key_allows (const router_key_t *key, const mesh_model_t *model);

void           router_keys_test (bool verbose);

#endif
