/*  mesh_id: ULID-shaped request ids.                                        */
#include "mesh_id.h"
#include "mesh_time.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static const char s_alphabet [] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static uint32_t s_process_random;
static atomic_uint_fast64_t s_counter;

void
mesh_random (void *buf, size_t len)
{
    char *at = buf;
    while (len > 0) {
        ssize_t n = getrandom (at, len, 0);
        if (n <= 0)
            abort ();
        at += n;
        len -= (size_t) n;
    }
}

static void
s_init (void)
{
    mesh_random (&s_process_random, sizeof s_process_random);
    uint64_t start;
    mesh_random (&start, sizeof start);
    atomic_store (&s_counter, start & 0xFFFFFFFFull);
}

void
mesh_id_new (char out [MESH_ID_LEN + 1])
{
    pthread_once (&s_once, s_init);
    uint64_t hi = (uint64_t) mesh_wall_ms () << 16 | (s_process_random >> 16);
    uint64_t lo = (uint64_t) (s_process_random & 0xFFFF) << 48
                | (atomic_fetch_add (&s_counter, 1) & 0xFFFFFFFFFFFFull);
    //  128 bits, most significant first, 5 bits per character; the first
    //  character carries only the top 3 bits (ULID's layout)
    for (int i = MESH_ID_LEN - 1; i >= 0; i--) {
        out [i] = s_alphabet [lo & 31];
        lo = lo >> 5 | (hi & 31) << 59;
        hi >>= 5;
    }
    out [MESH_ID_LEN] = 0;
}

bool
mesh_id_valid (const char *s, size_t len)
{
    if (len != MESH_ID_LEN || s [0] > '7')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!memchr (s_alphabet, s [i], 32) || s [i] == 0)
            return false;
    return true;
}

void
mesh_id_test (bool verbose)
{
    (void) verbose;
    char a [MESH_ID_LEN + 1], b [MESH_ID_LEN + 1];
    mesh_id_new (a);
    mesh_id_new (b);
    assert (strlen (a) == MESH_ID_LEN);
    assert (mesh_id_valid (a, strlen (a)));
    assert (strcmp (a, b) != 0);
    assert (strcmp (a, b) < 0 || memcmp (a, b, 10) != 0);  //  counter grows
    assert (!mesh_id_valid ("short", 5));
    assert (!mesh_id_valid ("0000000000000000000000000I", MESH_ID_LEN));
    assert (!mesh_id_valid ("8ZZZZZZZZZZZZZZZZZZZZZZZZZ", MESH_ID_LEN));
    unsigned char r [16] = { 0 }, zero [16] = { 0 };
    mesh_random (r, sizeof r);
    assert (memcmp (r, zero, sizeof r) != 0);
}
