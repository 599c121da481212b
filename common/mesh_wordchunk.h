/*  mesh_wordchunk: one SSE payload of a stream (a chat.completion.chunk)
    through a word stream (mesh_wordfilter): what the client is sent
    instead.

    The chunk's choice 0 carries text: its reasoning_content, then its
    content, go through the stream; the chunk goes out again with what the
    stream released in their place (the texts held back come out in a
    later chunk, perhaps in a member the chunk did not have).  Other
    choices are dropped (one text a stream) and so are logprobs (they spell
    the tokens).  A chunk with a finish_reason ends the text: what was held
    comes out in it.  A block ends it at once: finish_reason
    "content_filter" in this chunk, nothing after.  A chunk left with
    nothing to say (no text released, no role, no finish, no usage) is not
    sent; a payload that is not a chunk (an error event) is sent as it is.

    Most chunks carry one choice's text and nothing else: those are read
    with mesh_jscan and written back by splicing the new texts into the
    payload (no allocation but the output); any other chunk, or any doubt,
    goes through jansson (mesh_wordchunk_filter_parsed, the reference).
    Both send the same JSON value (tests/fuzz/fuzz_wordchunk.c); what it
    costs a chunk is measured by make bench (mesh-wordfilter-bench).
    One thread per stream.                                                  */
#ifndef MESH_WORDCHUNK_H
#define MESH_WORDCHUNK_H

#include "mesh_buf.h"
#include "mesh_wordfilter.h"

#include <stdbool.h>
#include <stddef.h>

enum {
    MESH_WORDCHUNK_SEND = 1,        //  send out
    MESH_WORDCHUNK_QUIET,           //  send nothing
    MESH_WORDCHUNK_AS_IS            //  not a chunk: send the payload itself
};

typedef struct {
    int verdict;
    bool blocked;                   //  a block ended the text (with this chunk)
    bool finished;                  //  the text ended (a finish_reason, or the block)
} mesh_wordchunk_result_t;

//  Filters data through stream into out (replacing what it held)
void mesh_wordchunk_filter (mesh_wordstream_t *stream, const char *data, size_t len,
                            mesh_buf_t *out, mesh_wordchunk_result_t *result);
//  The same through jansson alone
void mesh_wordchunk_filter_parsed (mesh_wordstream_t *stream, const char *data, size_t len,
                                   mesh_buf_t *out, mesh_wordchunk_result_t *result);
//  Appends text as the inside of a JSON string (quotes, backslashes and
//  control characters escaped; UTF-8 as it is)
void mesh_wordchunk_escape (mesh_buf_t *out, const char *text, size_t len);

void mesh_wordchunk_test (bool verbose);

#endif
