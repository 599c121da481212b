/*  audit_writer: the thread that owns the audit store.

    The reactor fills a batch with decoded records (each keeps the ZeroMQ
    frame its fields point into) and the writer takes it, appends it to the
    store in one transaction (group commit: up to batch_max records, at
    most one commit every batch_ms, so a record after a quiet spell goes at
    once and under load each commit takes what came since the last), and
    hands it back through the
    done queue with an eventfd wake-up; only then may the reactor ACK what
    it held.  Between commits the writer signs checkpoints, deletes expired
    day files and reloads the key ring when the key file changes.

    Batches cycle through a small pool: free -> filling (reactor) ->
    writing (writer) -> done (reactor) -> free.  When none is free the
    reactor stops reading its socket: back-pressure reaches the ingress.

    Threads: audit_writer_new/destroy on the main thread; push, room,
    take_done, give_back and flush on the reactor thread; the store, the
    key ring and every SQLite connection only on the writer thread.         */
#ifndef AUDIT_WRITER_H
#define AUDIT_WRITER_H

#include "mesh_audit.h"
#include "mesh_audit_store.h"
#include "mesh_metrics.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

//  One received AUDIT message: whose, which seq, and whether it carried a
//  record (a malformed one has none but is still acknowledged, in order)
typedef struct {
    void *sender;               //  the reactor's, opaque here
    uint64_t seq;
    bool has_record;
} audit_entry_t;

typedef struct audit_batch_t audit_batch_t;
struct audit_batch_t {
    audit_batch_t *next;
    size_t capacity;            //  entries (and records) it can hold
    mesh_audit_record_t *records;   //  [record_count], for one append
    zmq_msg_t *frames;          //  [record_count]: what records [i] points into
    size_t record_count;
    audit_entry_t *entries;     //  [entry_count], in arrival order
    size_t entry_count;
    int64_t first_us;           //  when its first entry came (monotonic)
    bool durable;               //  when done: committed and synced
    int stored;                 //  when durable: records new to the store
};

typedef struct {
    const char *dir;            //  the store's directory (exists)
    const char *key_file;       //  watched for rotation; may not exist yet
    const char *keys_env_text;  //  the key ring from the environment, or NULL
    mesh_audit_keyring_t *keys; //  taken
    EVP_PKEY *signer;           //  borrowed; outlives the writer
    size_t batch_max;
    int64_t batch_ms;
    int64_t checkpoint_ms;
    int64_t retention_days;     //  0: keep everything
    mesh_metrics_t *metrics;
} audit_writer_config_t;

typedef struct audit_writer_t audit_writer_t;

//  Starts the thread and waits for it to open the store.  NULL with a
//  reason (the key ring is freed then too).
audit_writer_t *audit_writer_new (const audit_writer_config_t *config, char *why, size_t why_size);
//  Commits what is queued (one attempt, no retry), signs a last
//  checkpoint, closes the store and joins the thread.  The batches it
//  wrote are in the done queue after it returns (audit_writer_take_done).
void    audit_writer_stop (audit_writer_t *self);
//  Stops (if not stopped) and frees everything, frames of unwritten
//  batches included.
void    audit_writer_destroy (audit_writer_t **self_p);
//  Readable (eventfd) when written batches wait in the done queue, or when
//  room came after a push was refused.  Read it with audit_writer_take_done.
int     audit_writer_fd (audit_writer_t *self);

//  Queues an entry; with a record, takes the frame it points into (moved:
//  the caller's frame is left empty).  0, or -1 when every batch is busy:
//  nothing is taken, and the eventfd fires when there is room again.
int     audit_writer_push (audit_writer_t *self, const audit_entry_t *entry,
                           const mesh_audit_record_t *record, zmq_msg_t *frame);
//  Commits what is queued without waiting for batch_ms (draining).
void    audit_writer_flush (audit_writer_t *self);
//  Clears the eventfd and returns the written batches, oldest first
//  (linked by next), or NULL.
audit_batch_t *audit_writer_take_done (audit_writer_t *self);
//  Returns a batch taken from the done queue to the free pool.
void    audit_writer_give_back (audit_writer_t *self, audit_batch_t *batch);
//  Entries queued, being written or waiting in the done queue
size_t  audit_writer_pending (audit_writer_t *self);

void    audit_writer_test (bool verbose);

#endif
