/*  ingress_routers: the routers an ingress sends requests to.

    ingress.routers names them (or every instance of router.listen); an
    endpoint whose host is a name stands for every address it resolves to,
    looked up again every mesh.resolve_interval_ms (mesh_discovery, the
    lookups on mesh_resolver's thread): a router that appears gets a PUSH
    socket (ZMQ_IMMEDIATE: a router that is away refuses at once), one that
    leaves its name's answer (scaled down, or draining: a Kubernetes
    headless Service lists ready pods only) gets no new requests, and its
    socket is closed once no request it took is left.

    A request goes to the next router in turn that is connected, has not
    refused it, and has not said lately that it cannot take work (draining,
    no connector: ingress_routers_refused); when every router has said so,
    to those too, rather than to nobody.  A router whose connection closes
    (killed, or silent past the ZeroMQ heartbeat: a cut link) is reported
    to ingress_mesh, which sends again what that router held and no
    connector has said it serves (HELD).

    Every socket's monitor is adopted into the lws loop; the resolver's
    answers too.  lws service thread only.                                 */
#include "ingress.h"

#include "ingress_filter.h"

#include "mesh_curve.h"
#include "mesh_discovery.h"
#include "mesh_log.h"
#include "mesh_resolver.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

//  After a router said it cannot take work, others come first for this long
#define REFUSED_MS 1000

typedef struct {
    char endpoint [280];
    void *socket;               //  PUSH; NULL when the slot is free
    void *monitor;              //  PAIR: its connect/disconnect events
    ingress_watch_t watch;      //  on the monitor; arg: the router
    bool listed;                //  its name still resolves to it
    bool connected;
    int64_t refused_until_ms;
    size_t refs;                //  requests that went to it and are not over
} router_t;

struct ingress_routers_t {
    ingress_t *ingress;
    mesh_resolver_t *resolver;
    ingress_watch_t resolver_watch;
    mesh_discovery_t *discovery;
    router_t routers [INGRESS_MAX_ROUTERS];
    size_t next;                //  round robin
    unsigned monitors;          //  names inproc monitor endpoints
    int64_t resolve_interval_ms;
    lws_sorted_usec_list_t resolve_sul;
    mesh_metric_t *connected_gauge;
    mesh_metric_t *known_gauge;
};

static void
s_metrics (ingress_routers_t *self)
{
    size_t connected = 0, known = 0;
    for (size_t i = 0; i < INGRESS_MAX_ROUTERS; i++) {
        router_t *router = &self->routers [i];
        if (router->socket && router->listed)
            known++;
        if (router->socket && router->connected)
            connected++;
    }
    mesh_metric_set (self->connected_gauge, (double) connected);
    mesh_metric_set (self->known_gauge, (double) known);
}

static void
s_close (ingress_routers_t *self, router_t *router)
{
    (void) self;
    ingress_unadopt (&router->watch);
    if (router->socket) {
        zmq_socket_monitor (router->socket, NULL, 0);
        zmq_close (router->socket);
    }
    if (router->monitor)
        zmq_close (router->monitor);
    memset (router, 0, sizeof *router);
}

//  A router no longer listed goes once nothing it took is left
static void
s_close_if_done (ingress_routers_t *self, router_t *router)
{
    if (router->socket && !router->listed && router->refs == 0) {
        mesh_info ("router %s closed", router->endpoint);
        s_close (self, router);
        s_metrics (self);
    }
}

static void
s_on_monitor (ingress_t *ingress, ingress_watch_t *watch)
{
    ingress_routers_t *self = ingress->routers;
    router_t *router = watch->arg;
    int event, value;
    while (router->monitor && mesh_zmq_monitor_read (router->monitor, &event, &value)) {
        //  Connected and through the CURVE handshake: until then the socket
        //  (ZMQ_IMMEDIATE) refuses to send there
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            router->connected = true;
            mesh_info ("router %s connected", router->endpoint);
            ingress_filter_sync_soon (ingress);     //  it learns our word lists' version
        }
        else
        if (event == ZMQ_EVENT_DISCONNECTED && router->connected) {
            router->connected = false;
            mesh_warn ("router %s disconnected, %zu requests went to it", router->endpoint, router->refs);
            //  What it held is looked at after the grace, even if it is
            //  back by then: a restarted process knows none of it
            if (router->refs)
                ingress_mesh_router_lost (ingress, (int) (router - self->routers));
        }
    }
    s_metrics (self);
}

static router_t *
s_find (ingress_routers_t *self, const char *endpoint)
{
    for (size_t i = 0; i < INGRESS_MAX_ROUTERS; i++)
        if (self->routers [i].socket && strcmp (self->routers [i].endpoint, endpoint) == 0)
            return &self->routers [i];
    return NULL;
}

static int
s_open (ingress_routers_t *self, router_t *router, const char *endpoint, char *why, size_t why_size)
{
    ingress_t *ingress = self->ingress;
    void *ctx = ingress_mesh_context (ingress);
    snprintf (router->endpoint, sizeof router->endpoint, "%s", endpoint);
    router->socket = mesh_zmq_socket (ctx, ZMQ_PUSH);
    int one = 1;
    zmq_setsockopt (router->socket, ZMQ_IMMEDIATE, &one, sizeof one);
    //  A restarted router is found again within a quarter second
    int reconnect_max = 250;
    zmq_setsockopt (router->socket, ZMQ_RECONNECT_IVL_MAX, &reconnect_max, sizeof reconnect_max);
    char name [64];
    snprintf (name, sizeof name, "inproc://ingress-router-monitor-%u", self->monitors++);
    if (zmq_socket_monitor (router->socket, name, ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) < 0
    ||  !(router->monitor = zmq_socket (ctx, ZMQ_PAIR))
    ||  zmq_connect (router->monitor, name) < 0) {
        snprintf (why, why_size, "cannot watch router %s: %s", endpoint, zmq_strerror (errno));
        return -1;
    }
    if (mesh_curve_connect (router->socket, "router", endpoint, why, why_size) < 0)
        return -1;
    router->watch.arg = router;
    if (ingress_adopt_socket (ingress, &router->watch, router->monitor, s_on_monitor) < 0) {
        snprintf (why, why_size, "cannot watch the router socket");
        return -1;
    }
    router->listed = true;
    return 0;
}

//  mesh_discovery: a router appeared or left its name's answer
static void
s_on_peer (void *arg, const char *endpoint, bool up)
{
    ingress_routers_t *self = arg;
    router_t *router = s_find (self, endpoint);
    if (!up) {
        if (router) {
            router->listed = false;
            s_close_if_done (self, router);
        }
        s_metrics (self);
        return;
    }
    if (router) {
        router->listed = true;      //  back in the answer
        s_metrics (self);
        return;
    }
    for (size_t i = 0; i < INGRESS_MAX_ROUTERS && !router; i++)
        if (!self->routers [i].socket)
            router = &self->routers [i];
    if (!router) {
        mesh_error ("router %s: already %d routers, not using it", endpoint, INGRESS_MAX_ROUTERS);
        return;
    }
    char why [512];
    if (s_open (self, router, endpoint, why, sizeof why) < 0) {
        mesh_error ("router %s: %s", endpoint, why);
        s_close (self, router);
        return;
    }
    mesh_info ("router %s", endpoint);
    s_metrics (self);
}

static void
s_on_resolved (ingress_t *ingress, ingress_watch_t *watch)
{
    (void) watch;
    mesh_resolver_dispatch (ingress->routers->resolver);
}

static void
s_on_resolve_timer (lws_sorted_usec_list_t *sul)
{
    ingress_routers_t *self = lws_container_of (sul, ingress_routers_t, resolve_sul);
    mesh_discovery_refresh (self->discovery);
    lws_sul_schedule (self->ingress->context, 0, &self->resolve_sul, s_on_resolve_timer,
                      self->resolve_interval_ms * LWS_US_PER_MS);
}

int
ingress_routers_start (ingress_t *ingress, char *why, size_t why_size)
{
    mesh_config_t *config = ingress->config;
    ingress_routers_t *self = calloc (1, sizeof *self);
    assert (self);
    ingress->routers = self;
    self->ingress = ingress;
    self->resolve_interval_ms = mesh_setting_int (config, "mesh.resolve_interval_ms");
    self->connected_gauge = mesh_metrics_gauge (ingress->metrics, "seekmesh_ingress_routers_connected",
        "Routers this ingress has a live connection to.", NULL);
    self->known_gauge = mesh_metrics_gauge (ingress->metrics, "seekmesh_ingress_routers",
        "Routers this ingress knows of (every address of every name in ingress.routers).", NULL);
    self->resolver = mesh_resolver_new ();
    if (!self->resolver
    ||  ingress_adopt_fd (ingress, &self->resolver_watch, dup (mesh_resolver_fd (self->resolver)),
                          s_on_resolved) < 0) {
        snprintf (why, why_size, "cannot start the resolver");
        return -1;
    }
    self->discovery = mesh_discovery_new (self->resolver, "router", s_on_peer, self);
    size_t count = mesh_setting_count (config, "ingress.routers");
    if (count == 0) {
        snprintf (why, why_size, "config %s: ingress.routers: no router", mesh_config_file (config));
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        const char *endpoint = mesh_setting_item (config, "ingress.routers", i);
        if (mesh_discovery_add (self->discovery, endpoint) < 0) {
            snprintf (why, why_size, "config %s: ingress.routers: \"%s\" is not tcp://host:port or ipc://path",
                      mesh_config_file (config), endpoint);
            return -1;
        }
    }
    lws_sul_schedule (ingress->context, 0, &self->resolve_sul, s_on_resolve_timer,
                      self->resolve_interval_ms * LWS_US_PER_MS);
    return 0;
}

void
ingress_routers_stop (ingress_t *ingress)
{
    ingress_routers_t *self = ingress->routers;
    if (!self)
        return;
    lws_sul_cancel (&self->resolve_sul);
    mesh_discovery_destroy (&self->discovery);
    for (size_t i = 0; i < INGRESS_MAX_ROUTERS; i++)
        if (self->routers [i].socket)
            s_close (self, &self->routers [i]);
    ingress_unadopt (&self->resolver_watch);
    mesh_resolver_destroy (&self->resolver);
    free (self);
    ingress->routers = NULL;
}

//  A router that may take msg: not in `tried`, connected, and (if any is)
//  not one that refused work lately
int
ingress_routers_send_request (ingress_t *ingress, const mesh_msg_t *msg, uint64_t tried)
{
    ingress_routers_t *self = ingress->routers;
    int64_t now = mesh_mono_ms ();
    for (int pass = 0; pass < 2; pass++) {
        for (size_t n = 0; n < INGRESS_MAX_ROUTERS; n++) {
            size_t at = self->next++ % INGRESS_MAX_ROUTERS;
            router_t *router = &self->routers [at];
            if (!router->socket || !router->listed || !router->connected
            ||  (tried & ((uint64_t) 1 << at)))
                continue;
            if (pass == 0 && router->refused_until_ms > now)
                continue;
            //  ZMQ_IMMEDIATE: refused at once unless its connection is up
            if (mesh_msg_send (router->socket, msg, NULL, 0, ZMQ_DONTWAIT) == 0) {
                router->refs++;
                return (int) at;
            }
        }
    }
    return -1;
}

int
ingress_routers_send (ingress_t *ingress, int index, const mesh_msg_t *msg)
{
    router_t *router = &ingress->routers->routers [index];
    if (!router->socket)
        return -1;
    if (mesh_msg_send (router->socket, msg, NULL, 0, ZMQ_DONTWAIT) < 0) {
        mesh_warn ("cannot send %s to %s: %s req=%s", mesh_msg_name (msg->type), router->endpoint,
                   zmq_strerror (errno), msg->id);
        return -1;
    }
    return 0;
}

//  To every connected router (SYNC)
void
ingress_routers_broadcast (ingress_t *ingress, const mesh_msg_t *msg)
{
    ingress_routers_t *self = ingress->routers;
    for (size_t i = 0; i < INGRESS_MAX_ROUTERS; i++) {
        router_t *router = &self->routers [i];
        if (router->socket && router->connected)
            mesh_msg_send (router->socket, msg, NULL, 0, ZMQ_DONTWAIT);
    }
}

void
ingress_routers_release (ingress_t *ingress, int index)
{
    ingress_routers_t *self = ingress->routers;
    router_t *router = &self->routers [index];
    assert (router->refs > 0);
    router->refs--;
    s_close_if_done (self, router);
}

void
ingress_routers_refused (ingress_t *ingress, int index)
{
    router_t *router = &ingress->routers->routers [index];
    router->refused_until_ms = mesh_mono_ms () + REFUSED_MS;
}

const char *
ingress_routers_endpoint (ingress_t *ingress, int index)
{
    return ingress->routers->routers [index].endpoint;
}

void
ingress_routers_poll (ingress_t *ingress)
{
    ingress_routers_t *self = ingress->routers;
    for (size_t i = 0; i < INGRESS_MAX_ROUTERS; i++) {
        router_t *router = &self->routers [i];
        if (router->monitor && ingress_socket_has_input (router->monitor))
            s_on_monitor (ingress, &router->watch);
    }
}

bool
ingress_routers_ready (ingress_t *ingress, mesh_buf_t *why)
{
    ingress_routers_t *self = ingress->routers;
    for (size_t i = 0; i < INGRESS_MAX_ROUTERS; i++)
        if (self->routers [i].socket && self->routers [i].listed && self->routers [i].connected)
            return true;
    if (mesh_discovery_settling (self->discovery))
        mesh_buf_append_str (why, "looking up the routers' names");
    else
        mesh_buf_append_str (why, "no router connected");
    return false;
}
