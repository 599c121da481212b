/*  cache_l1: kept answers in memory, under a byte bound.

    Two eviction policies, chosen by cache.l1_policy (DESIGN.md has the
    measurement that picked the default):
    - LRU: one list, a hit moves the entry to the front, the back goes.
    - S3-FIFO (Yang et al., SOSP '23): a small FIFO (a tenth of the bytes)
      that new entries enter, a main FIFO, and a ghost list of the keys
      lately evicted from the small one.  A hit only counts (up to 3), it
      moves nothing.  The small FIFO's oldest entry goes to main if it was
      read since it came, else out (its key into the ghost list); main's
      oldest goes round again, one count less, while it has counts, else
      out.  A key found in the ghost list enters main directly.  Most
      answers are asked for once; they pass through the small FIFO without
      pushing out the ones asked for again and again.
    Sizes are bytes (cache_entry_t.bytes), not entries.  An entry past its
    expiry is dropped when it is next read.  Reactor thread only.           */
#include "cache.h"

#include "mesh_map.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { Q_NONE, Q_LRU = 1, Q_SMALL = 1, Q_MAIN = 2 };
#define MAX_FREQ          3
#define SMALL_PERCENT     10
#define GHOST_MIN         64

typedef struct {
    cache_entry_t *head, *tail;     //  head: newest
    size_t bytes;
    size_t count;
} list_t;

struct cache_l1_t {
    size_t max_bytes;
    cache_l1_policy_t policy;
    mesh_map_t *map;                //  key -> entry
    list_t lists [3];
    size_t bytes;
    uint64_t evictions;
    //  S3-FIFO's ghost keys: a ring, and a map of the live ones
    struct ghost_t **ghost;
    size_t ghost_cap, ghost_start, ghost_count;
    mesh_map_t *ghost_map;
};

static void
s_unlink (cache_l1_t *self, cache_entry_t *entry)
{
    list_t *list = &self->lists [entry->queue];
    if (entry->prev)
        entry->prev->next = entry->next;
    else
        list->head = entry->next;
    if (entry->next)
        entry->next->prev = entry->prev;
    else
        list->tail = entry->prev;
    list->bytes -= entry->bytes;
    list->count--;
    entry->prev = entry->next = NULL;
    entry->queue = Q_NONE;
}

static void
s_push (cache_l1_t *self, cache_entry_t *entry, int queue)
{
    list_t *list = &self->lists [queue];
    entry->queue = (uint8_t) queue;
    entry->prev = NULL;
    entry->next = list->head;
    if (list->head)
        list->head->prev = entry;
    else
        list->tail = entry;
    list->head = entry;
    list->bytes += entry->bytes;
    list->count++;
}

//  Takes entry out for good
static void
s_drop (cache_l1_t *self, cache_entry_t *entry)
{
    s_unlink (self, entry);
    mesh_map_remove (self->map, entry->key);
    self->bytes -= entry->bytes;
    cache_entry_destroy (&entry);
}

//  The ghost list ------------------------------------------------------------------

//  A key lately evicted from the small FIFO.  The ring owns it; a key taken
//  back (asked for again) stays in the ring, dead, until its turn comes.
typedef struct ghost_t {
    char key [65];
    bool live;
} ghost_t;

static void
s_ghost_add (cache_l1_t *self, const char *key)
{
    //  As many ghosts as main holds entries (at least GHOST_MIN)
    size_t limit = MESH_MAX (self->lists [Q_MAIN].count, (size_t) GHOST_MIN);
    if (mesh_map_get (self->ghost_map, key))
        return;
    if (self->ghost_count == self->ghost_cap && self->ghost_count < limit) {
        //  Grow the ring, keeping its order
        size_t cap = self->ghost_cap * 2;
        ghost_t **ring = calloc (cap, sizeof *ring);
        assert (ring);
        for (size_t i = 0; i < self->ghost_count; i++)
            ring [i] = self->ghost [(self->ghost_start + i) % self->ghost_cap];
        free (self->ghost);
        self->ghost = ring;
        self->ghost_cap = cap;
        self->ghost_start = 0;
    }
    while (self->ghost_count > 0 && (self->ghost_count >= limit || self->ghost_count == self->ghost_cap)) {
        ghost_t *oldest = self->ghost [self->ghost_start];
        self->ghost [self->ghost_start] = NULL;
        self->ghost_start = (self->ghost_start + 1) % self->ghost_cap;
        self->ghost_count--;
        if (oldest->live)
            mesh_map_remove (self->ghost_map, oldest->key);
        free (oldest);
    }
    ghost_t *ghost = malloc (sizeof *ghost);
    assert (ghost);
    snprintf (ghost->key, sizeof ghost->key, "%s", key);
    ghost->live = true;
    self->ghost [(self->ghost_start + self->ghost_count++) % self->ghost_cap] = ghost;
    mesh_map_put (self->ghost_map, ghost->key, ghost);
}

//  True when key was lately evicted from the small FIFO (then forgotten)
static bool
s_ghost_take (cache_l1_t *self, const char *key)
{
    ghost_t *ghost = mesh_map_remove (self->ghost_map, key);
    if (!ghost)
        return false;
    ghost->live = false;
    return true;
}

//  Eviction ----------------------------------------------------------------------------

static void
s_evict_main (cache_l1_t *self)
{
    list_t *main = &self->lists [Q_MAIN];
    while (main->tail) {
        cache_entry_t *tail = main->tail;
        if (tail->freq > 0) {
            tail->freq--;
            s_unlink (self, tail);
            s_push (self, tail, Q_MAIN);
            continue;
        }
        s_drop (self, tail);
        self->evictions++;
        return;
    }
}

static void
s_evict_small (cache_l1_t *self)
{
    list_t *small = &self->lists [Q_SMALL];
    while (small->tail) {
        cache_entry_t *tail = small->tail;
        s_unlink (self, tail);
        if (tail->freq > 0) {
            tail->freq = 0;
            s_push (self, tail, Q_MAIN);
            if (self->lists [Q_MAIN].bytes > self->max_bytes / 100 * (100 - SMALL_PERCENT))
                s_evict_main (self);
            continue;
        }
        s_ghost_add (self, tail->key);
        s_push (self, tail, Q_SMALL);       //  s_drop unlinks it again
        s_drop (self, tail);
        self->evictions++;
        return;
    }
}

static void
s_evict (cache_l1_t *self)
{
    if (self->policy == CACHE_L1_LRU) {
        s_drop (self, self->lists [Q_LRU].tail);
        self->evictions++;
        return;
    }
    if (self->lists [Q_SMALL].bytes >= self->max_bytes / 100 * SMALL_PERCENT
    ||  self->lists [Q_MAIN].count == 0)
        s_evict_small (self);
    else
        s_evict_main (self);
}

//  The API ---------------------------------------------------------------------------

cache_l1_t *
cache_l1_new (size_t max_bytes, cache_l1_policy_t policy)
{
    cache_l1_t *self = calloc (1, sizeof *self);
    assert (self);
    self->max_bytes = max_bytes;
    self->policy = policy;
    self->map = mesh_map_new ();
    self->ghost_cap = GHOST_MIN;
    self->ghost = calloc (self->ghost_cap, sizeof *self->ghost);
    self->ghost_map = mesh_map_new ();
    assert (self->ghost);
    return self;
}

void
cache_l1_destroy (cache_l1_t **self_p)
{
    assert (self_p);
    cache_l1_t *self = *self_p;
    if (!self)
        return;
    for (int q = 1; q <= 2; q++)
        while (self->lists [q].head)
            s_drop (self, self->lists [q].head);
    mesh_map_destroy (&self->map);
    for (size_t i = 0; i < self->ghost_cap; i++)
        free (self->ghost [i]);
    free (self->ghost);
    mesh_map_destroy (&self->ghost_map);
    free (self);
    *self_p = NULL;
}

cache_entry_t *
cache_l1_get (cache_l1_t *self, const char *key, int64_t now_ms)
{
    cache_entry_t *entry = mesh_map_get (self->map, key);
    if (!entry)
        return NULL;
    if (entry->expires_ms && entry->expires_ms <= now_ms) {
        s_drop (self, entry);
        return NULL;
    }
    if (self->policy == CACHE_L1_LRU) {
        s_unlink (self, entry);
        s_push (self, entry, Q_LRU);
    }
    else
    if (entry->freq < MAX_FREQ)
        entry->freq++;
    return entry;
}

bool
cache_l1_remove (cache_l1_t *self, const char *key)
{
    cache_entry_t *entry = mesh_map_get (self->map, key);
    if (entry)
        s_drop (self, entry);
    return entry != NULL;
}

void
cache_l1_put (cache_l1_t *self, cache_entry_t *entry)
{
    cache_l1_remove (self, entry->key);
    if (entry->bytes > self->max_bytes) {
        cache_entry_destroy (&entry);
        return;
    }
    entry->freq = 0;
    bool ghost = self->policy == CACHE_L1_S3FIFO && s_ghost_take (self, entry->key);
    s_push (self, entry, ghost ? Q_MAIN : self->policy == CACHE_L1_LRU ? Q_LRU : Q_SMALL);
    mesh_map_put (self->map, entry->key, entry);
    self->bytes += entry->bytes;
    while (self->bytes > self->max_bytes)
        s_evict (self);
}

size_t   cache_l1_bytes (cache_l1_t *self) { return self->bytes; }
size_t   cache_l1_count (cache_l1_t *self) { return mesh_map_size (self->map); }
uint64_t cache_l1_evictions (cache_l1_t *self) { return self->evictions; }

//  Selftest -------------------------------------------------------------------

static cache_entry_t *
s_fake (const char *key, size_t bytes)
{
    cache_entry_t *entry = calloc (1, sizeof *entry);
    assert (entry);
    snprintf (entry->key, sizeof entry->key, "%s", key);
    entry->bytes = bytes;
    return entry;
}

void
cache_l1_test (bool verbose)
{
    (void) verbose;
    //  LRU: a read keeps an entry; the least recent goes
    cache_l1_t *l1 = cache_l1_new (300, CACHE_L1_LRU);
    cache_l1_put (l1, s_fake ("a", 100));
    cache_l1_put (l1, s_fake ("b", 100));
    cache_l1_put (l1, s_fake ("c", 100));
    assert (cache_l1_get (l1, "a", 0));
    cache_l1_put (l1, s_fake ("d", 100));
    assert (cache_l1_get (l1, "a", 0) && !cache_l1_get (l1, "b", 0));
    assert (cache_l1_bytes (l1) == 300 && cache_l1_count (l1) == 3 && cache_l1_evictions (l1) == 1);
    //  Too large: not kept; replaced: counted once; expired: gone
    cache_l1_put (l1, s_fake ("huge", 301));
    assert (!cache_l1_get (l1, "huge", 0) && cache_l1_count (l1) == 3);
    cache_l1_put (l1, s_fake ("a", 50));
    assert (cache_l1_bytes (l1) == 250);
    cache_entry_t *expiring = s_fake ("e", 10);
    expiring->expires_ms = 1000;
    cache_l1_put (l1, expiring);
    assert (cache_l1_get (l1, "e", 999) && !cache_l1_get (l1, "e", 1000));
    cache_l1_destroy (&l1);
    cache_l1_destroy (&l1);

    //  S3-FIFO: a one-time scan does not push out what is read again
    l1 = cache_l1_new (1000, CACHE_L1_S3FIFO);
    char key [16];
    for (int i = 0; i < 8; i++) {
        snprintf (key, sizeof key, "hot%d", i);
        cache_l1_put (l1, s_fake (key, 100));
        cache_l1_get (l1, key, 0);
        cache_l1_get (l1, key, 0);
    }
    for (int i = 0; i < 200; i++) {
        snprintf (key, sizeof key, "scan%d", i);
        cache_l1_put (l1, s_fake (key, 100));
        for (int h = 0; h < 8; h++) {
            char hot [16];
            snprintf (hot, sizeof hot, "hot%d", h);
            if (i % 4 == 0)
                cache_l1_get (l1, hot, 0);
        }
    }
    int kept = 0;
    for (int i = 0; i < 8; i++) {
        snprintf (key, sizeof key, "hot%d", i);
        kept += cache_l1_get (l1, key, 0) != NULL;
    }
    assert (kept == 8);
    assert (cache_l1_bytes (l1) <= 1000);
    //  A key evicted from the small FIFO and asked for again enters main
    assert (!cache_l1_get (l1, "scan190", 0));
    cache_l1_put (l1, s_fake ("scan190", 100));
    cache_entry_t *again = cache_l1_get (l1, "scan190", 0);
    assert (again && again->queue == Q_MAIN);
    cache_l1_destroy (&l1);
}
