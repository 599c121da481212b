/*  fuzz_completion: a stream's payloads (the input's lines) assembled into
    its answer two ways: mesh_completion_add, whose scanner reads the
    common chunks without jansson, and mesh_completion_add_parsed, jansson
    alone.

    Property: no crash, leak or UB; both give the same answer byte for
    byte and the same truncation, and the answer is a JSON object whose
    choices are chat.completion choices.  The first byte sets the text bound
    (so cuts are explored too).                                             */
#include "fuzz.h"
#include "mesh_completion.h"

#include <jansson.h>
#include <string.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t max_bytes = (size_t) data [0] * 8 + 1;
    const char *at = (const char *) data + 1, *end = (const char *) data + size;
    mesh_completion_t *fast = mesh_completion_new (max_bytes);
    mesh_completion_t *parsed = mesh_completion_new (max_bytes);
    FUZZ_ASSERT (fast && parsed);
    while (at < end) {
        const char *line_end = memchr (at, '\n', (size_t) (end - at));
        if (!line_end)
            line_end = end;
        mesh_completion_add (fast, at, (size_t) (line_end - at));
        mesh_completion_add_parsed (parsed, at, (size_t) (line_end - at));
        at = line_end + 1;
    }
    mesh_buf_t one, two;
    mesh_buf_init (&one);
    mesh_buf_init (&two);
    mesh_completion_render (fast, &one);
    mesh_completion_render (parsed, &two);
    FUZZ_ASSERT (mesh_buf_size (&one) == mesh_buf_size (&two));
    FUZZ_ASSERT (memcmp (mesh_buf_head (&one), mesh_buf_head (&two), mesh_buf_size (&one)) == 0);
    FUZZ_ASSERT (mesh_completion_truncated (fast) == mesh_completion_truncated (parsed));
    FUZZ_ASSERT (mesh_completion_pieces (fast) == mesh_completion_pieces (parsed));
    json_t *answer = json_loadb (mesh_buf_head (&one), mesh_buf_size (&one), 0, NULL);
    FUZZ_ASSERT (json_is_object (answer));
    FUZZ_ASSERT (json_is_string (json_object_get (answer, "object")));
    size_t i;
    json_t *choice;
    json_array_foreach (json_object_get (answer, "choices"), i, choice) {
        json_t *message = json_object_get (choice, "message");
        FUZZ_ASSERT (json_is_object (message));
        json_t *content = json_object_get (message, "content");
        FUZZ_ASSERT (json_is_string (content) || json_is_null (content));
        FUZZ_ASSERT (json_object_get (message, "role"));
    }
    json_decref (answer);
    mesh_buf_free (&one);
    mesh_buf_free (&two);
    mesh_completion_destroy (&fast);
    mesh_completion_destroy (&parsed);
    return 0;
}
