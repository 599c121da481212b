/*  router_registry: generations, the Redis overlay, and the admin API.    */
#include "router_registry.h"
#include "mesh_log.h"
#include "mesh_redis.h"
#include "mesh_settings.h"
#include "mesh_util.h"

#include <assert.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODELS_HASH "seekmesh:registry:models"
#define KEYS_HASH   "seekmesh:registry:keys"
#define CHANNEL     "seekmesh:registry"

//  Both overlay hashes, read together
static mesh_redis_script_t s_load_script = { .body =
    "return { redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]) }\n"
};

//  KEYS: the hash; ARGV: field, value ("" deletes the field), channel,
//  "nx" to refuse a field that exists.  Returns 1, or 0 when nx refused.
static mesh_redis_script_t s_write_script = { .body =
    "if ARGV[4] == 'nx' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end\n"
    "if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end\n"
    "redis.call('PUBLISH', ARGV[3], ARGV[1])\n"
    "return 1\n"
};

//  Drops both hashes (registry reset).  ARGV: the channel.  Returns the
//  number of models and of keys dropped.
static mesh_redis_script_t s_reset_script = { .body =
    "local models = redis.call('HLEN', KEYS[1])\n"
    "local keys = redis.call('HLEN', KEYS[2])\n"
    "redis.call('DEL', KEYS[1], KEYS[2])\n"
    "redis.call('PUBLISH', ARGV[1], '*')\n"
    "return { models, keys }\n"
};

struct router_registry_t {
    mesh_config_t *config;      //  the service's: file name and settings
    mesh_redis_t *redis;
    router_registry_fn *fn;
    void *fn_arg;
    const char *token_env;
    json_t *base;               //  {models, aliases, keys, connector} of the file
    json_t *models;             //  the overlay: name -> entry or null
    json_t *keys;               //  id -> entry or null
    router_gen_t *gen;
    bool loaded;                //  the overlay has been read from Redis
    bool loading;
    bool load_again;            //  a change was announced during a load
    bool stale;                 //  a load could not be sent or failed
    bool redis_was_ready;
    mesh_metric_t *generations;
    mesh_metric_t *errors;
};

//  Generations --------------------------------------------------------------

router_gen_t *
router_gen_ref (router_gen_t *gen)
{
    gen->refs++;
    return gen;
}

void
router_gen_unref (router_gen_t **gen_p)
{
    router_gen_t *gen = *gen_p;
    *gen_p = NULL;
    if (!gen || --gen->refs > 0)
        return;
    router_keys_destroy (&gen->keys);
    mesh_models_destroy (&gen->models);
    mesh_config_destroy (&gen->doc);
    free (gen->connector_json);
    free (gen);
}

static void
s_sha256 (const char *data, size_t len, unsigned char digest [32])
{
    EVP_Digest (data, len, digest, NULL, EVP_sha256 (), NULL);
}

static void
s_hex (const unsigned char *bytes, size_t count, char *out)
{
    for (size_t i = 0; i < count; i++)
        sprintf (out + 2 * i, "%02x", bytes [i]);
}

//  Builds a generation from a merged document; NULL with the first error.
static router_gen_t *
s_gen_build (json_t *doc, char *why, size_t why_size)
{
    char *text = json_dumps (doc, JSON_COMPACT);
    assert (text);
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "registry", why, why_size);
    if (!config) {
        free (text);
        return NULL;
    }
    router_gen_t *gen = calloc (1, sizeof *gen);
    assert (gen);
    gen->refs = 1;
    gen->doc = config;
    gen->models = mesh_models_load (config);
    gen->keys = router_keys_load (config, gen->models);
    if (mesh_config_failed (config)) {
        //  "config registry: models.2.endpoint: …": the part after the name
        const char *reason = mesh_config_failed (config);
        const char *colon = strstr (reason, "registry: ");
        snprintf (why, why_size, "%s", colon ? colon + 10 : reason);
        free (text);
        router_gen_unref (&gen);
        return NULL;
    }
    unsigned char digest [32];
    s_sha256 (text, strlen (text), digest);
    s_hex (digest, 8, gen->digest);
    free (text);

    json_t *part = json_pack ("{s:O, s:O, s:O}", "models", json_object_get (doc, "models"),
                              "aliases", json_object_get (doc, "aliases"),
                              "connector", json_object_get (doc, "connector"));
    gen->connector_json = json_dumps (part, JSON_COMPACT);
    gen->connector_json_len = strlen (gen->connector_json);
    json_decref (part);
    s_sha256 (gen->connector_json, gen->connector_json_len, digest);
    for (int i = 0; i < 8; i++)
        gen->version = gen->version << 8 | digest [i];
    if (gen->version == 0)
        gen->version = 1;       //  0 means "no version"
    return gen;
}

//  The document: the file's entries, each replaced or removed by the
//  overlay, then the overlay's new entries
static json_t *
s_merge_list (json_t *base, json_t *overlay, const char *id_field)
{
    json_t *list = json_array ();
    json_t *seen = json_object ();
    size_t index;
    json_t *entry;
    json_array_foreach (base, index, entry) {
        const char *id = json_string_value (json_object_get (entry, id_field));
        json_t *change = id && *id ? json_object_get (overlay, id) : NULL;
        if (change)
            json_object_set (seen, id, json_true ());
        if (change && json_is_null (change))
            continue;
        json_array_append (list, change ? change : entry);
    }
    const char *id;
    json_object_foreach (overlay, id, entry)
        if (!json_object_get (seen, id) && !json_is_null (entry))
            json_array_append (list, entry);
    json_decref (seen);
    return list;
}

static json_t *
s_document (json_t *base, json_t *models, json_t *keys)
{
    return json_pack ("{s:o, s:O, s:o, s:O}",
                      "models", s_merge_list (json_object_get (base, "models"), models, "name"),
                      "aliases", json_object_get (base, "aliases"),
                      "keys", s_merge_list (json_object_get (base, "keys"), keys, "id"),
                      "connector", json_object_get (base, "connector"));
}

static json_t *
s_base (mesh_config_t *config)
{
    json_t *models = mesh_config_node (config, "models");
    json_t *aliases = mesh_config_node (config, "aliases");
    json_t *keys = mesh_config_node (config, "keys");
    json_t *connector = mesh_config_node (config, "connector");
    return json_pack ("{s:o, s:o, s:o, s:o}",
                      "models", json_is_array (models) ? json_deep_copy (models) : json_array (),
                      "aliases", json_is_object (aliases) ? json_deep_copy (aliases) : json_object (),
                      "keys", json_is_array (keys) ? json_deep_copy (keys) : json_array (),
                      "connector", json_is_object (connector) ? json_deep_copy (connector) : json_object ());
}

//  Makes gen the live generation (takes it), unless nothing changed
static void
s_install (router_registry_t *self, router_gen_t *gen)
{
    if (self->gen && mesh_streq (self->gen->digest, gen->digest)) {
        router_gen_unref (&gen);
        return;
    }
    mesh_info ("registry %s: %zu models, %zu keys", gen->digest, mesh_models_count (gen->models),
               router_keys_count (gen->keys));
    router_gen_unref (&self->gen);
    self->gen = gen;
    if (self->generations)
        mesh_metric_inc (self->generations);
    if (self->fn)
        self->fn (self->fn_arg, gen);
}

//  Builds and installs the registry from base and the overlay.
static int
s_rebuild (router_registry_t *self, char *why, size_t why_size)
{
    json_t *doc = s_document (self->base, self->models, self->keys);
    router_gen_t *gen = s_gen_build (doc, why, why_size);
    json_decref (doc);
    if (!gen)
        return -1;
    s_install (self, gen);
    return 0;
}

//  Reading the overlay ------------------------------------------------------

static void s_load (router_registry_t *self);

//  A hash as [field, value, …] into an object; entries that are not JSON
//  objects (or null) are skipped
static json_t *
s_hash_object (router_registry_t *self, redisReply *reply, const char *what)
{
    json_t *object = json_object ();
    for (size_t i = 0; reply && i + 1 < reply->elements; i += 2) {
        redisReply *field = reply->element [i], *value = reply->element [i + 1];
        if (field->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
            continue;
        json_error_t error;
        json_t *entry = json_loadb (value->str, value->len, JSON_DECODE_ANY, &error);
        if (!entry || !(json_is_object (entry) || json_is_null (entry))) {
            mesh_warn ("registry: %s \"%s\" in Redis is not a JSON object: skipped", what, field->str);
            if (self->errors)
                mesh_metric_inc (self->errors);
            json_decref (entry);
            continue;
        }
        json_object_set_new (object, field->str, entry);
    }
    return object;
}

static void
s_on_loaded (void *arg, redisReply *reply)
{
    router_registry_t *self = arg;
    self->loading = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            mesh_warn ("registry: cannot read from Redis: %s", reply->str);
        self->stale = true;     //  router_registry_tick reads it again
        return;
    }
    self->stale = false;
    json_t *models = s_hash_object (self, reply->element [0], "model");
    json_t *keys = s_hash_object (self, reply->element [1], "key");
    json_t *doc = s_document (self->base, models, keys);
    char why [512];
    router_gen_t *gen = s_gen_build (doc, why, sizeof why);
    json_decref (doc);
    if (gen) {
        json_decref (self->models);
        json_decref (self->keys);
        self->models = models;
        self->keys = keys;
        s_install (self, gen);
    }
    else {
        mesh_error ("registry in Redis refused, keeping the last good one: %s", why);
        if (self->errors)
            mesh_metric_inc (self->errors);
        json_decref (models);
        json_decref (keys);
    }
    self->loaded = true;
    if (self->load_again) {
        self->load_again = false;
        s_load (self);
    }
}

static void
s_load (router_registry_t *self)
{
    if (!self->redis)
        return;
    if (self->loading) {
        self->load_again = true;
        return;
    }
    const char *argv [] = { MODELS_HASH, KEYS_HASH };
    if (mesh_redis_eval (self->redis, &s_load_script, s_on_loaded, self, 2, 2, argv, NULL) == 0)
        self->loading = true;
    else
        self->stale = true;     //  not connected: router_registry_tick tries again
}

void
router_registry_tick (router_registry_t *self)
{
    if (!self->redis)
        return;
    //  A change may have been announced while the command connection was
    //  down (the subscription can outlive it): read again when it is back
    bool ready = mesh_redis_ready (self->redis);
    if (ready && (self->stale || !self->redis_was_ready || !self->loaded))
        s_load (self);
    self->redis_was_ready = ready;
}

static void
s_on_message (void *arg, const char *payload, size_t len)
{
    (void) payload;
    (void) len;
    s_load (arg);
}

static void
s_on_subscribed (void *arg)
{
    s_load (arg);
}

//  Lifecycle ----------------------------------------------------------------

router_registry_t *
router_registry_new (mesh_config_t *config, struct mesh_redis_t *redis, mesh_metrics_t *metrics,
                     router_registry_fn *fn, void *arg, char *why, size_t why_size)
{
    router_registry_t *self = calloc (1, sizeof *self);
    assert (self);
    self->config = config;
    self->redis = redis;
    self->token_env = mesh_setting_str (config, "router.admin_token_env");
    self->base = s_base (config);
    self->models = json_object ();
    self->keys = json_object ();
    if (metrics) {
        self->generations = mesh_metrics_counter (metrics, "seekmesh_router_registry_changes_total",
            "Versions of the model registry and keys installed.", NULL);
        self->errors = mesh_metrics_counter (metrics, "seekmesh_router_registry_errors_total",
            "Registry documents refused (invalid entries in Redis or in a reloaded file).", NULL);
    }
    if (s_rebuild (self, why, why_size) < 0) {
        //  The file's error, named as the file names it
        if (mesh_config_failed (config) == NULL) {
            char reason [512];
            snprintf (reason, sizeof reason, "%s", why);
            snprintf (why, why_size, "config %s: %s", mesh_config_file (config), reason);
        }
        router_registry_destroy (&self);
        return NULL;
    }
    self->fn = fn;
    self->fn_arg = arg;
    if (redis)
        mesh_redis_subscribe (redis, CHANNEL, s_on_message, s_on_subscribed, self);
    return self;
}

void
router_registry_destroy (router_registry_t **self_p)
{
    assert (self_p);
    router_registry_t *self = *self_p;
    if (!self)
        return;
    router_gen_unref (&self->gen);
    json_decref (self->base);
    json_decref (self->models);
    json_decref (self->keys);
    free (self);
    *self_p = NULL;
}

router_gen_t *
router_registry_current (router_registry_t *self)
{
    return self->gen;
}

bool
router_registry_ready (router_registry_t *self, mesh_buf_t *why)
{
    if (self->redis && mesh_redis_ready (self->redis) && !self->loaded) {
        mesh_buf_append_str (why, "the registry has not been read from Redis yet");
        return false;
    }
    return true;
}

int
router_registry_reload (router_registry_t *self, char *why, size_t why_size)
{
    mesh_config_t *config = mesh_config_load (mesh_config_file (self->config), why, why_size);
    if (!config)
        return -1;
    json_t *base = s_base (config);
    mesh_config_destroy (&config);
    json_t *old = self->base;
    self->base = base;
    if (s_rebuild (self, why, why_size) < 0) {
        self->base = old;
        json_decref (base);
        if (self->errors)
            mesh_metric_inc (self->errors);
        return -1;
    }
    json_decref (old);
    return 0;
}

//  Admin API ----------------------------------------------------------------

typedef struct {
    router_registry_t *registry;
    mesh_admin_pending_t *pending;
    bool is_key;
    char *id;
    json_t *value;              //  the new entry, or NULL to delete
    json_t *reply;              //  what to answer on success
    int status;                 //  ... with this status
} write_t;

static void
s_json (mesh_admin_response_t *response, int status, json_t *body)
{
    response->status = status;
    response->content_type = "application/json";
    char *text = body ? json_dumps (body, JSON_COMPACT) : NULL;
    mesh_buf_append_str (&response->body, text ? text : "{}");
    mesh_buf_append_str (&response->body, "\n");
    free (text);
    json_decref (body);
}

static json_t *
s_error_body (const char *type, const char *code, const char *message)
{
    return json_pack ("{s:{s:s, s:s, s:s, s:n}}", "error", "message", message, "type", type,
                      "code", code, "param");
}

static int
s_fail (mesh_admin_response_t *response, int status, const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));

static int
s_fail (mesh_admin_response_t *response, int status, const char *code, const char *fmt, ...)
{
    char message [768];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    const char *type = status == 401 ? "authentication_error"
                     : status == 403 ? "permission_error"
                     : status >= 500 ? "server_error" : "invalid_request_error";
    s_json (response, status, s_error_body (type, code, message));
    return 0;
}

//  Names and ids end up in URLs, metrics labels and logs: keep them plain
static bool
s_valid_name (const char *name, size_t max)
{
    size_t len = strlen (name);
    if (len == 0 || len > max)
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum ((unsigned char) *p) && !strchr ("._:-", *p))
            return false;
    return true;
}

static bool
s_authorized (router_registry_t *self, const mesh_admin_request_t *request,
              mesh_admin_response_t *response)
{
    const char *token = getenv (self->token_env);
    if (!token || !*token) {
        s_fail (response, 403, "admin_disabled",
                "The admin API is off: set %s in the router's environment.", self->token_env);
        return false;
    }
    const char *given = request->authorization;
    size_t given_len = request->authorization_len;
    if (given && given_len > 7 && strncasecmp (given, "Bearer ", 7) == 0) {
        //  Digests have one length, so the comparison takes one time
        unsigned char want [32], got [32];
        s_sha256 (token, strlen (token), want);
        s_sha256 (given + 7, given_len - 7, got);
        if (CRYPTO_memcmp (want, got, 32) == 0)
            return true;
    }
    s_fail (response, 401, "invalid_admin_token", "Missing or wrong admin token (Authorization: Bearer …).");
    return false;
}

bool
router_registry_authorized (router_registry_t *self, const mesh_admin_request_t *request,
                            mesh_admin_response_t *response)
{
    return s_authorized (self, request, response);
}

void
router_registry_answer (mesh_admin_response_t *response, int status, json_t *body)
{
    s_json (response, status, body);
}

int
router_registry_fail (mesh_admin_response_t *response, int status, const char *code,
                      const char *fmt, ...)
{
    char message [768];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    return s_fail (response, status, code, "%s", message);
}

//  The merged entry with this id, from the live generation's document
static json_t *
s_find (router_registry_t *self, bool is_key, const char *id)
{
    json_t *list = mesh_config_node (self->gen->doc, is_key ? "keys" : "models");
    size_t index;
    json_t *entry;
    json_array_foreach (list, index, entry)
        if (mesh_streq (json_string_value (json_object_get (entry, is_key ? "id" : "name")), id))
            return entry;
    return NULL;
}

static const char *
s_source (router_registry_t *self, bool is_key, const char *id)
{
    json_t *change = json_object_get (is_key ? self->keys : self->models, id);
    return change && !json_is_null (change) ? "admin" : "config";
}

//  A key as the API shows it: no secret, a fingerprint of its digest
static json_t *
s_key_view (router_registry_t *self, json_t *entry)
{
    json_t *view = json_deep_copy (entry);
    const char *plain = json_string_value (json_object_get (entry, "key"));
    const char *hex = json_string_value (json_object_get (entry, "key_sha256"));
    char fingerprint [65] = "";
    if (plain) {
        unsigned char digest [32];
        s_sha256 (plain, strlen (plain), digest);
        s_hex (digest, 8, fingerprint);
    }
    else
    if (hex)
        snprintf (fingerprint, 17, "%s", hex);
    json_object_del (view, "key");
    json_object_del (view, "key_sha256");
    json_object_set_new (view, "fingerprint", json_string (fingerprint));
    //  A budget always with its period, the default one too
    if (json_integer_value (json_object_get (view, "budget")) > 0
    &&  !json_is_string (json_object_get (view, "budget_period")))
        json_object_set_new (view, "budget_period", json_string (ROUTER_KEYS_DEFAULT_PERIOD));
    const char *id = json_string_value (json_object_get (entry, "id"));
    json_object_set_new (view, "source", json_string (s_source (self, true, id ? id : "")));
    return view;
}

static json_t *
s_model_view (router_registry_t *self, json_t *entry)
{
    json_t *view = json_deep_copy (entry);
    const char *name = json_string_value (json_object_get (entry, "name"));
    json_object_set_new (view, "source", json_string (s_source (self, false, name ? name : "")));
    return view;
}

static json_t *
s_list (router_registry_t *self, bool is_key)
{
    json_t *data = json_array ();
    json_t *list = mesh_config_node (self->gen->doc, is_key ? "keys" : "models");
    size_t index;
    json_t *entry;
    json_array_foreach (list, index, entry)
        json_array_append_new (data, is_key ? s_key_view (self, entry) : s_model_view (self, entry));
    //  The file's entries removed at run time: a reset brings them back
    json_t *removed = json_array ();
    const char *id;
    json_t *change;
    json_object_foreach (is_key ? self->keys : self->models, id, change)
        if (json_is_null (change))
            json_array_append_new (removed, json_string (id));
    json_t *reply = json_pack ("{s:s, s:s, s:o, s:o}", "object", "list", "version", self->gen->digest,
                               "data", data, "removed", removed);
    if (!is_key)
        json_object_set (reply, "aliases", mesh_config_node (self->gen->doc, "aliases"));
    return reply;
}

//  RFC 7386: null removes a field, objects merge, anything else replaces
static json_t *
s_merge_patch (json_t *target, json_t *patch)
{
    if (!json_is_object (patch))
        return json_deep_copy (patch);
    json_t *result = json_is_object (target) ? json_deep_copy (target) : json_object ();
    const char *field;
    json_t *value;
    json_object_foreach (patch, field, value) {
        if (json_is_null (value))
            json_object_del (result, field);
        else
            json_object_set_new (result, field, s_merge_patch (json_object_get (result, field), value));
    }
    return result;
}

static void
s_on_written (void *arg, redisReply *reply)
{
    write_t *write = arg;
    router_registry_t *self = write->registry;
    mesh_admin_response_t response = { 0 };
    mesh_buf_init (&response.body);
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        s_fail (&response, 503, "registry_unavailable", "The registry store (Redis) did not answer; "
                "nothing was changed.");
    else
    if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        s_fail (&response, 409, "already_exists", "\"%s\" was added meanwhile.", write->id);
    else {
        //  Ours at once; every router (this one too) reads Redis again on
        //  the message
        json_t *overlay = write->is_key ? self->keys : self->models;
        if (write->value)
            json_object_set (overlay, write->id, write->value);
        else
            json_object_del (overlay, write->id);
        char why [512];
        if (s_rebuild (self, why, sizeof why) < 0)
            mesh_warn ("registry: written, but it does not build here: %s", why);
        mesh_info ("admin: %s %s %s", write->is_key ? "key" : "model", write->id,
                   write->value ? "written" : "removed");
        s_json (&response, write->status, json_incref (write->reply));
    }
    mesh_admin_complete (write->pending, response.status, response.content_type, &response.body);
    json_decref (write->value);
    json_decref (write->reply);
    free (write->id);
    free (write);
}

//  Checks the change against everything else, then writes it to Redis.
//  value NULL removes id; stored is what the hash gets ("null" for a
//  tombstone over the file's entry, "" to delete the field).  reset drops
//  the overlay's field whatever the file has (value must be NULL).
static int
s_write (router_registry_t *self, const mesh_admin_request_t *request,
         mesh_admin_response_t *response, bool is_key, const char *id, json_t *value,
         bool only_new, bool reset, json_t *reply, int status)
{
    json_t *models = json_deep_copy (self->models);
    json_t *keys = json_deep_copy (self->keys);
    json_t *overlay = is_key ? keys : models;
    json_t *in_file = NULL;
    json_t *base_list = json_object_get (self->base, is_key ? "keys" : "models");
    size_t index;
    json_t *entry;
    json_array_foreach (base_list, index, entry)
        if (mesh_streq (json_string_value (json_object_get (entry, is_key ? "id" : "name")), id))
            in_file = entry;
    json_t *stored = value ? json_incref (value) : in_file && !reset ? json_null () : NULL;
    if (stored)
        json_object_set (overlay, id, stored);
    else
        json_object_del (overlay, id);
    json_t *doc = s_document (self->base, models, keys);
    char why [512];
    router_gen_t *gen = s_gen_build (doc, why, sizeof why);
    json_decref (doc);
    json_decref (models);
    json_decref (keys);
    if (!gen) {
        json_decref (stored);
        json_decref (reply);
        return s_fail (response, 400, "invalid_registry", "%s", why);
    }
    router_gen_unref (&gen);
    if (!self->redis || !mesh_redis_ready (self->redis)) {
        json_decref (stored);
        json_decref (reply);
        return s_fail (response, 503, "registry_unavailable",
                       "The registry store (Redis) is unavailable; nothing was changed.");
    }
    mesh_admin_pending_t *pending = mesh_admin_defer (request);
    if (!pending) {
        json_decref (stored);
        json_decref (reply);
        return s_fail (response, 500, "cannot_wait", "This transport cannot serve admin writes.");
    }
    write_t *write = calloc (1, sizeof *write);
    assert (write);
    *write = (write_t) { self, pending, is_key, strdup (id), stored, reply, status };
    char *text = stored ? json_dumps (stored, JSON_COMPACT | JSON_ENCODE_ANY) : strdup ("");
    const char *argv [] = { is_key ? KEYS_HASH : MODELS_HASH, id, text, CHANNEL, only_new ? "nx" : "" };
    if (mesh_redis_eval (self->redis, &s_write_script, s_on_written, write, 1, 5, argv, NULL) < 0)
        s_on_written (write, NULL);
    free (text);
    return 0;
}

static json_t *
s_body (const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    json_error_t error;
    json_t *body = json_loadb (request->body, request->body_len, 0, &error);
    if (!body) {
        s_fail (response, 400, "invalid_json", "The body is not valid JSON: %s (line %d, column %d).",
                error.text, error.line, error.column);
        return NULL;
    }
    if (!json_is_object (body)) {
        json_decref (body);
        s_fail (response, 400, "invalid_json", "The body must be a JSON object.");
        return NULL;
    }
    return body;
}

static int
s_models (router_registry_t *self, const mesh_admin_request_t *request,
          mesh_admin_response_t *response, const char *method, const char *name)
{
    if (!*name) {
        if (mesh_streq (method, "GET")) {
            s_json (response, 200, s_list (self, false));
            return 0;
        }
        if (!mesh_streq (method, "POST"))
            return s_fail (response, 405, "method_not_allowed", "Use GET or POST on /admin/models.");
    }
    else
    if (!s_valid_name (name, 128))
        return s_fail (response, 400, "invalid_name",
                       "Model names are 1-128 characters: letters, digits and . _ : -");
    json_t *current = *name ? s_find (self, false, name) : NULL;
    if (mesh_streq (method, "GET")) {
        if (!current)
            return s_fail (response, 404, "model_not_found", "No model \"%s\".", name);
        s_json (response, 200, s_model_view (self, current));
        return 0;
    }
    if (mesh_streq (method, "DELETE")) {
        if (!current)
            return s_fail (response, 404, "model_not_found", "No model \"%s\".", name);
        return s_write (self, request, response, false, name, NULL, false, false,
                        json_pack ("{s:s, s:b}", "name", name, "deleted", 1), 200);
    }
    if (!mesh_streq (method, "POST") && !mesh_streq (method, "PUT") && !mesh_streq (method, "PATCH"))
        return s_fail (response, 405, "method_not_allowed", "Use GET, POST, PUT, PATCH or DELETE.");
    json_t *body = s_body (request, response);
    if (!body)
        return 0;
    json_t *entry;
    if (mesh_streq (method, "PATCH")) {
        if (!current) {
            json_decref (body);
            return s_fail (response, 404, "model_not_found", "No model \"%s\".", name);
        }
        entry = s_merge_patch (current, body);
        json_decref (body);
    }
    else
        entry = body;
    const char *given = json_string_value (json_object_get (entry, "name"));
    if (!*name) {
        name = given ? given : "";
        if (!s_valid_name (name, 128)) {
            json_decref (entry);
            return s_fail (response, 400, "invalid_name",
                           "Give the model a \"name\": 1-128 letters, digits and . _ : -");
        }
        current = s_find (self, false, name);
    }
    char model_name [160];
    snprintf (model_name, sizeof model_name, "%.128s", name);
    name = model_name;          //  not into entry, which changes below
    if (given && !mesh_streq (given, name)) {
        s_fail (response, 400, "name_mismatch", "The body names \"%.128s\", the path \"%s\".",
                given, name);
        json_decref (entry);
        return 0;
    }
    if (mesh_streq (method, "POST") && current) {
        s_fail (response, 409, "already_exists", "The model \"%s\" exists; PUT or PATCH changes it.", name);
        json_decref (entry);
        return 0;
    }
    json_object_set_new (entry, "name", json_string (name));
    json_t *reply = json_deep_copy (entry);
    json_object_set_new (reply, "source", json_string ("admin"));
    int rc = s_write (self, request, response, false, name, entry, mesh_streq (method, "POST"), false,
                      reply, current ? 200 : 201);
    json_decref (entry);
    return rc;
}

//  Stores a plain key in entry as its digest only
static void
s_store_digest (json_t *entry, const char *plain)
{
    unsigned char digest [32];
    char hex [65];
    s_sha256 (plain, strlen (plain), digest);
    s_hex (digest, 32, hex);
    json_object_del (entry, "key");
    json_object_set_new (entry, "key_sha256", json_string (hex));
}

//  The id of the key a POST or PATCH writes: a POST's is the path's, the
//  body's or a new one, a PATCH's the path's; a key's id cannot change.
//  NULL, and the response filled, if refused.
static const char *
s_key_id (router_registry_t *self, mesh_admin_response_t *response, json_t *body, bool create,
          const char *id, char *made_id, size_t made_id_size)
{
    const char *given_id = json_string_value (json_object_get (body, "id"));
    if (json_object_get (body, "id") && (!given_id || (*id && !mesh_streq (given_id, id)))) {
        s_fail (response, 400, "invalid_id", "A key's id cannot change.");
        return NULL;
    }
    if (!create)
        return id;
    if (*id)
        snprintf (made_id, made_id_size, "%.70s", id);
    else
    if (given_id)
        snprintf (made_id, made_id_size, "%.70s", given_id);
    else {
        unsigned char random [6];
        RAND_bytes (random, sizeof random);
        strcpy (made_id, "key-");
        s_hex (random, sizeof random, made_id + 4);
    }
    if (!s_valid_name (made_id, 64)) {
        s_fail (response, 400, "invalid_id", "Key ids are 1-64 letters, digits and . _ : -");
        return NULL;
    }
    if (s_find (self, true, made_id)) {
        s_fail (response, 409, "already_exists", "The key \"%s\" exists; PATCH changes it.", made_id);
        return NULL;
    }
    return made_id;
}

//  The secret: given, or made here for a POST without one; only its
//  digest is stored (body's key becomes key_sha256). secret gets the plain
//  key, to be shown once, or stays as it is. False, and the response
//  filled, if refused.
static bool
s_key_secret (mesh_admin_response_t *response, json_t *body, bool create,
              char *secret, size_t secret_size)
{
    const char *plain = json_string_value (json_object_get (body, "key"));
    if (json_object_get (body, "key") && !plain) {
        s_fail (response, 400, "invalid_key", "\"key\" must be a string.");
        return false;
    }
    if (plain && json_object_get (body, "key_sha256")) {
        s_fail (response, 400, "invalid_key", "Give \"key\" or \"key_sha256\", not both.");
        return false;
    }
    char made_key [64] = "";
    if (create && !plain && !json_object_get (body, "key_sha256")) {
        unsigned char random [24];
        RAND_bytes (random, sizeof random);
        strcpy (made_key, "sk-sm-");
        s_hex (random, sizeof random, made_key + 6);
        plain = made_key;
    }
    if (plain) {
        if (strlen (plain) < 8 || strlen (plain) > 120) {
            s_fail (response, 400, "invalid_key", "Keys are 8 to 120 characters.");
            return false;
        }
        snprintf (secret, secret_size, "%s", plain);
        s_store_digest (body, plain);
    }
    return true;
}

//  The entry to store: a POST's body as it is, a PATCH merged into the
//  current entry. A new secret replaces the old one, which the file's
//  entry may hold in plain; a plain one that stays is stored as its digest
static json_t *
s_key_entry (json_t *current, json_t *body, bool create)
{
    if (create)
        return json_incref (body);
    json_t *base = json_deep_copy (current);
    if (json_object_get (body, "key_sha256"))
        json_object_del (base, "key");
    json_t *entry = s_merge_patch (base, body);
    json_decref (base);
    const char *old = json_string_value (json_object_get (entry, "key"));
    if (old)
        s_store_digest (entry, old);
    return entry;
}

//  POST (create) or PATCH of a key: the reply shows a secret made or
//  given here, once
static int
s_key_write (router_registry_t *self, const mesh_admin_request_t *request,
             mesh_admin_response_t *response, bool create, json_t *current, const char *id)
{
    json_t *body = s_body (request, response);
    if (!body)
        return 0;
    char made_id [80], secret [128] = "";
    id = s_key_id (self, response, body, create, id, made_id, sizeof made_id);
    if (!id || !s_key_secret (response, body, create, secret, sizeof secret)) {
        json_decref (body);
        return 0;
    }
    json_t *entry = s_key_entry (current, body, create);
    json_decref (body);
    json_object_set_new (entry, "id", json_string (id));
    json_t *reply = s_key_view (self, entry);
    json_object_set_new (reply, "source", json_string ("admin"));
    if (*secret)
        json_object_set_new (reply, "key", json_string (secret));
    char key_id [80];
    snprintf (key_id, sizeof key_id, "%.64s", id);
    int rc = s_write (self, request, response, true, key_id, entry, create, false, reply,
                      create ? 201 : 200);
    json_decref (entry);
    return rc;
}

static int
s_keys (router_registry_t *self, const mesh_admin_request_t *request,
        mesh_admin_response_t *response, const char *method, const char *id)
{
    if (!*id) {
        if (mesh_streq (method, "GET")) {
            s_json (response, 200, s_list (self, true));
            return 0;
        }
        if (!mesh_streq (method, "POST"))
            return s_fail (response, 405, "method_not_allowed", "Use GET or POST on /admin/keys.");
    }
    else
    if (!s_valid_name (id, 64))
        return s_fail (response, 400, "invalid_id", "Key ids are 1-64 letters, digits and . _ : -");
    json_t *current = *id ? s_find (self, true, id) : NULL;
    if (mesh_streq (method, "GET")) {
        if (!current)
            return s_fail (response, 404, "key_not_found", "No key \"%s\".", id);
        s_json (response, 200, s_key_view (self, current));
        return 0;
    }
    if (mesh_streq (method, "DELETE")) {
        if (!current)
            return s_fail (response, 404, "key_not_found", "No key \"%s\".", id);
        return s_write (self, request, response, true, id, NULL, false, false,
                        json_pack ("{s:s, s:b}", "id", id, "deleted", 1), 200);
    }
    bool create = mesh_streq (method, "POST");
    if (!create && !mesh_streq (method, "PATCH"))
        return s_fail (response, 405, "method_not_allowed", "Use GET, POST (on /admin/keys), PATCH or DELETE.");
    if (!create && !current)
        return s_fail (response, 404, "key_not_found", "No key \"%s\".", id);
    return s_key_write (self, request, response, create, current, id);
}

//  The config file's entry with this id, or NULL
static json_t *
s_file_entry (router_registry_t *self, bool is_key, const char *id)
{
    json_t *list = json_object_get (self->base, is_key ? "keys" : "models");
    size_t index;
    json_t *entry;
    json_array_foreach (list, index, entry)
        if (mesh_streq (json_string_value (json_object_get (entry, is_key ? "id" : "name")), id))
            return entry;
    return NULL;
}

//  POST /admin/models/NAME/reset, /admin/keys/ID/reset: drops the run-time
//  change of one entry, so the config file's entry is back (an entry made
//  only at run time goes); validated like any other change
static int
s_reset_entry (router_registry_t *self, const mesh_admin_request_t *request,
               mesh_admin_response_t *response, const char *method, bool is_key, const char *id)
{
    const char *what = is_key ? "key" : "model";
    if (!mesh_streq (method, "POST"))
        return s_fail (response, 405, "method_not_allowed", "Use POST to reset a %s.", what);
    if (!s_valid_name (id, is_key ? 64 : 128))
        return s_fail (response, 400, is_key ? "invalid_id" : "invalid_name", "No %s \"%.128s\".",
                       what, id);
    json_t *in_file = s_file_entry (self, is_key, id);
    json_t *change = json_object_get (is_key ? self->keys : self->models, id);
    if (!in_file && !change)
        return s_fail (response, 404, is_key ? "key_not_found" : "model_not_found",
                       "No %s \"%s\" in the config file or changed at run time.", what, id);
    json_t *reply;
    if (in_file) {
        reply = is_key ? s_key_view (self, in_file) : json_deep_copy (in_file);
        json_object_set_new (reply, "source", json_string ("config"));
    }
    else
        reply = json_pack ("{s:s, s:b}", is_key ? "id" : "name", id, "removed", 1);
    json_object_set_new (reply, "reset", json_true ());
    char copy [160];
    snprintf (copy, sizeof copy, "%s", id);
    return s_write (self, request, response, is_key, copy, NULL, false, true, reply, 200);
}

typedef struct {
    router_registry_t *registry;
    mesh_admin_pending_t *pending;
} reset_t;

static void
s_on_reset (void *arg, redisReply *reply)
{
    reset_t *reset = arg;
    router_registry_t *self = reset->registry;
    mesh_admin_response_t response = { 0 };
    mesh_buf_init (&response.body);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
    ||  reply->element [0]->type != REDIS_REPLY_INTEGER || reply->element [1]->type != REDIS_REPLY_INTEGER)
        s_fail (&response, 503, "registry_unavailable", "The registry store (Redis) did not answer; "
                "nothing was changed.");
    else {
        json_decref (self->models);
        json_decref (self->keys);
        self->models = json_object ();
        self->keys = json_object ();
        char why [512];
        if (s_rebuild (self, why, sizeof why) < 0)
            mesh_warn ("registry: reset, but the config file's registry does not build: %s", why);
        mesh_info ("admin: registry reset: %lld model and %lld key changes dropped",
                   reply->element [0]->integer, reply->element [1]->integer);
        s_json (&response, 200, json_pack ("{s:I, s:I, s:s}",
                "models_reset", (json_int_t) reply->element [0]->integer,
                "keys_reset", (json_int_t) reply->element [1]->integer,
                "version", self->gen->digest));
    }
    mesh_admin_complete (reset->pending, response.status, response.content_type, &response.body);
    free (reset);
}

//  POST /admin/registry/reset: every run-time change dropped; the config
//  file's models and keys are the registry again
static int
s_reset_registry (router_registry_t *self, const mesh_admin_request_t *request,
                  mesh_admin_response_t *response, const char *method)
{
    if (!mesh_streq (method, "POST"))
        return s_fail (response, 405, "method_not_allowed", "Use POST on /admin/registry/reset.");
    if (!self->redis || !mesh_redis_ready (self->redis))
        return s_fail (response, 503, "registry_unavailable",
                       "The registry store (Redis) is unavailable; nothing was changed.");
    mesh_admin_pending_t *pending = mesh_admin_defer (request);
    if (!pending)
        return s_fail (response, 500, "cannot_wait", "This transport cannot serve admin writes.");
    reset_t *reset = calloc (1, sizeof *reset);
    assert (reset);
    *reset = (reset_t) { self, pending };
    const char *argv [] = { MODELS_HASH, KEYS_HASH, CHANNEL };
    if (mesh_redis_eval (self->redis, &s_reset_script, s_on_reset, reset, 2, 3, argv, NULL) < 0)
        s_on_reset (reset, NULL);
    return 0;
}

static int
s_on_admin (void *arg, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    router_registry_t *self = arg;
    if (!s_authorized (self, request, response))
        return 0;
    char method [16], path [256];
    snprintf (method, sizeof method, "%.*s", (int) request->method_len, request->method);
    if (request->path_len >= sizeof path)
        return s_fail (response, 404, "not_found", "No such admin route.");
    //  Path segments come percent-encoded
    size_t len = 0;
    for (size_t i = 0; i < request->path_len; i++) {
        char c = request->path [i];
        unsigned int byte;
        if (c == '%' && i + 2 < request->path_len && isxdigit ((unsigned char) request->path [i + 1])
        &&  isxdigit ((unsigned char) request->path [i + 2])
        &&  sscanf (request->path + i + 1, "%2x", &byte) == 1 && byte != 0 && byte != '/') {
            c = (char) byte;
            i += 2;
        }
        path [len++] = c;
    }
    path [len] = 0;
    if (mesh_streq (path, "/admin/reload")) {
        if (!mesh_streq (method, "POST"))
            return s_fail (response, 405, "method_not_allowed", "Use POST on /admin/reload.");
        char why [512];
        if (router_registry_reload (self, why, sizeof why) < 0)
            return s_fail (response, 400, "invalid_config", "%s", why);
        s_json (response, 200, json_pack ("{s:s}", "version", self->gen->digest));
        return 0;
    }
    if (mesh_streq (path, "/admin/registry/reset"))
        return s_reset_registry (self, request, response, method);
    //  NAME/reset and ID/reset: names and ids have no '/'
    size_t path_len = strlen (path);
    if (path_len > 6 && mesh_streq (path + path_len - 6, "/reset")) {
        path [path_len - 6] = 0;
        if (strncmp (path, "/admin/models/", 14) == 0)
            return s_reset_entry (self, request, response, method, false, path + 14);
        if (strncmp (path, "/admin/keys/", 12) == 0)
            return s_reset_entry (self, request, response, method, true, path + 12);
        path [path_len - 6] = '/';
    }
    if (strncmp (path, "/admin/models", 13) == 0 && (path [13] == 0 || path [13] == '/'))
        return s_models (self, request, response, method, path [13] ? path + 14 : "");
    if (strncmp (path, "/admin/keys", 11) == 0 && (path [11] == 0 || path [11] == '/'))
        return s_keys (self, request, response, method, path [11] ? path + 12 : "");
    return s_fail (response, 404, "not_found", "No such admin route: %s", path);
}

void
router_registry_routes (router_registry_t *self, mesh_admin_t *admin)
{
    mesh_admin_route (admin, "/admin/", s_on_admin, self);
}

//  Selftest -----------------------------------------------------------------

static mesh_admin_response_t
s_test_call (router_registry_t *self, const char *method, const char *path, const char *body,
             const char *authorization)
{
    mesh_admin_request_t request = {
        .method = method, .method_len = strlen (method), .path = path, .path_len = strlen (path),
        .query = "", .body = body ? body : "", .body_len = body ? strlen (body) : 0,
        .authorization = authorization, .authorization_len = authorization ? strlen (authorization) : 0 };
    mesh_admin_response_t response = { 0 };
    mesh_buf_init (&response.body);
    s_on_admin (self, &request, &response);
    mesh_buf_append (&response.body, "", 1);
    return response;
}

void
router_registry_test (bool verbose)
{
    (void) verbose;
    //  Without Redis: generations, merging, the API's reads, validation
    //  and refusals (writes through Redis are proven by the integration
    //  tests against a real server)
    const char *text =
        "{ \"models\": [ { \"name\": \"a\", \"endpoint\": \"http://x/\", \"auth\": {\"type\":\"none\"},"
        "                  \"fallback\": \"b\" },"
        "                { \"name\": \"b\", \"endpoint\": \"http://y/\", \"auth\": {\"type\":\"none\"} } ],"
        "  \"aliases\": { \"first\": \"a\" },"
        "  \"keys\": [ { \"id\": \"k1\", \"key\": \"sk-first-key\", \"tenant\": \"t1\", \"rpm\": 5 } ] }";
    char why [512];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "reg.json", why, sizeof why);
    assert (config);
    router_registry_t *registry = router_registry_new (config, NULL, NULL, NULL, NULL, why, sizeof why);
    assert (registry);
    router_gen_t *gen = router_registry_current (registry);
    assert (mesh_models_count (gen->models) == 2 && router_keys_count (gen->keys) == 1);
    assert (gen->version && strlen (gen->digest) == 16);
    assert (strstr (gen->connector_json, "\"aliases\":{\"first\":\"a\"}"));
    assert (!strstr (gen->connector_json, "sk-first-key"));

    //  The overlay replaces, removes and adds; a holder keeps its generation
    router_gen_t *held = router_gen_ref (gen);
    json_object_set_new (registry->models, "b", json_pack ("{s:s, s:s, s:{s:s}}", "name", "b",
                         "endpoint", "http://z/", "auth", "type", "none"));
    json_object_set_new (registry->models, "c", json_pack ("{s:s, s:s, s:{s:s}}", "name", "c",
                         "endpoint", "ws://w/", "auth", "type", "none"));
    assert (s_rebuild (registry, why, sizeof why) == 0);
    gen = router_registry_current (registry);
    assert (gen != held && mesh_models_count (gen->models) == 3);
    assert (mesh_streq (mesh_models_find (gen->models, "b")->endpoint, "http://z/"));
    assert (mesh_streq (mesh_models_find (held->models, "b")->endpoint, "http://y/"));
    router_gen_unref (&held);
    //  Removing b breaks a's fallback: refused, the registry unchanged
    json_object_set_new (registry->models, "b", json_null ());
    assert (s_rebuild (registry, why, sizeof why) < 0);
    assert (strstr (why, "fallback"));
    assert (router_registry_current (registry) == gen);
    json_object_del (registry->models, "b");

    //  The API: the token is required; reads work; writes need Redis
    setenv ("SEEKMESH_ADMIN_TOKEN", "admin-secret", 1);
    mesh_admin_response_t response = s_test_call (registry, "GET", "/admin/models", NULL, NULL);
    assert (response.status == 401);
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "GET", "/admin/models", NULL, "Bearer wrong");
    assert (response.status == 401);
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "GET", "/admin/models", NULL, "Bearer admin-secret");
    assert (response.status == 200);
    assert (strstr (response.body.data, "\"name\":\"c\"") && strstr (response.body.data, "\"source\":\"admin\""));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "GET", "/admin/keys", NULL, "Bearer admin-secret");
    assert (response.status == 200 && !strstr (response.body.data, "sk-first-key"));
    assert (strstr (response.body.data, "\"fingerprint\":\"") && strstr (response.body.data, "\"rpm\":5"));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "GET", "/admin/models/nope", NULL, "Bearer admin-secret");
    assert (response.status == 404 && strstr (response.body.data, "model_not_found"));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "PUT", "/admin/models/d", "{\"endpoint\": \"gopher://x\"}",
                            "Bearer admin-secret");
    assert (response.status == 400 && strstr (response.body.data, "invalid_registry"));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "PUT", "/admin/models/d", "{\"name\": \"e\"}", "Bearer admin-secret");
    assert (response.status == 400 && strstr (response.body.data, "name_mismatch"));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "POST", "/admin/models", "[1]", "Bearer admin-secret");
    assert (response.status == 400 && strstr (response.body.data, "invalid_json"));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "PUT", "/admin/models/d",
                            "{\"endpoint\": \"http://d/\", \"auth\": {\"type\": \"none\"}}", "Bearer admin-secret");
    assert (response.status == 503 && strstr (response.body.data, "registry_unavailable"));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "POST", "/admin/keys", "{\"id\": \"k1\"}", "Bearer admin-secret");
    assert (response.status == 409);
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "POST", "/admin/keys", "{\"rpm\": -1}", "Bearer admin-secret");
    assert (response.status == 400 && strstr (response.body.data, "rpm"));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "DELETE", "/admin/keys/bad%2Fid", NULL, "Bearer admin-secret");
    assert (response.status == 400);
    mesh_buf_free (&response.body);
    //  Resets: validated first, then written (here: no Redis, so 503)
    response = s_test_call (registry, "POST", "/admin/models/c/reset", NULL, "Bearer admin-secret");
    assert (response.status == 503 && strstr (response.body.data, "registry_unavailable"));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "POST", "/admin/models/zzz/reset", NULL, "Bearer admin-secret");
    assert (response.status == 404 && strstr (response.body.data, "model_not_found"));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "GET", "/admin/keys/k1/reset", NULL, "Bearer admin-secret");
    assert (response.status == 405);
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "POST", "/admin/registry/reset", NULL, "Bearer admin-secret");
    assert (response.status == 503);
    mesh_buf_free (&response.body);
    //  a's fallback moved to c (made at run time): c cannot go back to nothing
    json_object_set_new (registry->models, "a", json_pack ("{s:s, s:s, s:{s:s}, s:s}", "name", "a",
                         "endpoint", "http://x/", "auth", "type", "none", "fallback", "c"));
    json_object_set_new (registry->models, "b", json_null ());
    assert (s_rebuild (registry, why, sizeof why) == 0);
    response = s_test_call (registry, "GET", "/admin/models", NULL, "Bearer admin-secret");
    assert (response.status == 200 && strstr (response.body.data, "\"removed\":[\"b\"]"));
    mesh_buf_free (&response.body);
    response = s_test_call (registry, "POST", "/admin/models/c/reset", NULL, "Bearer admin-secret");
    assert (response.status == 400 && strstr (response.body.data, "fallback"));
    mesh_buf_free (&response.body);

    unsetenv ("SEEKMESH_ADMIN_TOKEN");
    response = s_test_call (registry, "GET", "/admin/models", NULL, "Bearer admin-secret");
    assert (response.status == 403 && strstr (response.body.data, "SEEKMESH_ADMIN_TOKEN"));
    mesh_buf_free (&response.body);

    //  A merge patch
    json_t *target = json_pack ("{s:i, s:{s:i, s:i}}", "a", 1, "o", "x", 1, "y", 2);
    json_t *patch = json_pack ("{s:n, s:{s:i}, s:s}", "a", "o", "y", 3, "b", "new");
    json_t *merged = s_merge_patch (target, patch);
    assert (!json_object_get (merged, "a") && json_integer_value (json_object_get (
            json_object_get (merged, "o"), "y")) == 3 && json_object_get (json_object_get (merged, "o"), "x"));
    json_decref (target);
    json_decref (patch);
    json_decref (merged);

    router_registry_destroy (&registry);
    mesh_config_destroy (&config);

    //  A bad file is refused with the file's name
    const char *bad = "{ \"models\": [ { \"name\": \"a\" } ] }";
    config = mesh_config_parse (bad, strlen (bad), "bad.json", why, sizeof why);
    assert (!router_registry_new (config, NULL, NULL, NULL, NULL, why, sizeof why));
    assert (strstr (why, "models.0"));
    mesh_config_destroy (&config);
}
