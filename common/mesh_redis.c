/*  mesh_redis: hiredis async contexts driven by mesh_loop.

    hiredis frees a context itself when its connection fails, calling every
    pending reply callback with NULL, then the event adapter's cleanup hook,
    then the disconnect callback, and only then closing the socket.  So the
    cleanup hook is our one "this context is gone" signal: it runs on every
    path (failed connect, broken connection, our own free), we forget the
    context there, and a reconnect always makes a new one.  We free a
    context ourselves only from a 0 ms timer (the reap timer), never from
    inside a hiredis callback.

    Each command has a record that outlives whichever of hiredis and our
    timeout lets go of it last: `done` says the caller's fn has run (it runs
    once), `in_hiredis` says hiredis still holds the record as privdata.  */
#include "mesh_redis.h"
#include "mesh_log.h"
#include "mesh_resolver.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <hiredis/async.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

typedef enum {
    CONN_DOWN,                  //  no context, or a condemned one awaiting reap
    CONN_RESOLVING,             //  waiting for the host name's address
    CONN_CONNECTING,            //  TCP connect in progress
    CONN_HANDSHAKE,             //  connected, waiting for SELECT and PING
    CONN_READY
} conn_state_t;

enum { FAIL_CONNECT, FAIL_TIMEOUT, FAIL_DISCONNECT, FAIL_AUTH, FAIL_REASONS };
#define FAIL_QUIET -1           //  not counted: a consequence of another failure

static const char *s_fail_reason [FAIL_REASONS] = { "connect", "timeout", "disconnect", "auth" };

typedef struct {
    mesh_redis_t *owner;
    const char *role;           //  "" or " pub/sub", for log lines
    redisAsyncContext *ac;      //  NULL once hiredis has let go of it
    conn_state_t state;
    int fd;                     //  registered with the loop, or -1
    int events;                 //  MESH_READ | MESH_WRITE, as hiredis asked
    int io_errno;               //  epoll_ctl failure, reported by a timer
    int64_t backoff_ms;
    bool reported_down;         //  "down" was logged; "up again" is due
    mesh_timer_t connect_timer; //  connect + handshake deadline
    mesh_timer_t retry_timer;   //  back-off before the next attempt
    mesh_timer_t reap_timer;    //  frees a condemned context
    mesh_timer_t error_timer;   //  reports an epoll_ctl failure
} conn_t;

typedef struct cmd_t cmd_t;
struct cmd_t {
    mesh_redis_t *owner;
    cmd_t *prev, *next;         //  in flight, in the order sent
    mesh_timer_t timer;
    mesh_redis_fn *fn;
    void *arg;
    int64_t start_us;
    bool done;                  //  fn has been called
    bool in_hiredis;            //  hiredis holds a callback for it
    //  mesh_redis_eval: the whole argv again, for EVAL after NOSCRIPT
    mesh_redis_script_t *script;
    bool retried;
    int argc;
    const char **argv;
    size_t *argv_len;
};

typedef struct sub_t sub_t;
struct sub_t {
    sub_t *next;
    mesh_redis_t *owner;
    char *channel;
    mesh_redis_message_fn *fn;
    void (*on_resubscribe) (void *arg);
    void *arg;
};

struct mesh_redis_t {
    mesh_loop_t *loop;
    char name [300];            //  "redis.default:6379", for log lines
    char host [INET6_ADDRSTRLEN];       //  the address connected to
    char hostname [256];        //  a name to resolve first, or ""
    bool resolved;              //  host holds hostname's address
    mesh_resolver_t *resolver;  //  for hostname
    uint64_t lookup;            //  in flight, or 0
    char *username;             //  NULL: the default user
    char *password;             //  NULL: no AUTH
    int port;
    char path [sizeof ((struct sockaddr_un *) 0)->sun_path];
    int db;
    int64_t connect_timeout_ms;
    int64_t command_timeout_ms;

    conn_t cmd;                 //  commands
    conn_t sub;                 //  pub/sub, from the first subscribe on
    cmd_t *head, *tail;         //  commands in flight on cmd
    sub_t *subs, **subs_tail;
    mesh_timer_t ping_timer;    //  PINGs an idle command connection

    int in_callback;            //  depth of caller callbacks running
    bool destroying;

    mesh_metric_t *seconds;
    mesh_metric_t *up;
    mesh_metric_t *failures [FAIL_REASONS];
};

static void s_conn_connect (conn_t *conn);
static void s_conn_lost (conn_t *conn, int reason, const char *why);

//  The event adapter ------------------------------------------------------
//  hiredis asks for read and write interest separately; we keep the union
//  and tell the loop.  A condemned context gets no more I/O.

static int
s_on_io (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) loop; (void) fd;
    conn_t *conn = arg;
    redisAsyncContext *ac = conn->ac;
    if (!ac || conn->state == CONN_DOWN)
        return 0;
    //  A hang-up with no interest left is read, so hiredis sees the error
    if (events & (MESH_READ | MESH_HANGUP))
        redisAsyncHandleRead (ac);
    //  Reading may have freed the context (conn->ac is NULL then)
    if ((events & MESH_WRITE) && conn->ac == ac && conn->state != CONN_DOWN)
        redisAsyncHandleWrite (ac);
    return 0;
}

static int
s_on_io_error (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    conn_t *conn = arg;
    char why [128];
    snprintf (why, sizeof why, "epoll_ctl: %s", strerror (conn->io_errno));
    s_conn_lost (conn, conn->state == CONN_READY ? FAIL_DISCONNECT : FAIL_CONNECT, why);
    return 0;
}

static void
s_ev_update (conn_t *conn, int events)
{
    mesh_redis_t *self = conn->owner;
    conn->events = events;
    if (!conn->ac || conn->state == CONN_DOWN)
        return;
    int rc;
    if (conn->fd < 0) {
        rc = mesh_loop_fd_add (self->loop, conn->ac->c.fd, events, s_on_io, conn);
        if (rc == 0)
            conn->fd = conn->ac->c.fd;
    }
    else
        rc = mesh_loop_fd_events (self->loop, conn->fd, events);
    //  Hooks run inside hiredis calls, even inside mesh_redis_command:
    //  report the failure from the loop, never from here
    if (rc < 0) {
        conn->io_errno = errno;
        mesh_loop_timer_start (self->loop, &conn->error_timer, 0, s_on_io_error, conn);
    }
}

static void
s_ev_add_read (void *privdata)
{
    conn_t *conn = privdata;
    s_ev_update (conn, conn->events | MESH_READ);
}

static void
s_ev_del_read (void *privdata)
{
    conn_t *conn = privdata;
    s_ev_update (conn, conn->events & ~MESH_READ);
}

static void
s_ev_add_write (void *privdata)
{
    conn_t *conn = privdata;
    s_ev_update (conn, conn->events | MESH_WRITE);
}

static void
s_ev_del_write (void *privdata)
{
    conn_t *conn = privdata;
    s_ev_update (conn, conn->events & ~MESH_WRITE);
}

static const char *
s_errstr (const redisAsyncContext *ac)
{
    return ac && ac->c.err && ac->c.errstr [0] ? ac->c.errstr : "connection closed";
}

//  hiredis is freeing the context (it closes the socket right after): on
//  its own when the connection failed, or because we freed it.
static void
s_ev_cleanup (void *privdata)
{
    conn_t *conn = privdata;
    redisAsyncContext *ac = conn->ac;
    if (conn->fd >= 0) {
        mesh_loop_fd_remove (conn->owner->loop, conn->fd);
        conn->fd = -1;
    }
    conn->events = 0;
    conn->ac = NULL;
    if (conn->state != CONN_DOWN)
        s_conn_lost (conn, conn->state == CONN_READY ? FAIL_DISCONNECT : FAIL_CONNECT,
                     s_errstr (ac));
}

//  Commands ---------------------------------------------------------------

//  Calls the caller's fn, once; frees the record unless hiredis holds it.
static void
s_cmd_finish (cmd_t *cmd, redisReply *reply)
{
    mesh_redis_t *self = cmd->owner;
    assert (!cmd->done);
    cmd->done = true;
    mesh_loop_timer_stop (self->loop, &cmd->timer);
    if (cmd->prev)
        cmd->prev->next = cmd->next;
    else
        self->head = cmd->next;
    if (cmd->next)
        cmd->next->prev = cmd->prev;
    else
        self->tail = cmd->prev;
    if (reply && self->seconds)
        mesh_metric_observe (self->seconds, (double) (mesh_mono_us () - cmd->start_us) / 1e6);
    self->in_callback++;
    cmd->fn (cmd->arg, reply);
    self->in_callback--;
    if (!cmd->in_hiredis)
        free (cmd);
}

static void
s_fail_all (mesh_redis_t *self)
{
    //  Callers may queue more from their fn; they are refused while down
    while (self->head)
        s_cmd_finish (self->head, NULL);
}

static bool
s_is_noscript (const redisReply *reply)
{
    return reply->type == REDIS_REPLY_ERROR && reply->str
        && strncmp (reply->str, "NOSCRIPT", 8) == 0;
}

static void
s_on_reply (redisAsyncContext *ac, void *r, void *privdata)
{
    cmd_t *cmd = privdata;
    mesh_redis_t *self = cmd->owner;
    redisReply *reply = r;
    cmd->in_hiredis = false;
    if (cmd->done) {
        free (cmd);
        return;
    }
    if (!reply) {
        //  hiredis is freeing the context: the connection broke.  Going
        //  down first fails this command and all the others, in order,
        //  with mesh_redis_ready already false.
        if (self->cmd.state != CONN_DOWN && self->cmd.ac == ac)
            s_conn_lost (&self->cmd, self->cmd.state == CONN_READY
                         ? FAIL_DISCONNECT : FAIL_CONNECT, s_errstr (ac));
        else
            s_cmd_finish (cmd, NULL);
        return;
    }
    if (cmd->script && !cmd->retried && s_is_noscript (reply)) {
        //  The server lost its script cache (restart, SCRIPT FLUSH): send
        //  the body once, within the same deadline
        cmd->retried = true;
        cmd->argv [0] = "EVAL";
        cmd->argv_len [0] = 4;
        cmd->argv [1] = cmd->script->body;
        cmd->argv_len [1] = strlen (cmd->script->body);
        if (redisAsyncCommandArgv (ac, s_on_reply, cmd, cmd->argc,
                                   cmd->argv, cmd->argv_len) == REDIS_OK) {
            cmd->in_hiredis = true;
            return;
        }
        s_cmd_finish (cmd, NULL);
        return;
    }
    s_cmd_finish (cmd, reply);
}

static int
s_on_cmd_timeout (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    cmd_t *cmd = arg;
    mesh_redis_t *self = cmd->owner;
    if (self->cmd.state == CONN_DOWN) {
        s_cmd_finish (cmd, NULL);
        return 0;
    }
    //  Replies come in order: nothing behind this one will come either
    char why [96];
    snprintf (why, sizeof why, "no reply within %lld ms", (long long) self->command_timeout_ms);
    s_conn_lost (&self->cmd, FAIL_TIMEOUT, why);
    return 0;
}

//  Hands cmd to hiredis and starts its clock; -1 if hiredis refused it.
static int
s_cmd_send (mesh_redis_t *self, cmd_t *cmd)
{
    if (redisAsyncCommandArgv (self->cmd.ac, s_on_reply, cmd, cmd->argc,
                               cmd->argv, cmd->argv_len) != REDIS_OK)
        return -1;
    cmd->in_hiredis = true;
    cmd->start_us = mesh_mono_us ();
    cmd->prev = self->tail;
    if (self->tail)
        self->tail->next = cmd;
    else
        self->head = cmd;
    self->tail = cmd;
    mesh_loop_timer_start (self->loop, &cmd->timer, self->command_timeout_ms,
                           s_on_cmd_timeout, cmd);
    return 0;
}

//  Commands that would change the connection's state behind our back
static bool
s_refused (const char *name, size_t len)
{
    static const char *refused [] = {
        "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
        "monitor", "select", "quit"
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (refused); i++)
        if (mesh_memcaseeq (name, len, refused [i]))
            return true;
    return false;
}

int
mesh_redis_command (mesh_redis_t *self, mesh_redis_fn *fn, void *arg,
                    int argc, const char **argv, const size_t *argv_len)
{
    assert (self && fn && argc > 0 && argv);
    if (!mesh_redis_ready (self))
        return -1;
    if (s_refused (argv [0], argv_len ? argv_len [0] : strlen (argv [0]))) {
        mesh_warn ("redis %s: %.*s refused (pub/sub and the db belong to mesh_redis)",
                   self->name, (int) (argv_len ? argv_len [0] : strlen (argv [0])), argv [0]);
        return -1;
    }
    cmd_t *cmd = calloc (1, sizeof *cmd + (size_t) argc * sizeof (size_t));
    assert (cmd);
    cmd->owner = self;
    cmd->fn = fn;
    cmd->arg = arg;
    cmd->argc = argc;
    cmd->argv = argv;           //  only used during s_cmd_send
    cmd->argv_len = (size_t *) (cmd + 1);
    for (int i = 0; i < argc; i++)
        cmd->argv_len [i] = argv_len ? argv_len [i] : strlen (argv [i]);
    if (s_cmd_send (self, cmd) < 0) {
        free (cmd);
        return -1;
    }
    cmd->argv = NULL;
    return 0;
}

static void
s_sha1_hex (const char *body, char *sha)
{
    unsigned char md [EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int rc = EVP_Digest (body, strlen (body), md, &md_len, EVP_sha1 (), NULL);
    assert (rc == 1 && md_len == 20);
    for (unsigned int i = 0; i < md_len; i++)
        snprintf (sha + 2 * i, 3, "%02x", md [i]);
}

int
mesh_redis_eval (mesh_redis_t *self, mesh_redis_script_t *script,
                 mesh_redis_fn *fn, void *arg,
                 int nkeys, int argc, const char **argv, const size_t *argv_len)
{
    assert (self && script && script->body && fn);
    assert (nkeys >= 0 && argc >= nkeys && (argc == 0 || argv));
    if (!mesh_redis_ready (self))
        return -1;
    if (!script->sha [0])
        s_sha1_hex (script->body, script->sha);

    //  One block: the record, EVALSHA's argv and lengths, nkeys, a copy of
    //  the arguments (the caller's are gone by the time NOSCRIPT comes)
    int total = argc + 3;
    size_t bytes = 0;
    for (int i = 0; i < argc; i++)
        bytes += argv_len ? argv_len [i] : strlen (argv [i]);
    cmd_t *cmd = calloc (1, sizeof *cmd + (size_t) total * (sizeof (char *) + sizeof (size_t))
                            + 16 + bytes);
    assert (cmd);
    cmd->owner = self;
    cmd->fn = fn;
    cmd->arg = arg;
    cmd->script = script;
    cmd->argc = total;
    cmd->argv = (const char **) (cmd + 1);
    cmd->argv_len = (size_t *) (cmd->argv + total);
    char *nkeys_text = (char *) (cmd->argv_len + total);
    char *data = nkeys_text + 16;
    cmd->argv [0] = "EVALSHA";
    cmd->argv_len [0] = 7;
    cmd->argv [1] = script->sha;
    cmd->argv_len [1] = 40;
    cmd->argv_len [2] = (size_t) snprintf (nkeys_text, 16, "%d", nkeys);
    cmd->argv [2] = nkeys_text;
    for (int i = 0; i < argc; i++) {
        size_t len = argv_len ? argv_len [i] : strlen (argv [i]);
        memcpy (data, argv [i], len);
        cmd->argv [3 + i] = data;
        cmd->argv_len [3 + i] = len;
        data += len;
    }
    if (s_cmd_send (self, cmd) < 0) {
        free (cmd);
        return -1;
    }
    return 0;
}

//  Pub/sub ----------------------------------------------------------------

static bool
s_reply_is (const redisReply *reply, const char *s)
{
    return reply->type == REDIS_REPLY_STRING && mesh_memcaseeq (reply->str, reply->len, s);
}

static void
s_on_message (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    sub_t *sub = privdata;
    redisReply *reply = r;
    //  NULL: the context is being freed; its cleanup hook handles that
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3)
        return;
    mesh_redis_t *self = sub->owner;
    self->in_callback++;
    if (s_reply_is (reply->element [0], "message")
    &&  reply->element [2]->type == REDIS_REPLY_STRING)
        sub->fn (sub->arg, reply->element [2]->str, reply->element [2]->len);
    else
    if (s_reply_is (reply->element [0], "subscribe") && sub->on_resubscribe)
        sub->on_resubscribe (sub->arg);
    self->in_callback--;
}

static void
s_sub_send (mesh_redis_t *self, sub_t *sub)
{
    const char *argv [2] = { "SUBSCRIBE", sub->channel };
    if (redisAsyncCommandArgv (self->sub.ac, s_on_message, sub, 2, argv, NULL) != REDIS_OK)
        //  The context is on its way out; the next one subscribes again
        mesh_warn ("redis %s pub/sub: cannot subscribe to %s", self->name, sub->channel);
}

int
mesh_redis_subscribe (mesh_redis_t *self, const char *channel, mesh_redis_message_fn *fn,
                      void (*on_resubscribe) (void *arg), void *arg)
{
    assert (self && channel && fn);
    for (sub_t *sub = self->subs; sub; sub = sub->next)
        if (mesh_streq (sub->channel, channel))
            return -1;
    sub_t *sub = calloc (1, sizeof *sub);
    assert (sub);
    sub->owner = self;
    sub->channel = strdup (channel);
    assert (sub->channel);
    sub->fn = fn;
    sub->on_resubscribe = on_resubscribe;
    sub->arg = arg;
    *self->subs_tail = sub;
    self->subs_tail = &sub->next;

    conn_t *conn = &self->sub;
    if (conn->state == CONN_READY)
        s_sub_send (self, sub);
    else
    if (conn->state == CONN_DOWN && !conn->ac && !mesh_timer_armed (&conn->retry_timer))
        s_conn_connect (conn);      //  the first subscription
    return 0;
}

//  Connections ------------------------------------------------------------

static void
s_on_health (void *arg, redisReply *reply)
{
    //  A missing reply has already condemned the connection
    (void) arg; (void) reply;
}

static int
s_on_ping_timer (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) timer;
    mesh_redis_t *self = arg;
    //  Even when commands are in flight: one of them may be answered just
    //  before a freeze, and then nothing would be timed until the next one
    const char *argv [1] = { "PING" };
    mesh_redis_command (self, s_on_health, NULL, 1, argv, NULL);
    mesh_loop_timer_start (loop, &self->ping_timer, MESH_REDIS_PING_INTERVAL_MS,
                           s_on_ping_timer, self);
    return 0;
}

static void
s_conn_up (conn_t *conn)
{
    mesh_redis_t *self = conn->owner;
    conn->state = CONN_READY;
    conn->backoff_ms = MESH_REDIS_BACKOFF_MIN_MS;
    mesh_loop_timer_stop (self->loop, &conn->connect_timer);
    if (conn->reported_down)
        mesh_warn ("redis %s%s up again", self->name, conn->role);
    else
        mesh_info ("redis %s%s up", self->name, conn->role);
    conn->reported_down = false;
    if (conn == &self->cmd) {
        if (self->up)
            mesh_metric_set (self->up, 1);
        mesh_loop_timer_start (self->loop, &self->ping_timer, MESH_REDIS_PING_INTERVAL_MS,
                               s_on_ping_timer, self);
    }
    else
        for (sub_t *sub = self->subs; sub; sub = sub->next)
            s_sub_send (self, sub);
}

//  The handshake's replies: privdata is the connection.  NULL means the
//  context is being freed, which its cleanup hook handles.
static void
s_on_select (redisAsyncContext *ac, void *r, void *privdata)
{
    conn_t *conn = privdata;
    redisReply *reply = r;
    if (!reply || conn->ac != ac || conn->state == CONN_DOWN)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why [160];
        snprintf (why, sizeof why, "SELECT %d: %s", conn->owner->db, reply->str);
        s_conn_lost (conn, FAIL_CONNECT, why);
    }
}

//  AUTH's answer; an error names no secret ("WRONGPASS invalid
//  username-password pair")
static void
s_on_auth (redisAsyncContext *ac, void *r, void *privdata)
{
    conn_t *conn = privdata;
    redisReply *reply = r;
    if (!reply || conn->ac != ac || conn->state == CONN_DOWN)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        char why [200];
        snprintf (why, sizeof why, "AUTH%s%s refused: %.120s", conn->owner->username ? " as " : "",
                  conn->owner->username ? conn->owner->username : "", reply->str);
        s_conn_lost (conn, FAIL_AUTH, why);
    }
}

static void
s_on_ping (redisAsyncContext *ac, void *r, void *privdata)
{
    conn_t *conn = privdata;
    redisReply *reply = r;
    if (!reply || conn->ac != ac || conn->state == CONN_DOWN)
        return;
    if (reply->type == REDIS_REPLY_ERROR && strncmp (reply->str, "NOAUTH", 6) == 0)
        s_conn_lost (conn, FAIL_AUTH, "the server wants a password (redis.password_file, or "
                     "the variable redis.password_env names)");
    else
    if (reply->type == REDIS_REPLY_ERROR) {
        char why [160];
        snprintf (why, sizeof why, "PING: %s", reply->str);
        s_conn_lost (conn, FAIL_CONNECT, why);
    }
    else
        s_conn_up (conn);
}

static void
s_on_connect (const redisAsyncContext *ac, int status)
{
    conn_t *conn = ac->data;
    //  On failure hiredis frees the context next: the cleanup hook reports it
    if (status == REDIS_OK && conn->state == CONN_CONNECTING)
        conn->state = CONN_HANDSHAKE;
}

static int
s_on_connect_timeout (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    conn_t *conn = arg;
    char why [320];
    //  A frozen server still completes TCP connects: it just never answers
    if (conn->state == CONN_RESOLVING)
        snprintf (why, sizeof why, "no address for %s within %d ms", conn->owner->hostname,
                  (int) MESH_MAX (conn->owner->connect_timeout_ms, MESH_REDIS_RESOLVE_TIMEOUT_MS));
    else
        snprintf (why, sizeof why, conn->state == CONN_CONNECTING
                  ? "connect timed out after %lld ms" : "no answer to PING within %lld ms",
                  (long long) conn->owner->connect_timeout_ms);
    s_conn_lost (conn, FAIL_CONNECT, why);
    return 0;
}

static int
s_on_reap (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    conn_t *conn = arg;
    //  NULL already when hiredis freed it on its own meanwhile
    if (conn->ac && conn->state == CONN_DOWN)
        redisAsyncFree (conn->ac);     //  runs s_ev_cleanup, which forgets it
    assert (conn->ac == NULL);
    return 0;
}

static int
s_on_retry (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer;
    s_conn_connect ((conn_t *) arg);
    return 0;
}

//  The connection failed: say so once, fail what is in flight, free the
//  context from a timer, try again after the back-off.  May run inside a
//  hiredis callback.
static void
s_conn_lost (conn_t *conn, int reason, const char *why)
{
    mesh_redis_t *self = conn->owner;
    if (self->destroying || conn->state == CONN_DOWN)
        return;
    bool was_ready = conn->state == CONN_READY;
    conn->state = CONN_DOWN;
    mesh_loop_timer_stop (self->loop, &conn->connect_timer);
    mesh_loop_timer_stop (self->loop, &conn->error_timer);
    if (conn->fd >= 0) {
        mesh_loop_fd_remove (self->loop, conn->fd);
        conn->fd = -1;
    }
    if (conn->ac)
        mesh_loop_timer_start (self->loop, &conn->reap_timer, 0, s_on_reap, conn);
    if (reason != FAIL_QUIET && self->failures [reason])
        mesh_metric_inc (self->failures [reason]);

    if (was_ready || !conn->reported_down)
        mesh_warn ("redis %s%s down: %s: %s", self->name, conn->role,
                   reason == FAIL_QUIET ? "dropped" : s_fail_reason [reason], why);
    else
        mesh_debug ("redis %s%s: %s", self->name, conn->role, why);
    conn->reported_down = true;

    mesh_loop_timer_start (self->loop, &conn->retry_timer, conn->backoff_ms, s_on_retry, conn);
    conn->backoff_ms = MESH_MIN (conn->backoff_ms * 2, MESH_REDIS_BACKOFF_MAX_MS);

    if (conn == &self->cmd) {
        mesh_loop_timer_stop (self->loop, &self->ping_timer);
        if (self->up)
            mesh_metric_set (self->up, 0);
        //  A frozen server would starve the pub/sub connection silently
        if (reason == FAIL_TIMEOUT)
            s_conn_lost (&self->sub, FAIL_QUIET, "the command connection timed out");
        s_fail_all (self);
    }
}

static void s_resolve (mesh_redis_t *self);

static void
s_conn_connect (conn_t *conn)
{
    mesh_redis_t *self = conn->owner;
    assert (conn->state == CONN_DOWN && !self->destroying);
    mesh_loop_timer_stop (self->loop, &conn->reap_timer);
    mesh_loop_timer_stop (self->loop, &conn->retry_timer);
    if (conn->ac)
        redisAsyncFree (conn->ac);      //  not reaped yet; from a timer, so safe
    assert (!conn->ac);
    if (self->hostname [0]) {
        //  Asked again before every attempt: a Redis that moved is found
        s_resolve (self);
        if (!self->resolved) {
            conn->state = CONN_RESOLVING;
            mesh_loop_timer_start (self->loop, &conn->connect_timer,
                                   MESH_MAX (self->connect_timeout_ms, MESH_REDIS_RESOLVE_TIMEOUT_MS),
                                   s_on_connect_timeout, conn);
            return;
        }
    }
    conn->state = CONN_CONNECTING;

    //  An address (a name was resolved off the reactor): the connect itself
    //  does not block
    redisAsyncContext *ac = self->path [0]
                          ? redisAsyncConnectUnix (self->path)
                          : redisAsyncConnect (self->host, self->port);
    if (!ac || ac->err) {
        char why [160];
        snprintf (why, sizeof why, "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree (ac);        //  no adapter, no callbacks yet
        s_conn_lost (conn, FAIL_CONNECT, why);
        return;
    }
    ac->data = conn;
    ac->ev.addRead = s_ev_add_read;
    ac->ev.delRead = s_ev_del_read;
    ac->ev.addWrite = s_ev_add_write;
    ac->ev.delWrite = s_ev_del_write;
    ac->ev.cleanup = s_ev_cleanup;
    ac->ev.data = conn;
    conn->ac = ac;
    conn->fd = -1;
    conn->events = 0;
    if (!self->path [0])
        redisEnableKeepAlive (&ac->c);  //  setsockopt only
    mesh_loop_timer_start (self->loop, &conn->connect_timer, self->connect_timeout_ms,
                           s_on_connect_timeout, conn);
    //  Asks for write interest: writable means connected
    redisAsyncSetConnectCallback (ac, s_on_connect);

    //  Queued now, written once connected; ready only when PING answers
    char db_text [16];
    snprintf (db_text, sizeof db_text, "%d", self->db);
    const char *select [2] = { "SELECT", db_text };
    const char *ping [1] = { "PING" };
    const char *auth [3] = { "AUTH", self->username ? self->username : self->password, self->password };
    if ((self->password
         && redisAsyncCommandArgv (ac, s_on_auth, conn, self->username ? 3 : 2, auth, NULL) != REDIS_OK)
    ||  (conn == &self->cmd && self->db > 0
         && redisAsyncCommandArgv (ac, s_on_select, conn, 2, select, NULL) != REDIS_OK)
    ||  redisAsyncCommandArgv (ac, s_on_ping, conn, 1, ping, NULL) != REDIS_OK)
        s_conn_lost (conn, FAIL_CONNECT, "cannot queue the handshake");
}

//  Set-up -----------------------------------------------------------------

static int
s_parse_int (const char *s, size_t len, long min, long max, long *value)
{
    if (len == 0 || len > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s [i] < '0' || s [i] > '9')
            return -1;
        v = v * 10 + (s [i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *value = v;
    return 0;
}

//  redis://host[:port][/db] or unix:///path; fills host/port/db or path.
static int
s_parse_url (mesh_redis_t *self, const char *url, char *why, size_t why_size)
{
    if (strncmp (url, "unix://", 7) == 0) {
        const char *path = url + 7;
        if (path [0] != '/' || strlen (path) >= sizeof self->path) {
            snprintf (why, why_size, "redis url %s: need unix:///absolute/path", url);
            return -1;
        }
        snprintf (self->path, sizeof self->path, "%s", path);
        snprintf (self->name, sizeof self->name, "%s", path);
        return 0;
    }
    if (strncmp (url, "redis://", 8) != 0) {
        snprintf (why, why_size, "redis url %s: need redis://host:port[/db] or unix:///path", url);
        return -1;
    }
    const char *p = url + 8;
    if (strchr (p, '@')) {
        snprintf (why, why_size, "redis url: no credentials in the url (redis.username, and "
                  "redis.password_file or the variable redis.password_env names)");
        return -1;
    }
    const char *host = p, *host_end;
    bool bracketed = *p == '[';
    if (bracketed) {
        host = p + 1;
        host_end = strchr (host, ']');
        if (!host_end) {
            snprintf (why, why_size, "redis url %s: unclosed [", url);
            return -1;
        }
        p = host_end + 1;
    }
    else {
        host_end = p + strcspn (p, ":/");
        p = host_end;
    }
    size_t host_len = (size_t) (host_end - host);
    unsigned char addr [sizeof (struct in6_addr)];
    if (host_len == 0 || host_len >= sizeof self->hostname) {
        snprintf (why, why_size, "redis url %s: bad host", url);
        return -1;
    }
    else
    if (host_len < sizeof self->host) {
        snprintf (self->host, sizeof self->host, "%.*s", (int) host_len, host);
        if (inet_pton (bracketed ? AF_INET6 : AF_INET, self->host, addr) != 1)
            self->host [0] = 0;
    }
    if (!self->host [0]) {
        //  A name: resolved off the reactor before each connection
        bool valid = !bracketed;
        for (size_t i = 0; i < host_len && valid; i++)
            valid = isalnum ((unsigned char) host [i]) || host [i] == '-' || host [i] == '.'
                 || host [i] == '_';
        if (!valid) {
            snprintf (why, why_size, "redis url %s: bad host", url);
            return -1;
        }
        snprintf (self->hostname, sizeof self->hostname, "%.*s", (int) host_len, host);
    }
    long value = 6379;
    if (*p == ':') {
        size_t len = strcspn (p + 1, "/");
        if (s_parse_int (p + 1, len, 1, 65535, &value) < 0) {
            snprintf (why, why_size, "redis url %s: bad port", url);
            return -1;
        }
        p += 1 + len;
    }
    self->port = (int) value;
    value = 0;
    if (*p == '/' && p [1]) {
        if (s_parse_int (p + 1, strlen (p + 1), 0, 100000, &value) < 0) {
            snprintf (why, why_size, "redis url %s: bad db number", url);
            return -1;
        }
    }
    else
    if (*p && !(*p == '/' && !p [1])) {
        snprintf (why, why_size, "redis url %s: unexpected \"%s\"", url, p);
        return -1;
    }
    self->db = (int) value;
    snprintf (self->name, sizeof self->name, bracketed ? "[%s]:%d" : "%s:%d",
              self->hostname [0] ? self->hostname : self->host, self->port);
    return 0;
}

//  The name's address came: connections waiting for it go on
static void
s_on_resolved (void *arg, int rc, const mesh_address_t *addrs, size_t count)
{
    mesh_redis_t *self = arg;
    self->lookup = 0;
    conn_t *conns [2] = { &self->cmd, &self->sub };
    if (rc != 0) {
        char why [300];
        snprintf (why, sizeof why, "cannot resolve %s: %s", self->hostname, gai_strerror (rc));
        for (int i = 0; i < 2; i++)
            if (conns [i]->state == CONN_RESOLVING)
                s_conn_lost (conns [i], FAIL_CONNECT, why);
        return;
    }
    //  The first IPv4 address (localhost is ::1 first on many systems, and
    //  a Redis binds IPv4 more often than not), else the first
    size_t at = 0;
    for (size_t i = count; i-- > 0; )
        if (((const struct sockaddr *) &addrs [i].addr)->sa_family == AF_INET)
            at = i;
    char address [INET6_ADDRSTRLEN];
    mesh_address_host (&addrs [at], address, sizeof address);
    if (self->resolved && strcmp (address, self->host) != 0)
        mesh_info ("redis %s is at %s now (was %s)", self->name, address, self->host);
    snprintf (self->host, sizeof self->host, "%s", address);
    self->resolved = true;
    for (int i = 0; i < 2; i++)
        if (conns [i]->state == CONN_RESOLVING) {
            mesh_loop_timer_stop (self->loop, &conns [i]->connect_timer);
            conns [i]->state = CONN_DOWN;
            s_conn_connect (conns [i]);
        }
}

static void
s_resolve (mesh_redis_t *self)
{
    if (self->lookup)
        return;                 //  one in flight serves every connection
    if (!self->resolver) {
        self->resolver = mesh_resolver_new ();
        assert (self->resolver);
        mesh_resolver_attach (self->resolver, self->loop);
    }
    self->lookup = mesh_resolver_lookup (self->resolver, self->hostname, self->port, MESH_RESOLVE_ANY,
                                         s_on_resolved, self);
}

static void
s_conn_init (mesh_redis_t *self, conn_t *conn, const char *role)
{
    conn->owner = self;
    conn->role = role;
    conn->state = CONN_DOWN;
    conn->fd = -1;
    conn->backoff_ms = MESH_REDIS_BACKOFF_MIN_MS;
}

mesh_redis_t *
mesh_redis_new (mesh_loop_t *loop, const char *url,
                int64_t connect_timeout_ms, int64_t command_timeout_ms,
                mesh_metrics_t *metrics, char *why, size_t why_size)
{
    mesh_redis_options_t options = { connect_timeout_ms, command_timeout_ms, NULL, NULL };
    return mesh_redis_open (loop, url, &options, metrics, why, why_size);
}

mesh_redis_t *
mesh_redis_open (mesh_loop_t *loop, const char *url, const mesh_redis_options_t *options,
                 mesh_metrics_t *metrics, char *why, size_t why_size)
{
    assert (loop && url && options);
    int64_t connect_timeout_ms = options->connect_timeout_ms;
    int64_t command_timeout_ms = options->command_timeout_ms;
    if (connect_timeout_ms <= 0 || command_timeout_ms <= 0) {
        snprintf (why, why_size, "redis timeouts must be positive");
        return NULL;
    }
    mesh_redis_t *self = calloc (1, sizeof *self);
    assert (self);
    if (s_parse_url (self, url, why, why_size) < 0) {
        free (self);
        return NULL;
    }
    self->loop = loop;
    self->connect_timeout_ms = connect_timeout_ms;
    self->command_timeout_ms = command_timeout_ms;
    if (options->password && *options->password) {
        self->password = strdup (options->password);
        if (options->username && *options->username)
            self->username = strdup (options->username);
    }
    self->subs_tail = &self->subs;
    s_conn_init (self, &self->cmd, "");
    s_conn_init (self, &self->sub, " pub/sub");
    if (metrics) {
        self->seconds = mesh_metrics_histogram (metrics, "seekmesh_redis_command_seconds",
            "Time from queueing a Redis command to its reply", NULL);
        self->up = mesh_metrics_gauge (metrics, "seekmesh_redis_up",
            "1 while the Redis command connection is up and answering", NULL);
        for (int i = 0; i < FAIL_REASONS; i++) {
            char labels [32];
            snprintf (labels, sizeof labels, "reason=\"%s\"", s_fail_reason [i]);
            self->failures [i] = mesh_metrics_counter (metrics, "seekmesh_redis_failures_total",
                "Redis failures: connect attempts, command timeouts, broken connections",
                labels);
        }
        mesh_metric_set (self->up, 0);
    }
    s_conn_connect (&self->cmd);
    return self;
}

static void
s_conn_close (conn_t *conn)
{
    mesh_loop_t *loop = conn->owner->loop;
    mesh_loop_timer_stop (loop, &conn->connect_timer);
    mesh_loop_timer_stop (loop, &conn->retry_timer);
    mesh_loop_timer_stop (loop, &conn->reap_timer);
    mesh_loop_timer_stop (loop, &conn->error_timer);
    if (conn->ac)
        redisAsyncFree (conn->ac);      //  its reply callbacks find their records done
    assert (conn->ac == NULL && conn->fd < 0);
    conn->state = CONN_DOWN;
}

void
mesh_redis_destroy (mesh_redis_t **self_p)
{
    assert (self_p);
    mesh_redis_t *self = *self_p;
    if (!self)
        return;
    //  A callback's caller is still using this client
    assert (self->in_callback == 0);
    self->destroying = true;            //  mesh_redis_ready is false from here
    s_fail_all (self);
    mesh_loop_timer_stop (self->loop, &self->ping_timer);
    s_conn_close (&self->cmd);
    s_conn_close (&self->sub);
    mesh_resolver_destroy (&self->resolver);
    if (self->password) {
        OPENSSL_cleanse (self->password, strlen (self->password));
        free (self->password);
    }
    free (self->username);
    if (self->up)
        mesh_metric_set (self->up, 0);
    while (self->subs) {
        sub_t *next = self->subs->next;
        free (self->subs->channel);
        free (self->subs);
        self->subs = next;
    }
    free (self);
    *self_p = NULL;
}

bool
mesh_redis_ready (mesh_redis_t *self)
{
    return self && !self->destroying && self->cmd.state == CONN_READY;
}

int
mesh_redis_credentials (mesh_config_t *config, mesh_redis_options_t *options,
                        char *password, size_t password_size, char *why, size_t why_size)
{
    const char *username = mesh_setting_str (config, "redis.username");
    const char *file = mesh_setting_str (config, "redis.password_file");
    const char *env = mesh_setting_str (config, "redis.password_env");
    password [0] = 0;
    if (*file) {
        struct stat st;
        FILE *in = fopen (file, "r");
        if (!in || fstat (fileno (in), &st) < 0) {
            snprintf (why, why_size, "redis.password_file %s: %s", file, strerror (errno));
            if (in)
                fclose (in);
            return -1;
        }
        if (st.st_mode & S_IROTH) {
            fclose (in);
            snprintf (why, why_size, "redis.password_file %s is readable by every user (mode %03o): "
                      "chmod 600 it", file, (unsigned) (st.st_mode & 0777));
            return -1;
        }
        size_t n = fread (password, 1, password_size - 1, in);
        bool whole = feof (in);
        fclose (in);
        password [n] = 0;
        while (n && (password [n - 1] == '\n' || password [n - 1] == '\r'))
            password [--n] = 0;
        if (!whole || n == 0 || strlen (password) != n) {
            snprintf (why, why_size, "redis.password_file %s: %s", file,
                      !whole ? "longer than a password may be" : n ? "holds a NUL byte" : "empty");
            OPENSSL_cleanse (password, password_size);
            return -1;
        }
    }
    else
    if (*env && getenv (env)) {
        const char *value = getenv (env);
        if (strlen (value) >= password_size) {
            snprintf (why, why_size, "$%s: longer than a password may be", env);
            return -1;
        }
        snprintf (password, password_size, "%s", value);
    }
    if (*username && !*password) {
        snprintf (why, why_size, "redis.username %s needs a password (redis.password_file, or $%s)",
                  username, *env ? env : "SEEKMESH_REDIS_PASSWORD");
        return -1;
    }
    options->username = *username ? username : NULL;
    options->password = *password ? password : NULL;
    return 0;
}

mesh_redis_t *
mesh_redis_open_configured (mesh_loop_t *loop, mesh_config_t *config, const char *url,
                            int64_t connect_timeout_ms, int64_t command_timeout_ms,
                            mesh_metrics_t *metrics, char *why, size_t why_size)
{
    mesh_redis_options_t options = { connect_timeout_ms, command_timeout_ms, NULL, NULL };
    char password [1024];
    mesh_redis_t *self = NULL;
    if (mesh_redis_credentials (config, &options, password, sizeof password, why, why_size) == 0)
        self = mesh_redis_open (loop, url, &options, metrics, why, why_size);
    OPENSSL_cleanse (password, sizeof password);
    return self;
}

//  Selftest ---------------------------------------------------------------
//  Against a real redis-server on a free loopback port, which the test
//  freezes (SIGSTOP), thaws, kills and starts again.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#if defined (__SANITIZE_ADDRESS__)
#   define TEST_LEAK_CHECK 1
#elif defined (__has_feature)
#   if __has_feature (address_sanitizer)
#       define TEST_LEAK_CHECK 1
#   endif
#endif
#if defined (TEST_LEAK_CHECK)
//  The runner's child leaves with _exit, past LeakSanitizer's exit hook
int __lsan_do_recoverable_leak_check (void);
#endif

#define TEST_CONNECT_TIMEOUT_MS 300
#define TEST_COMMAND_TIMEOUT_MS 100
#define TEST_SLACK_MS           80      //  loop and sanitizer overhead

typedef struct {
    int calls;
    bool null;
    int type;
    long long integer;
    char str [4096];
    size_t len;
    int64_t at_us;
} test_result_t;

typedef struct {
    int messages;
    char payload [64];
    size_t len;
    int resubscribed;
} test_sub_t;

static bool s_test_calling;            //  inside mesh_redis_command/_eval

static void
s_test_reply (void *arg, redisReply *reply)
{
    //  Never from inside the call that queued the command
    assert (!s_test_calling);
    test_result_t *result = arg;
    result->calls++;
    result->at_us = mesh_mono_us ();
    result->null = reply == NULL;
    if (reply) {
        result->type = reply->type;
        result->integer = reply->integer;
        result->len = reply->str ? reply->len : 0;
        size_t n = MESH_MIN (result->len, sizeof result->str - 1);
        if (n)
            memcpy (result->str, reply->str, n);
        result->str [n] = 0;
    }
}

//  argv as a NULL-terminated list of C strings
static int
s_test_command (mesh_redis_t *redis, test_result_t *result, const char **argv)
{
    int argc = 0;
    while (argv [argc])
        argc++;
    *result = (test_result_t) { 0 };
    s_test_calling = true;
    int rc = mesh_redis_command (redis, s_test_reply, result, argc, argv, NULL);
    s_test_calling = false;
    return rc;
}

typedef struct {
    bool (*cond) (void *arg);
    void *arg;
    bool met;
    mesh_timer_t poll;
    mesh_timer_t deadline;
} test_wait_t;

static int
s_test_poll (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) timer;
    test_wait_t *wait = arg;
    if (wait->cond (wait->arg)) {
        wait->met = true;
        return -1;
    }
    mesh_loop_timer_start (loop, &wait->poll, 1, s_test_poll, wait);
    return 0;
}

static int
s_test_deadline (mesh_loop_t *loop, mesh_timer_t *timer, void *arg)
{
    (void) loop; (void) timer; (void) arg;
    return -1;
}

//  Runs the loop until cond holds or max_ms have passed
static bool
s_test_wait (mesh_loop_t *loop, bool (*cond) (void *), void *arg, int64_t max_ms)
{
    if (cond (arg))
        return true;
    test_wait_t wait = { .cond = cond, .arg = arg };
    mesh_loop_timer_start (loop, &wait.poll, 1, s_test_poll, &wait);
    mesh_loop_timer_start (loop, &wait.deadline, max_ms, s_test_deadline, NULL);
    mesh_loop_run (loop);
    mesh_loop_timer_stop (loop, &wait.poll);
    mesh_loop_timer_stop (loop, &wait.deadline);
    return wait.met || cond (arg);
}

static bool s_test_never (void *arg) { (void) arg; return false; }
static bool s_test_ready (void *arg) { return mesh_redis_ready (arg); }
static bool s_test_not_ready (void *arg) { return !mesh_redis_ready (arg); }
static bool s_test_called (void *arg) { return ((test_result_t *) arg)->calls > 0; }

static void
s_test_sleep (mesh_loop_t *loop, int64_t ms)
{
    s_test_wait (loop, s_test_never, NULL, ms);
}

//  One command, waited for; returns its result
static test_result_t
s_test_do (mesh_loop_t *loop, mesh_redis_t *redis, const char **argv)
{
    test_result_t result;
    assert (s_test_command (redis, &result, argv) == 0);
    assert (s_test_wait (loop, s_test_called, &result, 2000));
    assert (result.calls == 1);
    return result;
}

static void
s_test_message (void *arg, const char *payload, size_t len)
{
    test_sub_t *sub = arg;
    sub->messages++;
    sub->len = len;
    snprintf (sub->payload, sizeof sub->payload, "%.*s", (int) MESH_MIN (len, 63), payload);
}

static void
s_test_resubscribed (void *arg)
{
    ((test_sub_t *) arg)->resubscribed++;
}

typedef struct {
    test_sub_t *sub;
    int messages;
    int resubscribed;
} test_sub_wait_t;

static bool
s_test_sub_cond (void *arg)
{
    test_sub_wait_t *w = arg;
    return w->sub->messages >= w->messages && w->sub->resubscribed >= w->resubscribed;
}

//  Publishes payload and waits until the subscriber has it
static void
s_test_publish (mesh_loop_t *loop, mesh_redis_t *redis, test_sub_t *sub, const char *payload)
{
    test_sub_wait_t w = { sub, sub->messages + 1, 0 };
    const char *publish [] = { "PUBLISH", "mesh:test", payload, NULL };
    test_result_t result = s_test_do (loop, redis, publish);
    assert (result.type == REDIS_REPLY_INTEGER && result.integer == 1);
    assert (s_test_wait (loop, s_test_sub_cond, &w, 2000));
    assert (strcmp (sub->payload, payload) == 0);
}

//  redis-server in PATH or /usr/bin; NULL when it is nowhere
static const char *
s_test_server_binary (char *buf, size_t size)
{
    const char *path = getenv ("PATH");
    char dirs [4096];
    snprintf (dirs, sizeof dirs, "%s:/usr/bin:/usr/local/bin:/usr/sbin", path ? path : "");
    char *save = NULL;
    for (char *dir = strtok_r (dirs, ":", &save); dir; dir = strtok_r (NULL, ":", &save)) {
        snprintf (buf, size, "%s/redis-server", dir);
        if (access (buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

static int
s_test_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (fd >= 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t addr_len = sizeof addr;
    assert (bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0);
    assert (getsockname (fd, (struct sockaddr *) &addr, &addr_len) == 0);
    close (fd);
    return ntohs (addr.sin_port);
}

static bool
s_test_port_open (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (fd >= 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) port),
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    bool open = connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0;
    close (fd);
    return open;
}

//  Starts redis-server on port (and a unix socket) and waits until it
//  accepts connections.  The test blocks here; it is not a reactor.
static pid_t
s_test_server_start_with (const char *binary, int port, const char *unix_path, const char *password,
                          bool verbose)
{
    char port_text [16];
    snprintf (port_text, sizeof port_text, "%d", port);
    pid_t pid = fork ();
    assert (pid >= 0);
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);     //  never outlive a failed test
        if (!verbose) {
            int null = open ("/dev/null", O_WRONLY);
            dup2 (null, STDOUT_FILENO);
            dup2 (null, STDERR_FILENO);
        }
        if (password)
            execl (binary, binary, "--port", port_text, "--bind", "127.0.0.1",
                   "--requirepass", password, "--save", "", "--appendonly", "no",
                   "--daemonize", "no", "--dir", "/tmp", (char *) NULL);
        else
            execl (binary, binary, "--port", port_text, "--bind", "127.0.0.1",
                   "--unixsocket", unix_path, "--save", "", "--appendonly", "no",
                   "--daemonize", "no", "--dir", "/tmp", (char *) NULL);
        _exit (127);
    }
    for (int i = 0; i < 500; i++) {
        if (s_test_port_open (port))
            return pid;
        int status;
        if (waitpid (pid, &status, WNOHANG) == pid) {
            fprintf (stderr, "mesh_redis_test: %s exited at start (status %d)\n", binary, status);
            assert (!"redis-server did not start");
        }
        usleep (10000);
    }
    fprintf (stderr, "mesh_redis_test: %s did not listen on port %d in 5 s\n", binary, port);
    assert (!"redis-server did not start");
    return -1;
}

static pid_t
s_test_server_start (const char *binary, int port, const char *unix_path, bool verbose)
{
    return s_test_server_start_with (binary, port, unix_path, NULL, verbose);
}

static void
s_test_server_kill (pid_t pid)
{
    kill (pid, SIGKILL);
    int status;
    assert (waitpid (pid, &status, 0) == pid);
}

static double
s_test_metric (mesh_metrics_t *metrics, const char *reason)
{
    char labels [32];
    snprintf (labels, sizeof labels, "reason=\"%s\"", reason);
    return mesh_metric_value (mesh_metrics_counter (metrics, "seekmesh_redis_failures_total",
                                                    NULL, labels));
}

static double
s_test_up (mesh_metrics_t *metrics)
{
    return mesh_metric_value (mesh_metrics_gauge (metrics, "seekmesh_redis_up", NULL, NULL));
}

static int64_t
s_test_ms_since (int64_t start_us)
{
    return (mesh_mono_us () - start_us) / 1000;
}

//  A server with requirepass, and an ACL user: AUTH refused is a failure
//  like Redis away (never ready, counted as "auth"), AUTH right works, and
//  no password ever reaches the log
static void
s_test_auth (mesh_loop_t *loop, const char *binary, bool verbose)
{
    int port = s_test_free_port ();
    pid_t server = s_test_server_start_with (binary, port, NULL, "sekret-default", verbose);
    char url [64], why [256];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d", port);
    //  Everything this part logs goes to a file, read back at the end
    char log_path [64];
    snprintf (log_path, sizeof log_path, "/tmp/mesh-redis-test-%d.log", (int) getpid ());
    int saved = dup (STDERR_FILENO);
    int log_fd = open (log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert (saved >= 0 && log_fd >= 0);
    dup2 (log_fd, STDERR_FILENO);
    int level = mesh_log_level ();
    mesh_log_set_level (MESH_LOG_DEBUG);

    const mesh_redis_options_t cases [] = {
        { TEST_CONNECT_TIMEOUT_MS, TEST_COMMAND_TIMEOUT_MS, NULL, NULL },              //  NOAUTH
        { TEST_CONNECT_TIMEOUT_MS, TEST_COMMAND_TIMEOUT_MS, NULL, "not-the-password" },
        { TEST_CONNECT_TIMEOUT_MS, TEST_COMMAND_TIMEOUT_MS, "nobody", "sekret-default" },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (cases); i++) {
        mesh_metrics_t *metrics = mesh_metrics_new ();
        mesh_redis_t *redis = mesh_redis_open (loop, url, &cases [i], metrics, why, sizeof why);
        assert (redis);
        s_test_sleep (loop, 250);
        assert (!mesh_redis_ready (redis));
        assert (s_test_metric (metrics, "auth") >= 1 && s_test_up (metrics) == 0);
        test_result_t result;
        const char *ping [] = { "PING", NULL };
        assert (s_test_command (redis, &result, ping) == -1);
        mesh_redis_destroy (&redis);
        mesh_metrics_destroy (&metrics);
    }
    //  The right password: ready, and it makes an ACL user
    mesh_redis_options_t right = { TEST_CONNECT_TIMEOUT_MS, TEST_COMMAND_TIMEOUT_MS, NULL, "sekret-default" };
    mesh_redis_t *admin = mesh_redis_open (loop, url, &right, NULL, why, sizeof why);
    assert (s_test_wait (loop, s_test_ready, admin, 2000));
    const char *setuser [] = { "ACL", "SETUSER", "quota", "on", ">sekret-quota", "~seekmesh:*", "&*",
                               "+@all", NULL };
    test_result_t result = s_test_do (loop, admin, setuser);
    assert (result.type == REDIS_REPLY_STATUS);
    //  The user, by name: its own keys only
    mesh_redis_options_t user = { TEST_CONNECT_TIMEOUT_MS, TEST_COMMAND_TIMEOUT_MS, "quota", "sekret-quota" };
    mesh_redis_t *redis = mesh_redis_open (loop, url, &user, NULL, why, sizeof why);
    assert (s_test_wait (loop, s_test_ready, redis, 2000));
    const char *whoami [] = { "ACL", "WHOAMI", NULL };
    result = s_test_do (loop, redis, whoami);
    assert (result.type == REDIS_REPLY_STRING && strcmp (result.str, "quota") == 0);
    const char *set_other [] = { "SET", "other:key", "1", NULL };
    result = s_test_do (loop, redis, set_other);
    assert (result.type == REDIS_REPLY_ERROR && strstr (result.str, "NOPERM"));
    //  Its pub/sub connection authenticates too
    test_sub_t sub = { 0 };
    assert (mesh_redis_subscribe (redis, "seekmesh:test", s_test_message, s_test_resubscribed, &sub) == 0);
    test_sub_wait_t sub_wait = { &sub, 0, 1 };
    assert (s_test_wait (loop, s_test_sub_cond, &sub_wait, 2000));
    //  The user's password changed under it: the next connection is refused
    //  and the client stays down (degraded) until it is right again
    const char *reset [] = { "ACL", "SETUSER", "quota", "resetpass", ">changed", NULL };
    result = s_test_do (loop, admin, reset);
    assert (result.type == REDIS_REPLY_STATUS);
    const char *kill [] = { "CLIENT", "KILL", "USER", "quota", NULL };
    result = s_test_do (loop, admin, kill);
    assert (result.type == REDIS_REPLY_INTEGER && result.integer >= 1);
    assert (s_test_wait (loop, s_test_not_ready, redis, 2000));
    s_test_sleep (loop, 300);
    assert (!mesh_redis_ready (redis));
    const char *back [] = { "ACL", "SETUSER", "quota", "resetpass", ">sekret-quota", NULL };
    result = s_test_do (loop, admin, back);
    assert (s_test_wait (loop, s_test_ready, redis, 3000));
    mesh_redis_destroy (&redis);
    mesh_redis_destroy (&admin);
    s_test_server_kill (server);

    fflush (stderr);
    mesh_log_set_level (level);
    dup2 (saved, STDERR_FILENO);
    close (saved);
    close (log_fd);
    FILE *in = fopen (log_path, "r");
    char text [65536];
    size_t n = fread (text, 1, sizeof text - 1, in);
    fclose (in);
    text [n] = 0;
    unlink (log_path);
    assert (strstr (text, "auth") && strstr (text, "WRONGPASS"));
    assert (!strstr (text, "sekret") && !strstr (text, "not-the-password") && !strstr (text, "changed"));

    //  Credentials from a config: a file (not readable by all), or the environment
    char file [64];
    snprintf (file, sizeof file, "/tmp/mesh-redis-password-%d", (int) getpid ());
    FILE *out = fopen (file, "w");
    fputs ("from-the-file\n", out);
    fclose (out);
    char text_config [256];
    snprintf (text_config, sizeof text_config,
              "{ \"redis\": { \"username\": \"quota\", \"password_file\": \"%s\" } }", file);
    mesh_config_t *config = mesh_config_parse (text_config, strlen (text_config), "r.json", why, sizeof why);
    mesh_redis_options_t options = { 1, 1, NULL, NULL };
    char password [128];
    chmod (file, 0644);
    assert (mesh_redis_credentials (config, &options, password, sizeof password, why, sizeof why) == -1);
    assert (strstr (why, "readable by every user"));
    //  The same refusal through the call services make: no client
    assert (mesh_redis_open_configured (NULL, config, "redis://127.0.0.1:1", 1, 1, NULL, why, sizeof why) == NULL);
    assert (strstr (why, "readable by every user"));
    chmod (file, 0600);
    assert (mesh_redis_credentials (config, &options, password, sizeof password, why, sizeof why) == 0);
    assert (strcmp (options.username, "quota") == 0 && strcmp (options.password, "from-the-file") == 0);
    unlink (file);
    mesh_config_destroy (&config);
    config = mesh_config_parse ("{}", 2, "r.json", why, sizeof why);
    unsetenv ("SEEKMESH_REDIS_PASSWORD");
    assert (mesh_redis_credentials (config, &options, password, sizeof password, why, sizeof why) == 0);
    assert (!options.username && !options.password);
    setenv ("SEEKMESH_REDIS_PASSWORD", "from-the-env", 1);
    assert (mesh_redis_credentials (config, &options, password, sizeof password, why, sizeof why) == 0);
    assert (strcmp (options.password, "from-the-env") == 0);
    unsetenv ("SEEKMESH_REDIS_PASSWORD");
    setenv ("SEEKMESH_REDIS_USERNAME", "lonely", 1);
    assert (mesh_redis_credentials (config, &options, password, sizeof password, why, sizeof why) == -1);
    unsetenv ("SEEKMESH_REDIS_USERNAME");
    mesh_config_destroy (&config);
}

void
mesh_redis_test (bool verbose)
{
    char binary_buf [4200];
    const char *binary = s_test_server_binary (binary_buf, sizeof binary_buf);
    if (!binary) {
        fprintf (stderr, "mesh_redis_test: FAILED: redis-server is not in PATH or /usr/bin "
                         "(apt-get install redis-server)\n");
        exit (1);
    }
    //  hiredis writes with write(2) to a server the test kills
    signal (SIGPIPE, SIG_IGN);
    char why [256];
    mesh_loop_t *loop = mesh_loop_new ();
    assert (loop);
    mesh_metrics_t *metrics = mesh_metrics_new ();

    //  Bad urls are refused with a reason
    const char *bad [] = {
        "http://127.0.0.1:6379", "redis://bad host:6379", "redis://127.0.0.1:0",
        "redis://127.0.0.1:65536", "redis://127.0.0.1:6379/x", "redis://[::1",
        "redis://:secret@127.0.0.1", "unix://relative", "redis://127.0.0.1:6379/1/2"
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++) {
        why [0] = 0;
        assert (mesh_redis_new (loop, bad [i], 100, 100, NULL, why, sizeof why) == NULL);
        assert (why [0]);
    }
    assert (mesh_redis_new (loop, "redis://127.0.0.1:6379", 0, 100, NULL, why, sizeof why) == NULL);
    //  Good ones start connecting; destroyed while connecting
    const char *good [] = {
        "redis://127.0.0.1", "redis://localhost:1/", "redis://[::1]:1/3", "unix:///nonexistent.sock",
        "redis://redis.example:6379"
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (good); i++) {
        mesh_redis_t *redis = mesh_redis_new (loop, good [i], 100, 100, NULL, why, sizeof why);
        assert (redis);
        assert (!mesh_redis_ready (redis));
        mesh_redis_destroy (&redis);
    }

    //  Nobody listening: never ready, commands refused, attempts counted
    int port = s_test_free_port ();
    char url [128];
    snprintf (url, sizeof url, "redis://127.0.0.1:%d/2", port);
    mesh_redis_t *redis = mesh_redis_new (loop, url, TEST_CONNECT_TIMEOUT_MS,
                                          TEST_COMMAND_TIMEOUT_MS, metrics, why, sizeof why);
    assert (redis);
    assert (!mesh_redis_ready (redis));
    test_result_t result;
    const char *ping [] = { "PING", NULL };
    assert (s_test_command (redis, &result, ping) == -1);
    s_test_sleep (loop, 120);
    assert (!mesh_redis_ready (redis));
    assert (s_test_metric (metrics, "connect") >= 2);
    assert (s_test_up (metrics) == 0);
    mesh_redis_destroy (&redis);
    mesh_redis_destroy (&redis);
    assert (redis == NULL);

    //  A server, and a client on db 2
    char unix_path [64];
    snprintf (unix_path, sizeof unix_path, "/tmp/mesh-redis-test-%d.sock", (int) getpid ());
    pid_t server = s_test_server_start (binary, port, unix_path, verbose);
    redis = mesh_redis_new (loop, url, TEST_CONNECT_TIMEOUT_MS, TEST_COMMAND_TIMEOUT_MS,
                            metrics, why, sizeof why);
    assert (redis);
    assert (s_test_wait (loop, s_test_ready, redis, 2000));
    assert (s_test_up (metrics) == 1);

    //  SET/GET round trip, binary-safe; the db of the url is selected
    const char *set_argv [] = { "SET", "k", "a\0b" };
    const size_t set_len [] = { 3, 1, 3 };
    s_test_calling = true;
    assert (mesh_redis_command (redis, s_test_reply, &result, 3, set_argv, set_len) == 0);
    s_test_calling = false;
    assert (result.calls == 0);
    assert (s_test_wait (loop, s_test_called, &result, 2000));
    assert (result.type == REDIS_REPLY_STATUS && strcmp (result.str, "OK") == 0);
    const char *get [] = { "GET", "k", NULL };
    result = s_test_do (loop, redis, get);
    assert (result.type == REDIS_REPLY_STRING && result.len == 3 && memcmp (result.str, "a\0b", 3) == 0);
    const char *client_info [] = { "CLIENT", "INFO", NULL };
    result = s_test_do (loop, redis, client_info);
    assert (result.type == REDIS_REPLY_STRING && strstr (result.str, " db=2 "));

    //  A large value goes out and comes back in many reads and writes
    size_t big_len = 1 << 20;
    char *big = malloc (big_len);
    assert (big);
    for (size_t i = 0; i < big_len; i++)
        big [i] = (char) ('a' + i % 26);
    const char *big_argv [] = { "SET", "big", big };
    const size_t big_argv_len [] = { 3, 3, big_len };
    result = (test_result_t) { 0 };
    assert (mesh_redis_command (redis, s_test_reply, &result, 3, big_argv, big_argv_len) == 0);
    assert (s_test_wait (loop, s_test_called, &result, 2000));
    assert (result.type == REDIS_REPLY_STATUS);
    const char *strlen_argv [] = { "STRLEN", "big", NULL };
    result = s_test_do (loop, redis, strlen_argv);
    assert (result.type == REDIS_REPLY_INTEGER && result.integer == (long long) big_len);
    free (big);

    //  Many queued INCRs are answered in order
    static test_result_t incr [100];
    const char *incr_argv [] = { "INCR", "counter", NULL };
    for (int i = 0; i < 100; i++)
        assert (s_test_command (redis, &incr [i], incr_argv) == 0);
    assert (s_test_wait (loop, s_test_called, &incr [99], 2000));
    for (int i = 0; i < 100; i++)
        assert (incr [i].calls == 1 && incr [i].type == REDIS_REPLY_INTEGER
             && incr [i].integer == i + 1);

    //  An error reply is a reply, not a failure; pub/sub commands refused
    const char *bad_incr [] = { "INCR", "k", NULL };
    result = s_test_do (loop, redis, bad_incr);
    assert (!result.null && result.type == REDIS_REPLY_ERROR);
    const char *subscribe [] = { "SUBSCRIBE", "x", NULL };
    assert (s_test_command (redis, &result, subscribe) == -1);
    assert (mesh_redis_ready (redis));

    //  A script by its body: the first EVALSHA meets NOSCRIPT and goes
    //  again as EVAL; the second is found; after SCRIPT FLUSH, EVAL again
    mesh_redis_script_t script = { .body = "return redis.call('INCRBY', KEYS [1], ARGV [1])" };
    const char *eval_argv [] = { "e", "5" };
    for (int i = 1; i <= 3; i++) {
        if (i == 3) {
            const char *flush [] = { "SCRIPT", "FLUSH", NULL };
            result = s_test_do (loop, redis, flush);
            assert (result.type == REDIS_REPLY_STATUS);
        }
        result = (test_result_t) { 0 };
        s_test_calling = true;
        assert (mesh_redis_eval (redis, &script, s_test_reply, &result, 1, 2, eval_argv, NULL) == 0);
        s_test_calling = false;
        assert (s_test_wait (loop, s_test_called, &result, 2000));
        assert (result.type == REDIS_REPLY_INTEGER && result.integer == 5 * i);
    }
    const char *stats [] = { "INFO", "commandstats", NULL };
    result = s_test_do (loop, redis, stats);
    assert (strstr (result.str, "cmdstat_eval:calls=2,"));
    assert (strstr (result.str, "cmdstat_evalsha:calls=3,"));
    //  Our SHA1 is the server's
    const char *load [] = { "SCRIPT", "LOAD", script.body, NULL };
    result = s_test_do (loop, redis, load);
    assert (result.type == REDIS_REPLY_STRING && strcmp (result.str, script.sha) == 0);
    //  A script's error is a reply, not retried
    mesh_redis_script_t failing = { .body = "return redis.error_reply ('quota')" };
    result = (test_result_t) { 0 };
    assert (mesh_redis_eval (redis, &failing, s_test_reply, &result, 0, 0, NULL, NULL) == 0);
    assert (s_test_wait (loop, s_test_called, &result, 2000));
    assert (result.type == REDIS_REPLY_ERROR && strstr (result.str, "quota"));

    //  Pub/sub on its own connection
    test_sub_t sub = { 0 };
    assert (mesh_redis_subscribe (redis, "mesh:test", s_test_message, s_test_resubscribed, &sub) == 0);
    assert (mesh_redis_subscribe (redis, "mesh:test", s_test_message, NULL, &sub) == -1);
    test_sub_wait_t sub_wait = { &sub, 0, 1 };
    assert (s_test_wait (loop, s_test_sub_cond, &sub_wait, 2000));
    s_test_publish (loop, redis, &sub, "hello");

    //  Frozen: commands in flight fail within the command timeout, the
    //  client is not ready and refuses commands at once
    kill (server, SIGSTOP);
    int status;
    assert (waitpid (server, &status, WUNTRACED) == server && WIFSTOPPED (status));
    test_result_t frozen [3];
    int64_t start = mesh_mono_us ();
    for (int i = 0; i < 3; i++)
        assert (s_test_command (redis, &frozen [i], get) == 0);
    assert (s_test_wait (loop, s_test_called, &frozen [2], 2000));
    for (int i = 0; i < 3; i++) {
        assert (frozen [i].calls == 1 && frozen [i].null);
        assert ((frozen [i].at_us - start) / 1000 <= TEST_COMMAND_TIMEOUT_MS + TEST_SLACK_MS);
    }
    assert (!mesh_redis_ready (redis));
    assert (s_test_command (redis, &result, get) == -1);
    assert (s_test_metric (metrics, "timeout") == 1);
    assert (s_test_up (metrics) == 0);
    //  Reconnects reach the frozen server's kernel, but PING gets no answer
    double connects = s_test_metric (metrics, "connect");
    s_test_sleep (loop, 2 * TEST_CONNECT_TIMEOUT_MS + 100);
    assert (!mesh_redis_ready (redis));
    assert (s_test_metric (metrics, "connect") >= connects + 1);

    //  Thawed: ready again within about a second, and working
    kill (server, SIGCONT);
    start = mesh_mono_us ();
    assert (s_test_wait (loop, s_test_ready, redis, 2000));
    assert (s_test_ms_since (start) <= 1200);
    assert (s_test_up (metrics) == 1);
    result = s_test_do (loop, redis, get);
    assert (result.type == REDIS_REPLY_STRING && result.len == 3);
    //  The pub/sub connection went with the frozen one and is back
    sub_wait = (test_sub_wait_t) { &sub, 0, 2 };
    assert (s_test_wait (loop, s_test_sub_cond, &sub_wait, 2000));
    s_test_publish (loop, redis, &sub, "thawed");

    //  Killed: the disconnect fails the command in flight at once
    test_result_t killed;
    assert (s_test_command (redis, &killed, get) == 0);
    start = mesh_mono_us ();
    s_test_server_kill (server);
    assert (s_test_wait (loop, s_test_called, &killed, 2000));
    assert (killed.calls == 1 && killed.null);
    assert ((killed.at_us - start) / 1000 < TEST_COMMAND_TIMEOUT_MS);
    assert (!mesh_redis_ready (redis));
    assert (s_test_command (redis, &result, get) == -1);
    assert (s_test_metric (metrics, "disconnect") >= 1);
    s_test_sleep (loop, 300);
    assert (!mesh_redis_ready (redis));

    //  A new server on the same port: reconnected, db selected again,
    //  resubscribed, and the empty script cache handled
    server = s_test_server_start (binary, port, unix_path, verbose);
    start = mesh_mono_us ();
    assert (s_test_wait (loop, s_test_ready, redis, 2500));
    assert (s_test_ms_since (start) <= 1500);
    result = s_test_do (loop, redis, client_info);
    assert (strstr (result.str, " db=2 "));
    sub_wait = (test_sub_wait_t) { &sub, 0, 3 };
    assert (s_test_wait (loop, s_test_sub_cond, &sub_wait, 2000));
    s_test_publish (loop, redis, &sub, "restarted");
    result = (test_result_t) { 0 };
    assert (mesh_redis_eval (redis, &script, s_test_reply, &result, 1, 2, eval_argv, NULL) == 0);
    assert (s_test_wait (loop, s_test_called, &result, 2000));
    assert (result.type == REDIS_REPLY_INTEGER && result.integer == 5);

    //  Frozen while idle: the health PING notices without any traffic
    kill (server, SIGSTOP);
    assert (waitpid (server, &status, WUNTRACED) == server && WIFSTOPPED (status));
    double timeouts = s_test_metric (metrics, "timeout");
    start = mesh_mono_us ();
    assert (s_test_wait (loop, s_test_not_ready, redis, 2000));
    assert (s_test_ms_since (start) <= MESH_REDIS_PING_INTERVAL_MS + TEST_COMMAND_TIMEOUT_MS + TEST_SLACK_MS);
    assert (s_test_metric (metrics, "timeout") == timeouts + 1);
    kill (server, SIGCONT);
    assert (s_test_wait (loop, s_test_ready, redis, 2000));

    //  Over a unix socket too
    char unix_url [128];
    snprintf (unix_url, sizeof unix_url, "unix://%s", unix_path);
    mesh_redis_t *local = mesh_redis_new (loop, unix_url, TEST_CONNECT_TIMEOUT_MS,
                                          TEST_COMMAND_TIMEOUT_MS, NULL, why, sizeof why);
    assert (local);
    assert (s_test_wait (loop, s_test_ready, local, 2000));
    result = s_test_do (loop, local, ping);
    assert (result.type == REDIS_REPLY_STATUS && strcmp (result.str, "PONG") == 0);
    mesh_redis_destroy (&local);

    mesh_buf_t text;
    mesh_buf_init (&text);
    mesh_metrics_render (metrics, &text);
    mesh_buf_append (&text, "", 1);
    assert (strstr (mesh_buf_head (&text), "seekmesh_redis_command_seconds_count"));
    assert (strstr (mesh_buf_head (&text), "seekmesh_redis_up 1"));
    mesh_buf_free (&text);

    //  By name: "localhost" resolved off the reactor, and working
    char named_url [128];
    snprintf (named_url, sizeof named_url, "redis://localhost:%d/2", port);
    mesh_redis_t *named = mesh_redis_new (loop, named_url, TEST_CONNECT_TIMEOUT_MS,
                                          TEST_COMMAND_TIMEOUT_MS, NULL, why, sizeof why);
    assert (named && !mesh_redis_ready (named));
    assert (s_test_wait (loop, s_test_ready, named, 3000));
    result = s_test_do (loop, named, client_info);
    assert (strstr (result.str, " db=2 "));
    mesh_redis_destroy (&named);
    //  A name that does not resolve: never ready, counted, no hang
    mesh_metrics_t *name_metrics = mesh_metrics_new ();
    named = mesh_redis_new (loop, "redis://no-such-redis.invalid:6379", TEST_CONNECT_TIMEOUT_MS,
                            TEST_COMMAND_TIMEOUT_MS, name_metrics, why, sizeof why);
    assert (named);
    s_test_sleep (loop, 300);
    assert (!mesh_redis_ready (named) && s_test_metric (name_metrics, "connect") >= 1);
    assert (s_test_command (named, &result, ping) == -1);
    mesh_redis_destroy (&named);
    mesh_metrics_destroy (&name_metrics);

    s_test_auth (loop, binary, verbose);

    //  Destroyed with commands in flight: each fn gets NULL, once, at once
    test_result_t pending [5];
    for (int i = 0; i < 5; i++)
        assert (s_test_command (redis, &pending [i], get) == 0);
    mesh_redis_destroy (&redis);
    for (int i = 0; i < 5; i++)
        assert (pending [i].calls == 1 && pending [i].null);
    s_test_sleep (loop, 30);
    for (int i = 0; i < 5; i++)
        assert (pending [i].calls == 1);
    assert (s_test_up (metrics) == 0);

    s_test_server_kill (server);
    unlink (unix_path);
    mesh_metrics_destroy (&metrics);
    mesh_loop_destroy (&loop);
#if defined (TEST_LEAK_CHECK)
    assert (__lsan_do_recoverable_leak_check () == 0);
#endif
}
