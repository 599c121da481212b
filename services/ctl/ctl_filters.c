/*  ctl_filters: the sensitive-word lists through the router's admin API.

        filters list [--tenant T]               GET    /admin/filters
        filters add WORD [--tenant T] [--action block|mask]
                                                POST   /admin/filters
        filters remove ID                       DELETE /admin/filters/ID
        filters test "TEXT" [--tenant T]        POST   /admin/filters/test

    Without --tenant a word goes to the global list; `test` without it
    applies every list.  Changes are in force on every router and ingress
    within a second.                                                         */
#include "ctl.h"
#include "mesh_util.h"

#include <stdio.h>

static const ctl_option_t s_add_options [] = {
    { "tenant", CTL_STRING, "tenant" },
    { "action", CTL_STRING, "action" },
    { NULL, 0, NULL }
};

static const ctl_option_t s_tenant_option [] = {
    { "tenant", CTL_STRING, "tenant" },
    { NULL, 0, NULL }
};

static const char *
s_list_name (json_t *entry, const char *field)
{
    const char *list = json_string_value (json_object_get (entry, field));
    return list ? list : "global";
}

int
ctl_filters_list (ctl_t *ctl, int argc, char **argv)
{
    json_t *fields = json_object ();
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, s_tenant_option, fields, NULL, 0);
    const char *tenant = json_string_value (json_object_get (fields, "tenant"));
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "GET", tenant ? "/admin/filters?tenant=" : "/admin/filters", tenant,
                       NULL, &reply);
    json_decref (fields);
    if (rc != CTL_EXIT_OK || !reply)
        return rc;
    json_t *rows = json_pack ("[[ssss]]", "ID", "LIST", "ACTION", "WORD");
    size_t index;
    json_t *entry;
    json_array_foreach (json_object_get (reply, "data"), index, entry)
        json_array_append_new (rows, json_pack ("[O?sO?O?]", json_object_get (entry, "id"),
                               s_list_name (entry, "tenant"), json_object_get (entry, "action"),
                               json_object_get (entry, "word")));
    ctl_table_print (rows);
    json_decref (rows);
    json_decref (reply);
    return CTL_EXIT_OK;
}

int
ctl_filters_add (ctl_t *ctl, int argc, char **argv)
{
    const char *word;
    json_t *fields = json_object ();
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, s_add_options, fields, &word, 1);
    const char *action = json_string_value (json_object_get (fields, "action"));
    if (rc == CTL_EXIT_OK && action && !mesh_streq (action, "block") && !mesh_streq (action, "mask"))
        rc = ctl_usage (ctl, "--action: '%s' is not block or mask", action);
    if (rc == CTL_EXIT_OK) {
        json_object_set_new (fields, "word", json_string (word));
        if (!json_object_get (fields, "word"))
            rc = ctl_usage (ctl, "the word is not UTF-8 text");
    }
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "POST", "/admin/filters", NULL, fields, &reply);
    if (rc == CTL_EXIT_OK && reply)
    {
        printf ("added %s (%s, ", json_string_value (json_object_get (reply, "id")),
                json_string_value (json_object_get (reply, "action")));
        ctl_print_clean (s_list_name (reply, "tenant"));
        puts (" list)");
    }
    json_decref (reply);
    json_decref (fields);
    return rc;
}

int
ctl_filters_remove (ctl_t *ctl, int argc, char **argv)
{
    const char *id;
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, &id, 1);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "DELETE", "/admin/filters/", id, NULL, &reply);
    if (rc == CTL_EXIT_OK && reply)
        printf ("removed %s\n", id);
    json_decref (reply);
    return rc;
}

int
ctl_filters_test (ctl_t *ctl, int argc, char **argv)
{
    const char *text;
    json_t *fields = json_object ();
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, s_tenant_option, fields, &text, 1);
    if (rc == CTL_EXIT_OK) {
        json_object_set_new (fields, "text", json_string (text));
        if (!json_object_get (fields, "text"))
            rc = ctl_usage (ctl, "the text is not UTF-8");
    }
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "POST", "/admin/filters/test", NULL, fields, &reply);
    json_decref (fields);
    if (rc != CTL_EXIT_OK || !reply)
        return rc;
    bool blocked = json_is_true (json_object_get (reply, "blocked"));
    printf ("%s: ", blocked ? "blocked after" : "passes as");
    ctl_print_clean (json_string_value (json_object_get (reply, "text")));
    putchar ('\n');
    size_t index;
    json_t *match;
    json_array_foreach (json_object_get (reply, "matches"), index, match) {
        printf ("  %s %s (%s list): ", json_string_value (json_object_get (match, "action")),
                json_string_value (json_object_get (match, "id")), s_list_name (match, "list"));
        ctl_print_clean (json_string_value (json_object_get (match, "word")));
        putchar ('\n');
    }
    json_decref (reply);
    return CTL_EXIT_OK;
}
