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
#include "mesh_id.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    char head [2048];
    int n = snprintf (head, sizeof head,
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
    connector_conn_write (conn, head, (size_t) n);
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
