/*  fuzz_reply: a stream's payloads (the input's lines) assembled into its
    answer two ways: ingress_reply_add, whose scanner reads the common
    chunks without jansson, and ingress_reply_add_parsed, jansson alone.

    Property: no crash, leak or UB; both give the same answer byte for
    byte and the same truncation, and the answer is JSON.  The first byte
    sets the text bound (so cuts are explored too).                         */
#include "fuzz.h"
#include "ingress/ingress_reply.h"

#include <jansson.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t max_bytes = (size_t) data [0] * 8;
    const char *at = (const char *) data + 1, *end = (const char *) data + size;
    ingress_reply_t *fast = ingress_reply_new (max_bytes);
    ingress_reply_t *parsed = ingress_reply_new (max_bytes);
    FUZZ_ASSERT (fast && parsed);
    while (at < end) {
        const char *line_end = memchr (at, '\n', (size_t) (end - at));
        if (!line_end)
            line_end = end;
        ingress_reply_add (fast, at, (size_t) (line_end - at));
        ingress_reply_add_parsed (parsed, at, (size_t) (line_end - at));
        at = line_end + 1;
    }
    mesh_buf_t one, two;
    mesh_buf_init (&one);
    mesh_buf_init (&two);
    ingress_reply_render (fast, &one);
    ingress_reply_render (parsed, &two);
    FUZZ_ASSERT (mesh_buf_size (&one) == mesh_buf_size (&two));
    FUZZ_ASSERT (memcmp (mesh_buf_head (&one), mesh_buf_head (&two), mesh_buf_size (&one)) == 0);
    FUZZ_ASSERT (ingress_reply_truncated (fast) == ingress_reply_truncated (parsed));
    json_t *answer = json_loadb (mesh_buf_head (&one), mesh_buf_size (&one), 0, NULL);
    FUZZ_ASSERT (json_is_object (answer));
    json_decref (answer);
    mesh_buf_free (&one);
    mesh_buf_free (&two);
    ingress_reply_destroy (&fast);
    ingress_reply_destroy (&parsed);
    return 0;
}
