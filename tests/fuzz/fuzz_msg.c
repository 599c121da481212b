/*  fuzz_msg: mesh_msg_decode on arbitrary frames, as every service reads
    its ZeroMQ peers, and the encoder on whatever it accepts.

    Property: no crash, leak or UB; a rejection always says why; what
    decodes re-encodes (the encoder takes everything the decoder gives), no
    longer than it came (the encoder writes minimal msgpack), and decodes
    again to the same message field by field; encoding that again gives
    the same bytes.                                                          */
#include "fuzz.h"
#include "mesh_msg.h"

#include <stdlib.h>
#include <string.h>

//  Compares every field of the schema.  Messages start zeroed, so fields
//  a type does not use compare equal.
static void
s_same (const mesh_msg_t *a, const mesh_msg_t *b)
{
    FUZZ_ASSERT (a->type == b->type);
    FUZZ_ASSERT (strcmp (a->id, b->id) == 0);
#define F(NAME, kind, member, max) FUZZ_SAME_##kind (member);
#define FUZZ_SAME_U32(m)  FUZZ_ASSERT (a->m == b->m)
#define FUZZ_SAME_U64(m)  FUZZ_ASSERT (a->m == b->m)
#define FUZZ_SAME_BOOL(m) FUZZ_ASSERT (a->m == b->m)
#define FUZZ_SAME_STR(m)  FUZZ_ASSERT (strcmp (a->m, b->m) == 0)
#define FUZZ_SAME_BIN(m)  FUZZ_ASSERT (a->m.size == b->m.size                   \
                                       && (a->m.size == 0                       \
                                           || memcmp (a->m.data, b->m.data, a->m.size) == 0))
    MESH_FIELDS (F)
#undef F
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    mesh_msg_t *first = calloc (1, sizeof *first);
    mesh_msg_t *second = calloc (1, sizeof *second);
    FUZZ_ASSERT (first && second);
    mesh_buf_t once, twice;
    mesh_buf_init (&once);
    mesh_buf_init (&twice);
    char why [128] = "";

    if (mesh_msg_decode (first, data, size, why, sizeof why) < 0) {
        FUZZ_ASSERT (why [0] && memchr (why, 0, sizeof why));
        goto done;
    }
    FUZZ_ASSERT (first->type < MESH_MSG_MAX);
    FUZZ_ASSERT (mesh_msg_encode (first, &once) == 0);
    FUZZ_ASSERT (mesh_buf_size (&once) <= size);
    why [0] = 0;
    if (mesh_msg_decode (second, mesh_buf_head (&once), mesh_buf_size (&once), why, sizeof why) < 0) {
        fprintf (stderr, "fuzz_msg: re-encoded message rejected: %s\n", why);
        FUZZ_ASSERT (!"re-encoded message decodes");
    }
    s_same (first, second);
    FUZZ_ASSERT (mesh_msg_encode (second, &twice) == 0);
    FUZZ_ASSERT (mesh_buf_size (&once) == mesh_buf_size (&twice));
    FUZZ_ASSERT (memcmp (mesh_buf_head (&once), mesh_buf_head (&twice), mesh_buf_size (&once)) == 0);
done:
    mesh_buf_free (&once);
    mesh_buf_free (&twice);
    free (first);
    free (second);
    return 0;
}
