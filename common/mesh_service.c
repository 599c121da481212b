/*  mesh_service: command line, config and graceful drain for mains.       */
#include "mesh_service.h"
#include "mesh_log.h"
#include "mesh_settings.h"
#include "mesh_zmq.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void
s_usage (const char *name)
{
    fprintf (stderr, "usage: seekmesh-%s [-c CONFIG] [--print-config] [--settings]\n"
             "  -c CONFIG        the config file (default $SEEKMESH_CONFIG, else %s)\n"
             "  --print-config   print the configuration this instance would run with, as JSON\n"
             "                   (SEEKMESH_INSTANCE=i moves its ports; secrets redacted), and exit\n"
             "  --settings       print every setting: name, kind, default, range, environment\n"
             "                   variable, and exit\n", name, MESH_CONFIG_DEFAULT);
}

mesh_config_t *
mesh_service_config (const char *name, int argc, char *argv [])
{
    const char *path = NULL;
    bool print_config = false;
    static const struct option options [] = {
        { "print-config", no_argument, NULL, 'p' },
        { "settings", no_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "c:h", options, NULL)) != -1) {
        if (opt == 'c')
            path = optarg;
        else
        if (opt == 'p')
            print_config = true;
        else
        if (opt == 's') {
            char *text = mesh_settings_describe ();
            puts (text);
            free (text);
            exit (0);
        }
        else {
            s_usage (name);
            exit (opt == 'h' ? 0 : 2);
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
    //  Every key known and every setting valid, whichever service reads it
    if (mesh_settings_check (config) < 0)
        mesh_fatal ("%s", mesh_config_failed (config));
    if (print_config) {
        char *text = mesh_settings_effective (config);
        if (mesh_config_failed (config))
            mesh_fatal ("%s", mesh_config_failed (config));
        puts (text);
        free (text);
        exit (0);
    }
    //  Every ZeroMQ link pings its peer: a peer cut off (a link down, a
    //  host gone) is a disconnect within a heartbeat liveness, as a killed
    //  one is at once
    int64_t beat_ms = mesh_setting_int (config, "router.heartbeat_ms");
    mesh_zmq_heartbeat (beat_ms, beat_ms * mesh_setting_int (config, "router.heartbeat_liveness"));
    return config;
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
