/*  connector_testing: a whole connector on a loop of its own, for the
    selftests of its protocol modules (connector_http.c, connector_ws.c).

    The harness plays the router (a ROUTER socket the connector joins) and
    the ingress (the PULL socket its replies go to), and runs an upstream on
    loopback: a thread that accepts connections and hands each to the
    test's serve function, one at a time.  The test dispatches a request and
    runs the loop until its last message arrives (END or ERROR at the
    ingress, FAIL at the router).  Test code only; one thread besides the
    upstream's.                                                             */
#ifndef CONNECTOR_TESTING_H
#define CONNECTOR_TESTING_H

#include "connector.h"

#include <pthread.h>
#include <stdbool.h>

//  Serves one accepted upstream connection (on the upstream's thread)
typedef void (connector_serve_fn) (int fd, void *arg);

typedef struct {
    //  The upstream
    int listener;
    int port;
    pthread_t thread;
    volatile bool stop;
    volatile int accepted;
    connector_serve_fn *serve;
    void *serve_arg;
    //  The connector and its peers
    mesh_loop_t *loop;
    void *ctx;
    mesh_metrics_t *metrics;
    mesh_config_t *config;
    connector_t *connector;
    void *router;
    void *ingress;
    char reply_to [128];
    char identity [128];
    size_t identity_size;
    //  What came back for the request in flight
    char id [MESH_ID_LEN + 1];
    int heads;
    mesh_buf_t chunks;          //  each CHUNK's data and a newline
    mesh_buf_t data;            //  END's body
    uint32_t last;              //  MESH_MSG_END, _ERROR or _FAIL once it ended
    uint32_t status;
    uint32_t retry_after_ms;
    char err_code [64];
    uint64_t prompt_tokens;
    bool done;                  //  DONE reached the router
    char done_outcome [32];
} connector_harness_t;

//  A connector whose one model, "m", is served by the upstream over
//  scheme ("http" or "ws")
connector_harness_t *connector_harness_new (const char *scheme, connector_serve_fn *serve, void *arg);
void connector_harness_destroy (connector_harness_t **self_p);
//  Dispatches a request to model "m"; runs the loop until it ended (true)
//  or ms passed (false)
bool connector_harness_request (connector_harness_t *self, bool stream, const char *body, int ms);

//  For serve functions: reads an HTTP request head (and its body, by
//  Content-Length) into buf; its length, 0 at end of file
size_t connector_testing_read_request (int fd, char *buf, size_t size);
//  Writes all of text, then waits ms
void connector_testing_write (int fd, const char *text, int ms);

#endif
