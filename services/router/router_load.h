/*  router_load: what says the mesh needs more of itself, per model.

    The queue depth: requests this router holds that are waiting, for
    their quota decision (a Redis round trip) or for a connector with free
    credit (router.queue_timeout_ms), as seekmesh_router_queue_depth{model}
    (the gauge a HorizontalPodAutoscaler or KEDA scales on).

    The scale-out hint, the seed's "error rate over 5 % across 5
    consecutive requests": each finished request of a model (its status)
    updates the share of server errors (5xx) among the model's last
    router.scale.window requests, seekmesh_router_error_ratio{model}; once
    that share has been over router.scale.error_percent after each of
    router.scale.consecutive requests in a row, seekmesh_router_scale_out
    {model} is 1, and it is 0 again after as many requests in a row at or
    under it.  Reactor thread only.                                        */
#ifndef ROUTER_LOAD_H
#define ROUTER_LOAD_H

#include "mesh_config.h"
#include "mesh_metrics.h"

#include <stdbool.h>

typedef struct router_load_t router_load_t;

router_load_t *router_load_new (mesh_config_t *config, mesh_metrics_t *metrics);
void router_load_destroy (router_load_t **self_p);

//  A request of model starts (+1) or stops (-1) waiting
void router_load_wait (router_load_t *self, const char *model, int delta);
//  A request of model ended with this HTTP status
void router_load_outcome (router_load_t *self, const char *model, int status);
//  The scale-out hint of model, as the gauge says it
bool router_load_scale_out (router_load_t *self, const char *model);

void router_load_test (bool verbose);

#endif
