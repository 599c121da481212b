/*  seekmesh-router: wires the router's config, sockets, admin port and
    signals to one reactor.  The policy lives in router.c.                   */
#include "router.h"

#include "mesh_admin.h"
#include "mesh_config.h"
#include "mesh_log.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"
#include "mesh_time.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

typedef struct {
    router_t *router;
    mesh_loop_t *loop;
    mesh_timer_t drain_timer;
    int64_t drain_ms;
    int64_t drain_deadline_ms;
} app_t;

static bool
s_ready (void *arg, mesh_buf_t *why)
{
    return router_ready (((app_t *) arg)->router, why);
}

static int
s_on_drain_check (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    app_t *app = arg;
    size_t left = router_inflight (app->router);
    if (left == 0 || mesh_loop_now_ms (loop) >= app->drain_deadline_ms) {
        mesh_info ("drained, %zu requests still held by connectors", left);
        return -1;
    }
    mesh_loop_timer_start (loop, timer, 50, s_on_drain_check, app);
    return 0;
}

//  SIGTERM: stop taking requests, wait for what is in flight, then exit
static int
s_on_term (mesh_loop_t *loop, int signo, void *arg)
{
    app_t *app = arg;
    if (app->drain_deadline_ms)
        return -1;              //  a second signal: leave now
    mesh_info ("signal %d: draining", signo);
    router_drain (app->router);
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
            fprintf (stderr, "usage: seekmesh-router [-c CONFIG]\n");
            return 2;
        }
    }
    mesh_log_init ("router");
    char why [512];
    mesh_config_t *config = mesh_config_load (config_path, why, sizeof why);
    if (!config)
        mesh_fatal ("%s", why);
    const char *admin_listen = mesh_config_str (config, "router.admin_listen", "127.0.0.1:9081");
    int64_t drain_ms = mesh_config_int (config, "mesh.drain_ms", 5000);
    int stride = (int) mesh_config_int (config, "mesh.port_stride", 10);
    if (mesh_config_failed (config))
        mesh_fatal ("%s", mesh_config_failed (config));

    app_t app = { 0 };
    app.loop = mesh_loop_new ();
    mesh_loop_signal (app.loop, SIGTERM, s_on_term, &app);
    mesh_loop_signal (app.loop, SIGINT, s_on_term, &app);
    signal (SIGPIPE, SIG_IGN);
    void *ctx = zmq_ctx_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    app.router = router_new (config, ctx, app.loop, metrics, why, sizeof why);
    if (!app.router)
        mesh_fatal ("%s", why);

    mesh_admin_t *admin = mesh_admin_new (metrics);
    mesh_admin_set_ready (admin, s_ready, &app);
    char address [256];
    if (mesh_endpoint_offset (admin_listen, mesh_config_instance () * stride, address, sizeof address) < 0
    ||  mesh_admin_listen (admin, app.loop, address, why, sizeof why) < 0)
        mesh_fatal ("router.admin_listen: %s", why);
    mesh_info ("admin on %s", address);
    app.drain_ms = drain_ms;

    mesh_loop_run (app.loop);

    mesh_admin_destroy (&admin);
    router_destroy (&app.router);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&app.loop);
    zmq_ctx_term (ctx);
    mesh_config_destroy (&config);
    mesh_info ("stopped");
    return 0;
}
