/*  mesh_curve: CURVE on every ZeroMQ link of the mesh, and who may connect
    where.

    Each service has a keypair (its replicas share it, as the replicas of a
    Kubernetes Deployment share one Secret), kept as czmq certificates: a
    directory holds `<role>.cert` (public, with the role in its metadata)
    for every role and `<role>.cert_secret` for this service's own; or the
    environment variable named by mesh.curve_keys_env holds lines
    `<role> <public Z85> [<secret Z85>]`.  `scripts/mesh up` makes a
    development set in its run directory; `seekmeshctl curve keygen` makes
    one anywhere.

    Every socket that binds is a CURVE server with a ZAP domain named for
    its setting ("router.connector_listen"); one ZAP handler per process
    (a thread serving inproc://zeromq.zap.01) lets a client in only when its
    key is one of the mesh's and its role is allowed on that socket (only
    connectors on router.connector_listen, only ingresses on router.listen
    and audit.listen, only routers and connectors on cache.listen, only
    routers, connectors and the cache on an ingress's reply endpoint).  Every socket that connects is a CURVE client that knows the
    server's public key, so it talks to the real service or to nobody.  A
    message's sender role is its frame's "User-Id".

    mesh.curve false turns it off, which is allowed only when every
    endpoint is ipc:// or loopback; the log warns and seekmesh_curve_enabled
    says 0.  Call mesh_curve_start once, on the main thread, before any
    socket binds or connects; the rest from any thread.  Without it (a
    selftest) links are plain and loopback only, as when it is off.        */
#ifndef MESH_CURVE_H
#define MESH_CURVE_H

#include "mesh_config.h"
#include "mesh_metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

//  Loads this role's keys and the mesh's public keys, starts the ZAP
//  handler on ctx.  0, or -1 with why (a config error).
int  mesh_curve_start (mesh_config_t *config, void *ctx, const char *role,
                       mesh_metrics_t *metrics, char *why, size_t why_size);
//  Stops using it (the ZAP thread ends with its context)
void mesh_curve_stop (void);
bool mesh_curve_enabled (void);

//  Makes socket a CURVE server for domain (the setting its endpoint comes
//  from) and binds it.  0, or -1 with errno / why.
int  mesh_curve_bind (void *socket, const char *domain, const char *endpoint,
                      char *why, size_t why_size);
//  Makes socket a CURVE client of server_role and connects it.
int  mesh_curve_connect (void *socket, const char *server_role, const char *endpoint,
                         char *why, size_t why_size);

//  The role of the peer that sent frame ("router"), or "" without CURVE
const char *mesh_curve_sender (zmq_msg_t *frame);

//  A new keypair in Z85 (41 bytes each with the NUL); 0 or -1
int  mesh_curve_keygen (char public_key [41], char secret_key [41]);
//  Writes role.cert and role.cert_secret (mode 0600) into dir
int  mesh_curve_save (const char *dir, const char *role, char *why, size_t why_size);

void mesh_curve_test (bool verbose);

#endif
