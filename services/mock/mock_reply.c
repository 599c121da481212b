/*  mock_reply: request facts, the reply plan and its deltas.               */
#include "mock_reply.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define MAX_DIRECTIVE 100000000     //  bounds every integer directive
#define MAX_TOKENS    1000000       //  a non-stream body holds them all
#define MAX_SCRIPTED  10000         //  pieces of a "deltas" directive

void
mock_reply_init (mock_reply_t *self)
{
    memset (self, 0, sizeof *self);
}

void
mock_reply_free (mock_reply_t *self)
{
    mesh_buf_free (&self->model);
    mesh_buf_free (&self->prompt);
    mesh_buf_free (&self->tool_name);
    mesh_buf_free (&self->tool_result);
    mesh_buf_free (&self->reasoning_text);
    mesh_buf_free (&self->content_text);
    mesh_buf_free (&self->tool_args);
    mesh_buf_free (&self->prefix);
    mesh_buf_free (&self->script);
}

//  Forgets the last request but keeps the buffers' memory.
static void
s_reset (mock_reply_t *self)
{
    mesh_buf_t *bufs [] = { &self->model, &self->prompt, &self->tool_name,
                            &self->tool_result, &self->reasoning_text, &self->content_text,
                            &self->tool_args, &self->prefix, &self->script };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bufs); i++) {
        mesh_buf_reset (bufs [i]);
        mesh_buf_trim (bufs [i], 64 * 1024);    //  after a huge prompt
    }
    self->stream = self->reasoning = self->tools = false;
    self->after_tool = self->json_mode = self->calls = false;
    self->recording = NULL;
    self->max_tokens = self->prompt_tokens = 0;
    self->tokens = self->delay_ms = self->queue_ms = -1;
    self->retry_after = self->reset_after = self->stall_after = -1;
    self->status = 0;
    self->stall = MOCK_STALL_NONE;
    self->usage_when_asked = self->include_usage = false;
    self->scripted = false;
    self->reasoning_deltas = self->content_deltas = 0;
    self->tool_call = self->cut = false;
    self->tool_args_cut = 0;
    self->at = 0;
    self->cursor = 0;
    self->id [0] = 0;
    self->created = 0;
}

void
mock_json_escape (mesh_buf_t *out, const char *s, size_t len)
{
    static const char hex [] = "0123456789abcdef";
    size_t run = 0;                 //  start of the bytes that need no escape
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s [i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        mesh_buf_append (out, s + run, i - run);
        run = i + 1;
        char esc [6] = { '\\', 0 };
        size_t n = 2;
        switch (c) {
            case '"':  esc [1] = '"'; break;
            case '\\': esc [1] = '\\'; break;
            case '\n': esc [1] = 'n'; break;
            case '\r': esc [1] = 'r'; break;
            case '\t': esc [1] = 't'; break;
            case '\b': esc [1] = 'b'; break;
            case '\f': esc [1] = 'f'; break;
            default:
                memcpy (esc + 1, "u00", 3);
                esc [4] = hex [c >> 4];
                esc [5] = hex [c & 15];
                n = 6;
        }
        mesh_buf_append (out, esc, n);
    }
    mesh_buf_append (out, s + run, len - run);
}

//  Whitespace-separated words.
static int64_t
s_words (const char *s, size_t len)
{
    int64_t words = 0;
    bool in_word = false;
    for (size_t i = 0; i < len; i++) {
        char c = s [i];
        bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
        if (!space && !in_word)
            words++;
        in_word = !space;
    }
    return words;
}

//  Calls back on each text of a content: the string, or the "text" of every
//  part of type "text".  Returns the number of words; appends the texts to
//  out when out is not NULL.
static int64_t
s_content (json_t *content, mesh_buf_t *out)
{
    int64_t words = 0;
    if (json_is_string (content)) {
        const char *text = json_string_value (content);
        size_t len = json_string_length (content);
        if (out)
            mesh_buf_append (out, text, len);
        return s_words (text, len);
    }
    if (!json_is_array (content))
        return 0;
    size_t index;
    json_t *part;
    json_array_foreach (content, index, part) {
        json_t *type = json_object_get (part, "type");
        json_t *text = json_object_get (part, "text");
        if (!json_is_string (type) || strcmp (json_string_value (type), "text") != 0
        ||  !json_is_string (text))
            continue;
        if (out)
            mesh_buf_append (out, json_string_value (text), json_string_length (text));
        words += s_words (json_string_value (text), json_string_length (text));
    }
    return words;
}

//  An integer member within [min, max], else dflt (bad values are ignored).
static int64_t
s_int (json_t *object, const char *key, int64_t min, int64_t max, int64_t dflt)
{
    json_t *node = json_object_get (object, key);
    if (!json_is_integer (node))
        return dflt;
    json_int_t value = json_integer_value (node);
    return value >= min && value <= max ? (int64_t) value : dflt;
}

static bool
s_string_is (json_t *node, const char *value)
{
    return json_is_string (node) && strcmp (json_string_value (node), value) == 0;
}

//  One piece of a script: kind, length, text
static void
s_script_piece (mesh_buf_t *script, int kind, json_t *text)
{
    unsigned char head [5] = { (unsigned char) kind };
    uint32_t len = (uint32_t) json_string_length (text);
    memcpy (head + 1, &len, 4);
    mesh_buf_append (script, head, 5);
    mesh_buf_append (script, json_string_value (text), len);
}

//  "deltas": strings are content, {"reasoning": text} reasoning (first)
static void
s_script (mock_reply_t *self, json_t *deltas)
{
    if (!json_is_array (deltas) || json_array_size (deltas) > MAX_SCRIPTED)
        return;
    self->scripted = true;
    for (int kind = MOCK_DELTA_REASONING; kind <= MOCK_DELTA_CONTENT; kind++) {
        size_t index;
        json_t *item;
        json_array_foreach (deltas, index, item) {
            json_t *reasoning = json_object_get (item, "reasoning");
            json_t *content = json_is_string (item) ? item : json_object_get (item, "content");
            if (kind == MOCK_DELTA_REASONING && json_is_string (reasoning)) {
                s_script_piece (&self->script, kind, reasoning);
                self->reasoning_deltas++;
            }
            if (kind == MOCK_DELTA_CONTENT && json_is_string (content)) {
                s_script_piece (&self->script, kind, content);
                self->content_deltas++;
            }
        }
    }
}

static void
s_directives (mock_reply_t *self, json_t *mock)
{
    if (!json_is_object (mock))
        return;
    s_script (self, json_object_get (mock, "deltas"));
    self->tokens = s_int (mock, "tokens", 1, MAX_TOKENS, -1);
    self->delay_ms = s_int (mock, "delay_ms", 0, MAX_DIRECTIVE, -1);
    self->queue_ms = s_int (mock, "queue_ms", 0, MAX_DIRECTIVE, -1);
    self->status = (int) s_int (mock, "status", 400, 599, 0);
    self->retry_after = s_int (mock, "retry_after", 0, MAX_DIRECTIVE, -1);
    self->reset_after = s_int (mock, "reset_after", 0, MAX_DIRECTIVE, -1);
    json_t *stall = json_object_get (mock, "stall");
    if (s_string_is (stall, "first"))
        self->stall = MOCK_STALL_FIRST;
    else
    if (s_string_is (stall, "after")) {
        self->stall = MOCK_STALL_AFTER;
        self->stall_after = s_int (mock, "stall_after", 0, MAX_DIRECTIVE, 0);
    }
    self->usage_when_asked = s_string_is (json_object_get (mock, "usage"), "when_asked");
}

//  Pieces of text when cut after each space (an empty tail is no piece).
static int64_t
s_pieces (const mesh_buf_t *text)
{
    const char *s = mesh_buf_head (text);
    size_t len = mesh_buf_size (text);
    int64_t pieces = 0;
    for (const char *at = s; (at = memchr (at, ' ', (size_t) (s + len - at))); at++)
        pieces++;
    if (len > 0 && s [len - 1] != ' ')
        pieces++;
    return pieces;
}

//  Where to cut the tool arguments: the middle byte, moved back to the
//  start of a UTF-8 sequence.
static size_t
s_middle (const char *s, size_t len)
{
    size_t mid = len / 2;
    while (mid > 0 && ((unsigned char) s [mid] & 0xc0) == 0x80)
        mid--;
    return mid;
}

static void
s_plan (mock_reply_t *self)
{
    if (self->scripted) {
        //  The pieces as given, cut by max_tokens like any answer
        int64_t budget = self->max_tokens > 0 ? self->max_tokens : INT64_MAX;
        int64_t reasoning = self->reasoning_deltas, content = self->content_deltas;
        self->calls = false;
        self->reasoning = reasoning > 0;
        self->reasoning_deltas = MESH_MIN (reasoning, budget);
        self->content_deltas = MESH_MIN (content, budget - self->reasoning_deltas);
        self->cut = reasoning + content > budget;
        return;
    }
    const char *prompt = mesh_buf_head (&self->prompt);
    size_t prompt_len = mesh_buf_size (&self->prompt);
    int64_t reasoning = 0;
    if (self->reasoning) {
        mesh_buf_append_str (&self->reasoning_text, "Thinking about: ");
        mesh_buf_append (&self->reasoning_text, prompt, prompt_len);
        reasoning = s_pieces (&self->reasoning_text);
    }
    const mock_replay_entry_t *recording = self->recording;
    if (recording && recording->content)
        mesh_buf_append (&self->content_text, recording->content, recording->content_len);
    else
    if (self->json_mode) {
        mesh_buf_append_str (&self->content_text, "{\"echo\": \"");
        mock_json_escape (&self->content_text, prompt, prompt_len);
        mesh_buf_append_str (&self->content_text, "\"}");
    }
    else {
        mesh_buf_append_str (&self->content_text, "Echo: ");
        mesh_buf_append (&self->content_text, prompt, prompt_len);
    }
    if (self->calls) {
        if (recording) {
            mesh_buf_reset (&self->tool_name);
            mesh_buf_append (&self->tool_name, recording->tool_name, recording->tool_name_len);
            mesh_buf_append (&self->tool_args, recording->tool_args, recording->tool_args_len);
        }
        else {
            mesh_buf_append_str (&self->tool_args, "{\"echo\":\"");
            mock_json_escape (&self->tool_args, prompt, prompt_len);
            mesh_buf_append_str (&self->tool_args, "\"}");
        }
        self->tool_args_cut = s_middle (mesh_buf_head (&self->tool_args),
                                        mesh_buf_size (&self->tool_args));
    }
    int64_t content = self->tokens > 0 ? self->tokens : s_pieces (&self->content_text);

    int64_t budget = self->max_tokens > 0 ? self->max_tokens : INT64_MAX;
    self->reasoning_deltas = MESH_MIN (reasoning, budget);
    self->cut = reasoning > budget;
    budget -= self->reasoning_deltas;
    if (self->calls) {
        self->tool_call = !self->cut && budget >= 1;
        self->cut = !self->tool_call;
        self->content_deltas = self->tool_call ? 3 : 0;
    }
    else {
        self->content_deltas = MESH_MIN (content, budget);
        self->cut = self->cut || content > budget;
    }
}

int
mock_reply_parse (mock_reply_t *self, const char *body, size_t len, char *error,
                  size_t error_size)
{
    s_reset (self);
    json_error_t jerr;
    json_t *root = json_loadb (body, len, 0, &jerr);
    if (!root) {
        snprintf (error, error_size, "Failed to parse the request body as JSON "
                  "(line %d, column %d)", jerr.line, jerr.column);
        return -1;
    }
    int rc = -1;
    json_t *model = json_object_get (root, "model");
    json_t *messages = json_object_get (root, "messages");
    if (!json_is_object (root)) {
        snprintf (error, error_size, "The request body must be a JSON object");
        goto done;
    }
    if (!json_is_string (model)) {
        snprintf (error, error_size, "model: expected a string");
        goto done;
    }
    if (!json_is_array (messages) || json_array_size (messages) == 0) {
        snprintf (error, error_size, "messages: expected a non-empty array");
        goto done;
    }
    const char *model_name = json_string_value (model);
    mesh_buf_append (&self->model, model_name, json_string_length (model));

    //  PROMPT, and the last tool message after it (a tool's result)
    json_t *user = NULL, *tool = NULL;
    size_t index;
    json_t *message;
    json_array_foreach (messages, index, message) {
        json_t *content = json_object_get (message, "content");
        self->prompt_tokens += s_content (content, NULL);
        json_t *role = json_object_get (message, "role");
        if (s_string_is (role, "user")) {
            user = content;
            tool = NULL;
        }
        else
        if (s_string_is (role, "tool"))
            tool = message;
    }
    if (user)
        s_content (user, &self->prompt);
    if (tool) {
        self->after_tool = true;
        s_content (json_object_get (tool, "content"), &self->tool_result);
    }
    self->json_mode = s_string_is (json_object_get (json_object_get (root, "response_format"),
                                                    "type"), "json_object");

    self->stream = json_is_true (json_object_get (root, "stream"));
    self->include_usage = json_is_true (json_object_get (json_object_get (root, "stream_options"),
                                                         "include_usage"));
    self->reasoning = strstr (model_name, "reasoner")
                   || s_string_is (json_object_get (json_object_get (root, "thinking"), "type"),
                                   "enabled");
    json_t *tools = json_object_get (root, "tools");
    if (json_is_array (tools) && json_array_size (tools) > 0
    &&  !s_string_is (json_object_get (root, "tool_choice"), "none")) {
        self->tools = true;
        json_t *function = json_object_get (json_array_get (tools, 0), "function");
        json_t *name = json_object_get (function, "name");
        if (json_is_string (name))
            mesh_buf_append (&self->tool_name, json_string_value (name), json_string_length (name));
    }
    //  A recorded answer; a model calls only a tool it was offered
    self->recording = mock_replay_find (self->replay, mesh_buf_head (&self->prompt),
                                        mesh_buf_size (&self->prompt),
                                        self->after_tool ? mesh_buf_head (&self->tool_result) : NULL,
                                        mesh_buf_size (&self->tool_result));
    if (self->recording && self->recording->tool_name && !self->tools)
        self->recording = NULL;
    //  After the tool's result, a model answers in words (an agent loop
    //  would never end otherwise)
    self->calls = self->recording ? self->recording->tool_name != NULL
                                  : self->tools && !self->after_tool;
    self->max_tokens = s_int (root, "max_tokens", 1, INT64_MAX, 0);
    if (self->max_tokens == 0)
        self->max_tokens = s_int (root, "max_completion_tokens", 1, INT64_MAX, 0);
    s_directives (self, json_object_get (root, "mock"));
    s_plan (self);
    rc = 0;
done:
    json_decref (root);
    return rc;
}

int64_t
mock_reply_deltas (const mock_reply_t *self)
{
    return self->reasoning_deltas + self->content_deltas;
}

//  The next piece of text from the cursor: up to and including a space.
static void
s_piece (const mesh_buf_t *text, size_t *cursor, mock_delta_t *delta)
{
    const char *start = mesh_buf_head (text) + *cursor;
    size_t left = mesh_buf_size (text) - *cursor;
    const char *space = memchr (start, ' ', left);
    size_t len = space ? (size_t) (space - start) + 1 : left;
    delta->text = start;
    delta->len = len;
    *cursor += len;
}

bool
mock_reply_next (mock_reply_t *self, mock_delta_t *delta)
{
    if (self->at >= mock_reply_deltas (self))
        return false;
    int64_t i = self->at++;
    if (self->scripted) {
        //  In order: a cut (max_tokens) leaves out only the last pieces
        if (i == 0)
            self->cursor = 0;
        const char *at = mesh_buf_head (&self->script) + self->cursor;
        uint32_t len;
        memcpy (&len, at + 1, 4);
        delta->kind = (unsigned char) at [0];
        delta->text = at + 5;
        delta->len = len;
        self->cursor += 5 + len;
        return true;
    }
    if (i < self->reasoning_deltas) {
        if (i == 0)
            self->cursor = 0;
        delta->kind = MOCK_DELTA_REASONING;
        s_piece (&self->reasoning_text, &self->cursor, delta);
        return true;
    }
    int64_t j = i - self->reasoning_deltas;
    if (self->calls) {
        const char *args = mesh_buf_head (&self->tool_args);
        size_t args_len = mesh_buf_size (&self->tool_args);
        if (j == 0)
            *delta = (mock_delta_t) { MOCK_DELTA_TOOL_HEAD, mesh_buf_head (&self->tool_name),
                                      mesh_buf_size (&self->tool_name) };
        else
        if (j == 1)
            *delta = (mock_delta_t) { MOCK_DELTA_TOOL_ARGS, args, self->tool_args_cut };
        else
            *delta = (mock_delta_t) { MOCK_DELTA_TOOL_ARGS, args + self->tool_args_cut,
                                      args_len - self->tool_args_cut };
        return true;
    }
    delta->kind = MOCK_DELTA_CONTENT;
    if (self->tokens > 0) {
        if (j == 0) {
            delta->text = mesh_buf_head (&self->content_text);
            delta->len = mesh_buf_size (&self->content_text);
        }
        else
        if (self->json_mode && !self->recording) {
            delta->text = " ";              //  still one JSON object
            delta->len = 1;
        }
        else {
            int n = snprintf (self->token_text, sizeof self->token_text, " t%lld", (long long) j);
            delta->text = self->token_text;
            delta->len = (size_t) n;
        }
        return true;
    }
    if (j == 0)
        self->cursor = 0;
    s_piece (&self->content_text, &self->cursor, delta);
    return true;
}

void
mock_reply_rewind (mock_reply_t *self)
{
    self->at = 0;
    self->cursor = 0;
}

const char *
mock_reply_finish_reason (const mock_reply_t *self)
{
    return self->cut ? "length" : self->calls ? "tool_calls" : "stop";
}

int64_t
mock_reply_completion_tokens (const mock_reply_t *self)
{
    return self->reasoning_deltas + (self->calls ? (self->tool_call ? 1 : 0) : self->content_deltas);
}

//  Selftest -----------------------------------------------------------------

//  Parses body and checks that the deltas, joined with '|', are expect.
static void
s_test_deltas (mock_reply_t *reply, const char *body, const char *expect)
{
    char error [200];
    int rc = mock_reply_parse (reply, body, strlen (body), error, sizeof error);
    assert (rc == 0);
    mesh_buf_t joined;
    mesh_buf_init (&joined);
    mock_delta_t delta;
    int64_t count = 0;
    while (mock_reply_next (reply, &delta)) {
        if (count++)
            mesh_buf_append (&joined, "|", 1);
        if (delta.kind == MOCK_DELTA_REASONING)
            mesh_buf_append (&joined, "R:", 2);
        else
        if (delta.kind == MOCK_DELTA_TOOL_HEAD)
            mesh_buf_append (&joined, "T:", 2);
        else
        if (delta.kind == MOCK_DELTA_TOOL_ARGS)
            mesh_buf_append (&joined, "A:", 2);
        mesh_buf_append (&joined, delta.text, delta.len);
    }
    assert (count == mock_reply_deltas (reply));
    mesh_buf_append (&joined, "", 1);
    if (strcmp (mesh_buf_head (&joined), expect) != 0) {
        fprintf (stderr, "mock_reply: got \"%s\"\n     expected \"%s\"\n",
                 mesh_buf_head (&joined), expect);
        assert (false);
    }
    mesh_buf_free (&joined);
}

void
mock_reply_test (bool verbose)
{
    (void) verbose;
    mock_reply_t reply;
    mock_reply_init (&reply);

    //  Echo, cut after each space; the last user message wins; prompt
    //  tokens count words in every message
    s_test_deltas (&reply,
        "{\"model\":\"deepseek-chat\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"be  brief\"},"
        "{\"role\":\"user\",\"content\":\"first\"},"
        "{\"role\":\"assistant\",\"content\":null},"
        "{\"role\":\"user\",\"content\":\"hello big world\"}]}",
        "Echo: |hello |big |world");
    assert (reply.prompt_tokens == 6 && !reply.stream && !reply.reasoning);
    assert (mock_reply_completion_tokens (&reply) == 4);
    assert (strcmp (mock_reply_finish_reason (&reply), "stop") == 0);

    //  Empty prompt, no user message, content parts
    s_test_deltas (&reply, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}",
                   "Echo: ");
    s_test_deltas (&reply, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
                   "Echo: ");
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"text\",\"text\":\"look \"},{\"type\":\"image_url\",\"image_url\":{}},"
        "{\"type\":\"text\",\"text\":\"here\"}]}]}",
        "Echo: |look |here");
    assert (reply.stream && reply.prompt_tokens == 2);

    //  tokens = N: the whole echo, then " t1" .. " t{N-1}"
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a b\"}],"
        "\"mock\":{\"tokens\":4,\"delay_ms\":5,\"queue_ms\":\"soon\",\"status\":200}}",
        "Echo: a b| t1| t2| t3");
    assert (reply.delay_ms == 5 && reply.queue_ms == -1 && reply.status == 0);

    //  Reasoning by model name or by "thinking", before the content
    s_test_deltas (&reply,
        "{\"model\":\"deepseek-reasoner\",\"messages\":[{\"role\":\"user\",\"content\":\"why not\"}]}",
        "R:Thinking |R:about: |R:why |R:not|Echo: |why |not");
    assert (mock_reply_completion_tokens (&reply) == 7);
    s_test_deltas (&reply,
        "{\"model\":\"deepseek-v4-pro\",\"thinking\":{\"type\":\"enabled\"},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "R:Thinking |R:about: |R:x|Echo: |x");

    //  max_tokens cuts across reasoning and content
    s_test_deltas (&reply,
        "{\"model\":\"deepseek-reasoner\",\"max_tokens\":4,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"why not\"}]}",
        "R:Thinking |R:about: |R:why |R:not");
    assert (strcmp (mock_reply_finish_reason (&reply), "length") == 0);
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"max_completion_tokens\":2,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"one two three\"}]}",
        "Echo: |one ");
    assert (strcmp (mock_reply_finish_reason (&reply), "length") == 0);
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"max_tokens\":3,"
        "\"messages\":[{\"role\":\"user\",\"content\":\"one two\"}]}",
        "Echo: |one |two");
    assert (strcmp (mock_reply_finish_reason (&reply), "stop") == 0);

    //  Tools: one call, arguments cut in the middle but not inside UTF-8
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"Paris\"}]}",
        "T:get_weather|A:{\"echo\":|A:\"Paris\"}");
    assert (strcmp (mock_reply_finish_reason (&reply), "tool_calls") == 0);
    assert (mock_reply_completion_tokens (&reply) == 1);
    //  {"echo":"x€"} (15 bytes) is cut at byte 7; {"echo":"€€€"} (20) at
    //  byte 10, inside the first €, so before it; {"echo":"€€€€€"} (26) at
    //  13, inside the second €
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"auto\","
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\\u20ac\"}]}",
        "T:f|A:{\"echo\"|A::\"x\xe2\x82\xac\"}");
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"\\u20ac\\u20ac\\u20ac\"}]}",
        "T:f|A:{\"echo\":\"|A:\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}");
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"\\u20ac\\u20ac\\u20ac\\u20ac\\u20ac\"}]}",
        "T:f|A:{\"echo\":\"\xe2\x82\xac|A:\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac\"}");
    //  tool_choice "none" disables tools
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"none\","
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        "Echo: |hi");
    //  Quotes and newlines in the prompt are escaped inside the arguments
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"say \\\"hi\\\"\\n\"}]}",
        "T:f|A:{\"echo\":\"sa|A:y \\\"hi\\\"\\n\"}");

    //  After a tool message that answers the last user message: text, even
    //  with tools offered; a new user message asks for a call again
    const char *tool_round =
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],\"messages\":["
        "{\"role\":\"user\",\"content\":\"look it up\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
        "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"found it\"}]}";
    s_test_deltas (&reply, tool_round, "Echo: |look |it |up");
    assert (reply.after_tool && !reply.calls);
    assert (strcmp (mock_reply_finish_reason (&reply), "stop") == 0);
    assert (mesh_memeq (mesh_buf_head (&reply.tool_result), mesh_buf_size (&reply.tool_result),
                        "found it"));
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],\"messages\":["
        "{\"role\":\"user\",\"content\":\"a\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"1\"},"
        "{\"role\":\"user\",\"content\":\"b\"}]}",
        "T:f|A:{\"echo|A:\":\"b\"}");
    assert (!reply.after_tool && reply.calls);

    //  JSON mode: one JSON object, also with tokens N (padded with spaces)
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"response_format\":{\"type\":\"json_object\"},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"give \\\"json\\\"\"}]}",
        "{\"echo\": |\"give |\\\"json\\\"\"}");
    assert (reply.json_mode);
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"response_format\":{\"type\":\"json_object\"},\"mock\":{\"tokens\":3},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"echo\": \"x\"}| | ");
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"response_format\":{\"type\":\"text\"},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "Echo: |x");

    //  Recordings: a tool call before the tool's answer, another after an
    //  error, text after any other answer; a recorded call needs tools
    char error [200];
    const char *recordings =
        "{\"recordings\":["
        "{\"prompt\":\"look it up\",\"tool_call\":{\"name\":\"run_sql\","
        "\"arguments\":{\"sql\":\"SELECT x\"}}},"
        "{\"prompt\":\"look it up\",\"after_tool\":\"no such column\","
        "\"tool_call\":{\"name\":\"run_sql\",\"arguments\":{\"sql\":\"SELECT 1\"}}},"
        "{\"prompt\":\"look it up\",\"after_tool\":\"\",\"content\":\"It is one.\"}]}";
    mock_replay_t *replay = mock_replay_parse (recordings, strlen (recordings), "r", error,
                                               sizeof error);
    assert (replay);
    reply.replay = replay;
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":\"look it up\"}]}",
        "T:run_sql|A:{\"sql\":\"S|A:ELECT x\"}");
    assert (strcmp (mock_reply_finish_reason (&reply), "tool_calls") == 0);
    const char *repair =
        "{\"model\":\"m\",\"tools\":[{\"function\":{\"name\":\"f\"}}],\"messages\":["
        "{\"role\":\"user\",\"content\":\"look it up\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
        "\"type\":\"function\",\"function\":{\"name\":\"run_sql\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":[{\"type\":\"text\","
        "\"text\":\"error: no such column: x\"}]}]}";
    s_test_deltas (&reply, repair, "T:run_sql|A:{\"sql\":\"S|A:ELECT 1\"}");
    s_test_deltas (&reply, tool_round, "It |is |one.");
    assert (strcmp (mock_reply_finish_reason (&reply), "stop") == 0);
    s_test_deltas (&reply, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"look it up\"}]}",
                   "Echo: |look |it |up");
    assert (!reply.recording);
    s_test_deltas (&reply, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"other\"}]}",
                   "Echo: |other");
    reply.replay = NULL;
    mock_replay_destroy (&replay);

    //  A script: the pieces as given, reasoning first; cut by max_tokens
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
        "\"mock\":{\"deltas\":[\"d\",\"a\",{\"reasoning\":\"r1\"},{\"content\":\"r\"},7,"
        "{\"reasoning\":\"r2\"},\"n\"]}}",
        "R:r1|R:r2|d|a|r|n");
    assert (reply.reasoning && mock_reply_completion_tokens (&reply) == 6);
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"max_tokens\":3,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
        "\"mock\":{\"deltas\":[\"a\",{\"reasoning\":\"r1\"},\"b\",\"c\"]}}",
        "R:r1|a|b");
    assert (strcmp (mock_reply_finish_reason (&reply), "length") == 0);
    s_test_deltas (&reply,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
        "\"mock\":{\"deltas\":[]}}", "");

    //  Directives: stall and reset; bad values are ignored
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                       "\"mock\":{\"stall\":\"after\",\"stall_after\":2,\"reset_after\":-3,"
                       "\"status\":503,\"retry_after\":7}}";
    assert (mock_reply_parse (&reply, body, strlen (body), error, sizeof error) == 0);
    assert (reply.stall == MOCK_STALL_AFTER && reply.stall_after == 2);
    assert (reply.reset_after == -1 && reply.status == 503 && reply.retry_after == 7);

    //  Refusals
    const char *bad [] = {
        "{\"model\":", "[1]", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"model\":7,\"messages\":[{}]}", "{\"model\":\"m\",\"messages\":[]}",
        "{\"model\":\"m\",\"messages\":\"hi\"}"
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++) {
        error [0] = 0;
        assert (mock_reply_parse (&reply, bad [i], strlen (bad [i]), error, sizeof error) == -1);
        assert (error [0]);
    }

    //  The escaper
    mesh_buf_t out;
    mesh_buf_init (&out);
    const char raw [] = "a\"b\\c\nd\te\x01\x1f\xc3\xa9/\x7f";
    mock_json_escape (&out, raw, sizeof raw - 1);
    mesh_buf_append (&out, "", 1);
    assert (strcmp (mesh_buf_head (&out), "a\\\"b\\\\c\\nd\\te\\u0001\\u001f\xc3\xa9/\x7f") == 0);
    mesh_buf_free (&out);

    mock_reply_free (&reply);
    mock_reply_free (&reply);
}
