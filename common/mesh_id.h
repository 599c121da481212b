/*  mesh_id: request ids.

    A request id is 26 characters of Crockford base32 (the ULID alphabet):
    48 bits of wall-clock milliseconds, 32 random bits fixed per process and
    a 48-bit per-process counter.  Ids sort by time, never repeat within a
    process and collide across processes only if both the random part and the
    counter agree.  Any thread.                                               */
#ifndef MESH_ID_H
#define MESH_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_ID_LEN 26

//  Writes MESH_ID_LEN characters and a terminating NUL into out.
void mesh_id_new (char out [MESH_ID_LEN + 1]);
//  True when s (of length len) has the shape of a request id.
bool mesh_id_valid (const char *s, size_t len);
//  Fills buf with cryptographically random bytes; aborts if the kernel
//  cannot supply them (there is no sane way to go on).
void mesh_random (void *buf, size_t len);

void mesh_id_test (bool verbose);

#endif
