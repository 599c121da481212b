/*  fuzz_cache_entry: what the cache stage reads back from Redis (L2): a
    kept answer's encoding (cache_entry_decode), and the chat.completion
    inside it cut into what a hit is served as.

    Input: the bytes of a Redis value after its "SMP1" prefix, or, when the
    first byte is '{', a chat.completion body kept as it is.
    Properties: no crash, leak or UB; a refusal says why; a decoded entry
    encodes and decodes again to the same entry, and serves a body that parses as a JSON object
    with the new id and created and chunks that each parse as a
    chat.completion.chunk with the new id.                                   */
#include "fuzz.h"
#include "cache/cache.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void
s_serves (const cache_entry_t *entry)
{
    mesh_buf_t out;
    mesh_buf_init (&out);
    cache_entry_body (entry, "chatcmpl-fuzz", 42, &out);
    json_t *body = json_loadb (mesh_buf_head (&out), mesh_buf_size (&out), 0, NULL);
    FUZZ_ASSERT (json_is_object (body));
    FUZZ_ASSERT (strcmp (json_string_value (json_object_get (body, "id")), "chatcmpl-fuzz") == 0);
    FUZZ_ASSERT (json_integer_value (json_object_get (body, "created")) == 42);
    json_decref (body);
    FUZZ_ASSERT (entry->chunk_count >= 2);
    for (size_t i = 0; i < entry->chunk_count; i++) {
        cache_entry_chunk (entry, i, "chatcmpl-fuzz", 42, &out);
        json_t *chunk = json_loadb (mesh_buf_head (&out), mesh_buf_size (&out), 0, NULL);
        FUZZ_ASSERT (json_is_object (chunk));
        FUZZ_ASSERT (strcmp (json_string_value (json_object_get (chunk, "object")), "chat.completion.chunk") == 0);
        FUZZ_ASSERT (json_is_array (json_object_get (chunk, "choices")));
        json_decref (chunk);
    }
    mesh_buf_free (&out);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char why [256] = "";
    cache_entry_t *entry;
    if (size && data [0] == '{') {
        entry = cache_entry_new ("k", "m", (const char *) data, size, 1, 1000, 16, why, sizeof why);
        if (!entry) {
            FUZZ_ASSERT (why [0] && memchr (why, 0, sizeof why));
            return 0;
        }
        s_serves (entry);
        cache_entry_destroy (&entry);
        return 0;
    }
    entry = cache_entry_decode ("k", (const char *) data, size, 16, why, sizeof why);
    if (!entry) {
        FUZZ_ASSERT (why [0] && memchr (why, 0, sizeof why));
        return 0;
    }
    mesh_buf_t again;
    mesh_buf_init (&again);
    cache_entry_encode (entry, &again);
    cache_entry_t *back = cache_entry_decode ("k", mesh_buf_head (&again), mesh_buf_size (&again), 16,
                                              why, sizeof why);
    FUZZ_ASSERT (back);
    FUZZ_ASSERT (back->body_len == entry->body_len && memcmp (back->body, entry->body, entry->body_len) == 0);
    FUZZ_ASSERT (back->expires_ms == entry->expires_ms && strcmp (back->model, entry->model) == 0);
    FUZZ_ASSERT (back->chunk_count == entry->chunk_count);
    s_serves (entry);
    cache_entry_destroy (&back);
    cache_entry_destroy (&entry);
    mesh_buf_free (&again);
    return 0;
}
