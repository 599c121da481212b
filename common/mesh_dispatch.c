/*  mesh_dispatch: see mesh_dispatch.h.                                    */
#include "mesh_dispatch.h"
#include "mesh_log.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

void
mesh_dispatch_counters (mesh_dispatch_counters_t *counters, mesh_metrics_t *metrics,
                        const char *service)
{
    char name [96];
    snprintf (name, sizeof name, "seekmesh_%s_bad_messages_total", service);
    const char *help = "Messages from the mesh that were dropped: malformed, or not expected on the socket";
    counters->malformed = mesh_metrics_counter (metrics, name, help, "reason=\"malformed\"");
    counters->unexpected = mesh_metrics_counter (metrics, name, help, "reason=\"unexpected\"");
}

mesh_handler_fn *
mesh_dispatch_route (const mesh_conversation_t *conversation, uint32_t type)
{
    for (const mesh_route_t *route = conversation->routes; route->handler; route++)
        if (route->type == type)
            return route->handler;
    return NULL;
}

int
mesh_dispatch (void *socket, const mesh_conversation_t *conversation, void *arg,
               mesh_dispatch_counters_t *counters)
{
    for (int count = 0; count < conversation->batch; count++) {
        mesh_inbox_t inbox;
        char why [128];
        int rc = mesh_msg_recv (socket, &inbox, conversation->router, why, sizeof why);
        if (rc == 0)
            return 0;
        if (rc < 0) {
            mesh_warn ("dropped a malformed message from a %s: %s", conversation->peer, why);
            mesh_metric_inc (counters->malformed);
            continue;
        }
        mesh_handler_fn *handler = mesh_dispatch_route (conversation, inbox.msg.type);
        if (!handler) {
            mesh_warn ("dropped %s from a %s: not part of this conversation req=%s",
                       mesh_msg_name (inbox.msg.type), conversation->peer, inbox.msg.id);
            mesh_metric_inc (counters->unexpected);
            mesh_inbox_close (&inbox);
            continue;
        }
        if (conversation->every && conversation->every (arg, &inbox) < 0) {
            mesh_inbox_close (&inbox);
            return -1;
        }
        rc = handler (arg, &inbox);
        mesh_inbox_close (&inbox);
        if (rc < 0)
            return -1;
    }
    return 1;
}

//  Selftest -------------------------------------------------------------------

typedef struct {
    int pings, dones, every;
    bool stop_at_done;
} test_state_t;

static int
s_test_every (void *arg, mesh_inbox_t *inbox)
{
    (void) inbox;
    ((test_state_t *) arg)->every++;
    return 0;
}

static int
s_test_heartbeat (void *arg, mesh_inbox_t *inbox)
{
    assert (inbox->msg.type == MESH_MSG_HEARTBEAT && inbox->identity_size == 0);
    ((test_state_t *) arg)->pings++;
    return 0;
}

static int
s_test_done (void *arg, mesh_inbox_t *inbox)
{
    test_state_t *state = arg;
    assert (inbox->msg.type == MESH_MSG_DONE);
    state->dones++;
    return state->stop_at_done ? -1 : 0;
}

static void
s_test_send (void *push, uint32_t type)
{
    char id [MESH_ID_LEN + 1];
    mesh_id_new (id);
    mesh_msg_t msg;
    mesh_msg_init (&msg, type, type == MESH_MSG_HEARTBEAT ? NULL : id);
    assert (mesh_msg_send (push, &msg, NULL, 0, 0) == 0);
}

//  Waits until socket has something to read
static void
s_test_wait (void *socket)
{
    zmq_pollitem_t item = { socket, 0, ZMQ_POLLIN, 0 };
    assert (zmq_poll (&item, 1, 2000) == 1);
}

void
mesh_dispatch_test (bool verbose)
{
    (void) verbose;
    static const mesh_route_t routes [] = {
        { MESH_MSG_HEARTBEAT, s_test_heartbeat },
        { MESH_MSG_DONE,      s_test_done },
        { 0, NULL }
    };
    mesh_conversation_t conversation = { "tester", false, 3, s_test_every, routes };
    assert (mesh_dispatch_route (&conversation, MESH_MSG_DONE) == s_test_done);
    assert (mesh_dispatch_route (&conversation, MESH_MSG_REQUEST) == NULL);

    mesh_metrics_t *metrics = mesh_metrics_new ();
    mesh_dispatch_counters_t counters;
    mesh_dispatch_counters (&counters, metrics, "tester");
    void *ctx = zmq_ctx_new ();
    void *pull = mesh_zmq_socket (ctx, ZMQ_PULL);
    void *push = mesh_zmq_socket (ctx, ZMQ_PUSH);
    assert (zmq_bind (pull, "inproc://dispatch") == 0);
    assert (zmq_connect (push, "inproc://dispatch") == 0);

    //  Four messages, a batch of three: one is left for the next call; a
    //  REQUEST is not part of the conversation; garbage is malformed
    test_state_t state = { 0 };
    s_test_send (push, MESH_MSG_HEARTBEAT);
    s_test_send (push, MESH_MSG_REQUEST);
    assert (zmq_send (push, "junk", 4, 0) == 4);
    s_test_send (push, MESH_MSG_HEARTBEAT);
    s_test_wait (pull);
    assert (mesh_dispatch (pull, &conversation, &state, &counters) == 1);
    assert (state.pings == 1 && state.every == 1);
    assert (mesh_metric_value (counters.unexpected) == 1);
    assert (mesh_metric_value (counters.malformed) == 1);
    s_test_wait (pull);
    assert (mesh_dispatch (pull, &conversation, &state, &counters) == 0);
    assert (state.pings == 2 && state.every == 2);

    //  A handler that stops the batch: what follows waits
    state.stop_at_done = true;
    s_test_send (push, MESH_MSG_DONE);
    s_test_send (push, MESH_MSG_HEARTBEAT);
    s_test_wait (pull);
    assert (mesh_dispatch (pull, &conversation, &state, &counters) == -1);
    assert (state.dones == 1 && state.pings == 2);
    s_test_wait (pull);
    assert (mesh_dispatch (pull, &conversation, &state, &counters) == 0);
    assert (state.pings == 3);

    zmq_close (push);
    zmq_close (pull);
    zmq_ctx_term (ctx);
    mesh_metrics_destroy (&metrics);
}
