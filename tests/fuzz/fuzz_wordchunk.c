/*  fuzz_wordchunk: a stream's chunks through the word filter two ways:
    mesh_wordchunk_filter, whose scanner splices the common chunks without
    jansson, and mesh_wordchunk_filter_parsed, jansson alone, each with a
    word stream of its own over the same lists.

    Input: a first line of entries "A:word|A:word|..." (A: b block, m mask;
    the global list), then one payload a line.

    Property: no crash, leak or UB; for every payload both give the same
    verdict (send, quiet, as it is), the same block and end, and, sent, the
    same JSON value.                                                        */
#include "fuzz.h"
#include "mesh_util.h"
#include "mesh_wordchunk.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    const char *text = (const char *) data, *end = text + size;
    const char *line = memchr (text, '\n', size);
    if (!line)
        return 0;
    mesh_wordfilter_t *filter = mesh_wordfilter_new ();
    char *spec = strndup (text, (size_t) (line - text));
    FUZZ_ASSERT (spec);
    char *save = NULL;
    int id = 0;
    for (char *item = strtok_r (spec, "|", &save); item; item = strtok_r (NULL, "|", &save)) {
        if (strlen (item) < 3 || item [1] != ':')
            continue;
        char id_text [16];
        snprintf (id_text, sizeof id_text, "w%d", id++);
        mesh_wordentry_t entry = { id_text, "", item + 2, item [0] == 'm' ? MESH_WORD_MASK : MESH_WORD_BLOCK };
        mesh_wordfilter_add (filter, &entry, NULL, 0);
    }
    free (spec);
    mesh_wordfilter_compile (filter);
    mesh_wordstream_t *fast = mesh_wordstream_new (filter, NULL);
    mesh_wordstream_t *parsed = mesh_wordstream_new (filter, NULL);
    mesh_buf_t one, two;
    mesh_buf_init (&one);
    mesh_buf_init (&two);
    for (const char *at = line + 1; at < end; ) {
        const char *stop = memchr (at, '\n', (size_t) (end - at));
        if (!stop)
            stop = end;
        mesh_wordchunk_result_t a, b;
        mesh_wordchunk_filter (fast, at, (size_t) (stop - at), &one, &a);
        mesh_wordchunk_filter_parsed (parsed, at, (size_t) (stop - at), &two, &b);
        FUZZ_ASSERT (a.verdict == b.verdict && a.blocked == b.blocked && a.finished == b.finished);
        if (a.verdict == MESH_WORDCHUNK_SEND) {
            json_t *x = json_loadb (mesh_buf_head (&one), mesh_buf_size (&one), 0, NULL);
            json_t *y = json_loadb (mesh_buf_head (&two), mesh_buf_size (&two), 0, NULL);
            FUZZ_ASSERT (x && y && json_equal (x, y));
            json_decref (x);
            json_decref (y);
        }
        at = stop + 1;
    }
    FUZZ_ASSERT (mesh_wordstream_held (fast) == mesh_wordstream_held (parsed));
    mesh_buf_free (&one);
    mesh_buf_free (&two);
    mesh_wordstream_destroy (&fast);
    mesh_wordstream_destroy (&parsed);
    mesh_wordfilter_unref (&filter);
    return 0;
}
