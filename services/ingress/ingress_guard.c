/*  ingress_guard: connection caps and the unauthenticated-request limiter
    (see ingress_guard.h).                                                  */
#include "ingress_guard.h"
#include "mesh_map.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Keys recently accepted by a router, remembered at most this long and
//  this many (the set is emptied when full: it is only a shortcut)
#define KNOWN_KEY_MS (10 * 60 * 1000)
#define KNOWN_KEY_MAX 10000
//  Addresses without connections are forgotten once this many are kept
#define IDLE_ADDRESS_MAX 4096

typedef struct {
    char *name;                 //  its key in the map
    int64_t connections;
    double tokens;
    int64_t refilled_ms;
} address_t;

typedef struct {
    char name [24];             //  "%p" of the connection: its key
    address_t *address;
} conn_t;

typedef struct {
    char name [33];             //  hex of half the key's digest: its key
    int64_t expiry_ms;
} known_key_t;

struct ingress_guard_t {
    ingress_guard_limits_t limits;
    mesh_map_t *connections;    //  conn_t by name
    mesh_map_t *addresses;      //  address_t by name
    mesh_map_t *known_keys;     //  known_key_t by name
    size_t connection_count;
};

ingress_guard_t *
ingress_guard_new (const ingress_guard_limits_t *limits)
{
    ingress_guard_t *self = calloc (1, sizeof *self);
    assert (self);
    self->limits = *limits;
    self->connections = mesh_map_new ();
    self->addresses = mesh_map_new ();
    self->known_keys = mesh_map_new ();
    return self;
}

static void
s_free_values (mesh_map_t *map, bool addresses)
{
    size_t cursor = 0;
    void *value;
    while ((value = mesh_map_next (map, &cursor, NULL))) {
        if (addresses)
            free (((address_t *) value)->name);
        free (value);
    }
}

void
ingress_guard_destroy (ingress_guard_t **self_p)
{
    ingress_guard_t *self = *self_p;
    if (!self)
        return;
    s_free_values (self->addresses, true);
    s_free_values (self->known_keys, false);
    s_free_values (self->connections, false);
    mesh_map_destroy (&self->connections);
    mesh_map_destroy (&self->addresses);
    mesh_map_destroy (&self->known_keys);
    free (self);
    *self_p = NULL;
}

static void
s_conn_key (const void *conn, char *key, size_t size)
{
    snprintf (key, size, "%p", conn);
}

//  Forgets addresses that hold no connection (their buckets too: a flood
//  that closes its connections and waits is forgotten, not an attack
//  that the caps would let through)
static void
s_sweep (ingress_guard_t *self)
{
    char **idle = malloc (mesh_map_size (self->addresses) * sizeof *idle);
    assert (idle);
    size_t count = 0, cursor = 0;
    address_t *address;
    while ((address = mesh_map_next (self->addresses, &cursor, NULL)))
        if (address->connections == 0)
            idle [count++] = address->name;
    for (size_t i = 0; i < count; i++) {
        address = mesh_map_remove (self->addresses, idle [i]);
        free (address->name);
        free (address);
    }
    free (idle);
}

int
ingress_guard_connect (ingress_guard_t *self, const void *conn, const char *name)
{
    if (self->limits.max_connections > 0
    &&  (int64_t) self->connection_count >= self->limits.max_connections)
        return INGRESS_GUARD_FULL;
    address_t *address = mesh_map_get (self->addresses, name);
    if (address && self->limits.max_per_address > 0
    &&  address->connections >= self->limits.max_per_address)
        return INGRESS_GUARD_ADDRESS_FULL;
    if (!address) {
        if (mesh_map_size (self->addresses) >= self->connection_count + IDLE_ADDRESS_MAX)
            s_sweep (self);
        address = calloc (1, sizeof *address);
        assert (address);
        address->name = strdup (name);
        assert (address->name);
        address->tokens = self->limits.unauth_burst;
        address->refilled_ms = -1;
        mesh_map_put (self->addresses, address->name, address);
    }
    conn_t *entry = calloc (1, sizeof *entry);
    assert (entry);
    s_conn_key (conn, entry->name, sizeof entry->name);
    entry->address = address;
    void *previous = mesh_map_put (self->connections, entry->name, entry);
    assert (!previous);         //  a connection is counted once
    address->connections++;
    self->connection_count++;
    return INGRESS_GUARD_OK;
}

void
ingress_guard_disconnect (ingress_guard_t *self, const void *conn)
{
    char key [32];
    s_conn_key (conn, key, sizeof key);
    conn_t *entry = mesh_map_remove (self->connections, key);
    if (!entry)
        return;
    address_t *address = entry->address;
    free (entry);
    address->connections--;
    self->connection_count--;
    if (address->connections == 0 && address->tokens >= self->limits.unauth_burst) {
        //  Nothing to remember about it
        mesh_map_remove (self->addresses, address->name);
        free (address->name);
        free (address);
    }
}

const char *
ingress_guard_address (ingress_guard_t *self, const void *conn)
{
    char key [32];
    s_conn_key (conn, key, sizeof key);
    conn_t *entry = mesh_map_get (self->connections, key);
    return entry ? entry->address->name : NULL;
}

size_t
ingress_guard_connections (ingress_guard_t *self)
{
    return self->connection_count;
}

//  The address of conn with its bucket refilled to now; NULL if unknown
static address_t *
s_bucket (ingress_guard_t *self, const void *conn, int64_t now_ms)
{
    char key [32];
    s_conn_key (conn, key, sizeof key);
    conn_t *entry = mesh_map_get (self->connections, key);
    if (!entry)
        return NULL;
    address_t *address = entry->address;
    if (address->refilled_ms >= 0 && now_ms > address->refilled_ms) {
        address->tokens += (double) (now_ms - address->refilled_ms) / 1000.0
                         * self->limits.unauth_per_second;
        if (address->tokens > self->limits.unauth_burst)
            address->tokens = self->limits.unauth_burst;
    }
    address->refilled_ms = now_ms;
    return address;
}

static void
s_key_name (const unsigned char *key_hash, char *name)
{
    //  Half the digest names a key well enough
    static const char digits [] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        name [2 * i] = digits [key_hash [i] >> 4];
        name [2 * i + 1] = digits [key_hash [i] & 15];
    }
    name [32] = 0;
}

bool
ingress_guard_admit (ingress_guard_t *self, const void *conn, const unsigned char *key_hash,
                     int64_t now_ms)
{
    if (self->limits.unauth_per_second <= 0)
        return true;
    address_t *address = s_bucket (self, conn, now_ms);
    if (!address || address->tokens >= 1)
        return true;
    if (!key_hash)
        return false;
    char name [33];
    s_key_name (key_hash, name);
    known_key_t *known = mesh_map_get (self->known_keys, name);
    return known && known->expiry_ms > now_ms;
}

void
ingress_guard_unauthenticated (ingress_guard_t *self, const void *conn, int64_t now_ms)
{
    if (self->limits.unauth_per_second <= 0)
        return;
    address_t *address = s_bucket (self, conn, now_ms);
    if (address && address->tokens >= 1)
        address->tokens -= 1;
}

void
ingress_guard_key_accepted (ingress_guard_t *self, const unsigned char *key_hash, int64_t now_ms)
{
    if (self->limits.unauth_per_second <= 0)
        return;
    char name [33];
    s_key_name (key_hash, name);
    known_key_t *known = mesh_map_get (self->known_keys, name);
    if (!known) {
        if (mesh_map_size (self->known_keys) >= KNOWN_KEY_MAX) {
            s_free_values (self->known_keys, false);
            mesh_map_destroy (&self->known_keys);
            self->known_keys = mesh_map_new ();
        }
        known = calloc (1, sizeof *known);
        assert (known);
        memcpy (known->name, name, sizeof known->name);
        mesh_map_put (self->known_keys, known->name, known);
    }
    known->expiry_ms = now_ms + KNOWN_KEY_MS;
}

//  Selftest -----------------------------------------------------------------

void
ingress_guard_test (bool verbose)
{
    (void) verbose;
    ingress_guard_limits_t limits = { .max_connections = 4, .max_per_address = 2,
                                      .unauth_per_second = 2, .unauth_burst = 3 };
    ingress_guard_t *guard = ingress_guard_new (&limits);
    int conns [8];

    //  Per address, then global
    assert (ingress_guard_connect (guard, &conns [0], "10.0.0.1") == INGRESS_GUARD_OK);
    assert (ingress_guard_connect (guard, &conns [1], "10.0.0.1") == INGRESS_GUARD_OK);
    assert (ingress_guard_connect (guard, &conns [2], "10.0.0.1") == INGRESS_GUARD_ADDRESS_FULL);
    assert (ingress_guard_connect (guard, &conns [2], "10.0.0.2") == INGRESS_GUARD_OK);
    assert (ingress_guard_connect (guard, &conns [3], "10.0.0.3") == INGRESS_GUARD_OK);
    assert (ingress_guard_connect (guard, &conns [4], "10.0.0.4") == INGRESS_GUARD_FULL);
    assert (ingress_guard_connections (guard) == 4);
    assert (mesh_streq (ingress_guard_address (guard, &conns [1]), "10.0.0.1"));
    ingress_guard_disconnect (guard, &conns [1]);
    ingress_guard_disconnect (guard, &conns [7]);       //  never counted: ignored
    assert (ingress_guard_connections (guard) == 3);
    assert (ingress_guard_address (guard, &conns [1]) == NULL);
    assert (ingress_guard_connect (guard, &conns [1], "10.0.0.1") == INGRESS_GUARD_OK);

    //  Three refusals empty the bucket of 10.0.0.1 (both its connections);
    //  10.0.0.2 is not affected; a known key passes; refills at 2/s
    unsigned char good [32], bad [32];
    memset (good, 7, sizeof good);
    memset (bad, 9, sizeof bad);
    int64_t now = 1000;
    for (int i = 0; i < 3; i++) {
        assert (ingress_guard_admit (guard, &conns [i % 2], bad, now));
        ingress_guard_unauthenticated (guard, &conns [i % 2], now);
    }
    assert (!ingress_guard_admit (guard, &conns [0], bad, now));
    assert (!ingress_guard_admit (guard, &conns [1], NULL, now));
    assert (ingress_guard_admit (guard, &conns [2], NULL, now));
    assert (!ingress_guard_admit (guard, &conns [0], good, now));
    ingress_guard_key_accepted (guard, good, now);
    assert (ingress_guard_admit (guard, &conns [0], good, now));
    assert (!ingress_guard_admit (guard, &conns [0], bad, now + 400));
    assert (ingress_guard_admit (guard, &conns [0], bad, now + 500));   //  one token back
    //  A known key is forgotten in time
    int64_t later = now + KNOWN_KEY_MS + 1;
    for (int i = 0; i < 3; i++)
        ingress_guard_unauthenticated (guard, &conns [0], later);
    assert (!ingress_guard_admit (guard, &conns [0], good, later));

    //  An address keeps its empty bucket while it has connections, and
    //  loses it with the last one only when full again
    ingress_guard_disconnect (guard, &conns [0]);
    ingress_guard_disconnect (guard, &conns [1]);
    assert (ingress_guard_connect (guard, &conns [0], "10.0.0.1") == INGRESS_GUARD_OK);
    assert (!ingress_guard_admit (guard, &conns [0], bad, later));

    //  No limiter: everything is admitted
    ingress_guard_destroy (&guard);
    limits.unauth_per_second = 0;
    guard = ingress_guard_new (&limits);
    assert (ingress_guard_connect (guard, &conns [0], "10.0.0.1") == INGRESS_GUARD_OK);
    ingress_guard_unauthenticated (guard, &conns [0], 0);
    assert (ingress_guard_admit (guard, &conns [0], NULL, 0));
    ingress_guard_destroy (&guard);
}
