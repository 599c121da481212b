/*  mesh_zmq: standard socket options and the reply-endpoint outbox.         */
#include "mesh_zmq.h"
#include "mesh_curve.h"
#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static int s_heartbeat_ivl_ms, s_heartbeat_timeout_ms;

void
mesh_zmq_heartbeat (int64_t ivl_ms, int64_t timeout_ms)
{
    s_heartbeat_ivl_ms = (int) ivl_ms;
    s_heartbeat_timeout_ms = (int) timeout_ms;
}

void *
mesh_zmq_socket (void *ctx, int type)
{
    void *socket = zmq_socket (ctx, type);
    if (!socket)
        return NULL;
    int linger = 0, hwm = MESH_ZMQ_HWM, keepalive = 1, idle = 30;
    zmq_setsockopt (socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (socket, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (socket, ZMQ_TCP_KEEPALIVE, &keepalive, sizeof keepalive);
    zmq_setsockopt (socket, ZMQ_TCP_KEEPALIVE_IDLE, &idle, sizeof idle);
    //  Reconnect quickly after a peer restarts, backing off to 1 s
    int reconnect = 100, reconnect_max = 1000;
    zmq_setsockopt (socket, ZMQ_RECONNECT_IVL, &reconnect, sizeof reconnect);
    zmq_setsockopt (socket, ZMQ_RECONNECT_IVL_MAX, &reconnect_max, sizeof reconnect_max);
    //  Nothing larger than the largest legal message is even read: a peer
    //  that sends one is disconnected by ZeroMQ
    int64_t max = MESH_ZMQ_MAX_MESSAGE_BYTES;
    zmq_setsockopt (socket, ZMQ_MAXMSGSIZE, &max, sizeof max);
    if (s_heartbeat_ivl_ms > 0) {
        zmq_setsockopt (socket, ZMQ_HEARTBEAT_IVL, &s_heartbeat_ivl_ms, sizeof s_heartbeat_ivl_ms);
        zmq_setsockopt (socket, ZMQ_HEARTBEAT_TIMEOUT, &s_heartbeat_timeout_ms,
                        sizeof s_heartbeat_timeout_ms);
    }
    return socket;
}

int
mesh_zmq_monitor_read (void *monitor, int *event, int *value)
{
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    if (zmq_msg_recv (&frame, monitor, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&frame);
        return 0;
    }
    //  First frame: 16-bit event, 32-bit value; second: the peer address
    uint16_t event16 = 0;
    uint32_t value32 = 0;
    if (zmq_msg_size (&frame) >= 6) {
        memcpy (&event16, zmq_msg_data (&frame), 2);
        memcpy (&value32, (char *) zmq_msg_data (&frame) + 2, 4);
    }
    while (zmq_msg_more (&frame)) {
        zmq_msg_close (&frame);
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, monitor, ZMQ_DONTWAIT) < 0)
            break;
    }
    zmq_msg_close (&frame);
    *event = event16;
    *value = (int) value32;
    return 1;
}

typedef struct peer_t peer_t;
struct peer_t {
    char *endpoint;
    void *push;
    void *monitor;              //  PAIR reading the PUSH socket's events
    mesh_outbox_t *outbox;
    mesh_buf_t batch;           //  messages queued this turn of the loop
    size_t batch_count;
    peer_t *next_queued;        //  in the outbox's list of peers with a batch
};

//  A batch leaves at the end of the loop's turn, or at once when it holds
//  this many messages or bytes
#define BATCH_MAX_MESSAGES 64
#define BATCH_MAX_BYTES (256 * 1024)

struct mesh_outbox_t {
    void *ctx;
    mesh_loop_t *loop;
    mesh_outbox_lost_fn *lost_fn;
    void *lost_arg;
    mesh_map_t *peers;          //  endpoint -> peer_t
    unsigned monitors;          //  names inproc monitor endpoints
    peer_t *queued;             //  peers with a batch to send
};

static int s_flush_all (mesh_loop_t *loop, void *arg);

mesh_outbox_t *
mesh_outbox_new (void *ctx, mesh_loop_t *loop, mesh_outbox_lost_fn *fn, void *arg)
{
    mesh_outbox_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ctx = ctx;
    self->loop = loop;
    self->lost_fn = fn;
    self->lost_arg = arg;
    self->peers = mesh_map_new ();
    if (loop)
        mesh_loop_before_wait (loop, s_flush_all, self);
    return self;
}

void
mesh_outbox_destroy (mesh_outbox_t **self_p)
{
    assert (self_p);
    mesh_outbox_t *self = *self_p;
    if (!self)
        return;
    //  What this turn queued still goes (a drain's last answers)
    s_flush_all (self->loop, self);
    if (self->loop)
        mesh_loop_before_wait_remove (self->loop, s_flush_all, self);
    size_t cursor = 0;
    peer_t *peer;
    while ((peer = mesh_map_next (self->peers, &cursor, NULL))) {
        mesh_loop_zmq_remove (self->loop, peer->monitor);
        zmq_socket_monitor (peer->push, NULL, 0);
        zmq_close (peer->monitor);
        zmq_close (peer->push);
        mesh_buf_free (&peer->batch);
        free (peer->endpoint);
        free (peer);
    }
    mesh_map_destroy (&self->peers);
    free (self);
    *self_p = NULL;
}

static int
s_on_monitor (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    peer_t *peer = arg;
    int event, value;
    while (mesh_zmq_monitor_read (socket, &event, &value))
        if (event == ZMQ_EVENT_DISCONNECTED && peer->outbox->lost_fn) {
            mesh_info ("reply endpoint %s disconnected", peer->endpoint);
            peer->outbox->lost_fn (peer->outbox->lost_arg, peer->endpoint);
        }
    return MESH_LOOP_DRAINED;
}

static peer_t *
s_peer (mesh_outbox_t *self, const char *endpoint)
{
    peer_t *peer = mesh_map_get (self->peers, endpoint);
    if (peer)
        return peer;
    peer = calloc (1, sizeof *peer);
    assert (peer);
    peer->outbox = self;
    peer->endpoint = strdup (endpoint);
    char why [512] = "";
    peer->push = mesh_zmq_socket (self->ctx, ZMQ_PUSH);
    //  Replies still queued at shutdown (a drain's last errors) get a moment
    int linger = 1000;
    if (peer->push)
        zmq_setsockopt (peer->push, ZMQ_LINGER, &linger, sizeof linger);
    char name [64];
    snprintf (name, sizeof name, "inproc://mesh-outbox-monitor-%p-%u", (void *) self, self->monitors++);
    if (!peer->push
    ||  zmq_socket_monitor (peer->push, name, ZMQ_EVENT_DISCONNECTED) < 0
    ||  !(peer->monitor = zmq_socket (self->ctx, ZMQ_PAIR))
    ||  zmq_connect (peer->monitor, name) < 0
    ||  mesh_curve_connect (peer->push, "ingress", endpoint, why, sizeof why) < 0
    ||  mesh_loop_zmq_add (self->loop, peer->monitor, s_on_monitor, peer) < 0) {
        int saved = errno;
        mesh_warn ("cannot connect to reply endpoint %s: %s", endpoint, *why ? why : zmq_strerror (saved));
        if (peer->monitor)
            zmq_close (peer->monitor);
        if (peer->push)
            zmq_close (peer->push);
        free (peer->endpoint);
        free (peer);
        errno = saved;
        return NULL;
    }
    mesh_map_put (self->peers, peer->endpoint, peer);
    return peer;
}

static void
s_flush (peer_t *peer)
{
    if (mesh_msg_send_batch (peer->push, &peer->batch, peer->batch_count, NULL, 0, ZMQ_DONTWAIT) < 0)
        mesh_warn ("cannot send %zu messages to %s: %s", peer->batch_count, peer->endpoint,
                   zmq_strerror (errno));
    mesh_buf_reset (&peer->batch);
    mesh_buf_trim (&peer->batch, BATCH_MAX_BYTES);
    peer->batch_count = 0;
}

static int
s_flush_all (mesh_loop_t *loop, void *arg)
{
    (void) loop;
    mesh_outbox_t *self = arg;
    while (self->queued) {
        peer_t *peer = self->queued;
        self->queued = peer->next_queued;
        peer->next_queued = NULL;
        if (peer->batch_count)
            s_flush (peer);
    }
    return 0;
}

void
mesh_outbox_flush (mesh_outbox_t *self)
{
    s_flush_all (self->loop, self);
}

int
mesh_outbox_send (mesh_outbox_t *self, const char *endpoint, const mesh_msg_t *msg)
{
    peer_t *peer = s_peer (self, endpoint);
    if (!peer)
        return -1;
    if (!self->loop)
        return mesh_msg_send (peer->push, msg, NULL, 0, ZMQ_DONTWAIT);
    if (mesh_msg_batch_add (&peer->batch, msg) < 0) {
        errno = EINVAL;
        return -1;
    }
    if (peer->batch_count++ == 0) {
        peer->next_queued = self->queued;
        self->queued = peer;
    }
    if (peer->batch_count >= BATCH_MAX_MESSAGES || mesh_buf_size (&peer->batch) >= BATCH_MAX_BYTES)
        s_flush (peer);
    return 0;
}

//  Selftest -----------------------------------------------------------------

typedef struct {
    int lost;
    char endpoint [64];
} test_state_t;

static void
s_test_lost (void *arg, const char *endpoint)
{
    test_state_t *state = arg;
    state->lost++;
    snprintf (state->endpoint, sizeof state->endpoint, "%s", endpoint);
}

static int
s_test_timeout (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer; (void) arg;
    return -1;
}

static int
s_test_stop_when_lost (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    test_state_t *state = arg;
    if (state->lost)
        return -1;
    mesh_loop_timer_start (loop, timer, 5, s_test_stop_when_lost, arg);
    return 0;
}

void
mesh_zmq_test (bool verbose)
{
    (void) verbose;
    void *ctx = zmq_ctx_new ();
    mesh_loop_t *loop = mesh_loop_new ();
    test_state_t state = { 0 };
    mesh_outbox_t *outbox = mesh_outbox_new (ctx, loop, s_test_lost, &state);

    void *pull = mesh_zmq_socket (ctx, ZMQ_PULL);
    assert (zmq_bind (pull, "tcp://127.0.0.1:*") == 0);
    char endpoint [64];
    size_t size = sizeof endpoint;
    zmq_getsockopt (pull, ZMQ_LAST_ENDPOINT, endpoint, &size);

    char id [MESH_ID_LEN + 1];
    mesh_id_new (id);
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_CHUNK, id);
    msg.data = (mesh_bytes_t) { "hello", 5 };
    assert (mesh_outbox_send (outbox, endpoint, &msg) == 0);
    mesh_outbox_flush (outbox);
    mesh_inbox_t inbox;
    char why [64];
    int rc, tries = 0;
    while ((rc = mesh_msg_recv (pull, &inbox, false, why, sizeof why)) == 0 && tries++ < 1000)
        zmq_poll (NULL, 0, 2);
    assert (rc == 1);
    //  One message alone goes as itself
    assert (inbox.msg.type == MESH_MSG_CHUNK && inbox.msg.data.size == 5);
    mesh_inbox_close (&inbox);
    //  Three in one turn go as one BATCH, in order
    for (int i = 0; i < 3; i++) {
        msg.data = (mesh_bytes_t) { "abc", (size_t) i + 1 };
        assert (mesh_outbox_send (outbox, endpoint, &msg) == 0);
    }
    mesh_outbox_flush (outbox);
    tries = 0;
    while ((rc = mesh_msg_recv (pull, &inbox, false, why, sizeof why)) == 0 && tries++ < 1000)
        zmq_poll (NULL, 0, 2);
    assert (rc == 1 && inbox.msg.type == MESH_MSG_BATCH);
    size_t offset = 0;
    mesh_bytes_t part;
    for (int i = 0; i < 3; i++) {
        assert (mesh_msg_batch_next (inbox.msg.data, &offset, &part) == 1);
        mesh_msg_t one;
        assert (mesh_msg_decode (&one, part.data, part.size, why, sizeof why) == 0);
        assert (one.type == MESH_MSG_CHUNK && one.data.size == (size_t) i + 1);
    }
    assert (mesh_msg_batch_next (inbox.msg.data, &offset, &part) == 0);
    mesh_inbox_close (&inbox);

    //  The ingress goes away: the outbox says so
    zmq_close (pull);
    mesh_timer_t poll_timer = { 0 }, deadline = { 0 };
    mesh_loop_timer_start (loop, &poll_timer, 5, s_test_stop_when_lost, &state);
    mesh_loop_timer_start (loop, &deadline, 3000, s_test_timeout, NULL);
    mesh_loop_run (loop);
    assert (state.lost == 1);
    assert (strcmp (state.endpoint, endpoint) == 0);
    mesh_loop_timer_stop (loop, &poll_timer);
    mesh_loop_timer_stop (loop, &deadline);

    mesh_outbox_destroy (&outbox);
    mesh_outbox_destroy (&outbox);
    mesh_loop_destroy (&loop);
    zmq_ctx_term (ctx);
}
