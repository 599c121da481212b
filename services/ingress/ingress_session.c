/*  ingress_session: session ids, GET/DELETE of a session, TURN and STOP.  */
#include "ingress_session.h"
#include "ingress_audit.h"
#include "ingress_filter.h"

#include "mesh_audit.h"
#include "mesh_completion.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define HEADER "x-seekmesh-session:"

static bool
s_valid (const char *id, size_t len)
{
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id [i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
        ||    c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

static void
s_invalid (pss_t *pss, const char *param)
{
    ingress_respond_error (pss, 400, "invalid_request_error", "invalid_session_id", param,
                           "A session id is 1-128 letters, digits and . _ : - (the header "
                           "x-seekmesh-session or metadata.session_id; both must agree).");
}

int
ingress_session_header (pss_t *pss)
{
    if (!pss->wsi)
        return 0;
    int len = lws_hdr_custom_length (pss->wsi, HEADER, (int) strlen (HEADER));
    if (len < 0)
        return 0;
    char value [160];
    if (len >= (int) sizeof value
    ||  lws_hdr_custom_copy (pss->wsi, value, sizeof value, HEADER, (int) strlen (HEADER)) < 0) {
        s_invalid (pss, "x-seekmesh-session");
        return -1;
    }
    //  Spaces around a header's value are not part of it
    char *start = value;
    while (*start == ' ' || *start == '\t')
        start++;
    size_t n = strlen (start);
    while (n && (start [n - 1] == ' ' || start [n - 1] == '\t'))
        n--;
    if (!s_valid (start, n)) {
        s_invalid (pss, "x-seekmesh-session");
        return -1;
    }
    snprintf (pss->session, sizeof pss->session, "%.*s", (int) n, start);
    return 0;
}

int
ingress_session_body (pss_t *pss, const char *session_id)
{
    if (!session_id)
        return 0;
    if (!s_valid (session_id, strlen (session_id))
    ||  (*pss->session && strcmp (pss->session, session_id) != 0)) {
        s_invalid (pss, "metadata.session_id");
        return -1;
    }
    snprintf (pss->session, sizeof pss->session, "%s", session_id);
    return 0;
}

bool
ingress_session_route (pss_t *pss, const char *uri, size_t uri_len, int method)
{
    size_t prefix = uri_len > 13 && memcmp (uri, "/v1/sessions/", 13) == 0 ? 13
                  : uri_len > 10 && memcmp (uri, "/sessions/", 10) == 0 ? 10 : 0;
    if (!prefix)
        return false;
    const char *id = uri + prefix;
    size_t len = uri_len - prefix;
    if (method != LWSHUMETH_GET && method != LWSHUMETH_DELETE) {
        ingress_respond_error (pss, 405, "invalid_request_error", "method_not_allowed", NULL,
                               "Method not allowed: a session accepts GET and DELETE only.");
        pss->close_after = true;
        return true;
    }
    if (!s_valid (id, len)) {
        ingress_respond_error (pss, 404, "invalid_request_error", "session_not_found", NULL,
                               "No such session for this API key.");
        return true;
    }
    snprintf (pss->session, sizeof pss->session, "%.*s", (int) len, id);
    pss->kind = method == LWSHUMETH_GET ? MESH_KIND_SESSION_GET : MESH_KIND_SESSION_DELETE;
    return true;
}

//  The assistant message the client got, as JSON (malloc'd), or NULL
static char *
s_answer (pss_t *pss)
{
    json_t *root = NULL;
    if (pss->reply) {
        mesh_buf_t text;
        mesh_buf_init (&text);
        mesh_completion_render (pss->reply, &text);
        root = json_loadb (mesh_buf_head (&text), mesh_buf_size (&text), 0, NULL);
        mesh_buf_free (&text);
    }
    else
    if (mesh_buf_size (&pss->response))
        root = json_loadb (mesh_buf_head (&pss->response), mesh_buf_size (&pss->response), 0, NULL);
    json_t *message = json_object_get (json_array_get (json_object_get (root, "choices"), 0), "message");
    char *text = NULL;
    if (json_is_object (message)) {
        json_t *kept = json_copy (message);
        json_object_del (kept, "reasoning_content");
        json_object_del (kept, "refusal");
        json_object_set_new (kept, "role", json_string ("assistant"));
        text = json_dumps (kept, JSON_COMPACT);
        json_decref (kept);
    }
    json_decref (root);
    return text;
}

void
ingress_session_end (pss_t *pss, bool closed)
{
    if (!pss->turn_owed)
        return;
    pss->turn_owed = false;
    const char *outcome = pss->outcome;
    if (!outcome || mesh_streq (outcome, MESH_AUDIT_OK))
        outcome = closed && !pss->finished ? MESH_AUDIT_CLIENT_GONE
                : pss->status >= 200 && pss->status < 300 ? MESH_AUDIT_OK : MESH_AUDIT_ERROR;
    bool answered = mesh_streq (outcome, MESH_AUDIT_OK) || mesh_streq (outcome, MESH_AUDIT_FILTERED)
                 || mesh_streq (outcome, MESH_AUDIT_TAKEN_OVER);
    char *answer = answered ? s_answer (pss) : NULL;
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_TURN, pss->id);
    msg.attempt = pss->attempt;
    snprintf (msg.outcome, sizeof msg.outcome, "%s", outcome);
    msg.data = (mesh_bytes_t) { answer, answer ? strlen (answer) : 0 };
    ingress_mesh_to_router (pss, &msg);
    free (answer);
    //  The request has left the mesh already (cancelled): the router is let go now
    if (!pss->slot && pss->router >= 0) {
        ingress_routers_release (pss->ingress, pss->router);
        pss->router = -1;
    }
}

void
ingress_session_stop (ingress_t *self, const mesh_msg_t *msg)
{
    (void) self;
    pss_t *pss = ingress_mesh_request_of (self, msg);
    if (!pss || !pss->stream || pss->finished)
        return;
    mesh_info ("the session's operator took over: stream ended req=%s", pss->id);
    ingress_audit_outcome (pss, MESH_AUDIT_TAKEN_OVER);
    ingress_filter_close (pss, *msg->finish ? msg->finish : "stop");
    ingress_mesh_cancel (pss, "taken_over");
}

void
ingress_session_test (bool verbose)
{
    (void) verbose;
    assert (s_valid ("a", 1) && s_valid ("chat-42.x_Y:z", 13));
    assert (!s_valid ("", 0) && !s_valid ("a b", 3) && !s_valid ("a/b", 3) && !s_valid ("é", 2));
    char longest [130];
    memset (longest, 'x', sizeof longest);
    assert (s_valid (longest, 128) && !s_valid (longest, 129));
}
