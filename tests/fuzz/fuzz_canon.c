/*  fuzz_canon: mesh_canon, the canonical form of a request body that the
    response cache hashes, against jansson as the reference.

    Properties: no crash, leak or UB; a rejection says why; what mesh_canon
    reads, jansson reads, and the canonical form is byte for byte
    jansson's json_dumps (JSON_COMPACT | JSON_SORT_KEYS) of the same text
    with the same top-level members deleted; what jansson reads as an
    object mesh_canon reads too, unless it nests deeper than
    MESH_CANON_MAX_DEPTH or holds a NUL byte (jansson skips one that
    follows a number; mesh_canon refuses it); the canonical form is a fixed point (its own
    canonical form).  The temperature and the last user message are read
    without harm.                                                             */
#include "fuzz.h"
#include "mesh_canon.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static size_t
s_depth (json_t *json)
{
    size_t deepest = 0, i;
    const char *key;
    json_t *value;
    if (json_is_object (json))
        json_object_foreach (json, key, value) {
            size_t depth = s_depth (value);
            deepest = depth > deepest ? depth : deepest;
        }
    else
    if (json_is_array (json))
        json_array_foreach (json, i, value) {
            size_t depth = s_depth (value);
            deepest = depth > deepest ? depth : deepest;
        }
    else
        return 0;
    return deepest + 1;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static mesh_canon_t *canon;
    if (!canon)
        canon = mesh_canon_new ();
    static const char *const drop [] = { "user", "stream", "stream_options", NULL };
    char why [128] = "";
    mesh_buf_t out, again, text;
    mesh_buf_init (&out);
    mesh_buf_init (&again);
    mesh_buf_init (&text);
    json_error_t error;
    json_t *json = json_loadb ((const char *) data, size, 0, &error);

    if (mesh_canon_parse (canon, (const char *) data, size, why, sizeof why) < 0) {
        FUZZ_ASSERT (why [0] && memchr (why, 0, sizeof why));
        //  Declined: only what jansson refuses, or too deep for us, or a
        //  text with a NUL byte (jansson skips one after a number)
        FUZZ_ASSERT (!json || !json_is_object (json) || s_depth (json) > MESH_CANON_MAX_DEPTH
                  || memchr (data, 0, size));
        goto done;
    }
    FUZZ_ASSERT (json && json_is_object (json));
    mesh_canon_write (canon, drop, &out);
    for (size_t i = 0; drop [i]; i++)
        json_object_del (json, drop [i]);
    char *reference = json_dumps (json, JSON_COMPACT | JSON_SORT_KEYS);
    FUZZ_ASSERT (reference);
    if (strlen (reference) != mesh_buf_size (&out)
    ||  memcmp (reference, mesh_buf_head (&out), mesh_buf_size (&out)) != 0) {
        fprintf (stderr, "fuzz_canon: mesh_canon %.*s\n            jansson    %s\n",
                 (int) mesh_buf_size (&out), mesh_buf_head (&out), reference);
        FUZZ_ASSERT (!"the canonical form is jansson's");
    }
    free (reference);
    double temperature;
    (void) mesh_canon_number (canon, "temperature", &temperature);
    (void) mesh_canon_last_user (canon, &text);
    //  A fixed point
    FUZZ_ASSERT (mesh_canon_parse (canon, mesh_buf_head (&out), mesh_buf_size (&out), why, sizeof why) == 0);
    mesh_canon_write (canon, NULL, &again);
    FUZZ_ASSERT (mesh_buf_size (&again) == mesh_buf_size (&out)
              && memcmp (mesh_buf_head (&again), mesh_buf_head (&out), mesh_buf_size (&out)) == 0);
done:
    json_decref (json);
    mesh_buf_free (&out);
    mesh_buf_free (&again);
    mesh_buf_free (&text);
    return 0;
}
