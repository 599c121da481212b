/*  router_connectors: the connectors this router knows, their credit, and
    the requests each one holds.

    A connector announces itself with READY and then HEARTBEAT every
    heartbeat interval (Paranoid Pirate); one silent for `liveness`
    intervals is lost, and every request it held is handed back to the
    caller so the ingress can retry or fail it.  Dispatch picks the live
    connector with the most free capacity.  Reactor thread only.            */
#ifndef ROUTER_CONNECTORS_H
#define ROUTER_CONNECTORS_H

#include "mesh_id.h"
#include "mesh_models.h"
#include "mesh_peer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct router_connector_t router_connector_t;
typedef struct router_request_t router_request_t;

//  A request dispatched to a connector, until it reports DONE or is lost
struct router_request_t {
    char id [MESH_ID_LEN + 1];
    uint32_t attempt;
    uint64_t token;
    char reply_to [256];
    const mesh_model_t *model;
    int64_t dispatched_us;
    bool cancelled;
    router_connector_t *connector;
    router_request_t *prev, *next;      //  in the connector's list
};

struct router_connector_t {
    char identity [256];                //  its ZeroMQ routing id = its name
    size_t identity_size;
    uint32_t capacity;
    uint32_t reported_inflight;         //  all routers' requests, as it says
    uint32_t inflight;                  //  this router's requests on it
    mesh_peer_t peer;                   //  its liveness
    int fd;                             //  its TCP connection, if known
    router_request_t *requests;
};

typedef struct router_connectors_t router_connectors_t;
typedef void (router_lost_fn) (void *arg, router_connector_t *connector);

router_connectors_t *router_connectors_new (void);
void  router_connectors_destroy (router_connectors_t **self_p);

//  Records a READY or HEARTBEAT; returns the connector (new or known).
//  heartbeat_ms and liveness set the liveness of a new one.
router_connector_t *router_connectors_seen (router_connectors_t *self, const char *identity,
                                            size_t identity_size, uint32_t capacity,
                                            uint32_t inflight, int64_t now_ms);
void  router_connectors_liveness (router_connectors_t *self, int64_t heartbeat_ms, int64_t liveness);
router_connector_t *router_connectors_find (router_connectors_t *self, const char *identity,
                                            size_t identity_size);
//  The live connector with the most free capacity, other than `avoid`
//  (a name, or empty); NULL if none has room.
router_connector_t *router_connectors_pick (router_connectors_t *self, const char *avoid);
size_t router_connectors_count (router_connectors_t *self);
router_connector_t *router_connectors_at (router_connectors_t *self, size_t index);

//  Calls lost_fn for each connector silent for its liveness, then forgets
//  it.  lost_fn takes over the connector's requests (detach each one).
void  router_connectors_expire (router_connectors_t *self, int64_t now_ms,
                                router_lost_fn *lost_fn, void *arg);
//  The connector whose TCP connection is fd, or NULL.
router_connector_t *router_connectors_by_fd (router_connectors_t *self, int fd);
//  Forgets one connector now (its send failed or its connection closed).
void  router_connectors_remove (router_connectors_t *self, router_connector_t *connector,
                                router_lost_fn *lost_fn, void *arg);

void  router_request_attach (router_request_t *request, router_connector_t *connector);
void  router_request_detach (router_request_t *request);

void  router_connectors_test (bool verbose);

#endif
