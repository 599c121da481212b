/*  audit_writer: the store's thread, its batches and its duties.

    Hand-off.  A mutex and a condition variable guard the batch pool; the
    writer wakes the reactor with an eventfd the reactor watches through
    mesh_loop_fd_add.  We chose this over inproc PAIR sockets because the
    unit of hand-off is a whole batch of up to batch_max records that must
    sit in one array for one mesh_audit_store_append: through a socket each
    record (or each batch, as a pointer in a message) costs a ypipe, a
    mailbox signal and an allocation, while here the reactor takes the lock
    once per record for a few dozen nanoseconds and signals the writer only
    when a batch starts or fills, and the writer wakes the reactor once per
    commit.  No record is copied: each keeps the ZeroMQ frame its fields
    point into, and the writer closes the frames after the commit.

    Duties between commits, on the writer thread: a signed checkpoint every
    checkpoint_ms (when records came since the last), the key file checked
    every second (a changed mtime, size or inode reloads the ring), day
    files past retention_days deleted hourly.  An append that fails is
    retried after a back-off (100 ms doubling to 5 s); the batch is not
    handed back, so nothing in it is acknowledged meanwhile.                 */
#include "audit_writer.h"
#include "audit.h"                  //  audit_bench_record, for the selftest

#include "mesh_audit_query.h"
#include "mesh_audit_seal.h"
#include "mesh_audit_verify.h"
#include "mesh_log.h"
#include "mesh_time.h"

#include <assert.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define POOL_BATCHES      4         //  filling, writing, and two being acked
#define BACKOFF_FIRST_MS  100
#define BACKOFF_MAX_MS    5000
#define KEY_CHECK_MS      1000
#define RETENTION_MS      (3600 * 1000)

struct audit_writer_t {
    //  Set at start, read-only after
    char *dir;
    char *key_file;
    char *keys_env_text;
    EVP_PKEY *signer;
    size_t batch_max;
    int64_t batch_us;
    int64_t last_take_us;       //  writer: when the last commit began
    int64_t checkpoint_ms;
    int64_t retention_days;
    int event_fd;               //  writer -> reactor
    pthread_t thread;
    bool started;

    //  Writer thread only (and main before start / after join)
    mesh_audit_store_t *store;
    mesh_audit_keyring_t *keys;
    struct stat key_stat;       //  the key file as last loaded
    bool key_exists;
    bool unsigned_records;      //  appended since the last checkpoint
    int64_t next_checkpoint_us;
    int64_t next_key_check_us;
    int64_t next_retention_us;

    //  Under lock
    pthread_mutex_t lock;
    pthread_cond_t wake;        //  the writer waits on it
    pthread_cond_t opened;      //  main waits for the store to open
    int open_rc;                //  1 while opening, then 0 or -1
    char open_why [512];
    audit_batch_t *pool [POOL_BATCHES];
    audit_batch_t *filling;     //  the reactor appends here
    audit_batch_t *free;
    audit_batch_t *done_head;
    audit_batch_t *done_tail;
    size_t pending;             //  entries not yet given back
    bool waiting;               //  the writer sleeps on wake
    bool want_room;             //  a push was refused: wake the reactor
    bool flush;
    bool stop;

    struct {
        mesh_metric_t *records;
        mesh_metric_t *duplicates;
        mesh_metric_t *batch_size;
        mesh_metric_t *batches;
        mesh_metric_t *commit_seconds;
        mesh_metric_t *append_failures;
        mesh_metric_t *checkpoints;
        mesh_metric_t *checkpoint_failures;
        mesh_metric_t *key_reloads;
        mesh_metric_t *files_deleted;
    } metric;
};

//  Batches ------------------------------------------------------------------

static audit_batch_t *
s_batch_new (size_t capacity)
{
    audit_batch_t *batch = calloc (1, sizeof *batch);
    assert (batch);
    batch->capacity = capacity;
    batch->records = calloc (capacity, sizeof *batch->records);
    batch->frames = calloc (capacity, sizeof *batch->frames);
    batch->entries = calloc (capacity, sizeof *batch->entries);
    assert (batch->records && batch->frames && batch->entries);
    return batch;
}

//  Closes the frames its records point into; the records are gone then
static void
s_batch_release (audit_batch_t *batch)
{
    for (size_t i = 0; i < batch->record_count; i++)
        zmq_msg_close (&batch->frames [i]);
    batch->record_count = 0;
}

static void
s_batch_reset (audit_batch_t *batch)
{
    s_batch_release (batch);
    batch->entry_count = 0;
    batch->first_us = 0;
    batch->durable = false;
    batch->stored = 0;
    batch->next = NULL;
}

static void
s_batch_destroy (audit_batch_t **batch_p)
{
    audit_batch_t *batch = *batch_p;
    if (!batch)
        return;
    s_batch_release (batch);
    free (batch->records);
    free (batch->frames);
    free (batch->entries);
    free (batch);
    *batch_p = NULL;
}

//  Moves a record's pointers from one copy of its frame's bytes to another
static void
s_rebase (mesh_audit_record_t *record, const char *from, size_t size, const char *to)
{
    mesh_bytes_t *fields [] = {
        &record->id, &record->tenant, &record->key_id, &record->model_requested,
        &record->model, &record->endpoint, &record->region, &record->params,
        &record->outcome, &record->error_code, &record->prompt, &record->response
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields [0]; i++)
        if (fields [i]->data >= from && fields [i]->data <= from + size)
            fields [i]->data = to + (fields [i]->data - from);
}

static void
s_wake_reactor (audit_writer_t *self)
{
    uint64_t one = 1;
    //  EAGAIN only when the counter is near 2^64: the reactor is awake
    if (write (self->event_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        mesh_error ("eventfd write failed: %s", strerror (errno));
}

//  The batch the reactor fills, from the free pool if there is none
static audit_batch_t *
s_filling_locked (audit_writer_t *self)
{
    if (!self->filling && self->free) {
        self->filling = self->free;
        self->free = self->free->next;
        self->filling->next = NULL;
    }
    return self->filling;
}

//  The filling batch when it is due: full, flushed, or batch_ms after the
//  last commit began.  Commits come at most every batch_ms, so under load
//  each carries what came meanwhile, while a record after a quiet spell is
//  committed at once.  Otherwise NULL and *wake_us lowered to when it will be
static audit_batch_t *
s_take_locked (audit_writer_t *self, int64_t *wake_us)
{
    audit_batch_t *batch = self->filling;
    if (!batch || batch->entry_count == 0)
        return NULL;
    int64_t now = mesh_mono_us ();
    int64_t due_us = self->last_take_us + self->batch_us;
    if (batch->entry_count < batch->capacity && !self->flush && !self->stop && now < due_us) {
        if (due_us < *wake_us)
            *wake_us = due_us;
        return NULL;
    }
    self->last_take_us = now;
    self->filling = NULL;
    s_filling_locked (self);
    if (self->want_room) {
        self->want_room = false;
        s_wake_reactor (self);
    }
    return batch;
}

//  Reactor side -------------------------------------------------------------

int
audit_writer_push (audit_writer_t *self, const audit_entry_t *entry,
                   const mesh_audit_record_t *record, zmq_msg_t *frame)
{
    pthread_mutex_lock (&self->lock);
    audit_batch_t *batch = s_filling_locked (self);
    if (!batch || batch->entry_count == batch->capacity) {
        self->want_room = true;
        pthread_mutex_unlock (&self->lock);
        return -1;
    }
    //  Wake the writer when a batch starts (it may sleep until a duty) or
    //  fills; in between it sleeps until batch_ms anyway
    bool signal = batch->entry_count == 0;
    if (batch->entry_count == 0)
        batch->first_us = mesh_mono_us ();
    batch->entries [batch->entry_count++] = *entry;
    if (record) {
        assert (entry->has_record && frame);
        size_t i = batch->record_count++;
        const char *from = zmq_msg_data (frame);
        size_t size = zmq_msg_size (frame);
        zmq_msg_init (&batch->frames [i]);
        zmq_msg_move (&batch->frames [i], frame);
        batch->records [i] = *record;
        //  A frame small enough to live inside zmq_msg_t moves with it
        const char *to = zmq_msg_data (&batch->frames [i]);
        if (to != from)
            s_rebase (&batch->records [i], from, size, to);
    }
    self->pending++;
    if (batch->entry_count == batch->capacity)
        signal = true;
    if (signal && self->waiting)
        pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
    return 0;
}

void
audit_writer_flush (audit_writer_t *self)
{
    pthread_mutex_lock (&self->lock);
    self->flush = true;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
}

audit_batch_t *
audit_writer_take_done (audit_writer_t *self)
{
    //  Clear the eventfd first: a batch done after this wakes us again
    uint64_t count;
    if (read (self->event_fd, &count, sizeof count) < 0 && errno != EAGAIN)
        mesh_error ("eventfd read failed: %s", strerror (errno));
    pthread_mutex_lock (&self->lock);
    audit_batch_t *batch = self->done_head;
    self->done_head = self->done_tail = NULL;
    pthread_mutex_unlock (&self->lock);
    return batch;
}

void
audit_writer_give_back (audit_writer_t *self, audit_batch_t *batch)
{
    size_t entries = batch->entry_count;
    s_batch_reset (batch);
    pthread_mutex_lock (&self->lock);
    assert (self->pending >= entries);
    self->pending -= entries;
    batch->next = self->free;
    self->free = batch;
    pthread_mutex_unlock (&self->lock);
}

size_t
audit_writer_pending (audit_writer_t *self)
{
    pthread_mutex_lock (&self->lock);
    size_t pending = self->pending;
    pthread_mutex_unlock (&self->lock);
    return pending;
}

int
audit_writer_fd (audit_writer_t *self)
{
    return self->event_fd;
}

//  Writer thread ------------------------------------------------------------

//  Sleeps up to delay_ms unless told to stop; false when told
static bool
s_sleep (audit_writer_t *self, int64_t delay_ms)
{
    int64_t until_us = mesh_mono_us () + delay_ms * 1000;
    pthread_mutex_lock (&self->lock);
    while (!self->stop && mesh_mono_us () < until_us) {
        //  The condition variable uses CLOCK_MONOTONIC (see audit_writer_new)
        struct timespec ts = { until_us / 1000000, (until_us % 1000000) * 1000 };
        pthread_cond_timedwait (&self->wake, &self->lock, &ts);
    }
    bool go_on = !self->stop;
    pthread_mutex_unlock (&self->lock);
    return go_on;
}

//  Appends the batch's records; retries until they are durable, or until
//  told to stop (then the batch goes back not durable, and unacknowledged)
static void
s_write (audit_writer_t *self, audit_batch_t *batch)
{
    int64_t backoff_ms = BACKOFF_FIRST_MS;
    batch->durable = batch->record_count == 0;
    while (!batch->durable) {
        char why [512] = "";
        int64_t start_us = mesh_mono_us ();
        int stored = mesh_audit_store_append (self->store, batch->records, batch->record_count,
                                              mesh_wall_ms (), why, sizeof why);
        if (stored >= 0) {
            mesh_metric_observe (self->metric.commit_seconds,
                                 (double) (mesh_mono_us () - start_us) / 1e6);
            batch->durable = true;
            batch->stored = stored;
            mesh_metric_add (self->metric.records, stored);
            mesh_metric_add (self->metric.duplicates, (double) batch->record_count - stored);
            mesh_metric_set (self->metric.batch_size, (double) batch->record_count);
            mesh_metric_inc (self->metric.batches);
            if (stored > 0)
                self->unsigned_records = true;
            break;
        }
        mesh_metric_inc (self->metric.append_failures);
        mesh_error ("cannot store %zu records, not acknowledging them, retry in %lld ms: %s",
                    batch->record_count, (long long) backoff_ms, why);
        if (!s_sleep (self, backoff_ms))
            break;
        backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
    }
    s_batch_release (batch);
}

static void
s_checkpoint (audit_writer_t *self)
{
    if (!self->unsigned_records)
        return;
    char why [512];
    if (mesh_audit_store_checkpoint (self->store, mesh_wall_ms (), why, sizeof why) < 0) {
        mesh_metric_inc (self->metric.checkpoint_failures);
        mesh_error ("cannot write a checkpoint: %s", why);
        return;
    }
    self->unsigned_records = false;
    mesh_metric_inc (self->metric.checkpoints);
}

static bool
s_same_file (const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size
        && a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

//  A rotated key file (seekmeshctl audit rotate-key appends a line) is
//  loaded again; a file that does not load leaves the ring as it was
static void
s_check_keys (audit_writer_t *self)
{
    struct stat st;
    bool exists = stat (self->key_file, &st) == 0;
    if (exists == self->key_exists && (!exists || s_same_file (&st, &self->key_stat)))
        return;
    self->key_exists = exists;
    if (!exists) {
        mesh_warn ("key file %s is gone; keeping the keys loaded (key %s encrypts)",
                   self->key_file, mesh_audit_keyring_active (self->keys));
        return;
    }
    self->key_stat = st;
    char why [512];
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (self->key_file, self->keys_env_text,
                                                          why, sizeof why);
    if (!keys) {
        mesh_error ("key file %s changed but does not load, keeping key %s: %s",
                    self->key_file, mesh_audit_keyring_active (self->keys), why);
        return;
    }
    mesh_audit_store_set_keys (self->store, keys);
    mesh_audit_keyring_destroy (&self->keys);
    self->keys = keys;
    mesh_metric_inc (self->metric.key_reloads);
    mesh_info ("key ring reloaded from %s: key %s encrypts", self->key_file,
               mesh_audit_keyring_active (keys));
}

static void
s_retain (audit_writer_t *self)
{
    if (self->retention_days <= 0)
        return;
    int deleted = mesh_audit_store_retain (self->store, mesh_wall_ms (), self->retention_days);
    if (deleted > 0) {
        mesh_metric_add (self->metric.files_deleted, deleted);
        mesh_info ("deleted %d day files older than %lld days", deleted,
                   (long long) self->retention_days);
    }
}

//  Runs the duties that are due; returns when the next one is
static int64_t
s_duties (audit_writer_t *self)
{
    int64_t now = mesh_mono_us ();
    if (now >= self->next_checkpoint_us) {
        s_checkpoint (self);
        self->next_checkpoint_us = now + self->checkpoint_ms * 1000;
    }
    if (now >= self->next_key_check_us) {
        s_check_keys (self);
        self->next_key_check_us = now + KEY_CHECK_MS * 1000;
    }
    if (now >= self->next_retention_us) {
        s_retain (self);
        self->next_retention_us = now + (int64_t) RETENTION_MS * 1000;
    }
    int64_t next = self->next_checkpoint_us;
    if (self->next_key_check_us < next)
        next = self->next_key_check_us;
    if (self->next_retention_us < next)
        next = self->next_retention_us;
    return next;
}

static void *
s_run (void *arg)
{
    audit_writer_t *self = arg;
    pthread_setname_np (pthread_self (), "audit-writer");
    //  The store is opened, used and closed on this thread only
    char why [512] = "";
    self->store = mesh_audit_store_open (self->dir, self->keys, self->signer, why, sizeof why);
    pthread_mutex_lock (&self->lock);
    self->open_rc = self->store ? 0 : -1;
    snprintf (self->open_why, sizeof self->open_why, "%s", why);
    pthread_cond_signal (&self->opened);
    pthread_mutex_unlock (&self->lock);
    if (!self->store)
        return NULL;
    int64_t now = mesh_mono_us ();
    self->next_checkpoint_us = now + self->checkpoint_ms * 1000;
    self->next_key_check_us = now + KEY_CHECK_MS * 1000;
    self->next_retention_us = now;

    while (true) {
        int64_t wake_us = s_duties (self);
        pthread_mutex_lock (&self->lock);
        audit_batch_t *batch = NULL;
        while (!(batch = s_take_locked (self, &wake_us)) && !self->stop
        &&     mesh_mono_us () < wake_us) {
            struct timespec ts = { wake_us / 1000000, (wake_us % 1000000) * 1000 };
            self->waiting = true;
            pthread_cond_timedwait (&self->wake, &self->lock, &ts);
            self->waiting = false;
        }
        bool stop = self->stop;
        pthread_mutex_unlock (&self->lock);
        if (batch) {
            s_write (self, batch);
            pthread_mutex_lock (&self->lock);
            if (self->done_tail)
                self->done_tail->next = batch;
            else
                self->done_head = batch;
            self->done_tail = batch;
            pthread_mutex_unlock (&self->lock);
            s_wake_reactor (self);
        }
        else
        if (stop)
            break;
    }
    //  The chain head as it is now, signed, so a cut tail is found
    s_checkpoint (self);
    mesh_audit_store_close (&self->store);
    return NULL;
}

//  Lifecycle ----------------------------------------------------------------

static void
s_metrics (audit_writer_t *self, mesh_metrics_t *metrics)
{
    self->metric.records = mesh_metrics_counter (metrics, "seekmesh_audit_records_total",
        "Audit records stored (committed and synced).", NULL);
    self->metric.duplicates = mesh_metrics_counter (metrics, "seekmesh_audit_duplicates_total",
        "Records received again (resent) and dropped: already stored.", NULL);
    self->metric.batch_size = mesh_metrics_gauge (metrics, "seekmesh_audit_batch_size",
        "Records in the last batch committed.", NULL);
    self->metric.batches = mesh_metrics_counter (metrics, "seekmesh_audit_batches_total",
        "Batches committed (one transaction and sync each).", NULL);
    self->metric.commit_seconds = mesh_metrics_histogram (metrics, "seekmesh_audit_commit_seconds",
        "Time to append and sync one batch.", NULL);
    self->metric.append_failures = mesh_metrics_counter (metrics, "seekmesh_audit_append_failures_total",
        "Batches the store could not append (retried, unacknowledged meanwhile).", NULL);
    self->metric.checkpoints = mesh_metrics_counter (metrics, "seekmesh_audit_checkpoints_total",
        "Signed checkpoints written.", NULL);
    self->metric.checkpoint_failures = mesh_metrics_counter (metrics,
        "seekmesh_audit_checkpoint_failures_total", "Checkpoints that could not be written.", NULL);
    self->metric.key_reloads = mesh_metrics_counter (metrics, "seekmesh_audit_key_reloads_total",
        "Times the key ring was reloaded after its file changed.", NULL);
    self->metric.files_deleted = mesh_metrics_counter (metrics, "seekmesh_audit_files_deleted_total",
        "Day files deleted by retention.", NULL);
}

audit_writer_t *
audit_writer_new (const audit_writer_config_t *config, char *why, size_t why_size)
{
    assert (config->batch_max > 0 && config->keys && config->signer);
    audit_writer_t *self = calloc (1, sizeof *self);
    assert (self);
    self->event_fd = -1;
    self->dir = strdup (config->dir);
    self->key_file = strdup (config->key_file);
    self->keys_env_text = config->keys_env_text ? strdup (config->keys_env_text) : NULL;
    self->keys = config->keys;
    self->signer = config->signer;
    self->batch_max = config->batch_max;
    self->batch_us = config->batch_ms * 1000;
    self->checkpoint_ms = config->checkpoint_ms > 0 ? config->checkpoint_ms : 1000;
    self->retention_days = config->retention_days;
    self->key_exists = stat (self->key_file, &self->key_stat) == 0;
    s_metrics (self, config->metrics);

    pthread_mutex_init (&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->wake, &attr);
    pthread_cond_init (&self->opened, &attr);
    pthread_condattr_destroy (&attr);
    for (size_t i = 0; i < POOL_BATCHES; i++) {
        self->pool [i] = s_batch_new (self->batch_max);
        self->pool [i]->next = self->free;
        self->free = self->pool [i];
    }
    self->event_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->event_fd < 0) {
        snprintf (why, why_size, "eventfd: %s", strerror (errno));
        audit_writer_destroy (&self);
        return NULL;
    }
    self->open_rc = 1;
    if (pthread_create (&self->thread, NULL, s_run, self) != 0) {
        snprintf (why, why_size, "cannot start the writer thread: %s", strerror (errno));
        audit_writer_destroy (&self);
        return NULL;
    }
    self->started = true;
    pthread_mutex_lock (&self->lock);
    while (self->open_rc == 1)
        pthread_cond_wait (&self->opened, &self->lock);
    pthread_mutex_unlock (&self->lock);
    if (self->open_rc < 0) {
        snprintf (why, why_size, "cannot open the audit store in %s: %s", self->dir, self->open_why);
        audit_writer_destroy (&self);
        return NULL;
    }
    return self;
}

//  Stops the thread after it has written what was queued (one attempt)
static void
s_stop (audit_writer_t *self)
{
    if (!self->started)
        return;
    pthread_mutex_lock (&self->lock);
    self->stop = true;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
    pthread_join (self->thread, NULL);
    self->started = false;
}

void
audit_writer_stop (audit_writer_t *self)
{
    s_stop (self);
}

void
audit_writer_destroy (audit_writer_t **self_p)
{
    assert (self_p);
    audit_writer_t *self = *self_p;
    if (!self)
        return;
    s_stop (self);
    for (size_t i = 0; i < POOL_BATCHES; i++)
        s_batch_destroy (&self->pool [i]);
    mesh_audit_keyring_destroy (&self->keys);
    if (self->event_fd >= 0)
        close (self->event_fd);
    pthread_cond_destroy (&self->wake);
    pthread_cond_destroy (&self->opened);
    pthread_mutex_destroy (&self->lock);
    free (self->dir);
    free (self->key_file);
    if (self->keys_env_text) {
        explicit_bzero (self->keys_env_text, strlen (self->keys_env_text));
        free (self->keys_env_text);
    }
    free (self);
    *self_p = NULL;
}

//  Selftest -----------------------------------------------------------------

static int
s_test_unlink (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st; (void) flag; (void) ftw;
    return remove (path);
}

//  A frame holding one encoded record, and the record decoded from it
static void
s_test_frame (zmq_msg_t *frame, mesh_audit_record_t *record, const char *id, const char *text)
{
    mesh_bytes_t prompt = { text, strlen (text) }, response = { "answer", 6 };
    mesh_audit_record_t original;
    audit_bench_record (&original, id, &prompt, &response);
    mesh_buf_t buf;
    mesh_buf_init (&buf);
    int rc = mesh_audit_encode (&original, &buf);
    assert (rc == 0);
    zmq_msg_init_size (frame, mesh_buf_size (&buf));
    memcpy (zmq_msg_data (frame), mesh_buf_head (&buf), mesh_buf_size (&buf));
    mesh_buf_free (&buf);
    char why [256];
    rc = mesh_audit_decode (record, zmq_msg_data (frame), zmq_msg_size (frame), why, sizeof why);
    assert (rc == 0);
}

typedef struct {
    size_t entries;             //  given back
    size_t durable;
    int stored;
    uint64_t last_seq;
} test_tally_t;

//  Waits for written batches and gives them back
static void
s_test_collect (audit_writer_t *writer, test_tally_t *tally, int timeout_ms)
{
    struct pollfd item = { audit_writer_fd (writer), POLLIN, 0 };
    poll (&item, 1, timeout_ms);
    audit_batch_t *batch = audit_writer_take_done (writer);
    while (batch) {
        audit_batch_t *next = batch->next;
        for (size_t i = 0; i < batch->entry_count; i++) {
            //  In order, each once
            assert (batch->entries [i].seq == tally->last_seq + 1);
            tally->last_seq = batch->entries [i].seq;
        }
        tally->entries += batch->entry_count;
        tally->durable += batch->durable ? batch->entry_count : 0;
        tally->stored += batch->stored;
        assert (batch->record_count == 0);  //  frames closed by the writer
        audit_writer_give_back (writer, batch);
        batch = next;
    }
}

//  Pushes seq with a record of id (or none), waiting for room
static void
s_test_push (audit_writer_t *writer, test_tally_t *tally, uint64_t seq, const char *id)
{
    static int s_tag;
    audit_entry_t entry = { &s_tag, seq, id != NULL };
    zmq_msg_t frame;
    mesh_audit_record_t record;
    if (id)
        s_test_frame (&frame, &record, id, "a prompt");
    while (audit_writer_push (writer, &entry, id ? &record : NULL, id ? &frame : NULL) < 0)
        s_test_collect (writer, tally, 1000);
    if (id)
        zmq_msg_close (&frame);     //  moved: empty
}

typedef struct {
    size_t rows;
    char last_key [64];
    char last_id [MESH_ID_LEN + 1];
} test_rows_t;

static int
s_test_row (void *arg, const mesh_audit_query_row_t *row)
{
    test_rows_t *rows = arg;
    rows->rows++;
    assert (row->decrypted);
    assert (row->record.prompt.size == 8 && memcmp (row->record.prompt.data, "a prompt", 8) == 0);
    snprintf (rows->last_key, sizeof rows->last_key, "%s", row->enc_key_id);
    snprintf (rows->last_id, sizeof rows->last_id, "%.*s", (int) row->record.id.size,
              row->record.id.data);
    return 0;
}

void
audit_writer_test (bool verbose)
{
    (void) verbose;
    char dir [] = "/tmp/seekmesh-audit-writer-XXXXXX";
    assert (mkdtemp (dir));
    char key_file [PATH_MAX], signing_file [PATH_MAX], public_file [PATH_MAX];
    snprintf (key_file, sizeof key_file, "%s/keys", dir);
    snprintf (signing_file, sizeof signing_file, "%s/signing.pem", dir);
    snprintf (public_file, sizeof public_file, "%s/signing.pub.pem", dir);
    char key_id [64], new_key_id [64], why [512];
    assert (mesh_audit_keyring_rotate (key_file, key_id, sizeof key_id, why, sizeof why) == 0);
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (key_file, NULL, why, sizeof why);
    assert (keys);
    EVP_PKEY *signer = mesh_audit_seal_signer_load (signing_file, public_file, why, sizeof why);
    assert (signer);
    mesh_metrics_t *metrics = mesh_metrics_new ();
    audit_writer_config_t config = {
        .dir = dir, .key_file = key_file, .keys = keys, .signer = signer,
        .batch_max = 8, .batch_ms = 1, .checkpoint_ms = 50, .retention_days = 30,
        .metrics = metrics
    };
    audit_writer_t *writer = audit_writer_new (&config, why, sizeof why);
    assert (writer);

    //  40 records and a malformed one's place, through batches of 8: the
    //  pool of 4 fills and pushes wait; every entry comes back once, in
    //  order, durable
    char ids [42][MESH_ID_LEN + 1];
    test_tally_t tally = { 0 };
    for (uint64_t seq = 1; seq <= 41; seq++) {
        mesh_id_new (ids [seq]);
        s_test_push (writer, &tally, seq, seq == 20 ? NULL : ids [seq]);
    }
    int64_t deadline = mesh_mono_ms () + 5000;
    while (tally.entries < 41 && mesh_mono_ms () < deadline)
        s_test_collect (writer, &tally, 100);
    assert (tally.entries == 41 && tally.durable == 41 && tally.stored == 40);
    assert (audit_writer_pending (writer) == 0);

    //  Resent records are durable, and not stored twice
    s_test_push (writer, &tally, 42, ids [1]);
    s_test_push (writer, &tally, 43, ids [2]);
    audit_writer_flush (writer);
    while (tally.entries < 43 && mesh_mono_ms () < deadline)
        s_test_collect (writer, &tally, 100);
    assert (tally.entries == 43 && tally.durable == 43 && tally.stored == 40);
    mesh_metric_t *duplicates = mesh_metrics_counter (metrics, "seekmesh_audit_duplicates_total", "", NULL);
    assert (mesh_metric_value (duplicates) == 2);

    //  A rotated key file is loaded within a second or so, and encrypts
    assert (mesh_audit_keyring_rotate (key_file, new_key_id, sizeof new_key_id, why, sizeof why) == 0);
    mesh_metric_t *reloads = mesh_metrics_counter (metrics, "seekmesh_audit_key_reloads_total", "", NULL);
    deadline = mesh_mono_ms () + 3000;
    while (mesh_metric_value (reloads) < 1 && mesh_mono_ms () < deadline)
        usleep (20 * 1000);
    assert (mesh_metric_value (reloads) == 1);
    char last_id [MESH_ID_LEN + 1];
    mesh_id_new (last_id);
    s_test_push (writer, &tally, 44, last_id);
    while (tally.entries < 44 && mesh_mono_ms () < deadline)
        s_test_collect (writer, &tally, 100);
    assert (tally.stored == 41);
    audit_writer_destroy (&writer);
    mesh_metric_t *checkpoints = mesh_metrics_counter (metrics, "seekmesh_audit_checkpoints_total", "", NULL);
    assert (mesh_metric_value (checkpoints) >= 1);

    //  Read back: every record, decrypted, the last under the new key;
    //  the chain and its checkpoints verify
    mesh_audit_keyring_t *readers = mesh_audit_keyring_load (key_file, NULL, why, sizeof why);
    assert (readers);
    mesh_audit_query_filter_t filter = { 0 };
    test_rows_t rows = { 0 };
    assert (mesh_audit_query (dir, &filter, readers, s_test_row, &rows, why, sizeof why) == 0);
    assert (rows.rows == 41);
    assert (strcmp (rows.last_key, new_key_id) == 0 && strcmp (rows.last_id, last_id) == 0);
    EVP_PKEY *public_key = mesh_audit_seal_public_key_load (public_file, why, sizeof why);
    assert (public_key);
    mesh_buf_t report;
    mesh_buf_init (&report);
    assert (mesh_audit_verify (dir, NULL, public_key, 0, &report, why, sizeof why) == 0);
    mesh_buf_free (&report);

    EVP_PKEY_free (public_key);
    mesh_audit_keyring_destroy (&readers);
    EVP_PKEY_free (signer);
    mesh_metrics_destroy (&metrics);
    nftw (dir, s_test_unlink, 16, FTW_DEPTH | FTW_PHYS);
}
