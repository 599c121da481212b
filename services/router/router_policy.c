/*  router_policy: variants, endpoint choice, outlier ejection, circuit
    breakers and the retry budget.                                          */
#include "router_policy.h"
#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_settings.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Health of one endpoint URL
typedef struct {
    char *url;
    int64_t failures;           //  in a row
    int64_t ejections;          //  times ejected without a success since
    int64_t ejected_until_ms;
    mesh_metric_t *ejected_total;
} endpoint_health_t;

enum { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

typedef struct {
    char *model;
    int state;
    int64_t failures;
    int64_t open_until_ms;
    bool trial_out;             //  the half-open trial is in flight
    int64_t trial_ms;           //  ... since then (a lost trial is given up)
    mesh_metric_t *state_gauge;
} breaker_t;

struct router_policy_t {
    mesh_metrics_t *metrics;
    const char *region;
    uint32_t max_tries;
    int64_t budget_percent;
    int64_t min_retry_concurrency;
    int64_t retries_active;
    int64_t eject_after;
    int64_t base_ejection_ms;
    int64_t max_ejection_ms;
    int64_t max_ejection_percent;
    int64_t breaker_after;
    int64_t breaker_open_ms;
    mesh_map_t *health;         //  url -> endpoint_health_t
    mesh_map_t *breakers;       //  model name -> breaker_t
    unsigned int seed;
    mesh_metric_t *retries;
    mesh_metric_t *retries_refused;
};

router_policy_t *
router_policy_new (mesh_config_t *config, mesh_metrics_t *metrics)
{
    router_policy_t *self = calloc (1, sizeof *self);
    assert (self);
    self->metrics = metrics;
    self->region = mesh_setting_str (config, "router.region");
    self->max_tries = (uint32_t) mesh_setting_int (config, "router.retry.max_tries");
    self->budget_percent = mesh_setting_int (config, "router.retry.budget_percent");
    self->min_retry_concurrency = mesh_setting_int (config, "router.retry.min_concurrency");
    self->eject_after = mesh_setting_int (config, "router.outlier.consecutive_failures");
    self->base_ejection_ms = mesh_setting_int (config, "router.outlier.base_ejection_ms");
    self->max_ejection_ms = mesh_setting_int (config, "router.outlier.max_ejection_ms");
    self->max_ejection_percent = mesh_setting_int (config, "router.outlier.max_ejection_percent");
    self->breaker_after = mesh_setting_int (config, "router.breaker.consecutive_failures");
    self->breaker_open_ms = mesh_setting_int (config, "router.breaker.open_ms");
    if (self->max_tries < 1 || self->budget_percent < 0 || self->min_retry_concurrency < 0
    ||  self->eject_after < 1 || self->base_ejection_ms < 1 || self->max_ejection_ms < self->base_ejection_ms
    ||  self->max_ejection_percent < 0 || self->max_ejection_percent > 100
    ||  self->breaker_after < 1 || self->breaker_open_ms < 1)
        mesh_config_invalid (config, "router", "retry, outlier and breaker settings must be positive "
                             "(max_ejection_percent 0-100, max_ejection_ms >= base_ejection_ms)");
    self->health = mesh_map_new ();
    self->breakers = mesh_map_new ();
    self->seed = (unsigned int) (uintptr_t) self ^ 0x5eed;
    if (metrics) {
        self->retries = mesh_metrics_counter (metrics, "seekmesh_router_retries_total",
            "Requests sent again after a failure before the first byte.", "result=\"sent\"");
        self->retries_refused = mesh_metrics_counter (metrics, "seekmesh_router_retries_total",
            NULL, "result=\"over_budget\"");
    }
    return self;
}

void
router_policy_destroy (router_policy_t **self_p)
{
    assert (self_p);
    router_policy_t *self = *self_p;
    if (!self)
        return;
    size_t cursor = 0;
    endpoint_health_t *health;
    while ((health = mesh_map_next (self->health, &cursor, NULL))) {
        free (health->url);
        free (health);
    }
    mesh_map_destroy (&self->health);
    cursor = 0;
    breaker_t *breaker;
    while ((breaker = mesh_map_next (self->breakers, &cursor, NULL))) {
        free (breaker->model);
        free (breaker);
    }
    mesh_map_destroy (&self->breakers);
    free (self);
    *self_p = NULL;
}

static endpoint_health_t *
s_health (router_policy_t *self, const char *url)
{
    endpoint_health_t *health = mesh_map_get (self->health, url);
    if (!health) {
        health = calloc (1, sizeof *health);
        assert (health);
        health->url = strdup (url);
        mesh_map_put (self->health, health->url, health);
        if (self->metrics) {
            char labels [600];
            snprintf (labels, sizeof labels, "endpoint=\"%.500s\"", url);
            health->ejected_total = mesh_metrics_counter (self->metrics,
                "seekmesh_router_endpoint_ejections_total", "Endpoint ejections after consecutive failures.",
                labels);
        }
    }
    return health;
}

static breaker_t *
s_breaker (router_policy_t *self, const char *model)
{
    breaker_t *breaker = mesh_map_get (self->breakers, model);
    if (!breaker) {
        breaker = calloc (1, sizeof *breaker);
        assert (breaker);
        breaker->model = strdup (model);
        mesh_map_put (self->breakers, breaker->model, breaker);
        if (self->metrics) {
            char labels [300];
            snprintf (labels, sizeof labels, "model=\"%.250s\"", model);
            breaker->state_gauge = mesh_metrics_gauge (self->metrics, "seekmesh_router_breaker_open",
                "1 while a model's circuit breaker is open or half-open.", labels);
        }
    }
    return breaker;
}

static uint64_t
s_hash (const char *text)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *) text; *p; p++)
        hash = (hash ^ *p) * 0x100000001b3ull;
    return hash;
}

mesh_model_t *
router_policy_variant (router_policy_t *self, mesh_models_t *models, mesh_model_t *model,
                       const char *sticky)
{
    (void) self;
    if (!model->variant_count)
        return model;
    int64_t total = 0;
    for (size_t i = 0; i < model->variant_count; i++)
        total += model->variants [i].weight;
    int64_t bucket = (int64_t) (s_hash (sticky) % (uint64_t) total);
    for (size_t i = 0; i < model->variant_count; i++) {
        bucket -= model->variants [i].weight;
        if (bucket < 0)
            return mesh_models_find (models, model->variants [i].model);
    }
    return mesh_models_find (models, model->variants [0].model);
}

static bool
s_ejected (router_policy_t *self, const mesh_endpoint_t *endpoint, int64_t now_ms)
{
    endpoint_health_t *health = mesh_map_get (self->health, endpoint->text);
    return health && health->ejected_until_ms > now_ms;
}

int
router_policy_endpoint (router_policy_t *self, const mesh_model_t *model, int avoid, int64_t now_ms)
{
    //  Two passes: without the endpoint to avoid, then with it
    for (int pass = 0; pass < 2; pass++) {
        int64_t best_priority = INT64_MAX;
        for (size_t i = 0; i < model->endpoint_count; i++)
            if (!s_ejected (self, &model->endpoints [i], now_ms) && (int) i != (pass ? -2 : avoid)
            &&  model->endpoints [i].priority < best_priority)
                best_priority = model->endpoints [i].priority;
        if (best_priority == INT64_MAX)
            continue;
        //  In that priority: our region's endpoints if there are any
        bool local = false;
        for (size_t i = 0; i < model->endpoint_count; i++)
            if (model->endpoints [i].priority == best_priority && *self->region
            &&  mesh_streq (model->endpoints [i].region, self->region)
            &&  !s_ejected (self, &model->endpoints [i], now_ms) && (int) i != (pass ? -2 : avoid))
                local = true;
        int64_t total = 0;
        for (size_t i = 0; i < model->endpoint_count; i++) {
            const mesh_endpoint_t *e = &model->endpoints [i];
            if (e->priority == best_priority && !s_ejected (self, e, now_ms) && (int) i != (pass ? -2 : avoid)
            &&  (!local || mesh_streq (e->region, self->region)))
                total += e->weight;
        }
        int64_t pick = rand_r (&self->seed) % total;
        for (size_t i = 0; i < model->endpoint_count; i++) {
            const mesh_endpoint_t *e = &model->endpoints [i];
            if (e->priority == best_priority && !s_ejected (self, e, now_ms) && (int) i != (pass ? -2 : avoid)
            &&  (!local || mesh_streq (e->region, self->region))) {
                pick -= e->weight;
                if (pick < 0)
                    return (int) i;
            }
        }
    }
    return -1;
}

bool
router_policy_admit (router_policy_t *self, const mesh_model_t *model, int64_t now_ms)
{
    breaker_t *breaker = mesh_map_get (self->breakers, model->name);
    if (!breaker || breaker->state == BREAKER_CLOSED)
        return true;
    if (breaker->state == BREAKER_OPEN && now_ms >= breaker->open_until_ms) {
        breaker->state = BREAKER_HALF_OPEN;
        breaker->trial_out = false;
    }
    if (breaker->state == BREAKER_HALF_OPEN
    &&  (!breaker->trial_out || now_ms - breaker->trial_ms >= self->breaker_open_ms)) {
        breaker->trial_out = true;      //  one request finds out
        breaker->trial_ms = now_ms;
        return true;
    }
    return false;
}

void
router_policy_success (router_policy_t *self, const mesh_model_t *model, uint32_t endpoint,
                       int64_t now_ms)
{
    (void) now_ms;
    if (endpoint < model->endpoint_count) {
        endpoint_health_t *health = mesh_map_get (self->health, model->endpoints [endpoint].text);
        if (health) {
            health->failures = 0;
            health->ejections = 0;
        }
    }
    breaker_t *breaker = mesh_map_get (self->breakers, model->name);
    if (breaker && breaker->state != BREAKER_CLOSED)
        mesh_info ("model %s: circuit closed", model->name);
    if (breaker) {
        breaker->state = BREAKER_CLOSED;
        breaker->failures = 0;
        breaker->trial_out = false;
        if (breaker->state_gauge)
            mesh_metric_set (breaker->state_gauge, 0);
    }
}

void
router_policy_failure (router_policy_t *self, const mesh_model_t *model, uint32_t endpoint,
                       bool endpoint_fault, int64_t now_ms)
{
    if (!endpoint_fault) {
        //  Says nothing about the upstream's health (a 429, a cancel):
        //  a half-open breaker lets the next request decide
        breaker_t *breaker = mesh_map_get (self->breakers, model->name);
        if (breaker)
            breaker->trial_out = false;
        return;
    }
    if (endpoint < model->endpoint_count) {
        const mesh_endpoint_t *e = &model->endpoints [endpoint];
        endpoint_health_t *health = s_health (self, e->text);
        if (++health->failures >= self->eject_after && health->ejected_until_ms <= now_ms) {
            size_t ejected = 0;
            for (size_t i = 0; i < model->endpoint_count; i++)
                ejected += s_ejected (self, &model->endpoints [i], now_ms);
            if ((int64_t) (ejected + 1) * 100 <= self->max_ejection_percent * (int64_t) model->endpoint_count) {
                int64_t ms = self->base_ejection_ms;
                for (int64_t k = 0; k < health->ejections && ms < self->max_ejection_ms; k++)
                    ms *= 2;
                if (ms > self->max_ejection_ms)
                    ms = self->max_ejection_ms;
                health->ejected_until_ms = now_ms + ms;
                health->ejections++;
                health->failures = 0;
                if (health->ejected_total)
                    mesh_metric_inc (health->ejected_total);
                mesh_warn ("endpoint %s ejected for %lld ms after %lld failures in a row",
                           e->text, (long long) ms, (long long) self->eject_after);
            }
        }
    }
    breaker_t *breaker = s_breaker (self, model->name);
    if (breaker->state == BREAKER_HALF_OPEN || ++breaker->failures >= self->breaker_after) {
        if (breaker->state != BREAKER_OPEN)
            mesh_warn ("model %s: circuit open for %lld ms", model->name, (long long) self->breaker_open_ms);
        breaker->state = BREAKER_OPEN;
        breaker->open_until_ms = now_ms + self->breaker_open_ms;
        breaker->trial_out = false;
        if (breaker->state_gauge)
            mesh_metric_set (breaker->state_gauge, 1);
    }
}

bool
router_policy_retry_allowed (router_policy_t *self, size_t active)
{
    int64_t budget = (int64_t) active * self->budget_percent / 100;
    if (budget < self->min_retry_concurrency)
        budget = self->min_retry_concurrency;
    bool allowed = self->retries_active < budget;
    if (!allowed && self->retries_refused)
        mesh_metric_inc (self->retries_refused);
    return allowed;
}

void
router_policy_retry_begin (router_policy_t *self)
{
    self->retries_active++;
    if (self->retries)
        mesh_metric_inc (self->retries);
}

void
router_policy_retry_end (router_policy_t *self)
{
    if (self->retries_active > 0)
        self->retries_active--;
}

uint32_t
router_policy_max_tries (router_policy_t *self)
{
    return self->max_tries;
}

void
router_policy_test (bool verbose)
{
    (void) verbose;
    const char *text =
        "{ \"router\": { \"region\": \"eu\", \"outlier\": { \"consecutive_failures\": 2,"
        "    \"base_ejection_ms\": 1000, \"max_ejection_ms\": 4000, \"max_ejection_percent\": 50 },"
        "    \"breaker\": { \"consecutive_failures\": 3, \"open_ms\": 500 },"
        "    \"retry\": { \"budget_percent\": 20, \"min_concurrency\": 2 } },"
        "  \"models\": ["
        "    { \"name\": \"m\", \"auth\": {\"type\":\"none\"}, \"endpoints\": ["
        "      { \"url\": \"http://a/\", \"region\": \"us\" },"
        "      { \"url\": \"http://b/\", \"region\": \"eu\" },"
        "      { \"url\": \"http://c/\", \"priority\": 1 } ] },"
        "    { \"name\": \"n\", \"auth\": {\"type\":\"none\"}, \"endpoint\": \"http://d/\" },"
        "    { \"name\": \"ab\", \"variants\": [ { \"model\": \"m\", \"weight\": 1 }, { \"model\": \"n\", \"weight\": 1 } ] } ] }";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "p.json", why, sizeof why);
    mesh_models_t *models = mesh_models_load (config);
    router_policy_t *policy = router_policy_new (config, NULL);
    assert (!mesh_config_failed (config));
    mesh_model_t *m = mesh_models_find (models, "m");

    //  Priority 0 first, our region within it
    for (int i = 0; i < 20; i++)
        assert (router_policy_endpoint (policy, m, -1, 0) == 1);
    //  Avoiding b leaves a (same priority)
    assert (router_policy_endpoint (policy, m, 1, 0) == 0);
    //  b fails twice: ejected; a serves; at most half of 3 may be out
    router_policy_failure (policy, m, 1, true, 0);
    router_policy_failure (policy, m, 1, true, 0);
    assert (router_policy_endpoint (policy, m, -1, 10) == 0);
    router_policy_failure (policy, m, 0, true, 10);
    router_policy_failure (policy, m, 0, true, 10);
    assert (router_policy_endpoint (policy, m, -1, 20) == 0);   //  not ejected: over 50%
    //  b back after its ejection; ejected again it stays out twice as long
    assert (router_policy_endpoint (policy, m, 0, 1001) == 1);
    router_policy_failure (policy, m, 1, true, 1001);
    router_policy_failure (policy, m, 1, true, 1001);
    assert (router_policy_endpoint (policy, m, 0, 2500) == 2);  //  only c is left beside a
    assert (router_policy_endpoint (policy, m, 0, 3002) == 1);
    //  A failure not blamed on the endpoint does not count
    router_policy_success (policy, m, 1, 3002);
    router_policy_failure (policy, m, 1, false, 3003);
    router_policy_failure (policy, m, 1, false, 3003);
    assert (router_policy_endpoint (policy, m, 0, 3004) == 1);

    //  Breaker: 3 failures open it; half-open lets one trial through
    mesh_model_t *n = mesh_models_find (models, "n");
    assert (router_policy_admit (policy, n, 0));
    for (int i = 0; i < 3; i++)
        router_policy_failure (policy, n, 0, true, 0);
    assert (!router_policy_admit (policy, n, 100));
    assert (router_policy_admit (policy, n, 600));               //  the trial
    assert (!router_policy_admit (policy, n, 601));
    router_policy_success (policy, n, 0, 700);
    assert (router_policy_admit (policy, n, 701) && router_policy_admit (policy, n, 702));

    //  Variants: sticky per user, and both sides used
    mesh_model_t *ab = mesh_models_find (models, "ab");
    mesh_model_t *first = router_policy_variant (policy, models, ab, "user-1");
    for (int i = 0; i < 10; i++)
        assert (router_policy_variant (policy, models, ab, "user-1") == first);
    int to_m = 0;
    for (int i = 0; i < 200; i++) {
        char user [32];
        snprintf (user, sizeof user, "u%d", i);
        to_m += router_policy_variant (policy, models, ab, user) == m;
    }
    assert (to_m > 60 && to_m < 140);

    //  Retry budget: at least 2 in flight, else 20% of the active requests
    assert (router_policy_retry_allowed (policy, 1));
    router_policy_retry_begin (policy);
    router_policy_retry_begin (policy);
    assert (!router_policy_retry_allowed (policy, 5));
    assert (router_policy_retry_allowed (policy, 20));
    router_policy_retry_end (policy);
    assert (router_policy_retry_allowed (policy, 5));

    router_policy_destroy (&policy);
    mesh_models_destroy (&models);
    mesh_config_destroy (&config);
}
