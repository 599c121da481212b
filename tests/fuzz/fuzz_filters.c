/*  fuzz_filters: the word lists as a router sends them (FILTERS: the
    document mesh_wordfilter_parse reads).

    Input: the document's bytes.

    Property: no crash, leak or UB; a document is taken whole or refused
    with a reason; one taken has as many entries as its "words" and the
    version it names, and filters a text (every list, and a tenant's)
    without a byte of a blocked word past the point it cut.               */
#include "fuzz.h"
#include "mesh_wordfilter.h"

#include <jansson.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char why [256] = "";
    mesh_wordfilter_t *filter = mesh_wordfilter_parse ((const char *) data, size, why, sizeof why);
    json_t *doc = json_loadb ((const char *) data, size, 0, NULL);
    if (!filter) {
        FUZZ_ASSERT (*why);
        json_decref (doc);
        return 0;
    }
    FUZZ_ASSERT (json_is_object (doc));
    FUZZ_ASSERT (mesh_wordfilter_count (filter) == json_array_size (json_object_get (doc, "words")));
    FUZZ_ASSERT (mesh_wordfilter_version (filter) == (uint64_t) json_integer_value (json_object_get (doc, "version")));
    const char *text = "Hello, a darn b\xe2\x80\x8b" "ad w o r d \xe5\x9d\x8f\xe8\x9b\x8b and more text.";
    const char *tenants [] = { NULL, "acme", "" };
    for (size_t i = 0; i < 3; i++) {
        mesh_buf_t out;
        mesh_buf_init (&out);
        bool passed = mesh_wordfilter_text (filter, tenants [i], text, strlen (text), &out, NULL, NULL);
        //  A block cut the text: what went out is a part of it (masks aside)
        FUZZ_ASSERT (passed || mesh_buf_size (&out) <= strlen (text));
        mesh_buf_free (&out);
    }
    json_decref (doc);
    mesh_wordfilter_unref (&filter);
    return 0;
}
