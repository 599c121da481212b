/*  ctl_sessions: sessions and their human operators through the router's
    admin API.

        sessions list                           GET  /admin/sessions
        sessions watch ID                       GET  /admin/sessions/ID/watch (SSE)
        sessions takeover ID [--operator NAME]  POST /admin/sessions/ID/takeover
        sessions say ID "TEXT" [--operator NAME] POST /admin/sessions/ID/say
        sessions release ID [--operator NAME]   POST /admin/sessions/ID/release

    The operator is --operator, else $SEEKMESH_OPERATOR, else $USER; it
    names who acted in the audit trail (the admin token is shared).  watch
    prints the transcript (the history, then each message as it happens)
    until the session is deleted or the command is stopped; with --json,
    one event a line as the API gives it.                                   */
#include "ctl.h"
#include "ctl_http.h"
#include "mesh_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const ctl_option_t s_operator_option [] = {
    { "operator", CTL_STRING, "operator" },
    { NULL, 0, NULL }
};

//  The operator who acts: the option, the environment, or "operator"
static void
s_operator (json_t *fields)
{
    if (json_object_get (fields, "operator"))
        return;
    const char *name = getenv ("SEEKMESH_OPERATOR");
    if (!name || !*name)
        name = getenv ("USER");
    json_object_set_new (fields, "operator", json_string (name && *name ? name : "operator"));
}

static void
s_time (json_int_t seconds, char *out, size_t size)
{
    time_t t = (time_t) seconds;
    struct tm tm;
    gmtime_r (&t, &tm);
    strftime (out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int
ctl_sessions_list (ctl_t *ctl, int argc, char **argv)
{
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, NULL, 0);
    if (rc == CTL_EXIT_OK)
        rc = ctl_call (ctl, "GET", "/admin/sessions", NULL, NULL, &reply);
    if (rc != CTL_EXIT_OK || !reply)
        return rc;
    json_t *rows = json_pack ("[[sssss]]", "ID", "TENANT", "LAST ACTIVITY", "TURNS", "OPERATOR");
    size_t index;
    json_t *session;
    json_array_foreach (json_object_get (reply, "data"), index, session) {
        char when [32];
        s_time (json_integer_value (json_object_get (session, "updated")), when, sizeof when);
        json_array_append_new (rows, json_pack ("[O?O?sO?O?]", json_object_get (session, "id"),
                               json_object_get (session, "tenant"), when,
                               json_object_get (session, "turns"),
                               json_object_get (session, "taken_over_by")));
    }
    ctl_table_print (rows);
    json_decref (rows);
    json_decref (reply);
    return CTL_EXIT_OK;
}

static int
s_act (ctl_t *ctl, int argc, char **argv, const char *action, bool say)
{
    const char *positional [2];
    json_t *fields = json_object ();
    json_t *reply = NULL;
    int rc = ctl_parse (ctl, argc, argv, s_operator_option, fields, positional, say ? 2 : 1);
    if (rc == CTL_EXIT_OK && say) {
        json_object_set_new (fields, "text", json_string (positional [1]));
        if (!json_object_get (fields, "text"))
            rc = ctl_usage (ctl, "the text is not UTF-8");
    }
    if (rc == CTL_EXIT_OK) {
        s_operator (fields);
        //  /admin/sessions/<the id, escaped>/<action>
        mesh_buf_t path;
        mesh_buf_init (&path);
        mesh_buf_append_str (&path, "/admin/sessions/");
        ctl_http_escape (&path, positional [0]);
        mesh_buf_printf (&path, "/%s", action);
        mesh_buf_append (&path, "", 1);
        rc = ctl_call (ctl, "POST", mesh_buf_head (&path), NULL, fields, &reply);
        mesh_buf_free (&path);
    }
    if (rc == CTL_EXIT_OK && reply) {
        printf ("%s: ", say ? "said" : mesh_streq (action, "takeover") ? "taken over" : "released");
        ctl_print_clean (positional [0]);
        printf (" by ");
        ctl_print_clean (json_string_value (json_object_get (fields, "operator")));
        putchar ('\n');
    }
    json_decref (reply);
    json_decref (fields);
    return rc;
}

int
ctl_sessions_takeover (ctl_t *ctl, int argc, char **argv)
{
    return s_act (ctl, argc, argv, "takeover", false);
}

int
ctl_sessions_say (ctl_t *ctl, int argc, char **argv)
{
    return s_act (ctl, argc, argv, "say", true);
}

int
ctl_sessions_release (ctl_t *ctl, int argc, char **argv)
{
    return s_act (ctl, argc, argv, "release", false);
}

//  Watching ---------------------------------------------------------------------------

typedef struct {
    ctl_t *ctl;
    mesh_buf_t pending;         //  an SSE event not complete yet
} watch_t;

static void
s_content (json_t *content)
{
    if (json_is_string (content))
        ctl_print_clean (json_string_value (content));
    else {
        char *text = json_dumps (content, JSON_COMPACT | JSON_ENCODE_ANY);
        ctl_print_clean (text ? text : "-");
        free (text);
    }
}

static void
s_print_event (watch_t *watch, json_t *event)
{
    if (watch->ctl->json) {
        char *text = json_dumps (event, JSON_COMPACT);
        if (text)
            puts (text);
        free (text);
        fflush (stdout);
        return;
    }
    const char *type = json_string_value (json_object_get (event, "type"));
    json_t *time_ms = json_object_get (event, "time_ms");
    char when [32] = "";
    if (json_is_integer (time_ms))
        s_time (json_integer_value (time_ms) / 1000, when, sizeof when);
    if (mesh_streq (type, "history")) {
        printf ("session ");
        ctl_print_clean (json_string_value (json_object_get (event, "session")));
        json_t *messages = json_object_get (event, "messages");
        if (!messages)
            printf (": no history yet\n");
        else {
            printf (" (%" JSON_INTEGER_FORMAT " turns", json_integer_value (json_object_get (event, "turns")));
            const char *operator_name = json_string_value (json_object_get (event, "taken_over_by"));
            if (operator_name) {
                printf (", taken over by ");
                ctl_print_clean (operator_name);
            }
            printf (")\n");
        }
        size_t index;
        json_t *message;
        json_array_foreach (messages, index, message) {
            printf ("  ");
            ctl_print_clean (json_string_value (json_object_get (message, "role")));
            printf (": ");
            s_content (json_object_get (message, "content"));
            putchar ('\n');
        }
    }
    else {
        printf ("%s ", *when ? when : "-");
        const char *operator_name = json_string_value (json_object_get (event, "operator"));
        if (mesh_streq (type, "operator")) {
            printf ("operator ");
            ctl_print_clean (operator_name);
            printf (": ");
            s_content (json_object_get (event, "content"));
        }
        else
        if (mesh_streq (type, "takeover") || mesh_streq (type, "release")) {
            printf ("%s by ", mesh_streq (type, "takeover") ? "taken over" : "released");
            ctl_print_clean (operator_name);
        }
        else
        if (mesh_streq (type, "deleted"))
            printf ("session deleted");
        else {
            ctl_print_clean (type);
            printf (": ");
            s_content (json_object_get (event, "content"));
            if (json_is_true (json_object_get (event, "holding")))
                printf (" (the holding message)");
        }
        putchar ('\n');
    }
    fflush (stdout);
}

static void
s_on_data (void *arg, const char *data, size_t size)
{
    watch_t *watch = arg;
    mesh_buf_append (&watch->pending, data, size);
    while (true) {
        const char *head = mesh_buf_head (&watch->pending);
        size_t len = mesh_buf_size (&watch->pending);
        const char *end = len ? memmem (head, len, "\n\n", 2) : NULL;
        if (!end)
            return;
        size_t event_len = (size_t) (end - head);
        if (event_len > 6 && memcmp (head, "data: ", 6) == 0) {
            json_t *event = json_loadb (head + 6, event_len - 6, 0, NULL);
            if (json_is_object (event))
                s_print_event (watch, event);
            json_decref (event);
        }
        mesh_buf_consume (&watch->pending, event_len + 2);
    }
}

int
ctl_sessions_watch (ctl_t *ctl, int argc, char **argv)
{
    const char *id;
    int rc = ctl_parse (ctl, argc, argv, NULL, NULL, &id, 1);
    if (rc != CTL_EXIT_OK)
        return rc;
    mesh_buf_t headers, path;
    mesh_buf_init (&headers);
    mesh_buf_init (&path);
    rc = ctl_auth_headers (ctl, &headers);
    if (rc != CTL_EXIT_OK)
        return rc;
    mesh_buf_append (&headers, "Accept: text/event-stream\r\n", 27);
    mesh_buf_append (&headers, "", 1);
    mesh_buf_append_str (&path, "/admin/sessions/");
    ctl_http_escape (&path, id);
    mesh_buf_append_str (&path, "/watch");
    mesh_buf_append (&path, "", 1);
    watch_t watch = { .ctl = ctl };
    mesh_buf_init (&watch.pending);
    ctl_http_response_t response;
    char why [256];
    //  The router writes a keep-alive every 15 s: a minute of silence is
    //  a router gone
    if (ctl_http_stream (ctl->host, ctl->port, ctl->timeout_ms, 60000, mesh_buf_head (&path),
                         mesh_buf_head (&headers), &response, s_on_data, &watch, why, sizeof why) < 0) {
        fprintf (stderr, "seekmeshctl: the watch of the admin API at %s:%s ended: %s\n",
                 ctl->host, ctl->port, why);
        rc = CTL_EXIT_UNREACHABLE;
    }
    else
    if (response.status < 200 || response.status > 299) {
        ctl_print_error (response.status, mesh_buf_head (&response.body), mesh_buf_size (&response.body));
        rc = CTL_EXIT_API;
    }
    mesh_buf_free (&response.body);
    mesh_buf_free (&watch.pending);
    mesh_buf_free (&headers);
    mesh_buf_free (&path);
    return rc;
}
