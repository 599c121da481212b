/*  mesh_dispatch: the one receive loop for the mesh's ZeroMQ sockets.

    A service declares, for each socket it reads, what it hears there: a
    table of message types and the handler of each (mesh_route_t), and
    who speaks on that socket (mesh_conversation_t).  One table per
    service, at the top of its main module, is its whole conversation on
    one screen, and the loop reads it, so it cannot drift from the code
    the way a comment does (relayd's procs[] and proc_dispatch are the
    model).

    mesh_dispatch reads a socket without blocking, up to the
    conversation's batch, and hands each message to its handler.  A
    malformed message, or one the table does not list, is dropped, logged
    once with the peer's name and the request id, and counted.  Handlers
    may keep the inbox's frame (zmq_msg_move it out); the loop closes what
    is left.  A table that routes MESH_MSG_BATCH to mesh_dispatch_batch
    takes batches: each message in one is handed to its handler in order,
    as if it had come alone (its inbox's frame shares the batch's).
    Reactor thread of the socket's owner only.                             */
#ifndef MESH_DISPATCH_H
#define MESH_DISPATCH_H

#include "mesh_metrics.h"
#include "mesh_msg.h"

#include <stdbool.h>
#include <stdint.h>

//  Returns 0 to go on reading, -1 to stop this batch (the socket was
//  closed or replaced by the handler)
typedef int (mesh_handler_fn) (void *arg, mesh_inbox_t *inbox);

typedef struct {
    uint32_t type;                  //  MESH_MSG_…
    mesh_handler_fn *handler;
} mesh_route_t;

typedef struct {
    const char *peer;               //  who speaks on the socket ("connector"), for logs
    bool router;                    //  a ROUTER socket: each message has its sender's identity
    int batch;                      //  messages read at most a wake-up
    mesh_handler_fn *every;         //  called first for every valid message, or NULL
    const mesh_route_t *routes;     //  ends with { 0, NULL }
} mesh_conversation_t;

typedef struct {
    mesh_metric_t *malformed;       //  could not be decoded
    mesh_metric_t *unexpected;      //  decoded, but not in the table
} mesh_dispatch_counters_t;

//  The counters of one service, `seekmesh_<service>_bad_messages_total`
//  with reason="malformed" and reason="unexpected"
void mesh_dispatch_counters (mesh_dispatch_counters_t *counters, mesh_metrics_t *metrics,
                             const char *service);

//  Reads up to conversation->batch messages from socket and hands each to
//  its handler with arg.  Returns 0 when the socket is drained, 1 when the
//  batch ended with messages perhaps left (come back soon), -1 when a
//  handler stopped it.
int mesh_dispatch (void *socket, const mesh_conversation_t *conversation, void *arg,
                   mesh_dispatch_counters_t *counters);

//  The route of MESH_MSG_BATCH in a table: mesh_dispatch opens the batch
//  and routes what it holds by the same table.  Never called itself.
int mesh_dispatch_batch (void *arg, mesh_inbox_t *inbox);

//  The handler for type in a table, or NULL
mesh_handler_fn *mesh_dispatch_route (const mesh_conversation_t *conversation, uint32_t type);

void mesh_dispatch_test (bool verbose);

#endif
