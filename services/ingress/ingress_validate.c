/*  ingress_validate: chat completion request validation.                   */
#include "ingress_validate.h"
#include "mesh_config.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int
s_fail (ingress_check_t *check, int status, const char *code, const char *param,
        const char *fmt, ...) __attribute__ ((format (printf, 5, 6)));

static int
s_fail (ingress_check_t *check, int status, const char *code, const char *param,
        const char *fmt, ...)
{
    check->status = status;
    snprintf (check->code, sizeof check->code, "%s", code);
    snprintf (check->param, sizeof check->param, "%s", param ? param : "");
    va_list args;
    va_start (args, fmt);
    vsnprintf (check->message, sizeof check->message, fmt, args);
    va_end (args);
    return -1;
}

//  An optional number within [low, high]: 400 for the wrong type, 422 for
//  a value out of range.
static int
s_number (json_t *body, const char *name, double low, double high, ingress_check_t *check)
{
    json_t *value = json_object_get (body, name);
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_number (value))
        return s_fail (check, 400, "invalid_type", name,
                       "Invalid type for '%s': expected a number, but got %s instead.",
                       name, mesh_json_kind (value));
    double number = json_number_value (value);
    if (!(number >= low && number <= high))
        return s_fail (check, 422, "invalid_value", name,
                       "Invalid value for '%s': %g is out of range; it must be between %g and %g.",
                       name, number, low, high);
    return 0;
}

static int
s_integer (json_t *body, const char *name, long long low, long long high, ingress_check_t *check)
{
    json_t *value = json_object_get (body, name);
    if (!value || json_is_null (value))
        return 0;
    if (!json_is_integer (value))
        return s_fail (check, 400, "invalid_type", name,
                       "Invalid type for '%s': expected an integer, but got %s instead.",
                       name, mesh_json_kind (value));
    long long number = json_integer_value (value);
    if (number < low || number > high)
        return s_fail (check, 422, "invalid_value", name,
                       "Invalid value for '%s': %lld is out of range; it must be between %lld and %lld.",
                       name, number, low, high);
    return 0;
}

static int
s_message (json_t *message, size_t index, ingress_check_t *check)
{
    char param [96];
    snprintf (param, sizeof param, "messages.[%zu]", index);
    if (!json_is_object (message))
        return s_fail (check, 400, "invalid_type", param,
                       "Invalid type for 'messages[%zu]': expected an object, but got %s instead.",
                       index, mesh_json_kind (message));
    json_t *role = json_object_get (message, "role");
    snprintf (param, sizeof param, "messages.[%zu].role", index);
    if (!json_is_string (role))
        return s_fail (check, 400, "missing_required_parameter", param,
                       "Missing required parameter: 'messages[%zu].role'.", index);
    const char *name = json_string_value (role);
    static const char *roles [] = { "system", "user", "assistant", "tool", "developer", "function" };
    bool known = false;
    for (size_t i = 0; i < MESH_ARRAY_SIZE (roles); i++)
        known = known || mesh_streq (name, roles [i]);
    if (!known)
        return s_fail (check, 400, "invalid_value", param,
                       "Invalid value for 'messages[%zu].role': '%.64s'. Supported values are: "
                       "'system', 'user', 'assistant', 'tool', 'developer' and 'function'.",
                       index, name);
    json_t *content = json_object_get (message, "content");
    snprintf (param, sizeof param, "messages.[%zu].content", index);
    bool assistant = mesh_streq (name, "assistant");
    if (!content || json_is_null (content)) {
        //  An assistant turn may carry only tool calls
        if (!assistant)
            return s_fail (check, 400, "missing_required_parameter", param,
                           "Missing required parameter: 'messages[%zu].content'.", index);
    }
    else
    if (json_is_array (content)) {
        size_t k;
        json_t *part;
        json_array_foreach (content, k, part) {
            if (!json_is_object (part) || !json_is_string (json_object_get (part, "type")))
                return s_fail (check, 400, "invalid_type", param,
                               "Invalid content part 'messages[%zu].content[%zu]': each part "
                               "must be an object with a string 'type'.", index, k);
        }
    }
    else
    if (!json_is_string (content))
        return s_fail (check, 400, "invalid_type", param,
                       "Invalid type for 'messages[%zu].content': expected a string or an array "
                       "of content parts, but got %s instead.", index, mesh_json_kind (content));
    if (mesh_streq (name, "tool") && !json_is_string (json_object_get (message, "tool_call_id"))) {
        snprintf (param, sizeof param, "messages.[%zu].tool_call_id", index);
        return s_fail (check, 400, "missing_required_parameter", param,
                       "Missing required parameter: 'messages[%zu].tool_call_id'.", index);
    }
    json_t *calls = json_object_get (message, "tool_calls");
    if (calls && !json_is_null (calls) && !json_is_array (calls)) {
        snprintf (param, sizeof param, "messages.[%zu].tool_calls", index);
        return s_fail (check, 400, "invalid_type", param,
                       "Invalid type for 'messages[%zu].tool_calls': expected an array.", index);
    }
    return 0;
}

static int
s_tools (json_t *body, ingress_check_t *check)
{
    json_t *tools = json_object_get (body, "tools");
    if (!tools || json_is_null (tools))
        return 0;
    if (!json_is_array (tools))
        return s_fail (check, 400, "invalid_type", "tools",
                       "Invalid type for 'tools': expected an array, but got %s instead.", mesh_json_kind (tools));
    size_t i;
    json_t *tool;
    json_array_foreach (tools, i, tool) {
        char param [64];
        snprintf (param, sizeof param, "tools.[%zu].function.name", i);
        json_t *function = json_object_get (tool, "function");
        if (!json_is_object (tool) || !json_is_string (json_object_get (function, "name")))
            return s_fail (check, 400, "missing_required_parameter", param,
                           "Missing required parameter: 'tools[%zu].function.name'.", i);
    }
    return 0;
}

static int
s_stop (json_t *body, ingress_check_t *check)
{
    json_t *stop = json_object_get (body, "stop");
    if (!stop || json_is_null (stop) || json_is_string (stop))
        return 0;
    if (!json_is_array (stop))
        return s_fail (check, 400, "invalid_type", "stop",
                       "Invalid type for 'stop': expected a string or an array of strings, but got %s instead.",
                       mesh_json_kind (stop));
    if (json_array_size (stop) > 16)
        return s_fail (check, 400, "invalid_value", "stop", "'stop' may hold at most 16 sequences.");
    size_t i;
    json_t *item;
    json_array_foreach (stop, i, item) {
        if (!json_is_string (item))
            return s_fail (check, 400, "invalid_type", "stop",
                           "Invalid type for 'stop[%zu]': expected a string.", i);
    }
    return 0;
}

static int
s_response_format (json_t *body, ingress_check_t *check)
{
    json_t *format = json_object_get (body, "response_format");
    if (!format || json_is_null (format))
        return 0;
    const char *type = json_string_value (json_object_get (format, "type"));
    if (!json_is_object (format) || !type)
        return s_fail (check, 400, "invalid_type", "response_format",
                       "Invalid type for 'response_format': expected an object with a string 'type'.");
    if (!mesh_streq (type, "text") && !mesh_streq (type, "json_object") && !mesh_streq (type, "json_schema"))
        return s_fail (check, 400, "invalid_value", "response_format.type",
                       "Invalid value for 'response_format.type': '%.64s'. Supported values are: "
                       "'text', 'json_object' and 'json_schema'.", type);
    return 0;
}

//  The length of the longest prefix of s (valid UTF-8, len bytes) that is
//  at most max bytes and does not split a character
static size_t
s_utf8_cut (const char *s, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t n = max;
    while (n > 0 && ((unsigned char) s [n] & 0xc0) == 0x80)
        n--;
    return n;
}

//  A JSON string of a string value cut to max bytes
static json_t *
s_cut_string (json_t *value, size_t max)
{
    const char *text = json_string_value (value);
    size_t len = json_string_length (value);
    return json_stringn (text, s_utf8_cut (text, len, max));
}

//  The parameters of a valid request, for the audit record: numbers and
//  booleans as sent, stop as true, tools as a count, tool_choice as its
//  string or {type, function: {name}}, response_format as its type, the
//  user; strings cut so that the whole always fits in check->params (even
//  with every byte escaped as \u00XX)
static void
s_params (json_t *root, ingress_check_t *check)
{
    json_t *params = json_object ();
    static const char *scalars [] = { "temperature", "top_p", "max_tokens", "max_completion_tokens",
                                      "stream", "n" };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (scalars); i++) {
        json_t *value = json_object_get (root, scalars [i]);
        if (json_is_number (value) || json_is_boolean (value))
            json_object_set (params, scalars [i], value);
    }
    json_t *stop = json_object_get (root, "stop");
    if (stop && !json_is_null (stop))
        json_object_set_new (params, "stop", json_true ());
    json_t *tools = json_object_get (root, "tools");
    if (json_is_array (tools))
        json_object_set_new (params, "tools", json_integer ((json_int_t) json_array_size (tools)));
    json_t *choice = json_object_get (root, "tool_choice");
    if (json_is_string (choice))
        json_object_set_new (params, "tool_choice", s_cut_string (choice, 48));
    else
    if (json_is_object (choice)) {
        json_t *reduced = json_object ();
        json_t *type = json_object_get (choice, "type");
        json_t *name = json_object_get (json_object_get (choice, "function"), "name");
        if (json_is_string (type))
            json_object_set_new (reduced, "type", s_cut_string (type, 48));
        if (json_is_string (name))
            json_object_set_new (reduced, "function", json_pack ("{s:o}", "name", s_cut_string (name, 48)));
        json_object_set_new (params, "tool_choice", reduced);
    }
    json_t *format = json_object_get (json_object_get (root, "response_format"), "type");
    if (json_is_string (format))
        json_object_set_new (params, "response_format", s_cut_string (format, 48));
    json_t *seed = json_object_get (root, "seed");
    if (json_is_number (seed))
        json_object_set (params, "seed", seed);
    if (*check->user)
        json_object_set_new (params, "user", json_string (check->user));
    //  15 digits: what a client wrote (0.3) comes back as written
    size_t size = json_dumpb (params, check->params, sizeof check->params - 1,
                              JSON_COMPACT | JSON_REAL_PRECISION (15));
    if (size == 0 || size >= sizeof check->params)
        size = (size_t) snprintf (check->params, sizeof check->params, "{}");
    check->params [size] = 0;
    json_decref (params);
}

//  Bytes of text a message carries (string content, or text parts)
static size_t
s_text_bytes (json_t *message)
{
    json_t *content = json_object_get (message, "content");
    if (json_is_string (content))
        return json_string_length (content);
    size_t bytes = 0, i;
    json_t *part;
    json_array_foreach (content, i, part) {
        json_t *text = json_object_get (part, "text");
        if (json_is_string (text))
            bytes += json_string_length (text);
    }
    return bytes;
}

//  The body as one JSON object, or NULL with the error filled.
//  jansson would say "wrong arguments" (no bytes) or "'[' or '{'
//  expected": say what is wrong in a user's words
static json_t *
s_parse (const char *body, size_t len, ingress_check_t *check)
{
    size_t blank = 0;
    while (blank < len && strchr (" \t\r\n", body [blank]) && body [blank])
        blank++;
    if (blank == len) {
        s_fail (check, 400, "invalid_json", NULL,
                "the request body is empty; send a JSON object with \"model\" and \"messages\"");
        return NULL;
    }
    json_error_t error;
    json_t *root = json_loadb (body, len, JSON_REJECT_DUPLICATES, &error);
    if (!root) {
        const char *why = strstr (error.text, "duplicate") ? error.text : NULL;
        s_fail (check, 400, "invalid_json", NULL,
                "We could not parse the JSON body of your request (%s at line %d, column %d). "
                "The body must be one JSON object, UTF-8 encoded.",
                why ? why : error.text, error.line, error.column);
        return NULL;
    }
    if (!json_is_object (root)) {
        s_fail (check, 400, "invalid_json", NULL,
                "The request body must be a JSON object, not %s.", mesh_json_kind (root));
        json_decref (root);
        return NULL;
    }
    return root;
}

//  "model": a name that fits check->model
static int
s_model_name (json_t *root, ingress_check_t *check)
{
    json_t *model = json_object_get (root, "model");
    if (!model || json_is_null (model))
        return s_fail (check, 400, "missing_required_parameter", "model",
                       "you must provide a model parameter");
    if (!json_is_string (model) || json_string_length (model) == 0
    ||  json_string_length (model) >= sizeof check->model)
        return s_fail (check, 400, "invalid_type", "model",
                       "Invalid value for 'model': expected a model name (a non-empty string of at most %zu bytes).",
                       sizeof check->model - 1);
    //  Named in the audit record even if something else is wrong
    snprintf (check->model, sizeof check->model, "%s", json_string_value (model));
    return 0;
}

//  "messages": a non-empty array of valid messages
static int
s_messages (json_t *root, ingress_check_t *check)
{
    json_t *messages = json_object_get (root, "messages");
    if (!messages || json_is_null (messages))
        return s_fail (check, 400, "missing_required_parameter", "messages",
                       "Missing required parameter: 'messages'.");
    if (!json_is_array (messages))
        return s_fail (check, 400, "invalid_type", "messages",
                       "Invalid type for 'messages': expected an array, but got %s instead.",
                       mesh_json_kind (messages));
    if (json_array_size (messages) == 0)
        return s_fail (check, 400, "invalid_value", "messages",
                       "Invalid 'messages': empty array. Expected an array with minimum length 1.");
    size_t i;
    json_t *message;
    json_array_foreach (messages, i, message) {
        if (s_message (message, i, check) < 0)
            return -1;
    }
    return 0;
}

//  The optional parameters: their types, and numbers within OpenAI's ranges
static int
s_options (json_t *root, ingress_check_t *check)
{
    json_t *stream = json_object_get (root, "stream");
    if (stream && !json_is_null (stream) && !json_is_boolean (stream))
        return s_fail (check, 400, "invalid_type", "stream",
                       "Invalid type for 'stream': expected a boolean, but got %s instead.",
                       mesh_json_kind (stream));
    json_t *options = json_object_get (root, "stream_options");
    if (options && !json_is_null (options) && !json_is_object (options))
        return s_fail (check, 400, "invalid_type", "stream_options",
                       "Invalid type for 'stream_options': expected an object, but got %s instead.",
                       mesh_json_kind (options));
    if (s_integer (root, "max_tokens", 1, 1 << 24, check) < 0
    ||  s_integer (root, "max_completion_tokens", 1, 1 << 24, check) < 0
    ||  s_integer (root, "n", 1, 128, check) < 0
    ||  s_integer (root, "top_logprobs", 0, 20, check) < 0
    ||  s_number (root, "temperature", 0, 2, check) < 0
    ||  s_number (root, "top_p", 0, 1, check) < 0
    ||  s_number (root, "presence_penalty", -2, 2, check) < 0
    ||  s_number (root, "frequency_penalty", -2, 2, check) < 0
    ||  s_stop (root, check) < 0
    ||  s_tools (root, check) < 0
    ||  s_response_format (root, check) < 0)
        return -1;
    return 0;
}

//  "user" (or "user_id"), which sticky routing keys on
static void
s_user (json_t *root, ingress_check_t *check)
{
    json_t *user = json_object_get (root, "user");
    if (!json_is_string (user))
        user = json_object_get (root, "user_id");
    if (json_is_string (user)) {
        //  Cut on a character: the REQUEST's user must stay UTF-8
        size_t cut = s_utf8_cut (json_string_value (user), json_string_length (user),
                                 sizeof check->user - 1);
        memcpy (check->user, json_string_value (user), cut);
        check->user [cut] = 0;
    }
}

//  "metadata.session_id": the session the request is a turn of, if any
static int
s_session (json_t *root, ingress_check_t *check)
{
    json_t *metadata = json_object_get (root, "metadata");
    json_t *session = json_object_get (metadata, "session_id");
    if (!session || json_is_null (session))
        return 0;
    if (!json_is_string (session))
        return s_fail (check, 400, "invalid_type", "metadata.session_id",
                       "Invalid type for 'metadata.session_id': expected a string, but got %s instead.",
                       mesh_json_kind (session));
    check->has_session = true;
    snprintf (check->session, sizeof check->session, "%.*s",
              (int) MESH_MIN (json_string_length (session), sizeof check->session - 1),
              json_string_value (session));
    return 0;
}

//  What the request may cost, for quotas reserved before it runs: about
//  four bytes of text a token, plus the most it may write
static void
s_estimate (json_t *root, uint32_t default_max_tokens, ingress_check_t *check)
{
    json_t *messages = json_object_get (root, "messages");
    uint64_t prompt = 0;
    size_t i;
    json_t *message;
    json_array_foreach (messages, i, message)
        prompt += 4 + s_text_bytes (message) / 4;
    json_t *max = json_object_get (root, "max_completion_tokens");
    if (!json_is_integer (max))
        max = json_object_get (root, "max_tokens");
    uint64_t completion = json_is_integer (max) ? (uint64_t) json_integer_value (max) : default_max_tokens;
    //  n choices may each write max_tokens
    json_t *n = json_object_get (root, "n");
    if (json_is_integer (n))
        completion *= (uint64_t) json_integer_value (n);
    uint64_t estimate = prompt + completion;
    check->estimate = estimate > UINT32_MAX ? UINT32_MAX : (uint32_t) estimate;
    check->prompt_estimate = prompt > UINT32_MAX ? UINT32_MAX : (uint32_t) prompt;
}

int
ingress_validate (const char *body, size_t len, uint32_t default_max_tokens, ingress_check_t *check)
{
    memset (check, 0, sizeof *check);
    json_t *root = s_parse (body, len, check);
    if (!root)
        return -1;
    int rc = -1;
    if (s_model_name (root, check) < 0
    ||  s_messages (root, check) < 0
    ||  s_options (root, check) < 0)
        goto done;
    check->stream = json_is_true (json_object_get (root, "stream"));
    s_user (root, check);
    if (s_session (root, check) < 0)
        goto done;
    s_params (root, check);
    s_estimate (root, default_max_tokens, check);
    rc = 0;
done:
    json_decref (root);
    return rc;
}

void
ingress_validate_test (bool verbose)
{
    (void) verbose;
    ingress_check_t check;
#define OK(body) (ingress_validate (body, strlen (body), 1000, &check) == 0)
    assert (OK ("{\"model\":\"deepseek-chat\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"));
    assert (mesh_streq (check.model, "deepseek-chat") && !check.stream);
    assert (check.estimate == 4 + 0 + 1000);        //  "hi" is under a token
    assert (OK ("{\"model\":\"m\",\"user\":\"u-7\",\"max_tokens\":10,\"messages\":["
                "{\"role\":\"user\",\"content\":\"0123456789abcdefghij\"}]}"));
    assert (mesh_streq (check.user, "u-7") && check.estimate == 4 + 5 + 10);
    //  n choices may each write max_tokens
    assert (OK ("{\"model\":\"m\",\"n\":3,\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"));
    assert (check.estimate == 4 + 3 * 10 && check.prompt_estimate == 4);
    //  Everything clients send is accepted and left alone
    assert (OK ("{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                "\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"t\"}]},"
                "{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"r\","
                "\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"42\"}],"
                "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"auto\","
                "\"response_format\":{\"type\":\"json_object\"},\"stop\":[\"a\",\"b\"],"
                "\"user\":\"u\",\"thinking\":{\"type\":\"enabled\"},\"reasoning_effort\":\"high\","
                "\"parallel_tool_calls\":true,\"n\":1,\"seed\":7,\"max_completion_tokens\":10,"
                "\"temperature\":0.7,\"top_p\":1,\"max_tokens\":null}"));
    assert (check.stream);

    struct { const char *body; int status; const char *param; const char *fragment; } bad [] = {
        { "", 400, "", "the request body is empty; send a JSON object with \"model\" and \"messages\"" },
        { " \r\n", 400, "", "the request body is empty" },
        { "{", 400, "", "could not parse" },
        { "[1]", 400, "", "must be a JSON object" },
        { "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "model", "provide a model" },
        { "{\"model\":5,\"messages\":[]}", 400, "model", "model name" },
        { "{\"model\":\"m\"}", 400, "messages", "'messages'" },
        { "{\"model\":\"m\",\"messages\":[]}", 400, "messages", "empty array" },
        { "{\"model\":\"m\",\"messages\":\"hi\"}", 400, "messages", "expected an array" },
        { "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", 400, "messages.[0].role", "role" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", 400, "messages.[0].role", "'bot'" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", 400, "messages.[0].content", "content" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":7}]}", 400, "messages.[0].content", "integer" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "messages.[0].tool_call_id", "tool_call_id" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}", 400, "stream", "boolean" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}", 422, "temperature", "out of range" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", 422, "max_tokens", "out of range" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1.5}", 400, "max_tokens", "integer" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", 400, "stop", "stop[0]" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}", 400, "tools.[0].function.name", "function.name" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"xml\"}}", 400, "response_format.type", "'xml'" },
        { "{\"model\":\"m\",\"model\":\"n\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400, "", "duplicate" },
        { "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", 400, "", "could not parse" },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++) {
        assert (ingress_validate (bad [i].body, strlen (bad [i].body), 1000, &check) == -1);
        assert (check.status == bad [i].status);
        assert (mesh_streq (check.param, bad [i].param));
        assert (strstr (check.message, bad [i].fragment));
    }
    //  No bytes at all (curl -X POST without -d): not jansson's "wrong arguments"
    assert (ingress_validate (NULL, 0, 1000, &check) == -1 && check.status == 400);
    assert (strstr (check.message, "the request body is empty") && !strstr (check.message, "line"));
    //  A bad request still names its model, for the audit record
    const char *bad_temperature = "{\"model\":\"m-1\",\"messages\":[],\"temperature\":9}";
    assert (ingress_validate (bad_temperature, strlen (bad_temperature), 1000, &check) == -1);
    assert (mesh_streq (check.model, "m-1"));
}
