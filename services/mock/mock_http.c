/*  mock_http: the mock's HTTP/1.1 side: request framing, routing, auth.

    Reads one request at a time from the connection's input (heads up to
    16 KiB, bodies by Content-Length or chunked up to 16 MiB, pipelining and
    keep-alive), checks the bearer key when one is configured, and routes:

        method  path                                 handler
        POST    /chat/completions, /v1/...           s_on_chat (mock_stream)
        GET     /chat/completions, /v1/...           s_on_upgrade (mock_ws)
        GET     /models, /v1/models                  s_on_models
        GET     /user/balance                        s_on_balance

    Any other path is 404, another method 405; every error has DeepSeek's
    JSON envelope.  Runs on the connection's worker thread.                 */
#include "mock.h"
#include "mock_render.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

typedef void (route_fn) (mock_conn_t *conn, const mesh_http_head_t *head,
                         const char *body, size_t body_len);

static route_fn s_on_chat, s_on_upgrade, s_on_models, s_on_balance;

typedef struct {
    const char *method;
    const char *path;
    route_fn *fn;
} route_t;

static const route_t s_routes [] = {
    { "POST", "/chat/completions",    s_on_chat },
    { "POST", "/v1/chat/completions", s_on_chat },
    { "GET",  "/chat/completions",    s_on_upgrade },
    { "GET",  "/v1/chat/completions", s_on_upgrade },
    { "GET",  "/models",              s_on_models },
    { "GET",  "/v1/models",           s_on_models },
    { "GET",  "/user/balance",        s_on_balance },
};

static const char *
s_reason (int status)
{
    return status == 426 ? "Upgrade Required" : mesh_http_reason (status);
}

void
mock_http_head (mock_conn_t *conn, int status, const char *content_type,
                int64_t content_length, int64_t retry_after)
{
    mesh_buf_t *out = &conn->out;
    mesh_buf_append_str (out, "HTTP/1.1 ");
    mock_render_int (out, status);
    mesh_buf_append_str (out, " ");
    mesh_buf_append_str (out, s_reason (status));
    mesh_buf_append_str (out, "\r\nContent-Type: ");
    mesh_buf_append_str (out, content_type);
    if (content_length >= 0) {
        mesh_buf_append_str (out, "\r\nContent-Length: ");
        mock_render_int (out, content_length);
    }
    else {
        mesh_buf_append_str (out, "\r\nCache-Control: no-cache");
        if (conn->chunked_out)
            mesh_buf_append_str (out, "\r\nTransfer-Encoding: chunked");
    }
    if (retry_after >= 0) {
        mesh_buf_append_str (out, "\r\nRetry-After: ");
        mock_render_int (out, retry_after);
    }
    if (conn->http_close)
        mesh_buf_append_str (out, "\r\nConnection: close");
    mesh_buf_append_str (out, "\r\n\r\n");
}

//  A whole JSON response from the worker's scratch buffer.
static void
s_respond_scratch (mock_conn_t *conn, int status, int64_t retry_after)
{
    mesh_buf_t *scratch = &conn->worker->scratch;
    mock_http_head (conn, status, "application/json", (int64_t) mesh_buf_size (scratch),
                    retry_after);
    mesh_buf_append (&conn->out, mesh_buf_head (scratch), mesh_buf_size (scratch));
    mesh_buf_reset (scratch);
    if (conn->http_close)
        conn->close_after = true;
}

void
mock_http_error (mock_conn_t *conn, int status, const char *message, int64_t retry_after)
{
    mock_render_error (&conn->worker->scratch, status, message, false);
    s_respond_scratch (conn, status, retry_after);
}

//  An error that ends the connection: the framing cannot be trusted.
static int
s_fail (mock_conn_t *conn, int status, const char *message)
{
    conn->http_close = true;
    mock_http_error (conn, status, message, -1);
    conn->close_after = true;
    return 0;
}

//  Routes -------------------------------------------------------------------

static void
s_on_chat (mock_conn_t *conn, const mesh_http_head_t *head, const char *body, size_t body_len)
{
    (void) head;
    mock_stream_start (conn, body, body_len);
}

static void
s_on_upgrade (mock_conn_t *conn, const mesh_http_head_t *head, const char *body, size_t body_len)
{
    (void) body; (void) body_len;
    mock_ws_upgrade (conn, head);
}

static void
s_on_models (mock_conn_t *conn, const mesh_http_head_t *head, const char *body, size_t body_len)
{
    (void) head; (void) body; (void) body_len;
    mock_render_models (&conn->worker->scratch);
    s_respond_scratch (conn, 200, -1);
}

static void
s_on_balance (mock_conn_t *conn, const mesh_http_head_t *head, const char *body, size_t body_len)
{
    (void) head; (void) body; (void) body_len;
    mock_render_balance (&conn->worker->scratch);
    s_respond_scratch (conn, 200, -1);
}

static bool
s_authorized (mock_conn_t *conn, const mesh_http_head_t *head)
{
    const char *key = conn->worker->settings->api_key;
    if (!key)
        return true;
    size_t len;
    const char *value = mesh_http_header (head, "authorization", &len);
    if (!value || len < 7 || strncasecmp (value, "Bearer ", 7) != 0)
        return false;
    value += 7;
    len -= 7;
    while (len > 0 && *value == ' ') {
        value++;
        len--;
    }
    return len == strlen (key) && CRYPTO_memcmp (value, key, len) == 0;
}

static void
s_serve (mock_conn_t *conn, const mesh_http_head_t *head, const char *body, size_t body_len)
{
    size_t path_len = head->target_len;
    const char *query = memchr (head->target, '?', head->target_len);
    if (query)
        path_len = (size_t) (query - head->target);
    if (!s_authorized (conn, head)) {
        mesh_metric_inc (conn->worker->settings->metrics.auth_failures);
        mesh_debug ("fd=%d: authentication failed", conn->io.fd);
        mock_http_error (conn, 401, NULL, -1);
        return;
    }
    bool path_known = false;
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_routes); i++) {
        if (!mesh_memeq (head->target, path_len, s_routes [i].path))
            continue;
        path_known = true;
        if (mesh_memeq (head->method, head->method_len, s_routes [i].method)) {
            s_routes [i].fn (conn, head, body, body_len);
            return;
        }
    }
    if (path_known)
        mock_http_error (conn, 405, NULL, -1);
    else
        mock_http_error (conn, 404, NULL, -1);
}

//  curl waits a second for this before sending a large body.
static void
s_continue (mock_conn_t *conn, const mesh_http_head_t *head)
{
    size_t len;
    const char *expect = mesh_http_header (head, "expect", &len);
    if (expect && mesh_memcaseeq (expect, len, "100-continue") && !conn->continue_sent) {
        mesh_buf_append_str (&conn->out, "HTTP/1.1 100 Continue\r\n\r\n");
        conn->continue_sent = true;
    }
}

int
mock_http_next (mock_conn_t *conn)
{
    if (conn->dead || conn->close_after || conn->websocket)
        return 0;
    char *data = mesh_buf_head (&conn->in);
    size_t size = mesh_buf_size (&conn->in);
    if (size == 0)
        return 0;
    mesh_http_head_t head;
    int head_len = mesh_http_parse_request (data, size, MOCK_MAX_HEAD_BYTES, &head);
    if (head_len == 0)
        return 0;
    if (head_len < 0) {
        if (size >= MOCK_MAX_HEAD_BYTES && !memmem (data, MOCK_MAX_HEAD_BYTES, "\r\n\r\n", 4))
            return s_fail (conn, 431, "Request header fields too large");
        return s_fail (conn, 400, "Malformed HTTP request");
    }
    conn->http_close = !head.keep_alive || head.minor_version == 0;
    conn->chunked_out = head.minor_version >= 1;
    if (head.content_length > MOCK_MAX_BODY_BYTES)
        return s_fail (conn, 413, NULL);

    size_t body_len;
    if (head.chunked) {
        //  Decode in place: `in` holds head, decoded body, undecoded bytes
        if (!conn->body_started) {
            mesh_http_chunked_init (&conn->chunked);
            conn->body_started = true;
            conn->body_len = 0;
        }
        char *raw = data + head_len + conn->body_len;
        size_t raw_len = size - (size_t) head_len - conn->body_len;
        size_t used;
        int64_t n = mesh_http_chunked_decode (&conn->chunked, raw, raw_len, &used);
        if (n < 0)
            return s_fail (conn, 400, "Malformed chunked body");
        memmove (raw + n, raw + used, raw_len - used);
        conn->in.len -= used - (size_t) n;
        conn->body_len += (size_t) n;
        if (conn->body_len > MOCK_MAX_BODY_BYTES)
            return s_fail (conn, 413, NULL);
        if (!conn->chunked.done) {
            s_continue (conn, &head);
            return 0;
        }
        body_len = conn->body_len;
    }
    else {
        body_len = head.content_length > 0 ? (size_t) head.content_length : 0;
        if (size - (size_t) head_len < body_len) {
            s_continue (conn, &head);
            return 0;
        }
    }
    s_serve (conn, &head, data + head_len, body_len);
    mesh_buf_consume (&conn->in, (size_t) head_len + body_len);
    conn->body_started = false;
    conn->body_len = 0;
    conn->continue_sent = false;
    if (conn->websocket)
        mock_ws_on_input (conn);            //  frames sent right behind the upgrade
    return 1;
}
