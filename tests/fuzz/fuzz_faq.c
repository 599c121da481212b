/*  fuzz_faq: FAQ entries (mesh_faq) as operators send them to the admin
    API and as they come back from Redis, and the matcher on any message.

    Properties: no crash, leak, UB or hang; a refused entry says why; an
    accepted one prints as JSON that parses to the same JSON again; an exact
    entry answers its own question and a keywords entry the text of its
    keywords; the input as a message (any bytes) normalises to UTF-8 with
    single spaces between words and is matched against a set of every kind
    without harm.                                                            */
#include "fuzz.h"
#include "mesh_faq.h"
#include "mesh_util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static mesh_faq_t *
s_fixed (void)
{
    static const char *const entries [] = {
        "{\"id\":\"a\",\"tenant\":\"t\",\"exact\":\"what are your opening hours\",\"answer\":\"x\"}",
        "{\"id\":\"b\",\"tenant\":\"t\",\"keywords\":[\"refund\",\"\xe9\x80\x80\xe6\xac\xbe\"],\"answer\":\"x\"}",
        "{\"id\":\"c\",\"tenant\":\"t\",\"model\":\"m\",\"regex\":\"(reset|change).*pass(word)?\",\"answer\":\"x\"}",
    };
    mesh_faq_t *faq = mesh_faq_new ();
    for (size_t i = 0; i < MESH_ARRAY_SIZE (entries); i++) {
        char why [128];
        mesh_faq_entry_t *entry = mesh_faq_entry_parse (entries [i], strlen (entries [i]), why, sizeof why);
        FUZZ_ASSERT (entry);
        mesh_faq_put (faq, entry);
    }
    return faq;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static mesh_faq_t *fixed;
    if (!fixed)
        fixed = s_fixed ();
    const char *text = (const char *) data;
    mesh_buf_t normal;
    mesh_buf_init (&normal);
    mesh_faq_normalise (text, size, &normal);
    const char *n = mesh_buf_head (&normal);
    size_t n_len = mesh_buf_size (&normal);
    FUZZ_ASSERT (mesh_utf8_valid (n_len ? n : "", n_len));
    FUZZ_ASSERT (n_len == 0 || (n [0] != ' ' && n [n_len - 1] != ' ' && !memmem (n, n_len, "  ", 2)));
    (void) mesh_faq_match (fixed, "t", "m", text, size);

    char why [256] = "";
    mesh_faq_entry_t *entry = mesh_faq_entry_parse (text, size, why, sizeof why);
    if (!entry) {
        FUZZ_ASSERT (why [0] && memchr (why, 0, sizeof why));
        goto done;
    }
    mesh_faq_entry_stamp (entry, "fuzz", 1);
    char *json = mesh_faq_entry_json (entry);
    mesh_faq_entry_t *again = mesh_faq_entry_parse (json, strlen (json), why, sizeof why);
    FUZZ_ASSERT (again);
    char *json_again = mesh_faq_entry_json (again);
    FUZZ_ASSERT (strcmp (json, json_again) == 0);
    free (json_again);
    mesh_faq_entry_destroy (&again);

    //  An entry answers what it names
    mesh_faq_t *faq = mesh_faq_new ();
    json_t *root = json_loads (json, 0, NULL);
    FUZZ_ASSERT (root);
    const char *tenant = json_string_value (json_object_get (root, "tenant"));
    const char *model = json_object_get (root, "model") ? json_string_value (json_object_get (root, "model")) : "any";
    mesh_faq_put (faq, entry);
    FUZZ_ASSERT (mesh_faq_covers (faq, tenant, model));
    json_t *exact = json_object_get (root, "exact"), *keywords = json_object_get (root, "keywords");
    if (exact) {
        const char *question = json_string_value (exact);
        FUZZ_ASSERT (mesh_faq_match (faq, tenant, model, question, strlen (question)));
    }
    if (keywords) {
        mesh_buf_t all;
        mesh_buf_init (&all);
        size_t i;
        json_t *word;
        json_array_foreach (keywords, i, word) {
            mesh_buf_append_str (&all, json_string_value (word));
            mesh_buf_append (&all, " . ", 3);
        }
        FUZZ_ASSERT (mesh_faq_match (faq, tenant, model, mesh_buf_head (&all), mesh_buf_size (&all)));
        mesh_buf_free (&all);
    }
    (void) mesh_faq_match (faq, tenant, model, text, size);
    json_decref (root);
    free (json);
    mesh_faq_destroy (&faq);
done:
    mesh_buf_free (&normal);
    return 0;
}
