/*  ingress_timer: the ingress's per-request timers, in O(1).

    Every request has a deadline (the whole request, or its body) and every
    open stream a keep-alive timer.  Each kind has one delay, so a queue of
    them ordered by start is ordered by due time too: starting a timer
    appends it, stopping one unlinks it, and only the heads can be due.
    One lws timer (sul) wakes the ingress at the earliest head.

    lws' own timers (sul) are a sorted list: each insert walks it from the
    head, and a new timer, due last, walks all of it.  With one keep-alive
    and one deadline per request in that list, 10,000 open streams made each
    insert walk 10,000 entries, and the inserts (a keep-alive a stream every
    interval, a deadline a new request) took the whole core: streams stalled
    for seconds.  lws service thread only.                                  */
#ifndef INGRESS_TIMER_H
#define INGRESS_TIMER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ingress_timer_t ingress_timer_t;
typedef struct ingress_timers_t ingress_timers_t;
typedef void (ingress_timer_fn) (ingress_timer_t *timer);

struct ingress_timer_t {
    ingress_timer_t *prev, *next;
    ingress_timers_t *queue;    //  NULL while not armed
    int64_t due_us;
    ingress_timer_fn *fn;
};

//  One queue: timers of one delay
struct ingress_timers_t {
    ingress_timer_t *head, *tail;
    int64_t delay_us;
};

//  (Re)starts timer: fn is called once, delay_us after now_us (the queue's
//  delay, which must not change while timers are armed).
void    ingress_timer_start (ingress_timers_t *queue, ingress_timer_t *timer, int64_t now_us,
                             ingress_timer_fn *fn);
void    ingress_timer_stop (ingress_timer_t *timer);
bool    ingress_timer_armed (const ingress_timer_t *timer);
//  Calls every timer of queue due by now_us (each stopped before its fn
//  runs, which may start it again).  Returns the next due time, or -1.
int64_t ingress_timers_run (ingress_timers_t *queue, int64_t now_us);
//  The next due time of queue, or -1.
int64_t ingress_timers_next (const ingress_timers_t *queue);

void    ingress_timer_test (bool verbose);

#endif
