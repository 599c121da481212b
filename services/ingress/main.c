/*  seekmesh-ingress: wires config, the lws context (API, TLS and admin
    vhosts), the mesh sockets and signals to the one lws service loop.     */
#include "ingress.h"
#include "ingress_audit.h"
#include "ingress_guard.h"
#include "ingress_filter.h"

#include "mesh_conn.h"
#include "mesh_log.h"
#include "mesh_service.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <ev.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static ingress_t s_ingress;

static void
s_lws_log (int level, const char *line)
{
    size_t len = strlen (line);
    while (len && (line [len - 1] == '\n' || line [len - 1] == '\r'))
        len--;
    if (level & LLL_ERR)
        mesh_log_at (MESH_LOG_ERROR, "lws", "%.*s", (int) len, line);
    else
        mesh_log_at (MESH_LOG_WARN, "lws", "%.*s", (int) len, line);
}

static bool
s_ready (void *arg, mesh_buf_t *why)
{
    return ingress_mesh_ready ((ingress_t *) arg, why);
}

//  The address guard for the API, and a small one for the admin port.
//  Connections past the file limit would fail in accept() instead,
//  which lws answers by trying again at once
static void
s_guards_new (ingress_t *self)
{
    mesh_config_t *config = self->config;
    ingress_guard_limits_t limits = {
        .max_connections = mesh_setting_int (config, "ingress.max_connections"),
        .max_per_address = mesh_setting_int (config, "ingress.max_connections_per_address"),
        .unauth_per_second = (double) mesh_setting_int (config, "ingress.unauthenticated_per_second"),
        .unauth_burst = (double) mesh_setting_int (config, "ingress.unauthenticated_burst")
    };
    struct rlimit files;
    if (getrlimit (RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY) {
        int64_t room = (int64_t) files.rlim_cur - 256;
        if (room < 16)
            room = 16;
        if (limits.max_connections == 0 || limits.max_connections > room) {
            mesh_info ("ingress.max_connections %lld is over the file limit (%llu): %lld",
                       (long long) limits.max_connections, (unsigned long long) files.rlim_cur,
                       (long long) room);
            limits.max_connections = room;
        }
    }
    self->guard = ingress_guard_new (&limits);
    ingress_guard_limits_t admin_limits = { .max_connections = 64 };
    self->admin_guard = ingress_guard_new (&admin_limits);
}

//  The lws context on our own libev loop, so that we can stop it
static void
s_context_new (ingress_t *self, int64_t max_header_bytes)
{
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT
                 | LWS_SERVER_OPTION_LIBEV;
    self->loop = ev_loop_new (EVFLAG_AUTO);
    if (!self->loop)
        mesh_fatal ("cannot create the event loop");
    void *loops [1] = { self->loop };
    info.foreign_loops = loops;
    info.user = self;
    info.max_http_header_data = (unsigned short) max_header_bytes;
    info.max_http_header_pool = 0;         //  no limit: held streams keep theirs
    //  The first byte, and any gap in a body (the whole body has its own
    //  deadline: ingress.body_timeout_ms)
    info.timeout_secs = (unsigned int) self->header_timeout_s;
    self->context = lws_create_context (&info);
    if (!self->context)
        mesh_fatal ("cannot create the lws context");
}

//  After the loop: everything main made, in reverse
static void
s_stop (ingress_t *self)
{
    mesh_info ("stopping with %zu requests in flight", ingress_mesh_active (self));
    self->stopping = true;
    lws_sul_cancel (&self->drain_sul);
    lws_sul_cancel (&self->timers_sul);
    //  Cuts the connections left: their records are made, too late to be sent
    lws_context_destroy (self->context);
    ingress_filter_stop (self);
    ingress_audit_stop (self);
    ingress_mesh_stop (self);
    ingress_listen_stop (self);
    mesh_admin_destroy (&self->admin);
    ingress_guard_destroy (&self->guard);
    ingress_guard_destroy (&self->admin_guard);
    mesh_metrics_destroy (&self->metrics);
    mesh_config_destroy (&self->config);
    ev_loop_destroy (self->loop);
}

int
main (int argc, char *argv [])
{
    ingress_t *self = &s_ingress;
    self->config = mesh_service_config ("ingress", argc, argv);
    lws_set_log_level (LLL_ERR | LLL_WARN, s_lws_log);
    char why [512];
    mesh_config_t *config = self->config;
    const char *tls_listen = mesh_setting_str (config, "ingress.tls_listen");
    const char *tls_cert = mesh_setting_str (config, "ingress.tls_cert");
    const char *tls_key = mesh_setting_str (config, "ingress.tls_key");
    int64_t max_header_bytes = mesh_setting_int (config, "ingress.max_header_bytes");
    self->max_body_bytes = mesh_setting_int (config, "ingress.max_body_bytes");
    self->max_out_bytes = mesh_setting_int (config, "ingress.max_buffered_bytes");
    self->keepalive_interval_ms = mesh_setting_int (config, "ingress.keepalive_interval_ms");
    self->request_timeout_ms = mesh_setting_int (config, "ingress.request_timeout_ms");
    self->max_attempts = (uint32_t) mesh_setting_int (config, "ingress.max_attempts");
    self->default_max_tokens = (uint32_t) mesh_setting_int (config, "ingress.default_max_tokens");
    self->drain_ms = mesh_setting_int (config, "mesh.drain_ms");
    self->body_timeout_ms = mesh_setting_int (config, "ingress.body_timeout_ms");
    //  Whole seconds for lws, rounded up
    self->header_timeout_s = (int) ((mesh_setting_int (config, "ingress.header_timeout_ms") + 999) / 1000);
    self->idle_timeout_s = (int) ((mesh_setting_int (config, "ingress.idle_timeout_ms") + 999) / 1000);
    self->request_timers.delay_us = self->request_timeout_ms * 1000;
    self->body_timers.delay_us = self->body_timeout_ms * 1000;
    self->keepalive_timers.delay_us = self->keepalive_interval_ms * 1000;
    self->body_wait_timers.delay_us = INGRESS_H2_BODY_WAIT_MS * 1000;
    s_guards_new (self);
    if (*tls_listen && (!*tls_cert || !*tls_key))
        mesh_config_invalid (config, "ingress.tls_listen", "needs ingress.tls_cert and ingress.tls_key");
    self->metrics = mesh_metrics_new ();
    ingress_http_metrics (self);
    ingress_audit_configure (self);
    ingress_filter_configure (self);
    if (mesh_config_failed (config))
        mesh_fatal ("%s", mesh_config_failed (config));

    self->admin = mesh_admin_new (self->metrics);
    mesh_admin_set_ready (self->admin, s_ready, self);
    s_context_new (self, max_header_bytes);

    static const struct lws_protocols api [] = {
        { "http", NULL, 0, 0, 0, NULL, 0 }, { "mesh-fd", NULL, 0, 0, 0, NULL, 0 }, { NULL, NULL, 0, 0, 0, NULL, 0 }
    };
    struct lws_protocols *protocols = malloc (sizeof api);
    memcpy (protocols, api, sizeof api);
    protocols [0] = ingress_http_protocol;
    protocols [1] = ingress_fd_protocol;
    struct lws_protocols *admin = calloc (2, sizeof *admin);
    admin [0] = ingress_admin_protocol;

    //  The sockets first (a running process of this instance may hand its
    //  own over), then the vhosts that serve what they accept
    if (ingress_listen_open (self, why, sizeof why) < 0
    ||  ingress_listen_start (self, protocols, admin, why, sizeof why) < 0
    ||  ingress_mesh_start (self, why, sizeof why) < 0
    ||  ingress_audit_start (self, why, sizeof why) < 0)
        mesh_fatal ("%s", why);
    ingress_filter_start (self);

    ev_run (self->loop, 0);
    s_stop (self);
    free (protocols);
    free (admin);
    mesh_info ("stopped");
    return 0;
}
