/*  cache_flight: see cache_flight.h.

    Three indexes: joinable flights by key, flights by their leader's
    request id (where the connector's copies of events find them), and
    followers and waiters by request id (where their cancellations do).
    What late joiners are replayed is kept as [flags: 1 byte][length: 4
    bytes][data] records, comments left out (they keep a quiet stream
    alive; replayed they would only add noise).                             */
#include "cache_flight.h"

#include "mesh_completion.h"
#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { F_REDIS, F_UPSTREAM, F_LOST };

typedef struct {
    cache_client_t client;
    bool started;               //  HEAD sent (a stream)
    uint64_t bytes;             //  payload bytes sent
} follower_t;

struct cache_flight_t {
    cache_flights_t *owner;
    char key [65];
    char leader [MESH_ID_LEN + 1];      //  "" while in Redis
    uint32_t attempt;
    char router [256];          //  the leader's router
    size_t router_size;
    char model [256];           //  the registry model asked for
    int64_t ttl_s;
    bool joinable;              //  in by_key
    int state;
    uint64_t l2_serial;
    cache_client_t **waiting;   //  F_REDIS (each its own allocation: the
    size_t waiting_count, waiting_cap;      //  maps' keys point into them)
    follower_t **followers;
    size_t follower_count, follower_cap;
    bool leader_gone;
    //  The leader's call so far
    bool head;
    uint32_t status;
    char answer_model [256];
    mesh_buf_t events;
    bool overflow;
    bool sent;                  //  something reached a follower
    mesh_completion_t *assembly;
    mesh_timer_t timer;         //  Redis's bound, quiet, or the retry's grace
};

struct cache_flights_t {
    cache_t *cache;
    mesh_loop_t *loop;
    cache_flight_settings_t settings;
    mesh_map_t *by_key;
    mesh_map_t *by_leader;
    mesh_map_t *by_client;      //  follower or waiter id -> flight
    uint64_t next_serial;
    size_t followers;
    mesh_metric_t *flights_gauge;
    mesh_metric_t *followers_gauge;
    mesh_metric_t *coalesced;
    mesh_metric_t *overflows;
    mesh_metric_t *failed;
};

//  Bookkeeping ----------------------------------------------------------------

static void
s_gauges (cache_flights_t *self)
{
    mesh_metric_set (self->flights_gauge, (double) mesh_map_size (self->by_key) + mesh_map_size (self->by_leader));
    mesh_metric_set (self->followers_gauge, (double) self->followers);
}

static void
s_unjoinable (cache_flight_t *flight)
{
    if (flight->joinable && mesh_map_get (flight->owner->by_key, flight->key) == flight)
        mesh_map_remove (flight->owner->by_key, flight->key);
    flight->joinable = false;
}

static void
s_free (cache_flight_t *flight)
{
    cache_flights_t *self = flight->owner;
    s_unjoinable (flight);
    if (*flight->leader && mesh_map_get (self->by_leader, flight->leader) == flight)
        mesh_map_remove (self->by_leader, flight->leader);
    for (size_t i = 0; i < flight->follower_count; i++) {
        if (mesh_map_get (self->by_client, flight->followers [i]->client.id) == flight)
            mesh_map_remove (self->by_client, flight->followers [i]->client.id);
        free (flight->followers [i]);
    }
    for (size_t i = 0; i < flight->waiting_count; i++) {
        if (mesh_map_get (self->by_client, flight->waiting [i]->id) == flight)
            mesh_map_remove (self->by_client, flight->waiting [i]->id);
        free (flight->waiting [i]);
    }
    self->followers -= flight->follower_count;
    mesh_loop_timer_stop (self->loop, &flight->timer);
    mesh_buf_free (&flight->events);
    mesh_completion_destroy (&flight->assembly);
    free (flight->waiting);
    free (flight->followers);
    free (flight);
    s_gauges (self);
}

static cache_flight_t *
s_new (cache_flights_t *self, const char *key, const cache_client_t *client, int64_t ttl_s)
{
    cache_flight_t *flight = calloc (1, sizeof *flight);
    assert (flight);
    flight->owner = self;
    snprintf (flight->key, sizeof flight->key, "%s", key);
    memcpy (flight->model, client->model, sizeof flight->model);
    flight->ttl_s = ttl_s;
    mesh_buf_init (&flight->events);
    return flight;
}

static int s_on_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg);

static void
s_arm (cache_flight_t *flight, int64_t delay_ms)
{
    mesh_loop_timer_start (flight->owner->loop, &flight->timer, delay_ms > 0 ? delay_ms : 0,
                           s_on_timer, flight);
}

//  client leads the flight upstream
static void
s_set_leader (cache_flight_t *flight, const cache_client_t *client)
{
    cache_flights_t *self = flight->owner;
    if (*flight->leader && mesh_map_get (self->by_leader, flight->leader) == flight)
        mesh_map_remove (self->by_leader, flight->leader);
    memcpy (flight->leader, client->id, sizeof flight->leader);
    flight->attempt = client->attempt;
    memcpy (flight->router, client->router, sizeof flight->router);
    flight->router_size = client->router_size;
    flight->state = F_UPSTREAM;
    //  A request led elsewhere before (a retry) leads this one now
    cache_flight_t *other = mesh_map_get (self->by_leader, flight->leader);
    if (other && other != flight)
        mesh_map_remove (self->by_leader, flight->leader);
    mesh_map_put (self->by_leader, flight->leader, flight);
    if (!flight->assembly)
        flight->assembly = mesh_completion_new (64u << 20);
    s_arm (flight, self->settings.idle_ms);
    s_gauges (self);
}

//  What followers are sent ---------------------------------------------------------

static void
s_fields (const cache_flight_t *flight, const follower_t *f, mesh_msg_t *msg, uint32_t type)
{
    mesh_msg_init (msg, type, f->client.id);
    msg->attempt = f->client.attempt;
    msg->token = f->client.token;
    memcpy (msg->limits, f->client.limits, sizeof msg->limits);
    memcpy (msg->tenant, f->client.tenant, sizeof msg->tenant);
    memcpy (msg->key_id, f->client.key_id, sizeof msg->key_id);
    snprintf (msg->cache, sizeof msg->cache, "coalesced");
    memcpy (msg->cache_ref, flight->leader, sizeof flight->leader);
}

static int
s_send (cache_flight_t *flight, follower_t *f, mesh_msg_t *msg)
{
    if (cache_send_ingress (flight->owner->cache, &f->client, msg) < 0)
        return -1;
    flight->sent = true;
    return 0;
}

static int
s_head (cache_flight_t *flight, follower_t *f)
{
    mesh_msg_t msg;
    s_fields (flight, f, &msg, MESH_MSG_HEAD);
    msg.status = flight->status ? flight->status : 200;
    memcpy (msg.model, flight->answer_model, sizeof msg.model);
    f->started = true;
    return s_send (flight, f, &msg);
}

static int
s_chunk (cache_flight_t *flight, follower_t *f, uint32_t flags, const char *data, size_t len)
{
    mesh_msg_t msg;
    s_fields (flight, f, &msg, MESH_MSG_CHUNK);
    msg.flags = flags;
    msg.data = (mesh_bytes_t) { data, len };
    f->bytes += len;
    return s_send (flight, f, &msg);
}

//  The follower's router may forget it
static void
s_done (cache_flight_t *flight, const follower_t *f, uint32_t status, const char *outcome,
        const mesh_msg_t *usage)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_DONE, f->client.id);
    msg.attempt = f->client.attempt;
    msg.status = status;
    snprintf (msg.outcome, sizeof msg.outcome, "%s", outcome);
    if (usage) {
        msg.prompt_tokens = usage->prompt_tokens;
        msg.output_tokens = usage->output_tokens;
        msg.cached_tokens = usage->cached_tokens;
        msg.reason_tokens = usage->reason_tokens;
    }
    msg.bytes = f->bytes;
    msg.total_us = (uint64_t) (mesh_mono_us () - f->client.received_us);
    cache_send_router (flight->owner->cache, f->client.router, f->client.router_size, &msg);
}

//  Drops follower i (its slot takes the last one)
static void
s_drop (cache_flight_t *flight, size_t i)
{
    cache_flights_t *self = flight->owner;
    if (mesh_map_get (self->by_client, flight->followers [i]->client.id) == flight)
        mesh_map_remove (self->by_client, flight->followers [i]->client.id);
    free (flight->followers [i]);
    flight->followers [i] = flight->followers [--flight->follower_count];
    self->followers--;
    s_gauges (self);
}

//  A follower whose ingress cannot take more is let go
static void
s_lose (cache_flight_t *flight, size_t i)
{
    follower_t *f = flight->followers [i];
    mesh_info ("follower cannot be sent to: let go leader=%s req=%s", flight->leader, f->client.id);
    s_done (flight, f, 499, "ingress_unreachable", NULL);
    s_drop (flight, i);
}

//  Catch-up: HEAD and what the call sent so far
static int
s_catch_up (cache_flight_t *flight, follower_t *f)
{
    if (!f->client.stream || !flight->head)
        return 0;
    if (s_head (flight, f) < 0)
        return -1;
    const char *at = mesh_buf_head (&flight->events), *end = at + mesh_buf_size (&flight->events);
    while (at < end) {
        uint32_t len;
        memcpy (&len, at + 1, 4);
        if (s_chunk (flight, f, (uint8_t) at [0], at + 5, len) < 0)
            return -1;
        at += 5 + len;
    }
    return 0;
}

//  Nobody reads the call any more: its router cancels it upstream
static void
s_cancel_leader (cache_flight_t *flight, const char *outcome)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_CANCEL, flight->leader);
    msg.attempt = flight->attempt;
    snprintf (msg.outcome, sizeof msg.outcome, "%s", outcome);
    cache_send_router (flight->owner->cache, flight->router, flight->router_size, &msg);
    mesh_debug ("no one reads the call any more: cancelled req=%s", flight->leader);
    s_free (flight);
}

//  The call failed: every follower gets the same error, or, if it has
//  seen nothing yet and retry is set, LOST so its ingress tries again
static void
s_fail_all (cache_flight_t *flight, const mesh_msg_t *error, bool retry)
{
    cache_flights_t *self = flight->owner;
    mesh_metric_inc (self->failed);
    while (flight->follower_count) {
        follower_t *f = flight->followers [flight->follower_count - 1];
        mesh_msg_t msg;
        if (retry && !f->started) {
            s_fields (flight, f, &msg, MESH_MSG_LOST);
            snprintf (msg.sender, sizeof msg.sender, "cache");
        }
        else {
            s_fields (flight, f, &msg, MESH_MSG_ERROR);
            msg.status = error->status;
            memcpy (msg.err_type, error->err_type, sizeof msg.err_type);
            memcpy (msg.err_code, error->err_code, sizeof msg.err_code);
            memcpy (msg.message, error->message, sizeof msg.message);
            memcpy (msg.param, error->param, sizeof msg.param);
            msg.retry_after_ms = error->retry_after_ms;
            msg.flags = error->flags & (MESH_ERROR_RETRY_YES | MESH_ERROR_RETRY_NO);
            memcpy (msg.model, *error->model ? error->model : flight->model, sizeof msg.model);
        }
        cache_send_ingress (self->cache, &f->client, &msg);
        s_done (flight, f, error->status, "upstream_error", NULL);
        s_drop (flight, flight->follower_count - 1);
    }
    s_free (flight);
}

static void
s_fail_code (cache_flight_t *flight, int status, const char *code, const char *message, bool retry)
{
    mesh_msg_t error;
    mesh_msg_init (&error, MESH_MSG_ERROR, flight->leader);
    error.status = (uint32_t) status;
    snprintf (error.err_type, sizeof error.err_type, "server_error");
    snprintf (error.err_code, sizeof error.err_code, "%s", code);
    snprintf (error.message, sizeof error.message, "%s", message);
    error.flags = MESH_ERROR_RETRY_YES;
    error.retry_after_ms = 1000;
    s_fail_all (flight, &error, retry);
}

//  Flights -----------------------------------------------------------------------------

cache_flights_t *
cache_flights_new (cache_t *cache, mesh_loop_t *loop, mesh_metrics_t *metrics,
                   const cache_flight_settings_t *settings)
{
    cache_flights_t *self = calloc (1, sizeof *self);
    assert (self);
    self->cache = cache;
    self->loop = loop;
    self->settings = *settings;
    self->by_key = mesh_map_new ();
    self->by_leader = mesh_map_new ();
    self->by_client = mesh_map_new ();
    self->flights_gauge = mesh_metrics_gauge (metrics, "seekmesh_cache_flights",
        "Cacheable requests being answered (in Redis or upstream) that identical requests can join.", NULL);
    self->followers_gauge = mesh_metrics_gauge (metrics, "seekmesh_cache_followers",
        "Requests being answered by another identical request's upstream call.", NULL);
    self->coalesced = mesh_metrics_counter (metrics, "seekmesh_cache_coalesced_total",
        "Requests that joined an identical request's upstream call (no upstream call of their own).", NULL);
    self->overflows = mesh_metrics_counter (metrics, "seekmesh_cache_flight_full_total",
        "Identical requests that went upstream on their own: the call had max_followers, or "
        "more than max_flight_bytes to replay.", NULL);
    self->failed = mesh_metrics_counter (metrics, "seekmesh_cache_flights_failed_total",
        "Upstream calls with followers that failed (each follower got the error, or a retry).", NULL);
    return self;
}

void
cache_flights_destroy (cache_flights_t **self_p)
{
    assert (self_p);
    cache_flights_t *self = *self_p;
    if (!self)
        return;
    //  Every flight is in by_key, by_leader or both
    cache_flight_t *flight;
    size_t cursor = 0;
    while ((flight = mesh_map_next (self->by_leader, &cursor, NULL))) {
        s_free (flight);
        cursor = 0;
    }
    cursor = 0;
    while ((flight = mesh_map_next (self->by_key, &cursor, NULL))) {
        s_free (flight);
        cursor = 0;
    }
    mesh_map_destroy (&self->by_key);
    mesh_map_destroy (&self->by_leader);
    mesh_map_destroy (&self->by_client);
    free (self);
    *self_p = NULL;
}

size_t
cache_flights_count (cache_flights_t *self)
{
    size_t count = mesh_map_size (self->by_leader);
    size_t cursor = 0;
    cache_flight_t *flight;
    while ((flight = mesh_map_next (self->by_key, &cursor, NULL)))
        count += flight->state == F_REDIS;
    return count;
}

cache_flight_t *
cache_flights_joinable (cache_flights_t *self, const char *key)
{
    return mesh_map_get (self->by_key, key);
}

cache_flight_t *
cache_flights_led_by (cache_flights_t *self, const char *id)
{
    return mesh_map_get (self->by_leader, id);
}

cache_flight_t *
cache_flights_look (cache_flights_t *self, const char *key, const cache_client_t *client,
                    int64_t ttl_s, uint64_t *l2_serial)
{
    cache_flight_t *flight = s_new (self, key, client, ttl_s);
    flight->state = F_REDIS;
    flight->joinable = true;
    flight->l2_serial = *l2_serial = ++self->next_serial;
    mesh_map_put (self->by_key, flight->key, flight);
    cache_flight_add (flight, client);
    //  Redis may take as long as the first waiter's router waits, no longer
    s_arm (flight, client->deadline_ms - self->settings.margin_ms - mesh_wall_ms ());
    s_gauges (self);
    return flight;
}

cache_flight_t *
cache_flights_lead (cache_flights_t *self, const char *key, const cache_client_t *client,
                    int64_t ttl_s, bool joinable)
{
    cache_flight_t *flight = s_new (self, key, client, ttl_s);
    if (joinable) {
        flight->joinable = true;
        mesh_map_put (self->by_key, flight->key, flight);
    }
    s_set_leader (flight, client);
    cache_verdict (self->cache, client, "miss", 0, 0);
    return flight;
}

int
cache_flight_add (cache_flight_t *flight, const cache_client_t *client)
{
    cache_flights_t *self = flight->owner;
    if (flight->state == F_REDIS) {
        if (flight->waiting_count == flight->waiting_cap) {
            flight->waiting_cap = flight->waiting_cap ? flight->waiting_cap * 2 : 4;
            flight->waiting = realloc (flight->waiting, flight->waiting_cap * sizeof *flight->waiting);
            assert (flight->waiting);
        }
        cache_client_t *waiter = malloc (sizeof *waiter);
        assert (waiter);
        *waiter = *client;
        flight->waiting [flight->waiting_count++] = waiter;
        mesh_map_put (self->by_client, waiter->id, flight);
        return 0;
    }
    if (flight->state != F_UPSTREAM || flight->overflow || flight->leader_gone
    ||  flight->follower_count >= self->settings.max_followers) {
        mesh_metric_inc (self->overflows);
        return -1;
    }
    if (flight->follower_count == flight->follower_cap) {
        flight->follower_cap = flight->follower_cap ? flight->follower_cap * 2 : 4;
        flight->followers = realloc (flight->followers, flight->follower_cap * sizeof *flight->followers);
        assert (flight->followers);
    }
    follower_t *f = malloc (sizeof *f);
    assert (f);
    *f = (follower_t) { *client, false, 0 };
    flight->followers [flight->follower_count++] = f;
    mesh_map_put (self->by_client, f->client.id, flight);
    self->followers++;
    mesh_metric_inc (self->coalesced);
    s_gauges (self);
    cache_verdict (self->cache, client, "coalesced", 0, 0);
    if (s_catch_up (flight, f) < 0)
        s_lose (flight, flight->follower_count - 1);
    return 0;
}

void
cache_flight_retry (cache_flight_t *flight, const cache_client_t *client)
{
    mesh_info ("leader retried (attempt %u) with %zu followers req=%s", client->attempt,
               flight->follower_count, client->id);
    flight->head = false;
    mesh_buf_reset (&flight->events);
    mesh_completion_destroy (&flight->assembly);
    s_set_leader (flight, client);
    cache_verdict (flight->owner->cache, client, "miss", 0, 0);
}

void
cache_flights_l2_answer (cache_flights_t *self, const char *key, uint64_t serial, cache_entry_t *entry)
{
    cache_flight_t *flight = mesh_map_get (self->by_key, key);
    if (!flight || flight->state != F_REDIS || flight->l2_serial != serial) {
        //  Too late for the lookup: keep what Redis had for the next one
        if (entry)
            cache_keep_l1 (self->cache, entry);
        return;
    }
    cache_client_t **waiting = flight->waiting;
    size_t count = flight->waiting_count;
    for (size_t i = 0; i < count; i++)
        if (mesh_map_get (self->by_client, waiting [i]->id) == flight)
            mesh_map_remove (self->by_client, waiting [i]->id);
    flight->waiting = NULL;
    flight->waiting_count = flight->waiting_cap = 0;
    if (entry) {
        for (size_t i = 0; i < count; i++)
            if (cache_in_time (self->cache, waiting [i])) {
                cache_serve (self->cache, waiting [i], entry, "hit", "");
                cache_verdict (self->cache, waiting [i], "hit", entry->prompt_tokens, entry->output_tokens);
            }
        s_free (flight);
        cache_keep_l1 (self->cache, entry);
    }
    else {
        //  Not in Redis: the first still waited for leads, the rest follow
        bool led = false;
        for (size_t i = 0; i < count; i++) {
            if (!cache_in_time (self->cache, waiting [i]))
                continue;
            if (!led) {
                s_set_leader (flight, waiting [i]);
                cache_verdict (self->cache, waiting [i], "miss", 0, 0);
                led = true;
            }
            else
            if (cache_flight_add (flight, waiting [i]) < 0)
                cache_verdict (self->cache, waiting [i], "bypass", 0, 0);
        }
        if (!led)
            s_free (flight);
    }
    for (size_t i = 0; i < count; i++)
        free (waiting [i]);
    free (waiting);
}

//  The leader's call --------------------------------------------------------------------

//  The answer as a body, from the END's data or the assembled stream
static void
s_answer (cache_flight_t *flight, const mesh_msg_t *end, mesh_buf_t *body)
{
    mesh_buf_reset (body);
    if (end->data.size)
        mesh_buf_append (body, end->data.data, end->data.size);
    else
    if (flight->assembly && mesh_completion_started (flight->assembly))
        mesh_completion_render (flight->assembly, body);
}

static void
s_end (cache_flight_t *flight, const mesh_msg_t *end)
{
    cache_flights_t *self = flight->owner;
    mesh_buf_t body;
    mesh_buf_init (&body);
    s_answer (flight, end, &body);
    cache_entry_t *as_stream = NULL;
    while (flight->follower_count) {
        size_t i = flight->follower_count - 1;
        follower_t *f = flight->followers [i];
        mesh_msg_t msg;
        if (f->client.stream && !flight->head) {
            //  The call was not a stream: serve its body as one
            if (!as_stream) {
                char why [128];
                as_stream = cache_entry_new (NULL, end->model, mesh_buf_head (&body), mesh_buf_size (&body),
                                             0, 0, 128, why, sizeof why);
            }
            if (as_stream)
                cache_serve (self->cache, &f->client, as_stream, "coalesced", flight->leader);
            else {
                s_fields (flight, f, &msg, MESH_MSG_ERROR);
                msg.status = 502;
                snprintf (msg.err_type, sizeof msg.err_type, "server_error");
                snprintf (msg.err_code, sizeof msg.err_code, "upstream_protocol");
                snprintf (msg.message, sizeof msg.message, "The upstream answer could not be streamed.");
                s_send (flight, f, &msg);
            }
        }
        else {
            s_fields (flight, f, &msg, MESH_MSG_END);
            msg.status = end->status;
            memcpy (msg.model, end->model, sizeof msg.model);
            memcpy (msg.finish, end->finish, sizeof msg.finish);
            msg.prompt_tokens = end->prompt_tokens;
            msg.output_tokens = end->output_tokens;
            msg.cached_tokens = end->cached_tokens;
            msg.reason_tokens = end->reason_tokens;
            if (!f->client.stream)
                msg.data = (mesh_bytes_t) { mesh_buf_head (&body), mesh_buf_size (&body) };
            s_send (flight, f, &msg);
        }
        s_done (flight, f, end->status, "ok", end);
        s_drop (flight, i);
    }
    cache_entry_destroy (&as_stream);
    //  Kept: a whole answer of the model asked for (not its fallback's)
    bool complete = flight->assembly == NULL || !mesh_completion_truncated (flight->assembly);
    if (flight->ttl_s > 0 && end->status == 200 && mesh_streq (end->model, flight->model) && complete
    &&  mesh_buf_size (&body) && mesh_buf_size (&body) <= self->settings.max_entry_bytes)
        cache_keep (self->cache, flight->key, flight->model, mesh_buf_head (&body), mesh_buf_size (&body),
                    flight->ttl_s);
    mesh_buf_free (&body);
    s_free (flight);
}

void
cache_flights_event (cache_flights_t *self, const mesh_msg_t *msg)
{
    cache_flight_t *flight = mesh_map_get (self->by_leader, msg->id);
    if (!flight || msg->attempt != flight->attempt)
        return;
    if (msg->type == MESH_MSG_LOST) {
        if (flight->sent) {
            s_fail_code (flight, 502, "connector_lost", "The gateway lost the connection serving this "
                         "answer.", true);
            return;
        }
        //  Nothing reached a follower: they wait for the leader's retry
        flight->state = F_LOST;
        flight->head = false;
        mesh_buf_reset (&flight->events);
        mesh_completion_destroy (&flight->assembly);
        s_arm (flight, self->settings.retry_grace_ms);
        return;
    }
    if (flight->state != F_UPSTREAM)
        return;
    s_arm (flight, self->settings.idle_ms);
    switch (msg->type) {
        case MESH_MSG_HEAD:
            flight->head = true;
            flight->status = msg->status;
            memcpy (flight->answer_model, msg->model, sizeof flight->answer_model);
            for (size_t i = flight->follower_count; i-- > 0; ) {
                follower_t *f = flight->followers [i];
                if (f->client.stream && !f->started && s_head (flight, f) < 0)
                    s_lose (flight, i);
            }
            break;
        case MESH_MSG_CHUNK: {
            bool comment = msg->flags & MESH_CHUNK_COMMENT;
            if (!comment) {
                if (!flight->overflow) {
                    size_t record = 5 + msg->data.size;
                    if (mesh_buf_size (&flight->events) + record > self->settings.max_flight_bytes) {
                        //  Past the bound: no more joiners, nothing kept to replay
                        flight->overflow = true;
                        mesh_buf_free (&flight->events);
                        s_unjoinable (flight);
                    }
                    else {
                        uint8_t flags = (uint8_t) msg->flags;
                        uint32_t len = (uint32_t) msg->data.size;
                        mesh_buf_append (&flight->events, &flags, 1);
                        mesh_buf_append (&flight->events, &len, 4);
                        mesh_buf_append (&flight->events, msg->data.data, msg->data.size);
                    }
                }
                mesh_completion_add (flight->assembly, msg->data.data, msg->data.size);
            }
            for (size_t i = flight->follower_count; i-- > 0; ) {
                follower_t *f = flight->followers [i];
                if (!f->client.stream)
                    continue;
                if ((!f->started && s_head (flight, f) < 0)
                ||  s_chunk (flight, f, msg->flags, msg->data.data, msg->data.size) < 0)
                    s_lose (flight, i);
            }
            break;
        }
        case MESH_MSG_END:
            s_end (flight, msg);
            break;
        case MESH_MSG_ERROR:
            s_fail_all (flight, msg, false);
            break;
        default:
            break;
    }
}

static int
s_on_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop;
    (void) timer;
    cache_flight_t *flight = arg;
    cache_flights_t *self = flight->owner;
    if (flight->state == F_REDIS) {
        //  Redis did not answer in time: on without it
        cache_flights_l2_answer (self, flight->key, flight->l2_serial, NULL);
        return 0;
    }
    if (flight->state == F_LOST) {
        mesh_info ("the leader was not retried within %lld ms: its %zu followers try again req=%s",
                   (long long) self->settings.retry_grace_ms, flight->follower_count, flight->leader);
        s_fail_code (flight, 502, "connector_lost", "The gateway lost the connection serving this answer.",
                     true);
        return 0;
    }
    mesh_warn ("nothing heard of the call for %lld ms: given up, %zu followers get an error req=%s",
               (long long) self->settings.idle_ms, flight->follower_count, flight->leader);
    s_fail_code (flight, 504, "upstream_timeout", "The upstream did not answer in time.", false);
    return 0;
}

//  Who leaves --------------------------------------------------------------------------

void
cache_flights_cancel (cache_flights_t *self, const mesh_msg_t *msg)
{
    bool late = mesh_streq (msg->outcome, "cache_late");
    cache_flight_t *flight = mesh_map_get (self->by_leader, msg->id);
    if (flight && msg->attempt == flight->attempt) {
        if (late) {
            //  Its router went upstream without us: the call is not ours
            s_fail_code (flight, 502, "connector_lost", "The call this request joined was abandoned.", true);
            return;
        }
        flight->leader_gone = true;
        s_unjoinable (flight);
        if (flight->follower_count == 0)
            s_cancel_leader (flight, *msg->outcome ? msg->outcome : "client_gone");
        return;
    }
    flight = mesh_map_get (self->by_client, msg->id);
    if (!flight)
        return;
    for (size_t i = 0; i < flight->waiting_count; i++)
        if (mesh_streq (flight->waiting [i]->id, msg->id)) {
            //  Its router ends it at the lookup's bound
            mesh_map_remove (self->by_client, msg->id);
            free (flight->waiting [i]);
            flight->waiting [i] = flight->waiting [--flight->waiting_count];
            return;
        }
    for (size_t i = 0; i < flight->follower_count; i++) {
        follower_t *f = flight->followers [i];
        if (!mesh_streq (f->client.id, msg->id) || f->client.attempt != msg->attempt)
            continue;
        s_done (flight, f, 499, *msg->outcome ? msg->outcome : "client_gone", NULL);
        s_drop (flight, i);
        if (flight->leader_gone && flight->follower_count == 0)
            s_cancel_leader (flight, "client_gone");
        return;
    }
}

void
cache_flights_ingress_lost (cache_flights_t *self, const char *reply_to)
{
    //  Gather first: letting followers go may free their flights
    size_t count = mesh_map_size (self->by_client), found = 0, cursor = 0;
    if (count == 0)
        return;
    mesh_msg_t *cancels = calloc (count, sizeof *cancels);
    assert (cancels);
    cache_flight_t *flight;
    while ((flight = mesh_map_next (self->by_client, &cursor, NULL)) && found < count) {
        for (size_t i = 0; i < flight->follower_count && found < count; i++)
            if (mesh_streq (flight->followers [i]->client.reply_to, reply_to)) {
                bool seen = false;
                for (size_t k = 0; k < found && !seen; k++)
                    seen = mesh_streq (cancels [k].id, flight->followers [i]->client.id);
                if (!seen) {
                    mesh_msg_init (&cancels [found], MESH_MSG_CANCEL, flight->followers [i]->client.id);
                    cancels [found].attempt = flight->followers [i]->client.attempt;
                    snprintf (cancels [found].outcome, sizeof cancels [found].outcome, "ingress_unreachable");
                    found++;
                }
            }
    }
    for (size_t i = 0; i < found; i++)
        cache_flights_cancel (self, &cancels [i]);
    if (found)
        mesh_warn ("ingress %s lost: let %zu followers go", reply_to, found);
    free (cancels);
}

void
cache_flight_test (bool verbose)
{
    (void) verbose;
    //  Flights are proven against real processes (tests/integration/
    //  test_cache.py: coalescing, fan-out, leavers, failures); here, the
    //  replay record format round-trips
    mesh_buf_t events;
    mesh_buf_init (&events);
    uint8_t flags = 0;
    uint32_t len = 3;
    mesh_buf_append (&events, &flags, 1);
    mesh_buf_append (&events, &len, 4);
    mesh_buf_append (&events, "abc", 3);
    uint32_t back;
    memcpy (&back, mesh_buf_head (&events) + 1, 4);
    assert (back == 3 && memcmp (mesh_buf_head (&events) + 5, "abc", 3) == 0);
    mesh_buf_free (&events);
}
