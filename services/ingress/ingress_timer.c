/*  ingress_timer: queues of timers of one delay each.                       */
#include "ingress_timer.h"

#include <assert.h>
#include <stddef.h>

void
ingress_timer_stop (ingress_timer_t *timer)
{
    ingress_timers_t *queue = timer->queue;
    if (!queue)
        return;
    if (timer->prev)
        timer->prev->next = timer->next;
    else
        queue->head = timer->next;
    if (timer->next)
        timer->next->prev = timer->prev;
    else
        queue->tail = timer->prev;
    timer->prev = timer->next = NULL;
    timer->queue = NULL;
}

void
ingress_timer_start (ingress_timers_t *queue, ingress_timer_t *timer, int64_t now_us, ingress_timer_fn *fn)
{
    ingress_timer_stop (timer);
    timer->due_us = now_us + queue->delay_us;
    //  Started later, due later: the tail is where it belongs (a clock that
    //  went back a little still keeps the queue within that little)
    timer->fn = fn;
    timer->queue = queue;
    timer->prev = queue->tail;
    timer->next = NULL;
    if (queue->tail)
        queue->tail->next = timer;
    else
        queue->head = timer;
    queue->tail = timer;
}

bool
ingress_timer_armed (const ingress_timer_t *timer)
{
    return timer->queue != NULL;
}

int64_t
ingress_timers_next (const ingress_timers_t *queue)
{
    return queue->head ? queue->head->due_us : -1;
}

int64_t
ingress_timers_run (ingress_timers_t *queue, int64_t now_us)
{
    //  A timer started again by its fn is due after now: the loop ends
    //  before it
    while (queue->head && queue->head->due_us <= now_us) {
        ingress_timer_t *timer = queue->head;
        ingress_timer_stop (timer);
        timer->fn (timer);
    }
    return ingress_timers_next (queue);
}

//  Selftest -------------------------------------------------------------------

typedef struct {
    ingress_timer_t timer;
    int fired;
    bool again;
    ingress_timers_t *queue;
    int64_t *now;
} test_t;

static void
s_test_fire (ingress_timer_t *timer)
{
    test_t *t = (test_t *) timer;
    t->fired++;
    if (t->again)
        ingress_timer_start (t->queue, &t->timer, *t->now, s_test_fire);
}

void
ingress_timer_test (bool verbose)
{
    (void) verbose;
    ingress_timers_t queue = { .delay_us = 100 };
    int64_t now = 1000;
    test_t a = { .queue = &queue, .now = &now }, b = a, c = a;
    assert (ingress_timers_next (&queue) == -1);
    ingress_timer_start (&queue, &a.timer, now, s_test_fire);
    ingress_timer_start (&queue, &b.timer, now + 10, s_test_fire);
    ingress_timer_start (&queue, &c.timer, now + 20, s_test_fire);
    assert (ingress_timers_next (&queue) == 1100);
    //  Restarting moves a timer to the tail, stopping takes it out
    ingress_timer_start (&queue, &a.timer, now + 30, s_test_fire);
    assert (ingress_timers_next (&queue) == 1110);
    ingress_timer_stop (&c.timer);
    ingress_timer_stop (&c.timer);
    assert (!ingress_timer_armed (&c.timer) && ingress_timer_armed (&a.timer));
    //  Only what is due fires, in order; one that starts itself again
    //  fires on the next run, not in this one
    b.again = true;
    now = 1115;
    assert (ingress_timers_run (&queue, now) == 1130);
    assert (a.fired == 0 && b.fired == 1 && c.fired == 0);
    assert (ingress_timers_next (&queue) == 1130 && queue.tail == &b.timer);
    now = 1300;
    assert (ingress_timers_run (&queue, now) == 1400);       //  b again, after a
    assert (a.fired == 1 && b.fired == 2);
    b.again = false;
    now = 1400;
    assert (ingress_timers_run (&queue, now) == -1);
    assert (b.fired == 3 && !queue.head && !queue.tail);
}
