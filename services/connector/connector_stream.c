/*  connector_stream: what the upstream's bytes mean.

    SSE events go to the ingress as CHUNK messages carrying the event's data
    unchanged (only line breaks inside a multi-line event become spaces, so
    each event stays one line for the client).  JSON is parsed only where
    it must be: the chunk that carries usage or a finish reason, an error
    event, or every chunk when a non-stream client is served from a
    stream-only upstream (then the chunks are assembled into one
    chat.completion).  Upstream error statuses are mapped to what a client
    of an OpenAI-style API expects.  Reactor thread only.                   */
#include "connector.h"
#include "mesh_completion.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EVENT_BYTES (4u * 1024 * 1024)
//  A non-stream answer assembled from a stream is bounded like a message
#define MAX_ASSEMBLED_BYTES (MESH_MAX_BODY_BYTES / 2)

//  Usage and finish reason ------------------------------------------------

static uint64_t
s_uint (json_t *object, const char *key)
{
    json_t *value = json_object_get (object, key);
    return json_is_integer (value) && json_integer_value (value) > 0
         ? (uint64_t) json_integer_value (value) : 0;
}

static void
s_take_usage (connector_req_t *req, json_t *usage)
{
    if (!json_is_object (usage))
        return;
    req->prompt_tokens = s_uint (usage, "prompt_tokens");
    req->output_tokens = s_uint (usage, "completion_tokens");
    req->cached_tokens = s_uint (usage, "prompt_cache_hit_tokens");
    if (!req->cached_tokens)
        req->cached_tokens = s_uint (json_object_get (usage, "prompt_tokens_details"), "cached_tokens");
    req->reason_tokens = s_uint (json_object_get (usage, "completion_tokens_details"),
                                 "reasoning_tokens");
}

static void
s_take_finish (connector_req_t *req, const char *finish)
{
    if (finish)
        snprintf (req->finish, sizeof req->finish, "%s", finish);
}

//  Usage and the first choice's finish reason of a parsed chunk
static void
s_take_chunk (connector_req_t *req, json_t *chunk)
{
    s_take_usage (req, json_object_get (chunk, "usage"));
    json_t *finish = json_object_get (json_array_get (json_object_get (chunk, "choices"), 0),
                                      "finish_reason");
    if (json_is_string (finish) && json_string_length (finish))
        s_take_finish (req, json_string_value (finish));
}

//  Whether an event has a usage object ("usage": null on every chunk, which
//  upstreams send once usage was asked for, does not count)
static bool
s_has_usage (const char *data, size_t len)
{
    const char *end = data + len;
    for (const char *at = data; (at = memmem (at, (size_t) (end - at), "\"usage\"", 7)); at += 7) {
        const char *p = at + 7;
        while (p < end && (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n' || *p == '\r'))
            p++;
        if (p < end && *p == '{')
            return true;
    }
    return false;
}

//  Assembly ---------------------------------------------------------------

char *
connector_stream_assembled (connector_req_t *req, size_t *len)
{
    mesh_completion_t *assembly = req->assembly;
    if (!assembly || !mesh_completion_started (assembly) || mesh_completion_truncated (assembly))
        return NULL;
    s_take_usage (req, mesh_completion_usage (assembly));
    s_take_finish (req, mesh_completion_finish (assembly, 0));
    mesh_buf_t out;
    mesh_buf_init (&out);
    mesh_completion_render (assembly, &out);
    *len = mesh_buf_size (&out);
    mesh_buf_append (&out, "", 1);
    char *text = strdup (mesh_buf_head (&out));
    mesh_buf_free (&out);
    return text;
}

//  Events -------------------------------------------------------------------

static bool
s_is_error_event (const char *data, size_t len)
{
    while (len && (*data == ' ' || *data == '\t' || *data == '\n')) {
        data++;
        len--;
    }
    return len >= 8 && memcmp (data, "{\"error\"", 8) == 0;
}

static int
s_on_event (void *arg, int kind, const char *data, size_t len)
{
    connector_req_t *req = arg;
    if (kind == MESH_SSE_COMMENT) {
        if (!req->client_stream)
            return 0;
        if (connector_send_chunk (req, data, len, MESH_CHUNK_COMMENT) < 0) {
            req->stream_state = STREAM_SEND_FAILED;
            return -1;
        }
        return 0;
    }
    if (mesh_memeq (data, len, "[DONE]")) {
        req->stream_state = STREAM_DONE;
        return -1;
    }
    if (s_is_error_event (data, len)) {
        mesh_buf_reset (&req->response);
        mesh_buf_append (&req->response, data, len);
        req->stream_state = STREAM_ERROR_EVENT;
        return -1;
    }
    if (!req->client_stream) {
        if (!req->assembly)
            req->assembly = mesh_completion_new (MAX_ASSEMBLED_BYTES);
        mesh_completion_add (req->assembly, data, len);
        req->pieces++;
        return 0;
    }
    //  Only the final chunk carries usage or a finish reason: parse just it
    if (s_has_usage (data, len) || memmem (data, len, "\"finish_reason\":\"", 17)) {
        json_t *chunk = json_loadb (data, len, 0, NULL);
        bool usage_only = false;
        if (json_is_object (chunk)) {
            s_take_chunk (req, chunk);
            json_t *choices = json_object_get (chunk, "choices");
            usage_only = json_is_array (choices) && json_array_size (choices) == 0;
        }
        json_decref (chunk);
        //  The usage chunk we asked for on the client's behalf: kept from it
        if (usage_only && !req->client_usage)
            return 0;
    }
    req->pieces++;
    //  One event, one line: JSON whitespace may be a line break, a string
    //  may not, so spaces change nothing the client parses
    char *copy = NULL;
    if (memchr (data, '\n', len) || memchr (data, '\r', len)) {
        copy = malloc (len);
        assert (copy);
        for (size_t i = 0; i < len; i++)
            copy [i] = data [i] == '\n' || data [i] == '\r' ? ' ' : data [i];
        data = copy;
    }
    int rc = connector_send_chunk (req, data, len, 0);
    free (copy);
    if (rc < 0) {
        req->stream_state = STREAM_SEND_FAILED;
        return -1;
    }
    return 0;
}

void
connector_stream_begin (connector_req_t *req)
{
    mesh_sse_free (&req->sse);
    mesh_sse_init (&req->sse, MAX_EVENT_BYTES);
    req->stream_state = STREAM_RUNNING;
}

int
connector_stream_feed (connector_req_t *req, const char *data, size_t len)
{
    if (req->stream_state == STREAM_DONE)
        return 1;               //  bytes after [DONE]: ignored
    int rc = mesh_sse_feed (&req->sse, data, len, s_on_event, req);
    switch (req->stream_state) {
        case STREAM_DONE:
            return 1;
        case STREAM_ERROR_EVENT: {
            //  {"error": {...}, "status": N} (the status is ours, for ws)
            json_t *event = json_loadb (mesh_buf_head (&req->response), mesh_buf_size (&req->response), 0, NULL);
            json_t *status = json_object_get (event, "status");
            int code = json_is_integer (status) ? (int) json_integer_value (status) : 502;
            json_decref (event);
            connector_stream_upstream_error (req, code, 0, mesh_buf_head (&req->response),
                                   mesh_buf_size (&req->response));
            return -1;
        }
        case STREAM_SEND_FAILED:
            connector_request_abort (req, "ingress_unreachable");
            return -1;
        default:
            break;
    }
    if (rc < 0) {
        connector_request_fail (req, 502, "upstream_error", "upstream_protocol", 0, "upstream_error",
                                "The upstream sent an event longer than %u bytes.", MAX_EVENT_BYTES);
        return -1;
    }
    return 0;
}

//  The value of the last member called key ("\"usage\"") in a JSON text,
//  found without parsing the rest: a non-stream body can be long, and only
//  its usage and finish reason matter here.  NULL if there is none.
static const char *
s_member (const char *data, size_t len, const char *key, size_t *value_len)
{
    size_t key_len = strlen (key);
    const char *found = NULL;
    for (const char *at = data; (at = memmem (at, (size_t) (data + len - at), key, key_len)); at++) {
        //  A key is an unescaped string followed by a colon; inside a JSON
        //  string a quote is always escaped
        const char *after = at + key_len;
        while (after < data + len && (*after == ' ' || *after == '\n' || *after == '\r' || *after == '\t'))
            after++;
        if (after < data + len && *after == ':' && (at == data || at [-1] != '\\'))
            found = after + 1;
    }
    if (!found)
        return NULL;
    const char *end = data + len;
    while (found < end && (*found == ' ' || *found == '\n' || *found == '\r' || *found == '\t'))
        found++;
    if (found == end)
        return NULL;
    if (*found == '"') {                //  a string: to its closing quote
        for (const char *p = found + 1; p < end; p++) {
            if (*p == '\\')
                p++;
            else
            if (*p == '"') {
                *value_len = (size_t) (p + 1 - found);
                return found;
            }
        }
        return NULL;
    }
    if (*found != '{')
        return NULL;
    int depth = 0;
    bool in_string = false;
    for (const char *p = found; p < end; p++) {
        if (in_string) {
            if (*p == '\\')
                p++;
            else
            if (*p == '"')
                in_string = false;
        }
        else
        if (*p == '"')
            in_string = true;
        else
        if (*p == '{')
            depth++;
        else
        if (*p == '}' && --depth == 0) {
            *value_len = (size_t) (p + 1 - found);
            return found;
        }
    }
    return NULL;
}

void
connector_stream_complete_body (connector_req_t *req, const char *data, size_t len)
{
    //  DeepSeek sends blank lines while a non-stream request is queued
    while (len && (*data == ' ' || *data == '\n' || *data == '\r' || *data == '\t')) {
        data++;
        len--;
    }
    size_t last = len;
    while (last && (data [last - 1] == ' ' || data [last - 1] == '\n' || data [last - 1] == '\r'))
        last--;
    if (len == 0 || data [0] != '{' || data [last - 1] != '}') {
        connector_request_fail (req, 502, "upstream_error", "upstream_protocol", 0, "upstream_error",
                                "The upstream answered with a body that is not a JSON object.");
        return;
    }
    if (req->client_stream) {
        connector_request_fail (req, 502, "upstream_error", "upstream_protocol", 0, "upstream_error",
                                "The upstream answered a streaming request without streaming.");
        return;
    }
    //  The body goes to the client as the upstream wrote it; only usage and
    //  the finish reason are read out of it
    size_t value_len;
    const char *usage = s_member (data, len, "\"usage\"", &value_len);
    if (usage) {
        json_t *object = json_loadb (usage, value_len, 0, NULL);
        s_take_usage (req, object);
        json_decref (object);
    }
    const char *finish = s_member (data, len, "\"finish_reason\"", &value_len);
    if (finish && value_len >= 2 && value_len - 2 < sizeof req->finish) {
        memcpy (req->finish, finish + 1, value_len - 2);
        req->finish [value_len - 2] = 0;
    }
    connector_request_finish (req, data, len);
}

void
connector_stream_upstream_error (connector_req_t *req, int status, int retry_after_s, const char *body, size_t len)
{
    json_t *json = json_loadb (body, len, 0, NULL);
    json_t *error = json_object_get (json, "error");
    const char *upstream_message = json_string_value (json_object_get (error, "message"));
    const char *upstream_code = json_string_value (json_object_get (error, "code"));
    const char *upstream_type = json_string_value (json_object_get (error, "type"));
    if (!upstream_message)
        upstream_message = "";
    int retry_ms = retry_after_s > 0 ? MESH_MIN (retry_after_s, 60) * 1000 : 1000;

    switch (status) {
        case 400:
        case 413:
        case 422:
            //  The client's input: it should see the upstream's words
            connector_request_fail (req, status, upstream_type ? upstream_type : "invalid_request_error",
                                    upstream_code ? upstream_code : "invalid_request", 0, "upstream_error",
                                    "%s", *upstream_message ? upstream_message : "The upstream refused the request.");
            break;
        case 401:
        case 403:
            connector_request_fail (req, 502, "upstream_error", "upstream_auth_failed", 0, "upstream_error",
                                    "The upstream rejected the gateway's credentials (status %d).", status);
            break;
        case 402:
            connector_request_fail (req, 402, "insufficient_quota", "insufficient_balance", 0, "upstream_error",
                                    "The upstream account has insufficient balance.");
            break;
        case 404:
            connector_request_fail (req, 502, "upstream_error", "upstream_not_found", 0, "upstream_error",
                                    "The upstream does not know this endpoint or model (status 404).");
            break;
        case 408:
        case 504:
            connector_request_fail (req, 504, "upstream_error", "upstream_timeout", retry_ms, "timeout",
                                    "The upstream timed out (status %d).", status);
            break;
        case 429:
            connector_request_fail (req, 429, "rate_limit_error", "rate_limit_exceeded", retry_ms,
                                    "upstream_error", "The upstream is rate limiting requests; retry later.");
            break;
        case 503:
            connector_request_fail (req, 503, "upstream_error", "upstream_overloaded", retry_ms,
                                    "upstream_error", "The upstream is overloaded; retry later.");
            break;
        default:
            if (status >= 400 && status < 500)
                connector_request_fail (req, status, upstream_type ? upstream_type : "invalid_request_error",
                                        upstream_code ? upstream_code : "upstream_refused", 0,
                                        "upstream_error", "%s", *upstream_message ? upstream_message
                                        : "The upstream refused the request.");
            else
                connector_request_fail (req, 502, "upstream_error", "upstream_error", retry_ms,
                                        "upstream_error", "The upstream failed (status %d).", status);
    }
    json_decref (json);
}

int
connector_stream_prepare_body (connector_req_t *req, const char *body, size_t len, const char *requested)
{
    const mesh_model_t *model = req->model;
    req->upstream_stream = req->client_stream || model->stream_only;
    bool rename = !mesh_streq (requested, model->upstream_model);
    bool force_stream = req->upstream_stream && !req->client_stream;
    //  Streams always ask for usage (stream_options.include_usage): an
    //  upstream that reports it only when asked would otherwise leave the
    //  token limits unsettled.  A client that did not ask never sees the
    //  extra usage-only chunk (s_on_event keeps it back).
    bool ask_usage = req->upstream_stream;
    bool has_options = ask_usage && memmem (body, len, "\"stream_options\"", 16);
    req->client_usage = false;
    mesh_buf_reset (&req->body);
    if (!rename && !force_stream && !has_options) {
        //  The client's bytes, as sent, the option spliced in before the
        //  closing brace of the (validated) object
        size_t end = len;
        while (end > 0 && (body [end - 1] == ' ' || body [end - 1] == '\n'
                        || body [end - 1] == '\r' || body [end - 1] == '\t'))
            end--;
        if (!ask_usage) {
            mesh_buf_append (&req->body, body, len);
            return 0;
        }
        if (end > 1 && body [end - 1] == '}') {
            mesh_buf_append (&req->body, body, end - 1);
            mesh_buf_append_str (&req->body, ",\"stream_options\":{\"include_usage\":true}}");
            return 0;
        }
    }
    json_t *json = json_loadb (body, len, 0, NULL);
    if (!json_is_object (json)) {
        json_decref (json);
        return -1;
    }
    if (rename)
        json_object_set_new (json, "model", json_string (model->upstream_model));
    if (force_stream)
        json_object_set_new (json, "stream", json_true ());
    if (ask_usage) {
        json_t *options = json_object_get (json, "stream_options");
        if (json_is_object (options)) {
            req->client_usage = json_is_true (json_object_get (options, "include_usage"));
            json_object_set_new (options, "include_usage", json_true ());
        }
        else
            json_object_set_new (json, "stream_options", json_pack ("{s:b}", "include_usage", 1));
    }
    char *text = json_dumps (json, JSON_COMPACT);
    json_decref (json);
    if (!text)
        return -1;
    mesh_buf_append_str (&req->body, text);
    free (text);
    return 0;
}

void
connector_stream_end (connector_req_t *req)
{
    mesh_sse_free (&req->sse);
    mesh_completion_destroy (&req->assembly);
}

//  Selftest -----------------------------------------------------------------

void
connector_stream_test (bool verbose)
{
    (void) verbose;
    //  A non-stream client served from a stream: content, reasoning and a
    //  tool call split across chunks come out as one chat.completion
    connector_req_t req;
    memset (&req, 0, sizeof req);
    const char *chunks [] = {
        "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"m\","
        "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"think \"}}]}",
        "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hard\"}}]}",
        "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}",
        "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u00e9\"}}]}",
        "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}",
        "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
        "\"function\":{\"arguments\":\":1}\"}}]}}]}",
        "{\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8,"
        "\"prompt_cache_hit_tokens\":1,\"completion_tokens_details\":{\"reasoning_tokens\":2}}}",
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (chunks); i++)
        assert (s_on_event (&req, MESH_SSE_DATA, chunks [i], strlen (chunks [i])) == 0);
    assert (req.prompt_tokens == 0);            //  read once the stream is done
    size_t len;
    char *text = connector_stream_assembled (&req, &len);
    assert (text);
    assert (req.prompt_tokens == 3 && req.output_tokens == 5);
    assert (req.cached_tokens == 1 && req.reason_tokens == 2);
    assert (mesh_streq (req.finish, "stop"));
    json_t *completion = json_loads (text, 0, NULL);
    assert (completion);
    assert (mesh_streq (json_string_value (json_object_get (completion, "object")), "chat.completion"));
    assert (mesh_streq (json_string_value (json_object_get (completion, "id")), "c1"));
    assert (json_integer_value (json_object_get (completion, "created")) == 7);
    json_t *message = json_object_get (json_array_get (json_object_get (completion, "choices"), 0), "message");
    assert (mesh_streq (json_string_value (json_object_get (message, "content")), "Hello \xc3\xa9"));
    assert (mesh_streq (json_string_value (json_object_get (message, "reasoning_content")), "think hard"));
    json_t *call = json_array_get (json_object_get (message, "tool_calls"), 0);
    assert (mesh_streq (json_string_value (json_object_get (call, "id")), "call_1"));
    json_t *function = json_object_get (call, "function");
    assert (mesh_streq (json_string_value (json_object_get (function, "arguments")), "{\"a\":1}"));
    assert (json_integer_value (json_object_get (json_object_get (completion, "usage"), "total_tokens")) == 8);
    json_decref (completion);
    free (text);
    connector_stream_end (&req);
    assert (req.assembly == NULL);

    //  A stream that never sent a chunk has no answer
    memset (&req, 0, sizeof req);
    assert (s_on_event (&req, MESH_SSE_DATA, "[DONE]", 6) == -1 && req.stream_state == STREAM_DONE);
    assert (connector_stream_assembled (&req, &len) == NULL);
    connector_stream_end (&req);

    assert (s_is_error_event (" {\"error\":{}}", 13));

    //  Members found without a parse; quoted look-alikes inside strings
    //  are not keys
    const char *body = "{\"choices\":[{\"message\":{\"content\":\"say \\\"usage\\\": {}\"},"
                       "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":4,"
                       "\"completion_tokens\":6,\"x\":{\"y\":\"}\"}}}";
    size_t value_len;
    const char *usage = s_member (body, strlen (body), "\"usage\"", &value_len);
    assert (usage && value_len == strlen ("{\"prompt_tokens\":4,\"completion_tokens\":6,\"x\":{\"y\":\"}\"}}"));
    const char *finish = s_member (body, strlen (body), "\"finish_reason\"", &value_len);
    assert (finish && mesh_memeq (finish, value_len, "\"length\""));
    assert (s_member (body, strlen (body), "\"missing\"", &value_len) == NULL);
    assert (s_member ("{\"usage\":{\"a\":1", 15, "\"usage\"", &value_len) == NULL);
    assert (!s_is_error_event ("{\"id\":1}", 8));
    assert (s_has_usage ("{\"usage\" : {}}", 14) && !s_has_usage ("{\"usage\":null}", 15));

    //  Streams ask upstream for usage: spliced into the client's bytes, or
    //  set in the client's own stream_options (remembering what it asked)
    mesh_model_t model;
    memset (&model, 0, sizeof model);
    model.upstream_model = "m";
    memset (&req, 0, sizeof req);
    req.model = &model;
    mesh_buf_init (&req.body);
    struct { bool stream; const char *in, *out; bool client_usage; } bodies [] = {
        { false, "{\"model\":\"m\"}", "{\"model\":\"m\"}", false },
        { true, "{\"model\":\"m\"} \n", "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}", false },
        { true, "{\"model\":\"m\",\"stream_options\":{}}",
          "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}", false },
        { true, "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}",
          "{\"model\":\"m\",\"stream_options\":{\"include_usage\":true}}", true },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bodies); i++) {
        req.client_stream = bodies [i].stream;
        assert (connector_stream_prepare_body (&req, bodies [i].in, strlen (bodies [i].in), "m") == 0);
        assert (mesh_memeq (mesh_buf_head (&req.body), mesh_buf_size (&req.body), bodies [i].out));
        assert (req.client_usage == bodies [i].client_usage);
    }
    mesh_buf_free (&req.body);
}
