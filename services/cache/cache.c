/*  cache: the response cache stage on the bus.

    What it hears on cache.listen (a ROUTER socket: routers and connectors
    connect) is the table s_routes below.  A LOOKUP is answered within the
    router's bound (its deadline, less cache.lookup_margin_ms) or not at
    all: the router has gone upstream by then.  In order:

      1. FAQ entries of the tenant (and model), on the last user message,
         unless the request says no-cache: answered here, verdict "faq";
      2. not cacheable (the router asked for FAQ alone), or a temperature
         over the model's max_temperature: "bypass";
      3. no-cache: a fresh call, kept at the end: "miss";
      4. the key (SHA-256 of the tenant, or "" when the model's answers are
         shared, the model, and the canonical JSON of the body without
         user, stream and stream_options) in L1: served, "hit";
      5. a call in flight for the key: the request follows it
         ("coalesced") or waits with its Redis lookup;
      6. Redis (L2): "hit", or the first waiter leads a call ("miss") and
         the others follow it.

    Answers (hits, FAQ, followers' events) go straight to the ingress, as a
    connector's do (HEAD, CHUNK, END, ERROR), with x-seekmesh-cache and the
    audit's fields; VERDICT goes to the router, which settles the quota.
    Reactor thread only.                                                     */
#include "cache.h"
#include "cache_flight.h"

#include "mesh_canon.h"
#include "mesh_curve.h"
#include "mesh_dispatch.h"
#include "mesh_faq.h"
#include "mesh_faq_store.h"
#include "mesh_log.h"
#include "mesh_msg.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

//  What the cache hears ---------------------------------------------------------

static mesh_handler_fn s_on_lookup, s_on_event, s_on_cancel, s_on_heartbeat;

static const mesh_route_t s_routes [] = {
    { MESH_MSG_LOOKUP,    s_on_lookup },    //  router: answer, coalesce, or say miss
    { MESH_MSG_HEAD,      s_on_event },     //  connector: a leader's stream began
    { MESH_MSG_CHUNK,     s_on_event },     //  connector: a leader's event: fan out
    { MESH_MSG_END,       s_on_event },     //  connector: a leader's answer: fan out, keep
    { MESH_MSG_ERROR,     s_on_event },     //  connector or router: a leader failed
    { MESH_MSG_LOST,      s_on_event },     //  router: a leader's connector is gone
    { MESH_MSG_CANCEL,    s_on_cancel },    //  router: a client left; connector: its ingress
    { MESH_MSG_HEARTBEAT, s_on_heartbeat }, //  router: still there (answered)
    { 0, NULL }
};
static const mesh_conversation_t s_conversation = { "router or connector", true, 256, NULL, s_routes };

//  The top-level members the key leaves out: they do not change the answer
static const char *const s_not_in_key [] = { "user", "stream", "stream_options", NULL };

struct cache_t {
    mesh_config_t *config;
    mesh_loop_t *loop;
    mesh_metrics_t *metrics;
    void *ctx;
    char name [64];
    void *socket;                   //  ROUTER at cache.listen
    mesh_outbox_t *outbox;          //  PUSH to ingress reply endpoints
    cache_l1_t *l1;
    cache_l2_t *l2;
    cache_flights_t *flights;
    mesh_faq_store_t *faq;
    mesh_canon_t *canon;
    mesh_buf_t scratch;
    mesh_buf_t key_text;
    mesh_buf_t last_user;
    bool draining;
    int64_t margin_ms;
    size_t piece_bytes;
    mesh_timer_t tick;
    uint64_t evictions_seen;

    struct {
        mesh_metric_t *hit, *miss, *coalesced, *faq, *bypass, *late;
        mesh_metric_t *hit_l1, *hit_l2;
        mesh_metric_t *faq_kind [3];
        mesh_metric_t *bytes, *entries, *evictions, *stored;
        mesh_metric_t *lookup_seconds;
    } metric;
    mesh_dispatch_counters_t bad_messages;
};

//  Sending ---------------------------------------------------------------------------

int
cache_send_ingress (cache_t *self, const cache_client_t *client, mesh_msg_t *msg)
{
    if (mesh_outbox_send (self->outbox, client->reply_to, msg) == 0)
        return 0;
    mesh_warn ("cannot send %s to %s: %s req=%s", mesh_msg_name (msg->type), client->reply_to,
               zmq_strerror (errno), msg->id);
    return -1;
}

void
cache_send_router (cache_t *self, const char *identity, size_t size, const mesh_msg_t *msg)
{
    if (self->socket && mesh_msg_send (self->socket, msg, identity, size, ZMQ_DONTWAIT) < 0)
        mesh_debug ("cannot send %s to router %.*s: %s req=%s", mesh_msg_name (msg->type), (int) size,
                    identity, zmq_strerror (errno), msg->id);
}

void
cache_verdict (cache_t *self, const cache_client_t *client, const char *verdict,
               uint64_t prompt_tokens, uint64_t output_tokens)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_VERDICT, client->id);
    msg.attempt = client->attempt;
    snprintf (msg.cache, sizeof msg.cache, "%s", verdict);
    msg.prompt_tokens = prompt_tokens;
    msg.output_tokens = output_tokens;
    cache_send_router (self, client->router, client->router_size, &msg);
    mesh_metric_t *counter = mesh_streq (verdict, "hit") ? self->metric.hit
                           : mesh_streq (verdict, "miss") ? self->metric.miss
                           : mesh_streq (verdict, "coalesced") ? self->metric.coalesced
                           : mesh_streq (verdict, "faq") ? self->metric.faq : self->metric.bypass;
    mesh_metric_inc (counter);
    mesh_metric_observe (self->metric.lookup_seconds,
                         (double) (mesh_mono_us () - client->received_us) / 1e6);
    mesh_debug ("verdict %s req=%s", verdict, client->id);
}

bool
cache_in_time (cache_t *self, const cache_client_t *client)
{
    return mesh_wall_ms () + self->margin_ms < client->deadline_ms;
}

//  The fields every message to the client's ingress carries
static void
s_client_fields (const cache_client_t *client, mesh_msg_t *msg, uint32_t type, const char *verdict,
                 const char *ref)
{
    mesh_msg_init (msg, type, client->id);
    msg->attempt = client->attempt;
    msg->token = client->token;
    memcpy (msg->limits, client->limits, sizeof msg->limits);
    memcpy (msg->tenant, client->tenant, sizeof msg->tenant);
    memcpy (msg->key_id, client->key_id, sizeof msg->key_id);
    snprintf (msg->cache, sizeof msg->cache, "%s", verdict);
    snprintf (msg->cache_ref, sizeof msg->cache_ref, "%s", ref ? ref : "");
}

void
cache_serve (cache_t *self, const cache_client_t *client, const cache_entry_t *entry,
             const char *verdict, const char *ref)
{
    char id [48];
    cache_entry_new_id (id);
    int64_t created = mesh_wall_ms () / 1000;
    mesh_msg_t msg;
    if (client->stream) {
        s_client_fields (client, &msg, MESH_MSG_HEAD, verdict, ref);
        msg.status = 200;
        snprintf (msg.model, sizeof msg.model, "%s", entry->model);
        if (cache_send_ingress (self, client, &msg) < 0)
            return;
        for (size_t i = 0; i < entry->chunk_count; i++) {
            cache_entry_chunk (entry, i, id, created, &self->scratch);
            s_client_fields (client, &msg, MESH_MSG_CHUNK, verdict, ref);
            msg.data = (mesh_bytes_t) { mesh_buf_head (&self->scratch), mesh_buf_size (&self->scratch) };
            if (cache_send_ingress (self, client, &msg) < 0)
                return;
        }
    }
    s_client_fields (client, &msg, MESH_MSG_END, verdict, ref);
    msg.status = 200;
    snprintf (msg.model, sizeof msg.model, "%s", entry->model);
    snprintf (msg.finish, sizeof msg.finish, "%s", entry->finish);
    msg.prompt_tokens = entry->prompt_tokens;
    msg.output_tokens = entry->output_tokens;
    msg.cached_tokens = entry->cached_tokens;
    msg.reason_tokens = entry->reason_tokens;
    if (!client->stream) {
        cache_entry_body (entry, id, created, &self->scratch);
        msg.data = (mesh_bytes_t) { mesh_buf_head (&self->scratch), mesh_buf_size (&self->scratch) };
    }
    cache_send_ingress (self, client, &msg);
}

//  Keeping ----------------------------------------------------------------------------

static void
s_gauges (cache_t *self)
{
    mesh_metric_set (self->metric.bytes, (double) cache_l1_bytes (self->l1));
    mesh_metric_set (self->metric.entries, (double) cache_l1_count (self->l1));
    uint64_t evictions = cache_l1_evictions (self->l1);
    if (evictions > self->evictions_seen) {
        mesh_metric_add (self->metric.evictions, (double) (evictions - self->evictions_seen));
        self->evictions_seen = evictions;
    }
}

void
cache_keep_l1 (cache_t *self, cache_entry_t *entry)
{
    cache_l1_put (self->l1, entry);
    s_gauges (self);
}

void
cache_keep (cache_t *self, const char *key, const char *model, const char *body, size_t len,
            int64_t ttl_s)
{
    char why [256];
    cache_entry_t *entry = cache_entry_new (key, model, body, len, mesh_wall_ms (), ttl_s * 1000,
                                            self->piece_bytes, why, sizeof why);
    if (!entry) {
        mesh_info ("answer not kept: %s", why);
        return;
    }
    mesh_metric_inc (self->metric.stored);
    cache_l2_put (self->l2, entry);
    cache_keep_l1 (self, entry);
}

//  Lookups ------------------------------------------------------------------------------

//  The key: SHA-256 of scope, model and the canonical body, in hex
static void
s_key (cache_t *self, const char *scope, const char *model, char key [65])
{
    mesh_buf_t *text = &self->key_text;
    mesh_buf_reset (text);
    mesh_buf_append (text, scope, strlen (scope) + 1);
    mesh_buf_append (text, model, strlen (model) + 1);
    mesh_canon_write (self->canon, s_not_in_key, text);
    unsigned char digest [32];
    EVP_Digest (mesh_buf_head (text), mesh_buf_size (text), digest, NULL, EVP_sha256 (), NULL);
    for (size_t i = 0; i < 32; i++)
        sprintf (key + 2 * i, "%02x", digest [i]);
}

static void
s_on_l2 (void *arg, cache_entry_t *entry);

//  A pending Redis lookup: which flight it was for
typedef struct {
    cache_t *cache;
    char key [65];
    uint64_t serial;
} l2_ask_t;

static void
s_on_l2 (void *arg, cache_entry_t *entry)
{
    l2_ask_t *ask = arg;
    cache_t *self = ask->cache;
    if (entry)
        mesh_metric_inc (self->metric.hit_l2);
    cache_flights_l2_answer (self->flights, ask->key, ask->serial, entry);
    free (ask);
}

static bool
s_from_role (mesh_inbox_t *inbox, const char *role)
{
    const char *sender = mesh_curve_sender (&inbox->frame);
    return !*sender || strcmp (sender, role) == 0;
}

static int
s_on_lookup (void *arg, mesh_inbox_t *inbox)
{
    cache_t *self = arg;
    const mesh_msg_t *msg = &inbox->msg;
    if (!s_from_role (inbox, "router")) {
        mesh_metric_inc (self->bad_messages.unexpected);
        return 0;
    }
    cache_client_t client = { .attempt = msg->attempt, .token = msg->token, .stream = msg->stream,
                              .deadline_ms = (int64_t) msg->deadline_ms,
                              .received_us = mesh_mono_us () };
    memcpy (client.id, msg->id, sizeof client.id);
    memcpy (client.reply_to, msg->reply_to, sizeof client.reply_to);
    memcpy (client.model, msg->model, sizeof client.model);
    memcpy (client.tenant, msg->tenant, sizeof client.tenant);
    memcpy (client.key_id, msg->key_id, sizeof client.key_id);
    memcpy (client.limits, msg->limits, sizeof client.limits);
    memcpy (client.router, inbox->identity, inbox->identity_size);
    client.router_size = inbox->identity_size;
    if (!cache_in_time (self, &client)) {
        //  Its router has gone upstream, or will before an answer reaches it
        mesh_metric_inc (self->metric.late);
        mesh_debug ("lookup too late (deadline %lld, now %lld) req=%s", (long long) client.deadline_ms,
                    (long long) mesh_wall_ms (), client.id);
        return 0;
    }
    if (self->draining) {
        cache_verdict (self, &client, "bypass", 0, 0);
        return 0;
    }
    //  The leader of a call, tried again (its connector was lost)
    cache_flight_t *led = cache_flights_led_by (self->flights, client.id);
    if (led) {
        cache_flight_retry (led, &client);
        return 0;
    }
    char why [128];
    if (mesh_canon_parse (self->canon, msg->body.data, msg->body.size, why, sizeof why) < 0) {
        mesh_debug ("body not cacheable: %s req=%s", why, client.id);
        cache_verdict (self, &client, "bypass", 0, 0);
        return 0;
    }
    bool no_cache = msg->flags & MESH_LOOKUP_NO_CACHE;
    //  1. FAQ entries
    mesh_faq_t *faq = mesh_faq_store_entries (self->faq);
    if ((msg->flags & MESH_LOOKUP_FAQ) && !no_cache && mesh_faq_covers (faq, client.tenant, client.model)) {
        mesh_buf_reset (&self->last_user);
        if (mesh_canon_last_user (self->canon, &self->last_user)) {
            const mesh_faq_entry_t *entry = mesh_faq_match (faq, client.tenant, client.model,
                                                            mesh_buf_head (&self->last_user),
                                                            mesh_buf_size (&self->last_user));
            if (entry) {
                const char *answer = mesh_faq_entry_answer (entry);
                cache_entry_t *served = cache_entry_text (client.model, answer, self->piece_bytes);
                cache_serve (self, &client, served, "faq", mesh_faq_entry_id (entry));
                cache_entry_destroy (&served);
                mesh_metric_inc (self->metric.faq_kind [mesh_faq_entry_kind (entry)]);
                cache_verdict (self, &client, "faq", 0, 0);
                return 0;
            }
        }
    }
    //  2. What is not cached
    double temperature = 1.0;           //  DeepSeek's default
    mesh_canon_number (self->canon, "temperature", &temperature);
    if (!(msg->flags & MESH_LOOKUP_STORE) || msg->ttl_s == 0
    ||  (msg->max_temp_milli < MESH_LOOKUP_ANY_TEMPERATURE && llround (temperature * 1000) > msg->max_temp_milli)) {
        cache_verdict (self, &client, "bypass", 0, 0);
        return 0;
    }
    char key [65];
    s_key (self, (msg->flags & MESH_LOOKUP_SHARED) ? "" : client.tenant, client.model, key);
    cache_flight_t *flight = cache_flights_joinable (self->flights, key);
    //  3. A fresh answer, asked for
    if (no_cache) {
        cache_flights_lead (self->flights, key, &client, msg->ttl_s, flight == NULL);
        return 0;
    }
    //  4. L1
    cache_entry_t *entry = cache_l1_get (self->l1, key, mesh_wall_ms ());
    if (entry) {
        mesh_metric_inc (self->metric.hit_l1);
        cache_serve (self, &client, entry, "hit", "");
        cache_verdict (self, &client, "hit", entry->prompt_tokens, entry->output_tokens);
        return 0;
    }
    //  5. A call in flight
    if (flight) {
        if (cache_flight_add (flight, &client) < 0)
            cache_verdict (self, &client, "bypass", 0, 0);
        return 0;
    }
    //  6. Redis, then upstream
    if (cache_l2_ready (self->l2)) {
        l2_ask_t *ask = calloc (1, sizeof *ask);
        assert (ask);
        ask->cache = self;
        memcpy (ask->key, key, sizeof ask->key);
        cache_flights_look (self->flights, key, &client, msg->ttl_s, &ask->serial);
        if (cache_l2_get (self->l2, key, s_on_l2, ask) == 0)
            return 0;
        s_on_l2 (ask, NULL);            //  refused at once: as a miss
        return 0;
    }
    cache_flights_lead (self->flights, key, &client, msg->ttl_s, true);
    return 0;
}

static int
s_on_event (void *arg, mesh_inbox_t *inbox)
{
    cache_t *self = arg;
    uint32_t type = inbox->msg.type;
    bool from_router = type == MESH_MSG_LOST || type == MESH_MSG_ERROR;
    bool from_connector = type != MESH_MSG_LOST;
    if (!(from_router && s_from_role (inbox, "router")) && !(from_connector && s_from_role (inbox, "connector"))) {
        mesh_metric_inc (self->bad_messages.unexpected);
        return 0;
    }
    cache_flights_event (self->flights, &inbox->msg);
    return 0;
}

static int
s_on_cancel (void *arg, mesh_inbox_t *inbox)
{
    cache_t *self = arg;
    if (!s_from_role (inbox, "router") && !s_from_role (inbox, "connector")) {
        mesh_metric_inc (self->bad_messages.unexpected);
        return 0;
    }
    cache_flights_cancel (self->flights, &inbox->msg);
    return 0;
}

static int
s_on_heartbeat (void *arg, mesh_inbox_t *inbox)
{
    cache_t *self = arg;
    if (!s_from_role (inbox, "router")) {
        mesh_metric_inc (self->bad_messages.unexpected);
        return 0;
    }
    mesh_msg_t beat;
    mesh_msg_init (&beat, MESH_MSG_HEARTBEAT, NULL);
    snprintf (beat.sender, sizeof beat.sender, "%s", self->name);
    beat.capacity = self->draining ? 0 : 1;
    beat.inflight = (uint32_t) MESH_MIN (cache_flights_count (self->flights), 10000000u);
    mesh_msg_send (self->socket, &beat, inbox->identity, inbox->identity_size, ZMQ_DONTWAIT);
    return 0;
}

static int
s_on_socket (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    cache_t *self = arg;
    mesh_dispatch (socket, &s_conversation, self, &self->bad_messages);
    return 0;
}

static void
s_on_ingress_lost (void *arg, const char *endpoint)
{
    cache_t *self = arg;
    cache_flights_ingress_lost (self->flights, endpoint);
}

static int
s_on_tick (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    cache_t *self = arg;
    mesh_faq_store_tick (self->faq);
    s_gauges (self);
    mesh_loop_timer_start (loop, timer, 500, s_on_tick, self);
    return 0;
}

//  Lifecycle -----------------------------------------------------------------------------

static void
s_metrics (cache_t *self, mesh_metrics_t *m)
{
    const char *lookups = "seekmesh_cache_lookups_total";
    const char *help = "Lookups answered, by what the cache did: hit (a kept answer), miss (the request "
                       "goes upstream and its answer is kept), coalesced (it joined an identical call), "
                       "faq (an operator's answer), bypass (not cached), late (too late to answer).";
    self->metric.hit = mesh_metrics_counter (m, lookups, help, "result=\"hit\"");
    self->metric.miss = mesh_metrics_counter (m, lookups, help, "result=\"miss\"");
    self->metric.coalesced = mesh_metrics_counter (m, lookups, help, "result=\"coalesced\"");
    self->metric.faq = mesh_metrics_counter (m, lookups, help, "result=\"faq\"");
    self->metric.bypass = mesh_metrics_counter (m, lookups, help, "result=\"bypass\"");
    self->metric.late = mesh_metrics_counter (m, lookups, help, "result=\"late\"");
    const char *hits = "seekmesh_cache_hits_total";
    self->metric.hit_l1 = mesh_metrics_counter (m, hits, "Kept answers served, by where they were found.",
                                                "level=\"l1\"");
    self->metric.hit_l2 = mesh_metrics_counter (m, hits, "Kept answers served, by where they were found.",
                                                "level=\"l2\"");
    const char *faq = "seekmesh_cache_faq_matches_total";
    const char *faq_help = "Requests answered by a FAQ entry, by how it matched.";
    self->metric.faq_kind [MESH_FAQ_EXACT] = mesh_metrics_counter (m, faq, faq_help, "kind=\"exact\"");
    self->metric.faq_kind [MESH_FAQ_KEYWORDS] = mesh_metrics_counter (m, faq, faq_help, "kind=\"keywords\"");
    self->metric.faq_kind [MESH_FAQ_REGEX] = mesh_metrics_counter (m, faq, faq_help, "kind=\"regex\"");
    self->metric.bytes = mesh_metrics_gauge (m, "seekmesh_cache_bytes",
        "Bytes of answers held in memory (L1), bounded by cache.l1_max_bytes.", NULL);
    self->metric.entries = mesh_metrics_gauge (m, "seekmesh_cache_entries", "Answers held in memory (L1).", NULL);
    self->metric.evictions = mesh_metrics_counter (m, "seekmesh_cache_evictions_total",
        "Answers evicted from memory to stay under cache.l1_max_bytes.", NULL);
    self->metric.stored = mesh_metrics_counter (m, "seekmesh_cache_stored_total",
        "Upstream answers kept (in L1, and in Redis when it is up).", NULL);
    self->metric.lookup_seconds = mesh_metrics_histogram (m, "seekmesh_cache_lookup_seconds",
        "From a LOOKUP's arrival to its verdict (Redis included when it was asked).", NULL);
    mesh_dispatch_counters (&self->bad_messages, m, "cache");
}

cache_t *
cache_new (mesh_config_t *config, void *ctx, mesh_loop_t *loop, mesh_metrics_t *metrics,
           char *why, size_t why_size)
{
    cache_t *self = calloc (1, sizeof *self);
    assert (self);
    self->config = config;
    self->loop = loop;
    self->metrics = metrics;
    self->ctx = ctx;
    snprintf (self->name, sizeof self->name, "cache-%d-%d", mesh_config_instance (), (int) getpid ());
    mesh_buf_init (&self->scratch);
    mesh_buf_init (&self->key_text);
    mesh_buf_init (&self->last_user);
    self->margin_ms = mesh_setting_int (config, "cache.lookup_margin_ms");
    self->piece_bytes = (size_t) mesh_setting_int (config, "cache.hit_piece_bytes");
    const char *policy = mesh_setting_str (config, "cache.l1_policy");
    cache_flight_settings_t settings = {
        .max_followers = (size_t) mesh_setting_int (config, "cache.max_followers"),
        .max_flight_bytes = (size_t) mesh_setting_int (config, "cache.max_flight_bytes"),
        .max_entry_bytes = (size_t) mesh_setting_int (config, "cache.max_entry_bytes"),
        .idle_ms = mesh_setting_int (config, "cache.flight_idle_ms"),
        .retry_grace_ms = mesh_setting_int (config, "cache.retry_grace_ms"),
        .margin_ms = self->margin_ms,
    };
    size_t l1_bytes = (size_t) mesh_setting_int (config, "cache.l1_max_bytes");
    const char *listen = mesh_setting_str (config, "cache.listen");
    if (mesh_config_failed (config)) {
        snprintf (why, why_size, "%s", mesh_config_failed (config));
        cache_destroy (&self);
        return NULL;
    }
    s_metrics (self, metrics);
    self->l1 = cache_l1_new (l1_bytes, mesh_streq (policy, "lru") ? CACHE_L1_LRU : CACHE_L1_S3FIFO);
    self->l2 = cache_l2_new (config, loop, metrics, why, why_size);
    if (!self->l2) {
        cache_destroy (&self);
        return NULL;
    }
    self->faq = mesh_faq_store_new (cache_l2_redis (self->l2), metrics, "cache");
    self->flights = cache_flights_new (self, loop, metrics, &settings);
    self->canon = mesh_canon_new ();
    self->outbox = mesh_outbox_new (ctx, loop, s_on_ingress_lost, self);
    self->socket = mesh_zmq_socket (ctx, ZMQ_ROUTER);
    int one = 1;
    zmq_setsockopt (self->socket, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    if (mesh_curve_bind (self->socket, "cache.listen", listen, why, why_size) < 0) {
        cache_destroy (&self);
        return NULL;
    }
    mesh_loop_zmq_add (loop, self->socket, s_on_socket, self);
    mesh_loop_timer_start (loop, &self->tick, 500, s_on_tick, self);
    mesh_info ("%s on %s: L1 %zu bytes (%s), followers per call %zu", self->name, listen, l1_bytes,
               policy, settings.max_followers);
    return self;
}

void
cache_destroy (cache_t **self_p)
{
    assert (self_p);
    cache_t *self = *self_p;
    if (!self)
        return;
    mesh_loop_timer_stop (self->loop, &self->tick);
    if (self->socket) {
        mesh_loop_zmq_remove (self->loop, self->socket);
        zmq_close (self->socket);
        self->socket = NULL;
    }
    //  Redis first: its callbacks (lookups, FAQ reads) run now, while the
    //  flights and the FAQ store they report to still exist
    cache_l2_destroy (&self->l2);
    mesh_faq_store_destroy (&self->faq);
    cache_flights_destroy (&self->flights);
    mesh_outbox_destroy (&self->outbox);
    cache_l1_destroy (&self->l1);
    mesh_canon_destroy (&self->canon);
    mesh_buf_free (&self->scratch);
    mesh_buf_free (&self->key_text);
    mesh_buf_free (&self->last_user);
    free (self);
    *self_p = NULL;
}

bool
cache_ready (cache_t *self, mesh_buf_t *why)
{
    if (self->draining) {
        mesh_buf_append_str (why, "draining");
        return false;
    }
    return true;
}

size_t
cache_drain (cache_t *self)
{
    self->draining = true;
    return cache_flights_count (self->flights);
}

size_t
cache_inflight (cache_t *self)
{
    return cache_flights_count (self->flights);
}

void
cache_test (bool verbose)
{
    (void) verbose;
    //  The stage is proven against real processes (tests/integration/
    //  test_cache.py); here: a bad config is refused with its reason, and
    //  the key ignores what does not change an answer
    const char *text = "{ \"cache\": { \"max_followers\": -1 } }";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "c.json", why, sizeof why);
    void *ctx = zmq_ctx_new ();
    mesh_loop_t *loop = mesh_loop_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    cache_t *cache = cache_new (config, ctx, loop, metrics, why, sizeof why);
    assert (cache == NULL && strstr (why, "cache.max_followers"));
    mesh_config_destroy (&config);

    cache_t keyer = { .canon = mesh_canon_new () };
    mesh_buf_init (&keyer.key_text);
    char one [65], two [65], three [65];
    const char *a = "{\"model\":\"m\",\"stream\":true,\"user\":\"u1\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    const char *b = "{ \"messages\" : [ { \"content\" : \"hi\", \"role\" : \"user\" } ], \"model\" : \"m\" }";
    assert (mesh_canon_parse (keyer.canon, a, strlen (a), why, sizeof why) == 0);
    s_key (&keyer, "acme", "m", one);
    assert (mesh_canon_parse (keyer.canon, b, strlen (b), why, sizeof why) == 0);
    s_key (&keyer, "acme", "m", two);
    s_key (&keyer, "beta", "m", three);
    assert (strcmp (one, two) == 0 && strcmp (one, three) != 0 && strlen (one) == 64);
    s_key (&keyer, "", "m2", three);
    assert (strcmp (one, three) != 0);
    mesh_canon_destroy (&keyer.canon);
    mesh_buf_free (&keyer.key_text);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
    zmq_ctx_term (ctx);
}
