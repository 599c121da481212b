/*  mesh_audit_store: the audit store on disk, its key ring and signer, and
    the readers operators use (query, verify, export).

    The store is a directory of SQLite databases in WAL mode, one per UTC
    day of commit: audit-YYYY-MM-DD.db.  Each holds
        records      seq (the store's, from 1, across days), id (the
                     request id, UNIQUE), the record's plain fields as
                     columns (time, tenant, key id, models, endpoint,
                     region, params, status, outcome, error code, attempts,
                     cache hit, timings, usage, bytes), enc_key_id, the
                     prompt and response sealed (AES-256-GCM; each sealed
                     field carries its key id and nonce; AAD = request id +
                     key id + field name) and `chain` = SHA-256 (previous
                     chain || seq || SHA-256 (canonical bytes)), the
                     canonical bytes being the record as mesh_audit encodes
                     it with prompt and response replaced by their sealed
                     forms (not stored: rebuilt from the columns);
                     indexed by time (start_ms), tenant and model
        checkpoints  seq, chain head, time, Ed25519 signature over them
        meta         the seq and chain value the day started from
    so that editing, deleting or reordering records, or cutting the tail
    before the last checkpoint, is found by mesh_audit_verify.  Anyone can
    read the plain columns with sqlite3; the prompt and response need the
    key file.  (A tail cut together with the checkpoints after it is only
    found against a copy of the last checkpoint kept elsewhere.)

    Key ring: a file of lines "<key id> <64 hex digits>" (id: 1-32 letters,
    digits, . _ -; # starts a comment), or the same lines, ';'-separated,
    in an environment variable.  The last key encrypts; every key decrypts
    what it encrypted.  Rotation appends a key.

    Writer side: one thread owns a store (SQLite connections are not
    shared); the store runs two threads of its own, with their own state
    and connection (sealing the next records, copying the WAL back).
    Reader side: the functions at the end open the files read-only, and
    may run while the service writes.                                       */
#ifndef MESH_AUDIT_STORE_H
#define MESH_AUDIT_STORE_H

#include "mesh_audit.h"
#include "mesh_buf.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Key ring -------------------------------------------------------------------

typedef struct mesh_audit_keyring_t mesh_audit_keyring_t;

//  From a file (path) or from text (env_text: lines separated by ';' or
//  '\n'); either may be NULL, not both.  NULL with a reason (a bad line is
//  named by its number; no key at all is an error).
mesh_audit_keyring_t *mesh_audit_keyring_load (const char *path, const char *env_text,
                                               char *why, size_t why_size);
void        mesh_audit_keyring_destroy (mesh_audit_keyring_t **self_p);
//  The id of the key that encrypts
const char *mesh_audit_keyring_active (mesh_audit_keyring_t *self);
//  Rotation: appends a new random key to the file at path (creating it
//  with mode 0600 if missing) and makes it the active one there; its id
//  goes into new_id.  -1 with a reason.
int         mesh_audit_keyring_rotate (const char *path, char *new_id, size_t new_id_size,
                                       char *why, size_t why_size);

//  Signer ---------------------------------------------------------------------

//  The Ed25519 key that signs checkpoints: read from private_path (PEM),
//  or made there (mode 0600) if the file does not exist, with its public
//  key written to public_path (PEM).  NULL with a reason.
EVP_PKEY   *mesh_audit_signer_load (const char *private_path, const char *public_path,
                                    char *why, size_t why_size);
//  A public key (PEM) for verifying.  NULL with a reason.
EVP_PKEY   *mesh_audit_public_key_load (const char *path, char *why, size_t why_size);

//  Writing --------------------------------------------------------------------

typedef struct mesh_audit_store_t mesh_audit_store_t;

//  Opens (creating) the store in dir; finds the last seq and chain head in
//  the newest day file.  keys and signer are borrowed.  NULL with a reason.
mesh_audit_store_t *mesh_audit_store_open (const char *dir, mesh_audit_keyring_t *keys,
                                           EVP_PKEY *signer, char *why, size_t why_size);
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

//  Reading (operators' tools) --------------------------------------------------

typedef struct {
    int64_t since_ms;           //  0: from the start
    int64_t until_ms;           //  0: to the end
    const char *tenant;         //  NULL: any
    const char *model;          //  NULL: any (matches model or model_requested)
    const char *outcome;        //  NULL: any
    int64_t status;             //  0: any
    size_t limit;               //  0: no limit
} mesh_audit_filter_t;

//  One stored record as read back.  Text fields are NUL-terminated; the
//  prompt and response are filled only when decrypted (keys given), and
//  decrypt_error says why one could not be (unknown key id, failed tag).
typedef struct {
    uint64_t seq;
    const char *file;           //  its day file's name
    mesh_audit_record_t record;
    const char *enc_key_id;
    bool decrypted;
    const char *decrypt_error;  //  NULL, or why not
} mesh_audit_row_t;

typedef int (mesh_audit_row_fn) (void *arg, const mesh_audit_row_t *row);

//  Calls fn for each matching record in time order; fn returns 0 to go on,
//  anything else stops (and is returned).  keys NULL: no decryption.  -1
//  with a reason on an unreadable store.
int         mesh_audit_query (const char *dir, const mesh_audit_filter_t *filter,
                              mesh_audit_keyring_t *keys, mesh_audit_row_fn *fn, void *arg,
                              char *why, size_t why_size);
//  Checks every day file from from_date ("YYYY-MM-DD", NULL: all): seqs
//  without gaps, each record's chain, its columns against its body, days
//  joined by their chain values, every checkpoint's signature (public
//  key) and that no checkpoint names a record that is gone.  0 when all
//  is well, 1 with the first bad record named in report ("audit-….db seq
//  N (id …): why"), -1 with a reason when it cannot read.
int         mesh_audit_verify (const char *dir, const char *from_date, EVP_PKEY *public_key,
                               mesh_buf_t *report, char *why, size_t why_size);
//  One record as an NDJSON line with Elastic Common Schema names
//  (@timestamp, event.id, event.outcome, event.duration (ns),
//  http.response.status_code, organization.id (tenant), user.id (key id),
//  gen_ai.request.model, gen_ai.response.model, gen_ai.usage.input_tokens,
//  gen_ai.usage.output_tokens, url.original (endpoint), cloud.region, …;
//  prompt and response as gen_ai.prompt / gen_ai.completion when
//  decrypted), newline included.
void        mesh_audit_row_ndjson (const mesh_audit_row_t *row, mesh_buf_t *out);

void        mesh_audit_store_test (bool verbose);

#endif
