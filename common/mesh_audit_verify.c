/*  mesh_audit_verify: the audit store checked (see mesh_audit_verify.h).

    First every file's meta and checkpoints (a checkpoint's record is in
    the same file: one elsewhere was moved; one past the last record is a
    cut), then the records of each file in seq order, the chain taken one
    step per record and compared with the stored value and with each
    checkpoint's, each checkpoint linked to the one before, and each day
    file but the newest ending with a checkpoint.  The first thing wrong
    ends it, named in the report.  Records after the last checkpoint are
    the live tail only while a writer runs and signs them: the newest file
    is walked again, in a new snapshot, until a checkpoint covers them or
    the wait is over.  Any thread.                                          */
#include "mesh_audit_verify.h"
#include "mesh_audit_file.h"
#include "mesh_audit_seal.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHAIN_BYTES   MESH_AUDIT_SEAL_CHAIN_BYTES
#define AT_SEQ        MESH_AUDIT_FILE_AT_SEQ
#define AT_ID         1                 //  the record's first column
#define AT_ENC_KEY_ID MESH_AUDIT_FILE_AT_ENC_KEY_ID
#define AT_PROMPT     MESH_AUDIT_FILE_AT_PROMPT
#define AT_RESPONSE   MESH_AUDIT_FILE_AT_RESPONSE
#define AT_CHAIN      MESH_AUDIT_FILE_AT_CHAIN
#define TAIL_POLL_MS  50                //  how often a waiting verifier looks for a checkpoint

typedef struct {
    mesh_audit_seal_checkpoint_t body;  //  what it signs
    unsigned char digest [CHAIN_BYTES]; //  its signature's SHA-256, which the next one names
    bool well_formed;                   //  its columns have their types and sizes
    bool signature_ok;                  //  valid, or not checked (no public key)
    size_t file;                        //  the day file that holds it
} checkpoint_t;

//  The walk over the records: where it is
typedef struct {
    uint64_t expected;                  //  the seq the next record must have
    unsigned char chain [CHAIN_BYTES];  //  the chain value so far
    uint64_t records;
    size_t next_checkpoint;             //  the first not yet matched with its record
    bool linked;                        //  a checkpoint was matched
    uint64_t signed_through;            //  the last matched checkpoint's seq
    unsigned char signed_digest [CHAIN_BYTES];  //  and its signature's digest
} walk_t;

//  One verification's state
typedef struct {
    const char *dir;
    EVP_PKEY *public_key;               //  NULL: signatures not checked
    int64_t tail_wait_ms;
    mesh_buf_t *report;
    mesh_buf_t notes;                   //  lines after "ok: ..."
    //  The day files, with their meta
    mesh_audit_file_reader_t *readers;
    size_t files;
    mesh_audit_file_meta_t *metas;
    bool earlier_files;                 //  day files before the first (before --from)
    //  Every file's checkpoints, by seq
    checkpoint_t *checkpoints;
    size_t checkpoint_count;
    uint64_t first_seq;                 //  the first file's start
    walk_t walk;
    mesh_audit_seal_t *seal;
    mesh_buf_t sql, plain;
} verify_t;

static int
s_bad (verify_t *self, const char *fmt, ...) __attribute__ ((format (printf, 2, 3)));

//  Writes the first bad thing's line into the report; returns 1
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

static const char *
s_name (verify_t *self, size_t f)
{
    return self->readers [f].name;
}

//  Reading ----------------------------------------------------------------------

//  Checkpoints by seq; files' order breaks ties
static int
s_checkpoint_order (const void *a, const void *b)
{
    const checkpoint_t *left = a, *right = b;
    if (left->body.seq != right->body.seq)
        return left->body.seq < right->body.seq ? -1 : 1;
    return left->file < right->file ? -1 : left->file > right->file;
}

//  Adds day file f's checkpoints to the list, their signatures checked
static int
s_read_checkpoints (verify_t *self, size_t f, const char *path, char *why, size_t why_size)
{
    mesh_audit_file_reader_t *reader = &self->readers [f];
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (reader->db, MESH_AUDIT_FILE_CHECKPOINTS " ORDER BY seq", -1, &stmt,
                            NULL) != SQLITE_OK)
        return mesh_audit_file_fail (reader->db, path, why, why_size);
    int step;
    while ((step = sqlite3_step (stmt)) == SQLITE_ROW) {
        self->checkpoints = realloc (self->checkpoints,
                                     (self->checkpoint_count + 1) * sizeof *self->checkpoints);
        assert (self->checkpoints);
        checkpoint_t *checkpoint = &self->checkpoints [self->checkpoint_count++];
        memset (checkpoint, 0, sizeof *checkpoint);
        const void *signature;
        size_t signature_size;
        checkpoint->well_formed = mesh_audit_file_checkpoint_row (stmt, &checkpoint->body,
                                                                  &signature, &signature_size);
        checkpoint->signature_ok = checkpoint->well_formed
            && (!self->public_key
                || mesh_audit_seal_checkpoint_valid (self->public_key, &checkpoint->body,
                                                     signature, signature_size));
        mesh_audit_seal_signature_digest (signature, signature_size, checkpoint->digest);
        checkpoint->file = f;
    }
    sqlite3_finalize (stmt);
    if (step != SQLITE_DONE)
        return mesh_audit_file_fail (reader->db, path, why, why_size);
    return 0;
}

//  Opens day file name as reader f: in one snapshot (the service may
//  append), its meta and checkpoints read, its records' select prepared.
//  -1 with a reason.
static int
s_open_file (verify_t *self, size_t f, const char *name, char *why, size_t why_size)
{
    mesh_audit_file_reader_t *reader = &self->readers [f];
    char copy [MESH_AUDIT_FILE_NAME_LEN + 1];
    snprintf (copy, sizeof copy, "%.*s", MESH_AUDIT_FILE_NAME_LEN, name);
    snprintf (reader->name, sizeof reader->name, "%s", copy);
    char path [4096];
    snprintf (path, sizeof path, "%s/%s", self->dir, reader->name);
    if (!(reader->db = mesh_audit_file_open_read (self->dir, path, why, why_size)))
        return -1;
    if (mesh_audit_file_exec (reader->db, "BEGIN", path, why, why_size) < 0
    ||  mesh_audit_file_read_meta (reader->db, path, &self->metas [f], why, why_size) < 0
    ||  s_read_checkpoints (self, f, path, why, why_size) < 0)
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

//  A checkpoint that is not what it says; 0, or 1 (reported)
static int
s_check_signed (verify_t *self, const checkpoint_t *checkpoint)
{
    if (!checkpoint->well_formed)
        return s_bad (self, "%s checkpoint of seq %llu: a column is not of its type or size "
                      "(changed)", s_name (self, checkpoint->file),
                      (unsigned long long) checkpoint->body.seq);
    if (!checkpoint->signature_ok)
        return s_bad (self, "%s checkpoint of seq %llu: bad signature",
                      s_name (self, checkpoint->file), (unsigned long long) checkpoint->body.seq);
    return 0;
}

//  The checkpoint follows the one matched before it: it names that one's
//  seq and signature; the first one names the last record before the
//  files verified (0: none, the store's start).  0, or 1 (reported).
static int
s_check_link (verify_t *self, const checkpoint_t *checkpoint)
{
    walk_t *walk = &self->walk;
    const char *file = s_name (self, checkpoint->file);
    unsigned long long seq = checkpoint->body.seq, prev = checkpoint->body.prev_seq;
    uint64_t before = walk->linked ? walk->signed_through : self->first_seq - 1;
    if (prev > before)
        return s_bad (self, "%s checkpoint of seq %llu: the checkpoint it follows, of seq %llu, "
                      "is missing (deleted)", file, seq, prev);
    if (prev < before && walk->linked)
        return s_bad (self, "%s checkpoint of seq %llu: it follows the checkpoint of seq %llu, "
                      "not that of seq %llu stored before it: checkpoints were reordered or "
                      "one was put in", file, seq, prev, (unsigned long long) before);
    if (prev < before)
        return s_bad (self, "%s checkpoint of seq %llu: it follows the checkpoint of seq %llu, "
                      "but the records before these day files end at seq %llu, whose "
                      "checkpoint comes first (a day file ends with a checkpoint of its last "
                      "record)", file, seq, prev, (unsigned long long) before);
    static const unsigned char zeros [CHAIN_BYTES];
    if (walk->linked
    &&  memcmp (checkpoint->body.prev_digest, walk->signed_digest, CHAIN_BYTES) != 0)
        return s_bad (self, "%s checkpoint of seq %llu: the checkpoint of seq %llu stored is "
                      "not the one it follows (replaced)", file, seq, prev);
    if (!walk->linked && prev == 0 && memcmp (checkpoint->body.prev_digest, zeros,
                                              CHAIN_BYTES) != 0)
        return s_bad (self, "%s checkpoint of seq %llu: the store's first checkpoint names a "
                      "signature before it", file, seq);
    if (!walk->linked && prev > 0)
        mesh_buf_printf (&self->notes, "note: the first checkpoint (of seq %llu, %s) follows "
                         "that of seq %llu, in a day file %s: that link is not checked\n", seq,
                         file, prev, self->earlier_files ? "before --from, not verified"
                         : "no longer here (deleted by retention, audit.retention_days)");
    return 0;
}

//  The checkpoints of seq, the record of file f just checked: each signed,
//  kept with its record, following the one before, signing the chain the
//  records give.  0, or 1 (reported).
static int
s_check_checkpoints (verify_t *self, size_t f, uint64_t seq)
{
    walk_t *walk = &self->walk;
    for (; walk->next_checkpoint < self->checkpoint_count
           && self->checkpoints [walk->next_checkpoint].body.seq == seq; walk->next_checkpoint++) {
        const checkpoint_t *checkpoint = &self->checkpoints [walk->next_checkpoint];
        if (s_check_signed (self, checkpoint))
            return 1;
        if (checkpoint->file != f)
            return s_bad (self, "%s checkpoint of seq %llu: seq %llu is a record of %s: the "
                          "checkpoint was moved (a checkpoint is kept with the record it signs)",
                          s_name (self, checkpoint->file), (unsigned long long) seq,
                          (unsigned long long) seq, s_name (self, f));
        if (s_check_link (self, checkpoint))
            return 1;
        if (memcmp (checkpoint->body.chain, walk->chain, CHAIN_BYTES) != 0)
            return s_bad (self, "%s seq %llu: the records do not give the chain value its "
                          "checkpoint signed: a record from seq %llu to %llu was changed and "
                          "the chain rewritten", s_name (self, f), (unsigned long long) seq,
                          (unsigned long long) walk->signed_through + 1,
                          (unsigned long long) seq);
        walk->linked = true;
        walk->signed_through = seq;
        memcpy (walk->signed_digest, checkpoint->digest, CHAIN_BYTES);
    }
    return 0;
}

//  The record at stmt, the next of file f: its place, its columns, its
//  chain value, then the checkpoints of it.  0, or 1 (reported).
static int
s_check_record (verify_t *self, size_t f, sqlite3_stmt *stmt)
{
    walk_t *walk = &self->walk;
    const char *file = s_name (self, f);
    uint64_t seq = (uint64_t) sqlite3_column_int64 (stmt, AT_SEQ);
    //  Its id, for naming it (the type first: reading converts)
    char id [MESH_ID_LEN + 1] = "?";
    if (sqlite3_column_type (stmt, AT_ID) == SQLITE_TEXT)
        snprintf (id, sizeof id, "%s", (const char *) sqlite3_column_text (stmt, AT_ID));
    if (seq > walk->expected)
        return s_bad (self, "%s seq %llu: missing (the next record stored is seq %llu, id "
                      "%.26s)", file, (unsigned long long) walk->expected,
                      (unsigned long long) seq, id);
    if (seq < walk->expected)
        return s_bad (self, "%s seq %llu (id %.26s): out of place: seq %llu was expected (its "
                      "seq or the file's start was changed)", file, (unsigned long long) seq,
                      id, (unsigned long long) walk->expected);
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
    mesh_audit_seal_chain (self->seal, walk->chain, seq, digest, next);
    if (sqlite3_column_bytes (stmt, AT_CHAIN) != CHAIN_BYTES
    ||  memcmp (sqlite3_column_blob (stmt, AT_CHAIN), next, CHAIN_BYTES) != 0)
        return s_bad (self, "%s seq %llu (id %.26s): its chain value does not match its "
                      "contents: the record was changed, moved or replaced", file,
                      (unsigned long long) seq, id);
    memcpy (walk->chain, next, CHAIN_BYTES);
    walk->records++;
    walk->expected++;
    return s_check_checkpoints (self, f, seq);
}

//  Day file f: it starts where the one before ends, then each record; a
//  day file before the newest ends with a checkpoint of its last record.
//  0, 1 (reported), or -1 with a reason.
static int
s_check_file (verify_t *self, size_t f, char *why, size_t why_size)
{
    walk_t *walk = &self->walk;
    mesh_audit_file_reader_t *reader = &self->readers [f];
    const mesh_audit_file_meta_t *meta = &self->metas [f];
    if (meta->start_seq != walk->expected)
        return s_bad (self, "%s seq %llu: missing (this file starts at seq %llu; a day file or "
                      "the end of the one before was deleted)",
                      meta->start_seq > walk->expected ? reader->name : s_name (self, f - 1),
                      (unsigned long long) MESH_MIN (walk->expected, meta->start_seq),
                      (unsigned long long) meta->start_seq);
    if (memcmp (meta->start_chain, walk->chain, CHAIN_BYTES) != 0)
        return s_bad (self, "%s seq %llu: the file's start chain value is not the end of %s "
                      "(its meta was changed)", reader->name,
                      (unsigned long long) walk->expected, s_name (self, f - 1));
    int step;
    while ((step = sqlite3_step (reader->stmt)) == SQLITE_ROW)
        if (s_check_record (self, f, reader->stmt))
            return 1;
    if (step != SQLITE_DONE)
        return mesh_audit_file_fail (reader->db, reader->name, why, why_size);
    uint64_t last = walk->expected - 1;
    if (f + 1 < self->files && last >= meta->start_seq && walk->signed_through != last)
        return s_bad (self, "%s seq %llu to %llu: signed by no checkpoint: a day file ends with "
                      "a checkpoint of its last record, and this one's is missing (deleted)",
                      reader->name, (unsigned long long) walk->signed_through + 1,
                      (unsigned long long) last);
    return 0;
}

//  No checkpoint names a record before the files verified (a checkpoint
//  is kept with its record: such a one was moved).  0, or 1 (reported).
static int
s_check_before (verify_t *self)
{
    if (self->checkpoint_count == 0 || self->checkpoints [0].body.seq >= self->first_seq)
        return 0;
    const checkpoint_t *checkpoint = &self->checkpoints [0];
    if (s_check_signed (self, checkpoint))
        return 1;
    return s_bad (self, "%s checkpoint of seq %llu: not a record of this file (it starts at seq "
                  "%llu): the checkpoint was moved", s_name (self, checkpoint->file),
                  (unsigned long long) checkpoint->body.seq,
                  (unsigned long long) self->metas [checkpoint->file].start_seq);
}

//  No checkpoint past the last record: the tail was cut.  0, or 1
//  (reported).
static int
s_check_cut (verify_t *self)
{
    walk_t *walk = &self->walk;
    if (walk->next_checkpoint == self->checkpoint_count)
        return 0;
    const checkpoint_t *checkpoint = &self->checkpoints [walk->next_checkpoint];
    if (s_check_signed (self, checkpoint))
        return 1;
    return s_bad (self, "%s seq %llu: missing (a signed checkpoint names records up to seq "
                  "%llu: the tail was cut)", s_name (self, self->files - 1),
                  (unsigned long long) walk->expected, (unsigned long long) checkpoint->body.seq);
}

//  The highest seq a checkpoint of the newest file names now (a new
//  connection: a new snapshot); 0 if none or unreadable
static uint64_t
s_newest_signed (verify_t *self)
{
    char path [4096], why [256];
    snprintf (path, sizeof path, "%s/%s", self->dir, s_name (self, self->files - 1));
    sqlite3 *db = mesh_audit_file_open_read (self->dir, path, why, sizeof why);
    sqlite3_stmt *stmt = NULL;
    uint64_t seq = 0;
    if (db && sqlite3_prepare_v2 (db, "SELECT max(seq) FROM checkpoints", -1, &stmt,
                                  NULL) == SQLITE_OK
    &&  sqlite3_step (stmt) == SQLITE_ROW)
        seq = (uint64_t) sqlite3_column_int64 (stmt, 0);
    sqlite3_finalize (stmt);
    sqlite3_close (db);
    return seq;
}

//  The newest file again, in a new snapshot, from the walk's state before
//  it (saved): its checkpoints read again, its records walked, the tail
//  checked for a cut.  0, 1 (reported), or -1 with a reason.
static int
s_walk_newest_again (verify_t *self, const walk_t *saved, size_t notes_len,
                     char *why, size_t why_size)
{
    size_t f = self->files - 1, kept = 0;
    for (size_t i = 0; i < self->checkpoint_count; i++)
        if (self->checkpoints [i].file != f)
            self->checkpoints [kept++] = self->checkpoints [i];
    self->checkpoint_count = kept;
    char name [MESH_AUDIT_FILE_NAME_LEN + 1];
    snprintf (name, sizeof name, "%s", s_name (self, f));
    mesh_audit_file_reader_close (&self->readers [f]);
    if (s_open_file (self, f, name, why, why_size) < 0)
        return -1;
    qsort (self->checkpoints, self->checkpoint_count, sizeof *self->checkpoints,
           s_checkpoint_order);
    self->walk = *saved;
    self->notes.len = notes_len;
    int rc = s_check_file (self, f, why, why_size);
    return rc ? rc : s_check_cut (self);
}

//  Records after the last checkpoint: a failure, unless a writer runs and
//  signs them within the wait (a checkpoint at or after the last of them
//  turns up; records committed since are its live tail).  0, 1
//  (reported), or -1 with a reason.
static int
s_check_tail (verify_t *self, const walk_t *saved, size_t notes_len, char *why, size_t why_size)
{
    walk_t *walk = &self->walk;
    uint64_t from = walk->signed_through + 1, head = walk->expected - 1;
    if (!walk->records || from > head)
        return 0;
    const char *file = s_name (self, self->files - 1);
    if (!mesh_audit_file_writer_running (self->dir))
        return s_bad (self, "%s seq %llu to %llu: signed by no checkpoint, and no writer is "
                      "running: the checkpoints after seq %llu were deleted (the service signs "
                      "its records every audit.checkpoint_ms, when it stops, and when it starts "
                      "again after a crash)", file, (unsigned long long) from,
                      (unsigned long long) head, (unsigned long long) from - 1);
    if (self->tail_wait_ms <= 0)
        return s_bad (self, "%s seq %llu to %llu: signed by no checkpoint yet; a writer is "
                      "running, which signs them within audit.checkpoint_ms (--tail-wait MS "
                      "waits for it)", file, (unsigned long long) from, (unsigned long long) head);
    int64_t deadline_us = mesh_mono_us () + self->tail_wait_ms * 1000;
    while (true) {
        int64_t left_us = deadline_us - mesh_mono_us ();
        if (left_us <= 0)
            return s_bad (self, "%s seq %llu to %llu: signed by no checkpoint within %lld ms, "
                          "although a writer is running: the checkpoints after seq %llu were "
                          "deleted (or the service's audit.checkpoint_ms is longer than "
                          "--tail-wait)", file, (unsigned long long) from,
                          (unsigned long long) head, (long long) self->tail_wait_ms,
                          (unsigned long long) from - 1);
        int64_t nap_us = MESH_MIN (left_us, TAIL_POLL_MS * 1000);
        struct timespec nap = { nap_us / 1000000, (nap_us % 1000000) * 1000 };
        nanosleep (&nap, NULL);
        if (s_newest_signed (self) < head)
            continue;
        int rc = s_walk_newest_again (self, saved, notes_len, why, why_size);
        if (rc)
            return rc;
        if (walk->signed_through >= head)
            break;
    }
    if (walk->signed_through + 1 < walk->expected)
        mesh_buf_printf (&self->notes, "note: seq %llu to %llu, committed while this ran, are "
                         "the live tail: the running writer signs them within "
                         "audit.checkpoint_ms\n", (unsigned long long) walk->signed_through + 1,
                         (unsigned long long) walk->expected - 1);
    return 0;
}

//  The walk over the open files.  0, 1 (reported), or -1 with a reason.
static int
s_check (verify_t *self, char *why, size_t why_size)
{
    if (self->checkpoint_count)
        qsort (self->checkpoints, self->checkpoint_count, sizeof *self->checkpoints,
               s_checkpoint_order);
    walk_t *walk = &self->walk;
    walk->expected = self->files ? self->metas [0].start_seq : 1;
    self->first_seq = walk->expected;
    walk->signed_through = walk->expected - 1;
    if (self->files)
        memcpy (walk->chain, self->metas [0].start_chain, CHAIN_BYTES);
    int rc = s_check_before (self);
    walk->next_checkpoint = 0;
    while (walk->next_checkpoint < self->checkpoint_count
           && self->checkpoints [walk->next_checkpoint].body.seq < self->first_seq)
        walk->next_checkpoint++;
    walk_t saved = *walk;
    size_t notes_len = 0;
    for (size_t f = 0; rc == 0 && f < self->files; f++) {
        if (f + 1 == self->files) {
            saved = *walk;
            notes_len = self->notes.len;
        }
        rc = s_check_file (self, f, why, why_size);
    }
    if (rc == 0)
        rc = s_check_cut (self);
    if (rc == 0 && self->files)
        rc = s_check_tail (self, &saved, notes_len, why, why_size);
    if (rc == 0 && walk->records)
        mesh_buf_printf (self->report, "ok: %llu records, seq %llu to %llu, %zu day files, %zu "
                         "checkpoints%s\n", (unsigned long long) walk->records,
                         (unsigned long long) self->first_seq,
                         (unsigned long long) walk->expected - 1, self->files,
                         self->checkpoint_count,
                         self->public_key ? "" : " (signatures not checked)");
    else
    if (rc == 0)
        mesh_buf_printf (self->report, "ok: no records in %zu day files\n", self->files);
    if (rc == 0 && self->notes.len)
        mesh_buf_append (self->report, self->notes.data, self->notes.len);
    return rc;
}

int
mesh_audit_verify (const char *dir, const char *from_date, EVP_PKEY *public_key,
                   int64_t tail_wait_ms, mesh_buf_t *report, char *why, size_t why_size)
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
    verify_t self = { .dir = dir, .public_key = public_key, .tail_wait_ms = tail_wait_ms,
                      .report = report, .earlier_files = first > 0 };
    self.readers = calloc (room, sizeof *self.readers);
    self.metas = calloc (room, sizeof *self.metas);
    assert (self.readers && self.metas);
    self.seal = mesh_audit_seal_new ();
    mesh_buf_init (&self.notes);
    mesh_buf_init (&self.sql);
    mesh_buf_init (&self.plain);
    mesh_buf_append_str (&self.sql, "SELECT ");
    mesh_audit_file_columns (&self.sql);
    mesh_buf_append_str (&self.sql, " FROM records ORDER BY seq");
    mesh_buf_append (&self.sql, "", 1);

    int rc = 0;
    for (int i = first; rc == 0 && i < count; i++)
        if ((rc = s_open_file (&self, self.files, names [i]->d_name, why, why_size)) == 0)
            self.files++;
    if (rc == 0)
        rc = s_check (&self, why, why_size);

    for (size_t i = 0; i < room; i++)
        mesh_audit_file_reader_close (&self.readers [i]);
    free (self.readers);
    free (self.checkpoints);
    free (self.metas);
    mesh_audit_file_list_free (names, count);
    mesh_audit_seal_destroy (&self.seal);
    mesh_buf_free (&self.notes);
    mesh_buf_free (&self.sql);
    mesh_buf_free (&self.plain);
    return rc;
}

//  Selftest -----------------------------------------------------------------------

#include "mesh_audit_sample.h"
#include "mesh_audit_store.h"

#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

//  Scenario 19: one record or checkpoint edited, deleted, reordered or
//  moved on disk; the verifier names the first bad thing.  The store: 20
//  records, checkpoints of seq 10 and 20, no writer running.
static void
s_test_tampers (const char *root, mesh_audit_sample_t *data, mesh_audit_keyring_t *keys,
                EVP_PKEY *signer, EVP_PKEY *public_key, bool verbose)
{
    char dir [2048], why [1024];
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
          "seq 16: missing (a signed checkpoint names records up to seq 20", 1 },
        { "the tail cut after a checkpoint, with the later ones",
          "DELETE FROM records WHERE seq > 12; DELETE FROM checkpoints WHERE seq > 12",
          "seq 11 to 12: signed by no checkpoint, and no writer is running", 1 },
        //  The limit: a tail cut at a checkpoint with the checkpoints after it
        //  is only found with a copy of the last checkpoint kept elsewhere
        { "the tail cut at a checkpoint, with the later ones",
          "DELETE FROM records WHERE seq > 10; DELETE FROM checkpoints WHERE seq > 10",
          "ok: 10 records", 0 },
        { "the last checkpoint deleted", "DELETE FROM checkpoints WHERE seq = 20",
          "seq 11 to 20: signed by no checkpoint, and no writer is running: the checkpoints "
          "after seq 10 were deleted", 1 },
        { "a checkpoint deleted", "DELETE FROM checkpoints WHERE seq = 10",
          "checkpoint of seq 20: the checkpoint it follows, of seq 10, is missing (deleted)", 1 },
        { "a bad checkpoint signature",
          "UPDATE checkpoints SET signature = zeroblob (64) WHERE seq = 10",
          "checkpoint of seq 10: bad signature", 1 },
        { "a checkpoint moved", "UPDATE checkpoints SET seq = 11 WHERE seq = 10",
          "checkpoint of seq 11: bad signature", 1 },
        { "two checkpoints' seqs swapped",
          "UPDATE checkpoints SET seq = -1 WHERE seq = 10; UPDATE checkpoints SET seq = 10 "
          "WHERE seq = 20; UPDATE checkpoints SET seq = 20 WHERE seq = -1",
          "checkpoint of seq 10: bad signature", 1 },
        { "a checkpoint naming another before it",
          "UPDATE checkpoints SET prev_seq = 0 WHERE seq = 20",
          "checkpoint of seq 20: bad signature", 1 },
        { "a checkpoint column of another size",
          "UPDATE checkpoints SET prev_digest = x'00' WHERE seq = 20",
          "checkpoint of seq 20: a column is not of its type or size", 1 },
        { "the start of the chain", "UPDATE meta SET value = CAST (zeroblob (31) || x'01' AS BLOB) "
          "WHERE name = 'start_chain'", "seq 1 (id ", 1 },
        { "the meta's start seq", "UPDATE meta SET value = 2 WHERE name = 'start_seq'",
          "seq 1 (id ", 1 },
        { "the meta gone", "DELETE FROM meta WHERE name = 'start_chain'", "lacks the start", -1 },
        { "an older format", "UPDATE meta SET value = 1 WHERE name = 'format'",
          "a day file of format 1, from an earlier seekmesh", -1 },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (tampers); i++) {
        if (verbose)
            printf ("  scenario 19: %s\n", tampers [i].what);
        snprintf (dir, sizeof dir, "%s/tamper-%zu", root, i);
        mesh_audit_sample_store (dir, data, 20, keys, signer);
        mesh_audit_sample_verify (dir, NULL, public_key, 0, "20 records, seq 1 to 20, 1 day "
                                  "files, 2 checkpoints\n", false);
        mesh_audit_sample_sql (dir, T_DAY1, tampers [i].sql);
        int want_rc = tampers [i].rc;
        if (want_rc == -1) {
            mesh_buf_reset (&report);
            assert (mesh_audit_verify (dir, NULL, public_key, 0, &report, why, sizeof why) == -1);
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

//  A store of three days in dir: four records a day, a checkpoint after
//  the second; each day closed with a checkpoint of its last (seq 4, 8),
//  the store closed with one of seq 12
static void
s_test_days_store (const char *dir, mesh_audit_sample_t *data, mesh_audit_keyring_t *keys,
                   EVP_PKEY *signer)
{
    char why [256];
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store);
    const char *days [] = { T_DAY1, T_DAY2, T_DAY3 };
    for (size_t d = 0; d < 3; d++) {
        for (size_t i = 0; i < 4; i++) {
            int64_t at = mesh_audit_sample_at (days [d], 1000 + (int64_t) i * 1000);
            mesh_audit_sample_record (data, d * 4 + i, at - 500);
            assert (mesh_audit_store_append (store, &data->records [d * 4 + i], 1, at,
                                             why, sizeof why) == 1);
            if (i == 1)
                assert (mesh_audit_store_checkpoint (store, at + 1, why, sizeof why) == 0);
        }
    }
    mesh_audit_store_close (&store);
}

//  Day files: whole, deleted by retention, verified from a day, one in the
//  middle gone, a day's closing checkpoint gone, checkpoints moved between
//  days; a broken chain is not appended to
static void
s_test_days (const char *root, mesh_audit_sample_t *data, mesh_audit_keyring_t *keys,
             EVP_PKEY *signer, EVP_PKEY *public_key, bool verbose)
{
    char dir [2048], path [4096], path2 [4096], why [1024];
    snprintf (dir, sizeof dir, "%s/days", root);
    s_test_days_store (dir, data, keys, signer);
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "ok: 12 records, seq 1 to 12, 3 day "
                              "files, 6 checkpoints\n", verbose);
    //  From the second day: its first checkpoint follows one not verified
    mesh_audit_sample_verify (dir, T_DAY2, public_key, 0, "ok: 8 records, seq 5 to 12, 2 day "
                              "files, 4 checkpoints\nnote: the first checkpoint (of seq 6, "
                              "audit-" T_DAY2 ".db) follows that of seq 4, in a day file before "
                              "--from", verbose);
    mesh_audit_sample_rmtree (dir);

    //  The first day deleted by retention: said, and accepted
    s_test_days_store (dir, data, keys, signer);
    snprintf (path, sizeof path, "%s/audit-" T_DAY1 ".db", dir);
    assert (unlink (path) == 0);
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "follows that of seq 4, in a day file no "
                              "longer here (deleted by retention", verbose);
    //  and the store goes on from there
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store && mesh_audit_store_seq (store) == 12);
    mesh_audit_store_close (&store);
    mesh_audit_sample_rmtree (dir);

    //  The middle day deleted: found, and the store refuses to append to
    //  the broken chain (the next day's file would bury the gap)
    s_test_days_store (dir, data, keys, signer);
    snprintf (path, sizeof path, "%s/audit-" T_DAY2 ".db", dir);
    assert (unlink (path) == 0);
    mesh_audit_sample_verify (dir, NULL, public_key, 1, "audit-" T_DAY3 ".db seq 5: missing "
                              "(this file starts at seq 9; a day file or the end of the one "
                              "before was deleted)", verbose);
    assert (!mesh_audit_store_open (dir, keys, signer, why, sizeof why));
    assert (strstr (why, "audit-" T_DAY3 ".db: it does not start where audit-" T_DAY1 ".db ends "
                    "(after seq 4)") && strstr (why, "does not append to a broken chain"));
    mesh_audit_sample_verify (dir, NULL, public_key, 1, "seq 5: missing", false);
    mesh_audit_sample_rmtree (dir);

    //  A day's closing checkpoint deleted: found, and refused
    s_test_days_store (dir, data, keys, signer);
    mesh_audit_sample_sql (dir, T_DAY2, "DELETE FROM checkpoints WHERE seq = 8");
    mesh_audit_sample_verify (dir, NULL, public_key, 1, "audit-" T_DAY2 ".db seq 7 to 8: signed "
                              "by no checkpoint: a day file ends with a checkpoint of its last "
                              "record, and this one's is missing (deleted)", verbose);
    assert (!mesh_audit_store_open (dir, keys, signer, why, sizeof why));
    assert (strstr (why, "audit-" T_DAY2 ".db does not end with a checkpoint of its last record "
                    "(seq 8)"));
    mesh_audit_sample_rmtree (dir);

    //  A checkpoint moved to another day's file
    s_test_days_store (dir, data, keys, signer);
    snprintf (path2, sizeof path2, "%s/audit-" T_DAY2 ".db", dir);
    char sql [8192];
    snprintf (sql, sizeof sql, "ATTACH '%s' AS two; INSERT INTO checkpoints SELECT * FROM "
              "two.checkpoints WHERE seq = 6; DELETE FROM two.checkpoints WHERE seq = 6", path2);
    mesh_audit_sample_sql (dir, T_DAY1, sql);
    mesh_audit_sample_verify (dir, NULL, public_key, 1, "audit-" T_DAY1 ".db checkpoint of seq 6: "
                              "seq 6 is a record of audit-" T_DAY2 ".db: the checkpoint was moved",
                              verbose);
    mesh_audit_sample_rmtree (dir);
    //  Two days' closing checkpoints swapped between their files
    s_test_days_store (dir, data, keys, signer);
    snprintf (sql, sizeof sql, "ATTACH '%s' AS two; CREATE TEMP TABLE c AS SELECT * FROM "
              "checkpoints WHERE seq = 4; DELETE FROM checkpoints WHERE seq = 4; INSERT INTO "
              "checkpoints SELECT * FROM two.checkpoints WHERE seq = 8; DELETE FROM "
              "two.checkpoints WHERE seq = 8; INSERT INTO two.checkpoints SELECT * FROM c", path2);
    mesh_audit_sample_sql (dir, T_DAY1, sql);
    mesh_audit_sample_verify (dir, NULL, public_key, 1, "audit-" T_DAY2 ".db checkpoint of seq 4: "
                              "seq 4 is a record of audit-" T_DAY1 ".db", verbose);
    mesh_audit_sample_rmtree (dir);

    //  The meta's record of the checkpoint before a day changed: the store
    //  will not sign on from it
    s_test_days_store (dir, data, keys, signer);
    mesh_audit_sample_sql (dir, T_DAY3, "UPDATE meta SET value = 6 WHERE name = 'checkpoint_seq'");
    assert (!mesh_audit_store_open (dir, keys, signer, why, sizeof why));
    assert (strstr (why, "does not name the last checkpoint of audit-" T_DAY2 ".db (of seq 8)"));
    mesh_audit_sample_rmtree (dir);
}

//  A writer at work, for the live tail: what it does while the verifier
//  waits
typedef struct {
    mesh_audit_store_t *store;
    mesh_audit_sample_t *data;
    size_t first, more;                 //  records to append after signing
} t_writer_t;

static void *
s_test_writer (void *arg)
{
    t_writer_t *writer = arg;
    char why [256];
    struct timespec nap = { 0, 150 * 1000000 };
    nanosleep (&nap, NULL);
    int64_t now = mesh_audit_sample_at (T_DAY1, 60000);
    assert (mesh_audit_store_checkpoint (writer->store, now, why, sizeof why) == 0);
    //  One commit: a reader sees none of them or all
    for (size_t i = 0; i < writer->more; i++)
        mesh_audit_sample_record (writer->data, writer->first + i, now);
    assert (mesh_audit_store_append (writer->store, &writer->data->records [writer->first],
                                     writer->more, now, why, sizeof why) == (int) writer->more);
    return NULL;
}

//  Records after the last checkpoint: the live tail while a writer runs
//  and signs them; a failure when none does or it does not in time; a
//  crashed writer's are signed when the store opens again
static void
s_test_tail (const char *root, mesh_audit_sample_t *data, mesh_audit_keyring_t *keys,
             EVP_PKEY *signer, EVP_PKEY *public_key, bool verbose)
{
    char dir [2048], why [256];
    mesh_buf_t report;
    mesh_buf_init (&report);
    snprintf (dir, sizeof dir, "%s/tail", root);
    mesh_audit_sample_store (dir, data, 10, keys, signer);
    mesh_audit_store_t *store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store);
    int64_t now = mesh_audit_sample_at (T_DAY1, 50000);
    for (size_t i = 10; i < 13; i++) {
        mesh_audit_sample_record (data, i, now);
        assert (mesh_audit_store_append (store, &data->records [i], 1, now, why, sizeof why) == 1);
    }
    //  Not waiting: a running writer's unsigned records are not passed
    assert (mesh_audit_verify (dir, NULL, public_key, 0, &report, why, sizeof why) == 1);
    mesh_buf_append (&report, "", 1);
    assert (strstr (report.data, "seq 11 to 13: signed by no checkpoint yet; a writer is running"));
    //  Waiting for a writer that does not sign
    mesh_buf_reset (&report);
    int64_t start_us = mesh_mono_us ();
    assert (mesh_audit_verify (dir, NULL, public_key, 300, &report, why, sizeof why) == 1);
    int64_t waited_ms = (mesh_mono_us () - start_us) / 1000;
    mesh_buf_append (&report, "", 1);
    assert (strstr (report.data, "seq 11 to 13: signed by no checkpoint within 300 ms, although a "
                    "writer is running"));
    assert (waited_ms >= 300 && waited_ms < 10000);
    //  A writer that signs them, then appends two more: those are the tail
    t_writer_t writer = { .store = store, .data = data, .first = 13, .more = 2 };
    pthread_t thread;
    assert (pthread_create (&thread, NULL, s_test_writer, &writer) == 0);
    mesh_buf_reset (&report);
    int rc = mesh_audit_verify (dir, NULL, public_key, 20000, &report, why, sizeof why);
    assert (pthread_join (thread, NULL) == 0);
    mesh_buf_append (&report, "", 1);
    if (verbose)
        printf ("    verify, waiting: %d %s", rc, report.data);
    //  The new snapshot has the checkpoint, and the two after it unless it
    //  came between the writer's two commits
    assert (rc == 0);
    assert (mesh_streq (report.data, "ok: 13 records, seq 1 to 13, 1 day files, 2 checkpoints\n")
            || mesh_streq (report.data, "ok: 15 records, seq 1 to 15, 1 day files, 2 checkpoints\n"
                           "note: seq 14 to 15, committed while this ran, are the live tail: "
                           "the running writer signs them within audit.checkpoint_ms\n"));
    //  Closed, it signs them all
    mesh_audit_store_close (&store);
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "ok: 15 records, seq 1 to 15, 1 day files, "
                              "3 checkpoints\n", verbose);

    //  A writer that dies without signing (a crash): its records are
    //  signed by no checkpoint and no writer runs; opening signs them
    pid_t child = fork ();
    assert (child >= 0);
    if (child == 0) {
        store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
        for (size_t i = 15; i < 17 && store; i++) {
            mesh_audit_sample_record (data, i, now);
            if (mesh_audit_store_append (store, &data->records [i], 1, now, why, sizeof why) != 1)
                _exit (1);
        }
        _exit (store ? 0 : 1);
    }
    int status = 0;
    assert (waitpid (child, &status, 0) == child && WIFEXITED (status)
            && WEXITSTATUS (status) == 0);
    mesh_audit_sample_verify (dir, NULL, public_key, 1, "seq 16 to 17: signed by no checkpoint, "
                              "and no writer is running", verbose);
    store = mesh_audit_store_open (dir, keys, signer, why, sizeof why);
    assert (store && mesh_audit_store_seq (store) == 17);
    mesh_audit_sample_verify (dir, NULL, public_key, 0, "ok: 17 records, seq 1 to 17, 1 day files, "
                              "4 checkpoints\n", verbose);
    mesh_audit_store_close (&store);
    mesh_audit_sample_rmtree (dir);
    mesh_buf_free (&report);
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
    assert (mesh_audit_verify (dir, "2026-02-30", public_key, 0, NULL, why, sizeof why) == -1);
    assert (strstr (why, "not a date"));
    snprintf (path, sizeof path, "%s/nowhere", root);
    mesh_buf_t report;
    mesh_buf_init (&report);
    assert (mesh_audit_verify (path, NULL, public_key, 0, &report, why, sizeof why) == -1);
    assert (report.len == 0);
    mesh_audit_sample_verify (root, NULL, public_key, 0, "ok: no records in 0 day files", verbose);
    mesh_audit_sample_rmtree (dir);

    s_test_tampers (root, data, keys, signer, public_key, verbose);
    s_test_days (root, data, keys, signer, public_key, verbose);
    s_test_tail (root, data, keys, signer, public_key, verbose);

    //  Not a store: a day file of someone else's
    snprintf (dir, sizeof dir, "%s/foreign", root);
    assert (mkdir (dir, 0700) == 0);
    mesh_audit_sample_sql (dir, T_DAY1, "CREATE TABLE t (x)");
    mesh_buf_reset (&report);
    assert (mesh_audit_verify (dir, NULL, public_key, 0, &report, why, sizeof why) == -1);
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
