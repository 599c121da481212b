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
        checkpoints  seq, chain, time_ms, signature
        meta         format, day, start_seq, start_chain: the seq and chain
                     value the file starts from
    Anyone can read the plain columns with sqlite3.

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

#define MESH_AUDIT_FILE_FORMAT      1
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

//  Files ---------------------------------------------------------------------

//  Makes the tables of a new day file in db, whose first record will be
//  start_seq after chain value start_chain; one transaction.  -1 with a
//  reason.
int      mesh_audit_file_create (sqlite3 *db, const char *path, const char *day,
                                 uint64_t start_seq, const unsigned char *start_chain,
                                 char *why, size_t why_size);
//  Reads a day file's meta: the seq and chain value it starts from.  -1
//  with a reason if it is not a day file of this format.
int      mesh_audit_file_read_meta (sqlite3 *db, const char *path, uint64_t *start_seq,
                                    unsigned char *start_chain, char *why, size_t why_size);
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
