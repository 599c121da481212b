/*  mesh_completion: see mesh_completion.h.

    The reference reading is mesh_completion_add_parsed (jansson); the
    scanner below takes the chunks it can read exactly as that would, and
    hands every other one over untouched.                                   */
#include "mesh_completion.h"
#include "mesh_jscan.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    bool seen;
    json_t *finish;                 //  first value, then every non-empty one
    json_t *logprobs;               //  null, or the joined object
    json_t *extra;                  //  the choice's other members
    json_t *role;
    mesh_buf_t content, reasoning, refusal;
    bool has_content, has_reasoning, has_refusal;
    json_t *message_extra;          //  the delta's other members
    json_t *tool_calls;             //  [{"index": i, ...}] in order of arrival
    json_t *function_call;          //  the legacy single call
} choice_t;

struct mesh_completion_t {
    json_t *top;                    //  top-level members but choices
    json_t *errors;                 //  payloads that are not chunks
    choice_t choices [MESH_COMPLETION_CHOICES];
    size_t bytes;                   //  text kept, against the bound
    size_t max_bytes;
    bool truncated;
    mesh_buf_t scratch;             //  a decoded string (the scanner's)
    size_t fast;                    //  chunks read by the scanner
    size_t pieces;                  //  chunks that carried text
    bool piece;                     //  the chunk being read carried text
};

typedef mesh_completion_t self_t;

mesh_completion_t *
mesh_completion_new (size_t max_bytes)
{
    self_t *self = calloc (1, sizeof *self);
    assert (self);
    self->max_bytes = max_bytes ? max_bytes : SIZE_MAX;
    return self;
}

void
mesh_completion_destroy (self_t **self_p)
{
    self_t *self = *self_p;
    if (!self)
        return;
    json_decref (self->top);
    json_decref (self->errors);
    for (size_t i = 0; i < MESH_COMPLETION_CHOICES; i++) {
        choice_t *choice = &self->choices [i];
        json_decref (choice->finish);
        json_decref (choice->logprobs);
        json_decref (choice->extra);
        json_decref (choice->role);
        mesh_buf_free (&choice->content);
        mesh_buf_free (&choice->reasoning);
        mesh_buf_free (&choice->refusal);
        json_decref (choice->message_extra);
        json_decref (choice->tool_calls);
        json_decref (choice->function_call);
    }
    mesh_buf_free (&self->scratch);
    free (self);
    *self_p = NULL;
}

//  The bound ----------------------------------------------------------------

//  How much of text (len bytes) fits the bound, cut at a character
static size_t
s_room (self_t *self, const char *text, size_t len)
{
    //  Once cut, nothing more: a later piece would leave a hole in the text
    size_t room = self->truncated ? 0
                : self->bytes < self->max_bytes ? self->max_bytes - self->bytes : 0;
    if (len <= room)
        return len;
    self->truncated = true;
    while (room > 0 && ((unsigned char) text [room] & 0xc0) == 0x80)
        room--;
    return room;
}

//  Takes size bytes of a value that cannot be cut; false when it does not fit
static bool
s_take (self_t *self, size_t size)
{
    if (self->truncated || size > self->max_bytes - self->bytes) {
        self->truncated = true;
        return false;
    }
    self->bytes += size;
    return true;
}

static void
s_append (self_t *self, mesh_buf_t *buf, const char *text, size_t len)
{
    self->piece = self->piece || len > 0;
    size_t take = s_room (self, text, len);
    mesh_buf_append (buf, text, take);
    self->bytes += take;
}

//  JavaScript's truthiness, which decides what the SDK takes
static bool
s_truthy (json_t *value)
{
    if (!value)
        return false;
    switch (json_typeof (value)) {
        case JSON_STRING:  return json_string_length (value) > 0;
        case JSON_INTEGER: return json_integer_value (value) != 0;
        case JSON_REAL:    return json_real_value (value) != 0;
        case JSON_TRUE:
        case JSON_OBJECT:
        case JSON_ARRAY:   return true;
        default:           return false;
    }
}

static const char *
s_head (mesh_buf_t *buf)
{
    return mesh_buf_size (buf) ? mesh_buf_head (buf) : "";
}

//  Members of from, but the ones named in skip, overwrite those of *into
static void
s_assign (json_t **into, json_t *from, const char *const *skip)
{
    const char *key;
    json_t *value;
    json_object_foreach (from, key, value) {
        bool skipped = false;
        for (size_t i = 0; skip [i] && !skipped; i++)
            skipped = strcmp (key, skip [i]) == 0;
        if (skipped)
            continue;
        if (!*into)
            *into = json_object ();
        json_object_set (*into, key, value);
    }
}

//  Members of from that *into does not have yet (the SDK spreads unknown
//  members first, so its own ones win)
static void
s_fill (json_t *into, json_t *from, const char *const *skip)
{
    const char *key;
    json_t *value;
    json_object_foreach (from, key, value) {
        bool skipped = false;
        for (size_t i = 0; skip && skip [i] && !skipped; i++)
            skipped = strcmp (key, skip [i]) == 0;
        if (!skipped && !json_object_get (into, key))
            json_object_set (into, key, value);
    }
}

//  A JSON string member joined with a piece (a tool call's arguments)
static void
s_join (self_t *self, json_t *object, const char *key, json_t *piece)
{
    if (!json_is_string (piece) || !json_string_length (piece))
        return;
    self->piece = true;
    size_t take = s_room (self, json_string_value (piece), json_string_length (piece));
    json_t *old = json_object_get (object, key);
    size_t have = json_is_string (old) ? json_string_length (old) : 0;
    char *joined = malloc (have + take + 1);
    assert (joined);
    if (have)
        memcpy (joined, json_string_value (old), have);
    memcpy (joined + have, json_string_value (piece), take);
    json_object_set_new (object, key, json_stringn (joined, have + take));
    free (joined);
    self->bytes += take;
}

//  A string member replaced by a value the bound lets in whole
static void
s_replace (self_t *self, json_t *object, const char *key, json_t *value)
{
    size_t size = json_is_string (value) ? json_string_length (value) : 16;
    if (s_take (self, size))
        json_object_set (object, key, value);
}

//  The reference reading ------------------------------------------------------

static void
s_logprobs (self_t *self, choice_t *choice, json_t *logprobs)
{
    if (!s_truthy (logprobs))
        return;
    char *text = json_dumps (logprobs, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t size = text ? strlen (text) : 0;
    free (text);
    if (!s_take (self, size))
        return;
    if (!s_truthy (choice->logprobs)) {
        json_decref (choice->logprobs);
        //  A copy: the SDK pushes a choice's first logprobs onto themselves,
        //  doubling them; we do not
        choice->logprobs = json_deep_copy (logprobs);
        return;
    }
    if (!json_is_object (choice->logprobs) || !json_is_object (logprobs))
        return;
    const char *key;
    json_t *value;
    json_object_foreach (logprobs, key, value) {
        bool list = strcmp (key, "content") == 0 || strcmp (key, "refusal") == 0;
        if (!list) {
            json_object_set (choice->logprobs, key, value);
            continue;
        }
        if (!s_truthy (value) || !json_is_array (value))
            continue;
        json_t *kept = json_object_get (choice->logprobs, key);
        if (!json_is_array (kept)) {
            kept = json_array ();
            json_object_set_new (choice->logprobs, key, kept);
        }
        json_array_extend (kept, value);
    }
}

static void
s_tool_calls (self_t *self, choice_t *choice, json_t *calls)
{
    if (!json_is_array (calls))
        return;
    if (!choice->tool_calls)
        choice->tool_calls = json_array ();
    size_t i;
    json_t *call;
    json_array_foreach (calls, i, call) {
        json_t *index = json_object_get (call, "index");
        if (!json_is_integer (index))
            continue;
        json_t *kept = NULL, *each;
        size_t k;
        json_array_foreach (choice->tool_calls, k, each)
            if (json_integer_value (json_object_get (each, "index")) == json_integer_value (index))
                kept = each;
        if (!kept) {
            if (json_array_size (choice->tool_calls) >= MESH_COMPLETION_TOOL_CALLS)
                continue;
            kept = json_pack ("{s:O}", "index", index);
            json_array_append_new (choice->tool_calls, kept);
        }
        static const char *const named [] = { "index", "id", "type", "function", NULL };
        s_assign (&kept, call, named);
        json_t *id = json_object_get (call, "id"), *type = json_object_get (call, "type");
        if (s_truthy (id))
            s_replace (self, kept, "id", id);
        if (s_truthy (type))
            s_replace (self, kept, "type", type);
        json_t *fn = json_object_get (call, "function");
        if (!s_truthy (fn))
            continue;
        json_t *into = json_object_get (kept, "function");
        if (!into) {
            json_t *name = json_object_get (fn, "name");
            into = json_object ();
            json_object_set_new (into, "name", name && !json_is_null (name) ? json_incref (name)
                                                                             : json_string (""));
            json_object_set_new (into, "arguments", json_string (""));
            json_object_set_new (kept, "function", into);
        }
        json_t *name = json_object_get (fn, "name");
        if (s_truthy (name))
            s_replace (self, into, "name", name);
        s_join (self, into, "arguments", json_object_get (fn, "arguments"));
    }
}

static void
s_function_call (self_t *self, choice_t *choice, json_t *call)
{
    if (!s_truthy (call) || !json_is_object (call))
        return;
    if (!choice->function_call) {
        choice->function_call = json_object ();
        s_assign (&choice->function_call, call, (const char *const []) { "arguments", NULL });
    }
    json_t *name = json_object_get (call, "name");
    if (s_truthy (name))
        s_replace (self, choice->function_call, "name", name);
    s_join (self, choice->function_call, "arguments", json_object_get (call, "arguments"));
}

static void
s_delta (self_t *self, choice_t *choice, json_t *delta)
{
    static const char *const named [] = { "content", "refusal", "function_call", "role",
                                          "tool_calls", "reasoning_content", NULL };
    s_assign (&choice->message_extra, delta, named);
    json_t *content = json_object_get (delta, "content");
    if (json_is_string (content) && json_string_length (content)) {
        choice->has_content = true;
        s_append (self, &choice->content, json_string_value (content), json_string_length (content));
    }
    json_t *refusal = json_object_get (delta, "refusal");
    if (json_is_string (refusal) && json_string_length (refusal)) {
        choice->has_refusal = true;
        s_append (self, &choice->refusal, json_string_value (refusal), json_string_length (refusal));
    }
    json_t *reasoning = json_object_get (delta, "reasoning_content");
    if (json_is_string (reasoning)) {
        choice->has_reasoning = true;
        s_append (self, &choice->reasoning, json_string_value (reasoning),
                  json_string_length (reasoning));
    }
    json_t *role = json_object_get (delta, "role");
    if (s_truthy (role)) {
        json_decref (choice->role);
        choice->role = json_incref (role);
    }
    s_function_call (self, choice, json_object_get (delta, "function_call"));
    s_tool_calls (self, choice, json_object_get (delta, "tool_calls"));
}

static void
s_choice (self_t *self, json_t *each)
{
    json_t *index = json_object_get (each, "index");
    if (!json_is_integer (index) || json_integer_value (index) < 0
    ||  json_integer_value (index) >= MESH_COMPLETION_CHOICES)
        return;
    choice_t *choice = &self->choices [json_integer_value (index)];
    json_t *finish = json_object_get (each, "finish_reason");
    json_t *logprobs = json_object_get (each, "logprobs");
    if (!choice->seen) {
        choice->seen = true;
        choice->finish = finish ? json_incref (finish) : json_null ();
        choice->logprobs = json_null ();
    }
    s_logprobs (self, choice, logprobs);
    if (s_truthy (finish)) {
        json_decref (choice->finish);
        choice->finish = json_incref (finish);
    }
    static const char *const named [] = { "delta", "finish_reason", "index", "logprobs", NULL };
    s_assign (&choice->extra, each, named);
    json_t *delta = json_object_get (each, "delta");
    if (json_is_object (delta))
        s_delta (self, choice, delta);
}

//  A payload that is not a chunk, kept as sent
static void
s_error (self_t *self, const char *data, size_t len, json_t *parsed)
{
    if (!self->errors)
        self->errors = json_array ();
    if (json_array_size (self->errors) >= MESH_COMPLETION_ERRORS)
        return;
    size_t take = s_room (self, data, len);
    json_t *kept = parsed && take == len ? json_incref (parsed)
                 : mesh_utf8_valid (data, take) ? json_stringn (data, take) : NULL;
    if (kept) {
        json_array_append_new (self->errors, kept);
        self->bytes += take;
    }
}

void
mesh_completion_add_parsed (self_t *self, const char *data, size_t len)
{
    json_t *chunk = json_loadb (data, len, 0, NULL);
    json_t *choices = json_object_get (chunk, "choices");
    if (!json_is_array (choices)) {
        s_error (self, data, len, chunk);
        json_decref (chunk);
        return;
    }
    if (!self->top)
        self->top = json_object ();
    s_assign (&self->top, chunk, (const char *const []) { "choices", NULL });
    size_t i;
    json_t *each;
    self->piece = false;
    json_array_foreach (choices, i, each)
        s_choice (self, each);
    if (self->piece)
        self->pieces++;
    json_decref (chunk);
}

//  The scanner ----------------------------------------------------------------
//
//  Reads the common chunk,
//      {"id":..., "object":..., "created":..., "model":...,
//       "choices":[{"index":0, "delta":{"content":"..."},
//       "logprobs":null, "finish_reason":null}], "usage":null}
//  when every top-level member repeats the value already kept, the choice
//  is one already seen, and its delta has content and/or
//  reasoning_content (strings or null) and nothing else.  Anything else is
//  not its business: -1, and nothing was changed.

typedef struct {
    long index;
    const char *content, *reasoning, *finish;
    size_t content_len, reasoning_len, finish_len;
} scanned_t;

static int
s_scan_delta (mesh_jscan_t *s, scanned_t *out)
{
    if (!mesh_jscan_eat (s, '{'))
        return -1;
    if (mesh_jscan_eat (s, '}'))
        return 0;
    bool content = false, reasoning = false;
    do {
        const char *key;
        size_t len;
        if (mesh_jscan_key (s, &key, &len) < 0)
            return -1;
        if (mesh_memeq (key, len, "content") && !content) {
            content = true;
            if (mesh_jscan_string_or_null (s, &out->content, &out->content_len) < 0)
                return -1;
        }
        else
        if (mesh_memeq (key, len, "reasoning_content") && !reasoning) {
            reasoning = true;
            if (mesh_jscan_string_or_null (s, &out->reasoning, &out->reasoning_len) < 0)
                return -1;
        }
        else
            return -1;                          //  role, tool calls, a duplicate, the unknown
    } while (mesh_jscan_eat (s, ','));
    return mesh_jscan_eat (s, '}') ? 0 : -1;
}

static int
s_scan_choice (self_t *self, mesh_jscan_t *s, scanned_t *out)
{
    if (!mesh_jscan_eat (s, '{'))
        return -1;
    bool index = false, delta = false, finish = false, logprobs = false;
    if (!mesh_jscan_eat (s, '}'))
        do {
            const char *key;
            size_t len;
            if (mesh_jscan_key (s, &key, &len) < 0)
                return -1;
            if (mesh_memeq (key, len, "index") && !index) {
                index = true;
                int64_t value;
                if (mesh_jscan_integer (s, &value) < 0 || value < 0
                ||  value >= MESH_COMPLETION_CHOICES || !self->choices [value].seen)
                    return -1;
                out->index = (long) value;
            }
            else
            if (mesh_memeq (key, len, "delta") && !delta) {
                delta = true;
                if (s_scan_delta (s, out) < 0)
                    return -1;
            }
            else
            if (mesh_memeq (key, len, "finish_reason") && !finish) {
                finish = true;
                if (mesh_jscan_string_or_null (s, &out->finish, &out->finish_len) < 0)
                    return -1;
            }
            else
            if (mesh_memeq (key, len, "logprobs") && !logprobs) {
                logprobs = true;
                if (!mesh_jscan_literal (s, "null"))
                    return -1;
            }
            else
                return -1;
        } while (mesh_jscan_eat (s, ','));
    return index && mesh_jscan_eat (s, '}') ? 0 : -1;
}

//  A top-level member that overwrites nothing: the value already kept
static int
s_scan_same (self_t *self, mesh_jscan_t *s, const char *key, size_t len)
{
    json_t *kept = json_object_getn (self->top, key, len);
    if (!kept)
        return -1;
    switch (json_typeof (kept)) {
        case JSON_STRING: {
            const char *body, *text;
            size_t body_len, text_len;
            if (mesh_jscan_string (s, &body, &body_len) < 0)
                return -1;
            mesh_jscan_text (body, body_len, &self->scratch, &text, &text_len);
            return json_string_length (kept) == text_len
                && memcmp (json_string_value (kept), text, text_len) == 0 ? 0 : -1;
        }
        case JSON_INTEGER: {
            int64_t value;
            return mesh_jscan_integer (s, &value) == 0 && value == json_integer_value (kept) ? 0 : -1;
        }
        case JSON_NULL:  return mesh_jscan_literal (s, "null") ? 0 : -1;
        case JSON_TRUE:  return mesh_jscan_literal (s, "true") ? 0 : -1;
        case JSON_FALSE: return mesh_jscan_literal (s, "false") ? 0 : -1;
        default:         return -1;
    }
}

//  The whole payload; 0 when read, -1 when it is jansson's
static int
s_scan (self_t *self, const char *data, size_t len, scanned_t *out)
{
    mesh_jscan_t scan;
    mesh_jscan_t *s = &scan;
    mesh_jscan_init (s, data, len, &self->scratch);
    memset (out, 0, sizeof *out);
    if (!mesh_jscan_eat (s, '{'))
        return -1;
    bool choices = false;
    if (!mesh_jscan_eat (s, '}'))
        do {
            const char *key;
            size_t key_len;
            if (mesh_jscan_key (s, &key, &key_len) < 0)
                return -1;
            if (mesh_memeq (key, key_len, "choices")) {
                //  One choice exactly, once
                if (choices || !mesh_jscan_eat (s, '[') || s_scan_choice (self, s, out) < 0
                ||  !mesh_jscan_eat (s, ']'))
                    return -1;
                choices = true;
            }
            else
            if (s_scan_same (self, s, key, key_len) < 0)
                return -1;
        } while (mesh_jscan_eat (s, ','));
    if (!mesh_jscan_eat (s, '}'))
        return -1;
    return choices && mesh_jscan_done (s) ? 0 : -1;
}

void
mesh_completion_add (self_t *self, const char *data, size_t len)
{
    scanned_t scanned;
    if (!self->top || s_scan (self, data, len, &scanned) < 0) {
        mesh_completion_add_parsed (self, data, len);
        return;
    }
    self->fast++;
    if ((scanned.content && scanned.content_len) || (scanned.reasoning && scanned.reasoning_len))
        self->pieces++;
    choice_t *choice = &self->choices [scanned.index];
    const char *text;
    size_t text_len;
    if (scanned.content && scanned.content_len) {
        mesh_jscan_text (scanned.content, scanned.content_len, &self->scratch, &text, &text_len);
        choice->has_content = true;
        s_append (self, &choice->content, text, text_len);
    }
    if (scanned.reasoning) {
        mesh_jscan_text (scanned.reasoning, scanned.reasoning_len, &self->scratch, &text, &text_len);
        choice->has_reasoning = true;
        s_append (self, &choice->reasoning, text, text_len);
    }
    if (scanned.finish && scanned.finish_len) {
        mesh_jscan_text (scanned.finish, scanned.finish_len, &self->scratch, &text, &text_len);
        json_decref (choice->finish);
        choice->finish = json_stringn (text, text_len);
    }
}

//  What it says -------------------------------------------------------------

bool
mesh_completion_started (self_t *self)
{
    return self->top != NULL;
}

bool
mesh_completion_truncated (self_t *self)
{
    return self->truncated;
}

json_t *
mesh_completion_usage (self_t *self)
{
    json_t *usage = json_object_get (self->top, "usage");
    return json_is_object (usage) ? usage : NULL;
}

const char *
mesh_completion_finish (self_t *self, size_t index)
{
    if (index >= MESH_COMPLETION_CHOICES || !self->choices [index].seen)
        return NULL;
    json_t *finish = self->choices [index].finish;
    return s_truthy (finish) && json_is_string (finish) ? json_string_value (finish) : NULL;
}

size_t
mesh_completion_pieces (self_t *self)
{
    return self->pieces;
}

size_t
mesh_completion_fast_count (self_t *self)
{
    return self->fast;
}

//  Rendering ------------------------------------------------------------------

static json_t *
s_text_or_null (bool has, mesh_buf_t *buf)
{
    //  Appended from valid strings, cut at characters: valid UTF-8
    return has ? json_stringn (s_head (buf), mesh_buf_size (buf)) : json_null ();
}

static json_t *
s_render_tool_calls (json_t *kept)
{
    json_t *calls = json_array ();
    size_t k;
    json_t *call;
    json_array_foreach (kept, k, call) {
        json_t *out = json_object ();
        json_t *id = json_object_get (call, "id"), *type = json_object_get (call, "type");
        json_object_set_new (out, "id", id ? json_incref (id) : json_string (""));
        json_object_set_new (out, "type", type ? json_incref (type) : json_string ("function"));
        json_t *fn = json_object_get (call, "function");
        json_object_set_new (out, "function", fn ? json_incref (fn)
                             : json_pack ("{s:s, s:s}", "name", "", "arguments", ""));
        s_fill (out, call, (const char *const []) { "index", NULL });
        json_array_append_new (calls, out);
    }
    return calls;
}

static json_t *
s_render_choice (choice_t *choice, size_t index)
{
    json_t *message = json_object ();
    json_object_set_new (message, "role", choice->role ? json_incref (choice->role)
                                                       : json_string ("assistant"));
    //  No text at all: "" as a non-stream answer has it, but null beside a
    //  tool call, a function call or a refusal
    bool other = (choice->tool_calls && json_array_size (choice->tool_calls))
              || choice->function_call || choice->has_refusal;
    json_object_set_new (message, "content", s_text_or_null (choice->has_content || !other,
                                                             &choice->content));
    if (choice->function_call) {
        //  The SDK keeps nothing else of a legacy function call's message
        json_t *call = json_copy (choice->function_call);
        if (!json_object_get (call, "name"))
            json_object_set_new (call, "name", json_string (""));
        if (!json_object_get (call, "arguments"))
            json_object_set_new (call, "arguments", json_string (""));
        json_object_set_new (message, "function_call", call);
    }
    else {
        if (choice->has_reasoning)
            json_object_set_new (message, "reasoning_content",
                                 s_text_or_null (true, &choice->reasoning));
        if (choice->tool_calls && json_array_size (choice->tool_calls))
            json_object_set_new (message, "tool_calls", s_render_tool_calls (choice->tool_calls));
        s_fill (message, choice->message_extra, NULL);
    }
    if (choice->has_refusal)
        json_object_set_new (message, "refusal", s_text_or_null (true, &choice->refusal));
    json_t *out = json_pack ("{s:I, s:o, s:O, s:O}", "index", (json_int_t) index,
                             "message", message, "logprobs", choice->logprobs,
                             "finish_reason", s_truthy (choice->finish) ? choice->finish : json_null ());
    s_fill (out, choice->extra, NULL);
    return out;
}

void
mesh_completion_render (self_t *self, mesh_buf_t *out)
{
    json_t *answer = json_object ();
    static const char *const head [] = { "id", "object", "created", "model", NULL };
    for (size_t i = 0; head [i]; i++) {
        json_t *value = i == 1 ? json_string ("chat.completion")
                      : json_incref (json_object_get (self->top, head [i]));
        if (value)
            json_object_set_new (answer, head [i], value);
    }
    json_t *fingerprint = json_object_get (self->top, "system_fingerprint");
    if (s_truthy (fingerprint))
        json_object_set (answer, "system_fingerprint", fingerprint);
    json_t *choices = json_array ();
    for (size_t i = 0; i < MESH_COMPLETION_CHOICES; i++)
        if (self->choices [i].seen)
            json_array_append_new (choices, s_render_choice (&self->choices [i], i));
    json_object_set_new (answer, "choices", choices);
    //  A falsy system_fingerprint is dropped, not taken from the rest
    s_fill (answer, self->top, (const char *const []) { "system_fingerprint", NULL });
    if (self->errors)
        json_object_set (answer, "errors", self->errors);
    char *text = json_dumps (answer, JSON_COMPACT);
    json_decref (answer);
    mesh_buf_reset (out);
    if (text) {
        mesh_buf_append_str (out, text);
        free (text);
    }
}

//  Selftest -------------------------------------------------------------------

//  Feeds both readings the same payloads; they must render the same
static void
s_test_same (const char **payloads, size_t count, size_t max_bytes, size_t want_fast,
             mesh_buf_t *rendered)
{
    self_t *fast = mesh_completion_new (max_bytes), *parsed = mesh_completion_new (max_bytes);
    for (size_t i = 0; i < count; i++) {
        mesh_completion_add (fast, payloads [i], strlen (payloads [i]));
        mesh_completion_add_parsed (parsed, payloads [i], strlen (payloads [i]));
    }
    mesh_buf_t other;
    mesh_buf_init (&other);
    mesh_completion_render (fast, rendered);
    mesh_completion_render (parsed, &other);
    assert (mesh_buf_size (rendered) == mesh_buf_size (&other)
            && memcmp (mesh_buf_head (rendered), mesh_buf_head (&other), mesh_buf_size (&other)) == 0);
    assert (fast->fast == want_fast);
    assert (fast->truncated == parsed->truncated);
    assert (fast->pieces == parsed->pieces);
    mesh_buf_append (rendered, "", 1);
    mesh_buf_free (&other);
    mesh_completion_destroy (&fast);
    mesh_completion_destroy (&parsed);
    assert (!fast && !parsed);
}

static json_t *
s_test_message (mesh_buf_t *rendered, json_t **answer)
{
    *answer = json_loads (mesh_buf_head (rendered), 0, NULL);
    assert (*answer);
    return json_object_get (json_array_get (json_object_get (*answer, "choices"), 0), "message");
}

void
mesh_completion_test (bool verbose)
{
    (void) verbose;
    mesh_buf_t out;
    mesh_buf_init (&out);
    //  DeepSeek's shape: the first chunk and the usage one through jansson,
    //  the deltas between through the scanner
    const char *deepseek [] = {
        "{\"id\":\"a\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"deepseek-reasoner\","
        "\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
        "\"content\":null,\"reasoning_content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}",
        "{\"id\":\"a\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"deepseek-reasoner\","
        "\"system_fingerprint\":\"fp\",\"choices\":[{\"index\":0,\"delta\":{\"content\":null,"
        "\"reasoning_content\":\"Hm\"},\"logprobs\":null,\"finish_reason\":null}]}",
        "{\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Caf\\u00e9 \\\"ok\\\"\\n\\ud83d\\ude00\","
        "\"reasoning_content\":null},\"logprobs\":null,\"finish_reason\":null}]}",
        "{\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \xc3\xa9t\xc3\xa9\"},"
        "\"finish_reason\":null}]}",
        "{\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"logprobs\":null,"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}"
    };
    s_test_same (deepseek, MESH_ARRAY_SIZE (deepseek), 4096, 3, &out);
    json_t *answer;
    json_t *message = s_test_message (&out, &answer);
    assert (mesh_streq (json_string_value (json_object_get (message, "content")),
                        "Caf\xc3\xa9 \"ok\"\n\xf0\x9f\x98\x80 \xc3\xa9t\xc3\xa9"));
    assert (mesh_streq (json_string_value (json_object_get (message, "reasoning_content")), "Hm"));
    assert (mesh_streq (json_string_value (json_object_get (message, "role")), "assistant"));
    assert (!json_object_get (message, "refusal"));
    assert (mesh_streq (json_string_value (json_object_get (answer, "model")), "deepseek-reasoner"));
    assert (mesh_streq (json_string_value (json_object_get (answer, "object")), "chat.completion"));
    json_t *choice = json_array_get (json_object_get (answer, "choices"), 0);
    assert (mesh_streq (json_string_value (json_object_get (choice, "finish_reason")), "stop"));
    assert (json_is_null (json_object_get (choice, "logprobs")));
    assert (json_integer_value (json_object_get (json_object_get (answer, "usage"), "completion_tokens")) == 7);
    json_decref (answer);
    //  Cut at the bound the same way both ways: "Hm" and "Caf", the bound
    //  falling inside the e-acute's two bytes
    s_test_same (deepseek, MESH_ARRAY_SIZE (deepseek), 6, 3, &out);
    assert (strstr (mesh_buf_head (&out), "\"content\":\"Caf\""));

    //  A turn of only tool calls: content null although its first delta
    //  had ""; arguments joined, the name replaced, no index in the answer
    const char *tools [] = {
        "{\"id\":\"c2\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
        "{\"role\":\"assistant\",\"content\":\"\"}}]}",
        "{\"id\":\"c2\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
        "\"id\":\"k\",\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{\\\"a\\\"\"}}]}}]}",
        "{\"id\":\"c2\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
        "\"function\":{\"arguments\":\":1}\"}},{\"index\":1,\"id\":\"j\",\"type\":\"function\","
        "\"function\":{\"name\":\"h\"}}]},\"finish_reason\":\"tool_calls\"}]}",
    };
    s_test_same (tools, MESH_ARRAY_SIZE (tools), 0, 0, &out);
    message = s_test_message (&out, &answer);
    assert (json_is_null (json_object_get (message, "content")));
    json_t *calls = json_object_get (message, "tool_calls");
    assert (json_array_size (calls) == 2);
    json_t *call = json_array_get (calls, 0);
    assert (!json_object_get (call, "index"));
    assert (mesh_streq (json_string_value (json_object_get (call, "id")), "k"));
    json_t *function = json_object_get (call, "function");
    assert (mesh_streq (json_string_value (json_object_get (function, "name")), "g"));
    assert (mesh_streq (json_string_value (json_object_get (function, "arguments")), "{\"a\":1}"));
    function = json_object_get (json_array_get (calls, 1), "function");
    assert (mesh_streq (json_string_value (json_object_get (function, "arguments")), ""));
    json_decref (answer);

    //  What the scanner leaves to jansson: a new choice, an escaped key, a
    //  lone surrogate, \u0000, an exponent, two choices, a changed id, an
    //  error, junk, logprobs
    const char *others [] = {
        "{\"id\":\"b\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}",
        "{\"id\":\"b\",\"choices\":[{\"index\":1,\"delta\":{\"content\":\"o\"}}]}",
        "{\"ch\\u006fices\":[{\"index\":0,\"delta\":{\"content\":\"y\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\ud800\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\\u0000b\"}}]}",
        "{\"created\":1e3,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"z\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"p\"}},{\"index\":1,\"delta\":{\"content\":\"q\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"1\",\"content\":\"2\"}}]}",
        "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"r\"}}]}",
        "{\"error\":{\"message\":\"stalled\"}}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w\"}}]} trailing",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\x\"}}]}",
        "{\"choices\":[{\"index\":01,\"delta\":{\"content\":\"n\"}}]}",
        "{\"choices\":[{\"index\":0,\"logprobs\":{\"content\":[{\"token\":\"s\"}]},\"delta\":{\"content\":\"s\"}}]}",
        "{\"choices\":[{\"index\":0,\"logprobs\":{\"content\":[{\"token\":\"t\"}]},\"delta\":{\"content\":\"t\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]}"
    };
    s_test_same (others, MESH_ARRAY_SIZE (others), 4096, 1, &out);
    json_t *choices = json_object_get ((answer = json_loads (mesh_buf_head (&out), 0, NULL)), "choices");
    assert (json_array_size (choices) == 2);
    assert (mesh_streq (json_string_value (json_object_get (answer, "id")), "c"));
    assert (json_array_size (json_object_get (answer, "errors")) == 6);
    json_t *logprobs = json_object_get (json_array_get (choices, 0), "logprobs");
    assert (json_array_size (json_object_get (logprobs, "content")) == 2);
    json_decref (answer);
    mesh_buf_free (&out);

    //  What a caller reads while it goes
    self_t *self = mesh_completion_new (0);
    assert (!mesh_completion_started (self) && !mesh_completion_usage (self));
    for (size_t i = 0; i < MESH_ARRAY_SIZE (deepseek); i++)
        mesh_completion_add (self, deepseek [i], strlen (deepseek [i]));
    assert (mesh_completion_started (self));
    assert (mesh_completion_pieces (self) == 3);   //  "Hm", "Café…", " été"
    assert (mesh_streq (mesh_completion_finish (self, 0), "stop"));
    assert (mesh_completion_finish (self, 1) == NULL);
    assert (json_integer_value (json_object_get (mesh_completion_usage (self), "prompt_tokens")) == 5);
    mesh_completion_destroy (&self);
}
