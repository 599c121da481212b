/*  mesh_wordchunk: a stream's chunk through the word filter.              */
#include "mesh_wordchunk.h"
#include "mesh_jscan.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <string.h>

#define SKIP_DEPTH 32

void
mesh_wordchunk_escape (mesh_buf_t *out, const char *text, size_t len)
{
    static const char hex [] = "0123456789abcdef";
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) text [i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        mesh_buf_append (out, text + run, i - run);
        run = i + 1;
        char escaped [6] = { '\\', (char) c, 0, 0, 0, 0 };
        size_t n = 2;
        if (c == '\n')
            escaped [1] = 'n';
        else
        if (c == '\r')
            escaped [1] = 'r';
        else
        if (c == '\t')
            escaped [1] = 't';
        else
        if (c < 0x20) {
            memcpy (escaped + 1, "u00", 3);
            escaped [4] = hex [c >> 4];
            escaped [5] = hex [c & 15];
            n = 6;
        }
        mesh_buf_append (out, escaped, n);
    }
    mesh_buf_append (out, text + run, len - run);
}

//  Feeding ----------------------------------------------------------------------

//  Reasoning, then content, then the end if the chunk has a finish_reason
static void
s_feed (mesh_wordstream_t *stream, const char *reasoning, size_t reasoning_len, const char *content,
        size_t content_len, bool finish, mesh_buf_t outs [MESH_WORDFILTER_FIELDS])
{
    if (reasoning)
        mesh_wordstream_feed (stream, MESH_WORD_REASONING, reasoning, reasoning_len, outs);
    if (content)
        mesh_wordstream_feed (stream, MESH_WORD_CONTENT, content, content_len, outs);
    if (finish && !mesh_wordstream_blocked (stream))
        mesh_wordstream_finish (stream, outs);
}

//  Through jansson ---------------------------------------------------------------

//  Sets delta's member to what was released for it: a string when there is
//  text, "" for a member that was a string, else as it was
static void
s_set_text (json_t *delta, const char *member, const mesh_buf_t *text)
{
    json_t *given = json_object_get (delta, member);
    if (mesh_buf_size (text))
        json_object_set_new (delta, member, json_stringn (mesh_buf_head (text), mesh_buf_size (text)));
    else
    if (json_is_string (given))
        json_object_set_new (delta, member, json_string (""));
}

static bool
s_says_something (json_t *root)
{
    if (json_array_size (json_object_get (root, "choices")) == 0)
        return true;                //  a usage chunk, or whatever it is
    json_t *usage = json_object_get (root, "usage");
    if (usage && !json_is_null (usage))
        return true;
    size_t index;
    json_t *choice;
    json_array_foreach (json_object_get (root, "choices"), index, choice) {
        json_t *finish = json_object_get (choice, "finish_reason");
        json_t *delta = json_object_get (choice, "delta");
        const char *content = json_string_value (json_object_get (delta, "content"));
        const char *reasoning = json_string_value (json_object_get (delta, "reasoning_content"));
        if ((finish && !json_is_null (finish)) || json_object_get (delta, "role")
        ||  json_object_get (delta, "tool_calls") || (content && *content) || (reasoning && *reasoning))
            return true;
    }
    return false;
}

//  Writes root with the released texts into choice 0; feeds the stream
//  first when feed
static void
s_parsed (mesh_wordstream_t *stream, json_t *root, bool feed, bool blocked_before,
          mesh_buf_t outs [MESH_WORDFILTER_FIELDS], mesh_buf_t *out, mesh_wordchunk_result_t *result)
{
    json_t *kept = json_array ();
    bool taken = false, blocked = blocked_before;
    size_t index;
    json_t *choice;
    json_array_foreach (json_object_get (root, "choices"), index, choice) {
        if (taken || !json_is_object (choice) || json_integer_value (json_object_get (choice, "index")) != 0
        ||  !json_is_integer (json_object_get (choice, "index")))
            continue;
        taken = true;
        json_t *logprobs = json_object_get (choice, "logprobs");
        if (logprobs && !json_is_null (logprobs))
            json_object_del (choice, "logprobs");        //  they spell the tokens
        json_t *delta = json_object_get (choice, "delta");
        json_t *finish = json_object_get (choice, "finish_reason");
        bool finishing = finish && !json_is_null (finish);
        if (feed) {
            json_t *reasoning = json_object_get (delta, "reasoning_content");
            json_t *content = json_object_get (delta, "content");
            s_feed (stream, json_string_value (reasoning), json_string_length (reasoning),
                    json_string_value (content), json_string_length (content), finishing, outs);
            blocked = mesh_wordstream_blocked (stream);
        }
        result->finished = finishing || blocked;
        if (!json_is_object (delta) && (mesh_buf_size (&outs [0]) || mesh_buf_size (&outs [1]))) {
            delta = json_object ();
            json_object_set_new (choice, "delta", delta);
        }
        if (json_is_object (delta)) {
            s_set_text (delta, "reasoning_content", &outs [MESH_WORD_REASONING]);
            s_set_text (delta, "content", &outs [MESH_WORD_CONTENT]);
        }
        if (blocked)
            json_object_set_new (choice, "finish_reason", json_string ("content_filter"));
        json_array_append (kept, choice);
    }
    json_object_set_new (root, "choices", kept);
    result->blocked = blocked;
    if (s_says_something (root)) {
        char *text = json_dumps (root, JSON_COMPACT);
        mesh_buf_append_str (out, text ? text : "{}");
        free (text);
        result->verdict = MESH_WORDCHUNK_SEND;
    }
    else
        result->verdict = MESH_WORDCHUNK_QUIET;
}

void
mesh_wordchunk_filter_parsed (mesh_wordstream_t *stream, const char *data, size_t len, mesh_buf_t *out,
                              mesh_wordchunk_result_t *result)
{
    memset (result, 0, sizeof *result);
    mesh_buf_reset (out);
    if (mesh_wordstream_blocked (stream)) {
        result->verdict = MESH_WORDCHUNK_QUIET;
        result->blocked = result->finished = true;
        return;
    }
    json_t *root = json_loadb (data, len, 0, NULL);
    if (!json_is_object (root) || !json_is_array (json_object_get (root, "choices"))) {
        json_decref (root);
        result->verdict = MESH_WORDCHUNK_AS_IS;
        return;
    }
    mesh_buf_t outs [MESH_WORDFILTER_FIELDS];
    mesh_buf_init (&outs [0]);
    mesh_buf_init (&outs [1]);
    s_parsed (stream, root, true, false, outs, out, result);
    json_decref (root);
    mesh_buf_free (&outs [0]);
    mesh_buf_free (&outs [1]);
}

//  The common shape, scanned ------------------------------------------------------

//  A value's place in the payload
typedef struct {
    const char *at, *end;       //  the whole token (quotes or null included); at NULL: absent
    const char *body;           //  a string's raw body; NULL for null
    size_t len;
} token_t;

typedef struct {
    token_t content, reasoning, finish;
    bool role;
} scan_t;

//  A string or null, with its place
static bool
s_token (mesh_jscan_t *js, token_t *token)
{
    mesh_jscan_literal (js, "");            //  past white space
    token->at = js->at;
    if (mesh_jscan_string_or_null (js, &token->body, &token->len) < 0)
        return false;
    token->end = js->at;
    return true;
}

static bool
s_delta (mesh_jscan_t *js, scan_t *scan)
{
    if (!mesh_jscan_eat (js, '{'))
        return false;
    if (mesh_jscan_eat (js, '}'))
        return true;
    do {
        const char *key;
        size_t key_len;
        if (mesh_jscan_key (js, &key, &key_len) < 0)
            return false;
        token_t *token = mesh_memeq (key, key_len, "content") ? &scan->content
                       : mesh_memeq (key, key_len, "reasoning_content") ? &scan->reasoning : NULL;
        if (token) {
            if (token->at || !s_token (js, token))
                return false;       //  twice, or not text
        }
        else
        if (mesh_memeq (key, key_len, "role")) {
            token_t role;
            if (scan->role || !s_token (js, &role) || !role.body)
                return false;
            scan->role = true;
        }
        else
            return false;           //  tool calls and the rest: the reference
    } while (mesh_jscan_eat (js, ','));
    return mesh_jscan_eat (js, '}');
}

static bool
s_choice (mesh_jscan_t *js, scan_t *scan)
{
    if (!mesh_jscan_eat (js, '[') || !mesh_jscan_eat (js, '{'))
        return false;
    bool index = false, delta = false, logprobs = false;
    do {
        const char *key;
        size_t key_len;
        if (mesh_jscan_key (js, &key, &key_len) < 0)
            return false;
        if (mesh_memeq (key, key_len, "index")) {
            int64_t value;
            if (index || mesh_jscan_integer (js, &value) < 0 || value != 0)
                return false;
            index = true;
        }
        else
        if (mesh_memeq (key, key_len, "delta")) {
            if (delta || !s_delta (js, scan))
                return false;
            delta = true;
        }
        else
        if (mesh_memeq (key, key_len, "logprobs")) {
            if (logprobs || !mesh_jscan_literal (js, "null"))
                return false;
            logprobs = true;
        }
        else
        if (mesh_memeq (key, key_len, "finish_reason")) {
            if (scan->finish.at || !s_token (js, &scan->finish) || scan->finish.body)
                return false;       //  a finish: the reference
        }
        else
            return false;
    } while (mesh_jscan_eat (js, ','));
    //  Exactly one choice
    return index && delta && mesh_jscan_eat (js, '}') && mesh_jscan_eat (js, ']');
}

static bool
s_scan (const char *data, size_t len, mesh_buf_t *scratch, scan_t *scan)
{
    memset (scan, 0, sizeof *scan);
    mesh_jscan_t js;
    mesh_jscan_init (&js, data, len, scratch);
    if (!mesh_jscan_eat (&js, '{'))
        return false;
    bool choices = false, usage = false;
    do {
        const char *key;
        size_t key_len;
        if (mesh_jscan_key (&js, &key, &key_len) < 0)
            return false;
        if (mesh_memeq (key, key_len, "choices")) {
            if (choices || !s_choice (&js, scan))
                return false;
            choices = true;
        }
        else
        if (mesh_memeq (key, key_len, "usage")) {
            if (usage || !mesh_jscan_literal (&js, "null"))
                return false;
            usage = true;
        }
        else
        if (mesh_jscan_skip (&js, SKIP_DEPTH) < 0)
            return false;
    } while (mesh_jscan_eat (&js, ','));
    return choices && mesh_jscan_eat (&js, '}') && mesh_jscan_done (&js);
}

//  Appends a string token with text (or "" / null as the reference would)
static void
s_write_text (mesh_buf_t *out, const token_t *token, const mesh_buf_t *text)
{
    if (mesh_buf_size (text)) {
        mesh_buf_append (out, "\"", 1);
        mesh_wordchunk_escape (out, mesh_buf_head (text), mesh_buf_size (text));
        mesh_buf_append (out, "\"", 1);
    }
    else
    if (token->body)
        mesh_buf_append (out, "\"\"", 2);
    else
        mesh_buf_append (out, token->at, (size_t) (token->end - token->at));
}

void
mesh_wordchunk_filter (mesh_wordstream_t *stream, const char *data, size_t len, mesh_buf_t *out,
                       mesh_wordchunk_result_t *result)
{
    memset (result, 0, sizeof *result);
    mesh_buf_t scratch;
    mesh_buf_init (&scratch);
    scan_t scan;
    if (mesh_wordstream_blocked (stream) || !s_scan (data, len, &scratch, &scan)) {
        mesh_buf_free (&scratch);
        mesh_wordchunk_filter_parsed (stream, data, len, out, result);
        return;
    }
    mesh_buf_reset (out);
    mesh_buf_t texts [2], outs [MESH_WORDFILTER_FIELDS];
    for (int i = 0; i < 2; i++) {
        mesh_buf_init (&texts [i]);
        mesh_buf_init (&outs [i]);
    }
    const char *reasoning = NULL, *content = NULL;
    size_t reasoning_len = 0, content_len = 0;
    if (scan.reasoning.body)
        mesh_jscan_text (scan.reasoning.body, scan.reasoning.len, &texts [0], &reasoning, &reasoning_len);
    if (scan.content.body)
        mesh_jscan_text (scan.content.body, scan.content.len, &texts [1], &content, &content_len);
    s_feed (stream, reasoning, reasoning_len, content, content_len, false, outs);
    result->blocked = result->finished = mesh_wordstream_blocked (stream);
    bool reasoning_out = mesh_buf_size (&outs [MESH_WORD_REASONING]) > 0;
    bool content_out = mesh_buf_size (&outs [MESH_WORD_CONTENT]) > 0;
    if ((reasoning_out && !scan.reasoning.at) || (content_out && !scan.content.at)
    ||  (result->blocked && !scan.finish.at)) {
        //  A member to add: written by the reference, fed already
        json_t *root = json_loadb (data, len, 0, NULL);
        assert (json_is_object (root));         //  what the scanner accepts, jansson reads
        s_parsed (stream, root, false, result->blocked, outs, out, result);
        json_decref (root);
    }
    else
    if (!reasoning_out && !content_out && !scan.role && !result->blocked)
        result->verdict = MESH_WORDCHUNK_QUIET;
    else {
        //  The payload with the new texts (and finish) spliced in
        const token_t *tokens [3] = { &scan.reasoning, &scan.content, &scan.finish };
        const mesh_buf_t *values [3] = { &outs [MESH_WORD_REASONING], &outs [MESH_WORD_CONTENT], NULL };
        const char *at = data;
        while (true) {
            int next = -1;
            for (int i = 0; i < 3; i++)
                if (tokens [i]->at && tokens [i]->at >= at && (next < 0 || tokens [i]->at < tokens [next]->at))
                    next = i;
            if (next < 0)
                break;
            mesh_buf_append (out, at, (size_t) (tokens [next]->at - at));
            if (values [next])
                s_write_text (out, tokens [next], values [next]);
            else
            if (result->blocked)
                mesh_buf_append_str (out, "\"content_filter\"");
            else
                mesh_buf_append (out, tokens [next]->at, (size_t) (tokens [next]->end - tokens [next]->at));
            at = tokens [next]->end;
        }
        mesh_buf_append (out, at, (size_t) (data + len - at));
        result->verdict = MESH_WORDCHUNK_SEND;
    }
    for (int i = 0; i < 2; i++) {
        mesh_buf_free (&texts [i]);
        mesh_buf_free (&outs [i]);
    }
    mesh_buf_free (&scratch);
}

//  Selftest -----------------------------------------------------------------------

static mesh_wordfilter_t *
s_test_filter (void)
{
    const char *json = "{\"version\":1,\"words\":[{\"id\":\"w1\",\"word\":\"darn\",\"action\":\"block\"},"
                       "{\"id\":\"w2\",\"word\":\"heck\",\"action\":\"mask\"}]}";
    mesh_wordfilter_t *filter = mesh_wordfilter_parse (json, strlen (json), NULL, 0);
    assert (filter);
    return filter;
}

//  The payload through both paths (a stream each): the same value
static int
s_test_both (mesh_wordstream_t *fast, mesh_wordstream_t *parsed, const char *payload, const char *expect)
{
    mesh_buf_t one, two;
    mesh_buf_init (&one);
    mesh_buf_init (&two);
    mesh_wordchunk_result_t a, b;
    mesh_wordchunk_filter (fast, payload, strlen (payload), &one, &a);
    mesh_wordchunk_filter_parsed (parsed, payload, strlen (payload), &two, &b);
    assert (a.verdict == b.verdict && a.blocked == b.blocked && a.finished == b.finished);
    if (a.verdict == MESH_WORDCHUNK_SEND) {
        json_t *x = json_loadb (mesh_buf_head (&one), mesh_buf_size (&one), 0, NULL);
        json_t *y = json_loadb (mesh_buf_head (&two), mesh_buf_size (&two), 0, NULL);
        assert (x && y && json_equal (x, y));
        if (expect) {
            json_t *want = json_loads (expect, 0, NULL);
            if (!json_equal (x, want)) {
                fprintf (stderr, "mesh_wordchunk: %.*s\n  expected %s\n", (int) mesh_buf_size (&one),
                         mesh_buf_head (&one), expect);
                assert (false);
            }
            json_decref (want);
        }
        json_decref (x);
        json_decref (y);
    }
    mesh_buf_free (&one);
    mesh_buf_free (&two);
    return a.verdict;
}

void
mesh_wordchunk_test (bool verbose)
{
    (void) verbose;
    mesh_buf_t out;
    mesh_buf_init (&out);
    mesh_wordchunk_escape (&out, "a\"b\\c\n\x01\xe5\x9d\x8f", 10);
    mesh_buf_append (&out, "", 1);
    assert (mesh_streq (mesh_buf_head (&out), "a\\\"b\\\\c\\n\\u0001\xe5\x9d\x8f"));
    mesh_buf_free (&out);

    mesh_wordfilter_t *filter = s_test_filter ();
    mesh_wordstream_t *fast = mesh_wordstream_new (filter, NULL);
    mesh_wordstream_t *parsed = mesh_wordstream_new (filter, NULL);
    const char *head = "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\","
                       "\"choices\":[{\"index\":0,\"delta\":";
    char payload [512];
    //  The first chunk: the role, content ""
    snprintf (payload, sizeof payload, "%s{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
              "\"finish_reason\":null}]}", head);
    assert (s_test_both (fast, parsed, payload, NULL) == MESH_WORDCHUNK_SEND);
    //  Text that flows; text held back (quiet); held text released later
    snprintf (payload, sizeof payload, "%s{\"content\":\"oh \\\"he\"},\"finish_reason\":null}]}", head);
    s_test_both (fast, parsed, payload, "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                 "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"oh \\\"\"},"
                 "\"finish_reason\":null}]}");
    snprintf (payload, sizeof payload, "%s{\"content\":\"ck\"},\"finish_reason\":null}]}", head);
    assert (s_test_both (fast, parsed, payload, NULL) == MESH_WORDCHUNK_QUIET);
    snprintf (payload, sizeof payload, "%s{\"content\":\"! ok\"},\"finish_reason\":null}]}", head);
    s_test_both (fast, parsed, payload, "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                 "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"****! ok\"},"
                 "\"finish_reason\":null}]}");
    //  Reasoning held, released into a chunk without the member: added
    snprintf (payload, sizeof payload, "%s{\"content\":null,\"reasoning_content\":\" da\"}}]}", head);
    s_test_both (fast, parsed, payload, NULL);
    snprintf (payload, sizeof payload, "%s{\"content\":\"x\"}}]}", head);
    s_test_both (fast, parsed, payload, "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,"
                 "\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\",\"reasoning_content\":"
                 "\"da\"}}]}");
    //  A block: the text before it, finish_reason content_filter
    snprintf (payload, sizeof payload, "%s{\"content\":\" da\"},\"finish_reason\":null}]}", head);
    s_test_both (fast, parsed, payload, NULL);
    snprintf (payload, sizeof payload, "%s{\"content\":\"rn it\"},\"finish_reason\":null}]}", head);
    mesh_wordchunk_result_t result;
    mesh_buf_init (&out);
    mesh_wordchunk_filter (fast, payload, strlen (payload), &out, &result);
    mesh_buf_append (&out, "", 1);
    assert (result.verdict == MESH_WORDCHUNK_SEND && result.blocked && result.finished);
    assert (strstr (mesh_buf_head (&out), "\"finish_reason\":\"content_filter\"")
            && strstr (mesh_buf_head (&out), "\"content\":\"\"") && !strstr (mesh_buf_head (&out), "rn"));
    mesh_wordchunk_filter (fast, payload, strlen (payload), &out, &result);
    assert (result.verdict == MESH_WORDCHUNK_QUIET && result.blocked);
    //  Not a chunk: as it is
    mesh_wordchunk_filter (parsed, "{\"error\":{}}", 12, &out, &result);
    assert (result.verdict == MESH_WORDCHUNK_AS_IS);
    mesh_buf_free (&out);
    mesh_wordstream_destroy (&fast);
    mesh_wordstream_destroy (&parsed);
    mesh_wordfilter_unref (&filter);
}
