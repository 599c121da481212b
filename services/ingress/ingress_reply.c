/*  ingress_reply: see ingress_reply.h.

    The reference reading is ingress_reply_add_parsed (jansson); the
    scanner below takes the chunks it can read exactly as that would, and
    hands every other one over untouched.                                   */
#include "ingress_reply.h"

#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The answer --------------------------------------------------------------------------

#define REPLY_CHOICES   8           //  choice indexes kept (DeepSeek sends 1)
#define REPLY_ERRORS    8           //  non-chunk payloads kept

typedef struct {
    bool seen;
    mesh_buf_t content;
    mesh_buf_t reasoning;
    bool has_content, has_reasoning;
    json_t *tool_calls;             //  array of {index, id, type, function{name, arguments}}
    json_t *finish_reason;
} reply_choice_t;

struct ingress_reply_t {
    json_t *head;                   //  id, created, model, system_fingerprint of the first chunk
    json_t *usage;                  //  the last usage seen
    json_t *errors;                 //  payloads that are not chunks
    reply_choice_t choices [REPLY_CHOICES];
    size_t bytes;                   //  text kept, against the bound
    size_t max_bytes;
    bool truncated;
    mesh_buf_t scratch;             //  a decoded string (the scanner's)
    size_t fast, parsed;            //  chunks read each way
};

typedef struct ingress_reply_t reply_t;

//  A buffer's bytes, "" when it never had any
static const char *
s_head (mesh_buf_t *buf)
{
    return mesh_buf_size (buf) ? mesh_buf_head (buf) : "";
}

ingress_reply_t *
ingress_reply_new (size_t max_bytes)
{
    reply_t *self = calloc (1, sizeof *self);
    assert (self);
    self->max_bytes = max_bytes;
    return self;
}

void
ingress_reply_destroy (reply_t **self_p)
{
    reply_t *self = *self_p;
    if (!self)
        return;
    json_decref (self->head);
    json_decref (self->usage);
    json_decref (self->errors);
    for (size_t i = 0; i < REPLY_CHOICES; i++) {
        reply_choice_t *choice = &self->choices [i];
        mesh_buf_free (&choice->content);
        mesh_buf_free (&choice->reasoning);
        json_decref (choice->tool_calls);
        json_decref (choice->finish_reason);
    }
    mesh_buf_free (&self->scratch);
    free (self);
    *self_p = NULL;
}

//  How much of text (len bytes) fits the bound, cut at a character
static size_t
s_room (reply_t *self, const char *text, size_t len)
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

static void
s_append (reply_t *self, mesh_buf_t *buf, bool *has, const char *text, size_t len)
{
    *has = true;
    size_t take = s_room (self, text, len);
    mesh_buf_append (buf, text, take);
    self->bytes += take;
}

static void
s_append_json (reply_t *self, mesh_buf_t *buf, bool *has, json_t *value)
{
    if (json_is_string (value))
        s_append (self, buf, has, json_string_value (value), json_string_length (value));
}

//  A string member of object grown by the string value (a tool call's
//  name or arguments, which come in pieces)
static void
s_concat (reply_t *self, json_t *object, const char *key, json_t *value)
{
    if (!json_is_string (value))
        return;
    const char *piece = json_string_value (value);
    size_t take = s_room (self, piece, json_string_length (value));
    json_t *old = json_object_get (object, key);
    size_t have = json_is_string (old) ? json_string_length (old) : 0;
    char *joined = malloc (have + take + 1);
    assert (joined);
    if (have)
        memcpy (joined, json_string_value (old), have);
    memcpy (joined + have, piece, take);
    json_object_set_new (object, key, json_stringn (joined, have + take));
    free (joined);
    self->bytes += take;
}

static void
s_tool_calls (reply_t *self, reply_choice_t *choice, json_t *calls)
{
    size_t i;
    json_t *call;
    json_array_foreach (calls, i, call) {
        json_t *index = json_object_get (call, "index");
        json_int_t at = json_is_integer (index) ? json_integer_value (index) : (json_int_t) i;
        if (!choice->tool_calls)
            choice->tool_calls = json_array ();
        json_t *kept = NULL, *each;
        size_t k;
        json_array_foreach (choice->tool_calls, k, each)
            if (json_integer_value (json_object_get (each, "index")) == at)
                kept = each;
        if (!kept) {
            if (json_array_size (choice->tool_calls) >= 128)
                continue;
            kept = json_pack ("{s:I, s:s, s:{}}", "index", at, "type", "function", "function");
            json_array_append_new (choice->tool_calls, kept);
        }
        json_t *id = json_object_get (call, "id"), *type = json_object_get (call, "type");
        if (json_is_string (id))
            json_object_set (kept, "id", id);
        if (json_is_string (type))
            json_object_set (kept, "type", type);
        json_t *function = json_object_get (call, "function");
        json_t *into = json_object_get (kept, "function");
        if (json_is_object (function)) {
            s_concat (self, into, "name", json_object_get (function, "name"));
            s_concat (self, into, "arguments", json_object_get (function, "arguments"));
        }
    }
}

void
ingress_reply_add_parsed (reply_t *self, const char *data, size_t len)
{
    self->parsed++;
    json_t *chunk = json_loadb (data, len, 0, NULL);
    json_t *choices = json_object_get (chunk, "choices");
    if (!json_is_array (choices)) {
        //  An error event, or something that is not a chunk: as sent
        if (!self->errors)
            self->errors = json_array ();
        if (json_array_size (self->errors) < REPLY_ERRORS) {
            size_t take = s_room (self, data, len);
            json_t *kept = chunk && take == len ? json_incref (chunk)
                         : mesh_utf8_valid (data, take) ? json_stringn (data, take) : NULL;
            if (kept) {
                json_array_append_new (self->errors, kept);
                self->bytes += take;
            }
        }
        json_decref (chunk);
        return;
    }
    if (!self->head) {
        self->head = json_object ();
        const char *keys [] = { "id", "created", "model", "system_fingerprint" };
        for (size_t i = 0; i < MESH_ARRAY_SIZE (keys); i++) {
            json_t *value = json_object_get (chunk, keys [i]);
            if (value && !json_is_object (value) && !json_is_array (value))
                json_object_set (self->head, keys [i], value);
        }
    }
    json_t *usage = json_object_get (chunk, "usage");
    if (json_is_object (usage)) {
        json_decref (self->usage);
        self->usage = json_incref (usage);
    }
    size_t i;
    json_t *each;
    json_array_foreach (choices, i, each) {
        json_t *index = json_object_get (each, "index");
        json_int_t at = json_is_integer (index) ? json_integer_value (index) : (json_int_t) i;
        if (at < 0 || at >= REPLY_CHOICES)
            continue;
        reply_choice_t *choice = &self->choices [at];
        choice->seen = true;
        json_t *delta = json_object_get (each, "delta");
        if (json_is_object (delta)) {
            s_append_json (self, &choice->content, &choice->has_content,
                           json_object_get (delta, "content"));
            s_append_json (self, &choice->reasoning, &choice->has_reasoning,
                           json_object_get (delta, "reasoning_content"));
            json_t *calls = json_object_get (delta, "tool_calls");
            if (json_is_array (calls))
                s_tool_calls (self, choice, calls);
        }
        json_t *finish = json_object_get (each, "finish_reason");
        if (json_is_string (finish)) {
            json_decref (choice->finish_reason);
            choice->finish_reason = json_incref (finish);
        }
    }
    json_decref (chunk);
}

//  The scanner ----------------------------------------------------------------------
//
//  Reads the common chunk,
//      {"id":..., "choices":[{"index":0, "delta":{"content":"..."},
//       "logprobs":null, "finish_reason":null}], "usage":null, ...}
//  with content and/or reasoning_content (or null) in the one choice's
//  delta and a finish_reason string or null, without allocating.  Anything
//  else, and anything jansson might read differently (escaped keys,
//  exponents, long numbers, deep nesting, a duplicate key that matters),
//  is not its business: -1, and nothing was changed.

#define SCAN_DEPTH      16
#define SCAN_NUMBER     15          //  longest number skipped (no overflow in jansson)

typedef struct {
    const char *at, *end;
    mesh_buf_t *scratch;
} scan_t;

static void
s_ws (scan_t *s)
{
    while (s->at < s->end && (*s->at == ' ' || *s->at == '\t' || *s->at == '\n' || *s->at == '\r'))
        s->at++;
}

static bool
s_eat (scan_t *s, char c)
{
    s_ws (s);
    if (s->at < s->end && *s->at == c) {
        s->at++;
        return true;
    }
    return false;
}

static bool
s_literal (scan_t *s, const char *word)
{
    s_ws (s);
    size_t len = strlen (word);
    if ((size_t) (s->end - s->at) < len || memcmp (s->at, word, len) != 0)
        return false;
    s->at += len;
    return true;
}

static int
s_hex4 (const char *p)
{
    int value = 0;
    for (int i = 0; i < 4; i++) {
        char c = p [i];
        int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (digit < 0)
            return -1;
        value = value << 4 | digit;
    }
    return value;
}

static void
s_put_utf8 (mesh_buf_t *out, uint32_t cp)
{
    char bytes [4];
    size_t n;
    if (cp < 0x80) {
        bytes [0] = (char) cp;
        n = 1;
    }
    else
    if (cp < 0x800) {
        bytes [0] = (char) (0xc0 | cp >> 6);
        bytes [1] = (char) (0x80 | (cp & 0x3f));
        n = 2;
    }
    else
    if (cp < 0x10000) {
        bytes [0] = (char) (0xe0 | cp >> 12);
        bytes [1] = (char) (0x80 | (cp >> 6 & 0x3f));
        bytes [2] = (char) (0x80 | (cp & 0x3f));
        n = 3;
    }
    else {
        bytes [0] = (char) (0xf0 | cp >> 18);
        bytes [1] = (char) (0x80 | (cp >> 12 & 0x3f));
        bytes [2] = (char) (0x80 | (cp >> 6 & 0x3f));
        bytes [3] = (char) (0x80 | (cp & 0x3f));
        n = 4;
    }
    mesh_buf_append (out, bytes, n);
}

//  A string body (between its quotes) decoded into out as jansson reads
//  it; -1 where jansson refuses (a bad escape, a lone surrogate, \u0000,
//  bytes that are not UTF-8)
static int
s_decode (const char *p, size_t len, mesh_buf_t *out)
{
    mesh_buf_reset (out);
    const char *end = p + len, *run = p;
    while (p < end) {
        if (*p != '\\') {
            p++;
            continue;
        }
        mesh_buf_append (out, run, (size_t) (p - run));
        if (end - p < 2)
            return -1;
        char c = p [1];
        p += 2;
        const char *plain = strchr ("\"\\/bfnrt", c);
        if (c && plain) {
            static const char map [] = "\"\\/\b\f\n\r\t";
            mesh_buf_append (out, &map [plain - "\"\\/bfnrt"], 1);
        }
        else
        if (c == 'u') {
            int unit = end - p >= 4 ? s_hex4 (p) : -1;
            if (unit <= 0 || (unit >= 0xdc00 && unit <= 0xdfff))
                return -1;                          //  bad, \u0000, or a lone low surrogate
            p += 4;
            uint32_t cp = (uint32_t) unit;
            if (unit >= 0xd800 && unit <= 0xdbff) {
                int low = end - p >= 6 && p [0] == '\\' && p [1] == 'u' ? s_hex4 (p + 2) : -1;
                if (low < 0xdc00 || low > 0xdfff)
                    return -1;
                p += 6;
                cp = 0x10000 + (((uint32_t) unit - 0xd800) << 10) + ((uint32_t) low - 0xdc00);
            }
            s_put_utf8 (out, cp);
        }
        else
            return -1;
        run = p;
    }
    mesh_buf_append (out, run, (size_t) (end - run));
    return mesh_utf8_valid (s_head (out), mesh_buf_size (out)) ? 0 : -1;
}

//  A string: its body (escapes unread) in [*body, *body + *len); -1 for a
//  control character, no end, or a body jansson would refuse
static int
s_string (scan_t *s, const char **body, size_t *len)
{
    s_ws (s);
    if (s->at >= s->end || *s->at != '"')
        return -1;
    const char *start = ++s->at;
    bool escaped = false;
    while (s->at < s->end) {
        unsigned char c = (unsigned char) *s->at;
        if (c == '"') {
            *body = start;
            *len = (size_t) (s->at - start);
            s->at++;
            //  Plain ASCII needs no decoding to be valid
            if (!escaped) {
                bool ascii = true;
                for (size_t i = 0; i < *len && ascii; i++)
                    ascii = (unsigned char) start [i] < 0x80;
                if (ascii)
                    return 0;
            }
            return s_decode (start, *len, s->scratch);
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            escaped = true;
            s->at++;
            if (s->at >= s->end)
                return -1;
        }
        s->at++;
    }
    return -1;
}

//  A key: its body, which must have no escape (an escaped key could spell
//  one that matters)
static int
s_key (scan_t *s, const char **body, size_t *len)
{
    if (s_string (s, body, len) < 0 || memchr (*body, '\\', *len) || !s_eat (s, ':'))
        return -1;
    return 0;
}

static bool
s_is (const char *body, size_t len, const char *word)
{
    return strlen (word) == len && memcmp (body, word, len) == 0;
}

//  A number as JSON writes it, short, without an exponent
static int
s_number (scan_t *s)
{
    s_ws (s);
    const char *start = s->at;
    if (s->at < s->end && *s->at == '-')
        s->at++;
    if (s->at >= s->end || *s->at < '0' || *s->at > '9')
        return -1;
    if (*s->at == '0')
        s->at++;
    else
        while (s->at < s->end && *s->at >= '0' && *s->at <= '9')
            s->at++;
    if (s->at < s->end && *s->at == '.') {
        s->at++;
        if (s->at >= s->end || *s->at < '0' || *s->at > '9')
            return -1;
        while (s->at < s->end && *s->at >= '0' && *s->at <= '9')
            s->at++;
    }
    if (s->at < s->end && (*s->at == 'e' || *s->at == 'E' || (*s->at >= '0' && *s->at <= '9')))
        return -1;
    return s->at - start <= SCAN_NUMBER ? 0 : -1;
}

static int
s_skip (scan_t *s, int depth)
{
    s_ws (s);
    if (s->at >= s->end || depth > SCAN_DEPTH)
        return -1;
    const char *body;
    size_t len;
    char c = *s->at;
    if (c == '"')
        return s_string (s, &body, &len);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        s->at++;
        if (s_eat (s, close))
            return 0;
        do {
            if (c == '{' && s_key (s, &body, &len) < 0)
                return -1;
            if (s_skip (s, depth + 1) < 0)
                return -1;
        } while (s_eat (s, ','));
        return s_eat (s, close) ? 0 : -1;
    }
    if (s_literal (s, "null") || s_literal (s, "true") || s_literal (s, "false"))
        return 0;
    return s_number (s);
}

//  A string or null at the cursor: *body NULL for null
static int
s_string_or_null (scan_t *s, const char **body, size_t *len)
{
    if (s_literal (s, "null")) {
        *body = NULL;
        *len = 0;
        return 0;
    }
    return s_string (s, body, len);
}

typedef struct {
    long index;
    const char *content, *reasoning, *finish;
    size_t content_len, reasoning_len, finish_len;
} scanned_t;

static int
s_scan_delta (scan_t *s, scanned_t *out)
{
    if (s_literal (s, "null"))
        return 0;                               //  jansson's reading ignores it too
    if (!s_eat (s, '{'))
        return -1;
    if (s_eat (s, '}'))
        return 0;
    bool content = false, reasoning = false;
    do {
        const char *key;
        size_t len;
        if (s_key (s, &key, &len) < 0)
            return -1;
        if (s_is (key, len, "content") && !content) {
            content = true;
            if (s_string_or_null (s, &out->content, &out->content_len) < 0)
                return -1;
        }
        else
        if (s_is (key, len, "reasoning_content") && !reasoning) {
            reasoning = true;
            if (s_string_or_null (s, &out->reasoning, &out->reasoning_len) < 0)
                return -1;
        }
        else
        if (s_is (key, len, "role")) {
            if (s_skip (s, 3) < 0)
                return -1;
        }
        else
            return -1;                          //  tool calls, a duplicate, the unknown
    } while (s_eat (s, ','));
    return s_eat (s, '}') ? 0 : -1;
}

static int
s_scan_choice (scan_t *s, scanned_t *out)
{
    if (!s_eat (s, '{'))
        return -1;
    if (s_eat (s, '}'))
        return 0;
    bool index = false, delta = false, finish = false;
    do {
        const char *key;
        size_t len;
        if (s_key (s, &key, &len) < 0)
            return -1;
        if (s_is (key, len, "index") && !index) {
            index = true;
            s_ws (s);
            if (s->at + 1 >= s->end || *s->at < '0' || *s->at >= '0' + REPLY_CHOICES
            ||  (s->at [1] >= '0' && s->at [1] <= '9') || s->at [1] == '.' || s->at [1] == 'e'
            ||  s->at [1] == 'E')
                return -1;
            out->index = *s->at++ - '0';
        }
        else
        if (s_is (key, len, "delta") && !delta) {
            delta = true;
            if (s_scan_delta (s, out) < 0)
                return -1;
        }
        else
        if (s_is (key, len, "finish_reason") && !finish) {
            finish = true;
            if (s_string_or_null (s, &out->finish, &out->finish_len) < 0)
                return -1;
        }
        else
        if (s_is (key, len, "index") || s_is (key, len, "delta") || s_is (key, len, "finish_reason"))
            return -1;
        else
        if (s_skip (s, 3) < 0)
            return -1;
    } while (s_eat (s, ','));
    return s_eat (s, '}') ? 0 : -1;
}

//  The whole payload; 0 when read, -1 when it is jansson's
static int
s_scan (reply_t *self, const char *data, size_t len, scanned_t *out)
{
    scan_t scan = { data, data + len, &self->scratch };
    scan_t *s = &scan;
    memset (out, 0, sizeof *out);
    if (!s_eat (s, '{'))
        return -1;
    bool choices = false;
    if (!s_eat (s, '}'))
        do {
            const char *key;
            size_t key_len;
            if (s_key (s, &key, &key_len) < 0)
                return -1;
            if (s_is (key, key_len, "choices")) {
                //  One choice exactly, once
                if (choices || !s_eat (s, '[') || s_scan_choice (s, out) < 0 || !s_eat (s, ']'))
                    return -1;
                choices = true;
            }
            else
            if (s_is (key, key_len, "usage")) {
                if (!s_literal (s, "null"))
                    return -1;
            }
            else
            if (s_is (key, key_len, "error") || s_skip (s, 1) < 0)
                return -1;
        } while (s_eat (s, ','));
    if (!s_eat (s, '}'))
        return -1;
    s_ws (s);
    return choices && s->at == s->end ? 0 : -1;
}

//  A scanned string's text into the scratch buffer (it decoded once)
static void
s_text (reply_t *self, const char *body, size_t len)
{
    int rc = s_decode (body, len, &self->scratch);
    assert (rc == 0);
}

void
ingress_reply_add (reply_t *self, const char *data, size_t len)
{
    scanned_t scanned;
    if (!self->head || s_scan (self, data, len, &scanned) < 0) {
        ingress_reply_add_parsed (self, data, len);
        return;
    }
    self->fast++;
    reply_choice_t *choice = &self->choices [scanned.index];
    choice->seen = true;
    if (scanned.content) {
        s_text (self, scanned.content, scanned.content_len);
        s_append (self, &choice->content, &choice->has_content, s_head (&self->scratch),
                  mesh_buf_size (&self->scratch));
    }
    if (scanned.reasoning) {
        s_text (self, scanned.reasoning, scanned.reasoning_len);
        s_append (self, &choice->reasoning, &choice->has_reasoning, s_head (&self->scratch),
                  mesh_buf_size (&self->scratch));
    }
    if (scanned.finish) {
        s_text (self, scanned.finish, scanned.finish_len);
        json_decref (choice->finish_reason);
        choice->finish_reason = json_stringn (s_head (&self->scratch),
                                              mesh_buf_size (&self->scratch));
    }
}

bool
ingress_reply_truncated (reply_t *self)
{
    return self->truncated;
}

size_t
ingress_reply_fast_count (reply_t *self)
{
    return self->fast;
}

//  Rendering ------------------------------------------------------------------------

void
ingress_reply_render (reply_t *self, mesh_buf_t *out)
{
    json_t *answer = self->head ? json_deep_copy (self->head) : json_object ();
    json_object_set_new (answer, "object", json_string ("chat.completion"));
    json_t *choices = json_array ();
    for (size_t i = 0; i < REPLY_CHOICES; i++) {
        reply_choice_t *choice = &self->choices [i];
        if (!choice->seen)
            continue;
        json_t *message = json_pack ("{s:s}", "role", "assistant");
        //  Appended from valid strings, cut at characters: valid UTF-8
        json_object_set_new (message, "content", choice->has_content
            ? json_stringn (s_head (&choice->content), mesh_buf_size (&choice->content))
            : json_null ());
        if (choice->has_reasoning)
            json_object_set_new (message, "reasoning_content",
                json_stringn (s_head (&choice->reasoning), mesh_buf_size (&choice->reasoning)));
        if (choice->tool_calls)
            json_object_set (message, "tool_calls", choice->tool_calls);
        json_array_append_new (choices, json_pack ("{s:I, s:o, s:O}", "index", (json_int_t) i,
            "message", message, "finish_reason", choice->finish_reason ? choice->finish_reason
                                                                       : json_null ()));
    }
    json_object_set_new (answer, "choices", choices);
    if (self->usage)
        json_object_set (answer, "usage", self->usage);
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


//  Selftest -------------------------------------------------------------------------

//  Feeds both readings the same payloads; they must render the same
static void
s_test_same (const char **payloads, size_t count, size_t max_bytes, size_t want_fast,
             mesh_buf_t *rendered)
{
    reply_t *fast = ingress_reply_new (max_bytes), *parsed = ingress_reply_new (max_bytes);
    for (size_t i = 0; i < count; i++) {
        ingress_reply_add (fast, payloads [i], strlen (payloads [i]));
        ingress_reply_add_parsed (parsed, payloads [i], strlen (payloads [i]));
    }
    mesh_buf_t other;
    mesh_buf_init (&other);
    ingress_reply_render (fast, rendered);
    ingress_reply_render (parsed, &other);
    assert (mesh_buf_size (rendered) == mesh_buf_size (&other)
            && memcmp (mesh_buf_head (rendered), mesh_buf_head (&other), mesh_buf_size (&other)) == 0);
    assert (fast->fast == want_fast);
    assert (fast->truncated == parsed->truncated);
    mesh_buf_append (rendered, "", 1);
    mesh_buf_free (&other);
    ingress_reply_destroy (&fast);
    ingress_reply_destroy (&parsed);
    assert (!fast && !parsed);
}

void
ingress_reply_test (bool verbose)
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
        "\"reasoning_content\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}",
        "{\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \xc3\xa9t\xc3\xa9\"},"
        "\"finish_reason\":null}]}",
        "{\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"logprobs\":null,"
        "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}"
    };
    s_test_same (deepseek, MESH_ARRAY_SIZE (deepseek), 4096, 3, &out);
    json_t *answer = json_loads (mesh_buf_head (&out), 0, NULL);
    json_t *message = json_object_get (json_array_get (json_object_get (answer, "choices"), 0),
                                       "message");
    assert (mesh_streq (json_string_value (json_object_get (message, "content")),
                        "Caf\xc3\xa9 \"ok\"\n\xf0\x9f\x98\x80 \xc3\xa9t\xc3\xa9"));
    assert (mesh_streq (json_string_value (json_object_get (message, "reasoning_content")), "Hm"));
    assert (mesh_streq (json_string_value (json_object_get (answer, "model")), "deepseek-reasoner"));
    json_decref (answer);
    //  Cut at the bound the same way both ways: "Hm" and "Caf", the bound
    //  falling inside the e-acute's two bytes
    s_test_same (deepseek, MESH_ARRAY_SIZE (deepseek), 6, 3, &out);
    assert (strstr (mesh_buf_head (&out), "\"content\":\"Caf\""));
    //  What the scanner leaves to jansson: tool calls, an escaped key, a
    //  lone surrogate, \u0000, an exponent, two choices, an error, junk
    const char *others [] = {
        "{\"id\":\"b\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
        "{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}",
        "{\"ch\\u006fices\":[{\"index\":0,\"delta\":{\"content\":\"y\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\ud800\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\\u0000b\"}}]}",
        "{\"created\":1e3,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"z\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"p\"}},{\"index\":1,\"delta\":{\"content\":\"q\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"1\",\"content\":\"2\"}}]}",
        "{\"error\":{\"message\":\"stalled\"}}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w\"}}]} trailing",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\x\"}}]}",
        "{\"choices\":[{\"index\":01,\"delta\":{\"content\":\"n\"}}]}",
        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"}}]}"
    };
    s_test_same (others, MESH_ARRAY_SIZE (others), 4096, 1, &out);
    mesh_buf_free (&out);
}
