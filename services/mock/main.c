/*  seekmesh-mock: a DeepSeek-compatible upstream for tests, benchmarks and
    the no-key demo (HTTP/SSE and WebSocket, plain or TLS, with fault
    injection).  See mock.h for the modules.

        seekmesh-mock [-c CONFIG]

    main only wires: it reads the "mock" section of the config, opens the
    listening sockets (so a bad config or a taken port ends the start with
    one line and exit 1), serves the admin port (with the fault switch's
    /mock/fault and the last requests' /mock/requests) on its own loop, starts one worker per mock.threads and, on
    SIGTERM or SIGINT, has them drain and exits 0.  Instance i of a mesh
    ($SEEKMESH_INSTANCE) binds every port i x mesh.port_stride higher.
    mock.replay_file names recorded answers to give instead of the echo
    (mock_replay.h).  Runs on the main thread.                              */
#include "mock.h"
#include "mesh_admin.h"
#include "mesh_config.h"
#include "mesh_log.h"
#include "mesh_service.h"
#include "mesh_settings.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 64

static int
s_on_signal (mesh_loop_t *loop, int signo, void *arg)
{
    (void) loop; (void) arg;
    mesh_info ("%s: draining", strsignal (signo));
    return -1;
}

static void
s_metrics (mesh_metrics_t *registry, mock_metrics_t *m)
{
    const char *requests = "Chat requests started, by transport.";
    const char *connections = "Connections accepted (http), and upgraded to WebSocket (ws).";
    m->requests_http = mesh_metrics_counter (registry, "seekmesh_mock_requests_total",
                                             requests, "transport=\"http\"");
    m->requests_ws = mesh_metrics_counter (registry, "seekmesh_mock_requests_total",
                                           requests, "transport=\"ws\"");
    m->streams_active = mesh_metrics_gauge (registry, "seekmesh_mock_streams_active",
                                            "Chat responses in progress.", NULL);
    m->streams_completed = mesh_metrics_counter (registry, "seekmesh_mock_streams_completed_total",
                                                 "Chat responses fully sent.", NULL);
    m->streams_aborted = mesh_metrics_counter (registry, "seekmesh_mock_streams_aborted_total",
        "Chat responses cut short because the client went away.", NULL);
    m->connections_http = mesh_metrics_counter (registry, "seekmesh_mock_connections_total",
                                                connections, "transport=\"http\"");
    m->connections_ws = mesh_metrics_counter (registry, "seekmesh_mock_connections_total",
                                              connections, "transport=\"ws\"");
    m->connections_active = mesh_metrics_gauge (registry, "seekmesh_mock_connections_active",
                                                "Open connections.", NULL);
    m->auth_failures = mesh_metrics_counter (registry, "seekmesh_mock_auth_failures_total",
                                             "Requests refused for a missing or wrong key.", NULL);
    const char *faults = "Failures served by the fault switch (PUT /mock/fault, "
                         "mock.force_status): chat requests answered with its status, "
                         "connections closed unanswered.";
    m->faults_status = mesh_metrics_counter (registry, "seekmesh_mock_faults_total", faults,
                                             "mode=\"status\"");
    m->faults_close = mesh_metrics_counter (registry, "seekmesh_mock_faults_total", faults,
                                            "mode=\"close\"");
}

//  One listening socket per thread on address.  The first bind, without
//  SO_REUSEPORT, fails if anything (another mock included) holds the port.
static void
s_listen (const char *address, int threads, int *fds)
{
    char why [256];
    int probe = mesh_tcp_listen (address, false, why, sizeof why);
    if (probe < 0)
        mesh_fatal ("%s", why);
    if (threads == 1) {
        fds [0] = probe;
        return;
    }
    close (probe);
    for (int i = 0; i < threads; i++)
        if ((fds [i] = mesh_tcp_listen (address, true, why, sizeof why)) < 0)
            mesh_fatal ("%s", why);
}


int
main (int argc, char *argv [])
{
    mesh_config_t *config = mesh_service_config ("mock", argc, argv);

    mock_settings_t settings = { 0 };
    const char *listen = mesh_setting_str (config, "mock.listen");
    const char *tls_listen = mesh_setting_str (config, "mock.tls_listen");
    const char *tls_cert = mesh_setting_str (config, "mock.tls_cert");
    const char *tls_key = mesh_setting_str (config, "mock.tls_key");
    const char *admin_listen = mesh_setting_str (config, "mock.admin_listen");
    const char *key_env = mesh_setting_str (config, "mock.api_key_env");
    int threads = (int) mesh_setting_int (config, "mock.threads");
    settings.token_delay_ms = mesh_setting_int (config, "mock.token_delay_ms");
    settings.keepalive_ms = mesh_setting_int (config, "mock.keepalive_ms");
    settings.ws_chunk_size = (size_t) mesh_setting_int (config, "mock.ws_chunk_size");
    settings.drain_ms = mesh_setting_int (config, "mesh.drain_ms");
    int force_status = (int) mesh_setting_int (config, "mock.force_status");
    const char *replay_file = mesh_setting_str (config, "mock.replay_file");
    if (force_status != 0 && (force_status < 400 || force_status > 599))
        mesh_config_invalid (config, "mock.force_status", "must be 0 or an error status (400-599)");
    if (*tls_listen && (!*tls_cert || !*tls_key))
        mesh_config_invalid (config, "mock.tls_listen", "needs mock.tls_cert and mock.tls_key");
    if (mesh_config_failed (config))
        mesh_fatal ("%s", mesh_config_failed (config));
    //  mock.force_status is the fault switch, set from the start
    settings.fault = mock_fault_new ();
    if (force_status) {
        mock_fault_spec_t fault = { .mode = MOCK_FAULT_STATUS, .status = force_status,
                                    .retry_after = -1, .count = -1 };
        mock_fault_set (settings.fault, &fault);
    }
    //  Recorded answers; a relative path is taken from the working directory
    //  (scripts/mesh runs every service in the repository's root)
    mock_replay_t *replay = NULL;
    if (*replay_file) {
        char why [512];
        replay = mock_replay_load (replay_file, why, sizeof why);
        if (!replay)
            mesh_fatal ("config %s: mock.replay_file: %s", mesh_config_file (config), why);
        settings.replay = replay;
    }
    const char *key = *key_env ? getenv (key_env) : NULL;
    settings.api_key = key && *key ? key : NULL;
    if (*tls_listen) {
        char why [512];
        settings.tls_ctx = mesh_tls_server_ctx (tls_cert, tls_key, false, why, sizeof why);
        if (!settings.tls_ctx)
            mesh_fatal ("config %s: mock.tls_cert/tls_key: %s", mesh_config_file (config), why);
    }
    mesh_metrics_t *registry = mesh_metrics_new ();
    s_metrics (registry, &settings.metrics);

    int fds [MAX_THREADS], tls_fds [MAX_THREADS];
    s_listen (listen, threads, fds);
    for (int i = 0; i < threads; i++)
        tls_fds [i] = -1;
    if (*tls_listen)
        s_listen (tls_listen, threads, tls_fds);
    //  Said before the admin port answers, which is how a caller knows
    //  the mock has started
    if (replay)
        mesh_info ("replaying %zu recorded answers from %s", mock_replay_size (replay),
                   replay_file);
    mesh_loop_t *loop = mesh_loop_new ();
    mesh_admin_t *admin = mesh_admin_new (registry);
    mesh_admin_set_idle_ms (admin, mesh_setting_int (config, "mesh.admin_idle_ms"));
    settings.seen = mock_seen_new ();
    mesh_admin_route (admin, "/mock/requests", mock_seen_admin, settings.seen);
    mesh_admin_route (admin, "/mock/", mock_fault_admin, settings.fault);
    char why [256];
    if (mesh_admin_listen (admin, loop, admin_listen, why, sizeof why) < 0)
        mesh_fatal ("mock.admin_listen: %s", why);

    //  Signals are blocked before the workers start, so they inherit it;
    //  SSL_write may raise SIGPIPE where send's MSG_NOSIGNAL cannot reach
    signal (SIGPIPE, SIG_IGN);
    if (mesh_loop_signal (loop, SIGTERM, s_on_signal, NULL) < 0
    ||  mesh_loop_signal (loop, SIGINT, s_on_signal, NULL) < 0)
        mesh_fatal ("cannot watch signals");
    mock_worker_t *workers [MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        workers [i] = mock_worker_new (i, &settings, fds [i], tls_fds [i]);
        if (mock_worker_start (workers [i]) < 0)
            mesh_fatal ("cannot start worker thread %d", i);
    }
    mesh_info ("listening on %s%s%s, admin on %s, %d thread(s)%s%s", listen,
               *tls_listen ? ", TLS on " : "", tls_listen, admin_listen, threads,
               settings.api_key ? ", API key required" : "",
               force_status ? ", every chat request failed (mock.force_status)" : "");

    mesh_loop_run (loop);

    for (int i = 0; i < threads; i++)
        mock_worker_drain (workers [i]);
    for (int i = 0; i < threads; i++) {
        mock_worker_join (workers [i]);
        mock_worker_destroy (&workers [i]);
    }
    mesh_admin_destroy (&admin);
    mesh_loop_destroy (&loop);
    mesh_metrics_destroy (&registry);
    mock_fault_destroy (&settings.fault);
    mock_seen_destroy (&settings.seen);
    mock_replay_destroy (&replay);
    if (settings.tls_ctx)
        SSL_CTX_free (settings.tls_ctx);
    mesh_config_destroy (&config);
    mesh_info ("stopped");
    return 0;
}
