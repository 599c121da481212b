/*  mock_reply: what seekmesh-mock answers to one chat request.

    mock_reply_parse reads a request body into the few facts the answer
    depends on (model, PROMPT, reasoning, tools, a tool message after the
    last user message, JSON mode, limits and the optional "mock"
    directives) and plans the reply; mock_reply_next then yields its deltas
    in order: reasoning pieces, then content pieces or one tool call.
    The answer: a recording of mock_replay when one matches, else one tool
    call when tools are offered and no tool message answered the last user
    message yet, else text: "Echo: " + PROMPT, or {"echo": PROMPT} in JSON
    mode (response_format json_object); or, with the directive "deltas",
    exactly the pieces it lists (a string: content; {"reasoning": text}:
    reasoning, sent first, as DeepSeek does).
    Deterministic and free of I/O, so the selftest pins the exact sequences.
    Texts are raw UTF-8; mock_render escapes them.

    One instance per connection, its buffers reused from request to request
    (no heap churn once warm).  Single-threaded per instance.               */
#ifndef MOCK_REPLY_H
#define MOCK_REPLY_H

#include "mesh_buf.h"
#include "mock_replay.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    MOCK_DELTA_REASONING = 1,   //  "reasoning_content" piece
    MOCK_DELTA_CONTENT,         //  "content" piece
    MOCK_DELTA_TOOL_HEAD,       //  tool call: id, type, name; text is the name
    MOCK_DELTA_TOOL_ARGS        //  tool call: a piece of the arguments
};

enum { MOCK_STALL_NONE, MOCK_STALL_FIRST, MOCK_STALL_AFTER };

typedef struct {
    int kind;
    const char *text;           //  raw text, valid until the next parse
    size_t len;
} mock_delta_t;

typedef struct {
    //  From the request
    mesh_buf_t model;           //  raw model string
    mesh_buf_t prompt;          //  PROMPT: text of the last user message
    mesh_buf_t tool_name;       //  first tool's function.name (or the recording's)
    mesh_buf_t tool_result;     //  content of the last tool message after PROMPT
    bool stream;
    bool reasoning;
    bool tools;                 //  tools offered (and tool_choice is not "none")
    bool after_tool;            //  a tool message came after the last user message
    bool json_mode;             //  response_format {"type":"json_object"}
    int64_t max_tokens;         //  0: no limit
    int64_t prompt_tokens;      //  words in every message content
    //  Directives of the "mock" object; -1 (or 0 for status) when absent
    int64_t tokens;
    int64_t delay_ms;
    int64_t queue_ms;
    int status;
    int64_t retry_after;
    int64_t reset_after;
    int stall;                  //  MOCK_STALL_*
    int64_t stall_after;
    bool usage_when_asked;      //  "usage": "when_asked": streams report usage
                                //  only with stream_options.include_usage, in an
                                //  extra chunk (OpenAI's way), not DeepSeek's
    bool include_usage;         //  the request's stream_options.include_usage
    //  "deltas": the pieces, [kind byte][u32 length][text] each, the
    //  reasoning ones first; scripted when given
    bool scripted;
    mesh_buf_t script;
    //  Recordings to answer from, set by the owner (NULL: none); the one
    //  that answers this request, or NULL
    const mock_replay_t *replay;
    const mock_replay_entry_t *recording;
    //  The plan
    bool calls;                 //  the answer is a tool call
    mesh_buf_t reasoning_text;  //  "Thinking about: " + PROMPT
    mesh_buf_t content_text;    //  "Echo: " + PROMPT, its JSON form or the recording's
    mesh_buf_t tool_args;       //  {"echo":<PROMPT as a JSON string>} or the recording's
    size_t tool_args_cut;       //  where the arguments are cut in two
    int64_t reasoning_deltas;   //  planned, after max_tokens
    int64_t content_deltas;     //  planned content deltas (3 chunks for a tool call)
    bool tool_call;             //  the tool call is sent
    bool cut;                   //  max_tokens cut the reply short
    //  Iteration
    int64_t at;                 //  deltas yielded so far
    size_t cursor;              //  byte offset in the text being cut
    char token_text [32];
    //  Set by mock_render_begin
    char id [48];
    int64_t created;
    mesh_buf_t prefix;          //  "data: {...,"delta":" of every chunk
} mock_reply_t;

void    mock_reply_init (mock_reply_t *self);
void    mock_reply_free (mock_reply_t *self);
//  Parses a chat request body and plans the reply.  Returns 0, or -1 with
//  the reason for a 400 in error (it never quotes the body).
int     mock_reply_parse (mock_reply_t *self, const char *body, size_t len,
                          char *error, size_t error_size);
//  Total deltas (stream chunks between the first and the final one).
int64_t mock_reply_deltas (const mock_reply_t *self);
//  Yields the next delta; false when the reply is complete.
bool    mock_reply_next (mock_reply_t *self, mock_delta_t *delta);
//  Starts the iteration over.
void    mock_reply_rewind (mock_reply_t *self);
//  "stop", "length" or "tool_calls".
const char *mock_reply_finish_reason (const mock_reply_t *self);
//  usage.completion_tokens: reasoning and content deltas, a tool call is 1.
int64_t mock_reply_completion_tokens (const mock_reply_t *self);

//  Appends s as the inside of a JSON string (no quotes): escapes quotes,
//  backslashes and control characters, keeps UTF-8 as it is.
void    mock_json_escape (mesh_buf_t *out, const char *s, size_t len);

void    mock_reply_test (bool verbose);

#endif
