/*  ctl_keys: client API keys through the router's admin API.

        keys list                   GET    /admin/keys
        keys add OPTIONS            POST   /admin/keys        201 with the key, once
        keys set ID OPTIONS         PATCH  /admin/keys/ID     only the fields given
        keys remove ID              DELETE /admin/keys/ID
        keys reset ID               POST   /admin/keys/ID/reset   the file's entry back

    The options' fields are the API's, so they are the request body as
    they are.  The router generates the secret unless --key gives one.      */
#include "ctl.h"
#include "mesh_util.h"

#include <stdio.h>

static const ctl_option_t s_add_options [] = {
    { "id",            CTL_STRING, "id" },
    { "tenant",        CTL_STRING, "tenant" },
    { "rpm",           CTL_LIMIT,  "rpm" },
    { "tpm",           CTL_LIMIT,  "tpm" },
    { "budget",        CTL_LIMIT,  "budget" },
    { "budget-period", CTL_STRING, "budget_period" },
    { "model",         CTL_LIST,   "models" },
    { "key",           CTL_STRING, "key" },
    { NULL, 0, NULL }
};

static const ctl_option_t s_set_options [] = {
    { "tenant",        CTL_STRING, "tenant" },
    { "rpm",           CTL_LIMIT,  "rpm" },
    { "tpm",           CTL_LIMIT,  "tpm" },
    { "budget",        CTL_LIMIT,  "budget" },
    { "budget-period", CTL_STRING, "budget_period" },
    { "model",         CTL_LIST,   "models" },
    //  The way back from each optional setting (a merge patch's null)
    { "no-rpm",           CTL_UNSET, "rpm" },
    { "no-tpm",           CTL_UNSET, "tpm" },
    { "no-budget",        CTL_UNSET, "budget" },
    { "no-budget-period", CTL_UNSET, "budget_period" },
    { "no-model",         CTL_UNSET, "models" },
    { NULL, 0, NULL }
};

static int
s_check_period (ctl_t *ctl, json_t *fields)
{
    const char *period = json_string_value (json_object_get (fields, "budget_period"));
    if (period && !mesh_streq (period, "hour") && !mesh_streq (period, "day")
    &&  !mesh_streq (period, "month"))
        return ctl_usage (ctl, "--budget-period: '%s' is not hour, day or month", period);
    return CTL_EXIT_OK;
}

//  The BUDGET cell: "1000/day" (the router names the period, the default
//  one too), "1000", or null
static json_t *
s_budget_cell (json_t *key)
{
    json_t *budget = json_object_get (key, "budget");
    const char *period = json_string_value (json_object_get (key, "budget_period"));
    if (json_is_integer (budget) && period)
        return json_sprintf ("%" JSON_INTEGER_FORMAT "/%s", json_integer_value (budget), period);
    return json_incref (budget ? budget : json_null ());
}

//  The MODELS cell: without a list a key may use every model
static json_t *
s_models_cell (json_t *key)
{
    json_t *models = json_object_get (key, "models");
    if (!json_is_array (models))
        return json_string ("(all)");
    if (json_array_size (models) == 0)
        return json_string ("(none)");
    return json_incref (models);
}

int
ctl_keys_list (ctl_t *ctl, int argc, char **argv)
{
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, NULL, 0);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "GET", "/admin/keys", NULL, NULL, &reply);
    if (rc != CTL_EXIT_OK || !reply)
        return rc;
    json_t *rows = json_pack ("[[sssssss]]", "ID", "TENANT", "SOURCE", "RPM", "TPM", "BUDGET",
                              "MODELS");
    size_t index;
    json_t *key;
    json_array_foreach (json_object_get (reply, "data"), index, key)
        json_array_append_new (rows, json_pack ("[O?O?O?O?O?oo]",
            json_object_get (key, "id"), json_object_get (key, "tenant"),
            json_object_get (key, "source"), json_object_get (key, "rpm"),
            json_object_get (key, "tpm"), s_budget_cell (key), s_models_cell (key)));
    ctl_table_print (rows);
    json_decref (rows);
    ctl_print_removed ("keys", json_object_get (reply, "removed"));
    json_decref (reply);
    return CTL_EXIT_OK;
}

int
ctl_keys_add (ctl_t *ctl, int argc, char **argv)
{
    json_t *fields = json_object ();
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, s_add_options, fields, NULL, 0);
    if (rc == CTL_EXIT_OK && !json_object_get (fields, "tenant"))
        rc = ctl_usage (ctl, "--tenant is required");
    if (rc == CTL_EXIT_OK)
        rc = s_check_period (ctl, fields);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "POST", "/admin/keys", NULL, fields, &reply);
    if (rc == CTL_EXIT_OK && reply) {
        const char *id = json_string_value (json_object_get (reply, "id"));
        const char *secret = json_string_value (json_object_get (reply, "key"));
        printf ("id: %s\n", id ? id : "-");
        json_t *budget = s_budget_cell (reply);
        if (json_is_string (budget))
            printf ("budget: %s tokens\n", json_string_value (budget));
        json_decref (budget);
        if (secret)
            printf ("key: %s (shown once; store it now)\n", secret);
    }
    json_decref (reply);
    json_decref (fields);
    return rc;
}

int
ctl_keys_set (ctl_t *ctl, int argc, char **argv)
{
    const char *id;
    json_t *fields = json_object ();
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, s_set_options, fields, &id, 1);
    if (rc == CTL_EXIT_OK && json_object_size (fields) == 0)
        rc = ctl_usage (ctl, "nothing to change: give at least one option");
    if (rc == CTL_EXIT_OK)
        rc = s_check_period (ctl, fields);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "PATCH", "/admin/keys/", id, fields, &reply);
    if (rc == CTL_EXIT_OK && reply)
        printf ("key %s updated\n", id);
    json_decref (reply);
    json_decref (fields);
    return rc;
}

int
ctl_keys_remove (ctl_t *ctl, int argc, char **argv)
{
    const char *id;
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, &id, 1);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "DELETE", "/admin/keys/", id, NULL, &reply);
    if (rc == CTL_EXIT_OK && reply)
        printf ("key %s removed\n", id);
    json_decref (reply);
    return rc;
}

int
ctl_keys_reset (ctl_t *ctl, int argc, char **argv)
{
    const char *id;
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, &id, 1);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call_at (ctl, "POST", "/admin/keys/", id, "/reset", NULL, &reply);
    if (rc == CTL_EXIT_OK && reply) {
        if (json_is_true (json_object_get (reply, "removed")))
            printf ("key %s reset: removed (it was made at run time)\n", id);
        else
            printf ("key %s reset: the config file's entry is back\n", id);
    }
    json_decref (reply);
    return rc;
}
