/*  mesh-loadgen: the load and measurement client of `make bench`.

        mesh-loadgen latency --url URL [--body FILE] --requests N [--warmup W]
        mesh-loadgen rate    --url URL [--body FILE] --rate R --duration S
                             [--connections C] [--max-inflight Q]
        mesh-loadgen stream  --url URL --body FILE --streams N
                             [--ramp-per-sec K] [--stall-ms MS] [--late-ms MS]
                             [--hold]
        common: [--header "Name: value"]... [--json] [--connect-timeout-ms MS]
                [--timeout-s S]

    latency   one keep-alive connection, closed loop: N requests one after
              the other, each timed from the start of its send to the last
              byte of its response.
    rate      open loop: request k is due at start + k/R and is timed from
              then, not from when it could be sent, so a target that falls
              behind cannot hide its queue (coordinated omission).  It goes
              out on any idle connection of a pool of C; with none idle it
              waits in a queue while its clock runs.
    stream    N concurrent SSE responses, one connection each, K opened per
              second: time to the first JSON data event, every gap between
              data events, stalls (gaps over --stall-ms), late gaps (over
              --late-ms), and the most streams open at once.

    One thread, one epoll set, plain TCP to one host:port.  Built to cost
    little next to what it measures: the request bytes are built once and
    shared by every connection, reads go into one shared buffer, samples go
    into arrays sized up front, and a connection keeps only its parse state
    (a cut head, the chunked decoder, the SSE parser's partial line): a few
    hundred bytes.  Times are CLOCK_MONOTONIC ns inside, µs in the output.
    Results go to stdout (one JSON object with --json), warnings to stderr.

    A response counts as an error when its status is not 2xx (it is read
    to its end and the run goes on) or when its connection fails (reset,
    closed mid-response, malformed framing; the connection is reopened).
    Latency samples are kept for 2xx responses only, so fast refusals
    cannot flatter a target.                                                 */
#include "mesh_buf.h"
#include "mesh_http.h"
#include "mesh_sse.h"
#include "mesh_util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_S        1000000000LL
#define NS_PER_MS       1000000LL
#define READ_BUF_BYTES  (256 * 1024)
#define MAX_HEAD_BYTES  (64 * 1024)
#define MAX_EVENT_BYTES (1024 * 1024)
#define MAX_HEADERS     32
#define EPOLL_BATCH     1024
#define HOUSEKEEP_NS    (50 * NS_PER_MS)      //  connect timeouts, retries
#define RETRY_NS        (100 * NS_PER_MS)     //  after a failed connect
#define MAX_WARNINGS    20
#define NEVER           INT64_MAX

enum { MODE_LATENCY, MODE_RATE, MODE_STREAM };

enum {
    C_UNUSED,           //  no socket (stream not opened yet, or ended)
    C_CONNECTING,
    C_IDLE,             //  connected, no request on it
    C_SENDING,          //  request partly written
    C_HEAD,             //  waiting for the response head
    C_BODY,
    C_RETRY             //  connect failed; reopened at t_state
};

enum { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE };

//  Samples in ns; grown by doubling, never per sample.
typedef struct {
    int64_t *v;
    size_t n, cap;
} s_series_t;

typedef struct {
    int fd;
    uint32_t gen;               //  bumped per socket: stale epoll events are dropped
    uint8_t state;
    uint8_t body;
    bool want_out;              //  EPOLLOUT armed
    bool in_idle;               //  on the idle stack (rate)
    bool keep_alive;
    bool got_first;             //  stream: first JSON data event seen
    bool got_done;              //  stream: data: [DONE] seen
    int status;
    size_t sent;                //  request bytes written
    int64_t t_origin;           //  what latency counts from
    int64_t t_state;            //  connect start, or when to retry
    int64_t t_last;             //  stream: last data event
    int64_t body_left;
    mesh_http_chunked_t chunked;
    mesh_buf_t pend;            //  a head cut by a read; empty nearly always
    mesh_sse_t sse;             //  stream mode only
} s_conn_t;

typedef struct {
    //  Options
    int mode;
    const char *url;
    const char *body_file;
    const char *headers [MAX_HEADERS];
    size_t header_count;
    bool json;
    long requests, warmup;
    double rate, duration_s;
    long connections, max_inflight;
    long streams;
    double ramp_per_sec;
    bool hold;
    long stall_ms, late_ms, connect_timeout_ms;
    double timeout_s;

    //  Target
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char *request;              //  shared, read-only once built
    size_t request_len;

    //  Run
    int epoll_fd;
    s_conn_t *conns;
    size_t conn_count;
    char *rbuf;
    int64_t t_now;              //  time of the last read, or of the loop turn
    int64_t t_start, t_deadline, t_last_done;
    int64_t t_next_send;        //  next scheduled send or stream open
    int64_t spin_ns;
    bool started, stop, timed_out, interrupted, overloaded;
    int warnings;

    //  Latency and rate
    int64_t sent, finished, responses, ok, status_errors, io_errors;
    int64_t connect_errors, reconnects, inflight;
    int64_t total, k_next, q_head, max_queued;    //  rate schedule and queue
    double interval_ns;
    s_conn_t **idle;            //  idle stack (rate)
    size_t idle_n;
    s_series_t latency, send_lag;

    //  Stream
    int64_t attempts, opened, completed, failed, unfinished;
    int64_t open_now, concurrent_max, events, stalls, late, first_or_ended, ended;
    int64_t stall_ns, late_ns;
    bool held;
    s_series_t ttft, gap;
} s_loadgen_t;

static s_loadgen_t s_lg;
static mesh_http_head_t s_head;             //  big (64 headers): one, shared
static volatile sig_atomic_t s_signalled;

static void s_pool_ready (s_conn_t *c);
static void s_conn_fail (s_conn_t *c, const char *why);

//  Helpers ------------------------------------------------------------------

static int64_t
s_now (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void
s_die (const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    fputs ("mesh-loadgen: ", stderr);
    vfprintf (stderr, fmt, args);
    fputc ('\n', stderr);
    va_end (args);
    exit (1);
}

//  Run-time trouble: the first MAX_WARNINGS go to stderr, the rest are
//  only counted.
static void
s_warn (const char *fmt, ...)
{
    if (++s_lg.warnings > MAX_WARNINGS) {
        if (s_lg.warnings == MAX_WARNINGS + 1)
            fputs ("mesh-loadgen: W further warnings are not shown\n", stderr);
        return;
    }
    va_list args;
    va_start (args, fmt);
    fputs ("mesh-loadgen: W ", stderr);
    vfprintf (stderr, fmt, args);
    fputc ('\n', stderr);
    va_end (args);
}

static void
s_on_signal (int signo)
{
    (void) signo;
    s_signalled = 1;
}

static void
s_series_init (s_series_t *self, size_t cap)
{
    self->n = 0;
    self->cap = cap ? cap : 1;
    self->v = malloc (self->cap * sizeof *self->v);
    if (!self->v)
        s_die ("out of memory for %zu samples", self->cap);
}

static inline void
s_series_add (s_series_t *self, int64_t ns)
{
    if (self->n == self->cap) {
        int64_t *v = realloc (self->v, 2 * self->cap * sizeof *v);
        if (!v)
            s_die ("out of memory for %zu samples", 2 * self->cap);
        self->v = v;
        self->cap *= 2;
    }
    self->v [self->n++] = ns;
}

static int
s_cmp_i64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return (x > y) - (x < y);
}

//  Nearest rank on a sorted series, in µs.
static double
s_rank_us (const s_series_t *self, double q)
{
    size_t rank = (size_t) (q * (double) self->n + 0.999999);
    rank = MESH_MAX (rank, (size_t) 1);
    rank = MESH_MIN (rank, self->n);
    return (double) self->v [rank - 1] / 1000.0;
}

//  Output ---------------------------------------------------------------------
//  One JSON object with --json, else "name  value" lines for a human.

static bool s_out_first = true;

static void
s_key (const char *key)
{
    if (s_lg.json)
        printf ("%s\"%s\":", s_out_first ? "{" : ",", key);
    else
        printf ("%-16s ", key);
    s_out_first = false;
}

static void
s_end_field (void)
{
    if (!s_lg.json)
        putchar ('\n');
}

static void
s_out_int (const char *key, int64_t value)
{
    s_key (key);
    printf ("%" PRId64, value);
    s_end_field ();
}

static void
s_out_num (const char *key, double value)
{
    s_key (key);
    printf ("%.3f", value);
    s_end_field ();
}

static void
s_out_bool (const char *key, bool value)
{
    s_key (key);
    printf ("%s", value ? "true" : "false");
    s_end_field ();
}

//  value is a command-line string: escape what JSON needs.
static void
s_out_str (const char *key, const char *value)
{
    s_key (key);
    if (!s_lg.json) {
        printf ("%s\n", value);
        return;
    }
    putchar ('"');
    for (const char *p = value; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf ("\\%c", *p);
        else
        if ((unsigned char) *p < 0x20)
            printf ("\\u%04x", (unsigned char) *p);
        else
            putchar (*p);
    }
    putchar ('"');
}

//  Sorts the series (in place) and prints its summary in µs.
static void
s_out_stats (const char *key, s_series_t *series)
{
    qsort (series->v, series->n, sizeof *series->v, s_cmp_i64);
    double sum = 0;
    for (size_t i = 0; i < series->n; i++)
        sum += (double) series->v [i];
    s_key (key);
    const char *names [] = { "min", "p50", "p90", "p99", "p999", "max", "mean" };
    double values [] = { 0, 0.50, 0.90, 0.99, 0.999, 1, 0 };
    if (series->n) {
        values [0] = (double) series->v [0] / 1000.0;
        for (size_t i = 1; i <= 5; i++)
            values [i] = s_rank_us (series, values [i]);
        values [6] = sum / (double) series->n / 1000.0;
    }
    if (s_lg.json)
        printf ("{\"count\":%zu", series->n);
    else
        printf ("n=%zu", series->n);
    for (size_t i = 0; i < MESH_ARRAY_SIZE (names); i++) {
        if (s_lg.json && series->n)
            printf (",\"%s\":%.1f", names [i], values [i]);
        else
        if (s_lg.json)
            printf (",\"%s\":null", names [i]);
        else
        if (series->n)
            printf (" %s=%.1f", names [i], values [i]);
    }
    if (s_lg.json)
        putchar ('}');
    s_end_field ();
}

//  Connections ----------------------------------------------------------------

static uint64_t
s_key_of (const s_conn_t *c)
{
    return (uint64_t) (c - s_lg.conns) | (uint64_t) c->gen << 32;
}

static void
s_epoll_set (s_conn_t *c, bool want_out)
{
    struct epoll_event ev = {
        .events = want_out ? EPOLLIN | EPOLLOUT : EPOLLIN,
        .data.u64 = s_key_of (c)
    };
    if (epoll_ctl (s_lg.epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        s_warn ("epoll_ctl: %s", strerror (errno));
    c->want_out = want_out;
}

//  Starts a non-blocking connect.  Returns 0, or -1 with errno.
static int
s_conn_open (s_conn_t *c)
{
    int fd = socket (s_lg.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect (fd, (struct sockaddr *) &s_lg.addr, s_lg.addr_len) < 0
    &&  errno != EINPROGRESS) {
        int err = errno;
        close (fd);
        errno = err;
        return -1;
    }
    c->fd = fd;
    c->gen++;
    c->state = C_CONNECTING;
    c->t_state = s_lg.t_now;
    //  Connected or not, EPOLLOUT says when: one code path
    struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = s_key_of (c) };
    if (epoll_ctl (s_lg.epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = errno;
        close (fd);
        c->fd = -1;
        c->state = C_UNUSED;
        errno = err;
        return -1;
    }
    c->want_out = true;
    return 0;
}

//  Closing the socket also takes it out of the epoll set.
static void
s_conn_close (s_conn_t *c)
{
    if (c->fd >= 0)
        close (c->fd);
    c->fd = -1;
    c->gen++;
    c->state = C_UNUSED;
    mesh_buf_reset (&c->pend);
    if (s_lg.mode == MODE_STREAM) {
        mesh_buf_free (&c->pend);
        mesh_sse_free (&c->sse);
    }
}

//  Writes what is left of the request.  Returns 0, or -1 if it failed (the
//  caller fails the connection).
static int
s_send_more (s_conn_t *c)
{
    while (c->sent < s_lg.request_len) {
        ssize_t n = send (c->fd, s_lg.request + c->sent, s_lg.request_len - c->sent,
                          MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            if (!c->want_out)
                s_epoll_set (c, true);
            return 0;
        }
        c->sent += (size_t) n;
    }
    if (c->state == C_SENDING)
        c->state = C_HEAD;
    if (c->want_out)
        s_epoll_set (c, false);
    return 0;
}

static int
s_send (s_conn_t *c, int64_t origin)
{
    c->t_origin = origin;
    c->sent = 0;
    c->status = 0;
    c->keep_alive = true;
    c->body = BODY_NONE;
    c->body_left = 0;
    c->state = C_SENDING;
    return s_send_more (c);
}

//  Streams ----------------------------------------------------------------------

static void
s_stream_open (s_conn_t *c)
{
    mesh_sse_init (&c->sse, MAX_EVENT_BYTES);
    if (s_conn_open (c) < 0) {
        s_warn ("stream %zu: connect: %s", (size_t) (c - s_lg.conns), strerror (errno));
        s_lg.connect_errors++;
        s_lg.failed++;
        s_lg.ended++;
        s_lg.first_or_ended++;
        mesh_sse_free (&c->sse);
    }
}

//  The end of a stream, whatever ended it.
static void
s_stream_end (s_conn_t *c, bool ok)
{
    bool was_open = c->state != C_CONNECTING;
    if (c->state == C_CONNECTING)
        s_lg.connect_errors++;
    if (ok)
        s_lg.completed++;
    else
        s_lg.failed++;
    if (!c->got_first)
        s_lg.first_or_ended++;
    if (was_open)
        s_lg.open_now--;
    s_lg.ended++;
    s_conn_close (c);
}

static int
s_on_sse (void *arg, int kind, const char *data, size_t len)
{
    s_conn_t *c = arg;
    if (kind != MESH_SSE_DATA || c->got_done)
        return 0;
    if (mesh_memeq (data, len, "[DONE]")) {
        c->got_done = true;
        return 0;
    }
    if (len == 0 || data [0] != '{')
        return 0;                           //  not a JSON chunk
    int64_t now = s_lg.t_now;
    if (!c->got_first) {
        c->got_first = true;
        s_lg.first_or_ended++;
        s_series_add (&s_lg.ttft, now - c->t_origin);
    }
    else {
        int64_t gap = now - c->t_last;
        s_series_add (&s_lg.gap, gap);
        if (gap > s_lg.stall_ns)
            s_lg.stalls++;
        if (gap > s_lg.late_ns)
            s_lg.late++;
    }
    c->t_last = now;
    s_lg.events++;
    return 0;
}

//  Request pool (latency, rate) ------------------------------------------------

static int64_t
s_due (int64_t k)
{
    return s_lg.t_start + (int64_t) ((double) k * s_lg.interval_ns);
}

static void
s_pool_send (s_conn_t *c, int64_t origin)
{
    s_lg.sent++;
    s_lg.inflight++;
    if (s_lg.mode == MODE_RATE)
        s_series_add (&s_lg.send_lag, s_now () - origin);
    if (s_send (c, origin) < 0)
        s_conn_fail (c, strerror (errno));
}

//  Reopens a pool connection; on failure tries again after RETRY_NS.
static void
s_pool_reopen (s_conn_t *c)
{
    s_conn_close (c);
    s_lg.reconnects++;
    if (s_conn_open (c) < 0) {
        s_warn ("connect: %s", strerror (errno));
        s_lg.connect_errors++;
        c->state = C_RETRY;
        c->t_state = s_lg.t_now + RETRY_NS;
    }
}

//  Rate: moves every request due by now into the queue.
static void
s_rate_advance (int64_t now)
{
    while (s_lg.k_next < s_lg.total && s_due (s_lg.k_next) <= now)
        s_lg.k_next++;
    int64_t queued = s_lg.k_next - s_lg.q_head;
    s_lg.max_queued = MESH_MAX (s_lg.max_queued, queued);
}

//  c is connected and has no request: give it one, or park it.
static void
s_pool_ready (s_conn_t *c)
{
    c->state = C_IDLE;
    if (!s_lg.started) {
        if (!c->in_idle) {
            c->in_idle = true;
            s_lg.idle [s_lg.idle_n++] = c;
        }
        return;
    }
    if (s_lg.mode == MODE_LATENCY) {
        if (s_lg.sent < s_lg.warmup + s_lg.requests)
            s_pool_send (c, s_now ());
        return;
    }
    s_rate_advance (s_lg.t_now);
    if (s_lg.q_head < s_lg.k_next) {
        int64_t k = s_lg.q_head++;
        s_pool_send (c, s_due (k));
    }
    else
    if (!c->in_idle) {
        c->in_idle = true;
        s_lg.idle [s_lg.idle_n++] = c;
    }
}

//  Any connection's failure: a reset, an early close, bad framing.
static void
s_conn_fail (s_conn_t *c, const char *why)
{
    size_t index = (size_t) (c - s_lg.conns);
    if (s_lg.mode == MODE_STREAM) {
        s_warn ("stream %zu: %s", index, why);
        s_stream_end (c, false);
        return;
    }
    s_warn ("connection %zu: %s", index, why);
    if (c->state == C_CONNECTING) {
        //  Not at once: a target that refuses would make this spin
        s_lg.connect_errors++;
        s_conn_close (c);
        c->state = C_RETRY;
        c->t_state = s_lg.t_now + RETRY_NS;
        return;
    }
    if (c->state == C_SENDING || c->state == C_HEAD || c->state == C_BODY) {
        s_lg.inflight--;
        s_lg.finished++;
        if (s_lg.mode == MODE_RATE || s_lg.finished > s_lg.warmup)
            s_lg.io_errors++;
    }
    s_pool_reopen (c);
}

//  Responses ------------------------------------------------------------------

//  A whole response was read.  Returns 0 if c goes on as it was, -1 if it
//  was closed (and maybe reopened): its remaining bytes are not its own.
static int
s_response_done (s_conn_t *c)
{
    int64_t now = s_lg.t_now;
    bool ok = c->status >= 200 && c->status < 300;
    if (s_lg.mode == MODE_STREAM) {
        if (!ok) {
            s_lg.status_errors++;
            s_warn ("stream %zu: status %d", (size_t) (c - s_lg.conns), c->status);
        }
        else
        if (!c->got_done)
            s_warn ("stream %zu: ended without [DONE]", (size_t) (c - s_lg.conns));
        s_stream_end (c, ok && c->got_done);
        return -1;
    }
    s_lg.inflight--;
    bool measured = s_lg.mode == MODE_RATE || s_lg.finished >= s_lg.warmup;
    s_lg.finished++;
    if (measured) {
        s_lg.responses++;
        if (ok) {
            s_lg.ok++;
            s_series_add (&s_lg.latency, now - c->t_origin);
            s_lg.t_last_done = now;
        }
        else {
            s_lg.status_errors++;
            if (s_lg.status_errors <= 3)
                s_warn ("status %d", c->status);
        }
    }
    if (!c->keep_alive || c->sent < s_lg.request_len) {
        s_pool_reopen (c);
        return -1;
    }
    uint32_t gen = c->gen;
    s_pool_ready (c);                       //  may send the next request
    return c->gen == gen ? 0 : -1;          //  ... and fail doing it
}

//  Response body bytes of a stream go to the SSE parser.
static int
s_body_bytes (s_conn_t *c, const char *data, size_t len)
{
    if (s_lg.mode != MODE_STREAM || len == 0)
        return 0;
    if (mesh_sse_feed (&c->sse, data, len, s_on_sse, c) < 0) {
        s_conn_fail (c, "SSE event over the size limit");
        return -1;
    }
    return 0;
}

//  Parses response bytes data [0 .. len); the chunked decoder works in
//  place, so data is writable.  Returns the bytes used (fewer than len only
//  when a head is cut), or -1 when c was closed.
static ssize_t
s_feed (s_conn_t *c, char *data, size_t len)
{
    size_t used = 0;
    while (used < len) {
        char *at = data + used;
        size_t left = len - used;
        if (c->state == C_HEAD || c->state == C_SENDING) {
            int n = mesh_http_parse_response (at, left, MAX_HEAD_BYTES, &s_head);
            if (n == 0)
                return (ssize_t) used;
            if (n < 0) {
                s_conn_fail (c, "malformed response head");
                return -1;
            }
            used += (size_t) n;
            if (s_head.status < 200)
                continue;                   //  1xx: the real head follows
            c->status = s_head.status;
            c->keep_alive = s_head.keep_alive;
            if (s_head.status == 204 || s_head.status == 304)
                c->body = BODY_NONE;
            else
            if (s_head.chunked) {
                c->body = BODY_CHUNKED;
                mesh_http_chunked_init (&c->chunked);
            }
            else
            if (s_head.content_length >= 0) {
                c->body = s_head.content_length ? BODY_LENGTH : BODY_NONE;
                c->body_left = s_head.content_length;
            }
            else {
                c->body = BODY_CLOSE;
                c->keep_alive = false;
            }
            c->state = C_BODY;
            if (c->body == BODY_NONE && s_response_done (c) < 0)
                return -1;
        }
        else
        if (c->state == C_BODY && c->body == BODY_LENGTH) {
            size_t n = (size_t) MESH_MIN ((int64_t) left, c->body_left);
            if (s_body_bytes (c, at, n) < 0)
                return -1;
            used += n;
            c->body_left -= (int64_t) n;
            if (c->body_left == 0 && s_response_done (c) < 0)
                return -1;
        }
        else
        if (c->state == C_BODY && c->body == BODY_CHUNKED) {
            size_t consumed;
            int64_t n = mesh_http_chunked_decode (&c->chunked, at, left, &consumed);
            if (n < 0) {
                s_conn_fail (c, "malformed chunked body");
                return -1;
            }
            if (s_body_bytes (c, at, (size_t) n) < 0)
                return -1;
            used += consumed;
            if (c->chunked.done && s_response_done (c) < 0)
                return -1;
        }
        else
        if (c->state == C_BODY && c->body == BODY_CLOSE) {
            if (s_body_bytes (c, at, left) < 0)
                return -1;
            used = len;
        }
        else {
            s_conn_fail (c, "bytes with no request outstanding");
            return -1;
        }
    }
    return (ssize_t) used;
}

static void
s_on_eof (s_conn_t *c)
{
    if (c->state == C_BODY && c->body == BODY_CLOSE)
        s_response_done (c);
    else
    if (c->state == C_IDLE) {
        s_pool_reopen (c);                  //  the server ended a keep-alive
    }
    else
        s_conn_fail (c, "closed by the server mid-response");
}

static void
s_on_readable (s_conn_t *c)
{
    while (true) {
        ssize_t n = recv (c->fd, s_lg.rbuf, READ_BUF_BYTES, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                s_conn_fail (c, strerror (errno));
            return;
        }
        s_lg.t_now = s_now ();
        if (n == 0) {
            s_on_eof (c);
            return;
        }
        if (mesh_buf_size (&c->pend)) {
            //  A cut head: parse it whole from the connection's own buffer
            mesh_buf_append (&c->pend, s_lg.rbuf, (size_t) n);
            ssize_t used = s_feed (c, mesh_buf_head (&c->pend), mesh_buf_size (&c->pend));
            if (used < 0)
                return;
            mesh_buf_consume (&c->pend, (size_t) used);
        }
        else {
            ssize_t used = s_feed (c, s_lg.rbuf, (size_t) n);
            if (used < 0)
                return;
            if (used < n)
                mesh_buf_append (&c->pend, s_lg.rbuf + used, (size_t) (n - used));
        }
        if (n < READ_BUF_BYTES)
            return;                         //  level-triggered: more comes as an event
    }
}

static void
s_on_connected (s_conn_t *c)
{
    s_epoll_set (c, false);
    if (s_lg.mode != MODE_STREAM) {
        s_pool_ready (c);
        return;
    }
    s_lg.opened++;
    s_lg.open_now++;
    s_lg.concurrent_max = MESH_MAX (s_lg.concurrent_max, s_lg.open_now);
    c->got_first = c->got_done = false;
    if (s_send (c, s_now ()) < 0)
        s_conn_fail (c, strerror (errno));
}

static void
s_on_event (uint64_t key, uint32_t events)
{
    size_t index = (size_t) (key & 0xffffffffu);
    uint32_t gen = (uint32_t) (key >> 32);
    s_conn_t *c = &s_lg.conns [index];
    if (c->gen != gen || c->fd < 0)
        return;                             //  for a socket closed since
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt (c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err || !(events & EPOLLOUT)) {
            char why [160];
            snprintf (why, sizeof why, "connect: %s", err ? strerror (err) : "hang-up");
            s_conn_fail (c, why);
        }
        else
            s_on_connected (c);
        return;
    }
    if (events & EPOLLOUT) {
        if (c->state == C_SENDING) {
            if (s_send_more (c) < 0) {
                s_conn_fail (c, strerror (errno));
                return;
            }
        }
        else
        if (c->want_out)
            s_epoll_set (c, false);
    }
    if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && c->gen == gen)
        s_on_readable (c);
}

//  Connect timeouts and retries, every HOUSEKEEP_NS.
static void
s_housekeep (int64_t now)
{
    int64_t timeout_ns = s_lg.connect_timeout_ms * NS_PER_MS;
    for (size_t i = 0; i < s_lg.conn_count; i++) {
        s_conn_t *c = &s_lg.conns [i];
        if (c->state == C_CONNECTING && now - c->t_state > timeout_ns)
            s_conn_fail (c, "connect timed out");
        else
        if (c->state == C_RETRY && now >= c->t_state) {
            c->state = C_UNUSED;
            if (s_conn_open (c) < 0) {
                s_lg.connect_errors++;
                c->state = C_RETRY;
                c->t_state = now + RETRY_NS;
            }
        }
    }
}

//  Modes: what is due, and when the run is over ------------------------------

//  Before the schedule starts, the pool connects.  Returns true once every
//  connection is up or given up on.
static bool
s_pool_connected (void)
{
    size_t up = 0;
    for (size_t i = 0; i < s_lg.conn_count; i++) {
        if (s_lg.conns [i].state == C_CONNECTING)
            return false;
        up += s_lg.conns [i].state == C_IDLE;
    }
    if (up == 0)
        s_die ("cannot connect to %s (see the warnings above)", s_lg.url);
    if (up < s_lg.conn_count)
        s_warn ("%zu of %zu connections up; the others are retried", up, s_lg.conn_count);
    return true;
}

//  Does what is due now; returns the next time something is due.
static int64_t
s_tick (int64_t now)
{
    if (s_lg.mode == MODE_STREAM) {
        if (s_lg.ramp_per_sec <= 0)
            while (s_lg.attempts < s_lg.streams)
                s_stream_open (&s_lg.conns [s_lg.attempts++]);
        int64_t due = NEVER;
        while (s_lg.attempts < s_lg.streams) {
            due = s_lg.t_start + (int64_t) ((double) s_lg.attempts * NS_PER_S / s_lg.ramp_per_sec);
            if (due > now)
                break;
            s_stream_open (&s_lg.conns [s_lg.attempts++]);
            due = NEVER;
        }
        if (s_lg.hold && !s_lg.held && s_lg.attempts == s_lg.streams
        &&  s_lg.first_or_ended == s_lg.streams) {
            if (s_lg.json)
                printf ("{\"holding\":%" PRId64 "}\n", s_lg.open_now);
            else
                printf ("holding %" PRId64 " streams\n", s_lg.open_now);
            fflush (stdout);
            s_lg.held = true;
        }
        if (s_lg.ended == s_lg.streams)
            s_lg.stop = true;
        return due;
    }
    if (!s_lg.started) {
        if (!s_pool_connected ())
            return NEVER;
        s_lg.started = true;
        s_lg.t_start = now;
        if (s_lg.mode == MODE_LATENCY) {
            s_conn_t *c = s_lg.idle [--s_lg.idle_n];
            c->in_idle = false;
            s_pool_ready (c);
        }
    }
    if (s_lg.mode == MODE_LATENCY) {
        if (s_lg.finished >= s_lg.warmup + s_lg.requests)
            s_lg.stop = true;
        return NEVER;
    }
    s_rate_advance (now);
    while (s_lg.q_head < s_lg.k_next && s_lg.idle_n > 0) {
        s_conn_t *c = s_lg.idle [--s_lg.idle_n];
        c->in_idle = false;
        if (c->state == C_IDLE) {
            int64_t k = s_lg.q_head++;
            s_pool_send (c, s_due (k));
        }
    }
    if (s_lg.k_next - s_lg.q_head > s_lg.max_inflight) {
        s_lg.overloaded = true;
        s_lg.stop = true;
    }
    if (s_lg.k_next == s_lg.total && s_lg.q_head == s_lg.total && s_lg.inflight == 0)
        s_lg.stop = true;
    return s_lg.k_next < s_lg.total ? s_due (s_lg.k_next) : NEVER;
}

static void
s_run (void)
{
    struct epoll_event events [EPOLL_BATCH];
    int64_t next_housekeep = s_lg.t_now + HOUSEKEEP_NS;
    while (true) {
        int64_t now = s_lg.t_now = s_now ();
        if (s_signalled) {
            s_lg.interrupted = true;
            break;
        }
        if (now >= s_lg.t_deadline) {
            s_lg.timed_out = true;
            break;
        }
        if (now >= next_housekeep) {
            s_housekeep (now);
            next_housekeep = now + HOUSEKEEP_NS;
        }
        int64_t due = s_lg.t_next_send = s_tick (now);
        if (s_lg.stop)
            break;
        due = MESH_MIN (due, next_housekeep);
        due = MESH_MIN (due, s_lg.t_deadline);
        //  With --spin-us, wake that early and poll until a send is due:
        //  a sleeping loop wakes tens of µs late on a VM
        int64_t wait_ns = due - s_now () - (due == s_lg.t_next_send ? s_lg.spin_ns : 0);
        wait_ns = MESH_MAX (wait_ns, (int64_t) 0);
        struct timespec ts = { .tv_sec = wait_ns / NS_PER_S, .tv_nsec = wait_ns % NS_PER_S };
        int n = epoll_pwait2 (s_lg.epoll_fd, events, EPOLL_BATCH, &ts, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            s_die ("epoll_pwait2: %s", strerror (errno));
        }
        for (int i = 0; i < n; i++)
            s_on_event (events [i].data.u64, events [i].events);
    }
    s_lg.t_now = s_now ();
}

//  Report -------------------------------------------------------------------

static void
s_report (void)
{
    struct rusage usage;
    getrusage (RUSAGE_SELF, &usage);
    int64_t end = s_lg.t_now;
    const char *modes [] = { "latency", "rate", "stream" };
    s_out_str ("mode", modes [s_lg.mode]);
    s_out_str ("url", s_lg.url);

    if (s_lg.mode == MODE_LATENCY) {
        s_out_int ("requests", s_lg.requests);
        s_out_int ("warmup", s_lg.warmup);
        s_out_int ("completed", s_lg.responses);
        s_out_int ("ok", s_lg.ok);
        s_out_int ("errors", s_lg.status_errors + s_lg.io_errors);
        s_out_int ("status_errors", s_lg.status_errors);
        s_out_int ("io_errors", s_lg.io_errors);
    }
    else
    if (s_lg.mode == MODE_RATE) {
        //  Over the planned duration at least: a target that dies early
        //  does not get the rate it held while it lived
        double window_s = (double) (s_lg.t_last_done - s_lg.t_start) / NS_PER_S;
        window_s = MESH_MAX (window_s, s_lg.duration_s);
        s_out_num ("rate", s_lg.rate);
        s_out_num ("duration_s", s_lg.duration_s);
        s_out_int ("connections", s_lg.connections);
        s_out_int ("planned", s_lg.total);
        s_out_int ("scheduled", s_lg.k_next);   //  whose time came before the end
        s_out_int ("sent", s_lg.sent);
        s_out_int ("completed", s_lg.responses);
        s_out_int ("ok", s_lg.ok);
        s_out_int ("errors", s_lg.status_errors + s_lg.io_errors);
        s_out_int ("status_errors", s_lg.status_errors);
        s_out_int ("io_errors", s_lg.io_errors);
        s_out_num ("achieved_rps", s_lg.ok && window_s > 0 ? (double) s_lg.ok / window_s : 0);
        s_out_bool ("overloaded", s_lg.overloaded);
        s_out_int ("max_queued", s_lg.max_queued);
        s_out_int ("unfinished", s_lg.inflight + (s_lg.k_next - s_lg.q_head));
    }
    else {
        //  Streams still open now: unfinished, and stalled if silent too long
        for (size_t i = 0; i < s_lg.conn_count; i++) {
            s_conn_t *c = &s_lg.conns [i];
            if (c->state == C_UNUSED)
                continue;
            s_lg.unfinished++;
            int64_t since = c->got_first ? c->t_last : c->t_origin;
            if (c->state != C_CONNECTING && end - since > s_lg.stall_ns)
                s_lg.stalls++;
            if (c->state != C_CONNECTING && end - since > s_lg.late_ns)
                s_lg.late++;
        }
        s_out_int ("streams", s_lg.streams);
        s_out_int ("opened", s_lg.opened);
        s_out_int ("completed", s_lg.completed);
        s_out_int ("failed", s_lg.failed + s_lg.unfinished);
        s_out_int ("connect_errors", s_lg.connect_errors);
        s_out_int ("status_errors", s_lg.status_errors);
        s_out_int ("unfinished", s_lg.unfinished);
        s_out_int ("events", s_lg.events);
        s_out_int ("stalls", s_lg.stalls);
        s_out_int ("stall_ms", s_lg.stall_ms);
        s_out_int ("late", s_lg.late);
        s_out_int ("late_ms", s_lg.late_ms);
        s_out_int ("concurrent_max", s_lg.concurrent_max);
    }
    if (s_lg.mode != MODE_STREAM) {
        s_out_int ("connect_errors", s_lg.connect_errors);
        s_out_int ("reconnects", s_lg.reconnects);
    }
    s_out_bool ("timed_out", s_lg.timed_out);
    s_out_bool ("interrupted", s_lg.interrupted);
    s_key ("elapsed_s");
    printf ("%.6f", (double) (end - s_lg.t_start) / NS_PER_S);
    s_end_field ();
    s_out_num ("cpu_user_s", (double) usage.ru_utime.tv_sec + (double) usage.ru_utime.tv_usec / 1e6);
    s_out_num ("cpu_sys_s", (double) usage.ru_stime.tv_sec + (double) usage.ru_stime.tv_usec / 1e6);
    s_out_int ("max_rss_kib", usage.ru_maxrss);

    if (s_lg.mode == MODE_LATENCY) {
        //  In request order, so rounds can be pooled: before the sort
        if (s_lg.json) {
            s_key ("samples_us");
            for (size_t i = 0; i < s_lg.latency.n; i++)
                printf ("%s%.1f", i ? "," : "[", (double) s_lg.latency.v [i] / 1000.0);
            printf ("%s", s_lg.latency.n ? "]" : "[]");
        }
        s_out_stats ("latency_us", &s_lg.latency);
    }
    else
    if (s_lg.mode == MODE_RATE) {
        s_out_stats ("latency_us", &s_lg.latency);
        s_out_stats ("send_lag_us", &s_lg.send_lag);
    }
    else {
        s_out_stats ("ttft_us", &s_lg.ttft);
        s_out_stats ("gap_us", &s_lg.gap);
    }
    if (s_lg.json)
        printf ("}\n");
    fflush (stdout);
}

//  Setup ----------------------------------------------------------------------

static void
s_usage (void)
{
    fputs (
        "usage: mesh-loadgen MODE --url http://HOST:PORT/PATH [options]\n"
        "  latency --requests N [--warmup W]\n"
        "  rate    --rate R --duration S [--connections C] [--max-inflight Q]\n"
        "  stream  --streams N [--ramp-per-sec K] [--stall-ms MS] [--late-ms MS] [--hold]\n"
        "  common: --body FILE (POST it as JSON; else GET)  --header 'Name: value'\n"
        "          --json  --connect-timeout-ms MS  --timeout-s S\n"
        "          --spin-us US (busy-poll that long before each scheduled send)\n", stderr);
    exit (2);
}

static double
s_number (const char *option, const char *text, double min)
{
    char *end;
    errno = 0;
    double value = strtod (text, &end);
    if (errno || end == text || *end || !(value >= min))
        s_die ("--%s: \"%s\" is not a number >= %g", option, text, min);
    return value;
}

static void
s_options (int argc, char **argv)
{
    static const struct option options [] = {
        { "url", required_argument, NULL, 'u' },
        { "body", required_argument, NULL, 'b' },
        { "header", required_argument, NULL, 'H' },
        { "json", no_argument, NULL, 'j' },
        { "requests", required_argument, NULL, 'n' },
        { "warmup", required_argument, NULL, 'w' },
        { "rate", required_argument, NULL, 'r' },
        { "duration", required_argument, NULL, 'd' },
        { "connections", required_argument, NULL, 'c' },
        { "max-inflight", required_argument, NULL, 'q' },
        { "streams", required_argument, NULL, 's' },
        { "ramp-per-sec", required_argument, NULL, 'k' },
        { "hold", no_argument, NULL, 'o' },
        { "stall-ms", required_argument, NULL, 'S' },
        { "late-ms", required_argument, NULL, 'L' },
        { "connect-timeout-ms", required_argument, NULL, 'C' },
        { "timeout-s", required_argument, NULL, 'T' },
        { "spin-us", required_argument, NULL, 'P' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    s_lg.connections = 64;
    s_lg.max_inflight = 10000;
    s_lg.ramp_per_sec = 2000;
    s_lg.stall_ms = 1000;
    s_lg.late_ms = 100;
    s_lg.connect_timeout_ms = 5000;
    s_lg.timeout_s = 0;                     //  120 s, after the schedule in rate mode
    int opt, index;
    while ((opt = getopt_long (argc, argv, "", options, &index)) != -1) {
        const char *name = opt == '?' ? "" : options [index].name;
        switch (opt) {
            case 'u': s_lg.url = optarg; break;
            case 'b': s_lg.body_file = optarg; break;
            case 'H':
                if (s_lg.header_count == MAX_HEADERS)
                    s_die ("more than %d --header options", MAX_HEADERS);
                s_lg.headers [s_lg.header_count++] = optarg;
                break;
            case 'j': s_lg.json = true; break;
            case 'n': s_lg.requests = (long) s_number (name, optarg, 1); break;
            case 'w': s_lg.warmup = (long) s_number (name, optarg, 0); break;
            case 'r': s_lg.rate = s_number (name, optarg, 0.001); break;
            case 'd': s_lg.duration_s = s_number (name, optarg, 0.001); break;
            case 'c': s_lg.connections = (long) s_number (name, optarg, 1); break;
            case 'q': s_lg.max_inflight = (long) s_number (name, optarg, 1); break;
            case 's': s_lg.streams = (long) s_number (name, optarg, 1); break;
            case 'k': s_lg.ramp_per_sec = s_number (name, optarg, 0); break;
            case 'o': s_lg.hold = true; break;
            case 'S': s_lg.stall_ms = (long) s_number (name, optarg, 1); break;
            case 'L': s_lg.late_ms = (long) s_number (name, optarg, 1); break;
            case 'C': s_lg.connect_timeout_ms = (long) s_number (name, optarg, 1); break;
            case 'T': s_lg.timeout_s = s_number (name, optarg, 0.001); break;
            case 'P': s_lg.spin_ns = (int64_t) (s_number (name, optarg, 0) * 1000); break;
            default: s_usage ();
        }
    }
    if (optind != argc - 1)
        s_usage ();
    const char *mode = argv [optind];
    if (mesh_streq (mode, "latency"))
        s_lg.mode = MODE_LATENCY;
    else
    if (mesh_streq (mode, "rate"))
        s_lg.mode = MODE_RATE;
    else
    if (mesh_streq (mode, "stream"))
        s_lg.mode = MODE_STREAM;
    else
        s_die ("unknown mode \"%s\" (latency, rate or stream)", mode);
    if (!s_lg.url)
        s_die ("--url is required");
    if (s_lg.mode == MODE_LATENCY && !s_lg.requests)
        s_die ("latency mode needs --requests N");
    if (s_lg.mode == MODE_RATE && (!s_lg.rate || !s_lg.duration_s))
        s_die ("rate mode needs --rate R and --duration S");
    if (s_lg.mode == MODE_STREAM && !s_lg.streams)
        s_die ("stream mode needs --streams N");
    if (!s_lg.timeout_s)
        s_lg.timeout_s = 120 + (s_lg.mode == MODE_RATE ? s_lg.duration_s : 0);
    if (s_lg.mode == MODE_STREAM && !s_lg.body_file)
        s_die ("stream mode needs --body FILE (a request with \"stream\": true)");
}

//  Splits http://HOST[:PORT][/PATH], resolves HOST and builds the request.
static void
s_target (void)
{
    const char *url = s_lg.url;
    if (strncmp (url, "http://", 7) != 0)
        s_die ("--url %s: only http:// is supported", url);
    const char *authority = url + 7;
    const char *path = strchr (authority, '/');
    size_t authority_len = path ? (size_t) (path - authority) : strlen (authority);
    if (!path)
        path = "/";
    char host [256], port [16] = "80";
    const char *host_end;
    const char *at = authority;
    if (*at == '[') {
        host_end = memchr (at, ']', authority_len);
        if (!host_end)
            s_die ("--url %s: no ] after the IPv6 address", url);
        at++;
    }
    else {
        host_end = memchr (at, ':', authority_len);
        if (!host_end)
            host_end = authority + authority_len;
    }
    size_t host_len = (size_t) (host_end - at);
    if (host_len == 0 || host_len >= sizeof host)
        s_die ("--url %s: bad host", url);
    memcpy (host, at, host_len);
    host [host_len] = 0;
    const char *colon = memchr (host_end, ':', (size_t) (authority + authority_len - host_end));
    if (colon) {
        size_t port_len = (size_t) (authority + authority_len - colon - 1);
        if (port_len == 0 || port_len >= sizeof port)
            s_die ("--url %s: bad port", url);
        memcpy (port, colon + 1, port_len);
        port [port_len] = 0;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *found;
    int rc = getaddrinfo (host, port, &hints, &found);
    if (rc)
        s_die ("--url %s: %s", url, gai_strerror (rc));
    memcpy (&s_lg.addr, found->ai_addr, found->ai_addrlen);
    s_lg.addr_len = found->ai_addrlen;
    freeaddrinfo (found);

    mesh_buf_t body;
    mesh_buf_init (&body);
    if (s_lg.body_file) {
        FILE *file = fopen (s_lg.body_file, "rb");
        if (!file)
            s_die ("--body %s: %s", s_lg.body_file, strerror (errno));
        size_t n;
        while ((n = fread (mesh_buf_reserve (&body, 65536), 1, 65536, file)) > 0)
            mesh_buf_commit (&body, n);
        if (ferror (file))
            s_die ("--body %s: read failed", s_lg.body_file);
        fclose (file);
    }
    mesh_buf_t request;
    mesh_buf_init (&request);
    mesh_buf_printf (&request, "%s %s HTTP/1.1\r\nHost: %.*s\r\n",
                     s_lg.body_file ? "POST" : "GET", path, (int) authority_len, authority);
    bool has_type = false;
    for (size_t i = 0; i < s_lg.header_count; i++) {
        const char *header = s_lg.headers [i];
        const char *hcolon = strchr (header, ':');
        if (!hcolon || hcolon == header || strpbrk (header, "\r\n"))
            s_die ("--header \"%s\": not \"Name: value\"", header);
        if ((size_t) (hcolon - header) == 12 && strncasecmp (header, "content-type", 12) == 0)
            has_type = true;
        mesh_buf_printf (&request, "%s\r\n", header);
    }
    if (s_lg.body_file) {
        if (!has_type)
            mesh_buf_append_str (&request, "Content-Type: application/json\r\n");
        mesh_buf_printf (&request, "Content-Length: %zu\r\n", mesh_buf_size (&body));
    }
    mesh_buf_append_str (&request, "\r\n");
    mesh_buf_append (&request, mesh_buf_head (&body), mesh_buf_size (&body));
    mesh_buf_free (&body);
    s_lg.request = mesh_buf_head (&request);        //  kept for the whole run
    s_lg.request_len = mesh_buf_size (&request);
}

//  Streams need a descriptor each: take all the hard limit allows.
static void
s_raise_fd_limit (size_t need)
{
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit (RLIMIT_NOFILE, &limit) < 0)
            s_warn ("setrlimit NOFILE: %s", strerror (errno));
    }
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
    &&  limit.rlim_cur < need + 16)
        s_warn ("open files limited to %llu; %zu connections need more",
                (unsigned long long) limit.rlim_cur, need);
}

int
main (int argc, char **argv)
{
    s_options (argc, argv);
    s_target ();

    struct sigaction action = { .sa_handler = s_on_signal };
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    signal (SIGPIPE, SIG_IGN);
    //  Timer slack would make every scheduled send up to 50 µs late
    prctl (PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    if (s_lg.mode == MODE_LATENCY)
        s_lg.conn_count = 1;
    else
    if (s_lg.mode == MODE_RATE)
        s_lg.conn_count = (size_t) s_lg.connections;
    else
        s_lg.conn_count = (size_t) s_lg.streams;
    s_raise_fd_limit (s_lg.conn_count);

    s_lg.epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
    s_lg.rbuf = malloc (READ_BUF_BYTES);
    s_lg.conns = calloc (s_lg.conn_count, sizeof *s_lg.conns);
    s_lg.idle = calloc (s_lg.conn_count, sizeof *s_lg.idle);
    if (s_lg.epoll_fd < 0 || !s_lg.rbuf || !s_lg.conns || !s_lg.idle)
        s_die ("cannot set up: %s", strerror (errno));
    for (size_t i = 0; i < s_lg.conn_count; i++)
        s_lg.conns [i].fd = -1;

    //  Every sample array is sized for the whole run up front
    if (s_lg.mode == MODE_LATENCY)
        s_series_init (&s_lg.latency, (size_t) s_lg.requests);
    else
    if (s_lg.mode == MODE_RATE) {
        s_lg.interval_ns = NS_PER_S / s_lg.rate;
        s_lg.total = (int64_t) (s_lg.rate * s_lg.duration_s + 0.5);
        if (s_lg.total < 1)
            s_die ("--rate x --duration is less than one request");
        s_series_init (&s_lg.latency, (size_t) s_lg.total);
        s_series_init (&s_lg.send_lag, (size_t) s_lg.total);
    }
    else {
        s_series_init (&s_lg.ttft, (size_t) s_lg.streams);
        s_series_init (&s_lg.gap, (size_t) s_lg.streams * 64);
        s_lg.stall_ns = s_lg.stall_ms * NS_PER_MS;
        s_lg.late_ns = s_lg.late_ms * NS_PER_MS;
    }

    s_lg.t_now = s_lg.t_start = s_now ();
    s_lg.t_deadline = s_lg.t_start + (int64_t) (s_lg.timeout_s * NS_PER_S);
    if (s_lg.mode != MODE_STREAM) {
        for (size_t i = 0; i < s_lg.conn_count; i++) {
            s_conn_t *c = &s_lg.conns [i];
            if (s_conn_open (c) < 0) {
                s_warn ("connect: %s", strerror (errno));
                s_lg.connect_errors++;
                c->state = C_RETRY;
                c->t_state = s_lg.t_now + RETRY_NS;
            }
        }
        if (s_lg.connect_errors == (int64_t) s_lg.conn_count)
            s_die ("cannot connect to %s", s_lg.url);
    }
    s_run ();
    s_report ();
    return 0;
}
