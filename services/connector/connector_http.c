/*  connector_http: one HTTP/1.1 exchange on a pooled upstream connection.

    Writes the request (the upstream's path and host, its credential, the
    body), reads the response head, then the body by Content-Length,
    chunked coding or until close.  A 200 text/event-stream body goes to
    the stream module as it arrives; any other body is collected and
    handed over whole.  After the stream's [DONE] the request ends at once
    and the connection reads the rest of the body in the background, so
    the client is not kept waiting for the upstream's last bytes and the
    connection can still be reused.  Reactor thread only.                  */
#include "connector.h"
#include "connector_testing.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HEAD_BYTES (64 * 1024)
#define MAX_ERROR_BODY (64 * 1024)
#define DRAIN_MS 5000

static void
s_send_request (connector_conn_t *conn, connector_req_t *req)
{
    const mesh_url_t *url = &req->endpoint->url;
    //  Written straight into the connection's buffer, however long the
    //  credential: nothing is cut, nothing else is sent
    mesh_buf_printf (&conn->out,
                     "POST %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "%s"
                     "Content-Type: application/json\r\n"
                     "Accept: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "User-Agent: seekmesh\r\n"
                     "\r\n",
                     url->path, url->host_header, req->auth_line,
                     req->upstream_stream ? "text/event-stream" : "application/json",
                     mesh_buf_size (&req->body));
    connector_conn_write (conn, mesh_buf_head (&req->body), mesh_buf_size (&req->body));
    conn->phase = HP_HEAD;
    conn->status = 0;
    conn->keep_alive = true;
    conn->answered_early = false;
    conn->event_stream = false;
    conn->retry_after_s = 0;
    conn->remaining = 0;
}

//  The body is complete: hand the connection back, then end the request.
static void
s_body_done (connector_conn_t *conn)
{
    connector_req_t *req = conn->req;
    //  Reusable only when both directions are clean: the answer read to its
    //  end and kept alive, and the request taken whole.  An upstream that
    //  answers before reading all of it leaves the rest in the way; after
    //  an error answer nothing says it read it all, so that connection goes
    bool reusable = conn->keep_alive && conn->phase != HP_UNTIL_CLOSE && !conn->answered_early
                 && mesh_buf_size (&conn->out) == 0 && conn->status < 400;
    conn->phase = HP_DONE;
    if (!req) {
        connector_pool_release (conn, reusable);  //  drained after the stream ended
        return;
    }
    int status = conn->status;
    bool event_stream = conn->event_stream;
    int retry_after_s = conn->retry_after_s;
    connector_pool_release (conn, reusable);
    if (status == 200 && event_stream)
        connector_request_finish (req, NULL, 0);        //  ended without [DONE]
    else
    if (status == 200)
        connector_stream_complete_body (req, mesh_buf_head (&req->response), mesh_buf_size (&req->response));
    else
        connector_stream_upstream_error (req, status, retry_after_s, mesh_buf_head (&req->response),
                               mesh_buf_size (&req->response));
}

static int
s_drain_timeout (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    connector_conn_t *conn = arg;
    if (!conn->req && conn->state == UC_BUSY)
        connector_pool_close (conn);
    return 0;
}

//  Body bytes of the current response.  Returns -1 when the request ended
//  and conn must not be read further.
static int
s_body (connector_conn_t *conn, const char *data, size_t len)
{
    connector_req_t *req = conn->req;
    if (!req || len == 0)
        return 0;               //  draining, or nothing
    if (conn->status == 200 && conn->event_stream) {
        int rc = connector_stream_feed (req, data, len);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            //  [DONE]: answer the client now, drain the body afterwards
            conn->req = NULL;
            req->conn = NULL;
            connector_request_finish (req, NULL, 0);
            mesh_loop_timer_start (connector_conn_loop (conn), &conn->timer, DRAIN_MS,
                                   s_drain_timeout, conn);
        }
        return 0;
    }
    size_t limit = conn->status == 200 ? MESH_MAX_BODY_BYTES : MAX_ERROR_BODY;
    if (mesh_buf_size (&req->response) + len > limit) {
        if (conn->status != 200)
            return 0;           //  enough of an error body to explain it
        connector_request_fail (req, 502, "upstream_error", "upstream_response_too_large", 0,
                                "upstream_error", "The upstream response is larger than %u bytes.",
                                MESH_MAX_BODY_BYTES);
        return -1;
    }
    mesh_buf_append (&req->response, data, len);
    return 0;
}

static void
s_head (connector_conn_t *conn, const mesh_http_head_t *head)
{
    conn->answered_early = mesh_buf_size (&conn->out) > 0;
    conn->status = head->status;
    conn->keep_alive = head->keep_alive;
    size_t len;
    const char *type = mesh_http_header (head, "content-type", &len);
    conn->event_stream = type && len >= 17 && strncasecmp (type, "text/event-stream", 17) == 0;
    const char *retry = mesh_http_header (head, "retry-after", &len);
    conn->retry_after_s = retry ? atoi (retry) : 0;
    if (head->chunked) {
        conn->phase = HP_CHUNKED;
        mesh_http_chunked_init (&conn->chunked);
    }
    else
    if (head->content_length >= 0) {
        conn->phase = HP_LENGTH;
        conn->remaining = head->content_length;
    }
    else {
        conn->phase = HP_UNTIL_CLOSE;
        conn->keep_alive = false;
    }
}

static void
s_on_input (connector_conn_t *conn)
{
    if (conn->req)
        connector_request_progress (conn->req);
    while (!conn->dead) {
        size_t size = mesh_buf_size (&conn->in);
        char *data = mesh_buf_head (&conn->in);
        if (conn->phase == HP_HEAD) {
            connector_req_t *req = conn->req;
            if (!req) {
                connector_pool_close (conn);      //  bytes nobody asked for
                return;
            }
            mesh_http_head_t head;
            int n = mesh_http_parse_response (data, size, MAX_HEAD_BYTES, &head);
            if (n == 0)
                return;
            if (n < 0) {
                connector_request_fail (req, 502, "upstream_error", "upstream_protocol", 0,
                                        "upstream_error", "The upstream sent a malformed response.");
                return;
            }
            if (head.status < 200) {
                mesh_buf_consume (&conn->in, (size_t) n);       //  100 Continue
                continue;
            }
            s_head (conn, &head);
            mesh_buf_consume (&conn->in, (size_t) n);
            if (conn->status == 200 && conn->event_stream) {
                connector_stream_begin (req);
                if (req->client_stream && connector_send_head (req, 200) < 0)
                    return;
            }
            if (conn->phase == HP_LENGTH && conn->remaining == 0) {
                s_body_done (conn);
                return;
            }
            continue;
        }
        if (size == 0 || conn->phase == HP_DONE)
            return;
        if (conn->phase == HP_LENGTH) {
            size_t take = (size_t) MESH_MIN ((int64_t) size, conn->remaining);
            int rc = s_body (conn, data, take);
            if (conn->dead)
                return;
            mesh_buf_consume (&conn->in, take);
            conn->remaining -= (int64_t) take;
            if (rc < 0)
                return;
            if (conn->remaining == 0) {
                s_body_done (conn);
                return;
            }
            continue;
        }
        if (conn->phase == HP_CHUNKED) {
            size_t used;
            int64_t payload = mesh_http_chunked_decode (&conn->chunked, data, size, &used);
            if (payload < 0) {
                if (conn->req)
                    connector_request_fail (conn->req, 502, "upstream_error", "upstream_protocol", 0,
                                            "upstream_error", "The upstream sent a malformed chunked body.");
                else
                    connector_pool_close (conn);
                return;
            }
            int rc = s_body (conn, data, (size_t) payload);
            if (conn->dead)
                return;
            mesh_buf_consume (&conn->in, used);
            if (rc < 0)
                return;
            if (conn->chunked.done) {
                s_body_done (conn);
                return;
            }
            if (used == 0)
                return;
            continue;
        }
        //  HP_UNTIL_CLOSE: everything is body until the server closes
        int rc = s_body (conn, data, size);
        if (conn->dead)
            return;
        mesh_buf_consume (&conn->in, size);
        if (rc < 0)
            return;
        return;
    }
}

//  A close may end a body (read until close), or allow one retry (a
//  kept-alive connection the server had closed before we wrote)
static void
s_on_eof (connector_conn_t *conn, const char *why)
{
    (void) why;
    connector_req_t *req = conn->req;
    if (!req) {
        connector_pool_close (conn);
        return;
    }
    if (conn->phase == HP_UNTIL_CLOSE) {
        s_body_done (conn);             //  the close ends the body
        return;
    }
    if (conn->phase == HP_HEAD && !conn->response_started && conn->reused && !req->stale_retried) {
        //  A kept-alive connection the server had already closed
        mesh_debug ("stale keep-alive connection, sending again req=%s", req->id);
        connector_pool_close (conn);
        connector_request_retry (req);
        return;
    }
    if (conn->phase == HP_HEAD)
        connector_request_fail (req, 502, "upstream_error", "upstream_disconnected", 0,
                                "upstream_error", "The upstream closed the connection before answering.");
    else
        connector_request_fail (req, 502, "upstream_error", "upstream_disconnected", 0,
                                "upstream_error", "The upstream connection was lost mid-response.");
}

const connector_protocol_t connector_http_protocol = {
    .name = "http/1.1",
    .warm = false,
    .setup_start = NULL,
    .setup_input = NULL,
    .send_request = s_send_request,
    .on_input = s_on_input,
    .on_eof = s_on_eof,
    .keepalive = NULL,
};

//  Selftest -------------------------------------------------------------------
//
//  A whole connector (connector_testing.h) against an upstream on loopback
//  that answers each request on a connection with the current scenario.

typedef struct {
    const char *name;
    const char *answer [8];         //  written in turn, a few ms apart
    bool close;                     //  close the connection afterwards
    bool early;                     //  answer after the head, without reading the body
} http_scenario_t;

static const http_scenario_t *s_scenario;

//  Answers as soon as the head is in, then reads (and drops) whatever
//  comes until the connector closes the connection
static void
s_test_serve_early (int fd, const http_scenario_t *scenario)
{
    char buf [65536];
    size_t len = 0;
    while (!memmem (buf, len, "\r\n\r\n", 4) && len < sizeof buf) {
        ssize_t n = read (fd, buf + len, sizeof buf - len);
        if (n <= 0)
            return;
        len += (size_t) n;
    }
    connector_testing_write (fd, scenario->answer [0], 0);
    while (read (fd, buf, sizeof buf) > 0)
        ;
}

static void
s_test_serve (int fd, void *arg)
{
    (void) arg;
    char request [8192];
    if (s_scenario->early) {
        s_test_serve_early (fd, s_scenario);
        return;
    }
    while (connector_testing_read_request (fd, request, sizeof request)) {
        assert (strstr (request, "POST /v1/chat/completions HTTP/1.1\r\n"));
        assert (strstr (request, "Host: 127.0.0.1:"));
        //  The test may move on while the last parts are written
        const http_scenario_t *scenario = s_scenario;
        for (size_t i = 0; i < MESH_ARRAY_SIZE (scenario->answer) && scenario->answer [i]; i++)
            connector_testing_write (fd, scenario->answer [i], 3);
        if (scenario->close)
            return;
    }
}

static const http_scenario_t s_json = { "content-length", {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 79\r\n\r\n",
    "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[],\"usage\":{\"prompt_tokens\":11}}"
}, false, false };
static const http_scenario_t s_chunked_sse = { "chunked SSE cut anywhere", {
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    "15\r\ndata: {\"choices\":[{\"i\r\n",
    "31\r\nndex\":0,\"delta\":{\"content\":\"hi\"}}]}\r\n\r\n: ping\r\n\r\n\r\n",
    "44\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\r\n\r\ndata: [DONE]\r\n\r\n\r\n",
    "0\r\n\r\n"
}, false, false };
static const http_scenario_t s_continue = { "100 Continue first", {
    "HTTP/1.1 100 Continue\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
}, false, false };
static const http_scenario_t s_busy = { "503 with Retry-After", {
    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Type: application/json\r\n"
    "Content-Length: 46\r\n\r\n{\"error\":{\"message\":\"busy\",\"type\":\"overload\"}}"
}, false, false };
static const http_scenario_t s_until_close = { "a body until close", {
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"id\":",
    "\"y\"}"
}, true, false };
static const http_scenario_t s_malformed = { "a malformed head", {
    "HTTP/9 two hundred\r\n\r\n"
}, true, false };
static const http_scenario_t s_early = { "an answer before the body was read", {
    "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
}, false, true };
static const http_scenario_t s_cut = { "closed mid-stream", {
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    "2e\r\ndata: {\"choices\":[{\"index\":0,\"delta\":{}}]}\r\n\r\n\r\n"
}, true, false };

void
connector_http_test (bool verbose)
{
    (void) verbose;
    connector_harness_t *h = connector_harness_new ("http", s_test_serve, NULL);
    const char *body = "{\"model\":\"m\",\"messages\":[]}";

    //  A whole JSON body, twice on one kept-alive connection
    s_scenario = &s_json;
    for (int i = 0; i < 2; i++) {
        assert (connector_harness_request (h, false, body, 3000));
        assert (h->last == MESH_MSG_END && h->prompt_tokens == 11);
        assert (strstr (mesh_buf_head (&h->data), "\"object\":\"chat.completion\""));
        assert (mesh_streq (h->done_outcome, "ok"));
    }
    assert (h->accepted == 1);

    //  A chunked stream whose events are cut across chunks; a comment is
    //  passed on as one, not as data; [DONE] ends it.  The usage-only
    //  chunk the connector asked for is kept from a client that did not
    //  ask (its usage still counts) ...
    s_scenario = &s_chunked_sse;
    assert (connector_harness_request (h, true, body, 3000));
    assert (h->last == MESH_MSG_END && h->heads == 1);
    assert (mesh_memeq (mesh_buf_head (&h->chunks), mesh_buf_size (&h->chunks),
                        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n"));
    assert (h->prompt_tokens == 3);
    //  ... and passed to one that did
    assert (connector_harness_request (h, true, "{\"model\":\"m\",\"messages\":[],"
                                       "\"stream_options\":{\"include_usage\":true}}", 3000));
    assert (mesh_memeq (mesh_buf_head (&h->chunks), mesh_buf_size (&h->chunks),
                        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n"
                        "{\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n"));
    assert (h->prompt_tokens == 3);

    s_scenario = &s_continue;
    assert (connector_harness_request (h, false, body, 3000));
    assert (h->last == MESH_MSG_END && mesh_streq (mesh_buf_head (&h->data), "{}"));

    //  Before a byte reached the client a failure goes to the router
    s_scenario = &s_busy;
    assert (connector_harness_request (h, false, body, 3000));
    assert (h->last == MESH_MSG_FAIL && h->status == 503 && h->retry_after_ms == 7000);
    assert (mesh_streq (h->err_code, "upstream_overloaded"));

    s_scenario = &s_until_close;
    assert (connector_harness_request (h, false, body, 3000));
    assert (h->last == MESH_MSG_END && mesh_streq (mesh_buf_head (&h->data), "{\"id\":\"y\"}"));

    s_scenario = &s_malformed;
    assert (connector_harness_request (h, false, body, 3000));
    assert (h->last == MESH_MSG_FAIL && mesh_streq (h->err_code, "upstream_protocol"));

    //  An answer while most of 32 MiB of body are still going out (more than
    //  loopback's socket buffers hold): the connection is not clean in both
    //  directions, so it is closed, not reused; the next request opens its own
    s_scenario = &s_early;
    size_t big_len = 32u << 20;
    char *big = malloc (big_len + 1);
    memset (big, ' ', big_len);
    memcpy (big, body, strlen (body));
    big [big_len] = 0;
    int accepted = h->accepted;
    assert (connector_harness_request (h, false, big, 5000));
    assert (h->last == MESH_MSG_FAIL && h->status == 413);
    free (big);
    s_scenario = &s_json;
    assert (connector_harness_request (h, false, body, 3000));
    assert (h->last == MESH_MSG_END && h->accepted == accepted + 2);

    //  After the first event: an error to the client, DONE to the router
    s_scenario = &s_cut;
    assert (connector_harness_request (h, true, body, 3000));
    assert (h->last == MESH_MSG_ERROR && h->heads == 1 && h->done);
    assert (mesh_streq (h->err_code, "upstream_disconnected"));
    connector_harness_destroy (&h);
}
