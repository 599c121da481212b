/*  mock_render: DeepSeek's wire format for a mock_reply.

    SSE events ("data: <one-line JSON>\n\n"), the non-stream JSON body, the
    error envelope and the fixed bodies of /models and /user/balance, all
    built with plain appends into a mesh_buf: no JSON library on the hot
    path, strings through mock_json_escape.  A chunk's constant head (id,
    created, model) is rendered once per reply into reply->prefix.
    Any thread; no state of its own.                                        */
#ifndef MOCK_RENDER_H
#define MOCK_RENDER_H

#include "mock_reply.h"

#include <stdbool.h>

#define MOCK_SSE_KEEPALIVE ": keep-alive\n\n"
#define MOCK_SSE_DONE      "data: [DONE]\n\n"

//  Sets the reply's id and created time and renders its chunk prefix.
void mock_render_begin (mock_reply_t *reply, const char *id, int64_t created);
//  The first chunk: role "assistant", empty content.
void mock_render_first (mesh_buf_t *out, const mock_reply_t *reply);
void mock_render_delta (mesh_buf_t *out, const mock_reply_t *reply, const mock_delta_t *delta);
//  The final chunk, with finish_reason and usage.
void mock_render_final (mesh_buf_t *out, const mock_reply_t *reply);
//  The whole non-stream body (iterates the reply from the start).
void mock_render_body (mesh_buf_t *out, mock_reply_t *reply);
//  {"error":{"message":...,"type":...,"param":null,"code":...}} for status;
//  message NULL for DeepSeek's usual text.  with_status adds "status":N
//  next to "error" (the WebSocket transport's error event).
void mock_render_error (mesh_buf_t *out, int status, const char *message, bool with_status);
void mock_render_models (mesh_buf_t *out);
void mock_render_balance (mesh_buf_t *out);
//  Decimal integer.
void mock_render_int (mesh_buf_t *out, int64_t value);

void mock_render_test (bool verbose);

#endif
