/*  audit_fixture: writes audit records into a store, as seekmesh-audit
    would, for tests/integration/test_audit_tools.py (which compiles it
    against build/libmesh.a).  Not a service and not installed.

        audit_fixture DIR COUNT [--first N] [--start-ms MS] [--checkpoint-every K]

    Record i (from --first, default 0) started at start-ms + i seconds
    (default: COUNT seconds ago) and is committed now.  The key ring is
    DIR/keys (make it with `seekmeshctl audit rotate-key`); the signing key
    DIR/signing.pem, made on the first run with DIR/signing.pub.pem.  A
    checkpoint follows every K records (default 5) and the last one.
    Tenants alternate t0/t1; every third record is deepseek-reasoner (asked
    for as deepseek-v4-pro), the others deepseek-chat; every fifth failed
    with 429; even records are streams.  The prompt holds "secret prompt
    <i>", the response "Echo: secret prompt <i>".  Prints the store's seq.    */
#include "mesh_audit_seal.h"
#include "mesh_audit_store.h"
#include "mesh_id.h"
#include "mesh_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mesh_bytes_t
s_text (const char *text)
{
    return (mesh_bytes_t) { text, strlen (text) };
}

int
main (int argc, char *argv [])
{
    if (argc < 3) {
        fprintf (stderr, "usage: audit_fixture DIR COUNT [--first N] [--start-ms MS] "
                 "[--checkpoint-every K]\n");
        return 64;
    }
    const char *dir = argv [1];
    size_t count = (size_t) atol (argv [2]), first = 0, every = 5;
    int64_t now = mesh_wall_ms ();
    int64_t start = now - (int64_t) count * 1000;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp (argv [i], "--first") == 0)
            first = (size_t) atol (argv [i + 1]);
        else
        if (strcmp (argv [i], "--start-ms") == 0)
            start = atoll (argv [i + 1]);
        else
        if (strcmp (argv [i], "--checkpoint-every") == 0)
            every = (size_t) atol (argv [i + 1]);
    }
    char path [4096], private_path [4096], public_path [4096], why [512];
    snprintf (path, sizeof path, "%s/keys", dir);
    snprintf (private_path, sizeof private_path, "%s/signing.pem", dir);
    snprintf (public_path, sizeof public_path, "%s/signing.pub.pem", dir);
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (path, NULL, why, sizeof why);
    EVP_PKEY *signer = keys ? mesh_audit_seal_signer_load (private_path, public_path, why, sizeof why)
                            : NULL;
    mesh_audit_store_t *store = signer ? mesh_audit_store_open (dir, keys, signer, why, sizeof why)
                                       : NULL;
    if (!store) {
        fprintf (stderr, "audit_fixture: %s\n", why);
        return 1;
    }
    for (size_t n = 0; n < count; n++) {
        size_t i = first + n;
        char id [MESH_ID_LEN + 1], tenant [8], prompt [256], response [512];
        mesh_id_new (id);
        snprintf (tenant, sizeof tenant, "t%zu", i % 2);
        bool reasoner = i % 3 == 0, failed = i % 5 == 4, stream = i % 2 == 0;
        snprintf (prompt, sizeof prompt, "{\"model\":\"%s\",\"stream\":%s,\"messages\":[{\"role\":"
                  "\"user\",\"content\":\"secret prompt %zu\"}]}",
                  reasoner ? "deepseek-v4-pro" : "deepseek-chat", stream ? "true" : "false", i);
        if (failed)
            snprintf (response, sizeof response, "{\"error\":{\"message\":\"Rate limit reached\","
                      "\"type\":\"rate_limit_error\",\"code\":\"rate_limit_exceeded\"}}");
        else
        if (stream)
            //  As the ingress assembles a stream's deltas
            snprintf (response, sizeof response,
                      "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
                      "\"message\":{\"role\":\"assistant\",\"content\":\"Echo: secret prompt %zu\"%s},"
                      "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,"
                      "\"completion_tokens\":4}}", i,
                      reasoner ? ",\"reasoning_content\":\"Thinking about: secret\"" : "");
        else
            snprintf (response, sizeof response, "{\"id\":\"x\",\"object\":\"chat.completion\","
                      "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                      "\"Echo: secret prompt %zu\"}}]}", i);
        mesh_audit_record_t record = {
            .id = s_text (id), .start_ms = (uint64_t) (start + (int64_t) n * 1000),
            .end_ms = (uint64_t) (start + (int64_t) n * 1000 + 120), .tenant = s_text (tenant),
            .key_id = s_text ("key-dev"),
            .model_requested = s_text (reasoner ? "deepseek-v4-pro" : "deepseek-chat"),
            .model = s_text (reasoner ? "deepseek-reasoner" : "deepseek-chat"),
            .endpoint = s_text ("http://127.0.0.1:9100/v1/chat/completions"),
            .region = s_text ("local"), .params = s_text (stream ? "{\"stream\":true}" : "{}"),
            .stream = stream, .status = failed ? 429 : 200,
            .outcome = s_text (failed ? MESH_AUDIT_UPSTREAM_ERROR : MESH_AUDIT_OK),
            .error_code = s_text (failed ? "rate_limit_exceeded" : ""), .attempts = 1,
            .queue_us = 300, .ttft_us = 40000 + i, .total_us = 120000, .upstream_ttfb_us = 39000,
            .prompt_tokens = 12, .completion_tokens = failed ? 0 : 4,
            .bytes_out = strlen (response), .prompt = s_text (prompt),
            .response = s_text (response) };
        if (mesh_audit_store_append (store, &record, 1, mesh_wall_ms (), why, sizeof why) != 1
        ||  ((n % every == every - 1 || n + 1 == count)
             && mesh_audit_store_checkpoint (store, mesh_wall_ms (), why, sizeof why) < 0)) {
            fprintf (stderr, "audit_fixture: %s\n", why);
            return 1;
        }
    }
    printf ("%llu\n", (unsigned long long) mesh_audit_store_seq (store));
    mesh_audit_store_close (&store);
    EVP_PKEY_free (signer);
    mesh_audit_keyring_destroy (&keys);
    return 0;
}
