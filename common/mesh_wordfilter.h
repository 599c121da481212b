/*  mesh_wordfilter: the sensitive-word filter.  Owns the compiled word
    lists (one Aho-Corasick automaton over every entry of every list) and
    the state of one text being filtered as it arrives (a stream).

    Matching runs on normalised text.  Each code point of the input is one
    of three classes:
        transparent  zero-width and format characters (U+200B..U+200F,
                     U+2060..U+206F, U+FEFF, U+00AD, variation selectors,
                     tags ...): ignored entirely, as if absent
        separator    white space, punctuation and symbols (ASCII, Latin-1,
                     General Punctuation, CJK and full-width punctuation):
                     skipped between the characters of a word, and a word
                     boundary
        significant  everything else, case-folded (ASCII, Latin-1, Latin
                     Extended-A, Greek, Cyrillic) after full-width forms are
                     made half-width (U+FF01..U+FF5E, U+3000)
    A word matches where its significant characters occur in a row among
    the text's significant characters.  A word that begins (ends) with a
    letter or digit of a script written with spaces (Latin, Greek,
    Cyrillic) must not continue a word of the text there: "ass" matches
    "a s s" and "an ass." but not "class" or "was sent".  CJK words match
    anywhere.  Bytes that are not UTF-8 are significant characters no word
    contains.

    An entry is a word, the list it belongs to (a tenant, or the global
    list: "") and an action: block or mask.  A stream made for a tenant
    applies the global list and that tenant's; made for no tenant (NULL),
    every list.  Mask replaces each significant character of the match by
    one '*'; block ends the text before the match's first character.

    A stream takes text in pieces of two fields (content and reasoning,
    one text in the order given: a word may start in one and end in the
    other) and gives back, per field, the text that can no longer be part
    of a match: it holds back exactly the characters from where the
    automaton's current state begins (at most the longest word less one,
    plus separators between them), and a match whose end needs the next
    character to decide.  What a stream gives is the same, however the text
    is cut into pieces, as filtering the whole text at once
    (tests/fuzz/fuzz_wordfilter.c holds it to a brute-force reference).
    When several matches are decided by the same character, all masks
    among them apply, and a block cuts at the earliest block's start.

    A compiled filter is immutable and reference counted: streams hold
    their filter while a new one replaces it.  Any thread for a filter once
    built; a stream is one thread's.                                          */
#ifndef MESH_WORDFILTER_H
#define MESH_WORDFILTER_H

#include "mesh_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_WORDFILTER_MAX_CHARS    64         //  significant characters of a word
#define MESH_WORDFILTER_MAX_WORD     512        //  bytes of a word as given
#define MESH_WORDFILTER_MAX_ENTRIES  200000
#define MESH_WORDFILTER_MAX_ID       32
#define MESH_WORDFILTER_MAX_LIST     127        //  a tenant's name
#define MESH_WORDFILTER_FIELDS       2          //  content, reasoning
#define MESH_WORDFILTER_MATCHES      16         //  distinct entries a stream remembers

enum { MESH_WORD_BLOCK = 1, MESH_WORD_MASK = 2 };
enum { MESH_WORD_CONTENT = 0, MESH_WORD_REASONING = 1 };
//  Classes of a code point
enum { MESH_WORD_SIGNIFICANT = 0, MESH_WORD_SEPARATOR = 1, MESH_WORD_TRANSPARENT = 2 };

typedef struct mesh_wordfilter_t mesh_wordfilter_t;
typedef struct mesh_wordstream_t mesh_wordstream_t;

//  One entry, as given to mesh_wordfilter_add
typedef struct {
    const char *id;
    const char *list;           //  "" for the global list
    const char *word;           //  as given (UTF-8)
    int action;                 //  MESH_WORD_*
} mesh_wordentry_t;

//  Building ---------------------------------------------------------------------

mesh_wordfilter_t *mesh_wordfilter_new (void);
//  Adds an entry (copied).  -1 with a reason: a word without significant
//  characters or with more than MESH_WORDFILTER_MAX_CHARS, a bad id,
//  list or action, too many entries.  Before mesh_wordfilter_compile only.
int  mesh_wordfilter_add (mesh_wordfilter_t *self, const mesh_wordentry_t *entry,
                          char *why, size_t why_size);
//  Builds the automaton; the filter is usable (and immutable) after.
void mesh_wordfilter_compile (mesh_wordfilter_t *self);
//  From JSON: {"version": N, "words": [{"id", "tenant" (absent or null:
//  global), "word", "action": "block"|"mask"}, ...]}, compiled.  NULL with
//  the first problem in why: the whole document is refused.
mesh_wordfilter_t *mesh_wordfilter_parse (const char *json, size_t len, char *why, size_t why_size);

mesh_wordfilter_t *mesh_wordfilter_ref (mesh_wordfilter_t *self);
//  Drops a reference; frees the filter with the last.  Nulls *self_p.
void mesh_wordfilter_unref (mesh_wordfilter_t **self_p);

//  The version a parsed document named (0 for one built by hand)
uint64_t mesh_wordfilter_version (const mesh_wordfilter_t *self);
size_t   mesh_wordfilter_count (const mesh_wordfilter_t *self);
//  Entry i (borrowed strings)
mesh_wordentry_t mesh_wordfilter_entry (const mesh_wordfilter_t *self, size_t i);
//  True when some list applies to tenant (NULL: any list at all)
bool     mesh_wordfilter_applies (const mesh_wordfilter_t *self, const char *tenant);
//  The longest word, in significant characters
size_t   mesh_wordfilter_longest (const mesh_wordfilter_t *self);

//  Normalisation ----------------------------------------------------------------

//  Decodes one code point at data [0 .. len): its length, or 0 when len
//  is short for the sequence that starts there and more may come (never
//  when final).  A byte that cannot start or continue a valid sequence is
//  one unit of its own: *cp is then 0x110000 + the byte.
size_t   mesh_wordfilter_decode (const char *data, size_t len, bool final, uint32_t *cp);
//  The class of cp (MESH_WORD_*); for a significant one, its folded form
//  and whether it is a letter or digit of a script written with spaces.
int      mesh_wordfilter_classify (uint32_t cp, uint32_t *folded, bool *word);
//  The significant characters of text, folded, into out (at most max);
//  returns how many there are (which may exceed max).
size_t   mesh_wordfilter_normalise (const char *text, size_t len, uint32_t *out, size_t max);

//  Streams ----------------------------------------------------------------------

//  A stream for tenant (NULL: every list applies) on filter (referenced).
mesh_wordstream_t *mesh_wordstream_new (mesh_wordfilter_t *filter, const char *tenant);
void mesh_wordstream_destroy (mesh_wordstream_t **self_p);
//  Takes text of field (MESH_WORD_CONTENT, _REASONING); appends to out
//  [field] what is settled.  Returns true while the text may go on, false
//  once a block cut it (out then holds everything before the word; later
//  calls take nothing).
bool mesh_wordstream_feed (mesh_wordstream_t *self, int field, const char *text, size_t len,
                           mesh_buf_t out [MESH_WORDFILTER_FIELDS]);
//  The text ended: decides what waited and appends the rest.  Returns
//  false if a block cut it.
bool mesh_wordstream_finish (mesh_wordstream_t *self, mesh_buf_t out [MESH_WORDFILTER_FIELDS]);
bool mesh_wordstream_blocked (const mesh_wordstream_t *self);
//  Bytes held back now
size_t mesh_wordstream_held (const mesh_wordstream_t *self);
//  Matches applied so far (each mask or block match, including repeats)
size_t mesh_wordstream_match_count (const mesh_wordstream_t *self, int action);
//  The distinct entries matched so far (at most MESH_WORDFILTER_MATCHES),
//  in the order first matched: indexes for mesh_wordfilter_entry
size_t mesh_wordstream_matched (const mesh_wordstream_t *self, const uint32_t **entries);
mesh_wordfilter_t *mesh_wordstream_filter (const mesh_wordstream_t *self);

//  Filters one whole text of one field: out gets the result; returns
//  false if blocked (out: the text before the word).  Matched entries as
//  for a stream, into matched (at most MESH_WORDFILTER_MATCHES; may be
//  NULL) with their count in *matched_count.
bool mesh_wordfilter_text (mesh_wordfilter_t *self, const char *tenant, const char *text,
                           size_t len, mesh_buf_t *out, uint32_t *matched, size_t *matched_count);

void mesh_wordfilter_test (bool verbose);

#endif
