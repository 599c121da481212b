/*  fuzz_config: mesh_config_parse on arbitrary config text, then the model
    registry and the keys built from it (mesh_models_load, router_keys_load:
    what the router does with its file and with the live registry's
    document from Redis), then all destroyed.

    Property: no crash, leak or UB; a rejected file says why; every model
    the registry keeps has a name and is found again by it; it either has
    endpoints, each parsed with a host and a port in range, or is an A/B
    split whose variants are models with endpoints; every alias is found
    again and leads to its model; every key kept has limits >= 0 and a
    budget period, and is found again by its digest; the settings check
    passes or says why, and the effective configuration is a JSON object.  */
#include "fuzz.h"
#include "mesh_config.h"
#include "mesh_models.h"
#include "mesh_settings.h"
#include "router/router_keys.h"

#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char error [512] = "";
    mesh_config_t *config = mesh_config_parse ((const char *) data, size, "fuzz.json",
                                               error, sizeof error);
    if (!config) {
        FUZZ_ASSERT (error [0] && memchr (error, 0, sizeof error));
        return 0;
    }
    mesh_models_t *models = mesh_models_load (config);
    FUZZ_ASSERT (models);
    for (size_t i = 0; i < mesh_models_count (models); i++) {
        mesh_model_t *model = mesh_models_at (models, i);
        FUZZ_ASSERT (model && model->index == i);
        FUZZ_ASSERT (model->name && model->name [0]);
        FUZZ_ASSERT (mesh_models_find (models, model->name) == model);
        FUZZ_ASSERT ((model->endpoint_count > 0) != (model->variant_count > 0));
        for (size_t k = 0; k < model->endpoint_count; k++) {
            const mesh_url_t *url = &model->endpoints [k].url;
            FUZZ_ASSERT (model->endpoints [k].text && url->host [0]);
            FUZZ_ASSERT (url->port > 0 && url->port <= 65535);
            FUZZ_ASSERT (url->path [0] == '/');
            FUZZ_ASSERT (memchr (url->host_header, 0, sizeof url->host_header));
            FUZZ_ASSERT (model->endpoints [k].weight >= 1 && model->endpoints [k].priority >= 0);
        }
        if (!mesh_config_failed (config))
            for (size_t k = 0; k < model->variant_count; k++) {
                mesh_model_t *target = mesh_models_find (models, model->variants [k].model);
                FUZZ_ASSERT (target && target->endpoint_count > 0 && model->variants [k].weight >= 1);
            }
    }
    FUZZ_ASSERT (mesh_models_at (models, mesh_models_count (models)) == NULL);
    for (size_t i = 0; i < mesh_models_alias_count (models); i++) {
        const char *alias = NULL;
        mesh_model_t *model = mesh_models_alias_at (models, i, &alias);
        FUZZ_ASSERT (model && alias && alias [0]);
        FUZZ_ASSERT (mesh_models_find (models, alias) == model);
    }
    router_keys_t *keys = router_keys_load (config, models);
    FUZZ_ASSERT (keys);
    for (size_t i = 0; i < router_keys_count (keys); i++) {
        const router_key_t *at = router_keys_at (keys, i);
        const router_key_t *key = router_keys_find (keys, at->digest, 32);
        FUZZ_ASSERT (key && memcmp (key->digest, at->digest, 32) == 0);
        FUZZ_ASSERT (at->rpm >= 0 && at->tpm >= 0 && at->budget >= 0);
        FUZZ_ASSERT (at->budget_period_s > 0 && at->id && at->tenant);
    }
    router_keys_destroy (&keys);
    //  The settings: checked whole, then the effective configuration is
    //  JSON whatever the file held
    int checked = mesh_settings_check (config);
    FUZZ_ASSERT (checked == 0 || mesh_config_failed (config));
    char *effective = mesh_settings_effective (config);
    json_t *parsed = effective ? json_loads (effective, 0, NULL) : NULL;
    FUZZ_ASSERT (json_is_object (parsed));
    json_decref (parsed);
    free (effective);
    const char *failed = mesh_config_failed (config);
    FUZZ_ASSERT (!failed || failed [0]);
    mesh_models_destroy (&models);
    mesh_models_destroy (&models);
    mesh_config_destroy (&config);
    FUZZ_ASSERT (!models && !config);
    return 0;
}
