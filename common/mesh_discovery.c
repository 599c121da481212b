/*  mesh_discovery: see mesh_discovery.h.

    Two lists: the configured names, each with the endpoints of its last
    answer, and the peers up (an endpoint two names both give counts once,
    with a reference count).                                                 */
#include "mesh_discovery.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENDPOINT_SIZE 280

typedef struct {
    char endpoint [ENDPOINT_SIZE];
    int refs;
} peer_t;

typedef struct name_t name_t;
struct name_t {
    name_t *next;
    mesh_discovery_t *owner;
    char configured [ENDPOINT_SIZE];
    char host [256];
    int port;
    uint64_t lookup;            //  in flight, or 0
    bool answered;              //  once at least
    bool failing;               //  the last lookup failed (logged once)
    char (*current) [ENDPOINT_SIZE];
    size_t current_count;
};

struct mesh_discovery_t {
    mesh_resolver_t *resolver;
    char what [32];
    mesh_discovery_fn *fn;
    void *arg;
    name_t *names;
    peer_t *peers;
    size_t peer_count, peer_alloc;
    bool destroying;
};

int
mesh_endpoint_split (const char *endpoint, char *host, size_t host_size, int *port)
{
    if (strncmp (endpoint, "tcp://", 6) != 0)
        return -1;
    const char *start = endpoint + 6;
    const char *colon = strrchr (start, ':');
    if (!colon || colon == start || !colon [1])
        return -1;
    char *end;
    long value = strtol (colon + 1, &end, 10);
    if (*end || value <= 0 || value > 65535)
        return -1;
    const char *h = start;
    size_t len = (size_t) (colon - start);
    if (len >= 2 && h [0] == '[' && h [len - 1] == ']') {
        h++;
        len -= 2;
    }
    if (len == 0 || len >= host_size)
        return -1;
    memcpy (host, h, len);
    host [len] = 0;
    *port = (int) value;
    return 0;
}

static void
s_peer_up (mesh_discovery_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->peer_count; i++)
        if (strcmp (self->peers [i].endpoint, endpoint) == 0) {
            self->peers [i].refs++;
            return;
        }
    if (self->peer_count == self->peer_alloc) {
        self->peer_alloc = self->peer_alloc ? self->peer_alloc * 2 : 8;
        self->peers = realloc (self->peers, self->peer_alloc * sizeof *self->peers);
        assert (self->peers);
    }
    peer_t *peer = &self->peers [self->peer_count++];
    snprintf (peer->endpoint, sizeof peer->endpoint, "%s", endpoint);
    peer->refs = 1;
    self->fn (self->arg, peer->endpoint, true);
}

static void
s_peer_down (mesh_discovery_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->peer_count; i++)
        if (strcmp (self->peers [i].endpoint, endpoint) == 0) {
            if (--self->peers [i].refs > 0)
                return;
            char gone [ENDPOINT_SIZE];
            snprintf (gone, sizeof gone, "%s", endpoint);
            self->peers [i] = self->peers [--self->peer_count];
            self->fn (self->arg, gone, false);
            return;
        }
}

static bool
s_listed (char (*list) [ENDPOINT_SIZE], size_t count, const char *endpoint)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp (list [i], endpoint) == 0)
            return true;
    return false;
}

//  A name's new answer: what appeared goes up, what left goes down
static void
s_update (name_t *name, char (*fresh) [ENDPOINT_SIZE], size_t count)
{
    mesh_discovery_t *self = name->owner;
    char (*old) [ENDPOINT_SIZE] = name->current;
    size_t old_count = name->current_count;
    name->current = fresh;
    name->current_count = count;
    for (size_t i = 0; i < count; i++)
        if (!s_listed (old, old_count, fresh [i])) {
            mesh_info ("%s %s: %s", self->what, name->configured, fresh [i]);
            s_peer_up (self, fresh [i]);
        }
    for (size_t i = 0; i < old_count; i++)
        if (!s_listed (fresh, count, old [i])) {
            mesh_info ("%s %s: %s is no longer listed", self->what, name->configured, old [i]);
            s_peer_down (self, old [i]);
        }
    free (old);
}

static void
s_on_answer (void *arg, int rc, const mesh_address_t *addrs, size_t count)
{
    name_t *name = arg;
    mesh_discovery_t *self = name->owner;
    name->lookup = 0;
    if (rc != 0) {
        if (!name->failing)
            mesh_warn ("%s %s: cannot resolve %s: %s; keeping the %zu peers it had", self->what,
                       name->configured, name->host, gai_strerror (rc), name->current_count);
        name->failing = true;
        return;
    }
    if (name->failing)
        mesh_info ("%s %s: resolves again", self->what, name->configured);
    name->failing = false;
    name->answered = true;
    char (*fresh) [ENDPOINT_SIZE] = calloc (count + 1, sizeof *fresh);
    assert (fresh);
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        char host [64];
        mesh_address_host (&addrs [i], host, sizeof host);
        const struct sockaddr *sa = (const struct sockaddr *) &addrs [i].addr;
        if (sa->sa_family == AF_INET6)
            snprintf (fresh [n], ENDPOINT_SIZE, "tcp://[%s]:%d", host, name->port);
        else
            snprintf (fresh [n], ENDPOINT_SIZE, "tcp://%s:%d", host, name->port);
        if (!s_listed (fresh, n, fresh [n]))
            n++;
    }
    s_update (name, fresh, n);
}

mesh_discovery_t *
mesh_discovery_new (mesh_resolver_t *resolver, const char *what, mesh_discovery_fn *fn, void *arg)
{
    mesh_discovery_t *self = calloc (1, sizeof *self);
    assert (self && resolver && fn);
    self->resolver = resolver;
    snprintf (self->what, sizeof self->what, "%s", what);
    self->fn = fn;
    self->arg = arg;
    return self;
}

void
mesh_discovery_destroy (mesh_discovery_t **self_p)
{
    assert (self_p);
    mesh_discovery_t *self = *self_p;
    if (!self)
        return;
    self->destroying = true;
    while (self->names) {
        name_t *name = self->names;
        self->names = name->next;
        mesh_resolver_cancel (self->resolver, name->lookup);
        free (name->current);
        free (name);
    }
    free (self->peers);
    free (self);
    *self_p = NULL;
}

static void
s_lookup (name_t *name)
{
    if (name->lookup)
        return;
    uint64_t id = mesh_resolver_lookup (name->owner->resolver, name->host, name->port,
                                        MESH_RESOLVE_IPV4, s_on_answer, name);
    //  0: answered already (never for a name), else in flight
    if (id)
        name->lookup = id;
}

int
mesh_discovery_add (mesh_discovery_t *self, const char *endpoint)
{
    char host [256];
    int port;
    if (strncmp (endpoint, "ipc://", 6) == 0 && endpoint [6]) {
        s_peer_up (self, endpoint);
        return 0;
    }
    if (mesh_endpoint_split (endpoint, host, sizeof host, &port) < 0)
        return -1;
    if (mesh_host_is_numeric (host) || strcmp (host, "*") == 0) {
        s_peer_up (self, endpoint);
        return 0;
    }
    name_t *name = calloc (1, sizeof *name);
    assert (name);
    name->owner = self;
    snprintf (name->configured, sizeof name->configured, "%s", endpoint);
    snprintf (name->host, sizeof name->host, "%s", host);
    name->port = port;
    name->next = self->names;
    self->names = name;
    s_lookup (name);
    return 0;
}

void
mesh_discovery_refresh (mesh_discovery_t *self)
{
    for (name_t *name = self->names; name; name = name->next)
        s_lookup (name);
}

size_t
mesh_discovery_count (mesh_discovery_t *self)
{
    return self->peer_count;
}

const char *
mesh_discovery_at (mesh_discovery_t *self, size_t index)
{
    return index < self->peer_count ? self->peers [index].endpoint : NULL;
}

bool
mesh_discovery_settling (mesh_discovery_t *self)
{
    for (name_t *name = self->names; name; name = name->next)
        if (!name->answered)
            return true;
    return false;
}

//  Selftest -------------------------------------------------------------------

typedef struct {
    int ups, downs;
    char last [ENDPOINT_SIZE];
    bool last_up;
} test_seen_t;

static void
s_test_seen (void *arg, const char *endpoint, bool up)
{
    test_seen_t *seen = arg;
    if (up)
        seen->ups++;
    else
        seen->downs++;
    snprintf (seen->last, sizeof seen->last, "%s", endpoint);
    seen->last_up = up;
}

static int
s_test_stop (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer; (void) arg;
    return -1;
}

static void
s_test_settle (mesh_loop_t *loop, mesh_resolver_t *resolver)
{
    for (int i = 0; i < 500 && mesh_resolver_pending (resolver); i++) {
        mesh_timer_t timer = { 0 };
        mesh_loop_timer_start (loop, &timer, 10, s_test_stop, NULL);
        mesh_loop_run (loop);
        mesh_loop_timer_stop (loop, &timer);
    }
}

//  An answer as if the resolver had given these IPv4 addresses
static void
s_test_answer (name_t *name, const char *const *hosts, size_t count)
{
    mesh_address_t addrs [8];
    memset (addrs, 0, sizeof addrs);
    for (size_t i = 0; i < count; i++) {
        struct sockaddr_in *in = (struct sockaddr_in *) &addrs [i].addr;
        in->sin_family = AF_INET;
        in->sin_port = htons ((uint16_t) name->port);
        assert (inet_pton (AF_INET, hosts [i], &in->sin_addr) == 1);
        addrs [i].len = sizeof *in;
    }
    s_on_answer (name, 0, addrs, count);
}

void
mesh_discovery_test (bool verbose)
{
    (void) verbose;
    char host [64];
    int port;
    assert (mesh_endpoint_split ("tcp://router:5555", host, sizeof host, &port) == 0);
    assert (strcmp (host, "router") == 0 && port == 5555);
    assert (mesh_endpoint_split ("tcp://[::1]:9", host, sizeof host, &port) == 0);
    assert (strcmp (host, "::1") == 0 && port == 9);
    assert (mesh_endpoint_split ("tcp://router", host, sizeof host, &port) == -1);
    assert (mesh_endpoint_split ("tcp://:5", host, sizeof host, &port) == -1);
    assert (mesh_endpoint_split ("ipc:///x", host, sizeof host, &port) == -1);

    mesh_loop_t *loop = mesh_loop_new ();
    mesh_resolver_t *resolver = mesh_resolver_new ();
    mesh_resolver_attach (resolver, loop);
    test_seen_t seen = { 0 };
    mesh_discovery_t *discovery = mesh_discovery_new (resolver, "router", s_test_seen, &seen);

    //  Literals and ipc at once
    assert (mesh_discovery_add (discovery, "tcp://10.0.0.1:5555") == 0);
    assert (seen.ups == 1 && seen.last_up && strcmp (seen.last, "tcp://10.0.0.1:5555") == 0);
    assert (mesh_discovery_add (discovery, "ipc:///tmp/r") == 0);
    assert (mesh_discovery_add (discovery, "udp://x:1") == -1);
    assert (mesh_discovery_count (discovery) == 2);

    //  A name, later; the same address through a literal counts once
    assert (mesh_discovery_add (discovery, "tcp://localhost:5555") == 0);
    assert (mesh_discovery_settling (discovery));
    s_test_settle (loop, resolver);
    assert (!mesh_discovery_settling (discovery));
    assert (seen.ups == 3 && strcmp (seen.last, "tcp://127.0.0.1:5555") == 0);
    assert (mesh_discovery_add (discovery, "tcp://127.0.0.1:5555") == 0);
    assert (seen.ups == 3 && mesh_discovery_count (discovery) == 3);
    //  Asked again: nothing changed, nothing said
    mesh_discovery_refresh (discovery);
    s_test_settle (loop, resolver);
    assert (seen.ups == 3 && seen.downs == 0);

    //  A name of three addresses, then two of them and a new one
    assert (mesh_discovery_add (discovery, "tcp://routers:6000") == 0);
    name_t *name = discovery->names;
    assert (strcmp (name->host, "routers") == 0);
    mesh_resolver_cancel (resolver, name->lookup);
    name->lookup = 0;
    const char *three [] = { "10.1.0.1", "10.1.0.2", "10.1.0.3" };
    s_test_answer (name, three, 3);
    assert (seen.ups == 6 && mesh_discovery_count (discovery) == 6);
    const char *moved [] = { "10.1.0.3", "10.1.0.4", "10.1.0.1" };
    s_test_answer (name, moved, 3);
    assert (seen.ups == 7 && seen.downs == 1);
    bool found_down = false;
    for (size_t i = 0; i < mesh_discovery_count (discovery); i++)
        found_down |= strcmp (mesh_discovery_at (discovery, i), "tcp://10.1.0.2:6000") == 0;
    assert (!found_down && mesh_discovery_count (discovery) == 6);
    //  A failed lookup keeps what it had
    s_on_answer (name, EAI_AGAIN, NULL, 0);
    assert (mesh_discovery_count (discovery) == 6 && seen.downs == 1);
    //  An address two names give goes down only when both drop it
    const char *local [] = { "127.0.0.1" };
    name->port = 5555;
    s_test_answer (name, local, 1);
    assert (seen.downs == 4);               //  10.1.0.3, .4, .1 at port 6000
    const char *none [] = { "10.9.9.9" };
    s_test_answer (name, none, 1);
    size_t local_up = 0;
    for (size_t i = 0; i < mesh_discovery_count (discovery); i++)
        local_up += strcmp (mesh_discovery_at (discovery, i), "tcp://127.0.0.1:5555") == 0;
    assert (local_up == 1 && seen.downs == 4);

    mesh_discovery_destroy (&discovery);
    mesh_discovery_destroy (&discovery);
    mesh_resolver_destroy (&resolver);
    mesh_loop_destroy (&loop);
}
