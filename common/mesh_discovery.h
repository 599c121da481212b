/*  mesh_discovery: the peers behind a list of endpoints, found at run time.

    A service is given its peers as ZeroMQ endpoints (ingress.routers,
    connector.routers).  An endpoint whose host is a name may stand for
    several processes: a compose service scaled to 3, a Kubernetes headless
    Service, a hosts file with three lines.  ZeroMQ itself would resolve
    the name once and connect to one address, so the name is resolved here
    (mesh_resolver, off the owner's thread) into one endpoint per address,
    "tcp://10.0.0.5:5555", again on every mesh_discovery_refresh.  The
    owner hears of each address that appears (up) and each that is no
    longer in the name's answer (down); a failed lookup changes nothing
    (a DNS server that does not answer is no reason to drop peers).  IP
    literals and ipc:// endpoints are peers as given, up at once.

    Names resolve to IPv4 addresses (the mesh's sockets are IPv4).  The
    owner's thread only; the resolver must be served by the owner's loop
    and outlive this.                                                       */
#ifndef MESH_DISCOVERY_H
#define MESH_DISCOVERY_H

#include "mesh_resolver.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct mesh_discovery_t mesh_discovery_t;

//  endpoint: a concrete peer, "tcp://<address>:<port>" or as configured;
//  up: it appeared (true) or left its name's answer (false).  Never called
//  from inside mesh_discovery_destroy.
typedef void (mesh_discovery_fn) (void *arg, const char *endpoint, bool up);

//  what: a word for the log ("router")
mesh_discovery_t *mesh_discovery_new (mesh_resolver_t *resolver, const char *what,
                                      mesh_discovery_fn *fn, void *arg);
void mesh_discovery_destroy (mesh_discovery_t **self_p);

//  A configured endpoint: tcp://host:port or ipc://path.  A literal one is
//  up before this returns; a name is looked up.  -1 if it is neither.
int  mesh_discovery_add (mesh_discovery_t *self, const char *endpoint);
//  Looks every name up again (call every mesh.resolve_interval_ms).  A name
//  whose previous lookup has not come back is not asked twice.
void mesh_discovery_refresh (mesh_discovery_t *self);
//  The peers up now
size_t      mesh_discovery_count (mesh_discovery_t *self);
const char *mesh_discovery_at (mesh_discovery_t *self, size_t index);
//  True while a name has never been answered
bool mesh_discovery_settling (mesh_discovery_t *self);

//  Splits "tcp://host:port" into host (brackets kept off) and port; -1
//  when endpoint is not tcp:// with a numeric port
int  mesh_endpoint_split (const char *endpoint, char *host, size_t host_size, int *port);

void mesh_discovery_test (bool verbose);

#endif
