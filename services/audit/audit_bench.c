/*  audit_bench: the throughput check of the audit service's real path.

        seekmesh-audit bench [-c CONFIG] [-e ENDPOINT] [-n RECORDS]
                             [-s BYTES] [-p]

    One DEALER, like an ingress: sends RECORDS AUDIT messages (seq 1..N,
    each a distinct request id, a prompt and a response of BYTES each) to
    a running seekmesh-audit (ENDPOINT, default audit.listen of CONFIG)
    as fast as the socket takes them, and waits for the ACK of seq N:
    the time from the first send to that ACK gives durable records/s
    (committed and synced).  -p encodes every message before the clock
    starts, so the client's encoding does not compete for the CPU.
    Main thread; a client only, nothing here runs in the service.          */
#include "audit.h"

#include "mesh_curve.h"
#include "mesh_audit.h"
#include "mesh_config.h"
#include "mesh_id.h"
#include "mesh_log.h"
#include "mesh_msg.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_zmq.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define S_TEXT(s) { s, sizeof s - 1 }

void
audit_bench_record (mesh_audit_record_t *record, const char *id, const mesh_bytes_t *prompt,
                    const mesh_bytes_t *response)
{
    int64_t now = mesh_wall_ms ();
    *record = (mesh_audit_record_t) {
        .id = { id, MESH_ID_LEN },
        .start_ms = (uint64_t) now - 850, .end_ms = (uint64_t) now,
        .tenant = S_TEXT ("bench"), .key_id = S_TEXT ("key-bench"),
        .model_requested = S_TEXT ("deepseek-chat"), .model = S_TEXT ("deepseek-chat"),
        .endpoint = S_TEXT ("http://127.0.0.1:9100/v1/chat/completions"),
        .region = S_TEXT ("local"),
        .params = S_TEXT ("{\"stream\":true,\"temperature\":0.7}"),
        .stream = true, .status = 200, .outcome = S_TEXT (MESH_AUDIT_OK),
        .error_code = S_TEXT (""), .attempts = 1,
        .queue_us = 1200, .ttft_us = 310000, .total_us = 850000, .upstream_ttfb_us = 300000,
        .prompt_tokens = 256, .completion_tokens = 256, .bytes_out = 4096,
        .prompt = *prompt, .response = *response
    };
}

//  Text of about size bytes shaped like a chat request and an SSE stream
static void
s_fill (mesh_buf_t *prompt, mesh_buf_t *response, size_t size)
{
    mesh_buf_append_str (prompt, "{\"model\":\"deepseek-chat\",\"stream\":true,"
                                 "\"messages\":[{\"role\":\"user\",\"content\":\"");
    while (mesh_buf_size (prompt) + 4 < size)
        mesh_buf_append_str (prompt, mesh_buf_size (prompt) % 7 ? "lorem " : "ipsum ");
    mesh_buf_append_str (prompt, "\"}]}");
    while (mesh_buf_size (response) < size)
        mesh_buf_printf (response, "{\"choices\":[{\"delta\":{\"content\":\" t%zu\"}}]}\n",
                         mesh_buf_size (response));
}

typedef struct {
    mesh_msg_t msg;
    mesh_buf_t *record;
    mesh_buf_t *frame;          //  the AUDIT message, encoded
    mesh_bytes_t prompt;
    mesh_bytes_t response;
} bench_t;

//  Encodes the AUDIT message of seq, with a new request id, into frame
static void
s_encode (bench_t *self, uint64_t seq)
{
    char id [MESH_ID_LEN + 1];
    mesh_id_new (id);
    mesh_audit_record_t record;
    audit_bench_record (&record, id, &self->prompt, &self->response);
    mesh_buf_reset (self->record);
    int rc = mesh_audit_encode (&record, self->record);
    assert (rc == 0);
    self->msg.seq = seq;
    self->msg.data = (mesh_bytes_t) { mesh_buf_head (self->record), mesh_buf_size (self->record) };
    mesh_buf_reset (self->frame);
    rc = mesh_msg_encode (&self->msg, self->frame);
    assert (rc == 0);
    (void) rc;
}

//  Reads the ACKs queued; returns the highest seq acknowledged
static uint64_t
s_read_acks (void *dealer, uint64_t acked)
{
    mesh_inbox_t inbox;
    char why [128];
    int rc;
    while ((rc = mesh_msg_recv (dealer, &inbox, false, why, sizeof why)) != 0) {
        if (rc > 0 && inbox.msg.type == MESH_MSG_ACK && inbox.msg.seq > acked)
            acked = inbox.msg.seq;
        if (rc > 0)
            mesh_inbox_close (&inbox);
    }
    return acked;
}

static void
s_usage (void)
{
    fprintf (stderr, "usage: seekmesh-audit bench [-c CONFIG] [-e ENDPOINT] [-n RECORDS] "
                     "[-s BYTES] [-p]\n");
}

//  A DEALER that speaks to the audit service at endpoint as an ingress
//  does: with a config, CURVE and all. Its routing id goes in sender.
static void *
s_connect (void *ctx, mesh_config_t *config, mesh_metrics_t *metrics, const char *endpoint,
           char *sender, size_t sender_size)
{
    char why [512];
    if (config && mesh_curve_start (config, ctx, "ingress", metrics, why, sizeof why) < 0)
        mesh_fatal ("%s", why);
    void *dealer = mesh_zmq_socket (ctx, ZMQ_DEALER);
    snprintf (sender, sender_size, "ingress-bench-%d-%lld", (int) getpid (), (long long) mesh_wall_ms ());
    zmq_setsockopt (dealer, ZMQ_ROUTING_ID, sender, strlen (sender));
    if (mesh_curve_connect (dealer, "audit", endpoint, why, sizeof why) < 0)
        mesh_fatal ("%s", why);
    return dealer;
}

//  -p: every message encoded before the clock starts; the caller frees
static zmq_msg_t *
s_preencode (bench_t *bench, long records)
{
    zmq_msg_t *frames = calloc ((size_t) records, sizeof *frames);
    assert (frames);
    for (long i = 0; i < records; i++) {
        s_encode (bench, (uint64_t) i + 1);
        zmq_msg_init_size (&frames [i], mesh_buf_size (bench->frame));
        memcpy (zmq_msg_data (&frames [i]), mesh_buf_head (bench->frame), mesh_buf_size (bench->frame));
    }
    return frames;
}

//  Sends seq 1..records (frames, if encoded already), reading the ACKs
//  as it goes; returns the highest seq acknowledged so far
static uint64_t
s_send_all (bench_t *bench, void *dealer, zmq_msg_t *frames, long records)
{
    uint64_t acked = 0;
    for (long i = 0; i < records; i++) {
        int rc;
        if (frames)
            rc = zmq_msg_send (&frames [i], dealer, 0);
        else {
            s_encode (bench, (uint64_t) i + 1);
            rc = zmq_send (dealer, mesh_buf_head (bench->frame), mesh_buf_size (bench->frame), 0);
        }
        if (rc < 0)
            mesh_fatal ("send failed: %s", zmq_strerror (errno));
        if (i % 256 == 0)
            acked = s_read_acks (dealer, acked);
    }
    return acked;
}

//  Waits up to two minutes for the ACK of the last seq
static uint64_t
s_wait_acks (void *dealer, uint64_t acked, long records)
{
    int64_t deadline_us = mesh_mono_us () + 120 * 1000000LL;
    while (acked < (uint64_t) records && mesh_mono_us () < deadline_us) {
        zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
        zmq_poll (&item, 1, 100);
        acked = s_read_acks (dealer, acked);
    }
    return acked;
}

int
audit_bench (int argc, char *argv [])
{
    const char *config_path = NULL, *endpoint = NULL;
    long records = 200000, size = 1024;
    bool preencode = false;
    int opt;
    optind = 1;
    while ((opt = getopt (argc, argv, "c:e:n:s:p")) != -1) {
        if (opt == 'c')
            config_path = optarg;
        else if (opt == 'e')
            endpoint = optarg;
        else if (opt == 'n')
            records = atol (optarg);
        else if (opt == 's')
            size = atol (optarg);
        else if (opt == 'p')
            preencode = true;
        else {
            s_usage ();
            return 2;
        }
    }
    if (records < 1 || size < 64 || size > 16 * 1024 * 1024) {
        s_usage ();
        return 2;
    }
    mesh_log_init ("audit-bench");
    char why [512], address [256];
    mesh_config_t *config = NULL;
    if (!endpoint) {
        config = mesh_config_load (config_path, why, sizeof why);
        if (!config)
            mesh_fatal ("%s", why);
        snprintf (address, sizeof address, "%s", mesh_setting_str (config, "audit.listen"));
        if (mesh_config_failed (config))
            mesh_fatal ("%s", mesh_config_failed (config));
        endpoint = address;
    }

    void *ctx = zmq_ctx_new ();
    mesh_metrics_t *metrics = mesh_metrics_new ();
    char sender [128];
    void *dealer = s_connect (ctx, config, metrics, endpoint, sender, sizeof sender);

    mesh_buf_t prompt, response, record_buf, frame_buf;
    mesh_buf_init (&prompt);
    mesh_buf_init (&response);
    mesh_buf_init (&record_buf);
    mesh_buf_init (&frame_buf);
    s_fill (&prompt, &response, (size_t) size);
    mesh_bytes_t prompt_bytes = { mesh_buf_head (&prompt), mesh_buf_size (&prompt) };
    mesh_bytes_t response_bytes = { mesh_buf_head (&response), mesh_buf_size (&response) };

    bench_t bench = { .record = &record_buf, .frame = &frame_buf,
                      .prompt = prompt_bytes, .response = response_bytes };
    mesh_msg_init (&bench.msg, MESH_MSG_AUDIT, NULL);
    snprintf (bench.msg.sender, sizeof bench.msg.sender, "%s", sender);

    zmq_msg_t *frames = preencode ? s_preencode (&bench, records) : NULL;
    s_encode (&bench, 1);
    size_t frame_size = mesh_buf_size (&frame_buf);
    //  Let the connection come up before the clock starts
    zmq_poll (NULL, 0, 200);

    int64_t start_us = mesh_mono_us ();
    uint64_t acked = s_send_all (&bench, dealer, frames, records);
    int64_t sent_us = mesh_mono_us ();
    acked = s_wait_acks (dealer, acked, records);
    int64_t end_us = mesh_mono_us ();
    double seconds = (double) (end_us - start_us) / 1e6;
    printf ("%ld records (prompt %zu + response %zu bytes, %zu-byte messages) to %s\n",
            records, prompt_bytes.size, response_bytes.size, frame_size, endpoint);
    printf ("sent in %.3f s; acked up to seq %llu after %.3f s: %.0f durable records/s\n",
            (double) (sent_us - start_us) / 1e6, (unsigned long long) acked, seconds,
            (double) acked / seconds);

    free (frames);
    mesh_buf_free (&prompt);
    mesh_buf_free (&response);
    mesh_buf_free (&record_buf);
    mesh_buf_free (&frame_buf);
    zmq_close (dealer);
    zmq_ctx_term (ctx);
    mesh_metrics_destroy (&metrics);
    mesh_config_destroy (&config);
    return acked == (uint64_t) records ? 0 : 1;
}
