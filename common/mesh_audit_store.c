/*  mesh_audit_store: the writer of the audit store (see mesh_audit_store.h).

    An append takes the batch's records through the sealer a chunk at a
    time, and for each one takes the chain one step and inserts its row;
    the batch is one transaction, synced at its commit.  Writer's thread
    only (the sealer and the WAL copier have their own modules).            */
#include "mesh_audit_store.h"
#include "mesh_audit_file.h"
#include "mesh_audit_seal.h"
#include "mesh_audit_sealer.h"
#include "mesh_audit_wal.h"
#include "mesh_log.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHAIN_BYTES MESH_AUDIT_SEAL_CHAIN_BYTES

struct mesh_audit_store_t {
    char *dir;
    mesh_audit_keyring_t *keys;         //  borrowed
    EVP_PKEY *signer;                   //  borrowed
    //  The day file written to
    sqlite3 *db;
    char day [11];
    int64_t day_start_ms;
    sqlite3_stmt *insert;
    //  The day file before it, for finding records resent across midnight
    sqlite3 *prev_db;
    sqlite3_stmt *prev_lookup;
    //  The chain's head
    uint64_t seq;
    unsigned char chain [CHAIN_BYTES];
    uint64_t checkpoint_seq;            //  the last checkpoint's
    unsigned char checkpoint_digest [CHAIN_BYTES];  //  its signature's SHA-256
    mesh_audit_seal_t *seal;            //  the chain's steps
    mesh_buf_t sql;
    mesh_audit_sealer_t *sealer;
    mesh_audit_wal_t *wal;
    int lock_fd;                        //  writer.lock, held while open
};

//  Day files --------------------------------------------------------------------

static void
s_close_db (sqlite3 **db_p, sqlite3_stmt **stmts [], size_t count)
{
    for (size_t i = 0; i < count; i++) {
        sqlite3_finalize (*stmts [i]);
        *stmts [i] = NULL;
    }
    if (*db_p)
        sqlite3_close (*db_p);
    *db_p = NULL;
}

static void
s_close_day (mesh_audit_store_t *self)
{
    sqlite3_stmt **stmts [] = { &self->insert };
    s_close_db (&self->db, stmts, MESH_ARRAY_SIZE (stmts));
}

static void
s_close_prev (mesh_audit_store_t *self)
{
    sqlite3_stmt **stmts [] = { &self->prev_lookup };
    s_close_db (&self->prev_db, stmts, MESH_ARRAY_SIZE (stmts));
}

static int
s_prepare_day (mesh_audit_store_t *self, const char *path, char *why, size_t why_size)
{
    mesh_buf_reset (&self->sql);
    mesh_audit_file_insert_sql (&self->sql);
    if (sqlite3_prepare_v3 (self->db, mesh_buf_head (&self->sql), -1, SQLITE_PREPARE_PERSISTENT,
                            &self->insert, NULL) != SQLITE_OK)
        return mesh_audit_file_fail (self->db, path, why, why_size);
    return 0;
}

static int
s_open_prev (mesh_audit_store_t *self, const char *name, char *why, size_t why_size)
{
    char path [4096];
    snprintf (path, sizeof path, "%s/%s", self->dir, name);
    //  Read-write although it only reads: a read-only connection leaves the
    //  -wal and -shm it makes behind, and cannot recover a WAL left by a crash
    if (sqlite3_open_v2 (path, &self->prev_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL)
        != SQLITE_OK) {
        mesh_audit_file_fail (self->prev_db, path, why, why_size);
        s_close_prev (self);
        return -1;
    }
    sqlite3_busy_timeout (self->prev_db, 5000);
    if (sqlite3_prepare_v2 (self->prev_db, "SELECT 1 FROM records WHERE id = ?", -1,
                            &self->prev_lookup, NULL) != SQLITE_OK) {
        mesh_audit_file_fail (self->prev_db, path, why, why_size);
        s_close_prev (self);
        return -1;
    }
    return 0;
}

//  A day file without its meta: a new one starts where the chain is now,
//  after the last checkpoint; one with tables (not_ours says why it is not
//  a day file) is refused
static int
s_start_day (mesh_audit_store_t *self, const char *path, const char *day, bool existed,
             const char *not_ours, char *why, size_t why_size)
{
    if (existed && mesh_audit_file_tables (self->db) > 0)
        return mesh_fail (why, why_size, "%s: %s", path, not_ours);
    mesh_audit_file_meta_t meta = { .start_seq = self->seq + 1,
                                    .checkpoint_seq = self->checkpoint_seq };
    memcpy (meta.start_chain, self->chain, CHAIN_BYTES);
    memcpy (meta.checkpoint_digest, self->checkpoint_digest, CHAIN_BYTES);
    return mesh_audit_file_create (self->db, path, day, &meta, why, why_size);
}

//  A day file that ends as ends says: its head (its last record, else where
//  it starts) and its last checkpoint become the store's, if it continues
//  the chain of the day before (when the store has one)
static int
s_continue_day (mesh_audit_store_t *self, const char *path, const mesh_audit_file_ends_t *ends,
                char *why, size_t why_size)
{
    const mesh_audit_file_meta_t *meta = &ends->meta;
    if (self->seq && (ends->last_seq < self->seq || meta->start_seq != self->seq + 1
                      || memcmp (meta->start_chain, self->chain, CHAIN_BYTES) != 0
                      || meta->checkpoint_seq != self->checkpoint_seq
                      || memcmp (meta->checkpoint_digest, self->checkpoint_digest,
                                 CHAIN_BYTES) != 0))
        return mesh_fail (why, why_size, "%s: does not continue the chain of the day before",
                          path);
    self->seq = ends->last_seq;
    memcpy (self->chain, ends->last_chain, CHAIN_BYTES);
    self->checkpoint_seq = ends->checkpoint_seq;
    memcpy (self->checkpoint_digest, ends->checkpoint_digest, CHAIN_BYTES);
    return 0;
}

//  Opens (creating) the day file of day for writing.  A new file starts
//  where the chain is now; an existing one tells where the chain is.
static int
s_open_day (mesh_audit_store_t *self, const char *day, char *why, size_t why_size)
{
    char path [4096];
    snprintf (path, sizeof path, "%s/audit-%s.db", self->dir, day);
    bool existed = access (path, F_OK) == 0;
    if (!(self->db = mesh_audit_file_open_write (path, why, why_size)))
        return -1;
    mesh_audit_file_ends_t ends;
    char not_ours [1024];
    if (!existed
    ||  mesh_audit_file_read_ends (self->db, path, &ends, not_ours, sizeof not_ours) < 0) {
        if (s_start_day (self, path, day, existed, not_ours, why, why_size) < 0)
            goto failed;
    }
    else
    if (s_continue_day (self, path, &ends, why, why_size) < 0)
        goto failed;
    if (s_prepare_day (self, path, why, why_size) < 0)
        goto failed;
    //  Replaces SQLite's own automatic checkpoints
    sqlite3_wal_hook (self->db, mesh_audit_wal_hook, self->wal);
    mesh_audit_wal_kick (self->wal, path);
    snprintf (self->day, sizeof self->day, "%s", day);
    self->day_start_ms = mesh_audit_file_day_start_ms (day);
    return 0;
failed:
    s_close_day (self);
    return -1;
}

//  Signs the head, naming the last checkpoint, into the open day file
//  (outside any transaction of ours: SQLite makes the insert its own)
static int
s_write_checkpoint (mesh_audit_store_t *self, int64_t now_ms, char *why, size_t why_size)
{
    if (!self->signer)
        return mesh_fail (why, why_size, "no signing key");
    mesh_audit_seal_checkpoint_t checkpoint = { .seq = self->seq, .time_ms = now_ms,
                                                .prev_seq = self->checkpoint_seq };
    memcpy (checkpoint.chain, self->chain, CHAIN_BYTES);
    memcpy (checkpoint.prev_digest, self->checkpoint_digest, CHAIN_BYTES);
    unsigned char signature [MESH_AUDIT_SEAL_SIGNATURE_BYTES];
    size_t signature_size = 0;
    if (mesh_audit_seal_checkpoint_sign (self->signer, &checkpoint, signature, &signature_size,
                                         why, why_size) < 0
    ||  mesh_audit_file_checkpoint_insert (self->db, &checkpoint, signature, signature_size,
                                           why, why_size) < 0)
        return -1;
    self->checkpoint_seq = self->seq;
    mesh_audit_seal_signature_digest (signature, signature_size, self->checkpoint_digest);
    return 0;
}

//  Opening and closing ------------------------------------------------------------

//  The day files join: each starts where the one before ends (seq and
//  chain value) and, when the store signs, names the last checkpoint of
//  the one before, which is a checkpoint of that one's last record.  A
//  store that does not join is not appended to: records added to a broken
//  chain would bury the break under a sound-looking head.  -1 with a
//  reason.
static int
s_check_joins (mesh_audit_store_t *self, struct dirent **names, int count, char *why,
               size_t why_size)
{
    mesh_audit_file_ends_t before, ends;
    char path [4096], name [MESH_AUDIT_FILE_NAME_LEN + 1] = "";
    for (int i = 0; i < count; i++) {
        snprintf (path, sizeof path, "%s/%s", self->dir, names [i]->d_name);
        //  Read-write: a WAL left by a crash is recovered
        sqlite3 *db = NULL;
        int rc = sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_busy_timeout (db, 5000);
            rc = mesh_audit_file_read_ends (db, path, &ends, why, why_size);
        }
        else
            mesh_audit_file_fail (db, path, why, why_size);
        sqlite3_close (db);
        if (rc != SQLITE_OK)
            return -1;
        char broken [512] = "";
        if (i == 0)
            ;
        else
        if (ends.meta.start_seq != before.last_seq + 1
        ||  memcmp (ends.meta.start_chain, before.last_chain, CHAIN_BYTES) != 0)
            snprintf (broken, sizeof broken, "it does not start where %s ends (after seq %llu): "
                      "a day file between them is missing, or one of them was changed", name,
                      (unsigned long long) before.last_seq);
        else
        if (self->signer && before.has_records && before.checkpoint_seq != before.last_seq)
            snprintf (broken, sizeof broken, "%s does not end with a checkpoint of its last "
                      "record (seq %llu): the checkpoint was deleted", name,
                      (unsigned long long) before.last_seq);
        else
        if (self->signer && (ends.meta.checkpoint_seq != before.checkpoint_seq
                             || memcmp (ends.meta.checkpoint_digest, before.checkpoint_digest,
                                        CHAIN_BYTES) != 0))
            snprintf (broken, sizeof broken, "it does not name the last checkpoint of %s (of "
                      "seq %llu): a checkpoint was changed", name,
                      (unsigned long long) before.checkpoint_seq);
        if (*broken)
            return mesh_fail (why, why_size, "%s: %s.  The store does not append to a broken "
                              "chain: run seekmeshctl audit verify to see what is wrong, then "
                              "restore what is missing, or move the day files aside to start "
                              "a new store", path, broken);
        before = ends;
        snprintf (name, sizeof name, "%.*s", MESH_AUDIT_FILE_NAME_LEN, names [i]->d_name);
    }
    return 0;
}

//  The newest day file holds the head; the one before it, ids that may be
//  resent.  A newest file without tables is removed: the chain is in the
//  one before.
static int
s_open_newest (mesh_audit_store_t *self, char *why, size_t why_size)
{
    struct dirent **names = NULL;
    int count = mesh_audit_file_list (self->dir, &names, why, why_size);
    if (count < 0)
        return -1;
    char path [4096];
    while (count > 0) {
        snprintf (path, sizeof path, "%s/%s", self->dir, names [count - 1]->d_name);
        if (!mesh_audit_file_empty (path))
            break;
        mesh_warn ("%s: empty, removed", path);
        mesh_audit_file_unlink (path);
        free (names [--count]);
    }
    int rc = s_check_joins (self, names, count, why, why_size);
    if (rc == 0 && count > 0) {
        char day [11];
        memcpy (day, names [count - 1]->d_name + 6, 10);
        day [10] = 0;
        rc = s_open_day (self, day, why, why_size);
        if (rc == 0 && count > 1)
            rc = s_open_prev (self, names [count - 2]->d_name, why, why_size);
    }
    mesh_audit_file_list_free (names, count);
    return rc;
}

mesh_audit_store_t *
mesh_audit_store_open (const char *dir, mesh_audit_keyring_t *keys, EVP_PKEY *signer,
                       char *why, size_t why_size)
{
    if (!keys) {
        mesh_fail (why, why_size, "no key ring: the audit store encrypts every record");
        return NULL;
    }
    int lock_fd = mesh_audit_file_lock (dir, why, why_size);
    if (lock_fd < 0)
        return NULL;
    mesh_audit_store_t *self = calloc (1, sizeof *self);
    assert (self);
    self->lock_fd = lock_fd;
    self->dir = strdup (dir);
    self->keys = keys;
    self->signer = signer;
    self->seal = mesh_audit_seal_new ();
    mesh_buf_init (&self->sql);
    self->sealer = mesh_audit_sealer_new ();
    self->wal = mesh_audit_wal_new ();
    if (s_open_newest (self, why, why_size) < 0) {
        mesh_audit_store_close (&self);
        return NULL;
    }
    //  A writer that stopped without signing its head (a crash) left
    //  records no checkpoint signs: sign them now, so that the store's
    //  every record but the live tail is signed
    if (self->signer && self->db && self->seq != self->checkpoint_seq) {
        char reason [256];
        uint64_t unsigned_from = self->checkpoint_seq + 1;
        if (s_write_checkpoint (self, mesh_wall_ms (), reason, sizeof reason) == 0)
            mesh_warn ("%s: records %llu to %llu were signed by no checkpoint (the last writer "
                       "stopped without signing: a crash?); signed now", dir,
                       (unsigned long long) unsigned_from, (unsigned long long) self->seq);
        else
            mesh_warn ("%s: cannot sign records up to %llu: %s", dir,
                       (unsigned long long) self->seq, reason);
    }
    return self;
}

void
mesh_audit_store_close (mesh_audit_store_t **self_p)
{
    assert (self_p);
    mesh_audit_store_t *self = *self_p;
    if (!self)
        return;
    //  A clean close leaves every record signed
    char why [256];
    if (self->signer && self->db && self->seq != self->checkpoint_seq
    &&  s_write_checkpoint (self, mesh_wall_ms (), why, sizeof why) < 0)
        mesh_warn ("%s closed without a checkpoint of seq %llu: %s", self->dir,
                   (unsigned long long) self->seq, why);
    //  The WAL copier's connection first, so that closing the writer's
    //  (the last) copies the WAL back and removes it
    mesh_audit_wal_destroy (&self->wal);
    mesh_audit_sealer_destroy (&self->sealer);
    s_close_day (self);
    s_close_prev (self);
    mesh_audit_seal_destroy (&self->seal);
    mesh_buf_free (&self->sql);
    free (self->dir);
    close (self->lock_fd);              //  and with it the lock
    free (self);
    *self_p = NULL;
}

void
mesh_audit_store_set_keys (mesh_audit_store_t *self, mesh_audit_keyring_t *keys)
{
    assert (self && keys);
    self->keys = keys;
}

uint64_t
mesh_audit_store_seq (mesh_audit_store_t *self)
{
    return self->seq;
}

//  Checkpoints ------------------------------------------------------------------

int
mesh_audit_store_checkpoint (mesh_audit_store_t *self, int64_t now_ms, char *why, size_t why_size)
{
    assert (self);
    if (self->seq == self->checkpoint_seq || !self->db)
        return 0;
    return s_write_checkpoint (self, now_ms, why, why_size);
}

//  Writing ----------------------------------------------------------------------

//  Moves writing to the day file of now_ms when that day is later than the
//  open one's (never back: the files' order is the chain's).
static int
s_roll (mesh_audit_store_t *self, int64_t now_ms, char *why, size_t why_size)
{
    char day [11];
    mesh_audit_file_day_of (now_ms, day);
    if (self->db && strcmp (day, self->day) <= 0)
        return 0;
    if (self->db) {
        //  A day is closed with a checkpoint of its last record, or not at
        //  all (the append fails and is retried): the verifier and the
        //  next open take a day file without one for a deleted checkpoint
        char reason [256];
        if (self->signer && self->seq != self->checkpoint_seq
        &&  s_write_checkpoint (self, now_ms, reason, sizeof reason) < 0)
            return mesh_fail (why, why_size, "day %s cannot be closed without a checkpoint of "
                              "its last record: %s", self->day, reason);
        char name [32];
        snprintf (name, sizeof name, "audit-%s.db", self->day);
        mesh_audit_wal_release (self->wal);
        s_close_day (self);
        s_close_prev (self);
        if (s_open_prev (self, name, reason, sizeof reason) < 0)
            mesh_warn ("cannot read %s for resent records: %s", name, reason);
    }
    return s_open_day (self, day, why, why_size);
}

//  True when id is stored in the day file before the open one
static bool
s_stored_before (mesh_audit_store_t *self, const mesh_audit_record_t *record)
{
    if (!self->prev_lookup
    ||  (int64_t) record->start_ms >= self->day_start_ms + MESH_AUDIT_FILE_SKEW_MS)
        return false;
    sqlite3_bind_text (self->prev_lookup, 1, record->id.data, (int) record->id.size,
                       SQLITE_STATIC);
    bool found = sqlite3_step (self->prev_lookup) == SQLITE_ROW;
    sqlite3_reset (self->prev_lookup);
    return found;
}

//  Inserts record, sealed in slot under key, as seq with chain value
//  chain.  1 stored, 0 its request id is stored already, -1 with a reason.
static int
s_insert (mesh_audit_store_t *self, const mesh_audit_record_t *record,
          const mesh_audit_sealer_slot_t *slot, const mesh_audit_keyring_key_t *key,
          uint64_t seq, const unsigned char chain [CHAIN_BYTES], char *why, size_t why_size)
{
    sqlite3_stmt *stmt = self->insert;
    sqlite3_bind_int64 (stmt, 1, (int64_t) seq);
    mesh_audit_file_bind (stmt, record);
    sqlite3_bind_text (stmt, MESH_AUDIT_FILE_AT_ENC_KEY_ID + 1, key->id, -1, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, MESH_AUDIT_FILE_AT_PROMPT + 1, mesh_buf_head (&slot->prompt),
                       (int) mesh_buf_size (&slot->prompt), SQLITE_STATIC);
    sqlite3_bind_blob (stmt, MESH_AUDIT_FILE_AT_RESPONSE + 1, mesh_buf_head (&slot->response),
                       (int) mesh_buf_size (&slot->response), SQLITE_STATIC);
    sqlite3_bind_blob (stmt, MESH_AUDIT_FILE_AT_CHAIN + 1, chain, CHAIN_BYTES, SQLITE_STATIC);
    int rc = sqlite3_step (stmt);
    sqlite3_reset (stmt);
    if (rc != SQLITE_DONE)
        return mesh_audit_file_fail (self->db, "insert", why, why_size);
    return sqlite3_changes (self->db) ? 1 : 0;
}

int
mesh_audit_store_append (mesh_audit_store_t *self, const mesh_audit_record_t *records,
                         size_t count, int64_t now_ms, char *why, size_t why_size)
{
    assert (self);
    if (count == 0)
        return 0;
    if (s_roll (self, now_ms, why, why_size) < 0)
        return -1;
    const mesh_audit_keyring_key_t *key = mesh_audit_keyring_active_key (self->keys);
    uint64_t seq = self->seq;
    unsigned char chain [CHAIN_BYTES];
    memcpy (chain, self->chain, CHAIN_BYTES);
    if (mesh_audit_file_exec (self->db, "BEGIN IMMEDIATE", "begin", why, why_size) < 0)
        return -1;
    mesh_audit_sealer_begin (self->sealer, records, count, key);
    int stored = 0;
    for (size_t done = 0, c = 0; done < count; c ^= 1) {
        mesh_audit_sealer_chunk_t *chunk = mesh_audit_sealer_take (self->sealer, (int) c);
        for (size_t i = 0; i < chunk->count; i++) {
            if (chunk->failed && i == chunk->count - 1) {
                mesh_fail (why, why_size, "%s", chunk->why);
                goto failed;
            }
            const mesh_audit_record_t *record = &records [chunk->first + i];
            if (s_stored_before (self, record))
                continue;
            unsigned char next [CHAIN_BYTES];
            mesh_audit_seal_chain (self->seal, chain, seq + 1, chunk->slots [i].digest, next);
            int rc = s_insert (self, record, &chunk->slots [i], key, seq + 1, next, why,
                               why_size);
            if (rc < 0)
                goto failed;
            if (rc == 0)
                continue;               //  this request id is stored already
            seq++;
            memcpy (chain, next, CHAIN_BYTES);
            stored++;
        }
        done += chunk->count;
        mesh_audit_sealer_give (self->sealer, chunk);
    }
    sqlite3_clear_bindings (self->insert);
    mesh_audit_sealer_end (self->sealer, false);
    if (mesh_audit_file_exec (self->db, "COMMIT", "commit", why, why_size) < 0)
        goto failed;
    self->seq = seq;
    memcpy (self->chain, chain, CHAIN_BYTES);
    return stored;
failed:
    sqlite3_clear_bindings (self->insert);
    mesh_audit_sealer_end (self->sealer, true);
    sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

//  Retention --------------------------------------------------------------------

int
mesh_audit_store_retain (mesh_audit_store_t *self, int64_t now_ms, int64_t days)
{
    assert (self);
    if (days <= 0)
        return 0;
    char today [11], cutoff [11];
    mesh_audit_file_day_of (now_ms, today);
    mesh_audit_file_day_of (mesh_audit_file_day_start_ms (today) - days * MESH_AUDIT_FILE_DAY_MS,
                            cutoff);
    struct dirent **names = NULL;
    char why [256];
    int count = mesh_audit_file_list (self->dir, &names, why, sizeof why);
    if (count < 0) {
        mesh_warn ("retention: %s", why);
        return 0;
    }
    int deleted = 0;
    for (int i = 0; i < count; i++) {
        const char *name = names [i]->d_name;
        //  Older than the cutoff day, and never the file being written
        if (strncmp (name + 6, cutoff, 10) >= 0
        ||  (self->db && strncmp (name + 6, self->day, 10) == 0))
            continue;
        if (self->prev_db) {
            const char *prev = sqlite3_db_filename (self->prev_db, "main");
            if (prev && strstr (prev, name))
                s_close_prev (self);
        }
        char path [4096];
        snprintf (path, sizeof path, "%s/%s", self->dir, name);
        if (access (path, F_OK) < 0)
            continue;
        mesh_audit_file_unlink (path);
        if (access (path, F_OK) == 0) {
            mesh_warn ("retention: %s: %s", path, strerror (errno));
            continue;
        }
        deleted++;
    }
    mesh_audit_file_list_free (names, count);
    if (deleted) {
        char path [4096];
        snprintf (path, sizeof path, "%s/x", self->dir);
        mesh_audit_file_sync_parent (path);
    }
    return deleted;
}

//  Selftest -----------------------------------------------------------------------

#include "mesh_audit_query.h"
#include "mesh_audit_sample.h"
#include "mesh_audit_verify.h"
#include "mesh_id.h"

#define T_KEY1 MESH_AUDIT_SAMPLE_KEY1
#define T_KEY2 MESH_AUDIT_SAMPLE_KEY2
#define T_DAY1 MESH_AUDIT_SAMPLE_DAY1
#define T_DAY2 MESH_AUDIT_SAMPLE_DAY2
#define T_DAY3 MESH_AUDIT_SAMPLE_DAY3

//  Wall-clock time offset_ms into day
static int64_t
s_at (const char *day, int64_t offset_ms)
{
    return mesh_audit_sample_at (day, offset_ms);
}

//  The keys of a test
typedef struct {
    mesh_audit_keyring_t *keys;         //  k1
    mesh_audit_keyring_t *both;         //  k1 and k2 (rotated: k2 active)
    EVP_PKEY *signer, *public_key;
    EVP_PKEY *stranger_public;          //  of another signer
} t_keys_t;

//  A store over three days, written: records, resends, a checkpoint per
//  day, a rotation, a large record
static void
s_test_write (const char *dir, mesh_audit_sample_t *data, t_keys_t *t, bool verbose)
{
    char path [4096], why [256];
    mesh_audit_keyring_t *keys = t->keys, *both = t->both;
    EVP_PKEY *signer = t->signer, *public_key = t->public_key;
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store && mesh_audit_store_seq (store) == 0);
    assert (mesh_audit_store_checkpoint (store, s_at (T_DAY1, 0), why, sizeof why) == 0);
    assert (mesh_audit_store_append (store, NULL, 0, s_at (T_DAY1, 0), why, sizeof why) == 0);
    for (size_t i = 0; i < 300; i++)
        mesh_audit_sample_record (data, i, s_at (T_DAY1, 3600000 + (int64_t) i * 1000));
    //  One batch of 300 (several sealed chunks), then the same again: all resent
    assert (mesh_audit_store_append (store, data->records, 300, s_at (T_DAY1, 7200000),
                                     why, sizeof why) == 300);
    assert (mesh_audit_store_seq (store) == 300);
    assert (mesh_audit_store_append (store, data->records, 300, s_at (T_DAY1, 7300000),
                                     why, sizeof why) == 0);
    //  Duplicates within one batch: the first is kept
    mesh_audit_sample_record (data, 300, s_at (T_DAY1, 7400000));
    mesh_audit_record_t pair [2] = { data->records [300], data->records [300] };
    assert (mesh_audit_store_append (store, pair, 2, s_at (T_DAY1, 7400500), why, sizeof why) == 1);
    assert (mesh_audit_store_checkpoint (store, s_at (T_DAY1, 7500000), why, sizeof why) == 0);
    //  A record that breaks the codec's limits fails its whole batch
    mesh_audit_sample_record (data, 301, s_at (T_DAY1, 7600000));
    mesh_audit_sample_record (data, 302, s_at (T_DAY1, 7600000));
    data->records [302].tenant = mesh_audit_sample_text ("bad\xff");
    assert (mesh_audit_store_append (store, &data->records [301], 2, s_at (T_DAY1, 7600500),
                                     why, sizeof why) == -1);
    assert (strstr (why, "record 1") && mesh_audit_store_seq (store) == 301);
    data->records [302].tenant = mesh_audit_sample_text ("t0");
    //  Day two: the chain goes on; a record of day one resent is skipped
    assert (mesh_audit_store_append (store, &data->records [301], 2, s_at (T_DAY2, 1000),
                                     why, sizeof why) == 2);
    assert (mesh_audit_store_append (store, &data->records [7], 1, s_at (T_DAY2, 2000),
                                     why, sizeof why) == 0);
    //  A clock that steps back keeps writing into the newest day
    mesh_audit_sample_record (data, 303, s_at (T_DAY2, 3000));
    assert (mesh_audit_store_append (store, &data->records [303], 1, s_at (T_DAY1, 9000),
                                     why, sizeof why) == 1);
    assert (mesh_audit_store_seq (store) == 304);
    mesh_audit_store_close (&store);
    mesh_audit_store_close (&store);
    snprintf (path, sizeof path, "%s/audit-" T_DAY1 ".db-wal", dir);
    assert (access (path, F_OK) != 0);  //  closed cleanly: the WAL folded back

    //  Reopened, it goes on from the head, with a large record and the
    //  second key (rotation)
    store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store && mesh_audit_store_seq (store) == 304);
    //  One writer at a time
    assert (!mesh_audit_store_open (dir, keys, signer, why, sizeof why));
    assert (strstr (why, "another process writes"));
    mesh_audit_store_set_keys (store, both);
    size_t large = 9u << 20;
    char *big = malloc (large);
    assert (big);
    memset (big, 'z', large);
    mesh_audit_sample_record (data, 304, s_at (T_DAY2, 4000));
    mesh_audit_sample_record (data, 305, s_at (T_DAY2, 4000));
    data->records [304].response = (mesh_bytes_t) { big, large };
    data->records [305].prompt = (mesh_bytes_t) { big, large };
    assert (mesh_audit_store_append (store, &data->records [304], 2, s_at (T_DAY2, 5000),
                                     why, sizeof why) == 2);
    assert (mesh_audit_store_checkpoint (store, s_at (T_DAY2, 6000), why, sizeof why) == 0);
    assert (mesh_audit_store_checkpoint (store, s_at (T_DAY2, 6000), why, sizeof why) == 0);
    //  Day three
    mesh_audit_sample_record (data, 306, s_at (T_DAY3, 1000));
    assert (mesh_audit_store_append (store, &data->records [306], 1, s_at (T_DAY3, 1500),
                                     why, sizeof why) == 1);
    assert (mesh_audit_store_seq (store) == 307);
    //  A reader sees every commit while the writer has the store open: the
    //  newest record, not signed yet, is the running writer's tail
    mesh_audit_sample_verify (dir, NULL, public_key, 1, "audit-" T_DAY3 ".db seq 307 to 307: "
                              "signed by no checkpoint yet; a writer is running", verbose);
    assert (mesh_audit_store_checkpoint (store, s_at (T_DAY3, 2000), why, sizeof why) == 0);
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "307 records", verbose);
    mesh_audit_store_close (&store);
    free (big);
}

//  The three days read back: verified, queried, decrypted
static void
s_test_read_back (const char *dir, t_keys_t *t, bool verbose)
{
    mesh_audit_keyring_t *keys = t->keys, *both = t->both;
    EVP_PKEY *public_key = t->public_key, *stranger_public = t->stranger_public;
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "seq 1 to 307, 3 day files", verbose);
    mesh_audit_sample_verify (dir, NULL, NULL, 0, "signatures not checked", verbose);
    mesh_audit_sample_verify (dir, T_DAY2, public_key, 0, "seq 302 to 307", verbose);
    mesh_audit_sample_verify (dir, "2026-04-01", public_key, 0, "no records", verbose);
    mesh_audit_sample_verify (dir, NULL, stranger_public, 1, "bad signature", verbose);

    //  Query: everything, in time order, ciphertext only without keys
    mesh_audit_sample_seen_t *seen = mesh_audit_sample_query (dir, NULL, NULL);
    assert (seen->rows == 307 && seen->ordered && seen->decrypted == 0 && seen->failed == 0);
    //  Filters
    //  Tenant t1: odd i of 0..306, 7 resent once
    mesh_audit_query_filter_t filter = { .tenant = "t1" };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == 153);
    //  i % 3 == 0: model m-b; the name asked for matches too
    filter = (mesh_audit_query_filter_t) { .model = "m-b" };
    size_t m_b = mesh_audit_sample_query (dir, &filter, NULL)->rows;
    filter = (mesh_audit_query_filter_t) { .model = "alias-b" };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == m_b && m_b == 103);
    filter = (mesh_audit_query_filter_t) { .status = 429, .outcome = MESH_AUDIT_UPSTREAM_ERROR };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == 61);
    filter = (mesh_audit_query_filter_t) { .since_ms = s_at (T_DAY1, 3600000 + 10 * 1000),
                                           .until_ms = s_at (T_DAY1, 3600000 + 20 * 1000) };
    seen = mesh_audit_sample_query (dir, &filter, NULL);
    assert (seen->rows == 10 && seen->seqs [0] == 11);
    //  Records 301 and 302 started on day one, were stored on day two
    filter = (mesh_audit_query_filter_t) { .since_ms = s_at (T_DAY2, 0) };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == 4);
    filter = (mesh_audit_query_filter_t) { .since_ms = s_at (T_DAY1, 7600000) };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == 6);
    filter = (mesh_audit_query_filter_t) { .limit = 5 };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == 5);
    filter = (mesh_audit_query_filter_t) { .tenant = "nobody" };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == 0);

    //  With the keys: every record decrypts, old key and new
    seen = mesh_audit_sample_query (dir, NULL, both);
    assert (seen->rows == 307 && seen->decrypted == 307);
    assert (strstr (seen->first_prompt, "\"secret 0\""));
    //  With only the first key, the records sealed under the second fail
    //  cleanly, the others decrypt
    seen = mesh_audit_sample_query (dir, NULL, keys);
    assert (seen->decrypted == 304 && seen->failed == 3);
    assert (strstr (seen->errors [306], "unknown key"));
}

//  Retention: the oldest days go, never the one written to
static void
s_test_retain (const char *dir, t_keys_t *t, bool verbose)
{
    char path [4096], why [256];
    mesh_audit_keyring_t *both = t->both;
    EVP_PKEY *signer = t->signer, *public_key = t->public_key;
    //  Day one goes, with its WAL and shm; the chain still verifies from
    //  where day two starts
    mesh_audit_store_t *store = mesh_audit_store_open (dir, both, signer, why, sizeof why);
    assert (store && mesh_audit_store_seq (store) == 307);
    snprintf (path, sizeof path, "%s/audit-" T_DAY1 ".db-wal", dir);
    mesh_audit_sample_write (path, "");
    assert (mesh_audit_store_retain (store, s_at (T_DAY3, 5000), 0) == 0);
    assert (mesh_audit_store_retain (store, s_at (T_DAY3, 5000), 2) == 0);
    assert (mesh_audit_store_retain (store, s_at (T_DAY3, 5000), 1) == 1);
    assert (access (path, F_OK) != 0);
    snprintf (path, sizeof path, "%s/audit-" T_DAY1 ".db", dir);
    assert (access (path, F_OK) != 0);
    //  The file written to is never deleted
    assert (mesh_audit_store_retain (store, s_at ("2026-06-01", 0), 1) == 1);
    mesh_audit_store_close (&store);
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "seq 307 to 307", verbose);
}

//  Stores that stopped early, sign nothing, or are not stores
static void
s_test_odd_stores (const char *root, mesh_audit_sample_t *data, t_keys_t *t, bool verbose)
{
    char dir [2048], path [4096], why [256];
    mesh_audit_keyring_t *keys = t->keys;
    EVP_PKEY *signer = t->signer, *public_key = t->public_key;
    mesh_audit_store_t *store;

    //  A writer that stopped before its first commit in a new day left an
    //  empty file: the chain goes on from the day before
    snprintf (dir, sizeof dir, "%s/shell", root);
    mesh_audit_sample_store (dir, data, 3, keys, signer);
    snprintf (path, sizeof path, "%s/audit-" T_DAY2 ".db", dir);
    mesh_audit_sample_write (path, "");
    store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store && mesh_audit_store_seq (store) == 3 && access (path, F_OK) != 0);
    mesh_audit_sample_record (data, 3, s_at (T_DAY2, 0));
    assert (mesh_audit_store_append (store, &data->records [3], 1, s_at (T_DAY2, 10), why,
                                     sizeof why) == 1);
    mesh_audit_store_close (&store);
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "seq 1 to 4, 2 day files", verbose);
    mesh_audit_sample_rmtree (dir);

    //  A day is not left without a checkpoint of its last record: while
    //  none can be written the next day's append fails (and is retried)
    snprintf (dir, sizeof dir, "%s/closing", root);
    mesh_audit_sample_store (dir, data, 3, keys, signer);
    store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store);
    mesh_audit_sample_record (data, 3, s_at (T_DAY1, 5000000));
    assert (mesh_audit_store_append (store, &data->records [3], 1, s_at (T_DAY1, 5000100), why,
                                     sizeof why) == 1);
    mesh_audit_sample_sql (dir, T_DAY1, "CREATE TRIGGER refuse BEFORE INSERT ON checkpoints "
                           "BEGIN SELECT RAISE (ABORT, 'no checkpoint today'); END");
    mesh_audit_sample_record (data, 4, s_at (T_DAY2, 0));
    assert (mesh_audit_store_append (store, &data->records [4], 1, s_at (T_DAY2, 100), why,
                                     sizeof why) == -1);
    assert (strstr (why, "day " T_DAY1 " cannot be closed without a checkpoint of its last record")
            && strstr (why, "no checkpoint today"));
    snprintf (path, sizeof path, "%s/audit-" T_DAY2 ".db", dir);
    assert (mesh_audit_store_seq (store) == 4 && access (path, F_OK) != 0);
    mesh_audit_sample_sql (dir, T_DAY1, "DROP TRIGGER refuse");
    assert (mesh_audit_store_append (store, &data->records [4], 1, s_at (T_DAY2, 200), why,
                                     sizeof why) == 1);
    mesh_audit_store_close (&store);
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "ok: 5 records, seq 1 to 5, 2 day files, "
                              "3 checkpoints\n", verbose);
    mesh_audit_sample_rmtree (dir);

    //  A store made with no signer writes no checkpoint
    snprintf (dir, sizeof dir, "%s/unsigned", root);
    store = mesh_audit_store_open (dir, keys, NULL, why, sizeof why);
    assert (store);
    mesh_audit_sample_record (data, 0, s_at (T_DAY1, 0));
    assert (mesh_audit_store_append (store, data->records, 1, s_at (T_DAY1, 10), why,
                                     sizeof why) == 1);
    assert (mesh_audit_store_checkpoint (store, s_at (T_DAY1, 20), why, sizeof why) == -1);
    assert (strstr (why, "signing key"));
    mesh_audit_store_close (&store);
    mesh_audit_sample_rmtree (dir);

    //  Not a store: a day file of someone else's
    snprintf (dir, sizeof dir, "%s/foreign", root);
    assert (mkdir (dir, 0700) == 0);
    mesh_audit_sample_sql (dir, T_DAY1, "CREATE TABLE t (x)");
    assert (!mesh_audit_store_open (dir, keys, signer, why, sizeof why));
    assert (strstr (why, "not an audit store file") || strstr (why, "no such table"));
    mesh_audit_sample_rmtree (dir);
    //  No key ring, no store
    assert (!mesh_audit_store_open (root, NULL, signer, why, sizeof why));
}

void
mesh_audit_store_test (bool verbose)
{
    char root [1024], dir [2048], why [256];
    mesh_audit_sample_tmpdir (root, sizeof root);
    mesh_audit_sample_t *data = calloc (1, sizeof *data);
    assert (data);
    t_keys_t t = { .keys = mesh_audit_keyring_load (NULL, T_KEY1, why, sizeof why),
                   .both = mesh_audit_keyring_load (NULL, T_KEY1 ";" T_KEY2, why, sizeof why) };
    t.signer = mesh_audit_sample_signer (root, "signing", &t.public_key);
    EVP_PKEY *stranger = mesh_audit_sample_signer (root, "other", &t.stranger_public);
    assert (t.keys && t.both);

    snprintf (dir, sizeof dir, "%s/store", root);
    s_test_write (dir, data, &t, verbose);
    s_test_read_back (dir, &t, verbose);
    s_test_retain (dir, &t, verbose);
    mesh_audit_sample_rmtree (dir);
    s_test_odd_stores (root, data, &t, verbose);

    const char *bench = getenv ("SEEKMESH_AUDIT_BENCH");
    if (bench && atol (bench) > 0) {
        snprintf (dir, sizeof dir, "%s/bench", root);
        mesh_audit_sample_bench (dir, t.keys, t.signer, (size_t) atol (bench));
        mesh_audit_sample_verify (dir, NULL, t.public_key, 0, "ok:", verbose);
    }

    mesh_audit_keyring_destroy (&t.keys);
    mesh_audit_keyring_destroy (&t.both);
    EVP_PKEY_free (t.signer);
    EVP_PKEY_free (t.public_key);
    EVP_PKEY_free (stranger);
    EVP_PKEY_free (t.stranger_public);
    free (data);
    mesh_audit_sample_rmtree (root);
    assert (access (root, F_OK) != 0);
}
