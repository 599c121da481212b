/*  mesh_map: string-keyed open-addressing hash map.                         */
#include "mesh_map.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *key;            //  NULL: empty slot
    uint64_t hash;
    void *value;
} slot_t;

struct mesh_map_t {
    slot_t *slots;
    size_t capacity;            //  a power of two
    size_t size;
};

//  FNV-1a, 64-bit
static uint64_t
s_hash (const char *key)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *) key; *p; p++)
        hash = (hash ^ *p) * 0x100000001b3ull;
    return hash;
}

mesh_map_t *
mesh_map_new (void)
{
    mesh_map_t *self = calloc (1, sizeof *self);
    assert (self);
    self->capacity = 16;
    self->slots = calloc (self->capacity, sizeof *self->slots);
    assert (self->slots);
    return self;
}

void
mesh_map_destroy (mesh_map_t **self_p)
{
    assert (self_p);
    mesh_map_t *self = *self_p;
    if (!self)
        return;
    free (self->slots);
    free (self);
    *self_p = NULL;
}

static size_t
s_find (mesh_map_t *self, const char *key, uint64_t hash)
{
    size_t mask = self->capacity - 1;
    size_t i = hash & mask;
    while (self->slots [i].key
       && (self->slots [i].hash != hash || strcmp (self->slots [i].key, key) != 0))
        i = (i + 1) & mask;
    return i;
}

static void
s_grow (mesh_map_t *self)
{
    slot_t *old = self->slots;
    size_t old_capacity = self->capacity;
    self->capacity *= 2;
    self->slots = calloc (self->capacity, sizeof *self->slots);
    assert (self->slots);
    for (size_t i = 0; i < old_capacity; i++)
        if (old [i].key) {
            size_t j = old [i].hash & (self->capacity - 1);
            while (self->slots [j].key)
                j = (j + 1) & (self->capacity - 1);
            self->slots [j] = old [i];
        }
    free (old);
}

void *
mesh_map_put (mesh_map_t *self, const char *key, void *value)
{
    if ((self->size + 1) * 4 > self->capacity * 3)
        s_grow (self);
    uint64_t hash = s_hash (key);
    size_t i = s_find (self, key, hash);
    void *old = NULL;
    if (self->slots [i].key)
        old = self->slots [i].value;
    else
        self->size++;
    self->slots [i] = (slot_t) { key, hash, value };
    return old;
}

void *
mesh_map_get (mesh_map_t *self, const char *key)
{
    size_t i = s_find (self, key, s_hash (key));
    return self->slots [i].key ? self->slots [i].value : NULL;
}

void *
mesh_map_remove (mesh_map_t *self, const char *key)
{
    size_t mask = self->capacity - 1;
    size_t i = s_find (self, key, s_hash (key));
    if (!self->slots [i].key)
        return NULL;
    void *value = self->slots [i].value;
    //  Backward shift: pull later entries of the probe run into the hole
    size_t hole = i;
    size_t j = (i + 1) & mask;
    while (self->slots [j].key) {
        size_t home = self->slots [j].hash & mask;
        //  Entry j may move to hole if hole lies between home and j (cyclic)
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            self->slots [hole] = self->slots [j];
            hole = j;
        }
        j = (j + 1) & mask;
    }
    self->slots [hole] = (slot_t) { NULL, 0, NULL };
    self->size--;
    return value;
}

size_t
mesh_map_size (mesh_map_t *self)
{
    return self->size;
}

void *
mesh_map_next (mesh_map_t *self, size_t *cursor, const char **key)
{
    while (*cursor < self->capacity) {
        slot_t *slot = &self->slots [(*cursor)++];
        if (slot->key) {
            if (key)
                *key = slot->key;
            return slot->value;
        }
    }
    return NULL;
}

void
mesh_map_test (bool verbose)
{
    (void) verbose;
    mesh_map_t *map = mesh_map_new ();
    static char keys [1000][16];
    for (int i = 0; i < 1000; i++) {
        snprintf (keys [i], sizeof keys [i], "key-%d", i);
        assert (mesh_map_put (map, keys [i], keys [i]) == NULL);
    }
    assert (mesh_map_size (map) == 1000);
    for (int i = 0; i < 1000; i++)
        assert (mesh_map_get (map, keys [i]) == keys [i]);
    assert (mesh_map_get (map, "key-1000") == NULL);
    //  Remove every other key; the rest stay reachable
    for (int i = 0; i < 1000; i += 2)
        assert (mesh_map_remove (map, keys [i]) == keys [i]);
    assert (mesh_map_remove (map, keys [0]) == NULL);
    assert (mesh_map_size (map) == 500);
    for (int i = 0; i < 1000; i++)
        assert (mesh_map_get (map, keys [i]) == (i % 2 ? keys [i] : NULL));
    //  Replace returns the old value
    assert (mesh_map_put (map, keys [1], "x") == keys [1]);
    assert (mesh_map_size (map) == 500);
    //  Iteration sees each entry once
    size_t cursor = 0, seen = 0;
    const char *key;
    while (mesh_map_next (map, &cursor, &key))
        seen++;
    assert (seen == 500);
    mesh_map_destroy (&map);
    mesh_map_destroy (&map);
}
