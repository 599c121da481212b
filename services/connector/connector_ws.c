/*  connector_ws: requests over a pooled WebSocket to an upstream that
    streams SSE bytes in frames.

    The upstream protocol (DESIGN.md): after the upgrade, the client sends
    one request body as a text message; the server answers with the bytes
    of an SSE stream, in frames of at most chunk_size bytes cut anywhere,
    ending with the `data: [DONE]` event.  One request at a time per
    connection.  Frame payloads go straight into the request's SSE parser,
    which puts events cut across frames back together.  Errors come as an
    event {"error": {...}, "status": N}.  Reactor thread only.             */
#include "connector.h"
#include "connector_testing.h"
#include "mesh_id.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <assert.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HEAD_BYTES (16 * 1024)
#define MAX_MESSAGE_BYTES (64u * 1024 * 1024)

static void
s_send_upgrade (connector_conn_t *conn)
{
    const mesh_url_t *url = connector_pool_url (conn->pool);
    unsigned char nonce [16];
    mesh_random (nonce, sizeof nonce);
    char key [32];
    EVP_EncodeBlock ((unsigned char *) key, nonce, sizeof nonce);
    mesh_ws_accept_key (key, strlen (key), conn->ws_accept);
    mesh_buf_printf (&conn->out,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s"
                     "User-Agent: seekmesh\r\n"
                     "\r\n",
                     url->path, url->host_header, key, connector_pool_auth_line (conn->pool));
}

static int
s_on_upgrade_input (connector_conn_t *conn, char *why, size_t why_size)
{
    mesh_http_head_t head;
    int n = mesh_http_parse_response (mesh_buf_head (&conn->in), mesh_buf_size (&conn->in),
                                      MAX_HEAD_BYTES, &head);
    if (n == 0)
        return 0;
    if (n < 0) {
        snprintf (why, why_size, "malformed WebSocket upgrade response");
        return -1;
    }
    if (head.status != 101) {
        snprintf (why, why_size, "WebSocket upgrade refused with status %d", head.status);
        return -1;
    }
    size_t len;
    const char *upgrade = mesh_http_header (&head, "upgrade", &len);
    if (!upgrade || !mesh_memcaseeq (upgrade, len, "websocket")) {
        snprintf (why, why_size, "WebSocket upgrade answered without Upgrade: websocket");
        return -1;
    }
    const char *accept = mesh_http_header (&head, "sec-websocket-accept", &len);
    if (!accept || !mesh_memeq (accept, len, conn->ws_accept)) {
        snprintf (why, why_size, "WebSocket upgrade answered with a wrong Sec-WebSocket-Accept");
        return -1;
    }
    mesh_buf_consume (&conn->in, (size_t) n);
    mesh_ws_reader_init (&conn->ws, false, MAX_MESSAGE_BYTES);
    conn->ping_outstanding = false;
    return 1;
}

//  Queues one frame, masked as a client must.
static void
s_frame (connector_conn_t *conn, int opcode, const void *data, size_t len)
{
    uint8_t mask [4];
    mesh_random (mask, sizeof mask);
    uint8_t header [MESH_WS_MAX_HEADER];
    size_t header_len = mesh_ws_header (header, opcode, true, mask, len);
    connector_conn_write (conn, header, header_len);
    if (len == 0)
        return;
    char *at = mesh_buf_reserve (&conn->out, len);
    memcpy (at, data, len);
    mesh_ws_mask ((uint8_t *) at, len, mask, 0);
    mesh_buf_commit (&conn->out, len);
}

static void
s_send_request (connector_conn_t *conn, connector_req_t *req)
{
    s_frame (conn, MESH_WS_TEXT, mesh_buf_head (&req->body), mesh_buf_size (&req->body));
    connector_stream_begin (req);
}

//  A ping each interval; the last one must have had its pong
static int
s_keepalive (connector_conn_t *conn)
{
    if (conn->ping_outstanding)
        return -1;
    s_frame (conn, MESH_WS_PING, "seekmesh", 8);
    conn->ping_outstanding = true;
    return 0;
}

static int
s_on_frame (void *arg, int event, uint8_t *data, size_t len)
{
    connector_conn_t *conn = arg;
    connector_req_t *req = conn->req;
    switch (event) {
        case MESH_WS_EV_DATA: {
            if (!req)
                return 0;       //  nothing asked: drop it
            int rc = connector_stream_feed (req, (const char *) data, len);
            if (rc < 0)
                return -1;      //  the request ended; the connection is closed
            if (rc == 1) {
                connector_pool_release (conn, true);
                connector_request_finish (req, NULL, 0);
            }
            return 0;
        }
        case MESH_WS_EV_PING:
            s_frame (conn, MESH_WS_PONG, data, len);
            return 0;
        case MESH_WS_EV_PONG:
            conn->ping_outstanding = false;
            return 0;
        case MESH_WS_EV_CLOSE:
            if (req)
                connector_request_fail (req, 502, "upstream_error", "upstream_disconnected", 0,
                                        "upstream_error", "The upstream closed the WebSocket mid-stream.");
            else
                connector_pool_close (conn);
            return -1;
        default:
            return 0;
    }
}

static void
s_on_input (connector_conn_t *conn)
{
    if (conn->req)
        connector_request_progress (conn->req);
    int64_t used = mesh_ws_read (&conn->ws, (uint8_t *) mesh_buf_head (&conn->in),
                                 mesh_buf_size (&conn->in), s_on_frame, conn);
    if (conn->dead)
        return;
    if (used < 0) {
        if (conn->req)
            connector_request_fail (conn->req, 502, "upstream_error", "upstream_protocol", 0,
                                    "upstream_error", "The upstream broke the WebSocket protocol.");
        else
            connector_pool_close (conn);
        return;
    }
    mesh_buf_consume (&conn->in, (size_t) used);
}

//  The connection closed or broke mid-stream (without a close frame)
static void
s_on_eof (connector_conn_t *conn, const char *why)
{
    connector_request_fail (conn->req, 502, "upstream_error", "upstream_disconnected", 0,
                            "upstream_error", "The upstream closed the stream: %s", why);
}

const connector_protocol_t connector_ws_protocol = {
    .name = "websocket",
    .warm = true,
    .setup_start = s_send_upgrade,
    .setup_input = s_on_upgrade_input,
    .send_request = s_send_request,
    .on_input = s_on_input,
    .on_eof = s_on_eof,
    .keepalive = s_keepalive,
};

//  Selftest -------------------------------------------------------------------
//
//  A whole connector (connector_testing.h) against a WebSocket upstream on
//  loopback written here: it upgrades (or, asked to, answers the upgrade
//  wrongly), pings first, then answers each request message with the
//  current scenario's frames.

typedef struct {
    const char *frames [6];         //  text frames, a few ms apart
    bool cut;                       //  close the TCP connection after them
} ws_scenario_t;

static const ws_scenario_t *s_scenario;
static volatile bool s_bad_accept;
static volatile int s_pongs;

typedef struct {
    bool message_end;
    char text [4096];
    size_t len;
} ws_server_t;

static int
s_test_on_frame (void *arg, int event, uint8_t *data, size_t len)
{
    ws_server_t *server = arg;
    if (event == MESH_WS_EV_DATA && server->len + len < sizeof server->text) {
        memcpy (server->text + server->len, data, len);
        server->len += len;
    }
    else
    if (event == MESH_WS_EV_MESSAGE_END)
        server->message_end = true;
    else
    if (event == MESH_WS_EV_PONG && mesh_memeq ((char *) data, len, "hello"))
        s_pongs++;
    return 0;
}

static void
s_test_frame (int fd, int opcode, const char *data)
{
    uint8_t header [MESH_WS_MAX_HEADER];
    size_t len = mesh_ws_header (header, opcode, true, NULL, strlen (data));
    char frame [4200];
    memcpy (frame, header, len);
    memcpy (frame + len, data, strlen (data));
    frame [len + strlen (data)] = 0;
    assert (write (fd, frame, len + strlen (data)) == (ssize_t) (len + strlen (data)));
}

static void
s_test_serve (int fd, void *arg)
{
    (void) arg;
    char request [4096];
    if (!connector_testing_read_request (fd, request, sizeof request))
        return;
    const char *key = strcasestr (request, "sec-websocket-key: ");
    assert (key && strstr (request, "GET /v1/chat/completions HTTP/1.1\r\n"));
    key += 19;
    char accept [29];
    mesh_ws_accept_key (key, strcspn (key, "\r"), accept);
    char answer [256];
    snprintf (answer, sizeof answer, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
              s_bad_accept ? "AAAAAAAAAAAAAAAAAAAAAAAAAAA=" : accept);
    connector_testing_write (fd, answer, 0);
    s_test_frame (fd, MESH_WS_PING, "hello");
    mesh_ws_reader_t reader;
    mesh_ws_reader_init (&reader, true, 1 << 20);
    ws_server_t server = { 0 };
    uint8_t buf [8192];
    size_t have = 0;
    while (true) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll (&p, 1, 100) < 0)
            return;
        if (p.revents) {
            ssize_t n = read (fd, buf + have, sizeof buf - have);
            if (n <= 0)
                return;
            have += (size_t) n;
            int64_t used = mesh_ws_read (&reader, buf, have, s_test_on_frame, &server);
            assert (used >= 0);
            memmove (buf, buf + used, have - (size_t) used);
            have -= (size_t) used;
        }
        if (!server.message_end)
            continue;
        //  The client's body, with "stream":true added for a non-stream client
        assert (server.len > 20 && memcmp (server.text, "{\"model\":\"m\",\"messages\":[]", 26) == 0);
        server.message_end = false;
        server.len = 0;
        const ws_scenario_t *scenario = s_scenario;
        for (size_t i = 0; i < MESH_ARRAY_SIZE (scenario->frames) && scenario->frames [i]; i++) {
            s_test_frame (fd, MESH_WS_TEXT, scenario->frames [i]);
            usleep (3000);
        }
        if (scenario->cut)
            return;
    }
}

static const ws_scenario_t s_stream = { {
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a",
    "b\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5}}\n",
    "\ndata: [DONE]\n\n"
}, false };
static const ws_scenario_t s_limited = { {
    "data: {\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit\"},\"status\":429}\n\ndata: [DONE]\n\n"
}, false };
static const ws_scenario_t s_cut = { {
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n"
}, true };

void
connector_ws_test (bool verbose)
{
    (void) verbose;
    const char *body = "{\"model\":\"m\",\"messages\":[]}";
    connector_harness_t *h = connector_harness_new ("ws", s_test_serve, NULL);
    //  Events cut across frames, put back together; a non-stream client
    //  gets the answer assembled; the upstream's ping was answered
    s_scenario = &s_stream;
    assert (connector_harness_request (h, true, body, 3000));
    assert (h->last == MESH_MSG_END && h->heads == 1 && h->prompt_tokens == 5);
    assert (mesh_memeq (mesh_buf_head (&h->chunks), mesh_buf_size (&h->chunks),
                        "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ab\"}}]}\n"));
    assert (connector_harness_request (h, false, body, 3000));
    assert (h->last == MESH_MSG_END && strstr (mesh_buf_head (&h->data), "\"content\":\"ab\""));
    assert (h->accepted == 1 && s_pongs == 1);
    //  An error event before any content: the router hears it
    s_scenario = &s_limited;
    assert (connector_harness_request (h, true, body, 3000));
    assert (h->last == MESH_MSG_FAIL && h->status == 429);
    //  Cut without a close frame mid-stream: an error event to the client
    s_scenario = &s_cut;
    assert (connector_harness_request (h, true, body, 3000));
    assert (h->last == MESH_MSG_ERROR && h->heads == 1 && mesh_streq (h->err_code, "upstream_disconnected"));
    connector_harness_destroy (&h);

    //  An upgrade answered with the wrong accept key: no connection, so
    //  the request cannot be served
    s_bad_accept = true;
    h = connector_harness_new ("ws", s_test_serve, NULL);
    assert (connector_harness_request (h, true, body, 3000));
    assert (h->last == MESH_MSG_FAIL && h->status == 502 && mesh_streq (h->err_code, "upstream_unreachable"));
    connector_harness_destroy (&h);
    s_bad_accept = false;
}
