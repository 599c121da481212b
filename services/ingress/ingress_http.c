/*  ingress_http: the OpenAI-compatible HTTP API, as one lws protocol
    callback (HTTP/1.1 and h2 alike).

    POST /v1/chat/completions, /chat/completions   -> REQUEST (chat)
    GET  /v1/models, /models                       -> REQUEST (models)
    GET, DELETE /v1/sessions/ID, /sessions/ID      -> REQUEST (a session's)

    Limits come first: a declared body over the limit is refused before a
    byte of it is read; a body that grows past it is cut off.  Every
    response carries x-request-id.  Responses are queued in the request's
    out buffer and written from LWS_CALLBACK_HTTP_WRITEABLE, one write per
    callback, as soon as the bytes exist (SSE is never held back).  On
    HTTP/1.1 an SSE response uses chunked coding so the connection can be
    kept alive.  Every request with an id ends with one audit record
    (ingress_audit.c): made when its last byte is written, or when its
    connection closes first.  lws service thread only.                      */
#include "ingress.h"
#include "ingress_guard.h"
#include "ingress_audit.h"
#include "ingress_filter.h"
#include "ingress_session.h"
#include "ingress_validate.h"

#include "mesh_audit.h"
#include "mesh_http.h"
#include "mesh_log.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define WRITE_CHUNK (32 * 1024)

//  One response write at a time, on the one lws thread
static unsigned char s_wbuf [LWS_PRE + WRITE_CHUNK + 64];

static void
s_schedule_write (pss_t *pss)
{
    if (pss->wsi)
        lws_callback_on_writable (pss->wsi);
}

//  Timers -------------------------------------------------------------------

static void s_on_timers (lws_sorted_usec_list_t *sul);

//  One lws timer, at the earliest head of the queues
static void
s_arm_timers (ingress_t *self)
{
    ingress_timers_t *queues [] = { &self->request_timers, &self->body_timers, &self->keepalive_timers,
                                    &self->body_wait_timers };
    int64_t due = -1;
    for (size_t i = 0; i < MESH_ARRAY_SIZE (queues); i++) {
        int64_t next = ingress_timers_next (queues [i]);
        if (next >= 0 && (due < 0 || next < due))
            due = next;
    }
    if (due < 0 || (self->timers_due_us && self->timers_due_us <= due))
        return;                 //  none, or the lws timer fires early enough
    int64_t now = mesh_mono_us ();
    lws_sul_schedule (self->context, 0, &self->timers_sul, s_on_timers, due > now ? due - now : 0);
    self->timers_due_us = due;
}

static void
s_on_timers (lws_sorted_usec_list_t *sul)
{
    ingress_t *self = lws_container_of (sul, ingress_t, timers_sul);
    self->timers_due_us = 0;
    int64_t now = mesh_mono_us ();
    ingress_timers_run (&self->request_timers, now);
    ingress_timers_run (&self->body_timers, now);
    ingress_timers_run (&self->keepalive_timers, now);
    ingress_timers_run (&self->body_wait_timers, now);
    s_arm_timers (self);
}

static void
s_timer_start (pss_t *pss, ingress_timers_t *queue, ingress_timer_t *timer, ingress_timer_fn *fn)
{
    ingress_timer_start (queue, timer, mesh_mono_us (), fn);
    s_arm_timers (pss->ingress);
}

//  Responses ------------------------------------------------------------------

static void
s_start_response (pss_t *pss, int status, const char *content_type)
{
    pss->state = RQ_RESPONDING;
    pss->status = status;
    pss->content_type = content_type;
    ingress_timer_stop (&pss->timeout_timer);
}

void
ingress_respond_body (pss_t *pss, int status, const char *content_type, const char *body, size_t len)
{
    if (pss->state == RQ_RESPONDING)
        return;                         //  one response per request
    s_start_response (pss, status, content_type);
    mesh_buf_reset (&pss->out);
    mesh_buf_append (&pss->out, body, len);
    ingress_audit_capture (pss, body, len, false);
    pss->finished = true;
    s_schedule_write (pss);
}

static char *
s_error_json (const char *type, const char *code, const char *param, const char *message)
{
    json_t *error = json_pack ("{s:{s:s, s:s, s:o, s:o}}",
                               "error", "message", message, "type", type,
                               "param", param && *param ? json_string (param) : json_null (),
                               "code", code && *code ? json_string (code) : json_null ());
    char *text = error ? json_dumps (error, JSON_COMPACT) : NULL;
    json_decref (error);
    return text;
}

void
ingress_respond_error (pss_t *pss, int status, const char *type, const char *code,
                       const char *param, const char *message)
{
    char *text = s_error_json (type, code, param, message);
    if (!text)                          //  a message that is not UTF-8
        text = s_error_json (type, code, param, "The request failed.");
    if (!pss->should_retry)
        pss->should_retry = mesh_http_should_retry (status, code) ? MESH_ERROR_RETRY_YES
                                                                  : MESH_ERROR_RETRY_NO;
    if ((status == 429 || status == 503) && !pss->retry_after_ms)
        pss->retry_after_ms = 1000;
    if (pss->state != RQ_RESPONDING)
        snprintf (pss->error_code, sizeof pss->error_code, "%s", code ? code : "");
    ingress_respond_body (pss, status, "application/json", text, strlen (text));
    free (text);
}

void
ingress_respond_refusal (pss_t *pss)
{
    ingress_respond_error (pss, pss->refusal_status, pss->refusal_type, pss->refusal_code,
                           pss->refusal_param, pss->refusal_message);
}

static int s_on_writeable (pss_t *pss);

static void
s_sse_append (pss_t *pss, const char *prefix, const char *data, size_t len)
{
    mesh_buf_append_str (&pss->out, prefix);
    mesh_buf_append (&pss->out, data, len);
    mesh_buf_append (&pss->out, "\n\n", 2);
    if ((int64_t) mesh_buf_size (&pss->out) > pss->ingress->max_out_bytes) {
        //  The client reads slower than the upstream writes: let it go
        //  rather than hold an unbounded backlog
        mesh_warn ("client too slow, %zu bytes queued: closing req=%s", mesh_buf_size (&pss->out), pss->id);
        pss->outcome = MESH_AUDIT_ERROR;
        snprintf (pss->error_code, sizeof pss->error_code, "client_slow");
        ingress_mesh_cancel (pss, "client_slow");
        if (pss->wsi)
            lws_set_timeout (pss->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    //  HTTP/1.1: a stream's event goes out at once when the connection can
    //  take it, saving lws' writeable round trip (two epoll_ctl and a turn
    //  of the loop) an event.  Its head, its end and h2 (streams take turns
    //  on their connection) wait for the writeable callback, where the
    //  transaction completes.
    if (pss->wsi && !pss->h2 && pss->headers_written && !pss->finished && pss->state == RQ_RESPONDING
    &&  !lws_send_pipe_choked (pss->wsi)) {
        if (s_on_writeable (pss) < 0)
            lws_set_timeout (pss->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    s_schedule_write (pss);
}

static void s_on_keepalive (ingress_timer_t *timer);

void
ingress_sse_begin (pss_t *pss)
{
    if (pss->state == RQ_RESPONDING)
        return;
    s_start_response (pss, 200, "text/event-stream");
    pss->sse = true;
    //  A stream may last minutes: give its request-header table (up to
    //  max_header_bytes) back to lws now, everything has been read from it
    if (pss->wsi)
        lws_http_headers_detach (pss->wsi);
    mesh_buf_reset (&pss->out);
    s_schedule_write (pss);
    s_timer_start (pss, &pss->ingress->keepalive_timers, &pss->keepalive_timer, s_on_keepalive);
}

void
ingress_sse_event (pss_t *pss, const char *data, size_t len, bool comment)
{
    if (!pss->sse || pss->finished)
        return;
    if (!comment)
        ingress_audit_capture (pss, data, len, true);
    s_sse_append (pss, comment ? ": " : "data: ", data, len);
}

void
ingress_sse_end (pss_t *pss)
{
    if (!pss->sse || pss->finished)
        return;
    pss->finished = true;
    s_sse_append (pss, "data: ", "[DONE]", 6);
}

void
ingress_sse_error (pss_t *pss, const char *type, const char *code, const char *message)
{
    if (!pss->sse || pss->finished)
        return;
    char *text = s_error_json (type, code, NULL, message);
    if (!text)
        return;
    snprintf (pss->error_code, sizeof pss->error_code, "%s", code ? code : "");
    ingress_audit_capture (pss, text, strlen (text), true);
    pss->finished = true;
    s_sse_append (pss, "data: ", text, strlen (text));
    free (text);
}

//  Between tokens a stream may be quiet for long; a comment keeps proxies
//  and clients from timing it out
static void
s_on_keepalive (ingress_timer_t *timer)
{
    pss_t *pss = lws_container_of (timer, pss_t, keepalive_timer);
    ingress_t *self = pss->ingress;
    if (!pss->sse || pss->finished)
        return;
    int64_t now = mesh_mono_ms ();
    if (now - pss->last_write_ms >= self->keepalive_interval_ms && mesh_buf_size (&pss->out) == 0)
        s_sse_append (pss, ": ", "keep-alive", 10);
    s_timer_start (pss, &self->keepalive_timers, &pss->keepalive_timer, s_on_keepalive);
}

static void
s_on_timeout (ingress_timer_t *timer)
{
    pss_t *pss = lws_container_of (timer, pss_t, timeout_timer);
    if (pss->state != RQ_MESH)
        return;
    mesh_warn ("no response within %lld ms req=%s", (long long) pss->ingress->request_timeout_ms, pss->id);
    if (pss->kind == MESH_KIND_INVALID) {
        //  No router named the key: the refusal stands as it is
        ingress_mesh_release (pss);
        ingress_respond_refusal (pss);
        return;
    }
    ingress_audit_outcome (pss, MESH_AUDIT_TIMEOUT);
    ingress_mesh_cancel (pss, "timeout");
    ingress_respond_error (pss, 504, "server_error", "gateway_timeout", NULL,
                           "The request timed out in the gateway.");
}

//  A body must arrive whole within ingress.body_timeout_ms of its head,
//  however it trickles (lws' own timeout restarts with every piece)
static void
s_on_body_timeout (ingress_timer_t *timer)
{
    pss_t *pss = lws_container_of (timer, pss_t, timeout_timer);
    if (pss->state != RQ_BODY)
        return;
    mesh_metric_inc (pss->ingress->metric.body_timeouts);
    char message [160];
    snprintf (message, sizeof message, "The request body did not arrive within %lld ms.",
              (long long) pss->ingress->body_timeout_ms);
    pss->close_after = true;
    ingress_respond_error (pss, 408, "invalid_request_error", "request_timeout", NULL, message);
}

//  Writing --------------------------------------------------------------------

static int
s_add_header (struct lws *wsi, const char *name, const char *value, unsigned char **p,
              unsigned char *end)
{
    return lws_add_http_header_by_name (wsi, (const unsigned char *) name,
                                        (const unsigned char *) value, (int) strlen (value), p, end);
}

//  "6m0s", "1.5s", "20ms": the shape OpenAI's x-ratelimit-reset-* take
static void
s_duration (char *out, size_t size, uint64_t ms)
{
    if (ms < 1000)
        snprintf (out, size, "%llums", (unsigned long long) ms);
    else
    if (ms < 60000)
        snprintf (out, size, "%llu.%llus", (unsigned long long) (ms / 1000),
                  (unsigned long long) (ms % 1000 / 100));
    else
        snprintf (out, size, "%llum%llus", (unsigned long long) (ms / 60000),
                  (unsigned long long) (ms % 60000 / 1000));
}

//  The router's limits ("rpm,remaining,reset_ms,tpm,remaining,reset_ms",
//  0 for a limit not set) as OpenAI's x-ratelimit-* headers
static int
s_ratelimit_headers (pss_t *pss, unsigned char **p, unsigned char *end)
{
    unsigned long long v [6];
    if (sscanf (pss->limits, "%llu,%llu,%llu,%llu,%llu,%llu", &v [0], &v [1], &v [2], &v [3],
                &v [4], &v [5]) != 6)
        return 0;
    static const char *names [2][3] = {
        { "x-ratelimit-limit-requests:", "x-ratelimit-remaining-requests:", "x-ratelimit-reset-requests:" },
        { "x-ratelimit-limit-tokens:", "x-ratelimit-remaining-tokens:", "x-ratelimit-reset-tokens:" } };
    for (int kind = 0; kind < 2; kind++) {
        if (v [kind * 3] == 0)
            continue;
        char value [32];
        for (int k = 0; k < 3; k++) {
            if (k == 2)
                s_duration (value, sizeof value, v [kind * 3 + 2]);
            else
                snprintf (value, sizeof value, "%llu", v [kind * 3 + k]);
            if (lws_add_http_header_by_name (pss->wsi, (const unsigned char *) names [kind][k],
                                             (const unsigned char *) value, (int) strlen (value), p, end))
                return -1;
        }
    }
    return 0;
}

//  lws 4.1 knows reason phrases up to 417 only, so its status line for
//  422 or 429 is "HTTP/1.1 429 ": put mesh_http_reason's phrase into the
//  line it wrote at start (HTTP/1.1 only: h2 has no phrase)
static int
s_status_reason (pss_t *pss, unsigned char *start, unsigned char **p, unsigned char *end)
{
    if (pss->h2)
        return 0;
    unsigned char *eol = memmem (start, (size_t) (*p - start), "\r\n", 2);
    if (!eol || eol == start || eol [-1] != ' ')
        return 0;
    const char *reason = mesh_http_reason (pss->status);
    size_t len = strlen (reason);
    if ((size_t) (end - *p) < len)
        return -1;
    memmove (eol + len, eol, (size_t) (*p - eol));
    memcpy (eol, reason, len);
    *p += len;
    return 0;
}

static int
s_write_headers (pss_t *pss)
{
    struct lws *wsi = pss->wsi;
    unsigned char *start = s_wbuf + LWS_PRE, *p = start, *end = s_wbuf + sizeof s_wbuf - 1;
    if (pss->sse) {
        //  Not lws_add_http_common_headers: without a length it would mark
        //  the connection for closing, and our chunked coding keeps it
        if (lws_add_http_header_status (wsi, (unsigned int) pss->status, &p, end)
        ||  lws_add_http_header_by_token (wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                          (const unsigned char *) pss->content_type,
                                          (int) strlen (pss->content_type), &p, end))
            return -1;
    }
    else
    if (lws_add_http_common_headers (wsi, (unsigned int) pss->status, pss->content_type,
                                     (lws_filepos_t) mesh_buf_size (&pss->out), &p, end))
        return -1;
    if (s_status_reason (pss, start, &p, end) < 0)
        return -1;
    if (s_add_header (wsi, "x-request-id:", pss->id, &p, end))
        return -1;
    if (*pss->answered_model && s_add_header (wsi, "x-seekmesh-model:", pss->answered_model, &p, end))
        return -1;
    //  What the response cache did: on every chat completion's answer
    if (pss->kind == MESH_KIND_CHAT
    &&  s_add_header (wsi, "x-seekmesh-cache:", *pss->cache ? pss->cache : "bypass", &p, end))
        return -1;
    if (pss->sse) {
        if (s_add_header (wsi, "cache-control:", "no-cache", &p, end)
        ||  s_add_header (wsi, "x-accel-buffering:", "no", &p, end))
            return -1;
        if (!pss->h2 && s_add_header (wsi, "transfer-encoding:", "chunked", &p, end))
            return -1;
    }
    if (*pss->limits && s_ratelimit_headers (pss, &p, end) < 0)
        return -1;
    if (pss->retry_after_ms) {
        char value [24];
        int seconds = (pss->retry_after_ms + 999) / 1000;
        snprintf (value, sizeof value, "%d", seconds > 60 ? 60 : seconds);
        if (s_add_header (wsi, "retry-after:", value, &p, end))
            return -1;
        snprintf (value, sizeof value, "%d", pss->retry_after_ms);
        if (s_add_header (wsi, "retry-after-ms:", value, &p, end))
            return -1;
    }
    if (pss->should_retry
    &&  s_add_header (wsi, "x-should-retry:", pss->should_retry == MESH_ERROR_RETRY_YES ? "true" : "false", &p, end))
        return -1;
    if (pss->close_after && !pss->h2 && s_add_header (wsi, "connection:", "close", &p, end))
        return -1;
    if (lws_finalize_http_header (wsi, &p, end))
        return -1;
    //  A whole HTTP/1.1 body that fits goes out with its headers: one send
    size_t body = mesh_buf_size (&pss->out);
    bool with_body = !pss->h2 && !pss->sse && pss->finished && body <= (size_t) (end - p);
    if (with_body) {
        memcpy (p, mesh_buf_head (&pss->out), body);
        p += body;
    }
    if (lws_write (wsi, start, (size_t) (p - start), LWS_WRITE_HTTP_HEADERS) != (int) (p - start))
        return -1;
    if (with_body) {
        mesh_buf_consume (&pss->out, body);
        pss->bytes_out += body;
    }
    pss->headers_written = true;
    pss->last_write_ms = mesh_mono_ms ();
    if (!pss->first_write_us) {
        pss->first_write_us = mesh_mono_us ();
        mesh_metric_observe (pss->ingress->metric.ttfb, (double) (pss->first_write_us - pss->received_us) / 1e6);
    }
    return 0;
}

//  Ends the transaction once the last byte is out.  Returns -1 to close.
bool
ingress_unauthenticated (const pss_t *pss)
{
    //  401 from the router, or a refusal before the request went to one
    //  (429 and 503 there are the gateway's own limits, not the client's)
    return pss->status == 401
        || (pss->attempt == 0 && pss->status >= 400 && pss->status != 429 && pss->status != 503);
}

//  What the response says of the client's key, for the limiter of
//  unauthenticated requests
static void
s_guard_note (pss_t *pss)
{
    ingress_t *self = pss->ingress;
    if (ingress_unauthenticated (pss)) {
        if (!pss->guard_noted)
            ingress_guard_unauthenticated (self->guard, lws_get_network_wsi (pss->wsi), mesh_mono_ms ());
    }
    else
    if (*pss->tenant)
        ingress_guard_key_accepted (self->guard, pss->key_hash, mesh_mono_ms ());
}

static int
s_complete (pss_t *pss)
{
    ingress_t *self = pss->ingress;
    int status = pss->status;
    s_guard_note (pss);
    mesh_metric_inc (self->metric.by_class [status / 100 <= 5 ? status / 100 : 5]);
    int64_t now = mesh_mono_us ();
    mesh_metric_observe (self->metric.seconds, (double) (now - pss->received_us) / 1e6);
    if (pss->submitted_us && pss->answered_us) {
        mesh_metric_observe (self->metric.stage [0], (double) (pss->submitted_us - pss->received_us) / 1e6);
        mesh_metric_observe (self->metric.stage [1], (double) (pss->answered_us - pss->submitted_us) / 1e6);
        mesh_metric_observe (self->metric.stage [2], (double) (now - pss->answered_us) / 1e6);
    }
    mesh_debug ("%d %s req=%s", status, pss->sse ? "stream" : "body", pss->id);
    ingress_session_end (pss, false);
    ingress_audit_end (pss, false);
    ingress_filter_release (pss);
    ingress_mesh_release (pss);
    ingress_timer_stop (&pss->keepalive_timer);
    ingress_timer_stop (&pss->timeout_timer);
    pss->state = RQ_IDLE;
    mesh_buf_reset (&pss->out);
    mesh_buf_trim (&pss->out, 64 * 1024);
    mesh_buf_reset (&pss->body);
    mesh_buf_trim (&pss->body, 64 * 1024);
    if (pss->close_after) {
        if (pss->h2)
            return -1;          //  resets just this stream
        //  Lingering close: a client still sending a body we refused would
        //  get a reset that can destroy the response before it is read.
        //  Stop writing, discard what arrives, close in a moment.
        shutdown (lws_get_socket_fd (pss->wsi), SHUT_WR);
        lws_set_timeout (pss->wsi, PENDING_TIMEOUT_USER_OK, 2);
        return 0;
    }
    return lws_http_transaction_completed (pss->wsi) ? -1 : 0;
}

static int
s_on_writeable (pss_t *pss)
{
    if (pss->state != RQ_RESPONDING)
        return 0;
    if (!pss->headers_written) {
        if (s_write_headers (pss) < 0)
            return -1;
        if (!pss->h2 && pss->finished && !pss->sse && !mesh_buf_size (&pss->out))
            return s_complete (pss);    //  the body went with the headers
        //  On HTTP/1.1 the body follows in the same callback; h2 wants one
        //  write per callback
        if (pss->h2 || (!mesh_buf_size (&pss->out) && !pss->finished)) {
            if (mesh_buf_size (&pss->out) || pss->finished)
                lws_callback_on_writable (pss->wsi);
            return 0;
        }
    }
    size_t pending = mesh_buf_size (&pss->out);
    size_t take = MESH_MIN (pending, (size_t) WRITE_CHUNK);
    bool last = pss->finished && take == pending;
    unsigned char *start = s_wbuf + LWS_PRE, *p = start;
    if (pss->sse && !pss->h2) {
        //  HTTP/1.1 chunked coding, the terminator with the last piece
        if (take)
            p += sprintf ((char *) p, "%zx\r\n", take);
        memcpy (p, mesh_buf_head (&pss->out), take);
        p += take;
        if (take)
            p += sprintf ((char *) p, "\r\n");
        if (last)
            p += sprintf ((char *) p, "0\r\n\r\n");
    }
    else {
        memcpy (p, mesh_buf_head (&pss->out), take);
        p += take;
    }
    size_t len = (size_t) (p - start);
    if (len || (last && pss->h2)) {
        enum lws_write_protocol mode = last && pss->h2 ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP;
        if (lws_write (pss->wsi, start, len, mode) < (int) len)
            return -1;
    }
    mesh_buf_consume (&pss->out, take);
    pss->bytes_out += take;
    pss->last_write_ms = mesh_mono_ms ();
    if (last)
        return s_complete (pss);
    if (mesh_buf_size (&pss->out))
        lws_callback_on_writable (pss->wsi);
    return 0;
}

//  Requests -------------------------------------------------------------------

//  A new request on this wsi: a clean slate, keeping buffers' memory
static void
s_begin (pss_t *pss, struct lws *wsi)
{
    if (pss->ingress) {
        ingress_session_end (pss, true);
        ingress_audit_end (pss, true);  //  never left owing (a bug otherwise)
        ingress_filter_release (pss);
    }
    mesh_buf_t out = pss->out, body = pss->body, response = pss->response;
    memset (pss, 0, offsetof (pss_t, keepalive_timer));
    pss->out = out;
    pss->body = body;
    pss->response = response;
    mesh_buf_reset (&pss->out);
    mesh_buf_reset (&pss->body);
    mesh_buf_reset (&pss->response);
    pss->ingress = lws_context_user (lws_get_context (wsi));
    pss->wsi = wsi;
    pss->h2 = lws_get_network_wsi (wsi) != wsi;
    pss->content_length = -1;
    pss->router = -1;
    pss->received_us = mesh_mono_us ();
    mesh_id_new (pss->id);
    ingress_audit_begin (pss);
}

//  Reads "Authorization: Bearer <key>" into the key's SHA-256 digest.
static int
s_api_key (pss_t *pss)
{
    char header [1024];
    int len = lws_hdr_copy (pss->wsi, header, sizeof header, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (len <= 7 || strncasecmp (header, "Bearer ", 7) != 0)
        return -1;
    const char *key = header + 7;
    while (*key == ' ')
        key++;
    size_t key_len = strlen (key);
    while (key_len && key [key_len - 1] == ' ')
        key_len--;
    if (key_len == 0)
        return -1;
    EVP_Digest (key, key_len, pss->key_hash, NULL, EVP_sha256 (), NULL);
    return 0;
}

static void
s_submit (pss_t *pss)
{
    pss->state = RQ_MESH;
    pss->attempt = 1;
    s_timer_start (pss, &pss->ingress->request_timers, &pss->timeout_timer, s_on_timeout);
    pss->submitted_us = mesh_mono_us ();
    ingress_mesh_submit (pss);
}

//  Refuses a request that carries an API key: a router answers with this
//  verdict once it has looked the key up, so that the audit record names
//  the tenant and key (or it answers 401 for a key it does not know)
static void
s_refuse (pss_t *pss, int status, const char *type, const char *code, const char *param,
          const char *message)
{
    //  A refusal before the key is known draws from the address's bucket at
    //  once, as it did when it was answered here: a flood of them must not
    //  get past the limiter while their router trips are in flight
    ingress_guard_unauthenticated (pss->ingress->guard, lws_get_network_wsi (pss->wsi), mesh_mono_ms ());
    pss->guard_noted = true;
    pss->kind = MESH_KIND_INVALID;
    pss->refusal_status = status;
    snprintf (pss->refusal_type, sizeof pss->refusal_type, "%s", type);
    snprintf (pss->refusal_code, sizeof pss->refusal_code, "%s", code);
    snprintf (pss->refusal_param, sizeof pss->refusal_param, "%s", param ? param : "");
    snprintf (pss->refusal_message, sizeof pss->refusal_message, "%s", message);
    s_submit (pss);
}

static void
s_on_body_complete (pss_t *pss)
{
    pss->body_complete = true;
    ingress_check_t check;
    if (ingress_validate (mesh_buf_head (&pss->body), mesh_buf_size (&pss->body),
                          pss->ingress->default_max_tokens, &check) < 0) {
        snprintf (pss->model, sizeof pss->model, "%s", check.model);
        s_refuse (pss, check.status, "invalid_request_error", check.code, check.param, check.message);
        return;
    }
    if (ingress_session_body (pss, check.has_session ? check.session : NULL) < 0)
        return;
    snprintf (pss->model, sizeof pss->model, "%s", check.model);
    memcpy (pss->user, check.user, sizeof pss->user);
    pss->estimate = check.estimate;
    pss->prompt_estimate = check.prompt_estimate;
    pss->stream = check.stream;
    if (pss->audit_pending)
        pss->params = strdup (check.params);
    s_submit (pss);
}

//  An h2 POST without content-length whose HEADERS ended the stream has no
//  body, but lws 4.1 says so neither by BODY_COMPLETION nor by any API: a
//  body that has not begun INGRESS_H2_BODY_WAIT_MS after the headers is
//  taken as none

static void
s_on_body_wait (ingress_timer_t *timer)
{
    pss_t *pss = lws_container_of (timer, pss_t, timeout_timer);
    if (pss->state == RQ_BODY && mesh_buf_size (&pss->body) == 0)
        s_on_body_complete (pss);
}

//  What a request URL names
typedef struct {
    bool chat;                  //  POST /v1/chat/completions
    bool models;                //  GET /v1/models, /v1/models/{id}
    bool session;               //  GET and DELETE /v1/sessions/ID
    const char *model_id;       //  in uri: the {id} of /v1/models/{id}, or NULL
    size_t model_id_len;
} url_t;

static url_t
s_url_of (const pss_t *pss, const char *uri, int uri_len)
{
    url_t url = { 0 };
    url.chat = mesh_memeq (uri, (size_t) uri_len, "/v1/chat/completions")
            || mesh_memeq (uri, (size_t) uri_len, "/chat/completions");
    url.models = mesh_memeq (uri, (size_t) uri_len, "/v1/models")
              || mesh_memeq (uri, (size_t) uri_len, "/models");
    //  GET /v1/models/{id}: the id goes to the router in `model`
    if (!url.chat && !url.models) {
        size_t prefix = uri_len > 11 && memcmp (uri, "/v1/models/", 11) == 0 ? 11
                      : uri_len > 8 && memcmp (uri, "/models/", 8) == 0 ? 8 : 0;
        if (prefix && (size_t) uri_len - prefix < sizeof pss->model
        &&  !memchr (uri + prefix, '/', (size_t) uri_len - prefix)) {
            url.models = true;
            url.model_id = uri + prefix;
            url.model_id_len = (size_t) uri_len - prefix;
        }
    }
    //  GET and DELETE /v1/sessions/ID: a session of the key's own
    url.session = !url.chat && !url.models
               && ((uri_len > 13 && memcmp (uri, "/v1/sessions/", 13) == 0)
                   || (uri_len > 10 && memcmp (uri, "/sessions/", 10) == 0));
    return url;
}

//  False, and the client answered, when this address sends too many
//  requests without a key or when nothing can be recorded in the audit log
static bool
s_may_serve (pss_t *pss, const url_t *url, bool has_key)
{
    ingress_t *self = pss->ingress;
    if (!ingress_guard_admit (self->guard, lws_get_network_wsi (pss->wsi),
                              has_key ? pss->key_hash : NULL, mesh_mono_ms ())) {
        //  Not recorded either: a flood without a key must not fill the
        //  audit spool (the metric counts these)
        pss->audit_pending = false;
        mesh_metric_inc (self->metric.throttled);
        pss->retry_after_ms = 1000;
        pss->close_after = url->chat;   //  an unread body may follow
        ingress_respond_error (pss, 429, "rate_limit_error", "too_many_unauthenticated_requests", NULL,
                               "Too many requests without a valid API key from this address; "
                               "retry later.");
        return false;
    }
    if (ingress_audit_refuse (pss)) {
        //  Nothing is served that cannot be recorded: no record for this one
        pss->retry_after_ms = 1000;
        pss->should_retry = MESH_ERROR_RETRY_YES;
        pss->close_after = url->chat;   //  an unread body may follow
        ingress_respond_error (pss, 503, "server_error", "audit_unavailable", NULL,
                               "The gateway cannot record requests in its audit log right now; "
                               "retry shortly.");
        return false;
    }
    return true;
}

//  With a key, a refusal goes by a router, which names the key's tenant
//  for the audit record (s_refuse); without one it is answered here
static void
s_refuse_url (pss_t *pss, bool has_key, int status, const char *code, const char *message)
{
    if (has_key)
        s_refuse (pss, status, "invalid_request_error", code, NULL, message);
    else
        ingress_respond_error (pss, status, "invalid_request_error", code, NULL, message);
}

//  False, and the client answered, for a URL the API does not serve, a
//  model id that is not UTF-8, or the wrong method
static bool
s_url_ok (pss_t *pss, const url_t *url, const char *uri, int method, bool has_key)
{
    char message [512];
    if (!url->chat && !url->models && !url->session) {
        snprintf (message, sizeof message, "Unknown request URL: %.200s. Please check the URL for "
                  "typos; the API serves /v1/chat/completions and /v1/models.", uri);
        s_refuse_url (pss, has_key, 404, "unknown_url", message);
        return false;
    }
    if (url->model_id && !mesh_utf8_valid (url->model_id, url->model_id_len)) {
        //  The bus carries text only: a model id that is not UTF-8 could
        //  never reach the router
        ingress_respond_error (pss, 400, "invalid_request_error", "invalid_model_id", "model",
                               "The model id in the URL is not valid UTF-8.");
        return false;
    }
    if ((url->chat && method != LWSHUMETH_POST) || (url->models && method != LWSHUMETH_GET)) {
        snprintf (message, sizeof message, "Method not allowed: %.200s accepts %s only.", uri,
                  url->chat ? "POST" : "GET");
        pss->close_after = url->chat;   //  an unread body may follow
        s_refuse_url (pss, has_key, 405, "method_not_allowed", message);
        return false;
    }
    return true;
}

//  A chat completion with a key: its headers, then its body (or none)
static void
s_begin_chat (pss_t *pss)
{
    ingress_t *self = pss->ingress;
    pss->kind = MESH_KIND_CHAT;
    if (ingress_session_header (pss) < 0) {
        pss->close_after = true;        //  an unread body may follow
        return;
    }
    //  x-seekmesh-cache: ttl=SECONDS, no-store, no-cache (the router reads it)
    int control = lws_hdr_custom_length (pss->wsi, "x-seekmesh-cache:", 17);
    if (control > 0 && control < (int) sizeof pss->cache_control)
        lws_hdr_custom_copy (pss->wsi, pss->cache_control, sizeof pss->cache_control,
                             "x-seekmesh-cache:", 17);
    char length [32];
    if (lws_hdr_copy (pss->wsi, length, sizeof length, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
        pss->content_length = strtoll (length, NULL, 10);
    if (pss->content_length > self->max_body_bytes) {
        char message [512];
        snprintf (message, sizeof message, "The request body is %lld bytes; the limit is %lld bytes.",
                  (long long) pss->content_length, (long long) self->max_body_bytes);
        pss->close_after = true;
        s_refuse (pss, 413, "invalid_request_error", "request_too_large", NULL, message);
        return;
    }
    pss->state = RQ_BODY;
    //  An HTTP/1.1 request without Content-Length or Transfer-Encoding has
    //  no body (RFC 9112 6.3): lws would wait for one until the timeout
    if (pss->content_length == -1 && !pss->h2
    &&  lws_hdr_total_length (pss->wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) <= 0)
        pss->content_length = 0;
    if (pss->content_length == 0)
        s_on_body_complete (pss);
    else
    if (pss->content_length == -1 && pss->h2)
        s_timer_start (pss, &self->body_wait_timers, &pss->timeout_timer, s_on_body_wait);
    else
        s_timer_start (pss, &self->body_timers, &pss->timeout_timer, s_on_body_timeout);
}

static int
s_on_request (pss_t *pss, const char *uri, int uri_len, int method)
{
    url_t url = s_url_of (pss, uri, uri_len);
    bool has_key = s_api_key (pss) == 0;
    if (!s_may_serve (pss, &url, has_key)
    ||  !s_url_ok (pss, &url, uri, method, has_key))
        return 0;
    //  Draining: served, and the client is told to come back on a new
    //  connection (to the process that took over, or another instance)
    if (pss->ingress->draining)
        pss->close_after = true;
    if (!has_key) {
        pss->close_after = url.chat;
        ingress_respond_error (pss, 401, "invalid_request_error", "missing_api_key", NULL,
                               "You didn't provide an API key. You need to provide your API key "
                               "in an Authorization header using Bearer auth (i.e. "
                               "Authorization: Bearer YOUR_KEY).");
        return 0;
    }
    if (url.session) {
        if (ingress_session_route (pss, uri, (size_t) uri_len, method) && pss->kind)
            s_submit (pss);
        return 0;
    }
    if (url.models) {
        pss->kind = MESH_KIND_MODELS;
        snprintf (pss->model, sizeof pss->model, "%.*s", (int) url.model_id_len,
                  url.model_id ? url.model_id : "");
        s_submit (pss);
        return 0;
    }
    s_begin_chat (pss);
    return 0;
}

static int
s_on_body (pss_t *pss, const char *data, size_t len)
{
    if (pss->state != RQ_BODY)
        return 0;                       //  refused already: discard
    if (len && pss->h2 && pss->content_length == -1 && mesh_buf_size (&pss->body) == 0) {
        //  The body has begun (s_on_body_wait): body_timeout_ms from here
        s_timer_start (pss, &pss->ingress->body_timers, &pss->timeout_timer, s_on_body_timeout);
    }
    if ((int64_t) (mesh_buf_size (&pss->body) + len) > pss->ingress->max_body_bytes) {
        char message [256];
        snprintf (message, sizeof message, "The request body is larger than the limit of %lld bytes.",
                  (long long) pss->ingress->max_body_bytes);
        pss->close_after = true;
        s_refuse (pss, 413, "invalid_request_error", "request_too_large", NULL, message);
        return 0;
    }
    mesh_buf_append (&pss->body, data, len);
    return 0;
}

static void
s_on_closed (pss_t *pss)
{
    if (!pss->ingress) {
        mesh_buf_free (&pss->out);
        mesh_buf_free (&pss->body);
        return;
    }
    if (pss->state == RQ_MESH || (pss->state == RQ_RESPONDING && pss->slot)) {
        mesh_metric_inc (pss->ingress->metric.client_gone);
        ingress_mesh_cancel (pss, "client_gone");
    }
    ingress_session_end (pss, true);
    ingress_audit_end (pss, true);
    ingress_filter_release (pss);
    mesh_buf_free (&pss->response);
    ingress_mesh_release (pss);
    ingress_timer_stop (&pss->keepalive_timer);
    ingress_timer_stop (&pss->timeout_timer);
    mesh_buf_free (&pss->out);
    mesh_buf_free (&pss->body);
    pss->state = RQ_IDLE;
    pss->wsi = NULL;
}

//  A client connection was accepted: it stays if the caps allow
static int
s_on_connection (struct lws *wsi)
{
    ingress_t *self = lws_context_user (lws_get_context (wsi));
    char address [64] = "";
    lws_get_peer_simple (wsi, address, sizeof address);
    int verdict = ingress_guard_connect (self->guard, wsi, address);
    mesh_metric_set (self->metric.connections, (double) ingress_guard_connections (self->guard));
    if (verdict == INGRESS_GUARD_OK)
        return 0;
    mesh_metric_inc (verdict == INGRESS_GUARD_FULL ? self->metric.refused_full : self->metric.refused_address);
    int64_t now = mesh_mono_ms ();
    if (now - self->refusal_logged_ms >= 1000) {
        self->refusal_logged_ms = now;
        mesh_warn ("refusing client connections: %s (%zu open)",
                   verdict == INGRESS_GUARD_FULL ? "ingress.max_connections reached"
                   : "ingress.max_connections_per_address reached by one address",
                   ingress_guard_connections (self->guard));
    }
    return -1;
}

static int
s_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    pss_t *pss = user;
    switch (reason) {
        case LWS_CALLBACK_HTTP: {
            s_begin (pss, wsi);
            char *uri = NULL;
            int uri_len = 0;
            int method = lws_http_get_uri_and_method (wsi, &uri, &uri_len);
            if (method < 0 || !uri) {
                uri = (char *) in;
                uri_len = in ? (int) strlen (in) : 0;
            }
            return s_on_request (pss, uri, uri_len, method);
        }
        case LWS_CALLBACK_HTTP_BODY:
            return s_on_body (pss, in, len);
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
            if (pss->state == RQ_BODY)
                s_on_body_complete (pss);
            return 0;
        case LWS_CALLBACK_HTTP_WRITEABLE:
            return s_on_writeable (pss);
        case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
            return s_on_connection (wsi);
        case LWS_CALLBACK_WSI_DESTROY: {
            ingress_t *self = lws_context_user (lws_get_context (wsi));
            if (self->guard)
                ingress_guard_disconnect (self->guard, wsi);
            mesh_metric_set (self->metric.connections, (double) ingress_guard_connections (self->guard));
            return 0;
        }
        case LWS_CALLBACK_CLOSED_HTTP:
        case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
            //  The connection closed, or lws is about to free pss between
            //  keep-alive transactions: nothing of ours may outlive it
            if (pss)
                s_on_closed (pss);
            return reason == LWS_CALLBACK_HTTP_DROP_PROTOCOL
                 ? lws_callback_http_dummy (wsi, reason, user, in, len) : 0;
        default:
            return lws_callback_http_dummy (wsi, reason, user, in, len);
    }
}

const struct lws_protocols ingress_http_protocol = {
    "http", s_callback, sizeof (pss_t), 0, 0, NULL, 0
};

void
ingress_http_metrics (ingress_t *self)
{
    const char *name = "seekmesh_ingress_responses_total";
    const char *help = "Responses sent to clients, by status class.";
    static const char *classes [] = { "code=\"1xx\"", "code=\"1xx\"", "code=\"2xx\"",
                                      "code=\"3xx\"", "code=\"4xx\"", "code=\"5xx\"" };
    for (int i = 1; i <= 5; i++)
        self->metric.by_class [i] = mesh_metrics_counter (self->metrics, name, help, classes [i]);
    self->metric.by_class [0] = self->metric.by_class [5];
    self->metric.active = mesh_metrics_gauge (self->metrics, "seekmesh_ingress_active_requests",
        "Requests in the mesh or being answered.", NULL);
    self->metric.seconds = mesh_metrics_histogram (self->metrics, "seekmesh_ingress_request_seconds",
        "Time from a request's headers to its last response byte.", NULL);
    //  Where a request's time goes in the ingress, for the benchmark's
    //  budget: read (its head to REQUEST sent: the body, validation, the
    //  key's hash), mesh (REQUEST sent to the first answer: router,
    //  connector, upstream and three ZeroMQ hops), write (that answer to the
    //  last byte written)
    static const char *stages [3] = { "stage=\"read\"", "stage=\"mesh\"", "stage=\"write\"" };
    for (int i = 0; i < 3; i++)
        self->metric.stage [i] = mesh_metrics_histogram (self->metrics, "seekmesh_ingress_stage_seconds",
            "Time requests spend in each stage of the ingress (read, mesh, write).", stages [i]);
    self->metric.ttfb = mesh_metrics_histogram (self->metrics, "seekmesh_ingress_ttfb_seconds",
        "Time from a request's headers to its response headers.", NULL);
    self->metric.client_gone = mesh_metrics_counter (self->metrics, "seekmesh_ingress_client_gone_total",
        "Clients that went away before their response ended.", NULL);
    self->metric.retries = mesh_metrics_counter (self->metrics, "seekmesh_ingress_retries_total",
        "Requests sent again after their connector was lost before answering.", NULL);
    self->metric.connections = mesh_metrics_gauge (self->metrics, "seekmesh_ingress_connections",
        "Client connections open.", NULL);
    const char *refused = "seekmesh_ingress_connections_refused_total";
    const char *refused_help = "Client connections closed at once, over a cap.";
    self->metric.refused_full = mesh_metrics_counter (self->metrics, refused, refused_help, "cap=\"global\"");
    self->metric.refused_address = mesh_metrics_counter (self->metrics, refused, refused_help, "cap=\"address\"");
    self->metric.throttled = mesh_metrics_counter (self->metrics, "seekmesh_ingress_unauthenticated_throttled_total",
        "Requests refused (429, not recorded) because their address sent too many without a valid key.", NULL);
    self->metric.body_timeouts = mesh_metrics_counter (self->metrics, "seekmesh_ingress_body_timeouts_total",
        "Requests whose body did not arrive within ingress.body_timeout_ms (408).", NULL);
    self->metric.resent = mesh_metrics_counter (self->metrics, "seekmesh_ingress_router_lost_resent_total",
        "Requests sent again to another router after the one holding them was lost.", NULL);
    mesh_dispatch_counters (&self->bad_messages, self->metrics, "ingress");
}
