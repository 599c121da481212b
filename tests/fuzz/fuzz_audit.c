/*  fuzz_audit: mesh_audit_decode on arbitrary bytes, as seekmesh-audit reads
    the data of every AUDIT message, and the encoder on whatever it accepts.

    Property: no crash, leak or UB; a rejection always says why and leaves
    the record zeroed; what decodes points only into the input, re-encodes
    (the encoder takes everything the decoder gives) no longer than it came
    (the encoder writes minimal msgpack), and decodes again to the same
    record field by field; encoding that again gives the same bytes.         */
#include "fuzz.h"
#include "mesh_audit.h"

#include <stdlib.h>
#include <string.h>

#define SAME_NUM(m)   FUZZ_ASSERT (a->m == b->m)
#define SAME_BYTES(m) FUZZ_ASSERT (a->m.size == b->m.size                            \
                                   && (a->m.size == 0                                \
                                       || memcmp (a->m.data, b->m.data, a->m.size) == 0))

static void
s_same (const mesh_audit_record_t *a, const mesh_audit_record_t *b)
{
    SAME_BYTES (id);
    SAME_NUM (start_ms);
    SAME_NUM (end_ms);
    SAME_BYTES (tenant);
    SAME_BYTES (key_id);
    SAME_BYTES (model_requested);
    SAME_BYTES (model);
    SAME_BYTES (endpoint);
    SAME_BYTES (region);
    SAME_BYTES (params);
    SAME_NUM (stream);
    SAME_NUM (status);
    SAME_BYTES (outcome);
    SAME_BYTES (error_code);
    SAME_NUM (attempts);
    SAME_NUM (cache_hit);
    SAME_NUM (queue_us);
    SAME_NUM (ttft_us);
    SAME_NUM (total_us);
    SAME_NUM (upstream_ttfb_us);
    SAME_NUM (prompt_tokens);
    SAME_NUM (completion_tokens);
    SAME_NUM (cached_tokens);
    SAME_NUM (reasoning_tokens);
    SAME_NUM (bytes_out);
    SAME_BYTES (prompt);
    SAME_BYTES (response);
    SAME_NUM (truncated);
}

//  Every text and bytes field lies inside the frame it was decoded from.
static void
s_inside (const mesh_audit_record_t *r, const uint8_t *data, size_t size)
{
    const mesh_bytes_t *fields [] = { &r->id, &r->tenant, &r->key_id, &r->model_requested,
                                      &r->model, &r->endpoint, &r->region, &r->params,
                                      &r->outcome, &r->error_code, &r->prompt, &r->response };
    for (size_t i = 0; i < sizeof fields / sizeof fields [0]; i++)
        FUZZ_ASSERT (fuzz_within (fields [i]->data, fields [i]->size, data, size));
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    mesh_audit_record_t first, second;
    static const mesh_audit_record_t zero;
    mesh_buf_t once, twice;
    mesh_buf_init (&once);
    mesh_buf_init (&twice);
    char why [128] = "";

    if (mesh_audit_decode (&first, data, size, why, sizeof why) < 0) {
        FUZZ_ASSERT (why [0] && memchr (why, 0, sizeof why));
        FUZZ_ASSERT (memcmp (&first, &zero, sizeof first) == 0);
        goto done;
    }
    s_inside (&first, data, size);
    FUZZ_ASSERT (mesh_audit_encode (&first, &once) == 0);
    FUZZ_ASSERT (mesh_buf_size (&once) <= size);
    why [0] = 0;
    if (mesh_audit_decode (&second, mesh_buf_head (&once), mesh_buf_size (&once),
                           why, sizeof why) < 0) {
        fprintf (stderr, "fuzz_audit: re-encoded record rejected: %s\n", why);
        FUZZ_ASSERT (!"re-encoded record decodes");
    }
    s_same (&first, &second);
    FUZZ_ASSERT (mesh_audit_encode (&second, &twice) == 0);
    FUZZ_ASSERT (mesh_buf_size (&once) == mesh_buf_size (&twice));
    FUZZ_ASSERT (memcmp (mesh_buf_head (&once), mesh_buf_head (&twice), mesh_buf_size (&once)) == 0);
done:
    mesh_buf_free (&once);
    mesh_buf_free (&twice);
    return 0;
}
