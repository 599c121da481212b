/*  mesh_resolver: host names resolved off the reactor thread.

    getaddrinfo blocks (a DNS server that does not answer holds it for
    seconds), so names go to a worker thread through a locked queue and the
    answers come back through a pipe the owner's loop watches: a mesh_loop
    (mesh_resolver_attach) or any other (the ingress's libev loop watches
    mesh_resolver_fd and calls mesh_resolver_dispatch).  An answer is every
    distinct address of the name, in the order getaddrinfo gives them, so a
    name with several addresses (a compose service scaled to 3, a
    Kubernetes headless Service) is seen whole.  IP literals are answered at
    once, before mesh_resolver_lookup returns, without the worker.  Nothing
    is cached here: callers ask again when they want fresh answers.

    The worker starts on the first name; callbacks run on the owner's
    thread only, from mesh_resolver_dispatch (or inside lookup for
    literals).  Only the owner's thread may call these functions.          */
#ifndef MESH_RESOLVER_H
#define MESH_RESOLVER_H

#include "mesh_loop.h"

#include <netdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define MESH_RESOLVER_MAX_ADDRESSES 64

typedef struct mesh_resolver_t mesh_resolver_t;

typedef struct {
    struct sockaddr_storage addr;
    socklen_t len;
} mesh_address_t;

//  What to ask for
enum {
    MESH_RESOLVE_ANY = 0,           //  IPv4 and IPv6, as the system has them (AI_ADDRCONFIG)
    MESH_RESOLVE_IPV4 = 1           //  IPv4 only (the mesh's own links)
};

//  rc is 0 with count >= 1 addresses, or a getaddrinfo error (EAI_NONAME,
//  EAI_AGAIN, ...; gai_strerror says what) with none.  addrs lives for the
//  call only.
typedef void (mesh_resolver_fn) (void *arg, int rc, const mesh_address_t *addrs, size_t count);

mesh_resolver_t *mesh_resolver_new (void);
//  Stops the worker (waiting for a lookup it is in), drops unanswered
//  lookups without calling them.  Nulls *self_p; safe twice.
void mesh_resolver_destroy (mesh_resolver_t **self_p);

//  Watches the answers on loop: callbacks run from it.  -1 on failure.
int  mesh_resolver_attach (mesh_resolver_t *self, mesh_loop_t *loop);
//  For other loops: readable when answers wait; then call dispatch.
int  mesh_resolver_fd (mesh_resolver_t *self);
void mesh_resolver_dispatch (mesh_resolver_t *self);

//  Resolves host:port (family: MESH_RESOLVE_*).  A literal is answered at
//  once and 0 returned; a name returns an id for mesh_resolver_cancel and
//  is answered later.  arg must live until the answer or the cancel.
uint64_t mesh_resolver_lookup (mesh_resolver_t *self, const char *host, int port, int family,
                               mesh_resolver_fn *fn, void *arg);
//  The answer of lookup id (if still to come) is never delivered.
void mesh_resolver_cancel (mesh_resolver_t *self, uint64_t id);
//  Lookups asked and not yet answered or cancelled
size_t mesh_resolver_pending (mesh_resolver_t *self);

//  True if host is an IPv4 or IPv6 literal ("10.0.0.5", "::1", "[::1]")
bool mesh_host_is_numeric (const char *host);
//  addr as text without the port ("10.0.0.5", "fd00::5"); out of at least
//  INET6_ADDRSTRLEN bytes
const char *mesh_address_host (const mesh_address_t *addr, char *out, size_t size);

void mesh_resolver_test (bool verbose);

#endif
