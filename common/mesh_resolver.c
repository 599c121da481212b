/*  mesh_resolver: see mesh_resolver.h.

    A job lives from lookup to its dispatch: in the worker's queue, then in
    the worker's hands, then in the pipe as a pointer.  Every job is also on
    the `jobs` list (the owner's thread only) so that a cancel can find it
    and destroy can free it wherever it is.                                 */
#include "mesh_resolver.h"
#include "mesh_log.h"
#include "mesh_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct job_t job_t;
struct job_t {
    job_t *next_queued;         //  in the worker's queue (under lock)
    job_t *prev, *next;         //  on the owner's list of jobs
    uint64_t id;
    char host [256];
    int port;
    int family;
    mesh_resolver_fn *fn;
    void *arg;
    bool cancelled;
    int rc;
    size_t count;
    mesh_address_t addrs [MESH_RESOLVER_MAX_ADDRESSES];
};

struct mesh_resolver_t {
    mesh_loop_t *loop;          //  when attached
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    job_t *queue, **queue_tail;
    bool stop;
    int pipe [2];               //  worker -> owner: finished jobs
    job_t *jobs;                //  every job not yet dispatched
    uint64_t next_id;
    size_t pending;
};

//  Fills job's addresses; 0 or a getaddrinfo error
static int
s_resolve (job_t *job, int flags)
{
    struct addrinfo hints = { .ai_family = job->family == MESH_RESOLVE_IPV4 ? AF_INET : AF_UNSPEC,
                              .ai_socktype = SOCK_STREAM, .ai_flags = flags };
    char service [8];
    snprintf (service, sizeof service, "%d", job->port);
    char host [256];
    //  "[::1]" is a literal too
    size_t len = strlen (job->host);
    if (len > 2 && job->host [0] == '[' && job->host [len - 1] == ']')
        snprintf (host, sizeof host, "%.*s", (int) len - 2, job->host + 1);
    else
        snprintf (host, sizeof host, "%s", job->host);
    struct addrinfo *info = NULL;
    int rc = getaddrinfo (host, service, &hints, &info);
    if (rc != 0)
        return rc;
    job->count = 0;
    for (struct addrinfo *at = info; at && job->count < MESH_RESOLVER_MAX_ADDRESSES; at = at->ai_next) {
        if (at->ai_addrlen > sizeof job->addrs [0].addr)
            continue;
        bool seen = false;
        for (size_t i = 0; i < job->count && !seen; i++)
            seen = job->addrs [i].len == at->ai_addrlen
                && memcmp (&job->addrs [i].addr, at->ai_addr, at->ai_addrlen) == 0;
        if (seen)
            continue;
        memset (&job->addrs [job->count], 0, sizeof job->addrs [0]);
        memcpy (&job->addrs [job->count].addr, at->ai_addr, at->ai_addrlen);
        job->addrs [job->count].len = at->ai_addrlen;
        job->count++;
    }
    freeaddrinfo (info);
    return job->count ? 0 : EAI_NONAME;
}

static void *
s_worker (void *arg)
{
    mesh_resolver_t *self = arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stop) {
        job_t *job = self->queue;
        if (!job) {
            pthread_cond_wait (&self->wake, &self->lock);
            continue;
        }
        self->queue = job->next_queued;
        if (!self->queue)
            self->queue_tail = &self->queue;
        pthread_mutex_unlock (&self->lock);
        //  The system's configuration decides what AI_ADDRCONFIG allows:
        //  where only loopback has an address it would find nothing, so
        //  the mesh's own IPv4 lookups go without it
        job->rc = s_resolve (job, job->family == MESH_RESOLVE_IPV4 ? 0 : AI_ADDRCONFIG);
        //  A pointer is less than PIPE_BUF: the write is atomic.  The
        //  pipe is blocking on this end: it fills only if the owner
        //  stops reading, and destroy reads it empty before joining.
        ssize_t n;
        do
            n = write (self->pipe [1], &job, sizeof job);
        while (n < 0 && errno == EINTR);
        pthread_mutex_lock (&self->lock);
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

static void
s_forget (mesh_resolver_t *self, job_t *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        self->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    if (!job->cancelled)
        self->pending--;
    free (job);
}

void
mesh_resolver_dispatch (mesh_resolver_t *self)
{
    job_t *job;
    while (read (self->pipe [0], &job, sizeof job) == sizeof job) {
        if (!job->cancelled) {
            self->pending--;
            job->cancelled = true;      //  s_forget counts it once
            job->fn (job->arg, job->rc, job->rc == 0 ? job->addrs : NULL, job->rc == 0 ? job->count : 0);
        }
        s_forget (self, job);
    }
}

static int
s_on_pipe (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) loop; (void) fd; (void) events;
    mesh_resolver_dispatch (arg);
    return 0;
}

mesh_resolver_t *
mesh_resolver_new (void)
{
    mesh_resolver_t *self = calloc (1, sizeof *self);
    assert (self);
    if (pipe2 (self->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        free (self);
        return NULL;
    }
    fcntl (self->pipe [1], F_SETFL, 0);
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->wake, NULL);
    self->queue_tail = &self->queue;
    self->next_id = 1;
    return self;
}

void
mesh_resolver_destroy (mesh_resolver_t **self_p)
{
    assert (self_p);
    mesh_resolver_t *self = *self_p;
    if (!self)
        return;
    if (self->started) {
        pthread_mutex_lock (&self->lock);
        self->stop = true;
        pthread_cond_signal (&self->wake);
        pthread_mutex_unlock (&self->lock);
        pthread_join (self->thread, NULL);
    }
    if (self->loop)
        mesh_loop_fd_remove (self->loop, self->pipe [0]);
    //  Every job is on the list, wherever it was: free them all
    while (self->jobs) {
        job_t *job = self->jobs;
        self->jobs = job->next;
        free (job);
    }
    close (self->pipe [0]);
    close (self->pipe [1]);
    pthread_mutex_destroy (&self->lock);
    pthread_cond_destroy (&self->wake);
    free (self);
    *self_p = NULL;
}

int
mesh_resolver_attach (mesh_resolver_t *self, mesh_loop_t *loop)
{
    assert (!self->loop);
    if (mesh_loop_fd_add (loop, self->pipe [0], MESH_READ, s_on_pipe, self) < 0)
        return -1;
    self->loop = loop;
    return 0;
}

int
mesh_resolver_fd (mesh_resolver_t *self)
{
    return self->pipe [0];
}

uint64_t
mesh_resolver_lookup (mesh_resolver_t *self, const char *host, int port, int family,
                      mesh_resolver_fn *fn, void *arg)
{
    job_t *job = calloc (1, sizeof *job);
    assert (job);
    snprintf (job->host, sizeof job->host, "%s", host);
    job->port = port;
    job->family = family;
    job->fn = fn;
    job->arg = arg;
    if (mesh_host_is_numeric (host)) {
        int rc = s_resolve (job, AI_NUMERICHOST);
        fn (arg, rc, rc == 0 ? job->addrs : NULL, rc == 0 ? job->count : 0);
        free (job);
        return 0;
    }
    if (!self->started) {
        if (pthread_create (&self->thread, NULL, s_worker, self) != 0) {
            mesh_error ("cannot start the resolver thread: %s", strerror (errno));
            fn (arg, EAI_SYSTEM, NULL, 0);
            free (job);
            return 0;
        }
        self->started = true;
    }
    job->id = self->next_id++;
    job->next = self->jobs;
    if (self->jobs)
        self->jobs->prev = job;
    self->jobs = job;
    self->pending++;
    pthread_mutex_lock (&self->lock);
    *self->queue_tail = job;
    self->queue_tail = &job->next_queued;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
    return job->id;
}

void
mesh_resolver_cancel (mesh_resolver_t *self, uint64_t id)
{
    if (id == 0)
        return;
    for (job_t *job = self->jobs; job; job = job->next)
        if (job->id == id && !job->cancelled) {
            job->cancelled = true;
            self->pending--;
            return;
        }
}

size_t
mesh_resolver_pending (mesh_resolver_t *self)
{
    return self->pending;
}

bool
mesh_host_is_numeric (const char *host)
{
    unsigned char buf [sizeof (struct in6_addr)];
    if (inet_pton (AF_INET, host, buf) == 1 || inet_pton (AF_INET6, host, buf) == 1)
        return true;
    size_t len = strlen (host);
    if (len > 2 && len < 64 && host [0] == '[' && host [len - 1] == ']') {
        char inner [64];
        snprintf (inner, sizeof inner, "%.*s", (int) len - 2, host + 1);
        return inet_pton (AF_INET6, inner, buf) == 1;
    }
    return false;
}

const char *
mesh_address_host (const mesh_address_t *addr, char *out, size_t size)
{
    const struct sockaddr *sa = (const struct sockaddr *) &addr->addr;
    const void *in = sa->sa_family == AF_INET6
                   ? (const void *) &((const struct sockaddr_in6 *) sa)->sin6_addr
                   : (const void *) &((const struct sockaddr_in *) sa)->sin_addr;
    if (!inet_ntop (sa->sa_family, in, out, (socklen_t) size))
        snprintf (out, size, "?");
    return out;
}

//  Selftest -------------------------------------------------------------------

typedef struct {
    int calls;
    int rc;
    size_t count;
    char first [64];
    int port;
} test_answer_t;

static void
s_test_answer (void *arg, int rc, const mesh_address_t *addrs, size_t count)
{
    test_answer_t *answer = arg;
    answer->calls++;
    answer->rc = rc;
    answer->count = count;
    if (count) {
        mesh_address_host (&addrs [0], answer->first, sizeof answer->first);
        const struct sockaddr_in *in = (const struct sockaddr_in *) &addrs [0].addr;
        answer->port = ntohs (in->sin_port);
    }
}

static int
s_test_stop (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer; (void) arg;
    return -1;
}

//  Runs the loop until the resolver has nothing pending (or 5 s)
static void
s_test_settle (mesh_loop_t *loop, mesh_resolver_t *resolver)
{
    for (int i = 0; i < 500 && mesh_resolver_pending (resolver); i++) {
        mesh_timer_t timer = { 0 };
        mesh_loop_timer_start (loop, &timer, 10, s_test_stop, NULL);
        mesh_loop_run (loop);
        mesh_loop_timer_stop (loop, &timer);
    }
}

void
mesh_resolver_test (bool verbose)
{
    (void) verbose;
    assert (mesh_host_is_numeric ("10.1.2.3"));
    assert (mesh_host_is_numeric ("::1"));
    assert (mesh_host_is_numeric ("[fd00::5]"));
    assert (!mesh_host_is_numeric ("router"));
    assert (!mesh_host_is_numeric ("10.1.2"));
    assert (!mesh_host_is_numeric ("[router]"));

    mesh_loop_t *loop = mesh_loop_new ();
    mesh_resolver_t *resolver = mesh_resolver_new ();
    assert (resolver);
    assert (mesh_resolver_attach (resolver, loop) == 0);

    //  Literals at once, no thread
    test_answer_t literal = { 0 };
    assert (mesh_resolver_lookup (resolver, "10.1.2.3", 5555, MESH_RESOLVE_IPV4,
                                  s_test_answer, &literal) == 0);
    assert (literal.calls == 1 && literal.rc == 0 && literal.count == 1);
    assert (strcmp (literal.first, "10.1.2.3") == 0 && literal.port == 5555);
    test_answer_t v6 = { 0 };
    mesh_resolver_lookup (resolver, "[::1]", 1, MESH_RESOLVE_ANY, s_test_answer, &v6);
    assert (v6.calls == 1 && v6.rc == 0 && strcmp (v6.first, "::1") == 0);

    //  A name from /etc/hosts, later, on the owner's thread
    test_answer_t local = { 0 };
    uint64_t id = mesh_resolver_lookup (resolver, "localhost", 6379, MESH_RESOLVE_IPV4,
                                        s_test_answer, &local);
    assert (id > 0 && local.calls == 0 && mesh_resolver_pending (resolver) == 1);
    //  A name that does not exist: an error, not an address
    test_answer_t missing = { 0 };
    mesh_resolver_lookup (resolver, "no-such-host.invalid", 1, MESH_RESOLVE_IPV4,
                          s_test_answer, &missing);
    //  A cancelled lookup is never answered
    test_answer_t cancelled = { 0 };
    uint64_t gone = mesh_resolver_lookup (resolver, "localhost", 1, MESH_RESOLVE_IPV4,
                                          s_test_answer, &cancelled);
    mesh_resolver_cancel (resolver, gone);
    assert (mesh_resolver_pending (resolver) == 2);
    s_test_settle (loop, resolver);
    assert (local.calls == 1 && local.rc == 0 && local.count >= 1);
    assert (strcmp (local.first, "127.0.0.1") == 0 && local.port == 6379);
    assert (missing.calls == 1 && missing.rc != 0 && missing.count == 0);
    assert (cancelled.calls == 0);

    //  Destroyed with lookups outstanding: none is called
    test_answer_t late = { 0 };
    mesh_resolver_lookup (resolver, "localhost", 1, MESH_RESOLVE_IPV4, s_test_answer, &late);
    mesh_resolver_destroy (&resolver);
    mesh_resolver_destroy (&resolver);
    assert (late.calls == 0);
    mesh_loop_destroy (&loop);
}
