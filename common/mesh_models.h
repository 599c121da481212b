/*  mesh_models: the model registry, read from the config's models[] and
    aliases{}.  The router uses names, aliases, fallbacks and limits; the
    connector uses endpoints, credentials and stream settings.

    A model entry (see DESIGN.md):
      { "name": "deepseek-chat", "type": "llm",
        "endpoint": "https://api.deepseek.com/v1/chat/completions",
        "endpoints": [ { "url": …, "region": "eu", "priority": 0,
                         "weight": 1 }, … ],         (instead of endpoint)
        "variants": [ { "model": "deepseek-chat", "weight": 90 }, … ],
                                                     (an A/B model: no endpoint)
        "upstream_model": "deepseek-chat",            (default: name)
        "auth": { "type": "api_key", "key_name": "Authorization",
                  "key_env": "DEEPSEEK_API_KEY" },
        "stream_config": { "chunk_size": 1024, "delimiter": "\n\n" },
        "stream_only": false,                        (default: true for ws)
        "fallback": "qwen-7b", "max_concurrency": 64,
        "aliases": ["deepseek-v4-flash"], "ca_file": "",
        "connect_timeout_ms": …, "first_byte_timeout_ms": …,
        "idle_timeout_ms": …,                        (default: connector.*)
        "cache": { "ttl_s": 300, "max_temperature": 0.5,
                   "shared": false } }               (the response cache: off
                                                     when absent)
    Errors are recorded on the config (mesh_config_failed names the field).
    Read-only once loaded; any thread may read it.  A registry built from a
    JSON document (the live registry) owns that document; one loaded from a
    config borrows it.  Holders that outlive a reload take a reference.     */
#ifndef MESH_MODELS_H
#define MESH_MODELS_H

#include "mesh_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    bool tls;
    bool websocket;
    char host [256];
    int port;
    char path [512];            //  path and query
    char host_header [272];     //  host, with :port when not the default
} mesh_url_t;

//  Parses http://, https://, ws:// and wss:// URLs.  -1 with a reason.
int mesh_url_parse (const char *text, mesh_url_t *url, char *why, size_t why_size);

//  One place a model is served from
typedef struct {
    const char *text;           //  the URL as configured
    mesh_url_t url;
    const char *region;         //  "" when not said
    int64_t priority;           //  lower is tried first
    int64_t weight;             //  share among endpoints of one priority
} mesh_endpoint_t;

//  One side of an A/B split
typedef struct {
    const char *model;
    int64_t weight;
} mesh_variant_t;

typedef struct {
    size_t index;               //  in the registry
    size_t config_index;        //  in the config's models[]
    const char *name;
    const char *type;
    const char *endpoint;       //  the first endpoint's URL (or NULL)
    mesh_url_t url;             //  the first endpoint's
    mesh_endpoint_t *endpoints;
    size_t endpoint_count;
    mesh_variant_t *variants;   //  an A/B model: requests go to these
    size_t variant_count;
    const char *upstream_model;
    const char *auth_header;    //  header name, or NULL for no credentials
    const char *auth_env;       //  environment variable holding the key
    const char *fallback;       //  model name, or NULL
    const char *ca_file;        //  NULL: the system CA store
    int64_t max_concurrency;    //  0: no limit
    int64_t chunk_size;
    bool stream_only;
    int64_t connect_timeout_ms;
    int64_t first_byte_timeout_ms;
    int64_t idle_timeout_ms;
    //  The response cache: answers kept cache_ttl_s (0: not cached unless a
    //  request asks), for requests at most this temperature (< 0: any),
    //  shared by every tenant or kept per tenant
    int64_t cache_ttl_s;
    double cache_max_temperature;
    bool cache_shared;
} mesh_model_t;

typedef struct mesh_models_t mesh_models_t;

//  Loads the registry; on invalid entries records the error on config and
//  returns what it could read (callers check mesh_config_failed).
mesh_models_t *mesh_models_load (mesh_config_t *config);
//  Builds a registry from a JSON document {"models": [...], "aliases":
//  {...}, "connector": {...}} that it keeps; NULL with the first error.
mesh_models_t *mesh_models_from_json (const char *json, size_t len, const char *name,
                                      char *why, size_t why_size);
//  References: destroy drops one; the last frees.
mesh_models_t *mesh_models_ref (mesh_models_t *self);
void           mesh_models_destroy (mesh_models_t **self_p);
size_t         mesh_models_count (mesh_models_t *self);
mesh_model_t  *mesh_models_at (mesh_models_t *self, size_t index);
//  Finds a model by name or alias; NULL if unknown.
mesh_model_t  *mesh_models_find (mesh_models_t *self, const char *name);
//  The aliases, one by one: the alias's name and the model it stands for.
size_t         mesh_models_alias_count (mesh_models_t *self);
mesh_model_t  *mesh_models_alias_at (mesh_models_t *self, size_t index, const char **alias);

void           mesh_models_test (bool verbose);

#endif
