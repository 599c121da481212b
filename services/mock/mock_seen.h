/*  mock_seen: the chat requests one seekmesh-mock instance received last,
    so a test can see what reached the upstream (the history a session
    prepended, a word the input filter should have stopped):

        method  path            answer
        GET     /mock/requests  {"requests": [body, ...]}: the last
                                MOCK_SEEN_MAX request bodies, oldest first
                                (a body that is not JSON: as a string)
        DELETE  /mock/requests  forgets them; {"requests": []}

    Bodies over MOCK_SEEN_MAX_BYTES are kept as their first bytes.  The
    ring is shared by the worker threads (which add) and the admin port's
    thread (which reads): a mutex guards it.                                 */
#ifndef MOCK_SEEN_H
#define MOCK_SEEN_H

#include "mesh_admin.h"

#include <stdbool.h>
#include <stddef.h>

#define MOCK_SEEN_MAX       64
#define MOCK_SEEN_MAX_BYTES (256 * 1024)

typedef struct mock_seen_t mock_seen_t;

mock_seen_t *mock_seen_new (void);
void mock_seen_destroy (mock_seen_t **self_p);
//  Any thread: a chat request's body arrived
void mock_seen_add (mock_seen_t *self, const char *body, size_t len);
//  The admin route for "/mock/requests": pass the mock_seen_t as arg
int  mock_seen_admin (void *arg, const mesh_admin_request_t *request,
                      mesh_admin_response_t *response);

void mock_seen_test (bool verbose);

#endif
