/*  seekmesh-router: wires the router's config, sockets, admin port and
    signals to one reactor.  The policy lives in router.c.                   */
#include "router.h"

#include "mesh_curve.h"
#include "mesh_admin.h"
#include "mesh_log.h"
#include "mesh_service.h"
#include "mesh_settings.h"

#include <signal.h>
#include <zmq.h>

static bool
s_ready (void *arg, mesh_buf_t *why)
{
    return router_ready (arg, why);
}

static size_t
s_drain (void *arg)
{
    return router_drain (arg);
}

static size_t
s_inflight (void *arg)
{
    return router_inflight (arg);
}

//  SIGHUP: the config file's models, aliases and keys again
static int
s_on_hangup (mesh_loop_t *loop, int signo, void *arg)
{
    (void) loop;
    (void) signo;
    char why [512];
    if (router_reload (arg, why, sizeof why) < 0)
        mesh_error ("reload refused, keeping the registry: %s", why);
    else
        mesh_info ("reloaded the config file");
    return 0;
}

int
main (int argc, char *argv [])
{
    mesh_config_t *config = mesh_service_config ("router", argc, argv);
    const char *admin_address = mesh_setting_str (config, "router.admin_listen");
    int64_t drain_ms = mesh_setting_int (config, "mesh.drain_ms");
    if (mesh_config_failed (config))
        mesh_fatal ("%s", mesh_config_failed (config));

    mesh_loop_t *loop = mesh_loop_new ();
    void *ctx = zmq_ctx_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    char curve_why [1024];
    if (mesh_curve_start (config, ctx, "router", metrics, curve_why, sizeof curve_why) < 0)
        mesh_fatal ("%s", curve_why);
    char why [512];
    router_t *router = router_new (config, ctx, loop, metrics, why, sizeof why);
    if (!router)
        mesh_fatal ("%s", why);
    mesh_service_drain (loop, drain_ms, s_drain, s_inflight, router);
    mesh_loop_signal (loop, SIGHUP, s_on_hangup, router);

    mesh_admin_t *admin = mesh_admin_new (metrics);
    mesh_admin_set_idle_ms (admin, mesh_setting_int (config, "mesh.admin_idle_ms"));
    mesh_admin_set_ready (admin, s_ready, router);
    router_routes (router, admin);
    if (mesh_admin_listen (admin, loop, admin_address, why, sizeof why) < 0)
        mesh_fatal ("router.admin_listen: %s", why);
    mesh_info ("admin on %s", admin_address);

    mesh_loop_run (loop);

    mesh_admin_destroy (&admin);
    router_destroy (&router);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
    zmq_ctx_term (ctx);
    mesh_config_destroy (&config);
    mesh_info ("stopped");
    return 0;
}
