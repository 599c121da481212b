/*  mesh_service: command line, config and graceful drain for mains.       */
#include "mesh_service.h"
#include "mesh_log.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

mesh_config_t *
mesh_service_config (const char *name, int argc, char *argv [])
{
    const char *path = NULL;
    int opt;
    while ((opt = getopt (argc, argv, "c:")) != -1) {
        if (opt == 'c')
            path = optarg;
        else {
            fprintf (stderr, "usage: seekmesh-%s [-c CONFIG]\n", name);
            exit (2);
        }
    }
    mesh_log_init (name);
    //  A peer that goes away mid-write is an error to handle, not a signal
    signal (SIGPIPE, SIG_IGN);
    //  SIGTERM, SIGINT and SIGHUP (reload, where a service reloads) are
    //  read from a signalfd; they must be blocked in every thread, so block
    //  them before ZeroMQ or anyone starts one
    sigset_t mask;
    sigemptyset (&mask);
    sigaddset (&mask, SIGTERM);
    sigaddset (&mask, SIGINT);
    sigaddset (&mask, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &mask, NULL);
    char why [512];
    mesh_config_t *config = mesh_config_load (path, why, sizeof why);
    if (!config)
        mesh_fatal ("%s", why);
    return config;
}

void
mesh_service_address (mesh_config_t *config, const char *path, const char *address,
                      char *out, size_t size)
{
    int stride = (int) mesh_config_int (config, "mesh.port_stride", 10);
    if (mesh_endpoint_offset (address, mesh_config_instance () * stride, out, size) < 0)
        mesh_fatal ("config %s: %s: \"%s\" needs a port", mesh_config_file (config), path, address);
}

static struct {
    int64_t drain_ms;
    int64_t deadline_ms;
    mesh_drain_fn *start;
    mesh_drain_fn *inflight;
    void *arg;
    mesh_timer_t timer;
} s_drain;

static int
s_on_drain_check (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) arg;
    size_t left = s_drain.inflight (s_drain.arg);
    if (left == 0 || mesh_loop_now_ms (loop) >= s_drain.deadline_ms) {
        mesh_info ("drained, %zu still in flight", left);
        return -1;
    }
    mesh_loop_timer_start (loop, timer, 50, s_on_drain_check, NULL);
    return 0;
}

static int
s_on_signal (mesh_loop_t *loop, int signo, void *arg)
{
    (void) arg;
    if (s_drain.deadline_ms)
        return -1;              //  a second signal: stop now
    size_t left = s_drain.start (s_drain.arg);
    mesh_info ("signal %d: draining %zu requests, at most %lld ms", signo, left,
               (long long) s_drain.drain_ms);
    s_drain.deadline_ms = mesh_loop_now_ms (loop) + s_drain.drain_ms;
    mesh_loop_timer_start (loop, &s_drain.timer, 0, s_on_drain_check, NULL);
    return 0;
}

void
mesh_service_drain (mesh_loop_t *loop, int64_t drain_ms, mesh_drain_fn *start,
                    mesh_drain_fn *inflight, void *arg)
{
    s_drain.drain_ms = drain_ms;
    s_drain.start = start;
    s_drain.inflight = inflight;
    s_drain.arg = arg;
    mesh_loop_signal (loop, SIGTERM, s_on_signal, NULL);
    mesh_loop_signal (loop, SIGINT, s_on_signal, NULL);
}
