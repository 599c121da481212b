/*  router_connectors: connector liveness, credit and held requests.          */
#include "router_connectors.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct router_connectors_t {
    router_connector_t **items;
    size_t count;
    size_t size;
    int64_t heartbeat_ms;
    int64_t liveness;
};

router_connectors_t *
router_connectors_new (void)
{
    router_connectors_t *self = calloc (1, sizeof *self);
    assert (self);
    self->heartbeat_ms = MESH_HEARTBEAT_INTERVAL_MS;
    self->liveness = MESH_HEARTBEAT_LIVENESS;
    return self;
}

void
router_connectors_liveness (router_connectors_t *self, int64_t heartbeat_ms, int64_t liveness)
{
    self->heartbeat_ms = heartbeat_ms;
    self->liveness = liveness;
}

void
router_connectors_destroy (router_connectors_t **self_p)
{
    assert (self_p);
    router_connectors_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->count; i++) {
        //  Requests are owned by the router's request table
        while (self->items [i]->requests)
            router_request_detach (self->items [i]->requests);
        free (self->items [i]);
    }
    free (self->items);
    free (self);
    *self_p = NULL;
}

router_connector_t *
router_connectors_find (router_connectors_t *self, const char *identity, size_t identity_size)
{
    for (size_t i = 0; i < self->count; i++)
        if (self->items [i]->identity_size == identity_size
        &&  memcmp (self->items [i]->identity, identity, identity_size) == 0)
            return self->items [i];
    return NULL;
}

router_connector_t *
router_connectors_seen (router_connectors_t *self, const char *identity, size_t identity_size,
                        uint32_t capacity, uint32_t inflight, int64_t now_ms)
{
    router_connector_t *connector = router_connectors_find (self, identity, identity_size);
    if (!connector) {
        if (identity_size == 0 || identity_size >= sizeof connector->identity)
            return NULL;
        connector = calloc (1, sizeof *connector);
        assert (connector);
        memcpy (connector->identity, identity, identity_size);
        connector->identity_size = identity_size;
        connector->fd = -1;
        mesh_peer_init (&connector->peer, self->heartbeat_ms, self->liveness, now_ms);
        if (self->count == self->size) {
            self->size = self->size ? self->size * 2 : 8;
            self->items = realloc (self->items, self->size * sizeof *self->items);
            assert (self->items);
        }
        self->items [self->count++] = connector;
        mesh_info ("connector %s joined, capacity %u", connector->identity, capacity);
    }
    connector->capacity = capacity;
    connector->reported_inflight = inflight;
    mesh_peer_seen (&connector->peer, now_ms);
    return connector;
}

router_connector_t *
router_connectors_pick (router_connectors_t *self, const char *avoid)
{
    router_connector_t *best = NULL;
    int64_t best_free = 0;
    for (size_t i = 0; i < self->count; i++) {
        router_connector_t *connector = self->items [i];
        if (avoid && *avoid && mesh_streq (connector->identity, avoid))
            continue;
        //  The connector's own count lags by up to a heartbeat; ours is
        //  exact for what we sent.  Trust the larger.
        uint32_t used = MESH_MAX (connector->inflight, connector->reported_inflight);
        int64_t free_slots = (int64_t) connector->capacity - used;
        if (free_slots > best_free) {
            best = connector;
            best_free = free_slots;
        }
    }
    return best;
}

router_connector_t *
router_connectors_by_fd (router_connectors_t *self, int fd)
{
    for (size_t i = 0; i < self->count; i++)
        if (self->items [i]->fd == fd)
            return self->items [i];
    return NULL;
}

size_t
router_connectors_count (router_connectors_t *self)
{
    return self->count;
}

router_connector_t *
router_connectors_at (router_connectors_t *self, size_t index)
{
    return index < self->count ? self->items [index] : NULL;
}

static void
s_remove_at (router_connectors_t *self, size_t index, router_lost_fn *lost_fn, void *arg)
{
    router_connector_t *connector = self->items [index];
    self->items [index] = self->items [--self->count];
    if (lost_fn)
        lost_fn (arg, connector);
    while (connector->requests)
        router_request_detach (connector->requests);
    free (connector);
}

void
router_connectors_remove (router_connectors_t *self, router_connector_t *connector,
                          router_lost_fn *lost_fn, void *arg)
{
    for (size_t i = 0; i < self->count; i++)
        if (self->items [i] == connector) {
            s_remove_at (self, i, lost_fn, arg);
            return;
        }
}

void
router_connectors_expire (router_connectors_t *self, int64_t now_ms, router_lost_fn *lost_fn,
                          void *arg)
{
    for (size_t i = 0; i < self->count; ) {
        if (mesh_peer_expired (&self->items [i]->peer, now_ms)) {
            mesh_warn ("connector %s lost: silent for %lld ms, held %u requests",
                       self->items [i]->identity,
                       (long long) mesh_peer_silence_ms (&self->items [i]->peer, now_ms),
                       self->items [i]->inflight);
            s_remove_at (self, i, lost_fn, arg);
        }
        else
            i++;
    }
}

void
router_request_attach (router_request_t *request, router_connector_t *connector)
{
    assert (!request->connector);
    request->connector = connector;
    request->prev = NULL;
    request->next = connector->requests;
    if (connector->requests)
        connector->requests->prev = request;
    connector->requests = request;
    connector->inflight++;
}

void
router_request_detach (router_request_t *request)
{
    router_connector_t *connector = request->connector;
    if (!connector)
        return;
    if (request->prev)
        request->prev->next = request->next;
    else
        connector->requests = request->next;
    if (request->next)
        request->next->prev = request->prev;
    request->prev = request->next = NULL;
    request->connector = NULL;
    connector->inflight--;
}

//  Selftest -----------------------------------------------------------------

static int s_test_lost_count;
static size_t s_test_lost_held;

static void
s_test_lost (void *arg, router_connector_t *connector)
{
    (void) arg;
    s_test_lost_count++;
    s_test_lost_held = connector->inflight;
}

void
router_connectors_test (bool verbose)
{
    (void) verbose;
    router_connectors_t *connectors = router_connectors_new ();
    router_connector_t *a = router_connectors_seen (connectors, "conn-a", 6, 10, 0, 1000);
    router_connector_t *b = router_connectors_seen (connectors, "conn-b", 6, 10, 0, 1000);
    assert (a && b && a != b);
    assert (router_connectors_seen (connectors, "conn-a", 6, 10, 2, 1100) == a);
    assert (router_connectors_count (connectors) == 2);

    //  Most free first: a reports 2 busy, so b
    assert (router_connectors_pick (connectors, NULL) == b);
    router_request_t requests [12];
    memset (requests, 0, sizeof requests);
    for (int i = 0; i < 3; i++)
        router_request_attach (&requests [i], b);
    assert (b->inflight == 3);
    assert (router_connectors_pick (connectors, NULL) == a);
    assert (router_connectors_pick (connectors, "conn-a") == b);
    //  Full connectors are never picked
    for (int i = 3; i < 10; i++)
        router_request_attach (&requests [i], b);
    a->capacity = 2;
    assert (router_connectors_pick (connectors, NULL) == NULL);
    router_request_detach (&requests [5]);
    assert (requests [5].connector == NULL && b->inflight == 9);
    assert (router_connectors_pick (connectors, NULL) == b);

    //  b falls silent: lost with its 9 requests, which come back detached
    router_connectors_seen (connectors, "conn-a", 6, 10, 0, 2400);
    router_connectors_expire (connectors, 2600, s_test_lost, NULL);
    assert (s_test_lost_count == 1 && s_test_lost_held == 9);
    assert (router_connectors_count (connectors) == 1);
    for (int i = 0; i < 10; i++)
        assert (requests [i].connector == NULL);
    assert (router_connectors_find (connectors, "conn-b", 6) == NULL);
    router_connectors_destroy (&connectors);
    router_connectors_destroy (&connectors);
}
