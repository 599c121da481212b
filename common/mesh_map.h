/*  mesh_map: a hash map from strings to pointers.

    The map does not own keys or values: a key must stay valid while its
    entry exists (point it into the value, as records keyed by their own
    request id do).  Open addressing with linear probing and backward-shift
    deletion, so there are no tombstones and lookups stay short.
    Single-threaded.                                                          */
#ifndef MESH_MAP_H
#define MESH_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mesh_map_t mesh_map_t;

mesh_map_t *mesh_map_new (void);
void   mesh_map_destroy (mesh_map_t **self_p);
//  Inserts or replaces; returns the value replaced, or NULL.
void  *mesh_map_put (mesh_map_t *self, const char *key, void *value);
void  *mesh_map_get (mesh_map_t *self, const char *key);
//  Removes key; returns its value, or NULL.
void  *mesh_map_remove (mesh_map_t *self, const char *key);
size_t mesh_map_size (mesh_map_t *self);
//  Iterates: start with *cursor = 0; returns NULL at the end.  The map
//  must not change while iterating.
void  *mesh_map_next (mesh_map_t *self, size_t *cursor, const char **key);

void   mesh_map_test (bool verbose);

#endif
