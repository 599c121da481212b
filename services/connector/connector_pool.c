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

    A request asks for a connection (connector_pools_acquire); it gets an
    idle one at once, or waits in the pool's queue while a new one
    connects.  When a response ends the connection goes back to the pool
    if it can carry another request.  What a connection says is its
    protocol's business (connector_protocol_t: HTTP/1.1 or WebSocket); what
    the pool needs of the connector it is given when made
    (connector_pool_settings_t), so it calls nothing of connector.c.
    Reactor thread only.                                                    */
#include "connector.h"
#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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

struct connector_pool_t {
    connector_pools_t *pools;
    char key [1200];            //  never holds a credential: it is logged
    mesh_url_t url;
    char *ca_file;              //  NULL: the system store
    char *auth_line;            //  WebSocket pools: the upgrade's credential
    bool retired;               //  no longer in the registry
    bool tls;
    const connector_protocol_t *protocol;
    SSL_CTX *tls_ctx;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    bool resolved;
    bool resolving;
    uint64_t resolve_id;        //  the lookup in progress, for a cancel
    connector_conn_t *conns;            //  every connection, idle ones first
    size_t count;
    size_t idle;
    size_t opening;             //  resolving, connecting or upgrading
    connector_req_t *waiting;            //  requests waiting for a connection
    connector_req_t *waiting_tail;
    size_t waiting_count;
    int64_t backoff_ms;         //  WebSocket reconnects after failures
    mesh_timer_t maintain_timer;
};

typedef struct {
    char *ca_file;
    SSL_CTX *ctx;
} tls_entry_t;

struct connector_pools_t {
    connector_pool_settings_t settings;
    mesh_map_t *pools;          //  key -> connector_pool_t
    tls_entry_t tls [16];       //  client contexts, by CA file
    size_t tls_count;
    size_t connections;
    mesh_metric_t *opened;
    mesh_metric_t *reused;
    mesh_metric_t *failed;
    mesh_metric_t *open_gauge;
};

static void s_open (connector_pool_t *pool);
static void s_maintain (connector_pool_t *pool);
static int  s_on_conn_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg);
static void s_set_interest (connector_conn_t *conn);
static int  s_flush (connector_conn_t *conn);
static void s_broken (connector_conn_t *conn, const char *why);

//  Lists ---------------------------------------------------------------------

static void
s_link (connector_pool_t *pool, connector_conn_t *conn, bool front)
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
        connector_conn_t *tail = pool->conns;
        while (tail->next)
            tail = tail->next;
        tail->next = conn;
        conn->prev = tail;
        conn->next = NULL;
    }
}

static void
s_unlink (connector_pool_t *pool, connector_conn_t *conn)
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
s_wait_push (connector_pool_t *pool, connector_req_t *req)
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

static connector_req_t *
s_wait_pop (connector_pool_t *pool)
{
    connector_req_t *req = pool->waiting;
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
s_wait_remove (connector_pool_t *pool, connector_req_t *req)
{
    connector_req_t **at = &pool->waiting, *prev = NULL;
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

connector_pools_t *
connector_pools_new (const connector_pool_settings_t *settings)
{
    connector_pools_t *self = calloc (1, sizeof *self);
    assert (self);
    self->settings = *settings;
    self->pools = mesh_map_new ();
    mesh_metrics_t *metrics = settings->metrics;
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
s_conn_free (connector_conn_t *conn)
{
    if (conn->dead)
        return;
    connector_pool_t *pool = conn->pool;
    mesh_loop_t *loop = pool->pools->settings.loop;
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
connector_pools_destroy (connector_pools_t **self_p)
{
    assert (self_p);
    connector_pools_t *self = *self_p;
    if (!self)
        return;
    size_t cursor = 0;
    connector_pool_t *pool;
    while ((pool = mesh_map_next (self->pools, &cursor, NULL))) {
        while (pool->conns) {
            pool->conns->req = NULL;
            s_conn_free (pool->conns);
        }
        mesh_loop_timer_stop (self->settings.loop, &pool->maintain_timer);
        if (pool->resolving)
            mesh_resolver_cancel (self->settings.resolver, pool->resolve_id);
        free (pool->ca_file);
        free (pool->auth_line);
        free (pool);
    }
    mesh_map_destroy (&self->pools);
    for (size_t i = 0; i < self->tls_count; i++) {
        SSL_CTX_free (self->tls [i].ctx);
        free (self->tls [i].ca_file);
    }
    free (self);
    *self_p = NULL;
}

size_t
connector_pools_connections (connector_pools_t *self)
{
    return self->connections;
}

//  The client TLS context for a CA file (NULL: the system's), made once
static SSL_CTX *
s_tls (connector_pools_t *self, const char *ca_file)
{
    const char *key = ca_file ? ca_file : "";
    for (size_t i = 0; i < self->tls_count; i++)
        if (mesh_streq (self->tls [i].ca_file, key))
            return self->tls [i].ctx;
    if (self->tls_count == MESH_ARRAY_SIZE (self->tls))
        return NULL;
    char why [256];
    SSL_CTX *ctx = mesh_tls_client_ctx (ca_file, why, sizeof why);
    if (!ctx)
        mesh_error ("%s", why);
    self->tls [self->tls_count].ca_file = strdup (key);
    self->tls [self->tls_count].ctx = ctx;
    self->tls_count++;
    return ctx;
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

static connector_pool_t *
s_pool_for (connector_pools_t *self, const mesh_url_t *url, const char *ca_file, const char *auth_line)
{
    char key [1200];
    s_pool_key (key, sizeof key, url, ca_file, auth_line);
    connector_pool_t *pool = mesh_map_get (self->pools, key);
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
    pool->protocol = url->websocket ? self->settings.websocket : self->settings.http;
    if (pool->tls)
        pool->tls_ctx = s_tls (self, ca_file);
    mesh_map_put (self->pools, pool->key, pool);
    return pool;
}

static connector_pool_t *
s_pool_of (connector_pools_t *self, connector_req_t *req)
{
    return s_pool_for (self, &req->endpoint->url, req->model->ca_file, req->auth_line);
}

//  Handing connections to requests --------------------------------------------

//  conn is ready for a request: give it the oldest waiting one, or idle it.
static void
s_ready (connector_conn_t *conn)
{
    connector_pool_t *pool = conn->pool;
    mesh_loop_t *loop = pool->pools->settings.loop;
    connector_req_t *req = s_wait_pop (pool);
    if (!req) {
        if ((pool->idle >= MAX_IDLE_PER_POOL && !pool->protocol->warm) || pool->retired) {
            s_conn_free (conn);
            return;
        }
        conn->state = UC_IDLE;
        pool->idle++;
        s_unlink (pool, conn);
        s_link (pool, conn, true);
        //  Warm connections keep their keep-alive timer; cold ones expire
        if (!pool->protocol->warm)
            mesh_loop_timer_start (loop, &conn->timer, pool->pools->settings.idle_ms,
                                   s_on_conn_timer, conn);
        return;
    }
    if (conn->reused)
        mesh_metric_inc (pool->pools->reused);
    if (!pool->protocol->warm)
        mesh_loop_timer_stop (loop, &conn->timer);
    conn->state = UC_BUSY;
    s_unlink (pool, conn);
    s_link (pool, conn, false);
    conn->req = req;
    conn->response_started = false;
    req->conn = conn;
    conn->protocol->send_request (conn, req);
    pool->pools->settings.on_sent (req);
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
s_open_failed (connector_conn_t *conn, const char *why)
{
    connector_pool_t *pool = conn->pool;
    mesh_metric_inc (pool->pools->failed);
    mesh_warn ("upstream %s: %s", pool->key, why);
    s_conn_free (conn);
    pool->resolved = false;             //  ask DNS again next time
    pool->backoff_ms = pool->backoff_ms ? MESH_MIN (pool->backoff_ms * 2, 5000) : 100;
    connector_req_t *req = s_wait_pop (pool);
    if (req)
        pool->pools->settings.on_unreachable (req, why);
    s_maintain (pool);
}

void
connector_conn_write (connector_conn_t *conn, const void *data, size_t len)
{
    mesh_buf_append (&conn->out, data, len);
}

mesh_loop_t *
connector_conn_loop (connector_conn_t *conn)
{
    return conn->pool->pools->settings.loop;
}

static int
s_flush (connector_conn_t *conn)
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
s_set_interest (connector_conn_t *conn)
{
    int events = MESH_READ;
    if (conn->state == UC_CONNECTING && conn->io.connecting)
        events = MESH_WRITE;
    else
    if (mesh_buf_size (&conn->out) > 0 || conn->io.want == MESH_WRITE)
        events |= MESH_WRITE;
    mesh_loop_fd_events (conn->pool->pools->settings.loop, conn->io.fd, events);
}

//  The connection broke or closed while serving a request.
static void
s_broken (connector_conn_t *conn, const char *why)
{
    connector_pool_t *pool = conn->pool;
    if (conn->req)
        conn->protocol->on_eof (conn, why);
    s_conn_free (conn);
    if (pool->protocol->warm)
        s_maintain (pool);
}

//  Drives one connection through connect, upgrade and its exchanges.
static void
s_handle (connector_conn_t *conn, int events)
{
    connector_pool_t *pool = conn->pool;
    char why [256];

    if (conn->state == UC_CONNECTING) {
        int rc = mesh_conn_progress (&conn->io, why, sizeof why);
        if (rc == MESH_AGAIN)
            return;
        if (rc < 0) {
            s_open_failed (conn, why);
            return;
        }
        if (conn->protocol->setup_start) {
            conn->state = UC_UPGRADING;
            conn->protocol->setup_start (conn);
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
                s_open_failed (conn, "write failed during the protocol's setup");
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
            int rc = conn->protocol->setup_input (conn, why, sizeof why);
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
        if (conn->state == UC_IDLE && !pool->protocol->warm) {
            s_conn_free (conn);         //  an idle cold connection has nothing to say
            return;
        }
        if (conn->state == UC_BUSY || (conn->state == UC_IDLE && pool->protocol->warm)) {
            if (conn->req)
                conn->response_started = true;
            conn->protocol->on_input (conn);
            if (conn->dead)
                return;
        }
    }
    mesh_buf_trim (&conn->in, 4096);
    if (eof) {
        if (conn->state == UC_UPGRADING)
            s_open_failed (conn, "closed during the protocol's setup");
        else
        if (conn->state == UC_BUSY)
            s_broken (conn, "connection closed");
        else {
            connector_pool_t *p = conn->pool;
            s_conn_free (conn);
            if (p->protocol->warm)
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
    connector_conn_t *conn = arg;
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
s_conn_timer (connector_conn_t *conn)
{
    connector_pool_t *pool = conn->pool;
    if (!pool->protocol->warm) {
        if (conn->state == UC_IDLE)
            s_conn_free (conn);         //  idle too long
        return;
    }
    if (conn->state == UC_IDLE || conn->state == UC_BUSY) {
        if (conn->protocol->keepalive (conn) < 0) {
            mesh_warn ("upstream %s: the last keep-alive went unanswered, dropping the connection",
                       pool->key);
            if (conn->state == UC_BUSY)
                s_broken (conn, "no answer to a keep-alive");
            else {
                s_conn_free (conn);
                s_maintain (pool);
            }
            return;
        }
        if (s_flush (conn) < 0) {
            s_broken (conn, "write failed");
            return;
        }
    }
    mesh_loop_timer_start (pool->pools->settings.loop, &conn->timer, pool->pools->settings.ping_ms,
                           s_on_conn_timer, conn);
}

static int
s_on_conn_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    connector_conn_t *conn = arg;
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
s_connect (connector_conn_t *conn)
{
    connector_pool_t *pool = conn->pool;
    mesh_loop_t *loop = pool->pools->settings.loop;
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
    if (pool->protocol->warm)
        mesh_loop_timer_start (loop, &conn->timer, pool->pools->settings.ping_ms,
                               s_on_conn_timer, conn);
}

static void
s_on_resolved (void *arg, int rc, const mesh_address_t *addrs, size_t count)
{
    connector_pool_t *pool = arg;
    pool->resolving = false;
    pool->resolve_id = 0;
    if (rc != 0) {
        mesh_warn ("upstream %s: cannot resolve %s: %s", pool->key, pool->url.host,
                   gai_strerror (rc));
        //  Every connection waiting for the address fails, with a request
        connector_conn_t *conn = pool->conns;
        while (conn) {
            connector_conn_t *next = conn->next;
            if (conn->state == UC_RESOLVING)
                s_open_failed (conn, "cannot resolve the upstream host");
            conn = next;
        }
        return;
    }
    (void) count;               //  the first address; a failed connect asks again
    memcpy (&pool->addr, &addrs [0].addr, addrs [0].len);
    pool->addr_len = addrs [0].len;
    pool->resolved = true;
    connector_conn_t *conn = pool->conns;
    while (conn) {
        connector_conn_t *next = conn->next;
        if (conn->state == UC_RESOLVING)
            s_connect (conn);
        conn = next;
    }
}

static void
s_open (connector_pool_t *pool)
{
    connector_conn_t *conn = calloc (1, sizeof *conn);
    assert (conn);
    conn->pool = pool;
    conn->protocol = pool->protocol;
    conn->io.fd = -1;
    conn->state = UC_RESOLVING;
    conn->connect_started_ms = mesh_loop_now_ms (pool->pools->settings.loop);
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
        uint64_t id = mesh_resolver_lookup (pool->pools->settings.resolver, pool->url.host,
                                            pool->url.port, MESH_RESOLVE_ANY, s_on_resolved, pool);
        if (pool->resolving)        //  a literal is answered at once
            pool->resolve_id = id;
    }
}

static int
s_on_maintain (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    connector_pool_t *pool = arg;
    if (pool->retired && pool->waiting_count == 0)
        return 0;
    size_t want = (size_t) pool->pools->settings.warm_size;
    while (pool->count < want || pool->opening < pool->waiting_count)
        s_open (pool);
    return 0;
}

//  Keeps a warm pool at its size, after the current backoff.
static void
s_maintain (connector_pool_t *pool)
{
    if (!pool->protocol->warm) {
        //  Cold: open one connection per waiting request, no more
        while (pool->opening < pool->waiting_count)
            s_open (pool);
        return;
    }
    mesh_loop_t *loop = pool->pools->settings.loop;
    if (!mesh_timer_armed (&pool->maintain_timer))
        mesh_loop_timer_start (loop, &pool->maintain_timer, pool->backoff_ms, s_on_maintain, pool);
}

//  Public --------------------------------------------------------------------

void
connector_pools_acquire (connector_pools_t *self, connector_req_t *req)
{
    connector_pool_t *pool = s_pool_of (self, req);
    if (pool->tls && !pool->tls_ctx) {
        self->settings.on_unreachable (req, "the connector cannot set up TLS for this upstream");
        return;
    }
    //  The most recently used idle connection is at the front
    connector_conn_t *conn = pool->conns;
    if (conn && conn->state == UC_IDLE) {
        pool->idle--;
        s_wait_push (pool, req);
        s_ready (conn);
        return;
    }
    s_wait_push (pool, req);
    if (pool->protocol->warm && pool->backoff_ms > 0 && pool->opening == 0) {
        s_maintain (pool);              //  reconnect after the backoff
        return;
    }
    while (pool->opening < pool->waiting_count)
        s_open (pool);
}

void
connector_pool_release (connector_conn_t *conn, bool reusable)
{
    if (conn->req) {
        conn->req->conn = NULL;
        conn->req = NULL;
    }
    if (!reusable) {
        connector_pool_close (conn);
        return;
    }
    conn->reused = true;
    s_ready (conn);
}

void
connector_pool_close (connector_conn_t *conn)
{
    connector_pool_t *pool = conn->pool;
    s_conn_free (conn);
    if (pool->protocol->warm)
        s_maintain (pool);
}

void
connector_pools_abandon (connector_pools_t *self, connector_req_t *req)
{
    if (req->conn)
        connector_pool_close (req->conn);
    else
    if (req->waiting)
        s_wait_remove (s_pool_of (self, req), req);
}

const mesh_url_t *
connector_pool_url (connector_pool_t *pool)
{
    return &pool->url;
}

const char *
connector_pool_auth_line (connector_pool_t *pool)
{
    return pool->auth_line;
}

void
connector_pools_warm (connector_pools_t *self, mesh_models_t *models)
{
    //  Every warm pool is retired, then those the registry names are
    //  taken back in
    size_t cursor = 0;
    connector_pool_t *pool;
    while ((pool = mesh_map_next (self->pools, &cursor, NULL)))
        if (pool->protocol->warm)
            pool->retired = true;
    for (size_t i = 0; i < mesh_models_count (models); i++) {
        mesh_model_t *model = mesh_models_at (models, i);
        char *auth_line = NULL;
        for (size_t k = 0; k < model->endpoint_count; k++) {
            if (!model->endpoints [k].url.websocket)
                continue;
            if (!auth_line)
                auth_line = self->settings.credential (model);
            s_maintain (s_pool_for (self, &model->endpoints [k].url, model->ca_file, auth_line));
        }
        free (auth_line);
    }
    //  Retired pools close what is idle; busy connections finish first
    cursor = 0;
    while ((pool = mesh_map_next (self->pools, &cursor, NULL))) {
        if (!pool->retired)
            continue;
        mesh_loop_timer_stop (self->settings.loop, &pool->maintain_timer);
        connector_conn_t *conn = pool->conns;
        while (conn) {
            connector_conn_t *next = conn->next;
            if (conn->state == UC_IDLE)
                s_conn_free (conn);
            conn = next;
        }
    }
}

//  Selftest -------------------------------------------------------------------
//
//  The pools on their own, against a loopback server thread that echoes
//  lines, with a test protocol: a request is one line, its answer the echo.

typedef struct {
    int listener;
    int port;
    volatile int accepted;
    volatile bool stop;
    pthread_t thread;
} test_server_t;

static void *
s_test_serve (void *arg)
{
    test_server_t *server = arg;
    int clients [16];
    int count = 0;
    while (!server->stop) {
        struct pollfd fds [17];
        fds [0] = (struct pollfd) { server->listener, POLLIN, 0 };
        for (int i = 0; i < count; i++)
            fds [i + 1] = (struct pollfd) { clients [i], POLLIN, 0 };
        if (poll (fds, (nfds_t) count + 1, 20) <= 0)
            continue;
        if ((fds [0].revents & POLLIN) && count < 16) {
            clients [count++] = accept (server->listener, NULL, NULL);
            server->accepted++;
        }
        for (int i = 0; i < count; i++) {
            if (!(fds [i + 1].revents & (POLLIN | POLLHUP)))
                continue;
            char buf [256];
            ssize_t n = read (clients [i], buf, sizeof buf);
            if (n <= 0) {
                close (clients [i]);
                clients [i--] = clients [--count];
                continue;
            }
            if (write (clients [i], buf, (size_t) n) != n)
                break;
        }
    }
    for (int i = 0; i < count; i++)
        close (clients [i]);
    return NULL;
}

typedef struct {
    int sent, unreachable, answered, eofs;
    char why [256];
} test_counts_t;

static test_counts_t s_test;

static void
s_test_send (connector_conn_t *conn, connector_req_t *req)
{
    (void) req;
    connector_conn_write (conn, "ping\n", 5);
}

static void
s_test_input (connector_conn_t *conn)
{
    if (mesh_buf_size (&conn->in) < 5)
        return;
    assert (memcmp (mesh_buf_head (&conn->in), "ping\n", 5) == 0);
    mesh_buf_consume (&conn->in, 5);
    s_test.answered++;
    connector_pool_release (conn, true);
}

static void
s_test_eof (connector_conn_t *conn, const char *why)
{
    (void) conn; (void) why;
    s_test.eofs++;
}

static const connector_protocol_t s_test_protocol = {
    .name = "test", .warm = false, .send_request = s_test_send, .on_input = s_test_input,
    .on_eof = s_test_eof
};

static void s_test_on_sent (connector_req_t *req) { (void) req; s_test.sent++; }
static void
s_test_on_unreachable (connector_req_t *req, const char *why)
{
    (void) req;
    s_test.unreachable++;
    snprintf (s_test.why, sizeof s_test.why, "%s", why);
}
static char *s_test_credential (const mesh_model_t *model) { (void) model; return strdup (""); }

typedef bool (test_cond_fn) (void *arg);
typedef struct { test_cond_fn *cond; void *arg; int64_t deadline_ms; } test_wait_t;

static int
s_test_check (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    test_wait_t *wait = arg;
    if (wait->cond (wait->arg) || mesh_loop_now_ms (loop) >= wait->deadline_ms)
        return -1;                      //  stops the loop
    mesh_loop_timer_start (loop, timer, 2, s_test_check, wait);
    return 0;
}

//  Runs the loop until cond holds (true) or ms pass (false)
static bool
s_test_until (mesh_loop_t *loop, test_cond_fn *cond, void *arg, int ms)
{
    test_wait_t wait = { cond, arg, mesh_loop_now_ms (loop) + ms };
    mesh_timer_t timer = { 0 };
    mesh_loop_timer_start (loop, &timer, 0, s_test_check, &wait);
    mesh_loop_run (loop);
    mesh_loop_timer_stop (loop, &timer);
    return cond (arg);
}

static bool s_test_answered2 (void *arg) { (void) arg; return s_test.answered >= 2; }
static bool s_test_answered3 (void *arg) { (void) arg; return s_test.answered >= 3; }
static bool s_test_failed (void *arg) { (void) arg; return s_test.unreachable >= 1; }
static bool
s_test_no_connections (void *arg)
{
    return connector_pools_connections (arg) == 0;
}

void
connector_pool_test (bool verbose)
{
    (void) verbose;
    test_server_t server = { 0 };
    server.listener = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert (bind (server.listener, (struct sockaddr *) &addr, sizeof addr) == 0);
    assert (listen (server.listener, 16) == 0);
    socklen_t len = sizeof addr;
    getsockname (server.listener, (struct sockaddr *) &addr, &len);
    server.port = ntohs (addr.sin_port);
    pthread_create (&server.thread, NULL, s_test_serve, &server);

    mesh_loop_t *loop = mesh_loop_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    mesh_resolver_t *resolver = mesh_resolver_new ();
    mesh_resolver_attach (resolver, loop);
    connector_pool_settings_t settings = {
        .loop = loop, .metrics = metrics, .resolver = resolver, .idle_ms = 100, .ping_ms = 1000,
        .warm_size = 0, .http = &s_test_protocol, .websocket = &s_test_protocol,
        .on_sent = s_test_on_sent, .on_unreachable = s_test_on_unreachable,
        .credential = s_test_credential
    };
    connector_pools_t *pools = connector_pools_new (&settings);

    //  One endpoint
    char url_text [64], why [128];
    snprintf (url_text, sizeof url_text, "http://127.0.0.1:%d/v1/chat/completions", server.port);
    mesh_model_t model = { .name = "m" };
    mesh_endpoint_t endpoint = { .text = url_text };
    assert (mesh_url_parse (url_text, &endpoint.url, why, sizeof why) == 0);
    connector_req_t one = { .model = &model, .endpoint = &endpoint, .auth_line = (char *) "" };
    connector_req_t two = one, three = one;
    memset (&s_test, 0, sizeof s_test);
    //  Two at once: a connection each (they wait while those open)
    connector_pools_acquire (pools, &one);
    connector_pools_acquire (pools, &two);
    assert (one.waiting && two.waiting);
    assert (s_test_until (loop, s_test_answered2, NULL, 2000));
    assert (s_test.sent == 2 && !one.conn && !two.conn);
    connector_pools_acquire (pools, &three);
    assert (s_test_until (loop, s_test_answered3, NULL, 2000));
    //  three, later, was served on a kept connection
    assert (server.accepted == 2);
    //  (two may have had one's connection too, if it came back first)
    assert (mesh_metric_value (mesh_metrics_counter (metrics,
            "seekmesh_connector_upstream_connections_reused_total", NULL, NULL)) >= 1);
    //  Idle connections close after idle_ms
    assert (connector_pools_connections (pools) == 2);
    assert (s_test_until (loop, s_test_no_connections, pools, 2000));

    //  A port nobody listens on: the waiting request hears why
    int closed = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in free_addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    assert (bind (closed, (struct sockaddr *) &free_addr, sizeof free_addr) == 0);
    len = sizeof free_addr;
    getsockname (closed, (struct sockaddr *) &free_addr, &len);
    char dead_text [64];
    snprintf (dead_text, sizeof dead_text, "http://127.0.0.1:%d/x", ntohs (free_addr.sin_port));
    mesh_endpoint_t dead = { .text = dead_text };
    assert (mesh_url_parse (dead_text, &dead.url, why, sizeof why) == 0);
    connector_req_t lost = { .model = &model, .endpoint = &dead, .auth_line = (char *) "" };
    connector_pools_acquire (pools, &lost);
    assert (s_test_until (loop, s_test_failed, NULL, 2000));
    assert (strstr (s_test.why, "refused"));
    close (closed);

    //  A request abandoned while it waits is never sent
    connector_req_t gone = one;
    gone.conn = NULL;
    int sent = s_test.sent;
    connector_pools_acquire (pools, &gone);
    connector_pools_abandon (pools, &gone);
    assert (!gone.waiting);
    s_test_until (loop, s_test_no_connections, pools, 300);
    assert (s_test.sent == sent);

    connector_pools_destroy (&pools);
    mesh_resolver_destroy (&resolver);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
    server.stop = true;
    pthread_join (server.thread, NULL);
    close (server.listener);
}
