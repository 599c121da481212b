/*  mesh_redis: an asynchronous Redis client on a mesh_loop.

    Owns two hiredis async contexts (one for commands, one for pub/sub,
    made on the first subscribe), a record per command in flight and the
    list of subscriptions.  The caller owns the loop and the metrics
    registry; both must outlive the client.  Runs on the thread of the
    mesh_loop it was made with: only that thread may call these functions.

    No caller ever waits longer than its timeouts.  A connection is ready
    only after Redis has answered a PING (a frozen server still accepts TCP
    connections through the kernel).  A command that gets no reply within
    command_timeout_ms means a frozen server: every command in flight fails
    with fn (NULL), the connection is dropped and made again with back-off
    (50 ms doubling to 1 s).  While not ready, commands are refused at once
    with -1 so the caller degrades instead of queueing.  The command
    connection is PINGed every MESH_REDIS_PING_INTERVAL_MS, so a freeze is
    seen without traffic too; the pub/sub connection is made again whenever
    the command connection times out, since it has no replies to time.

    The host may be a name (a compose service, a Kubernetes Service): it is
    resolved on mesh_resolver's thread, never on the reactor, before the
    first connection and again before each reconnection (a Redis that moved
    is found at its new address).  With a password (mesh_redis_open), every
    connection begins with AUTH [username] password; a refusal (WRONGPASS,
    or NOAUTH from a server that wants one) is a failure like any other:
    the client stays not ready, so its users degrade as when Redis is away,
    and tries again with the back-off.  The password is never logged.
    hiredis writes with write(2), so the process must ignore SIGPIPE
    (mesh_service does).

    Metrics, if a registry is given: seekmesh_redis_command_seconds (queue
    to reply), seekmesh_redis_up, seekmesh_redis_failures_total{reason=
    "connect" (an attempt failed or timed out), "timeout" (a command timed
    out and condemned its connection), "disconnect" (an established
    connection broke), "auth" (AUTH was refused)}.                          */
#ifndef MESH_REDIS_H
#define MESH_REDIS_H

#include "mesh_config.h"
#include "mesh_loop.h"
#include "mesh_metrics.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_REDIS_BACKOFF_MIN_MS     50
#define MESH_REDIS_BACKOFF_MAX_MS     1000
#define MESH_REDIS_PING_INTERVAL_MS   1000
#define MESH_REDIS_RESOLVE_TIMEOUT_MS 5000      //  a host name's lookup, at most

typedef struct mesh_redis_t mesh_redis_t;

//  reply is NULL when the command failed: it timed out, the connection
//  broke, or it never went out.  An error reply (REDIS_REPLY_ERROR) is a
//  reply.  The reply belongs to hiredis and is freed when fn returns.
typedef void (mesh_redis_fn) (void *arg, redisReply *reply);
typedef void (mesh_redis_message_fn) (void *arg, const char *payload, size_t len);

//  A Lua script, usually a static: { .body = "return ..." }.  sha is the
//  SHA1 of body in hex, filled in on first use.  The script must outlive
//  the evals that use it.
typedef struct {
    const char *body;
    char sha [41];
} mesh_redis_script_t;

typedef struct {
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;
    const char *username;       //  an ACL user; NULL or "": the default user
    const char *password;       //  NULL or "": no AUTH
} mesh_redis_options_t;

//  url: "redis://host[:port][/db]" (port 6379, db 0 by default; host a
//  name or an address) or "unix:///path/to/socket"; credentials in the url
//  are refused (they belong in a file or the environment).  Starts
//  connecting at once.  NULL with a reason in why on a bad url or a
//  timeout that is not positive.
mesh_redis_t *mesh_redis_open (mesh_loop_t *loop, const char *url, const mesh_redis_options_t *options,
                               mesh_metrics_t *metrics, char *why, size_t why_size);
//  The same without credentials
mesh_redis_t *mesh_redis_new (mesh_loop_t *loop, const char *url,
                              int64_t connect_timeout_ms, int64_t command_timeout_ms,
                              mesh_metrics_t *metrics, char *why, size_t why_size);
//  The credentials a config gives: redis.username, and the password from
//  the file redis.password_file (refused when every user may read it), else
//  from the environment variable redis.password_env names.  Fills options'
//  username and password (pointing into the config and into password);
//  -1 with why.
int mesh_redis_credentials (mesh_config_t *config, mesh_redis_options_t *options,
                            char *password, size_t password_size, char *why, size_t why_size);
//  mesh_redis_open with the config's credentials (mesh_redis_credentials),
//  the password wiped from memory once it is handed over: what every
//  service that uses the mesh's Redis calls.  NULL with why.
mesh_redis_t *mesh_redis_open_configured (mesh_loop_t *loop, mesh_config_t *config, const char *url,
                                          int64_t connect_timeout_ms, int64_t command_timeout_ms,
                                          mesh_metrics_t *metrics, char *why, size_t why_size);
//  Calls the fn of every command in flight with NULL first, then frees
//  everything.  Nulls *self_p; safe twice.  Not from inside a callback of
//  this client.
void mesh_redis_destroy (mesh_redis_t **self_p);

//  True while the command connection is up and answering.
bool mesh_redis_ready (mesh_redis_t *self);

//  Queues a command (argv_len may be NULL for C strings).  Returns 0 and
//  calls fn exactly once later, never from inside this call, with the
//  reply or with NULL within command_timeout_ms; or returns -1 at once
//  without calling fn when Redis is not ready (the caller degrades).
//  Pub/sub commands are refused: use mesh_redis_subscribe.
int  mesh_redis_command (mesh_redis_t *self, mesh_redis_fn *fn, void *arg,
                         int argc, const char **argv, const size_t *argv_len);

//  Runs script with nkeys keys first among its argc arguments, as EVALSHA;
//  when the server does not know the script (NOSCRIPT), sends it once as
//  EVAL, within the same timeout.  Same contract as mesh_redis_command.
int  mesh_redis_eval (mesh_redis_t *self, mesh_redis_script_t *script,
                      mesh_redis_fn *fn, void *arg,
                      int nkeys, int argc, const char **argv, const size_t *argv_len);

//  Subscribes to channel on the pub/sub connection, now or as soon as it
//  is up, and again after every reconnect.  fn gets each message;
//  on_resubscribe (may be NULL) is called after each (re)subscription so
//  the caller can re-read state it may have missed.  0, or -1 if channel
//  is already subscribed.
int  mesh_redis_subscribe (mesh_redis_t *self, const char *channel,
                           mesh_redis_message_fn *fn,
                           void (*on_resubscribe) (void *arg), void *arg);

void mesh_redis_test (bool verbose);

#endif
