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
        " time_ms INTEGER NOT NULL, signature BLOB NOT NULL);"
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value);");
    mesh_buf_append (&sql, "", 1);
    int rc = mesh_audit_file_exec (db, mesh_buf_head (&sql), path, why, why_size);
    mesh_buf_free (&sql);
    return rc;
}

int
mesh_audit_file_create (sqlite3 *db, const char *path, const char *day, uint64_t start_seq,
                        const unsigned char *start_chain, char *why, size_t why_size)
{
    if (s_create_tables (db, path, why, why_size) < 0)
        goto failed;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (db, "INSERT INTO meta (name, value) VALUES ('format', ?),"
                            " ('day', ?), ('start_seq', ?), ('start_chain', ?)", -1, &stmt,
                            NULL) != SQLITE_OK) {
        mesh_audit_file_fail (db, path, why, why_size);
        goto failed;
    }
    sqlite3_bind_int (stmt, 1, MESH_AUDIT_FILE_FORMAT);
    sqlite3_bind_text (stmt, 2, day, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64 (stmt, 3, (int64_t) start_seq);
    sqlite3_bind_blob (stmt, 4, start_chain, CHAIN_BYTES, SQLITE_TRANSIENT);
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

int
mesh_audit_file_read_meta (sqlite3 *db, const char *path, uint64_t *start_seq,
                           unsigned char *start_chain, char *why, size_t why_size)
{
    sqlite3_stmt *stmt = NULL;
    int found = 0, format = 0;
    if (sqlite3_prepare_v2 (db, "SELECT name, value FROM meta", -1, &stmt, NULL) != SQLITE_OK)
        return mesh_audit_file_fail (db, path, why, why_size);
    while (sqlite3_step (stmt) == SQLITE_ROW) {
        const char *name = (const char *) sqlite3_column_text (stmt, 0);
        if (mesh_streq (name, "format"))
            format = sqlite3_column_int (stmt, 1);
        else
        if (mesh_streq (name, "start_seq") && sqlite3_column_type (stmt, 1) == SQLITE_INTEGER
        &&  sqlite3_column_int64 (stmt, 1) > 0) {
            *start_seq = (uint64_t) sqlite3_column_int64 (stmt, 1);
            found |= 1;
        }
        else
        if (mesh_streq (name, "start_chain") && sqlite3_column_type (stmt, 1) == SQLITE_BLOB
        &&  sqlite3_column_bytes (stmt, 1) == CHAIN_BYTES) {
            memcpy (start_chain, sqlite3_column_blob (stmt, 1), CHAIN_BYTES);
            found |= 2;
        }
    }
    sqlite3_finalize (stmt);
    if (format != MESH_AUDIT_FILE_FORMAT)
        return mesh_fail (why, why_size, "%s: not an audit store file of format %d", path,
                          MESH_AUDIT_FILE_FORMAT);
    if (found != 3)
        return mesh_fail (why, why_size, "%s: its meta table lacks the start seq or chain", path);
    return 0;
}

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

static void
s_test_files (const char *root)
{
    char path [4096], why [256];
    snprintf (path, sizeof path, "%s/audit-2026-03-01.db", root);
    //  The writer's connection: WAL, every commit synced
    sqlite3 *db = mesh_audit_file_open_write (path, why, sizeof why);
    assert (db && mesh_audit_file_tables (db) == 0 && mesh_audit_file_empty (path));
    sqlite3_stmt *stmt = NULL;
    assert (sqlite3_prepare_v2 (db, "PRAGMA journal_mode", -1, &stmt, NULL) == SQLITE_OK);
    assert (sqlite3_step (stmt) == SQLITE_ROW);
    assert (mesh_streq ((const char *) sqlite3_column_text (stmt, 0), "wal"));
    sqlite3_finalize (stmt);
    unsigned char chain [CHAIN_BYTES], back [CHAIN_BYTES];
    memset (chain, 0x11, sizeof chain);
    assert (mesh_audit_file_create (db, path, "2026-03-01", 5, chain, why, sizeof why) == 0);
    assert (mesh_audit_file_tables (db) > 3 && !mesh_audit_file_empty (path));
    uint64_t start_seq = 0;
    assert (mesh_audit_file_read_meta (db, path, &start_seq, back, why, sizeof why) == 0);
    assert (start_seq == 5 && memcmp (back, chain, CHAIN_BYTES) == 0);
    //  A second create fails (the tables exist) and leaves no transaction
    assert (mesh_audit_file_create (db, path, "2026-03-01", 5, chain, why, sizeof why) == -1);
    assert (strstr (why, "already exists") && sqlite3_get_autocommit (db));

    s_test_columns (db, chain);

    //  The meta names what is wrong with it
    assert (mesh_audit_file_exec (db, "DELETE FROM meta WHERE name = 'start_chain'", "edit",
                                  why, sizeof why) == 0);
    assert (mesh_audit_file_read_meta (db, path, &start_seq, back, why, sizeof why) == -1);
    assert (strstr (why, "lacks the start"));
    sqlite3_close (db);
    mesh_audit_file_reader_t reader = { 0 };
    reader.db = mesh_audit_file_open_read (root, path, why, sizeof why);
    assert (reader.db);
    assert (mesh_audit_file_read_meta (reader.db, path, &start_seq, back, why, sizeof why) == -1);
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
    assert (mesh_audit_file_read_meta (db, path, &start_seq, back, why, sizeof why) == -1);
    assert (strstr (why, "no such column") || strstr (why, "not an audit store file"));
    sqlite3_close (db);
    unlink (path);
}

void
mesh_audit_file_test (bool verbose)
{
    (void) verbose;
    char root [1024];
    mesh_audit_sample_tmpdir (root, sizeof root);
    s_test_days (root);
    s_test_files (root);
    mesh_audit_sample_rmtree (root);
    assert (access (root, F_OK) != 0);
}
