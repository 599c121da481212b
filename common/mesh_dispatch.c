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
mesh_dispatch_batch (void *arg, mesh_inbox_t *inbox)
{
    (void) arg; (void) inbox;
    assert (false);             //  mesh_dispatch opens batches itself
    return 0;
}

//  Hands one message to its handler; closes the inbox.  -1 to stop.
static int
s_deliver (const mesh_conversation_t *conversation, void *arg, mesh_dispatch_counters_t *counters,
           mesh_inbox_t *inbox)
{
    mesh_handler_fn *handler = mesh_dispatch_route (conversation, inbox->msg.type);
    if (!handler || handler == mesh_dispatch_batch) {
        mesh_warn ("dropped %s from a %s: not part of this conversation req=%s",
                   mesh_msg_name (inbox->msg.type), conversation->peer, inbox->msg.id);
        mesh_metric_inc (counters->unexpected);
        mesh_inbox_close (inbox);
        return 0;
    }
    if (conversation->every && conversation->every (arg, inbox) < 0) {
        mesh_inbox_close (inbox);
        return -1;
    }
    int rc = handler (arg, inbox);
    mesh_inbox_close (inbox);
    return rc < 0 ? -1 : 0;
}

//  Each message of a batch, in order, as if it had come alone: its inbox
//  shares the batch's frame (and the connection it came over)
static int
s_unbatch (const mesh_conversation_t *conversation, void *arg, mesh_dispatch_counters_t *counters,
           mesh_inbox_t *batch)
{
    mesh_inbox_t inbox;
    size_t offset = 0;
    mesh_bytes_t part;
    int rc;
    while ((rc = mesh_msg_batch_next (batch->msg.data, &offset, &part)) == 1) {
        memcpy (inbox.identity, batch->identity, batch->identity_size);
        inbox.identity_size = batch->identity_size;
        inbox.source_fd = batch->source_fd;
        zmq_msg_init (&inbox.frame);
        zmq_msg_copy (&inbox.frame, &batch->frame);
        //  The copy may not share the batch's bytes (ZeroMQ copies small
        //  messages): decode from its own
        const char *base = (const char *) zmq_msg_data (&inbox.frame);
        size_t at = (size_t) (part.data - (const char *) zmq_msg_data (&batch->frame));
        char why [128];
        if (mesh_msg_decode (&inbox.msg, base + at, part.size, why, sizeof why) < 0
        ||  inbox.msg.type == MESH_MSG_BATCH) {
            mesh_warn ("dropped a malformed message in a batch from a %s: %s", conversation->peer,
                       inbox.msg.type == MESH_MSG_BATCH ? "a batch in a batch" : why);
            mesh_metric_inc (counters->malformed);
            mesh_inbox_close (&inbox);
            continue;
        }
        if (s_deliver (conversation, arg, counters, &inbox) < 0)
            return -1;
    }
    if (rc < 0) {
        mesh_warn ("dropped the rest of a batch from a %s: its lengths do not add up", conversation->peer);
        mesh_metric_inc (counters->malformed);
    }
    return 0;
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
        if (inbox.msg.type == MESH_MSG_BATCH
        &&  mesh_dispatch_route (conversation, MESH_MSG_BATCH) == mesh_dispatch_batch) {
            rc = s_unbatch (conversation, arg, counters, &inbox);
            mesh_inbox_close (&inbox);
        }
        else
            rc = s_deliver (conversation, arg, counters, &inbox);
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

    //  A batch: each message routed in order, as if alone (every counts
    //  each); a table without the BATCH route drops it as unexpected
    static const mesh_route_t batched [] = {
        { MESH_MSG_HEARTBEAT, s_test_heartbeat },
        { MESH_MSG_DONE,      s_test_done },
        { MESH_MSG_BATCH,     mesh_dispatch_batch },
        { 0, NULL }
    };
    mesh_conversation_t takes_batches = { "tester", false, 3, s_test_every, batched };
    state = (test_state_t) { 0 };
    mesh_buf_t batch;
    mesh_buf_init (&batch);
    char id [MESH_ID_LEN + 1];
    mesh_id_new (id);
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_HEARTBEAT, NULL);
    assert (mesh_msg_batch_add (&batch, &msg) == 0);
    mesh_msg_init (&msg, MESH_MSG_DONE, id);
    assert (mesh_msg_batch_add (&batch, &msg) == 0);
    mesh_msg_init (&msg, MESH_MSG_HEARTBEAT, NULL);
    assert (mesh_msg_batch_add (&batch, &msg) == 0);
    assert (mesh_msg_send_batch (push, &batch, 3, NULL, 0, 0) == 0);
    s_test_wait (pull);
    assert (mesh_dispatch (pull, &takes_batches, &state, &counters) == 0);
    assert (state.pings == 2 && state.dones == 1 && state.every == 3);
    double unexpected = mesh_metric_value (counters.unexpected);
    assert (mesh_msg_send_batch (push, &batch, 3, NULL, 0, 0) == 0);
    s_test_wait (pull);
    assert (mesh_dispatch (pull, &conversation, &state, &counters) == 0);
    assert (state.pings == 2 && mesh_metric_value (counters.unexpected) == unexpected + 1);
    mesh_buf_free (&batch);

    zmq_close (push);
    zmq_close (pull);
    zmq_ctx_term (ctx);
    mesh_metrics_destroy (&metrics);
}
