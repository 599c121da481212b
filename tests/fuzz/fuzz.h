/*  fuzz.h: what every seekmesh fuzz target shares.

    A target is one libFuzzer entry point, LLVMFuzzerTestOneInput, in its
    own fuzz_<name>.c.  The same file links either with libFuzzer (clang
    -fsanitize=fuzzer) or with replay.c, which runs it over the files of a
    seed corpus (any C11 compiler).  A broken property is a crash: it names
    itself on stderr and traps, so both drivers report it and keep the
    input.  Single-threaded.                                                 */
#ifndef FUZZ_H
#define FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf (stderr, "fuzz: property broken: %s (%s:%d)\n", #cond,    \
                     __FILE__, __LINE__);                                     \
            __builtin_trap ();                                                \
        }                                                                     \
    } while (0)

//  True when [p, p + len) lies inside [base, base + size).
static inline int
fuzz_within (const void *p, size_t len, const void *base, size_t size)
{
    const char *c = p, *b = base;
    return c >= b && c <= b + size && len <= (size_t) (b + size - c);
}

//  Piece sizes for streaming parsers, taken from the input's first bytes so
//  the fuzzer explores cut points: byte 0's low 3 bits say how many size
//  bytes follow (0: the stream comes in one piece); each size byte gives a
//  piece of 1..256 bytes, used in turn.  The stream is what follows.
typedef struct {
    const uint8_t *sizes;
    size_t count;
    size_t next;
} fuzz_cuts_t;

static inline size_t
fuzz_cuts_init (fuzz_cuts_t *cuts, const uint8_t *data, size_t size)
{
    cuts->count = size ? data [0] & 7 : 0;
    if (cuts->count + 1 > size)
        cuts->count = size ? size - 1 : 0;
    cuts->sizes = data + 1;
    cuts->next = 0;
    return size ? 1 + cuts->count : 0;         //  bytes of the prefix
}

//  The next piece's size, at most left.
static inline size_t
fuzz_cuts_next (fuzz_cuts_t *cuts, size_t left)
{
    size_t n = left;
    if (cuts->count) {
        n = (size_t) cuts->sizes [cuts->next++ % cuts->count] + 1;
        if (n > left)
            n = left;
    }
    return n;
}

#endif
