/*  connector_testing: see connector_testing.h.                            */
#include "connector_testing.h"
#include "connector_main.h"

#include "mesh_log.h"
#include "mesh_settings.h"
#include "mesh_util.h"
#include "mesh_zmq.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

//  The upstream -------------------------------------------------------------

static void *
s_upstream (void *arg)
{
    connector_harness_t *self = arg;
    while (!self->stop) {
        struct pollfd fd = { self->listener, POLLIN, 0 };
        if (poll (&fd, 1, 20) <= 0)
            continue;
        int client = accept (self->listener, NULL, NULL);
        if (client < 0)
            continue;
        self->accepted++;
        self->serve (client, self->serve_arg);
        close (client);
    }
    return NULL;
}

size_t
connector_testing_read_request (int fd, char *buf, size_t size)
{
    size_t len = 0;
    while (len < size - 1) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll (&p, 1, 2000) <= 0)
            return 0;
        ssize_t n = read (fd, buf + len, size - 1 - len);
        if (n <= 0)
            return 0;
        len += (size_t) n;
        buf [len] = 0;
        char *end = strstr (buf, "\r\n\r\n");
        if (!end)
            continue;
        const char *length = strcasestr (buf, "content-length:");
        size_t body = length && length < end ? (size_t) atol (length + 15) : 0;
        if (len >= (size_t) (end + 4 - buf) + body)
            return len;
    }
    return len;
}

void
connector_testing_write (int fd, const char *text, int ms)
{
    size_t len = strlen (text);
    while (len) {
        ssize_t n = write (fd, text, len);
        if (n <= 0)
            return;
        text += n;
        len -= (size_t) n;
    }
    if (ms)
        usleep ((useconds_t) ms * 1000);
}

//  The connector and its peers ------------------------------------------------

static void
s_bind_any (void *socket, char *endpoint, size_t size)
{
    assert (zmq_bind (socket, "tcp://127.0.0.1:*") == 0);
    size_t len = size;
    zmq_getsockopt (socket, ZMQ_LAST_ENDPOINT, endpoint, &len);
}

static void
s_at_router (connector_harness_t *self, const mesh_msg_t *msg)
{
    if (msg->type == MESH_MSG_FAIL && mesh_streq (msg->id, self->id)) {
        self->last = MESH_MSG_FAIL;
        self->status = msg->status;
        self->retry_after_ms = msg->retry_after_ms;
        snprintf (self->err_code, sizeof self->err_code, "%s", msg->err_code);
    }
    if (msg->type == MESH_MSG_DONE && mesh_streq (msg->id, self->id)) {
        self->done = true;
        snprintf (self->done_outcome, sizeof self->done_outcome, "%s", msg->outcome);
    }
}

static void
s_at_ingress (connector_harness_t *self, const mesh_msg_t *msg)
{
    if (!mesh_streq (msg->id, self->id))
        return;
    if (msg->type == MESH_MSG_HEAD)
        self->heads++;
    else
    if (msg->type == MESH_MSG_CHUNK && !(msg->flags & MESH_CHUNK_COMMENT)) {
        mesh_buf_append (&self->chunks, msg->data.data, msg->data.size);
        mesh_buf_append (&self->chunks, "\n", 1);
    }
    else
    if (msg->type == MESH_MSG_END || msg->type == MESH_MSG_ERROR) {
        self->last = msg->type;
        self->status = msg->status;
        if (msg->type == MESH_MSG_ERROR)
            snprintf (self->err_code, sizeof self->err_code, "%s", msg->err_code);
        else {
            self->prompt_tokens = msg->prompt_tokens;
            mesh_buf_append (&self->data, msg->data.data, msg->data.size);
        }
        mesh_buf_append (&self->data, "", 1);
    }
}

//  A message, or each one of a BATCH
static void
s_take (connector_harness_t *self, const mesh_msg_t *msg, void (*take) (connector_harness_t *, const mesh_msg_t *))
{
    if (msg->type != MESH_MSG_BATCH) {
        take (self, msg);
        return;
    }
    size_t offset = 0;
    mesh_bytes_t part;
    char why [128];
    while (mesh_msg_batch_next (msg->data, &offset, &part) == 1) {
        mesh_msg_t one;
        assert (mesh_msg_decode (&one, part.data, part.size, why, sizeof why) == 0);
        take (self, &one);
    }
}

//  Takes what arrived at the router and the ingress; true once the
//  request ended
static bool
s_collect (connector_harness_t *self)
{
    mesh_inbox_t inbox;
    char why [128];
    while (mesh_msg_recv (self->router, &inbox, true, why, sizeof why) == 1) {
        if (!self->identity_size) {
            memcpy (self->identity, inbox.identity, inbox.identity_size);
            self->identity_size = inbox.identity_size;
        }
        s_take (self, &inbox.msg, s_at_router);
        mesh_inbox_close (&inbox);
    }
    while (mesh_msg_recv (self->ingress, &inbox, false, why, sizeof why) == 1) {
        s_take (self, &inbox.msg, s_at_ingress);
        mesh_inbox_close (&inbox);
    }
    return self->last != 0;
}

typedef struct {
    connector_harness_t *self;
    bool (*cond) (connector_harness_t *self);
    int64_t deadline_ms;
} wait_t;

static int
s_on_check (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    wait_t *wait = arg;
    if (wait->cond (wait->self) || mesh_loop_now_ms (loop) >= wait->deadline_ms)
        return -1;
    mesh_loop_timer_start (loop, timer, 2, s_on_check, wait);
    return 0;
}

static bool
s_run_until (connector_harness_t *self, bool (*cond) (connector_harness_t *), int ms)
{
    wait_t wait = { self, cond, mesh_loop_now_ms (self->loop) + ms };
    mesh_timer_t timer = { 0 };
    mesh_loop_timer_start (self->loop, &timer, 0, s_on_check, &wait);
    mesh_loop_run (self->loop);
    mesh_loop_timer_stop (self->loop, &timer);
    return cond (self);
}

static bool
s_joined (connector_harness_t *self)
{
    s_collect (self);
    return self->identity_size > 0;
}

connector_harness_t *
connector_harness_new (const char *scheme, connector_serve_fn *serve, void *arg)
{
    connector_harness_t *self = calloc (1, sizeof *self);
    assert (self);
    self->serve = serve;
    self->serve_arg = arg;
    self->listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert (bind (self->listener, (struct sockaddr *) &addr, sizeof addr) == 0);
    assert (listen (self->listener, 16) == 0);
    socklen_t len = sizeof addr;
    getsockname (self->listener, (struct sockaddr *) &addr, &len);
    self->port = ntohs (addr.sin_port);
    pthread_create (&self->thread, NULL, s_upstream, self);

    self->ctx = zmq_ctx_new ();
    self->router = mesh_zmq_socket (self->ctx, ZMQ_ROUTER);
    self->ingress = mesh_zmq_socket (self->ctx, ZMQ_PULL);
    char router_endpoint [128];
    s_bind_any (self->router, router_endpoint, sizeof router_endpoint);
    s_bind_any (self->ingress, self->reply_to, sizeof self->reply_to);
    char text [1024];
    snprintf (text, sizeof text,
              "{\"connector\":{\"routers\":[\"%s\"],\"ws_pool_size\":1,\"done_flush_ms\":0,"
              "\"first_byte_timeout_ms\":3000,\"idle_timeout_ms\":3000},"
              "\"models\":[{\"name\":\"m\",\"endpoint\":\"%s://127.0.0.1:%d/v1/chat/completions\","
              "\"auth\":{\"type\":\"none\"}}]}", router_endpoint, scheme, self->port);
    char why [512];
    self->config = mesh_config_parse (text, strlen (text), "test.json", why, sizeof why);
    assert (self->config && mesh_settings_check (self->config) == 0);
    self->loop = mesh_loop_new ();
    self->metrics = mesh_metrics_new ();
    self->connector = connector_new (self->config, self->ctx, self->loop, self->metrics, why, sizeof why);
    assert (self->connector);
    assert (s_run_until (self, s_joined, 3000));
    return self;
}

void
connector_harness_destroy (connector_harness_t **self_p)
{
    connector_harness_t *self = *self_p;
    if (!self)
        return;
    connector_destroy (&self->connector);
    zmq_close (self->router);
    zmq_close (self->ingress);
    zmq_ctx_term (self->ctx);
    mesh_metrics_destroy (&self->metrics);
    mesh_loop_destroy (&self->loop);
    mesh_config_destroy (&self->config);
    self->stop = true;
    pthread_join (self->thread, NULL);
    close (self->listener);
    mesh_buf_free (&self->chunks);
    mesh_buf_free (&self->data);
    free (self);
    *self_p = NULL;
}

//  FAIL replaces ERROR and DONE; the rest end with a DONE too
static bool
s_ended (connector_harness_t *self)
{
    return s_collect (self) && (self->last == MESH_MSG_FAIL || self->done);
}

bool
connector_harness_request (connector_harness_t *self, bool stream, const char *body, int ms)
{
    mesh_buf_reset (&self->chunks);
    mesh_buf_reset (&self->data);
    self->heads = 0;
    self->last = 0;
    self->status = 0;
    self->retry_after_ms = 0;
    self->err_code [0] = 0;
    self->prompt_tokens = 0;
    self->done = false;
    self->done_outcome [0] = 0;
    mesh_id_new (self->id);
    mesh_msg_t msg;
    mesh_msg_init (&msg, MESH_MSG_DISPATCH, self->id);
    msg.attempt = 1;
    msg.token = 1;
    snprintf (msg.reply_to, sizeof msg.reply_to, "%s", self->reply_to);
    snprintf (msg.model, sizeof msg.model, "m");
    snprintf (msg.requested, sizeof msg.requested, "m");
    msg.stream = stream;
    msg.body = (mesh_bytes_t) { body, strlen (body) };
    assert (mesh_msg_send (self->router, &msg, self->identity, self->identity_size, 0) == 0);
    return s_run_until (self, s_ended, ms);
}
