/*  mesh-lws-client: the load of `mesh-loadgen latency` (one connection,
    closed loop: N chat POSTs one after the other, each answer read whole)
    made through libwebsockets' HTTP client instead of the mesh's own client
    code (mesh_conn, mesh_http, mesh_sse: what the connector and
    mesh-loadgen are built on).  It exists to measure one against the other
    (DESIGN.md, "Why the connector has its own client"):

        mesh-lws-client --url http://127.0.0.1:9100/v1/chat/completions \
                        --body FILE --requests N [--stream]

    prints requests, seconds, requests/s and the process's CPU-µs per
    request (user + system), as one JSON object.  Keep-alive: each request
    asks lws to pipeline onto the previous connection (LCCSCF_PIPELINE).   */
#include <libwebsockets.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static struct {
    char host [128];
    int port;
    char path [256];
    char *body;
    size_t body_len;
    int requests;
    int done;
    int errors;
    bool stream;
    bool failed;
    size_t bytes;
    struct lws_context *context;
} s;

static void s_next (void);

static int
s_callback (struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void) user;
    switch (reason) {
        case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
            unsigned char **p = (unsigned char **) in, *end = (*p) + len;
            char length [16];
            snprintf (length, sizeof length, "%zu", s.body_len);
            if (lws_add_http_header_by_token (wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                              (const unsigned char *) "application/json", 16, p, end)
            ||  lws_add_http_header_by_token (wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
                                              (const unsigned char *) length, (int) strlen (length), p, end))
                return -1;
            lws_client_http_body_pending (wsi, 1);
            lws_callback_on_writable (wsi);
            return 0;
        }
        case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE: {
            unsigned char buf [LWS_PRE + 8192];
            if (s.body_len > sizeof buf - LWS_PRE)
                return -1;
            memcpy (buf + LWS_PRE, s.body, s.body_len);
            lws_client_http_body_pending (wsi, 0);
            if (lws_write (wsi, buf + LWS_PRE, s.body_len, LWS_WRITE_HTTP_FINAL) != (int) s.body_len)
                return -1;
            return 0;
        }
        case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
            if (lws_http_client_http_response (wsi) != 200)
                s.errors++;
            return 0;
        case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
            char buf [LWS_PRE + 16384];
            char *p = buf + LWS_PRE;
            int n = (int) sizeof buf - LWS_PRE;
            if (lws_http_client_read (wsi, &p, &n) < 0)
                return -1;
            return 0;
        }
        case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
            s.bytes += len;
            return 0;
        case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
            s.done++;
            s_next ();
            return 0;
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
            fprintf (stderr, "connection error: %s\n", in ? (char *) in : "?");
            s.failed = true;
            return 0;
        default:
            return lws_callback_http_dummy (wsi, reason, user, in, len);
    }
}

static const struct lws_protocols s_protocols [] = {
    { "bench", s_callback, 0, 0, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void
s_next (void)
{
    if (s.done >= s.requests)
        return;
    struct lws_client_connect_info info;
    memset (&info, 0, sizeof info);
    info.context = s.context;
    info.address = s.host;
    info.port = s.port;
    info.path = s.path;
    info.host = s.host;
    info.origin = s.host;
    info.method = "POST";
    info.protocol = s_protocols [0].name;
    info.ssl_connection = LCCSCF_PIPELINE | LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
    info.alpn = "http/1.1";
    if (!lws_client_connect_via_info (&info))
        s.failed = true;
}

static double
s_cpu_s (void)
{
    struct rusage usage;
    getrusage (RUSAGE_SELF, &usage);
    return (double) usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6
         + (double) usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

int
main (int argc, char *argv [])
{
    const char *url = NULL, *body_file = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp (argv [i], "--url") == 0)
            url = argv [i + 1];
        else
        if (strcmp (argv [i], "--body") == 0)
            body_file = argv [i + 1];
        else
        if (strcmp (argv [i], "--requests") == 0)
            s.requests = atoi (argv [i + 1]);
    }
    if (!url || !body_file || s.requests <= 0
    ||  sscanf (url, "http://%127[^:]:%d%255s", s.host, &s.port, s.path) != 3) {
        fprintf (stderr, "usage: mesh-lws-client --url http://HOST:PORT/PATH --body FILE --requests N\n");
        return 2;
    }
    FILE *f = fopen (body_file, "rb");
    if (!f) {
        perror (body_file);
        return 2;
    }
    s.body = malloc (65536);
    s.body_len = fread (s.body, 1, 65536, f);
    fclose (f);
    lws_set_log_level (LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset (&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = s_protocols;
    s.context = lws_create_context (&info);
    if (!s.context)
        return 1;
    struct timespec start, end;
    double cpu = s_cpu_s ();
    clock_gettime (CLOCK_MONOTONIC, &start);
    s_next ();
    while (s.done < s.requests && !s.failed)
        if (lws_service (s.context, 0) < 0)
            break;
    clock_gettime (CLOCK_MONOTONIC, &end);
    cpu = s_cpu_s () - cpu;
    double seconds = (double) (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
    printf ("{\"client\":\"libwebsockets\",\"requests\":%d,\"errors\":%d,"
            "\"seconds\":%.3f,\"rps\":%.0f,\"cpu_us_per_request\":%.1f,\"bytes\":%zu}\n",
            s.done, s.errors, seconds, s.done / seconds, cpu * 1e6 / s.done, s.bytes);
    lws_context_destroy (s.context);
    free (s.body);
    return s.failed || s.done < s.requests ? 1 : 0;
}
