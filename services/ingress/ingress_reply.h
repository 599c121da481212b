/*  ingress_reply: a stream's answer, assembled from its SSE payloads the
    way the SDKs do, for the audit record.

    Each payload's deltas are appended per choice (content,
    reasoning_content, tool calls by index, finish_reason); the first
    chunk's id, created, model and system_fingerprint and the last usage
    are kept; payloads that are not chunks (error events, anything not
    JSON) are kept in "errors".  Rendered, it is a chat.completion object
    like a non-stream answer.  The text kept is bounded (max_bytes, cut on
    a character); past it the reply says truncated.

    Most chunks carry one choice's content or reasoning and nothing else
    new: those are read by a scanner that allocates nothing and decodes the
    one string in place.  Any other chunk, or any doubt, goes through
    jansson; both give the same answer (tests/fuzz/fuzz_reply.c).  One
    thread.                                                                 */
#ifndef INGRESS_REPLY_H
#define INGRESS_REPLY_H

#include "mesh_buf.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct ingress_reply_t ingress_reply_t;

ingress_reply_t *ingress_reply_new (size_t max_bytes);
void ingress_reply_destroy (ingress_reply_t **self_p);
//  One SSE data payload, as sent to the client
void ingress_reply_add (ingress_reply_t *self, const char *data, size_t len);
//  The same through jansson alone (the reference the fuzz target compares)
void ingress_reply_add_parsed (ingress_reply_t *self, const char *data, size_t len);
//  The answer as a chat.completion object (compact JSON), replacing out
void ingress_reply_render (ingress_reply_t *self, mesh_buf_t *out);
bool ingress_reply_truncated (ingress_reply_t *self);
//  Chunks read by the scanner, and by jansson
size_t ingress_reply_fast_count (ingress_reply_t *self);

void ingress_reply_test (bool verbose);

#endif
