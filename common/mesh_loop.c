/*  mesh_loop: epoll + ZeroMQ + timer heap + signalfd reactor.                */
#include "mesh_loop.h"
#include "mesh_log.h"
#include "mesh_time.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_EVENTS 256
#define MAX_ZMQ    256
#define MAX_SIGNALS 8
#define MAX_IDLE    8

typedef struct {
    mesh_fd_fn *fn;
    void *arg;
    int events;
    bool used;
} fd_entry_t;

typedef struct {
    void *socket;
    int fd;
    mesh_zmq_fn *fn;
    void *arg;
    bool check;                 //  read its ZMQ_EVENTS before the next wait
} zmq_entry_t;

//  Sockets this thread sent on since its loop last looked (a few; past
//  them, every socket is looked at)
#define MAX_SENT 8
static __thread void *s_sent [MAX_SENT];
static __thread size_t s_sent_count;
static __thread bool s_sent_overflow;

struct mesh_loop_t {
    int epoll_fd;
    bool stopped;
    int64_t now_us;

    fd_entry_t *fds;            //  indexed by file descriptor
    size_t fds_size;

    zmq_entry_t zmq [MAX_ZMQ];
    size_t zmq_count;
    int64_t zmq_swept_us;       //  when every socket was last looked at

    mesh_timer_t **heap;        //  1-based binary min-heap on due_us
    size_t heap_count;
    size_t heap_size;

    int signal_fd;
    sigset_t signal_mask;
    struct { int signo; mesh_signal_fn *fn; void *arg; } signals [MAX_SIGNALS];
    size_t signal_count;

    struct { mesh_idle_fn *fn; void *arg; } idle [MAX_IDLE];
    size_t idle_count;

    struct epoll_event events [MAX_EVENTS];
    int event_count;            //  events of the batch being dispatched
    int event_at;
};

mesh_loop_t *
mesh_loop_new (void)
{
    mesh_loop_t *self = calloc (1, sizeof *self);
    assert (self);
    self->epoll_fd = epoll_create1 (EPOLL_CLOEXEC);
    if (self->epoll_fd < 0) {
        free (self);
        return NULL;
    }
    self->signal_fd = -1;
    sigemptyset (&self->signal_mask);
    self->now_us = mesh_mono_us ();
    return self;
}

void
mesh_loop_destroy (mesh_loop_t **self_p)
{
    assert (self_p);
    mesh_loop_t *self = *self_p;
    if (!self)
        return;
    close (self->epoll_fd);
    if (self->signal_fd >= 0)
        close (self->signal_fd);
    free (self->fds);
    free (self->heap);
    free (self);
    *self_p = NULL;
}

static uint32_t
s_epoll_events (int events)
{
    return (events & MESH_READ ? EPOLLIN : 0) | (events & MESH_WRITE ? EPOLLOUT : 0);
}

int
mesh_loop_fd_add (mesh_loop_t *self, int fd, int events, mesh_fd_fn *fn, void *arg)
{
    assert (fd >= 0 && fn);
    if ((size_t) fd >= self->fds_size) {
        size_t size = self->fds_size ? self->fds_size : 64;
        while (size <= (size_t) fd)
            size *= 2;
        fd_entry_t *fds = realloc (self->fds, size * sizeof *fds);
        assert (fds);
        memset (fds + self->fds_size, 0, (size - self->fds_size) * sizeof *fds);
        self->fds = fds;
        self->fds_size = size;
    }
    struct epoll_event ev = { .events = s_epoll_events (events), .data.fd = fd };
    if (epoll_ctl (self->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -1;
    self->fds [fd] = (fd_entry_t) { .fn = fn, .arg = arg, .events = events, .used = true };
    return 0;
}

int
mesh_loop_fd_events (mesh_loop_t *self, int fd, int events)
{
    assert ((size_t) fd < self->fds_size && self->fds [fd].used);
    if (self->fds [fd].events == events)
        return 0;
    struct epoll_event ev = { .events = s_epoll_events (events), .data.fd = fd };
    if (epoll_ctl (self->epoll_fd, EPOLL_CTL_MOD, fd, &ev) < 0)
        return -1;
    self->fds [fd].events = events;
    return 0;
}

void
mesh_loop_fd_remove (mesh_loop_t *self, int fd)
{
    if (fd < 0 || (size_t) fd >= self->fds_size || !self->fds [fd].used)
        return;
    epoll_ctl (self->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
    self->fds [fd].used = false;
    //  The descriptor may be reused before the rest of this batch runs
    for (int i = self->event_at; i < self->event_count; i++)
        if (self->events [i].data.fd == fd)
            self->events [i].data.fd = -1;
}

//  The ZMQ_FD only wakes epoll; s_zmq_ready is the source of truth.
static int
s_on_zmq_fd (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) events; (void) arg;
    for (size_t i = 0; i < loop->zmq_count; i++)
        if (loop->zmq [i].fd == fd)
            loop->zmq [i].check = true;
    return 0;
}

void
mesh_loop_zmq_sent (void *socket)
{
    for (size_t i = 0; i < s_sent_count; i++)
        if (s_sent [i] == socket)
            return;
    if (s_sent_count < MAX_SENT)
        s_sent [s_sent_count++] = socket;
    else
        s_sent_overflow = true;
}

int
mesh_loop_zmq_add (mesh_loop_t *self, void *socket, mesh_zmq_fn *fn, void *arg)
{
    assert (self->zmq_count < MAX_ZMQ);
    int fd;
    size_t fd_size = sizeof fd;
    if (zmq_getsockopt (socket, ZMQ_FD, &fd, &fd_size) < 0)
        return -1;
    if (mesh_loop_fd_add (self, fd, MESH_READ, s_on_zmq_fd, NULL) < 0)
        return -1;
    //  Looked at once at once: it may hold messages that never signalled
    self->zmq [self->zmq_count++] = (zmq_entry_t) { socket, fd, fn, arg, true };
    return 0;
}

void
mesh_loop_zmq_remove (mesh_loop_t *self, void *socket)
{
    for (size_t i = 0; i < self->zmq_count; i++)
        if (self->zmq [i].socket == socket) {
            mesh_loop_fd_remove (self, self->zmq [i].fd);
            self->zmq [i] = self->zmq [--self->zmq_count];
            return;
        }
}

void
mesh_loop_before_wait (mesh_loop_t *self, mesh_idle_fn *fn, void *arg)
{
    assert (self->idle_count < MAX_IDLE);
    self->idle [self->idle_count].fn = fn;
    self->idle [self->idle_count].arg = arg;
    self->idle_count++;
}

void
mesh_loop_before_wait_remove (mesh_loop_t *self, mesh_idle_fn *fn, void *arg)
{
    for (size_t i = 0; i < self->idle_count; i++)
        if (self->idle [i].fn == fn && self->idle [i].arg == arg) {
            self->idle [i] = self->idle [--self->idle_count];
            return;
        }
}

//  Timer heap ---------------------------------------------------------------

static void
s_heap_set (mesh_loop_t *self, size_t index, mesh_timer_t *timer)
{
    self->heap [index] = timer;
    timer->heap_index = index;
}

static void
s_heap_up (mesh_loop_t *self, size_t index)
{
    mesh_timer_t *timer = self->heap [index];
    while (index > 1 && self->heap [index / 2]->due_us > timer->due_us) {
        s_heap_set (self, index, self->heap [index / 2]);
        index /= 2;
    }
    s_heap_set (self, index, timer);
}

static void
s_heap_down (mesh_loop_t *self, size_t index)
{
    mesh_timer_t *timer = self->heap [index];
    while (true) {
        size_t child = index * 2;
        if (child > self->heap_count)
            break;
        if (child < self->heap_count
        &&  self->heap [child + 1]->due_us < self->heap [child]->due_us)
            child++;
        if (self->heap [child]->due_us >= timer->due_us)
            break;
        s_heap_set (self, index, self->heap [child]);
        index = child;
    }
    s_heap_set (self, index, timer);
}

void
mesh_loop_timer_stop (mesh_loop_t *self, mesh_timer_t *timer)
{
    size_t index = timer->heap_index;
    if (index == 0)
        return;
    assert (index <= self->heap_count && self->heap [index] == timer);
    mesh_timer_t *last = self->heap [self->heap_count--];
    timer->heap_index = 0;
    if (last != timer) {
        s_heap_set (self, index, last);
        s_heap_up (self, index);
        s_heap_down (self, last->heap_index);
    }
}

void
mesh_loop_timer_start_us (mesh_loop_t *self, mesh_timer_t *timer, int64_t delay_us,
                          mesh_timer_fn *fn, void *arg)
{
    mesh_loop_timer_stop (self, timer);
    timer->due_us = mesh_mono_us () + (delay_us > 0 ? delay_us : 0);
    timer->fn = fn;
    timer->arg = arg;
    if (self->heap_count + 1 >= self->heap_size) {
        size_t size = self->heap_size ? self->heap_size * 2 : 64;
        mesh_timer_t **heap = realloc (self->heap, size * sizeof *heap);
        assert (heap);
        self->heap = heap;
        self->heap_size = size;
    }
    s_heap_set (self, ++self->heap_count, timer);
    s_heap_up (self, self->heap_count);
}

void
mesh_loop_timer_start (mesh_loop_t *self, mesh_timer_t *timer, int64_t delay_ms,
                       mesh_timer_fn *fn, void *arg)
{
    mesh_loop_timer_start_us (self, timer, delay_ms * 1000, fn, arg);
}

//  Signals ------------------------------------------------------------------

static int
s_on_signal_fd (mesh_loop_t *self, int fd, int events, void *arg)
{
    (void) events; (void) arg;
    struct signalfd_siginfo info;
    while (read (fd, &info, sizeof info) == sizeof info)
        for (size_t i = 0; i < self->signal_count; i++)
            if (self->signals [i].signo == (int) info.ssi_signo
            &&  self->signals [i].fn (self, (int) info.ssi_signo, self->signals [i].arg) < 0)
                return -1;
    return 0;
}

int
mesh_loop_signal (mesh_loop_t *self, int signo, mesh_signal_fn *fn, void *arg)
{
    assert (self->signal_count < MAX_SIGNALS);
    sigaddset (&self->signal_mask, signo);
    if (pthread_sigmask (SIG_BLOCK, &self->signal_mask, NULL) != 0)
        return -1;
    int fd = signalfd (self->signal_fd, &self->signal_mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -1;
    if (self->signal_fd < 0) {
        self->signal_fd = fd;
        if (mesh_loop_fd_add (self, fd, MESH_READ, s_on_signal_fd, NULL) < 0)
            return -1;
    }
    self->signals [self->signal_count].signo = signo;
    self->signals [self->signal_count].fn = fn;
    self->signals [self->signal_count].arg = arg;
    self->signal_count++;
    return 0;
}

//  Running ------------------------------------------------------------------

int64_t
mesh_loop_now_us (mesh_loop_t *self)
{
    return self->now_us;
}

void
mesh_loop_stop (mesh_loop_t *self)
{
    self->stopped = true;
}

//  Runs the handler of every ZeroMQ socket that has input; returns true if
//  some socket still has input afterwards (the handler took a bounded batch).
static int
s_zmq_ready (mesh_loop_t *self, bool *more)
{
    *more = false;
    //  Which sockets may have changed: woken, sent on, left with messages;
    //  all of them now and then
    bool sweep = s_sent_overflow || self->now_us - self->zmq_swept_us >= MESH_LOOP_ZMQ_SWEEP_MS * 1000;
    if (sweep)
        self->zmq_swept_us = self->now_us;
    for (size_t i = 0; i < self->zmq_count; i++)
        for (size_t k = 0; k < s_sent_count && !self->zmq [i].check; k++)
            if (s_sent [k] == self->zmq [i].socket)
                self->zmq [i].check = true;
    s_sent_count = 0;
    s_sent_overflow = false;
    for (size_t i = 0; i < self->zmq_count && !self->stopped; i++) {
        zmq_entry_t *entry = &self->zmq [i];
        if (!entry->check && !sweep)
            continue;
        entry->check = false;
        int events = 0;
        size_t size = sizeof events;
        if (zmq_getsockopt (entry->socket, ZMQ_EVENTS, &events, &size) < 0)
            continue;
        if (!(events & ZMQ_POLLIN))
            continue;
        void *socket = entry->socket;
        int rc = entry->fn (self, socket, entry->arg);
        if (rc < 0)
            return -1;
        //  The handler may have removed sockets; look at this slot again
        if (rc != MESH_LOOP_DRAINED && i < self->zmq_count && self->zmq [i].socket == socket
        &&  zmq_getsockopt (socket, ZMQ_EVENTS, &events, &size) == 0
        &&  (events & ZMQ_POLLIN)) {
            self->zmq [i].check = true;
            *more = true;
        }
    }
    return 0;
}

int
mesh_loop_run (mesh_loop_t *self)
{
    self->stopped = false;
    while (!self->stopped) {
        self->now_us = mesh_mono_us ();
        bool more;
        if (s_zmq_ready (self, &more) < 0)
            break;
        bool failed = false;
        for (size_t i = 0; i < self->idle_count && !failed; i++)
            failed = self->idle [i].fn (self, self->idle [i].arg) < 0;
        if (failed || self->stopped)
            break;

        int timeout_ms = -1;
        if (more)
            timeout_ms = 0;
        else
        if (self->heap_count > 0) {
            int64_t wait_us = self->heap [1]->due_us - mesh_mono_us ();
            timeout_ms = wait_us <= 0 ? 0 : (int) ((wait_us + 999) / 1000);
        }
        int n = epoll_wait (self->epoll_fd, self->events, MAX_EVENTS, timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            mesh_error ("epoll_wait failed: %s", strerror (errno));
            return -1;
        }
        self->now_us = mesh_mono_us ();
        self->event_count = n;
        int rc = 0;
        for (self->event_at = 0; self->event_at < n && rc == 0 && !self->stopped; ) {
            struct epoll_event *ev = &self->events [self->event_at++];
            int fd = ev->data.fd;
            if (fd < 0 || (size_t) fd >= self->fds_size || !self->fds [fd].used)
                continue;
            int events = (ev->events & EPOLLIN ? MESH_READ : 0)
                       | (ev->events & EPOLLOUT ? MESH_WRITE : 0)
                       | (ev->events & (EPOLLHUP | EPOLLERR) ? MESH_HANGUP : 0);
            rc = self->fds [fd].fn (self, fd, events, self->fds [fd].arg);
        }
        self->event_count = self->event_at = 0;
        if (rc < 0)
            break;

        //  Timers due by now; one that re-arms itself for "now" waits for
        //  the next iteration, so a zero-delay timer cannot starve the loop
        int64_t now = mesh_mono_us ();
        while (self->heap_count > 0 && self->heap [1]->due_us <= now && !self->stopped) {
            mesh_timer_t *timer = self->heap [1];
            mesh_loop_timer_stop (self, timer);
            if (timer->fn (self, timer, timer->arg) < 0) {
                self->stopped = true;
                break;
            }
        }
    }
    return 0;
}

//  Selftest -----------------------------------------------------------------

typedef struct {
    mesh_timer_t timer;
    int id;
    int *log;
    int *count;
} test_timer_t;

static int
s_test_timer_log (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    test_timer_t *t = arg;
    t->log [(*t->count)++] = t->id;
    return 0;
}

static int
s_test_stop (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer; (void) arg;
    return -1;
}

static int
s_test_zmq (mesh_loop_t *loop, void *socket, void *arg)
{
    (void) loop;
    int *received = arg;
    char buf [16];
    //  Take one message per call: the loop must call again while more wait
    if (zmq_recv (socket, buf, sizeof buf, ZMQ_DONTWAIT) >= 0)
        (*received)++;
    return *received == 100 ? -1 : 0;
}

static int
s_test_pipe (mesh_loop_t *loop, int fd, int events, void *arg)
{
    assert (events & MESH_READ);
    char c;
    assert (read (fd, &c, 1) == 1);
    *(int *) arg = c;
    mesh_loop_fd_remove (loop, fd);
    return 0;
}

void
mesh_loop_test (bool verbose)
{
    (void) verbose;
    mesh_loop_t *loop = mesh_loop_new ();
    assert (loop);

    //  Timers fire in due order, a stopped timer never fires
    int log [8], count = 0;
    test_timer_t timers [5];
    int delays [5] = { 30, 10, 20, 5, 15 };
    for (int i = 0; i < 5; i++) {
        timers [i] = (test_timer_t) { .id = i, .log = log, .count = &count };
        mesh_loop_timer_start (loop, &timers [i].timer, delays [i], s_test_timer_log, &timers [i]);
    }
    mesh_loop_timer_stop (loop, &timers [2].timer);
    assert (!mesh_timer_armed (&timers [2].timer));
    mesh_timer_t stop = { 0 };
    mesh_loop_timer_start (loop, &stop, 40, s_test_stop, NULL);
    int64_t start = mesh_mono_us ();
    mesh_loop_run (loop);
    assert (mesh_mono_us () - start >= 40000);
    assert (count == 4);
    assert (log [0] == 3 && log [1] == 1 && log [2] == 4 && log [3] == 0);

    //  A pipe's read end fires once and is removed by its handler
    int fds [2];
    assert (pipe (fds) == 0);
    int got = 0;
    assert (mesh_loop_fd_add (loop, fds [0], MESH_READ, s_test_pipe, &got) == 0);
    assert (write (fds [1], "x", 1) == 1);
    mesh_loop_timer_start (loop, &stop, 20, s_test_stop, NULL);
    mesh_loop_run (loop);
    assert (got == 'x');
    close (fds [0]);
    close (fds [1]);

    //  100 queued ZeroMQ messages are all delivered even though the handler
    //  takes one at a time (the ZMQ_FD edge trap)
    void *ctx = zmq_ctx_new ();
    void *pull = zmq_socket (ctx, ZMQ_PULL);
    void *push = zmq_socket (ctx, ZMQ_PUSH);
    assert (zmq_bind (pull, "inproc://mesh-loop-test") == 0);
    assert (zmq_connect (push, "inproc://mesh-loop-test") == 0);
    for (int i = 0; i < 100; i++)
        assert (zmq_send (push, "m", 1, 0) == 1);
    int received = 0;
    assert (mesh_loop_zmq_add (loop, pull, s_test_zmq, &received) == 0);
    mesh_loop_timer_start (loop, &stop, 2000, s_test_stop, NULL);
    mesh_loop_run (loop);
    assert (received == 100);
    mesh_loop_timer_stop (loop, &stop);
    mesh_loop_zmq_remove (loop, pull);
    zmq_close (pull);
    zmq_close (push);
    zmq_ctx_term (ctx);

    mesh_loop_destroy (&loop);
    mesh_loop_destroy (&loop);
    assert (loop == NULL);
}
