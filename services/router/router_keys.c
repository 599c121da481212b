/*  router_keys: client key digests, sorted for lookup.                      */
#include "router_keys.h"
#include "mesh_util.h"

#include <assert.h>
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct router_keys_t {
    router_key_t *keys;
    size_t count;
};

static int
s_compare (const void *a, const void *b)
{
    return memcmp (((const router_key_t *) a)->digest, ((const router_key_t *) b)->digest, 32);
}

static int
s_hex_digest (const char *hex, unsigned char digest [32])
{
    if (strlen (hex) != 64)
        return -1;
    for (int i = 0; i < 32; i++) {
        unsigned int byte;
        if (!isxdigit ((unsigned char) hex [2 * i]) || !isxdigit ((unsigned char) hex [2 * i + 1])
        ||  sscanf (hex + 2 * i, "%2x", &byte) != 1)
            return -1;
        digest [i] = (unsigned char) byte;
    }
    return 0;
}

int64_t
router_keys_period (const char *name)
{
    return mesh_streq (name, "hour") ? 3600
         : mesh_streq (name, "day") ? 86400
         : mesh_streq (name, "month") ? 31 * 86400 : 0;
}

const char *
router_keys_period_name (int64_t period_s)
{
    return period_s == 3600 ? "hour" : period_s == 86400 ? "day" : "month";
}

router_keys_t *
router_keys_load (mesh_config_t *config, mesh_models_t *models)
{
    router_keys_t *self = calloc (1, sizeof *self);
    assert (self);
    size_t count = mesh_config_array_size (config, "keys");
    self->keys = calloc (count ? count : 1, sizeof *self->keys);
    assert (self->keys);
    for (size_t i = 0; i < count; i++) {
        char path [64];
#define AT(field) (snprintf (path, sizeof path, "keys.%zu.%s", i, field), path)
        router_key_t *key = &self->keys [self->count];
        static const char *const fields [] = {
            "id", "key", "key_sha256", "tenant", "models", "rpm", "tpm", "budget", "budget_period", NULL
        };
        snprintf (path, sizeof path, "keys.%zu", i);
        if (mesh_config_only (config, path, fields) < 0)
            continue;
        const char *plain = mesh_config_str (config, AT ("key"), NULL);
        const char *hex = mesh_config_str (config, AT ("key_sha256"), NULL);
        if ((plain != NULL) == (hex != NULL)) {
            mesh_config_invalid (config, AT ("key"), "give exactly one of key and key_sha256");
            continue;
        }
        if (plain) {
            if (strlen (plain) < 8) {
                mesh_config_invalid (config, AT ("key"), "keys are at least 8 characters");
                continue;
            }
            EVP_Digest (plain, strlen (plain), key->digest, NULL, EVP_sha256 (), NULL);
        }
        else
        if (s_hex_digest (hex, key->digest) < 0) {
            mesh_config_invalid (config, AT ("key_sha256"), "expected 64 hex digits");
            continue;
        }
        snprintf (path, sizeof path, "keys.%zu", i);
        key->id = mesh_config_str (config, AT ("id"), NULL);
        if (!key->id)
            key->id = "";
        key->tenant = mesh_config_str (config, AT ("tenant"), "default");
        if (strlen (key->id) > 64 || strlen (key->tenant) > 127) {
            mesh_config_invalid (config, AT ("id"), "ids are at most 64 bytes, tenants 127");
            continue;
        }
        key->rpm = mesh_config_int (config, AT ("rpm"), 0);
        key->tpm = mesh_config_int (config, AT ("tpm"), 0);
        key->budget = mesh_config_int (config, AT ("budget"), 0);
        const char *period = mesh_config_str (config, AT ("budget_period"), ROUTER_KEYS_DEFAULT_PERIOD);
        key->budget_period_s = router_keys_period (period);
        if (key->rpm < 0 || key->tpm < 0 || key->budget < 0) {
            mesh_config_invalid (config, path, "rpm, tpm and budget are 0 (no limit) or more");
            continue;
        }
        if (!key->budget_period_s) {
            mesh_config_invalid (config, AT ("budget_period"), "expected \"hour\", \"day\" or \"month\"");
            continue;
        }
        snprintf (path, sizeof path, "keys.%zu", i);
        json_t *allowed = mesh_config_node (config, AT ("models"));
        if (allowed) {
            if (!json_is_array (allowed)) {
                mesh_config_invalid (config, path, "expected an array of model names");
                continue;
            }
            key->allowed = calloc (mesh_models_count (models) + 1, sizeof (bool));
            assert (key->allowed);
            size_t k;
            json_t *name;
            json_array_foreach (allowed, k, name) {
                mesh_model_t *model = json_is_string (name)
                                    ? mesh_models_find (models, json_string_value (name)) : NULL;
                if (!model)
                    mesh_config_invalid (config, path, "allows an unknown model");
                else
                    key->allowed [model->index] = true;
            }
        }
        self->count++;
    }
    qsort (self->keys, self->count, sizeof *self->keys, s_compare);
    for (size_t i = 1; i < self->count; i++)
        if (memcmp (self->keys [i].digest, self->keys [i - 1].digest, 32) == 0)
            mesh_config_invalid (config, "keys", "the same key is configured twice");
    return self;
}

void
router_keys_destroy (router_keys_t **self_p)
{
    assert (self_p);
    router_keys_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->count; i++)
        free (self->keys [i].allowed);
    free (self->keys);
    free (self);
    *self_p = NULL;
}

size_t
router_keys_count (router_keys_t *self)
{
    return self->count;
}

const router_key_t *
router_keys_at (router_keys_t *self, size_t index)
{
    return index < self->count ? &self->keys [index] : NULL;
}

const router_key_t *
router_keys_find (router_keys_t *self, const void *digest, size_t digest_size)
{
    if (digest_size != 32 || self->count == 0)
        return NULL;
    size_t low = 0, high = self->count;
    while (high - low > 1) {
        size_t mid = (low + high) / 2;
        if (memcmp (self->keys [mid].digest, digest, 32) <= 0)
            low = mid;
        else
            high = mid;
    }
    //  The search only narrows down by digest; equality is decided in
    //  constant time
    return CRYPTO_memcmp (self->keys [low].digest, digest, 32) == 0 ? &self->keys [low] : NULL;
}

bool
router_key_allows (const router_key_t *key, const mesh_model_t *model)
{
    return !key->allowed || key->allowed [model->index];
}

void
router_keys_test (bool verbose)
{
    (void) verbose;
    const char *text =
        "{ \"models\": [ { \"name\": \"a\", \"endpoint\": \"http://x/\", \"auth\": {\"type\":\"none\"} },"
        "                { \"name\": \"b\", \"endpoint\": \"http://x/\", \"auth\": {\"type\":\"none\"} } ],"
        "  \"keys\": [ { \"id\": \"k1\", \"key\": \"sk-first-key\", \"tenant\": \"t1\","
        "                \"rpm\": 600, \"tpm\": 90000, \"budget\": 5000, \"budget_period\": \"month\" },"
        "              { \"id\": \"k2\", \"key_sha256\": "
        "                \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\","
        "                \"models\": [\"b\"] } ] }";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "keys.json", why, sizeof why);
    assert (config);
    mesh_models_t *models = mesh_models_load (config);
    router_keys_t *keys = router_keys_load (config, models);
    assert (mesh_config_failed (config) == NULL);
    assert (router_keys_count (keys) == 2);

    unsigned char digest [32];
    EVP_Digest ("sk-first-key", 12, digest, NULL, EVP_sha256 (), NULL);
    const router_key_t *key = router_keys_find (keys, digest, 32);
    assert (key && mesh_streq (key->id, "k1") && mesh_streq (key->tenant, "t1"));
    assert (key->rpm == 600 && key->tpm == 90000 && key->budget == 5000);
    assert (key->budget_period_s == router_keys_period ("month"));
    assert (router_key_allows (key, mesh_models_find (models, "a")));
    EVP_Digest ("test", 4, digest, NULL, EVP_sha256 (), NULL);     //  the hex above
    key = router_keys_find (keys, digest, 32);
    assert (key && mesh_streq (key->id, "k2") && mesh_streq (key->tenant, "default"));
    assert (key->rpm == 0 && key->budget == 0 && key->budget_period_s == 86400);
    assert (!router_key_allows (key, mesh_models_find (models, "a")));
    assert (router_key_allows (key, mesh_models_find (models, "b")));
    digest [0] ^= 1;
    assert (router_keys_find (keys, digest, 32) == NULL);
    assert (router_keys_find (keys, digest, 31) == NULL);
    router_keys_destroy (&keys);
    mesh_models_destroy (&models);
    mesh_config_destroy (&config);

    const char *bad_period = "{ \"keys\": [ { \"key\": \"sk-long-enough\", \"budget_period\": \"week\" } ] }";
    config = mesh_config_parse (bad_period, strlen (bad_period), "p.json", why, sizeof why);
    models = mesh_models_load (config);
    keys = router_keys_load (config, models);
    assert (strstr (mesh_config_failed (config), "keys.0.budget_period"));
    router_keys_destroy (&keys);
    mesh_models_destroy (&models);
    mesh_config_destroy (&config);

    const char *bad = "{ \"keys\": [ { \"key\": \"short\" } ] }";
    config = mesh_config_parse (bad, strlen (bad), "bad.json", why, sizeof why);
    models = mesh_models_load (config);
    keys = router_keys_load (config, models);
    assert (strstr (mesh_config_failed (config), "keys.0.key"));
    router_keys_destroy (&keys);
    mesh_models_destroy (&models);
    mesh_config_destroy (&config);
}
