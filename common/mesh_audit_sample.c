/*  mesh_audit_sample: selftest support for the audit store's modules (see
    mesh_audit_sample.h).                                                   */
#include "mesh_audit_sample.h"
#include "mesh_audit_file.h"
#include "mesh_audit_seal.h"
#include "mesh_audit_store.h"
#include "mesh_audit_verify.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mesh_bytes_t
mesh_audit_sample_text (const char *text)
{
    return (mesh_bytes_t) { text, strlen (text) };
}

mesh_audit_record_t *
mesh_audit_sample_record (mesh_audit_sample_t *self, size_t i, int64_t start_ms)
{
    assert (i < MESH_AUDIT_SAMPLE_MAX);
    mesh_id_new (self->ids [i]);
    snprintf (self->prompts [i], sizeof self->prompts [i],
              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"secret %zu\"}]}", i);
    snprintf (self->responses [i], sizeof self->responses [i],
              "{\"choices\":[{\"delta\":{\"content\":\"Echo:\"}}]}\n"
              "{\"choices\":[{\"delta\":{\"content\":\" secret %zu\"}}]}", i);
    bool failed = i % 5 == 4;
    self->records [i] = (mesh_audit_record_t) {
        .id = mesh_audit_sample_text (self->ids [i]), .start_ms = (uint64_t) start_ms,
        .end_ms = (uint64_t) start_ms + 150, .tenant = mesh_audit_sample_text (i % 2 ? "t1" : "t0"),
        .key_id = mesh_audit_sample_text ("key-a"),
        .model_requested = mesh_audit_sample_text (i % 3 ? "m-a" : "alias-b"),
        .model = mesh_audit_sample_text (i % 3 ? "m-a" : "m-b"),
        .endpoint = mesh_audit_sample_text ("https://api.example.com/v1/chat/completions"),
        .region = mesh_audit_sample_text ("eu"),
        .params = mesh_audit_sample_text ("{\"temperature\":0.5,\"stream\":true}"),
        .stream = true, .status = failed ? 429 : 200,
        .outcome = mesh_audit_sample_text (failed ? MESH_AUDIT_UPSTREAM_ERROR : MESH_AUDIT_OK),
        .error_code = mesh_audit_sample_text (failed ? "rate_limit_exceeded" : ""),
        .attempts = 1, .ttft_us = 5000 + i, .total_us = 150000, .prompt_tokens = 10 + i,
        .completion_tokens = 20 + i, .bytes_out = 300,
        .prompt = mesh_audit_sample_text (self->prompts [i]),
        .response = mesh_audit_sample_text (self->responses [i])
    };
    return &self->records [i];
}

int64_t
mesh_audit_sample_at (const char *day, int64_t offset_ms)
{
    return mesh_audit_file_day_start_ms (day) + offset_ms;
}

EVP_PKEY *
mesh_audit_sample_signer (const char *dir, const char *name, EVP_PKEY **public_key)
{
    char private_path [4096], public_path [4096], why [256];
    snprintf (private_path, sizeof private_path, "%s/%s.pem", dir, name);
    snprintf (public_path, sizeof public_path, "%s/%s.pub.pem", dir, name);
    EVP_PKEY *signer = mesh_audit_seal_signer_load (private_path, public_path, why, sizeof why);
    assert (signer);
    if (public_key) {
        *public_key = mesh_audit_seal_public_key_load (public_path, why, sizeof why);
        assert (*public_key);
    }
    return signer;
}

void
mesh_audit_sample_store (const char *dir, mesh_audit_sample_t *self, size_t count,
                         mesh_audit_keyring_t *keys, EVP_PKEY *signer)
{
    char why [256];
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store);
    const char *day = MESH_AUDIT_SAMPLE_DAY1;
    for (size_t i = 0; i < count; i++) {
        mesh_audit_sample_record (self, i, mesh_audit_sample_at (day, 3600000
                                                                      + (int64_t) i * 1000));
        assert (mesh_audit_store_append (store, &self->records [i], 1,
                                         mesh_audit_sample_at (day, 3600000 + (int64_t) i * 1000
                                                               + 500), why, sizeof why) == 1);
        if (i % 10 == 9)
            assert (mesh_audit_store_checkpoint (store, mesh_audit_sample_at (day, 3600000
                                                 + (int64_t) i * 1000 + 600), why, sizeof why)
                    == 0);
    }
    mesh_audit_store_close (&store);
}

void
mesh_audit_sample_bench (const char *dir, mesh_audit_keyring_t *keys, EVP_PKEY *signer,
                         size_t total)
{
    const char *batch_text = getenv ("SEEKMESH_AUDIT_BENCH_BATCH");
    size_t batch = batch_text && atoi (batch_text) > 0 ? (size_t) atoi (batch_text) : 4096;
    char why [256];
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store);
    mesh_audit_record_t *records = calloc (batch, sizeof *records);
    char (*ids) [MESH_ID_LEN + 1] = calloc (batch, MESH_ID_LEN + 1);
    char *prompt = malloc (1024), *response = malloc (1024);
    assert (records && ids && prompt && response);
    static const char words [] = "the quick brown fox jumps over the lazy dog ";
    for (size_t i = 0; i < 1024; i++) {
        prompt [i] = words [i % (sizeof words - 1)];
        response [i] = words [(i * 7) % (sizeof words - 1)];
    }
    int64_t start_us = mesh_mono_us (), slowest_us = 0;
    for (size_t done = 0; done < total; ) {
        size_t count = MESH_MIN (batch, total - done);
        int64_t now = mesh_wall_ms ();
        for (size_t i = 0; i < count; i++) {
            mesh_id_new (ids [i]);
            records [i] = (mesh_audit_record_t) {
                .id = { ids [i], MESH_ID_LEN }, .start_ms = (uint64_t) now - 200,
                .end_ms = (uint64_t) now,
                .tenant = mesh_audit_sample_text (i % 2 ? "acme" : "globex"),
                .key_id = mesh_audit_sample_text ("key-1"),
                .model_requested = mesh_audit_sample_text ("deepseek-chat"),
                .model = mesh_audit_sample_text (i % 3 ? "deepseek-chat" : "deepseek-reasoner"),
                .endpoint = mesh_audit_sample_text ("https://api.deepseek.com/v1/chat/completions"),
                .region = mesh_audit_sample_text ("eu-west"),
                .params = mesh_audit_sample_text ("{\"temperature\":0.7,\"stream\":true,"
                                                  "\"max_tokens\":512}"),
                .stream = true, .status = 200, .outcome = mesh_audit_sample_text (MESH_AUDIT_OK),
                .error_code = mesh_audit_sample_text (""), .attempts = 1, .ttft_us = 80000,
                .total_us = 200000, .prompt_tokens = 250, .completion_tokens = 250,
                .bytes_out = 2100, .prompt = { prompt, 1024 }, .response = { response, 1024 } };
        }
        int64_t batch_us = mesh_mono_us ();
        int stored = mesh_audit_store_append (store, records, count, now, why, sizeof why);
        assert (stored == (int) count);
        slowest_us = MESH_MAX (slowest_us, mesh_mono_us () - batch_us);
        assert (mesh_audit_store_checkpoint (store, now, why, sizeof why) == 0);
        done += count;
    }
    double seconds = (double) (mesh_mono_us () - start_us) / 1e6;
    printf ("    bench: %zu records (1 KiB prompt, 1 KiB response) in batches of %zu: "
            "%.2f s, %.0f durable records/s, slowest batch %.1f ms\n", total, batch, seconds,
            (double) total / seconds, (double) slowest_us / 1000);
    mesh_audit_store_close (&store);
    free (records);
    free (ids);
    free (prompt);
    free (response);
}

//  Files ------------------------------------------------------------------------

void
mesh_audit_sample_tmpdir (char *root, size_t size)
{
    const char *tmp = getenv ("TMPDIR");
    snprintf (root, size, "%s/mesh-audit-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert (mkdtemp (root));
}

static int
s_unlink (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove (path);
}

void
mesh_audit_sample_rmtree (const char *dir)
{
    nftw (dir, s_unlink, 16, FTW_DEPTH | FTW_PHYS);
}

void
mesh_audit_sample_write (const char *path, const char *text)
{
    FILE *file = fopen (path, "w");
    assert (file);
    fputs (text, file);
    fclose (file);
}

void
mesh_audit_sample_sql (const char *dir, const char *day, const char *sql)
{
    char path [4096];
    snprintf (path, sizeof path, "%.2000s/audit-%.10s.db", dir, day);
    sqlite3 *db = NULL;
    assert (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL)
            == SQLITE_OK);
    char *error = NULL;
    if (sqlite3_exec (db, sql, NULL, NULL, &error) != SQLITE_OK) {
        fprintf (stderr, "mesh_audit_sample: %s: %s\n", sql, error);
        assert (false);
    }
    sqlite3_close (db);
}

//  Reading ----------------------------------------------------------------------

void
mesh_audit_sample_verify (const char *dir, const char *from, EVP_PKEY *public_key, int want_rc,
                          const char *want, bool verbose)
{
    mesh_buf_t report;
    mesh_buf_init (&report);
    char why [256] = "";
    int rc = mesh_audit_verify (dir, from, public_key, 0, &report, why, sizeof why);
    mesh_buf_append (&report, "", 1);
    if (verbose)
        printf ("    verify: %d %s%s", rc, report.data, rc < 0 ? why : "");
    if (rc != want_rc || !strstr (report.data, want ? want : "ok:")) {
        fprintf (stderr, "mesh_audit_sample: verify: want %d '%s', got %d '%s' %s\n",
                 want_rc, want ? want : "ok:", rc, report.data, why);
        assert (false);
    }
    mesh_buf_free (&report);
}

int
mesh_audit_sample_collect (void *arg, const mesh_audit_query_row_t *row)
{
    mesh_audit_sample_seen_t *seen = arg;
    if (row->record.start_ms < (uint64_t) seen->last_start)
        seen->ordered = false;
    seen->last_start = (int64_t) row->record.start_ms;
    //  Text columns come NUL-terminated
    assert (row->record.tenant.data [row->record.tenant.size] == 0);
    assert (row->file && strncmp (row->file, "audit-", 6) == 0 && row->enc_key_id);
    assert (seen->rows < MESH_AUDIT_SAMPLE_MAX);
    seen->seqs [seen->rows] = row->seq;
    seen->errors [seen->rows] = row->decrypt_error;
    if (row->decrypted) {
        seen->decrypted++;
        assert (row->record.prompt.data [row->record.prompt.size] == 0);
        if (seen->decrypted == 1)
            snprintf (seen->first_prompt, sizeof seen->first_prompt, "%s", row->record.prompt.data);
    }
    else {
        assert (row->record.prompt.size == 0 && row->record.response.size == 0);
        if (row->decrypt_error)
            seen->failed++;
    }
    seen->rows++;
    return seen->stop_after && seen->rows == seen->stop_after ? 7 : 0;
}

mesh_audit_sample_seen_t *
mesh_audit_sample_query (const char *dir, const mesh_audit_query_filter_t *filter,
                         mesh_audit_keyring_t *keys)
{
    static mesh_audit_sample_seen_t seen;
    memset (&seen, 0, sizeof seen);
    seen.ordered = true;
    char why [256];
    int rc = mesh_audit_query (dir, filter, keys, mesh_audit_sample_collect, &seen,
                               why, sizeof why);
    if (rc != 0)
        fprintf (stderr, "mesh_audit_sample: query: %d %s\n", rc, why);
    assert (rc == 0);
    return &seen;
}

//  Selftest -----------------------------------------------------------------------

void
mesh_audit_sample_test (bool verbose)
{
    char root [1024], dir [2048], why [256];
    mesh_audit_sample_tmpdir (root, sizeof root);
    mesh_audit_sample_t *data = calloc (1, sizeof *data);
    assert (data);
    //  Records: as described, each with its own id
    mesh_audit_record_t *record = mesh_audit_sample_record (data, 4, 1000);
    assert (record->status == 429 && record->tenant.size == 2 && record->start_ms == 1000);
    assert (mesh_streq (record->model_requested.data, "m-a"));
    assert (strcmp (data->ids [4], mesh_audit_sample_record (data, 3, 1000)->id.data) != 0);
    assert (mesh_audit_sample_at (MESH_AUDIT_SAMPLE_DAY2, 5) == 1772323200000LL + 86400000 + 5);
    //  A store of them: every record stored once, sound, readable
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (NULL, MESH_AUDIT_SAMPLE_KEY2, why,
                                                          sizeof why);
    EVP_PKEY *public_key = NULL;
    EVP_PKEY *signer = mesh_audit_sample_signer (root, "signing", &public_key);
    snprintf (dir, sizeof dir, "%s/store", root);
    mesh_audit_sample_store (dir, data, 25, keys, signer);
    //  (checkpoints after the 10th and 20th record, and the close's)
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "25 records, seq 1 to 25, 1 day files, "
                              "3 checkpoints", verbose);
    mesh_audit_sample_seen_t *seen = mesh_audit_sample_query (dir, NULL, keys);
    assert (seen->rows == 25 && seen->decrypted == 25 && seen->ordered);
    assert (strstr (seen->first_prompt, "\"secret 0\""));
    mesh_audit_sample_rmtree (dir);
    assert (access (dir, F_OK) != 0);
    mesh_audit_keyring_destroy (&keys);
    EVP_PKEY_free (signer);
    EVP_PKEY_free (public_key);
    free (data);
    mesh_audit_sample_rmtree (root);
    assert (access (root, F_OK) != 0);
}
