/*  connector_tee: the connector's link to the cache stage.

    A request dispatched with cache "miss" leads a call the cache shares
    with identical requests and keeps the answer of: every event the
    connector sends its ingress (HEAD, CHUNK, END, ERROR) goes to the cache
    as well, on a DEALER connected to connector.caches (ZMQ_IMMEDIATE and
    never blocking: a cache that is away or slow loses the copies, never
    the client's stream).  When such a request's ingress goes away, the
    call is not cut here: the cache is told (CANCEL) and decides, since
    other clients may be reading it; it cancels the call through the
    leader's router when nobody does.  Reactor thread only.                 */
#include "connector.h"

#include "mesh_curve.h"
#include "mesh_log.h"
#include "mesh_settings.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

struct connector_tee_t {
    void *socket;               //  DEALER to the cache, or NULL
    char endpoint [256];
    mesh_metric_t *copies;
    mesh_metric_t *dropped;
};

connector_tee_t *
connector_tee_new (mesh_config_t *config, void *ctx, mesh_metrics_t *metrics, const char *name)
{
    connector_tee_t *self = calloc (1, sizeof *self);
    assert (self);
    size_t count = mesh_setting_count (config, "connector.caches");
    if (count > 1)
        mesh_config_invalid (config, "connector.caches", "one cache stage at most, not %zu", count);
    if (metrics) {
        const char *family = "seekmesh_connector_cache_copies_total";
        const char *help = "Events of cacheable calls copied to the cache stage (sent, or dropped: "
                           "the cache away or slow).";
        self->copies = mesh_metrics_counter (metrics, family, help, "result=\"sent\"");
        self->dropped = mesh_metrics_counter (metrics, family, help, "result=\"dropped\"");
    }
    if (count != 1 || !ctx)
        return self;
    snprintf (self->endpoint, sizeof self->endpoint, "%s", mesh_setting_item (config, "connector.caches", 0));
    self->socket = mesh_zmq_socket (ctx, ZMQ_DEALER);
    assert (self->socket);
    int one = 1;
    zmq_setsockopt (self->socket, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt (self->socket, ZMQ_ROUTING_ID, name, strlen (name));
    char why [512];
    if (mesh_curve_connect (self->socket, "cache", self->endpoint, why, sizeof why) < 0)
        mesh_error ("cache link: %s", why);
    else
        mesh_info ("cache %s", self->endpoint);
    return self;
}

void
connector_tee_destroy (connector_tee_t **self_p)
{
    assert (self_p);
    connector_tee_t *self = *self_p;
    if (!self)
        return;
    if (self->socket)
        zmq_close (self->socket);
    free (self);
    *self_p = NULL;
}

bool
connector_tee_on (connector_tee_t *self)
{
    return self && self->socket;
}

int
connector_tee_send (connector_tee_t *self, const mesh_msg_t *msg)
{
    if (!self || !self->socket)
        return -1;
    if (mesh_msg_send (self->socket, msg, NULL, 0, ZMQ_DONTWAIT) == 0) {
        if (self->copies)
            mesh_metric_inc (self->copies);
        return 0;
    }
    if (self->dropped)
        mesh_metric_inc (self->dropped);
    mesh_debug ("cannot copy %s to the cache: %s req=%s", mesh_msg_name (msg->type),
                zmq_strerror (errno), msg->id);
    return -1;
}

void
connector_tee_test (bool verbose)
{
    (void) verbose;
    //  Without a cache stage there is nothing to copy to
    const char *text = "{ \"mesh\": { \"instances\": { \"cache\": 0 } } }";
    char why [128];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "t.json", why, sizeof why);
    connector_tee_t *tee = connector_tee_new (config, NULL, NULL, "connector-test");
    assert (!connector_tee_on (tee));
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_CHUNK, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    assert (connector_tee_send (tee, &msg) == -1);
    connector_tee_destroy (&tee);
    connector_tee_destroy (&tee);
    mesh_config_destroy (&config);
}
