/*  router_policy: where a request goes, and what to do when it fails there.

    - A/B models: a variant by weight, sticky per user (the same `user`
      always gets the same variant while the weights stay the same).
    - Endpoints of a model: the lowest priority with a live endpoint; within
      it, endpoints in the router's region first, then by weight.
    - Outlier ejection (per endpoint URL): after consecutive_failures
      failures in a row the endpoint is ejected for base_ejection_ms,
      doubling each time it is ejected again (up to max_ejection_ms); never
      more than max_ejection_percent of a model's endpoints at once.
    - Circuit breaker (per model): after consecutive_failures failures in a
      row the model is open for open_ms (requests go to its fallback or are
      refused at once), then half-open: one trial request decides.
    - Retry budget (Envoy's): retries in flight may not exceed
      max (min_concurrency, budget_percent of the requests in flight), so
      an outage cannot become a retry storm.
    Reactor thread only.                                                     */
#ifndef ROUTER_POLICY_H
#define ROUTER_POLICY_H

#include "mesh_config.h"
#include "mesh_metrics.h"
#include "mesh_models.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct router_policy_t router_policy_t;

router_policy_t *router_policy_new (mesh_config_t *config, mesh_metrics_t *metrics);
void  router_policy_destroy (router_policy_t **self_p);

//  The variant of an A/B model for this user (or request id when there is
//  no user); the model itself when it has no variants.
mesh_model_t *router_policy_variant (router_policy_t *self, mesh_models_t *models,
                                     mesh_model_t *model, const char *sticky);

//  An endpoint index for model, avoiding `avoid` (an index, or -1) when
//  another is live; -1 when every endpoint is ejected.
int   router_policy_endpoint (router_policy_t *self, const mesh_model_t *model, int avoid,
                              int64_t now_ms);
//  True when the model's breaker lets a request through (closed, or the
//  half-open trial).
bool  router_policy_admit (router_policy_t *self, const mesh_model_t *model, int64_t now_ms);

//  What happened on an endpoint: success resets its failure count and the
//  model's breaker; a failure blamed on the endpoint counts towards both.
void  router_policy_success (router_policy_t *self, const mesh_model_t *model, uint32_t endpoint,
                             int64_t now_ms);
void  router_policy_failure (router_policy_t *self, const mesh_model_t *model, uint32_t endpoint,
                             bool endpoint_fault, int64_t now_ms);

//  Retry budget: may one more retry start, with `active` requests in
//  flight?  retry_begin/_end count the retries in flight.
bool  router_policy_retry_allowed (router_policy_t *self, size_t active);
void  router_policy_retry_begin (router_policy_t *self);
void  router_policy_retry_end (router_policy_t *self);
//  How many tries a request gets on one model, retries included.
uint32_t router_policy_max_tries (router_policy_t *self);

void  router_policy_test (bool verbose);

#endif
