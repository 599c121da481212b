/*  mesh-assemble: stdin's lines, each one SSE data payload of a stream,
    assembled by mesh_completion into the chat.completion it adds up to,
    printed on stdout.  For tests/sdk/completion.test.js, which compares it
    with the openai SDK's own finalChatCompletion ().

    usage: mesh-assemble [--parsed] [MAX_BYTES] < payloads
    --parsed reads every payload with jansson (the reference), not the
    scanner.                                                                */
#include "mesh_completion.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
main (int argc, char *argv [])
{
    bool parsed = false;
    size_t max_bytes = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--parsed") == 0)
            parsed = true;
        else
            max_bytes = (size_t) strtoull (argv [i], NULL, 10);
    }
    mesh_completion_t *completion = mesh_completion_new (max_bytes);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline (&line, &cap, stdin)) >= 0) {
        if (len && line [len - 1] == '\n')
            len--;
        if (parsed)
            mesh_completion_add_parsed (completion, line, (size_t) len);
        else
            mesh_completion_add (completion, line, (size_t) len);
    }
    free (line);
    mesh_buf_t out;
    mesh_buf_init (&out);
    mesh_completion_render (completion, &out);
    fwrite (mesh_buf_head (&out), 1, mesh_buf_size (&out), stdout);
    putchar ('\n');
    fprintf (stderr, "%zu of the payloads read by the scanner\n", mesh_completion_fast_count (completion));
    mesh_buf_free (&out);
    mesh_completion_destroy (&completion);
    return 0;
}
