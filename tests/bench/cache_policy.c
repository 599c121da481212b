/*  mesh-cache-policy: the measurement that chose cache.l1_policy.

    Replays request traces against the cache stage's own L1 (cache_l1.c)
    under each policy, LRU and S3-FIFO, with byte sizes, and prints the hit
    ratio (by requests and by bytes) and the CPU time per request (a get,
    and on a miss a put, of a bare entry) as a Markdown table.  The traces are synthetic and
    seeded, so a run is repeatable:

      zipf-0.8, zipf-1.0   100,000 answers asked for by popularity (Zipf)
      one-hit-60           60 % of requests ask something never asked
                           again, 40 % one of 20,000 answers by Zipf 0.9:
                           what a gateway in front of a chat product sees
      faq-and-scans        a Zipf 1.0 core of 5,000 answers, and every
                           50,000 requests a burst of 20,000 one-off ones
                           (a batch job, an evaluation run)

    Answers are 200 B to 8 KiB (log-uniform), like chat completions.  L1 is
    1 %, 5 % and 20 % of the bytes of every distinct answer.

        build/bin/mesh-cache-policy [--requests N]                          */
#include "cache/cache.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint64_t state;
} rng_t;

static uint64_t
s_next (rng_t *r)
{
    //  splitmix64
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double
s_uniform (rng_t *r)
{
    return (double) (s_next (r) >> 11) / 9007199254740992.0;
}

typedef struct {
    double *cdf;
    size_t n;
} zipf_t;

static zipf_t
s_zipf (size_t n, double alpha)
{
    zipf_t z = { malloc (n * sizeof (double)), n };
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += 1.0 / pow ((double) (i + 1), alpha);
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += 1.0 / pow ((double) (i + 1), alpha) / sum;
        z.cdf [i] = acc;
    }
    return z;
}

static size_t
s_draw (const zipf_t *z, rng_t *r)
{
    double u = s_uniform (r);
    size_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (z->cdf [mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

//  The size of answer id: 200 B .. 8 KiB, log-uniform, fixed per id
static size_t
s_size (uint64_t id)
{
    rng_t r = { id * 7919 + 17 };
    return (size_t) (200.0 * pow (8192.0 / 200.0, s_uniform (&r)));
}

static int
s_cmp (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const char *name;
    uint64_t *ids;
    size_t count;
    double distinct_bytes;
} trace_t;

static trace_t
s_trace (const char *name, size_t requests, uint64_t seed)
{
    trace_t t = { name, malloc (requests * sizeof (uint64_t)), requests, 0 };
    rng_t r = { seed };
    uint64_t fresh = 1ull << 40;            //  one-off ids
    if (strncmp (name, "zipf", 4) == 0) {
        zipf_t z = s_zipf (100000, strcmp (name, "zipf-0.8") == 0 ? 0.8 : 1.0);
        for (size_t i = 0; i < requests; i++)
            t.ids [i] = s_draw (&z, &r);
        free (z.cdf);
    }
    else
    if (strcmp (name, "one-hit-60") == 0) {
        zipf_t z = s_zipf (20000, 0.9);
        for (size_t i = 0; i < requests; i++)
            t.ids [i] = s_uniform (&r) < 0.6 ? fresh++ : s_draw (&z, &r);
        free (z.cdf);
    }
    else {
        zipf_t z = s_zipf (5000, 1.0);
        for (size_t i = 0; i < requests; i++)
            t.ids [i] = i % 50000 >= 30000 ? fresh++ : s_draw (&z, &r);
        free (z.cdf);
    }
    //  Bytes of every distinct answer (a sorted copy, counted once each)
    uint64_t *sorted = malloc (requests * sizeof (uint64_t));
    memcpy (sorted, t.ids, requests * sizeof (uint64_t));
    qsort (sorted, requests, sizeof (uint64_t), s_cmp);
    for (size_t i = 0; i < requests; i++)
        if (i == 0 || sorted [i] != sorted [i - 1])
            t.distinct_bytes += (double) s_size (sorted [i]);
    free (sorted);
    return t;
}

typedef struct {
    double hit_ratio;
    double byte_hit_ratio;
    double ns_per_request;
} result_t;

static result_t
s_run (const trace_t *t, size_t max_bytes, cache_l1_policy_t policy)
{
    cache_l1_t *l1 = cache_l1_new (max_bytes, policy);
    size_t hits = 0;
    double hit_bytes = 0, all_bytes = 0;
    struct timespec start, end;
    clock_gettime (CLOCK_THREAD_CPUTIME_ID, &start);
    char key [65];
    for (size_t i = 0; i < t->count; i++) {
        snprintf (key, sizeof key, "%016llx", (unsigned long long) t->ids [i]);
        size_t size = s_size (t->ids [i]);
        all_bytes += (double) size;
        if (cache_l1_get (l1, key, 0)) {
            hits++;
            hit_bytes += (double) size;
            continue;
        }
        cache_entry_t *entry = calloc (1, sizeof *entry);
        memcpy (entry->key, key, sizeof key);
        entry->bytes = size;
        cache_l1_put (l1, entry);
    }
    clock_gettime (CLOCK_THREAD_CPUTIME_ID, &end);
    cache_l1_destroy (&l1);
    double ns = (double) (end.tv_sec - start.tv_sec) * 1e9 + (double) (end.tv_nsec - start.tv_nsec);
    return (result_t) { (double) hits / (double) t->count, hit_bytes / all_bytes, ns / (double) t->count };
}

int
main (int argc, char *argv [])
{
    size_t requests = 1000000;
    if (argc == 3 && strcmp (argv [1], "--requests") == 0)
        requests = (size_t) strtoull (argv [2], NULL, 10);
    const char *traces [] = { "zipf-0.8", "zipf-1.0", "one-hit-60", "faq-and-scans" };
    const double shares [] = { 0.01, 0.05, 0.20 };
    printf ("| trace | L1 / distinct bytes | LRU hit ratio (bytes) | S3-FIFO hit ratio (bytes) | "
            "LRU CPU-ns/request | S3-FIFO CPU-ns/request |\n|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof traces / sizeof traces [0]; i++) {
        trace_t t = s_trace (traces [i], requests, 42 + i);
        for (size_t k = 0; k < sizeof shares / sizeof shares [0]; k++) {
            size_t bytes = (size_t) (t.distinct_bytes * shares [k]);
            result_t lru = s_run (&t, bytes, CACHE_L1_LRU);
            result_t s3 = s_run (&t, bytes, CACHE_L1_S3FIFO);
            printf ("| %s | %.0f %% (%.1f MiB) | %.1f %% (%.1f %%) | %.1f %% (%.1f %%) | %.0f | %.0f |\n",
                    t.name, shares [k] * 100, (double) bytes / 1048576.0, lru.hit_ratio * 100,
                    lru.byte_hit_ratio * 100, s3.hit_ratio * 100, s3.byte_hit_ratio * 100,
                    lru.ns_per_request, s3.ns_per_request);
            fflush (stdout);
        }
        free (t.ids);
    }
    return 0;
}
