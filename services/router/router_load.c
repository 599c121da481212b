/*  router_load: see router_load.h.                                         */
#include "router_load.h"
#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_settings.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    int64_t waiting;
    mesh_metric_t *depth;
    //  The last `window` outcomes, as a ring of error flags
    bool *ring;
    size_t filled, at, errors;
    int over, under;            //  requests in a row over / at or under
    bool scale_out;
    mesh_metric_t *ratio;
    mesh_metric_t *hint;
} model_t;

struct router_load_t {
    mesh_metrics_t *metrics;
    mesh_map_t *models;         //  name -> model_t
    size_t window;
    double threshold;           //  a share, 0.05
    int consecutive;
};

router_load_t *
router_load_new (mesh_config_t *config, mesh_metrics_t *metrics)
{
    router_load_t *self = calloc (1, sizeof *self);
    assert (self);
    self->metrics = metrics;
    self->models = mesh_map_new ();
    self->window = (size_t) mesh_setting_int (config, "router.scale.window");
    self->threshold = (double) mesh_setting_int (config, "router.scale.error_percent") / 100.0;
    self->consecutive = (int) mesh_setting_int (config, "router.scale.consecutive");
    return self;
}

void
router_load_destroy (router_load_t **self_p)
{
    assert (self_p);
    router_load_t *self = *self_p;
    if (!self)
        return;
    size_t cursor = 0;
    model_t *model;
    while ((model = mesh_map_next (self->models, &cursor, NULL))) {
        free (model->name);
        free (model->ring);
        free (model);
    }
    mesh_map_destroy (&self->models);
    free (self);
    *self_p = NULL;
}

static model_t *
s_model (router_load_t *self, const char *name)
{
    model_t *model = mesh_map_get (self->models, name);
    if (model)
        return model;
    model = calloc (1, sizeof *model);
    assert (model);
    model->name = strdup (name);
    model->ring = calloc (self->window, sizeof *model->ring);
    assert (model->name && model->ring);
    //  Names come from the registry; quotes and backslashes are dropped all the same
    char label [300];
    size_t len = 0;
    for (const char *p = name; *p && len + 1 < 256; p++)
        if (*p != '"' && *p != '\\' && *p != '\n')
            label [len++] = *p;
    label [len] = 0;
    char labels [320];
    snprintf (labels, sizeof labels, "model=\"%s\"", label);
    if (self->metrics) {
        model->depth = mesh_metrics_gauge (self->metrics, "seekmesh_router_queue_depth",
            "Requests waiting for their quota decision or for a connector with free credit, by model.",
            labels);
        model->ratio = mesh_metrics_gauge (self->metrics, "seekmesh_router_error_ratio",
            "Share of server errors (5xx) among the model's last router.scale.window requests.", labels);
        model->hint = mesh_metrics_gauge (self->metrics, "seekmesh_router_scale_out",
            "1 while the error ratio has been over router.scale.error_percent for "
            "router.scale.consecutive requests in a row: add routers and connectors.", labels);
    }
    mesh_map_put (self->models, model->name, model);
    return model;
}

void
router_load_wait (router_load_t *self, const char *name, int delta)
{
    model_t *model = s_model (self, name);
    model->waiting += delta;
    assert (model->waiting >= 0);
    if (model->depth)
        mesh_metric_set (model->depth, (double) model->waiting);
}

void
router_load_outcome (router_load_t *self, const char *name, int status)
{
    model_t *model = s_model (self, name);
    bool error = status >= 500;
    if (model->filled == self->window)
        model->errors -= model->ring [model->at];
    else
        model->filled++;
    model->ring [model->at] = error;
    model->errors += error;
    model->at = (model->at + 1) % self->window;
    double ratio = (double) model->errors / (double) model->filled;
    if (ratio > self->threshold) {
        model->over++;
        model->under = 0;
    }
    else {
        model->under++;
        model->over = 0;
    }
    if (!model->scale_out && model->over >= self->consecutive) {
        model->scale_out = true;
        mesh_warn ("model %s: %.0f%% of its last %zu requests failed: scale out", model->name,
                   ratio * 100, model->filled);
    }
    else
    if (model->scale_out && model->under >= self->consecutive) {
        model->scale_out = false;
        mesh_info ("model %s: errors back under %.0f%%", model->name, self->threshold * 100);
    }
    if (model->ratio) {
        mesh_metric_set (model->ratio, ratio);
        mesh_metric_set (model->hint, model->scale_out ? 1 : 0);
    }
}

bool
router_load_scale_out (router_load_t *self, const char *name)
{
    model_t *model = mesh_map_get (self->models, name);
    return model && model->scale_out;
}

void
router_load_test (bool verbose)
{
    (void) verbose;
    const char *text = "{ \"router\": { \"scale\": { \"window\": 20, \"error_percent\": 5, \"consecutive\": 5 } } }";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "l.json", why, sizeof why);
    mesh_metrics_t *metrics = mesh_metrics_new ();
    router_load_t *load = router_load_new (config, metrics);

    //  Queue depth per model
    router_load_wait (load, "m", 1);
    router_load_wait (load, "m", 1);
    router_load_wait (load, "n", 1);
    router_load_wait (load, "m", -1);
    assert (mesh_metric_value (mesh_metrics_gauge (metrics, "seekmesh_router_queue_depth", NULL,
                                                   "model=\"m\"")) == 1);

    //  Successes: no hint.  One error in 20 is 5 %, not over
    for (int i = 0; i < 19; i++)
        router_load_outcome (load, "m", 200);
    router_load_outcome (load, "m", 503);
    assert (!router_load_scale_out (load, "m"));
    //  A second: 10 % after each of the next requests; the hint after 5 of them
    router_load_outcome (load, "m", 502);
    for (int i = 0; i < 3; i++) {
        router_load_outcome (load, "m", 200);
        assert (!router_load_scale_out (load, "m"));
    }
    router_load_outcome (load, "m", 200);
    assert (router_load_scale_out (load, "m"));
    assert (mesh_metric_value (mesh_metrics_gauge (metrics, "seekmesh_router_scale_out", NULL,
                                                   "model=\"m\"")) == 1);
    //  Client errors are not the mesh's: they never count
    assert (!router_load_scale_out (load, "n"));
    for (int i = 0; i < 30; i++)
        router_load_outcome (load, "n", i % 2 ? 429 : 404);
    assert (!router_load_scale_out (load, "n"));
    //  Once the errors leave the window, 5 more requests clear the hint
    for (int i = 0; i < 20; i++)
        router_load_outcome (load, "m", 200);
    assert (!router_load_scale_out (load, "m"));
    assert (mesh_metric_value (mesh_metrics_gauge (metrics, "seekmesh_router_error_ratio", NULL,
                                                   "model=\"m\"")) == 0);
    router_load_destroy (&load);
    router_load_destroy (&load);
    mesh_metrics_destroy (&metrics);
    mesh_config_destroy (&config);
}
