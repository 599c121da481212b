/*  ingress_audit: the audit record of every request.

    A request owes a record from the moment it has an id (s_begin of
    ingress_http.c) unless it is refused for a full spool.  The HTTP and
    mesh modules note what the record says as the request goes; the record
    is made once, when the last byte of the response is written or when the
    connection closes first, and handed to ingress_audit_link.c.

    outcome         set by                      when
    --------------  --------------------------  ---------------------------
    ok              (derived)                   a 2xx response, all written
    client_gone     ingress_audit_end (closed)  the connection closed before
                                                the response was complete,
                                                nothing else having failed
    connector_lost  s_on_lost                   lost mid-stream, or attempts
                                                used up
    upstream_error  s_on_error                  an ERROR whose code is not a
                                                router refusal, before or
                                                after the response began
    refused         s_on_error                  the router's own refusals
                                                (ingress_audit_error_outcome)
    filtered        s_on_error, ingress_filter  the word filter refused the
                                                input, or masked or blocked
                                                the output
    timeout         s_on_timeout                ingress.request_timeout_ms
    invalid         (derived)                   the ingress's own 4xx
    error           (derived), s_sse_append     the ingress's own 5xx (no
                                                router, draining), a client
                                                too slow, the ingress
                                                stopping with it open

    The response: a whole body is kept as it was sent.  A stream is kept
    as the answer it amounts to, the way the SDKs assemble it: each SSE
    payload is parsed and its deltas appended (content, reasoning_content,
    tool calls by index, per choice), so the record holds the text, not
    every chunk's envelope (a 1,000-token answer is ~4 KB instead of
    ~200 KB of chunks, in the ingress's memory while it streams and in the
    store); the record's response is then a chat.completion object with
    the same fields as a non-stream answer, plus "errors" for payloads that
    were not chunks.  Both are bounded by ingress.audit_max_response_bytes
    (the record says truncated).  lws service thread only.                 */
#include "ingress_audit.h"
#include "ingress_audit_link.h"
#include "mesh_completion.h"
#include "ingress_validate.h"

#include "mesh_audit.h"
#include "mesh_log.h"
#include "mesh_metrics.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECORD_SLACK_BYTES  (64 * 1024)     //  a record's fields beside prompt and response

struct ingress_audit_t {
    ingress_t *ingress;
    bool on;                    //  ingress.audit_endpoint is set
    size_t max_response_bytes;
    ingress_audit_link_t *link;
    mesh_buf_t scratch;         //  one record's encoding
    int64_t full_logged_ms;
    mesh_metric_t *refused;
};

//  Records ----------------------------------------------------------------------

static mesh_bytes_t
s_text (const char *text)
{
    return (mesh_bytes_t) { text, strlen (text) };
}

//  Fills record from what the request noted; its texts point into pss
static void
s_fill (pss_t *pss, bool closed, int64_t now_us, mesh_audit_record_t *record)
{
    memset (record, 0, sizeof *record);
    const char *outcome = pss->outcome;
    if (closed && (!outcome || mesh_streq (outcome, MESH_AUDIT_OK))) {
        //  The connection went before the response was complete
        if (pss->ingress->stopping) {
            outcome = MESH_AUDIT_ERROR;
            if (!*pss->error_code)
                snprintf (pss->error_code, sizeof pss->error_code, "ingress_stopped");
        }
        else
            outcome = MESH_AUDIT_CLIENT_GONE;
    }
    if (!outcome)
        outcome = pss->status >= 200 && pss->status < 300 ? MESH_AUDIT_OK
                : pss->status >= 400 && pss->status < 500 ? MESH_AUDIT_INVALID : MESH_AUDIT_ERROR;
    //  Answered by the cache stage: a kept answer, a FAQ entry, or another
    //  request's call; the endpoint names which (cache:faq/<entry>,
    //  cache:coalesced/<leader's request id>)
    bool from_cache = mesh_streq (pss->cache, "hit") || mesh_streq (pss->cache, "faq")
                   || mesh_streq (pss->cache, "coalesced");
    if (mesh_streq (pss->cache, "faq") && mesh_streq (outcome, MESH_AUDIT_OK))
        outcome = MESH_AUDIT_FAQ;
    if (from_cache) {
        char cache_endpoint [96];
        snprintf (cache_endpoint, sizeof cache_endpoint, "cache:%s%s%s", pss->cache,
                  *pss->cache_ref ? "/" : "", pss->cache_ref);
        free (pss->endpoint_url);
        pss->endpoint_url = strdup (cache_endpoint);
    }
    record->id = (mesh_bytes_t) { pss->id, strlen (pss->id) };
    record->start_ms = (uint64_t) pss->start_wall_ms;
    record->end_ms = (uint64_t) mesh_wall_ms ();
    record->tenant = s_text (pss->tenant);
    record->key_id = s_text (pss->key_id);
    //  A model id from a URL (GET /v1/models/{id}) may be any bytes
    record->model_requested = mesh_utf8_valid (pss->model, strlen (pss->model)) ? s_text (pss->model)
                            : s_text ("");
    record->model = s_text (pss->answered_model);
    record->endpoint = s_text (pss->endpoint_url ? pss->endpoint_url : "");
    record->region = s_text (pss->region);
    record->params = s_text (pss->params ? pss->params : "{}");
    record->stream = pss->stream;
    record->status = pss->headers_written ? (uint32_t) pss->status : 0;
    record->outcome = s_text (outcome);
    record->error_code = s_text (pss->error_code);
    record->attempts = pss->attempt;
    record->cache_hit = from_cache;
    record->ttft_us = pss->first_write_us ? (uint64_t) (pss->first_write_us - pss->received_us) : 0;
    record->total_us = (uint64_t) (now_us - pss->received_us);
    record->upstream_ttfb_us = pss->upstream_ttfb_us;
    if (record->ttft_us && record->upstream_ttfb_us && record->ttft_us > record->upstream_ttfb_us)
        record->queue_us = record->ttft_us - record->upstream_ttfb_us;
    record->prompt_tokens = pss->prompt_tokens;
    //  A stream cut before its usage: the pieces it delivered
    record->completion_tokens = pss->completion_tokens ? pss->completion_tokens
                              : pss->reply ? mesh_completion_pieces (pss->reply) : 0;
    record->cached_tokens = pss->cached_tokens;
    record->reasoning_tokens = pss->reasoning_tokens;
    record->bytes_out = pss->bytes_out;
    //  A request refused before its key was authenticated is recorded
    //  without its body: clients without a key cannot fill the spool
    if (pss->body_complete && !ingress_unauthenticated (pss))
        record->prompt = (mesh_bytes_t) { mesh_buf_head (&pss->body), mesh_buf_size (&pss->body) };
    if (pss->reply) {
        mesh_completion_render (pss->reply, &pss->response);
        pss->truncated = pss->truncated || mesh_completion_truncated (pss->reply);
    }
    record->response = (mesh_bytes_t) { mesh_buf_head (&pss->response), mesh_buf_size (&pss->response) };
    record->truncated = pss->truncated;
    //  The whole record must fit in one AUDIT message
    size_t room = MESH_MAX_BODY_BYTES - RECORD_SLACK_BYTES;
    if (record->prompt.size + record->response.size > room) {
        record->response.size = record->prompt.size < room ? room - record->prompt.size : 0;
        record->truncated = true;
    }
}

//  Encodes the record of pss into self->scratch
static void
s_encode (ingress_audit_t *self, pss_t *pss, bool closed, int64_t now_us)
{
    mesh_audit_record_t record;
    s_fill (pss, closed, now_us, &record);
    mesh_buf_reset (&self->scratch);
    if (mesh_audit_encode (&record, &self->scratch) < 0) {
        //  A field over its limit: a bug here.  Keep what surely fits.
        mesh_error ("cannot encode the audit record: keeping it without its texts req=%s", pss->id);
        record.model_requested = record.model = record.endpoint = record.region = s_text ("");
        record.params = s_text ("{}");
        record.prompt = record.response = (mesh_bytes_t) { "", 0 };
        record.truncated = true;
        mesh_buf_reset (&self->scratch);
        mesh_audit_encode (&record, &self->scratch);
    }
}

//  Makes the record and hands it to the link
static void
s_record (ingress_audit_t *self, pss_t *pss, bool closed)
{
    int64_t now_us = mesh_mono_us ();
    s_encode (self, pss, closed, now_us);
    if (ingress_audit_link_send (self->link, mesh_buf_head (&self->scratch),
                                 mesh_buf_size (&self->scratch), now_us) < 0)
        mesh_error ("audit record lost req=%s", pss->id);
    mesh_buf_reset (&self->scratch);
    mesh_buf_trim (&self->scratch, 4 << 20);
}

void
ingress_audit_begin (pss_t *pss)
{
    ingress_audit_t *self = pss->ingress->audit;
    pss->audit_pending = self && self->on;
    pss->start_wall_ms = mesh_wall_ms ();
}

bool
ingress_audit_refuse (pss_t *pss)
{
    ingress_audit_t *self = pss->ingress->audit;
    if (!pss->audit_pending || !ingress_audit_link_full (self->link))
        return false;
    pss->audit_pending = false;
    mesh_metric_inc (self->refused);
    int64_t now = mesh_mono_ms ();
    if (now - self->full_logged_ms >= 1000) {
        self->full_logged_ms = now;
        mesh_warn ("the audit spool is full (%zu records; %s): refusing requests req=%s",
                   ingress_audit_link_unacked (self->link), ingress_audit_link_state (self->link),
                   pss->id);
    }
    return true;
}

void
ingress_audit_capture (pss_t *pss, const char *data, size_t len, bool part)
{
    //  A session's answer goes to its history, audit or not
    if ((!pss->audit_pending && !*pss->session) || !pss->ingress->audit)
        return;
    if (part) {
        if (!pss->reply)
            pss->reply = mesh_completion_new (pss->ingress->audit->max_response_bytes);
        mesh_completion_add (pss->reply, data, len);
        return;
    }
    mesh_buf_t *response = &pss->response;
    mesh_buf_reset (response);
    size_t max = pss->ingress->audit->max_response_bytes;
    size_t take = len;
    if (take > max) {
        take = max;
        pss->truncated = true;
    }
    mesh_buf_append (response, data, take);
}

void
ingress_audit_note (pss_t *pss, const mesh_msg_t *msg)
{
    if (!pss->audit_pending)
        return;
    if (*msg->tenant)
        memcpy (pss->tenant, msg->tenant, sizeof pss->tenant);
    if (*msg->key_id)
        memcpy (pss->key_id, msg->key_id, sizeof pss->key_id);
    if (msg->type != MESH_MSG_HEAD && msg->type != MESH_MSG_END)
        return;
    if (*msg->url && !mesh_streq (pss->endpoint_url, msg->url)) {
        free (pss->endpoint_url);
        pss->endpoint_url = strdup (msg->url);
    }
    if (*msg->region)
        memcpy (pss->region, msg->region, sizeof pss->region);
    if (msg->ttfb_us)
        pss->upstream_ttfb_us = msg->ttfb_us;
    if (msg->type == MESH_MSG_END) {
        pss->prompt_tokens = msg->prompt_tokens;
        pss->completion_tokens = msg->output_tokens;
        pss->cached_tokens = msg->cached_tokens;
        pss->reasoning_tokens = msg->reason_tokens;
    }
}

void
ingress_audit_outcome (pss_t *pss, const char *outcome)
{
    if (!pss->finished)
        pss->outcome = outcome;
}

const char *
ingress_audit_error_outcome (const char *code)
{
    //  What the router answers itself, before a connector has the request
    //  (router.c, router_quota.c).  Everything else comes from a connector
    //  or an upstream, through the router's retries or straight.
    static const char *refusals [] = {
        "invalid_api_key", "model_not_found", "model_not_allowed", "rate_limit_exceeded",
        "concurrency_limit_exceeded", "budget_exhausted", "budget_unverifiable",
        "model_unavailable", "no_healthy_upstream", "no_capacity", "draining"
    };
    //  The connector's timeouts: no connection, no first byte, a stall
    static const char *timeouts [] = {
        "upstream_timeout", "upstream_connect_timeout", "upstream_stalled"
    };
    if (mesh_streq (code, "content_filter"))
        return MESH_AUDIT_FILTERED;     //  the router's input check
    for (size_t i = 0; i < MESH_ARRAY_SIZE (refusals); i++)
        if (mesh_streq (code, refusals [i]))
            return MESH_AUDIT_REFUSED;
    for (size_t i = 0; i < MESH_ARRAY_SIZE (timeouts); i++)
        if (mesh_streq (code, timeouts [i]))
            return MESH_AUDIT_TIMEOUT;
    return MESH_AUDIT_UPSTREAM_ERROR;
}

void
ingress_audit_end (pss_t *pss, bool closed)
{
    if (pss->audit_pending) {
        pss->audit_pending = false;
        if (pss->ingress->audit)
            s_record (pss->ingress->audit, pss, closed);
    }
    free (pss->endpoint_url);
    pss->endpoint_url = NULL;
    free (pss->params);
    pss->params = NULL;
    mesh_completion_destroy (&pss->reply);
    mesh_buf_reset (&pss->response);
    mesh_buf_trim (&pss->response, 64 * 1024);
}

void
ingress_audit_forward (ingress_t *ingress, const mesh_msg_t *msg)
{
    ingress_audit_t *self = ingress->audit;
    mesh_audit_record_t record;
    char why [256];
    if (mesh_audit_decode (&record, msg->data.data, msg->data.size, why, sizeof why) < 0) {
        mesh_warn ("a record from %s is not an audit record (%s): dropped", msg->sender, why);
        mesh_metric_inc (ingress->bad_messages.malformed);
        return;
    }
    bool operators = mesh_memeq (record.outcome.data, record.outcome.size, MESH_AUDIT_TAKEOVER)
                  || mesh_memeq (record.outcome.data, record.outcome.size, MESH_AUDIT_OPERATOR_SAY)
                  || mesh_memeq (record.outcome.data, record.outcome.size, MESH_AUDIT_RELEASE);
    if (!operators) {
        mesh_warn ("a record from %s with outcome %.*s: a router records operators' actions only; "
                   "dropped", msg->sender, (int) record.outcome.size, record.outcome.data);
        mesh_metric_inc (ingress->bad_messages.unexpected);
        return;
    }
    if (!self || !self->on) {
        mesh_warn ("audit off: an operator's %.*s is not recorded", (int) record.outcome.size,
                   record.outcome.data);
        return;
    }
    if (ingress_audit_link_send (self->link, msg->data.data, msg->data.size, mesh_mono_us ()) < 0)
        mesh_error ("audit record of an operator's %.*s lost", (int) record.outcome.size, record.outcome.data);
}

size_t
ingress_audit_unacked (ingress_t *ingress)
{
    return ingress->audit ? ingress_audit_link_unacked (ingress->audit->link) : 0;
}

//  Setup --------------------------------------------------------------------------

void
ingress_audit_configure (ingress_t *ingress)
{
    mesh_config_t *config = ingress->config;
    const char *endpoint = mesh_setting_str (config, "ingress.audit_endpoint");
    int64_t max_records = mesh_setting_int (config, "ingress.audit_spool_records");
    int64_t max_bytes = mesh_setting_int (config, "ingress.audit_spool_bytes");
    const char *when_full = mesh_setting_str (config, "ingress.audit_when_full");
    int64_t max_response = mesh_setting_int (config, "ingress.audit_max_response_bytes");
    int64_t resend_ms = mesh_setting_int (config, "ingress.audit_resend_ms");
    //  The largest record must fit, or the bound would refuse it forever
    int64_t largest = ingress->max_body_bytes + max_response + RECORD_SLACK_BYTES;
    if (max_bytes < largest)
        mesh_config_invalid (config, "ingress.audit_spool_bytes",
                             "must be at least ingress.max_body_bytes + ingress.audit_max_response_bytes "
                             "+ 64 KiB (%lld, the largest record)", (long long) largest);
    ingress_audit_t *self = calloc (1, sizeof *self);
    assert (self);
    self->ingress = ingress;
    self->on = *endpoint != 0;
    self->max_response_bytes = (size_t) MESH_MAX (max_response, 0);
    self->link = ingress_audit_link_new (ingress, endpoint, (uint64_t) MESH_MAX (max_records, 1),
                                         (uint64_t) MESH_MAX (max_bytes, 1),
                                         mesh_streq (when_full, "drop"), MESH_MAX (resend_ms, 100));
    self->refused = mesh_metrics_counter (ingress->metrics, "seekmesh_ingress_audit_refused_total",
        "Requests refused with 503 because the audit spool was full.", NULL);
    ingress->audit = self;
}

int
ingress_audit_start (ingress_t *ingress, char *why, size_t why_size)
{
    ingress_audit_t *self = ingress->audit;
    assert (self);
    if (!self->on) {
        mesh_warn ("audit off (ingress.audit_endpoint is \"\"): requests are not recorded");
        return 0;
    }
    return ingress_audit_link_start (self->link, why, why_size);
}

void
ingress_audit_stop (ingress_t *ingress)
{
    ingress_audit_t *self = ingress->audit;
    if (!self)
        return;
    ingress_audit_link_destroy (&self->link);
    mesh_buf_free (&self->scratch);
    free (self);
    ingress->audit = NULL;
}

//  Selftest -----------------------------------------------------------------------

static void
s_test_params (void)
{
    ingress_check_t check;
    const char *all = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
        "\"temperature\":0.3,\"top_p\":1,\"max_tokens\":10,\"max_completion_tokens\":20,\"stream\":true,"
        "\"n\":1,\"stop\":[\"a\"],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"g\"}}],"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
        "\"response_format\":{\"type\":\"json_object\"},\"seed\":7,\"user\":\"u-1\","
        "\"presence_penalty\":0.1,\"metadata\":{\"x\":1}}";
    assert (ingress_validate (all, strlen (all), 100, &check) == 0);
    assert (mesh_streq (check.params, "{\"temperature\":0.3,\"top_p\":1,\"max_tokens\":10,"
        "\"max_completion_tokens\":20,\"stream\":true,\"n\":1,\"stop\":true,\"tools\":2,"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
        "\"response_format\":\"json_object\",\"seed\":7,\"user\":\"u-1\"}"));
    const char *none = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"stream\":null,\"stop\":null,\"tool_choice\":\"auto\"}";
    assert (ingress_validate (none, strlen (none), 100, &check) == 0);
    assert (mesh_streq (check.params, "{\"tool_choice\":\"auto\"}"));
    const char *bare = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    assert (ingress_validate (bare, strlen (bare), 100, &check) == 0);
    assert (mesh_streq (check.params, "{}"));
    //  Strings are cut on a character, and the worst case still fits
    mesh_buf_t body;
    mesh_buf_init (&body);
    mesh_buf_append_str (&body, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"user\":\"");
    for (int i = 0; i < 200; i++)
        mesh_buf_append_str (&body, "\\u00e9");             //  é: two bytes each
    mesh_buf_append_str (&body, "\",\"tool_choice\":{\"type\":\"");
    for (int i = 0; i < 300; i++)
        mesh_buf_append_str (&body, "\\u0001");
    mesh_buf_append_str (&body, "\",\"function\":{\"name\":\"");
    for (int i = 0; i < 300; i++)
        mesh_buf_append_str (&body, "\\u001f");
    mesh_buf_append_str (&body, "\"}},\"seed\":1.5e300,\"temperature\":1.2345678901234567}");
    assert (ingress_validate (mesh_buf_head (&body), mesh_buf_size (&body), 100, &check) == 0);
    assert (strlen (check.user) == 126 && mesh_utf8_valid (check.user, strlen (check.user)));
    assert (check.params [0] == '{' && strstr (check.params, "\"seed\":"));
    assert (strlen (check.params) < INGRESS_PARAMS_MAX && mesh_utf8_valid (check.params, strlen (check.params)));
    json_t *parsed = json_loads (check.params, 0, NULL);
    assert (parsed && json_string_length (json_object_get (json_object_get (parsed, "tool_choice"), "type")) == 48);
    json_decref (parsed);
    mesh_buf_free (&body);
    //  A refused body has no parameters
    assert (ingress_validate ("{", 1, 100, &check) == -1 && check.params [0] == 0);
}

//  A request as the HTTP module leaves it, for the record tests
static void
s_test_request (ingress_t *ingress, pss_t *pss, const char *id)
{
    mesh_buf_free (&pss->body);
    mesh_buf_free (&pss->response);
    memset (pss, 0, sizeof *pss);
    pss->ingress = ingress;
    snprintf (pss->id, sizeof pss->id, "%s", id);
    pss->received_us = mesh_mono_us () - 5000;
    ingress_audit_begin (pss);
}

//  The record the request would get now, decoded (valid until the next)
static void
s_test_decode (ingress_audit_t *self, pss_t *pss, bool closed, mesh_audit_record_t *record)
{
    s_encode (self, pss, closed, mesh_mono_us ());
    char why [128];
    assert (mesh_audit_decode (record, mesh_buf_head (&self->scratch), mesh_buf_size (&self->scratch),
                               why, sizeof why) == 0);
}

static bool
s_bytes_eq (mesh_bytes_t bytes, const char *text)
{
    return bytes.size == strlen (text) && memcmp (bytes.data, text, bytes.size) == 0;
}

//  A stream of tool calls in pieces, reasoning, an error event and a
//  payload that is not JSON: assembled as the SDKs would (not recorded)
static void
s_test_tool_stream (ingress_audit_t *self, ingress_t *ingress, pss_t *pss)
{
    size_t max = self->max_response_bytes;
    self->max_response_bytes = 4096;
    s_test_request (ingress, pss, "01JD0000000000000000000009");
    const char *chunks [] = {
        "{\"id\":\"c2\",\"model\":\"deepseek-reasoner\",\"choices\":[{\"index\":0,\"delta\":"
        "{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"Think\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"ing.\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
        "{\"arguments\":\"{\\\"city\\\":\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_2\","
        "\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}},{\"index\":0,\"function\":"
        "{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}",
        "{\"error\":{\"type\":\"server_error\",\"code\":\"upstream_stalled\"}}",
        "not json"
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (chunks); i++)
        ingress_audit_capture (pss, chunks [i], strlen (chunks [i]), true);
    mesh_audit_record_t record;
    s_test_decode (self, pss, true, &record);
    json_t *answer = json_loadb (record.response.data, record.response.size, 0, NULL);
    assert (answer && !record.truncated);
    json_t *choice = json_array_get (json_object_get (answer, "choices"), 0);
    json_t *message = json_object_get (choice, "message");
    assert (json_is_null (json_object_get (message, "content")));
    assert (mesh_streq (json_string_value (json_object_get (message, "reasoning_content")),
                        "Thinking."));
    json_t *calls = json_object_get (message, "tool_calls");
    assert (json_array_size (calls) == 2);
    json_t *first = json_array_get (calls, 0), *second = json_array_get (calls, 1);
    assert (mesh_streq (json_string_value (json_object_get (first, "id")), "call_1"));
    json_t *function = json_object_get (first, "function");
    assert (mesh_streq (json_string_value (json_object_get (function, "name")), "get_weather"));
    assert (mesh_streq (json_string_value (json_object_get (function, "arguments")),
                        "{\"city\":\"Paris\"}"));
    //  As the SDK gives them: in the order of their index, without it
    assert (mesh_streq (json_string_value (json_object_get (second, "id")), "call_2"));
    assert (!json_object_get (first, "index") && !json_object_get (second, "index"));
    assert (mesh_streq (json_string_value (json_object_get (json_object_get (second, "function"),
                                                            "arguments")), "{}"));
    assert (mesh_streq (json_string_value (json_object_get (choice, "finish_reason")), "tool_calls"));
    json_t *errors = json_object_get (answer, "errors");
    assert (json_array_size (errors) == 2);
    assert (json_is_object (json_object_get (json_array_get (errors, 0), "error")));
    assert (mesh_streq (json_string_value (json_array_get (errors, 1)), "not json"));
    json_decref (answer);
    //  Not handed to the link: the spool's bound is tested above
    pss->audit_pending = false;
    ingress_audit_end (pss, false);
    assert (!pss->reply);
    self->max_response_bytes = max;
}

static void
s_test_records (void)
{
    ingress_t ingress;
    memset (&ingress, 0, sizeof ingress);
    const char *text = "{\"ingress\":{\"audit_max_response_bytes\":20,\"audit_spool_records\":3,"
                       "\"max_body_bytes\":1024,\"audit_spool_bytes\":70000}}";
    char error [256];
    ingress.config = mesh_config_parse (text, strlen (text), "test.json", error, sizeof error);
    assert (ingress.config);
    ingress.max_body_bytes = 1024;
    ingress.metrics = mesh_metrics_new ();
    ingress_audit_configure (&ingress);
    assert (!mesh_config_failed (ingress.config));
    ingress_audit_t *self = ingress.audit;
    assert (self->on && self->max_response_bytes == 20);

    //  A stream that ended well: payloads joined by \n, cut at the bound
    pss_t pss;
    memset (&pss, 0, sizeof pss);
    s_test_request (&ingress, &pss, "01JD0000000000000000000001");
    assert (pss.audit_pending);
    mesh_buf_append_str (&pss.body, "{\"model\":\"deepseek-chat\"}");
    pss.body_complete = true;
    pss.params = strdup ("{\"stream\":true}");
    snprintf (pss.model, sizeof pss.model, "deepseek-chat");
    pss.stream = true;
    pss.attempt = 1;
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_HEAD, pss.id);
    snprintf (msg.tenant, sizeof msg.tenant, "acme");
    snprintf (msg.key_id, sizeof msg.key_id, "k1");
    snprintf (msg.url, sizeof msg.url, "https://api.example/v1/chat/completions");
    snprintf (msg.region, sizeof msg.region, "eu");
    msg.ttfb_us = 1000;
    ingress_audit_note (&pss, &msg);
    snprintf (pss.answered_model, sizeof pss.answered_model, "deepseek-chat");
    pss.status = 200;
    pss.headers_written = true;
    pss.first_write_us = pss.received_us + 3000;
    //  The chunks of a stream: kept as the answer, its text cut at the
    //  20th byte, before the o-umlaut whose two bytes it would split
    //  (Parentheses: one chunk split over lines, not a missing comma)
    const char *chunks [] = {
        ("{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"deepseek-chat\","
         "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hello!\"},"
         "\"finish_reason\":null}]}"),
        "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" world, this \u00f6k\"}}]}",
        ("{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],"
         "\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":22}}")
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (chunks); i++)
        ingress_audit_capture (&pss, chunks [i], strlen (chunks [i]), true);
    mesh_msg_init (&msg, MESH_MSG_END, pss.id);
    snprintf (msg.url, sizeof msg.url, "https://api.example/v1/chat/completions");
    msg.prompt_tokens = 11;
    msg.output_tokens = 22;
    msg.cached_tokens = 3;
    msg.reason_tokens = 4;
    ingress_audit_note (&pss, &msg);
    pss.bytes_out = 123;
    mesh_audit_record_t record;
    s_test_decode (self, &pss, false, &record);
    assert (s_bytes_eq (record.id, "01JD0000000000000000000001"));
    assert (s_bytes_eq (record.outcome, MESH_AUDIT_OK) && record.status == 200);
    assert (s_bytes_eq (record.tenant, "acme") && s_bytes_eq (record.key_id, "k1"));
    assert (s_bytes_eq (record.model_requested, "deepseek-chat") && s_bytes_eq (record.model, "deepseek-chat"));
    assert (s_bytes_eq (record.endpoint, "https://api.example/v1/chat/completions"));
    assert (s_bytes_eq (record.region, "eu") && s_bytes_eq (record.params, "{\"stream\":true}"));
    assert (record.stream && record.attempts == 1 && !record.cache_hit);
    assert (record.ttft_us == 3000 && record.upstream_ttfb_us == 1000 && record.queue_us == 2000);
    assert (record.total_us >= 5000 && record.end_ms >= record.start_ms);
    assert (record.prompt_tokens == 11 && record.completion_tokens == 22);
    assert (record.cached_tokens == 3 && record.reasoning_tokens == 4 && record.bytes_out == 123);
    assert (s_bytes_eq (record.prompt, "{\"model\":\"deepseek-chat\"}"));
    json_t *answer = json_loadb (record.response.data, record.response.size, 0, NULL);
    assert (answer && record.truncated);
    assert (mesh_streq (json_string_value (json_object_get (answer, "id")), "c1"));
    assert (mesh_streq (json_string_value (json_object_get (answer, "object")), "chat.completion"));
    assert (json_integer_value (json_object_get (answer, "created")) == 7);
    json_t *choice = json_array_get (json_object_get (answer, "choices"), 0);
    json_t *message = json_object_get (choice, "message");
    assert (mesh_streq (json_string_value (json_object_get (message, "content")),
                        "Hello! world, this "));
    assert (mesh_streq (json_string_value (json_object_get (choice, "finish_reason")), "stop"));
    assert (json_integer_value (json_object_get (json_object_get (answer, "usage"),
                                                 "completion_tokens")) == 22);
    json_decref (answer);
    assert (s_bytes_eq (record.error_code, ""));
    ingress_audit_end (&pss, false);
    assert (!pss.audit_pending && !pss.params && !pss.endpoint_url && mesh_buf_size (&pss.response) == 0);
    assert (ingress_audit_unacked (&ingress) == 1);

    //  A request refused by the router, then the client went: refused stays
    s_test_request (&ingress, &pss, "01JD0000000000000000000002");
    pss.attempt = 1;
    ingress_audit_outcome (&pss, ingress_audit_error_outcome ("rate_limit_exceeded"));
    snprintf (pss.error_code, sizeof pss.error_code, "rate_limit_exceeded");
    pss.status = 429;
    ingress_audit_capture (&pss, "{\"error\":{}}", 12, false);
    pss.finished = true;
    ingress_audit_outcome (&pss, MESH_AUDIT_UPSTREAM_ERROR);          //  decided already
    s_test_decode (self, &pss, true, &record);
    assert (s_bytes_eq (record.outcome, MESH_AUDIT_REFUSED));
    assert (record.status == 0 && s_bytes_eq (record.error_code, "rate_limit_exceeded"));
    assert (s_bytes_eq (record.response, "{\"error\":{}}") && !record.truncated);
    assert (s_bytes_eq (record.prompt, "") && s_bytes_eq (record.params, "{}"));
    ingress_audit_end (&pss, true);

    //  A stream the client left: client_gone; a model id that is not UTF-8
    s_test_request (&ingress, &pss, "01JD0000000000000000000003");
    snprintf (pss.model, sizeof pss.model, "bad\xff");
    pss.status = 200;
    pss.headers_written = true;
    s_test_decode (self, &pss, true, &record);
    assert (s_bytes_eq (record.outcome, MESH_AUDIT_CLIENT_GONE) && s_bytes_eq (record.model_requested, ""));
    assert (record.status == 200);
    //  ... unless the ingress is stopping
    ingress.stopping = true;
    s_test_decode (self, &pss, true, &record);
    assert (s_bytes_eq (record.outcome, MESH_AUDIT_ERROR) && s_bytes_eq (record.error_code, "ingress_stopped"));
    ingress.stopping = false;
    ingress_audit_end (&pss, true);
    //  The ingress's own 4xx, its default outcome
    s_test_request (&ingress, &pss, "01JD0000000000000000000004");
    pss.status = 413;
    pss.headers_written = true;
    s_test_decode (self, &pss, false, &record);
    assert (s_bytes_eq (record.outcome, MESH_AUDIT_INVALID) && record.status == 413);
    assert (record.ttft_us == 0 && record.queue_us == 0 && !record.stream);
    ingress_audit_end (&pss, false);
    //  Four records, three allowed: new requests are refused, without a record
    assert (ingress_audit_unacked (&ingress) == 4);
    s_test_tool_stream (self, &ingress, &pss);
    s_test_request (&ingress, &pss, "01JD0000000000000000000005");
    assert (ingress_audit_refuse (&pss) && !pss.audit_pending);
    ingress_audit_end (&pss, false);
    assert (ingress_audit_unacked (&ingress) == 4 && mesh_metric_value (self->refused) == 1);
    //  Audit off: nothing owed, nothing made
    ingress_audit_stop (&ingress);
    assert (!ingress.audit);
    const char *off = "{\"ingress\":{\"audit_endpoint\":\"\"}}";
    mesh_config_destroy (&ingress.config);
    ingress.config = mesh_config_parse (off, strlen (off), "test.json", error, sizeof error);
    ingress_audit_configure (&ingress);
    assert (!mesh_config_failed (ingress.config) && !ingress.audit->on);
    s_test_request (&ingress, &pss, "01JD0000000000000000000007");
    assert (!pss.audit_pending && !ingress_audit_refuse (&pss));
    ingress_audit_capture (&pss, "x", 1, false);
    assert (mesh_buf_size (&pss.response) == 0);
    ingress_audit_end (&pss, false);
    assert (ingress_audit_unacked (&ingress) == 0);
    ingress_audit_stop (&ingress);
    mesh_buf_free (&pss.body);
    mesh_buf_free (&pss.response);
    mesh_metrics_destroy (&ingress.metrics);
    mesh_config_destroy (&ingress.config);
}

static void
s_test_config (void)
{
    struct { const char *text; const char *fragment; } bad [] = {
        { "{\"ingress\":{\"audit_endpoint\":\"127.0.0.1:5558\"}}", "ingress.audit_endpoint" },
        { "{\"ingress\":{\"audit_spool_records\":0}}", "ingress.audit_spool_records" },
        { "{\"ingress\":{\"audit_spool_bytes\":1000}}", "ingress.audit_spool_bytes" },
        { "{\"ingress\":{\"audit_when_full\":\"block\"}}", "ingress.audit_when_full" },
        { "{\"ingress\":{\"audit_max_response_bytes\":-1}}", "ingress.audit_max_response_bytes" },
        { "{\"ingress\":{\"audit_resend_ms\":0}}", "ingress.audit_resend_ms" },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++) {
        ingress_t ingress;
        memset (&ingress, 0, sizeof ingress);
        char error [256];
        ingress.config = mesh_config_parse (bad [i].text, strlen (bad [i].text), "test.json", error, sizeof error);
        assert (ingress.config);
        ingress.max_body_bytes = 1 << 20;
        ingress.metrics = mesh_metrics_new ();
        ingress_audit_configure (&ingress);
        assert (mesh_config_failed (ingress.config));
        assert (strstr (mesh_config_failed (ingress.config), bad [i].fragment));
        ingress_audit_stop (&ingress);
        mesh_metrics_destroy (&ingress.metrics);
        mesh_config_destroy (&ingress.config);
    }
}

void
ingress_audit_test (bool verbose)
{
    (void) verbose;
    s_test_params ();
    assert (mesh_streq (ingress_audit_error_outcome ("invalid_api_key"), MESH_AUDIT_REFUSED));
    assert (mesh_streq (ingress_audit_error_outcome ("no_capacity"), MESH_AUDIT_REFUSED));
    assert (mesh_streq (ingress_audit_error_outcome ("upstream_timeout"), MESH_AUDIT_TIMEOUT));
    assert (mesh_streq (ingress_audit_error_outcome ("upstream_stalled"), MESH_AUDIT_TIMEOUT));
    assert (mesh_streq (ingress_audit_error_outcome ("upstream_http_500"), MESH_AUDIT_UPSTREAM_ERROR));
    assert (mesh_streq (ingress_audit_error_outcome ("invalid_request"), MESH_AUDIT_UPSTREAM_ERROR));
    assert (mesh_utf8_valid ("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
    assert (!mesh_utf8_valid ("\xc3", 1) && !mesh_utf8_valid ("\xed\xa0\x80", 3) && !mesh_utf8_valid ("\xc0\x80", 2));
    s_test_records ();
    s_test_config ();
}
