/*  mesh_faq_store: see mesh_faq_store.h.                                     */
#include "mesh_faq_store.h"
#include "mesh_log.h"
#include "mesh_redis.h"
#include "mesh_util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  KEYS: the hash; ARGV: id, entry ("" removes it), channel
static mesh_redis_script_t s_write_script = { .body =
    "if ARGV[2] == '' then redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end\n"
    "redis.call('PUBLISH', ARGV[3], ARGV[1])\n"
    "return 1\n"
};

struct mesh_faq_store_t {
    mesh_redis_t *redis;
    mesh_faq_t *entries;
    bool loading;
    bool load_again;
    bool stale;                 //  a read failed or could not be sent
    bool loaded;
    bool redis_was_ready;
    mesh_metric_t *count;
    mesh_metric_t *refused;
};

typedef struct {
    mesh_faq_store_t *store;
    mesh_faq_store_fn *fn;
    void *arg;
    char *id;
    char *entry;                //  NULL: a removal
} write_t;

static void s_load (mesh_faq_store_t *self);

static void
s_on_loaded (void *arg, redisReply *reply)
{
    mesh_faq_store_t *self = arg;
    self->loading = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
        self->stale = true;
        return;
    }
    mesh_faq_t *entries = mesh_faq_new ();
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        redisReply *id = reply->element [i], *value = reply->element [i + 1];
        if (id->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
            continue;
        char why [256];
        mesh_faq_entry_t *entry = mesh_faq_entry_parse (value->str, value->len, why, sizeof why);
        if (!entry || !mesh_memeq (id->str, id->len, mesh_faq_entry_id (entry))) {
            mesh_warn ("FAQ entry %.64s in Redis refused: %s", id->str,
                       entry ? "its id is not its field's" : why);
            if (self->refused)
                mesh_metric_inc (self->refused);
            mesh_faq_entry_destroy (&entry);
            continue;
        }
        mesh_faq_put (entries, entry);
    }
    mesh_faq_destroy (&self->entries);
    self->entries = entries;
    self->stale = false;
    self->loaded = true;
    if (self->count)
        mesh_metric_set (self->count, (double) mesh_faq_count (entries));
    mesh_debug ("FAQ: %zu entries", mesh_faq_count (entries));
    if (self->load_again) {
        self->load_again = false;
        s_load (self);
    }
}

static void
s_load (mesh_faq_store_t *self)
{
    if (!self->redis)
        return;
    if (self->loading) {
        self->load_again = true;
        return;
    }
    const char *argv [] = { "HGETALL", MESH_FAQ_STORE_HASH };
    if (mesh_redis_command (self->redis, s_on_loaded, self, 2, argv, NULL) == 0)
        self->loading = true;
    else
        self->stale = true;
}

static void
s_on_message (void *arg, const char *payload, size_t len)
{
    (void) payload;
    (void) len;
    s_load (arg);
}

static void
s_on_subscribed (void *arg)
{
    s_load (arg);
}

mesh_faq_store_t *
mesh_faq_store_new (struct mesh_redis_t *redis, mesh_metrics_t *metrics, const char *service)
{
    mesh_faq_store_t *self = calloc (1, sizeof *self);
    assert (self);
    self->redis = redis;
    self->entries = mesh_faq_new ();
    if (metrics) {
        char name [96];
        snprintf (name, sizeof name, "seekmesh_%s_faq_entries", service);
        self->count = mesh_metrics_gauge (metrics, name, "FAQ entries in force (read from Redis).", NULL);
        snprintf (name, sizeof name, "seekmesh_%s_faq_refused_total", service);
        self->refused = mesh_metrics_counter (metrics, name, "FAQ entries in Redis that did not parse.", NULL);
    }
    if (redis)
        mesh_redis_subscribe (redis, MESH_FAQ_STORE_CHANNEL, s_on_message, s_on_subscribed, self);
    return self;
}

void
mesh_faq_store_destroy (mesh_faq_store_t **self_p)
{
    assert (self_p);
    mesh_faq_store_t *self = *self_p;
    if (!self)
        return;
    mesh_faq_destroy (&self->entries);
    free (self);
    *self_p = NULL;
}

mesh_faq_t *
mesh_faq_store_entries (mesh_faq_store_t *self)
{
    return self->entries;
}

void
mesh_faq_store_tick (mesh_faq_store_t *self)
{
    if (!self->redis)
        return;
    bool ready = mesh_redis_ready (self->redis);
    if (ready && (self->stale || !self->redis_was_ready || !self->loaded))
        s_load (self);
    self->redis_was_ready = ready;
}

static void
s_on_written (void *arg, redisReply *reply)
{
    write_t *write = arg;
    mesh_faq_store_t *self = write->store;
    bool ok = reply && reply->type == REDIS_REPLY_INTEGER;
    if (ok) {
        //  Ours at once (a read right after the write sees it); every
        //  holder reads Redis again on the message
        mesh_faq_entry_t *entry = write->entry
            ? mesh_faq_entry_parse (write->entry, strlen (write->entry), NULL, 0) : NULL;
        if (entry)
            mesh_faq_put (self->entries, entry);
        else
            mesh_faq_remove (self->entries, write->id);
        if (self->count)
            mesh_metric_set (self->count, (double) mesh_faq_count (self->entries));
    }
    if (write->fn)
        write->fn (write->arg, ok);
    free (write->id);
    free (write->entry);
    free (write);
}

int
mesh_faq_store_write (mesh_faq_store_t *self, const char *id, const char *entry,
                      mesh_faq_store_fn *fn, void *arg)
{
    if (!self->redis || !mesh_redis_ready (self->redis))
        return -1;
    write_t *write = calloc (1, sizeof *write);
    assert (write);
    *write = (write_t) { self, fn, arg, strdup (id), entry ? strdup (entry) : NULL };
    const char *argv [] = { MESH_FAQ_STORE_HASH, id, entry ? entry : "", MESH_FAQ_STORE_CHANNEL };
    if (mesh_redis_eval (self->redis, &s_write_script, s_on_written, write, 1, 4, argv, NULL) < 0) {
        free (write->id);
        free (write->entry);
        free (write);
        return -1;
    }
    return 0;
}

void
mesh_faq_store_test (bool verbose)
{
    (void) verbose;
    //  Reads and writes through a real Redis are proven by the integration
    //  tests (test_cache.py, the admin API and seekmeshctl faq); without
    //  Redis: no entries, writes refused at once
    mesh_faq_store_t *store = mesh_faq_store_new (NULL, NULL, "test");
    assert (mesh_faq_count (mesh_faq_store_entries (store)) == 0);
    assert (mesh_faq_store_write (store, "x", "{}", NULL, NULL) == -1);
    mesh_faq_store_tick (store);
    mesh_faq_store_destroy (&store);
    mesh_faq_store_destroy (&store);
}
