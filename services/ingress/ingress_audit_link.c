/*  ingress_audit_link: the spool of audit records and the link to
    seekmesh-audit.

    to / from   message     handler             does
    ---------   ---------   -----------------   ------------------------------
    audit   <-  AUDIT       s_pump              the spool's records not sent
                                                since the last (re)connection
    audit   ->  ACK         s_on_ack            forget every record up to seq
    monitor ->  connected   s_on_monitor        send every unacknowledged
                                                record again, in seq order
    monitor ->  disconnected                    hold new records until then
    timer   ->  (100 ms)    s_on_tick           no ACK for resend_ms: send
                                                them all again

    The spool is a ring of records in seq order; `next` is the first one
    not sent since the link last (re)connected.  A new record goes out
    within a millisecond when nothing older waits, together with the others
    of that millisecond (one wake-up of ZeroMQ's I/O thread for them all),
    so the audit service sees a sender's records in order on every
    connection.  The DEALER has ZMQ_IMMEDIATE: a
    send while the audit is away fails at once (EAGAIN) instead of filling a
    queue that the reconnection would throw away.

    The audit service acknowledges a sender's records only up to the first
    one it is missing.  A record dropped before it got there (when_full
    "drop") would stop its ACKs for good, so once records were dropped, the
    next time the link sends from the oldest (reconnected, or no ACK for
    resend_ms) it renumbers what the spool holds from 1 under a new sender
    name, as a restarted ingress would.  The store drops what it already
    has by request id.

    Frames go to ZeroMQ without a copy (zmq_msg_init_data): a frame is
    counted by the spool and by each message sending it, and freed by the
    last to let go, which may be ZeroMQ's I/O thread (an atomic count).  The
    rest runs on the lws service thread only.                               */
#include "ingress_audit_link.h"

#include "mesh_curve.h"
#include "mesh_dispatch.h"
#include "mesh_log.h"
#include "mesh_metrics.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

//  What the link hears: the audit service's acknowledgements
static mesh_handler_fn s_on_ack_message;
static const mesh_route_t s_audit_routes [] = {
    { MESH_MSG_ACK, s_on_ack_message },     //  records up to seq are durable
    { 0, NULL }
};
static const mesh_conversation_t s_from_audit = { "audit service", false, 1024, NULL, s_audit_routes };

#define TICK_MS             100
#define FLUSH_US            1000    //  new records wait this long to go out together

//  The spool -------------------------------------------------------------------

//  One encoded AUDIT message, shared with the ZeroMQ messages sending it
typedef struct {
    atomic_int refs;
    size_t size;
    char data [];
} frame_t;

typedef struct {
    uint64_t seq;
    frame_t *frame;
    int64_t end_us;             //  monotonic: the request ended
    int64_t sent_ms;            //  monotonic: last sent
    bool sent;
} entry_t;

typedef struct {
    entry_t *ring;
    size_t capacity;            //  a power of two, or 0
    size_t head;                //  the oldest entry
    size_t count;
    size_t next;                //  entries [0, next) sent since the last rewind
    uint64_t bytes;             //  of the frames held
    uint64_t max_records;
    uint64_t max_bytes;
} spool_t;

//  Any thread: ZeroMQ calls it when it is done with a message
static void
s_frame_release (void *data, void *hint)
{
    (void) data;
    frame_t *frame = hint;
    if (atomic_fetch_sub_explicit (&frame->refs, 1, memory_order_acq_rel) == 1)
        free (frame);
}

//  A frame of size bytes (for tests)
static frame_t *
s_frame_new (const void *data, size_t size)
{
    frame_t *frame = malloc (offsetof (frame_t, data) + size);
    assert (frame);
    atomic_init (&frame->refs, 1);
    frame->size = size;
    memcpy (frame->data, data, size);
    return frame;
}

static void
s_spool_init (spool_t *spool, uint64_t max_records, uint64_t max_bytes)
{
    memset (spool, 0, sizeof *spool);
    spool->max_records = max_records;
    spool->max_bytes = max_bytes;
}

static entry_t *
s_spool_at (spool_t *spool, size_t index)
{
    assert (index < spool->count);
    return &spool->ring [(spool->head + index) & (spool->capacity - 1)];
}

//  Takes the frame's reference
static void
s_spool_push (spool_t *spool, uint64_t seq, frame_t *frame, int64_t end_us)
{
    if (spool->count == spool->capacity) {
        size_t capacity = spool->capacity ? spool->capacity * 2 : 1024;
        entry_t *ring = malloc (capacity * sizeof *ring);
        assert (ring);
        for (size_t i = 0; i < spool->count; i++)
            ring [i] = *s_spool_at (spool, i);
        free (spool->ring);
        spool->ring = ring;
        spool->capacity = capacity;
        spool->head = 0;
    }
    spool->count++;
    *s_spool_at (spool, spool->count - 1) = (entry_t) { seq, frame, end_us, 0, false };
    spool->bytes += frame->size;
}

//  Forgets the oldest entry
static void
s_spool_pop (spool_t *spool)
{
    entry_t *oldest = s_spool_at (spool, 0);
    spool->bytes -= oldest->frame->size;
    s_frame_release (NULL, oldest->frame);
    spool->head = (spool->head + 1) & (spool->capacity - 1);
    spool->count--;
    if (spool->next)
        spool->next--;
}

//  At the bound: a new request would make it overflow
static bool
s_spool_full (const spool_t *spool)
{
    return spool->count >= spool->max_records || spool->bytes >= spool->max_bytes;
}

static bool
s_spool_over (const spool_t *spool)
{
    return spool->count > spool->max_records || spool->bytes > spool->max_bytes;
}

static void
s_spool_fini (spool_t *spool)
{
    while (spool->count)
        s_spool_pop (spool);
    free (spool->ring);
    memset (spool, 0, sizeof *spool);
}

//  The link ---------------------------------------------------------------------

struct ingress_audit_link_t {
    ingress_t *ingress;
    bool on;                    //  an endpoint is set
    char endpoint [256];
    bool drop_when_full;        //  else refuse
    int64_t resend_ms;
    char sender [128];          //  our routing id: ingress-<instance>-<pid>-<start ms>
    char previous [128];        //  the name before the last renumbering
    uint64_t seq;               //  the last one given
    spool_t spool;
    void *socket;               //  DEALER
    void *monitor;              //  PAIR: the DEALER's connects and disconnects
    bool connected;
    ingress_watch_t socket_watch;
    ingress_watch_t monitor_watch;
    lws_sorted_usec_list_t tick_sul;
    lws_sorted_usec_list_t flush_sul;
    int64_t flush_us;           //  0: each record at once (before start)
    bool flush_armed;
    int64_t progress_ms;        //  the last ACK that freed records, or resend
    int64_t dropped_logged_ms;
    bool gap;                   //  records dropped since the last renumbering
    char state [300];           //  for ingress_audit_link_state
    struct {
        mesh_metric_t *records;
        mesh_metric_t *acked;
        mesh_metric_t *resent;
        mesh_metric_t *dropped;
        mesh_metric_t *unacked;
        mesh_metric_t *connected;
        mesh_metric_t *spool_bytes;
        mesh_metric_t *ack_seconds;
    } metric;
    mesh_dispatch_counters_t bad_messages;
};

static void
s_gauges (ingress_audit_link_t *self)
{
    mesh_metric_set (self->metric.unacked, (double) self->spool.count);
    mesh_metric_set (self->metric.spool_bytes, (double) self->spool.bytes);
}

//  The AUDIT message carrying a record, as a frame.  NULL if it cannot be
//  encoded (a bug).
static frame_t *
s_frame_make (ingress_audit_link_t *self, uint64_t seq, const void *record, size_t size)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_AUDIT, NULL);
    snprintf (msg.sender, sizeof msg.sender, "%s", self->sender);
    msg.seq = seq;
    msg.data = (mesh_bytes_t) { record, size };
    //  Encoded behind the frame's header, in one allocation of about the
    //  right size, shrunk to it after
    mesh_buf_t buf;
    mesh_buf_init (&buf);
    mesh_buf_reserve (&buf, offsetof (frame_t, data) + size + 256);
    mesh_buf_commit (&buf, offsetof (frame_t, data));
    if (mesh_msg_encode (&msg, &buf) < 0) {
        mesh_buf_free (&buf);
        return NULL;
    }
    frame_t *frame = realloc (buf.data, buf.len);
    if (!frame)
        frame = (frame_t *) buf.data;
    atomic_init (&frame->refs, 1);
    frame->size = buf.len - offsetof (frame_t, data);
    return frame;
}

//  A new sender name for this run: "ingress-<instance>-<pid>-<ms>", the ms
//  different from the last one's
static void
s_name (ingress_audit_link_t *self)
{
    long long ms = (long long) mesh_wall_ms ();
    char name [sizeof self->sender];
    snprintf (name, sizeof name, "ingress-%d-%d-%lld", mesh_config_instance (), (int) getpid (), ms);
    if (mesh_streq (name, self->sender))
        snprintf (name, sizeof name, "ingress-%d-%d-%lld", mesh_config_instance (), (int) getpid (), ms + 1);
    memcpy (self->sender, name, sizeof name);
}

//  After drops: what the spool holds becomes seq 1 .. count of a new
//  sender, which the audit service starts acknowledging from scratch
static void
s_renumber (ingress_audit_link_t *self)
{
    spool_t *spool = &self->spool;
    memcpy (self->previous, self->sender, sizeof self->previous);
    s_name (self);
    mesh_warn ("records were dropped: sending the %zu left as sender %s (was %s)", spool->count,
               self->sender, self->previous);
    spool->bytes = 0;
    for (size_t i = 0; i < spool->count; i++) {
        entry_t *entry = s_spool_at (spool, i);
        mesh_msg_t msg;
        char why [128];
        frame_t *frame = NULL;
        if (mesh_msg_decode (&msg, entry->frame->data, entry->frame->size, why, sizeof why) == 0)
            frame = s_frame_make (self, i + 1, msg.data.data, msg.data.size);
        assert (frame);             //  our own frame, made the same way
        s_frame_release (NULL, entry->frame);
        entry->frame = frame;
        entry->seq = i + 1;
        spool->bytes += frame->size;
    }
    self->seq = spool->count;
    self->gap = false;
    spool->next = 0;
    s_gauges (self);
}

//  Sends one spooled frame without copying it.  0, or -1 with errno.
static int
s_send (ingress_audit_link_t *self, entry_t *entry)
{
    frame_t *frame = entry->frame;
    atomic_fetch_add_explicit (&frame->refs, 1, memory_order_relaxed);
    zmq_msg_t msg;
    if (zmq_msg_init_data (&msg, frame->data, frame->size, s_frame_release, frame) < 0) {
        s_frame_release (NULL, frame);
        return -1;
    }
    if (zmq_msg_send (&msg, self->socket, ZMQ_DONTWAIT) < 0) {
        int error = errno;
        zmq_msg_close (&msg);           //  gives the reference back
        errno = error;
        return -1;
    }
    return 0;
}

//  Sends what has not been sent since the last rewind, until ZeroMQ says
//  wait (the audit is away, or the high-water mark)
static void
s_pump (ingress_audit_link_t *self)
{
    spool_t *spool = &self->spool;
    int64_t now = mesh_mono_ms ();
    while (spool->next < spool->count) {
        entry_t *entry = s_spool_at (spool, spool->next);
        if (s_send (self, entry) < 0) {
            if (errno != EAGAIN)
                mesh_warn ("cannot send AUDIT seq %llu to %s: %s", (unsigned long long) entry->seq,
                           self->endpoint, zmq_strerror (errno));
            return;
        }
        if (entry->sent)
            mesh_metric_inc (self->metric.resent);
        entry->sent = true;
        entry->sent_ms = now;
        spool->next++;
    }
}

static void
s_on_ack (ingress_audit_link_t *self, uint64_t seq)
{
    if (seq > self->seq) {
        mesh_warn ("ACK of seq %llu from %s: our last record is %llu; ignored",
                   (unsigned long long) seq, self->endpoint, (unsigned long long) self->seq);
        mesh_metric_inc (self->bad_messages.unexpected);
        return;
    }
    spool_t *spool = &self->spool;
    int64_t now = mesh_mono_us ();
    size_t freed = 0;
    while (spool->count && s_spool_at (spool, 0)->seq <= seq) {
        mesh_metric_observe (self->metric.ack_seconds,
                             (double) (now - s_spool_at (spool, 0)->end_us) / 1e6);
        s_spool_pop (spool);
        freed++;
    }
    if (freed) {
        mesh_metric_add (self->metric.acked, (double) freed);
        self->progress_ms = now / 1000;
        s_gauges (self);
    }
}

//  An ACK for our sender name (or for the one before a renumbering, whose
//  records are being resent anyway)
static int
s_on_ack_message (void *arg, mesh_inbox_t *inbox)
{
    ingress_audit_link_t *self = arg;
    const mesh_msg_t *msg = &inbox->msg;
    if (mesh_streq (msg->sender, self->previous))
        return 0;
    if (!mesh_streq (msg->sender, self->sender)) {
        mesh_warn ("ACK for sender \"%s\" from %s: not ours", msg->sender, self->endpoint);
        mesh_metric_inc (self->bad_messages.unexpected);
        return 0;
    }
    s_on_ack (self, msg->seq);
    return 0;
}

static void
s_read_acks (ingress_audit_link_t *self)
{
    mesh_dispatch (self->socket, &s_from_audit, self, &self->bad_messages);
}

//  Reads ACKs and sends what waits, as long as the socket lets us.  Called
//  after our own sends too: ZMQ_FD signals edges, and a send may consume
//  the one that says an ACK came in.
static void
s_service (ingress_audit_link_t *self)
{
    if (!self->socket)
        return;
    for (int round = 0; round < 16; round++) {
        int events = 0;
        size_t size = sizeof events;
        if (zmq_getsockopt (self->socket, ZMQ_EVENTS, &events, &size) < 0)
            return;
        bool busy = false;
        if (events & ZMQ_POLLIN) {
            s_read_acks (self);
            busy = true;
        }
        spool_t *spool = &self->spool;
        if ((events & ZMQ_POLLOUT) && self->connected && spool->next < spool->count) {
            size_t before = spool->next;
            s_pump (self);
            busy = busy || spool->next != before;
        }
        if (!busy)
            return;
    }
}

static void
s_on_socket (ingress_t *ingress, ingress_watch_t *watch)
{
    (void) ingress;
    s_service (watch->arg);
}

static void
s_on_monitor (ingress_t *ingress, ingress_watch_t *watch)
{
    (void) ingress;
    ingress_audit_link_t *self = watch->arg;
    int event, value;
    while (mesh_zmq_monitor_read (self->monitor, &event, &value)) {
        if (event == ZMQ_EVENT_CONNECTED) {
            self->connected = true;
            self->spool.next = 0;       //  what was in flight may be lost
            if (self->gap)
                s_renumber (self);
            mesh_info ("audit %s connected; %zu records to send", self->endpoint, self->spool.count);
        }
        else
        if (event == ZMQ_EVENT_DISCONNECTED) {
            self->connected = false;
            self->spool.next = 0;
            mesh_warn ("audit %s disconnected; %zu records unacknowledged", self->endpoint,
                       self->spool.count);
        }
    }
    mesh_metric_set (self->metric.connected, self->connected ? 1 : 0);
    s_service (self);
}

static void
s_on_flush (lws_sorted_usec_list_t *sul)
{
    ingress_audit_link_t *self = lws_container_of (sul, ingress_audit_link_t, flush_sul);
    self->flush_armed = false;
    if (self->connected) {
        s_pump (self);
        s_service (self);
    }
}

//  Every 100 ms: what the ZMQ_FD edge may have missed, and the resend of
//  records that waited audit_resend_ms for an ACK that did not come (the
//  audit may have restarted between two of our messages, or be stuck)
static void
s_on_tick (lws_sorted_usec_list_t *sul)
{
    ingress_audit_link_t *self = lws_container_of (sul, ingress_audit_link_t, tick_sul);
    s_service (self);
    spool_t *spool = &self->spool;
    int64_t now = mesh_mono_ms ();
    if (spool->count && now - self->progress_ms >= self->resend_ms) {
        entry_t *oldest = s_spool_at (spool, 0);
        int64_t since = oldest->sent ? oldest->sent_ms : oldest->end_us / 1000;
        if (now - since >= self->resend_ms) {
            if (self->connected)
                mesh_warn ("no ACK from %s for %lld ms: sending %zu records again from seq %llu",
                           self->endpoint, (long long) (now - since), spool->count,
                           (unsigned long long) oldest->seq);
            self->progress_ms = now;
            spool->next = 0;
            if (self->gap && self->connected)
                s_renumber (self);
            s_pump (self);
            s_service (self);
        }
    }
    lws_sul_schedule (self->ingress->context, 0, &self->tick_sul, s_on_tick, TICK_MS * LWS_US_PER_MS);
}

//  Records in ----------------------------------------------------------------------

int
ingress_audit_link_send (ingress_audit_link_t *self, const void *record, size_t size, int64_t end_us)
{
    if (!self->on)
        return -1;
    frame_t *frame = s_frame_make (self, self->seq + 1, record, size);
    if (!frame) {
        mesh_error ("cannot wrap an audit record of %zu bytes: lost", size);
        mesh_metric_inc (self->metric.dropped);
        return -1;
    }
    spool_t *spool = &self->spool;
    s_spool_push (spool, ++self->seq, frame, end_us);
    mesh_metric_inc (self->metric.records);
    if (self->drop_when_full) {
        //  Make room by forgetting the oldest, never the record just made
        size_t dropped = 0;
        while (s_spool_over (spool) && spool->count > 1) {
            s_spool_pop (spool);
            dropped++;
        }
        if (dropped) {
            self->gap = true;
            mesh_metric_add (self->metric.dropped, (double) dropped);
            int64_t now = mesh_mono_ms ();
            if (now - self->dropped_logged_ms >= 1000) {
                self->dropped_logged_ms = now;
                mesh_warn ("the audit spool is full (%zu records, %llu bytes; %s): dropping the "
                           "oldest records, %.0f so far", spool->count,
                           (unsigned long long) spool->bytes, ingress_audit_link_state (self),
                           mesh_metric_value (self->metric.dropped));
            }
        }
    }
    s_gauges (self);
    if (self->socket && self->connected && spool->next == spool->count - 1) {
        //  The records of the next millisecond go with this one: one
        //  wake-up of ZeroMQ's I/O thread (and of the audit's) for them all
        if (self->flush_us > 0) {
            if (!self->flush_armed) {
                self->flush_armed = true;
                lws_sul_schedule (self->ingress->context, 0, &self->flush_sul, s_on_flush,
                                  self->flush_us);
            }
        }
        else {
            s_pump (self);
            s_service (self);
        }
    }
    return 0;
}

bool
ingress_audit_link_full (ingress_audit_link_t *self)
{
    return self->on && !self->drop_when_full && s_spool_full (&self->spool);
}

size_t
ingress_audit_link_unacked (ingress_audit_link_t *self)
{
    return self ? self->spool.count : 0;
}

const char *
ingress_audit_link_state (ingress_audit_link_t *self)
{
    snprintf (self->state, sizeof self->state, "%s %s", self->endpoint,
              self->connected ? "connected" : "away");
    return self->state;
}

//  Setup ----------------------------------------------------------------------------

ingress_audit_link_t *
ingress_audit_link_new (ingress_t *ingress, const char *endpoint, uint64_t max_records,
                        uint64_t max_bytes, bool drop_when_full, int64_t resend_ms)
{
    ingress_audit_link_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ingress = ingress;
    self->on = *endpoint != 0;
    snprintf (self->endpoint, sizeof self->endpoint, "%s", endpoint);
    self->drop_when_full = drop_when_full;
    self->resend_ms = resend_ms;
    s_name (self);
    s_spool_init (&self->spool, max_records, max_bytes);
    self->progress_ms = mesh_mono_ms ();
    mesh_metrics_t *metrics = ingress->metrics;
    self->metric.records = mesh_metrics_counter (metrics, "seekmesh_ingress_audit_records_total",
        "Audit records made, one per request.", NULL);
    self->metric.acked = mesh_metrics_counter (metrics, "seekmesh_ingress_audit_acked_total",
        "Audit records the audit service has stored durably.", NULL);
    self->metric.resent = mesh_metrics_counter (metrics, "seekmesh_ingress_audit_resent_total",
        "Audit records sent again (after a reconnection, or no ACK for audit_resend_ms).", NULL);
    self->metric.dropped = mesh_metrics_counter (metrics, "seekmesh_ingress_audit_dropped_total",
        "Audit records lost: dropped from a full spool (audit_when_full \"drop\").", NULL);
    self->metric.unacked = mesh_metrics_gauge (metrics, "seekmesh_ingress_audit_unacked",
        "Audit records not yet acknowledged (in the spool).", NULL);
    self->metric.spool_bytes = mesh_metrics_gauge (metrics, "seekmesh_ingress_audit_spool_bytes",
        "Bytes of the audit records in the spool.", NULL);
    self->metric.connected = mesh_metrics_gauge (metrics, "seekmesh_ingress_audit_connected",
        "1 while the link to the audit service is connected.", NULL);
    self->metric.ack_seconds = mesh_metrics_histogram (metrics, "seekmesh_ingress_audit_ack_seconds",
        "Time from a request's end to the audit service's ACK of its record (durable commit).", NULL);
    mesh_dispatch_counters (&self->bad_messages, metrics, "ingress");
    return self;
}

int
ingress_audit_link_start (ingress_audit_link_t *self, char *why, size_t why_size)
{
    ingress_t *ingress = self->ingress;
    if (!self->on)
        return 0;
    void *ctx = ingress_mesh_context (ingress);
    self->socket = mesh_zmq_socket (ctx, ZMQ_DEALER);
    if (!self->socket) {
        snprintf (why, why_size, "cannot make the audit socket: %s", zmq_strerror (errno));
        return -1;
    }
    int one = 1;
    zmq_setsockopt (self->socket, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt (self->socket, ZMQ_ROUTING_ID, self->sender, strlen (self->sender));
    const char *monitor = "inproc://ingress-audit-monitor";
    if (zmq_socket_monitor (self->socket, monitor, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) < 0
    ||  !(self->monitor = zmq_socket (ctx, ZMQ_PAIR))
    ||  zmq_connect (self->monitor, monitor) < 0) {
        snprintf (why, why_size, "cannot monitor the audit socket: %s", zmq_strerror (errno));
        return -1;
    }
    char reason [512];
    if (mesh_curve_connect (self->socket, "audit", self->endpoint, reason, sizeof reason) < 0) {
        snprintf (why, why_size, "config %s: ingress.audit_endpoint: %s",
                  mesh_config_file (ingress->config), reason);
        return -1;
    }
    mesh_info ("audit records to %s as %s (spool: %llu records, %llu bytes; when full: %s)",
               self->endpoint, self->sender, (unsigned long long) self->spool.max_records,
               (unsigned long long) self->spool.max_bytes, self->drop_when_full ? "drop" : "refuse");
    self->socket_watch.arg = self;
    self->monitor_watch.arg = self;
    if (ingress_adopt_socket (ingress, &self->monitor_watch, self->monitor, s_on_monitor) < 0
    ||  ingress_adopt_socket (ingress, &self->socket_watch, self->socket, s_on_socket) < 0) {
        snprintf (why, why_size, "cannot watch the audit socket");
        return -1;
    }
    lws_sul_schedule (ingress->context, 0, &self->tick_sul, s_on_tick, TICK_MS * LWS_US_PER_MS);
    self->flush_us = FLUSH_US;
    return 0;
}

void
ingress_audit_link_destroy (ingress_audit_link_t **self_p)
{
    assert (self_p);
    ingress_audit_link_t *self = *self_p;
    if (!self)
        return;
    if (self->socket) {
        lws_sul_cancel (&self->tick_sul);
        if (self->flush_armed)
            lws_sul_cancel (&self->flush_sul);
    }
    if (self->spool.count)
        mesh_warn ("%zu audit records were never acknowledged by %s (seq %llu .. %llu)",
                   self->spool.count, self->endpoint,
                   (unsigned long long) s_spool_at (&self->spool, 0)->seq,
                   (unsigned long long) self->seq);
    else
    if (self->on)
        mesh_info ("every audit record acknowledged (%llu)", (unsigned long long) self->seq);
    if (self->socket) {
        zmq_socket_monitor (self->socket, NULL, 0);
        zmq_close (self->socket);
    }
    if (self->monitor)
        zmq_close (self->monitor);
    //  ZeroMQ lets go of the frames it still holds when its context ends
    s_spool_fini (&self->spool);
    free (self);
    *self_p = NULL;
}

//  Selftest -------------------------------------------------------------------------

static void
s_test_spool (void)
{
    spool_t spool;
    s_spool_init (&spool, 4, 1000);
    for (uint64_t seq = 1; seq <= 3; seq++)
        s_spool_push (&spool, seq, s_frame_new ("0123456789", 10), (int64_t) seq);
    assert (spool.count == 3 && spool.bytes == 30 && !s_spool_full (&spool));
    s_spool_push (&spool, 4, s_frame_new ("x", 1), 4);
    assert (s_spool_full (&spool) && !s_spool_over (&spool));
    s_spool_push (&spool, 5, s_frame_new ("y", 1), 5);
    assert (s_spool_over (&spool));
    //  Sent up to 3; popping the oldest moves the cursor with it
    spool.next = 3;
    s_spool_pop (&spool);
    assert (spool.count == 4 && spool.next == 2 && s_spool_at (&spool, 0)->seq == 2);
    assert (spool.bytes == 22);
    //  A frame ZeroMQ still holds outlives the spool's reference
    frame_t *held = s_spool_at (&spool, 0)->frame;
    atomic_fetch_add (&held->refs, 1);
    s_spool_pop (&spool);
    assert (atomic_load (&held->refs) == 1 && memcmp (held->data, "0123456789", 10) == 0);
    s_frame_release (NULL, held);
    s_spool_fini (&spool);
    //  The byte bound
    s_spool_init (&spool, 100, 25);
    char big [20] = { 0 };
    s_spool_push (&spool, 1, s_frame_new (big, sizeof big), 1);
    assert (!s_spool_full (&spool));
    s_spool_push (&spool, 2, s_frame_new (big, 5), 2);
    assert (s_spool_full (&spool) && !s_spool_over (&spool));
    s_spool_push (&spool, 3, s_frame_new (big, 1), 3);
    assert (s_spool_over (&spool));
    //  The ring grows past its first size and keeps order
    s_spool_fini (&spool);
    s_spool_init (&spool, 1u << 20, 1u << 30);
    for (uint64_t seq = 1; seq <= 3000; seq++) {
        s_spool_push (&spool, seq, s_frame_new ("z", 1), 0);
        if (seq % 3 == 0)
            s_spool_pop (&spool);
    }
    assert (spool.count == 2000 && s_spool_at (&spool, 0)->seq == 1001);
    for (size_t i = 0; i < spool.count; i++)
        assert (s_spool_at (&spool, i)->seq == 1001 + i);
    s_spool_fini (&spool);
}

//  Records handed over are wrapped, numbered, spooled; ACKs free them
static void
s_test_link (void)
{
    ingress_t ingress;
    memset (&ingress, 0, sizeof ingress);
    ingress.metrics = mesh_metrics_new ();
    ingress_audit_link_t *self = ingress_audit_link_new (&ingress, "tcp://127.0.0.1:1", 3, 1 << 20,
                                                         false, 2000);
    assert (strncmp (self->sender, "ingress-0-", 10) == 0);
    for (int i = 1; i <= 4; i++) {
        char record [16];
        snprintf (record, sizeof record, "rec%d", i);
        assert (ingress_audit_link_send (self, record, 4, mesh_mono_us ()) == 0);
    }
    assert (self->spool.count == 4 && self->seq == 4 && mesh_metric_value (self->metric.records) == 4);
    mesh_msg_t msg;
    char why [128];
    entry_t *entry = s_spool_at (&self->spool, 1);
    assert (mesh_msg_decode (&msg, entry->frame->data, entry->frame->size, why, sizeof why) == 0);
    assert (msg.type == MESH_MSG_AUDIT && mesh_streq (msg.sender, self->sender) && msg.seq == 2);
    assert (msg.data.size == 4 && memcmp (msg.data.data, "rec2", 4) == 0);
    //  Past the bound: the records of requests already taken are all kept,
    //  new requests are to be refused
    assert (ingress_audit_link_full (self));
    s_on_ack (self, 2);
    assert (self->spool.count == 2 && s_spool_at (&self->spool, 0)->seq == 3);
    assert (mesh_metric_value (self->metric.acked) == 2 && mesh_metric_value (self->metric.unacked) == 2);
    assert (!ingress_audit_link_full (self));
    s_on_ack (self, 1);                 //  old news
    assert (self->spool.count == 2);
    s_on_ack (self, 9);                 //  never sent: ignored
    assert (self->spool.count == 2 && mesh_metric_value (self->bad_messages.unexpected) == 1);
    s_on_ack (self, 4);
    assert (self->spool.count == 0 && mesh_metric_value (self->metric.spool_bytes) == 0);
    assert (mesh_metric_value (self->metric.acked) == 4);
    //  "drop": the oldest go, the newest stays, the spool is never full
    self->drop_when_full = true;
    for (int i = 5; i <= 9; i++)
        assert (ingress_audit_link_send (self, "rec", 3, mesh_mono_us ()) == 0);
    assert (self->spool.count == 3 && s_spool_at (&self->spool, 0)->seq == 7);
    assert (mesh_metric_value (self->metric.dropped) == 2 && !ingress_audit_link_full (self));
    //  Which would leave the audit waiting for seqs 5 and 6: what is left
    //  becomes 1 .. 3 of a new sender
    assert (self->gap);
    char old [sizeof self->sender];
    memcpy (old, self->sender, sizeof old);
    uint64_t bytes = self->spool.bytes;
    s_renumber (self);
    assert (!self->gap && !mesh_streq (old, self->sender) && strncmp (self->sender, "ingress-0-", 10) == 0);
    assert (self->seq == 3 && self->spool.bytes == bytes);
    for (size_t i = 0; i < 3; i++) {
        entry = s_spool_at (&self->spool, i);
        assert (mesh_msg_decode (&msg, entry->frame->data, entry->frame->size, why, sizeof why) == 0);
        assert (entry->seq == i + 1 && msg.seq == i + 1 && mesh_streq (msg.sender, self->sender));
        assert (msg.data.size == 3 && memcmp (msg.data.data, "rec", 3) == 0);
    }
    assert (ingress_audit_link_send (self, "rec", 3, mesh_mono_us ()) == 0 && self->seq == 4);
    ingress_audit_link_destroy (&self);
    ingress_audit_link_destroy (&self);
    //  Audit off: nothing is taken
    self = ingress_audit_link_new (&ingress, "", 3, 1 << 20, false, 2000);
    assert (ingress_audit_link_send (self, "rec", 3, 0) == -1);
    assert (!ingress_audit_link_full (self) && ingress_audit_link_unacked (self) == 0);
    ingress_audit_link_destroy (&self);
    mesh_metrics_destroy (&ingress.metrics);
}

//  Receives one AUDIT at the test's ROUTER; returns its seq
static uint64_t
s_test_receive (void *router, const char *sender)
{
    zmq_pollitem_t item = { router, 0, ZMQ_POLLIN, 0 };
    assert (zmq_poll (&item, 1, 2000) == 1);
    mesh_inbox_t inbox;
    char why [128];
    assert (mesh_msg_recv (router, &inbox, true, why, sizeof why) == 1);
    assert (inbox.identity_size == strlen (sender) && memcmp (inbox.identity, sender, inbox.identity_size) == 0);
    assert (inbox.msg.type == MESH_MSG_AUDIT && mesh_streq (inbox.msg.sender, sender));
    uint64_t seq = inbox.msg.seq;
    mesh_inbox_close (&inbox);
    return seq;
}

//  The real sockets: sends without copies, resends in order, ACKs read
static void
s_test_socket (void)
{
    ingress_t ingress;
    memset (&ingress, 0, sizeof ingress);
    ingress.metrics = mesh_metrics_new ();
    ingress_audit_link_t *self = ingress_audit_link_new (&ingress, "inproc://audit-test", 100,
                                                         1 << 20, false, 2000);
    void *ctx = zmq_ctx_new ();
    void *router = mesh_zmq_socket (ctx, ZMQ_ROUTER);
    assert (zmq_bind (router, "inproc://audit-test") == 0);
    self->socket = mesh_zmq_socket (ctx, ZMQ_DEALER);
    zmq_setsockopt (self->socket, ZMQ_ROUTING_ID, self->sender, strlen (self->sender));
    assert (zmq_connect (self->socket, "inproc://audit-test") == 0);
    //  Not connected yet: records wait
    assert (ingress_audit_link_send (self, "rec1", 4, mesh_mono_us ()) == 0);
    assert (self->spool.next == 0);
    //  Connected: the waiting one goes, then each new one at once
    self->connected = true;
    s_pump (self);
    assert (ingress_audit_link_send (self, "rec2", 4, mesh_mono_us ()) == 0);
    assert (self->spool.next == 2);
    assert (s_test_receive (router, self->sender) == 1);
    assert (s_test_receive (router, self->sender) == 2);
    //  A reconnection sends every unacknowledged record again, in order
    self->spool.next = 0;
    s_pump (self);
    assert (mesh_metric_value (self->metric.resent) == 2);
    assert (s_test_receive (router, self->sender) == 1);
    assert (s_test_receive (router, self->sender) == 2);
    //  The ACK frees both, though ZeroMQ may still hold a frame
    mesh_msg_t ack;
    mesh_msg_init (&ack, MESH_MSG_ACK, NULL);
    snprintf (ack.sender, sizeof ack.sender, "%s", self->sender);
    ack.seq = 2;
    assert (mesh_msg_send (router, &ack, self->sender, strlen (self->sender), 0) == 0);
    for (int i = 0; i < 2000 && self->spool.count; i++) {
        s_service (self);
        usleep (1000);
    }
    assert (self->spool.count == 0 && mesh_metric_value (self->metric.acked) == 2);
    //  An ACK for another sender is not ours
    snprintf (ack.sender, sizeof ack.sender, "ingress-9-1-1");
    assert (mesh_msg_send (router, &ack, self->sender, strlen (self->sender), 0) == 0);
    for (int i = 0; i < 2000 && mesh_metric_value (self->bad_messages.unexpected) == 0; i++) {
        s_service (self);
        usleep (1000);
    }
    assert (mesh_metric_value (self->bad_messages.unexpected) == 1);
    ingress_audit_link_destroy (&self);
    zmq_close (router);
    zmq_ctx_term (ctx);
    mesh_metrics_destroy (&ingress.metrics);
}

void
ingress_audit_link_test (bool verbose)
{
    (void) verbose;
    s_test_spool ();
    s_test_link ();
    s_test_socket ();
}
