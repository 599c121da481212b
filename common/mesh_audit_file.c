/*  mesh_audit_file: the audit store's day file (see mesh_audit_file.h).

    The column table below is the one place the record's plain fields
    meet SQL: the schema, the insert, the select and the type check all
    walk it.  Any thread.                                                   */
#include "mesh_audit_file.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHAIN_BYTES MESH_AUDIT_SEAL_CHAIN_BYTES
#define PAGE_SIZE   65536               //  rows of a few KiB: several to a page

//  The columns ----------------------------------------------------------------

typedef enum { COL_TEXT, COL_U32, COL_U64, COL_BOOL } col_kind_t;
typedef struct {
    const char *name;
    col_kind_t kind;
    size_t offset;
} column_t;

#define COL(member, kind) { #member, kind, offsetof (mesh_audit_record_t, member) }
//  The record's plain fields, stored as columns (prompt and response are sealed)
static const column_t s_columns [] = {
    COL (id, COL_TEXT), COL (start_ms, COL_U64), COL (end_ms, COL_U64),
    COL (tenant, COL_TEXT), COL (key_id, COL_TEXT), COL (model_requested, COL_TEXT),
    COL (model, COL_TEXT), COL (endpoint, COL_TEXT), COL (region, COL_TEXT),
    COL (params, COL_TEXT), COL (stream, COL_BOOL), COL (status, COL_U32),
    COL (outcome, COL_TEXT), COL (error_code, COL_TEXT), COL (attempts, COL_U32),
    COL (cache_hit, COL_BOOL), COL (queue_us, COL_U64), COL (ttft_us, COL_U64),
    COL (total_us, COL_U64), COL (upstream_ttfb_us, COL_U64), COL (prompt_tokens, COL_U64),
    COL (completion_tokens, COL_U64), COL (cached_tokens, COL_U64),
    COL (reasoning_tokens, COL_U64), COL (bytes_out, COL_U64), COL (truncated, COL_BOOL),
};
#define NCOLS MESH_ARRAY_SIZE (s_columns)
_Static_assert (MESH_ARRAY_SIZE (s_columns) == MESH_AUDIT_FILE_COLUMNS,
                "MESH_AUDIT_FILE_COLUMNS counts s_columns");

void
mesh_audit_file_columns (mesh_buf_t *sql)
{
    mesh_buf_append_str (sql, "seq");
    for (size_t i = 0; i < NCOLS; i++)
        mesh_buf_printf (sql, ", %s", s_columns [i].name);
    mesh_buf_append_str (sql, ", enc_key_id, prompt, response, chain");
}

void
mesh_audit_file_insert_sql (mesh_buf_t *sql)
{
    mesh_buf_append_str (sql, "INSERT INTO records (");
    mesh_audit_file_columns (sql);
    mesh_buf_append_str (sql, ") VALUES (?");
    for (size_t i = 0; i < NCOLS + 4; i++)
        mesh_buf_append_str (sql, ", ?");
    mesh_buf_append_str (sql, ") ON CONFLICT (id) DO NOTHING");
    mesh_buf_append (sql, "", 1);
}

static uint64_t
s_get_number (const mesh_audit_record_t *record, const column_t *column)
{
    const char *at = (const char *) record + column->offset;
    switch (column->kind) {
        case COL_U32:  return *(const uint32_t *) at;
        case COL_U64:  return *(const uint64_t *) at;
        case COL_BOOL: return *(const bool *) at;
        default:       return 0;
    }
}

static void
s_set_number (mesh_audit_record_t *record, const column_t *column, uint64_t value)
{
    char *at = (char *) record + column->offset;
    switch (column->kind) {
        case COL_U32:  *(uint32_t *) at = (uint32_t) value; break;
        case COL_U64:  *(uint64_t *) at = value; break;
        case COL_BOOL: *(bool *) at = value != 0; break;
        default:       break;
    }
}

static void
s_bind_text (sqlite3_stmt *stmt, int at, const mesh_bytes_t *text)
{
    sqlite3_bind_text (stmt, at, text->size ? text->data : "", (int) text->size, SQLITE_STATIC);
}

void
mesh_audit_file_bind (sqlite3_stmt *stmt, const mesh_audit_record_t *record)
{
    for (size_t n = 0; n < NCOLS; n++) {
        const column_t *column = &s_columns [n];
        if (column->kind == COL_TEXT)
            s_bind_text (stmt, (int) n + 2,
                         (const mesh_bytes_t *) ((const char *) record + column->offset));
        else
            sqlite3_bind_int64 (stmt, (int) n + 2, (int64_t) s_get_number (record, column));
    }
}

void
mesh_audit_file_row (sqlite3_stmt *stmt, mesh_audit_record_t *record)
{
    memset (record, 0, sizeof *record);
    for (size_t c = 0; c < NCOLS; c++) {
        const column_t *column = &s_columns [c];
        int at = (int) c + 1;
        if (column->kind == COL_TEXT) {
            const char *text = (const char *) sqlite3_column_text (stmt, at);
            mesh_bytes_t *bytes = (mesh_bytes_t *) ((char *) record + column->offset);
            *bytes = (mesh_bytes_t) { text ? text : "",
                                      text ? (size_t) sqlite3_column_bytes (stmt, at) : 0 };
        }
        else
            s_set_number (record, column, (uint64_t) sqlite3_column_int64 (stmt, at));
    }
}

const char *
mesh_audit_file_check_types (sqlite3_stmt *stmt, char *what, size_t what_size)
{
    for (size_t c = 0; c < NCOLS; c++) {
        const column_t *column = &s_columns [c];
        int type = sqlite3_column_type (stmt, (int) c + 1);
        if (type != (column->kind == COL_TEXT ? SQLITE_TEXT : SQLITE_INTEGER)) {
            snprintf (what, what_size, "column %s is not %s", column->name,
                      column->kind == COL_TEXT ? "text" : "an integer");
            return what;
        }
    }
    return NULL;
}

//  Days and names ---------------------------------------------------------------

void
mesh_audit_file_day_of (int64_t ms, char day [11])
{
    time_t seconds = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&seconds, &tm);
    strftime (day, 11, "%Y-%m-%d", &tm);
}

int64_t
mesh_audit_file_day_start_ms (const char *day)
{
    int y, m, d;
    char tail;
    if (strlen (day) != 10 || sscanf (day, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3
    ||  m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    struct tm tm = { .tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d };
    time_t t = timegm (&tm);
    struct tm back;
    gmtime_r (&t, &back);
    if (back.tm_mday != d)              //  2026-02-31
        return -1;
    return (int64_t) t * 1000;
}

static int
s_day_file_filter (const struct dirent *entry)
{
    const char *name = entry->d_name;
    if (strlen (name) != MESH_AUDIT_FILE_NAME_LEN || strncmp (name, "audit-", 6) != 0
    ||  strcmp (name + 16, ".db") != 0)
        return 0;
    char day [11];
    memcpy (day, name + 6, 10);
    day [10] = 0;
    return mesh_audit_file_day_start_ms (day) >= 0;
}

int
mesh_audit_file_list (const char *dir, struct dirent ***names, char *why, size_t why_size)
{
    int count = scandir (dir, names, s_day_file_filter, alphasort);
    if (count < 0)
        return mesh_fail (why, why_size, "%s: %s", dir, strerror (errno));
    return count;
}

void
mesh_audit_file_list_free (struct dirent **names, int count)
{
    for (int i = 0; i < count; i++)
        free (names [i]);
    free (names);
}

void
mesh_audit_file_sync_parent (const char *path)
{
    char dir [4096];
    snprintf (dir, sizeof dir, "%s", path);
    char *slash = strrchr (dir, '/');
    if (slash == dir)
        slash [1] = 0;
    else
    if (slash)
        *slash = 0;
    else
        strcpy (dir, ".");
    int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync (fd);
        close (fd);
    }
}

//  Files ------------------------------------------------------------------------

int
mesh_audit_file_fail (sqlite3 *db, const char *what, char *why, size_t why_size)
{
    return mesh_fail (why, why_size, "%s: %s", what, db ? sqlite3_errmsg (db) : "out of memory");
}

int
mesh_audit_file_exec (sqlite3 *db, const char *sql, const char *what, char *why, size_t why_size)
{
    char *error = NULL;
    if (sqlite3_exec (db, sql, NULL, NULL, &error) == SQLITE_OK)
        return 0;
    mesh_fail (why, why_size, "%s: %s", what, error ? error : sqlite3_errmsg (db));
    sqlite3_free (error);
    return -1;
}

//  The tables of a day file, in an open transaction
static int
s_create_tables (sqlite3 *db, const char *path, char *why, size_t why_size)
{
    mesh_buf_t sql;
    mesh_buf_init (&sql);
    mesh_buf_append_str (&sql, "BEGIN IMMEDIATE; CREATE TABLE records (seq INTEGER PRIMARY KEY");
    for (size_t i = 0; i < NCOLS; i++)
        mesh_buf_printf (&sql, ", %s %s NOT NULL%s", s_columns [i].name,
                         s_columns [i].kind == COL_TEXT ? "TEXT" : "INTEGER",
                         i == 0 ? " UNIQUE" : "");
    mesh_buf_append_str (&sql,
        ", enc_key_id TEXT NOT NULL, prompt BLOB NOT NULL, response BLOB NOT NULL,"
        " chain BLOB NOT NULL);"
        "CREATE INDEX records_time ON records (start_ms);"
        "CREATE INDEX records_tenant ON records (tenant, start_ms);"
        "CREATE INDEX records_model ON records (model, start_ms);"
        "CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY, chain BLOB NOT NULL,"
        " time_ms INTEGER NOT NULL, prev_seq INTEGER NOT NULL, prev_digest BLOB NOT NULL,"
        " signature BLOB NOT NULL);"
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value);");
    mesh_buf_append (&sql, "", 1);
    int rc = mesh_audit_file_exec (db, mesh_buf_head (&sql), path, why, why_size);
    mesh_buf_free (&sql);
    return rc;
}

int
mesh_audit_file_create (sqlite3 *db, const char *path, const char *day,
                        const mesh_audit_file_meta_t *meta, char *why, size_t why_size)
{
    if (s_create_tables (db, path, why, why_size) < 0)
        goto failed;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (db, "INSERT INTO meta (name, value) VALUES ('format', ?),"
                            " ('day', ?), ('start_seq', ?), ('start_chain', ?),"
                            " ('checkpoint_seq', ?), ('checkpoint_digest', ?)", -1, &stmt,
                            NULL) != SQLITE_OK) {
        mesh_audit_file_fail (db, path, why, why_size);
        goto failed;
    }
    sqlite3_bind_int (stmt, 1, MESH_AUDIT_FILE_FORMAT);
    sqlite3_bind_text (stmt, 2, day, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (stmt, 3, (int64_t) meta->start_seq);
    sqlite3_bind_blob (stmt, 4, meta->start_chain, CHAIN_BYTES, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (stmt, 5, (int64_t) meta->checkpoint_seq);
    sqlite3_bind_blob (stmt, 6, meta->checkpoint_digest, CHAIN_BYTES, SQLITE_TRANSIENT);
    int rc = sqlite3_step (stmt);
    sqlite3_finalize (stmt);
    if (rc != SQLITE_DONE || mesh_audit_file_exec (db, "COMMIT", path, why, why_size) < 0) {
        if (rc != SQLITE_DONE)
            mesh_audit_file_fail (db, path, why, why_size);
        goto failed;
    }
    mesh_audit_file_sync_parent (path);
    return 0;
failed:
    if (!sqlite3_get_autocommit (db))
        sqlite3_exec (db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

//  Why a file of another format is not read, and what to do about it
static int
s_wrong_format (const char *path, int format, char *why, size_t why_size)
{
    if (format == 1)
        return mesh_fail (why, why_size, "%s: a day file of format 1, from an earlier seekmesh; "
                          "this one writes and verifies format %d, whose checkpoints name the "
                          "one before.  Its records still read with seekmeshctl audit query and "
                          "export.  Verify the old day files with the seekmeshctl that wrote "
                          "them, then move them out of this directory (keep them as an "
                          "archive): the store starts a new chain where there are none",
                          path, MESH_AUDIT_FILE_FORMAT);
    if (format > MESH_AUDIT_FILE_FORMAT)
        return mesh_fail (why, why_size, "%s: a day file of format %d, from a later seekmesh "
                          "(this one knows format %d): read it with that version", path, format,
                          MESH_AUDIT_FILE_FORMAT);
    return mesh_fail (why, why_size, "%s: not an audit store file (no format %d in its meta "
                      "table)", path, MESH_AUDIT_FILE_FORMAT);
}

//  Reads a meta value that is a chain value or digest into out
static bool
s_meta_blob (sqlite3_stmt *stmt, unsigned char *out)
{
    if (sqlite3_column_type (stmt, 1) != SQLITE_BLOB || sqlite3_column_bytes (stmt, 1) != CHAIN_BYTES)
        return false;
    memcpy (out, sqlite3_column_blob (stmt, 1), CHAIN_BYTES);
    return true;
}

int
mesh_audit_file_read_meta (sqlite3 *db, const char *path, mesh_audit_file_meta_t *meta,
                           char *why, size_t why_size)
{
    sqlite3_stmt *stmt = NULL;
    int found = 0, format = 0;
    memset (meta, 0, sizeof *meta);
    if (sqlite3_prepare_v2 (db, "SELECT name, value FROM meta", -1, &stmt, NULL) != SQLITE_OK)
        return mesh_audit_file_fail (db, path, why, why_size);
    while (sqlite3_step (stmt) == SQLITE_ROW) {
        const char *name = (const char *) sqlite3_column_text (stmt, 0);
        bool integer = sqlite3_column_type (stmt, 1) == SQLITE_INTEGER;
        int64_t value = sqlite3_column_int64 (stmt, 1);
        if (mesh_streq (name, "format") && integer)
            format = (int) MESH_MIN (value, 1000000);
        else
        if (mesh_streq (name, "start_seq") && integer && value > 0) {
            meta->start_seq = (uint64_t) value;
            found |= 1;
        }
        else
        if (mesh_streq (name, "start_chain") && s_meta_blob (stmt, meta->start_chain))
            found |= 2;
        else
        if (mesh_streq (name, "checkpoint_seq") && integer && value >= 0) {
            meta->checkpoint_seq = (uint64_t) value;
            found |= 4;
        }
        else
        if (mesh_streq (name, "checkpoint_digest") && s_meta_blob (stmt, meta->checkpoint_digest))
            found |= 8;
    }
    sqlite3_finalize (stmt);
    if (format != MESH_AUDIT_FILE_FORMAT)
        return s_wrong_format (path, format, why, why_size);
    if ((found & 3) != 3)
        return mesh_fail (why, why_size, "%s: its meta table lacks the start seq or chain", path);
    if ((found & 12) != 12)
        return mesh_fail (why, why_size, "%s: its meta table lacks the checkpoint before it", path);
    return 0;
}

int
mesh_audit_file_read_ends (sqlite3 *db, const char *path, mesh_audit_file_ends_t *ends,
                           char *why, size_t why_size)
{
    memset (ends, 0, sizeof *ends);
    if (mesh_audit_file_read_meta (db, path, &ends->meta, why, why_size) < 0)
        return -1;
    ends->last_seq = ends->meta.start_seq - 1;
    memcpy (ends->last_chain, ends->meta.start_chain, CHAIN_BYTES);
    ends->checkpoint_seq = ends->meta.checkpoint_seq;
    memcpy (ends->checkpoint_digest, ends->meta.checkpoint_digest, CHAIN_BYTES);
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (db, "SELECT seq, chain FROM records ORDER BY seq DESC LIMIT 1", -1,
                            &stmt, NULL) != SQLITE_OK)
        return mesh_audit_file_fail (db, path, why, why_size);
    int step = sqlite3_step (stmt);
    if (step == SQLITE_ROW) {
        ends->has_records = true;
        ends->last_seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
        if (sqlite3_column_bytes (stmt, 1) != CHAIN_BYTES) {
            sqlite3_finalize (stmt);
            return mesh_fail (why, why_size, "%s: seq %llu has no chain value", path,
                              (unsigned long long) ends->last_seq);
        }
        memcpy (ends->last_chain, sqlite3_column_blob (stmt, 1), CHAIN_BYTES);
    }
    sqlite3_finalize (stmt);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return mesh_audit_file_fail (db, path, why, why_size);
    if (sqlite3_prepare_v2 (db, "SELECT seq, signature FROM checkpoints ORDER BY seq DESC LIMIT 1",
                            -1, &stmt, NULL) != SQLITE_OK)
        return mesh_audit_file_fail (db, path, why, why_size);
    step = sqlite3_step (stmt);
    if (step == SQLITE_ROW) {
        ends->has_checkpoints = true;
        ends->checkpoint_seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
        mesh_audit_seal_signature_digest (sqlite3_column_blob (stmt, 1),
                                          (size_t) sqlite3_column_bytes (stmt, 1),
                                          ends->checkpoint_digest);
    }
    sqlite3_finalize (stmt);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return mesh_audit_file_fail (db, path, why, why_size);
    return 0;
}

//  Checkpoints ------------------------------------------------------------------

bool
mesh_audit_file_checkpoint_row (sqlite3_stmt *stmt, mesh_audit_seal_checkpoint_t *checkpoint,
                                const void **signature, size_t *signature_size)
{
    memset (checkpoint, 0, sizeof *checkpoint);
    bool well_formed = true;
    for (int at = 0; at < 6; at++) {
        bool blob = at == 1 || at == 4 || at == 5;
        if (sqlite3_column_type (stmt, at) != (blob ? SQLITE_BLOB : SQLITE_INTEGER))
            well_formed = false;
    }
    checkpoint->seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
    checkpoint->time_ms = sqlite3_column_int64 (stmt, 2);
    checkpoint->prev_seq = (uint64_t) sqlite3_column_int64 (stmt, 3);
    const int digests [] = { 1, 4 };
    unsigned char *into [] = { checkpoint->chain, checkpoint->prev_digest };
    for (int i = 0; i < 2; i++) {
        if (sqlite3_column_bytes (stmt, digests [i]) == CHAIN_BYTES)
            memcpy (into [i], sqlite3_column_blob (stmt, digests [i]), CHAIN_BYTES);
        else
            well_formed = false;
    }
    *signature = sqlite3_column_blob (stmt, 5);
    *signature_size = (size_t) sqlite3_column_bytes (stmt, 5);
    return well_formed;
}

int
mesh_audit_file_checkpoint_insert (sqlite3 *db, const mesh_audit_seal_checkpoint_t *checkpoint,
                                   const void *signature, size_t signature_size,
                                   char *why, size_t why_size)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (db, "INSERT INTO checkpoints (seq, chain, time_ms, prev_seq, "
                            "prev_digest, signature) VALUES (?, ?, ?, ?, ?, ?)", -1, &stmt,
                            NULL) != SQLITE_OK)
        return mesh_audit_file_fail (db, "checkpoint", why, why_size);
    sqlite3_bind_int64 (stmt, 1, (int64_t) checkpoint->seq);
    sqlite3_bind_blob (stmt, 2, checkpoint->chain, CHAIN_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 3, checkpoint->time_ms);
    sqlite3_bind_int64 (stmt, 4, (int64_t) checkpoint->prev_seq);
    sqlite3_bind_blob (stmt, 5, checkpoint->prev_digest, CHAIN_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, 6, signature, (int) signature_size, SQLITE_STATIC);
    int rc = sqlite3_step (stmt);
    sqlite3_finalize (stmt);
    if (rc != SQLITE_DONE)
        return mesh_audit_file_fail (db, "checkpoint", why, why_size);
    return 0;
}

//  The writer ---------------------------------------------------------------------

//  An open-file-description lock (not flock, not a POSIX record lock): it
//  belongs to the fd that took it, so another fd of the same process
//  neither drops it by closing nor takes it again, and F_OFD_GETLK shows
//  it to a reader without taking anything (a probe that took the lock,
//  even for a moment, could make a starting writer fail)
int
mesh_audit_file_lock (const char *dir, char *why, size_t why_size)
{
    if (mkdir (dir, 0700) < 0 && errno != EEXIST)
        return mesh_fail (why, why_size, "%s: %s", dir, strerror (errno));
    if (access (dir, W_OK | X_OK) != 0)
        return mesh_fail (why, why_size, "%s: %s", dir, strerror (errno));
    char path [4096];
    snprintf (path, sizeof path, "%s/writer.lock", dir);
    int fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
    if (fd < 0 || fcntl (fd, F_OFD_SETLK, &lock) < 0) {
        int error = errno;
        mesh_fail (why, why_size, "%s: %s", path, error == EAGAIN || error == EACCES
                   ? "another process writes to this audit store" : strerror (error));
        if (fd >= 0)
            close (fd);
        return -1;
    }
    return fd;
}

bool
mesh_audit_file_writer_running (const char *dir)
{
    char path [4096];
    snprintf (path, sizeof path, "%s/writer.lock", dir);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct flock lock = { .l_type = F_RDLCK, .l_whence = SEEK_SET };
    bool held = fcntl (fd, F_OFD_GETLK, &lock) == 0 && lock.l_type != F_UNLCK;
    close (fd);
    return held;
}

//  Connections ------------------------------------------------------------------

int
mesh_audit_file_tables (sqlite3 *db)
{
    sqlite3_stmt *stmt = NULL;
    int tables = -1;
    if (sqlite3_prepare_v2 (db, "SELECT count(*) FROM sqlite_master", -1, &stmt, NULL) == SQLITE_OK
    &&  sqlite3_step (stmt) == SQLITE_ROW)
        tables = sqlite3_column_int (stmt, 0);
    sqlite3_finalize (stmt);
    return tables;
}

sqlite3 *
mesh_audit_file_open_write (const char *path, char *why, size_t why_size)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                         | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        mesh_audit_file_fail (db, path, why, why_size);
        sqlite3_close (db);
        return NULL;
    }
    sqlite3_busy_timeout (db, 5000);
    //  synchronous=FULL: in WAL mode NORMAL syncs the WAL only at
    //  checkpoints, so a commit could be lost to a power cut after the
    //  service has acknowledged it and the ingress has forgotten the
    //  record.  FULL syncs the WAL at every commit, one fsync per batch.
    //  An 8 MiB page cache: appends touch the tail of each index only
    //  (64 MiB gave the same records/s at twice the RSS).
    char sql [256];
    snprintf (sql, sizeof sql,
        "PRAGMA page_size = %d; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
        "PRAGMA cache_size = -8192; PRAGMA journal_size_limit = 67108864;", PAGE_SIZE);
    if (mesh_audit_file_exec (db, sql, path, why, why_size) < 0) {
        sqlite3_close (db);
        return NULL;
    }
    return db;
}

bool
mesh_audit_file_empty (const char *path)
{
    sqlite3 *db = NULL;
    int tables = -1;
    if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK)
        tables = mesh_audit_file_tables (db);
    sqlite3_close (db);
    return tables == 0;
}

void
mesh_audit_file_unlink (const char *path)
{
    char extra [4200];
    unlink (path);
    snprintf (extra, sizeof extra, "%s-wal", path);
    unlink (extra);
    snprintf (extra, sizeof extra, "%s-shm", path);
    unlink (extra);
}

sqlite3 *
mesh_audit_file_open_read (const char *dir, const char *path, char *why, size_t why_size)
{
    sqlite3 *db = NULL;
    char wal [4200], uri [8400];
    snprintf (wal, sizeof wal, "%s-wal", path);
    int rc;
    if (access (dir, W_OK) != 0 && access (wal, F_OK) != 0) {
        snprintf (uri, sizeof uri, "file:%s?immutable=1", path);
        rc = sqlite3_open_v2 (uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI
                              | SQLITE_OPEN_NOMUTEX, NULL);
    }
    else
        rc = sqlite3_open_v2 (path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        mesh_audit_file_fail (db, path, why, why_size);
        sqlite3_close (db);
        return NULL;
    }
    sqlite3_busy_timeout (db, 5000);
    return db;
}

void
mesh_audit_file_reader_close (mesh_audit_file_reader_t *reader)
{
    sqlite3_finalize (reader->stmt);
    sqlite3_close (reader->db);
    reader->stmt = NULL;
    reader->db = NULL;
}

//  Selftest -----------------------------------------------------------------------

#include "mesh_audit_sample.h"

static void
s_test_days (const char *root)
{
    assert (mesh_audit_file_day_start_ms ("2026-03-01") == 1772323200000LL);
    const char *not_days [] = { "2026-02-31", "2026-13-01", "2026-00-10", "2026-3-01",
                                "2026-03-01x", "", "yesterday!" };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (not_days); i++)
        assert (mesh_audit_file_day_start_ms (not_days [i]) == -1);
    char day [11];
    mesh_audit_file_day_of (1772323200000LL + MESH_AUDIT_FILE_DAY_MS - 1, day);
    assert (mesh_streq (day, "2026-03-01"));
    mesh_audit_file_day_of (1772323200000LL + MESH_AUDIT_FILE_DAY_MS, day);
    assert (mesh_streq (day, "2026-03-02"));

    //  Only day files, oldest first
    const char *names [] = { "audit-2026-03-02.db", "audit-2026-03-01.db", "audit-2026-02-31.db",
                             "audit-2026-03-01.db-wal", "audit-2026-3-01.db", "keys" };
    char path [4096];
    for (size_t i = 0; i < MESH_ARRAY_SIZE (names); i++) {
        snprintf (path, sizeof path, "%s/%s", root, names [i]);
        mesh_audit_sample_write (path, "");
    }
    struct dirent **list = NULL;
    char why [256];
    int count = mesh_audit_file_list (root, &list, why, sizeof why);
    assert (count == 2);
    assert (mesh_streq (list [0]->d_name, "audit-2026-03-01.db"));
    assert (mesh_streq (list [1]->d_name, "audit-2026-03-02.db"));
    mesh_audit_file_list_free (list, count);
    for (size_t i = 0; i < MESH_ARRAY_SIZE (names); i++) {
        snprintf (path, sizeof path, "%s/%s", root, names [i]);
        unlink (path);
    }
    snprintf (path, sizeof path, "%s/nowhere", root);
    assert (mesh_audit_file_list (path, &list, why, sizeof why) == -1 && strstr (why, path));
}

//  A record's columns go in and come back as they were; their types are
//  checked
static void
s_test_columns (sqlite3 *db, const unsigned char *chain)
{
    char why [256];
    sqlite3_stmt *stmt = NULL;
    mesh_audit_sample_t *data = calloc (1, sizeof *data);
    assert (data);
    mesh_audit_record_t *record = mesh_audit_sample_record (data, 0, 1772323200000LL);
    mesh_buf_t sql, in, out;
    mesh_buf_init (&sql);
    mesh_buf_init (&in);
    mesh_buf_init (&out);
    mesh_audit_file_insert_sql (&sql);
    assert (sqlite3_prepare_v2 (db, sql.data, -1, &stmt, NULL) == SQLITE_OK);
    sqlite3_bind_int64 (stmt, 1, 5);
    mesh_audit_file_bind (stmt, record);
    sqlite3_bind_text (stmt, MESH_AUDIT_FILE_AT_ENC_KEY_ID + 1, "k1", -1, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, MESH_AUDIT_FILE_AT_PROMPT + 1, "p", 1, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, MESH_AUDIT_FILE_AT_RESPONSE + 1, "r", 1, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, MESH_AUDIT_FILE_AT_CHAIN + 1, chain, CHAIN_BYTES, SQLITE_STATIC);
    assert (sqlite3_step (stmt) == SQLITE_DONE && sqlite3_changes (db) == 1);
    sqlite3_reset (stmt);
    assert (sqlite3_step (stmt) == SQLITE_DONE && sqlite3_changes (db) == 0);  //  the same id
    sqlite3_finalize (stmt);
    mesh_buf_reset (&sql);
    mesh_buf_append_str (&sql, "SELECT ");
    mesh_audit_file_columns (&sql);
    mesh_buf_append_str (&sql, " FROM records");
    mesh_buf_append (&sql, "", 1);
    assert (sqlite3_prepare_v2 (db, sql.data, -1, &stmt, NULL) == SQLITE_OK);
    assert (sqlite3_step (stmt) == SQLITE_ROW);
    assert (sqlite3_column_int64 (stmt, MESH_AUDIT_FILE_AT_SEQ) == 5);
    assert (mesh_streq ((const char *) sqlite3_column_text (stmt, MESH_AUDIT_FILE_AT_ENC_KEY_ID),
                        "k1"));
    assert (sqlite3_column_bytes (stmt, MESH_AUDIT_FILE_AT_CHAIN) == CHAIN_BYTES);
    mesh_audit_record_t row;
    mesh_audit_file_row (stmt, &row);
    assert (row.tenant.data [row.tenant.size] == 0 && row.prompt.size == 0);
    mesh_audit_record_t plain = *record;
    plain.prompt = plain.response = (mesh_bytes_t) { NULL, 0 };
    assert (mesh_audit_encode (&plain, &in) == 0 && mesh_audit_encode (&row, &out) == 0);
    assert (in.len == out.len && memcmp (in.data, out.data, in.len) == 0);
    char what [128];
    assert (mesh_audit_file_check_types (stmt, what, sizeof what) == NULL);
    sqlite3_finalize (stmt);
    assert (mesh_audit_file_exec (db, "UPDATE records SET status = 'two hundred'", "edit",
                                  why, sizeof why) == 0);
    assert (sqlite3_prepare_v2 (db, sql.data, -1, &stmt, NULL) == SQLITE_OK);
    assert (sqlite3_step (stmt) == SQLITE_ROW);
    assert (mesh_streq (mesh_audit_file_check_types (stmt, what, sizeof what),
                        "column status is not an integer"));
    sqlite3_finalize (stmt);
    assert (mesh_audit_file_exec (db, "SELECT nothing FROM nowhere", "odd", why, sizeof why) == -1);
    assert (strncmp (why, "odd: ", 5) == 0);

    mesh_buf_free (&sql);
    mesh_buf_free (&in);
    mesh_buf_free (&out);
    free (data);
}

//  Checkpoints go in and come back; their columns are checked; the ends
//  of a file name its last record and checkpoint
static void
s_test_checkpoints (sqlite3 *db, const char *path, const mesh_audit_file_meta_t *meta)
{
    char why [256];
    mesh_audit_file_ends_t ends;
    //  Only the record of s_test_columns (seq 5): the checkpoint is the meta's
    assert (mesh_audit_file_read_ends (db, path, &ends, why, sizeof why) == 0);
    assert (ends.has_records && ends.last_seq == 5 && !ends.has_checkpoints);
    assert (ends.checkpoint_seq == meta->checkpoint_seq
            && memcmp (ends.checkpoint_digest, meta->checkpoint_digest, CHAIN_BYTES) == 0);
    mesh_audit_seal_checkpoint_t checkpoint = { .seq = 5, .time_ms = 1772323200000LL,
                                                .prev_seq = meta->checkpoint_seq }, back;
    memset (checkpoint.chain, 0x11, CHAIN_BYTES);
    memcpy (checkpoint.prev_digest, meta->checkpoint_digest, CHAIN_BYTES);
    unsigned char signature [MESH_AUDIT_SEAL_SIGNATURE_BYTES], digest [CHAIN_BYTES];
    memset (signature, 0x5a, sizeof signature);
    assert (mesh_audit_file_checkpoint_insert (db, &checkpoint, signature, sizeof signature,
                                               why, sizeof why) == 0);
    //  One checkpoint a seq
    assert (mesh_audit_file_checkpoint_insert (db, &checkpoint, signature, sizeof signature,
                                               why, sizeof why) == -1);
    assert (strstr (why, "checkpoint: UNIQUE"));
    assert (mesh_audit_file_read_ends (db, path, &ends, why, sizeof why) == 0);
    mesh_audit_seal_signature_digest (signature, sizeof signature, digest);
    assert (ends.has_checkpoints && ends.checkpoint_seq == 5
            && memcmp (ends.checkpoint_digest, digest, CHAIN_BYTES) == 0);
    sqlite3_stmt *stmt = NULL;
    assert (sqlite3_prepare_v2 (db, MESH_AUDIT_FILE_CHECKPOINTS, -1, &stmt, NULL) == SQLITE_OK);
    assert (sqlite3_step (stmt) == SQLITE_ROW);
    const void *read_signature;
    size_t size;
    assert (mesh_audit_file_checkpoint_row (stmt, &back, &read_signature, &size));
    assert (memcmp (&back, &checkpoint, sizeof back) == 0);
    assert (size == sizeof signature && memcmp (read_signature, signature, size) == 0);
    sqlite3_finalize (stmt);
    //  A column of another type or size is not a checkpoint's
    const char *edits [] = { "UPDATE checkpoints SET prev_digest = x'00'",
                             "UPDATE checkpoints SET chain = CAST (chain AS TEXT)",
                             "UPDATE checkpoints SET prev_seq = 'four'" };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (edits); i++) {
        assert (mesh_audit_file_exec (db, "SAVEPOINT edit", "edit", why, sizeof why) == 0);
        assert (mesh_audit_file_exec (db, edits [i], "edit", why, sizeof why) == 0);
        assert (sqlite3_prepare_v2 (db, MESH_AUDIT_FILE_CHECKPOINTS, -1, &stmt, NULL) == SQLITE_OK);
        assert (sqlite3_step (stmt) == SQLITE_ROW);
        assert (!mesh_audit_file_checkpoint_row (stmt, &back, &read_signature, &size));
        sqlite3_finalize (stmt);
        assert (mesh_audit_file_exec (db, "ROLLBACK TO edit; RELEASE edit", "edit", why,
                                      sizeof why) == 0);
    }
}

static void
s_test_files (const char *root)
{
    char path [4096], why [1024];
    snprintf (path, sizeof path, "%s/audit-2026-03-01.db", root);
    //  The writer's connection: WAL, every commit synced
    sqlite3 *db = mesh_audit_file_open_write (path, why, sizeof why);
    assert (db && mesh_audit_file_tables (db) == 0 && mesh_audit_file_empty (path));
    sqlite3_stmt *stmt = NULL;
    assert (sqlite3_prepare_v2 (db, "PRAGMA journal_mode", -1, &stmt, NULL) == SQLITE_OK);
    assert (sqlite3_step (stmt) == SQLITE_ROW);
    assert (mesh_streq ((const char *) sqlite3_column_text (stmt, 0), "wal"));
    sqlite3_finalize (stmt);
    mesh_audit_file_meta_t meta = { .start_seq = 5, .checkpoint_seq = 3 }, back;
    memset (meta.start_chain, 0x11, CHAIN_BYTES);
    memset (meta.checkpoint_digest, 0x22, CHAIN_BYTES);
    assert (mesh_audit_file_create (db, path, "2026-03-01", &meta, why, sizeof why) == 0);
    assert (mesh_audit_file_tables (db) > 3 && !mesh_audit_file_empty (path));
    assert (mesh_audit_file_read_meta (db, path, &back, why, sizeof why) == 0);
    assert (memcmp (&back, &meta, sizeof meta) == 0);
    //  A file without records ends where it starts, after the meta's checkpoint
    mesh_audit_file_ends_t ends;
    assert (mesh_audit_file_read_ends (db, path, &ends, why, sizeof why) == 0);
    assert (!ends.has_records && ends.last_seq == 4 && !ends.has_checkpoints);
    assert (memcmp (ends.last_chain, meta.start_chain, CHAIN_BYTES) == 0);
    assert (ends.checkpoint_seq == 3 && ends.checkpoint_digest [0] == 0x22);
    //  A second create fails (the tables exist) and leaves no transaction
    assert (mesh_audit_file_create (db, path, "2026-03-01", &meta, why, sizeof why) == -1);
    assert (strstr (why, "already exists") && sqlite3_get_autocommit (db));

    s_test_columns (db, meta.start_chain);
    s_test_checkpoints (db, path, &meta);

    //  The meta names what is wrong with it
    assert (mesh_audit_file_exec (db, "DELETE FROM meta WHERE name = 'checkpoint_digest'", "edit",
                                  why, sizeof why) == 0);
    assert (mesh_audit_file_read_meta (db, path, &back, why, sizeof why) == -1);
    assert (strstr (why, "lacks the checkpoint before it"));
    assert (mesh_audit_file_exec (db, "DELETE FROM meta WHERE name = 'start_chain'", "edit",
                                  why, sizeof why) == 0);
    assert (mesh_audit_file_read_meta (db, path, &back, why, sizeof why) == -1);
    assert (strstr (why, "lacks the start"));
    //  A file of format 1 is refused with what to do; a later one too
    assert (mesh_audit_file_exec (db, "UPDATE meta SET value = 1 WHERE name = 'format'", "edit",
                                  why, sizeof why) == 0);
    assert (mesh_audit_file_read_ends (db, path, &ends, why, sizeof why) == -1);
    assert (strstr (why, path) && strstr (why, "format 1, from an earlier seekmesh")
            && strstr (why, "move them out of this directory"));
    assert (mesh_audit_file_exec (db, "UPDATE meta SET value = 3 WHERE name = 'format'", "edit",
                                  why, sizeof why) == 0);
    assert (mesh_audit_file_read_meta (db, path, &back, why, sizeof why) == -1);
    assert (strstr (why, "format 3, from a later seekmesh"));
    sqlite3_close (db);
    mesh_audit_file_reader_t reader = { 0 };
    reader.db = mesh_audit_file_open_read (root, path, why, sizeof why);
    assert (reader.db);
    assert (mesh_audit_file_read_meta (reader.db, path, &back, why, sizeof why) == -1);
    mesh_audit_file_reader_close (&reader);
    assert (reader.db == NULL);
    char wal [4200];
    snprintf (wal, sizeof wal, "%s-wal", path);
    mesh_audit_sample_write (wal, "");
    mesh_audit_file_unlink (path);
    assert (access (path, F_OK) != 0 && access (wal, F_OK) != 0);

    //  Someone else's database is not a day file
    assert (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL)
            == SQLITE_OK);
    assert (mesh_audit_file_exec (db, "CREATE TABLE meta (x)", "make", why, sizeof why) == 0);
    assert (mesh_audit_file_read_meta (db, path, &back, why, sizeof why) == -1);
    assert (strstr (why, "no such column"));
    assert (mesh_audit_file_exec (db, "DROP TABLE meta; CREATE TABLE meta (name, value)", "make",
                                  why, sizeof why) == 0);
    assert (mesh_audit_file_read_meta (db, path, &back, why, sizeof why) == -1);
    assert (strstr (why, "not an audit store file"));
    sqlite3_close (db);
    unlink (path);
}

//  One writer at a time; readers see it without taking the lock
static void
s_test_lock (const char *root)
{
    char dir [2048], why [256];
    snprintf (dir, sizeof dir, "%s/locked", root);
    assert (!mesh_audit_file_writer_running (dir));         //  not even made
    int fd = mesh_audit_file_lock (dir, why, sizeof why);
    assert (fd >= 0 && mesh_audit_file_writer_running (dir));
    //  Looking does not take it, and another fd of this process does not get it
    assert (mesh_audit_file_writer_running (dir));
    assert (mesh_audit_file_lock (dir, why, sizeof why) == -1);
    assert (strstr (why, "another process writes to this audit store"));
    close (fd);
    assert (!mesh_audit_file_writer_running (dir));
    fd = mesh_audit_file_lock (dir, why, sizeof why);
    assert (fd >= 0);
    close (fd);
    //  A directory that cannot be made
    char file [4096];
    snprintf (file, sizeof file, "%s/writer.lock/below", dir);
    assert (mesh_audit_file_lock (file, why, sizeof why) == -1 && strstr (why, file));
}

void
mesh_audit_file_test (bool verbose)
{
    (void) verbose;
    char root [1024];
    mesh_audit_sample_tmpdir (root, sizeof root);
    s_test_days (root);
    s_test_files (root);
    s_test_lock (root);
    mesh_audit_sample_rmtree (root);
    assert (access (root, F_OK) != 0);
}
