/*  mock_stream: one chat response on a connection, over time.

    Owns the response's timeline: the simulated queue (keep-alive output
    every mock.keepalive_ms), the deltas delay_ms apart on the connection's
    timer, the faults (the fault switch, status, reset_after, stall),
    backpressure from a slow reader, and the metrics of a response's life:
    active, completed, aborted.
    The transport decides the framing: over HTTP, SSE events become chunks
    and a non-stream reply one JSON body; over WebSocket, the SSE bytes go
    to mock_ws for framing whatever the request's "stream" says.

        phase       what it waits for
        QUEUED      the next keep-alive, or the end of queue_ms
        WAITING     a non-stream reply's deltas x delay_ms
        STREAMING   the next delta (delay_ms)
        BLOCKED     output under MOCK_OUTPUT_HIGH_BYTES again
        FINISHING   the last bytes to leave: then it is completed
        STALLED     nothing: the client has to give up
        RESETTING   output sent up to the reset point: then the reset

    Runs on the connection's worker thread.                                  */
#include "mock.h"
#include "mock_render.h"
#include "mesh_log.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

enum { IDLE, QUEUED, WAITING, STREAMING, BLOCKED, FINISHING, STALLED, RESETTING };

static void s_tick (mock_conn_t *conn);

void
mock_stream_init (mock_stream_t *self)
{
    memset (self, 0, sizeof *self);
    mock_reply_init (&self->reply);
}

void
mock_stream_free (mock_stream_t *self)
{
    mock_reply_free (&self->reply);
}

//  Transport ----------------------------------------------------------------

//  Sends SSE (or body) bytes in the connection's framing.
static void
s_emit (mock_conn_t *conn, const char *data, size_t len)
{
    if (conn->websocket)
        mesh_buf_append (&conn->ws_sse, data, len);
    else
    if (conn->chunked_out) {
        char size [24];
        int n = snprintf (size, sizeof size, "%zx\r\n", len);
        mesh_buf_append (&conn->out, size, (size_t) n);
        mesh_buf_append (&conn->out, data, len);
        mesh_buf_append (&conn->out, "\r\n", 2);
    }
    else
        mesh_buf_append (&conn->out, data, len);
}

static void
s_emit_scratch (mock_conn_t *conn)
{
    mesh_buf_t *scratch = &conn->worker->scratch;
    s_emit (conn, mesh_buf_head (scratch), mesh_buf_size (scratch));
    mesh_buf_reset (scratch);
}

//  The end of a streamed HTTP body (not after a Content-Length body).
static void
s_emit_end (mock_conn_t *conn)
{
    if (!conn->websocket && conn->chunked_out)
        mesh_buf_append (&conn->out, "0\r\n\r\n", 5);
}

static size_t
s_pending (mock_conn_t *conn)
{
    return mesh_buf_size (&conn->out) + mesh_buf_size (&conn->ws_sse);
}

//  Life of a response -------------------------------------------------------

static void
s_end (mock_conn_t *conn)
{
    mock_stream_t *self = &conn->stream;
    mesh_loop_timer_stop (conn->worker->loop, &self->timer);
    self->phase = IDLE;
    if (self->active) {
        self->active = false;
        mesh_metric_add (conn->worker->settings->metrics.streams_active, -1);
    }
}

//  An error instead of a reply: an HTTP error, or an error event on WS.
static void
s_refuse (mock_conn_t *conn, int status, const char *message, int64_t retry_after)
{
    if (!conn->websocket) {
        mock_http_error (conn, status, message, retry_after);
        return;
    }
    mesh_buf_t *scratch = &conn->worker->scratch;
    mesh_buf_append_str (scratch, "data: ");
    mock_render_error (scratch, status, message, true);
    mesh_buf_append_str (scratch, "\n\n" MOCK_SSE_DONE);
    s_emit_scratch (conn);
}

static int
s_on_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg);

static void
s_arm (mock_conn_t *conn, int64_t delay_us)
{
    mesh_loop_timer_start_us (conn->worker->loop, &conn->stream.timer, delay_us, s_on_timer, conn);
}

//  Applies reset_after / stall_after at the current position; true if one
//  took over the response.
static bool
s_fault (mock_conn_t *conn)
{
    mock_stream_t *self = &conn->stream;
    mock_reply_t *reply = &self->reply;
    if (reply->reset_after >= 0 && self->sent >= reply->reset_after) {
        self->phase = RESETTING;
        self->reset_pending = true;
        return true;
    }
    if (reply->stall == MOCK_STALL_AFTER && self->sent >= reply->stall_after) {
        self->phase = STALLED;
        return true;
    }
    return false;
}

static void
s_finish (mock_conn_t *conn)
{
    conn->stream.phase = FINISHING;
    s_emit_end (conn);
}

static void
s_send_body (mock_conn_t *conn)
{
    mock_stream_t *self = &conn->stream;
    if (s_fault (conn))
        return;
    mesh_buf_t *scratch = &conn->worker->scratch;
    mock_render_body (scratch, &self->reply);
    if (self->reply.queue_ms > 0) {
        s_emit_scratch (conn);              //  the head went out with the queue
        s_finish (conn);
        return;
    }
    mock_http_head (conn, 200, "application/json", (int64_t) mesh_buf_size (scratch), -1);
    mesh_buf_append (&conn->out, mesh_buf_head (scratch), mesh_buf_size (scratch));
    mesh_buf_reset (scratch);
    self->phase = FINISHING;
}

//  Sends deltas until a delay, a fault, backpressure or the end.
static void
s_tick (mock_conn_t *conn)
{
    mock_stream_t *self = &conn->stream;
    mock_reply_t *reply = &self->reply;
    mesh_buf_t *scratch = &conn->worker->scratch;
    int64_t deltas = mock_reply_deltas (reply);
    self->phase = STREAMING;
    while (true) {
        if (s_fault (conn))
            return;
        mock_delta_t delta;
        if (!mock_reply_next (reply, &delta)) {
            mock_render_final (scratch, reply);
            mesh_buf_append_str (scratch, MOCK_SSE_DONE);
            s_emit_scratch (conn);
            s_finish (conn);
            return;
        }
        mock_render_delta (scratch, reply, &delta);
        s_emit_scratch (conn);
        self->sent++;
        if (self->delay_ms > 0 && self->sent < deltas) {
            s_arm (conn, self->delay_ms * 1000);
            return;
        }
        if (s_pending (conn) > MOCK_OUTPUT_HIGH_BYTES) {
            self->phase = BLOCKED;
            return;
        }
    }
}

//  After the queue: the chunks, or the body once its deltas' time is up.
static void
s_proceed (mock_conn_t *conn)
{
    mock_stream_t *self = &conn->stream;
    if (self->sse) {
        mock_render_first (&conn->worker->scratch, &self->reply);
        s_emit_scratch (conn);
        s_tick (conn);
        return;
    }
    int64_t wait_ms = mock_reply_deltas (&self->reply) * self->delay_ms;
    if (wait_ms > 0) {
        self->phase = WAITING;
        s_arm (conn, wait_ms * 1000);
    }
    else
        s_send_body (conn);
}

static void
s_queue_tick (mock_conn_t *conn)
{
    mock_stream_t *self = &conn->stream;
    int64_t now_us = mesh_mono_us ();
    if (now_us >= self->queue_end_us) {
        s_proceed (conn);
        return;
    }
    //  DeepSeek's keep-alive: an SSE comment, or a blank line in JSON
    if (self->sse)
        s_emit (conn, MOCK_SSE_KEEPALIVE, strlen (MOCK_SSE_KEEPALIVE));
    else
        s_emit (conn, "\n", 1);
    int64_t keepalive_us = conn->worker->settings->keepalive_ms * 1000;
    self->phase = QUEUED;
    s_arm (conn, MESH_MIN (keepalive_us, self->queue_end_us - now_us));
}

static int
s_on_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    mock_conn_t *conn = arg;
    switch (conn->stream.phase) {
        case QUEUED:    s_queue_tick (conn); break;
        case WAITING:   s_send_body (conn); break;
        case STREAMING: s_tick (conn); break;
        default:        break;
    }
    mock_conn_settle (conn);
    return 0;
}

//  Interface ----------------------------------------------------------------

void
mock_stream_start (mock_conn_t *conn, const char *body, size_t len)
{
    mock_stream_t *self = &conn->stream;
    mock_reply_t *reply = &self->reply;
    mock_worker_t *worker = conn->worker;
    const mock_settings_t *settings = worker->settings;
    mesh_metric_inc (conn->websocket ? settings->metrics.requests_ws
                                     : settings->metrics.requests_http);
    //  The fault switch (PUT /mock/fault, mock.force_status) comes before
    //  the body is even read, as with an upstream that is down
    mock_fault_spec_t fault;
    if (settings->fault && mock_fault_on_request (settings->fault, &fault)) {
        if (fault.mode == MOCK_FAULT_CLOSE) {
            mesh_metric_inc (settings->metrics.faults_close);
            mock_conn_close (conn, "fault: closed without an answer");
            return;
        }
        mesh_metric_inc (settings->metrics.faults_status);
        s_refuse (conn, fault.status, NULL, fault.retry_after);
        return;
    }
    mock_seen_add (settings->seen, body, len);
    char error [160];
    reply->replay = settings->replay;
    if (mock_reply_parse (reply, body, len, error, sizeof error) < 0) {
        mesh_debug ("fd=%d: invalid chat request (%zu bytes)", conn->io.fd, len);
        s_refuse (conn, 400, error, -1);
        return;
    }
    if (reply->status) {
        s_refuse (conn, reply->status, NULL, reply->retry_after);
        return;
    }
    char id [48];
    snprintf (id, sizeof id, "mock-%d-%llu", worker->index,
              (unsigned long long) ++worker->replies);
    mock_render_begin (reply, id, (int64_t) time (NULL));
    self->active = true;
    mesh_metric_add (settings->metrics.streams_active, 1);
    self->sse = conn->websocket || reply->stream;
    self->delay_ms = reply->delay_ms >= 0 ? reply->delay_ms : settings->token_delay_ms;
    self->sent = 0;
    self->reset_pending = false;
    mesh_debug ("req=%s ws=%d stream=%d deltas=%lld prompt_bytes=%zu", id, conn->websocket,
                reply->stream, (long long) mock_reply_deltas (reply),
                mesh_buf_size (&reply->prompt));

    if (reply->stall == MOCK_STALL_FIRST) {
        self->phase = STALLED;              //  not even the head
        return;
    }
    bool queued = reply->queue_ms > 0;
    if (!conn->websocket && (self->sse || queued))
        mock_http_head (conn, 200, self->sse ? "text/event-stream; charset=utf-8"
                                             : "application/json", -1, -1);
    if (self->sse && s_fault (conn))
        return;                             //  reset_after 0: right after the head
    if (queued) {
        self->queue_end_us = mesh_mono_us () + reply->queue_ms * 1000;
        s_queue_tick (conn);
    }
    else
        s_proceed (conn);
}

void
mock_stream_abort (mock_conn_t *conn)
{
    if (!conn->stream.active)
        return;
    mesh_debug ("req=%s: aborted after %lld deltas", conn->stream.reply.id,
                (long long) conn->stream.sent);
    s_end (conn);
    mesh_metric_inc (conn->worker->settings->metrics.streams_aborted);
}

bool
mock_stream_flushed (mock_conn_t *conn)
{
    mock_stream_t *self = &conn->stream;
    if (!self->active)
        return false;
    if (self->phase == RESETTING) {
        s_end (conn);
        //  WebSocket: the connection just ends, without a close frame
        if (conn->websocket)
            mock_conn_close (conn, "reset_after");
        else
            mock_conn_reset (conn);
        return false;
    }
    if (self->phase == BLOCKED) {
        s_tick (conn);
        return s_pending (conn) > 0;
    }
    if (self->phase != FINISHING)
        return false;
    s_end (conn);
    mesh_metric_inc (conn->worker->settings->metrics.streams_completed);
    if (conn->websocket) {
        if (conn->worker->draining)
            mock_ws_close (conn, 1001);
    }
    else
    if (conn->http_close || conn->worker->draining)
        conn->close_after = true;
    return s_pending (conn) > 0;
}
