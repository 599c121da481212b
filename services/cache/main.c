/*  seekmesh-cache: wires the cache stage's config, socket, Redis, admin
    port and signals to one reactor.  The work is in cache.c (the bus),
    cache_flight.c (calls in flight), cache_entry.c, cache_l1.c and
    cache_l2.c (kept answers).                                               */
#include "cache.h"

#include "mesh_admin.h"
#include "mesh_curve.h"
#include "mesh_log.h"
#include "mesh_service.h"
#include "mesh_settings.h"

#include <zmq.h>

static bool
s_ready (void *arg, mesh_buf_t *why)
{
    return cache_ready (arg, why);
}

static size_t
s_drain (void *arg)
{
    return cache_drain (arg);
}

static size_t
s_inflight (void *arg)
{
    return cache_inflight (arg);
}

int
main (int argc, char *argv [])
{
    mesh_config_t *config = mesh_service_config ("cache", argc, argv);
    const char *admin_address = mesh_setting_str (config, "cache.admin_listen");
    int64_t drain_ms = mesh_setting_int (config, "mesh.drain_ms");
    if (mesh_config_failed (config))
        mesh_fatal ("%s", mesh_config_failed (config));

    mesh_loop_t *loop = mesh_loop_new ();
    void *ctx = zmq_ctx_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    char curve_why [1024];
    if (mesh_curve_start (config, ctx, "cache", metrics, curve_why, sizeof curve_why) < 0)
        mesh_fatal ("%s", curve_why);
    char why [1024];
    cache_t *cache = cache_new (config, ctx, loop, metrics, why, sizeof why);
    if (!cache)
        mesh_fatal ("%s", why);
    mesh_service_drain (loop, drain_ms, s_drain, s_inflight, cache);

    mesh_admin_t *admin = mesh_admin_new (metrics);
    mesh_admin_set_ready (admin, s_ready, cache);
    if (mesh_admin_listen (admin, loop, admin_address, why, sizeof why) < 0)
        mesh_fatal ("cache.admin_listen: %s", why);
    mesh_info ("admin on %s", admin_address);

    mesh_loop_run (loop);

    mesh_admin_destroy (&admin);
    cache_destroy (&cache);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
    zmq_ctx_term (ctx);
    mesh_config_destroy (&config);
    mesh_info ("stopped");
    return 0;
}
