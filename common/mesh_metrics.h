/*  mesh_metrics: a Prometheus metrics registry.

    A family is a metric name with its help and type; a series is a family
    with one set of label values.  Look a series up once (at startup, or the
    first time a model is seen) and keep the pointer: updates are lock-free
    atomics, safe from any thread.  Lookups and rendering take a mutex.
    Label values are the caller's to keep clean (no raw client input), and
    their number is bounded: past MESH_METRICS_MAX_SERIES series a family
    counts new label values under "other", so a registry of thousands of
    keys or an upstream inventing error codes cannot grow it forever.      */
#ifndef MESH_METRICS_H
#define MESH_METRICS_H

#include "mesh_buf.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct mesh_metrics_t mesh_metrics_t;
typedef struct mesh_metric_t mesh_metric_t;

//  Series a family keeps; past it, a new set of label values is counted
//  in one series whose every label is "other"
#define MESH_METRICS_MAX_SERIES 200

mesh_metrics_t *mesh_metrics_new (void);
void mesh_metrics_destroy (mesh_metrics_t **self_p);

//  Finds or creates a series.  name follows Prometheus conventions
//  (seekmesh_requests_total, seekmesh_..._seconds); labels is the inside of
//  the braces, 'code="200",model="x"', or NULL.  The help text of a family
//  is the first one given.
mesh_metric_t *mesh_metrics_counter (mesh_metrics_t *self, const char *name,
                                     const char *help, const char *labels);
mesh_metric_t *mesh_metrics_gauge (mesh_metrics_t *self, const char *name,
                                   const char *help, const char *labels);
//  A histogram of seconds with the standard latency buckets (0.5 ms .. 60 s).
mesh_metric_t *mesh_metrics_histogram (mesh_metrics_t *self, const char *name,
                                       const char *help, const char *labels);

void   mesh_metric_inc (mesh_metric_t *self);
void   mesh_metric_add (mesh_metric_t *self, double value);
void   mesh_metric_set (mesh_metric_t *self, double value);
void   mesh_metric_observe (mesh_metric_t *self, double value);
double mesh_metric_value (mesh_metric_t *self);

//  Appends the text exposition format (version 0.0.4) to out.
void   mesh_metrics_render (mesh_metrics_t *self, mesh_buf_t *out);

void   mesh_metrics_test (bool verbose);

#endif
