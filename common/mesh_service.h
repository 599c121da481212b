/*  mesh_service: what every service's main does the same way.

    mesh_service_config reads `-c CONFIG` (and answers --print-config and
    --settings, see mesh_settings.h), names the log, loads and checks the
    config and stops the process with one line if it cannot; it blocks SIGTERM and
    SIGINT first, so every thread started later leaves them to the loop.  mesh_service_drain
    gives a mesh_loop service the SIGTERM behaviour of DESIGN.md: stop
    taking work, let what is in flight finish up to mesh.drain_ms, stop the
    loop (a second signal stops it at once).  Main thread only.             */
#ifndef MESH_SERVICE_H
#define MESH_SERVICE_H

#include "mesh_config.h"
#include "mesh_loop.h"

#include <stddef.h>

mesh_config_t *mesh_service_config (const char *name, int argc, char *argv []);

//  start: stop taking work, return what is in flight; inflight: what is left.
typedef size_t (mesh_drain_fn) (void *arg);
void mesh_service_drain (mesh_loop_t *loop, int64_t drain_ms, mesh_drain_fn *start,
                         mesh_drain_fn *inflight, void *arg);

#endif
