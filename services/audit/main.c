/*  seekmesh-audit: wires the audit service's config, socket, writer
    thread, admin port and signals to one reactor.  The work is in audit.c
    (records in, ACKs out) and audit_writer.c (the store's thread).

        seekmesh-audit [-c CONFIG]          the service
        seekmesh-audit bench [options]      its throughput check (audit_bench.c) */
#include "audit.h"

#include "mesh_curve.h"
#include "mesh_admin.h"
#include "mesh_log.h"
#include "mesh_service.h"
#include "mesh_settings.h"

#include <string.h>
#include <zmq.h>

static bool
s_ready (void *arg, mesh_buf_t *why)
{
    return audit_ready (arg, why);
}

static size_t
s_drain (void *arg)
{
    return audit_drain (arg);
}

static size_t
s_inflight (void *arg)
{
    return audit_inflight (arg);
}

int
main (int argc, char *argv [])
{
    if (argc > 1 && strcmp (argv [1], "bench") == 0)
        return audit_bench (argc - 1, argv + 1);

    mesh_config_t *config = mesh_service_config ("audit", argc, argv);
    const char *admin_address = mesh_setting_str (config, "audit.admin_listen");
    int64_t drain_ms = mesh_setting_int (config, "mesh.drain_ms");
    if (mesh_config_failed (config))
        mesh_fatal ("%s", mesh_config_failed (config));

    mesh_loop_t *loop = mesh_loop_new ();
    void *ctx = zmq_ctx_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    char curve_why [1024];
    if (mesh_curve_start (config, ctx, "audit", metrics, curve_why, sizeof curve_why) < 0)
        mesh_fatal ("%s", curve_why);
    char why [1024];
    audit_t *audit = audit_new (config, ctx, loop, metrics, why, sizeof why);
    if (!audit)
        mesh_fatal ("%s", why);
    mesh_service_drain (loop, drain_ms, s_drain, s_inflight, audit);

    mesh_admin_t *admin = mesh_admin_new (metrics);
    mesh_admin_set_idle_ms (admin, mesh_setting_int (config, "mesh.admin_idle_ms"));
    mesh_admin_set_ready (admin, s_ready, audit);
    if (mesh_admin_listen (admin, loop, admin_address, why, sizeof why) < 0)
        mesh_fatal ("audit.admin_listen: %s", why);
    mesh_info ("admin on %s", admin_address);

    mesh_loop_run (loop);

    mesh_admin_destroy (&admin);
    audit_destroy (&audit);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
    zmq_ctx_term (ctx);
    mesh_config_destroy (&config);
    mesh_info ("stopped");
    return 0;
}
