/*  mock_server: a worker thread of seekmesh-mock and its connections.

    Each worker runs its own mesh_loop with its own SO_REUSEPORT listening
    socket(s), so the kernel spreads connections over threads and nothing
    on the request path is shared but the atomic metrics and the fault
    switch.  A worker owns every connection it accepts: plain TCP or TLS,
    reading until MESH_AGAIN (TLS can hold bytes the socket no longer
    signals) and writing a whole response with one send where it can.

    A connection's handlers (readiness, its stream timer) all end in
    mock_conn_settle, which writes what is pending, serves the next queued
    request and frees the connection if something closed it, so no handler
    ever touches freed memory.

    The main thread asks a worker to drain through an eventfd: it stops
    accepting, closes idle connections, lets responses in progress finish
    (closing each connection after its response), and stops its loop when
    none is left or after drain_ms.                                          */
#include "mock.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_BATCH 64
#define ACCEPT_PAUSE_MS 100
#define KEEP_BUFFER_BYTES (64 * 1024)

static void s_conn_free (mock_conn_t *self);

//  Connections --------------------------------------------------------------

static void
s_interest (mock_conn_t *self)
{
    int events;
    if (self->io.handshaking)
        events = self->io.want;
    else {
        events = self->read_paused ? 0 : MESH_READ;
        if (self->read_want == MESH_WRITE)
            events |= MESH_WRITE;
        if (mesh_buf_size (&self->out) > 0)
            events |= self->write_want == MESH_READ ? MESH_READ : MESH_WRITE;
    }
    mesh_loop_fd_events (self->worker->loop, self->io.fd, events);
}

static size_t
s_input_held (mock_conn_t *self)
{
    return mesh_buf_size (&self->in) + mesh_buf_size (&self->ws_queue)
         + mesh_buf_size (&self->ws_message);
}

static void
s_read (mock_conn_t *self)
{
    while (!self->dead) {
        if (s_input_held (self) >= MOCK_MAX_INPUT_BYTES) {
            self->read_paused = true;
            return;
        }
        mesh_buf_reserve (&self->in, 16 * 1024);
        size_t room = self->in.cap - self->in.len;
        ssize_t n = mesh_conn_read (&self->io, self->in.data + self->in.len, room);
        if (n > 0) {
            mesh_buf_commit (&self->in, (size_t) n);
            //  Plain TCP: a short read emptied the socket (epoll is level-triggered)
            if (!self->tls && (size_t) n < room)
                return;
            continue;
        }
        if (n == MESH_AGAIN) {
            self->read_want = self->io.want;
            return;
        }
        mock_conn_close (self, n == 0 ? "closed by the client" : "read failed");
    }
}

void
mock_conn_flush (mock_conn_t *self)
{
    while (!self->dead) {
        if (self->websocket)
            mock_ws_frame_pending (self);
        while (mesh_buf_size (&self->out) > 0) {
            ssize_t n = mesh_conn_write (&self->io, mesh_buf_head (&self->out),
                                         mesh_buf_size (&self->out));
            if (n > 0) {
                mesh_buf_consume (&self->out, (size_t) n);
                continue;
            }
            if (n == MESH_AGAIN) {
                self->write_want = self->io.want;
                return;
            }
            mock_conn_close (self, "write failed");
            return;
        }
        self->write_want = 0;
        if (mock_stream_flushed (self))
            continue;                       //  it rendered more
        if (self->dead)
            return;
        if (self->close_after)
            mock_conn_close (self, NULL);
        else
            mesh_buf_trim (&self->out, KEEP_BUFFER_BYTES);
        return;
    }
}

void
mock_conn_close (mock_conn_t *self, const char *why)
{
    if (self->dead)
        return;
    if (why)
        mesh_debug ("fd=%d: %s", self->io.fd, why);
    mock_stream_abort (self);
    mesh_loop_timer_stop (self->worker->loop, &self->stream.timer);
    mesh_loop_fd_remove (self->worker->loop, self->io.fd);
    mesh_conn_close (&self->io);
    self->dead = true;
    mesh_metric_add (self->worker->settings->metrics.connections_active, -1);
}

void
mock_conn_reset (mock_conn_t *self)
{
    struct linger linger = { .l_onoff = 1, .l_linger = 0 };
    setsockopt (self->io.fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
    mock_conn_close (self, "reset_after");
}

//  Writes what is pending and serves queued requests while idle.
static void
s_pump (mock_conn_t *self)
{
    mock_conn_flush (self);
    while (!self->dead && !self->stream.active && !self->close_after) {
        int rc = self->websocket ? mock_ws_next (self) : mock_http_next (self);
        mock_conn_flush (self);
        if (rc <= 0)
            break;
    }
}

void
mock_conn_settle (mock_conn_t *self)
{
    s_pump (self);
    //  Reading stopped on a full buffer: go on once some of it is served
    if (!self->dead && self->read_paused && s_input_held (self) < MOCK_MAX_INPUT_BYTES) {
        self->read_paused = false;
        s_read (self);
        if (!self->dead && self->websocket)
            mock_ws_on_input (self);
        s_pump (self);
    }
    if (self->dead)
        s_conn_free (self);
    else
        s_interest (self);
}

static int
s_on_io (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) loop; (void) fd;
    mock_conn_t *self = arg;
    if (self->io.handshaking) {
        char why [160];
        int rc = mesh_conn_progress (&self->io, why, sizeof why);
        if (rc == MESH_AGAIN) {
            s_interest (self);
            return 0;
        }
        if (rc < 0)
            mock_conn_close (self, why);
    }
    //  TLS may want a read to write, and holds records epoll cannot see
    if (!self->dead && !self->read_paused
    &&  (self->tls || (events & (MESH_READ | MESH_HANGUP))))
        s_read (self);
    if (!self->dead && self->websocket)
        mock_ws_on_input (self);
    mock_conn_settle (self);
    return 0;
}

static void
s_conn_new (mock_worker_t *worker, int fd, bool tls)
{
    mesh_socket_tune (fd);
    mock_conn_t *self = calloc (1, sizeof *self);
    assert (self);
    self->worker = worker;
    mesh_conn_init (&self->io, fd);
    mock_stream_init (&self->stream);
    self->chunked_out = true;
    if (tls && mesh_conn_tls_server (&self->io, worker->settings->tls_ctx) < 0) {
        mesh_warn ("cannot start TLS on a connection");
        mesh_conn_close (&self->io);
        free (self);
        return;
    }
    self->tls = tls;
    self->io.want = MESH_READ;
    if (mesh_loop_fd_add (worker->loop, fd, MESH_READ, s_on_io, self) < 0) {
        mesh_warn ("cannot watch a connection: %s", strerror (errno));
        mesh_conn_close (&self->io);
        free (self);
        return;
    }
    self->next = worker->conns;
    if (worker->conns)
        worker->conns->prev = self;
    worker->conns = self;
    worker->conn_count++;
    mesh_metric_inc (worker->settings->metrics.connections_http);
    mesh_metric_add (worker->settings->metrics.connections_active, 1);
}

static void
s_conn_free (mock_conn_t *self)
{
    mock_worker_t *worker = self->worker;
    assert (self->dead);
    if (self->prev)
        self->prev->next = self->next;
    else
        worker->conns = self->next;
    if (self->next)
        self->next->prev = self->prev;
    worker->conn_count--;
    mesh_buf_free (&self->in);
    mesh_buf_free (&self->out);
    mesh_buf_free (&self->ws_message);
    mesh_buf_free (&self->ws_queue);
    mesh_buf_free (&self->ws_sse);
    mock_stream_free (&self->stream);
    free (self);
    if (worker->draining && worker->conn_count == 0)
        mesh_loop_stop (worker->loop);
}

//  Worker -------------------------------------------------------------------

static void
s_listening (mock_worker_t *self, int events)
{
    mesh_loop_fd_events (self->loop, self->listen_fd, events);
    if (self->tls_listen_fd >= 0)
        mesh_loop_fd_events (self->loop, self->tls_listen_fd, events);
}

static int
s_on_accept_resume (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    mock_worker_t *self = arg;
    if (!self->draining)
        s_listening (self, MESH_READ);
    return 0;
}

static int
s_on_accept (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) events;
    mock_worker_t *self = arg;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int client = accept4 (fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                //  Level-triggered: the backlog would wake us in a loop
                mesh_warn ("accept: %s; pausing %d ms", strerror (errno), ACCEPT_PAUSE_MS);
                s_listening (self, 0);
                mesh_loop_timer_start (loop, &self->accept_timer, ACCEPT_PAUSE_MS,
                                       s_on_accept_resume, self);
            }
            return 0;
        }
        //  The fault switch's mode "close": a connect-level failure
        if (self->settings->fault && mock_fault_on_accept (self->settings->fault)) {
            mesh_debug ("fault: connection closed as accepted");
            mesh_metric_inc (self->settings->metrics.faults_close);
            close (client);
            continue;
        }
        s_conn_new (self, client, fd == self->tls_listen_fd);
    }
    return 0;
}

static int
s_on_drain_deadline (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    mock_worker_t *self = arg;
    mesh_warn ("worker %d: %zu connection(s) still busy after %lld ms; closing them",
               self->index, self->conn_count, (long long) self->settings->drain_ms);
    while (self->conns) {
        mock_conn_close (self->conns, "drain deadline");
        s_conn_free (self->conns);
    }
    return -1;
}

static int
s_on_wake (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) events;
    mock_worker_t *self = arg;
    uint64_t value;
    if (read (fd, &value, sizeof value) != sizeof value || self->draining)
        return 0;
    self->draining = true;
    mesh_loop_fd_remove (loop, self->listen_fd);
    close (self->listen_fd);
    self->listen_fd = -1;
    if (self->tls_listen_fd >= 0) {
        mesh_loop_fd_remove (loop, self->tls_listen_fd);
        close (self->tls_listen_fd);
        self->tls_listen_fd = -1;
    }
    mesh_loop_timer_stop (loop, &self->accept_timer);
    if (self->conn_count == 0)
        return -1;
    mesh_loop_timer_start (loop, &self->drain_timer, self->settings->drain_ms,
                           s_on_drain_deadline, self);
    //  Idle connections go now; busy ones after their response
    mock_conn_t *conn = self->conns;
    while (conn) {
        mock_conn_t *next = conn->next;
        if (!conn->stream.active) {
            if (conn->websocket)
                mock_ws_close (conn, 1001);
            else
                conn->close_after = true;
        }
        mock_conn_settle (conn);
        conn = next;
    }
    return self->conn_count == 0 ? -1 : 0;
}

static void *
s_run (void *arg)
{
    mock_worker_t *self = arg;
    mesh_loop_run (self->loop);
    while (self->conns) {
        mock_conn_close (self->conns, NULL);
        s_conn_free (self->conns);
    }
    return NULL;
}

mock_worker_t *
mock_worker_new (int index, const mock_settings_t *settings, int listen_fd, int tls_listen_fd)
{
    mock_worker_t *self = calloc (1, sizeof *self);
    assert (self);
    self->index = index;
    self->settings = settings;
    self->listen_fd = listen_fd;
    self->tls_listen_fd = tls_listen_fd;
    self->loop = mesh_loop_new ();
    self->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert (self->loop && self->wake_fd >= 0);
    int rc = mesh_loop_fd_add (self->loop, self->wake_fd, MESH_READ, s_on_wake, self);
    rc |= mesh_loop_fd_add (self->loop, listen_fd, MESH_READ, s_on_accept, self);
    if (tls_listen_fd >= 0)
        rc |= mesh_loop_fd_add (self->loop, tls_listen_fd, MESH_READ, s_on_accept, self);
    assert (rc == 0);
    return self;
}

int
mock_worker_start (mock_worker_t *self)
{
    return pthread_create (&self->thread, NULL, s_run, self) == 0 ? 0 : -1;
}

void
mock_worker_drain (mock_worker_t *self)
{
    uint64_t one = 1;
    ssize_t rc = write (self->wake_fd, &one, sizeof one);
    (void) rc;
}

void
mock_worker_join (mock_worker_t *self)
{
    pthread_join (self->thread, NULL);
}

void
mock_worker_destroy (mock_worker_t **self_p)
{
    assert (self_p);
    mock_worker_t *self = *self_p;
    if (!self)
        return;
    assert (!self->conns);
    if (self->listen_fd >= 0)
        close (self->listen_fd);
    if (self->tls_listen_fd >= 0)
        close (self->tls_listen_fd);
    close (self->wake_fd);
    mesh_loop_destroy (&self->loop);
    mesh_buf_free (&self->scratch);
    free (self);
    *self_p = NULL;
}

//  Selftest -----------------------------------------------------------------

//  Reads from fd until buf holds `until` (or the peer closes).
static size_t
s_test_read_until (int fd, char *buf, size_t size, const char *until)
{
    size_t len = 0;
    buf [0] = 0;
    while (!strstr (buf, until) && len < size - 1) {
        ssize_t n = read (fd, buf + len, size - 1 - len);
        if (n <= 0)
            break;
        len += (size_t) n;
        buf [len] = 0;
    }
    return len;
}

static size_t
s_test_count (const char *text, const char *what)
{
    size_t count = 0;
    for (const char *at = text; (at = strstr (at, what)); at++)
        count++;
    return count;
}

void
mock_server_test (bool verbose)
{
    (void) verbose;
    mesh_metrics_t *registry = mesh_metrics_new ();
    mock_settings_t settings = { .keepalive_ms = 1000, .drain_ms = 2000, .ws_chunk_size = 64 };
    mock_metrics_t *m = &settings.metrics;
    m->requests_http = mesh_metrics_counter (registry, "r", NULL, "t=\"http\"");
    m->requests_ws = mesh_metrics_counter (registry, "r", NULL, "t=\"ws\"");
    m->streams_active = mesh_metrics_gauge (registry, "sa", NULL, NULL);
    m->streams_completed = mesh_metrics_counter (registry, "sc", NULL, NULL);
    m->streams_aborted = mesh_metrics_counter (registry, "sb", NULL, NULL);
    m->connections_http = mesh_metrics_counter (registry, "c", NULL, "t=\"http\"");
    m->connections_ws = mesh_metrics_counter (registry, "c", NULL, "t=\"ws\"");
    m->connections_active = mesh_metrics_gauge (registry, "ca", NULL, NULL);
    m->auth_failures = mesh_metrics_counter (registry, "af", NULL, NULL);
    m->faults_status = mesh_metrics_counter (registry, "f", NULL, "m=\"status\"");
    m->faults_close = mesh_metrics_counter (registry, "f", NULL, "m=\"close\"");
    settings.fault = mock_fault_new ();

    //  A worker on an ephemeral port
    int listener = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert (bind (listener, (struct sockaddr *) &addr, sizeof addr) == 0);
    assert (listen (listener, 16) == 0);
    socklen_t addr_len = sizeof addr;
    getsockname (listener, (struct sockaddr *) &addr, &addr_len);
    mock_worker_t *worker = mock_worker_new (0, &settings, listener, -1);
    assert (mock_worker_start (worker) == 0);

    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0);
    //  Two pipelined requests, the second a stream with a chunked body
    const char *body = "{\"model\":\"deepseek-chat\",\"messages\":[{\"role\":\"user\",\"content\":\"hi there\"}]}";
    char request [1024];
    int n = snprintf (request, sizeof request,
        "POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s"
        "POST /chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "10\r\n{\"stream\":true, \r\n%zx\r\n%s\r\n0\r\n\r\n",
        strlen (body), body, strlen (body) - 1, body + 1);
    assert (write (fd, request, (size_t) n) == n);
    char reply [8192];
    s_test_read_until (fd, reply, sizeof reply, "0\r\n\r\n");
    assert (strncmp (reply, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n", 48) == 0);
    assert (strstr (reply, "\"content\":\"Echo: hi there\""));
    assert (strstr (reply, "\"finish_reason\":\"stop\""));
    if (verbose) fprintf (stderr, "%s\n", reply);
    char *second = strstr (reply, "}HTTP/1.1 200 OK\r\n");
    assert (second);
    assert (strstr (second, "Content-Type: text/event-stream; charset=utf-8\r\n"));
    assert (strstr (second, "Transfer-Encoding: chunked\r\n"));
    assert (s_test_count (second, "data: {") == 5);    //  role, 3 deltas, final
    assert (strstr (second, "data: [DONE]\n\n\r\n0\r\n\r\n"));

    //  Unknown path, wrong method, bad JSON: the connection stays usable
    const char *more =
        "GET /nowhere HTTP/1.1\r\n\r\n"
        "DELETE /v1/models HTTP/1.1\r\n\r\n"
        "POST /chat/completions HTTP/1.1\r\nContent-Length: 1\r\n\r\n{"
        "GET /models HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert (write (fd, more, strlen (more)) == (ssize_t) strlen (more));
    s_test_read_until (fd, reply, sizeof reply, "deepseek-reasoner");
    assert (strstr (reply, "HTTP/1.1 404 "));
    assert (strstr (reply, "HTTP/1.1 405 "));
    assert (strstr (reply, "HTTP/1.1 400 "));
    assert (strstr (reply, "\"type\":\"invalid_request_error\",\"param\":null"));
    assert (strstr (reply, "Connection: close\r\n"));
    assert (read (fd, reply, sizeof reply) == 0);       //  closed as asked
    close (fd);

    //  A stream the client leaves is counted as aborted; draining waits
    //  for nothing then
    fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0);
    const char *slow = "{\"model\":\"m\",\"stream\":true,\"mock\":{\"tokens\":50,\"delay_ms\":20},"
                       "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    n = snprintf (request, sizeof request,
                  "POST /chat/completions HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s",
                  strlen (slow), slow);
    assert (write (fd, request, (size_t) n) == n);
    s_test_read_until (fd, reply, sizeof reply, "Echo: x");
    close (fd);
    for (int i = 0; i < 200 && mesh_metric_value (m->streams_aborted) < 1; i++)
        usleep (5000);
    assert (mesh_metric_value (m->streams_aborted) == 1);
    assert (mesh_metric_value (m->streams_completed) == 2);
    assert (mesh_metric_value (m->streams_active) == 0);
    assert (mesh_metric_value (m->requests_http) == 4);
    assert (mesh_metric_value (m->connections_http) == 2);

    //  The fault switch: one 503 with Retry-After, then the reply again;
    //  mode close ends a new connection without a byte
    mock_fault_spec_t fault = { .mode = MOCK_FAULT_STATUS, .status = 503, .retry_after = 4,
                                .count = 1 };
    mock_fault_set (settings.fault, &fault);
    fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0);
    n = snprintf (request, sizeof request,
                  "POST /chat/completions HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s",
                  strlen (body), body);
    assert (write (fd, request, (size_t) n) == n);
    s_test_read_until (fd, reply, sizeof reply, "}}");
    assert (strncmp (reply, "HTTP/1.1 503 ", 13) == 0 && strstr (reply, "\r\nRetry-After: 4\r\n"));
    assert (write (fd, request, (size_t) n) == n);
    s_test_read_until (fd, reply, sizeof reply, "\"usage\"");
    assert (strncmp (reply, "HTTP/1.1 200 ", 13) == 0);
    close (fd);
    fault = (mock_fault_spec_t) { .mode = MOCK_FAULT_CLOSE, .retry_after = -1, .count = -1 };
    mock_fault_set (settings.fault, &fault);
    fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0);
    assert (read (fd, reply, sizeof reply) <= 0);
    close (fd);
    assert (mesh_metric_value (m->faults_status) == 1);
    assert (mesh_metric_value (m->faults_close) == 1);
    assert (mesh_metric_value (m->connections_http) == 3);

    mock_worker_drain (worker);
    mock_worker_join (worker);
    assert (mesh_metric_value (m->connections_active) == 0);
    mock_worker_destroy (&worker);
    mock_worker_destroy (&worker);
    mock_fault_destroy (&settings.fault);
    mesh_metrics_destroy (&registry);
}
