/*  mesh_loop: the reactor of every non-lws service.

    One epoll set for file descriptors, ZeroMQ sockets watched through their
    ZMQ_FD, a binary heap of timers, and signals through a signalfd.

    ZeroMQ's ZMQ_FD only says "something changed" and is cleared by any call
    that processes the socket's commands, including a send.  So before every
    wait the loop reads ZMQ_EVENTS of each ZeroMQ socket that may have
    changed, and runs its handler while POLLIN shows (a handler need not
    drain the socket): a socket whose ZMQ_FD woke the loop, one a message
    was sent on since (mesh_msg_send says so: mesh_loop_zmq_sent), one whose
    handler left messages, and every socket every MESH_LOOP_ZMQ_SWEEP_MS.
    (Reading ZMQ_EVENTS of an idle socket costs two system calls, getpid
    and poll, inside libzmq: every socket at every turn made them most of a
    service's system calls.)

    Handlers return 0 to go on or -1 to stop the loop.  Single-threaded: only
    the thread running mesh_loop_run may call these functions.              */
#ifndef MESH_LOOP_H
#define MESH_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mesh_loop_t mesh_loop_t;
typedef struct mesh_timer_t mesh_timer_t;

enum { MESH_READ = 1, MESH_WRITE = 2, MESH_HANGUP = 4 };

typedef int (mesh_fd_fn) (mesh_loop_t *loop, int fd, int events, void *arg);
typedef int (mesh_zmq_fn) (mesh_loop_t *loop, void *socket, void *arg);
typedef int (mesh_timer_fn) (mesh_loop_t *loop, mesh_timer_t *timer, void *arg);
typedef int (mesh_signal_fn) (mesh_loop_t *loop, int signo, void *arg);

//  Embed a timer in the structure it serves; no allocation per timer.
struct mesh_timer_t {
    int64_t due_us;
    size_t heap_index;          //  0 when not armed
    mesh_timer_fn *fn;
    void *arg;
};

mesh_loop_t *mesh_loop_new (void);
void    mesh_loop_destroy (mesh_loop_t **self_p);

//  Watches fd for MESH_READ and/or MESH_WRITE (level-triggered).
int     mesh_loop_fd_add (mesh_loop_t *self, int fd, int events,
                          mesh_fd_fn *fn, void *arg);
int     mesh_loop_fd_events (mesh_loop_t *self, int fd, int events);
//  Stops watching fd; events already fetched for it are dropped.  The
//  caller closes fd afterwards.
void    mesh_loop_fd_remove (mesh_loop_t *self, int fd);

//  Calls fn whenever socket has a message to receive.  fn returns 0 (the
//  loop looks at the socket again before it waits), MESH_LOOP_DRAINED when
//  it read until ZeroMQ said EAGAIN (the socket will signal new input), or
//  -1 to stop the loop.
int     mesh_loop_zmq_add (mesh_loop_t *self, void *socket,
                           mesh_zmq_fn *fn, void *arg);
#define MESH_LOOP_DRAINED 1
void    mesh_loop_zmq_remove (mesh_loop_t *self, void *socket);
//  A message was sent on socket by this thread: its ZMQ_EVENTS is read
//  again before the next wait.  Any thread (a note per thread).
void    mesh_loop_zmq_sent (void *socket);
#define MESH_LOOP_ZMQ_SWEEP_MS 10

//  Calls fn at every turn of the loop, before it waits (after the turn's
//  events and timers): where what the turn queued goes out at once, in
//  one piece (mesh_outbox's batches).  fn returns 0, or -1 to stop.
typedef int (mesh_idle_fn) (mesh_loop_t *loop, void *arg);
void    mesh_loop_before_wait (mesh_loop_t *self, mesh_idle_fn *fn, void *arg);
void    mesh_loop_before_wait_remove (mesh_loop_t *self, mesh_idle_fn *fn, void *arg);

//  Arms (or re-arms) timer to fire once after delay_ms.
void    mesh_loop_timer_start (mesh_loop_t *self, mesh_timer_t *timer,
                               int64_t delay_ms, mesh_timer_fn *fn, void *arg);
void    mesh_loop_timer_start_us (mesh_loop_t *self, mesh_timer_t *timer,
                                  int64_t delay_us, mesh_timer_fn *fn, void *arg);
void    mesh_loop_timer_stop (mesh_loop_t *self, mesh_timer_t *timer);
static inline bool mesh_timer_armed (const mesh_timer_t *t) { return t->heap_index != 0; }

//  Blocks signo in the calling thread and delivers it to fn.  Call before
//  starting other threads so they inherit the blocked mask.
int     mesh_loop_signal (mesh_loop_t *self, int signo, mesh_signal_fn *fn, void *arg);

//  Monotonic time of the current loop iteration.
int64_t mesh_loop_now_us (mesh_loop_t *self);
static inline int64_t mesh_loop_now_ms (mesh_loop_t *self) { return mesh_loop_now_us (self) / 1000; }

//  Runs until a handler returns -1 or mesh_loop_stop is called; returns 0.
int     mesh_loop_run (mesh_loop_t *self);
void    mesh_loop_stop (mesh_loop_t *self);

void    mesh_loop_test (bool verbose);

#endif
