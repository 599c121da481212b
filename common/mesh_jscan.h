/*  mesh_jscan: a JSON reader for hot paths that reads text exactly as
    jansson would, or declines.

    It walks a JSON text in place and allocates nothing (decoded strings go
    to a scratch buffer the caller owns).  Whatever jansson might read
    differently is declined (-1 / false): escaped keys, numbers with an
    exponent or over MESH_JSCAN_NUMBER characters, nesting deeper than the
    caller allows, \u0000, lone surrogates, bytes that are not UTF-8.  A
    caller that is declined hands the whole text to jansson, so declining
    is always safe; accepting must match jansson byte for byte
    (tests/fuzz/fuzz_completion.c holds mesh_completion to that).  Any
    thread; no shared state.                                                */
#ifndef MESH_JSCAN_H
#define MESH_JSCAN_H

#include "mesh_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_JSCAN_NUMBER 15        //  longest number accepted (no overflow in jansson)

typedef struct {
    const char *at, *end;
    mesh_buf_t *scratch;            //  the last string decoded
} mesh_jscan_t;

void mesh_jscan_init (mesh_jscan_t *self, const char *data, size_t len, mesh_buf_t *scratch);
//  Skips white space, then takes c if it is next
bool mesh_jscan_eat (mesh_jscan_t *self, char c);
//  Takes a literal (null, true, false) if it is next
bool mesh_jscan_literal (mesh_jscan_t *self, const char *word);
//  A string: its raw body (escapes unread) in [*body, *body + *len); -1
//  for anything jansson would refuse
int  mesh_jscan_string (mesh_jscan_t *self, const char **body, size_t *len);
//  A string or null: *body NULL for null
int  mesh_jscan_string_or_null (mesh_jscan_t *self, const char **body, size_t *len);
//  A member name without escapes (an escaped name could spell one that
//  matters), and its colon
int  mesh_jscan_key (mesh_jscan_t *self, const char **body, size_t *len);
//  A number jansson reads as an integer (no fraction, no exponent)
int  mesh_jscan_integer (mesh_jscan_t *self, int64_t *value);
//  Any value, nested at most max_depth deep
int  mesh_jscan_skip (mesh_jscan_t *self, int max_depth);
//  True when nothing but white space is left
bool mesh_jscan_done (mesh_jscan_t *self);

//  The text of a string body mesh_jscan_string accepted: the body itself
//  when it needs no decoding, else decoded into scratch
void mesh_jscan_text (const char *body, size_t len, mesh_buf_t *scratch,
                      const char **text, size_t *text_len);

void mesh_jscan_test (bool verbose);

#endif
