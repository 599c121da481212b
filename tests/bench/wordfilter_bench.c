/*  mesh-wordfilter-bench: what the sensitive-word filter costs a stream's
    chunk, with a list of N words (10,000 by default).

        mesh-wordfilter-bench [--words N] [--chunks N] [--json]

    The words: made up, deterministic, 70% Latin (4-10 letters), 30% CJK
    (2-4 characters), a fifth of them masks.  The text: an answer in
    English and Chinese, one piece per chunk as DeepSeek streams it, in
    chat.completion.chunk envelopes; a new stream every 200 chunks (one
    answer).  Two loops over the same chunks:
      matcher   mesh_wordstream_feed on each piece alone
      chunk     what the ingress does to each chunk when a list applies
                (mesh_wordchunk_filter: the chunk scanned, its content
                fed, the released text spliced back)
    Each chunk is timed on its own (p50/p99/p99.9, ns) and the loop's CPU
    (user + system) is divided by the chunks.  A stream with no list in
    force costs none of this: its chunks pass as they came.               */
#include "mesh_buf.h"
#include "mesh_util.h"
#include "mesh_wordchunk.h"
#include "mesh_wordfilter.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define PER_STREAM 200

static uint64_t s_seed = 0x9e3779b97f4a7c15ull;

static uint64_t
s_random (void)
{
    s_seed ^= s_seed << 13;
    s_seed ^= s_seed >> 7;
    s_seed ^= s_seed << 17;
    return s_seed;
}

static int64_t
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double
s_cpu_s (void)
{
    struct rusage usage;
    getrusage (RUSAGE_SELF, &usage);
    return (double) usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6
         + (double) usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

static void
s_utf8 (uint32_t cp, char *out, size_t *len)
{
    out [0] = (char) (0xe0 | (cp >> 12));
    out [1] = (char) (0x80 | ((cp >> 6) & 0x3f));
    out [2] = (char) (0x80 | (cp & 0x3f));
    *len = 3;
}

static int
s_compare (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

static int64_t
s_percentile (int64_t *sorted, size_t count, double p)
{
    size_t at = (size_t) (p / 100 * (double) (count - 1) + 0.5);
    return sorted [at < count ? at : count - 1];
}

int
main (int argc, char *argv [])
{
    long words = 10000, chunks = 200000;
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (mesh_streq (argv [i], "--words") && i + 1 < argc)
            words = strtol (argv [++i], NULL, 10);
        else
        if (mesh_streq (argv [i], "--chunks") && i + 1 < argc)
            chunks = strtol (argv [++i], NULL, 10);
        else
        if (mesh_streq (argv [i], "--json"))
            as_json = true;
        else {
            fprintf (stderr, "usage: mesh-wordfilter-bench [--words N] [--chunks N] [--json]\n");
            return 64;
        }
    }
    if (words < 1 || chunks < PER_STREAM) {
        fprintf (stderr, "mesh-wordfilter-bench: --words >= 1, --chunks >= %d\n", PER_STREAM);
        return 64;
    }
    //  The list
    int64_t started = s_now_ns ();
    mesh_wordfilter_t *filter = mesh_wordfilter_new ();
    for (long i = 0; i < words; i++) {
        char word [64], id [32];
        size_t len = 0;
        if (s_random () % 10 < 7) {
            size_t letters = 4 + s_random () % 7;
            for (size_t k = 0; k < letters; k++)
                word [len++] = (char) ('a' + s_random () % 26);
        }
        else {
            size_t characters = 2 + s_random () % 3;
            for (size_t k = 0; k < characters; k++) {
                size_t n;
                s_utf8 (0x4e00 + (uint32_t) (s_random () % 0x51a5), word + len, &n);
                len += n;
            }
        }
        word [len] = 0;
        snprintf (id, sizeof id, "w%ld", i);
        mesh_wordentry_t entry = { id, i % 3 ? "" : "tenant-a", word,
                                   s_random () % 5 ? MESH_WORD_BLOCK : MESH_WORD_MASK };
        mesh_wordfilter_add (filter, &entry, NULL, 0);
    }
    mesh_wordfilter_compile (filter);
    double compile_ms = (double) (s_now_ns () - started) / 1e6;

    //  The answer, piece by piece, and its chunks
    const char *pieces [] = {
        "Sure", "!", " Here", " is", " what", " I", " found", " about", " your", " order", ":",
        " it", " was", " shipped", " on", " Monday", " and", " should", " arrive", " within", " three",
        " business", " days", ".", " You", " can", " track", " it", " with", " the", " number",
        " 1Z", "999", "AA", "101", ".", " \xe5\xa6\x82\xe6\x9e\x9c", "\xe6\x82\xa8", "\xe8\xbf\x98",
        "\xe6\x9c\x89", "\xe5\x85\xb6\xe4\xbb\x96", "\xe9\x97\xae\xe9\xa2\x98", "\xef\xbc\x8c",
        "\xe8\xaf\xb7", "\xe9\x9a\x8f\xe6\x97\xb6", "\xe5\x91\x8a\xe8\xaf\x89", "\xe6\x88\x91",
        "\xe3\x80\x82", " Is", " there", " anything", " else", "?"
    };
    size_t piece_count = MESH_ARRAY_SIZE (pieces);
    char **envelopes = calloc (piece_count, sizeof *envelopes);
    for (size_t i = 0; i < piece_count; i++) {
        json_t *chunk = json_pack ("{s:s, s:s, s:i, s:s, s:[{s:i, s:{s:s}, s:n, s:n}]}",
                                   "id", "chatcmpl-bench", "object", "chat.completion.chunk",
                                   "created", 1767225600, "model", "deepseek-chat", "choices",
                                   "index", 0, "delta", "content", pieces [i], "logprobs", "finish_reason");
        envelopes [i] = json_dumps (chunk, JSON_COMPACT);
        json_decref (chunk);
    }
    int64_t *times = calloc ((size_t) chunks, sizeof *times);
    mesh_buf_t out [MESH_WORDFILTER_FIELDS], chunk;
    mesh_buf_init (&out [0]);
    mesh_buf_init (&out [1]);
    mesh_buf_init (&chunk);
    double results [2][4];          //  cpu ns per chunk, p50, p99, p99.9
    size_t held_max = 0, matches = 0;
    for (int loop = 0; loop < 2; loop++) {
        mesh_wordstream_t *stream = NULL;
        double cpu_before = s_cpu_s ();
        for (long c = 0; c < chunks; c++) {
            if (c % PER_STREAM == 0) {
                if (stream)
                    matches += mesh_wordstream_match_count (stream, MESH_WORD_MASK)
                             + mesh_wordstream_match_count (stream, MESH_WORD_BLOCK);
                mesh_wordstream_destroy (&stream);
                stream = mesh_wordstream_new (filter, "tenant-a");
            }
            size_t i = (size_t) c % piece_count;
            int64_t t0 = s_now_ns ();
            if (loop == 0)
                mesh_wordstream_feed (stream, MESH_WORD_CONTENT, pieces [i], strlen (pieces [i]), out);
            else {
                mesh_wordchunk_result_t result;
                mesh_wordchunk_filter (stream, envelopes [i], strlen (envelopes [i]), &chunk, &result);
            }
            times [c] = s_now_ns () - t0;
            if (mesh_wordstream_held (stream) > held_max)
                held_max = mesh_wordstream_held (stream);
            mesh_buf_reset (&out [0]);
        }
        double cpu = s_cpu_s () - cpu_before;
        mesh_wordstream_destroy (&stream);
        qsort (times, (size_t) chunks, sizeof *times, s_compare);
        results [loop][0] = cpu * 1e9 / (double) chunks;
        results [loop][1] = (double) s_percentile (times, (size_t) chunks, 50);
        results [loop][2] = (double) s_percentile (times, (size_t) chunks, 99);
        results [loop][3] = (double) s_percentile (times, (size_t) chunks, 99.9);
    }
    if (as_json)
        printf ("{\"words\":%ld,\"chunks\":%ld,\"compile_ms\":%.1f,\"longest\":%zu,\"held_max_bytes\":%zu,"
                "\"matches\":%zu,\"matcher\":{\"cpu_ns\":%.0f,\"p50_ns\":%.0f,\"p99_ns\":%.0f,\"p999_ns\":%.0f},"
                "\"chunk\":{\"cpu_ns\":%.0f,\"p50_ns\":%.0f,\"p99_ns\":%.0f,\"p999_ns\":%.0f}}\n",
                words, chunks, compile_ms, mesh_wordfilter_longest (filter), held_max, matches,
                results [0][0], results [0][1], results [0][2], results [0][3],
                results [1][0], results [1][1], results [1][2], results [1][3]);
    else
        printf ("%ld words (compiled in %.1f ms), %ld chunks: matcher %.0f ns CPU a chunk "
                "(p99 %.0f ns); the ingress's chunk work %.0f ns CPU a chunk (p50 %.0f, p99 %.0f, "
                "p99.9 %.0f ns)\n", words, compile_ms, chunks, results [0][0], results [0][2],
                results [1][0], results [1][1], results [1][2], results [1][3]);
    for (size_t i = 0; i < piece_count; i++)
        free (envelopes [i]);
    free (envelopes);
    free (times);
    mesh_buf_free (&out [0]);
    mesh_buf_free (&out [1]);
    mesh_buf_free (&chunk);
    mesh_wordfilter_unref (&filter);
    return 0;
}
