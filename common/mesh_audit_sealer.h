/*  mesh_audit_sealer: a thread that seals the audit store's next records
    while the writer inserts these.

    Encoding, sealing and hashing a record does not depend on the records
    before it (only the chain step does), and costs about a third of what
    inserting it costs.  The sealer does it for the next chunk while the
    writer inserts this one: two chunks, each at most
    MESH_AUDIT_SEALER_CHUNK_RECORDS records or MESH_AUDIT_SEALER_CHUNK_BYTES
    of text (so a batch of large records holds two chunks' worth in memory,
    not the batch's).

    Two threads: the sealer's own, and the writer's (the thread that owns
    the store), which calls every function here.  They share the chunks
    under the sealer's lock; a chunk taken is the writer's until it gives it
    back.  The sealer has its own mesh_audit_seal_t and nonce counter, which
    the writer never touches.                                               */
#ifndef MESH_AUDIT_SEALER_H
#define MESH_AUDIT_SEALER_H

#include "mesh_audit.h"
#include "mesh_audit_keyring.h"
#include "mesh_audit_seal.h"
#include "mesh_buf.h"

#include <stdbool.h>
#include <stddef.h>

#define MESH_AUDIT_SEALER_CHUNK_RECORDS 64
#define MESH_AUDIT_SEALER_CHUNK_BYTES   (4u << 20)

//  One record, sealed
typedef struct {
    mesh_buf_t body;            //  its plain encoding (mesh_audit_seal_plain)
    mesh_buf_t prompt;          //  sealed
    mesh_buf_t response;        //  sealed
    unsigned char digest [MESH_AUDIT_SEAL_CHAIN_BYTES];
} mesh_audit_sealer_slot_t;

//  Records [first, first + count) of a job, sealed into slots [0, count).
//  When failed, the last of them could not be (why says which and why);
//  the chunk is the job's last.
typedef struct {
    size_t first, count;
    bool full;                  //  the sealer's lock: sealed, for the writer
    bool failed;
    char why [128];
    mesh_audit_sealer_slot_t slots [MESH_AUDIT_SEALER_CHUNK_RECORDS];
} mesh_audit_sealer_chunk_t;

typedef struct mesh_audit_sealer_t mesh_audit_sealer_t;

//  Starts the thread, with a random nonce counter
mesh_audit_sealer_t *mesh_audit_sealer_new (void);
//  Stops the thread; its buffers are wiped and freed
void        mesh_audit_sealer_destroy (mesh_audit_sealer_t **self_p);
//  Hands count records to the sealer, to seal under key; records and key
//  are borrowed until mesh_audit_sealer_end
void        mesh_audit_sealer_begin (mesh_audit_sealer_t *self, const mesh_audit_record_t *records,
                                     size_t count, const mesh_audit_keyring_key_t *key);
//  The next sealed chunk, c (0, 1, 0, ...), once it is ready
mesh_audit_sealer_chunk_t *mesh_audit_sealer_take (mesh_audit_sealer_t *self, int c);
//  Gives a chunk back to be filled again
void        mesh_audit_sealer_give (mesh_audit_sealer_t *self, mesh_audit_sealer_chunk_t *chunk);
//  Waits until the sealer has let go of the records; abort: stop it first
void        mesh_audit_sealer_end (mesh_audit_sealer_t *self, bool abort);

void        mesh_audit_sealer_test (bool verbose);

#endif
