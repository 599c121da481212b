/*  router_takeover: the operators' admin API, the live transcripts, the
    audit records of their actions, and human answers.                     */
#include "router_takeover.h"

#include "mesh_audit.h"
#include "mesh_log.h"
#include "mesh_msg.h"
#include "mesh_redis.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WATCHERS        64
#define WATCH_KEEPALIVE_MS  15000
#define LIST_LIMIT          1000
#define MAX_OPERATOR        64
#define MAX_SAY_BYTES       (64 * 1024)

typedef struct {
    mesh_admin_pending_t *pending;
    char session [ROUTER_SESSION_ID_MAX + 1];
    bool ready;                 //  the history went out: events follow
    mesh_buf_t queued;          //  events before it
    int64_t written_ms;
} watcher_t;

struct router_takeover_t {
    router_store_t *store;
    mesh_loop_t *loop;
    mesh_outbox_t *outbox;
    router_filters_t *filters;
    router_registry_t *registry;
    int64_t ttl_s;
    watcher_t *watchers [MAX_WATCHERS];
    size_t watcher_count;
    mesh_metric_t *actions;
};

//  Human answers --------------------------------------------------------------------

//  One chunk of a human answer's stream
static char *
s_chunk (const router_target_t *target, json_t *delta, const char *finish, bool usage)
{
    char id [64];
    snprintf (id, sizeof id, "chatcmpl-human-%s", target->id);
    json_t *chunk = json_pack ("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:o}]}", "id", id,
                               "object", "chat.completion.chunk", "created", (json_int_t) (mesh_wall_ms () / 1000),
                               "model", ROUTER_HUMAN_MODEL, "choices", "index", 0, "delta", delta,
                               "finish_reason", finish ? json_string (finish) : json_null ());
    if (usage)
        json_object_set_new (chunk, "usage", json_pack ("{s:i, s:i, s:i}", "prompt_tokens", 0,
                                                        "completion_tokens", 0, "total_tokens", 0));
    char *text = json_dumps (chunk, JSON_COMPACT);
    json_decref (chunk);
    return text;
}

static void
s_send (mesh_outbox_t *outbox, const router_target_t *target, mesh_msg_t *msg)
{
    msg->attempt = target->attempt;
    msg->token = target->token;
    if (mesh_outbox_send (outbox, target->reply_to, msg) < 0)
        mesh_warn ("cannot send %s to %s req=%s", mesh_msg_name (msg->type), target->reply_to, target->id);
}

void
router_takeover_head (mesh_outbox_t *outbox, const router_target_t *target)
{
    mesh_msg_t head;
    mesh_msg_init (&head, MESH_MSG_HEAD, target->id);
    head.status = 200;
    snprintf (head.model, sizeof head.model, ROUTER_HUMAN_MODEL);
    snprintf (head.tenant, sizeof head.tenant, "%s", target->tenant);
    snprintf (head.key_id, sizeof head.key_id, "%s", target->key_id);
    s_send (outbox, target, &head);
}

void
router_takeover_answer (mesh_outbox_t *outbox, const router_target_t *target, const char *text)
{
    mesh_msg_t msg;
    if (target->stream) {
        router_takeover_head (outbox, target);      //  again: harmless once begun
        char *chunks [3] = {
            s_chunk (target, json_pack ("{s:s, s:s}", "role", "assistant", "content", ""), NULL, false),
            s_chunk (target, json_pack ("{s:s}", "content", text), NULL, false),
            s_chunk (target, json_object (), "stop", true)
        };
        for (int i = 0; i < 3; i++) {
            mesh_msg_init (&msg, MESH_MSG_CHUNK, target->id);
            msg.data = (mesh_bytes_t) { chunks [i], chunks [i] ? strlen (chunks [i]) : 0 };
            if (chunks [i])
                s_send (outbox, target, &msg);
            free (chunks [i]);
        }
    }
    mesh_msg_init (&msg, MESH_MSG_END, target->id);
    msg.status = 200;
    snprintf (msg.model, sizeof msg.model, ROUTER_HUMAN_MODEL);
    snprintf (msg.finish, sizeof msg.finish, "stop");
    snprintf (msg.tenant, sizeof msg.tenant, "%s", target->tenant);
    snprintf (msg.key_id, sizeof msg.key_id, "%s", target->key_id);
    char *body = NULL;
    if (!target->stream) {
        char id [64];
        snprintf (id, sizeof id, "chatcmpl-human-%s", target->id);
        json_t *completion = json_pack ("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s}, s:n, s:s}], s:{s:i, s:i, s:i}}",
            "id", id, "object", "chat.completion", "created", (json_int_t) (mesh_wall_ms () / 1000),
            "model", ROUTER_HUMAN_MODEL, "choices", "index", 0, "message", "role", "assistant",
            "content", text, "logprobs", "finish_reason", "stop",
            "usage", "prompt_tokens", 0, "completion_tokens", 0, "total_tokens", 0);
        body = json_dumps (completion, JSON_COMPACT);
        json_decref (completion);
        msg.data = (mesh_bytes_t) { body, body ? strlen (body) : 0 };
    }
    s_send (outbox, target, &msg);
    free (body);
}

//  Watchers -------------------------------------------------------------------------

static void
s_watcher_end (router_takeover_t *self, size_t i)
{
    watcher_t *watcher = self->watchers [i];
    mesh_admin_stream_end (watcher->pending);
    mesh_buf_free (&watcher->queued);
    free (watcher);
    self->watchers [i] = self->watchers [--self->watcher_count];
}

//  Writes an SSE event; false when the watcher has gone
static bool
s_watcher_write (router_takeover_t *self, watcher_t *watcher, const char *data, size_t len)
{
    if (!watcher->ready) {
        mesh_buf_append (&watcher->queued, data, len);
        return mesh_buf_size (&watcher->queued) < MESH_ADMIN_MAX_STREAM_BYTES;
    }
    watcher->written_ms = mesh_loop_now_ms (self->loop);
    return mesh_admin_stream_write (watcher->pending, data, len) == 0;
}

static void
s_watch_event (router_takeover_t *self, watcher_t *watcher, json_t *event, size_t *index)
{
    char *text = json_dumps (event, JSON_COMPACT);
    mesh_buf_t line;
    mesh_buf_init (&line);
    mesh_buf_printf (&line, "data: %s\n\n", text ? text : "{}");
    free (text);
    if (!s_watcher_write (self, watcher, mesh_buf_head (&line), mesh_buf_size (&line)))
        s_watcher_end (self, (*index)--);
    mesh_buf_free (&line);
}

static void
s_on_event (void *arg, const char *type, const char *session, json_t *payload)
{
    router_takeover_t *self = arg;
    if (mesh_streq (type, "unlock"))
        return;                     //  for the routers, not the transcript
    for (size_t i = 0; i < self->watcher_count; i++) {
        watcher_t *watcher = self->watchers [i];
        if (!mesh_streq (watcher->session, session))
            continue;
        json_t *event = payload ? json_copy (payload) : json_object ();
        json_object_set_new (event, "type", json_string (type));
        json_object_set_new (event, "session", json_string (session));
        s_watch_event (self, watcher, event, &i);
        json_decref (event);
        if (mesh_streq (type, "deleted") && i < self->watcher_count && self->watchers [i] == watcher)
            s_watcher_end (self, i--);
    }
}

void
router_takeover_tick (router_takeover_t *self)
{
    int64_t now = mesh_loop_now_ms (self->loop);
    for (size_t i = 0; i < self->watcher_count; i++) {
        watcher_t *watcher = self->watchers [i];
        if (watcher->ready && now - watcher->written_ms >= WATCH_KEEPALIVE_MS
        &&  !s_watcher_write (self, watcher, ": keep-alive\n\n", 14))
            s_watcher_end (self, i--);
    }
}

//  Admin API ------------------------------------------------------------------------

typedef struct {
    router_takeover_t *owner;
    mesh_admin_pending_t *pending;
    watcher_t *watcher;         //  a watch's
    char session [ROUTER_SESSION_ID_MAX + 1];
    char operator_name [MAX_OPERATOR + 1];
    char action [16];           //  takeover, say, release
    char *text;                 //  say's
} call_t;

static void
s_call_free (call_t *call)
{
    free (call->text);
    free (call);
}

static void
s_finish (call_t *call, int status, json_t *body)
{
    mesh_admin_response_t response = { 0 };
    mesh_buf_init (&response.body);
    router_registry_answer (&response, status, body);
    mesh_admin_complete (call->pending, response.status, response.content_type, &response.body);
    s_call_free (call);
}

static int
s_fail_later (call_t *call, int status, const char *code, const char *message)
{
    mesh_admin_response_t response = { 0 };
    mesh_buf_init (&response.body);
    router_registry_fail (&response, status, code, "%s", message);
    mesh_admin_complete (call->pending, response.status, response.content_type, &response.body);
    s_call_free (call);
    return 0;
}

static json_t *
s_messages (router_takeover_t *self, const char *session, redisReply *history)
{
    if (history->type != REDIS_REPLY_STRING || history->len == 0)
        return json_array ();
    mesh_buf_t plain;
    mesh_buf_init (&plain);
    json_t *messages = NULL;
    if (!router_store_open (self->store, session, "history", history->str, history->len, &plain))
        messages = json_loadb (mesh_buf_head (&plain), mesh_buf_size (&plain), 0, NULL);
    mesh_buf_free (&plain);
    return messages;
}

//  GET /admin/sessions/ID, and a watch's first event
static json_t *
s_session_view (router_takeover_t *self, const char *session, redisReply *reply)
{
    json_t *messages = s_messages (self, session, reply->element [2]);
    if (!json_is_array (messages)) {
        json_decref (messages);
        return NULL;
    }
    const char *operator_name = reply->element [3]->str;
    return json_pack ("{s:s, s:s, s:s, s:I, s:I, s:I, s:o, s:o}", "id", session, "object", "session",
                      "tenant", reply->element [0]->str,
                      "turns", (json_int_t) strtoll (reply->element [4]->str, NULL, 10),
                      "created", (json_int_t) (strtoll (reply->element [5]->str, NULL, 10) / 1000),
                      "updated", (json_int_t) (strtoll (reply->element [6]->str, NULL, 10) / 1000),
                      "taken_over_by", *operator_name ? json_string (operator_name) : json_null (),
                      "messages", messages);
}

static void
s_on_got (void *arg, redisReply *reply)
{
    call_t *call = arg;
    if (!reply || (reply->type != REDIS_REPLY_ARRAY && reply->type != REDIS_REPLY_NIL)) {
        s_fail_later (call, 503, "sessions_unavailable", "The session store (Redis) did not answer.");
        return;
    }
    if (reply->type == REDIS_REPLY_NIL || reply->elements != 7) {
        s_fail_later (call, 404, "session_not_found", "No such session.");
        return;
    }
    json_t *view = s_session_view (call->owner, call->session, reply);
    if (!view)
        s_fail_later (call, 500, "session_unreadable", "The session's history cannot be read.");
    else
        s_finish (call, 200, view);
}

static void
s_on_watch_start (void *arg, redisReply *reply)
{
    call_t *call = arg;
    router_takeover_t *self = call->owner;
    watcher_t *watcher = call->watcher;
    size_t index = 0;
    while (index < self->watcher_count && self->watchers [index] != watcher)
        index++;
    if (index == self->watcher_count) {             //  gone meanwhile
        s_call_free (call);
        return;
    }
    json_t *event;
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 7) {
        event = s_session_view (self, call->session, reply);
        if (event) {
            json_object_set_new (event, "type", json_string ("history"));
            json_object_set_new (event, "session", json_string (call->session));
        }
    }
    else
        event = json_pack ("{s:s, s:s, s:b}", "type", "history", "session", call->session,
                           "exists", reply && reply->type == REDIS_REPLY_NIL ? 0 : 1);
    watcher->ready = true;
    s_watch_event (self, watcher, event ? event : json_object (), &index);
    json_decref (event);
    if (index < self->watcher_count && self->watchers [index] == watcher && mesh_buf_size (&watcher->queued)) {
        bool alive = s_watcher_write (self, watcher, mesh_buf_head (&watcher->queued),
                                      mesh_buf_size (&watcher->queued));
        mesh_buf_reset (&watcher->queued);
        if (!alive)
            s_watcher_end (self, index);
    }
    s_call_free (call);
}

static void
s_on_listed (void *arg, redisReply *reply)
{
    call_t *call = arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        s_fail_later (call, 503, "sessions_unavailable", "The session store (Redis) did not answer.");
        return;
    }
    json_t *data = json_array ();
    for (size_t i = 0; i + 4 < reply->elements; i += 5) {
        redisReply **f = reply->element + i;
        bool strings = true;
        for (int k = 0; k < 5; k++)
            strings = strings && f [k]->type == REDIS_REPLY_STRING;
        if (!strings)
            continue;
        json_array_append_new (data, json_pack ("{s:s, s:s, s:I, s:I, s:o}", "id", f [0]->str,
            "tenant", f [2]->str, "updated", (json_int_t) (strtoll (f [1]->str, NULL, 10) / 1000),
            "turns", (json_int_t) strtoll (f [3]->str, NULL, 10),
            "taken_over_by", *f [4]->str ? json_string (f [4]->str) : json_null ()));
    }
    s_finish (call, 200, json_pack ("{s:s, s:o}", "object", "list", "data", data));
}

//  The record of an operator's action, through an ingress
static void
s_record (router_takeover_t *self, const char *ingress, const char *outcome, const char *session,
          const char *tenant, const char *key_id, const char *operator_name, const char *text)
{
    char id [MESH_ID_LEN + 1];
    mesh_id_new (id);
    json_t *params = json_pack ("{s:s, s:s}", "session", session, "operator", operator_name);
    char *params_text = json_dumps (params, JSON_COMPACT);
    json_decref (params);
    uint64_t now = (uint64_t) mesh_wall_ms ();
    mesh_audit_record_t record = {
        .id = { id, MESH_ID_LEN }, .start_ms = now, .end_ms = now,
        .tenant = { tenant, strlen (tenant) }, .key_id = { key_id, strlen (key_id) },
        .model_requested = { "", 0 }, .model = { ROUTER_HUMAN_MODEL, strlen (ROUTER_HUMAN_MODEL) },
        .endpoint = { "", 0 }, .region = { "", 0 },
        .params = { params_text, strlen (params_text) },
        .outcome = { outcome, strlen (outcome) }, .error_code = { "", 0 },
        .prompt = { text ? text : "", text ? strlen (text) : 0 }, .response = { "", 0 }
    };
    mesh_buf_t encoded;
    mesh_buf_init (&encoded);
    if (mesh_audit_encode (&record, &encoded) == 0) {
        mesh_msg_t msg;
        mesh_msg_init (&msg, MESH_MSG_RECORD, NULL);
        snprintf (msg.sender, sizeof msg.sender, "router");
        msg.data = (mesh_bytes_t) { mesh_buf_head (&encoded), mesh_buf_size (&encoded) };
        if (mesh_outbox_send (self->outbox, ingress, &msg) < 0)
            mesh_error ("the audit record of %s on session %s could not be sent to %s", outcome, session, ingress);
    }
    else
        mesh_error ("the audit record of %s on session %s could not be encoded", outcome, session);
    mesh_buf_free (&encoded);
    free (params_text);
}

static void
s_on_acted (void *arg, redisReply *reply)
{
    call_t *call = arg;
    router_takeover_t *self = call->owner;
    if (!reply || (reply->type != REDIS_REPLY_ARRAY && reply->type != REDIS_REPLY_NIL)) {
        s_fail_later (call, 503, "sessions_unavailable", "The session store (Redis) did not answer.");
        return;
    }
    if (reply->type == REDIS_REPLY_NIL || reply->elements != 3) {
        s_fail_later (call, 404, "session_not_found", "No such session.");
        return;
    }
    const char *tenant = reply->element [0]->str, *key_id = reply->element [1]->str;
    const char *holder = reply->element [2]->str;
    bool say = mesh_streq (call->action, "say");
    if (say && !*holder) {
        s_fail_later (call, 409, "not_taken_over",
                      "Take the session over first: an operator speaks only in a session taken over.");
        return;
    }
    //  The record goes to an ingress heard from now; one was there when the
    //  call began (or the action would not have been done)
    const char *ingress = router_filters_ingress (self->filters);
    const char *outcome = say ? MESH_AUDIT_OPERATOR_SAY : mesh_streq (call->action, "takeover")
                        ? MESH_AUDIT_TAKEOVER : MESH_AUDIT_RELEASE;
    if (ingress)
        s_record (self, ingress, outcome, call->session, tenant, key_id, call->operator_name, call->text);
    else
        mesh_error ("no ingress to record %s on session %s by %s", outcome, call->session, call->operator_name);
    json_t *event = json_pack ("{s:s, s:I}", "operator", call->operator_name,
                               "time_ms", (json_int_t) mesh_wall_ms ());
    if (say)
        json_object_set_new (event, "content", json_string (call->text));
    router_store_publish (self->store, say ? "operator" : call->action, call->session, event);
    json_decref (event);
    mesh_metric_inc (self->actions);
    mesh_info ("admin: %s on session %s by operator %s", call->action, call->session, call->operator_name);
    json_t *answer = json_pack ("{s:s, s:s, s:s}", "session", call->session, "action", call->action,
                                "operator", call->operator_name);
    if (!say)
        json_object_set_new (answer, "was_taken_over_by", *holder ? json_string (holder) : json_null ());
    s_finish (call, say ? 202 : 200, answer);
}

static bool
s_operator_valid (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > MAX_OPERATOR)
        return false;
    for (const char *p = name; *p; p++)
        if (!isalnum ((unsigned char) *p) && !strchr ("._@-", *p))
            return false;
    return true;
}

static int
s_act (router_takeover_t *self, const mesh_admin_request_t *request, mesh_admin_response_t *response,
       const char *session, const char *action)
{
    json_t *body = request->body_len ? json_loadb (request->body, request->body_len, 0, NULL) : json_object ();
    if (!json_is_object (body)) {
        json_decref (body);
        return router_registry_fail (response, 400, "invalid_json", "The body must be a JSON object.");
    }
    json_t *given = json_object_get (body, "operator");
    const char *operator_name = given ? json_string_value (given) : "operator";
    const char *text = json_string_value (json_object_get (body, "text"));
    bool say = mesh_streq (action, "say");
    int rc = 0;
    if (!operator_name || !s_operator_valid (operator_name))
        rc = router_registry_fail (response, 400, "invalid_operator",
                                   "\"operator\" is a name: 1-64 letters, digits and . _ @ -");
    else
    if (say && (!text || !*text || strlen (text) > MAX_SAY_BYTES))
        rc = router_registry_fail (response, 400, "invalid_text", "Give the \"text\" to say (at most %d bytes).",
                                   MAX_SAY_BYTES);
    else
    if (!router_filters_ingress (self->filters))
        //  The action would go unrecorded: not done
        rc = router_registry_fail (response, 503, "audit_unavailable",
                                   "No ingress has been heard from lately to record the action in the audit "
                                   "trail; nothing was done.");
    else
    if (!router_store_ready (self->store))
        rc = router_registry_fail (response, 503, "sessions_unavailable",
                                   "The session store (Redis) is unavailable; nothing was done.");
    (void) rc;
    if (response->status >= 400) {
        json_decref (body);
        return 0;
    }
    mesh_admin_pending_t *pending = mesh_admin_defer (request);
    if (!pending) {
        json_decref (body);
        return router_registry_fail (response, 500, "cannot_wait", "This transport cannot wait.");
    }
    call_t *call = calloc (1, sizeof *call);
    assert (call);
    call->owner = self;
    call->pending = pending;
    snprintf (call->session, sizeof call->session, "%s", session);
    snprintf (call->operator_name, sizeof call->operator_name, "%s", operator_name);
    snprintf (call->action, sizeof call->action, "%s", action);
    if (say)
        call->text = strdup (text);
    json_decref (body);
    int sent;
    if (say) {
        mesh_buf_t sealed;
        mesh_buf_init (&sealed);
        sent = router_store_seal (self->store, session, "say", call->text, strlen (call->text), &sealed) == 0
             ? router_store_say (self->store, session, &sealed, self->ttl_s, s_on_acted, call) : -1;
        mesh_buf_free (&sealed);
    }
    else
    if (mesh_streq (action, "takeover"))
        sent = router_store_takeover (self->store, session, call->operator_name, s_on_acted, call);
    else
        sent = router_store_release (self->store, session, s_on_acted, call);
    if (sent < 0)
        s_on_acted (call, NULL);
    return 0;
}

static int
s_watch (router_takeover_t *self, const mesh_admin_request_t *request, mesh_admin_response_t *response,
         const char *session)
{
    if (self->watcher_count == MAX_WATCHERS)
        return router_registry_fail (response, 503, "too_many_watchers", "At most %d watchers per router.",
                                     MAX_WATCHERS);
    if (!router_store_ready (self->store))
        return router_registry_fail (response, 503, "sessions_unavailable", "The session store (Redis) is unavailable.");
    mesh_admin_pending_t *pending = mesh_admin_defer (request);
    if (!pending)
        return router_registry_fail (response, 500, "cannot_wait", "This transport cannot stream.");
    mesh_admin_stream_begin (pending, 200, "text/event-stream");
    watcher_t *watcher = calloc (1, sizeof *watcher);
    call_t *call = calloc (1, sizeof *call);
    assert (watcher && call);
    watcher->pending = pending;
    snprintf (watcher->session, sizeof watcher->session, "%s", session);
    mesh_buf_init (&watcher->queued);
    self->watchers [self->watcher_count++] = watcher;
    call->owner = self;
    call->watcher = watcher;
    snprintf (call->session, sizeof call->session, "%s", session);
    if (router_store_get (self->store, session, s_on_watch_start, call) < 0)
        s_on_watch_start (call, NULL);
    return 0;
}

static int
s_on_admin (void *arg, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    router_takeover_t *self = arg;
    if (!router_registry_authorized (self->registry, request, response))
        return 0;
    char method [16], path [256];
    snprintf (method, sizeof method, "%.*s", (int) request->method_len, request->method);
    snprintf (path, sizeof path, "%.*s", (int) MESH_MIN (request->path_len, sizeof path - 1), request->path);
    if (mesh_streq (path, "/admin/sessions")) {
        if (!mesh_streq (method, "GET"))
            return router_registry_fail (response, 405, "method_not_allowed", "Use GET on /admin/sessions.");
        mesh_admin_pending_t *pending = mesh_admin_defer (request);
        if (!pending)
            return router_registry_fail (response, 500, "cannot_wait", "This transport cannot wait.");
        call_t *call = calloc (1, sizeof *call);
        assert (call);
        call->owner = self;
        call->pending = pending;
        if (router_store_list (self->store, self->ttl_s, LIST_LIMIT, s_on_listed, call) < 0)
            s_on_listed (call, NULL);
        return 0;
    }
    if (strncmp (path, "/admin/sessions/", 16) != 0)
        return router_registry_fail (response, 404, "not_found", "No such admin route: %s", path);
    char session [ROUTER_SESSION_ID_MAX + 1] = "", action [32] = "";
    const char *id = path + 16, *slash = strchr (id, '/');
    size_t id_len = slash ? (size_t) (slash - id) : strlen (id);
    if (id_len <= ROUTER_SESSION_ID_MAX)
        snprintf (session, sizeof session, "%.*s", (int) id_len, id);
    if (slash)
        snprintf (action, sizeof action, "%s", slash + 1);
    if (!router_store_valid_id (session))
        return router_registry_fail (response, 404, "session_not_found", "No such session.");
    if (!*action) {
        if (!mesh_streq (method, "GET"))
            return router_registry_fail (response, 405, "method_not_allowed", "Use GET on a session.");
        mesh_admin_pending_t *pending = mesh_admin_defer (request);
        if (!pending)
            return router_registry_fail (response, 500, "cannot_wait", "This transport cannot wait.");
        call_t *call = calloc (1, sizeof *call);
        assert (call);
        call->owner = self;
        call->pending = pending;
        snprintf (call->session, sizeof call->session, "%s", session);
        if (router_store_get (self->store, session, s_on_got, call) < 0)
            s_on_got (call, NULL);
        return 0;
    }
    if (mesh_streq (action, "watch")) {
        if (!mesh_streq (method, "GET"))
            return router_registry_fail (response, 405, "method_not_allowed", "Use GET on .../watch.");
        return s_watch (self, request, response, session);
    }
    if (mesh_streq (action, "takeover") || mesh_streq (action, "say") || mesh_streq (action, "release")) {
        if (!mesh_streq (method, "POST"))
            return router_registry_fail (response, 405, "method_not_allowed", "Use POST on .../%s.", action);
        return s_act (self, request, response, session, action);
    }
    return router_registry_fail (response, 404, "not_found", "No such admin route: %s", path);
}

void
router_takeover_routes (router_takeover_t *self, mesh_admin_t *admin, router_registry_t *registry)
{
    self->registry = registry;
    mesh_admin_route (admin, "/admin/sessions", s_on_admin, self);
}

//  Lifecycle ------------------------------------------------------------------------

router_takeover_t *
router_takeover_new (router_store_t *store, mesh_loop_t *loop, mesh_outbox_t *outbox,
                     router_filters_t *filters, mesh_metrics_t *metrics, int64_t ttl_s)
{
    router_takeover_t *self = calloc (1, sizeof *self);
    assert (self);
    self->store = store;
    self->loop = loop;
    self->outbox = outbox;
    self->filters = filters;
    self->ttl_s = ttl_s;
    self->actions = mesh_metrics_counter (metrics, "seekmesh_router_operator_actions_total",
        "Takeovers, operator messages and releases done through this router.", NULL);
    router_store_listen (store, s_on_event, self);
    return self;
}

void
router_takeover_destroy (router_takeover_t **self_p)
{
    assert (self_p);
    router_takeover_t *self = *self_p;
    if (!self)
        return;
    while (self->watcher_count)
        s_watcher_end (self, 0);
    free (self);
    *self_p = NULL;
}

//  Selftest -------------------------------------------------------------------------

void
router_takeover_test (bool verbose)
{
    (void) verbose;
    //  A human answer's chunk has the shape of a model's; the rest runs
    //  against real processes (tests/integration/test_takeover.py)
    router_target_t target = { .id = "01JD0000000000000000000001", .stream = true };
    char *text = s_chunk (&target, json_pack ("{s:s}", "content", "Hello, I am Ann."), NULL, false);
    json_t *chunk = json_loads (text, 0, NULL);
    assert (mesh_streq (json_string_value (json_object_get (chunk, "object")), "chat.completion.chunk"));
    assert (mesh_streq (json_string_value (json_object_get (chunk, "model")), "human"));
    json_t *choice = json_array_get (json_object_get (chunk, "choices"), 0);
    assert (mesh_streq (json_string_value (json_object_get (json_object_get (choice, "delta"), "content")),
                        "Hello, I am Ann."));
    assert (json_is_null (json_object_get (choice, "finish_reason")));
    json_decref (chunk);
    free (text);
    assert (s_operator_valid ("ann.lee@desk-2") && !s_operator_valid ("") && !s_operator_valid ("a b"));
}
