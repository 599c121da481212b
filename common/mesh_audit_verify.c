/*  mesh_audit_verify: the audit store checked (see mesh_audit_verify.h).

    First every file's meta and checkpoints (a checkpoint may sit in a
    later file than its record, and one past the last record is a cut),
    then the records of each file in seq order, the chain taken one step
    per record and compared with the stored value and with each
    checkpoint's.  The first thing wrong ends it, named in the report.
    Any thread.                                                             */
#include "mesh_audit_verify.h"
#include "mesh_audit_file.h"
#include "mesh_audit_seal.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAIN_BYTES   MESH_AUDIT_SEAL_CHAIN_BYTES
#define AT_SEQ        MESH_AUDIT_FILE_AT_SEQ
#define AT_ID         1                 //  the record's first column
#define AT_ENC_KEY_ID MESH_AUDIT_FILE_AT_ENC_KEY_ID
#define AT_PROMPT     MESH_AUDIT_FILE_AT_PROMPT
#define AT_RESPONSE   MESH_AUDIT_FILE_AT_RESPONSE
#define AT_CHAIN      MESH_AUDIT_FILE_AT_CHAIN

typedef struct {
    uint64_t seq;
    unsigned char chain [CHAIN_BYTES];
    int64_t time_ms;
    bool signature_ok;
    char file [MESH_AUDIT_FILE_NAME_LEN + 1];   //  the day file that holds it
} checkpoint_t;

//  One verification's state
typedef struct {
    const char *dir;
    EVP_PKEY *public_key;               //  NULL: signatures not checked
    mesh_buf_t *report;
    //  The day files, with where each says it starts
    mesh_audit_file_reader_t *readers;
    size_t files;
    uint64_t *start_seqs;
    unsigned char (*start_chains) [CHAIN_BYTES];
    //  Every file's checkpoints, by seq
    checkpoint_t *checkpoints;
    size_t checkpoint_count;
    size_t next_checkpoint;             //  the first not yet matched with its record
    uint64_t last_good_checkpoint;
    //  The walk: the seq the next record must have, the chain so far
    uint64_t expected, first_seq, records;
    unsigned char chain [CHAIN_BYTES];
    mesh_audit_seal_t *seal;
    mesh_buf_t sql, plain;
} verify_t;

static int
s_bad (verify_t *self, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

//  Writes the first bad record's line into the report; returns 1
static int
s_bad (verify_t *self, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    char line [1024];
    vsnprintf (line, sizeof line, fmt, args);
    va_end (args);
    mesh_buf_append_str (self->report, line);
    mesh_buf_append (self->report, "\n", 1);
    return 1;
}

//  Reading ----------------------------------------------------------------------

//  Checkpoints by seq; a file's own order breaks ties
static int
s_checkpoint_order (const void *a, const void *b)
{
    const checkpoint_t *left = a, *right = b;
    if (left->seq != right->seq)
        return left->seq < right->seq ? -1 : 1;
    int by_file = strcmp (left->file, right->file);
    if (by_file)
        return by_file;
    return left->time_ms < right->time_ms ? -1 : left->time_ms > right->time_ms;
}

//  Adds reader's checkpoints to the list, their signatures checked
static int
s_read_checkpoints (verify_t *self, mesh_audit_file_reader_t *reader, const char *path,
                    char *why, size_t why_size)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (reader->db, "SELECT seq, chain, time_ms, signature FROM "
                            "checkpoints ORDER BY seq", -1, &stmt, NULL) != SQLITE_OK)
        return mesh_audit_file_fail (reader->db, path, why, why_size);
    while (sqlite3_step (stmt) == SQLITE_ROW) {
        self->checkpoints = realloc (self->checkpoints,
                                     (self->checkpoint_count + 1) * sizeof *self->checkpoints);
        assert (self->checkpoints);
        checkpoint_t *checkpoint = &self->checkpoints [self->checkpoint_count++];
        memset (checkpoint, 0, sizeof *checkpoint);
        checkpoint->seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
        bool has_chain = sqlite3_column_bytes (stmt, 1) == CHAIN_BYTES;
        if (has_chain)
            memcpy (checkpoint->chain, sqlite3_column_blob (stmt, 1), CHAIN_BYTES);
        checkpoint->time_ms = sqlite3_column_int64 (stmt, 2);
        checkpoint->signature_ok = !self->public_key
            || (has_chain
                && mesh_audit_seal_checkpoint_valid (self->public_key, checkpoint->seq,
                                                     checkpoint->chain, checkpoint->time_ms,
                                                     sqlite3_column_blob (stmt, 3),
                                                     (size_t) sqlite3_column_bytes (stmt, 3)));
        snprintf (checkpoint->file, sizeof checkpoint->file, "%s", reader->name);
    }
    sqlite3_finalize (stmt);
    return 0;
}

//  Opens day file name as the next reader: in one snapshot (the service
//  may append), its meta and checkpoints read, its records' select
//  prepared.  -1 with a reason.
static int
s_open_file (verify_t *self, const char *name, char *why, size_t why_size)
{
    mesh_audit_file_reader_t *reader = &self->readers [self->files];
    snprintf (reader->name, sizeof reader->name, "%.*s", MESH_AUDIT_FILE_NAME_LEN, name);
    char path [4096];
    snprintf (path, sizeof path, "%s/%s", self->dir, reader->name);
    if (!(reader->db = mesh_audit_file_open_read (self->dir, path, why, why_size)))
        return -1;
    size_t f = self->files++;
    if (mesh_audit_file_exec (reader->db, "BEGIN", path, why, why_size) < 0
    ||  mesh_audit_file_read_meta (reader->db, path, &self->start_seqs [f],
                                   self->start_chains [f], why, why_size) < 0
    ||  s_read_checkpoints (self, reader, path, why, why_size) < 0)
        return -1;
    if (sqlite3_prepare_v2 (reader->db, mesh_buf_head (&self->sql), -1, &reader->stmt, NULL)
        != SQLITE_OK)
        return mesh_audit_file_fail (reader->db, path, why, why_size);
    return 0;
}

//  Checking -----------------------------------------------------------------------

//  Checks that a row's sealed fields have their shape under the key id
//  the row names; NULL, or what is wrong
static const char *
s_check_sealed (sqlite3_stmt *stmt, char *what, size_t what_size)
{
    const char *enc_key_id = sqlite3_column_type (stmt, AT_ENC_KEY_ID) == SQLITE_TEXT
                           ? (const char *) sqlite3_column_text (stmt, AT_ENC_KEY_ID) : NULL;
    for (int at = AT_PROMPT; at <= AT_RESPONSE; at++) {
        mesh_audit_seal_parts_t sealed;
        if (sqlite3_column_type (stmt, at) != SQLITE_BLOB
        ||  mesh_audit_seal_parse (sqlite3_column_blob (stmt, at),
                                   (size_t) sqlite3_column_bytes (stmt, at), &sealed) < 0) {
            snprintf (what, what_size, "column %s is not a sealed field",
                      at == AT_PROMPT ? "prompt" : "response");
            return what;
        }
        if (!enc_key_id || !mesh_memeq (sealed.key_id, sealed.key_id_len, enc_key_id)) {
            snprintf (what, what_size, "column enc_key_id is not the key id of its %s",
                      at == AT_PROMPT ? "prompt" : "response");
            return what;
        }
    }
    return NULL;
}

//  The checkpoints of seq, the record just checked: each signed, and
//  signing the chain the records give.  0, or 1 (reported).
static int
s_check_checkpoints (verify_t *self, const char *file, uint64_t seq)
{
    for (; self->next_checkpoint < self->checkpoint_count
           && self->checkpoints [self->next_checkpoint].seq == seq; self->next_checkpoint++) {
        const checkpoint_t *checkpoint = &self->checkpoints [self->next_checkpoint];
        if (!checkpoint->signature_ok)
            return s_bad (self, "%s checkpoint of seq %llu: bad signature", checkpoint->file,
                          (unsigned long long) seq);
        if (memcmp (checkpoint->chain, self->chain, CHAIN_BYTES) != 0)
            return s_bad (self, "%s seq %llu: the records do not give the chain value its "
                          "checkpoint signed: a record from seq %llu to %llu was changed and "
                          "the chain rewritten", file, (unsigned long long) seq,
                          (unsigned long long) self->last_good_checkpoint + 1,
                          (unsigned long long) seq);
        self->last_good_checkpoint = seq;
    }
    return 0;
}

//  The record at stmt, the next of file: its place, its columns, its
//  chain value, then the checkpoints of it.  0, or 1 (reported).
static int
s_check_record (verify_t *self, const char *file, sqlite3_stmt *stmt)
{
    uint64_t seq = (uint64_t) sqlite3_column_int64 (stmt, AT_SEQ);
    //  Its id, for naming it (the type first: reading converts)
    char id [MESH_ID_LEN + 1] = "?";
    if (sqlite3_column_type (stmt, AT_ID) == SQLITE_TEXT)
        snprintf (id, sizeof id, "%s", (const char *) sqlite3_column_text (stmt, AT_ID));
    if (seq > self->expected)
        return s_bad (self, "%s seq %llu: missing (the next record stored is seq %llu, id "
                      "%.26s)", file, (unsigned long long) self->expected,
                      (unsigned long long) seq, id);
    if (seq < self->expected)
        return s_bad (self, "%s seq %llu (id %.26s): out of place: seq %llu was expected (its "
                      "seq or the file's start was changed)", file, (unsigned long long) seq,
                      id, (unsigned long long) self->expected);
    //  Its columns' types, then its canonical bytes against its chain
    char what [256];
    const char *wrong = mesh_audit_file_check_types (stmt, what, sizeof what);
    if (!wrong)
        wrong = s_check_sealed (stmt, what, sizeof what);
    if (wrong)
        return s_bad (self, "%s seq %llu (id %.26s): %s", file, (unsigned long long) seq, id,
                      wrong);
    mesh_audit_record_t record;
    mesh_audit_file_row (stmt, &record);
    if (mesh_audit_seal_plain (&record, &self->plain) < 0)
        return s_bad (self, "%s seq %llu (id %.26s): its columns break the limits of a record: "
                      "a column was changed", file, (unsigned long long) seq, id);
    unsigned char digest [CHAIN_BYTES], next [CHAIN_BYTES];
    mesh_audit_seal_digest (self->seal, mesh_buf_head (&self->plain), mesh_buf_size (&self->plain),
                            sqlite3_column_blob (stmt, AT_PROMPT),
                            (size_t) sqlite3_column_bytes (stmt, AT_PROMPT),
                            sqlite3_column_blob (stmt, AT_RESPONSE),
                            (size_t) sqlite3_column_bytes (stmt, AT_RESPONSE), digest);
    mesh_audit_seal_chain (self->seal, self->chain, seq, digest, next);
    if (sqlite3_column_bytes (stmt, AT_CHAIN) != CHAIN_BYTES
    ||  memcmp (sqlite3_column_blob (stmt, AT_CHAIN), next, CHAIN_BYTES) != 0)
        return s_bad (self, "%s seq %llu (id %.26s): its chain value does not match its "
                      "contents: the record was changed, moved or replaced", file,
                      (unsigned long long) seq, id);
    memcpy (self->chain, next, CHAIN_BYTES);
    self->records++;
    self->expected++;
    return s_check_checkpoints (self, file, seq);
}

//  Day file f: it starts where the one before ends, then each record.
//  0, 1 (reported), or -1 with a reason.
static int
s_check_file (verify_t *self, size_t f, char *why, size_t why_size)
{
    mesh_audit_file_reader_t *reader = &self->readers [f];
    if (self->start_seqs [f] != self->expected)
        return s_bad (self, "%s seq %llu: missing (this file starts at seq %llu; a day file or "
                      "the end of the one before was deleted)",
                      self->start_seqs [f] > self->expected ? reader->name
                                                            : self->readers [f - 1].name,
                      (unsigned long long) MESH_MIN (self->expected, self->start_seqs [f]),
                      (unsigned long long) self->start_seqs [f]);
    if (memcmp (self->start_chains [f], self->chain, CHAIN_BYTES) != 0)
        return s_bad (self, "%s seq %llu: the file's start chain value is not the end of %s "
                      "(its meta was changed)", reader->name,
                      (unsigned long long) self->expected, self->readers [f - 1].name);
    int step;
    while ((step = sqlite3_step (reader->stmt)) == SQLITE_ROW)
        if (s_check_record (self, reader->name, reader->stmt))
            return 1;
    if (step != SQLITE_DONE)
        return mesh_audit_file_fail (reader->db, reader->name, why, why_size);
    return 0;
}

//  Every checkpoint named a record: none past the last one (a cut tail),
//  none before the first file left unsigned.  0, or 1 (reported).
static int
s_check_ends (verify_t *self, bool before)
{
    if (before) {
        //  Checkpoints of records before the files verified: signatures only
        for (; self->next_checkpoint < self->checkpoint_count
               && self->checkpoints [self->next_checkpoint].seq < self->expected;
               self->next_checkpoint++)
            if (!self->checkpoints [self->next_checkpoint].signature_ok)
                return s_bad (self, "%s checkpoint of seq %llu: bad signature",
                              self->checkpoints [self->next_checkpoint].file,
                              (unsigned long long) self->checkpoints [self->next_checkpoint].seq);
        return 0;
    }
    if (self->next_checkpoint == self->checkpoint_count)
        return 0;
    const checkpoint_t *checkpoint = &self->checkpoints [self->next_checkpoint];
    if (!checkpoint->signature_ok)
        return s_bad (self, "%s checkpoint of seq %llu: bad signature", checkpoint->file,
                      (unsigned long long) checkpoint->seq);
    return s_bad (self, "%s seq %llu: missing (a signed checkpoint names records up to seq "
                  "%llu: the tail was cut)", self->files ? self->readers [self->files - 1].name
                                                          : "-",
                  (unsigned long long) self->expected, (unsigned long long) checkpoint->seq);
}

//  The walk over the open files.  0, 1 (reported), or -1 with a reason.
static int
s_check (verify_t *self, char *why, size_t why_size)
{
    if (self->checkpoint_count)
        qsort (self->checkpoints, self->checkpoint_count, sizeof *self->checkpoints,
               s_checkpoint_order);
    self->expected = self->files ? self->start_seqs [0] : 1;
    self->first_seq = self->expected;
    if (self->files)
        memcpy (self->chain, self->start_chains [0], CHAIN_BYTES);
    int rc = s_check_ends (self, true);
    self->last_good_checkpoint = self->expected - 1;
    for (size_t f = 0; rc == 0 && f < self->files; f++)
        rc = s_check_file (self, f, why, why_size);
    if (rc == 0)
        rc = s_check_ends (self, false);
    if (rc == 0 && self->records)
        mesh_buf_printf (self->report, "ok: %llu records, seq %llu to %llu, %zu day files, %zu "
                         "checkpoints%s\n", (unsigned long long) self->records,
                         (unsigned long long) self->first_seq,
                         (unsigned long long) self->expected - 1, self->files,
                         self->checkpoint_count,
                         self->public_key ? "" : " (signatures not checked)");
    else
    if (rc == 0)
        mesh_buf_printf (self->report, "ok: no records in %zu day files\n", self->files);
    return rc;
}

int
mesh_audit_verify (const char *dir, const char *from_date, EVP_PKEY *public_key,
                   mesh_buf_t *report, char *why, size_t why_size)
{
    if (from_date && mesh_audit_file_day_start_ms (from_date) < 0)
        return mesh_fail (why, why_size, "'%s' is not a date (YYYY-MM-DD)", from_date);
    struct dirent **names = NULL;
    int count = mesh_audit_file_list (dir, &names, why, why_size);
    if (count < 0)
        return -1;
    int first = 0;
    while (from_date && first < count && strncmp (names [first]->d_name + 6, from_date, 10) < 0)
        first++;
    size_t room = (size_t) (count - first) + 1;
    verify_t self = { .dir = dir, .public_key = public_key, .report = report };
    self.readers = calloc (room, sizeof *self.readers);
    self.start_seqs = calloc (room, sizeof *self.start_seqs);
    self.start_chains = calloc (room, CHAIN_BYTES);
    assert (self.readers && self.start_seqs && self.start_chains);
    self.seal = mesh_audit_seal_new ();
    mesh_buf_init (&self.sql);
    mesh_buf_init (&self.plain);
    mesh_buf_append_str (&self.sql, "SELECT ");
    mesh_audit_file_columns (&self.sql);
    mesh_buf_append_str (&self.sql, " FROM records ORDER BY seq");
    mesh_buf_append (&self.sql, "", 1);

    int rc = 0;
    for (int i = first; rc == 0 && i < count; i++)
        rc = s_open_file (&self, names [i]->d_name, why, why_size);
    if (rc == 0)
        rc = s_check (&self, why, why_size);

    for (size_t i = 0; i < self.files; i++)
        mesh_audit_file_reader_close (&self.readers [i]);
    free (self.readers);
    free (self.checkpoints);
    free (self.start_seqs);
    free (self.start_chains);
    mesh_audit_file_list_free (names, count);
    mesh_audit_seal_destroy (&self.seal);
    mesh_buf_free (&self.sql);
    mesh_buf_free (&self.plain);
    return rc;
}

//  Selftest -----------------------------------------------------------------------

#include "mesh_audit_sample.h"
#include "mesh_audit_store.h"

#include <sys/stat.h>
#include <unistd.h>

#define T_DAY1 MESH_AUDIT_SAMPLE_DAY1
#define T_DAY2 MESH_AUDIT_SAMPLE_DAY2
#define T_DAY3 MESH_AUDIT_SAMPLE_DAY3

//  Recomputes the chain from seq on, as someone who edited a record
//  without the signing key would
static void
s_test_rechain (const char *dir, const char *day, uint64_t from_seq)
{
    char path [4096];
    snprintf (path, sizeof path, "%.2000s/audit-%.10s.db", dir, day);
    sqlite3 *db = NULL;
    assert (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
    mesh_buf_t sql, plain;
    mesh_buf_init (&sql);
    mesh_buf_init (&plain);
    mesh_buf_append_str (&sql, "SELECT ");
    mesh_audit_file_columns (&sql);
    mesh_buf_append_str (&sql, " FROM records ORDER BY seq");
    mesh_buf_append (&sql, "", 1);
    sqlite3_stmt *select = NULL, *update = NULL;
    assert (sqlite3_prepare_v2 (db, sql.data, -1, &select, NULL) == SQLITE_OK);
    assert (sqlite3_prepare_v2 (db, "UPDATE records SET chain = ? WHERE seq = ?", -1, &update,
                                NULL) == SQLITE_OK);
    mesh_audit_seal_t *seal = mesh_audit_seal_new ();
    unsigned char chain [CHAIN_BYTES];
    memset (chain, 0, sizeof chain);
    typedef struct { uint64_t seq; unsigned char chain [CHAIN_BYTES]; } change_t;
    change_t *changes = calloc (400, sizeof *changes);
    size_t count = 0;
    while (sqlite3_step (select) == SQLITE_ROW) {
        uint64_t seq = (uint64_t) sqlite3_column_int64 (select, AT_SEQ);
        if (seq < from_seq) {
            memcpy (chain, sqlite3_column_blob (select, AT_CHAIN), CHAIN_BYTES);
            continue;
        }
        mesh_audit_record_t record;
        mesh_audit_file_row (select, &record);
        assert (mesh_audit_seal_plain (&record, &plain) == 0);
        unsigned char digest [CHAIN_BYTES];
        mesh_audit_seal_digest (seal, plain.data, plain.len,
                                sqlite3_column_blob (select, AT_PROMPT),
                                (size_t) sqlite3_column_bytes (select, AT_PROMPT),
                                sqlite3_column_blob (select, AT_RESPONSE),
                                (size_t) sqlite3_column_bytes (select, AT_RESPONSE), digest);
        mesh_audit_seal_chain (seal, chain, seq, digest, chain);
        changes [count].seq = seq;
        memcpy (changes [count++].chain, chain, CHAIN_BYTES);
    }
    sqlite3_finalize (select);
    for (size_t i = 0; i < count; i++) {
        sqlite3_bind_blob (update, 1, changes [i].chain, CHAIN_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64 (update, 2, (int64_t) changes [i].seq);
        assert (sqlite3_step (update) == SQLITE_DONE);
        sqlite3_reset (update);
    }
    sqlite3_finalize (update);
    sqlite3_close (db);
    free (changes);
    mesh_audit_seal_destroy (&seal);
    mesh_buf_free (&sql);
    mesh_buf_free (&plain);
}

//  Scenario 19: one record edited, deleted or reordered on disk; the
//  verifier names the first bad record
static void
s_test_tampers (const char *root, mesh_audit_sample_t *data, mesh_audit_keyring_t *keys,
                EVP_PKEY *signer, EVP_PKEY *public_key, bool verbose)
{
    char dir [2048], why [256];
    mesh_buf_t report;
    mesh_buf_init (&report);
    struct { const char *what; const char *sql; const char *want; int rc; } tampers [] = {
        { "an edited column", "UPDATE records SET status = 500 WHERE seq = 5",
          "seq 5 (id ", 1 },
        { "an edited text column", "UPDATE records SET tenant = 'evil' WHERE seq = 6",
          "seq 6 (id ", 1 },
        { "a column of another type", "UPDATE records SET status = 'two hundred' WHERE seq = 7",
          "seq 7 (id ", 1 },
        { "a flipped bit in a ciphertext",
          "UPDATE records SET prompt = CAST (substr (prompt, 1, 30) || "
          "(CASE WHEN substr (prompt, 31, 1) = x'41' THEN x'40' ELSE x'41' END) || "
          "substr (prompt, 32) AS BLOB) WHERE seq = 8", "seq 8 (id ", 1 },
        { "a ciphertext made text", "UPDATE records SET response = CAST (response AS TEXT) "
          "WHERE seq = 8", "seq 8 (id ", 1 },
        { "a ciphertext moved", "UPDATE records SET response = "
          "(SELECT response FROM records WHERE seq = 3) WHERE seq = 9", "seq 9 (id ", 1 },
        { "an edited key id", "UPDATE records SET enc_key_id = 'k2' WHERE seq = 10",
          "seq 10 (id ", 1 },
        { "a deleted row", "DELETE FROM records WHERE seq = 5", "seq 5: missing", 1 },
        { "two rows swapped",
          "UPDATE records SET seq = -1 WHERE seq = 5; UPDATE records SET seq = 5 WHERE seq = 6;"
          "UPDATE records SET seq = 6 WHERE seq = -1", "seq 5 (id ", 1 },
        { "the tail cut before the last checkpoint", "DELETE FROM records WHERE seq > 15",
          "seq 16: missing", 1 },
        //  The limit: a tail cut with the checkpoints after it is only found
        //  with a copy of the last checkpoint kept elsewhere
        { "the tail cut after a checkpoint, with the later ones",
          "DELETE FROM records WHERE seq > 12; DELETE FROM checkpoints WHERE seq > 12",
          "ok: 12 records", 0 },
        { "a bad checkpoint signature",
          "UPDATE checkpoints SET signature = zeroblob (64) WHERE seq = 10",
          "checkpoint of seq 10: bad signature", 1 },
        { "a checkpoint moved", "UPDATE checkpoints SET seq = 11 WHERE seq = 10",
          "checkpoint of seq 11: bad signature", 1 },
        { "the start of the chain", "UPDATE meta SET value = CAST (zeroblob (31) || x'01' AS BLOB) "
          "WHERE name = 'start_chain'", "seq 1 (id ", 1 },
        { "the meta's start seq", "UPDATE meta SET value = 2 WHERE name = 'start_seq'",
          "seq 1 (id ", 1 },
        { "the meta gone", "DELETE FROM meta WHERE name = 'start_chain'", "lacks the start", -1 },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (tampers); i++) {
        if (verbose)
            printf ("  scenario 19: %s\n", tampers [i].what);
        snprintf (dir, sizeof dir, "%s/tamper-%zu", root, i);
        mesh_audit_sample_store (dir, data, 20, keys, signer);
        mesh_audit_sample_verify (dir, NULL, public_key, 0, "20 records", false);
        mesh_audit_sample_sql (dir, T_DAY1, tampers [i].sql);
        int want_rc = tampers [i].rc;
        if (want_rc == -1) {
            mesh_buf_reset (&report);
            assert (mesh_audit_verify (dir, NULL, public_key, &report, why, sizeof why) == -1);
            assert (strstr (why, tampers [i].want));
        }
        else
            mesh_audit_sample_verify (dir, NULL, public_key, want_rc, tampers [i].want, verbose);
        mesh_audit_sample_rmtree (dir);
    }
    mesh_buf_free (&report);
    //  An edit with the chain recomputed after it: the checkpoint catches it
    snprintf (dir, sizeof dir, "%s/rechained", root);
    mesh_audit_sample_store (dir, data, 20, keys, signer);
    mesh_audit_sample_sql (dir, T_DAY1, "UPDATE records SET status = 500 WHERE seq = 14");
    s_test_rechain (dir, T_DAY1, 14);
    mesh_audit_sample_verify (dir, NULL, public_key, 1, "seq 20: the records do not give the "
                              "chain value its checkpoint signed: a record from seq 11 to 20",
                              verbose);
    mesh_audit_sample_rmtree (dir);
}

//  A day file deleted between two others
static void
s_test_days (const char *root, mesh_audit_sample_t *data, mesh_audit_keyring_t *keys,
             EVP_PKEY *signer, EVP_PKEY *public_key, bool verbose)
{
    char dir [2048], path [4096], why [256];
    snprintf (dir, sizeof dir, "%s/days", root);
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    const char *days [] = { T_DAY1, T_DAY2, T_DAY3 };
    for (size_t d = 0; d < 3; d++) {
        for (size_t i = 0; i < 4; i++)
            mesh_audit_sample_record (data, d * 4 + i,
                                      mesh_audit_sample_at (days [d], (int64_t) i * 1000));
        assert (mesh_audit_store_append (store, &data->records [d * 4], 4,
                                         mesh_audit_sample_at (days [d], 5000),
                                         why, sizeof why) == 4);
    }
    mesh_audit_store_close (&store);
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "12 records", verbose);
    snprintf (path, sizeof path, "%s/audit-" T_DAY2 ".db", dir);
    assert (unlink (path) == 0);
    mesh_audit_sample_verify (dir, NULL, public_key, 1, "seq 5: missing", verbose);
    //  The next day's file no longer continues the chain: it is not
    //  written to
    assert (!mesh_audit_store_open (dir, keys, signer, why, sizeof why) || true);
    mesh_audit_sample_rmtree (dir);
}

void
mesh_audit_verify_test (bool verbose)
{
    char root [1024], dir [2048], path [4096], why [256];
    mesh_audit_sample_tmpdir (root, sizeof root);
    mesh_audit_sample_t *data = calloc (1, sizeof *data);
    assert (data);
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (NULL, MESH_AUDIT_SAMPLE_KEY1, why,
                                                          sizeof why);
    EVP_PKEY *public_key = NULL, *stranger_public = NULL;
    EVP_PKEY *signer = mesh_audit_sample_signer (root, "signing", &public_key);
    EVP_PKEY *stranger = mesh_audit_sample_signer (root, "other", &stranger_public);
    assert (keys && signer && stranger);

    //  A sound store, from a day on, with and without the public key
    snprintf (dir, sizeof dir, "%s/sound", root);
    mesh_audit_sample_store (dir, data, 20, keys, signer);
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "ok: 20 records, seq 1 to 20, 1 day "
                              "files, 2 checkpoints\n", verbose);
    mesh_audit_sample_verify (dir, NULL, NULL, 0, "signatures not checked", verbose);
    mesh_audit_sample_verify (dir, T_DAY1, public_key, 0, "20 records", verbose);
    mesh_audit_sample_verify (dir, T_DAY2, public_key, 0, "no records in 0 day files", verbose);
    mesh_audit_sample_verify (dir, NULL, stranger_public, 1, "checkpoint of seq 10: bad signature",
                              verbose);
    assert (mesh_audit_verify (dir, "2026-02-30", public_key, NULL, why, sizeof why) == -1);
    assert (strstr (why, "not a date"));
    snprintf (path, sizeof path, "%s/nowhere", root);
    mesh_buf_t report;
    mesh_buf_init (&report);
    assert (mesh_audit_verify (path, NULL, public_key, &report, why, sizeof why) == -1);
    assert (report.len == 0);
    mesh_audit_sample_verify (root, NULL, public_key, 0, "ok: no records in 0 day files", verbose);
    mesh_audit_sample_rmtree (dir);

    s_test_tampers (root, data, keys, signer, public_key, verbose);
    s_test_days (root, data, keys, signer, public_key, verbose);

    //  Not a store: a day file of someone else's
    snprintf (dir, sizeof dir, "%s/foreign", root);
    assert (mkdir (dir, 0700) == 0);
    mesh_audit_sample_sql (dir, T_DAY1, "CREATE TABLE t (x)");
    mesh_buf_reset (&report);
    assert (mesh_audit_verify (dir, NULL, public_key, &report, why, sizeof why) == -1);
    mesh_audit_sample_rmtree (dir);

    mesh_buf_free (&report);
    mesh_audit_keyring_destroy (&keys);
    EVP_PKEY_free (signer);
    EVP_PKEY_free (public_key);
    EVP_PKEY_free (stranger);
    EVP_PKEY_free (stranger_public);
    free (data);
    mesh_audit_sample_rmtree (root);
    assert (access (root, F_OK) != 0);
}
