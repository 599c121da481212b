/*  mock_ws: the mock's WebSocket transport, for ws:// and wss:// upstreams.

    Handshake.  GET /chat/completions or /v1/chat/completions with
    "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"
    and a Sec-WebSocket-Key is answered "101 Switching Protocols" with its
    Sec-WebSocket-Accept.  Authorization is checked on that request, like
    any HTTP request (mock_http).  Without an Upgrade header the GET is 405;
    a wrong version is 426 (with Sec-WebSocket-Version: 13); anything else
    malformed is 400.

    Requests.  Each text or binary message from the client (masked, maybe
    fragmented, at most 16 MiB) is one chat request: the same JSON body as
    over HTTP, with the same "mock" directives.  One request at a time per
    connection; messages that arrive meanwhile wait in a queue.

    Replies.  The exact bytes an HTTP stream would carry (keep-alive
    comments while queued, the chunks, the final chunk with usage, then
    "data: [DONE]\n\n"), whatever the request's "stream" says.  They go out
    as unmasked binary messages of one frame each, 1 .. mock.ws_chunk_size
    bytes, cut where a per-connection generator says (seeded by the
    connection's number on its worker, so runs repeat), so SSE events and
    UTF-8 sequences straddle frames.  An error (status directive, the
    fault switch's status, bad JSON) is one event,
        data: {"error":{"message":...,"type":...,"param":null,"code":...},"status":N}
    then "data: [DONE]\n\n".

    Control.  A ping gets a pong with its payload; a close frame gets a
    close frame, then the connection ends.  A client that goes away (or
    closes) mid-reply aborts the reply.  reset_after, and the fault switch's
    mode "close", end the TCP connection without a close frame.  Runs on
    the connection's worker thread.                                          */
#include "mock.h"
#include "mock_render.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

size_t
mock_ws_frames (mesh_buf_t *out, const char *data, size_t len, uint64_t *rng, size_t max_frame)
{
    size_t frames = 0;
    while (len > 0) {
        //  Knuth's MMIX LCG; the high bits are the good ones
        *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t n = 1 + (size_t) ((*rng >> 33) % max_frame);
        if (n > len)
            n = len;
        uint8_t header [MESH_WS_MAX_HEADER];
        size_t header_len = mesh_ws_header (header, MESH_WS_BINARY, true, NULL, n);
        mesh_buf_append (out, header, header_len);
        mesh_buf_append (out, data, n);
        data += n;
        len -= n;
        frames++;
    }
    return frames;
}

void
mock_ws_frame_pending (mock_conn_t *conn)
{
    if (mesh_buf_size (&conn->ws_sse) == 0)
        return;
    mock_ws_frames (&conn->out, mesh_buf_head (&conn->ws_sse), mesh_buf_size (&conn->ws_sse),
                    &conn->ws_rng, conn->worker->settings->ws_chunk_size);
    mesh_buf_reset (&conn->ws_sse);
    mesh_buf_trim (&conn->ws_sse, 64 * 1024);
}

static void
s_control (mock_conn_t *conn, int opcode, const uint8_t *payload, size_t len)
{
    mock_ws_frame_pending (conn);
    uint8_t header [MESH_WS_MAX_HEADER];
    size_t header_len = mesh_ws_header (header, opcode, true, NULL, len);
    mesh_buf_append (&conn->out, header, header_len);
    mesh_buf_append (&conn->out, payload, len);
}

void
mock_ws_close (mock_conn_t *conn, uint16_t code)
{
    if (conn->ws_closed)
        return;
    uint8_t payload [2] = { (uint8_t) (code >> 8), (uint8_t) code };
    s_control (conn, MESH_WS_CLOSE, payload, 2);
    conn->ws_closed = true;
    conn->close_after = true;
}

void
mock_ws_upgrade (mock_conn_t *conn, const mesh_http_head_t *head)
{
    size_t upgrade_len, version_len, key_len;
    const char *upgrade = mesh_http_header (head, "upgrade", &upgrade_len);
    const char *version = mesh_http_header (head, "sec-websocket-version", &version_len);
    const char *key = mesh_http_header (head, "sec-websocket-key", &key_len);
    if (!upgrade) {
        mock_http_error (conn, 405, "Use POST, or upgrade to a WebSocket", -1);
        return;
    }
    if (!mesh_http_has_token (upgrade, upgrade_len, "websocket") || !head->upgrade) {
        mock_http_error (conn, 400, "Expected Upgrade: websocket and Connection: Upgrade", -1);
        return;
    }
    if (!version || !mesh_memeq (version, version_len, "13")) {
        mesh_buf_t *scratch = &conn->worker->scratch;
        mock_render_error (scratch, 426, "Sec-WebSocket-Version must be 13", false);
        mesh_buf_printf (&conn->out, "HTTP/1.1 426 Upgrade Required\r\n"
                         "Sec-WebSocket-Version: 13\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n", mesh_buf_size (scratch));
        mesh_buf_append (&conn->out, mesh_buf_head (scratch), mesh_buf_size (scratch));
        mesh_buf_reset (scratch);
        return;
    }
    if (!key || key_len != 24) {
        mock_http_error (conn, 400, "Missing or malformed Sec-WebSocket-Key", -1);
        return;
    }
    char accept [29];
    mesh_ws_accept_key (key, key_len, accept);
    mesh_buf_printf (&conn->out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    mock_worker_t *worker = conn->worker;
    conn->websocket = true;
    conn->http_close = false;
    mesh_ws_reader_init (&conn->ws_reader, true, MOCK_MAX_BODY_BYTES);
    conn->ws_rng = ++worker->accepted * 0x9e3779b97f4a7c15ULL;
    mesh_metric_inc (worker->settings->metrics.connections_ws);
    mesh_debug ("fd=%d: upgraded to WebSocket", conn->io.fd);
}

static int
s_on_frame (void *arg, int event, uint8_t *data, size_t len)
{
    mock_conn_t *conn = arg;
    switch (event) {
        case MESH_WS_EV_DATA:
            mesh_buf_append (&conn->ws_message, data, len);
            break;
        case MESH_WS_EV_MESSAGE_END: {
            uint32_t size = (uint32_t) mesh_buf_size (&conn->ws_message);
            mesh_buf_append (&conn->ws_queue, &size, sizeof size);
            mesh_buf_append (&conn->ws_queue, mesh_buf_head (&conn->ws_message), size);
            mesh_buf_reset (&conn->ws_message);
            mesh_buf_trim (&conn->ws_message, 64 * 1024);
            break;
        }
        case MESH_WS_EV_PING:
            s_control (conn, MESH_WS_PONG, data, len);
            break;
        case MESH_WS_EV_CLOSE:
            //  The client is done: what it has not received is aborted
            mock_stream_abort (conn);
            mesh_buf_reset (&conn->ws_sse);
            s_control (conn, MESH_WS_CLOSE, data, len >= 2 ? 2 : 0);
            conn->ws_closed = true;
            conn->close_after = true;
            return -1;
        default:
            break;
    }
    return 0;
}

void
mock_ws_on_input (mock_conn_t *conn)
{
    if (conn->dead || !conn->websocket)
        return;
    if (conn->ws_closed) {
        mesh_buf_reset (&conn->in);         //  nothing more is read
        return;
    }
    int64_t used = mesh_ws_read (&conn->ws_reader, (uint8_t *) mesh_buf_head (&conn->in),
                                 mesh_buf_size (&conn->in), s_on_frame, conn);
    if (used < 0) {
        if (!conn->ws_closed) {
            mesh_debug ("fd=%d: WebSocket protocol error", conn->io.fd);
            mock_stream_abort (conn);
            mesh_buf_reset (&conn->ws_sse);
            mock_ws_close (conn, 1002);
        }
        mesh_buf_reset (&conn->in);
        return;
    }
    mesh_buf_consume (&conn->in, (size_t) used);
}

int
mock_ws_next (mock_conn_t *conn)
{
    if (conn->ws_closed || mesh_buf_size (&conn->ws_queue) < sizeof (uint32_t))
        return 0;
    uint32_t size;
    memcpy (&size, mesh_buf_head (&conn->ws_queue), sizeof size);
    mock_stream_start (conn, mesh_buf_head (&conn->ws_queue) + sizeof size, size);
    mesh_buf_consume (&conn->ws_queue, sizeof size + size);
    return 1;
}

//  Selftest -----------------------------------------------------------------

typedef struct {
    mesh_buf_t payload;
    size_t messages;
    size_t max_message;
} test_sink_t;

static int
s_test_sink (void *arg, int event, uint8_t *data, size_t len)
{
    test_sink_t *sink = arg;
    static size_t message;
    if (event == MESH_WS_EV_DATA) {
        mesh_buf_append (&sink->payload, data, len);
        message += len;
    }
    else
    if (event == MESH_WS_EV_MESSAGE_END) {
        sink->messages++;
        sink->max_message = MESH_MAX (sink->max_message, message);
        message = 0;
    }
    return 0;
}

void
mock_ws_test (bool verbose)
{
    (void) verbose;
    //  SSE bytes come out whole through a client's reader, in frames of
    //  1 .. max bytes, the same frames for the same seed
    const char *sse = "data: {\"choices\":[{\"delta\":{\"content\":\"\xe4\xbd\xa0\xe5\xa5\xbd \"}}]}\n\n"
                      "data: [DONE]\n\n";
    size_t len = strlen (sse);
    size_t sizes [] = { 1, 7, 64, 200 };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (sizes); i++) {
        mesh_buf_t wire, again;
        mesh_buf_init (&wire);
        mesh_buf_init (&again);
        uint64_t rng = 42, rng2 = 42;
        size_t frames = mock_ws_frames (&wire, sse, len, &rng, sizes [i]);
        mock_ws_frames (&again, sse, len, &rng2, sizes [i]);
        assert (mesh_buf_size (&wire) == mesh_buf_size (&again));
        assert (memcmp (mesh_buf_head (&wire), mesh_buf_head (&again), mesh_buf_size (&wire)) == 0);
        assert (frames >= (len + sizes [i] - 1) / sizes [i]);
        if (sizes [i] > 1 && sizes [i] < len)
            assert (frames > len / sizes [i]);      //  not all full-size
        mesh_ws_reader_t reader;
        mesh_ws_reader_init (&reader, false, 1 << 20);
        test_sink_t sink = { .messages = 0 };
        mesh_buf_init (&sink.payload);
        int64_t used = mesh_ws_read (&reader, (uint8_t *) mesh_buf_head (&wire),
                                     mesh_buf_size (&wire), s_test_sink, &sink);
        assert (used == (int64_t) mesh_buf_size (&wire));
        assert (sink.messages == frames);
        assert (sink.max_message <= sizes [i]);
        assert (mesh_memeq (mesh_buf_head (&sink.payload), mesh_buf_size (&sink.payload), sse));
        mesh_buf_free (&sink.payload);
        mesh_buf_free (&wire);
        mesh_buf_free (&again);
    }
}
