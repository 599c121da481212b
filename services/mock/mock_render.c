/*  mock_render: SSE chunks, JSON bodies and error envelopes.               */
#include "mock_render.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define LIT(out, s) mesh_buf_append ((out), (s), sizeof (s) - 1)

//  DeepSeek's error texts.  The 401 message is DeepSeek's with the key
//  masked entirely: the mock never echoes key material.
typedef struct {
    int status;
    const char *message;
    const char *type;
    const char *code;
} error_kind_t;

static const error_kind_t s_errors [] = {
    { 400, "Invalid request", "invalid_request_error", "invalid_request_error" },
    { 401, "Authentication Fails, Your api key: ****xxxx is invalid",
           "authentication_error", "invalid_request_error" },
    { 402, "Insufficient Balance", "unknown_error", "invalid_request_error" },
    { 404, "Not Found", "invalid_request_error", "invalid_request_error" },
    { 405, "Method Not Allowed", "invalid_request_error", "invalid_request_error" },
    { 413, "Request body too large", "invalid_request_error", "invalid_request_error" },
    { 422, "Invalid parameters", "invalid_request_error", "invalid_parameters" },
    { 426, "Upgrade Required", "invalid_request_error", "invalid_request_error" },
    { 429, "Rate limit reached for requests", "rate_limit_error", "rate_limit_exceeded" },
    { 500, "Server error", "server_error", "internal_server_error" },
    { 503, "Server overloaded, please try again later", "server_error", "service_unavailable" },
};

void
mock_render_int (mesh_buf_t *out, int64_t value)
{
    char digits [24];
    size_t n = sizeof digits;
    uint64_t v = value < 0 ? (uint64_t) -(value + 1) + 1 : (uint64_t) value;
    do {
        digits [--n] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    if (value < 0)
        digits [--n] = '-';
    mesh_buf_append (out, digits + n, sizeof digits - n);
}

static void
s_string (mesh_buf_t *out, const char *s, size_t len)
{
    LIT (out, "\"");
    mock_json_escape (out, s, len);
    LIT (out, "\"");
}

void
mock_render_begin (mock_reply_t *reply, const char *id, int64_t created)
{
    snprintf (reply->id, sizeof reply->id, "%s", id);
    reply->created = created;
    mesh_buf_t *out = &reply->prefix;
    mesh_buf_reset (out);
    LIT (out, "data: {\"id\":\"");
    mesh_buf_append_str (out, id);
    LIT (out, "\",\"object\":\"chat.completion.chunk\",\"created\":");
    mock_render_int (out, created);
    LIT (out, ",\"model\":");
    s_string (out, mesh_buf_head (&reply->model), mesh_buf_size (&reply->model));
    LIT (out, ",\"system_fingerprint\":\"fp_mock\",\"choices\":[{\"index\":0,\"delta\":");
}

static void
s_chunk_end (mesh_buf_t *out)
{
    LIT (out, ",\"logprobs\":null,\"finish_reason\":null}]}\n\n");
}

void
mock_render_first (mesh_buf_t *out, const mock_reply_t *reply)
{
    mesh_buf_append (out, mesh_buf_head (&reply->prefix), mesh_buf_size (&reply->prefix));
    LIT (out, "{\"role\":\"assistant\",\"content\":\"\"}");
    s_chunk_end (out);
}

void
mock_render_delta (mesh_buf_t *out, const mock_reply_t *reply, const mock_delta_t *delta)
{
    mesh_buf_append (out, mesh_buf_head (&reply->prefix), mesh_buf_size (&reply->prefix));
    switch (delta->kind) {
        case MOCK_DELTA_REASONING:
            LIT (out, "{\"content\":null,\"reasoning_content\":");
            break;
        case MOCK_DELTA_CONTENT:
            LIT (out, "{\"content\":");
            break;
        case MOCK_DELTA_TOOL_HEAD:
            LIT (out, "{\"tool_calls\":[{\"index\":0,\"id\":\"call_mock_0\",\"type\":\"function\","
                      "\"function\":{\"name\":");
            s_string (out, delta->text, delta->len);
            LIT (out, ",\"arguments\":\"\"}}]}");
            s_chunk_end (out);
            return;
        case MOCK_DELTA_TOOL_ARGS:
            LIT (out, "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":");
            s_string (out, delta->text, delta->len);
            LIT (out, "}}]}");
            s_chunk_end (out);
            return;
        default:
            assert (false);
    }
    s_string (out, delta->text, delta->len);
    LIT (out, "}");
    s_chunk_end (out);
}

static void
s_usage (mesh_buf_t *out, const mock_reply_t *reply)
{
    int64_t completion = mock_reply_completion_tokens (reply);
    LIT (out, "\"usage\":{\"prompt_tokens\":");
    mock_render_int (out, reply->prompt_tokens);
    LIT (out, ",\"completion_tokens\":");
    mock_render_int (out, completion);
    LIT (out, ",\"total_tokens\":");
    mock_render_int (out, reply->prompt_tokens + completion);
    LIT (out, ",\"prompt_tokens_details\":{\"cached_tokens\":0},\"prompt_cache_hit_tokens\":0,"
              "\"prompt_cache_miss_tokens\":");
    mock_render_int (out, reply->prompt_tokens);
    if (reply->reasoning) {
        LIT (out, ",\"completion_tokens_details\":{\"reasoning_tokens\":");
        mock_render_int (out, reply->reasoning_deltas);
        LIT (out, "}");
    }
    LIT (out, "}");
}

void
mock_render_final (mesh_buf_t *out, const mock_reply_t *reply)
{
    mesh_buf_append (out, mesh_buf_head (&reply->prefix), mesh_buf_size (&reply->prefix));
    LIT (out, "{\"content\":\"\"},\"logprobs\":null,\"finish_reason\":\"");
    mesh_buf_append_str (out, mock_reply_finish_reason (reply));
    if (!reply->usage_when_asked) {
        LIT (out, "\"}],");          //  DeepSeek: usage on the last chunk, always
        s_usage (out, reply);
        LIT (out, "}\n\n");
        return;
    }
    LIT (out, "\"}]}\n\n");
    if (!reply->include_usage)
        return;
    //  OpenAI: one more chunk, with no choices, when asked
    LIT (out, "data: {\"id\":\"");
    mesh_buf_append_str (out, reply->id);
    LIT (out, "\",\"object\":\"chat.completion.chunk\",\"created\":");
    mock_render_int (out, reply->created);
    LIT (out, ",\"model\":");
    s_string (out, mesh_buf_head (&reply->model), mesh_buf_size (&reply->model));
    LIT (out, ",\"choices\":[],");
    s_usage (out, reply);
    LIT (out, "}\n\n");
}

//  Appends the joined text of every delta of one kind, escaped.
static void
s_joined (mesh_buf_t *out, mock_reply_t *reply, int kind)
{
    mock_reply_rewind (reply);
    mock_delta_t delta;
    while (mock_reply_next (reply, &delta))
        if (delta.kind == kind)
            mock_json_escape (out, delta.text, delta.len);
}

void
mock_render_body (mesh_buf_t *out, mock_reply_t *reply)
{
    LIT (out, "{\"id\":\"");
    mesh_buf_append_str (out, reply->id);
    LIT (out, "\",\"object\":\"chat.completion\",\"created\":");
    mock_render_int (out, reply->created);
    LIT (out, ",\"model\":");
    s_string (out, mesh_buf_head (&reply->model), mesh_buf_size (&reply->model));
    LIT (out, ",\"system_fingerprint\":\"fp_mock\",\"choices\":[{\"index\":0,"
              "\"message\":{\"role\":\"assistant\",\"content\":");
    if (reply->tool_call)
        LIT (out, "null");
    else {
        LIT (out, "\"");
        s_joined (out, reply, MOCK_DELTA_CONTENT);
        LIT (out, "\"");
    }
    if (reply->reasoning) {
        LIT (out, ",\"reasoning_content\":\"");
        s_joined (out, reply, MOCK_DELTA_REASONING);
        LIT (out, "\"");
    }
    if (reply->tool_call) {
        LIT (out, ",\"tool_calls\":[{\"index\":0,\"id\":\"call_mock_0\",\"type\":\"function\","
                  "\"function\":{\"name\":");
        s_string (out, mesh_buf_head (&reply->tool_name), mesh_buf_size (&reply->tool_name));
        LIT (out, ",\"arguments\":");
        s_string (out, mesh_buf_head (&reply->tool_args), mesh_buf_size (&reply->tool_args));
        LIT (out, "}}]");
    }
    LIT (out, "},\"logprobs\":null,\"finish_reason\":\"");
    mesh_buf_append_str (out, mock_reply_finish_reason (reply));
    LIT (out, "\"}],");
    s_usage (out, reply);
    LIT (out, "}");
    mock_reply_rewind (reply);
}

void
mock_render_error (mesh_buf_t *out, int status, const char *message, bool with_status)
{
    error_kind_t kind = { status, NULL, status < 500 ? "invalid_request_error" : "server_error",
                          status < 500 ? "invalid_request_error" : "internal_server_error" };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_errors); i++)
        if (s_errors [i].status == status)
            kind = s_errors [i];
    if (!message)
        message = kind.message ? kind.message : status < 500 ? "Client error" : "Server error";
    LIT (out, "{\"error\":{\"message\":");
    s_string (out, message, strlen (message));
    LIT (out, ",\"type\":\"");
    mesh_buf_append_str (out, kind.type);
    LIT (out, "\",\"param\":null,\"code\":\"");
    mesh_buf_append_str (out, kind.code);
    LIT (out, "\"}");
    if (with_status) {
        LIT (out, ",\"status\":");
        mock_render_int (out, status);
    }
    LIT (out, "}");
}

void
mock_render_models (mesh_buf_t *out)
{
    LIT (out, "{\"object\":\"list\",\"data\":["
              "{\"id\":\"deepseek-chat\",\"object\":\"model\",\"owned_by\":\"deepseek\"},"
              "{\"id\":\"deepseek-reasoner\",\"object\":\"model\",\"owned_by\":\"deepseek\"}]}");
}

void
mock_render_balance (mesh_buf_t *out)
{
    LIT (out, "{\"is_available\":true,\"balance_infos\":[{\"currency\":\"CNY\","
              "\"total_balance\":\"100.00\",\"granted_balance\":\"0.00\","
              "\"topped_up_balance\":\"100.00\"}]}");
}

//  Selftest -----------------------------------------------------------------

//  Parses one event's JSON (after "data: ", before "\n\n") with jansson, so
//  the test checks the hand-built JSON against a real parser.
static json_t *
s_test_event (const char *at, const char **next)
{
    assert (strncmp (at, "data: ", 6) == 0);
    const char *end = strstr (at, "\n\n");
    assert (end && !memchr (at, '\r', (size_t) (end - at)));
    assert (!memchr (at, '\n', (size_t) (end - at)));
    json_error_t jerr;
    json_t *json = json_loadb (at + 6, (size_t) (end - at - 6), 0, &jerr);
    assert (json);
    *next = end + 2;
    return json;
}

static mesh_buf_t
s_test_stream (mock_reply_t *reply, const char *body)
{
    char error [128];
    assert (mock_reply_parse (reply, body, strlen (body), error, sizeof error) == 0);
    mock_render_begin (reply, "mock-0-1", 1700000000);
    mesh_buf_t out;
    mesh_buf_init (&out);
    mock_render_first (&out, reply);
    mock_delta_t delta;
    while (mock_reply_next (reply, &delta))
        mock_render_delta (&out, reply, &delta);
    mock_render_final (&out, reply);
    mesh_buf_append (&out, "", 1);
    return out;
}

void
mock_render_test (bool verbose)
{
    (void) verbose;
    mock_reply_t reply;
    mock_reply_init (&reply);

    //  A stream with quotes, a newline and non-ASCII text in the prompt:
    //  every event is one line of valid JSON and the deltas join back up
    mesh_buf_t out = s_test_stream (&reply,
        "{\"model\":\"deepseek-\\\"chat\",\"messages\":[{\"role\":\"user\","
        "\"content\":\"say \\\"h\\u00e9\\\"\\nnow \\u4f60\"}]}");
    const char *at = mesh_buf_head (&out), *next;
    json_t *event = s_test_event (at, &next);
    assert (strcmp (json_string_value (json_object_get (event, "id")), "mock-0-1") == 0);
    assert (strcmp (json_string_value (json_object_get (event, "model")), "deepseek-\"chat") == 0);
    assert (json_integer_value (json_object_get (event, "created")) == 1700000000);
    json_t *choice = json_array_get (json_object_get (event, "choices"), 0);
    json_t *delta = json_object_get (choice, "delta");
    assert (strcmp (json_string_value (json_object_get (delta, "role")), "assistant") == 0);
    assert (json_is_null (json_object_get (choice, "finish_reason")));
    json_decref (event);
    mesh_buf_t joined;
    mesh_buf_init (&joined);
    int chunks = 0;
    for (at = next; strncmp (at, "data: ", 6) == 0; at = next, chunks++) {
        event = s_test_event (at, &next);
        choice = json_array_get (json_object_get (event, "choices"), 0);
        json_t *content = json_object_get (json_object_get (choice, "delta"), "content");
        mesh_buf_append_str (&joined, json_string_value (content));
        if (*next == 0) {
            assert (strcmp (json_string_value (json_object_get (choice, "finish_reason")), "stop") == 0);
            json_t *usage = json_object_get (event, "usage");
            assert (json_integer_value (json_object_get (usage, "prompt_tokens")) == 4);
            assert (json_integer_value (json_object_get (usage, "completion_tokens")) == 4);
            assert (json_integer_value (json_object_get (usage, "total_tokens")) == 8);
            assert (json_integer_value (json_object_get (usage, "prompt_cache_miss_tokens")) == 4);
        }
        json_decref (event);
    }
    assert (chunks == 5);
    mesh_buf_append (&joined, "", 1);
    assert (strcmp (mesh_buf_head (&joined), "Echo: say \"h\xc3\xa9\"\nnow \xe4\xbd\xa0") == 0);
    mesh_buf_free (&joined);
    mesh_buf_free (&out);

    //  Reasoning deltas carry content null; usage counts reasoning tokens
    out = s_test_stream (&reply,
        "{\"model\":\"deepseek-reasoner\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    assert (strstr (mesh_buf_head (&out),
                    "\"delta\":{\"content\":null,\"reasoning_content\":\"Thinking \"}"));
    assert (strstr (mesh_buf_head (&out),
                    "\"completion_tokens_details\":{\"reasoning_tokens\":3}"));
    mesh_buf_free (&out);

    //  Tool call chunks
    out = s_test_stream (&reply,
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    assert (strstr (mesh_buf_head (&out),
                    "\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_mock_0\",\"type\":\"function\","
                    "\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}"));
    assert (strstr (mesh_buf_head (&out),
                    "\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"echo\"}}]}"));
    assert (strstr (mesh_buf_head (&out), "\"finish_reason\":\"tool_calls\"}],\"usage\":"));
    mesh_buf_free (&out);

    //  Usage the OpenAI way: none unless asked, then in a chunk of its own
    out = s_test_stream (&reply, "{\"model\":\"m\",\"stream\":true,\"mock\":{\"usage\":\"when_asked\"},"
                                 "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    assert (!strstr (mesh_buf_head (&out), "\"usage\""));
    assert (strstr (mesh_buf_head (&out), "\"finish_reason\":\"stop\"}]}\n\n"));
    mesh_buf_free (&out);
    out = s_test_stream (&reply, "{\"model\":\"m\",\"stream\":true,\"mock\":{\"usage\":\"when_asked\"},"
                                 "\"stream_options\":{\"include_usage\":true},"
                                 "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    const char *last = strstr (mesh_buf_head (&out), "\"finish_reason\":\"stop\"}]}\n\n");
    assert (last);
    event = s_test_event (last + strlen ("\"finish_reason\":\"stop\"}]}\n\n"), &next);
    assert (json_array_size (json_object_get (event, "choices")) == 0);
    assert (json_integer_value (json_object_get (json_object_get (event, "usage"), "prompt_tokens")) == 1);
    assert (*next == 0);
    json_decref (event);
    mesh_buf_free (&out);

    //  Non-stream bodies parse and hold the joined texts
    const char *bodies [] = {
        "{\"model\":\"deepseek-reasoner\",\"max_tokens\":5,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"a b\"}]}",
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"q\\\"\"}]}",
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bodies); i++) {
        char error [128];
        assert (mock_reply_parse (&reply, bodies [i], strlen (bodies [i]), error, sizeof error) == 0);
        mock_render_begin (&reply, "mock-0-2", 5);
        mesh_buf_init (&out);
        mock_render_body (&out, &reply);
        json_error_t jerr;
        json_t *body = json_loadb (mesh_buf_head (&out), mesh_buf_size (&out), 0, &jerr);
        assert (body);
        assert (strcmp (json_string_value (json_object_get (body, "object")), "chat.completion") == 0);
        choice = json_array_get (json_object_get (body, "choices"), 0);
        json_t *message = json_object_get (choice, "message");
        const char *finish = json_string_value (json_object_get (choice, "finish_reason"));
        if (i == 0) {
            assert (strcmp (json_string_value (json_object_get (message, "reasoning_content")),
                            "Thinking about: a b") == 0);
            assert (strcmp (json_string_value (json_object_get (message, "content")), "Echo: ") == 0);
            assert (strcmp (finish, "length") == 0);
        }
        else {
            assert (json_is_null (json_object_get (message, "content")));
            json_t *call = json_array_get (json_object_get (message, "tool_calls"), 0);
            json_t *function = json_object_get (call, "function");
            assert (strcmp (json_string_value (json_object_get (function, "arguments")),
                            "{\"echo\":\"q\\\"\"}") == 0);
            assert (strcmp (finish, "tool_calls") == 0);
        }
        json_decref (body);
        mesh_buf_free (&out);
    }

    //  Error envelopes
    mesh_buf_init (&out);
    mock_render_error (&out, 429, NULL, false);
    mesh_buf_append (&out, "", 1);
    assert (strcmp (mesh_buf_head (&out),
                    "{\"error\":{\"message\":\"Rate limit reached for requests\","
                    "\"type\":\"rate_limit_error\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}") == 0);
    mesh_buf_reset (&out);
    mock_render_error (&out, 400, "bad \"x\"", true);
    mesh_buf_append (&out, "", 1);
    assert (strstr (mesh_buf_head (&out), "\"message\":\"bad \\\"x\\\"\""));
    assert (strstr (mesh_buf_head (&out), "},\"status\":400}"));
    mesh_buf_reset (&out);
    mock_render_int (&out, -9223372036854775807LL - 1);
    mock_render_int (&out, 0);
    assert (mesh_memeq (mesh_buf_head (&out), mesh_buf_size (&out), "-92233720368547758080"));
    mesh_buf_free (&out);
    mock_reply_free (&reply);
}
