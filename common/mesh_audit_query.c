/*  mesh_audit_query: the audit store read back (see mesh_audit_query.h).

    Each day file that may hold a match gets a reader with the filter's
    select stepped to its first row; the rows are merged by (start_ms,
    seq), each decrypted into buffers that are wiped after the callback.
    Any thread.                                                             */
#include "mesh_audit_query.h"
#include "mesh_audit_file.h"
#include "mesh_audit_seal.h"
#include "mesh_util.h"

#include <assert.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AT_SEQ        MESH_AUDIT_FILE_AT_SEQ
#define AT_START_MS   2                 //  the record's second column
#define AT_ENC_KEY_ID MESH_AUDIT_FILE_AT_ENC_KEY_ID
#define AT_PROMPT     MESH_AUDIT_FILE_AT_PROMPT
#define AT_RESPONSE   MESH_AUDIT_FILE_AT_RESPONSE

//  One query's state
typedef struct {
    const mesh_audit_query_filter_t *filter;
    mesh_audit_keyring_t *keys;         //  NULL: no decryption
    mesh_audit_file_reader_t *readers;
    size_t open_count;
    mesh_audit_seal_t *seal;
    mesh_buf_t sql, prompt, response;
} query_t;

//  The select every file runs: the filter's conditions, in time order
static void
s_select_sql (const mesh_audit_query_filter_t *filter, mesh_buf_t *sql)
{
    mesh_buf_append_str (sql, "SELECT ");
    mesh_audit_file_columns (sql);
    mesh_buf_append_str (sql, " FROM records WHERE start_ms >= ?1 AND start_ms < ?2");
    if (filter->tenant)
        mesh_buf_append_str (sql, " AND tenant = ?3");
    if (filter->model)
        mesh_buf_append_str (sql, " AND (model = ?4 OR model_requested = ?4)");
    if (filter->outcome)
        mesh_buf_append_str (sql, " AND outcome = ?5");
    if (filter->status)
        mesh_buf_append_str (sql, " AND status = ?6");
    mesh_buf_append_str (sql, " ORDER BY start_ms, seq");
    mesh_buf_append (sql, "", 1);
}

//  Opens day file name of dir as the next reader, its select stepped to
//  its first row.  -1 with a reason.
static int
s_open_file (query_t *self, const char *dir, const char *name, char *why, size_t why_size)
{
    const mesh_audit_query_filter_t *filter = self->filter;
    mesh_audit_file_reader_t *reader = &self->readers [self->open_count];
    snprintf (reader->name, sizeof reader->name, "%.*s", MESH_AUDIT_FILE_NAME_LEN, name);
    char path [4096];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    if (!(reader->db = mesh_audit_file_open_read (dir, path, why, why_size)))
        return -1;
    self->open_count++;
    if (sqlite3_prepare_v2 (reader->db, mesh_buf_head (&self->sql), -1, &reader->stmt, NULL)
        != SQLITE_OK)
        return mesh_audit_file_fail (reader->db, path, why, why_size);
    sqlite3_bind_int64 (reader->stmt, 1, filter->since_ms);
    sqlite3_bind_int64 (reader->stmt, 2, filter->until_ms ? filter->until_ms : INT64_MAX);
    if (filter->tenant)
        sqlite3_bind_text (reader->stmt, 3, filter->tenant, -1, SQLITE_STATIC);
    if (filter->model)
        sqlite3_bind_text (reader->stmt, 4, filter->model, -1, SQLITE_STATIC);
    if (filter->outcome)
        sqlite3_bind_text (reader->stmt, 5, filter->outcome, -1, SQLITE_STATIC);
    if (filter->status)
        sqlite3_bind_int64 (reader->stmt, 6, filter->status);
    int step = sqlite3_step (reader->stmt);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return mesh_audit_file_fail (reader->db, path, why, why_size);
    reader->has_row = step == SQLITE_ROW;
    return 0;
}

//  Opens every day file that may hold a match.  -1 with a reason.
static int
s_open_files (query_t *self, const char *dir, struct dirent **names, int count,
              char *why, size_t why_size)
{
    for (int i = 0; i < count; i++) {
        const char *name = names [i]->d_name;
        char day [11];
        memcpy (day, name + 6, 10);
        day [10] = 0;
        //  A file holds what was committed that day, which started before
        //  its end (give or take the clocks' skew)
        if (self->filter->since_ms && mesh_audit_file_day_start_ms (day) + MESH_AUDIT_FILE_DAY_MS
                                      + MESH_AUDIT_FILE_SKEW_MS < self->filter->since_ms)
            continue;
        if (s_open_file (self, dir, name, why, why_size) < 0)
            return -1;
    }
    return 0;
}

//  The reader whose row comes next, by start_ms then seq; NULL at the end
static mesh_audit_file_reader_t *
s_next (query_t *self)
{
    mesh_audit_file_reader_t *next = NULL;
    for (size_t i = 0; i < self->open_count; i++) {
        mesh_audit_file_reader_t *reader = &self->readers [i];
        if (!reader->has_row)
            continue;
        if (!next
        ||  sqlite3_column_int64 (reader->stmt, AT_START_MS)
            < sqlite3_column_int64 (next->stmt, AT_START_MS)
        ||  (sqlite3_column_int64 (reader->stmt, AT_START_MS)
             == sqlite3_column_int64 (next->stmt, AT_START_MS)
             && sqlite3_column_int64 (reader->stmt, AT_SEQ)
                < sqlite3_column_int64 (next->stmt, AT_SEQ)))
            next = reader;
    }
    return next;
}

//  The row at reader, decrypted when the query has keys
static void
s_row (query_t *self, mesh_audit_file_reader_t *reader, mesh_audit_query_row_t *row)
{
    sqlite3_stmt *stmt = reader->stmt;
    *row = (mesh_audit_query_row_t) { .seq = (uint64_t) sqlite3_column_int64 (stmt, AT_SEQ),
                                      .file = reader->name };
    mesh_audit_file_row (stmt, &row->record);
    const char *enc_key_id = (const char *) sqlite3_column_text (stmt, AT_ENC_KEY_ID);
    row->enc_key_id = enc_key_id ? enc_key_id : "";
    if (!self->keys)
        return;
    const char *error = mesh_audit_seal_open (self->seal, self->keys, &row->record.id, "prompt",
                                              sqlite3_column_blob (stmt, AT_PROMPT),
                                              (size_t) sqlite3_column_bytes (stmt, AT_PROMPT),
                                              &self->prompt);
    if (!error)
        error = mesh_audit_seal_open (self->seal, self->keys, &row->record.id, "response",
                                      sqlite3_column_blob (stmt, AT_RESPONSE),
                                      (size_t) sqlite3_column_bytes (stmt, AT_RESPONSE),
                                      &self->response);
    if (error)
        row->decrypt_error = error;
    else {
        row->decrypted = true;
        row->record.prompt = (mesh_bytes_t) { mesh_buf_head (&self->prompt),
                                              mesh_buf_size (&self->prompt) };
        row->record.response = (mesh_bytes_t) { mesh_buf_head (&self->response),
                                                mesh_buf_size (&self->response) };
    }
}

int
mesh_audit_query (const char *dir, const mesh_audit_query_filter_t *filter,
                  mesh_audit_keyring_t *keys, mesh_audit_query_fn *fn, void *arg,
                  char *why, size_t why_size)
{
    static const mesh_audit_query_filter_t none;
    struct dirent **names = NULL;
    int count = mesh_audit_file_list (dir, &names, why, why_size);
    if (count < 0)
        return -1;
    query_t self = { .filter = filter ? filter : &none, .keys = keys };
    self.readers = calloc ((size_t) count + 1, sizeof *self.readers);
    assert (self.readers);
    self.seal = mesh_audit_seal_new ();
    mesh_buf_init (&self.sql);
    mesh_buf_init (&self.prompt);
    mesh_buf_init (&self.response);
    s_select_sql (self.filter, &self.sql);
    int rc = s_open_files (&self, dir, names, count, why, why_size);

    //  Merge the files by time
    for (size_t emitted = 0; rc == 0 && (!self.filter->limit || emitted < self.filter->limit);
         emitted++) {
        mesh_audit_file_reader_t *next = s_next (&self);
        if (!next)
            break;
        mesh_audit_query_row_t row;
        s_row (&self, next, &row);
        rc = fn (arg, &row);
        if (self.prompt.data)
            OPENSSL_cleanse (self.prompt.data, self.prompt.cap);
        if (self.response.data)
            OPENSSL_cleanse (self.response.data, self.response.cap);
        if (rc != 0)
            break;
        int step = sqlite3_step (next->stmt);
        if (step != SQLITE_ROW && step != SQLITE_DONE)
            rc = mesh_audit_file_fail (next->db, next->name, why, why_size);
        next->has_row = step == SQLITE_ROW;
    }
    for (size_t i = 0; i < self.open_count; i++)
        mesh_audit_file_reader_close (&self.readers [i]);
    free (self.readers);
    mesh_audit_file_list_free (names, count);
    mesh_audit_seal_destroy (&self.seal);
    mesh_buf_free (&self.sql);
    mesh_buf_free (&self.prompt);
    mesh_buf_free (&self.response);
    return rc;
}

//  Selftest -----------------------------------------------------------------------

#include "mesh_audit_sample.h"
#include "mesh_audit_store.h"

#include <unistd.h>

#define T_DAY1 MESH_AUDIT_SAMPLE_DAY1
#define T_DAY2 MESH_AUDIT_SAMPLE_DAY2

//  Two day files whose records' times interleave: records 0-2 started
//  and were stored on day one; 3 started on day one, between 0 and 1, and
//  was stored on day two with 4 and 5
static void
s_test_merge (const char *dir, mesh_audit_sample_t *data, mesh_audit_keyring_t *keys,
              EVP_PKEY *signer)
{
    char why [256];
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store);
    int64_t starts [] = { mesh_audit_sample_at (T_DAY1, 1000), mesh_audit_sample_at (T_DAY1, 3000),
                          mesh_audit_sample_at (T_DAY1, 5000), mesh_audit_sample_at (T_DAY1, 2000),
                          mesh_audit_sample_at (T_DAY2, 0), mesh_audit_sample_at (T_DAY2, 1000) };
    for (size_t i = 0; i < 6; i++)
        mesh_audit_sample_record (data, i, starts [i]);
    assert (mesh_audit_store_append (store, data->records, 3, mesh_audit_sample_at (T_DAY1, 6000),
                                     why, sizeof why) == 3);
    assert (mesh_audit_store_append (store, data->records + 3, 3,
                                     mesh_audit_sample_at (T_DAY2, 2000), why, sizeof why) == 3);
    mesh_audit_store_close (&store);

    mesh_audit_sample_seen_t *seen = mesh_audit_sample_query (dir, NULL, keys);
    assert (seen->rows == 6 && seen->ordered && seen->decrypted == 6);
    uint64_t order [] = { 1, 4, 2, 3, 5, 6 };
    assert (memcmp (seen->seqs, order, sizeof order) == 0);
    assert (strstr (seen->first_prompt, "\"secret 0\""));
    //  Each filter alone, and two together
    mesh_audit_query_filter_t filter = { .until_ms = mesh_audit_sample_at (T_DAY1, 3000) };
    seen = mesh_audit_sample_query (dir, &filter, NULL);
    assert (seen->rows == 2 && seen->seqs [1] == 4 && seen->decrypted == 0);
    filter = (mesh_audit_query_filter_t) { .since_ms = mesh_audit_sample_at (T_DAY2, 0) };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == 2);
    filter = (mesh_audit_query_filter_t) { .tenant = "t1" };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == 3);
    filter = (mesh_audit_query_filter_t) { .model = "alias-b" };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == 2);
    filter = (mesh_audit_query_filter_t) { .model = "m-b", .tenant = "t1" };
    seen = mesh_audit_sample_query (dir, &filter, NULL);
    assert (seen->rows == 1 && seen->seqs [0] == 4);
    filter = (mesh_audit_query_filter_t) { .status = 429, .outcome = MESH_AUDIT_UPSTREAM_ERROR };
    seen = mesh_audit_sample_query (dir, &filter, NULL);
    assert (seen->rows == 1 && seen->seqs [0] == 5);
    filter = (mesh_audit_query_filter_t) { .outcome = MESH_AUDIT_OK, .limit = 2 };
    assert (mesh_audit_sample_query (dir, &filter, NULL)->rows == 2);
    mesh_audit_sample_rmtree (dir);
}

void
mesh_audit_query_test (bool verbose)
{
    (void) verbose;
    char root [1024], dir [2048], path [4096], why [256];
    mesh_audit_sample_tmpdir (root, sizeof root);
    mesh_audit_sample_t *data = calloc (1, sizeof *data);
    assert (data);
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (NULL, MESH_AUDIT_SAMPLE_KEY1, why,
                                                          sizeof why);
    EVP_PKEY *signer = mesh_audit_sample_signer (root, "signing", NULL);
    assert (keys && signer);

    snprintf (dir, sizeof dir, "%s/merge", root);
    s_test_merge (dir, data, keys, signer);

    //  Scenario 20: a flipped bit in an encrypted field fails that
    //  record's decryption cleanly; the others decrypt
    snprintf (dir, sizeof dir, "%s/flipped", root);
    mesh_audit_sample_store (dir, data, 20, keys, signer);
    mesh_audit_sample_sql (dir, T_DAY1, "UPDATE records SET response = CAST ("
                           "substr (response, 1, 40) || (CASE WHEN substr (response, 41, 1) = "
                           "x'41' THEN x'40' ELSE x'41' END) || substr (response, 42) AS BLOB) "
                           "WHERE seq = 12");
    mesh_audit_sample_seen_t *seen = mesh_audit_sample_query (dir, NULL, keys);
    assert (seen->rows == 20 && seen->decrypted == 19 && seen->failed == 1);
    assert (seen->seqs [11] == 12 && strstr (seen->errors [11], "authentication failed"));

    //  The callback stops it
    static mesh_audit_sample_seen_t stopper;
    stopper.ordered = true;
    stopper.stop_after = 3;
    assert (mesh_audit_query (dir, NULL, NULL, mesh_audit_sample_collect, &stopper,
                              why, sizeof why) == 7);
    assert (stopper.rows == 3);
    snprintf (path, sizeof path, "%s/nowhere", root);
    assert (mesh_audit_query (path, NULL, NULL, mesh_audit_sample_collect, &stopper,
                              why, sizeof why) == -1);
    assert (strstr (why, path));
    //  An empty store has no rows
    assert (mesh_audit_sample_query (root, NULL, keys)->rows == 0);

    mesh_audit_keyring_destroy (&keys);
    EVP_PKEY_free (signer);
    free (data);
    mesh_audit_sample_rmtree (root);
    assert (access (root, F_OK) != 0);
}
