/*  seekmesh-connector: wires config, sockets, admin port and signals to one
    reactor.  The work is in connector*.c.                                  */
#include "connector_main.h"

#include "mesh_curve.h"
#include "mesh_admin.h"
#include "mesh_log.h"
#include "mesh_service.h"
#include "mesh_settings.h"

#include <zmq.h>

static bool
s_ready (void *arg, mesh_buf_t *why)
{
    return connector_ready (arg, why);
}

static size_t
s_drain (void *arg)
{
    return connector_drain (arg);
}

static size_t
s_inflight (void *arg)
{
    return connector_inflight (arg);
}

int
main (int argc, char *argv [])
{
    mesh_config_t *config = mesh_service_config ("connector", argc, argv);
    const char *admin_address = mesh_setting_str (config, "connector.admin_listen");
    int64_t drain_ms = mesh_setting_int (config, "mesh.drain_ms");
    if (mesh_config_failed (config))
        mesh_fatal ("%s", mesh_config_failed (config));

    mesh_loop_t *loop = mesh_loop_new ();
    void *ctx = zmq_ctx_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    char curve_why [1024];
    if (mesh_curve_start (config, ctx, "connector", metrics, curve_why, sizeof curve_why) < 0)
        mesh_fatal ("%s", curve_why);
    char why [512];
    connector_t *connector = connector_new (config, ctx, loop, metrics, why, sizeof why);
    if (!connector)
        mesh_fatal ("%s", why);
    mesh_service_drain (loop, drain_ms, s_drain, s_inflight, connector);

    mesh_admin_t *admin = mesh_admin_new (metrics);
    mesh_admin_set_idle_ms (admin, mesh_setting_int (config, "mesh.admin_idle_ms"));
    mesh_admin_set_ready (admin, s_ready, connector);
    if (mesh_admin_listen (admin, loop, admin_address, why, sizeof why) < 0)
        mesh_fatal ("connector.admin_listen: %s", why);
    mesh_info ("admin on %s", admin_address);

    mesh_loop_run (loop);

    mesh_admin_destroy (&admin);
    connector_destroy (&connector);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
    zmq_ctx_term (ctx);
    mesh_config_destroy (&config);
    mesh_info ("stopped");
    return 0;
}
