/*  mesh_zmq: ZeroMQ sockets with the mesh's standard options, and the
    outbox of PUSH sockets a service keeps towards ingress reply endpoints.

    Every mesh socket is made by mesh_zmq_socket, so options that must hold
    everywhere (linger, high-water marks, TCP keep-alive, the largest
    message, ZeroMQ heartbeats) are set in one place; CURVE is set where a socket binds or
    connects (mesh_curve).

    The outbox connects one PUSH socket per reply endpoint on first use and
    watches it with a socket monitor: when the ingress behind an endpoint
    disconnects (it died or restarted), lost_fn is called with the endpoint
    so the service can cancel the work it was doing for it.  What a turn of
    the loop sends to one endpoint leaves together at the end of the turn,
    one BATCH (one message alone goes as itself): a busy connector's
    events for an ingress cost their sockets, I/O threads and CURVE one
    message a turn instead of one each.  Sends never block: at the
    high-water mark a batch is dropped, with a warning.  Reactor thread
    only.                                                                   */
#ifndef MESH_ZMQ_H
#define MESH_ZMQ_H

#include "mesh_loop.h"
#include "mesh_msg.h"

#include <stdbool.h>

#define MESH_ZMQ_HWM 100000
//  The largest legal message: a body of MESH_MAX_BODY_BYTES (an audit record
//  is bounded the same way) and the other fields around it
#define MESH_ZMQ_MAX_MESSAGE_BYTES ((int64_t) MESH_MAX_BODY_BYTES + 256 * 1024)

//  A socket of type with the standard options; NULL with errno.
void *mesh_zmq_socket (void *ctx, int type);
//  ZeroMQ heartbeats (ZMTP PING) on every socket made from now on: a peer
//  that answers none for timeout_ms is disconnected.  0: none (the default)
void  mesh_zmq_heartbeat (int64_t ivl_ms, int64_t timeout_ms);

//  Reads one event from a socket monitor (zmq_socket_monitor's PAIR)
//  without blocking: 1 with the event and its value (an fd for
//  connection events), 0 when none is queued.
int   mesh_zmq_monitor_read (void *monitor, int *event, int *value);

typedef struct mesh_outbox_t mesh_outbox_t;
typedef void (mesh_outbox_lost_fn) (void *arg, const char *endpoint);

mesh_outbox_t *mesh_outbox_new (void *ctx, mesh_loop_t *loop, mesh_outbox_lost_fn *fn, void *arg);
void mesh_outbox_destroy (mesh_outbox_t **self_p);
//  Queues msg for the PULL socket at endpoint; it leaves at the end of the
//  loop's turn (at once without a loop).  0, or -1 with errno.
int  mesh_outbox_send (mesh_outbox_t *self, const char *endpoint, const mesh_msg_t *msg);
//  Sends what is queued now (the loop does it at the end of each turn).
void mesh_outbox_flush (mesh_outbox_t *self);

void mesh_zmq_test (bool verbose);

#endif
