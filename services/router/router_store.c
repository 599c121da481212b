/*  router_store: the sessions' Redis keys, scripts, sealing and events.  */
#include "router_store.h"

#include "mesh_audit_keyring.h"
#include "mesh_audit_seal.h"
#include "mesh_id.h"
#include "mesh_log.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX      "seekmesh:sessions"
#define CHANNEL    "seekmesh:sessions"
#define LISTENERS  4

//  KEYS: hash, lock, says; ARGV: request, lock ms, tenant, key id
static mesh_redis_script_t s_begin_script = { .body =
    "local owner = redis.call('HMGET', KEYS[1], 'tenant', 'key_id')\n"
    "if owner[1] and (owner[1] ~= ARGV[3] or owner[2] ~= ARGV[4]) then return {-1} end\n"
    "local holder = redis.call('GET', KEYS[2])\n"
    "if holder and holder ~= ARGV[1] then return {0} end\n"
    "redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])\n"
    "local f = redis.call('HMGET', KEYS[1], 'history', 'takeover', 'turns')\n"
    "return {1, f[1] or '', f[2] or '', f[3] or '0', redis.call('LLEN', KEYS[3])}\n"
};
//  KEYS: hash, lock, index; ARGV: request, history, turns, now, ttl,
//  tenant, key id, session
static mesh_redis_script_t s_commit_script = { .body =
    "if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'tenant', ARGV[6], 'key_id', ARGV[7], 'history', ARGV[2],\n"
    "           'turns', ARGV[3], 'updated_ms', ARGV[4])\n"
    "redis.call('HSETNX', KEYS[1], 'created_ms', ARGV[4])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "redis.call('ZADD', KEYS[3], ARGV[4], ARGV[8])\n"
    "redis.call('DEL', KEYS[2])\n"
    "return 1\n"
};
//  KEYS: lock; ARGV: request
static mesh_redis_script_t s_unlock_script = { .body =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n"
};
//  KEYS: locks; ARGV: ms, then each lock's request
static mesh_redis_script_t s_renew_script = { .body =
    "for i, key in ipairs (KEYS) do\n"
    "    if redis.call('GET', key) == ARGV[i + 1] then redis.call('PEXPIRE', key, ARGV[1]) end\n"
    "end\n"
    "return 1\n"
};
//  KEYS: hash
static mesh_redis_script_t s_get_script = { .body =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
    "local f = redis.call('HMGET', KEYS[1], 'tenant', 'key_id', 'history', 'takeover', 'turns',\n"
    "                     'created_ms', 'updated_ms')\n"
    "for i = 1, 7 do f[i] = f[i] or '' end\n"
    "return f\n"
};
//  KEYS: hash, lock, says, index; ARGV: tenant, key id, session
static mesh_redis_script_t s_delete_script = { .body =
    "local owner = redis.call('HMGET', KEYS[1], 'tenant', 'key_id')\n"
    "if not owner[1] then return 0 end\n"
    "if owner[1] ~= ARGV[1] or owner[2] ~= ARGV[2] then return -1 end\n"
    "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])\n"
    "redis.call('ZREM', KEYS[4], ARGV[3])\n"
    "return 1\n"
};
//  KEYS: hash; ARGV: operator ("" releases), now
static mesh_redis_script_t s_takeover_script = { .body =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
    "local f = redis.call('HMGET', KEYS[1], 'tenant', 'key_id', 'takeover')\n"
    "if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'takeover', 'takeover_ms')\n"
    "else redis.call('HSET', KEYS[1], 'takeover', ARGV[1], 'takeover_ms', ARGV[2]) end\n"
    "return {f[1] or '', f[2] or '', f[3] or ''}\n"
};
//  KEYS: hash, says; ARGV: sealed text, ttl
static mesh_redis_script_t s_say_script = { .body =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end\n"
    "local f = redis.call('HMGET', KEYS[1], 'tenant', 'key_id', 'takeover')\n"
    "if not f[3] or f[3] == '' then return {f[1] or '', f[2] or '', ''} end\n"
    "redis.call('RPUSH', KEYS[2], ARGV[1])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
    "return {f[1] or '', f[2] or '', f[3] or ''}\n"
};
//  KEYS: says
static mesh_redis_script_t s_take_script = { .body =
    "local says = redis.call('LRANGE', KEYS[1], 0, -1)\n"
    "redis.call('DEL', KEYS[1])\n"
    "return says\n"
};
//  KEYS: index; ARGV: the oldest activity kept (ms), limit
static mesh_redis_script_t s_list_script = { .body =
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])\n"
    "local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])\n"
    "local out = {}\n"
    "for i = 1, #ids, 2 do\n"
    "    local f = redis.call('HMGET', 'seekmesh:s:{' .. ids[i] .. '}', 'tenant', 'turns', 'takeover')\n"
    "    if f[1] then\n"
    "        for _, v in ipairs ({ids[i], ids[i + 1], f[1], f[2] or '0', f[3] or ''}) do out[#out + 1] = v end\n"
    "    end\n"
    "end\n"
    "return out\n"
};

typedef struct {
    router_store_event_fn *fn;
    void *arg;
} listener_t;

struct router_store_t {
    mesh_loop_t *loop;
    mesh_redis_t *redis;
    mesh_audit_keyring_t *keys;
    mesh_audit_seal_t *seal;
    unsigned char nonce [MESH_AUDIT_SEAL_NONCE_BYTES];
    listener_t listeners [LISTENERS];
    size_t listener_count;
    bool subscribed;
};

//  Keys ----------------------------------------------------------------------------

static int
s_mkdirs (const char *path, char *why, size_t why_size)
{
    char partial [PATH_MAX];
    if (snprintf (partial, sizeof partial, "%s", path) >= (int) sizeof partial)
        return mesh_fail (why, why_size, "path too long");
    for (char *p = partial + 1; ; p++) {
        if (*p != '/' && *p != 0)
            continue;
        char saved = *p;
        *p = 0;
        if (mkdir (partial, 0700) < 0 && errno != EEXIST)
            return mesh_fail (why, why_size, "cannot make %s: %s", partial, strerror (errno));
        *p = saved;
        if (!saved)
            return 0;
    }
}

//  The key ring; a development key made in the default file when there is
//  none anywhere (one router at a time: they share the file)
static mesh_audit_keyring_t *
s_load_keys (mesh_config_t *config, char *why, size_t why_size)
{
    const char *file = mesh_setting_str (config, "sessions.key_file");
    const char *env_name = mesh_setting_str (config, "sessions.keys_env");
    const char *env_text = *env_name && getenv (env_name) && *getenv (env_name) ? getenv (env_name) : NULL;
    char path [PATH_MAX + 16];
    if (*file)
        snprintf (path, sizeof path, "%s", file);
    else {
        const char *run_dir = getenv ("SEEKMESH_MESH_RUN_DIR");
        char dir [PATH_MAX];
        snprintf (dir, sizeof dir, "%s/sessions", run_dir && *run_dir ? run_dir : "run");
        if (!env_text && s_mkdirs (dir, why, why_size) < 0)
            return NULL;
        snprintf (path, sizeof path, "%s/keys", dir);
    }
    struct stat st;
    bool have_file = stat (path, &st) == 0 && st.st_size > 0;
    if (!have_file && !env_text) {
        if (*file) {
            mesh_fail (why, why_size, "config %s: sessions.key_file: %s holds no key and $%s is not set",
                       mesh_config_file (config), path, env_name);
            return NULL;
        }
        char lock [PATH_MAX + 32];
        snprintf (lock, sizeof lock, "%s.lock", path);
        int fd = open (lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0 || flock (fd, LOCK_EX) < 0) {
            mesh_fail (why, why_size, "cannot lock %s: %s", lock, strerror (errno));
            if (fd >= 0)
                close (fd);
            return NULL;
        }
        //  Another router may have made it while this one waited
        if (!(stat (path, &st) == 0 && st.st_size > 0)) {
            char id [64], reason [256];
            if (mesh_audit_keyring_rotate (path, id, sizeof id, reason, sizeof reason) < 0) {
                mesh_fail (why, why_size, "cannot make a session key in %s: %s", path, reason);
                close (fd);
                return NULL;
            }
            mesh_warn ("no session key in %s or $%s: made development key %s there; every router "
                       "needs it to read the sessions", path, env_name, id);
        }
        close (fd);
        have_file = true;
    }
    char reason [256];
    mesh_audit_keyring_t *keys = mesh_audit_keyring_load (have_file ? path : NULL, env_text,
                                                          reason, sizeof reason);
    if (!keys)
        mesh_fail (why, why_size, "session keys (%s%s%s): %s", have_file ? path : "",
                   env_text ? " $" : "", env_text ? env_name : "", reason);
    return keys;
}

router_store_t *
router_store_new (mesh_config_t *config, mesh_loop_t *loop, mesh_redis_t *redis, char *why,
                  size_t why_size)
{
    router_store_t *self = calloc (1, sizeof *self);
    assert (self);
    self->loop = loop;
    self->redis = redis;
    self->seal = mesh_audit_seal_new ();
    //  Nonces: a counter from a random start (mesh_audit_seal.h)
    RAND_bytes (self->nonce, sizeof self->nonce);
    self->keys = s_load_keys (config, why, why_size);
    if (self->keys)
        mesh_info ("sessions sealed with key %s", mesh_audit_keyring_active (self->keys));
    else {
        //  The router serves all the rest; sessions wait for their key
        mesh_error ("sessions off (their requests get 503): %s", why);
        *why = 0;
    }
    return self;
}

void
router_store_destroy (router_store_t **self_p)
{
    assert (self_p);
    router_store_t *self = *self_p;
    if (!self)
        return;
    mesh_audit_keyring_destroy (&self->keys);
    mesh_audit_seal_destroy (&self->seal);
    free (self);
    *self_p = NULL;
}

bool
router_store_ready (router_store_t *self)
{
    return self->keys && self->redis && mesh_redis_ready (self->redis);
}

bool
router_store_valid_id (const char *id)
{
    size_t len = strlen (id);
    if (len == 0 || len > ROUTER_SESSION_ID_MAX)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
        ||    strchr ("._:-", *p)))
            return false;
    return true;
}

//  Sealing --------------------------------------------------------------------------

//  The 26 characters standing for the session in a sealed field's AAD: a
//  digest in the request ids' alphabet (mesh_audit_seal binds to one)
static void
s_seal_id (const char *session, char out [MESH_ID_LEN + 1])
{
    static const char alphabet [] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    unsigned char digest [32];
    EVP_MD_CTX *md = EVP_MD_CTX_new ();
    EVP_DigestInit_ex (md, EVP_sha256 (), NULL);
    EVP_DigestUpdate (md, "seekmesh-session", 17);
    EVP_DigestUpdate (md, session, strlen (session));
    EVP_DigestFinal_ex (md, digest, NULL);
    EVP_MD_CTX_free (md);
    out [0] = alphabet [digest [0] & 7];
    for (int i = 1; i < MESH_ID_LEN; i++)
        out [i] = alphabet [digest [i] & 31];
    out [MESH_ID_LEN] = 0;
}

int
router_store_seal (router_store_t *self, const char *session, const char *field, const char *plain,
                   size_t len, mesh_buf_t *out)
{
    if (!self->keys)
        return -1;
    char id [MESH_ID_LEN + 1];
    s_seal_id (session, id);
    mesh_bytes_t id_bytes = { id, MESH_ID_LEN }, text = { plain, len };
    return mesh_audit_seal_field (self->seal, mesh_audit_keyring_active_key (self->keys), self->nonce,
                                  &id_bytes, field, &text, out);
}

const char *
router_store_open (router_store_t *self, const char *session, const char *field, const void *blob,
                   size_t size, mesh_buf_t *out)
{
    if (!self->keys)
        return "sessions are off: no key ring";
    char id [MESH_ID_LEN + 1];
    s_seal_id (session, id);
    mesh_bytes_t id_bytes = { id, MESH_ID_LEN };
    return mesh_audit_seal_open (self->seal, self->keys, &id_bytes, field, blob, size, out);
}

//  Scripts --------------------------------------------------------------------------

static void
s_key (char *out, size_t size, const char *session, const char *suffix)
{
    snprintf (out, size, "seekmesh:s:{%s}%s", session, suffix);
}

static int
s_eval (router_store_t *self, mesh_redis_script_t *script, mesh_redis_fn *fn, void *arg,
        int nkeys, int argc, const char **argv, const size_t *lens)
{
    if (!router_store_ready (self))
        return -1;
    return mesh_redis_eval (self->redis, script, fn, arg, nkeys, argc, argv, lens);
}

int
router_store_begin (router_store_t *self, const char *session, const char *request, const char *tenant,
                    const char *key_id, int64_t lock_ms, mesh_redis_fn *fn, void *arg)
{
    char hash [160], lock [170], says [170], ms [24];
    s_key (hash, sizeof hash, session, "");
    s_key (lock, sizeof lock, session, ":lock");
    s_key (says, sizeof says, session, ":say");
    snprintf (ms, sizeof ms, "%lld", (long long) lock_ms);
    const char *argv [] = { hash, lock, says, request, ms, tenant, key_id };
    return s_eval (self, &s_begin_script, fn, arg, 3, 7, argv, NULL);
}

int
router_store_commit (router_store_t *self, const char *session, const char *request,
                     const mesh_buf_t *history, size_t turns, const char *tenant, const char *key_id,
                     int64_t ttl_s, mesh_redis_fn *fn, void *arg)
{
    char hash [160], lock [170], turns_text [24], now [24], ttl [24];
    s_key (hash, sizeof hash, session, "");
    s_key (lock, sizeof lock, session, ":lock");
    snprintf (turns_text, sizeof turns_text, "%zu", turns);
    snprintf (now, sizeof now, "%lld", (long long) mesh_wall_ms ());
    snprintf (ttl, sizeof ttl, "%lld", (long long) ttl_s);
    const char *argv [] = { hash, lock, INDEX, request, mesh_buf_head (history), turns_text, now, ttl,
                            tenant, key_id, session };
    size_t lens [] = { strlen (hash), strlen (lock), strlen (INDEX), strlen (request),
                       mesh_buf_size (history), strlen (turns_text), strlen (now), strlen (ttl),
                       strlen (tenant), strlen (key_id), strlen (session) };
    return s_eval (self, &s_commit_script, fn, arg, 3, 11, argv, lens);
}

static void
s_ignore (void *arg, redisReply *reply)
{
    (void) arg;
    (void) reply;
}

int
router_store_unlock (router_store_t *self, const char *session, const char *request,
                     mesh_redis_fn *fn, void *arg)
{
    char lock [170];
    s_key (lock, sizeof lock, session, ":lock");
    const char *argv [] = { lock, request };
    return s_eval (self, &s_unlock_script, fn ? fn : s_ignore, arg, 1, 2, argv, NULL);
}

int
router_store_renew (router_store_t *self, const char **sessions, const char **requests, size_t count,
                    int64_t lock_ms)
{
    if (count == 0)
        return 0;
    const char **argv = calloc (2 * count + 1, sizeof *argv);
    char (*locks) [170] = calloc (count, sizeof *locks);
    assert (argv && locks);
    char ms [24];
    snprintf (ms, sizeof ms, "%lld", (long long) lock_ms);
    for (size_t i = 0; i < count; i++) {
        s_key (locks [i], sizeof locks [i], sessions [i], ":lock");
        argv [i] = locks [i];
        argv [count + 1 + i] = requests [i];
    }
    argv [count] = ms;
    int rc = s_eval (self, &s_renew_script, s_ignore, NULL, (int) count, (int) (2 * count + 1), argv, NULL);
    free (argv);
    free (locks);
    return rc;
}

int
router_store_get (router_store_t *self, const char *session, mesh_redis_fn *fn, void *arg)
{
    char hash [160];
    s_key (hash, sizeof hash, session, "");
    const char *argv [] = { hash };
    return s_eval (self, &s_get_script, fn, arg, 1, 1, argv, NULL);
}

int
router_store_delete (router_store_t *self, const char *session, const char *tenant, const char *key_id,
                     mesh_redis_fn *fn, void *arg)
{
    char hash [160], lock [170], says [170];
    s_key (hash, sizeof hash, session, "");
    s_key (lock, sizeof lock, session, ":lock");
    s_key (says, sizeof says, session, ":say");
    const char *argv [] = { hash, lock, says, INDEX, tenant, key_id, session };
    return s_eval (self, &s_delete_script, fn, arg, 4, 7, argv, NULL);
}

int
router_store_takeover (router_store_t *self, const char *session, const char *operator_name,
                       mesh_redis_fn *fn, void *arg)
{
    char hash [160], now [24];
    s_key (hash, sizeof hash, session, "");
    snprintf (now, sizeof now, "%lld", (long long) mesh_wall_ms ());
    const char *argv [] = { hash, operator_name, now };
    return s_eval (self, &s_takeover_script, fn, arg, 1, 3, argv, NULL);
}

int
router_store_release (router_store_t *self, const char *session, mesh_redis_fn *fn, void *arg)
{
    return router_store_takeover (self, session, "", fn, arg);
}

int
router_store_say (router_store_t *self, const char *session, const mesh_buf_t *sealed, int64_t ttl_s,
                  mesh_redis_fn *fn, void *arg)
{
    char hash [160], says [170], ttl [24];
    s_key (hash, sizeof hash, session, "");
    s_key (says, sizeof says, session, ":say");
    snprintf (ttl, sizeof ttl, "%lld", (long long) ttl_s);
    const char *argv [] = { hash, says, mesh_buf_head (sealed), ttl };
    size_t lens [] = { strlen (hash), strlen (says), mesh_buf_size (sealed), strlen (ttl) };
    return s_eval (self, &s_say_script, fn, arg, 2, 4, argv, lens);
}

int
router_store_take_says (router_store_t *self, const char *session, mesh_redis_fn *fn, void *arg)
{
    char says [170];
    s_key (says, sizeof says, session, ":say");
    const char *argv [] = { says };
    return s_eval (self, &s_take_script, fn, arg, 1, 1, argv, NULL);
}

int
router_store_list (router_store_t *self, int64_t ttl_s, int limit, mesh_redis_fn *fn, void *arg)
{
    char oldest [24], count [16];
    snprintf (oldest, sizeof oldest, "%lld", (long long) (mesh_wall_ms () - ttl_s * 1000));
    snprintf (count, sizeof count, "%d", limit);
    const char *argv [] = { INDEX, oldest, count };
    return s_eval (self, &s_list_script, fn, arg, 1, 3, argv, NULL);
}

//  Events ---------------------------------------------------------------------------

void
router_store_publish (router_store_t *self, const char *type, const char *session, json_t *payload)
{
    if (!router_store_ready (self))
        return;
    char *text = json_dumps (payload, JSON_COMPACT);
    assert (text);
    mesh_buf_t sealed, message;
    mesh_buf_init (&sealed);
    mesh_buf_init (&message);
    if (router_store_seal (self, session, "event", text, strlen (text), &sealed) == 0) {
        mesh_buf_printf (&message, "%s %s\n", type, session);
        mesh_buf_append (&message, mesh_buf_head (&sealed), mesh_buf_size (&sealed));
        const char *argv [] = { "PUBLISH", CHANNEL, mesh_buf_head (&message) };
        size_t lens [] = { 7, strlen (CHANNEL), mesh_buf_size (&message) };
        mesh_redis_command (self->redis, s_ignore, NULL, 3, argv, lens);
    }
    mesh_buf_free (&sealed);
    mesh_buf_free (&message);
    free (text);
}

static void
s_on_event (void *arg, const char *payload, size_t len)
{
    router_store_t *self = arg;
    const char *newline = memchr (payload, '\n', len);
    const char *space = newline ? memchr (payload, ' ', (size_t) (newline - payload)) : NULL;
    if (!space || space - payload > 31 || newline - space - 1 > ROUTER_SESSION_ID_MAX)
        return;
    char type [32], session [ROUTER_SESSION_ID_MAX + 1];
    snprintf (type, sizeof type, "%.*s", (int) (space - payload), payload);
    snprintf (session, sizeof session, "%.*s", (int) (newline - space - 1), space + 1);
    if (!router_store_valid_id (session))
        return;
    mesh_buf_t plain;
    mesh_buf_init (&plain);
    json_t *event = NULL;
    const char *why = router_store_open (self, session, "event", newline + 1,
                                         len - (size_t) (newline + 1 - payload), &plain);
    if (why)
        mesh_warn ("session event %s for %s could not be opened: %s", type, session, why);
    else
        event = json_loadb (mesh_buf_head (&plain), mesh_buf_size (&plain), 0, NULL);
    for (size_t i = 0; i < self->listener_count; i++)
        self->listeners [i].fn (self->listeners [i].arg, type, session, event);
    json_decref (event);
    mesh_buf_free (&plain);
}

void
router_store_listen (router_store_t *self, router_store_event_fn *fn, void *arg)
{
    assert (self->listener_count < LISTENERS);
    self->listeners [self->listener_count++] = (listener_t) { fn, arg };
    if (self->redis && self->keys && !self->subscribed) {
        mesh_redis_subscribe (self->redis, CHANNEL, s_on_event, NULL, self);
        self->subscribed = true;
    }
}

//  Selftest -------------------------------------------------------------------------

static int s_test_events;

static void
s_test_listener (void *arg, const char *type, const char *session, json_t *payload)
{
    (void) arg;
    assert (mesh_streq (type, "user") && mesh_streq (session, "s-1"));
    assert (mesh_streq (json_string_value (json_object_get (payload, "content")), "hello"));
    s_test_events++;
}

void
router_store_test (bool verbose)
{
    (void) verbose;
    //  Without Redis: the keys, sealing and the events' form (the scripts
    //  run against a real Redis in tests/integration)
    const char *ring = "k1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    setenv ("SEEKMESH_TEST_SESSION_KEYS", ring, 1);
    const char *text = "{\"sessions\":{\"keys_env\":\"SEEKMESH_TEST_SESSION_KEYS\"}}";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "s.json", why, sizeof why);
    assert (config);
    mesh_loop_t *loop = mesh_loop_new ();
    router_store_t *self = router_store_new (config, loop, NULL, why, sizeof why);
    assert (self);
    assert (!router_store_ready (self));
    assert (router_store_valid_id ("abc-1.2:x_Y") && !router_store_valid_id ("")
            && !router_store_valid_id ("a b") && !router_store_valid_id ("a{b}"));
    mesh_buf_t sealed, plain;
    mesh_buf_init (&sealed);
    mesh_buf_init (&plain);
    assert (router_store_seal (self, "s-1", "history", "[1,2]", 5, &sealed) == 0);
    assert (!memmem (mesh_buf_head (&sealed), mesh_buf_size (&sealed), "[1,2]", 5));
    assert (!router_store_open (self, "s-1", "history", mesh_buf_head (&sealed), mesh_buf_size (&sealed), &plain));
    assert (mesh_streq (mesh_buf_head (&plain), "[1,2]"));
    //  Another session or field cannot open it; nor can a flipped bit
    assert (router_store_open (self, "s-2", "history", mesh_buf_head (&sealed), mesh_buf_size (&sealed), &plain));
    assert (router_store_open (self, "s-1", "event", mesh_buf_head (&sealed), mesh_buf_size (&sealed), &plain));
    mesh_buf_head (&sealed) [mesh_buf_size (&sealed) - 1] ^= 1;
    assert (router_store_open (self, "s-1", "history", mesh_buf_head (&sealed), mesh_buf_size (&sealed), &plain));
    //  Two seals of one text differ (the nonce moves)
    mesh_buf_t again;
    mesh_buf_init (&again);
    router_store_seal (self, "s-1", "history", "[1,2]", 5, &sealed);
    router_store_seal (self, "s-1", "history", "[1,2]", 5, &again);
    assert (mesh_buf_size (&sealed) == mesh_buf_size (&again)
            && memcmp (mesh_buf_head (&sealed), mesh_buf_head (&again), mesh_buf_size (&again)) != 0);
    //  An event as it crosses the channel
    router_store_listen (self, s_test_listener, NULL);
    mesh_buf_t message;
    mesh_buf_init (&message);
    router_store_seal (self, "s-1", "event", "{\"content\":\"hello\"}", 19, &sealed);
    mesh_buf_append_str (&message, "user s-1\n");
    mesh_buf_append (&message, mesh_buf_head (&sealed), mesh_buf_size (&sealed));
    s_on_event (self, mesh_buf_head (&message), mesh_buf_size (&message));
    s_on_event (self, "user s 1\nxx", 11);              //  not an id: dropped
    s_on_event (self, "no newline", 10);
    assert (s_test_events == 1);
    //  Scripts fail at once without Redis
    assert (router_store_get (self, "s-1", s_ignore, NULL) == -1);
    mesh_buf_free (&message);
    mesh_buf_free (&again);
    mesh_buf_free (&sealed);
    mesh_buf_free (&plain);
    router_store_destroy (&self);
    router_store_destroy (&self);
    unsetenv ("SEEKMESH_TEST_SESSION_KEYS");
    mesh_config_destroy (&config);
    //  No key ring: the store is there, sessions are off
    text = "{\"sessions\":{\"key_file\":\"/nonexistent/seekmesh/keys\",\"keys_env\":\"\"}}";
    config = mesh_config_parse (text, strlen (text), "s.json", why, sizeof why);
    self = router_store_new (config, loop, NULL, why, sizeof why);
    assert (self && !router_store_ready (self));
    assert (router_store_seal (self, "s-1", "history", "x", 1, &sealed) == -1);
    assert (router_store_open (self, "s-1", "history", "x", 1, &plain));
    router_store_destroy (&self);
    mesh_buf_free (&sealed);
    mesh_buf_free (&plain);
    mesh_loop_destroy (&loop);
    mesh_config_destroy (&config);
}
