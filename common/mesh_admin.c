/*  mesh_admin: /healthz, /readyz, /metrics and service routes over HTTP/1.1. */
#include "mesh_admin.h"
#include "mesh_conn.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ROUTES 8
#define MAX_HEAD_BYTES (16 * 1024)
#define MAX_BODY_BYTES (1024 * 1024)

typedef struct {
    char *prefix;
    mesh_admin_fn *fn;
    void *arg;
} route_t;

struct mesh_admin_t {
    mesh_metrics_t *metrics;
    mesh_admin_ready_fn *ready_fn;
    void *ready_arg;
    route_t routes [MAX_ROUTES];
    size_t route_count;
    mesh_loop_t *loop;
    int listen_fd;
    int64_t idle_ms;
    size_t clients;
    mesh_timer_t accept_timer;  //  accepting again after EMFILE
    int64_t refusal_logged_ms;
};

typedef struct client_t client_t;

//  A response a route will give later
struct mesh_admin_pending_t {
    client_t *client;           //  NULL once the client has gone
    size_t consumed;            //  the request's bytes in client->in
    bool head_only;
};

//  One admin client connection
struct client_t {
    mesh_admin_t *admin;
    int fd;
    mesh_buf_t in;
    mesh_buf_t out;
    bool close_after;
    mesh_admin_pending_t *pending;      //  the response being waited for
    mesh_timer_t idle_timer;
};

mesh_admin_t *
mesh_admin_new (mesh_metrics_t *metrics)
{
    mesh_admin_t *self = calloc (1, sizeof *self);
    assert (self);
    self->metrics = metrics;
    self->listen_fd = -1;
    self->idle_ms = MESH_ADMIN_IDLE_MS;
    return self;
}

void
mesh_admin_destroy (mesh_admin_t **self_p)
{
    assert (self_p);
    mesh_admin_t *self = *self_p;
    if (!self)
        return;
    if (self->listen_fd >= 0) {
        mesh_loop_timer_stop (self->loop, &self->accept_timer);
        mesh_loop_fd_remove (self->loop, self->listen_fd);
        close (self->listen_fd);
    }
    for (size_t i = 0; i < self->route_count; i++)
        free (self->routes [i].prefix);
    free (self);
    *self_p = NULL;
}

void
mesh_admin_set_ready (mesh_admin_t *self, mesh_admin_ready_fn *fn, void *arg)
{
    self->ready_fn = fn;
    self->ready_arg = arg;
}

void
mesh_admin_route (mesh_admin_t *self, const char *prefix, mesh_admin_fn *fn, void *arg)
{
    assert (self->route_count < MAX_ROUTES);
    self->routes [self->route_count++] = (route_t) { strdup (prefix), fn, arg };
}

void
mesh_admin_handle (mesh_admin_t *self, const mesh_admin_request_t *request,
                   mesh_admin_response_t *response)
{
    mesh_buf_init (&response->body);
    response->status = 200;
    response->content_type = "text/plain; charset=utf-8";
    bool get = mesh_memeq (request->method, request->method_len, "GET")
            || mesh_memeq (request->method, request->method_len, "HEAD");

    for (size_t i = 0; i < self->route_count; i++) {
        size_t len = strlen (self->routes [i].prefix);
        if (request->path_len >= len && memcmp (request->path, self->routes [i].prefix, len) == 0) {
            self->routes [i].fn (self->routes [i].arg, request, response);
            return;
        }
    }
    if (mesh_memeq (request->path, request->path_len, "/healthz")) {
        if (get)
            mesh_buf_append_str (&response->body, "ok\n");
        else
            response->status = 405;
    }
    else
    if (mesh_memeq (request->path, request->path_len, "/readyz")) {
        if (!get)
            response->status = 405;
        else
        if (!self->ready_fn || self->ready_fn (self->ready_arg, &response->body))
            mesh_buf_append_str (&response->body, "ready\n");
        else {
            response->status = 503;
            mesh_buf_append_str (&response->body, "\n");
        }
    }
    else
    if (mesh_memeq (request->path, request->path_len, "/metrics")) {
        if (get && self->metrics) {
            response->content_type = "text/plain; version=0.0.4; charset=utf-8";
            mesh_metrics_render (self->metrics, &response->body);
        }
        else
            response->status = get ? 404 : 405;
    }
    else {
        response->status = 404;
        mesh_buf_append_str (&response->body, "not found\n");
    }
    if (response->status == 405)
        mesh_buf_append_str (&response->body, "method not allowed\n");
}

//  Transport on a mesh_loop -------------------------------------------------

void
mesh_admin_set_idle_ms (mesh_admin_t *self, int64_t idle_ms)
{
    self->idle_ms = idle_ms;
}

static void
s_client_close (client_t *client)
{
    if (client->pending)
        client->pending->client = NULL;
    mesh_loop_timer_stop (client->admin->loop, &client->idle_timer);
    client->admin->clients--;
    mesh_loop_fd_remove (client->admin->loop, client->fd);
    close (client->fd);
    mesh_buf_free (&client->in);
    mesh_buf_free (&client->out);
    free (client);
}

static void
s_respond (client_t *client, int status, const char *content_type, const mesh_buf_t *body,
           bool head_only)
{
    mesh_buf_printf (&client->out,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n",
                     status, mesh_http_reason (status), content_type, mesh_buf_size (body),
                     client->close_after ? "Connection: close\r\n" : "");
    if (!head_only)
        mesh_buf_append (&client->out, mesh_buf_head (body), mesh_buf_size (body));
}

//  Parses and answers every complete request in the input buffer.
static int
s_client_requests (client_t *client)
{
    while (mesh_buf_size (&client->in) > 0 && !client->close_after && !client->pending) {
        mesh_http_head_t head;
        const char *data = mesh_buf_head (&client->in);
        size_t size = mesh_buf_size (&client->in);
        int head_len = mesh_http_parse_request (data, size, MAX_HEAD_BYTES, &head);
        if (head_len == 0)
            return 0;
        mesh_buf_t message;
        mesh_buf_init (&message);
        if (head_len < 0 || head.chunked || head.content_length > MAX_BODY_BYTES) {
            client->close_after = true;
            mesh_buf_append_str (&message, head_len < 0 ? "bad request\n" : "body too large\n");
            s_respond (client, head_len < 0 ? 400 : 413, "text/plain", &message, false);
            mesh_buf_free (&message);
            return 0;
        }
        size_t body_len = head.content_length > 0 ? (size_t) head.content_length : 0;
        if (size < (size_t) head_len + body_len)
            return 0;                       //  body still arriving
        mesh_admin_request_t request = {
            .method = head.method, .method_len = head.method_len,
            .path = head.target, .path_len = head.target_len,
            .query = "", .query_len = 0,
            .body = data + head_len, .body_len = body_len
        };
        const char *query = memchr (head.target, '?', head.target_len);
        if (query) {
            request.path_len = (size_t) (query - head.target);
            request.query = query + 1;
            request.query_len = head.target_len - request.path_len - 1;
        }
        request.authorization = mesh_http_header (&head, "authorization", &request.authorization_len);
        request.transport = client;
        client->close_after = !head.keep_alive;
        mesh_admin_response_t response;
        mesh_admin_handle (client->admin, &request, &response);
        if (client->pending) {
            //  The route answers later; the request stays in the buffer
            client->pending->consumed = (size_t) head_len + body_len;
            client->pending->head_only = mesh_memeq (head.method, head.method_len, "HEAD");
            mesh_buf_free (&response.body);
            return 0;
        }
        s_respond (client, response.status, response.content_type, &response.body,
                   mesh_memeq (head.method, head.method_len, "HEAD"));
        mesh_buf_free (&response.body);
        mesh_buf_consume (&client->in, (size_t) head_len + body_len);
    }
    return 0;
}

static int s_client_flush (client_t *client);
static int s_on_idle (mesh_loop_t *loop, mesh_timer_t *timer, void *arg);

static int
s_on_client (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) loop;
    client_t *client = arg;
    if (events & (MESH_READ | MESH_HANGUP)) {
        mesh_loop_timer_start (client->admin->loop, &client->idle_timer, client->admin->idle_ms,
                               s_on_idle, client);
        while (true) {
            char *at = mesh_buf_reserve (&client->in, 4096);
            ssize_t n = recv (fd, at, 4096, 0);
            if (n > 0) {
                mesh_buf_commit (&client->in, (size_t) n);
                if (mesh_buf_size (&client->in) > MAX_HEAD_BYTES + MAX_BODY_BYTES) {
                    s_client_close (client);
                    return 0;
                }
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            s_client_close (client);        //  peer closed or failed
            return 0;
        }
        s_client_requests (client);
    }
    s_client_flush (client);
    return 0;
}

//  Writes what it can; closes a client done with.  Returns -1 if it closed.
static int
s_client_flush (client_t *client)
{
    int fd = client->fd;
    while (mesh_buf_size (&client->out) > 0) {
        ssize_t n = send (fd, mesh_buf_head (&client->out), mesh_buf_size (&client->out),
                          MSG_NOSIGNAL);
        if (n > 0) {
            mesh_buf_consume (&client->out, (size_t) n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        s_client_close (client);
        return -1;
    }
    if (mesh_buf_size (&client->out) == 0 && client->close_after && !client->pending) {
        s_client_close (client);
        return -1;
    }
    mesh_loop_fd_events (client->admin->loop, fd,
                         MESH_READ | (mesh_buf_size (&client->out) ? MESH_WRITE : 0));
    return 0;
}

mesh_admin_pending_t *
mesh_admin_defer (const mesh_admin_request_t *request)
{
    client_t *client = request->transport;
    if (!client || client->pending)
        return NULL;
    client->pending = calloc (1, sizeof *client->pending);
    assert (client->pending);
    client->pending->client = client;
    return client->pending;
}

void
mesh_admin_complete (mesh_admin_pending_t *pending, int status, const char *content_type,
                     mesh_buf_t *body)
{
    client_t *client = pending->client;
    if (client) {
        client->pending = NULL;
        s_respond (client, status, content_type, body, pending->head_only);
        mesh_buf_consume (&client->in, pending->consumed);
        s_client_requests (client);     //  those pipelined behind it
        s_client_flush (client);
    }
    mesh_buf_free (body);
    free (pending);
}

void
mesh_admin_stream_begin (mesh_admin_pending_t *pending, int status, const char *content_type)
{
    client_t *client = pending->client;
    if (!client)
        return;
    client->close_after = true;     //  the end of the stream is the end of the body
    mesh_buf_printf (&client->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nCache-Control: no-cache\r\n"
                     "Connection: close\r\n\r\n", status, mesh_http_reason (status), content_type);
    s_client_flush (client);
}

int
mesh_admin_stream_write (mesh_admin_pending_t *pending, const char *data, size_t len)
{
    client_t *client = pending->client;
    if (!client)
        return -1;
    if (mesh_buf_size (&client->out) + len > MESH_ADMIN_MAX_STREAM_BYTES) {
        s_client_close (client);        //  too slow a reader: let it go
        return -1;
    }
    mesh_buf_append (&client->out, data, len);
    return s_client_flush (client) < 0 ? -1 : 0;
}

void
mesh_admin_stream_end (mesh_admin_pending_t *pending)
{
    client_t *client = pending->client;
    if (client) {
        client->pending = NULL;
        s_client_flush (client);        //  closes once the rest is out
    }
    free (pending);
}

//  No request for the idle time: closed, unless a response is owed
static int
s_on_idle (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) timer;
    client_t *client = arg;
    if (client->pending || mesh_buf_size (&client->out))
        mesh_loop_timer_start (loop, &client->idle_timer, client->admin->idle_ms, s_on_idle, client);
    else
        s_client_close (client);
    return 0;
}

static int
s_on_accept_again (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) timer;
    mesh_admin_t *self = arg;
    mesh_loop_fd_events (loop, self->listen_fd, MESH_READ);
    return 0;
}

static void
s_log_refusal (mesh_admin_t *self, const char *why)
{
    int64_t now = mesh_loop_now_ms (self->loop);
    if (now - self->refusal_logged_ms >= 1000) {
        self->refusal_logged_ms = now;
        mesh_warn ("admin port: %s", why);
    }
}

static int
s_on_accept (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) events;
    mesh_admin_t *self = arg;
    while (true) {
        int client_fd = accept4 (fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (client_fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                //  The connection stays queued; waking again at once for
                //  it would spin
                s_log_refusal (self, "out of file descriptors: not accepting for 100 ms");
                mesh_loop_fd_events (loop, fd, 0);
                mesh_loop_timer_start (loop, &self->accept_timer, 100, s_on_accept_again, self);
            }
            return 0;
        }
        if (self->clients >= MESH_ADMIN_MAX_CLIENTS) {
            close (client_fd);
            s_log_refusal (self, "too many connections: closing new ones");
            continue;
        }
        client_t *client = calloc (1, sizeof *client);
        assert (client);
        client->admin = self;
        client->fd = client_fd;
        if (mesh_loop_fd_add (loop, client_fd, MESH_READ, s_on_client, client) < 0) {
            close (client_fd);
            free (client);
            continue;
        }
        self->clients++;
        mesh_loop_timer_start (loop, &client->idle_timer, self->idle_ms, s_on_idle, client);
    }
}

int
mesh_admin_listen (mesh_admin_t *self, mesh_loop_t *loop, const char *address,
                   char *why, size_t why_size)
{
    self->loop = loop;
    self->listen_fd = mesh_tcp_listen (address, false, why, why_size);
    if (self->listen_fd < 0)
        return -1;
    return mesh_loop_fd_add (loop, self->listen_fd, MESH_READ, s_on_accept, self);
}

//  Selftest -----------------------------------------------------------------

static bool
s_test_not_ready (void *arg, mesh_buf_t *why)
{
    (void) arg;
    mesh_buf_append_str (why, "no connectors");
    return false;
}

static int
s_test_route (void *arg, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    (void) arg;
    response->status = 201;
    mesh_buf_printf (&response->body, "%.*s %.*s", (int) request->body_len, request->body,
                     (int) request->query_len, request->query);
    return 0;
}

static mesh_admin_pending_t *s_test_pending;

static int
s_test_later (void *arg, const mesh_admin_request_t *request, mesh_admin_response_t *response)
{
    (void) arg;
    (void) response;
    s_test_pending = mesh_admin_defer (request);
    assert (s_test_pending);
    return 0;
}

static mesh_admin_request_t
s_test_request (const char *method, const char *path)
{
    return (mesh_admin_request_t) { .method = method, .method_len = strlen (method),
                                    .path = path, .path_len = strlen (path),
                                    .query = "", .body = "" };
}

void
mesh_admin_test (bool verbose)
{
    (void) verbose;
    mesh_metrics_t *metrics = mesh_metrics_new ();
    mesh_metric_inc (mesh_metrics_counter (metrics, "seekmesh_test_total", "Test.", NULL));
    mesh_admin_t *admin = mesh_admin_new (metrics);
    mesh_admin_response_t response;

    mesh_admin_request_t request = s_test_request ("GET", "/healthz");
    mesh_admin_handle (admin, &request, &response);
    assert (response.status == 200);
    mesh_buf_free (&response.body);

    request = s_test_request ("GET", "/readyz");
    mesh_admin_handle (admin, &request, &response);
    assert (response.status == 200);
    mesh_buf_free (&response.body);
    mesh_admin_set_ready (admin, s_test_not_ready, NULL);
    mesh_admin_handle (admin, &request, &response);
    assert (response.status == 503);
    assert (memmem (response.body.data, response.body.len, "no connectors", 13));
    mesh_buf_free (&response.body);

    request = s_test_request ("GET", "/metrics");
    mesh_admin_handle (admin, &request, &response);
    assert (response.status == 200);
    assert (memmem (response.body.data, response.body.len, "seekmesh_test_total 1", 21));
    mesh_buf_free (&response.body);

    request = s_test_request ("POST", "/healthz");
    mesh_admin_handle (admin, &request, &response);
    assert (response.status == 405);
    mesh_buf_free (&response.body);
    request = s_test_request ("GET", "/nothing");
    mesh_admin_handle (admin, &request, &response);
    assert (response.status == 404);
    mesh_buf_free (&response.body);

    mesh_admin_route (admin, "/admin/", s_test_route, NULL);
    request = s_test_request ("POST", "/admin/models");
    request.body = "{}";
    request.body_len = 2;
    mesh_admin_handle (admin, &request, &response);
    assert (response.status == 201);
    assert (mesh_memeq (response.body.data, response.body.len, "{} "));
    mesh_buf_free (&response.body);

    //  Over a socket pair, two pipelined requests get two responses
    mesh_loop_t *loop = mesh_loop_new ();
    admin->loop = loop;
    int pair [2];
    assert (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) == 0);
    client_t *client = calloc (1, sizeof *client);
    client->admin = admin;
    client->fd = pair [0];
    assert (mesh_loop_fd_add (loop, pair [0], MESH_READ, s_on_client, client) == 0);
    const char *requests = "GET /healthz HTTP/1.1\r\n\r\nGET /admin/x?q=1 HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert (write (pair [1], requests, strlen (requests)) == (ssize_t) strlen (requests));
    s_on_client (loop, pair [0], MESH_READ, client);       //  closes after the second
    char reply [1024] = "";
    ssize_t n = read (pair [1], reply, sizeof reply - 1);
    assert (n > 0);
    assert (strstr (reply, "HTTP/1.1 200 OK\r\n"));
    assert (strstr (reply, "HTTP/1.1 201 "));
    assert (strstr (reply, "\r\n\r\n q=1"));
    assert (read (pair [1], reply, sizeof reply) == 0);   //  closed as asked
    close (pair [1]);

    //  A deferred answer holds back the request pipelined behind it
    mesh_admin_route (admin, "/later", s_test_later, NULL);
    assert (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) == 0);
    client = calloc (1, sizeof *client);
    client->admin = admin;
    client->fd = pair [0];
    assert (mesh_loop_fd_add (loop, pair [0], MESH_READ, s_on_client, client) == 0);
    requests = "GET /later HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert (write (pair [1], requests, strlen (requests)) == (ssize_t) strlen (requests));
    s_on_client (loop, pair [0], MESH_READ, client);
    assert (s_test_pending && read (pair [1], reply, sizeof reply) < 0);   //  nothing yet
    mesh_buf_t later;
    mesh_buf_init (&later);
    mesh_buf_append_str (&later, "later");
    mesh_admin_complete (s_test_pending, 202, "text/plain", &later);
    memset (reply, 0, sizeof reply);
    n = read (pair [1], reply, sizeof reply - 1);
    assert (n > 0);
    char *first = strstr (reply, "HTTP/1.1 202 ");
    char *second = strstr (reply, "HTTP/1.1 200 ");
    assert (first && second && first < second && strstr (reply, "\r\n\r\nlater"));
    assert (read (pair [1], reply, sizeof reply) == 0);
    close (pair [1]);

    //  A client that leaves before the answer: completing only frees
    assert (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) == 0);
    client = calloc (1, sizeof *client);
    client->admin = admin;
    client->fd = pair [0];
    assert (mesh_loop_fd_add (loop, pair [0], MESH_READ, s_on_client, client) == 0);
    assert (write (pair [1], "GET /later HTTP/1.1\r\n\r\n", 24) == 24);
    s_on_client (loop, pair [0], MESH_READ, client);
    close (pair [1]);
    s_on_client (loop, pair [0], MESH_READ, client);        //  sees the close
    mesh_buf_init (&later);
    mesh_admin_complete (s_test_pending, 200, "text/plain", &later);

    //  A stream: the head at once, pieces as they come, closed at the end
    assert (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) == 0);
    client = calloc (1, sizeof *client);
    client->admin = admin;
    client->fd = pair [0];
    admin->clients++;
    assert (mesh_loop_fd_add (loop, pair [0], MESH_READ, s_on_client, client) == 0);
    assert (write (pair [1], "GET /later HTTP/1.1\r\n\r\n", 24) == 24);
    s_on_client (loop, pair [0], MESH_READ, client);
    mesh_admin_stream_begin (s_test_pending, 200, "text/event-stream");
    assert (mesh_admin_stream_write (s_test_pending, "data: 1\n\n", 9) == 0);
    memset (reply, 0, sizeof reply);
    n = read (pair [1], reply, sizeof reply - 1);
    assert (n > 0 && strstr (reply, "HTTP/1.1 200 ") && strstr (reply, "text/event-stream")
            && !strstr (reply, "Content-Length") && strstr (reply, "\r\n\r\ndata: 1\n\n"));
    mesh_admin_stream_end (s_test_pending);
    assert (read (pair [1], reply, sizeof reply) == 0);
    close (pair [1]);
    mesh_loop_destroy (&loop);
    admin->loop = NULL;

    mesh_admin_destroy (&admin);
    mesh_admin_destroy (&admin);
    mesh_metrics_destroy (&metrics);
}
