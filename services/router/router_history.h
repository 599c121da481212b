/*  router_history: a session's history and the messages of its requests.

    A history is a JSON array of messages: the system prompt (the system
    and developer messages the session was given last) first, then the
    conversation, oldest first.  A request of the session brings messages
    of its own; merging gives what goes upstream:
        system   the request's system messages if it has any (the client
                 changed the prompt), else the history's
        history  the history's conversation, less what the client sends
                 again: when the request's messages, from their start,
                 end with the history's last message (an answer) and agree
                 with the history as far as both go, the client sent the
                 history along, and only what follows that point is new
        added    the request's other messages, in order
    then the oldest turns (a user message and what follows it up to the
    next one) are dropped until the whole is within max_tokens (about four
    bytes of text a token, four more a message, as the ingress estimates);
    the system prompt and the added messages are never dropped.  After the
    answer, the history becomes system + history + added + the answer
    (without reasoning_content, which DeepSeek refuses in input), trimmed
    the same way.

    Messages are compared by role, content (a string, or the parts as
    compact JSON), tool calls and tool call id; other members (name,
    reasoning_content) do not count.  Pure functions, any thread.          */
#ifndef ROUTER_HISTORY_H
#define ROUTER_HISTORY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    json_t *system;             //  the system prompt in force (an array, maybe empty)
    json_t *history;            //  the history's conversation kept
    json_t *added;              //  the request's new messages
    size_t resent;              //  messages the client sent again (not added)
    size_t dropped;             //  history messages dropped for the bound
    uint64_t tokens;            //  the estimate of what goes upstream
} router_history_t;

//  Merges messages (the request's) into history (the stored array, NULL
//  for a new session).  Borrows both; fills merge (free it with
//  router_history_free).  -1 if messages is not an array of objects.
int     router_history_merge (json_t *history, json_t *messages, int64_t max_tokens,
                              router_history_t *merge);
void    router_history_free (router_history_t *merge);
//  What goes upstream: system + history + added (a new array)
json_t *router_history_upstream (const router_history_t *merge);
//  The history after the turn: with the answer (an assistant message, or
//  NULL when the client got none), trimmed to max_tokens (a new array)
json_t *router_history_after (const router_history_t *merge, json_t *answer, int64_t max_tokens);
//  User messages in a history (its turns)
size_t  router_history_turns (json_t *history);
//  The estimate of one message, in tokens
uint64_t router_history_tokens (json_t *message);
//  True when two messages are the same for the comparison above
bool    router_history_same (json_t *a, json_t *b);

void    router_history_test (bool verbose);

#endif
