/*  mesh_audit_sealer: the store's sealer thread (see mesh_audit_sealer.h).
    s_sealer_run and s_sealer_fill run on the sealer's thread; the
    exported functions on the writer's.                                     */
#include "mesh_audit_sealer.h"
#include "mesh_id.h"

#include <assert.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_RECORDS MESH_AUDIT_SEALER_CHUNK_RECORDS
#define CHUNK_BYTES   MESH_AUDIT_SEALER_CHUNK_BYTES

struct mesh_audit_sealer_t {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;                //  either side's change
    bool stop;
    //  The job: one append's records; busy until the sealer let go of them
    uint64_t job;
    const mesh_audit_record_t *records;
    size_t count;
    const mesh_audit_keyring_key_t *key;
    bool abort;
    bool busy;
    mesh_audit_sealer_chunk_t chunks [2];
    //  The sealer's own (the writer touches them only while it is idle)
    mesh_audit_seal_t *seal;
    unsigned char nonce [MESH_AUDIT_SEAL_NONCE_BYTES];
};

//  Fills chunk from record first on (sealer thread)
static void
s_sealer_fill (mesh_audit_sealer_t *self, mesh_audit_sealer_chunk_t *chunk, size_t first)
{
    chunk->first = first;
    chunk->count = 0;
    chunk->failed = false;
    size_t bytes = 0;
    while (first + chunk->count < self->count && chunk->count < CHUNK_RECORDS
    &&     (chunk->count == 0 || bytes < CHUNK_BYTES)) {
        const mesh_audit_record_t *record = &self->records [first + chunk->count];
        mesh_audit_sealer_slot_t *slot = &chunk->slots [chunk->count++];
        if (mesh_audit_seal_plain (record, &slot->body) < 0
        ||  record->prompt.size > MESH_AUDIT_MAX_TEXT || record->response.size > MESH_AUDIT_MAX_TEXT
        ||  (record->prompt.size && !record->prompt.data)
        ||  (record->response.size && !record->response.data)) {
            snprintf (chunk->why, sizeof chunk->why, "record %zu breaks the limits of "
                      "mesh_audit.h", first + chunk->count - 1);
            chunk->failed = true;
            return;
        }
        if (mesh_audit_seal_field (self->seal, self->key, self->nonce, &record->id, "prompt",
                                   &record->prompt, &slot->prompt) < 0
        ||  mesh_audit_seal_field (self->seal, self->key, self->nonce, &record->id, "response",
                                   &record->response, &slot->response) < 0) {
            snprintf (chunk->why, sizeof chunk->why, "AES-256-GCM failed");
            chunk->failed = true;
            return;
        }
        mesh_audit_seal_digest (self->seal, mesh_buf_head (&slot->body),
                                mesh_buf_size (&slot->body), mesh_buf_head (&slot->prompt),
                                mesh_buf_size (&slot->prompt), mesh_buf_head (&slot->response),
                                mesh_buf_size (&slot->response), slot->digest);
        bytes += record->prompt.size + record->response.size;
    }
}

static void *
s_sealer_run (void *arg)
{
    mesh_audit_sealer_t *self = arg;
    uint64_t seen = 0;
    pthread_mutex_lock (&self->lock);
    for (;;) {
        while (!self->stop && self->job == seen)
            pthread_cond_wait (&self->cond, &self->lock);
        if (self->stop)
            break;
        seen = self->job;
        size_t next = 0;
        for (int c = 0; next < self->count && !self->abort; c ^= 1) {
            mesh_audit_sealer_chunk_t *chunk = &self->chunks [c];
            while (chunk->full && !self->abort)
                pthread_cond_wait (&self->cond, &self->lock);
            if (self->abort)
                break;
            pthread_mutex_unlock (&self->lock);
            s_sealer_fill (self, chunk, next);
            pthread_mutex_lock (&self->lock);
            chunk->full = true;
            pthread_cond_broadcast (&self->cond);
            next += chunk->count;
            if (chunk->failed)
                break;
        }
        self->busy = false;
        pthread_cond_broadcast (&self->cond);
    }
    pthread_mutex_unlock (&self->lock);
    return NULL;
}

mesh_audit_sealer_t *
mesh_audit_sealer_new (void)
{
    mesh_audit_sealer_t *self = calloc (1, sizeof *self);
    assert (self);
    pthread_mutex_init (&self->lock, NULL);
    pthread_cond_init (&self->cond, NULL);
    self->seal = mesh_audit_seal_new ();
    mesh_random (self->nonce, sizeof self->nonce);
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < CHUNK_RECORDS; i++) {
            mesh_buf_init (&self->chunks [c].slots [i].body);
            mesh_buf_init (&self->chunks [c].slots [i].prompt);
            mesh_buf_init (&self->chunks [c].slots [i].response);
        }
    int rc = pthread_create (&self->thread, NULL, s_sealer_run, self);
    assert (rc == 0);
    return self;
}

void
mesh_audit_sealer_destroy (mesh_audit_sealer_t **self_p)
{
    assert (self_p);
    mesh_audit_sealer_t *self = *self_p;
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    self->stop = true;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
    pthread_join (self->thread, NULL);
    pthread_cond_destroy (&self->cond);
    pthread_mutex_destroy (&self->lock);
    mesh_audit_seal_destroy (&self->seal);
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < CHUNK_RECORDS; i++) {
            mesh_audit_sealer_slot_t *slot = &self->chunks [c].slots [i];
            if (slot->prompt.data)
                OPENSSL_cleanse (slot->prompt.data, slot->prompt.cap);
            mesh_buf_free (&slot->body);
            mesh_buf_free (&slot->prompt);
            mesh_buf_free (&slot->response);
        }
    free (self);
    *self_p = NULL;
}

void
mesh_audit_sealer_begin (mesh_audit_sealer_t *self, const mesh_audit_record_t *records,
                         size_t count, const mesh_audit_keyring_key_t *key)
{
    pthread_mutex_lock (&self->lock);
    self->records = records;
    self->count = count;
    self->key = key;
    self->abort = false;
    self->busy = true;
    self->chunks [0].full = self->chunks [1].full = false;
    self->job++;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
}

mesh_audit_sealer_chunk_t *
mesh_audit_sealer_take (mesh_audit_sealer_t *self, int c)
{
    mesh_audit_sealer_chunk_t *chunk = &self->chunks [c];
    pthread_mutex_lock (&self->lock);
    while (!chunk->full)
        pthread_cond_wait (&self->cond, &self->lock);
    pthread_mutex_unlock (&self->lock);
    return chunk;
}

void
mesh_audit_sealer_give (mesh_audit_sealer_t *self, mesh_audit_sealer_chunk_t *chunk)
{
    //  Keep one large record from pinning its size in memory
    for (size_t i = 0; i < chunk->count; i++) {
        mesh_buf_trim (&chunk->slots [i].prompt, 1 << 20);
        mesh_buf_trim (&chunk->slots [i].response, 1 << 20);
    }
    pthread_mutex_lock (&self->lock);
    chunk->full = false;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->lock);
}

void
mesh_audit_sealer_end (mesh_audit_sealer_t *self, bool abort)
{
    pthread_mutex_lock (&self->lock);
    self->abort |= abort;
    pthread_cond_broadcast (&self->cond);
    while (self->busy)
        pthread_cond_wait (&self->cond, &self->lock);
    pthread_mutex_unlock (&self->lock);
}

//  Selftest -----------------------------------------------------------------------

#include "mesh_audit_sample.h"
#include "mesh_util.h"

//  Takes every chunk of a job of count records as the writer does, checks
//  each sealed record against one sealed here, and returns how many
//  chunks there were; a failed chunk ends it
static size_t
s_test_job (mesh_audit_sealer_t *self, const mesh_audit_record_t *records, size_t count,
            const mesh_audit_keyring_t *keys, mesh_audit_sealer_chunk_t *failed)
{
    mesh_audit_seal_t *seal = mesh_audit_seal_new ();
    mesh_buf_t body, opened;
    mesh_buf_init (&body);
    mesh_buf_init (&opened);
    mesh_audit_sealer_begin (self, records, count, mesh_audit_keyring_active_key (keys));
    size_t chunks = 0;
    for (size_t done = 0, c = 0; done < count; c ^= 1) {
        mesh_audit_sealer_chunk_t *chunk = mesh_audit_sealer_take (self, (int) c);
        assert (chunk->first == done && chunk->count >= 1 && chunk->count <= CHUNK_RECORDS);
        chunks++;
        for (size_t i = 0; i < chunk->count - (chunk->failed ? 1 : 0); i++) {
            const mesh_audit_record_t *record = &records [chunk->first + i];
            mesh_audit_sealer_slot_t *slot = &chunk->slots [i];
            assert (mesh_audit_seal_plain (record, &body) == 0);
            assert (body.len == slot->body.len
                    && memcmp (body.data, slot->body.data, body.len) == 0);
            assert (!mesh_audit_seal_open (seal, keys, &record->id, "prompt", slot->prompt.data,
                                           slot->prompt.len, &opened));
            assert (opened.len == record->prompt.size
                    && memcmp (opened.data, record->prompt.data, opened.len) == 0);
            assert (!mesh_audit_seal_open (seal, keys, &record->id, "response",
                                           slot->response.data, slot->response.len, &opened));
            assert (opened.len == record->response.size);
            unsigned char digest [MESH_AUDIT_SEAL_CHAIN_BYTES];
            mesh_audit_seal_digest (seal, body.data, body.len, slot->prompt.data,
                                    slot->prompt.len, slot->response.data, slot->response.len,
                                    digest);
            assert (memcmp (digest, slot->digest, sizeof digest) == 0);
        }
        if (chunk->failed) {
            *failed = *chunk;
            break;
        }
        done += chunk->count;
        mesh_audit_sealer_give (self, chunk);
    }
    mesh_audit_sealer_end (self, failed->failed);
    mesh_buf_free (&body);
    mesh_buf_free (&opened);
    mesh_audit_seal_destroy (&seal);
    return chunks;
}

void
mesh_audit_sealer_test (bool verbose)
{
    (void) verbose;
    char why [256];
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (NULL, MESH_AUDIT_SAMPLE_KEY1, why,
                                                          sizeof why);
    assert (keys);
    mesh_audit_sample_t *data = calloc (1, sizeof *data);
    assert (data);
    for (size_t i = 0; i < 300; i++)
        mesh_audit_sample_record (data, i, 1772323200000LL + (int64_t) i);
    mesh_audit_sealer_t *sealer = mesh_audit_sealer_new ();
    //  300 records: five chunks of 64 or fewer, in order
    mesh_audit_sealer_chunk_t *failed = calloc (1, sizeof *failed);
    assert (failed);
    assert (s_test_job (sealer, data->records, 300, keys, failed) == 5 && !failed->failed);
    assert (s_test_job (sealer, data->records, 1, keys, failed) == 1 && !failed->failed);

    //  A record that breaks the codec's limits ends the job there
    data->records [70].tenant = (mesh_bytes_t) { "bad\xff", 4 };
    assert (s_test_job (sealer, data->records, 300, keys, failed) == 2 && failed->failed);
    assert (failed->first + failed->count - 1 == 70 && strstr (failed->why, "record 70"));
    data->records [70].tenant = (mesh_bytes_t) { "t0", 2 };

    //  Large records: a chunk stops at CHUNK_BYTES of text
    size_t large = 3u << 20;
    char *big = malloc (large);
    assert (big);
    memset (big, 'z', large);
    for (size_t i = 0; i < 3; i++)
        data->records [i].prompt = (mesh_bytes_t) { big, large };
    memset (failed, 0, sizeof *failed);
    assert (s_test_job (sealer, data->records, 3, keys, failed) == 2 && !failed->failed);

    //  Abandoned after its first chunk: the sealer lets go when told to
    mesh_audit_sealer_begin (sealer, data->records, 300, mesh_audit_keyring_active_key (keys));
    mesh_audit_sealer_chunk_t *chunk = mesh_audit_sealer_take (sealer, 0);
    assert (chunk->first == 0);
    mesh_audit_sealer_end (sealer, true);
    //  and takes the next job as usual
    assert (s_test_job (sealer, data->records + 3, 100, keys, failed) == 2 && !failed->failed);

    mesh_audit_sealer_destroy (&sealer);
    mesh_audit_sealer_destroy (&sealer);
    assert (sealer == NULL);
    mesh_audit_keyring_destroy (&keys);
    free (big);
    free (failed);
    free (data);
}
