/*  mesh_models: model registry with aliases.                                */
#include "mesh_models.h"
#include "mesh_settings.h"
#include "mesh_util.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *alias;
    size_t model;
} alias_t;

struct mesh_models_t {
    int refs;
    mesh_config_t *owned;       //  the document it was built from, if it owns it
    mesh_model_t *models;
    size_t count;
    size_t slots;               //  allocated; a rejected entry may leave arrays in one
    alias_t *aliases;
    size_t alias_count;
};

int
mesh_url_parse (const char *text, mesh_url_t *url, char *why, size_t why_size)
{
    memset (url, 0, sizeof *url);
    const char *rest;
    int default_port;
    if (strncmp (text, "https://", 8) == 0) {
        url->tls = true, default_port = 443, rest = text + 8;
    }
    else
    if (strncmp (text, "http://", 7) == 0) {
        default_port = 80, rest = text + 7;
    }
    else
    if (strncmp (text, "wss://", 6) == 0) {
        url->tls = url->websocket = true, default_port = 443, rest = text + 6;
    }
    else
    if (strncmp (text, "ws://", 5) == 0) {
        url->websocket = true, default_port = 80, rest = text + 5;
    }
    else {
        snprintf (why, why_size, "\"%s\": the scheme must be http, https, ws or wss", text);
        return -1;
    }
    const char *slash = strchr (rest, '/');
    size_t authority_len = slash ? (size_t) (slash - rest) : strlen (rest);
    if (authority_len == 0 || memchr (rest, '@', authority_len)) {
        snprintf (why, why_size, "\"%s\": expected scheme://host[:port]/path", text);
        return -1;
    }
    const char *host = rest, *port = NULL;
    size_t host_len = authority_len;
    if (*rest == '[') {
        const char *close = memchr (rest, ']', authority_len);
        if (!close) {
            snprintf (why, why_size, "\"%s\": unterminated IPv6 address", text);
            return -1;
        }
        host = rest + 1;
        host_len = (size_t) (close - rest - 1);
        if (close + 1 < rest + authority_len) {
            if (close [1] != ':') {
                snprintf (why, why_size, "\"%s\": bad port", text);
                return -1;
            }
            port = close + 2;
        }
    }
    else {
        const char *colon = memchr (rest, ':', authority_len);
        if (colon) {
            host_len = (size_t) (colon - rest);
            port = colon + 1;
        }
    }
    if (host_len == 0 || host_len >= sizeof url->host) {
        snprintf (why, why_size, "\"%s\": bad host", text);
        return -1;
    }
    //  The host goes into a Host: line: names, IPv4 and (bracketed) IPv6 only
    for (size_t i = 0; i < host_len; i++)
        if (!isalnum ((unsigned char) host [i]) && !strchr ("-._:", host [i])) {
            snprintf (why, why_size, "\"%s\": the host has a character a host name cannot have", text);
            return -1;
        }
    memcpy (url->host, host, host_len);
    url->port = default_port;
    if (port) {
        size_t port_len = (size_t) (rest + authority_len - port);
        int value = 0;
        if (port_len == 0 || port_len > 5) {
            snprintf (why, why_size, "\"%s\": bad port", text);
            return -1;
        }
        for (size_t i = 0; i < port_len; i++) {
            if (!isdigit ((unsigned char) port [i])) {
                snprintf (why, why_size, "\"%s\": bad port", text);
                return -1;
            }
            value = value * 10 + (port [i] - '0');
        }
        if (value == 0 || value > 65535) {
            snprintf (why, why_size, "\"%s\": bad port", text);
            return -1;
        }
        url->port = value;
    }
    const char *path = slash ? slash : "/";
    if (strlen (path) >= sizeof url->path) {
        snprintf (why, why_size, "\"%s\": path too long", text);
        return -1;
    }
    for (const char *p = path; *p; p++)
        if ((unsigned char) *p <= 0x20 || *p == 0x7f) {
            snprintf (why, why_size, "\"%s\": the path has a space or control character", text);
            return -1;
        }
    strcpy (url->path, path);
    bool ipv6 = strchr (url->host, ':') != NULL;
    if (url->port == default_port)
        snprintf (url->host_header, sizeof url->host_header, ipv6 ? "[%s]" : "%s", url->host);
    else
        snprintf (url->host_header, sizeof url->host_header, ipv6 ? "[%s]:%d" : "%s:%d",
                  url->host, url->port);
    return 0;
}

static void
s_add_alias (mesh_models_t *self, mesh_config_t *config, const char *path, const char *alias,
             size_t model)
{
    if (mesh_models_find (self, alias)) {
        mesh_config_invalid (config, path, "\"%s\" names a model already", alias);
        return;
    }
    self->aliases = realloc (self->aliases, (self->alias_count + 1) * sizeof *self->aliases);
    assert (self->aliases);
    self->aliases [self->alias_count++] = (alias_t) { alias, model };
}

//  "endpoint": "url" or "endpoints": [{url, region, priority, weight}]
static int
s_endpoints (mesh_config_t *config, const char *base, mesh_model_t *model)
{
    char path [128], why [256];
    size_t count = mesh_config_array_size (config, (snprintf (path, sizeof path, "%s.endpoints", base), path));
    const char *single = mesh_config_str (config, (snprintf (path, sizeof path, "%s.endpoint", base), path), NULL);
    if (model->variant_count) {
        if (single || count) {
            mesh_config_invalid (config, path, "model \"%s\" has variants: it has no endpoint of its own",
                                 model->name);
            return -1;
        }
        return 0;
    }
    if ((single != NULL) == (count > 0)) {
        mesh_config_invalid (config, path, "model \"%s\" needs one endpoint, or a list of endpoints",
                             model->name);
        return -1;
    }
    model->endpoint_count = single ? 1 : count;
    model->endpoints = calloc (model->endpoint_count, sizeof *model->endpoints);
    assert (model->endpoints);
    for (size_t k = 0; k < model->endpoint_count; k++) {
        mesh_endpoint_t *endpoint = &model->endpoints [k];
        char at [128];
        if (single) {
            endpoint->text = single;
            snprintf (at, sizeof at, "%s.endpoint", base);
        }
        else {
            snprintf (at, sizeof at, "%s.endpoints.%zu.url", base, k);
            endpoint->text = mesh_config_str (config, at, NULL);
        }
        static const char *const fields [] = { "url", "region", "priority", "weight", NULL };
        if (!single) {
            snprintf (path, sizeof path, "%s.endpoints.%zu", base, k);
            if (mesh_config_only (config, path, fields) < 0)
                return -1;
        }
        if (!endpoint->text || mesh_url_parse (endpoint->text, &endpoint->url, why, sizeof why) < 0) {
            mesh_config_invalid (config, at, "%s", endpoint->text ? why : "every endpoint needs a url");
            return -1;
        }
        snprintf (at, sizeof at, "%s.endpoints.%zu.region", base, k);
        endpoint->region = single ? "" : mesh_config_str (config, at, "");
        snprintf (at, sizeof at, "%s.endpoints.%zu.priority", base, k);
        endpoint->priority = single ? 0 : mesh_config_int (config, at, 0);
        snprintf (at, sizeof at, "%s.endpoints.%zu.weight", base, k);
        endpoint->weight = single ? 1 : mesh_config_int (config, at, 1);
        if (endpoint->weight < 1 || endpoint->priority < 0) {
            mesh_config_invalid (config, at, "weights are 1 or more, priorities 0 or more");
            return -1;
        }
    }
    model->endpoint = model->endpoints [0].text;
    model->url = model->endpoints [0].url;
    return 0;
}

//  "variants": [{model, weight}]: checked against the registry at the end
static int
s_variants (mesh_models_t *self, mesh_config_t *config, const char *base, mesh_model_t *model)
{
    (void) self;
    char path [128];
    snprintf (path, sizeof path, "%s.variants", base);
    size_t count = mesh_config_array_size (config, path);
    if (count == 0)
        return 0;
    model->variants = calloc (count, sizeof *model->variants);
    assert (model->variants);
    model->variant_count = count;
    for (size_t k = 0; k < count; k++) {
        char at [128];
        static const char *const fields [] = { "model", "weight", NULL };
        snprintf (at, sizeof at, "%s.variants.%zu", base, k);
        if (mesh_config_only (config, at, fields) < 0)
            return -1;
        snprintf (at, sizeof at, "%s.variants.%zu.model", base, k);
        model->variants [k].model = mesh_config_str (config, at, NULL);
        snprintf (at, sizeof at, "%s.variants.%zu.weight", base, k);
        model->variants [k].weight = mesh_config_int (config, at, 1);
        if (!model->variants [k].model || model->variants [k].weight < 1) {
            mesh_config_invalid (config, at, "each variant names a model and a weight of 1 or more");
            return -1;
        }
    }
    return 0;
}

//  Which environment variables a model may send upstream as its
//  credential: SEEKMESH_UPSTREAM_*, or those the connector's config lists.
//  Otherwise whoever may change the registry (an admin, a Redis writer)
//  could have the connector send the admin token, or any secret of its
//  environment, to a host of their choice.
static bool
s_key_env_allowed (mesh_config_t *config, const char *name)
{
    if (strncmp (name, "SEEKMESH_UPSTREAM_", 18) == 0 && name [18])
        return true;
    const char *list = mesh_setting_str (config, "connector.key_envs");
    size_t len = strlen (name);
    for (const char *at = list; *at; ) {
        size_t word = strcspn (at, ", ");
        if (word == len && memcmp (at, name, len) == 0)
            return true;
        at += word;
        at += strspn (at, ", ");
    }
    return false;
}

//  "cache": { "ttl_s", "max_temperature", "shared" } (mesh_models.h)
static int
s_cache (mesh_config_t *config, const char *base, mesh_model_t *model)
{
    char path [128];
    snprintf (path, sizeof path, "%s.cache", base);
    model->cache_max_temperature = -1;
    json_t *cache = mesh_config_node (config, path);
    if (!cache)
        return 0;
    if (!json_is_object (cache)) {
        mesh_config_invalid (config, path, "expected an object: {\"ttl_s\", \"max_temperature\", \"shared\"}");
        return -1;
    }
    snprintf (path, sizeof path, "%s.cache.ttl_s", base);
    model->cache_ttl_s = mesh_config_int (config, path, 0);
    if (model->cache_ttl_s < 1 || model->cache_ttl_s > 31536000) {
        mesh_config_invalid (config, path, "seconds an answer is kept: 1 .. 31536000");
        return -1;
    }
    snprintf (path, sizeof path, "%s.cache.max_temperature", base);
    if (mesh_config_node (config, path)) {
        model->cache_max_temperature = mesh_config_number (config, path, -1);
        if (!(model->cache_max_temperature >= 0 && model->cache_max_temperature <= 2)) {
            mesh_config_invalid (config, path, "a temperature: 0 .. 2");
            return -1;
        }
    }
    snprintf (path, sizeof path, "%s.cache.shared", base);
    model->cache_shared = mesh_config_bool (config, path, false);
    return 0;
}

//  The path of one field of a model entry; needs locals path and base
#define AT(field) (snprintf (path, sizeof path, "%s.%s", base, field), path)

//  The connector's timeouts, the default of every model's own
typedef struct {
    int64_t connect_ms;
    int64_t first_byte_ms;
    int64_t idle_ms;
} timeouts_t;

//  Reuses the next free slot for entry i; a rejected entry may have
//  left arrays there.
static mesh_model_t *
s_model_slot (mesh_models_t *self, size_t i)
{
    mesh_model_t *model = &self->models [self->count];
    free (model->endpoints);
    free (model->variants);
    memset (model, 0, sizeof *model);
    model->index = self->count;
    model->config_index = i;
    return model;
}

//  A misspelt field would otherwise be ignored silently
static int
s_known_fields (mesh_config_t *config, const char *base)
{
    char path [96];
    static const char *const fields [] = {
        "name", "type", "endpoint", "endpoints", "variants", "upstream_model", "auth",
        "stream_config", "stream_only", "fallback", "ca_file", "max_concurrency",
        "connect_timeout_ms", "first_byte_timeout_ms", "idle_timeout_ms", "aliases", "cache", NULL
    };
    static const char *const cache_fields [] = { "ttl_s", "max_temperature", "shared", NULL };
    static const char *const auth_fields [] = { "type", "key_name", "key_env", NULL };
    static const char *const stream_fields [] = { "chunk_size", "delimiter", NULL };
    if (mesh_config_only (config, base, fields) < 0
    ||  mesh_config_only (config, AT ("auth"), auth_fields) < 0
    ||  mesh_config_only (config, AT ("stream_config"), stream_fields) < 0
    ||  mesh_config_only (config, AT ("cache"), cache_fields) < 0)
        return -1;
    return 0;
}

//  "name" and "type": a name is unique among the models loaded so far
static int
s_name (mesh_models_t *self, mesh_config_t *config, const char *base, mesh_model_t *model)
{
    char path [96];
    model->name = mesh_config_str (config, AT ("name"), NULL);
    if (!model->name || !*model->name) {
        mesh_config_invalid (config, AT ("name"), "every model needs a name");
        return -1;
    }
    if (mesh_models_find (self, model->name)) {
        mesh_config_invalid (config, AT ("name"), "\"%s\" is defined twice", model->name);
        return -1;
    }
    model->type = mesh_config_str (config, AT ("type"), "llm");
    return 0;
}

//  "auth": { "type": "api_key" | "none", "key_name", "key_env" }.
//  A bad header name is reported but does not reject the entry.
static int
s_auth (mesh_config_t *config, const char *base, mesh_model_t *model)
{
    char path [96];
    const char *auth_type = mesh_config_str (config, AT ("auth.type"), "api_key");
    if (mesh_streq (auth_type, "none"))
        return 0;
    if (!mesh_streq (auth_type, "api_key")) {
        mesh_config_invalid (config, AT ("auth.type"), "expected \"api_key\" or \"none\"");
        return -1;
    }
    model->auth_header = mesh_config_str (config, AT ("auth.key_name"), "Authorization");
    model->auth_env = mesh_config_str (config, AT ("auth.key_env"), NULL);
    if (!model->auth_env || !*model->auth_env) {
        mesh_config_invalid (config, AT ("auth.key_env"),
                             "name the environment variable holding the upstream key");
        return -1;
    }
    if (!s_key_env_allowed (config, model->auth_env)) {
        mesh_config_invalid (config, AT ("auth.key_env"),
                             "%s may not be sent upstream: name it SEEKMESH_UPSTREAM_... or "
                             "list it in connector.key_envs", model->auth_env);
        return -1;
    }
    for (const char *p = model->auth_header; *p; p++)
        if (!isalnum ((unsigned char) *p) && *p != '-' && *p != '_') {
            mesh_config_invalid (config, AT ("auth.key_name"), "not a header name");
            break;
        }
    return 0;
}

//  "stream_config" and "stream_only": a WebSocket endpoint forces
//  streaming. Mistakes here are reported without rejecting the entry.
static void
s_streaming (mesh_config_t *config, const char *base, mesh_model_t *model)
{
    char path [96];
    const char *delimiter = mesh_config_str (config, AT ("stream_config.delimiter"), "\n\n");
    if (!mesh_streq (delimiter, "\n\n") && !mesh_streq (delimiter, "\r\n\r\n"))
        mesh_config_invalid (config, AT ("stream_config.delimiter"),
                             "SSE events end with a blank line: use \"\\n\\n\" or \"\\r\\n\\r\\n\"");
    model->chunk_size = mesh_config_int (config, AT ("stream_config.chunk_size"), 1024);
    if (model->chunk_size < 1 || model->chunk_size > 16 * 1024 * 1024)
        mesh_config_invalid (config, AT ("stream_config.chunk_size"), "must be 1 .. 16777216");
    bool websocket = false;
    for (size_t k = 0; k < model->endpoint_count; k++)
        websocket = websocket || model->endpoints [k].url.websocket;
    model->stream_only = mesh_config_bool (config, AT ("stream_only"), websocket);
    if (websocket && !model->stream_only)
        mesh_config_invalid (config, AT ("stream_only"), "a WebSocket upstream always streams");
}

//  "fallback", "ca_file", "max_concurrency" and the timeouts. Mistakes
//  here are reported without rejecting the entry.
static void
s_limits (mesh_config_t *config, const char *base, mesh_model_t *model,
          const timeouts_t *defaults)
{
    char path [96];
    const char *fallback = mesh_config_str (config, AT ("fallback"), NULL);
    model->fallback = fallback && *fallback ? fallback : NULL;
    const char *ca_file = mesh_config_str (config, AT ("ca_file"), NULL);
    model->ca_file = ca_file && *ca_file ? ca_file : NULL;
    model->max_concurrency = mesh_config_int (config, AT ("max_concurrency"), 0);
    if (model->max_concurrency < 0)
        mesh_config_invalid (config, AT ("max_concurrency"), "must be 0 (no limit) or more");
    model->connect_timeout_ms = mesh_config_int (config, AT ("connect_timeout_ms"),
                                                 defaults->connect_ms);
    model->first_byte_timeout_ms = mesh_config_int (config, AT ("first_byte_timeout_ms"),
                                                    defaults->first_byte_ms);
    model->idle_timeout_ms = mesh_config_int (config, AT ("idle_timeout_ms"), defaults->idle_ms);
    if (model->connect_timeout_ms <= 0 || model->first_byte_timeout_ms <= 0
    ||  model->idle_timeout_ms <= 0)
        mesh_config_invalid (config, base, "timeouts must be positive");
}

//  Reads models[i] into the next slot: 0 if it counts as a model, -1 if
//  the entry is rejected (the config then carries the reason).
static int
s_model (mesh_models_t *self, mesh_config_t *config, size_t i, const timeouts_t *defaults)
{
    char path [96], base [32];
    snprintf (base, sizeof base, "models.%zu", i);
    mesh_model_t *model = s_model_slot (self, i);
    if (s_known_fields (config, base) < 0
    ||  s_name (self, config, base, model) < 0
    ||  s_variants (self, config, base, model) < 0
    ||  s_endpoints (config, base, model) < 0)
        return -1;
    if (model->variant_count) {
        //  An A/B model is only a split: the rest belongs to its variants
        model->upstream_model = model->name;
        return 0;
    }
    model->upstream_model = mesh_config_str (config, AT ("upstream_model"), model->name);
    if (s_auth (config, base, model) < 0)
        return -1;
    s_streaming (config, base, model);
    s_limits (config, base, model, defaults);
    return s_cache (config, base, model);
}

//  Aliases: per model ("aliases": [names]), then the top-level map
static void
s_aliases (mesh_models_t *self, mesh_config_t *config)
{
    for (size_t i = 0; i < self->count; i++) {
        char path [96];
        snprintf (path, sizeof path, "models.%zu.aliases", self->models [i].config_index);
        json_t *list = mesh_config_node (config, path);
        if (!list)
            continue;
        if (!json_is_array (list)) {
            mesh_config_invalid (config, path, "expected an array of names");
            continue;
        }
        size_t k;
        json_t *alias;
        json_array_foreach (list, k, alias) {
            if (!json_is_string (alias) || !*json_string_value (alias))
                mesh_config_invalid (config, path, "aliases are non-empty strings");
            else
                s_add_alias (self, config, path, json_string_value (alias), i);
        }
    }
    json_t *map = mesh_config_node (config, "aliases");
    if (map && !json_is_object (map))
        mesh_config_invalid (config, "aliases", "expected an object of alias: model");
    else
    if (map) {
        const char *alias;
        json_t *target;
        json_object_foreach (map, alias, target) {
            mesh_model_t *model = json_is_string (target)
                                ? mesh_models_find (self, json_string_value (target)) : NULL;
            if (!model)
                mesh_config_invalid (config, "aliases", "\"%s\" points to no model", alias);
            else
                s_add_alias (self, config, "aliases", alias, model->index);
        }
    }
}

//  Fallbacks and variants name other models: checked once all are loaded
static void
s_check_references (mesh_models_t *self, mesh_config_t *config)
{
    for (size_t i = 0; i < self->count; i++) {
        mesh_model_t *model = &self->models [i];
        if (model->fallback && !mesh_models_find (self, model->fallback))
            mesh_config_invalid (config, "models", "the fallback of \"%s\" (\"%s\") is no model",
                                 model->name, model->fallback);
        for (size_t k = 0; k < model->variant_count; k++) {
            mesh_model_t *target = mesh_models_find (self, model->variants [k].model);
            if (!target || target->variant_count)
                mesh_config_invalid (config, "models", "variant \"%s\" of \"%s\" is no model with an endpoint",
                                     model->variants [k].model, model->name);
        }
    }
}

mesh_models_t *
mesh_models_load (mesh_config_t *config)
{
    mesh_models_t *self = calloc (1, sizeof *self);
    assert (self);
    self->refs = 1;
    size_t count = mesh_config_array_size (config, "models");
    self->slots = count ? count : 1;
    self->models = calloc (self->slots, sizeof *self->models);
    assert (self->models);
    timeouts_t defaults;
    defaults.connect_ms = mesh_setting_int (config, "connector.connect_timeout_ms");
    defaults.first_byte_ms = mesh_setting_int (config, "connector.first_byte_timeout_ms");
    defaults.idle_ms = mesh_setting_int (config, "connector.idle_timeout_ms");
    for (size_t i = 0; i < count; i++)
        if (s_model (self, config, i, &defaults) == 0)
            self->count++;
    s_aliases (self, config);
    s_check_references (self, config);
    return self;
}

mesh_models_t *
mesh_models_ref (mesh_models_t *self)
{
    self->refs++;
    return self;
}

mesh_models_t *
mesh_models_from_json (const char *json, size_t len, const char *name, char *why, size_t why_size)
{
    mesh_config_t *config = mesh_config_parse (json, len, name, why, why_size);
    if (!config)
        return NULL;
    mesh_models_t *self = mesh_models_load (config);
    if (mesh_config_failed (config)) {
        snprintf (why, why_size, "%s", mesh_config_failed (config));
        mesh_models_destroy (&self);
        mesh_config_destroy (&config);
        return NULL;
    }
    self->owned = config;
    return self;
}

void
mesh_models_destroy (mesh_models_t **self_p)
{
    assert (self_p);
    mesh_models_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (--self->refs > 0)
        return;
    for (size_t i = 0; i < self->slots; i++) {
        free (self->models [i].endpoints);
        free (self->models [i].variants);
    }
    free (self->models);
    free (self->aliases);
    mesh_config_destroy (&self->owned);
    free (self);
}

size_t
mesh_models_count (mesh_models_t *self)
{
    return self->count;
}

mesh_model_t *
mesh_models_at (mesh_models_t *self, size_t index)
{
    return index < self->count ? &self->models [index] : NULL;
}

mesh_model_t *
mesh_models_find (mesh_models_t *self, const char *name)
{
    for (size_t i = 0; i < self->count; i++)
        if (strcmp (self->models [i].name, name) == 0)
            return &self->models [i];
    for (size_t i = 0; i < self->alias_count; i++)
        if (strcmp (self->aliases [i].alias, name) == 0)
            return &self->models [self->aliases [i].model];
    return NULL;
}

size_t
mesh_models_alias_count (mesh_models_t *self)
{
    return self->alias_count;
}

mesh_model_t *
mesh_models_alias_at (mesh_models_t *self, size_t index, const char **alias)
{
    if (index >= self->alias_count)
        return NULL;
    *alias = self->aliases [index].alias;
    return &self->models [self->aliases [index].model];
}

void
mesh_models_test (bool verbose)
{
    (void) verbose;
    mesh_url_t url;
    char why [256];
    assert (mesh_url_parse ("https://api.deepseek.com/v1/chat/completions", &url, why, sizeof why) == 0);
    assert (url.tls && !url.websocket && url.port == 443);
    assert (mesh_streq (url.host, "api.deepseek.com") && mesh_streq (url.path, "/v1/chat/completions"));
    assert (mesh_streq (url.host_header, "api.deepseek.com"));
    assert (mesh_url_parse ("ws://127.0.0.1:9100/v1/chat/completions", &url, why, sizeof why) == 0);
    assert (url.websocket && !url.tls && url.port == 9100);
    assert (mesh_streq (url.host_header, "127.0.0.1:9100"));
    assert (mesh_url_parse ("http://[::1]:8000", &url, why, sizeof why) == 0);
    assert (mesh_streq (url.host, "::1") && mesh_streq (url.path, "/"));
    assert (mesh_streq (url.host_header, "[::1]:8000"));
    assert (mesh_url_parse ("ftp://x/", &url, why, sizeof why) == -1);
    assert (mesh_url_parse ("http://x:0/", &url, why, sizeof why) == -1);
    assert (mesh_url_parse ("http://u@x/", &url, why, sizeof why) == -1);
    assert (mesh_url_parse ("http://x/a b", &url, why, sizeof why) == -1);
    assert (mesh_url_parse ("http://up\r\nX-Injected 1/v1", &url, why, sizeof why) == -1);
    assert (mesh_url_parse ("http://a b/", &url, why, sizeof why) == -1);

    const char *text =
        "{ \"connector\": { \"idle_timeout_ms\": 1234, \"key_envs\": \"OTHER, DEEPSEEK_API_KEY\" },"
        "  \"models\": ["
        "    { \"name\": \"deepseek-chat\", \"endpoint\": \"https://api.deepseek.com/chat/completions\","
        "      \"auth\": { \"key_env\": \"DEEPSEEK_API_KEY\" }, \"fallback\": \"qwen\","
        "      \"max_concurrency\": 64, \"aliases\": [\"chat\"],"
        "      \"cache\": { \"ttl_s\": 300, \"max_temperature\": 0.5, \"shared\": true } },"
        "    { \"name\": \"qwen\", \"endpoint\": \"wss://qwen.local/ws\", \"auth\": { \"type\": \"none\" },"
        "      \"upstream_model\": \"Qwen/Qwen2.5-7B\", \"idle_timeout_ms\": 99 } ],"
        "  \"aliases\": { \"fast\": \"qwen\" } }";
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "models.json", why, sizeof why);
    assert (config);
    mesh_models_t *models = mesh_models_load (config);
    assert (mesh_config_failed (config) == NULL);
    assert (mesh_models_count (models) == 2);
    mesh_model_t *chat = mesh_models_find (models, "chat");
    assert (chat && mesh_streq (chat->name, "deepseek-chat"));
    assert (mesh_streq (chat->auth_header, "Authorization") && mesh_streq (chat->auth_env, "DEEPSEEK_API_KEY"));
    assert (chat->max_concurrency == 64 && mesh_streq (chat->fallback, "qwen"));
    assert (chat->cache_ttl_s == 300 && chat->cache_max_temperature == 0.5 && chat->cache_shared);
    assert (mesh_models_find (models, "qwen")->cache_ttl_s == 0);
    //  A credential from a variable not on the allow-list is refused by name
    {
        const char *bad = "{ \"models\": [ { \"name\": \"m\", \"endpoint\": \"http://x/v1\","
                          " \"auth\": { \"key_env\": \"SEEKMESH_ADMIN_TOKEN\" } } ] }";
        mesh_config_t *other = mesh_config_parse (bad, strlen (bad), "bad.json", why, sizeof why);
        mesh_models_t *none = mesh_models_load (other);
        assert (mesh_models_count (none) == 0);
        assert (strstr (mesh_config_failed (other), "models.0.auth.key_env")
             && strstr (mesh_config_failed (other), "SEEKMESH_ADMIN_TOKEN may not be sent upstream"));
        mesh_models_destroy (&none);
        mesh_config_destroy (&other);
        const char *good = "{ \"models\": [ { \"name\": \"m\", \"endpoint\": \"http://x/v1\","
                           " \"auth\": { \"key_env\": \"SEEKMESH_UPSTREAM_QWEN\" } } ] }";
        other = mesh_config_parse (good, strlen (good), "good.json", why, sizeof why);
        none = mesh_models_load (other);
        assert (mesh_models_count (none) == 1 && !mesh_config_failed (other));
        mesh_models_destroy (&none);
        mesh_config_destroy (&other);
    }
    assert (!chat->stream_only && chat->idle_timeout_ms == 1234);
    mesh_model_t *qwen = mesh_models_find (models, "fast");
    assert (qwen && qwen->stream_only && qwen->auth_header == NULL);
    assert (mesh_streq (qwen->upstream_model, "Qwen/Qwen2.5-7B") && qwen->idle_timeout_ms == 99);
    assert (mesh_models_find (models, "gpt-9") == NULL);
    assert (mesh_models_alias_count (models) == 2);
    const char *alias;
    assert (mesh_models_alias_at (models, 1, &alias) == qwen && mesh_streq (alias, "fast"));
    assert (mesh_models_alias_at (models, 2, &alias) == NULL);
    mesh_models_destroy (&models);
    mesh_config_destroy (&config);

    //  Several endpoints, variants, and a registry that owns its document
    const char *live =
        "{ \"models\": [ { \"name\": \"m\", \"auth\": {\"type\":\"none\"}, \"endpoints\": ["
        "    { \"url\": \"http://10.0.0.1:8000/v1/chat/completions\", \"region\": \"eu\" },"
        "    { \"url\": \"https://b.example/v1/chat/completions\", \"priority\": 1, \"weight\": 3 } ] },"
        "  { \"name\": \"n\", \"auth\": {\"type\":\"none\"}, \"endpoint\": \"ws://c/\" },"
        "  { \"name\": \"ab\", \"variants\": [ { \"model\": \"m\", \"weight\": 90 },"
        "                                 { \"model\": \"n\", \"weight\": 10 } ] } ] }";
    models = mesh_models_from_json (live, strlen (live), "live", why, sizeof why);
    assert (models);
    mesh_model_t *m = mesh_models_find (models, "m");
    assert (m->endpoint_count == 2 && mesh_streq (m->endpoints [0].region, "eu"));
    assert (m->endpoints [1].priority == 1 && m->endpoints [1].weight == 3 && m->endpoints [1].url.tls);
    assert (mesh_models_find (models, "n")->stream_only);
    mesh_model_t *ab = mesh_models_find (models, "ab");
    assert (ab->variant_count == 2 && ab->endpoint_count == 0 && ab->variants [1].weight == 10);
    mesh_models_t *held = mesh_models_ref (models);
    mesh_models_destroy (&models);
    assert (mesh_streq (mesh_models_find (held, "ab")->variants [0].model, "m"));
    mesh_models_destroy (&held);
    const char *bad_variant = "{ \"models\": [ { \"name\": \"ab\", \"variants\": [ { \"model\": \"x\" } ] } ] }";
    assert (!mesh_models_from_json (bad_variant, strlen (bad_variant), "v", why, sizeof why));
    assert (strstr (why, "variant"));
    const char *both = "{ \"models\": [ { \"name\": \"a\", \"endpoint\": \"http://x/\", "
                       "\"endpoints\": [ { \"url\": \"http://y/\" } ], \"auth\": {\"type\":\"none\"} } ] }";
    assert (!mesh_models_from_json (both, strlen (both), "b", why, sizeof why));

    //  Errors name the field
    const char *bad = "{ \"models\": [ { \"name\": \"a\", \"endpoint\": \"gopher://x\" } ] }";
    config = mesh_config_parse (bad, strlen (bad), "bad.json", why, sizeof why);
    models = mesh_models_load (config);
    assert (strstr (mesh_config_failed (config), "models.0.endpoint"));
    mesh_models_destroy (&models);
    mesh_config_destroy (&config);
    const char *bad_cache [][2] = {
        { "{\"ttl_s\": 0}", "models.0.cache.ttl_s" },
        { "{\"ttl_s\": 5, \"max_temperature\": 3}", "models.0.cache.max_temperature" },
        { "{\"ttl_s\": 5, \"tll\": 1}", "models.0.cache.tll" },
        { "true", "models.0.cache" },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad_cache); i++) {
        char doc [256];
        snprintf (doc, sizeof doc, "{ \"models\": [ { \"name\": \"a\", \"endpoint\": \"http://x/\", "
                  "\"auth\": {\"type\":\"none\"}, \"cache\": %s } ] }", bad_cache [i][0]);
        assert (!mesh_models_from_json (doc, strlen (doc), "c", why, sizeof why));
        assert (strstr (why, bad_cache [i][1]));
    }
    //  A rejected entry neither shifts the aliases of the next ones nor
    //  leaves its fields behind
    const char *shifted =
        "{ \"models\": [ { \"name\": \"bad\", \"endpoint\": \"ftp://x\", \"aliases\": [\"old\"],"
        "                  \"auth\": { \"key_name\": \"X-Key\" } },"
        "                { \"name\": \"good\", \"endpoint\": \"http://x/\", \"aliases\": [\"new\"],"
        "                  \"auth\": { \"type\": \"none\" } } ] }";
    config = mesh_config_parse (shifted, strlen (shifted), "s.json", why, sizeof why);
    models = mesh_models_load (config);
    assert (mesh_config_failed (config));
    assert (mesh_models_find (models, "new") == mesh_models_find (models, "good"));
    assert (mesh_models_find (models, "old") == NULL);
    assert (mesh_models_find (models, "good")->auth_header == NULL);
    mesh_models_destroy (&models);
    mesh_config_destroy (&config);
    const char *dangling = "{ \"models\": [ { \"name\": \"a\", \"endpoint\": \"http://x\","
                           " \"auth\": {\"type\":\"none\"}, \"fallback\": \"b\" } ] }";
    config = mesh_config_parse (dangling, strlen (dangling), "d.json", why, sizeof why);
    models = mesh_models_load (config);
    assert (strstr (mesh_config_failed (config), "fallback"));
    mesh_models_destroy (&models);
    mesh_config_destroy (&config);
}
