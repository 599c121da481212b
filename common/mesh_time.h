/*  mesh_time: clocks.  Monotonic for durations and deadlines, wall clock
    for timestamps that leave the process.  Any thread.                      */
#ifndef MESH_TIME_H
#define MESH_TIME_H

#include <stdint.h>
#include <time.h>

static inline int64_t
mesh_mono_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t
mesh_mono_ms (void)
{
    return mesh_mono_us () / 1000;
}

static inline int64_t
mesh_wall_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
