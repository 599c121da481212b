/*  mesh_completion: the one answer assembler.  A stream's SSE data
    payloads (chat.completion.chunk objects) become one chat.completion,
    the way the openai SDKs' stream helper (ChatCompletionStream, whose
    finalChatCompletion () gives the whole answer) adds them up:

    - top-level members: the first chunk's, then each later chunk's
      overwrite them (id, created, model, usage, anything unknown);
      `object` becomes "chat.completion", a falsy system_fingerprint goes;
    - a choice (by its integer `index`) starts with its first chunk's
      finish_reason and logprobs; a later non-empty finish_reason replaces
      it; logprobs content/refusal lists are joined; other choice members
      are overwritten;
    - in the delta: non-empty content and refusal pieces are joined; a
      non-empty role replaces the role; tool calls are kept by their index
      (a non-empty id or type replaces, a non-empty name replaces,
      arguments pieces are joined, other members overwrite; the index is
      not in the answer); other delta members are overwritten;
    - the answer: finish_reason as kept.

    Where we part from the SDK, on purpose (tests/sdk/completion.test.js
    checks the rest against the SDK itself):
    - reasoning_content pieces are joined, like content (the SDK keeps the
      last piece only, so DeepSeek's thinking would be lost); the member is
      there when a piece was a string;
    - refusal is there only when a piece was non-empty (the SDK adds
      "refusal": null to every answer; DeepSeek's non-stream answers have
      no such member);
    - an answer with no text has content "", as non-stream answers have it,
      unless it has a tool call, a function call or a refusal (then null);
      the SDK gives null whenever no piece was non-empty;
    - a choice without a finish_reason, an answer without a role or a tool
      call without an id are rendered (finish_reason null, role
      "assistant", id "") where the SDK throws: a cut stream still has an
      answer to record;
    - pieces that are not strings (a number as content) are ignored;
      choices whose index is not an integer in [0, MESH_COMPLETION_CHOICES)
      are dropped, and at most MESH_COMPLETION_TOOL_CALLS calls a choice
      are kept;
    - payloads that are not chunks (an error event, anything that is not a
      JSON object with a `choices` array) are kept, as sent, in "errors".

    The text kept (content, reasoning, refusal, tool names and arguments,
    logprobs, errors) is bounded by max_bytes, cut on a character; past
    it the answer is truncated and says so.

    Most chunks carry one choice's content or reasoning and nothing else
    new: mesh_completion_add reads those with a scanner that allocates
    nothing; any other chunk, or any doubt, goes through jansson
    (mesh_completion_add_parsed, the reference).  Both give the same answer
    byte for byte (tests/fuzz/fuzz_completion.c).  One thread.             */
#ifndef MESH_COMPLETION_H
#define MESH_COMPLETION_H

#include "mesh_buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define MESH_COMPLETION_CHOICES     8       //  choice indexes kept (DeepSeek sends 1)
#define MESH_COMPLETION_TOOL_CALLS  128     //  tool calls kept per choice
#define MESH_COMPLETION_ERRORS      8       //  non-chunk payloads kept

typedef struct mesh_completion_t mesh_completion_t;

//  max_bytes 0: no bound
mesh_completion_t *mesh_completion_new (size_t max_bytes);
void mesh_completion_destroy (mesh_completion_t **self_p);

//  One SSE data payload, as the upstream sent it
void mesh_completion_add (mesh_completion_t *self, const char *data, size_t len);
//  The same through jansson alone
void mesh_completion_add_parsed (mesh_completion_t *self, const char *data, size_t len);

//  The answer as a chat.completion object (compact JSON), replacing out
void mesh_completion_render (mesh_completion_t *self, mesh_buf_t *out);

//  True once a chunk (a payload with choices) was added
bool mesh_completion_started (mesh_completion_t *self);
bool mesh_completion_truncated (mesh_completion_t *self);
//  The answer's usage object so far, or NULL (borrowed)
json_t *mesh_completion_usage (mesh_completion_t *self);
//  Choice index's finish_reason, or NULL while it has none
const char *mesh_completion_finish (mesh_completion_t *self, size_t index);
//  Chunks that carried text (content, reasoning, refusal, tool call
//  arguments): the tokens a stream delivered when no usage says (DeepSeek
//  and OpenAI stream one token a chunk)
size_t mesh_completion_pieces (mesh_completion_t *self);
//  Chunks read by the scanner
size_t mesh_completion_fast_count (mesh_completion_t *self);

void mesh_completion_test (bool verbose);

#endif
