/*  cache_entry: a kept answer, its codec and how it is served again.

    An answer is kept as the chat.completion the upstream sent (or the one
    mesh_completion assembled from its stream).  When it is kept, or read
    back from Redis, it is parsed once: its usage and finish reason are
    read, and it is cut into what a hit needs, the body's members after
    id/object/created, and a stream of chunks shaped like DeepSeek's:

      {"role":"assistant","content":""}          (reasoning: content null,
                                                  reasoning_content "")
      {"content":null,"reasoning_content":"…"}   pieces of the reasoning
      {"content":"…"}                            pieces of the answer
      {"tool_calls":[{"index":i,"id":…,"type":"function",
                      "function":{"name":…,"arguments":""}}]}
      {"tool_calls":[{"index":i,"function":{"arguments":"…"}}]}
      {"content":""}  with finish_reason, and on the last chunk the usage
                      (with prompt_cache_hit_tokens / _miss_tokens)

    each inside {"id","object":"chat.completion.chunk","created","model",
    "system_fingerprint","choices":[{"index","delta","logprobs":null,
    "finish_reason"}]}.  A hit then costs one copy per chunk: a new id and
    created in front of a ready tail.

    Redis's bytes are outside input: the decoder checks everything and
    never asserts (tests/fuzz/fuzz_cache_entry.c).  Reactor thread only.    */
#include "cache.h"

#include "mesh_id.h"
#include "mesh_mp.h"
#include "mesh_msg.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_SIGNATURE "SE"
#define ENTRY_VERSION   1

void
cache_entry_destroy (cache_entry_t **self_p)
{
    assert (self_p);
    cache_entry_t *self = *self_p;
    if (!self)
        return;
    free (self->model);
    free (self->body);
    free (self->tail);
    for (size_t i = 0; i < self->chunk_count; i++)
        free (self->chunks [i]);
    free (self->chunks);
    free (self->chunk_lens);
    free (self);
    *self_p = NULL;
}

void
cache_entry_new_id (char id [48])
{
    unsigned char random [16];
    mesh_random (random, sizeof random);
    char *at = id + sprintf (id, "chatcmpl-");
    for (size_t i = 0; i < sizeof random; i++)
        at += sprintf (at, "%02x", random [i]);
}

//  Making the pieces -------------------------------------------------------------

//  "{…}" of an object without id, object and created, as the tail that
//  follows them: ",…}" (or "}" when nothing is left)
static char *
s_tail (json_t *rest, size_t *len)
{
    char *dumped = json_dumps (rest, JSON_COMPACT);
    assert (dumped);
    size_t n = strlen (dumped);
    char *tail = malloc (n + 1);
    assert (tail);
    if (n <= 2) {
        strcpy (tail, "}");
        *len = 1;
    }
    else {
        tail [0] = ',';
        memcpy (tail + 1, dumped + 1, n - 1);
        tail [n] = 0;
        *len = n;
    }
    free (dumped);
    return tail;
}

typedef struct {
    cache_entry_t *entry;
    json_t *frame;              //  model, system_fingerprint: every chunk's members
    size_t cap;
} builder_t;

//  Adds one chunk: the frame, then choices [{index, delta, logprobs,
//  finish_reason}], then usage when given.  Takes delta.
static void
s_chunk (builder_t *b, size_t index, json_t *delta, const char *finish, json_t *usage)
{
    cache_entry_t *entry = b->entry;
    json_t *chunk = json_deep_copy (b->frame);
    json_t *choice = json_pack ("{s:I, s:o, s:n, s:o}", "index", (json_int_t) index, "delta", delta,
                                "logprobs", "finish_reason", finish ? json_string (finish) : json_null ());
    json_object_set_new (chunk, "choices", json_pack ("[o]", choice));
    if (usage)
        json_object_set (chunk, "usage", usage);
    if (entry->chunk_count == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        entry->chunks = realloc (entry->chunks, b->cap * sizeof *entry->chunks);
        entry->chunk_lens = realloc (entry->chunk_lens, b->cap * sizeof *entry->chunk_lens);
        assert (entry->chunks && entry->chunk_lens);
    }
    size_t len;
    entry->chunks [entry->chunk_count] = s_tail (chunk, &len);
    entry->chunk_lens [entry->chunk_count++] = len;
    entry->bytes += len + sizeof (char *) + sizeof (size_t);
    json_decref (chunk);
}

//  The length of the next piece of text: at most max bytes, cut on a
//  character, after a space when there is one in the second half
static size_t
s_piece (const char *text, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t cut = max;
    while (cut > 0 && ((unsigned char) text [cut] & 0xc0) == 0x80)
        cut--;
    if (cut == 0) {                     //  max smaller than one character
        cut = 1;
        while (cut < len && ((unsigned char) text [cut] & 0xc0) == 0x80)
            cut++;
        return cut;
    }
    for (size_t at = cut; at > cut / 2; at--)
        if (text [at - 1] == ' ')
            return at;
    return cut;
}

//  Pieces of a text member as chunks: { name: piece } (and null members)
static void
s_pieces (builder_t *b, size_t index, const char *name, json_t *text, size_t max, bool reasoning)
{
    const char *s = json_string_value (text);
    size_t len = json_string_length (text);
    while (len > 0) {
        size_t n = s_piece (s, len, max);
        json_t *delta = reasoning ? json_pack ("{s:n, s:s%}", "content", name, s, n)
                                  : json_pack ("{s:s%}", name, s, n);
        if (delta)                      //  pieces are cut on characters: always
            s_chunk (b, index, delta, NULL, NULL);
        s += n;
        len -= n;
    }
}

//  The usage a stream's last chunk carries: the kept one, with DeepSeek's
//  prompt_cache_hit_tokens / _miss_tokens when it had none
static json_t *
s_stream_usage (json_t *usage)
{
    if (!json_is_object (usage))
        return NULL;
    json_t *copy = json_deep_copy (usage);
    json_int_t prompt = json_integer_value (json_object_get (usage, "prompt_tokens"));
    json_int_t hit = json_integer_value (json_object_get (json_object_get (usage, "prompt_tokens_details"),
                                                          "cached_tokens"));
    if (!json_object_get (copy, "prompt_cache_hit_tokens"))
        json_object_set_new (copy, "prompt_cache_hit_tokens", json_integer (hit));
    if (!json_object_get (copy, "prompt_cache_miss_tokens"))
        json_object_set_new (copy, "prompt_cache_miss_tokens", json_integer (prompt > hit ? prompt - hit : 0));
    return copy;
}

static uint64_t
s_count (json_t *object, const char *name)
{
    json_t *value = json_object_get (object, name);
    return json_is_integer (value) && json_integer_value (value) > 0 ? (uint64_t) json_integer_value (value) : 0;
}

//  Reads what a hit needs from the parsed body.  -1 with a reason when it
//  is no complete answer.
static int
s_prepare (cache_entry_t *entry, json_t *root, size_t piece_bytes, char *why, size_t why_size)
{
    if (!json_is_object (root))
        return mesh_fail (why, why_size, "not a JSON object");
    json_t *choices = json_object_get (root, "choices");
    if (!json_is_array (choices) || json_array_size (choices) == 0 || json_array_size (choices) > 64)
        return mesh_fail (why, why_size, "no choices");
    if (json_object_get (root, "errors") || json_object_get (root, "error"))
        return mesh_fail (why, why_size, "the answer has errors");
    const char *object = json_string_value (json_object_get (root, "object"));
    if (object && strcmp (object, "chat.completion") != 0)
        return mesh_fail (why, why_size, "not a chat.completion");
    size_t i;
    json_t *choice;
    json_array_foreach (choices, i, choice) {
        const char *finish = json_string_value (json_object_get (choice, "finish_reason"));
        if (!json_is_object (json_object_get (choice, "message")) || !finish || !*finish)
            return mesh_fail (why, why_size, "choice %zu is not complete", i);
    }
    snprintf (entry->finish, sizeof entry->finish, "%s",
              json_string_value (json_object_get (json_array_get (choices, 0), "finish_reason")));
    json_t *usage = json_object_get (root, "usage");
    entry->prompt_tokens = s_count (usage, "prompt_tokens");
    entry->output_tokens = s_count (usage, "completion_tokens");
    entry->cached_tokens = s_count (usage, "prompt_cache_hit_tokens");
    if (!entry->cached_tokens)
        entry->cached_tokens = s_count (json_object_get (usage, "prompt_tokens_details"), "cached_tokens");
    entry->reason_tokens = s_count (json_object_get (usage, "completion_tokens_details"), "reasoning_tokens");

    //  The body after id, object, created
    json_t *rest = json_deep_copy (root);
    json_object_del (rest, "id");
    json_object_del (rest, "object");
    json_object_del (rest, "created");
    entry->tail = s_tail (rest, &entry->tail_len);
    json_decref (rest);

    //  The stream: the frame every chunk has, then each choice's chunks
    builder_t b = { entry, json_object (), 0 };
    json_t *model = json_object_get (root, "model");
    json_object_set_new (b.frame, "model", json_is_string (model) ? json_incref (model)
                                                                   : json_string (entry->model));
    json_t *fingerprint = json_object_get (root, "system_fingerprint");
    if (fingerprint)
        json_object_set (b.frame, "system_fingerprint", fingerprint);
    json_t *last_usage = s_stream_usage (usage);
    size_t max = piece_bytes ? piece_bytes : 128;
    json_array_foreach (choices, i, choice) {
        json_t *index_node = json_object_get (choice, "index");
        size_t index = json_is_integer (index_node) && json_integer_value (index_node) >= 0
                     && json_integer_value (index_node) < 1000 ? (size_t) json_integer_value (index_node) : i;
        json_t *message = json_object_get (choice, "message");
        json_t *reasoning = json_object_get (message, "reasoning_content");
        json_t *content = json_object_get (message, "content");
        const char *role = json_string_value (json_object_get (message, "role"));
        bool thinks = json_is_string (reasoning);
        s_chunk (&b, index, thinks ? json_pack ("{s:s, s:n, s:s}", "role", role ? role : "assistant",
                                               "content", "reasoning_content", "")
                                   : json_pack ("{s:s, s:s}", "role", role ? role : "assistant",
                                               "content", ""), NULL, NULL);
        if (thinks)
            s_pieces (&b, index, "reasoning_content", reasoning, max, true);
        if (json_is_string (content))
            s_pieces (&b, index, "content", content, max, false);
        size_t k;
        json_t *call;
        json_array_foreach (json_object_get (message, "tool_calls"), k, call) {
            json_t *function = json_object_get (call, "function");
            json_t *id = json_object_get (call, "id"), *type = json_object_get (call, "type");
            json_t *name = json_object_get (function, "name");
            json_t *head = json_pack ("{s:I}", "index", (json_int_t) k);
            if (json_is_string (id))
                json_object_set (head, "id", id);
            json_object_set_new (head, "type", json_is_string (type) ? json_incref (type) : json_string ("function"));
            json_object_set_new (head, "function", json_pack ("{s:o, s:s}", "name",
                                 json_is_string (name) ? json_incref (name) : json_string (""),
                                 "arguments", ""));
            s_chunk (&b, index, json_pack ("{s:[o]}", "tool_calls", head), NULL, NULL);
            json_t *arguments = json_object_get (function, "arguments");
            const char *s = json_string_value (arguments);
            size_t len = json_string_length (arguments);
            while (s && len > 0) {
                size_t n = s_piece (s, len, max);
                json_t *delta = json_pack ("{s:[{s:I, s:{s:s%}}]}", "tool_calls", "index", (json_int_t) k,
                                           "function", "arguments", s, n);
                if (delta)
                    s_chunk (&b, index, delta, NULL, NULL);
                s += n;
                len -= n;
            }
        }
        bool last = i + 1 == json_array_size (choices);
        s_chunk (&b, index, json_pack ("{s:s}", "content", ""),
                 json_string_value (json_object_get (choice, "finish_reason")), last ? last_usage : NULL);
    }
    json_decref (last_usage);
    json_decref (b.frame);
    entry->bytes += sizeof *entry + entry->body_len + entry->tail_len + strlen (entry->model) + 64;
    return 0;
}

static cache_entry_t *
s_entry (const char *key, const char *model, const char *body, size_t len, size_t piece_bytes,
         char *why, size_t why_size)
{
    json_error_t error;
    json_t *root = json_loadb (body, len, 0, &error);
    if (!root) {
        mesh_fail (why, why_size, "not JSON: %s", error.text);
        return NULL;
    }
    cache_entry_t *self = calloc (1, sizeof *self);
    assert (self);
    snprintf (self->key, sizeof self->key, "%s", key ? key : "");
    self->model = strdup (model);
    self->body = malloc (len + 1);
    assert (self->model && self->body);
    memcpy (self->body, body, len);
    self->body [len] = 0;
    self->body_len = len;
    if (s_prepare (self, root, piece_bytes, why, why_size) < 0)
        cache_entry_destroy (&self);
    json_decref (root);
    return self;
}

cache_entry_t *
cache_entry_new (const char *key, const char *model, const char *body, size_t len,
                 int64_t now_ms, int64_t ttl_ms, size_t piece_bytes, char *why, size_t why_size)
{
    cache_entry_t *self = s_entry (key, model, body, len, piece_bytes, why, why_size);
    if (self) {
        self->stored_ms = now_ms;
        self->expires_ms = now_ms + ttl_ms;
    }
    return self;
}

cache_entry_t *
cache_entry_text (const char *model, const char *text, size_t piece_bytes)
{
    json_t *root = json_pack ("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s}, s:n, s:s}], s:{s:i, s:i, s:i}}",
                              "id", "", "object", "chat.completion", "created", (json_int_t) 0,
                              "model", model, "choices", "index", 0, "message", "role", "assistant",
                              "content", text, "logprobs", "finish_reason", "stop", "usage",
                              "prompt_tokens", 0, "completion_tokens", 0, "total_tokens", 0);
    assert (root);
    char *body = json_dumps (root, JSON_COMPACT);
    json_decref (root);
    char why [128];
    cache_entry_t *self = s_entry (NULL, model, body, strlen (body), piece_bytes, why, sizeof why);
    assert (self);
    free (body);
    return self;
}

//  The codec ------------------------------------------------------------------------

static int
s_write (void *data, const char *buf, size_t len)
{
    mesh_buf_append (data, buf, len);
    return 0;
}

void
cache_entry_encode (const cache_entry_t *self, mesh_buf_t *out)
{
    msgpack_packer pk;
    msgpack_packer_init (&pk, out, s_write);
    msgpack_pack_array (&pk, 6);
    msgpack_pack_str_with_body (&pk, ENTRY_SIGNATURE, 2);
    msgpack_pack_unsigned_int (&pk, ENTRY_VERSION);
    msgpack_pack_str_with_body (&pk, self->model, strlen (self->model));
    msgpack_pack_uint64 (&pk, (uint64_t) self->stored_ms);
    msgpack_pack_uint64 (&pk, (uint64_t) self->expires_ms);
    msgpack_pack_bin_with_body (&pk, self->body, self->body_len);
}

cache_entry_t *
cache_entry_decode (const char *key, const char *data, size_t len, size_t piece_bytes,
                    char *why, size_t why_size)
{
    mesh_mp_reader_t r = { (const uint8_t *) data, (const uint8_t *) data + len };
    uint64_t count, version, stored, expires, n;
    const char *signature, *model, *body;
    uint64_t body_len;
    if (mesh_mp_read_array (&r, &count) < 0 || count != 6) {
        mesh_fail (why, why_size, "not a kept answer");
        return NULL;
    }
    if (mesh_mp_read_raw (&r, false, &signature, &n) < 0 || !mesh_memeq (signature, n, ENTRY_SIGNATURE)
    ||  mesh_mp_read_uint (&r, &version) < 0 || version != ENTRY_VERSION) {
        mesh_fail (why, why_size, "not a kept answer of version %d", ENTRY_VERSION);
        return NULL;
    }
    uint64_t model_len;
    if (mesh_mp_read_raw (&r, false, &model, &model_len) < 0 || model_len == 0 || model_len > 255
    ||  !mesh_utf8_valid (model, model_len)) {
        mesh_fail (why, why_size, "bad model");
        return NULL;
    }
    if (mesh_mp_read_uint (&r, &stored) < 0 || mesh_mp_read_uint (&r, &expires) < 0
    ||  stored > INT64_MAX || expires > INT64_MAX) {
        mesh_fail (why, why_size, "bad times");
        return NULL;
    }
    if (mesh_mp_read_raw (&r, true, &body, &body_len) < 0 || body_len > MESH_MAX_BODY_BYTES) {
        mesh_fail (why, why_size, "bad body");
        return NULL;
    }
    if (r.at != r.end) {
        mesh_fail (why, why_size, "bytes after the answer");
        return NULL;
    }
    char model_text [256];
    memcpy (model_text, model, model_len);
    model_text [model_len] = 0;
    cache_entry_t *self = s_entry (key, model_text, body, body_len, piece_bytes, why, why_size);
    if (self) {
        self->stored_ms = (int64_t) stored;
        self->expires_ms = (int64_t) expires;
    }
    return self;
}

//  Serving ---------------------------------------------------------------------------

static void
s_head (mesh_buf_t *out, const char *object, const char *id, int64_t created)
{
    mesh_buf_printf (out, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld", id, object,
                     (long long) created);
}

void
cache_entry_body (const cache_entry_t *self, const char *id, int64_t created, mesh_buf_t *out)
{
    mesh_buf_reset (out);
    s_head (out, "chat.completion", id, created);
    mesh_buf_append (out, self->tail, self->tail_len);
}

void
cache_entry_chunk (const cache_entry_t *self, size_t i, const char *id, int64_t created,
                   mesh_buf_t *out)
{
    assert (i < self->chunk_count);
    mesh_buf_reset (out);
    s_head (out, "chat.completion.chunk", id, created);
    mesh_buf_append (out, self->chunks [i], self->chunk_lens [i]);
}

//  Selftest ---------------------------------------------------------------------------

#include "mesh_completion.h"

//  The chunks of entry, added up by the one assembler, give its answer
static void
s_assembles_back (const cache_entry_t *entry, const char *want_content, const char *want_reasoning)
{
    mesh_completion_t *assembly = mesh_completion_new (0);
    mesh_buf_t chunk, answer;
    mesh_buf_init (&chunk);
    mesh_buf_init (&answer);
    for (size_t i = 0; i < entry->chunk_count; i++) {
        cache_entry_chunk (entry, i, "chatcmpl-x", 7, &chunk);
        json_t *parsed = json_loadb (mesh_buf_head (&chunk), mesh_buf_size (&chunk), 0, NULL);
        assert (parsed && mesh_streq (json_string_value (json_object_get (parsed, "object")),
                                      "chat.completion.chunk"));
        json_decref (parsed);
        mesh_completion_add (assembly, mesh_buf_head (&chunk), mesh_buf_size (&chunk));
    }
    mesh_completion_render (assembly, &answer);
    json_t *root = json_loadb (mesh_buf_head (&answer), mesh_buf_size (&answer), 0, NULL);
    json_t *message = json_object_get (json_array_get (json_object_get (root, "choices"), 0), "message");
    assert (mesh_streq (json_string_value (json_object_get (message, "content")), want_content));
    if (want_reasoning)
        assert (mesh_streq (json_string_value (json_object_get (message, "reasoning_content")), want_reasoning));
    assert (mesh_streq (json_string_value (json_object_get (root, "id")), "chatcmpl-x"));
    json_decref (root);
    mesh_completion_destroy (&assembly);
    mesh_buf_free (&chunk);
    mesh_buf_free (&answer);
}

void
cache_entry_test (bool verbose)
{
    (void) verbose;
    char why [256];
    const char *body = "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,"
        "\"model\":\"deepseek-reasoner\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"Hello there, \xe4\xbd\xa0\xe5\xa5\xbd world\","
        "\"reasoning_content\":\"Thinking about it\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15,"
        "\"prompt_tokens_details\":{\"cached_tokens\":4},\"completion_tokens_details\":{\"reasoning_tokens\":3}}}";
    cache_entry_t *entry = cache_entry_new ("k", "deepseek-reasoner", body, strlen (body), 1000, 5000, 4,
                                            why, sizeof why);
    assert (entry);
    assert (entry->prompt_tokens == 10 && entry->output_tokens == 5 && entry->cached_tokens == 4
         && entry->reason_tokens == 3 && mesh_streq (entry->finish, "stop"));
    assert (entry->expires_ms == 6000 && entry->bytes > entry->body_len);
    //  A non-stream hit: the body with a new id and created
    mesh_buf_t out;
    mesh_buf_init (&out);
    cache_entry_body (entry, "chatcmpl-new", 99, &out);
    json_t *hit = json_loadb (mesh_buf_head (&out), mesh_buf_size (&out), 0, NULL);
    json_t *kept = json_loads (body, 0, NULL);
    assert (hit && kept);
    assert (mesh_streq (json_string_value (json_object_get (hit, "id")), "chatcmpl-new"));
    assert (json_integer_value (json_object_get (hit, "created")) == 99);
    json_object_del (hit, "id");
    json_object_del (hit, "created");
    json_object_del (kept, "id");
    json_object_del (kept, "created");
    assert (json_equal (hit, kept));
    json_decref (hit);
    json_decref (kept);
    //  A stream hit: role, reasoning, content pieces (4 bytes, on
    //  characters), the last with finish_reason and DeepSeek's usage
    assert (entry->chunk_count > 8);
    cache_entry_chunk (entry, 0, "chatcmpl-new", 99, &out);
    assert (strstr (mesh_buf_head (&out), "\"delta\":{\"role\":\"assistant\",\"content\":null,\"reasoning_content\":\"\"}"));
    cache_entry_chunk (entry, entry->chunk_count - 1, "chatcmpl-new", 99, &out);
    mesh_buf_append (&out, "", 1);
    assert (strstr (mesh_buf_head (&out), "\"finish_reason\":\"stop\""));
    assert (strstr (mesh_buf_head (&out), "\"prompt_cache_hit_tokens\":4,\"prompt_cache_miss_tokens\":6"));
    assert (strstr (mesh_buf_head (&out), "\"system_fingerprint\":\"fp_1\""));
    s_assembles_back (entry, "Hello there, \xe4\xbd\xa0\xe5\xa5\xbd world", "Thinking about it");

    //  Through the codec and back
    mesh_buf_t encoded;
    mesh_buf_init (&encoded);
    cache_entry_encode (entry, &encoded);
    cache_entry_t *back = cache_entry_decode ("k", mesh_buf_head (&encoded), mesh_buf_size (&encoded), 4,
                                              why, sizeof why);
    assert (back && back->expires_ms == 6000 && back->chunk_count == entry->chunk_count);
    assert (mesh_streq (back->model, "deepseek-reasoner") && back->body_len == entry->body_len);
    cache_entry_destroy (&back);
    //  Truncated or trailing bytes are refused
    assert (!cache_entry_decode ("k", mesh_buf_head (&encoded), mesh_buf_size (&encoded) - 1, 4, why, sizeof why));
    mesh_buf_append (&encoded, "x", 1);
    assert (!cache_entry_decode ("k", mesh_buf_head (&encoded), mesh_buf_size (&encoded), 4, why, sizeof why));
    cache_entry_destroy (&entry);
    cache_entry_destroy (&entry);

    //  Tool calls stream as a head and argument pieces
    body = "{\"id\":\"c\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\","
        "\"type\":\"function\",\"function\":{\"name\":\"run_sql\",\"arguments\":\"{\\\"sql\\\":\\\"SELECT 1\\\"}\"}}]},"
        "\"finish_reason\":\"tool_calls\"}]}";
    entry = cache_entry_new ("k", "m", body, strlen (body), 0, 1, 5, why, sizeof why);
    assert (entry);
    mesh_completion_t *assembly = mesh_completion_new (0);
    for (size_t i = 0; i < entry->chunk_count; i++) {
        cache_entry_chunk (entry, i, "c", 1, &out);
        mesh_completion_add (assembly, mesh_buf_head (&out), mesh_buf_size (&out));
    }
    mesh_completion_render (assembly, &out);
    mesh_buf_append (&out, "", 1);
    assert (strstr (mesh_buf_head (&out), "\"arguments\":\"{\\\"sql\\\":\\\"SELECT 1\\\"}\""));
    assert (strstr (mesh_buf_head (&out), "\"finish_reason\":\"tool_calls\""));
    mesh_completion_destroy (&assembly);
    cache_entry_destroy (&entry);

    //  A FAQ answer
    entry = cache_entry_text ("deepseek-chat", "We open at nine.", 128);
    s_assembles_back (entry, "We open at nine.", NULL);
    cache_entry_destroy (&entry);

    //  Not complete answers are not kept
    const char *bad [] = {
        "[]", "{\"choices\":[]}", "{\"choices\":[{\"message\":{\"content\":\"x\"},\"finish_reason\":null}]}",
        "{\"object\":\"chat.completion.chunk\",\"choices\":[{\"message\":{},\"finish_reason\":\"stop\"}]}",
        "{\"choices\":[{\"message\":{},\"finish_reason\":\"stop\"}],\"errors\":[\"x\"]}", "{",
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++)
        assert (!cache_entry_new ("k", "m", bad [i], strlen (bad [i]), 0, 1, 8, why, sizeof why) && *why);
    mesh_buf_free (&out);
    mesh_buf_free (&encoded);
}
