/*  ctl_api: what every command shares: one call to the admin API (token,
    status, the OpenAI-style error envelope, --json), the option parser,
    printing tables and JSON; and the one command without a group, reload.  */
#include "ctl.h"
#include "ctl_http.h"
#include "mesh_http.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ERROR_CHARS 300             //  of a reply that is not an envelope
#define MAX_COLUMNS     16

int
ctl_usage (ctl_t *ctl, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    fputs ("seekmeshctl: ", stderr);
    vfprintf (stderr, format, args);
    fputc ('\n', stderr);
    va_end (args);
    if (ctl->synopsis)
        fprintf (stderr, "usage: seekmeshctl %s\n", ctl->synopsis);
    fputs ("Run 'seekmeshctl --help' for every command and option.\n", stderr);
    return CTL_EXIT_USAGE;
}

bool
ctl_parse_count (const char *text, long long *value)
{
    if (!text || !*text || strspn (text, "0123456789") != strlen (text))
        return false;
    errno = 0;
    long long number = strtoll (text, NULL, 10);
    if (errno == ERANGE || number < 1)
        return false;
    *value = number;
    return true;
}

static const ctl_option_t *
s_option (const ctl_option_t *options, const char *name, size_t name_len)
{
    for (; options && options->name; options++)
        if (mesh_memeq (name, name_len, options->name))
            return options;
    return NULL;
}

int
ctl_parse (ctl_t *ctl, int argc, char **argv, const ctl_option_t *options,
           json_t *fields, const char **positional, int count)
{
    int found = 0;
    bool options_ended = false;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv [i];
        if (options_ended || arg [0] != '-' || arg [1] == 0) {
            if (found == count)
                return ctl_usage (ctl, "unexpected argument '%s'", arg);
            if (!*arg)          //  "" would name the collection, not an item
                return ctl_usage (ctl, "empty argument");
            positional [found++] = arg;
            continue;
        }
        if (mesh_streq (arg, "--")) {
            options_ended = true;
            continue;
        }
        const char *name = arg + (arg [1] == '-' ? 2 : 1);
        const char *equals = strchr (name, '=');
        size_t name_len = equals ? (size_t) (equals - name) : strlen (name);
        const ctl_option_t *option = arg [1] == '-' ? s_option (options, name, name_len) : NULL;
        if (!option)
            return ctl_usage (ctl, "unknown option '%.*s'", (int) (name - arg + name_len), arg);
        //  "--fallback F --no-fallback": which one was meant?
        json_t *before = json_object_get (fields, option->field);
        if (before && json_is_null (before) != (option->kind == CTL_UNSET)) {
            if (option->kind == CTL_UNSET)
                return ctl_usage (ctl, "--%s and --%s exclude each other", option->name + 3,
                                  option->name);
            return ctl_usage (ctl, "--%s and --no-%s exclude each other", option->name, option->name);
        }
        if (option->kind == CTL_FLAG || option->kind == CTL_UNSET) {
            if (equals)
                return ctl_usage (ctl, "--%s takes no value", option->name);
            json_object_set_new (fields, option->field,
                                 option->kind == CTL_FLAG ? json_true () : json_null ());
            continue;
        }
        //  "--tenant --rpm 5" is a forgotten value, not a tenant "--rpm"
        const char *value = equals ? equals + 1 : i + 1 < argc ? argv [++i] : NULL;
        if (!value || !*value || (!equals && strncmp (value, "--", 2) == 0)) {
            char unset [64];
            snprintf (unset, sizeof unset, "no-%s", option->name);
            if (s_option (options, unset, strlen (unset)))
                return ctl_usage (ctl, "--%s needs a value (--%s removes it)", option->name, unset);
            return ctl_usage (ctl, "--%s needs a value", option->name);
        }
        long long number;
        json_t *item = NULL;
        if (option->kind == CTL_COUNT || option->kind == CTL_LIMIT) {
            bool zero = option->kind == CTL_LIMIT && strcmp (value, "0") == 0;
            if (!zero && !ctl_parse_count (value, &number))
                return ctl_usage (ctl, "--%s: '%s' is not a %s integer", option->name, value,
                                  option->kind == CTL_LIMIT ? "non-negative" : "positive");
            item = json_integer (zero ? 0 : number);
        }
        else
        if ((item = json_string (value)) == NULL)
            return ctl_usage (ctl, "--%s: the value is not UTF-8 text", option->name);
        if (option->kind == CTL_LIST) {
            json_t *list = json_object_get (fields, option->field);
            if (!json_is_array (list))
                json_object_set_new (fields, option->field, list = json_array ());
            json_array_append_new (list, item);
        }
        else
            json_object_set_new (fields, option->field, item);
    }
    if (found < count)
        return ctl_usage (ctl, "missing argument");
    return CTL_EXIT_OK;
}

//  Prints text on f with control characters replaced by '?'.
static void
s_put_clean (FILE *f, const char *text, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char) text [i];
        fputc (c < 0x20 || c == 0x7f ? '?' : c, f);
    }
}

void
ctl_print_clean (const char *text)
{
    s_put_clean (stdout, text ? text : "-", strlen (text ? text : "-"));
}

//  "seekmeshctl: 404: no model called x": the envelope's message, else
//  the start of whatever came, else the reason phrase.
static void
s_print_error (const ctl_http_response_t *response)
{
    size_t size = mesh_buf_size (&response->body);
    const char *data = size ? mesh_buf_head (&response->body) : "";
    json_t *reply = json_loadb (data, size, 0, NULL);
    const char *message = json_string_value (json_object_get (json_object_get (reply, "error"),
                                                              "message"));
    fprintf (stderr, "seekmeshctl: %d: ", response->status);
    if (message)
        s_put_clean (stderr, message, strlen (message));
    else
    if (size)
        s_put_clean (stderr, data, MESH_MIN (strcspn (data, "\r\n"), MAX_ERROR_CHARS));
    else
        fputs (mesh_http_reason (response->status), stderr);
    fputc ('\n', stderr);
    json_decref (reply);
}

static int
s_check_token (const char *token)
{
    if (!token || !*token) {
        fputs ("seekmeshctl: no admin token: pass --token TOKEN or set SEEKMESH_ADMIN_TOKEN\n"
               "(the router's admin token; the environment keeps it out of ps and shell history),\n"
               "or run from where make run keeps it (run/admin-token, or set SEEKMESH_RUN_DIR)\n",
               stderr);
        return CTL_EXIT_USAGE;
    }
    for (const char *c = token; *c; c++)
        if ((unsigned char) *c <= ' ' || (unsigned char) *c >= 0x7f) {
            fputs ("seekmeshctl: the admin token has spaces or control characters\n", stderr);
            return CTL_EXIT_USAGE;
        }
    return CTL_EXIT_OK;
}

int
ctl_auth_headers (ctl_t *ctl, mesh_buf_t *headers)
{
    int rc = s_check_token (ctl->token);
    if (rc == CTL_EXIT_OK)
        mesh_buf_printf (headers, "Authorization: Bearer %s\r\n", ctl->token);
    return rc;
}

void
ctl_print_error (int status, const char *data, size_t size)
{
    ctl_http_response_t response = { .status = status };
    mesh_buf_init (&response.body);
    mesh_buf_append (&response.body, data, size);
    s_print_error (&response);
    mesh_buf_free (&response.body);
}

int
ctl_call (ctl_t *ctl, const char *method, const char *prefix, const char *segment,
          json_t *body, json_t **reply)
{
    return ctl_call_at (ctl, method, prefix, segment, NULL, body, reply);
}

int
ctl_call_at (ctl_t *ctl, const char *method, const char *prefix, const char *segment,
             const char *suffix, json_t *body, json_t **reply)
{
    *reply = NULL;
    int rc = s_check_token (ctl->token);
    if (rc != CTL_EXIT_OK)
        return rc;
    mesh_buf_t path, headers;
    mesh_buf_init (&path);
    mesh_buf_init (&headers);
    mesh_buf_append_str (&path, prefix);
    if (segment)
        ctl_http_escape (&path, segment);
    if (suffix)
        mesh_buf_append_str (&path, suffix);
    mesh_buf_append (&path, "", 1);
    mesh_buf_printf (&headers, "Authorization: Bearer %s\r\n", ctl->token);
    mesh_buf_append (&headers, "", 1);
    char *text = body ? json_dumps (body, JSON_COMPACT) : NULL;
    assert (!body || text);

    ctl_http_response_t response;
    char why [256];
    if (ctl_http_request (ctl->host, ctl->port, ctl->timeout_ms, method, mesh_buf_head (&path),
                          mesh_buf_head (&headers), text, text ? strlen (text) : 0,
                          &response, why, sizeof why) < 0) {
        fprintf (stderr, "seekmeshctl: cannot reach the admin API at %s:%s: %s\n",
                 ctl->host, ctl->port, why);
        rc = CTL_EXIT_UNREACHABLE;
        goto cleanup;
    }
    if (response.status < 200 || response.status > 299) {
        s_print_error (&response);
        rc = CTL_EXIT_API;
        goto cleanup;
    }
    size_t size = mesh_buf_size (&response.body);
    const char *data = size ? mesh_buf_head (&response.body) : "";
    if (ctl->json) {
        fwrite (data, 1, size, stdout);
        if (size && data [size - 1] != '\n')
            fputc ('\n', stdout);
    }
    else
    if (size == 0)
        *reply = json_null ();
    else {
        json_error_t error;
        *reply = json_loadb (data, size, JSON_DECODE_ANY, &error);
        if (!*reply) {
            fprintf (stderr, "seekmeshctl: %d: the reply is not JSON: %s\n", response.status,
                     error.text);
            rc = CTL_EXIT_API;
        }
    }
cleanup:
    mesh_buf_free (&response.body);
    mesh_buf_free (&path);
    mesh_buf_free (&headers);
    free (text);
    return rc;
}

//  Appends a cell's text: arrays joined with ",", null as "-".
static void
s_cell_text (json_t *cell, mesh_buf_t *out)
{
    size_t index;
    json_t *item;
    if (json_is_string (cell))
        mesh_buf_append_str (out, json_string_value (cell));
    else
    if (json_is_integer (cell))
        mesh_buf_printf (out, "%" JSON_INTEGER_FORMAT, json_integer_value (cell));
    else
    if (json_is_real (cell))
        mesh_buf_printf (out, "%g", json_real_value (cell));
    else
    if (json_is_boolean (cell))
        mesh_buf_append_str (out, json_is_true (cell) ? "true" : "false");
    else
    if (json_is_array (cell))
        json_array_foreach (cell, index, item) {
            if (index)
                mesh_buf_append_str (out, ",");
            s_cell_text (item, out);
        }
    else
        mesh_buf_append_str (out, "-");
}

//  Columns are as wide as their widest cell in characters (UTF-8 code
//  points), two spaces apart; the last is not padded.
void
ctl_table_print (json_t *rows)
{
    size_t widths [MAX_COLUMNS] = { 0 };
    size_t columns = 0;
    mesh_buf_t text;
    mesh_buf_init (&text);
    for (int pass = 0; pass < 2; pass++) {         //  0 measures, 1 prints
        size_t index;
        json_t *row;
        json_array_foreach (rows, index, row) {
            size_t cells = MESH_MIN (json_array_size (row), MAX_COLUMNS);
            for (size_t column = 0; column < cells; column++) {
                mesh_buf_reset (&text);
                s_cell_text (json_array_get (row, column), &text);
                size_t size = mesh_buf_size (&text);
                const char *data = size ? mesh_buf_head (&text) : "";
                size_t width = 0;
                for (size_t i = 0; i < size; i++)
                    width += ((unsigned char) data [i] & 0xc0) != 0x80;
                if (pass == 0) {
                    widths [column] = MESH_MAX (widths [column], width);
                    columns = MESH_MAX (columns, column + 1);
                    continue;
                }
                s_put_clean (stdout, data, size);
                if (column + 1 < columns)
                    printf ("%*s", (int) (widths [column] - width + 2), "");
            }
            if (pass == 1)
                fputc ('\n', stdout);
        }
    }
    mesh_buf_free (&text);
}

void
ctl_print_json (json_t *value)
{
    char *text = json_dumps (value, JSON_INDENT (2) | JSON_ENCODE_ANY);
    if (text)
        puts (text);
    free (text);
}

void
ctl_print_removed (const char *group, json_t *names)
{
    if (json_array_size (names) == 0)
        return;
    mesh_buf_t text;
    mesh_buf_init (&text);
    s_cell_text (names, &text);
    printf ("removed at run time from the config file's %s: ", group);
    s_put_clean (stdout, mesh_buf_size (&text) ? mesh_buf_head (&text) : "", mesh_buf_size (&text));
    printf ("  (seekmeshctl %s reset %s brings one back)\n", group,
            mesh_streq (group, "keys") ? "ID" : "NAME");
    mesh_buf_free (&text);
}

//  reload: the router re-reads its config file (a command of its own)
int
ctl_reload (ctl_t *ctl, int argc, char **argv)
{
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, NULL, 0);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "POST", "/admin/reload", NULL, NULL, &reply);
    if (rc != CTL_EXIT_OK || !reply)
        return rc;
    const char *version = json_string_value (json_object_get (reply, "version"));
    printf ("reloaded%s%s%s\n", version ? " (version " : "", version ? version : "",
            version ? ")" : "");
    json_decref (reply);
    return CTL_EXIT_OK;
}

void
ctl_api_test (bool verbose)
{
    (void) verbose;
    long long value = 0;
    assert (ctl_parse_count ("64", &value) && value == 64);
    assert (ctl_parse_count ("9223372036854775807", &value));
    const char *bad [] = { "", "0", "-1", "+1", "1.5", "1e3", " 1", "12x", "9223372036854775808" };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++)
        assert (!ctl_parse_count (bad [i], &value));

    static const ctl_option_t options [] = {
        { "rpm",   CTL_COUNT,  "rpm" },
        { "model", CTL_LIST,   "models" },
        { "id",    CTL_STRING, "id" },
        { "yes",   CTL_FLAG,   "yes" },
        { "no-id", CTL_UNSET,  "id" },
        { NULL, 0, NULL }
    };
    char *argv [] = { "--rpm", "60", "k1", "--model=a", "--model", "b", "--yes", "--", "--id" };
    ctl_t ctl = { .synopsis = "test" };
    json_t *fields = json_object ();
    const char *positional [2];
    assert (ctl_parse (&ctl, (int) MESH_ARRAY_SIZE (argv), argv, options, fields,
                       positional, 2) == CTL_EXIT_OK);
    assert (mesh_streq (positional [0], "k1") && mesh_streq (positional [1], "--id"));
    json_t *expected = json_pack ("{sI s[ss] sb}", "rpm", (json_int_t) 60, "models", "a", "b",
                                  "yes", 1);
    assert (json_equal (fields, expected));
    json_decref (expected);
    json_decref (fields);

    //  --no-id sets null; with --id on the same line it is refused
    char *unset [] = { "--no-id" };
    fields = json_object ();
    assert (ctl_parse (&ctl, 1, unset, options, fields, NULL, 0) == CTL_EXIT_OK);
    assert (json_is_null (json_object_get (fields, "id")));
    json_decref (fields);
    char *both [] = { "--id", "x", "--no-id" };
    fields = json_object ();
    int saved = dup (STDERR_FILENO), quiet = open ("/dev/null", O_WRONLY);
    dup2 (quiet, STDERR_FILENO);            //  the usage message it prints
    assert (ctl_parse (&ctl, 3, both, options, fields, NULL, 0) == CTL_EXIT_USAGE);
    dup2 (saved, STDERR_FILENO);
    close (saved);
    close (quiet);
    json_decref (fields);
}
