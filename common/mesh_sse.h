/*  mesh_sse: server-sent events parser (the WHATWG event-stream grammar).

    Feed it bytes as they arrive, cut anywhere; it calls back once per
    complete event with the event's data (data lines joined with LF), and
    once per comment line (": keep-alive").  CRLF, LF and CR line endings
    are all accepted.  event:, id: and retry: fields are parsed and dropped:
    seekmesh writes only data lines to its clients.  An event or line longer
    than max_event_bytes fails the stream, so a hostile upstream cannot make
    it buffer without bound.  Single-threaded per instance.                  */
#ifndef MESH_SSE_H
#define MESH_SSE_H

#include "mesh_buf.h"

#include <stdbool.h>
#include <stddef.h>

enum { MESH_SSE_DATA = 1, MESH_SSE_COMMENT = 2 };

//  Return 0 to go on, -1 to stop parsing (mesh_sse_feed returns -1).
typedef int (mesh_sse_fn) (void *arg, int kind, const char *data, size_t len);

typedef struct {
    mesh_buf_t line;            //  a line cut by the end of a feed
    mesh_buf_t data;            //  data lines of the event being read
    bool has_data;
    bool skip_lf;               //  the last feed ended in CR
    size_t max_event_bytes;
} mesh_sse_t;

void mesh_sse_init (mesh_sse_t *self, size_t max_event_bytes);
void mesh_sse_reset (mesh_sse_t *self);
void mesh_sse_free (mesh_sse_t *self);
//  Returns 0, or -1 if the stream is malformed (too long) or fn stopped it.
int  mesh_sse_feed (mesh_sse_t *self, const char *data, size_t len,
                    mesh_sse_fn *fn, void *arg);

void mesh_sse_test (bool verbose);

#endif
