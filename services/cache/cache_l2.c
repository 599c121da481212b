/*  cache_l2: kept answers in Redis, so a restarted cache process (and the
    other replicas of a later day) still hits.

    Each answer is one string, seekmesh:cache:<key>, set with the answer's
    TTL (PX), holding
        "SMP1" + the entry's encoding                       (plain), or
        "SMS1" + key id length (1 byte) + key id + 12-byte nonce
               + AES-256-GCM ciphertext of the encoding + 16-byte tag
    (sealed), when cache.key_file or the variable cache.keys_env gives a key
    ring (the audit's format: lines "<id> <64 hex>", the last one seals,
    every one opens).  The Redis key is the associated data, so a sealed
    answer moved to another key does not open.  With a key ring, plain
    values are not read: whoever can write Redis but has no key cannot
    plant answers.

    Redis is asked with the cache's own timeouts (cache.redis.*), shorter
    than the router's wait for the cache; when it is away, the cache works
    from L1 alone.  Reactor thread only.                                    */
#include "cache.h"

#include "mesh_audit_keyring.h"
#include "mesh_id.h"
#include "mesh_log.h"
#include "mesh_redis.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLAIN_MAGIC   "SMP1"
#define SEALED_MAGIC  "SMS1"
#define NONCE_BYTES   12
#define TAG_BYTES     16
#define KEY_PREFIX    "seekmesh:cache:"

struct cache_l2_t {
    mesh_redis_t *redis;
    mesh_audit_keyring_t *keys;         //  NULL: plain
    size_t piece_bytes;
    mesh_metric_t *failures;
    mesh_metric_t *unreadable;
};

typedef struct {
    cache_l2_t *l2;
    char key [65];
    cache_l2_fn *fn;
    void *arg;
} pending_t;

//  Sealing ----------------------------------------------------------------------

//  AES-256-GCM of plain under key, with aad; appends nonce, ciphertext, tag
static int
s_seal (const mesh_audit_keyring_key_t *key, const char *aad, const char *plain, size_t len,
        mesh_buf_t *out)
{
    unsigned char nonce [NONCE_BYTES];
    mesh_random (nonce, sizeof nonce);
    size_t id_len = strlen (key->id);
    mesh_buf_append (out, SEALED_MAGIC, 4);
    unsigned char id_len_byte = (unsigned char) id_len;
    mesh_buf_append (out, &id_len_byte, 1);
    mesh_buf_append (out, key->id, id_len);
    mesh_buf_append (out, nonce, sizeof nonce);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new ();
    int n = 0, rc = -1;
    unsigned char *at = (unsigned char *) mesh_buf_reserve (out, len + TAG_BYTES + 16);
    if (ctx && EVP_EncryptInit_ex (ctx, EVP_aes_256_gcm (), NULL, NULL, NULL) == 1
    &&  EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) == 1
    &&  EVP_EncryptInit_ex (ctx, NULL, NULL, key->key, nonce) == 1
    &&  EVP_EncryptUpdate (ctx, NULL, &n, (const unsigned char *) aad, (int) strlen (aad)) == 1
    &&  EVP_EncryptUpdate (ctx, at, &n, (const unsigned char *) plain, (int) len) == 1) {
        int tail = 0;
        if (EVP_EncryptFinal_ex (ctx, at + n, &tail) == 1
        &&  EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, at + n + tail) == 1) {
            mesh_buf_commit (out, (size_t) (n + tail) + TAG_BYTES);
            rc = 0;
        }
    }
    EVP_CIPHER_CTX_free (ctx);
    return rc;
}

//  Opens a sealed value into out.  -1 with a reason.
static int
s_open (const mesh_audit_keyring_t *keys, const char *aad, const char *data, size_t len,
        mesh_buf_t *out, char *why, size_t why_size)
{
    if (len < 5 || memcmp (data, SEALED_MAGIC, 4) != 0)
        return mesh_fail (why, why_size, "not sealed");
    size_t id_len = (unsigned char) data [4];
    if (len < 5 + id_len + NONCE_BYTES + TAG_BYTES)
        return mesh_fail (why, why_size, "too short");
    const mesh_audit_keyring_key_t *key = mesh_audit_keyring_find (keys, data + 5, id_len);
    if (!key)
        return mesh_fail (why, why_size, "sealed with a key not in the ring");
    const unsigned char *nonce = (const unsigned char *) data + 5 + id_len;
    const unsigned char *cipher = nonce + NONCE_BYTES;
    size_t cipher_len = len - 5 - id_len - NONCE_BYTES - TAG_BYTES;
    unsigned char tag [TAG_BYTES];
    memcpy (tag, cipher + cipher_len, TAG_BYTES);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new ();
    int n = 0, rc = -1;
    unsigned char *at = (unsigned char *) mesh_buf_reserve (out, cipher_len + 16);
    if (ctx && EVP_DecryptInit_ex (ctx, EVP_aes_256_gcm (), NULL, NULL, NULL) == 1
    &&  EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) == 1
    &&  EVP_DecryptInit_ex (ctx, NULL, NULL, key->key, nonce) == 1
    &&  EVP_DecryptUpdate (ctx, NULL, &n, (const unsigned char *) aad, (int) strlen (aad)) == 1
    &&  EVP_DecryptUpdate (ctx, at, &n, cipher, (int) cipher_len) == 1
    &&  EVP_CIPHER_CTX_ctrl (ctx, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) == 1) {
        int tail = 0;
        if (EVP_DecryptFinal_ex (ctx, at + n, &tail) == 1) {
            mesh_buf_commit (out, (size_t) (n + tail));
            rc = 0;
        }
    }
    EVP_CIPHER_CTX_free (ctx);
    return rc == 0 ? 0 : mesh_fail (why, why_size, "does not open (tampered, or another key)");
}

//  The entry a Redis value holds, or NULL with a reason
static cache_entry_t *
s_read (cache_l2_t *self, const char *key, const char *data, size_t len, char *why, size_t why_size)
{
    char redis_key [96];
    snprintf (redis_key, sizeof redis_key, KEY_PREFIX "%s", key);
    mesh_buf_t plain;
    mesh_buf_init (&plain);
    cache_entry_t *entry = NULL;
    if (self->keys) {
        if (s_open (self->keys, redis_key, data, len, &plain, why, why_size) == 0)
            entry = cache_entry_decode (key, mesh_buf_head (&plain), mesh_buf_size (&plain),
                                        self->piece_bytes, why, why_size);
    }
    else
    if (len >= 4 && memcmp (data, PLAIN_MAGIC, 4) == 0)
        entry = cache_entry_decode (key, data + 4, len - 4, self->piece_bytes, why, why_size);
    else
        mesh_fail (why, why_size, "sealed, and no key ring is configured");
    mesh_buf_free (&plain);
    return entry;
}

//  The API ---------------------------------------------------------------------

cache_l2_t *
cache_l2_new (mesh_config_t *config, mesh_loop_t *loop, mesh_metrics_t *metrics, char *why, size_t why_size)
{
    cache_l2_t *self = calloc (1, sizeof *self);
    assert (self);
    self->piece_bytes = (size_t) mesh_setting_int (config, "cache.hit_piece_bytes");
    const char *key_file = mesh_setting_str (config, "cache.key_file");
    const char *keys_env = mesh_setting_str (config, "cache.keys_env");
    const char *env_text = *keys_env ? getenv (keys_env) : NULL;
    if (env_text && !*env_text)
        env_text = NULL;
    if (*key_file || env_text) {
        char reason [256];
        self->keys = mesh_audit_keyring_load (*key_file ? key_file : NULL, env_text, reason, sizeof reason);
        if (!self->keys) {
            snprintf (why, why_size, "cache keys: %s", reason);
            cache_l2_destroy (&self);
            return NULL;
        }
        mesh_info ("answers in Redis sealed with key %s", mesh_audit_keyring_active (self->keys));
    }
    else
        mesh_info ("answers in Redis kept plain (no cache.key_file or $%s)", keys_env);
    //  The routers' Redis, with their credentials (redis.username, the password file)
    self->redis = mesh_redis_open_configured (loop, config, mesh_setting_str (config, "redis.url"),
                                              mesh_setting_int (config, "cache.redis.connect_timeout_ms"),
                                              mesh_setting_int (config, "cache.redis.command_timeout_ms"),
                                              metrics, why, why_size);
    if (!self->redis) {
        cache_l2_destroy (&self);
        return NULL;
    }
    self->failures = mesh_metrics_counter (metrics, "seekmesh_cache_l2_failures_total",
        "Redis reads and writes of answers that failed or timed out.", NULL);
    self->unreadable = mesh_metrics_counter (metrics, "seekmesh_cache_l2_unreadable_total",
        "Answers in Redis that did not open or decode (another key, tampered, plain where sealed).", NULL);
    return self;
}

void
cache_l2_destroy (cache_l2_t **self_p)
{
    assert (self_p);
    cache_l2_t *self = *self_p;
    if (!self)
        return;
    mesh_redis_destroy (&self->redis);
    mesh_audit_keyring_destroy (&self->keys);
    free (self);
    *self_p = NULL;
}

bool
cache_l2_ready (cache_l2_t *self)
{
    return self->redis && mesh_redis_ready (self->redis);
}

bool
cache_l2_sealed (cache_l2_t *self)
{
    return self->keys != NULL;
}

struct mesh_redis_t *
cache_l2_redis (cache_l2_t *self)
{
    return self->redis;
}

static void
s_on_get (void *arg, redisReply *reply)
{
    pending_t *pending = arg;
    cache_l2_t *self = pending->l2;
    cache_entry_t *entry = NULL;
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        mesh_metric_inc (self->failures);
    else
    if (reply->type == REDIS_REPLY_STRING) {
        char why [256];
        entry = s_read (self, pending->key, reply->str, reply->len, why, sizeof why);
        if (!entry) {
            mesh_metric_inc (self->unreadable);
            mesh_warn ("answer %.16s… in Redis unreadable: %s", pending->key, why);
        }
        else
        if (entry->expires_ms <= mesh_wall_ms ())
            cache_entry_destroy (&entry);
    }
    pending->fn (pending->arg, entry);
    free (pending);
}

int
cache_l2_get (cache_l2_t *self, const char *key, cache_l2_fn *fn, void *arg)
{
    pending_t *pending = calloc (1, sizeof *pending);
    assert (pending);
    pending->l2 = self;
    snprintf (pending->key, sizeof pending->key, "%s", key);
    pending->fn = fn;
    pending->arg = arg;
    char redis_key [96];
    snprintf (redis_key, sizeof redis_key, KEY_PREFIX "%s", key);
    const char *argv [] = { "GET", redis_key };
    if (mesh_redis_command (self->redis, s_on_get, pending, 2, argv, NULL) < 0) {
        free (pending);
        return -1;
    }
    return 0;
}

static void
s_on_set (void *arg, redisReply *reply)
{
    cache_l2_t *self = arg;
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        mesh_metric_inc (self->failures);
}

void
cache_l2_put (cache_l2_t *self, const cache_entry_t *entry)
{
    int64_t ttl_ms = entry->expires_ms - mesh_wall_ms ();
    if (ttl_ms <= 0 || !cache_l2_ready (self))
        return;
    char redis_key [96];
    snprintf (redis_key, sizeof redis_key, KEY_PREFIX "%s", entry->key);
    mesh_buf_t encoded, value;
    mesh_buf_init (&encoded);
    mesh_buf_init (&value);
    cache_entry_encode (entry, &encoded);
    if (self->keys) {
        if (s_seal (mesh_audit_keyring_active_key (self->keys), redis_key, mesh_buf_head (&encoded),
                    mesh_buf_size (&encoded), &value) < 0) {
            mesh_error ("cannot seal an answer for Redis");
            goto done;
        }
    }
    else {
        mesh_buf_append (&value, PLAIN_MAGIC, 4);
        mesh_buf_append (&value, mesh_buf_head (&encoded), mesh_buf_size (&encoded));
    }
    char ttl [24];
    snprintf (ttl, sizeof ttl, "%lld", (long long) ttl_ms);
    const char *argv [] = { "SET", redis_key, mesh_buf_head (&value), "PX", ttl };
    size_t lens [] = { 3, strlen (redis_key), mesh_buf_size (&value), 2, strlen (ttl) };
    if (mesh_redis_command (self->redis, s_on_set, self, 5, argv, lens) < 0)
        mesh_metric_inc (self->failures);
done:
    mesh_buf_free (&encoded);
    mesh_buf_free (&value);
}

//  Selftest --------------------------------------------------------------------

void
cache_l2_test (bool verbose)
{
    (void) verbose;
    char why [256];
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (NULL,
        "old 0000000000000000000000000000000000000000000000000000000000000001;"
        "new 00000000000000000000000000000000000000000000000000000000000000ff", why, sizeof why);
    assert (keys);
    cache_l2_t l2 = { .keys = keys, .piece_bytes = 64 };
    const char *body = "{\"id\":\"x\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"m\","
                       "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},"
                       "\"finish_reason\":\"stop\"}]}";
    cache_entry_t *entry = cache_entry_new ("abc", "m", body, strlen (body), 1, 1000000, 64, why, sizeof why);
    assert (entry);
    mesh_buf_t encoded, sealed;
    mesh_buf_init (&encoded);
    mesh_buf_init (&sealed);
    cache_entry_encode (entry, &encoded);
    assert (s_seal (mesh_audit_keyring_active_key (keys), KEY_PREFIX "abc", mesh_buf_head (&encoded),
                    mesh_buf_size (&encoded), &sealed) == 0);
    assert (!memmem (mesh_buf_head (&sealed), mesh_buf_size (&sealed), "hi", 2));
    assert (memcmp (mesh_buf_head (&sealed) + 5, "new", 3) == 0);
    cache_entry_t *back = s_read (&l2, "abc", mesh_buf_head (&sealed), mesh_buf_size (&sealed), why, sizeof why);
    assert (back && back->body_len == entry->body_len);
    cache_entry_destroy (&back);
    //  Under another key, flipped, or plain where sealed: not read
    assert (!s_read (&l2, "abd", mesh_buf_head (&sealed), mesh_buf_size (&sealed), why, sizeof why));
    mesh_buf_head (&sealed) [mesh_buf_size (&sealed) - 20] ^= 1;
    assert (!s_read (&l2, "abc", mesh_buf_head (&sealed), mesh_buf_size (&sealed), why, sizeof why));
    assert (strstr (why, "does not open"));
    mesh_buf_t plain;
    mesh_buf_init (&plain);
    mesh_buf_append (&plain, PLAIN_MAGIC, 4);
    mesh_buf_append (&plain, mesh_buf_head (&encoded), mesh_buf_size (&encoded));
    assert (!s_read (&l2, "abc", mesh_buf_head (&plain), mesh_buf_size (&plain), why, sizeof why));
    //  Without keys: plain is read, sealed is not
    l2.keys = NULL;
    back = s_read (&l2, "abc", mesh_buf_head (&plain), mesh_buf_size (&plain), why, sizeof why);
    assert (back);
    cache_entry_destroy (&back);
    assert (!s_read (&l2, "abc", mesh_buf_head (&sealed), mesh_buf_size (&sealed), why, sizeof why));
    mesh_buf_free (&plain);
    mesh_buf_free (&encoded);
    mesh_buf_free (&sealed);
    cache_entry_destroy (&entry);
    mesh_audit_keyring_destroy (&keys);
}
