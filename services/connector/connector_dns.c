/*  connector_dns: host name resolution off the reactor thread.

    getaddrinfo blocks, so names go to one worker thread through a locked
    queue; answers come back through a pipe the reactor watches.  IP
    literals are answered at once without the worker.  Answers are not
    cached here: pools keep the address they resolved and ask again when a
    connect to it fails.                                                    */
#include "connector.h"
#include "mesh_log.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct job_t {
    struct job_t *next;
    char host [256];
    int port;
    connector_resolver_fn *fn;
    void *arg;
    int rc;
    struct sockaddr_storage addr;
    socklen_t addr_len;
} job_t;

struct connector_resolver_t {
    mesh_loop_t *loop;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    job_t *queue;
    bool stop;
    int pipe [2];               //  worker -> reactor: finished jobs
};

static int
s_resolve (job_t *job, int flags)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = flags };
    char service [8];
    snprintf (service, sizeof service, "%d", job->port);
    struct addrinfo *info;
    int rc = getaddrinfo (job->host, service, &hints, &info);
    if (rc != 0)
        return rc;
    memcpy (&job->addr, info->ai_addr, info->ai_addrlen);
    job->addr_len = info->ai_addrlen;
    freeaddrinfo (info);
    return 0;
}

static void *
s_worker (void *arg)
{
    connector_resolver_t *self = arg;
    pthread_mutex_lock (&self->lock);
    while (!self->stop) {
        job_t *job = self->queue;
        if (!job) {
            pthread_cond_wait (&self->wake, &self->lock);
            continue;
        }
        self->queue = job->next;
        pthread_mutex_unlock (&self->lock);
        job->rc = s_resolve (job, AI_ADDRCONFIG);
        //  A pointer is less than PIPE_BUF: the write is atomic
        if (write (self->pipe [1], &job, sizeof job) != sizeof job)
            free (job);
        pthread_mutex_lock (&self->lock);
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

static void
s_answer (job_t *job)
{
    if (job->rc == 0)
        job->fn (job->arg, 0, (struct sockaddr *) &job->addr, job->addr_len);
    else
        job->fn (job->arg, job->rc, NULL, 0);
    free (job);
}

static int
s_on_pipe (mesh_loop_t *loop, int fd, int events, void *arg)
{
    (void) loop; (void) events; (void) arg;
    job_t *job;
    while (read (fd, &job, sizeof job) == sizeof job)
        s_answer (job);
    return 0;
}

connector_resolver_t *
connector_resolver_new (mesh_loop_t *loop)
{
    connector_resolver_t *self = calloc (1, sizeof *self);
    assert (self);
    self->loop = loop;
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->wake, NULL);
    if (pipe2 (self->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        free (self);
        return NULL;
    }
    //  The worker may block on the pipe only if the reactor stops reading
    fcntl (self->pipe [1], F_SETFL, 0);
    mesh_loop_fd_add (loop, self->pipe [0], MESH_READ, s_on_pipe, self);
    return self;
}

void
connector_resolver_destroy (connector_resolver_t **self_p)
{
    assert (self_p);
    connector_resolver_t *self = *self_p;
    if (!self)
        return;
    if (self->started) {
        pthread_mutex_lock (&self->lock);
        self->stop = true;
        pthread_cond_signal (&self->wake);
        pthread_mutex_unlock (&self->lock);
        pthread_join (self->thread, NULL);
    }
    while (self->queue) {
        job_t *job = self->queue;
        self->queue = job->next;
        free (job);
    }
    mesh_loop_fd_remove (self->loop, self->pipe [0]);
    close (self->pipe [0]);
    close (self->pipe [1]);
    pthread_mutex_destroy (&self->lock);
    pthread_cond_destroy (&self->wake);
    free (self);
    *self_p = NULL;
}

void
connector_resolver_lookup (connector_resolver_t *self, const char *host, int port, connector_resolver_fn *fn, void *arg)
{
    job_t *job = calloc (1, sizeof *job);
    assert (job);
    snprintf (job->host, sizeof job->host, "%s", host);
    job->port = port;
    job->fn = fn;
    job->arg = arg;
    if (s_resolve (job, AI_NUMERICHOST) == 0) {
        s_answer (job);
        return;
    }
    pthread_mutex_lock (&self->lock);
    if (!self->started) {
        if (pthread_create (&self->thread, NULL, s_worker, self) != 0) {
            pthread_mutex_unlock (&self->lock);
            job->rc = EAI_SYSTEM;
            s_answer (job);
            return;
        }
        self->started = true;
    }
    job_t **tail = &self->queue;
    while (*tail)
        tail = &(*tail)->next;
    *tail = job;
    pthread_cond_signal (&self->wake);
    pthread_mutex_unlock (&self->lock);
}
