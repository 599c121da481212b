/*  ctl_models: the model registry through the router's admin API.

        models list                 GET    /admin/models
        models get NAME             GET    /admin/models/NAME
        models add NAME OPTIONS     PUT    /admin/models/NAME   the whole entry
        models set NAME OPTIONS     PATCH  /admin/models/NAME   a JSON merge patch
        models remove NAME          DELETE /admin/models/NAME
        models reset NAME           POST   /admin/models/NAME/reset

    add and set take the same options and build the same fields; set sends
    only those given, with null for a field an option replaces (a single
    --endpoint removes "endpoints", and the reverse) or takes away
    (--no-fallback ...), as RFC 7396 merges.  reset drops what was changed
    at run time: the config file's entry is back.                          */
#include "ctl.h"
#include "mesh_util.h"

#include <stdio.h>

static const ctl_option_t s_options [] = {
    { "endpoint",        CTL_LIST,   "endpoint" },
    { "upstream-model",  CTL_STRING, "upstream_model" },
    { "fallback",        CTL_STRING, "fallback" },
    { "max-concurrency", CTL_COUNT,  "max_concurrency" },
    { "key-env",         CTL_STRING, "key_env" },
    { "no-auth",         CTL_FLAG,   "no_auth" },
    { "alias",           CTL_LIST,   "aliases" },
    { "file",            CTL_STRING, "file" },
    //  The way back from each optional setting
    { "no-upstream-model",  CTL_UNSET, "upstream_model" },
    { "no-fallback",        CTL_UNSET, "fallback" },
    { "no-max-concurrency", CTL_UNSET, "max_concurrency" },
    { "no-alias",           CTL_UNSET, "aliases" },
    { NULL, 0, NULL }
};

//  Fields the options give as they are
static const char *s_plain_fields [] = { "upstream_model", "fallback", "max_concurrency",
                                         "aliases" };

//  Without field: PUT sends the whole entry, so leave it out; a patch
//  must remove it.
static void
s_remove (json_t *body, const char *field, bool patch)
{
    if (patch)
        json_object_set_new (body, field, json_null ());
    else
        json_object_del (body, field);
}

//  The request body from the options: for add the entry (from --file, if
//  given, then the options over it), for set the merge patch.
static int
s_body (ctl_t *ctl, const char *name, json_t *fields, bool patch, json_t **body_p)
{
    json_t *body = json_object ();
    int rc = CTL_EXIT_USAGE;
    const char *file = json_string_value (json_object_get (fields, "file"));
    if (file) {
        json_error_t error;
        json_decref (body);
        if ((body = json_load_file (file, 0, &error)) == NULL) {
            if (error.line > 0)
                ctl_usage (ctl, "%s:%d: %s", file, error.line, error.text);
            else
                ctl_usage (ctl, "%s", error.text);
            goto cleanup;
        }
        const char *named = json_string_value (json_object_get (body, "name"));
        if (!json_is_object (body) || (named && !mesh_streq (named, name))) {
            ctl_usage (ctl, "%s: not a model entry named '%s'", file, name);
            goto cleanup;
        }
    }
    json_t *endpoints = json_object_get (fields, "endpoint");
    if (json_array_size (endpoints) == 1) {
        json_object_set (body, "endpoint", json_array_get (endpoints, 0));
        s_remove (body, "endpoints", patch);
    }
    else
    if (endpoints) {
        size_t index;
        json_t *url, *list = json_array ();
        json_array_foreach (endpoints, index, url)
            json_array_append_new (list, json_pack ("{sO}", "url", url));
        json_object_set_new (body, "endpoints", list);
        s_remove (body, "endpoint", patch);
    }
    const char *key_env = json_string_value (json_object_get (fields, "key_env"));
    bool no_auth = json_object_get (fields, "no_auth") != NULL;
    if (key_env && no_auth) {
        ctl_usage (ctl, "--key-env and --no-auth exclude each other");
        goto cleanup;
    }
    if (key_env)
        json_object_set_new (body, "auth", json_pack ("{ssssss}", "type", "api_key",
                                                      "key_name", "Authorization",
                                                      "key_env", key_env));
    if (no_auth)
        json_object_set_new (body, "auth", patch
            ? json_pack ("{sssnsn}", "type", "none", "key_name", "key_env")
            : json_pack ("{ss}", "type", "none"));
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_plain_fields); i++) {
        json_t *value = json_object_get (fields, s_plain_fields [i]);
        if (json_is_null (value))
            s_remove (body, s_plain_fields [i], patch);
        else
        if (value)
            json_object_set (body, s_plain_fields [i], value);
    }
    if (patch && json_object_size (body) == 0) {
        ctl_usage (ctl, "nothing to change: give at least one option");
        goto cleanup;
    }
    if (!patch) {
        json_object_set_new (body, "name", json_string (name));
        if (!json_object_get (body, "endpoint") && !json_object_get (body, "endpoints")
        &&  !json_object_get (body, "variants")) {
            ctl_usage (ctl, "where is the model served? give --endpoint URL or --file ENTRY.json");
            goto cleanup;
        }
    }
    *body_p = body;
    body = NULL;
    rc = CTL_EXIT_OK;
cleanup:
    json_decref (body);
    return rc;
}

//  The ENDPOINTS cell: the URL, the first URL and how many more, or the
//  variants of an A/B model.
static json_t *
s_endpoints_cell (json_t *entry)
{
    json_t *endpoints = json_object_get (entry, "endpoints");
    json_t *variants = json_object_get (entry, "variants");
    const char *first = json_string_value (json_object_get (json_array_get (endpoints, 0), "url"));
    if (json_is_string (json_object_get (entry, "endpoint")))
        return json_incref (json_object_get (entry, "endpoint"));
    if (first && json_array_size (endpoints) > 1)
        return json_sprintf ("%s (+%zu)", first, json_array_size (endpoints) - 1);
    if (first)
        return json_string (first);
    if (json_array_size (variants) > 0) {
        json_t *names = json_array ();
        size_t index;
        json_t *variant;
        json_array_foreach (variants, index, variant)
            json_array_append (names, json_object_get (variant, "model"));
        return names;
    }
    return json_null ();
}

//  The ALIASES cell: the entry's own aliases[], then the reply's
//  aliases{} that name this model.
static json_t *
s_aliases_cell (json_t *entry, json_t *aliases, const char *name)
{
    json_t *names = json_array ();
    size_t index;
    json_t *own;
    json_array_foreach (json_object_get (entry, "aliases"), index, own)
        if (json_is_string (own))
            json_array_append (names, own);
    const char *alias;
    json_t *target;
    json_object_foreach (aliases, alias, target)
        if (mesh_streq (json_string_value (target), name))
            json_array_append_new (names, json_string (alias));
    if (json_array_size (names) == 0) {
        json_decref (names);
        return json_null ();
    }
    return names;
}

int
ctl_models_list (ctl_t *ctl, int argc, char **argv)
{
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, NULL, 0);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "GET", "/admin/models", NULL, NULL, &reply);
    if (rc != CTL_EXIT_OK || !reply)
        return rc;
    json_t *rows = json_pack ("[[ssssss]]", "NAME", "SOURCE", "ENDPOINTS", "FALLBACK",
                              "MAX_CONC", "ALIASES");
    json_t *aliases = json_object_get (reply, "aliases");
    size_t index;
    json_t *entry;
    json_array_foreach (json_object_get (reply, "data"), index, entry) {
        json_t *name = json_object_get (entry, "name");
        json_array_append_new (rows, json_pack ("[O?O?oO?O?o]", name,
            json_object_get (entry, "source"), s_endpoints_cell (entry),
            json_object_get (entry, "fallback"), json_object_get (entry, "max_concurrency"),
            s_aliases_cell (entry, aliases, json_string_value (name))));
    }
    ctl_table_print (rows);
    json_decref (rows);
    ctl_print_removed ("models", json_object_get (reply, "removed"));
    json_decref (reply);
    return CTL_EXIT_OK;
}

int
ctl_models_get (ctl_t *ctl, int argc, char **argv)
{
    const char *name;
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, &name, 1);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "GET", "/admin/models/", name, NULL, &reply);
    if (rc != CTL_EXIT_OK || !reply)
        return rc;
    ctl_print_json (reply);
    json_decref (reply);
    return CTL_EXIT_OK;
}

//  add (PUT, patch false) and set (PATCH, patch true)
static int
s_models_write (ctl_t *ctl, int argc, char **argv, bool patch)
{
    const char *name;
    json_t *fields = json_object ();
    json_t *body = NULL, *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, s_options, fields, &name, 1);
    if (rc == CTL_EXIT_OK)
        rc = s_body (ctl, name, fields, patch, &body);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, patch ? "PATCH" : "PUT", "/admin/models/", name, body, &reply);
    if (rc == CTL_EXIT_OK && reply)
        printf ("model %s %s\n", name, patch ? "updated" : "saved");
    json_decref (reply);
    json_decref (body);
    json_decref (fields);
    return rc;
}

int
ctl_models_add (ctl_t *ctl, int argc, char **argv)
{
    return s_models_write (ctl, argc, argv, false);
}

int
ctl_models_set (ctl_t *ctl, int argc, char **argv)
{
    return s_models_write (ctl, argc, argv, true);
}

//  Prints what a reset did: the file's entry back, or a run-time one gone
static void
s_print_reset (const char *what, const char *id, json_t *reply)
{
    if (json_is_true (json_object_get (reply, "removed")))
        printf ("%s %s reset: removed (it was made at run time)\n", what, id);
    else
        printf ("%s %s reset: the config file's entry is back\n", what, id);
}

int
ctl_models_reset (ctl_t *ctl, int argc, char **argv)
{
    const char *name;
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, &name, 1);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call_at (ctl, "POST", "/admin/models/", name, "/reset", NULL, &reply);
    if (rc == CTL_EXIT_OK && reply)
        s_print_reset ("model", name, reply);
    json_decref (reply);
    return rc;
}

int
ctl_registry_reset (ctl_t *ctl, int argc, char **argv)
{
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, NULL, 0);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "POST", "/admin/registry/reset", NULL, NULL, &reply);
    if (rc == CTL_EXIT_OK && reply)
        printf ("registry reset: %" JSON_INTEGER_FORMAT " model and %" JSON_INTEGER_FORMAT
                " key changes dropped; the config file's models and keys are back\n",
                json_integer_value (json_object_get (reply, "models_reset")),
                json_integer_value (json_object_get (reply, "keys_reset")));
    json_decref (reply);
    return rc;
}

int
ctl_models_remove (ctl_t *ctl, int argc, char **argv)
{
    const char *name;
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, &name, 1);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "DELETE", "/admin/models/", name, NULL, &reply);
    if (rc == CTL_EXIT_OK && reply)
        printf ("model %s removed\n", name);
    json_decref (reply);
    return rc;
}
