/*  seekmesh-connector: wires config, sockets, admin port and signals to one
    reactor.  The work is in connector*.c.                                  */
#include "connector_main.h"

#include "mesh_admin.h"
#include "mesh_config.h"
#include "mesh_log.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <zmq.h>

typedef struct {
    connector_t *connector;
    mesh_timer_t drain_timer;
    int64_t drain_ms;
    int64_t drain_deadline_ms;
} app_t;

static bool
s_ready (void *arg, mesh_buf_t *why)
{
    return connector_ready (((app_t *) arg)->connector, why);
}

static int
s_on_drain_check (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    app_t *app = arg;
    size_t left = connector_inflight (app->connector);
    if (left == 0 || mesh_loop_now_ms (loop) >= app->drain_deadline_ms) {
        mesh_info ("drained, %zu requests cut short", left);
        return -1;
    }
    mesh_loop_timer_start (loop, timer, 50, s_on_drain_check, app);
    return 0;
}

//  SIGTERM: take no new work, finish what is in flight up to the deadline
static int
s_on_term (mesh_loop_t *loop, int signo, void *arg)
{
    app_t *app = arg;
    if (app->drain_deadline_ms)
        return -1;
    mesh_info ("signal %d: draining", signo);
    connector_drain (app->connector);
    app->drain_deadline_ms = mesh_loop_now_ms (loop) + app->drain_ms;
    mesh_loop_timer_start (loop, &app->drain_timer, 0, s_on_drain_check, app);
    return 0;
}

int
main (int argc, char *argv [])
{
    const char *config_path = NULL;
    int opt;
    while ((opt = getopt (argc, argv, "c:")) != -1) {
        if (opt == 'c')
            config_path = optarg;
        else {
            fprintf (stderr, "usage: seekmesh-connector [-c CONFIG]\n");
            return 2;
        }
    }
    mesh_log_init ("connector");
    char why [512];
    mesh_config_t *config = mesh_config_load (config_path, why, sizeof why);
    if (!config)
        mesh_fatal ("%s", why);
    const char *admin_listen = mesh_config_str (config, "connector.admin_listen", "127.0.0.1:9082");
    int stride = (int) mesh_config_int (config, "mesh.port_stride", 10);
    app_t app = { .drain_ms = mesh_config_int (config, "mesh.drain_ms", 5000) };
    if (mesh_config_failed (config))
        mesh_fatal ("%s", mesh_config_failed (config));

    mesh_loop_t *loop = mesh_loop_new ();
    mesh_loop_signal (loop, SIGTERM, s_on_term, &app);
    mesh_loop_signal (loop, SIGINT, s_on_term, &app);
    signal (SIGPIPE, SIG_IGN);
    void *ctx = zmq_ctx_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    app.connector = connector_new (config, ctx, loop, metrics, why, sizeof why);
    if (!app.connector)
        mesh_fatal ("%s", why);

    mesh_admin_t *admin = mesh_admin_new (metrics);
    mesh_admin_set_ready (admin, s_ready, &app);
    char address [256];
    if (mesh_endpoint_offset (admin_listen, mesh_config_instance () * stride, address, sizeof address) < 0
    ||  mesh_admin_listen (admin, loop, address, why, sizeof why) < 0)
        mesh_fatal ("connector.admin_listen: %s", why);
    mesh_info ("admin on %s", address);

    mesh_loop_run (loop);

    mesh_admin_destroy (&admin);
    connector_destroy (&app.connector);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
    zmq_ctx_term (ctx);
    mesh_config_destroy (&config);
    mesh_info ("stopped");
    return 0;
}
