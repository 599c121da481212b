/*  mesh_audit_store: the writer of the audit store.

    The store is a directory of SQLite day files (mesh_audit_file.h): each
    record stored once (by request id), its prompt and response sealed
    under the key ring's active key, chained to the record before it, and
    the chain head signed at checkpoints that each name the checkpoint
    before (mesh_audit_seal.h), so that editing, deleting or reordering
    records or checkpoints, or cutting the tail before the last
    checkpoint, is found by mesh_audit_verify.  (A tail cut together with
    the checkpoints after it is only found against a copy of the last
    checkpoint kept elsewhere.)  The readers are mesh_audit_query and
    mesh_audit_verify; they may run while this writes.

    The writer appends batches to the day file of the time of commit (a
    new day starts a new file, never an older one, and the day before is
    closed with a checkpoint of its last record first), syncs each commit,
    skips records already stored (in this day file or, near midnight, the
    one before), and deletes day files past their retention.  Opening
    checks that the day files join (each starts where the one before ends
    and names its last checkpoint) and refuses to append to a broken
    chain; it signs records a crashed writer left unsigned.  A clean close
    signs the head.

    Threads: one thread owns a store (SQLite connections are not shared)
    and calls every function here.  The store runs two threads of its own,
    each with its own state and connection: the sealer (mesh_audit_sealer.h:
    sealing the next records while these are inserted) and the WAL copier
    (mesh_audit_wal.h: copying the WAL back into the day file).  One
    process writes a store at a time (a lock file).                          */
#ifndef MESH_AUDIT_STORE_H
#define MESH_AUDIT_STORE_H

#include "mesh_audit.h"
#include "mesh_audit_keyring.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mesh_audit_store_t mesh_audit_store_t;

//  Opens (creating) the store in dir; finds the last seq, chain head and
//  checkpoint in the newest day file, after checking that the day files
//  join (a broken chain is refused, with what to do).  keys and signer are
//  borrowed (signer may be NULL: no checkpoints, and none is looked for).
//  NULL with a reason.
mesh_audit_store_t *mesh_audit_store_open (const char *dir, mesh_audit_keyring_t *keys,
                                           EVP_PKEY *signer, char *why, size_t why_size);
//  Signs the head (when records came since the last checkpoint), then
//  closes
void        mesh_audit_store_close (mesh_audit_store_t **self_p);
//  Swaps the key ring (rotation); the old one is the caller's to free.
void        mesh_audit_store_set_keys (mesh_audit_store_t *self, mesh_audit_keyring_t *keys);
//  Stores records in one transaction of the day file of now_ms, encrypted
//  and chained; records whose request id is already stored are skipped.
//  Durable when it returns (the commit is synced).  The number stored, or
//  -1 with a reason (nothing stored).
int         mesh_audit_store_append (mesh_audit_store_t *self, const mesh_audit_record_t *records,
                                     size_t count, int64_t now_ms, char *why, size_t why_size);
//  Writes a signed checkpoint of the chain head, if records came since
//  the last one.  0, or -1 with a reason.
int         mesh_audit_store_checkpoint (mesh_audit_store_t *self, int64_t now_ms,
                                         char *why, size_t why_size);
//  Deletes day files older than days (0: keep everything).  The number
//  of files deleted.
int         mesh_audit_store_retain (mesh_audit_store_t *self, int64_t now_ms, int64_t days);
uint64_t    mesh_audit_store_seq (mesh_audit_store_t *self);

void        mesh_audit_store_test (bool verbose);

#endif
