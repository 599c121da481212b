/*  mesh_audit_file: the audit store's day file, as SQLite holds it; the
    one place its tables, columns and name are spelled.

    The store is a directory of SQLite databases in WAL mode, one per UTC
    day of commit: audit-YYYY-MM-DD.db.  Each holds
        records      seq (the store's, from 1, across days), the record's
                     plain fields as columns (id UNIQUE, time, tenant, key
                     id, models, endpoint, region, params, status, outcome,
                     error code, attempts, cache hit, timings, usage,
                     bytes), enc_key_id, prompt and response sealed
                     (mesh_audit_seal.h), chain; indexed by time
                     (start_ms), tenant and model
        checkpoints  seq, chain, time_ms, prev_seq, prev_digest, signature
                     (what they sign: mesh_audit_seal.h); a checkpoint sits
                     in the file that holds the record it signs, and a day
                     file the writer has left ends with a checkpoint of its
                     last record
        meta         format, day, start_seq, start_chain: the seq and chain
                     value the file starts from; checkpoint_seq and
                     checkpoint_digest: the last checkpoint before it
    Anyone can read the plain columns with sqlite3.

    Format 2 (checkpoints that name the one before) replaced format 1; a
    file of format 1 is refused with what to do about it.  One process
    writes a store at a time: it holds an open-file-description write lock
    on writer.lock, which readers can see without taking it.

    A statement that selects mesh_audit_file_columns () has the seq at
    MESH_AUDIT_FILE_AT_SEQ, the record's columns from 1 in their table
    order, then the key id, the sealed fields and the chain value at the
    MESH_AUDIT_FILE_AT_ positions below.

    Any thread, each with its own connection; nothing here is shared.        */
#ifndef MESH_AUDIT_FILE_H
#define MESH_AUDIT_FILE_H

#include "mesh_audit.h"
#include "mesh_audit_seal.h"
#include "mesh_buf.h"

#include <dirent.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_AUDIT_FILE_FORMAT      2
#define MESH_AUDIT_FILE_NAME_LEN    19          //  audit-YYYY-MM-DD.db
#define MESH_AUDIT_FILE_DAY_MS      86400000LL
#define MESH_AUDIT_FILE_SKEW_MS     3600000LL   //  clocks of ingress and audit may differ this much
#define MESH_AUDIT_FILE_COLUMNS     26          //  the record's plain fields

//  Positions in a row of "SELECT <mesh_audit_file_columns>"
#define MESH_AUDIT_FILE_AT_SEQ        0
#define MESH_AUDIT_FILE_AT_ENC_KEY_ID (MESH_AUDIT_FILE_COLUMNS + 1)
#define MESH_AUDIT_FILE_AT_PROMPT     (MESH_AUDIT_FILE_COLUMNS + 2)
#define MESH_AUDIT_FILE_AT_RESPONSE   (MESH_AUDIT_FILE_COLUMNS + 3)
#define MESH_AUDIT_FILE_AT_CHAIN      (MESH_AUDIT_FILE_COLUMNS + 4)

//  Days and names ------------------------------------------------------------

//  The UTC day ("YYYY-MM-DD") of a wall-clock time
void     mesh_audit_file_day_of (int64_t ms, char day [11]);
//  Milliseconds at the start of day ("YYYY-MM-DD", UTC); -1 if not a date
int64_t  mesh_audit_file_day_start_ms (const char *day);
//  The day files in dir, oldest first (free them with
//  mesh_audit_file_list_free); their count, or -1 with a reason if dir is
//  unreadable
int      mesh_audit_file_list (const char *dir, struct dirent ***names, char *why, size_t why_size);
void     mesh_audit_file_list_free (struct dirent **names, int count);
//  fsyncs the directory holding path, so a file created there survives
//  (the key files beside the day files use it too)
void     mesh_audit_file_sync_parent (const char *path);

//  Columns -------------------------------------------------------------------

//  Appends "seq, <the record's columns>, enc_key_id, prompt, response, chain"
void     mesh_audit_file_columns (mesh_buf_t *sql);
//  Appends the insert of one row: mesh_audit_file_columns () as
//  parameters 1 .. MESH_AUDIT_FILE_AT_CHAIN + 1 (NUL-terminated); a row
//  whose request id is stored already is skipped (no change)
void     mesh_audit_file_insert_sql (mesh_buf_t *sql);
//  Binds record's plain fields to parameters 2 .. MESH_AUDIT_FILE_COLUMNS
//  + 1 of an insert of mesh_audit_file_columns (); text is bound static:
//  record must outlive the step
void     mesh_audit_file_bind (sqlite3_stmt *stmt, const mesh_audit_record_t *record);
//  Fills record's plain fields from a selected row (text NUL-terminated,
//  NULL read as ""; prompt and response empty).  The row owns the text.
void     mesh_audit_file_row (sqlite3_stmt *stmt, mesh_audit_record_t *record);
//  Whether a selected row's columns have their types: NULL, or what is
//  wrong, written into what
const char *mesh_audit_file_check_types (sqlite3_stmt *stmt, char *what, size_t what_size);

//  Meta and ends ---------------------------------------------------------------

//  A day file's meta: where its records start, and the checkpoint before them
typedef struct {
    uint64_t start_seq;                                 //  its first record's seq
    unsigned char start_chain [MESH_AUDIT_SEAL_CHAIN_BYTES];    //  the chain before it
    uint64_t checkpoint_seq;                            //  the last checkpoint before it (0: none)
    unsigned char checkpoint_digest [MESH_AUDIT_SEAL_CHAIN_BYTES];  //  its signature's SHA-256
} mesh_audit_file_meta_t;

//  Makes the tables of a new day file in db with meta; one transaction.
//  -1 with a reason.
int      mesh_audit_file_create (sqlite3 *db, const char *path, const char *day,
                                 const mesh_audit_file_meta_t *meta, char *why, size_t why_size);
//  Reads a day file's meta.  -1 with a reason if it is not a day file of
//  this format (a file of an older format: with what to do about it).
int      mesh_audit_file_read_meta (sqlite3 *db, const char *path, mesh_audit_file_meta_t *meta,
                                    char *why, size_t why_size);

//  Where a day file ends
typedef struct {
    mesh_audit_file_meta_t meta;
    bool has_records;
    uint64_t last_seq;                  //  its last record's seq, else start_seq - 1
    unsigned char last_chain [MESH_AUDIT_SEAL_CHAIN_BYTES];     //  and chain value
    bool has_checkpoints;
    uint64_t checkpoint_seq;            //  its last checkpoint's seq, else the meta's
    unsigned char checkpoint_digest [MESH_AUDIT_SEAL_CHAIN_BYTES];  //  and signature digest
} mesh_audit_file_ends_t;

//  Reads meta, last record and last checkpoint of the day file in db.  -1
//  with a reason.
int      mesh_audit_file_read_ends (sqlite3 *db, const char *path, mesh_audit_file_ends_t *ends,
                                    char *why, size_t why_size);

//  Checkpoints ---------------------------------------------------------------

//  The select of a file's checkpoints; a statement of it (with ORDER BY
//  or WHERE appended) gives rows for mesh_audit_file_checkpoint_row
#define MESH_AUDIT_FILE_CHECKPOINTS \
    "SELECT seq, chain, time_ms, prev_seq, prev_digest, signature FROM checkpoints"
//  Reads a row of MESH_AUDIT_FILE_CHECKPOINTS into checkpoint, its
//  signature pointed at (the row owns it); false when a column has not
//  its type or size (checkpoint then holds what could be read)
bool     mesh_audit_file_checkpoint_row (sqlite3_stmt *stmt,
                                         mesh_audit_seal_checkpoint_t *checkpoint,
                                         const void **signature, size_t *signature_size);
//  Stores a signed checkpoint in db (its own transaction, or the open
//  one).  -1 with a reason.
int      mesh_audit_file_checkpoint_insert (sqlite3 *db,
                                            const mesh_audit_seal_checkpoint_t *checkpoint,
                                            const void *signature, size_t signature_size,
                                            char *why, size_t why_size);

//  The writer -----------------------------------------------------------------

//  Takes the store's writer lock (dir/writer.lock, made with dir if
//  missing): its fd, held while open, or -1 with a reason (another
//  process writes, or dir is not writable)
int      mesh_audit_file_lock (const char *dir, char *why, size_t why_size);
//  True when a process holds the writer lock of the store in dir (this
//  one too, on another fd); the lock is only looked at, not taken
bool     mesh_audit_file_writer_running (const char *dir);

//  Files ---------------------------------------------------------------------

//  The number of tables in db; -1 if it cannot say
int      mesh_audit_file_tables (sqlite3 *db);
//  The writer's connection to the day file at path (made if missing), in
//  WAL mode, each commit synced.  NULL with a reason.
sqlite3 *mesh_audit_file_open_write (const char *path, char *why, size_t why_size);
//  True when the day file at path holds no table: made by a writer that
//  stopped before its first commit
bool     mesh_audit_file_empty (const char *path);
//  Deletes the day file at path with its -wal and -shm
void     mesh_audit_file_unlink (const char *path);
//  A read-only connection to the day file at path, in dir.  Where dir is
//  not writable and no WAL is left (the service is stopped) SQLite cannot
//  make the -shm it wants, so the file is opened as immutable.  NULL with
//  a reason.
sqlite3 *mesh_audit_file_open_read (const char *dir, const char *path, char *why, size_t why_size);
//  Runs sql; -1 with "what: SQLite's reason"
int      mesh_audit_file_exec (sqlite3 *db, const char *sql, const char *what, char *why,
                               size_t why_size);
//  -1 with "what: SQLite's last error on db"
int      mesh_audit_file_fail (sqlite3 *db, const char *what, char *why, size_t why_size);

//  A day file open for reading, with a statement stepped to a row
typedef struct {
    char name [MESH_AUDIT_FILE_NAME_LEN + 1];
    sqlite3 *db;
    sqlite3_stmt *stmt;
    bool has_row;
} mesh_audit_file_reader_t;

void     mesh_audit_file_reader_close (mesh_audit_file_reader_t *reader);

void     mesh_audit_file_test (bool verbose);

#endif
