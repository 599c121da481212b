/*  router_history: merging, the overlap, trimming.                          */
#include "router_history.h"
#include "mesh_util.h"

#include <assert.h>
#include <string.h>

static bool
s_is_system (json_t *message)
{
    const char *role = json_string_value (json_object_get (message, "role"));
    return mesh_streq (role, "system") || mesh_streq (role, "developer");
}

static bool
s_is_user (json_t *message)
{
    return mesh_streq (json_string_value (json_object_get (message, "role")), "user");
}

//  Bytes of text, as the ingress counts them for its estimate
static size_t
s_text_bytes (json_t *message)
{
    json_t *content = json_object_get (message, "content");
    if (json_is_string (content))
        return json_string_length (content);
    size_t bytes = 0, index;
    json_t *part;
    json_array_foreach (content, index, part) {
        json_t *text = json_object_get (part, "text");
        if (json_is_string (text))
            bytes += json_string_length (text);
    }
    json_t *calls = json_object_get (message, "tool_calls");
    json_array_foreach (calls, index, part) {
        json_t *arguments = json_object_get (json_object_get (part, "function"), "arguments");
        if (json_is_string (arguments))
            bytes += json_string_length (arguments);
    }
    return bytes;
}

uint64_t
router_history_tokens (json_t *message)
{
    return 4 + s_text_bytes (message) / 4;
}

static bool
s_member_same (json_t *a, json_t *b, const char *name)
{
    json_t *x = json_object_get (a, name), *y = json_object_get (b, name);
    if (json_is_null (x))
        x = NULL;
    if (json_is_null (y))
        y = NULL;
    return (!x && !y) || (x && y && json_equal (x, y));
}

bool
router_history_same (json_t *a, json_t *b)
{
    return json_is_object (a) && json_is_object (b)
        && s_member_same (a, b, "role") && s_member_same (a, b, "content")
        && s_member_same (a, b, "tool_calls") && s_member_same (a, b, "tool_call_id");
}

size_t
router_history_turns (json_t *history)
{
    size_t turns = 0, index;
    json_t *message;
    json_array_foreach (history, index, message)
        turns += s_is_user (message);
    return turns;
}

static uint64_t
s_tokens (json_t *array)
{
    uint64_t tokens = 0;
    size_t index;
    json_t *message;
    json_array_foreach (array, index, message)
        tokens += router_history_tokens (message);
    return tokens;
}

//  Drops the oldest turns of history until fixed + it is within max
static size_t
s_trim (json_t *history, uint64_t fixed, int64_t max_tokens)
{
    size_t dropped = 0;
    uint64_t total = fixed + s_tokens (history);
    while (json_array_size (history) > 0 && max_tokens > 0 && total > (uint64_t) max_tokens) {
        //  One turn: the first message and what follows up to the next user message
        do {
            total -= router_history_tokens (json_array_get (history, 0));
            json_array_remove (history, 0);
            dropped++;
        } while (json_array_size (history) > 0 && !s_is_user (json_array_get (history, 0)));
    }
    return dropped;
}

//  How many of messages [0, count) the client sent again: the largest j
//  such that messages [j - 1] is the history's last message and every
//  message before it agrees with the history as far as both go
static size_t
s_overlap (json_t *conversation, json_t *messages, size_t count)
{
    size_t known = json_array_size (conversation);
    if (known == 0)
        return 0;
    for (size_t j = count; j > 0; j--) {
        size_t both = MESH_MIN (j, known);
        bool agree = true;
        for (size_t k = 1; k <= both && agree; k++)
            agree = router_history_same (json_array_get (messages, j - k),
                                         json_array_get (conversation, known - k));
        if (agree)
            return j;
    }
    return 0;
}

int
router_history_merge (json_t *history, json_t *messages, int64_t max_tokens, router_history_t *merge)
{
    memset (merge, 0, sizeof *merge);
    if (!json_is_array (messages))
        return -1;
    size_t index;
    json_t *message;
    json_array_foreach (messages, index, message)
        if (!json_is_object (message))
            return -1;
    //  The two systems and conversations
    json_t *stored_system = json_array (), *conversation = json_array ();
    json_array_foreach (history, index, message) {
        if (!json_is_object (message))
            continue;
        if (s_is_system (message) && json_array_size (conversation) == 0)
            json_array_append (stored_system, message);
        else
            json_array_append (conversation, message);
    }
    json_t *given_system = json_array (), *given = json_array ();
    json_array_foreach (messages, index, message) {
        if (s_is_system (message) && json_array_size (given) == 0)
            json_array_append (given_system, message);
        else
            json_array_append (given, message);
    }
    if (json_array_size (given_system)) {
        merge->system = given_system;
        json_decref (stored_system);
    }
    else {
        merge->system = stored_system;
        json_decref (given_system);
    }
    merge->resent = s_overlap (conversation, given, json_array_size (given));
    merge->added = json_array ();
    for (size_t i = merge->resent; i < json_array_size (given); i++)
        json_array_append (merge->added, json_array_get (given, i));
    json_decref (given);
    merge->history = conversation;
    merge->dropped = s_trim (conversation, s_tokens (merge->system) + s_tokens (merge->added), max_tokens);
    merge->tokens = s_tokens (merge->system) + s_tokens (merge->history) + s_tokens (merge->added);
    return 0;
}

void
router_history_free (router_history_t *merge)
{
    json_decref (merge->system);
    json_decref (merge->history);
    json_decref (merge->added);
    memset (merge, 0, sizeof *merge);
}

json_t *
router_history_upstream (const router_history_t *merge)
{
    json_t *all = json_array ();
    json_array_extend (all, merge->system);
    json_array_extend (all, merge->history);
    json_array_extend (all, merge->added);
    return all;
}

json_t *
router_history_after (const router_history_t *merge, json_t *answer, int64_t max_tokens)
{
    json_t *conversation = json_copy (merge->history);
    json_array_extend (conversation, merge->added);
    if (json_is_object (answer)) {
        json_t *kept = json_copy (answer);
        json_object_del (kept, "reasoning_content");
        json_object_set_new (kept, "role", json_string ("assistant"));
        json_array_append_new (conversation, kept);
    }
    s_trim (conversation, s_tokens (merge->system), max_tokens);
    json_t *all = json_copy (merge->system);
    json_array_extend (all, conversation);
    json_decref (conversation);
    return all;
}

//  Selftest -----------------------------------------------------------------

static json_t *
s_message (const char *role, const char *content)
{
    return json_pack ("{s:s, s:s}", "role", role, "content", content);
}

static const char *
s_content (json_t *array, size_t i)
{
    return json_string_value (json_object_get (json_array_get (array, i), "content"));
}

void
router_history_test (bool verbose)
{
    (void) verbose;
    router_history_t merge;
    //  A new session: everything is added
    json_t *first = json_pack ("[o, o]", s_message ("system", "be kind"), s_message ("user", "hi"));
    assert (router_history_merge (NULL, first, 1000, &merge) == 0);
    assert (json_array_size (merge.system) == 1 && json_array_size (merge.added) == 1);
    assert (merge.resent == 0 && merge.dropped == 0);
    json_t *answer = json_pack ("{s:s, s:s, s:s}", "role", "assistant", "content", "Echo: hi",
                                "reasoning_content", "thinking");
    json_t *history = router_history_after (&merge, answer, 1000);
    router_history_free (&merge);
    assert (json_array_size (history) == 3 && router_history_turns (history) == 1);
    assert (!json_object_get (json_array_get (history, 2), "reasoning_content"));

    //  Only the new message: the history goes before it
    json_t *second = json_pack ("[o]", s_message ("user", "again"));
    assert (router_history_merge (history, second, 1000, &merge) == 0);
    json_t *upstream = router_history_upstream (&merge);
    assert (json_array_size (upstream) == 4);
    assert (mesh_streq (s_content (upstream, 0), "be kind") && mesh_streq (s_content (upstream, 3), "again"));
    json_decref (upstream);
    router_history_free (&merge);

    //  The whole history sent again (with the system prompt): not doubled
    json_t *whole = json_pack ("[o, o, o, o]", s_message ("system", "be kind"), s_message ("user", "hi"),
                               s_message ("assistant", "Echo: hi"), s_message ("user", "again"));
    assert (router_history_merge (history, whole, 1000, &merge) == 0);
    assert (merge.resent == 2 && json_array_size (merge.added) == 1);
    upstream = router_history_upstream (&merge);
    assert (json_array_size (upstream) == 4);
    json_decref (upstream);
    router_history_free (&merge);
    //  ... or a part of it, the latest messages only
    json_t *tail = json_pack ("[o, o]", s_message ("assistant", "Echo: hi"), s_message ("user", "again"));
    assert (router_history_merge (history, tail, 1000, &merge) == 0);
    assert (merge.resent == 1 && json_array_size (merge.added) == 1);
    router_history_free (&merge);
    //  A new user message equal to an old one is new; a changed system
    //  prompt replaces the stored one
    json_t *same = json_pack ("[o, o]", s_message ("system", "be brief"), s_message ("user", "hi"));
    assert (router_history_merge (history, same, 1000, &merge) == 0);
    assert (merge.resent == 0 && json_array_size (merge.added) == 1);
    assert (mesh_streq (s_content (merge.system, 0), "be brief") && json_array_size (merge.history) == 2);
    router_history_free (&merge);

    //  The bound drops the oldest turns, never the system prompt or the new
    //  messages: each message here is 4 + 40 / 4 = 14 tokens
    json_t *long_history = json_pack ("[o]", s_message ("system", "0123456789012345678901234567890123456789"));
    for (int i = 0; i < 6; i++) {
        json_array_append_new (long_history, s_message (i % 2 ? "assistant" : "user",
                                                        "abcdefghijabcdefghijabcdefghijabcdefghij"));
    }
    json_t *next = json_pack ("[o]", s_message ("user", "0123456789012345678901234567890123456789"));
    assert (router_history_merge (long_history, next, 14 * 4, &merge) == 0);
    assert (merge.dropped == 4 && json_array_size (merge.history) == 2 && merge.tokens == 14 * 4);
    json_t *after = router_history_after (&merge, answer, 14 * 4);
    assert (json_array_size (after) == 3);      //  system, the new message, the answer... of 4 max
    assert (mesh_streq (json_string_value (json_object_get (json_array_get (after, 1), "role")), "user"));
    json_decref (after);
    router_history_free (&merge);
    //  Not an array of objects
    json_t *bad = json_pack ("[i]", 1);
    assert (router_history_merge (history, bad, 1000, &merge) == -1);
    router_history_free (&merge);
    assert (router_history_same (json_array_get (history, 1), json_array_get (whole, 1)));
    assert (!router_history_same (json_array_get (history, 1), json_array_get (whole, 2)));
    json_decref (bad);
    json_decref (next);
    json_decref (long_history);
    json_decref (same);
    json_decref (tail);
    json_decref (whole);
    json_decref (second);
    json_decref (history);
    json_decref (answer);
    json_decref (first);
}
