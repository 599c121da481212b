/*  ctl_faq: FAQ entries (answers the cache stage gives without calling the
    model) through the router's admin API.

        faq add --tenant T (--exact Q | --keyword K... | --regex P)
                --answer A [--model M] [--id ID]
                                    POST /admin/faq (PUT /admin/faq/ID with --id)
        faq list [--tenant T]       GET    /admin/faq
        faq get ID                  GET    /admin/faq/ID
        faq remove ID               DELETE /admin/faq/ID
        faq test "QUESTION" --tenant T [--model M]
                                    POST   /admin/faq/test: the entry that
                                    would answer it, or none

    The options' fields are the API's (mesh_faq.h), so they are the request
    body as they are.                                                        */
#include "ctl.h"
#include "mesh_util.h"

#include <stdio.h>
#include <string.h>

static const ctl_option_t s_add_options [] = {
    { "tenant",  CTL_STRING, "tenant" },
    { "model",   CTL_STRING, "model" },
    { "exact",   CTL_STRING, "exact" },
    { "keyword", CTL_LIST,   "keywords" },
    { "regex",   CTL_STRING, "regex" },
    { "answer",  CTL_STRING, "answer" },
    { "id",      CTL_STRING, "id" },
    { NULL, 0, NULL }
};

static const ctl_option_t s_tenant_options [] = {
    { "tenant",  CTL_STRING, "tenant" },
    { "model",   CTL_STRING, "model" },
    { NULL, 0, NULL }
};

//  What an entry matches on, as one cell
static json_t *
s_match_cell (json_t *entry, const char **kind)
{
    json_t *exact = json_object_get (entry, "exact"), *regex = json_object_get (entry, "regex");
    json_t *keywords = json_object_get (entry, "keywords");
    *kind = exact ? "exact" : regex ? "regex" : keywords ? "keywords" : "-";
    return json_incref (exact ? exact : regex ? regex : keywords ? keywords : json_null ());
}

//  A long answer, shortened for a table (on a character)
static json_t *
s_short (json_t *text)
{
    const char *s = json_string_value (text);
    if (!s)
        return json_null ();
    size_t len = strlen (s);
    if (len <= 40)
        return json_string (s);
    size_t cut = 37;
    while (cut > 0 && ((unsigned char) s [cut] & 0xc0) == 0x80)
        cut--;
    return json_sprintf ("%.*s...", (int) cut, s);
}

int
ctl_faq_add (ctl_t *ctl, int argc, char **argv)
{
    json_t *fields = json_object ();
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, s_add_options, fields, NULL, 0);
    int kinds = !!json_object_get (fields, "exact") + !!json_object_get (fields, "keywords")
              + !!json_object_get (fields, "regex");
    if (rc == CTL_EXIT_OK && !json_object_get (fields, "tenant"))
        rc = ctl_usage (ctl, "--tenant is required");
    if (rc == CTL_EXIT_OK && !json_object_get (fields, "answer"))
        rc = ctl_usage (ctl, "--answer is required");
    if (rc == CTL_EXIT_OK && kinds != 1)
        rc = ctl_usage (ctl, "give one of --exact, --keyword (repeatable), --regex");
    char id [128] = "";
    if (json_object_get (fields, "id")) {
        snprintf (id, sizeof id, "%s", json_string_value (json_object_get (fields, "id")));
        json_object_del (fields, "id");
    }
    if (rc == CTL_EXIT_OK)
        rc = *id ? ctl_call (ctl, "PUT", "/admin/faq/", id, fields, &reply)
                 : ctl_call (ctl, "POST", "/admin/faq", NULL, fields, &reply);
    if (rc == CTL_EXIT_OK && reply) {
        const char *made = json_string_value (json_object_get (reply, "id"));
        printf ("id: %s\n", made ? made : "-");
    }
    json_decref (reply);
    json_decref (fields);
    return rc;
}

int
ctl_faq_list (ctl_t *ctl, int argc, char **argv)
{
    json_t *fields = json_object ();
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, s_tenant_options, fields, NULL, 0);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "GET", "/admin/faq", NULL, NULL, &reply);
    if (rc != CTL_EXIT_OK || !reply) {
        json_decref (fields);
        return rc;
    }
    const char *tenant = json_string_value (json_object_get (fields, "tenant"));
    json_t *rows = json_pack ("[[ssssss]]", "ID", "TENANT", "MODEL", "KIND", "MATCH", "ANSWER");
    size_t index;
    json_t *entry;
    json_array_foreach (json_object_get (reply, "data"), index, entry) {
        if (tenant && !mesh_streq (json_string_value (json_object_get (entry, "tenant")), tenant))
            continue;
        const char *kind;
        json_t *match = s_match_cell (entry, &kind);
        json_t *model = json_object_get (entry, "model");
        json_array_append_new (rows, json_pack ("[O?O?osoo]", json_object_get (entry, "id"),
            json_object_get (entry, "tenant"), model ? json_incref (model) : json_string ("(all)"),
            kind, match, s_short (json_object_get (entry, "answer"))));
    }
    ctl_table_print (rows);
    json_decref (rows);
    json_decref (reply);
    json_decref (fields);
    return CTL_EXIT_OK;
}

int
ctl_faq_get (ctl_t *ctl, int argc, char **argv)
{
    const char *id;
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, &id, 1);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "GET", "/admin/faq/", id, NULL, &reply);
    if (rc == CTL_EXIT_OK && reply)
        ctl_print_json (reply);
    json_decref (reply);
    return rc;
}

int
ctl_faq_remove (ctl_t *ctl, int argc, char **argv)
{
    const char *id;
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, &id, 1);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "DELETE", "/admin/faq/", id, NULL, &reply);
    if (rc == CTL_EXIT_OK && reply)
        printf ("FAQ entry %s removed\n", id);
    json_decref (reply);
    return rc;
}

int
ctl_faq_test (ctl_t *ctl, int argc, char **argv)
{
    const char *question;
    json_t *fields = json_object ();
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, s_tenant_options, fields, &question, 1);
    if (rc == CTL_EXIT_OK && !json_object_get (fields, "tenant"))
        rc = ctl_usage (ctl, "--tenant is required");
    if (rc == CTL_EXIT_OK) {
        json_object_set_new (fields, "question", json_string (question));
        rc = ctl_call (ctl, "POST", "/admin/faq/test", NULL, fields, &reply);
    }
    if (rc == CTL_EXIT_OK && reply) {
        json_t *match = json_object_get (reply, "match");
        if (json_is_object (match)) {
            json_t *rows = json_pack ("[[sss][O?O?O?]]", "ID", "KIND", "ANSWER",
                                      json_object_get (match, "id"), json_object_get (reply, "kind"),
                                      json_object_get (match, "answer"));
            ctl_table_print (rows);
            json_decref (rows);
        }
        else
            printf ("no FAQ entry answers it: the model would\n");
    }
    json_decref (reply);
    json_decref (fields);
    return rc;
}
