/*  audit: records in, acknowledgements out.

    What it hears from ingresses is the table s_from_ingress below.  It
    also wakes up for the writer's committed batches (s_on_written: mark
    their records durable; ACK each sender's durable prefix) and its timer
    (s_on_tick: end senders' rejoin grace, forget idle senders, queue
    gauge).

    Acknowledgements are cumulative (ACK seq: every record of the sender up
    to seq is durable), so a sender's ACK may only name a seq when every
    record up to it is stored.  Each sender (an ingress run) has `acked`,
    the end of its durable prefix, and a window of durable seqs beyond a
    gap: records lost in a broken connection leave a gap that the
    ingress's resend fills, and the ACK then jumps over what was stored
    meanwhile.  A malformed record is acknowledged like a stored one, in
    its place: it can never be stored, and unacknowledged it would be
    resent forever (it is counted and logged).

    A sender first heard of at seq > 1 was acknowledged by an earlier run
    of this service up to a point this run cannot know.  Its ACKs wait for
    audit.rejoin_ms (two of the ingress's resend intervals and a second, by
    default): the ingress resends every unacked record in that time, so the
    lowest seq seen is the first it still holds, and everything below it
    was acknowledged before.  Acking the first seq seen instead would lose
    the records that were in the broken connection when this service died.
    Records are stored meanwhile and remembered in the sender's window, so
    when the grace ends the ACK covers them at once; their resends are
    dropped as duplicates.
    A clean stop (SIGTERM, drained) writes each sender's `acked` to
    <dir>/senders, which the next run reads and deletes before it takes a
    record, so a restart for a deploy needs no grace.  After a crash there
    is no such file, and the grace applies.

    Reactor thread only.                                                    */
#include "audit.h"
#include "audit_writer.h"

#include "mesh_audit.h"
#include "mesh_audit_keyring.h"
#include "mesh_audit_query.h"
#include "mesh_audit_seal.h"
#include "mesh_audit_store.h"
#include "mesh_audit_verify.h"
#include "mesh_curve.h"
#include "mesh_dispatch.h"
#include "mesh_id.h"
#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_msg.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define WINDOW_SEQS     65536       //  durable seqs tracked beyond a gap
#define MAX_SENDERS     4096
#define SENDER_IDLE_MS  (10 * 60 * 1000)
#define TICK_MS         250
#define BURST           256         //  messages read per wake-up

//  What the audit service hears --------------------------------------------

static mesh_handler_fn s_on_audit;
static const mesh_route_t s_ingress_routes [] = {
    { MESH_MSG_AUDIT, s_on_audit },     //  decode; queue for the writer, or ACK again
    { 0, NULL }                         //  one already durable
};
static const mesh_conversation_t s_from_ingress = { "ingress", true, BURST, NULL, s_ingress_routes };

typedef struct sender_t sender_t;
struct sender_t {
    char name [128];            //  the AUDIT sender; key in senders
    char identity [256];        //  its DEALER's routing id, for ACKs
    size_t identity_size;
    uint64_t acked;             //  every seq <= acked is durable
    uint64_t *window;           //  bit seq % WINDOW_SEQS: durable, > acked + 1
    bool joining;               //  acked not known yet (see above)
    int64_t joining_until_ms;
    uint64_t lowest_seen;
    uint64_t highest_durable;   //  while joining: the window holds seqs up to it
    size_t inflight;            //  entries with the writer
    int64_t seen_ms;
    bool ack_due;               //  in the due list
    sender_t *due_next;
};

//  A record that found every batch busy: sent to the writer first when
//  room comes, and reading stops until then
typedef struct {
    bool held;
    sender_t *sender;
    uint64_t seq;
    zmq_msg_t frame;
    size_t data_offset;         //  the record's bytes in frame
    size_t data_size;
} held_t;

struct audit_t {
    mesh_loop_t *loop;
    mesh_metrics_t *metrics;
    void *socket;               //  ROUTER: AUDIT in, ACK out
    bool reading;
    bool draining;
    audit_writer_t *writer;
    EVP_PKEY *signer;
    int lock_fd;                //  flock on the directory: one writer
    bool locked;                //  this run holds it
    char dir [PATH_MAX];
    int64_t rejoin_ms;
    mesh_map_t *senders;        //  name -> sender_t
    sender_t *due;              //  senders to ACK at the end of this round
    held_t held;
    mesh_timer_t tick;

    struct {
        mesh_metric_t *bad_records;
        mesh_metric_t *duplicates;
        mesh_metric_t *queue_depth;
        mesh_metric_t *acks;
        mesh_metric_t *ack_failures;
        mesh_metric_t *senders;
    } metric;
    mesh_dispatch_counters_t bad_messages;
};

//  Senders ------------------------------------------------------------------

static bool
s_bit (const sender_t *sender, uint64_t seq)
{
    uint64_t bit = seq % WINDOW_SEQS;
    return sender->window && (sender->window [bit / 64] >> (bit % 64) & 1);
}

static void
s_bit_set (sender_t *sender, uint64_t seq, bool on)
{
    if (!sender->window) {
        if (!on)
            return;
        sender->window = calloc (WINDOW_SEQS / 64, sizeof (uint64_t));
        assert (sender->window);
    }
    uint64_t bit = seq % WINDOW_SEQS;
    if (on)
        sender->window [bit / 64] |= (uint64_t) 1 << (bit % 64);
    else
        sender->window [bit / 64] &= ~((uint64_t) 1 << (bit % 64));
}

static void
s_due (audit_t *self, sender_t *sender)
{
    if (sender->ack_due)
        return;
    sender->ack_due = true;
    sender->due_next = self->due;
    self->due = sender;
}

//  Record seq of sender is durable: extend its durable prefix
static void
s_durable (audit_t *self, sender_t *sender, uint64_t seq)
{
    if (sender->joining) {
        //  Remembered in the window: every seq seen is >= lowest_seen, so
        //  the window holds them as long as they span less than it
        s_bit_set (sender, seq, true);
        sender->highest_durable = MESH_MAX (sender->highest_durable, seq);
        return;
    }
    if (seq <= sender->acked) {
        s_due (self, sender);   //  a resend: our ACK may have been lost
        return;
    }
    if (seq > sender->acked + 1) {
        //  Beyond a gap: remembered if near, else it comes again
        if (seq - sender->acked < WINDOW_SEQS)
            s_bit_set (sender, seq, true);
        return;
    }
    sender->acked = seq;
    while (s_bit (sender, sender->acked + 1)) {
        s_bit_set (sender, sender->acked + 1, false);
        sender->acked++;
    }
    s_due (self, sender);
}

//  The base is known: every seq <= acked was acknowledged before.  What was
//  stored during the grace counts at once when the window could hold it;
//  otherwise (or for a record whose batch failed) the ingress's next resend
//  brings it again and the store drops it by request id.
static void
s_joined (sender_t *sender, uint64_t acked)
{
    bool keep = sender->joining && sender->window && sender->highest_durable > acked
             && sender->highest_durable - acked < WINDOW_SEQS;
    sender->joining = false;
    sender->acked = acked;
    sender->highest_durable = 0;
    if (!keep) {
        free (sender->window);
        sender->window = NULL;
        return;
    }
    while (s_bit (sender, sender->acked + 1)) {
        s_bit_set (sender, sender->acked + 1, false);
        sender->acked++;
    }
}

static sender_t *
s_sender (audit_t *self, const mesh_inbox_t *inbox)
{
    const mesh_msg_t *msg = &inbox->msg;
    sender_t *sender = mesh_map_get (self->senders, msg->sender);
    if (!sender) {
        if (mesh_map_size (self->senders) >= MAX_SENDERS)
            return NULL;
        sender = calloc (1, sizeof *sender);
        assert (sender);
        snprintf (sender->name, sizeof sender->name, "%s", msg->sender);
        if (msg->seq == 1)
            sender->acked = 0;
        else {
            sender->joining = true;
            sender->joining_until_ms = mesh_loop_now_ms (self->loop) + self->rejoin_ms;
            sender->lowest_seen = msg->seq;
            mesh_info ("sender %s rejoins at seq %llu: acknowledging in %lld ms", sender->name,
                       (unsigned long long) msg->seq, (long long) self->rejoin_ms);
        }
        mesh_map_put (self->senders, sender->name, sender);
        mesh_metric_set (self->metric.senders, (double) mesh_map_size (self->senders));
    }
    //  A reconnected ingress may come with another routing id
    if (inbox->identity_size != sender->identity_size
    ||  memcmp (inbox->identity, sender->identity, inbox->identity_size) != 0) {
        memcpy (sender->identity, inbox->identity, inbox->identity_size);
        sender->identity_size = inbox->identity_size;
    }
    sender->seen_ms = mesh_loop_now_ms (self->loop);
    if (sender->joining) {
        if (msg->seq < sender->lowest_seen)
            sender->lowest_seen = msg->seq;
        if (msg->seq == 1) {
            s_joined (sender, 0);   //  its first record: nothing was acked before
            s_due (self, sender);
        }
    }
    return sender;
}

static void
s_send_acks (audit_t *self)
{
    while (self->due) {
        sender_t *sender = self->due;
        self->due = sender->due_next;
        sender->ack_due = false;
        sender->due_next = NULL;
        if (sender->joining || sender->acked == 0)
            continue;
        mesh_msg_t ack;
        mesh_msg_init (&ack, MESH_MSG_ACK, NULL);
        snprintf (ack.sender, sizeof ack.sender, "%s", sender->name);
        ack.seq = sender->acked;
        //  A lost ACK costs a resend, which is acknowledged again
        if (mesh_msg_send (self->socket, &ack, sender->identity, sender->identity_size,
                           ZMQ_DONTWAIT) < 0) {
            mesh_metric_inc (self->metric.ack_failures);
            mesh_debug ("cannot ACK %s seq %llu: %s", sender->name,
                        (unsigned long long) sender->acked, zmq_strerror (errno));
        }
        else
            mesh_metric_inc (self->metric.acks);
    }
}

//  Reading ------------------------------------------------------------------

static int s_on_socket (mesh_loop_t *loop, void *socket, void *arg);

static void
s_pause (audit_t *self)
{
    if (self->reading) {
        mesh_loop_zmq_remove (self->loop, self->socket);
        self->reading = false;
    }
}

static void
s_resume (audit_t *self)
{
    if (!self->reading && !self->draining && !self->held.held) {
        mesh_loop_zmq_add (self->loop, self->socket, s_on_socket, self);
        self->reading = true;
    }
}

static void
s_gauge (audit_t *self)
{
    mesh_metric_set (self->metric.queue_depth, (double) audit_inflight (self));
}

//  Hands one record (or, without one, a malformed record's place) to the
//  writer; -1 when it has no room (nothing taken)
static int
s_push (audit_t *self, sender_t *sender, uint64_t seq, const mesh_audit_record_t *record,
        zmq_msg_t *frame)
{
    audit_entry_t entry = { sender, seq, record != NULL };
    if (audit_writer_push (self->writer, &entry, record, frame) < 0)
        return -1;
    sender->inflight++;
    return 0;
}

static int
s_on_audit (void *arg, mesh_inbox_t *inbox)
{
    audit_t *self = arg;
    const mesh_msg_t *msg = &inbox->msg;
    if (msg->seq == 0 || !msg->sender [0]) {
        mesh_warn ("AUDIT without a sender or seq from an ingress, dropped");
        mesh_metric_inc (self->bad_messages.malformed);
        return 0;
    }
    //  A sender speaks for itself only: its name is its connection's
    //  identity, an ingress's name (and with CURVE an ingress's key)
    size_t name_len = strlen (msg->sender);
    if (inbox->identity_size != name_len || memcmp (inbox->identity, msg->sender, name_len) != 0
    ||  strncmp (msg->sender, "ingress-", 8) != 0
    ||  (mesh_curve_enabled () && strcmp (mesh_curve_sender (&inbox->frame), "ingress") != 0)) {
        mesh_warn ("AUDIT for sender \"%s\" from a connection that is not that ingress, dropped",
                   msg->sender);
        mesh_metric_inc (self->bad_messages.unexpected);
        return 0;
    }
    sender_t *sender = s_sender (self, inbox);
    if (!sender) {
        mesh_warn ("AUDIT from a %dth sender (%s), dropped", MAX_SENDERS + 1, msg->sender);
        mesh_metric_inc (self->bad_messages.malformed);
        return 0;
    }
    if (!sender->joining && msg->seq <= sender->acked) {
        //  Durable already: a resend after a lost ACK
        mesh_metric_inc (self->metric.duplicates);
        s_due (self, sender);
        return 0;
    }
    mesh_audit_record_t record;
    char why [256];
    bool valid = mesh_audit_decode (&record, msg->data.data, msg->data.size, why, sizeof why) == 0;
    if (!valid) {
        mesh_warn ("malformed audit record from %s seq %llu (%zu bytes), acknowledged and dropped: %s",
                   sender->name, (unsigned long long) msg->seq, msg->data.size, why);
        mesh_metric_inc (self->metric.bad_records);
    }
    if (s_push (self, sender, msg->seq, valid ? &record : NULL, valid ? &inbox->frame : NULL) == 0)
        return 0;
    //  Every batch is busy: keep this one, read no more until room comes
    held_t *held = &self->held;
    held->held = true;
    held->sender = sender;
    held->seq = msg->seq;
    zmq_msg_init (&held->frame);
    if (valid) {
        const char *base = zmq_msg_data (&inbox->frame);
        held->data_offset = (size_t) (msg->data.data - base);
        held->data_size = msg->data.size;
        zmq_msg_move (&held->frame, &inbox->frame);
    }
    else
        held->data_size = 0;
    s_pause (self);
    //  The writer is backed up: leave the rest in ZeroMQ's queue
    return self->reading ? 0 : -1;
}

//  The held record, if the writer has room now
static void
s_push_held (audit_t *self)
{
    held_t *held = &self->held;
    if (!held->held)
        return;
    mesh_audit_record_t record;
    bool valid = held->data_size > 0;
    if (valid) {
        const char *data = (const char *) zmq_msg_data (&held->frame) + held->data_offset;
        char why [256];
        valid = mesh_audit_decode (&record, data, held->data_size, why, sizeof why) == 0;
        assert (valid);         //  it decoded the first time
    }
    if (s_push (self, held->sender, held->seq, valid ? &record : NULL,
                valid ? &held->frame : NULL) == 0) {
        zmq_msg_close (&held->frame);
        held->held = false;
        s_resume (self);
    }
}

static int
s_on_socket (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    audit_t *self = arg;
    if (self->reading)
        mesh_dispatch (socket, &s_from_ingress, self, &self->bad_messages);
    s_send_acks (self);
    s_gauge (self);
    return 0;
}

//  The writer committed batches (or, stopping, gave up on them)
static void
s_on_written (audit_t *self)
{
    audit_batch_t *batch = audit_writer_take_done (self->writer);
    while (batch) {
        audit_batch_t *next = batch->next;
        for (size_t i = 0; i < batch->entry_count; i++) {
            sender_t *sender = batch->entries [i].sender;
            assert (sender->inflight > 0);
            sender->inflight--;
            //  Not durable: not acknowledged, so the ingress sends it again
            if (batch->durable)
                s_durable (self, sender, batch->entries [i].seq);
        }
        audit_writer_give_back (self->writer, batch);
        batch = next;
    }
    s_send_acks (self);
    s_push_held (self);
    s_resume (self);
    s_gauge (self);
}

static int
s_on_writer_fd (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) loop; (void) fd; (void) events;
    s_on_written (arg);
    return 0;
}

static int
s_on_tick (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    audit_t *self = arg;
    int64_t now = mesh_loop_now_ms (loop);
    size_t cursor = 0;
    sender_t *sender;
    //  The map must not change while iterating: collect, then remove
    sender_t *idle [64];
    size_t idle_count = 0;
    while ((sender = mesh_map_next (self->senders, &cursor, NULL))) {
        if (sender->joining && now >= sender->joining_until_ms) {
            uint64_t before = sender->lowest_seen - 1;
            s_joined (sender, before);
            mesh_info ("sender %s rejoined: records up to seq %llu were acknowledged before, "
                       "durable now up to %llu", sender->name, (unsigned long long) before,
                       (unsigned long long) sender->acked);
            s_due (self, sender);
        }
        if (sender->inflight == 0 && !sender->ack_due && now - sender->seen_ms > SENDER_IDLE_MS
        &&  idle_count < MESH_ARRAY_SIZE (idle))
            idle [idle_count++] = sender;
    }
    for (size_t i = 0; i < idle_count; i++) {
        mesh_map_remove (self->senders, idle [i]->name);
        free (idle [i]->window);
        free (idle [i]);
    }
    mesh_metric_set (self->metric.senders, (double) mesh_map_size (self->senders));
    s_send_acks (self);
    s_gauge (self);
    mesh_loop_timer_start (loop, timer, TICK_MS, s_on_tick, self);
    return 0;
}

//  Senders across a clean restart ------------------------------------------

static bool
s_name_plain (const char *name)
{
    for (const char *c = name; *c; c++)
        if (*c <= ' ' || *c == 0x7f)
            return false;
    return *name != '\0';
}

//  At a clean stop, after the last ACKs: "<acked> <name>" per sender whose
//  durable prefix is known, written whole or not at all
static void
s_state_save (audit_t *self)
{
    char path [PATH_MAX + 16], temp [PATH_MAX + 16];
    snprintf (path, sizeof path, "%s/senders", self->dir);
    snprintf (temp, sizeof temp, "%s/senders.tmp", self->dir);
    FILE *file = fopen (temp, "w");
    if (!file) {
        mesh_warn ("cannot write %s: %s", temp, strerror (errno));
        return;
    }
    size_t cursor = 0, count = 0;
    sender_t *sender;
    while ((sender = mesh_map_next (self->senders, &cursor, NULL)))
        if (!sender->joining && sender->acked > 0 && s_name_plain (sender->name)) {
            fprintf (file, "%llu %s\n", (unsigned long long) sender->acked, sender->name);
            count++;
        }
    bool written = fflush (file) == 0 && fsync (fileno (file)) == 0;
    written = fclose (file) == 0 && written;
    if (!written || rename (temp, path) < 0) {
        mesh_warn ("cannot write %s: %s", path, strerror (errno));
        unlink (temp);
        return;
    }
    mesh_info ("%zu senders' acknowledgements kept in %s for the next run", count, path);
}

//  At start: the senders of the last clean stop.  The file is deleted,
//  durably, before any record is taken: after a crash of this run, its
//  values would be stale (lower than what this run acknowledged), and a
//  sender whose ACKs start below what it has forgotten would wait forever
static int
s_state_load (audit_t *self, char *why, size_t why_size)
{
    char path [PATH_MAX + 16];
    snprintf (path, sizeof path, "%s/senders", self->dir);
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    char line [256], name [160];
    unsigned long long acked;
    size_t count = 0;
    while (fgets (line, sizeof line, file))
        if (sscanf (line, "%llu %150s", &acked, name) == 2 && strlen (name) < sizeof ((sender_t *) 0)->name
        &&  acked > 0 && !mesh_map_get (self->senders, name) && count < MAX_SENDERS) {
            sender_t *sender = calloc (1, sizeof *sender);
            assert (sender);
            snprintf (sender->name, sizeof sender->name, "%s", name);
            sender->acked = acked;
            sender->seen_ms = mesh_loop_now_ms (self->loop);
            mesh_map_put (self->senders, sender->name, sender);
            count++;
        }
    fclose (file);
    int dir_fd = open (self->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (unlink (path) < 0 || dir_fd < 0 || fsync (dir_fd) < 0) {
        snprintf (why, why_size, "cannot delete %s: %s", path, strerror (errno));
        if (dir_fd >= 0)
            close (dir_fd);
        return -1;
    }
    close (dir_fd);
    mesh_info ("%zu senders resume where the last run stopped (%s)", count, path);
    mesh_metric_set (self->metric.senders, (double) mesh_map_size (self->senders));
    return 0;
}

//  Setting up ---------------------------------------------------------------

//  mkdir -p, private: the records are nobody else's business
static int
s_mkdirs (const char *path, char *why, size_t why_size)
{
    char partial [PATH_MAX];
    size_t len = strlen (path);
    if (len == 0 || len >= sizeof partial) {
        snprintf (why, why_size, "bad directory \"%s\"", path);
        return -1;
    }
    memcpy (partial, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (partial [i] != '/' && partial [i] != '\0')
            continue;
        char saved = partial [i];
        partial [i] = '\0';
        if (mkdir (partial, 0700) < 0 && errno != EEXIST) {
            snprintf (why, why_size, "cannot create %s: %s", partial, strerror (errno));
            return -1;
        }
        partial [i] = saved;
    }
    struct stat st;
    if (stat (path, &st) < 0 || !S_ISDIR (st.st_mode)) {
        snprintf (why, why_size, "%s is not a directory", path);
        return -1;
    }
    return 0;
}

//  A path setting: its value, or dir/name when empty
static void
s_path (mesh_config_t *config, const char *field, const char *dir, const char *name,
        char *out, size_t size)
{
    const char *value = mesh_config_str (config, field, "");
    int n = *value ? snprintf (out, size, "%s", value) : snprintf (out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t) n >= size)
        mesh_config_invalid (config, field, "path too long");
}

//  The key ring: the key file and/or the environment.  With neither and
//  the default key file, a development key is made there
static mesh_audit_keyring_t *
s_load_keys (mesh_config_t *config, const char *key_file, const char **env_text,
             char *why, size_t why_size)
{
    const char *env_name = mesh_setting_str (config, "audit.keys_env");
    *env_text = *env_name && getenv (env_name) && *getenv (env_name) ? getenv (env_name) : NULL;
    struct stat st;
    bool file_has_text = stat (key_file, &st) == 0 && st.st_size > 0;
    if (!file_has_text && !*env_text) {
        if (*mesh_setting_str (config, "audit.key_file")) {
            snprintf (why, why_size, "config %s: audit.key_file: %s holds no key and $%s is not set",
                      mesh_config_file (config), key_file, env_name);
            return NULL;
        }
        char id [64], reason [256];
        if (mesh_audit_keyring_rotate (key_file, id, sizeof id, reason, sizeof reason) < 0) {
            snprintf (why, why_size, "cannot make a key in %s: %s", key_file, reason);
            return NULL;
        }
        mesh_warn ("no audit key in %s or $%s: made development key %s in %s; "
                   "without that file the prompts and responses cannot be read",
                   key_file, env_name, id, key_file);
        file_has_text = true;
    }
    char reason [256];
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (file_has_text ? key_file : NULL,
                                                          *env_text, reason, sizeof reason);
    if (!keys)
        snprintf (why, why_size, "audit keys (%s%s%s): %s", file_has_text ? key_file : "",
                  file_has_text && *env_text ? " and $" : *env_text ? "$" : "",
                  *env_text ? env_name : "", reason);
    return keys;
}

static void
s_metrics (audit_t *self, mesh_metrics_t *metrics)
{
    self->metric.bad_records = mesh_metrics_counter (metrics, "seekmesh_audit_bad_records_total",
        "Malformed audit records acknowledged and dropped.", NULL);
    mesh_dispatch_counters (&self->bad_messages, metrics, "audit");
    self->metric.duplicates = mesh_metrics_counter (metrics, "seekmesh_audit_duplicates_total",
        "Records received again (resent) and dropped: already stored.", NULL);
    self->metric.queue_depth = mesh_metrics_gauge (metrics, "seekmesh_audit_queue_depth",
        "Records received and not yet committed and acknowledged.", NULL);
    self->metric.acks = mesh_metrics_counter (metrics, "seekmesh_audit_acks_total",
        "ACK messages sent.", NULL);
    self->metric.ack_failures = mesh_metrics_counter (metrics, "seekmesh_audit_ack_failures_total",
        "ACKs that could not be sent (sender gone or not reading); its resend is acked.", NULL);
    self->metric.senders = mesh_metrics_gauge (metrics, "seekmesh_audit_senders",
        "Ingress runs this service knows.", NULL);
}

audit_t *
audit_new (mesh_config_t *config, void *ctx, mesh_loop_t *loop, mesh_metrics_t *metrics,
           char *why, size_t why_size)
{
    audit_t *self = calloc (1, sizeof *self);
    assert (self);
    self->loop = loop;
    self->metrics = metrics;
    self->lock_fd = -1;
    s_metrics (self, metrics);
    self->senders = mesh_map_new ();

    //  Settings
    int instance = mesh_config_instance ();
    const char *endpoint = mesh_setting_str (config, "audit.listen");
    const char *dir = mesh_setting_str (config, "audit.dir");
    int64_t batch_max = mesh_setting_int (config, "audit.batch_max");
    int64_t batch_ms = mesh_setting_int (config, "audit.batch_ms");
    int64_t checkpoint_ms = mesh_setting_int (config, "audit.checkpoint_ms");
    int64_t retention_days = mesh_setting_int (config, "audit.retention_days");
    self->rejoin_ms = mesh_setting_int (config, "audit.rejoin_ms");
    if (self->rejoin_ms < 0)        //  two of the ingresses' resend intervals and a second
        self->rejoin_ms = 2 * mesh_setting_int (config, "ingress.audit_resend_ms") + 1000;
    //  "" : the run directory of scripts/mesh, else run/audit (from the
    //  working directory); instance i > 0 gets its own, "<dir>-<i>", since
    //  one chain has one writer
    const char *run_dir = getenv ("SEEKMESH_MESH_RUN_DIR");
    char base [PATH_MAX];
    if (*dir)
        snprintf (base, sizeof base, "%s", dir);
    else
    if (run_dir && *run_dir)
        snprintf (base, sizeof base, "%s/audit", run_dir);
    else
        snprintf (base, sizeof base, "run/audit");
    int n = instance > 0 ? snprintf (self->dir, sizeof self->dir, "%s-%d", base, instance)
                         : snprintf (self->dir, sizeof self->dir, "%s", base);
    if (n < 0 || (size_t) n >= sizeof self->dir - 64)
        mesh_config_invalid (config, "audit.dir", "path too long");
    char key_file [PATH_MAX], signing_file [PATH_MAX], public_file [PATH_MAX];
    s_path (config, "audit.key_file", self->dir, "keys", key_file, sizeof key_file);
    s_path (config, "audit.signing_key_file", self->dir, "signing.pem", signing_file, sizeof signing_file);
    s_path (config, "audit.public_key_file", self->dir, "signing.pub.pem", public_file, sizeof public_file);
    if (mesh_config_failed (config)) {
        snprintf (why, why_size, "%s", mesh_config_failed (config));
        audit_destroy (&self);
        return NULL;
    }

    //  The directory, held by this process alone
    char reason [PATH_MAX + 512];
    if (s_mkdirs (self->dir, reason, sizeof reason) < 0) {
        snprintf (why, why_size, "config %s: audit.dir: %s", mesh_config_file (config), reason);
        audit_destroy (&self);
        return NULL;
    }
    char lock_file [PATH_MAX + 8];
    snprintf (lock_file, sizeof lock_file, "%s/.lock", self->dir);
    self->lock_fd = open (lock_file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (self->lock_fd < 0 || flock (self->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf (why, why_size, "audit.dir %s: %s", self->dir,
                  errno == EWOULDBLOCK ? "another seekmesh-audit is using it" : strerror (errno));
        audit_destroy (&self);
        return NULL;
    }
    self->locked = true;
    if (s_state_load (self, why, why_size) < 0) {
        audit_destroy (&self);
        return NULL;
    }

    //  Keys, signer, store
    const char *env_text = NULL;
    mesh_audit_keyring_t *keys = s_load_keys (config, key_file, &env_text, why, why_size);
    if (!keys) {
        audit_destroy (&self);
        return NULL;
    }
    self->signer = mesh_audit_seal_signer_load (signing_file, public_file, reason, sizeof reason);
    if (!self->signer) {
        mesh_audit_keyring_destroy (&keys);
        snprintf (why, why_size, "audit.signing_key_file %s: %s", signing_file, reason);
        audit_destroy (&self);
        return NULL;
    }
    mesh_info ("store in %s, key %s encrypts, checkpoints signed with %s", self->dir,
               mesh_audit_keyring_active (keys), signing_file);
    audit_writer_config_t writer_config = {
        .dir = self->dir, .key_file = key_file, .keys_env_text = env_text, .keys = keys,
        .signer = self->signer, .batch_max = (size_t) batch_max, .batch_ms = batch_ms,
        .checkpoint_ms = checkpoint_ms, .retention_days = retention_days, .metrics = metrics
    };
    self->writer = audit_writer_new (&writer_config, why, why_size);
    if (!self->writer) {
        audit_destroy (&self);
        return NULL;
    }
    mesh_loop_fd_add (loop, audit_writer_fd (self->writer), MESH_READ, s_on_writer_fd, self);

    //  The socket: a queue of one batch per ingress, enough to keep the
    //  writer fed (the rest waits in the ingress's spool, which is bounded
    //  in bytes: this queue is bounded only in messages), and frames no
    //  larger than the protocol allows
    self->socket = mesh_zmq_socket (ctx, ZMQ_ROUTER);
    int one = 1, hwm = (int) MESH_MAX (batch_max, 1000);
    int64_t max_frame = (int64_t) MESH_MAX_BODY_BYTES + 4096;
    zmq_setsockopt (self->socket, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt (self->socket, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt (self->socket, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (self->socket, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
    if (mesh_curve_bind (self->socket, "audit.listen", endpoint, why, why_size) < 0) {
        audit_destroy (&self);
        return NULL;
    }
    mesh_info ("records on %s", endpoint);
    s_resume (self);
    mesh_loop_timer_start (loop, &self->tick, TICK_MS, s_on_tick, self);
    return self;
}

void
audit_destroy (audit_t **self_p)
{
    assert (self_p);
    audit_t *self = *self_p;
    if (!self)
        return;
    mesh_loop_timer_stop (self->loop, &self->tick);
    if (self->socket)
        s_pause (self);
    self->draining = true;
    if (self->writer) {
        //  What it commits now is acknowledged before the socket closes
        audit_writer_stop (self->writer);
        mesh_loop_fd_remove (self->loop, audit_writer_fd (self->writer));
        if (self->socket)
            s_on_written (self);
        audit_writer_destroy (&self->writer);
    }
    if (self->held.held)
        zmq_msg_close (&self->held.frame);
    if (self->socket) {
        //  Give the last ACKs a moment to leave
        int linger = 500;
        zmq_setsockopt (self->socket, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close (self->socket);
    }
    if (self->locked)
        s_state_save (self);
    if (self->senders) {
        size_t cursor = 0;
        sender_t *sender;
        while ((sender = mesh_map_next (self->senders, &cursor, NULL))) {
            free (sender->window);
            free (sender);
        }
        mesh_map_destroy (&self->senders);
    }
    EVP_PKEY_free (self->signer);
    if (self->lock_fd >= 0)
        close (self->lock_fd);
    free (self);
    *self_p = NULL;
}

bool
audit_ready (audit_t *self, mesh_buf_t *why)
{
    if (self->draining) {
        mesh_buf_append_str (why, "draining");
        return false;
    }
    return true;                //  the store opened in audit_new
}

size_t
audit_drain (audit_t *self)
{
    if (!self->draining) {
        self->draining = true;
        s_pause (self);
        audit_writer_flush (self->writer);
    }
    return audit_inflight (self);
}

size_t
audit_inflight (audit_t *self)
{
    return (self->writer ? audit_writer_pending (self->writer) : 0) + (self->held.held ? 1 : 0);
}

//  Selftest -----------------------------------------------------------------

static int
s_test_unlink (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st; (void) flag; (void) ftw;
    return remove (path);
}

static int
s_test_stop (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer; (void) arg;
    return -1;
}

//  Runs the loop for ms
static void
s_test_pump (mesh_loop_t *loop, int ms)
{
    mesh_timer_t timer = { 0 };
    mesh_loop_timer_start (loop, &timer, ms, s_test_stop, NULL);
    mesh_loop_run (loop);
    mesh_loop_timer_stop (loop, &timer);
}

//  Sends AUDIT seq with the record of id (or with bytes that are none)
static void
s_test_send (void *dealer, const char *sender, uint64_t seq, const char *id)
{
    mesh_bytes_t prompt = { "a prompt", 8 }, response = { "a response", 10 };
    mesh_audit_record_t record;
    mesh_buf_t buf;
    mesh_buf_init (&buf);
    if (id) {
        audit_bench_record (&record, id, &prompt, &response);
        int rc = mesh_audit_encode (&record, &buf);
        assert (rc == 0);
    }
    else
        mesh_buf_append (&buf, "\x93\x01\x02\x03", 4);
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_AUDIT, NULL);
    snprintf (msg.sender, sizeof msg.sender, "%s", sender);
    msg.seq = seq;
    msg.data = (mesh_bytes_t) { mesh_buf_head (&buf), mesh_buf_size (&buf) };
    int rc = mesh_msg_send (dealer, &msg, NULL, 0, 0);
    assert (rc == 0);
    (void) rc;
    mesh_buf_free (&buf);
}

//  Runs the loop until the dealer has an ACK of at least seq, or ms pass;
//  returns the highest ACK seen (ACKs only grow)
static uint64_t
s_test_acks (mesh_loop_t *loop, void *dealer, uint64_t seq, int ms)
{
    uint64_t highest = 0;
    int64_t deadline = mesh_mono_ms () + ms;
    do {
        s_test_pump (loop, 5);
        mesh_inbox_t inbox;
        char why [128];
        while (mesh_msg_recv (dealer, &inbox, false, why, sizeof why) == 1) {
            assert (inbox.msg.type == MESH_MSG_ACK);
            if (inbox.msg.seq > highest)
                highest = inbox.msg.seq;
            mesh_inbox_close (&inbox);
        }
    } while (highest < seq && mesh_mono_ms () < deadline);
    return highest;
}

static int
s_test_count (void *arg, const mesh_audit_query_row_t *row)
{
    (void) row;
    (*(size_t *) arg)++;
    return 0;
}

static void
s_test_senders (void)
{
    audit_t self = { 0 };
    sender_t sender = { 0 };
    //  In order: the prefix grows
    s_durable (&self, &sender, 1);
    s_durable (&self, &sender, 2);
    assert (sender.acked == 2 && sender.ack_due && self.due == &sender);
    //  Beyond a gap: held until the gap fills, then jumped over
    s_durable (&self, &sender, 4);
    s_durable (&self, &sender, 5);
    s_durable (&self, &sender, 7);
    assert (sender.acked == 2);
    s_durable (&self, &sender, 3);
    assert (sender.acked == 5);
    s_durable (&self, &sender, 6);
    assert (sender.acked == 7);
    //  Too far ahead: forgotten (it is resent); a resend below: ACK again
    s_durable (&self, &sender, 7 + WINDOW_SEQS);
    assert (sender.acked == 7);
    self.due = NULL;
    sender.ack_due = false;
    s_durable (&self, &sender, 4);
    assert (sender.acked == 7 && sender.ack_due);
    for (uint64_t seq = 8; seq < 8 + 3 * WINDOW_SEQS; seq++)
        s_durable (&self, &sender, seq);
    assert (sender.acked == 7 + 3 * WINDOW_SEQS);
    //  Rejoining: nothing counts until the base is known
    s_joined (&sender, 0);
    sender.joining = true;
    s_durable (&self, &sender, 1);
    assert (sender.acked == 0);
    free (sender.window);
}

void
audit_test (bool verbose)
{
    (void) verbose;
    s_test_senders ();

    //  The service, on an ipc endpoint in a temporary directory
    char dir [] = "/tmp/seekmesh-audit-test-XXXXXX";
    assert (mkdtemp (dir));
    char text [1024], why [1024], endpoint [128], store [128];
    snprintf (endpoint, sizeof endpoint, "ipc://%s/audit.ipc", dir);
    snprintf (store, sizeof store, "%s/store", dir);
    snprintf (text, sizeof text,
              "{ \"audit\": { \"listen\": \"%s\", \"dir\": \"%s\", \"batch_max\": 16,"
              "  \"batch_ms\": 1, \"checkpoint_ms\": 100, \"rejoin_ms\": 300,"
              "  \"keys_env\": \"SEEKMESH_AUDIT_SELFTEST_KEYS\" } }", endpoint, store);
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "audit.json", why, sizeof why);
    assert (config);
    void *ctx = zmq_ctx_new ();
    mesh_loop_t *loop = mesh_loop_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    audit_t *audit = audit_new (config, ctx, loop, metrics, why, sizeof why);
    assert (audit);
    mesh_buf_t ready_why;
    mesh_buf_init (&ready_why);
    assert (audit_ready (audit, &ready_why));

    //  A second service on the same directory is refused
    mesh_loop_t *loop2 = mesh_loop_new ();
    audit_t *second = audit_new (config, ctx, loop2, metrics, why, sizeof why);
    assert (!second && strstr (why, "another seekmesh-audit"));
    mesh_loop_destroy (&loop2);

    //  An ingress: 200 records, a malformed one, one more; all acknowledged
    void *a = mesh_zmq_socket (ctx, ZMQ_DEALER);
    zmq_setsockopt (a, ZMQ_ROUTING_ID, "ingress-a", 9);
    assert (zmq_connect (a, endpoint) == 0);
    char ids [203][MESH_ID_LEN + 1];
    for (uint64_t seq = 1; seq <= 202; seq++) {
        mesh_id_new (ids [seq]);
        s_test_send (a, "ingress-a", seq, seq == 201 ? NULL : ids [seq]);
    }
    assert (s_test_acks (loop, a, 202, 5000) == 202);
    mesh_metric_t *records = mesh_metrics_counter (metrics, "seekmesh_audit_records_total", "", NULL);
    mesh_metric_t *bad = mesh_metrics_counter (metrics, "seekmesh_audit_bad_records_total", "", NULL);
    assert (mesh_metric_value (records) == 201 && mesh_metric_value (bad) == 1);
    //  A resend of a durable record: acknowledged again, not stored
    s_test_send (a, "ingress-a", 5, ids [5]);
    assert (s_test_acks (loop, a, 202, 2000) == 202);
    assert (mesh_metric_value (records) == 201);

    //  An ingress from before this run: its first records here are 10 and
    //  11 (8 and 9 died with the last run); its resend brings 8 and 9.  No
    //  ACK during the grace; after it, the next resend is acknowledged
    void *b = mesh_zmq_socket (ctx, ZMQ_DEALER);
    zmq_setsockopt (b, ZMQ_ROUTING_ID, "ingress-b", 9);
    assert (zmq_connect (b, endpoint) == 0);
    char old_ids [12][MESH_ID_LEN + 1];
    for (uint64_t seq = 8; seq <= 11; seq++)
        mesh_id_new (old_ids [seq]);
    s_test_send (b, "ingress-b", 10, old_ids [10]);
    s_test_send (b, "ingress-b", 11, old_ids [11]);
    for (uint64_t seq = 8; seq <= 11; seq++)
        s_test_send (b, "ingress-b", seq, old_ids [seq]);
    assert (s_test_acks (loop, b, 1, 200) == 0);
    //  Resent, as the ingress does when ACKs stall, until acknowledged
    uint64_t acked = 0;
    for (int round = 0; round < 20 && acked < 11; round++) {
        for (uint64_t seq = 8; seq <= 11; seq++)
            s_test_send (b, "ingress-b", seq, old_ids [seq]);
        acked = s_test_acks (loop, b, 11, 250);
        assert (acked == 0 || acked >= 8);     //  never below what it holds
    }
    assert (acked == 11);
    sender_t *rejoined = mesh_map_get (audit->senders, "ingress-b");
    assert (rejoined && !rejoined->joining && rejoined->acked == 11);
    assert (mesh_metric_value (records) == 205);

    //  Draining: nothing left, not ready.  The record is taken first (a
    //  fixed wait lost it to a loaded machine: drained before it was read)
    s_test_send (a, "ingress-a", 203, NULL);
    sender_t *sender_a = mesh_map_get (audit->senders, "ingress-a");
    assert (sender_a);
    int64_t taken_by = mesh_mono_ms () + 2000;
    while (sender_a->acked < 203 && sender_a->inflight == 0 && mesh_mono_ms () < taken_by)
        s_test_pump (loop, 1);
    assert (sender_a->acked == 203 || sender_a->inflight > 0);
    audit_drain (audit);
    int64_t deadline = mesh_mono_ms () + 2000;
    while (audit_inflight (audit) > 0 && mesh_mono_ms () < deadline)
        s_test_pump (loop, 5);
    assert (audit_inflight (audit) == 0);
    assert (!audit_ready (audit, &ready_why));
    mesh_buf_free (&ready_why);
    audit_destroy (&audit);

    //  A clean restart: the senders resume where they were, at once
    char senders_file [PATH_MAX];
    snprintf (senders_file, sizeof senders_file, "%s/senders", store);
    assert (access (senders_file, F_OK) == 0);
    audit = audit_new (config, ctx, loop, metrics, why, sizeof why);
    assert (audit);
    assert (access (senders_file, F_OK) != 0);
    sender_t *resumed = mesh_map_get (audit->senders, "ingress-a");
    assert (resumed && !resumed->joining && resumed->acked == 203);
    char last_id [MESH_ID_LEN + 1];
    mesh_id_new (last_id);
    s_test_send (a, "ingress-a", 204, last_id);
    assert (s_test_acks (loop, a, 204, 2000) == 204);
    audit_destroy (&audit);
    zmq_close (a);
    zmq_close (b);

    //  On disk: every record once, the chain verifies
    mesh_audit_query_filter_t filter = { 0 };
    size_t rows = 0;
    assert (mesh_audit_query (store, &filter, NULL, s_test_count, &rows, why, sizeof why) == 0);
    assert (rows == 206);
    char public_file [PATH_MAX + 32];
    snprintf (public_file, sizeof public_file, "%s/signing.pub.pem", store);
    EVP_PKEY *public_key = mesh_audit_seal_public_key_load (public_file, why, sizeof why);
    assert (public_key);
    mesh_buf_t report;
    mesh_buf_init (&report);
    assert (mesh_audit_verify (store, NULL, public_key, 0, &report, why, sizeof why) == 0);
    mesh_buf_free (&report);
    EVP_PKEY_free (public_key);

    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
    zmq_ctx_term (ctx);
    mesh_config_destroy (&config);
    nftw (dir, s_test_unlink, 16, FTW_DEPTH | FTW_PHYS);
}
