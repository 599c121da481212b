/*  connector_pool: upstream connections, pooled per endpoint.

    HTTP(S) pools are keyed by scheme, host, port and CA file, so models on
    one endpoint share keep-alive connections; credentials travel per
    request.  WebSocket pools are keyed by endpoint and credentials, which
    travel on the upgrade: each keeps ws_pool_size connections warm,
    reconnects with backoff, pings them and drops one that misses a pong.
    A pool copies what it needs from the registry, so a live registry
    update never leaves it pointing into a registry that is gone; a
    WebSocket pool the new registry no longer names is retired: it stops
    reconnecting and closes its idle connections.

    A request asks for a connection (pools_acquire); it gets an idle one at
    once, or waits in the pool's queue while a new one connects.  When a
    response ends the connection goes back to the pool if it can carry
    another request.  Reactor thread only.                                  */
#include "connector.h"
#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK (64 * 1024)

//  Reads land here first and only what arrived is copied to the
//  connection's buffer, so an idle or slow stream does not hold a read
//  buffer's worth of memory (10,000 streams × 16 KiB would be 160 MiB).
//  Reactor thread only.
static char s_read_buf [READ_CHUNK];
#define MAX_IDLE_PER_POOL 1024

struct pool_t {
    pools_t *pools;
    char key [1200];            //  never holds a credential: it is logged
    mesh_url_t url;
    char *ca_file;              //  NULL: the system store
    char *auth_line;            //  WebSocket pools: the upgrade's credential
    bool retired;               //  no longer in the registry
    bool tls;
    bool websocket;
    SSL_CTX *tls_ctx;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    bool resolved;
    bool resolving;
    upconn_t *conns;            //  every connection, idle ones first
    size_t count;
    size_t idle;
    size_t opening;             //  resolving, connecting or upgrading
    creq_t *waiting;            //  requests waiting for a connection
    creq_t *waiting_tail;
    size_t waiting_count;
    int64_t backoff_ms;         //  WebSocket reconnects after failures
    mesh_timer_t maintain_timer;
};

struct pools_t {
    connector_t *connector;
    mesh_map_t *pools;          //  key -> pool_t
    size_t connections;
    mesh_metric_t *opened;
    mesh_metric_t *reused;
    mesh_metric_t *failed;
    mesh_metric_t *open_gauge;
};

static void s_open (pool_t *pool);
static void s_maintain (pool_t *pool);
static int  s_on_conn_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg);
static void s_set_interest (upconn_t *conn);
static int  s_flush (upconn_t *conn);
static void s_broken (upconn_t *conn, const char *why);

//  Lists ---------------------------------------------------------------------

static void
s_link (pool_t *pool, upconn_t *conn, bool front)
{
    if (front || !pool->conns) {
        conn->prev = NULL;
        conn->next = pool->conns;
        if (pool->conns)
            pool->conns->prev = conn;
        pool->conns = conn;
    }
    else {
        //  Busy and opening connections go to the back, behind idle ones
        upconn_t *tail = pool->conns;
        while (tail->next)
            tail = tail->next;
        tail->next = conn;
        conn->prev = tail;
        conn->next = NULL;
    }
}

static void
s_unlink (pool_t *pool, upconn_t *conn)
{
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        pool->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    conn->prev = conn->next = NULL;
}

static void
s_wait_push (pool_t *pool, creq_t *req)
{
    req->wait_next = NULL;
    req->waiting = true;
    if (pool->waiting_tail)
        pool->waiting_tail->wait_next = req;
    else
        pool->waiting = req;
    pool->waiting_tail = req;
    pool->waiting_count++;
}

static creq_t *
s_wait_pop (pool_t *pool)
{
    creq_t *req = pool->waiting;
    if (req) {
        pool->waiting = req->wait_next;
        if (!pool->waiting)
            pool->waiting_tail = NULL;
        req->wait_next = NULL;
        req->waiting = false;
        pool->waiting_count--;
    }
    return req;
}

static bool
s_wait_remove (pool_t *pool, creq_t *req)
{
    creq_t **at = &pool->waiting, *prev = NULL;
    while (*at && *at != req) {
        prev = *at;
        at = &(*at)->wait_next;
    }
    if (!*at)
        return false;
    *at = req->wait_next;
    if (pool->waiting_tail == req)
        pool->waiting_tail = prev;
    req->wait_next = NULL;
    req->waiting = false;
    pool->waiting_count--;
    return true;
}

//  Pools ---------------------------------------------------------------------

pools_t *
pools_new (connector_t *connector)
{
    pools_t *self = calloc (1, sizeof *self);
    assert (self);
    self->connector = connector;
    self->pools = mesh_map_new ();
    mesh_metrics_t *metrics = connector_metrics (connector);
    self->opened = mesh_metrics_counter (metrics, "seekmesh_connector_upstream_connections_opened_total",
        "Upstream connections opened.", NULL);
    self->reused = mesh_metrics_counter (metrics, "seekmesh_connector_upstream_connections_reused_total",
        "Requests served on a kept-alive upstream connection.", NULL);
    self->failed = mesh_metrics_counter (metrics, "seekmesh_connector_upstream_connect_failures_total",
        "Upstream connects, TLS handshakes or upgrades that failed.", NULL);
    self->open_gauge = mesh_metrics_gauge (metrics, "seekmesh_connector_upstream_connections",
        "Upstream connections open.", NULL);
    return self;
}

//  Closes conn and takes it out of its pool; the memory waits for the
//  end of conn's handler if that is running.
static void
s_conn_free (upconn_t *conn)
{
    if (conn->dead)
        return;
    pool_t *pool = conn->pool;
    mesh_loop_t *loop = connector_loop (pool->pools->connector);
    if (conn->req) {
        conn->req->conn = NULL;
        conn->req = NULL;
    }
    mesh_loop_timer_stop (loop, &conn->timer);
    if (conn->io.fd >= 0)
        mesh_loop_fd_remove (loop, conn->io.fd);
    mesh_conn_close (&conn->io);
    mesh_buf_free (&conn->in);
    mesh_buf_free (&conn->out);
    s_unlink (pool, conn);
    pool->count--;
    if (conn->state == UC_IDLE)
        pool->idle--;
    else
    if (conn->state != UC_BUSY)
        pool->opening--;
    pool->pools->connections--;
    mesh_metric_set (pool->pools->open_gauge, (double) pool->pools->connections);
    conn->dead = true;
    if (!conn->in_handler)
        free (conn);
}

void
pools_destroy (pools_t **self_p)
{
    assert (self_p);
    pools_t *self = *self_p;
    if (!self)
        return;
    size_t cursor = 0;
    pool_t *pool;
    while ((pool = mesh_map_next (self->pools, &cursor, NULL))) {
        while (pool->conns) {
            pool->conns->req = NULL;
            s_conn_free (pool->conns);
        }
        mesh_loop_timer_stop (connector_loop (self->connector), &pool->maintain_timer);
        free (pool->ca_file);
        free (pool->auth_line);
        free (pool);
    }
    mesh_map_destroy (&self->pools);
    free (self);
    *self_p = NULL;
}

size_t
pools_connections (pools_t *self)
{
    return self->connections;
}

//  A WebSocket pool is also keyed by its credential, through a hash: the
//  key appears in log lines
static void
s_pool_key (char *key, size_t size, const mesh_url_t *url, const char *ca_file, const char *auth_line)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *) (url->websocket ? auth_line : ""); *p; p++)
        hash = (hash ^ *p) * 0x100000001b3ull;
    snprintf (key, size, "%s://%s:%d%s|%s|%016llx", url->websocket ? (url->tls ? "wss" : "ws")
              : (url->tls ? "https" : "http"), url->host, url->port,
              url->websocket ? url->path : "", ca_file ? ca_file : "", (unsigned long long) hash);
}

static pool_t *
s_pool_for (pools_t *self, const mesh_url_t *url, const char *ca_file, const char *auth_line)
{
    char key [1200];
    s_pool_key (key, sizeof key, url, ca_file, auth_line);
    pool_t *pool = mesh_map_get (self->pools, key);
    if (pool) {
        pool->retired = false;
        return pool;
    }
    pool = calloc (1, sizeof *pool);
    assert (pool);
    pool->pools = self;
    snprintf (pool->key, sizeof pool->key, "%s", key);
    pool->url = *url;
    pool->ca_file = ca_file ? strdup (ca_file) : NULL;
    pool->auth_line = strdup (url->websocket ? auth_line : "");
    pool->tls = url->tls;
    pool->websocket = url->websocket;
    if (pool->tls)
        pool->tls_ctx = connector_tls (self->connector, ca_file);
    mesh_map_put (self->pools, pool->key, pool);
    return pool;
}

static pool_t *
s_pool_of (pools_t *self, creq_t *req)
{
    return s_pool_for (self, &req->endpoint->url, req->model->ca_file, req->auth_line);
}

//  Handing connections to requests --------------------------------------------

//  conn is ready for a request: give it the oldest waiting one, or idle it.
static void
s_ready (upconn_t *conn)
{
    pool_t *pool = conn->pool;
    mesh_loop_t *loop = connector_loop (pool->pools->connector);
    creq_t *req = s_wait_pop (pool);
    if (!req) {
        if ((pool->idle >= MAX_IDLE_PER_POOL && !pool->websocket) || pool->retired) {
            s_conn_free (conn);
            return;
        }
        conn->state = UC_IDLE;
        pool->idle++;
        s_unlink (pool, conn);
        s_link (pool, conn, true);
        //  WebSockets keep their ping timer; HTTP connections expire
        if (!pool->websocket)
            mesh_loop_timer_start (loop, &conn->timer, connector_pool_idle_ms (pool->pools->connector),
                                   s_on_conn_timer, conn);
        return;
    }
    if (conn->reused)
        mesh_metric_inc (pool->pools->reused);
    if (!pool->websocket)
        mesh_loop_timer_stop (loop, &conn->timer);
    conn->state = UC_BUSY;
    s_unlink (pool, conn);
    s_link (pool, conn, false);
    conn->req = req;
    conn->response_started = false;
    req->conn = conn;
    connector_request_start (req);
    if (conn->in_handler || conn->dead)
        return;                         //  the handler writes on its way out
    //  Write now rather than after another trip through epoll; wait for
    //  writability only if the socket cannot take it all
    conn->in_handler = true;
    if (s_flush (conn) < 0)
        s_broken (conn, "write failed");
    conn->in_handler = false;
    if (conn->dead)
        free (conn);
    else
        s_set_interest (conn);
}

//  The connection could not be made: the oldest waiting request fails.
static void
s_open_failed (upconn_t *conn, const char *why)
{
    pool_t *pool = conn->pool;
    mesh_metric_inc (pool->pools->failed);
    mesh_warn ("upstream %s: %s", pool->key, why);
    s_conn_free (conn);
    pool->resolved = false;             //  ask DNS again next time
    pool->backoff_ms = pool->backoff_ms ? MESH_MIN (pool->backoff_ms * 2, 5000) : 100;
    creq_t *req = s_wait_pop (pool);
    if (req)
        connector_request_fail (req, 502, "upstream_error", "upstream_unreachable", 0,
                                "upstream_error", "Cannot reach the upstream: %s", why);
    s_maintain (pool);
}

void
upconn_write (upconn_t *conn, const void *data, size_t len)
{
    mesh_buf_append (&conn->out, data, len);
}

static int
s_flush (upconn_t *conn)
{
    while (mesh_buf_size (&conn->out) > 0) {
        ssize_t n = mesh_conn_write (&conn->io, mesh_buf_head (&conn->out), mesh_buf_size (&conn->out));
        if (n > 0) {
            mesh_buf_consume (&conn->out, (size_t) n);
            continue;
        }
        return n == MESH_AGAIN ? 0 : -1;
    }
    mesh_buf_trim (&conn->out, 4096);
    return 0;
}

static void
s_set_interest (upconn_t *conn)
{
    int events = MESH_READ;
    if (conn->state == UC_CONNECTING && conn->io.connecting)
        events = MESH_WRITE;
    else
    if (mesh_buf_size (&conn->out) > 0 || conn->io.want == MESH_WRITE)
        events |= MESH_WRITE;
    mesh_loop_fd_events (connector_loop (conn->pool->pools->connector), conn->io.fd, events);
}

//  The connection broke or closed while serving a request.
static void
s_broken (upconn_t *conn, const char *why)
{
    if (conn->pool->websocket) {
        if (conn->req)
            connector_request_fail (conn->req, 502, "upstream_error", "upstream_disconnected", 0,
                                    "upstream_error", "The upstream closed the stream: %s", why);
        s_conn_free (conn);
        s_maintain (conn->pool);
    }
    else
    if (conn->req)
        http_on_eof (conn);     //  a close may end a body, or allow a retry
    else
        s_conn_free (conn);
}

//  Drives one connection through connect, upgrade and its exchanges.
static void
s_handle (upconn_t *conn, int events)
{
    pool_t *pool = conn->pool;
    char why [256];

    if (conn->state == UC_CONNECTING) {
        int rc = mesh_conn_progress (&conn->io, why, sizeof why);
        if (rc == MESH_AGAIN)
            return;
        if (rc < 0) {
            s_open_failed (conn, why);
            return;
        }
        if (pool->websocket) {
            conn->state = UC_UPGRADING;
            ws_send_upgrade (conn);
        }
        else {
            pool->opening--;
            pool->backoff_ms = 0;
            s_ready (conn);
            if (conn->dead)
                return;
        }
    }
    if ((events & MESH_WRITE) || mesh_buf_size (&conn->out)) {
        if (s_flush (conn) < 0) {
            if (conn->state == UC_UPGRADING)
                s_open_failed (conn, "write failed during the WebSocket upgrade");
            else
            if (conn->state == UC_BUSY)
                s_broken (conn, "write failed");
            else
                s_conn_free (conn);
            return;
        }
    }
    //  Read what is there; TLS may hold bytes the socket no longer signals
    bool eof = false;
    while (true) {
        ssize_t n = mesh_conn_read (&conn->io, s_read_buf, READ_CHUNK);
        if (n > 0) {
            mesh_buf_append (&conn->in, s_read_buf, (size_t) n);
            if (mesh_buf_size (&conn->in) >= READ_CHUNK)
                break;          //  let the parsers consume before reading on
            continue;
        }
        if (n != MESH_AGAIN)
            eof = true;
        break;
    }
    if (mesh_buf_size (&conn->in) > 0) {
        if (conn->state == UC_UPGRADING) {
            int rc = ws_on_upgrade_input (conn, why, sizeof why);
            if (rc < 0) {
                s_open_failed (conn, why);
                return;
            }
            if (rc == 1) {
                pool->opening--;
                pool->backoff_ms = 0;
                s_ready (conn);
                if (conn->dead)
                    return;
            }
        }
        else
        if (conn->state == UC_IDLE && !pool->websocket) {
            s_conn_free (conn);         //  an idle HTTP connection has nothing to say
            return;
        }
        if (conn->state == UC_BUSY || (conn->state == UC_IDLE && pool->websocket)) {
            if (conn->req)
                conn->response_started = true;
            if (pool->websocket)
                ws_on_input (conn);
            else
                http_on_input (conn);
            if (conn->dead)
                return;
        }
    }
    mesh_buf_trim (&conn->in, 4096);
    if (eof) {
        if (conn->state == UC_UPGRADING)
            s_open_failed (conn, "closed during the WebSocket upgrade");
        else
        if (conn->state == UC_BUSY)
            s_broken (conn, "connection closed");
        else {
            pool_t *p = conn->pool;
            s_conn_free (conn);
            if (p->websocket)
                s_maintain (p);
        }
        return;
    }
    //  A handler may have started the next request on this connection
    if (mesh_buf_size (&conn->out) > 0 && s_flush (conn) < 0) {
        if (conn->state == UC_BUSY)
            s_broken (conn, "write failed");
        else
            s_conn_free (conn);
    }
}

static int
s_on_conn (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) loop; (void) fd;
    upconn_t *conn = arg;
    conn->in_handler = true;
    s_handle (conn, events);
    conn->in_handler = false;
    if (conn->dead)
        free (conn);
    else
        s_set_interest (conn);
    return 0;
}

static void
s_conn_timer (upconn_t *conn)
{
    pool_t *pool = conn->pool;
    mesh_loop_t *loop = connector_loop (pool->pools->connector);
    if (!pool->websocket) {
        if (conn->state == UC_IDLE)
            s_conn_free (conn);         //  idle too long
        return;
    }
    if (conn->ping_outstanding) {
        mesh_warn ("upstream %s: no pong, dropping a WebSocket", pool->key);
        if (conn->state == UC_BUSY)
            s_broken (conn, "no pong from the upstream");
        else {
            s_conn_free (conn);
            s_maintain (pool);
        }
        return;
    }
    if (conn->state == UC_IDLE || conn->state == UC_BUSY) {
        ws_send_ping (conn);
        conn->ping_outstanding = true;
        if (s_flush (conn) < 0) {
            s_broken (conn, "write failed");
            return;
        }
    }
    mesh_loop_timer_start (loop, &conn->timer, connector_ws_ping_ms (pool->pools->connector),
                           s_on_conn_timer, conn);
}

static int
s_on_conn_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    upconn_t *conn = arg;
    conn->in_handler = true;
    s_conn_timer (conn);
    conn->in_handler = false;
    if (conn->dead)
        free (conn);
    else
    if (conn->io.fd >= 0 && conn->state != UC_RESOLVING)
        s_set_interest (conn);
    return 0;
}

//  Opening connections --------------------------------------------------------

static void
s_connect (upconn_t *conn)
{
    pool_t *pool = conn->pool;
    mesh_loop_t *loop = connector_loop (pool->pools->connector);
    char why [256];
    if (mesh_conn_connect (&conn->io, (struct sockaddr *) &pool->addr, pool->addr_len) < 0) {
        snprintf (why, sizeof why, "connect: %s", strerror (errno));
        conn->io.fd = -1;
        s_open_failed (conn, why);
        return;
    }
    if (pool->tls && mesh_conn_tls_client (&conn->io, pool->tls_ctx, pool->url.host) < 0) {
        s_open_failed (conn, "cannot start TLS");
        return;
    }
    conn->state = UC_CONNECTING;
    mesh_metric_inc (pool->pools->opened);
    mesh_loop_fd_add (loop, conn->io.fd, conn->io.connecting ? MESH_WRITE : MESH_READ | MESH_WRITE,
                      s_on_conn, conn);
    if (pool->websocket)
        mesh_loop_timer_start (loop, &conn->timer, connector_ws_ping_ms (pool->pools->connector),
                               s_on_conn_timer, conn);
}

static void
s_on_resolved (void *arg, int rc, const struct sockaddr *addr, socklen_t len)
{
    pool_t *pool = arg;
    pool->resolving = false;
    if (rc != 0) {
        mesh_warn ("upstream %s: cannot resolve %s: %s", pool->key, pool->url.host,
                   gai_strerror (rc));
        //  Every connection waiting for the address fails, with a request
        upconn_t *conn = pool->conns;
        while (conn) {
            upconn_t *next = conn->next;
            if (conn->state == UC_RESOLVING)
                s_open_failed (conn, "cannot resolve the upstream host");
            conn = next;
        }
        return;
    }
    memcpy (&pool->addr, addr, len);
    pool->addr_len = len;
    pool->resolved = true;
    upconn_t *conn = pool->conns;
    while (conn) {
        upconn_t *next = conn->next;
        if (conn->state == UC_RESOLVING)
            s_connect (conn);
        conn = next;
    }
}

static void
s_open (pool_t *pool)
{
    upconn_t *conn = calloc (1, sizeof *conn);
    assert (conn);
    conn->connector = pool->pools->connector;
    conn->pool = pool;
    conn->io.fd = -1;
    conn->state = UC_RESOLVING;
    conn->connect_started_ms = mesh_loop_now_ms (connector_loop (pool->pools->connector));
    s_link (pool, conn, false);
    pool->count++;
    pool->opening++;
    pool->pools->connections++;
    mesh_metric_set (pool->pools->open_gauge, (double) pool->pools->connections);
    if (pool->resolved)
        s_connect (conn);
    else
    if (!pool->resolving) {
        pool->resolving = true;
        resolver_lookup (connector_resolver (pool->pools->connector), pool->url.host,
                         pool->url.port, s_on_resolved, pool);
    }
}

static int
s_on_maintain (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    pool_t *pool = arg;
    if (pool->retired && pool->waiting_count == 0)
        return 0;
    size_t want = (size_t) connector_ws_pool_size (pool->pools->connector);
    while (pool->count < want || pool->opening < pool->waiting_count)
        s_open (pool);
    return 0;
}

//  Keeps a WebSocket pool at its size, after the current backoff.
static void
s_maintain (pool_t *pool)
{
    if (!pool->websocket) {
        //  HTTP: open one connection per waiting request, no more
        while (pool->opening < pool->waiting_count)
            s_open (pool);
        return;
    }
    mesh_loop_t *loop = connector_loop (pool->pools->connector);
    if (!mesh_timer_armed (&pool->maintain_timer))
        mesh_loop_timer_start (loop, &pool->maintain_timer, pool->backoff_ms, s_on_maintain, pool);
}

//  Public --------------------------------------------------------------------

void
pools_acquire (pools_t *self, creq_t *req)
{
    pool_t *pool = s_pool_of (self, req);
    if (pool->tls && !pool->tls_ctx) {
        connector_request_fail (req, 502, "upstream_error", "upstream_tls", 0, "upstream_error",
                                "The connector cannot set up TLS for this upstream.");
        return;
    }
    //  The most recently used idle connection is at the front
    upconn_t *conn = pool->conns;
    if (conn && conn->state == UC_IDLE) {
        pool->idle--;
        s_wait_push (pool, req);
        s_ready (conn);
        return;
    }
    s_wait_push (pool, req);
    if (pool->websocket && pool->backoff_ms > 0 && pool->opening == 0) {
        s_maintain (pool);              //  reconnect after the backoff
        return;
    }
    while (pool->opening < pool->waiting_count)
        s_open (pool);
}

void
pool_release (upconn_t *conn, bool reusable)
{
    if (conn->req) {
        conn->req->conn = NULL;
        conn->req = NULL;
    }
    if (!reusable) {
        pool_close (conn);
        return;
    }
    conn->reused = true;
    s_ready (conn);
}

void
pool_close (upconn_t *conn)
{
    pool_t *pool = conn->pool;
    s_conn_free (conn);
    if (pool->websocket)
        s_maintain (pool);
}

void
pools_abandon (pools_t *self, creq_t *req)
{
    if (req->conn)
        pool_close (req->conn);
    else
    if (req->waiting)
        s_wait_remove (s_pool_of (self, req), req);
}

const mesh_url_t *
pool_url (pool_t *pool)
{
    return &pool->url;
}

const char *
pool_auth_line (pool_t *pool)
{
    return pool->auth_line;
}

void
pools_warm (pools_t *self, mesh_models_t *models)
{
    //  Every WebSocket pool is retired, then those the registry names
    //  are taken back in
    size_t cursor = 0;
    pool_t *pool;
    while ((pool = mesh_map_next (self->pools, &cursor, NULL)))
        if (pool->websocket)
            pool->retired = true;
    for (size_t i = 0; i < mesh_models_count (models); i++) {
        mesh_model_t *model = mesh_models_at (models, i);
        char *auth_line = NULL;
        for (size_t k = 0; k < model->endpoint_count; k++) {
            if (!model->endpoints [k].url.websocket)
                continue;
            if (!auth_line)
                auth_line = connector_auth_line (model);
            s_maintain (s_pool_for (self, &model->endpoints [k].url, model->ca_file, auth_line));
        }
        free (auth_line);
    }
    //  Retired pools close what is idle; busy connections finish first
    cursor = 0;
    while ((pool = mesh_map_next (self->pools, &cursor, NULL))) {
        if (!pool->retired)
            continue;
        mesh_loop_timer_stop (connector_loop (self->connector), &pool->maintain_timer);
        upconn_t *conn = pool->conns;
        while (conn) {
            upconn_t *next = conn->next;
            if (conn->state == UC_IDLE)
                s_conn_free (conn);
            conn = next;
        }
    }
}
