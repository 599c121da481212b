/*  mesh_faq: operators' pinned answers to common questions, and the one
    matcher the cache stage answers with (and the router's admin API tests
    with).

    An entry, as JSON (the admin API's body, Redis's copy, what
    seekmeshctl prints):
      { "id": "faq_3f2a9c1b7d4e",          (given by the admin API)
        "tenant": "acme",                  (whose clients it answers)
        "model": "deepseek-chat",          (optional: every model when absent)
        "exact": "What are your opening hours?"
           or "keywords": ["refund", "order"]
           or "regex": "^(how|where) (do|can) i (reset|change) my password",
        "answer": "We are open 9:00-17:00, Monday to Friday.",
        "created_ms": 1767225600000 }      (given by the admin API)
    It matches the last user message of a request by that tenant (on that
    model): "exact" when both read the same once normalised; "keywords"
    when every keyword occurs in the normalised message (a keyword that
    starts or ends with a letter or digit must start or end a word there);
    "regex" (POSIX extended, case-insensitive) anywhere in the message as
    sent.  Normalised: letters in lower case (full-width forms as ASCII),
    white space, punctuation (ASCII and CJK) and zero-width characters
    between words reduced to one space, none at either end: "What are
    your  opening hours?" and "what are your opening hours" are one text.

    When several entries match: exact before keywords before regex; within
    a kind, an entry for the model before one for every model, then more
    keywords first, then the older first.

    The JSON comes from operators through the admin API and back from
    Redis: a bad entry is refused with the field named, never an assert
    (tests/fuzz/fuzz_faq.c).  Regular expressions are bounded (at most
    MESH_FAQ_REGEX_BYTES, four bounded repeats of at most 16) so a pattern
    cannot make the matcher's automaton explode.  Single-threaded.         */
#ifndef MESH_FAQ_H
#define MESH_FAQ_H

#include "mesh_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_FAQ_ID_BYTES        63
#define MESH_FAQ_QUESTION_BYTES  4096
#define MESH_FAQ_ANSWER_BYTES    65536
#define MESH_FAQ_REGEX_BYTES     512
#define MESH_FAQ_MAX_KEYWORDS    32
#define MESH_FAQ_MATCH_BYTES     65536      //  of a message, read by a regex

typedef enum { MESH_FAQ_EXACT, MESH_FAQ_KEYWORDS, MESH_FAQ_REGEX } mesh_faq_kind_t;

typedef struct mesh_faq_entry_t mesh_faq_entry_t;
typedef struct mesh_faq_t mesh_faq_t;

//  An entry from its JSON; NULL with a reason naming the field.
mesh_faq_entry_t *mesh_faq_entry_parse (const char *json, size_t len, char *why, size_t why_size);
void  mesh_faq_entry_destroy (mesh_faq_entry_t **self_p);
//  The entry as JSON (compact, members in the order above); caller frees
char *mesh_faq_entry_json (const mesh_faq_entry_t *self);
const char *mesh_faq_entry_id (const mesh_faq_entry_t *self);
const char *mesh_faq_entry_tenant (const mesh_faq_entry_t *self);
const char *mesh_faq_entry_model (const mesh_faq_entry_t *self);     //  "" for every model
const char *mesh_faq_entry_answer (const mesh_faq_entry_t *self);
mesh_faq_kind_t mesh_faq_entry_kind (const mesh_faq_entry_t *self);
const char *mesh_faq_kind_name (mesh_faq_kind_t kind);             //  "exact", …
//  Sets the id and creation time (the admin API does, before storing)
void  mesh_faq_entry_stamp (mesh_faq_entry_t *self, const char *id, int64_t created_ms);

mesh_faq_t *mesh_faq_new (void);
void  mesh_faq_destroy (mesh_faq_t **self_p);
//  Adds an entry (the set owns it), replacing one with the same id
void  mesh_faq_put (mesh_faq_t *self, mesh_faq_entry_t *entry);
//  Removes an entry; false if there was none
bool  mesh_faq_remove (mesh_faq_t *self, const char *id);
void  mesh_faq_clear (mesh_faq_t *self);
const mesh_faq_entry_t *mesh_faq_get (mesh_faq_t *self, const char *id);
size_t mesh_faq_count (mesh_faq_t *self);
//  Entries in the order they were added
const mesh_faq_entry_t *mesh_faq_at (mesh_faq_t *self, size_t index);
//  True when tenant has an entry that may answer on model: the cheap test
//  that decides whether a request is worth matching at all
bool  mesh_faq_covers (mesh_faq_t *self, const char *tenant, const char *model);
//  The entry that answers text (the last user message, UTF-8) for tenant
//  on model, or NULL
const mesh_faq_entry_t *mesh_faq_match (mesh_faq_t *self, const char *tenant, const char *model,
                                        const char *text, size_t len);

//  The normalised form of text, replacing out
void  mesh_faq_normalise (const char *text, size_t len, mesh_buf_t *out);

void  mesh_faq_test (bool verbose);

#endif
