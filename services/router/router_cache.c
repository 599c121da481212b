/*  router_cache: see router_cache.h.  What the router hears from the cache
    is the table s_cache_routes below.                                       */
#include "router_cache.h"

#include "mesh_curve.h"
#include "mesh_dispatch.h"
#include "mesh_log.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zmq.h>

//  What the router hears from the cache --------------------------------------------

static mesh_handler_fn s_on_verdict, s_on_done, s_on_cancel, s_on_heartbeat, s_on_any;

static const mesh_route_t s_cache_routes [] = {
    { MESH_MSG_VERDICT,   s_on_verdict },   //  what it did with a lookup
    { MESH_MSG_DONE,      s_on_done },      //  a follower is through
    { MESH_MSG_CANCEL,    s_on_cancel },    //  nobody reads a leader's call: cancel it
    { MESH_MSG_HEARTBEAT, s_on_heartbeat }, //  still there
    { 0, NULL }
};
//  Every message from the cache is also a sign of life (s_on_any)
static const mesh_conversation_t s_from_cache = { "cache", false, 256, s_on_any, s_cache_routes };

struct router_cache_t {
    mesh_config_t *config;
    mesh_loop_t *loop;
    void *ctx;
    router_cache_hooks_t hooks;
    char name [64];
    char endpoint [256];        //  "" when there is no cache
    void *socket;               //  DEALER, ZMQ_IMMEDIATE
    void *monitor;
    bool connected;
    int64_t heard_ms;           //  the cache's last message
    int64_t heartbeat_ms;
    int64_t liveness;
    int64_t timeout_ms;
    int64_t failures_max;
    int64_t max_ttl_s;
    bool count_tokens;
    int64_t failures;           //  lookups in a row left unanswered
    bool suspended;             //  by failures, until a heartbeat answers
    router_cache_req_t *followers;
    mesh_dispatch_counters_t *bad_messages;
    mesh_dispatch_counters_t own_counters;
    struct {
        mesh_metric_t *up;
        mesh_metric_t *verdicts [6];
        mesh_metric_t *timeouts, *away, *late;
        mesh_metric_t *seconds;
    } metric;
};

static const char *const s_verdicts [] = { "hit", "miss", "coalesced", "faq", "bypass", NULL };

static void s_lose_followers (router_cache_t *self);

//  Health --------------------------------------------------------------------------------

static bool
s_up (router_cache_t *self)
{
    return self->socket && self->connected && !self->suspended;
}

static void
s_gauge (router_cache_t *self)
{
    if (self->metric.up)
        mesh_metric_set (self->metric.up, s_up (self) ? 1 : 0);
}

static int s_on_socket (mesh_loop_t *loop, void *socket, void *arg);
static int s_on_monitor (mesh_loop_t *loop, void *socket, void *arg);

static void
s_open (router_cache_t *self)
{
    self->socket = mesh_zmq_socket (self->ctx, ZMQ_DEALER);
    assert (self->socket);
    int one = 1;
    zmq_setsockopt (self->socket, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt (self->socket, ZMQ_ROUTING_ID, self->name, strlen (self->name));
    char monitor [96];
    snprintf (monitor, sizeof monitor, "inproc://router-cache-monitor-%p-%lld", (void *) self,
              (long long) mesh_mono_us ());
    zmq_socket_monitor (self->socket, monitor, ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED);
    self->monitor = zmq_socket (self->ctx, ZMQ_PAIR);
    zmq_connect (self->monitor, monitor);
    char why [512];
    if (mesh_curve_connect (self->socket, "cache", self->endpoint, why, sizeof why) < 0)
        mesh_error ("cache link: %s", why);
    mesh_loop_zmq_add (self->loop, self->socket, s_on_socket, self);
    mesh_loop_zmq_add (self->loop, self->monitor, s_on_monitor, self);
    self->connected = false;
    self->heard_ms = mesh_loop_now_ms (self->loop);
}

static void
s_close (router_cache_t *self)
{
    if (self->monitor) {
        mesh_loop_zmq_remove (self->loop, self->monitor);
        zmq_socket_monitor (self->socket, NULL, 0);
        zmq_close (self->monitor);
        self->monitor = NULL;
    }
    if (self->socket) {
        mesh_loop_zmq_remove (self->loop, self->socket);
        zmq_close (self->socket);
        self->socket = NULL;
    }
}

static void
s_lost (router_cache_t *self, const char *why)
{
    if (self->followers || s_up (self))
        mesh_warn ("cache %s %s", self->endpoint, why);
    self->connected = false;
    s_lose_followers (self);
    s_gauge (self);
}

static int
s_on_monitor (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    router_cache_t *self = arg;
    int event, value;
    while (mesh_zmq_monitor_read (socket, &event, &value)) {
        if (event == ZMQ_EVENT_CONNECTED) {
            self->connected = true;
            self->heard_ms = mesh_loop_now_ms (self->loop);
            mesh_info ("cache %s connected", self->endpoint);
            s_gauge (self);
        }
        else
        if (event == ZMQ_EVENT_DISCONNECTED)
            s_lost (self, "disconnected");
    }
    return 0;
}

void
router_cache_tick (router_cache_t *self)
{
    if (!*self->endpoint)
        return;
    int64_t now = mesh_loop_now_ms (self->loop);
    if (self->connected && now - self->heard_ms > self->heartbeat_ms * self->liveness) {
        //  Paranoid Pirate: a frozen cache gets a fresh socket, and what was
        //  queued for it goes
        s_lost (self, "silent: reconnecting");
        s_close (self);
        s_open (self);
    }
    mesh_msg_t beat;
    mesh_msg_init (&beat, MESH_MSG_HEARTBEAT, NULL);
    snprintf (beat.sender, sizeof beat.sender, "%s", self->name);
    mesh_msg_send (self->socket, &beat, NULL, 0, ZMQ_DONTWAIT);
    s_gauge (self);
}

//  Followers --------------------------------------------------------------------------

static void
s_link (router_cache_t *self, router_cache_req_t *req)
{
    req->prev = NULL;
    req->next = self->followers;
    if (self->followers)
        self->followers->prev = req;
    self->followers = req;
}

static void
s_unlink (router_cache_t *self, router_cache_req_t *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
    if (self->followers == req)
        self->followers = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void
s_lose_followers (router_cache_t *self)
{
    while (self->followers) {
        router_cache_req_t *req = self->followers;
        s_unlink (self, req);
        req->state = ROUTER_CACHE_NONE;
        self->hooks.lost (req->owner);
    }
}

//  Lookups ------------------------------------------------------------------------------

int
router_cache_parse_control (const char *value, bool *no_store, bool *no_cache, int64_t *ttl_s)
{
    *no_store = *no_cache = false;
    *ttl_s = -1;
    bool known = false;
    char copy [128];
    snprintf (copy, sizeof copy, "%s", value ? value : "");
    char *save = NULL;
    for (char *item = strtok_r (copy, ",", &save); item; item = strtok_r (NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t')
            item++;
        size_t len = strlen (item);
        while (len && (item [len - 1] == ' ' || item [len - 1] == '\t'))
            item [--len] = 0;
        if (strcasecmp (item, "no-store") == 0)
            *no_store = known = true;
        else
        if (strcasecmp (item, "no-cache") == 0)
            *no_cache = known = true;
        else
        if (strncasecmp (item, "ttl=", 4) == 0 && isdigit ((unsigned char) item [4])) {
            char *end;
            long long seconds = strtoll (item + 4, &end, 10);
            if (*end == 0 && seconds >= 0) {
                *ttl_s = seconds;
                known = true;
            }
        }
    }
    return known ? 0 : -1;
}

void
router_cache_plan (router_cache_t *self, router_cache_req_t *req, void *owner,
                   const mesh_model_t *model, const char *cache_control, bool faq)
{
    req->owner = owner;
    req->state = ROUTER_CACHE_NONE;
    snprintf (req->verdict, sizeof req->verdict, "bypass");
    if (!*self->endpoint)
        return;
    bool no_store = false, no_cache = false;
    int64_t ttl_s = -1;
    if (*cache_control)
        router_cache_parse_control (cache_control, &no_store, &no_cache, &ttl_s);
    if (ttl_s < 0 || ttl_s == 0)
        ttl_s = ttl_s == 0 ? 0 : model->cache_ttl_s;
    if (ttl_s > self->max_ttl_s)
        ttl_s = self->max_ttl_s;
    req->flags = 0;
    if (ttl_s > 0 && !no_store)
        req->flags |= MESH_LOOKUP_STORE;
    if (no_cache)
        req->flags |= MESH_LOOKUP_NO_CACHE;
    if (model->cache_shared)
        req->flags |= MESH_LOOKUP_SHARED;
    if (faq)
        req->flags |= MESH_LOOKUP_FAQ;
    req->ttl_s = (uint32_t) (ttl_s > 0 ? ttl_s : 0);
    req->max_temp_milli = model->cache_max_temperature >= 0
                        ? (uint32_t) llround (model->cache_max_temperature * 1000) : MESH_LOOKUP_ANY_TEMPERATURE;
    if (req->flags & (MESH_LOOKUP_STORE | MESH_LOOKUP_FAQ))
        req->state = ROUTER_CACHE_PLANNED;
}

static int
s_on_timeout (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop;
    (void) timer;
    router_cache_req_t *req = arg;
    router_cache_t *self = req->link;
    //  Before giving up, once: let the loop read what the cache has sent
    //  already (sockets are read before the next round of timers)
    int events = 0;
    size_t size = sizeof events;
    if (!req->deferred && self->socket && zmq_getsockopt (self->socket, ZMQ_EVENTS, &events, &size) == 0
    &&  (events & ZMQ_POLLIN)) {
        req->deferred = true;
        mesh_loop_timer_start (self->loop, &req->timer, 0, s_on_timeout, req);
        return 0;
    }
    mesh_metric_inc (self->metric.timeouts);
    if (++self->failures >= self->failures_max && !self->suspended) {
        self->suspended = true;
        mesh_warn ("cache %s left %lld lookups unanswered: not asked until it answers a heartbeat",
                   self->endpoint, (long long) self->failures);
        s_gauge (self);
    }
    req->state = ROUTER_CACHE_NONE;
    snprintf (req->verdict, sizeof req->verdict, "bypass");
    self->hooks.upstream (req->owner);
    return 0;
}

int
router_cache_ask (router_cache_t *self, router_cache_req_t *req, mesh_msg_t *lookup)
{
    req->state = ROUTER_CACHE_NONE;
    snprintf (req->verdict, sizeof req->verdict, "bypass");
    if (!s_up (self)) {
        mesh_metric_inc (self->metric.away);
        return -1;
    }
    lookup->type = MESH_MSG_LOOKUP;
    lookup->flags = req->flags;
    lookup->ttl_s = req->ttl_s;
    lookup->max_temp_milli = req->max_temp_milli;
    lookup->deadline_ms = (uint64_t) (mesh_wall_ms () + self->timeout_ms);
    if (mesh_msg_send (self->socket, lookup, NULL, 0, ZMQ_DONTWAIT) < 0) {
        //  No connection (ZMQ_IMMEDIATE) or full: at once, without the cache
        mesh_metric_inc (self->metric.away);
        return -1;
    }
    req->state = ROUTER_CACHE_ASKED;
    req->asked_us = mesh_loop_now_us (self->loop);
    req->deferred = false;
    req->link = self;
    mesh_loop_timer_start (self->loop, &req->timer, self->timeout_ms, s_on_timeout, req);
    return 0;
}

void
router_cache_forget (router_cache_t *self, router_cache_req_t *req)
{
    mesh_loop_timer_stop (self->loop, &req->timer);
    if (req->state == ROUTER_CACHE_FOLLOWER)
        s_unlink (self, req);
    req->state = ROUTER_CACHE_NONE;
}

bool
router_cache_tell (router_cache_t *self, const mesh_msg_t *msg)
{
    return self->socket && self->connected && mesh_msg_send (self->socket, msg, NULL, 0, ZMQ_DONTWAIT) == 0;
}

bool
router_cache_up (router_cache_t *self)
{
    return s_up (self);
}

bool
router_cache_count_tokens (router_cache_t *self)
{
    return self->count_tokens;
}

//  What the cache says -----------------------------------------------------------------

static int
s_on_any (void *arg, mesh_inbox_t *inbox)
{
    (void) inbox;
    router_cache_t *self = arg;
    self->heard_ms = mesh_loop_now_ms (self->loop);
    return 0;
}

static int
s_on_heartbeat (void *arg, mesh_inbox_t *inbox)
{
    (void) inbox;
    router_cache_t *self = arg;
    if (self->suspended) {
        self->suspended = false;
        self->failures = 0;
        mesh_info ("cache %s answers again: asked again", self->endpoint);
        s_gauge (self);
    }
    return 0;
}

static int
s_on_verdict (void *arg, mesh_inbox_t *inbox)
{
    router_cache_t *self = arg;
    const mesh_msg_t *msg = &inbox->msg;
    router_cache_req_t *req = self->hooks.find (self->hooks.arg, msg->id, msg->attempt);
    bool joined = mesh_streq (msg->cache, "miss") || mesh_streq (msg->cache, "coalesced");
    if (!req || req->state != ROUTER_CACHE_ASKED) {
        //  Too late: the request went upstream without the cache.  A call
        //  it was to lead or join must not count on it.
        mesh_metric_inc (self->metric.late);
        if (joined) {
            mesh_msg_t cancel;
            mesh_msg_init (&cancel, MESH_MSG_CANCEL, msg->id);
            cancel.attempt = msg->attempt;
            snprintf (cancel.outcome, sizeof cancel.outcome, "cache_late");
            router_cache_tell (self, &cancel);
        }
        return 0;
    }
    mesh_loop_timer_stop (self->loop, &req->timer);
    self->failures = 0;
    mesh_metric_observe (self->metric.seconds, (double) (mesh_loop_now_us (self->loop) - req->asked_us) / 1e6);
    size_t which = 4;
    for (size_t i = 0; s_verdicts [i]; i++)
        if (mesh_streq (msg->cache, s_verdicts [i]))
            which = i;
    mesh_metric_inc (self->metric.verdicts [which]);
    snprintf (req->verdict, sizeof req->verdict, "%s", s_verdicts [which]);
    uint64_t tokens = msg->prompt_tokens + msg->output_tokens;
    switch (which) {
        case 0:                     //  hit
        case 3:                     //  faq
            req->state = ROUTER_CACHE_ANSWERED;
            self->hooks.answered (req->owner, tokens);
            break;
        case 2:                     //  coalesced
            req->state = ROUTER_CACHE_FOLLOWER;
            s_link (self, req);
            self->hooks.following (req->owner, tokens);
            break;
        case 1:                     //  miss
            req->state = ROUTER_CACHE_LEADER;
            self->hooks.upstream (req->owner);
            break;
        default:
            req->state = ROUTER_CACHE_NONE;
            self->hooks.upstream (req->owner);
            break;
    }
    return 0;
}

static int
s_on_done (void *arg, mesh_inbox_t *inbox)
{
    router_cache_t *self = arg;
    router_cache_req_t *req = self->hooks.find (self->hooks.arg, inbox->msg.id, inbox->msg.attempt);
    if (!req || req->state != ROUTER_CACHE_FOLLOWER)
        return 0;
    s_unlink (self, req);
    req->state = ROUTER_CACHE_ANSWERED;
    self->hooks.done (req->owner, inbox->msg.prompt_tokens + inbox->msg.output_tokens);
    return 0;
}

static int
s_on_cancel (void *arg, mesh_inbox_t *inbox)
{
    router_cache_t *self = arg;
    router_cache_req_t *req = self->hooks.find (self->hooks.arg, inbox->msg.id, inbox->msg.attempt);
    if (req && req->state == ROUTER_CACHE_LEADER)
        self->hooks.cancel (req->owner, *inbox->msg.outcome ? inbox->msg.outcome : "client_gone");
    return 0;
}

static int
s_on_socket (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    router_cache_t *self = arg;
    mesh_dispatch (socket, &s_from_cache, self, self->bad_messages);
    return 0;
}

//  Lifecycle ------------------------------------------------------------------------------

router_cache_t *
router_cache_new (mesh_config_t *config, void *ctx, mesh_loop_t *loop, mesh_metrics_t *metrics,
                  const char *name, const router_cache_hooks_t *hooks, char *why, size_t why_size)
{
    router_cache_t *self = calloc (1, sizeof *self);
    assert (self);
    self->config = config;
    self->loop = loop;
    self->ctx = ctx;
    self->hooks = *hooks;
    snprintf (self->name, sizeof self->name, "%s", name);
    self->heartbeat_ms = mesh_setting_int (config, "router.heartbeat_ms");
    self->liveness = mesh_setting_int (config, "router.heartbeat_liveness");
    self->timeout_ms = mesh_setting_int (config, "router.cache.timeout_ms");
    self->failures_max = mesh_setting_int (config, "router.cache.failures");
    self->max_ttl_s = mesh_setting_int (config, "router.cache.max_ttl_s");
    self->count_tokens = mesh_setting_bool (config, "router.cache.count_tokens");
    size_t count = mesh_setting_count (config, "router.caches");
    if (count > 1)
        mesh_config_invalid (config, "router.caches", "one cache stage at most (identical requests "
                             "must meet in one process), not %zu", count);
    if (mesh_config_failed (config)) {
        snprintf (why, why_size, "%s", mesh_config_failed (config));
        router_cache_destroy (&self);
        return NULL;
    }
    //  Only where a cache is configured, so an alert on 0 means one is away
    if (count == 1)
        self->metric.up = mesh_metrics_gauge (metrics, "seekmesh_cache_up",
            "1 while the cache stage is asked (connected, answering); 0: cacheable requests go upstream uncached.",
            NULL);
    const char *verdicts = "seekmesh_router_cache_verdicts_total";
    const char *help = "What the cache did with this router's lookups.";
    for (size_t i = 0; s_verdicts [i]; i++) {
        char labels [48];
        snprintf (labels, sizeof labels, "verdict=\"%s\"", s_verdicts [i]);
        self->metric.verdicts [i] = mesh_metrics_counter (metrics, verdicts, help, labels);
    }
    const char *missed = "seekmesh_router_cache_unanswered_total";
    const char *missed_help = "Cacheable requests that went upstream without a verdict: the cache "
                              "was away (at once), did not answer within router.cache.timeout_ms, "
                              "or answered after it.";
    self->metric.away = mesh_metrics_counter (metrics, missed, missed_help, "why=\"away\"");
    self->metric.timeouts = mesh_metrics_counter (metrics, missed, missed_help, "why=\"timeout\"");
    self->metric.late = mesh_metrics_counter (metrics, missed, missed_help, "why=\"late\"");
    self->metric.seconds = mesh_metrics_histogram (metrics, "seekmesh_router_cache_lookup_seconds",
        "From a LOOKUP to its verdict, as the router waits for it.", NULL);
    mesh_dispatch_counters (&self->own_counters, metrics, "router");
    self->bad_messages = &self->own_counters;
    if (count == 1) {
        snprintf (self->endpoint, sizeof self->endpoint, "%s", mesh_setting_item (config, "router.caches", 0));
        s_open (self);
        mesh_info ("cache %s", self->endpoint);
    }
    else
        mesh_info ("no cache stage (router.caches is empty)");
    s_gauge (self);
    return self;
}

void
router_cache_destroy (router_cache_t **self_p)
{
    assert (self_p);
    router_cache_t *self = *self_p;
    if (!self)
        return;
    s_close (self);
    free (self);
    *self_p = NULL;
}

void
router_cache_test (bool verbose)
{
    (void) verbose;
    bool no_store, no_cache;
    int64_t ttl;
    assert (router_cache_parse_control ("ttl=60", &no_store, &no_cache, &ttl) == 0 && ttl == 60);
    assert (!no_store && !no_cache);
    assert (router_cache_parse_control (" No-Cache , ttl=5 ", &no_store, &no_cache, &ttl) == 0);
    assert (no_cache && !no_store && ttl == 5);
    assert (router_cache_parse_control ("no-store", &no_store, &no_cache, &ttl) == 0 && no_store && ttl == -1);
    assert (router_cache_parse_control ("max-age=5", &no_store, &no_cache, &ttl) == -1);
    assert (router_cache_parse_control ("ttl=-1", &no_store, &no_cache, &ttl) == -1);
    assert (router_cache_parse_control ("ttl=12x", &no_store, &no_cache, &ttl) == -1);

    //  The plan: what a request asks of the cache
    const char *text = "{ \"router\": { \"cache\": { \"max_ttl_s\": 100 } },"
                       "  \"mesh\": { \"instances\": { \"cache\": 1 } } }";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "c.json", why, sizeof why);
    void *ctx = zmq_ctx_new ();
    mesh_loop_t *loop = mesh_loop_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    router_cache_hooks_t hooks = { 0 };
    router_cache_t *cache = router_cache_new (config, ctx, loop, metrics, "router-test", &hooks, why, sizeof why);
    assert (cache);
    mesh_model_t plain = { .name = "m", .cache_max_temperature = -1 };
    mesh_model_t cached = { .name = "c", .cache_ttl_s = 300, .cache_max_temperature = 0.3, .cache_shared = true };
    router_cache_req_t req = { 0 };
    router_cache_plan (cache, &req, NULL, &plain, "", false);
    assert (req.state == ROUTER_CACHE_NONE && mesh_streq (req.verdict, "bypass"));
    router_cache_plan (cache, &req, NULL, &plain, "ttl=60", false);
    assert (req.state == ROUTER_CACHE_PLANNED && req.ttl_s == 60 && req.flags == MESH_LOOKUP_STORE);
    assert (req.max_temp_milli == MESH_LOOKUP_ANY_TEMPERATURE);
    router_cache_plan (cache, &req, NULL, &cached, "", false);
    assert (req.ttl_s == 100 && req.flags == (MESH_LOOKUP_STORE | MESH_LOOKUP_SHARED) && req.max_temp_milli == 300);
    router_cache_plan (cache, &req, NULL, &cached, "no-store", false);
    assert (req.state == ROUTER_CACHE_NONE);
    router_cache_plan (cache, &req, NULL, &cached, "no-store", true);
    assert (req.state == ROUTER_CACHE_PLANNED && req.flags == (MESH_LOOKUP_SHARED | MESH_LOOKUP_FAQ));
    router_cache_plan (cache, &req, NULL, &cached, "no-cache", false);
    assert (req.flags & MESH_LOOKUP_NO_CACHE && req.flags & MESH_LOOKUP_STORE);
    //  Not connected: asking fails at once
    mesh_msg_t lookup;
    mesh_msg_init (&lookup, MESH_MSG_LOOKUP, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    assert (router_cache_ask (cache, &req, &lookup) == -1 && req.state == ROUTER_CACHE_NONE);
    router_cache_destroy (&cache);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
    mesh_config_destroy (&config);
    zmq_ctx_term (ctx);
}
