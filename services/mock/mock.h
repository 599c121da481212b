/*  seekmesh-mock: the types its modules share.

    main.c            config, listening sockets, admin port, signals, threads
    mock_server.c     a worker thread: its reactor, accepts, connection I/O
    mock_fault.c      the fault switch of PUT /mock/fault (admin port)
    mock_http.c       HTTP/1.1 requests: framing, routing, auth, plain replies
    mock_ws.c         the WebSocket transport (upgrade, frames)
    mock_stream.c     one chat response over time: queue, deltas, faults
    mock_reply.c      what a chat reply says (pure)
    mock_replay.c     recorded answers to replay (mock.replay_file)
    mock_seen.c       the last requests received (GET /mock/requests)
    mock_render.c     DeepSeek's wire format (pure)

    Each worker thread owns its loop and every connection accepted on it; a
    connection never changes thread.  Only the settings (read-only after
    start, the recordings included), the metrics (atomic) and the fault
    switch (mock_fault: a mutex)
    are shared between threads.                                              */
#ifndef MOCK_H
#define MOCK_H

#include "mesh_buf.h"
#include "mesh_conn.h"
#include "mesh_http.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"
#include "mesh_ws.h"
#include "mock_fault.h"
#include "mock_reply.h"
#include "mock_seen.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define MOCK_MAX_HEAD_BYTES   (16 * 1024)
#define MOCK_MAX_BODY_BYTES   (16 * 1024 * 1024)
#define MOCK_MAX_INPUT_BYTES  (MOCK_MAX_BODY_BYTES + MOCK_MAX_HEAD_BYTES + 64 * 1024)
//  A response stops rendering while this much waits for a slow reader
#define MOCK_OUTPUT_HIGH_BYTES (256 * 1024)

typedef struct {
    mesh_metric_t *requests_http;
    mesh_metric_t *requests_ws;
    mesh_metric_t *streams_active;
    mesh_metric_t *streams_completed;
    mesh_metric_t *streams_aborted;
    mesh_metric_t *connections_http;
    mesh_metric_t *connections_ws;
    mesh_metric_t *connections_active;
    mesh_metric_t *auth_failures;
    mesh_metric_t *faults_status;   //  chat requests answered by the fault switch
    mesh_metric_t *faults_close;    //  connections it closed
} mock_metrics_t;

//  Read-only once the workers run.
typedef struct {
    int64_t token_delay_ms;
    int64_t keepalive_ms;
    int64_t drain_ms;
    size_t ws_chunk_size;
    mock_fault_t *fault;        //  the switch itself is thread-safe
    const mock_replay_t *replay; //  recorded answers (mock.replay_file), or NULL
    mock_seen_t *seen;          //  the last requests (thread-safe itself)
    const char *api_key;        //  NULL: no authentication
    SSL_CTX *tls_ctx;           //  NULL without tls_listen
    mock_metrics_t metrics;
} mock_settings_t;

typedef struct mock_conn_t mock_conn_t;

typedef struct {
    int index;                  //  thread number, in reply ids
    const mock_settings_t *settings;
    mesh_loop_t *loop;
    pthread_t thread;
    int listen_fd;
    int tls_listen_fd;          //  -1 without TLS
    int wake_fd;                //  eventfd: the main thread asks to drain
    mesh_timer_t accept_timer;  //  accepting paused after EMFILE
    mesh_timer_t drain_timer;   //  drain deadline
    bool draining;
    mock_conn_t *conns;         //  every open connection
    size_t conn_count;
    uint64_t replies;           //  reply id counter
    uint64_t accepted;          //  seeds each connection's frame sizes
    mesh_buf_t scratch;         //  one rendered event at a time
} mock_worker_t;

//  One chat response in progress on a connection (mock_stream.c).
typedef struct {
    mock_reply_t reply;
    int phase;
    bool active;                //  counted in streams_active
    bool sse;                   //  SSE bytes, else one JSON body
    bool reset_pending;         //  reset the connection once out is sent
    int64_t delay_ms;
    int64_t queue_end_us;
    int64_t sent;               //  deltas sent
    mesh_timer_t timer;
} mock_stream_t;

struct mock_conn_t {
    mock_worker_t *worker;
    mock_conn_t *prev, *next;
    mesh_conn_t io;
    bool tls;
    bool dead;                  //  closed; freed when its handler returns
    bool close_after;           //  close once out is sent
    bool read_paused;           //  input buffer full
    int read_want;              //  what a read waits for after MESH_AGAIN
    int write_want;
    mesh_buf_t in;
    mesh_buf_t out;
    //  HTTP
    bool http_close;            //  the current request asked to close (or is 1.0)
    bool chunked_out;           //  responses may use chunked encoding
    bool body_started;          //  decoding a chunked body
    bool continue_sent;         //  "100 Continue" answered
    size_t body_len;            //  decoded so far, right after the head in `in`
    mesh_http_chunked_t chunked;
    //  WebSocket (after an upgrade)
    bool websocket;
    bool ws_closed;             //  a close frame was sent
    mesh_ws_reader_t ws_reader;
    mesh_buf_t ws_message;      //  message being received
    mesh_buf_t ws_queue;        //  whole messages waiting: [u32 length][bytes]
    mesh_buf_t ws_sse;          //  SSE bytes not framed yet
    uint64_t ws_rng;
    mock_stream_t stream;
};

//  mock_server.c: a worker.  new/start/join/destroy on the main thread;
//  the listening sockets are handed over.
mock_worker_t *mock_worker_new (int index, const mock_settings_t *settings,
                                int listen_fd, int tls_listen_fd);
void mock_worker_destroy (mock_worker_t **self_p);
int  mock_worker_start (mock_worker_t *self);
//  Any thread: stop accepting, finish responses (up to drain_ms), exit.
void mock_worker_drain (mock_worker_t *self);
void mock_worker_join (mock_worker_t *self);
void mock_server_test (bool verbose);

//  mock_server.c: connection plumbing, on the connection's worker thread.
//  Writes out (framing pending WebSocket bytes first) until done or the
//  socket is full; completes what waited for the flush.
void mock_conn_flush (mock_conn_t *self);
//  Closes now; a response in progress counts as aborted.  The memory stays
//  until the current handler returns (mock_conn_settle).
void mock_conn_close (mock_conn_t *self, const char *why);
//  Closes with a TCP reset (SO_LINGER 0): the reset_after fault.
void mock_conn_reset (mock_conn_t *self);
//  Ends every handler that touched the connection: flushes, serves queued
//  requests, sets the poll events, frees a dead connection.
void mock_conn_settle (mock_conn_t *self);

//  mock_http.c
//  Serves the next complete request in conn->in.  1 when it consumed one,
//  0 when it needs more input (or the connection is closing).
int  mock_http_next (mock_conn_t *conn);
//  Appends a response head; content_length -1 for a streamed body.
void mock_http_head (mock_conn_t *conn, int status, const char *content_type,
                     int64_t content_length, int64_t retry_after);
//  Appends an error response with the JSON envelope.
void mock_http_error (mock_conn_t *conn, int status, const char *message,
                      int64_t retry_after);

//  mock_ws.c
void mock_ws_upgrade (mock_conn_t *conn, const mesh_http_head_t *head);
//  Reads frames from conn->in (also while a response streams): control
//  frames are answered, messages queued.
void mock_ws_on_input (mock_conn_t *conn);
//  Starts the next queued request; 1 if it did.
int  mock_ws_next (mock_conn_t *conn);
//  Cuts conn->ws_sse into binary frames in conn->out.
void mock_ws_frame_pending (mock_conn_t *conn);
//  Sends a close frame (once) and closes after it.
void mock_ws_close (mock_conn_t *conn, uint16_t code);
//  Frames data as single-frame binary messages of 1..max_frame bytes, sizes
//  drawn from *rng.  Returns the number of frames.
size_t mock_ws_frames (mesh_buf_t *out, const char *data, size_t len, uint64_t *rng,
                       size_t max_frame);
void mock_ws_test (bool verbose);

//  mock_stream.c
void mock_stream_init (mock_stream_t *self);
void mock_stream_free (mock_stream_t *self);
//  Answers the chat request in body [0 .. len) (copied: the caller may
//  drop the bytes on return).
void mock_stream_start (mock_conn_t *conn, const char *body, size_t len);
//  The connection is going away with the response unfinished.
void mock_stream_abort (mock_conn_t *conn);
//  out was fully sent.  Returns true if that produced more output.
bool mock_stream_flushed (mock_conn_t *conn);

#endif
