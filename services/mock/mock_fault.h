/*  mock_fault: the fault switch of one seekmesh-mock instance.

    Makes a running mock fail on demand, so a test can break one upstream
    host of a mesh without restarting it (RELIABILITY.md scenarios 8 and 9).
    Set on the admin port, read by every worker thread:

        method  path          body / answer
        GET     /mock/fault   the fault in force: {"mode":"none"} when none
        PUT     /mock/fault   {"mode":"status","status":503,"retry_after":2,"count":N}
                              or {"mode":"close","count":N}; answers the fault
        DELETE  /mock/fault   clears it; answers {"mode":"none"}

    "status" answers every chat request (HTTP, or a WebSocket message) with
    that status and DeepSeek's error body, plus Retry-After when given, the
    way the per-request "mock":{"status":...} directive does.  "close"
    closes each new connection as soon as it is accepted, and a connection
    already open when a chat request arrives on it, without a byte of
    answer.  "count" limits the fault to the next N requests (or closed
    connections), after which the mock answers normally again.  Without
    "mode", a body with "status" means mode "status"; {"mode":"none"} clears
    like DELETE.  A bad body is 400 {"error":"<why>"}, another method 405.
    mock.force_status is the same switch, set at start.

    The switch is the one piece of mutable state the workers share: a mutex
    guards it, and an atomic flag lets the fault-free path skip the lock.  */
#ifndef MOCK_FAULT_H
#define MOCK_FAULT_H

#include "mesh_admin.h"
#include "mesh_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { MOCK_FAULT_NONE, MOCK_FAULT_STATUS, MOCK_FAULT_CLOSE };

typedef struct {
    int mode;                   //  MOCK_FAULT_*
    int status;                 //  MOCK_FAULT_STATUS: 400..599
    int64_t retry_after;        //  seconds for Retry-After, or -1
    int64_t count;              //  faults left before it clears itself, or -1: no end
} mock_fault_spec_t;

typedef struct mock_fault_t mock_fault_t;

mock_fault_t *mock_fault_new (void);
void mock_fault_destroy (mock_fault_t **self_p);
//  Any thread.  Replaces the fault in force (mode MOCK_FAULT_NONE clears it).
void mock_fault_set (mock_fault_t *self, const mock_fault_spec_t *spec);
//  Any thread.  A copy of the fault in force.
void mock_fault_get (mock_fault_t *self, mock_fault_spec_t *spec);
//  Worker threads.  A chat request arrived: true if the fault in force (of
//  either mode) takes it, with that fault in *spec; counts one use.
bool mock_fault_on_request (mock_fault_t *self, mock_fault_spec_t *spec);
//  Worker threads.  A connection was accepted: true if mode "close" is in
//  force and it must be closed at once; counts one use.
bool mock_fault_on_accept (mock_fault_t *self);

//  Reads a PUT body.  0, or -1 with a message for the 400 in error.
int  mock_fault_parse (const char *body, size_t len, mock_fault_spec_t *spec,
                       char *error, size_t error_size);
//  The fault as JSON: {"mode":"status","status":503,...} or {"mode":"none"}.
void mock_fault_render (const mock_fault_spec_t *spec, mesh_buf_t *out);
//  The admin route for "/mock/": pass the mock_fault_t as arg.  Main thread.
int  mock_fault_admin (void *arg, const mesh_admin_request_t *request,
                       mesh_admin_response_t *response);

void mock_fault_test (bool verbose);

#endif
