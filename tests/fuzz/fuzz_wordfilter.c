/*  fuzz_wordfilter: the streaming word filter against filtering the whole
    text at once.

    Input: a first line of entries "A:L:word|A:L:word|..." (A: b block, m
    mask; L: g the global list, x or y a tenant's), a second line naming
    the stream's tenant (x, y, z, or empty: every list), then the text cut
    into pieces: a byte 0x01 starts a piece of content, 0x02 a piece of
    reasoning (before the first, content).

    Property: no crash, leak or UB, and three filterings agree byte for
    byte on each field's output, on whether a block cut the text and on
    the matches counted: the stream fed the pieces as cut; the stream fed
    the whole text (consecutive pieces of one field joined); and a
    brute-force reference that looks for every word at every position of
    the whole text and applies mesh_wordfilter.h's rules directly.       */
#include "fuzz.h"
#include "mesh_util.h"
#include "mesh_wordfilter.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PIECES 512

typedef struct {
    int field;
    const char *data;
    size_t len;
} piece_t;

//  A code point of the whole text, for the reference
typedef struct {
    int field;
    const char *bytes;
    size_t len;
    int cls;
    uint32_t folded;
    bool word;
} unit_t;

typedef struct {
    int action;
    bool applies;
    uint32_t chars [MESH_WORDFILTER_MAX_CHARS];
    size_t len;
    bool first_word, last_word;
} word_t;

//  The reference: every word at every position, decided by the rules
static bool
s_reference (const piece_t *pieces, size_t count, const word_t *words, size_t word_count,
             mesh_buf_t out [MESH_WORDFILTER_FIELDS], size_t *matches)
{
    size_t cap = 16, n = 0;
    for (size_t i = 0; i < count; i++)
        cap += pieces [i].len;
    unit_t *units = calloc (cap, sizeof *units);
    size_t *sig_unit = calloc (cap, sizeof *sig_unit);      //  significant index -> unit
    bool *after_word = calloc (cap, sizeof *after_word);
    bool *masked = calloc (cap, sizeof *masked);
    FUZZ_ASSERT (units && sig_unit && after_word && masked);
    size_t sigs = 0;
    bool last_word = false;
    for (size_t i = 0; i < count; i++) {
        for (size_t at = 0; at < pieces [i].len; ) {
            uint32_t cp;
            size_t len = mesh_wordfilter_decode (pieces [i].data + at, pieces [i].len - at, true, &cp);
            unit_t *unit = &units [n];
            unit->field = pieces [i].field;
            unit->bytes = pieces [i].data + at;
            unit->len = len;
            unit->cls = mesh_wordfilter_classify (cp, &unit->folded, &unit->word);
            if (unit->cls == MESH_WORD_SIGNIFICANT) {
                after_word [sigs] = last_word;
                sig_unit [sigs++] = n;
            }
            if (unit->cls != MESH_WORD_TRANSPARENT)
                last_word = unit->cls == MESH_WORD_SIGNIFICANT && unit->word;
            n++;
            at += len;
        }
    }
    //  Each match is decided at a step (the index of the code point that
    //  decides it, n: the end of the text); the first step with a block
    //  ends the text
    size_t block_step = SIZE_MAX, cut = SIZE_MAX;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t w = 0; w < word_count; w++) {
            const word_t *word = &words [w];
            if (!word->applies || word->len > sigs)
                continue;
            for (size_t s = 0; s + word->len <= sigs; s++) {
                bool equal = true;
                for (size_t k = 0; k < word->len && equal; k++)
                    equal = units [sig_unit [s + k]].folded == word->chars [k];
                if (!equal || (word->first_word && after_word [s]))
                    continue;
                size_t last = sig_unit [s + word->len - 1], step = last;
                if (word->last_word) {
                    step = last + 1;
                    while (step < n && units [step].cls == MESH_WORD_TRANSPARENT)
                        step++;
                    if (step < n && units [step].cls == MESH_WORD_SIGNIFICANT && units [step].word)
                        continue;
                }
                if (pass == 0 && word->action == MESH_WORD_BLOCK && step < block_step)
                    block_step = step;
                if (pass == 1 && step <= block_step) {
                    (*matches)++;
                    if (word->action == MESH_WORD_BLOCK && step == block_step && s < cut)
                        cut = s;
                    if (word->action == MESH_WORD_MASK)
                        for (size_t k = 0; k < word->len; k++)
                            masked [sig_unit [s + k]] = true;
                }
            }
        }
    }
    size_t end = cut == SIZE_MAX ? n : sig_unit [cut];
    for (size_t i = 0; i < end; i++) {
        if (masked [i])
            mesh_buf_append (&out [units [i].field], "*", 1);
        else
            mesh_buf_append (&out [units [i].field], units [i].bytes, units [i].len);
    }
    free (units);
    free (sig_unit);
    free (after_word);
    free (masked);
    return cut == SIZE_MAX;
}

static bool
s_stream (mesh_wordfilter_t *filter, const char *tenant, const piece_t *pieces, size_t count,
          mesh_buf_t out [MESH_WORDFILTER_FIELDS], size_t *matches)
{
    mesh_wordstream_t *stream = mesh_wordstream_new (filter, tenant);
    bool going = true;
    for (size_t i = 0; i < count && going; i++) {
        size_t before = mesh_buf_size (&out [0]) + mesh_buf_size (&out [1]);
        going = mesh_wordstream_feed (stream, pieces [i].field, pieces [i].data, pieces [i].len, out);
        //  What is held is bounded by the longest word (and separators)
        FUZZ_ASSERT (mesh_buf_size (&out [0]) + mesh_buf_size (&out [1]) >= before);
    }
    if (going)
        going = mesh_wordstream_finish (stream, out);
    FUZZ_ASSERT (going || mesh_wordstream_blocked (stream));
    *matches = mesh_wordstream_match_count (stream, MESH_WORD_BLOCK)
             + mesh_wordstream_match_count (stream, MESH_WORD_MASK);
    FUZZ_ASSERT (going == (mesh_wordstream_match_count (stream, MESH_WORD_BLOCK) == 0));
    mesh_wordstream_destroy (&stream);
    return going;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *text = (const char *) data, *end = text + size;
    const char *line = memchr (text, '\n', size);
    if (!line)
        return 0;
    const char *second = memchr (line + 1, '\n', (size_t) (end - line - 1));
    if (!second)
        return 0;
    //  The entries
    mesh_wordfilter_t *filter = mesh_wordfilter_new ();
    char *spec = strndup (text, (size_t) (line - text));
    FUZZ_ASSERT (spec);
    word_t words [64];
    size_t word_count = 0;
    char tenant_name [8] = "";
    snprintf (tenant_name, sizeof tenant_name, "%.*s", (int) (second - line - 1), line + 1);
    const char *tenant = *tenant_name ? tenant_name : NULL;
    char *save = NULL;
    int id = 0;
    for (char *item = strtok_r (spec, "|", &save); item && word_count < 64; item = strtok_r (NULL, "|", &save)) {
        if (strlen (item) < 5 || item [1] != ':' || item [3] != ':')
            continue;
        char id_text [16];
        snprintf (id_text, sizeof id_text, "w%d", id++);
        const char *list = item [2] == 'x' ? "x" : item [2] == 'y' ? "y" : "";
        mesh_wordentry_t entry = { id_text, list, item + 4,
                                   item [0] == 'm' ? MESH_WORD_MASK : MESH_WORD_BLOCK };
        if (mesh_wordfilter_add (filter, &entry, NULL, 0) < 0)
            continue;
        word_t *word = &words [word_count++];
        word->action = entry.action;
        word->applies = !*list || !tenant || mesh_streq (list, tenant);
        word->len = mesh_wordfilter_normalise (entry.word, strlen (entry.word), word->chars,
                                               MESH_WORDFILTER_MAX_CHARS);
        uint32_t folded;
        mesh_wordfilter_classify (word->chars [0], &folded, &word->first_word);
        mesh_wordfilter_classify (word->chars [word->len - 1], &folded, &word->last_word);
    }
    free (spec);
    mesh_wordfilter_compile (filter);

    //  The pieces as cut, and joined
    piece_t cut [MAX_PIECES], whole [MAX_PIECES];
    size_t cut_count = 0, whole_count = 0;
    int field = MESH_WORD_CONTENT;
    const char *start = second + 1;
    char *joined = malloc ((size_t) (end - start) + 1);
    FUZZ_ASSERT (joined);
    size_t joined_len = 0;
    for (const char *at = start; at <= end && cut_count < MAX_PIECES; at++) {
        if (at == end || *at == 1 || *at == 2) {
            cut [cut_count++] = (piece_t) { field, start, (size_t) (at - start) };
            if (at < end) {
                field = *at == 1 ? MESH_WORD_CONTENT : MESH_WORD_REASONING;
                start = at + 1;
            }
        }
    }
    for (size_t i = 0; i < cut_count; i++) {
        if (whole_count && whole [whole_count - 1].field == cut [i].field)
            whole [whole_count - 1].len += cut [i].len;
        else
            whole [whole_count++] = (piece_t) { cut [i].field, joined + joined_len, cut [i].len };
        memcpy (joined + joined_len, cut [i].data, cut [i].len);
        joined_len += cut [i].len;
    }

    mesh_buf_t one [2], two [2], three [2];
    for (int f = 0; f < 2; f++) {
        mesh_buf_init (&one [f]);
        mesh_buf_init (&two [f]);
        mesh_buf_init (&three [f]);
    }
    size_t matches_one = 0, matches_two = 0, matches_three = 0;
    bool ok_one = s_stream (filter, tenant, cut, cut_count, one, &matches_one);
    bool ok_two = s_stream (filter, tenant, whole, whole_count, two, &matches_two);
    bool ok_three = s_reference (whole, whole_count, words, word_count, three, &matches_three);
    FUZZ_ASSERT (ok_one == ok_two && ok_two == ok_three);
    FUZZ_ASSERT (matches_one == matches_two && matches_two == matches_three);
    for (int f = 0; f < 2; f++) {
        FUZZ_ASSERT (mesh_buf_size (&one [f]) == mesh_buf_size (&two [f]));
        FUZZ_ASSERT (mesh_buf_size (&two [f]) == mesh_buf_size (&three [f]));
        if (mesh_buf_size (&two [f])) {
            FUZZ_ASSERT (memcmp (mesh_buf_head (&one [f]), mesh_buf_head (&two [f]), mesh_buf_size (&two [f])) == 0);
            FUZZ_ASSERT (memcmp (mesh_buf_head (&two [f]), mesh_buf_head (&three [f]), mesh_buf_size (&two [f])) == 0);
        }
        mesh_buf_free (&one [f]);
        mesh_buf_free (&two [f]);
        mesh_buf_free (&three [f]);
    }
    free (joined);
    mesh_wordfilter_unref (&filter);
    return 0;
}
