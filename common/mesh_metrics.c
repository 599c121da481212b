/*  mesh_metrics: counters, gauges and histograms in Prometheus text format. */
#include "mesh_metrics.h"
#include "mesh_util.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COUNTER, GAUGE, HISTOGRAM };

static const double s_buckets [] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
};
#define BUCKETS MESH_ARRAY_SIZE (s_buckets)

typedef struct family_t family_t;

struct mesh_metric_t {
    mesh_metric_t *next;
    family_t *family;
    char *labels;
    _Atomic uint64_t value;             //  bits of a double
    _Atomic uint64_t count;             //  histogram observations
    _Atomic uint64_t buckets [BUCKETS]; //  histogram, not cumulative
};

struct family_t {
    family_t *next;
    char *name;
    char *help;
    int type;
    mesh_metric_t *series;
    mesh_metric_t **series_tail;
    size_t count;                       //  series, against MESH_METRICS_MAX_SERIES
};

struct mesh_metrics_t {
    pthread_mutex_t lock;
    family_t *families;
    family_t **families_tail;
};

mesh_metrics_t *
mesh_metrics_new (void)
{
    mesh_metrics_t *self = calloc (1, sizeof *self);
    assert (self);
    pthread_mutex_init (&self->lock, NULL);
    self->families_tail = &self->families;
    return self;
}

void
mesh_metrics_destroy (mesh_metrics_t **self_p)
{
    assert (self_p);
    mesh_metrics_t *self = *self_p;
    if (!self)
        return;
    family_t *family = self->families;
    while (family) {
        family_t *next = family->next;
        mesh_metric_t *metric = family->series;
        while (metric) {
            mesh_metric_t *next_metric = metric->next;
            free (metric->labels);
            free (metric);
            metric = next_metric;
        }
        free (family->name);
        free (family->help);
        free (family);
        family = next;
    }
    pthread_mutex_destroy (&self->lock);
    free (self);
    *self_p = NULL;
}

//  The labels with every value "other": where a family's new series go
//  once it has MESH_METRICS_MAX_SERIES
static char *
s_other (const char *labels)
{
    size_t size = strlen (labels) + 64;
    char *out = malloc (size);
    assert (out);
    size_t len = 0;
    const char *at = labels;
    while (*at) {
        const char *eq = strchr (at, '=');
        if (!eq || eq [1] != '"')
            break;
        len += (size_t) snprintf (out + len, size - len, "%s%.*s=\"other\"", len ? "," : "",
                                  (int) (eq - at), at);
        //  past the quoted value (escaped quotes included) and its comma
        const char *p = eq + 2;
        while (*p && *p != '"')
            p += *p == '\\' && p [1] ? 2 : 1;
        at = *p ? p + 1 : p;
        if (*at == ',')
            at++;
        if (len + 1 >= size)
            break;
    }
    out [len] = 0;
    return out;
}

static mesh_metric_t *
s_lookup (mesh_metrics_t *self, const char *name, const char *help, const char *labels,
          int type)
{
    if (!labels)
        labels = "";
    pthread_mutex_lock (&self->lock);
    family_t *family = self->families;
    while (family && strcmp (family->name, name) != 0)
        family = family->next;
    if (!family) {
        family = calloc (1, sizeof *family);
        assert (family);
        family->name = strdup (name);
        family->help = strdup (help ? help : "");
        family->type = type;
        family->series_tail = &family->series;
        *self->families_tail = family;
        self->families_tail = &family->next;
    }
    assert (family->type == type);      //  one name, one type: a bug otherwise
    mesh_metric_t *metric = family->series;
    while (metric && strcmp (metric->labels, labels) != 0)
        metric = metric->next;
    char *other = NULL;
    if (!metric && family->count >= MESH_METRICS_MAX_SERIES && *labels) {
        //  Label values come from outside (model names, key ids, error
        //  codes): past the cap, new ones share one series
        other = s_other (labels);
        labels = other;
        metric = family->series;
        while (metric && strcmp (metric->labels, labels) != 0)
            metric = metric->next;
    }
    if (!metric) {
        metric = calloc (1, sizeof *metric);
        assert (metric);
        metric->family = family;
        metric->labels = strdup (labels);
        *family->series_tail = metric;
        family->series_tail = &metric->next;
        family->count++;
    }
    pthread_mutex_unlock (&self->lock);
    free (other);
    return metric;
}

mesh_metric_t *
mesh_metrics_counter (mesh_metrics_t *self, const char *name, const char *help, const char *labels)
{
    return s_lookup (self, name, help, labels, COUNTER);
}

mesh_metric_t *
mesh_metrics_gauge (mesh_metrics_t *self, const char *name, const char *help, const char *labels)
{
    return s_lookup (self, name, help, labels, GAUGE);
}

mesh_metric_t *
mesh_metrics_histogram (mesh_metrics_t *self, const char *name, const char *help, const char *labels)
{
    return s_lookup (self, name, help, labels, HISTOGRAM);
}

static double
s_bits_to_double (uint64_t bits)
{
    double value;
    memcpy (&value, &bits, sizeof value);
    return value;
}

static uint64_t
s_double_to_bits (double value)
{
    uint64_t bits;
    memcpy (&bits, &value, sizeof bits);
    return bits;
}

void
mesh_metric_add (mesh_metric_t *self, double value)
{
    uint64_t old = atomic_load_explicit (&self->value, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit (
               &self->value, &old, s_double_to_bits (s_bits_to_double (old) + value),
               memory_order_relaxed, memory_order_relaxed))
        ;
}

void
mesh_metric_inc (mesh_metric_t *self)
{
    mesh_metric_add (self, 1);
}

void
mesh_metric_set (mesh_metric_t *self, double value)
{
    atomic_store_explicit (&self->value, s_double_to_bits (value), memory_order_relaxed);
}

void
mesh_metric_observe (mesh_metric_t *self, double value)
{
    size_t i = 0;
    while (i < BUCKETS && value > s_buckets [i])
        i++;
    if (i < BUCKETS)
        atomic_fetch_add_explicit (&self->buckets [i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit (&self->count, 1, memory_order_relaxed);
    mesh_metric_add (self, value);      //  the sum
}

double
mesh_metric_value (mesh_metric_t *self)
{
    return s_bits_to_double (atomic_load_explicit (&self->value, memory_order_relaxed));
}

static void
s_number (mesh_buf_t *out, double value)
{
    if (value == floor (value) && fabs (value) < 1e15)
        mesh_buf_printf (out, "%.0f", value);
    else
        mesh_buf_printf (out, "%.9g", value);
}

static void
s_series (mesh_buf_t *out, const char *name, const char *suffix, const char *labels,
          const char *extra, double value)
{
    mesh_buf_printf (out, "%s%s", name, suffix);
    if (*labels || extra) {
        mesh_buf_printf (out, "{%s%s%s}", labels, *labels && extra ? "," : "", extra ? extra : "");
    }
    mesh_buf_append (out, " ", 1);
    s_number (out, value);
    mesh_buf_append (out, "\n", 1);
}

void
mesh_metrics_render (mesh_metrics_t *self, mesh_buf_t *out)
{
    static const char *types [] = { "counter", "gauge", "histogram" };
    pthread_mutex_lock (&self->lock);
    for (family_t *family = self->families; family; family = family->next) {
        mesh_buf_printf (out, "# HELP %s %s\n# TYPE %s %s\n", family->name, family->help,
                         family->name, types [family->type]);
        for (mesh_metric_t *m = family->series; m; m = m->next) {
            if (family->type != HISTOGRAM) {
                s_series (out, family->name, "", m->labels, NULL, mesh_metric_value (m));
                continue;
            }
            uint64_t cumulative = 0;
            char le [48];
            for (size_t i = 0; i < BUCKETS; i++) {
                cumulative += atomic_load_explicit (&m->buckets [i], memory_order_relaxed);
                snprintf (le, sizeof le, "le=\"%g\"", s_buckets [i]);
                s_series (out, family->name, "_bucket", m->labels, le, (double) cumulative);
            }
            uint64_t count = atomic_load_explicit (&m->count, memory_order_relaxed);
            s_series (out, family->name, "_bucket", m->labels, "le=\"+Inf\"", (double) count);
            s_series (out, family->name, "_sum", m->labels, NULL, mesh_metric_value (m));
            s_series (out, family->name, "_count", m->labels, NULL, (double) count);
        }
    }
    pthread_mutex_unlock (&self->lock);
}

void
mesh_metrics_test (bool verbose)
{
    (void) verbose;
    //  A family with label values from outside stops growing at the cap
    {
        mesh_metrics_t *many = mesh_metrics_new ();
        char labels [64];
        for (int i = 0; i < MESH_METRICS_MAX_SERIES + 50; i++) {
            snprintf (labels, sizeof labels, "key=\"k%d\",code=\"x\\\"y\"", i);
            mesh_metric_inc (mesh_metrics_counter (many, "seekmesh_many_total", "Many.", labels));
        }
        mesh_metric_t *other = mesh_metrics_counter (many, "seekmesh_many_total", NULL,
                                                     "key=\"other\",code=\"other\"");
        assert (mesh_metric_value (other) == 50);
        mesh_buf_t text;
        mesh_buf_init (&text);
        mesh_metrics_render (many, &text);
        size_t series = 0;
        for (const char *at = mesh_buf_head (&text); (at = strstr (at, "\nseekmesh_many_total{")); at++)
            series++;
        assert (series == MESH_METRICS_MAX_SERIES + 1);
        mesh_buf_free (&text);
        mesh_metrics_destroy (&many);
    }
    mesh_metrics_t *metrics = mesh_metrics_new ();
    mesh_metric_t *ok = mesh_metrics_counter (metrics, "seekmesh_requests_total",
                                              "Requests by status.", "code=\"200\"");
    mesh_metric_t *bad = mesh_metrics_counter (metrics, "seekmesh_requests_total",
                                               NULL, "code=\"500\"");
    assert (ok != bad);
    assert (ok == mesh_metrics_counter (metrics, "seekmesh_requests_total", NULL, "code=\"200\""));
    mesh_metric_inc (ok);
    mesh_metric_inc (ok);
    mesh_metric_add (bad, 1);
    mesh_metric_t *inflight = mesh_metrics_gauge (metrics, "seekmesh_inflight", "In flight.", NULL);
    mesh_metric_set (inflight, 3);
    mesh_metric_add (inflight, -1);
    mesh_metric_t *latency = mesh_metrics_histogram (metrics, "seekmesh_latency_seconds",
                                                     "Latency.", "stage=\"total\"");
    mesh_metric_observe (latency, 0.0007);
    mesh_metric_observe (latency, 0.003);
    mesh_metric_observe (latency, 100);
    mesh_buf_t out;
    mesh_buf_init (&out);
    mesh_metrics_render (metrics, &out);
    mesh_buf_append (&out, "", 1);
    const char *text = mesh_buf_head (&out);
    assert (strstr (text, "# TYPE seekmesh_requests_total counter\n"));
    assert (strstr (text, "seekmesh_requests_total{code=\"200\"} 2\n"));
    assert (strstr (text, "seekmesh_requests_total{code=\"500\"} 1\n"));
    assert (strstr (text, "seekmesh_inflight 2\n"));
    assert (strstr (text, "seekmesh_latency_seconds_bucket{stage=\"total\",le=\"0.0005\"} 0\n"));
    assert (strstr (text, "seekmesh_latency_seconds_bucket{stage=\"total\",le=\"0.001\"} 1\n"));
    assert (strstr (text, "seekmesh_latency_seconds_bucket{stage=\"total\",le=\"0.005\"} 2\n"));
    assert (strstr (text, "seekmesh_latency_seconds_bucket{stage=\"total\",le=\"+Inf\"} 3\n"));
    assert (strstr (text, "seekmesh_latency_seconds_count{stage=\"total\"} 3\n"));
    assert (mesh_metric_value (ok) == 2);
    mesh_buf_free (&out);
    mesh_metrics_destroy (&metrics);
    mesh_metrics_destroy (&metrics);
}
