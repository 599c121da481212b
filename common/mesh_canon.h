/*  mesh_canon: the canonical form of a JSON request body, which the
    response cache hashes into its key, and what else the cache reads from
    the body in the same pass (the temperature, the last user message).

    Canonical means: members of every object sorted by name (bytewise on
    the UTF-8), no white space, strings and numbers written exactly as
    jansson writes them (json_dumps with JSON_COMPACT | JSON_SORT_KEYS), a
    member named twice counted once with its last value, as jansson reads
    it.  So two bodies that differ only in key order, white space, string
    escapes or the spelling of a number (1e2 and 100.0) have one form.
    Top-level members a caller names (user, stream, stream_options) are
    left out.

    The parser reads exactly what jansson reads, or declines: a text that
    is not a JSON object, an integer past 64 bits, a real that overflows,
    \u0000, invalid UTF-8, nesting deeper than MESH_CANON_MAX_DEPTH.  The
    text comes from clients; nothing in it trips an assert
    (tests/fuzz/fuzz_canon.c holds it to jansson byte for byte).  It
    allocates nothing per call once its arena has grown.  One thread per
    object.                                                                 */
#ifndef MESH_CANON_H
#define MESH_CANON_H

#include "mesh_buf.h"

#include <stdbool.h>
#include <stddef.h>

#define MESH_CANON_MAX_DEPTH 64

typedef struct mesh_canon_t mesh_canon_t;

mesh_canon_t *mesh_canon_new (void);
void mesh_canon_destroy (mesh_canon_t **self_p);

//  Parses one JSON object.  0, or -1 with a reason.  What it read lives
//  until the next parse; data must stay put until then.
int  mesh_canon_parse (mesh_canon_t *self, const char *data, size_t len,
                       char *why, size_t why_size);
//  Appends the canonical form of what was parsed to out, leaving out the
//  top-level members named in drop (a NULL-terminated list, or NULL).
void mesh_canon_write (mesh_canon_t *self, const char *const *drop, mesh_buf_t *out);
//  A top-level member that is a number: true with its value
bool mesh_canon_number (mesh_canon_t *self, const char *name, double *value);
//  The text of the last message whose role is "user": its content string,
//  or its "text" parts joined with "\n", appended to text.  False when
//  there is none.
bool mesh_canon_last_user (mesh_canon_t *self, mesh_buf_t *text);

void mesh_canon_test (bool verbose);

#endif
