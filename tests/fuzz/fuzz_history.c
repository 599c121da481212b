/*  fuzz_history: a session's stored history and a request's messages
    merged (services/router/router_history.c).

    Input: one byte choosing the token bound (0: none, else 4 x the byte),
    then the history's JSON, a newline, the request's messages' JSON.

    Property: no crash, leak or UB; the merge is refused exactly when the
    messages are not an array of objects; what goes upstream is the system
    prompt, the history kept and the added messages, which are the end of
    the request's; without a bound nothing is dropped; and a client that
    then sends everything again (what went upstream, the answer and one
    new message) has exactly that one message added, nothing doubled.    */
#include "fuzz.h"
#include "router/router_history.h"

#include <jansson.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int64_t max_tokens = data [0] ? (int64_t) data [0] * 4 : 0;
    const char *text = (const char *) data + 1, *end = (const char *) data + size;
    const char *line = memchr (text, '\n', (size_t) (end - text));
    if (!line)
        return 0;
    json_t *history = json_loadb (text, (size_t) (line - text), 0, NULL);
    json_t *messages = json_loadb (line + 1, (size_t) (end - line - 1), 0, NULL);
    bool objects = json_is_array (messages);
    size_t index;
    json_t *message;
    json_array_foreach (messages, index, message)
        objects = objects && json_is_object (message);
    router_history_t merge;
    int rc = router_history_merge (history, messages, max_tokens, &merge);
    FUZZ_ASSERT ((rc == 0) == objects);
    if (rc == 0) {
        json_t *upstream = router_history_upstream (&merge);
        FUZZ_ASSERT (json_array_size (upstream) == json_array_size (merge.system)
                     + json_array_size (merge.history) + json_array_size (merge.added));
        size_t given = json_array_size (messages), added = json_array_size (merge.added);
        FUZZ_ASSERT (added <= given);
        for (size_t i = 0; i < added; i++)
            FUZZ_ASSERT (json_equal (json_array_get (merge.added, i),
                                     json_array_get (messages, given - added + i)));
        if (max_tokens == 0)
            FUZZ_ASSERT (merge.dropped == 0);
        json_t *answer = json_pack ("{s:s, s:s}", "role", "assistant", "content", "fuzz answer");
        json_t *after = router_history_after (&merge, answer, max_tokens);
        if (max_tokens == 0) {
            json_t *again = json_copy (upstream);
            json_array_append (again, answer);
            json_array_append_new (again, json_pack ("{s:s, s:s}", "role", "user", "content", "fuzz next"));
            router_history_t second;
            FUZZ_ASSERT (router_history_merge (after, again, 0, &second) == 0);
            FUZZ_ASSERT (json_array_size (second.added) == 1);
            FUZZ_ASSERT (json_equal (json_array_get (second.added, 0), json_array_get (again, json_array_size (again) - 1)));
            router_history_free (&second);
            json_decref (again);
        }
        json_decref (after);
        json_decref (answer);
        json_decref (upstream);
    }
    router_history_free (&merge);
    json_decref (history);
    json_decref (messages);
    return 0;
}
