/*  fuzz_config: mesh_config_parse on arbitrary config text, then the model
    registry built from it (mesh_models_load), then both destroyed.

    Property: no crash, leak or UB; a rejected file says why; every model
    the registry keeps has a name, a parsed endpoint with a host and a port
    in range, and is found again by its name; every alias is found again
    and leads to its model.                                                  */
#include "fuzz.h"
#include "mesh_config.h"
#include "mesh_models.h"

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
        FUZZ_ASSERT (model->endpoint && model->url.host [0]);
        FUZZ_ASSERT (model->url.port > 0 && model->url.port <= 65535);
        FUZZ_ASSERT (model->url.path [0] == '/');
        FUZZ_ASSERT (memchr (model->url.host_header, 0, sizeof model->url.host_header));
    }
    FUZZ_ASSERT (mesh_models_at (models, mesh_models_count (models)) == NULL);
    for (size_t i = 0; i < mesh_models_alias_count (models); i++) {
        const char *alias = NULL;
        mesh_model_t *model = mesh_models_alias_at (models, i, &alias);
        FUZZ_ASSERT (model && alias && alias [0]);
        FUZZ_ASSERT (mesh_models_find (models, alias) == model);
    }
    const char *failed = mesh_config_failed (config);
    FUZZ_ASSERT (!failed || failed [0]);
    mesh_models_destroy (&models);
    mesh_models_destroy (&models);
    mesh_config_destroy (&config);
    FUZZ_ASSERT (!models && !config);
    return 0;
}
