/*  mesh_audit_keyring: the AES-256 keys that seal audit records' prompts
    and responses.

    A key file holds lines "<key id> <64 hex digits>" (id: 1-32 letters,
    digits, . _ -; # starts a comment); the same lines, ';'-separated, may
    come from an environment variable.  The last key encrypts; every key
    decrypts what it encrypted; a line that repeats a key (its id and its
    bytes) adds nothing, one that gives a known id another key is refused.
    Rotation appends a key to the file.  The parser takes text from
    outside the process: it refuses a bad line with its number and never
    asserts on it (tests/fuzz/fuzz_keys.c drives it and compares it with a
    second, simple implementation).

    A ring is read-only once loaded: the audit service's writer thread and
    the store's sealer thread read it at once, the reader tools on their
    own.  Key material is wiped from memory when it is freed.                */
#ifndef MESH_AUDIT_KEYRING_H
#define MESH_AUDIT_KEYRING_H

#include <stdbool.h>
#include <stddef.h>

#define MESH_AUDIT_KEYRING_KEY_BYTES 32
#define MESH_AUDIT_KEYRING_ID_MAX    32

//  One key and its id
typedef struct {
    char id [MESH_AUDIT_KEYRING_ID_MAX + 1];
    unsigned char key [MESH_AUDIT_KEYRING_KEY_BYTES];
} mesh_audit_keyring_key_t;

typedef struct mesh_audit_keyring_t mesh_audit_keyring_t;

//  From a file (path) or from text (env_text: lines separated by ';' or
//  '\n'); either may be NULL, not both.  NULL with a reason (a bad line is
//  named by its number; no key at all is an error).
mesh_audit_keyring_t *mesh_audit_keyring_load (const char *path, const char *env_text,
                                               char *why, size_t why_size);
void        mesh_audit_keyring_destroy (mesh_audit_keyring_t **self_p);
//  The id of the key that encrypts
const char *mesh_audit_keyring_active (mesh_audit_keyring_t *self);
//  The key that encrypts
const mesh_audit_keyring_key_t *mesh_audit_keyring_active_key (const mesh_audit_keyring_t *self);
//  The number of keys, and key i of them (0 .. count - 1) in the order
//  they were first read (the last one encrypts)
size_t      mesh_audit_keyring_count (const mesh_audit_keyring_t *self);
const mesh_audit_keyring_key_t *mesh_audit_keyring_key (const mesh_audit_keyring_t *self,
                                                        size_t i);
//  The key of id [0, len), or NULL (self may be NULL: no key)
const mesh_audit_keyring_key_t *mesh_audit_keyring_find (const mesh_audit_keyring_t *self,
                                                         const char *id, size_t len);
//  Rotation: appends a new random key to the file at path (creating it
//  with mode 0600 if missing) and makes it the active one there; its id
//  goes into new_id.  -1 with a reason.
int         mesh_audit_keyring_rotate (const char *path, char *new_id, size_t new_id_size,
                                       char *why, size_t why_size);

void        mesh_audit_keyring_test (bool verbose);

#endif
