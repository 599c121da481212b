/*  router_peers: see router_peers.h.                                       */
#include "router_peers.h"
#include "mesh_log.h"
#include "mesh_redis.h"
#include "mesh_settings.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTERS_KEY "seekmesh:routers"

//  KEYS: the set; ARGV: this router, its expiry from now (ms)
//  Returns the routers alive, this one included
static mesh_redis_script_t s_beat = { .body =
    "local clock = redis.call('TIME')\n"
    "local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)\n"
    "local ttl = tonumber(ARGV[2])\n"
    "redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "redis.call('PEXPIRE', KEYS[1], 10 * ttl)\n"
    "return redis.call('ZCARD', KEYS[1])\n"
};

struct router_peers_t {
    struct mesh_redis_t *redis;
    char name [64];
    int64_t ttl_ms;
    int fixed;                  //  router.replicas, or 0
    int count;
    bool learnt;                //  Redis has answered once
    bool left;
    bool in_flight;
    mesh_metric_t *gauge;
    router_peers_fn *on_change;
    void *on_change_arg;
};

router_peers_t *
router_peers_new (mesh_config_t *config, struct mesh_redis_t *redis, const char *name,
                  mesh_metrics_t *metrics)
{
    router_peers_t *self = calloc (1, sizeof *self);
    assert (self);
    self->redis = redis;
    snprintf (self->name, sizeof self->name, "%s", name);
    self->ttl_ms = mesh_setting_int (config, "router.heartbeat_ms")
                 * mesh_setting_int (config, "router.heartbeat_liveness");
    self->fixed = (int) mesh_setting_int (config, "router.replicas");
    self->count = self->fixed ? self->fixed
                : (int) MESH_MAX (mesh_setting_int (config, "mesh.instances.router"), 1);
    if (metrics) {
        self->gauge = mesh_metrics_gauge (metrics, "seekmesh_router_peers",
            "Routers sharing the limits (alive in Redis, or router.replicas): the local limiter "
            "grants limit / this while Redis is away.", NULL);
        mesh_metric_set (self->gauge, self->count);
    }
    return self;
}

void
router_peers_destroy (router_peers_t **self_p)
{
    assert (self_p);
    router_peers_t *self = *self_p;
    if (!self)
        return;
    //  A reply still to come finds nothing: it carries no pointer (s_on_count
    //  is given the client's lifetime by router_destroy, which destroys
    //  Redis first)
    free (self);
    *self_p = NULL;
}

static void
s_on_count (void *arg, redisReply *reply)
{
    router_peers_t *self = arg;
    self->in_flight = false;
    if (!reply || reply->type != REDIS_REPLY_INTEGER || self->left)
        return;
    int count = (int) MESH_MAX (reply->integer, 1);
    if (!self->fixed && count != self->count) {
        if (self->learnt)
            mesh_info ("%d routers share the limits (was %d)", count, self->count);
        else
            mesh_info ("%d routers share the limits", count);
        self->count = count;
        if (self->on_change)
            self->on_change (self->on_change_arg, count);
        if (self->gauge)
            mesh_metric_set (self->gauge, count);
    }
    self->learnt = true;
}

void
router_peers_tick (router_peers_t *self)
{
    if (!self->redis || self->left || self->in_flight || !mesh_redis_ready (self->redis))
        return;
    char ttl [24];
    snprintf (ttl, sizeof ttl, "%lld", (long long) self->ttl_ms);
    const char *argv [] = { ROUTERS_KEY, self->name, ttl };
    if (mesh_redis_eval (self->redis, &s_beat, s_on_count, self, 1, 3, argv, NULL) == 0)
        self->in_flight = true;
}

static void
s_on_left (void *arg, redisReply *reply)
{
    (void) arg; (void) reply;
}

void
router_peers_leave (router_peers_t *self)
{
    if (self->left)
        return;
    self->left = true;
    if (!self->redis || !mesh_redis_ready (self->redis))
        return;
    const char *argv [] = { "ZREM", ROUTERS_KEY, self->name };
    mesh_redis_command (self->redis, s_on_left, NULL, 3, argv, NULL);
}

void
router_peers_on_change (router_peers_t *self, router_peers_fn *fn, void *arg)
{
    self->on_change = fn;
    self->on_change_arg = arg;
}

int
router_peers_count (router_peers_t *self)
{
    return self->count;
}

void
router_peers_test (bool verbose)
{
    (void) verbose;
    //  Against Redis: the integration tests (two routers count each other,
    //  a killed one drops out).  Here, the counts used without it
    const char *text = "{ \"mesh\": { \"instances\": { \"router\": 3 } } }";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "p.json", why, sizeof why);
    router_peers_t *peers = router_peers_new (config, NULL, "router-0-1", NULL);
    assert (router_peers_count (peers) == 3);
    router_peers_tick (peers);
    router_peers_leave (peers);
    assert (router_peers_count (peers) == 3);
    router_peers_destroy (&peers);
    router_peers_destroy (&peers);
    setenv ("SEEKMESH_ROUTER_REPLICAS", "5", 1);
    peers = router_peers_new (config, NULL, "router-0-1", NULL);
    assert (router_peers_count (peers) == 5);
    unsetenv ("SEEKMESH_ROUTER_REPLICAS");
    router_peers_destroy (&peers);
    mesh_config_destroy (&config);
}
