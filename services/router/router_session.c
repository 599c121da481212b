/*  router_session: turns of sessions, from REQUEST to TURN.

        state       waits for
        LOCKING     the begin script (lock, history, takeover)
        WAITING     the turn before it to end (an unlock event, or the
                    next try), up to sessions.wait_ms
        PARKED      the operator (an operator event, or the next look at
                    the messages waiting), up to sessions.human_timeout_s
        DISPATCHED  TURN: the request went upstream
        ANSWERED    TURN: an operator (or the holding message) answered
    A turn is keyed by its request id; a retried REQUEST (attempt + 1) finds
    it and begins again (the lock is the request's already).             */
#include "router_session.h"
#include "router_history.h"
#include "router_store.h"

#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_redis.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_RETRY_MS   200         //  a waiting turn tries the lock again
#define SAY_POLL_MS     500         //  a parked turn looks at the waiting messages
#define TURN_SLACK_MS   10000       //  beyond the ingress's request timeout

enum { T_LOCKING, T_WAITING, T_PARKED, T_DISPATCHED, T_ANSWERED };

typedef struct turn_t turn_t;

struct router_session_t {
    mesh_config_t *config;
    mesh_loop_t *loop;
    mesh_outbox_t *outbox;
    mesh_metrics_t *metrics;
    router_store_t *store;
    router_takeover_t *takeover;
    mesh_map_t *turns;              //  request id -> turn_t
    int64_t ttl_s, max_tokens, wait_ms, lock_ms, human_timeout_ms, turn_life_ms;
    char *holding;
    int64_t renewed_ms;
    struct {
        mesh_metric_t *turns;       //  begun
        mesh_metric_t *stored;      //  histories stored
        mesh_metric_t *waited;      //  turns that waited for another
        mesh_metric_t *parked;      //  turns that waited for an operator
        mesh_metric_t *given_up;    //  turns without a TURN
        mesh_metric_t *open;        //  gauge
    } metric;
};

struct turn_t {
    router_session_t *owner;
    router_target_t target;
    char session [ROUTER_SESSION_ID_MAX + 1];
    int state;
    router_session_fn *fn;
    void *arg;
    bool cancelled;                 //  the request ended at the router
    bool locked;
    json_t *request;                //  the client's body
    router_history_t merge;
    bool merged;
    char *upstream;                 //  the body for upstream
    long long turns;                //  the session's turns before this one
    bool human;                     //  an operator answered it
    bool holding;                   //  the holding message answered it
    bool busy;                      //  a script is out whose answer holds this turn
    int64_t wait_until_ms;
    int64_t park_until_ms;
    int64_t expires_ms;
    mesh_timer_t timer;
};

//  Turns ----------------------------------------------------------------------------

static void
s_turn_free (turn_t *turn)
{
    router_session_t *self = turn->owner;
    mesh_loop_timer_stop (self->loop, &turn->timer);
    if (mesh_map_get (self->turns, turn->target.id) == turn)
        mesh_map_remove (self->turns, turn->target.id);
    json_decref (turn->request);
    if (turn->merged)
        router_history_free (&turn->merge);
    free (turn->upstream);
    free (turn);
    mesh_metric_set (self->metric.open, (double) mesh_map_size (self->turns));
}

static void
s_decide (turn_t *turn, const router_session_result_t *result)
{
    if (turn->fn && !turn->cancelled)
        turn->fn (turn->arg, result);
}

//  An error for the request; the turn is over (unlocked if it held the lock)
static void
s_refuse (turn_t *turn, int status, const char *type, const char *code, int retry_after_ms,
          const char *message)
{
    router_session_t *self = turn->owner;
    mesh_debug ("session %s: %s req=%s", turn->session, code, turn->target.id);
    router_session_result_t result = { .decision = ROUTER_SESSION_REFUSE, .status = status,
                                       .type = type, .code = code, .message = message,
                                       .retry_after_ms = retry_after_ms };
    if (turn->locked)
        router_store_unlock (self->store, turn->session, turn->target.id, NULL, NULL);
    s_decide (turn, &result);
    s_turn_free (turn);
}

static void
s_unavailable (turn_t *turn)
{
    s_refuse (turn, 503, "server_error", "sessions_unavailable", 1000,
              "The gateway cannot reach its session store right now; retry shortly.");
}

//  The request goes upstream with the merged messages
static void
s_dispatch (turn_t *turn)
{
    turn->state = T_DISPATCHED;
    mesh_loop_timer_stop (turn->owner->loop, &turn->timer);
    router_session_result_t result = { .decision = ROUTER_SESSION_DISPATCH, .body = turn->upstream,
                                       .len = strlen (turn->upstream), .tokens = turn->merge.tokens };
    s_decide (turn, &result);
}

//  An operator's words (or the holding message) answer the request
static void
s_answer (turn_t *turn, const char *text, bool holding)
{
    router_session_t *self = turn->owner;
    mesh_loop_timer_stop (self->loop, &turn->timer);
    turn->state = T_ANSWERED;
    turn->human = !holding;
    turn->holding = holding;
    if (!turn->cancelled)
        router_takeover_answer (self->outbox, &turn->target, text);
    mesh_info ("session %s answered by %s req=%s", turn->session, holding ? "the holding message"
               : "the operator", turn->target.id);
    router_session_result_t result = { .decision = ROUTER_SESSION_ANSWERED };
    s_decide (turn, &result);
}

//  Waiting operator messages --------------------------------------------------------

static void s_take (turn_t *turn);

static void
s_on_taken (void *arg, redisReply *reply)
{
    turn_t *turn = arg;
    router_session_t *self = turn->owner;
    turn->busy = false;
    if (turn->cancelled) {
        if (turn->locked)
            router_store_unlock (self->store, turn->session, turn->target.id, NULL, NULL);
        s_turn_free (turn);
        return;
    }
    if (turn->state != T_PARKED) {
        if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements)
            mesh_warn ("session %s: %zu operator messages taken after the release were dropped req=%s",
                       turn->session, reply->elements, turn->target.id);
        return;
    }
    mesh_buf_t said, plain;
    mesh_buf_init (&said);
    mesh_buf_init (&plain);
    for (size_t i = 0; reply && reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        redisReply *item = reply->element [i];
        if (item->type != REDIS_REPLY_STRING)
            continue;
        const char *why = router_store_open (self->store, turn->session, "say", item->str, item->len, &plain);
        if (why) {
            mesh_warn ("session %s: an operator message could not be opened: %s", turn->session, why);
            continue;
        }
        if (mesh_buf_size (&said))
            mesh_buf_append_str (&said, "\n\n");
        mesh_buf_append (&said, mesh_buf_head (&plain), mesh_buf_size (&plain));
    }
    if (mesh_buf_size (&said)) {
        mesh_buf_append (&said, "", 1);
        s_answer (turn, mesh_buf_head (&said), false);
    }
    mesh_buf_free (&said);
    mesh_buf_free (&plain);
}

static void
s_take (turn_t *turn)
{
    if (turn->busy)
        return;
    if (router_store_take_says (turn->owner->store, turn->session, s_on_taken, turn) == 0)
        turn->busy = true;
}

static int
s_on_park_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) timer;
    turn_t *turn = arg;
    router_session_t *self = turn->owner;
    if (turn->state != T_PARKED)
        return 0;
    if (mesh_loop_now_ms (loop) >= turn->park_until_ms) {
        s_answer (turn, self->holding, true);
        return 0;
    }
    s_take (turn);
    mesh_loop_timer_start (loop, &turn->timer, SAY_POLL_MS, s_on_park_timer, turn);
    return 0;
}

static void
s_park (turn_t *turn, bool said)
{
    router_session_t *self = turn->owner;
    turn->state = T_PARKED;
    turn->park_until_ms = mesh_loop_now_ms (self->loop) + self->human_timeout_ms;
    mesh_metric_inc (self->metric.parked);
    mesh_info ("session %s is taken over: the request waits for the operator req=%s", turn->session,
               turn->target.id);
    if (turn->target.stream)
        router_takeover_head (self->outbox, &turn->target);
    router_session_result_t result = { .decision = ROUTER_SESSION_PARKED };
    s_decide (turn, &result);
    if (said)
        s_take (turn);
    mesh_loop_timer_start (self->loop, &turn->timer, SAY_POLL_MS, s_on_park_timer, turn);
}

//  The lock and the history ---------------------------------------------------------

static void s_try_lock (turn_t *turn);

static int
s_on_wait_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop;
    (void) timer;
    turn_t *turn = arg;
    if (turn->state == T_WAITING)
        s_try_lock (turn);
    return 0;
}

//  Announces the request's new user messages to the watchers
static void
s_announce (turn_t *turn)
{
    size_t index;
    json_t *message;
    json_array_foreach (turn->merge.added, index, message) {
        if (!mesh_streq (json_string_value (json_object_get (message, "role")), "user"))
            continue;
        json_t *event = json_pack ("{s:s, s:s, s:I, s:O}", "type", "user", "request", turn->target.id,
                                   "time_ms", (json_int_t) mesh_wall_ms (),
                                   "content", json_object_get (message, "content") ? json_object_get (message, "content")
                                                                                    : json_null ());
        router_store_publish (turn->owner->store, "user", turn->session, event);
        json_decref (event);
    }
}

//  Locked: the history is opened and merged; the request goes upstream or
//  to the operator
static void
s_locked (turn_t *turn, redisReply *reply)
{
    router_session_t *self = turn->owner;
    turn->locked = true;
    redisReply *history = reply->element [1], *takeover = reply->element [2];
    turn->turns = reply->element [3]->type == REDIS_REPLY_STRING ? strtoll (reply->element [3]->str, NULL, 10) : 0;
    redisReply *says = reply->element [4];
    json_t *stored = NULL;
    if (history->type == REDIS_REPLY_STRING && history->len > 0) {
        mesh_buf_t plain;
        mesh_buf_init (&plain);
        const char *why = router_store_open (self->store, turn->session, "history", history->str,
                                             history->len, &plain);
        if (!why)
            stored = json_loadb (mesh_buf_head (&plain), mesh_buf_size (&plain), 0, NULL);
        mesh_buf_free (&plain);
        if (!json_is_array (stored)) {
            json_decref (stored);
            mesh_error ("session %s: its history cannot be read (%s) req=%s", turn->session,
                        why ? why : "not a list of messages", turn->target.id);
            s_refuse (turn, 500, "server_error", "session_unreadable", 0,
                      "The session's history cannot be read (its key is not in this gateway's key ring).");
            return;
        }
    }
    if (turn->merged)
        router_history_free (&turn->merge);
    int rc = router_history_merge (stored, json_object_get (turn->request, "messages"), self->max_tokens,
                                   &turn->merge);
    json_decref (stored);
    turn->merged = rc == 0;
    if (rc < 0) {
        s_refuse (turn, 400, "invalid_request_error", "invalid_messages", 0,
                  "The request's messages must be a list of message objects.");
        return;
    }
    json_t *body = json_copy (turn->request);
    json_object_set_new (body, "messages", router_history_upstream (&turn->merge));
    free (turn->upstream);
    turn->upstream = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    assert (turn->upstream);
    mesh_debug ("session %s: %zu messages kept, %zu sent again, %zu dropped, %zu new req=%s",
                turn->session, json_array_size (turn->merge.history), turn->merge.resent,
                turn->merge.dropped, json_array_size (turn->merge.added), turn->target.id);
    s_announce (turn);
    if (takeover->type == REDIS_REPLY_STRING && takeover->len > 0)
        s_park (turn, says->type == REDIS_REPLY_INTEGER && says->integer > 0);
    else
        s_dispatch (turn);
}

static void
s_on_lock (void *arg, redisReply *reply)
{
    turn_t *turn = arg;
    router_session_t *self = turn->owner;
    turn->busy = false;
    bool valid = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1
              && reply->element [0]->type == REDIS_REPLY_INTEGER;
    long long verdict = valid ? reply->element [0]->integer : -2;
    if (turn->cancelled) {
        if (verdict == 1 || turn->locked)
            router_store_unlock (self->store, turn->session, turn->target.id, NULL, NULL);
        s_turn_free (turn);
        return;
    }
    if (!valid || (verdict == 1 && reply->elements != 5)) {
        //  It may have taken the lock before its answer was lost
        router_store_unlock (self->store, turn->session, turn->target.id, NULL, NULL);
        s_unavailable (turn);
        return;
    }
    if (verdict == -1) {
        mesh_info ("session %s belongs to another key req=%s", turn->session, turn->target.id);
        s_refuse (turn, 404, "invalid_request_error", "session_not_found", 0,
                  "No such session for this API key.");
        return;
    }
    if (verdict == 0) {
        int64_t now = mesh_loop_now_ms (self->loop);
        if (turn->state != T_WAITING) {
            turn->state = T_WAITING;
            turn->wait_until_ms = now + self->wait_ms;
            mesh_metric_inc (self->metric.waited);
        }
        if (now >= turn->wait_until_ms) {
            s_refuse (turn, 409, "invalid_request_error", "session_busy", 1000,
                      "Another request of this session is still being answered; retry when it is done.");
            return;
        }
        mesh_loop_timer_start (self->loop, &turn->timer, WAIT_RETRY_MS, s_on_wait_timer, turn);
        return;
    }
    s_locked (turn, reply);
}

static void
s_try_lock (turn_t *turn)
{
    router_session_t *self = turn->owner;
    if (turn->busy)
        return;                     //  a try is out already
    mesh_loop_timer_stop (self->loop, &turn->timer);
    if (turn->state != T_WAITING)
        turn->state = T_LOCKING;
    if (router_store_begin (self->store, turn->session, turn->target.id, turn->target.tenant,
                            turn->target.key_id, self->lock_ms, s_on_lock, turn) < 0)
        s_unavailable (turn);
    else
        turn->busy = true;
}

static int
s_on_refuse_later (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop;
    (void) timer;
    turn_t *turn = arg;
    if (!router_store_ready (turn->owner->store))
        s_unavailable (turn);
    else
        s_refuse (turn, 400, "invalid_request_error", "invalid_request", 0, "The request body is not a JSON object.");
    return 0;
}

void
router_session_begin (router_session_t *self, const router_target_t *target, const char *session,
                      const char *body, size_t len, router_session_fn *fn, void *arg)
{
    turn_t *turn = mesh_map_get (self->turns, target->id);
    if (turn && turn->busy) {
        //  The same request again while a script of the last attempt is
        //  out: that one is let go, this one starts afresh
        turn->fn = NULL;
        turn->cancelled = true;
        mesh_map_remove (self->turns, target->id);
        turn = NULL;
    }
    if (turn) {
        //  The same request again (another attempt): its lock is its own
        mesh_loop_timer_stop (self->loop, &turn->timer);
        json_decref (turn->request);
        turn->request = NULL;
    }
    else {
        turn = calloc (1, sizeof *turn);
        assert (turn);
        turn->owner = self;
        mesh_metric_inc (self->metric.turns);
    }
    turn->target = *target;
    snprintf (turn->session, sizeof turn->session, "%s", session);
    turn->fn = fn;
    turn->arg = arg;
    turn->cancelled = false;
    turn->state = T_LOCKING;
    turn->expires_ms = mesh_loop_now_ms (self->loop) + self->turn_life_ms;
    mesh_map_put (self->turns, turn->target.id, turn);
    mesh_metric_set (self->metric.open, (double) mesh_map_size (self->turns));
    turn->request = json_loadb (body, len, 0, NULL);
    if (!json_is_object (turn->request) || !router_store_ready (self->store)) {
        //  Decided at once, but told later, as promised
        mesh_loop_timer_start (self->loop, &turn->timer, 0, s_on_refuse_later, turn);
        return;
    }
    s_try_lock (turn);
}

void
router_session_cancel (router_session_t *self, const char *request)
{
    turn_t *turn = mesh_map_get (self->turns, request);
    if (!turn)
        return;
    turn->fn = NULL;
    turn->cancelled = true;
    if (turn->busy)
        return;                     //  its script's answer ends it
    if (turn->state == T_WAITING || turn->state == T_PARKED) {
        if (turn->locked)
            router_store_unlock (self->store, turn->session, turn->target.id, NULL, NULL);
        s_turn_free (turn);
    }
    //  Dispatched or answered: its TURN ends it
}

//  The end of a turn ----------------------------------------------------------------

typedef struct {
    router_session_t *owner;
    char session [ROUTER_SESSION_ID_MAX + 1];
    char request [MESH_ID_LEN + 1];
} unlocked_t;

static void s_wake (router_session_t *self, const char *session);

static void
s_on_unlocked (void *arg, redisReply *reply)
{
    unlocked_t *done = arg;
    router_session_t *self = done->owner;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        mesh_warn ("session %s: the turn no longer held the session (its lease ran out): its answer "
                   "was not stored req=%s", done->session, done->request);
    json_t *event = json_pack ("{s:s, s:s}", "type", "unlock", "request", done->request);
    router_store_publish (self->store, "unlock", done->session, event);
    json_decref (event);
    s_wake (self, done->session);
    free (done);
}

static void
s_end_turn (turn_t *turn, json_t *answer)
{
    router_session_t *self = turn->owner;
    unlocked_t *done = calloc (1, sizeof *done);
    assert (done);
    done->owner = self;
    snprintf (done->session, sizeof done->session, "%s", turn->session);
    snprintf (done->request, sizeof done->request, "%s", turn->target.id);
    int rc = -1;
    if (answer && turn->merged) {
        json_t *history = router_history_after (&turn->merge, answer, self->max_tokens);
        char *text = json_dumps (history, JSON_COMPACT);
        mesh_buf_t sealed;
        mesh_buf_init (&sealed);
        if (text && router_store_seal (self->store, turn->session, "history", text, strlen (text), &sealed) == 0)
            rc = router_store_commit (self->store, turn->session, turn->target.id, &sealed,
                                      (size_t) turn->turns + 1, turn->target.tenant,
                                      turn->target.key_id, self->ttl_s, s_on_unlocked, done);
        if (rc == 0) {
            mesh_metric_inc (self->metric.stored);
            if (!turn->human) {
                json_t *event = json_pack ("{s:s, s:s, s:I, s:O, s:b}", "type", "assistant",
                                           "request", turn->target.id, "time_ms", (json_int_t) mesh_wall_ms (),
                                           "content", json_object_get (answer, "content") ? json_object_get (answer, "content")
                                                                                          : json_null (),
                                           "holding", turn->holding);
                router_store_publish (self->store, "assistant", turn->session, event);
                json_decref (event);
            }
        }
        free (text);
        mesh_buf_free (&sealed);
        json_decref (history);
    }
    if (rc < 0)
        rc = router_store_unlock (self->store, turn->session, turn->target.id, s_on_unlocked, done);
    if (rc < 0) {
        mesh_warn ("session %s: Redis is away: the lock goes when its lease ends req=%s",
                   turn->session, turn->target.id);
        free (done);
    }
    s_turn_free (turn);
}

void
router_session_turn (router_session_t *self, const mesh_msg_t *msg)
{
    turn_t *turn = mesh_map_get (self->turns, msg->id);
    if (!turn)
        return;                     //  another router's, or given up
    if (turn->busy) {
        turn->cancelled = true;     //  its script's answer ends it
        turn->fn = NULL;
        return;
    }
    json_t *answer = NULL;
    bool answered = mesh_streq (msg->outcome, "ok") || mesh_streq (msg->outcome, "filtered")
                 || mesh_streq (msg->outcome, "taken_over");
    if (answered && msg->data.size && (turn->state == T_DISPATCHED || turn->state == T_ANSWERED)) {
        answer = json_loadb (msg->data.data, msg->data.size, 0, NULL);
        if (!json_is_object (answer)) {
            json_decref (answer);
            answer = NULL;
        }
    }
    mesh_debug ("session %s: turn ended (%s)%s req=%s", turn->session, msg->outcome,
                answer ? ", storing" : "", msg->id);
    if (!turn->locked) {
        s_turn_free (turn);
        json_decref (answer);
        return;
    }
    s_end_turn (turn, answer);
    json_decref (answer);
}

//  Events from every router -----------------------------------------------------------

//  The turns of a session on this router (a copy: acting may free them)
static size_t
s_turns_of (router_session_t *self, const char *session, turn_t **out, size_t max)
{
    size_t count = 0, cursor = 0;
    turn_t *turn;
    while ((turn = mesh_map_next (self->turns, &cursor, NULL)) && count < max)
        if (mesh_streq (turn->session, session))
            out [count++] = turn;
    return count;
}

static void
s_wake (router_session_t *self, const char *session)
{
    turn_t *turns [64];
    size_t count = s_turns_of (self, session, turns, 64);
    for (size_t i = 0; i < count; i++)
        if (turns [i]->state == T_WAITING)
            s_try_lock (turns [i]);
}

static void
s_on_event (void *arg, const char *type, const char *session, json_t *payload)
{
    router_session_t *self = arg;
    (void) payload;
    turn_t *turns [64];
    size_t count = s_turns_of (self, session, turns, 64);
    for (size_t i = 0; i < count; i++) {
        turn_t *turn = turns [i];
        if ((mesh_streq (type, "unlock") || mesh_streq (type, "deleted")) && turn->state == T_WAITING)
            s_try_lock (turn);
        else
        if (mesh_streq (type, "operator") && turn->state == T_PARKED)
            s_take (turn);
        else
        if (mesh_streq (type, "release") && turn->state == T_PARKED) {
            mesh_info ("session %s released: the waiting request goes to the model req=%s", session,
                       turn->target.id);
            s_dispatch (turn);
        }
        else
        if (mesh_streq (type, "takeover") && turn->state == T_DISPATCHED && turn->target.stream) {
            //  The model's stream ends here, cleanly; the operator goes on
            mesh_msg_t stop;
            mesh_msg_init (&stop, MESH_MSG_STOP, turn->target.id);
            stop.attempt = turn->target.attempt;
            stop.token = turn->target.token;
            snprintf (stop.finish, sizeof stop.finish, "stop");
            if (mesh_outbox_send (self->outbox, turn->target.reply_to, &stop) < 0)
                mesh_warn ("cannot send STOP to %s req=%s", turn->target.reply_to, turn->target.id);
            else
                mesh_info ("session %s taken over: its stream is ended req=%s", session, turn->target.id);
        }
    }
}

//  GET and DELETE -----------------------------------------------------------------------

typedef struct {
    router_session_t *owner;
    router_target_t target;
    char session [ROUTER_SESSION_ID_MAX + 1];
} query_t;

static void
s_error_to (router_session_t *self, const router_target_t *target, int status, const char *code,
            int retry_after_ms, const char *message)
{
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_ERROR, target->id);
    msg.attempt = target->attempt;
    msg.token = target->token;
    msg.status = (uint32_t) status;
    snprintf (msg.err_type, sizeof msg.err_type, "%s", status >= 500 ? "server_error" : "invalid_request_error");
    snprintf (msg.err_code, sizeof msg.err_code, "%s", code);
    snprintf (msg.message, sizeof msg.message, "%s", message);
    snprintf (msg.tenant, sizeof msg.tenant, "%s", target->tenant);
    snprintf (msg.key_id, sizeof msg.key_id, "%s", target->key_id);
    msg.retry_after_ms = (uint32_t) retry_after_ms;
    msg.flags = retry_after_ms ? MESH_ERROR_RETRY_YES : MESH_ERROR_RETRY_NO;
    mesh_outbox_send (self->outbox, target->reply_to, &msg);
}

static void
s_reply_to (router_session_t *self, const router_target_t *target, json_t *body)
{
    char *text = json_dumps (body, JSON_COMPACT);
    json_decref (body);
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_REPLY, target->id);
    msg.token = target->token;
    msg.status = 200;
    snprintf (msg.content_type, sizeof msg.content_type, "application/json");
    msg.data = (mesh_bytes_t) { text, strlen (text) };
    mesh_outbox_send (self->outbox, target->reply_to, &msg);
    free (text);
}

static bool
s_field_is (redisReply *reply, size_t i, const char *value)
{
    return reply->element [i]->type == REDIS_REPLY_STRING && mesh_streq (reply->element [i]->str, value);
}

static void
s_on_got (void *arg, redisReply *reply)
{
    query_t *query = arg;
    router_session_t *self = query->owner;
    if (!reply || (reply->type != REDIS_REPLY_ARRAY && reply->type != REDIS_REPLY_NIL))
        s_error_to (self, &query->target, 503, "sessions_unavailable", 1000,
                    "The gateway cannot reach its session store right now; retry shortly.");
    else
    if (reply->type == REDIS_REPLY_NIL || reply->elements != 7
    ||  !s_field_is (reply, 0, query->target.tenant) || !s_field_is (reply, 1, query->target.key_id))
        s_error_to (self, &query->target, 404, "session_not_found", 0, "No such session for this API key.");
    else {
        mesh_buf_t plain;
        mesh_buf_init (&plain);
        redisReply *history = reply->element [2];
        json_t *messages = NULL;
        const char *why = history->len ? router_store_open (self->store, query->session, "history",
                                                            history->str, history->len, &plain) : NULL;
        if (!why)
            messages = history->len ? json_loadb (mesh_buf_head (&plain), mesh_buf_size (&plain), 0, NULL)
                                    : json_array ();
        mesh_buf_free (&plain);
        if (!json_is_array (messages)) {
            json_decref (messages);
            s_error_to (self, &query->target, 500, "session_unreadable", 0,
                        "The session's history cannot be read.");
        }
        else {
            const char *operator_name = reply->element [3]->str;
            s_reply_to (self, &query->target, json_pack ("{s:s, s:s, s:I, s:I, s:I, s:o, s:o}",
                "id", query->session, "object", "session",
                "created", (json_int_t) (strtoll (reply->element [5]->str, NULL, 10) / 1000),
                "updated", (json_int_t) (strtoll (reply->element [6]->str, NULL, 10) / 1000),
                "turns", (json_int_t) strtoll (reply->element [4]->str, NULL, 10),
                "taken_over_by", *operator_name ? json_string (operator_name) : json_null (),
                "messages", messages));
        }
    }
    free (query);
}

static void
s_on_deleted (void *arg, redisReply *reply)
{
    query_t *query = arg;
    router_session_t *self = query->owner;
    if (!reply || reply->type != REDIS_REPLY_INTEGER)
        s_error_to (self, &query->target, 503, "sessions_unavailable", 1000,
                    "The gateway cannot reach its session store right now; retry shortly.");
    else
    if (reply->integer != 1)
        s_error_to (self, &query->target, 404, "session_not_found", 0, "No such session for this API key.");
    else {
        mesh_info ("session %s deleted by its key req=%s", query->session, query->target.id);
        json_t *event = json_pack ("{s:s, s:s}", "type", "deleted", "request", query->target.id);
        router_store_publish (self->store, "deleted", query->session, event);
        json_decref (event);
        s_reply_to (self, &query->target, json_pack ("{s:s, s:s, s:b}", "id", query->session,
                                                     "object", "session", "deleted", 1));
    }
    free (query);
}

void
router_session_reply (router_session_t *self, const router_target_t *target, int kind, const char *session)
{
    if (!router_store_valid_id (session)) {
        s_error_to (self, target, 404, "session_not_found", 0, "No such session for this API key.");
        return;
    }
    query_t *query = calloc (1, sizeof *query);
    assert (query);
    query->owner = self;
    query->target = *target;
    snprintf (query->session, sizeof query->session, "%s", session);
    int rc = kind == MESH_KIND_SESSION_DELETE
           ? router_store_delete (self->store, session, target->tenant, target->key_id, s_on_deleted, query)
           : router_store_get (self->store, session, s_on_got, query);
    if (rc < 0) {
        s_error_to (self, target, 503, "sessions_unavailable", 1000,
                    "The gateway cannot reach its session store right now; retry shortly.");
        free (query);
    }
}

//  Time ---------------------------------------------------------------------------------

void
router_session_tick (router_session_t *self)
{
    router_takeover_tick (self->takeover);
    int64_t now = mesh_loop_now_ms (self->loop);
    size_t count = mesh_map_size (self->turns), n = 0, cursor = 0;
    if (count == 0)
        return;
    turn_t **all = calloc (count, sizeof *all);
    assert (all);
    turn_t *turn;
    while ((turn = mesh_map_next (self->turns, &cursor, NULL)) && n < count)
        all [n++] = turn;
    //  Turns whose TURN never came (their ingress is gone)
    for (size_t i = 0; i < n; i++) {
        if (all [i]->expires_ms > now || all [i]->busy)
            continue;
        mesh_warn ("session %s: no end of its turn within %lld ms: given up req=%s", all [i]->session,
                   (long long) self->turn_life_ms, all [i]->target.id);
        mesh_metric_inc (self->metric.given_up);
        all [i]->fn = NULL;
        all [i]->cancelled = true;
        if (all [i]->locked)
            s_end_turn (all [i], NULL);
        else
            s_turn_free (all [i]);
        all [i] = NULL;
    }
    //  The leases of the turns that hold their session
    if (now - self->renewed_ms >= self->lock_ms / 3) {
        const char **sessions = calloc (n + 1, sizeof *sessions), **requests = calloc (n + 1, sizeof *requests);
        assert (sessions && requests);
        size_t held = 0;
        for (size_t i = 0; i < n; i++)
            if (all [i] && all [i]->locked) {
                sessions [held] = all [i]->session;
                requests [held++] = all [i]->target.id;
            }
        router_store_renew (self->store, sessions, requests, held, self->lock_ms);
        self->renewed_ms = now;
        free (sessions);
        free (requests);
    }
    free (all);
}

//  Lifecycle ----------------------------------------------------------------------------

router_session_t *
router_session_new (mesh_config_t *config, mesh_loop_t *loop, struct mesh_redis_t *redis,
                    mesh_outbox_t *outbox, mesh_metrics_t *metrics, router_filters_t *filters,
                    char *why, size_t why_size)
{
    router_session_t *self = calloc (1, sizeof *self);
    assert (self);
    self->config = config;
    self->loop = loop;
    self->outbox = outbox;
    self->metrics = metrics;
    self->turns = mesh_map_new ();
    self->ttl_s = mesh_setting_int (config, "sessions.ttl_s");
    self->max_tokens = mesh_setting_int (config, "sessions.max_history_tokens");
    self->wait_ms = mesh_setting_int (config, "sessions.wait_ms");
    self->lock_ms = mesh_setting_int (config, "sessions.lock_ms");
    self->human_timeout_ms = mesh_setting_int (config, "sessions.human_timeout_s") * 1000;
    self->holding = strdup (mesh_setting_str (config, "sessions.holding_message"));
    int64_t request_timeout_ms = mesh_setting_int (config, "ingress.request_timeout_ms");
    self->turn_life_ms = request_timeout_ms + TURN_SLACK_MS;
    //  A parked request must be answered before its ingress gives up on it
    if (self->human_timeout_ms > request_timeout_ms - 1000) {
        self->human_timeout_ms = MESH_MAX (request_timeout_ms - 1000, request_timeout_ms / 2);
        mesh_warn ("sessions.human_timeout_s is not shorter than ingress.request_timeout_ms (%lld ms): "
                   "the holding message comes after %lld ms", (long long) request_timeout_ms,
                   (long long) self->human_timeout_ms);
    }
    if (mesh_config_failed (config)) {
        snprintf (why, why_size, "%s", mesh_config_failed (config));
        router_session_destroy (&self);
        return NULL;
    }
    self->store = router_store_new (config, loop, redis, why, why_size);
    if (!self->store) {
        router_session_destroy (&self);
        return NULL;
    }
    self->takeover = router_takeover_new (self->store, loop, outbox, filters, metrics, self->ttl_s);
    router_store_listen (self->store, s_on_event, self);
    self->metric.turns = mesh_metrics_counter (metrics, "seekmesh_router_session_turns_total",
        "Requests of sessions (turns) begun.", NULL);
    self->metric.stored = mesh_metrics_counter (metrics, "seekmesh_router_session_stored_total",
        "Turns whose answer was added to the session's history.", NULL);
    self->metric.waited = mesh_metrics_counter (metrics, "seekmesh_router_session_waits_total",
        "Turns that waited for the one before them.", NULL);
    self->metric.parked = mesh_metrics_counter (metrics, "seekmesh_router_session_parked_total",
        "Turns of a taken-over session that waited for the operator.", NULL);
    self->metric.given_up = mesh_metrics_counter (metrics, "seekmesh_router_session_given_up_total",
        "Turns whose end never came (their ingress went away).", NULL);
    self->metric.open = mesh_metrics_gauge (metrics, "seekmesh_router_session_turns_open",
        "Turns this router holds.", NULL);
    self->renewed_ms = mesh_loop_now_ms (loop);
    return self;
}

void
router_session_destroy (router_session_t **self_p)
{
    assert (self_p);
    router_session_t *self = *self_p;
    if (!self)
        return;
    if (self->turns) {
        size_t cursor = 0;
        turn_t *turn;
        while ((turn = mesh_map_next (self->turns, &cursor, NULL))) {
            mesh_loop_timer_stop (self->loop, &turn->timer);
            json_decref (turn->request);
            if (turn->merged)
                router_history_free (&turn->merge);
            free (turn->upstream);
            free (turn);
        }
        mesh_map_destroy (&self->turns);
    }
    router_takeover_destroy (&self->takeover);
    router_store_destroy (&self->store);
    free (self->holding);
    free (self);
    *self_p = NULL;
}

void
router_session_routes (router_session_t *self, mesh_admin_t *admin, router_registry_t *registry)
{
    router_takeover_routes (self->takeover, admin, registry);
}

//  Selftest -------------------------------------------------------------------------------

static int s_test_decision;

static void
s_test_fn (void *arg, const router_session_result_t *result)
{
    (void) arg;
    s_test_decision = result->decision;
    assert (result->decision == ROUTER_SESSION_REFUSE && result->status == 503
            && mesh_streq (result->code, "sessions_unavailable"));
}

static int
s_test_stop (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop;
    (void) timer;
    (void) arg;
    return -1;
}

void
router_session_test (bool verbose)
{
    (void) verbose;
    //  Without Redis every turn is refused (503), told later; a bad
    //  setting is refused at start (the turns' lives run against a real
    //  Redis in tests/integration/test_sessions.py)
    const char *ring = "k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    setenv ("SEEKMESH_TEST_SESSION_KEYS", ring, 1);
    const char *text = "{\"sessions\":{\"keys_env\":\"SEEKMESH_TEST_SESSION_KEYS\"}}";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "s.json", why, sizeof why);
    mesh_loop_t *loop = mesh_loop_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    router_session_t *self = router_session_new (config, loop, NULL, NULL, metrics, NULL, why, sizeof why);
    assert (self);
    router_target_t target = { .id = "01JD0000000000000000000001", .tenant = "t", .key_id = "k" };
    router_session_begin (self, &target, "s-1", "{\"messages\":[]}", 15, s_test_fn, NULL);
    assert (s_test_decision == 0 && mesh_map_size (self->turns) == 1);
    mesh_timer_t stop;
    memset (&stop, 0, sizeof stop);
    mesh_loop_timer_start (loop, &stop, 50, s_test_stop, NULL);
    mesh_loop_run (loop);
    assert (s_test_decision == ROUTER_SESSION_REFUSE && mesh_map_size (self->turns) == 0);
    router_session_destroy (&self);
    router_session_destroy (&self);
    mesh_config_destroy (&config);

    //  The operator's wait ends before the ingress's
    text = "{\"sessions\":{\"keys_env\":\"SEEKMESH_TEST_SESSION_KEYS\",\"human_timeout_s\":700}}";
    config = mesh_config_parse (text, strlen (text), "s.json", why, sizeof why);
    self = router_session_new (config, loop, NULL, NULL, metrics, NULL, why, sizeof why);
    assert (self && self->human_timeout_ms == 599000);
    router_session_destroy (&self);
    mesh_config_destroy (&config);
    unsetenv ("SEEKMESH_TEST_SESSION_KEYS");
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
}
