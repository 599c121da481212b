/*  mesh_settings: see mesh_settings.h.                                    */
#include "mesh_settings.h"
#include "mesh_util.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_MS_DAY    86400000

//  The settings --------------------------------------------------------------
//
//  name                                       kind       default                   min   max
//  choices, owner (the service that binds an address), help

#define INT(name, dflt, min, max, help)        { name, MESH_SET_INT, dflt, min, max, NULL, NULL, help }
#define BOOL(name, dflt, help)                 { name, MESH_SET_BOOL, dflt, 0, 0, NULL, NULL, help }
#define STR(name, dflt, help)                  { name, MESH_SET_STR, dflt, 0, 0, NULL, NULL, help }
#define ONE_OF(name, dflt, choices, help)      { name, MESH_SET_STR, dflt, 0, 0, choices, NULL, help }
#define ADDR(name, dflt, owner, help)          { name, MESH_SET_ADDR, dflt, 0, 0, NULL, owner, help }
#define ENDPOINT(name, dflt, owner, help)      { name, MESH_SET_ENDPOINT, dflt, 0, 0, NULL, owner, help }
#define PEERS(name, from, help)                { name, MESH_SET_PEERS, "", 0, 0, NULL, from, help }

static const mesh_setting_t s_settings [] = {
    INT ("mesh.port_stride", "10", 1, 1000, "instance i of a service binds its ports i x this higher"),
    INT ("mesh.drain_ms", "5000", 0, 600000, "SIGTERM: how long in-flight work may take to finish"),
    INT ("mesh.admin_idle_ms", "10000", 100, 3600000, "an admin-port connection with no request for this long is closed"),
    BOOL ("mesh.curve", "true", "CURVE on every ZeroMQ link; false is allowed on loopback and ipc:// only"),
    STR ("mesh.curve_dir", "", "CURVE certificates (<role>.cert, <role>.cert_secret); \"\": <run dir>/curve"),
    STR ("mesh.curve_keys_env", "SEEKMESH_CURVE_KEYS", "environment variable that may hold the keys instead: lines \"<role> <public> [<secret>]\""),
    INT ("mesh.resolve_interval_ms", "5000", 100, 3600000, "peers' host names (a name may stand for several processes) are looked up again this often"),
    INT ("mesh.instances.redis", "1", 0, 64, "instances scripts/mesh runs"),
    INT ("mesh.instances.mock", "1", 0, 64, "instances scripts/mesh runs"),
    INT ("mesh.instances.audit", "1", 0, 64, "instances scripts/mesh runs"),
    INT ("mesh.instances.cache", "1", 0, 1, "instances scripts/mesh runs (one: identical requests must meet in one process); 0: no cache stage"),
    INT ("mesh.instances.router", "1", 0, 64, "instances scripts/mesh runs; peers connect to each"),
    INT ("mesh.instances.connector", "1", 0, 64, "instances scripts/mesh runs"),
    INT ("mesh.instances.ingress", "1", 0, 64, "instances scripts/mesh runs (they share ingress.listen)"),

    ADDR ("redis.listen", "127.0.0.1:6390", "redis", "the mesh's private Redis (scripts/mesh)"),
    STR ("redis.url", "redis://127.0.0.1:6390", "the Redis the routers and the cache use (redis://host[:port][/db], the host a name or an address; unix:///path)"),
    STR ("redis.username", "", "an ACL user to AUTH as; \"\": the default user"),
    STR ("redis.password_file", "", "a file holding the Redis password (not readable by every user); \"\": redis.password_env"),
    STR ("redis.password_env", "SEEKMESH_REDIS_PASSWORD", "environment variable with the Redis password when there is no file; unset: no AUTH"),

    ADDR ("ingress.listen", "127.0.0.1:8080", NULL, "client HTTP/1.1 (shared by every instance)"),
    ADDR ("ingress.tls_listen", "", NULL, "client HTTPS, HTTP/2 and TLS 1.3 only; \"\": off"),
    STR ("ingress.tls_cert", "", "PEM certificate chain file for ingress.tls_listen"),
    STR ("ingress.tls_key", "", "PEM private key file for ingress.tls_listen"),
    ADDR ("ingress.admin_listen", "127.0.0.1:9080", "ingress", "/healthz, /readyz, /metrics"),
    ENDPOINT ("ingress.reply_endpoint", "tcp://127.0.0.1:5559", "ingress", "PULL socket for replies"),
    ENDPOINT ("ingress.reply_advertise", "", "ingress", "the reply endpoint as peers reach it; \"\": ingress.reply_endpoint"),
    STR ("ingress.reply_host_env", "SEEKMESH_POD_IP", "environment variable with the address to advertise when ingress.reply_endpoint binds every address (a pod's IP); unset: an interface's"),
    STR ("ingress.handover_path", "", "unix socket where this ingress hands its listening sockets to the next process of the instance (a hitless restart; scripts/mesh sets it); \"\": none"),
    PEERS ("ingress.routers", "router.listen", "routers to send requests to (a name: every address it resolves to); default: every instance of router.listen"),
    INT ("ingress.max_body_bytes", "1048576", 1024, 64 << 20, "largest request body (413 beyond)"),
    INT ("ingress.max_header_bytes", "16384", 1024, 65535, "largest request head"),
    INT ("ingress.max_connections", "10000", 0, 10000000, "client connections at once (0: no cap); at most the file limit less 256"),
    INT ("ingress.max_connections_per_address", "1000", 0, 10000000, "client connections from one address (0: no cap; raise it behind a proxy)"),
    INT ("ingress.unauthenticated_per_second", "10", 0, 1000000, "requests refused before their key was authenticated, per address and second, before the address is throttled (0: no limit)"),
    INT ("ingress.unauthenticated_burst", "20", 1, 1000000, "... and in a burst"),
    INT ("ingress.header_timeout_ms", "10000", 1000, 3600000, "a request head must arrive within this (whole seconds); the connection is closed"),
    INT ("ingress.body_timeout_ms", "30000", 100, 3600000, "a request body must arrive within this after its head (408)"),
    INT ("ingress.idle_timeout_ms", "60000", 1000, 3600000, "a kept-alive connection without a request is closed after this (whole seconds)"),
    INT ("ingress.max_buffered_bytes", "4194304", 65536, (int64_t) 1 << 30, "bytes held for a slow client before it is let go"),
    INT ("ingress.keepalive_interval_ms", "15000", 100, 600000, "SSE keep-alive comment after this much quiet"),
    INT ("ingress.request_timeout_ms", "600000", 100, S_MS_DAY, "a request's whole life"),
    INT ("ingress.max_attempts", "2", 1, 5, "tries of a request whose connector was lost before answering"),
    INT ("ingress.default_max_tokens", "4096", 1, 10000000, "output tokens assumed when max_tokens is absent (quota estimate)"),
    ENDPOINT ("ingress.audit_endpoint", "tcp://127.0.0.1:5558", NULL, "the audit service; \"\": audit off"),
    INT ("ingress.audit_spool_records", "100000", 1, 100000000, "audit records held until acknowledged"),
    INT ("ingress.audit_spool_bytes", "268435456", 1, (int64_t) 1 << 40, "bytes of audit records held until acknowledged (at least the largest record)"),
    ONE_OF ("ingress.audit_when_full", "refuse", "refuse|drop", "a full spool refuses new requests (503), or drops the oldest records"),
    INT ("ingress.audit_max_response_bytes", "1048576", 0, 32 << 20, "response text kept in an audit record"),
    INT ("ingress.audit_resend_ms", "2000", 100, 3600000, "unacknowledged records are sent again after this"),

    INT ("sessions.ttl_s", "86400", 1, 30 * 86400, "a session is forgotten this long after its last turn"),
    INT ("sessions.max_history_tokens", "16000", 1, 100000000, "a session's messages sent upstream at most, in tokens (oldest turns dropped, the system prompt kept)"),
    INT ("sessions.wait_ms", "60000", 0, S_MS_DAY, "a session's request waits this long at most for the one before it (then 409)"),
    INT ("sessions.lock_ms", "30000", 1000, 3600000, "a turn's hold on its session, renewed while it runs (what a crashed router leaves lasts this long)"),
    INT ("sessions.human_timeout_s", "120", 1, 86400, "a taken-over session's request waits this long for the operator, then gets the holding message"),
    STR ("sessions.holding_message", "Thank you for waiting. An agent will be with you shortly.", "the answer a request gets when the operator has not answered within sessions.human_timeout_s"),
    STR ("sessions.key_file", "", "key ring sealing the sessions in Redis (lines \"<id> <64 hex>\"); \"\": <run dir>/sessions/keys"),
    STR ("sessions.keys_env", "SEEKMESH_SESSION_KEYS", "environment variable with more session keys"),
    STR ("filters.refusal_message", "I'm sorry, I can't help with that.", "the answer that replaces one the word filter blocks (non-stream)"),

    ENDPOINT ("router.listen", "tcp://127.0.0.1:5555", "router", "PULL socket for requests from ingresses"),
    ENDPOINT ("router.connector_listen", "tcp://127.0.0.1:5556", "router", "ROUTER socket for connectors"),
    ADDR ("router.admin_listen", "127.0.0.1:9081", "router", "/healthz, /readyz, /metrics, /admin"),
    INT ("router.heartbeat_ms", "500", 10, 60000, "heartbeats between routers and connectors"),
    INT ("router.heartbeat_liveness", "3", 1, 100, "missed heartbeats before a peer is lost"),
    STR ("router.admin_token_env", "SEEKMESH_ADMIN_TOKEN", "environment variable with the admin API's token"),
    STR ("router.region", "", "endpoints of this region are preferred"),
    INT ("router.replicas", "0", 0, 64, "routers sharing the limits while Redis is away; 0: those alive in Redis (mesh.instances.router until it answers)"),
    INT ("router.queue_timeout_ms", "1000", 0, 600000, "a request waits this long for a connector with free credit (503 no_capacity after); 0: refused at once"),
    INT ("router.scale.window", "20", 5, 100000, "the scale-out hint looks at each model's last this many requests"),
    INT ("router.scale.error_percent", "5", 0, 100, "... and says scale out when over this share were server errors"),
    INT ("router.scale.consecutive", "5", 1, 100000, "... after this many requests in a row (and clears after as many under)"),
    INT ("router.redis.connect_timeout_ms", "50", 1, 60000, "Redis connect timeout"),
    INT ("router.redis.command_timeout_ms", "50", 1, 60000, "Redis command timeout (the longest a request waits on Redis)"),
    INT ("router.retry.max_tries", "2", 1, 10, "tries of a request on one model"),
    INT ("router.retry.budget_percent", "20", 0, 100, "retries in flight, as a share of requests in flight"),
    INT ("router.retry.min_concurrency", "3", 0, 100000, "retries always allowed in flight"),
    INT ("router.outlier.consecutive_failures", "5", 1, 100000, "failures in a row that eject an endpoint"),
    INT ("router.outlier.base_ejection_ms", "2000", 1, S_MS_DAY, "first ejection; doubles each time"),
    INT ("router.outlier.max_ejection_ms", "60000", 1, S_MS_DAY, "longest ejection"),
    INT ("router.outlier.max_ejection_percent", "50", 0, 100, "most of a model's endpoints ejected at once"),
    INT ("router.breaker.consecutive_failures", "10", 1, 100000, "failures in a row that open a model's circuit"),
    INT ("router.breaker.open_ms", "5000", 1, S_MS_DAY, "how long a circuit stays open before a trial"),
    INT ("router.quota.lease_ms", "60000", 1000, 3600000, "concurrency leases expire unless renewed"),
    PEERS ("router.caches", "cache.listen", "the cache stage to ask (at most one); default: cache.listen while mesh.instances.cache is 1"),
    INT ("router.cache.timeout_ms", "20", 1, 1000, "the longest a request waits for the cache before it goes upstream uncached"),
    INT ("router.cache.failures", "3", 1, 1000, "lookups in a row left unanswered that mark the cache down (asked again once it answers a heartbeat)"),
    INT ("router.cache.max_ttl_s", "86400", 1, 31536000, "the longest x-seekmesh-cache: ttl=SECONDS a request may ask for"),
    BOOL ("router.cache.count_tokens", "false", "answers from the cache (hits, FAQ, coalesced) count against tokens per minute and budgets too, not only requests per minute"),
    INT ("router.quota.lease_slice_ms", "200", 0, 60000, "a busy key's quota (and a busy model's concurrency) is leased from Redis ahead, this much of the router's recent traffic of it at a time; 0: every request asks Redis"),
    INT ("router.quota.lease_max_percent", "5", 1, 50, "the most of a limit one router leases at a time; smaller limits are checked request by request"),
    INT ("router.quota.lease_reserve_percent", "10", 0, 90, "no lease while less than this share of a limit is left: the last of it is checked request by request"),

    ADDR ("connector.admin_listen", "127.0.0.1:9082", "connector", "/healthz, /readyz, /metrics"),
    PEERS ("connector.routers", "router.connector_listen", "routers to serve (a name: every address it resolves to); default: every instance of router.connector_listen"),
    PEERS ("connector.caches", "cache.listen", "the cache stage that gets the answers of cacheable requests (at most one); default: cache.listen while mesh.instances.cache is 1"),
    STR ("connector.key_envs", "", "environment variables models may name as auth.key_env, comma-separated, besides SEEKMESH_UPSTREAM_*"),
    INT ("connector.capacity", "4096", 1, 1000000, "requests served at once"),
    INT ("connector.connect_timeout_ms", "5000", 1, S_MS_DAY, "upstream connect (and TLS) timeout; models may override"),
    INT ("connector.first_byte_timeout_ms", "120000", 1, S_MS_DAY, "upstream first byte timeout; models may override"),
    INT ("connector.idle_timeout_ms", "60000", 1, S_MS_DAY, "upstream quiet between chunks; models may override"),
    INT ("connector.pool_idle_ms", "60000", 1, S_MS_DAY, "idle upstream connections are closed after this"),
    INT ("connector.ws_ping_ms", "15000", 1, S_MS_DAY, "pings on idle WebSocket upstreams"),
    INT ("connector.ws_pool_size", "2", 0, 1000, "warm WebSocket connections per upstream"),
    INT ("connector.done_flush_ms", "5", 0, 1000, "DONE messages to the router are sent in batches this often"),

    ENDPOINT ("cache.listen", "tcp://127.0.0.1:5557", "cache", "ROUTER socket for routers (lookups) and connectors (answers to keep)"),
    ADDR ("cache.admin_listen", "127.0.0.1:9083", "cache", "/healthz, /readyz, /metrics"),
    INT ("cache.l1_max_bytes", "134217728", 0, (int64_t) 1 << 40, "answers held in memory at most (L1); 0: Redis only"),
    ONE_OF ("cache.l1_policy", "s3fifo", "s3fifo|lru", "what L1 evicts when full (DESIGN.md has the measurement)"),
    INT ("cache.max_entry_bytes", "1048576", 1024, 64 << 20, "larger answers are not kept"),
    INT ("cache.max_followers", "1000", 0, 1000000, "identical requests one upstream call serves besides its own; more go upstream themselves"),
    INT ("cache.max_flight_bytes", "4194304", 0, (int64_t) 1 << 32, "stream bytes a call keeps for late joiners; past it, new identical requests go upstream"),
    INT ("cache.flight_idle_ms", "600000", 100, S_MS_DAY, "a call the cache hears nothing of this long is given up (its followers get an error)"),
    INT ("cache.retry_grace_ms", "2000", 0, 600000, "after the connector of a call is lost, how long its followers wait for the retry"),
    INT ("cache.lookup_margin_ms", "5", 0, 1000, "a lookup is answered only with this much of the router's wait left (host clocks, the trip back)"),
    INT ("cache.hit_piece_bytes", "128", 1, 1 << 20, "text per chunk when a stored answer is streamed"),
    INT ("cache.redis.connect_timeout_ms", "50", 1, 60000, "Redis connect timeout"),
    INT ("cache.redis.command_timeout_ms", "10", 1, 60000, "Redis command timeout (L2 lookups must answer within the router's wait)"),
    STR ("cache.key_file", "", "key ring that encrypts answers in Redis (lines \"<id> <64 hex>\", as audit.key_file); \"\" and no cache.keys_env: kept plain"),
    STR ("cache.keys_env", "SEEKMESH_CACHE_KEYS", "environment variable with more keys"),

    ENDPOINT ("audit.listen", "tcp://127.0.0.1:5558", "audit", "ROUTER socket for records from ingresses"),
    ADDR ("audit.admin_listen", "127.0.0.1:9084", "audit", "/healthz, /readyz, /metrics"),
    STR ("audit.dir", "", "the store; \"\": <run dir>/audit"),
    STR ("audit.key_file", "", "key ring file (lines \"<id> <64 hex>\"); \"\": <dir>/keys"),
    STR ("audit.keys_env", "SEEKMESH_AUDIT_KEYS", "environment variable with more keys"),
    STR ("audit.signing_key_file", "", "Ed25519 PEM key signing checkpoints; \"\": <dir>/signing.pem"),
    STR ("audit.public_key_file", "", "its public key; \"\": <dir>/signing.pub.pem"),
    INT ("audit.batch_max", "4096", 1, 65536, "records a commit at most"),
    INT ("audit.batch_ms", "5", 0, 1000, "at most one commit this often"),
    INT ("audit.checkpoint_ms", "1000", 1, 3600000, "signed checkpoints this often"),
    INT ("audit.retention_days", "30", 0, 36500, "day files older than this are deleted; 0: keep everything"),
    INT ("audit.rejoin_ms", "-1", -1, 3600000, "grace for a sender first heard of mid-run; -1: 2 x ingress.audit_resend_ms + 1 s"),

    ADDR ("mock.listen", "127.0.0.1:9100", "mock", "the mock upstream: HTTP and WebSocket"),
    ADDR ("mock.tls_listen", "", "mock", "the mock upstream over TLS; \"\": off"),
    STR ("mock.tls_cert", "", "PEM certificate file for mock.tls_listen"),
    STR ("mock.tls_key", "", "PEM key file for mock.tls_listen"),
    ADDR ("mock.admin_listen", "127.0.0.1:9109", "mock", "/healthz, /metrics, /mock/fault"),
    STR ("mock.api_key_env", "SEEKMESH_MOCK_API_KEY", "environment variable with the key the mock requires (unset: none)"),
    INT ("mock.threads", "1", 1, 64, "threads serving connections"),
    INT ("mock.token_delay_ms", "0", 0, 3600000, "delay between deltas"),
    INT ("mock.keepalive_ms", "1000", 1, 3600000, "keep-alive comments while a request is queued"),
    INT ("mock.ws_chunk_size", "64", 1, 1 << 20, "WebSocket frames at most this long"),
    INT ("mock.force_status", "0", 0, 599, "answer every chat with this error status (400-599); 0: off"),
    STR ("mock.replay_file", "", "recorded answers to give instead of the echo (mock_replay.h); \"\": none"),
};

//  Top-level members of a config that are not settings, checked elsewhere
static const char *const s_documents [] = { "models", "keys", "aliases", NULL };

#undef INT
#undef BOOL
#undef STR
#undef ONE_OF
#undef ADDR
#undef ENDPOINT
#undef PEERS

const mesh_setting_t *
mesh_settings_table (size_t *count)
{
    *count = MESH_ARRAY_SIZE (s_settings);
    return s_settings;
}

const mesh_setting_t *
mesh_setting_find (const char *name)
{
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_settings); i++)
        if (strcmp (s_settings [i].name, name) == 0)
            return &s_settings [i];
    return NULL;
}

static const mesh_setting_t *
s_get (const char *name, mesh_setting_kind_t kind)
{
    const mesh_setting_t *setting = mesh_setting_find (name);
    assert (setting);               //  every setting read is in the table
    assert (setting->kind == kind
        || (kind == MESH_SET_STR && (setting->kind == MESH_SET_ADDR || setting->kind == MESH_SET_ENDPOINT)));
    return setting;
}

//  Values ---------------------------------------------------------------------

int64_t
mesh_setting_int (mesh_config_t *config, const char *name)
{
    const mesh_setting_t *setting = s_get (name, MESH_SET_INT);
    int64_t dflt = strtoll (setting->dflt, NULL, 10);
    int64_t value = mesh_config_int (config, name, dflt);
    if (value < setting->min || value > setting->max) {
        mesh_config_invalid (config, name, "must be between %lld and %lld, not %lld",
                             (long long) setting->min, (long long) setting->max, (long long) value);
        return dflt;
    }
    return value;
}

bool
mesh_setting_bool (mesh_config_t *config, const char *name)
{
    const mesh_setting_t *setting = s_get (name, MESH_SET_BOOL);
    return mesh_config_bool (config, name, strcmp (setting->dflt, "true") == 0);
}

static int
s_instance_offset (mesh_config_t *config)
{
    return mesh_config_instance () * (int) mesh_setting_int (config, "mesh.port_stride");
}

//  "host:port" with a port in range once moved by offset
static bool
s_addr_valid (const char *value, int offset)
{
    const char *colon = strrchr (value, ':');
    if (!colon || colon == value || !colon [1])
        return false;
    for (const char *p = colon + 1; *p; p++)
        if (!isdigit ((unsigned char) *p))
            return false;
    long port = strtol (colon + 1, NULL, 10) + offset;
    return port > 0 && port <= 65535;
}

static bool
s_endpoint_valid (const char *value, int offset)
{
    if (strncmp (value, "ipc://", 6) == 0)
        return value [6] != 0;
    return strncmp (value, "tcp://", 6) == 0 && s_addr_valid (value + 6, offset);
}

//  The kept copy of a derived value
static const char *
s_memo (mesh_config_t *config, const char *name, const char *value)
{
    json_t *memo = mesh_config_memo (config);
    json_object_set_new (memo, name, json_string (value));
    return json_string_value (json_object_get (memo, name));
}

const char *
mesh_setting_str (mesh_config_t *config, const char *name)
{
    const mesh_setting_t *setting = s_get (name, MESH_SET_STR);
    const char *value = mesh_config_str (config, name, setting->dflt);
    if (!value)
        return setting->dflt;
    if (setting->kind == MESH_SET_STR) {
        if (setting->choices) {
            //  One of the words between the bars
            size_t len = strlen (value);
            const char *at = setting->choices;
            bool found = false;
            while (*at && !found) {
                const char *bar = strchr (at, '|');
                size_t word = bar ? (size_t) (bar - at) : strlen (at);
                found = len && word == len && memcmp (at, value, len) == 0;
                at += word + (bar ? 1 : 0);
            }
            if (!found) {
                mesh_config_invalid (config, name, "must be one of %s, not \"%s\"", setting->choices, value);
                return setting->dflt;
            }
        }
        return value;
    }
    if (!*value)
        return value;               //  an optional address, off
    int offset = setting->owner ? s_instance_offset (config) : 0;
    bool addr = setting->kind == MESH_SET_ADDR;
    if (addr ? !s_addr_valid (value, offset) : !s_endpoint_valid (value, offset)) {
        mesh_config_invalid (config, name, addr ? "\"%s\" must be host:port"
                                                : "\"%s\" must be tcp://host:port or ipc://path", value);
        return setting->dflt;
    }
    if (!offset)
        return value;
    char moved [512];
    if (mesh_endpoint_offset (value, offset, moved, sizeof moved) < 0) {
        mesh_config_invalid (config, name, "\"%s\" cannot be moved by %d for instance %d", value,
                             offset, mesh_config_instance ());
        return setting->dflt;
    }
    return s_memo (config, name, moved);
}

//  A list of peers: the file's array or the environment's comma-separated
//  list, else the instances of the address it derives from.  Kept in the
//  memo as an array.
static json_t *
s_peers (mesh_config_t *config, const char *name)
{
    const mesh_setting_t *setting = s_get (name, MESH_SET_PEERS);
    char key [128];
    snprintf (key, sizeof key, "%s[]", name);
    json_t *memo = mesh_config_memo (config);
    json_t *list = json_object_get (memo, key);
    if (list)
        return list;
    list = json_array ();
    char env [160];
    mesh_config_env_name (name, env, sizeof env);
    const char *text = getenv (env);
    json_t *node = mesh_config_node (config, name);
    if (text) {
        char *copy = strdup (text), *save = NULL;
        for (char *item = strtok_r (copy, ", ", &save); item; item = strtok_r (NULL, ", ", &save))
            json_array_append_new (list, json_string (item));
        free (copy);
    }
    else
    if (node) {
        size_t i;
        json_t *item;
        if (!json_is_array (node))
            mesh_config_invalid (config, name, "expected an array of endpoints, got %s",
                                 mesh_json_kind (node));
        json_array_foreach (node, i, item)
            if (json_is_string (item))
                json_array_append (list, item);
            else
                mesh_config_invalid (config, name, "expected endpoints (strings), got %s",
                                     mesh_json_kind (item));
    }
    else {
        //  Every instance of the owner's address, from its unmoved value
        const mesh_setting_t *from = mesh_setting_find (setting->owner);
        const char *base = mesh_config_str (config, from->name, from->dflt);
        char service [32];
        snprintf (service, sizeof service, "%.*s", (int) strcspn (from->name, "."), from->name);
        char path [64];
        snprintf (path, sizeof path, "mesh.instances.%s", service);
        int64_t count = mesh_setting_int (config, path);
        int stride = (int) mesh_setting_int (config, "mesh.port_stride");
        for (int64_t i = 0; base && i < count; i++) {
            char moved [512];
            if (mesh_endpoint_offset (base, (int) i * stride, moved, sizeof moved) < 0) {
                mesh_config_invalid (config, from->name, "\"%s\" needs a port", base);
                break;
            }
            json_array_append_new (list, json_string (moved));
        }
    }
    size_t i;
    json_t *item;
    json_array_foreach (list, i, item)
        if (!s_endpoint_valid (json_string_value (item), 0))
            mesh_config_invalid (config, name, "\"%s\" must be tcp://host:port or ipc://path",
                                 json_string_value (item));
    json_object_set_new (memo, key, list);
    return list;
}

size_t
mesh_setting_count (mesh_config_t *config, const char *name)
{
    return json_array_size (s_peers (config, name));
}

const char *
mesh_setting_item (mesh_config_t *config, const char *name, size_t i)
{
    return json_string_value (json_array_get (s_peers (config, name), i));
}

//  The check of a whole config ------------------------------------------------

//  True when some setting's name starts with prefix + "."
static bool
s_is_section (const char *prefix)
{
    size_t len = strlen (prefix);
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_settings); i++)
        if (strncmp (s_settings [i].name, prefix, len) == 0 && s_settings [i].name [len] == '.')
            return true;
    return false;
}

static void
s_check_node (mesh_config_t *config, const char *path, json_t *node)
{
    if (mesh_setting_find (path))
        return;                     //  its value is checked by reading it
    if (!s_is_section (path)) {
        mesh_config_invalid (config, path, "unknown setting (a typo? `seekmesh-<service> --settings` lists them)");
        return;
    }
    if (!json_is_object (node)) {
        mesh_config_invalid (config, path, "expected an object, got %s", mesh_json_kind (node));
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach (node, key, value) {
        char child [256];
        snprintf (child, sizeof child, "%s.%s", path, key);
        s_check_node (config, child, value);
    }
}

int
mesh_settings_check (mesh_config_t *config)
{
    json_t *root = mesh_config_node (config, "");
    const char *key;
    json_t *value;
    json_object_foreach (root, key, value) {
        bool document = false;
        for (size_t i = 0; s_documents [i] && !document; i++)
            document = strcmp (key, s_documents [i]) == 0;
        if (!document)
            s_check_node (config, key, value);
    }
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_settings); i++) {
        const mesh_setting_t *setting = &s_settings [i];
        switch (setting->kind) {
            case MESH_SET_INT:   mesh_setting_int (config, setting->name); break;
            case MESH_SET_BOOL:  mesh_setting_bool (config, setting->name); break;
            case MESH_SET_PEERS: mesh_setting_count (config, setting->name); break;
            default:             mesh_setting_str (config, setting->name); break;
        }
    }
    return mesh_config_failed (config) ? -1 : 0;
}

//  The effective configuration -----------------------------------------------

static void
s_put (json_t *root, const char *name, json_t *value)
{
    json_t *node = root;
    const char *at = name;
    const char *dot;
    while ((dot = strchr (at, '.'))) {
        char key [64];
        snprintf (key, sizeof key, "%.*s", (int) (dot - at), at);
        json_t *child = json_object_get (node, key);
        if (!child) {
            child = json_object ();
            json_object_set_new (node, key, child);
        }
        node = child;
        at = dot + 1;
    }
    json_object_set_new (node, at, value);
}

//  A URL without its password (redis://user:secret@host -> redis://user:***@host)
static json_t *
s_redacted_url (const char *url)
{
    const char *scheme = strstr (url, "://");
    const char *at = scheme ? strchr (scheme + 3, '@') : NULL;
    const char *colon = at ? memchr (scheme + 3, ':', (size_t) (at - scheme - 3)) : NULL;
    if (!colon)
        return json_string (url);
    char out [512];
    snprintf (out, sizeof out, "%.*s:***%s", (int) (colon - url), url, at);
    return json_string (out);
}

char *
mesh_settings_effective (mesh_config_t *config)
{
    json_t *root = json_object ();
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_settings); i++) {
        const mesh_setting_t *setting = &s_settings [i];
        json_t *value;
        switch (setting->kind) {
            case MESH_SET_INT:
                value = json_integer (mesh_setting_int (config, setting->name));
                break;
            case MESH_SET_BOOL:
                value = json_boolean (mesh_setting_bool (config, setting->name));
                break;
            case MESH_SET_PEERS:
                value = json_deep_copy (s_peers (config, setting->name));
                break;
            default:
                value = strstr (setting->name, "url")
                      ? s_redacted_url (mesh_setting_str (config, setting->name))
                      : json_string (mesh_setting_str (config, setting->name));
        }
        s_put (root, setting->name, value);
    }
    s_put (root, "mesh.instance", json_integer (mesh_config_instance ()));
    for (size_t i = 0; s_documents [i]; i++) {
        json_t *node = mesh_config_node (config, s_documents [i]);
        if (node)
            json_object_set_new (root, s_documents [i], json_deep_copy (node));
    }
    //  Client keys: who and what, never the key or its hash
    size_t i;
    json_t *key;
    json_array_foreach (json_object_get (root, "keys"), i, key) {
        if (json_object_get (key, "key"))
            json_object_set_new (key, "key", json_string ("(redacted)"));
        if (json_object_get (key, "key_sha256"))
            json_object_set_new (key, "key_sha256", json_string ("(redacted)"));
    }
    char *text = json_dumps (root, JSON_INDENT (2));
    json_decref (root);
    return text;
}

char *
mesh_settings_describe (void)
{
    static const char *const kinds [] = { "integer", "boolean", "string", "address", "endpoint", "endpoints" };
    json_t *list = json_array ();
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_settings); i++) {
        const mesh_setting_t *setting = &s_settings [i];
        char env [160];
        mesh_config_env_name (setting->name, env, sizeof env);
        json_t *row = json_pack ("{s:s, s:s, s:s, s:s, s:s}", "name", setting->name,
                                 "kind", kinds [setting->kind], "default", setting->dflt, "env", env,
                                 "help", setting->help);
        if (setting->kind == MESH_SET_INT) {
            json_object_set_new (row, "min", json_integer (setting->min));
            json_object_set_new (row, "max", json_integer (setting->max));
        }
        if (setting->choices)
            json_object_set_new (row, "choices", json_string (setting->choices));
        if (setting->owner && setting->kind != MESH_SET_PEERS)
            json_object_set_new (row, "moved_per_instance_of", json_string (setting->owner));
        if (setting->kind == MESH_SET_PEERS)
            json_object_set_new (row, "default_from", json_string (setting->owner));
        json_array_append_new (list, row);
    }
    char *text = json_dumps (list, JSON_INDENT (2));
    json_decref (list);
    return text;
}

//  Selftest -------------------------------------------------------------------

static mesh_config_t *
s_test_config (const char *text)
{
    char error [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "test.json", error, sizeof error);
    assert (config);
    return config;
}

void
mesh_settings_test (bool verbose)
{
    (void) verbose;
    //  Every name once; defaults of their own kind and range; peers derive
    //  from an endpoint whose service has an instance count
    for (size_t i = 0; i < MESH_ARRAY_SIZE (s_settings); i++) {
        const mesh_setting_t *setting = &s_settings [i];
        assert (mesh_setting_find (setting->name) == setting);
        if (setting->kind == MESH_SET_INT) {
            int64_t dflt = strtoll (setting->dflt, NULL, 10);
            assert (dflt >= setting->min && dflt <= setting->max);
        }
        if (setting->kind == MESH_SET_PEERS)
            assert (mesh_setting_find (setting->owner)->kind == MESH_SET_ENDPOINT);
    }

    //  Defaults, the file, the environment
    mesh_config_t *config = s_test_config ("{\"ingress\":{\"max_body_bytes\":2048},\"models\":[]}");
    assert (mesh_settings_check (config) == 0);
    assert (mesh_setting_int (config, "ingress.max_body_bytes") == 2048);
    assert (mesh_setting_int (config, "router.heartbeat_ms") == 500);
    assert (mesh_streq (mesh_setting_str (config, "ingress.audit_when_full"), "refuse"));
    setenv ("SEEKMESH_ROUTER_HEARTBEAT_MS", "250", 1);
    assert (mesh_setting_int (config, "router.heartbeat_ms") == 250);
    unsetenv ("SEEKMESH_ROUTER_HEARTBEAT_MS");
    //  Instance 2 with a stride of 10: owned addresses move, others do not
    setenv ("SEEKMESH_INSTANCE", "2", 1);
    assert (mesh_streq (mesh_setting_str (config, "router.admin_listen"), "127.0.0.1:9101"));
    assert (mesh_streq (mesh_setting_str (config, "router.listen"), "tcp://127.0.0.1:5575"));
    assert (mesh_streq (mesh_setting_str (config, "ingress.listen"), "127.0.0.1:8080"));
    assert (mesh_streq (mesh_setting_str (config, "ingress.audit_endpoint"), "tcp://127.0.0.1:5558"));
    unsetenv ("SEEKMESH_INSTANCE");
    mesh_config_destroy (&config);

    //  Peers: every router instance, unless listed
    config = s_test_config ("{\"mesh\":{\"instances\":{\"router\":3},\"port_stride\":7}}");
    assert (mesh_setting_count (config, "ingress.routers") == 3);
    assert (mesh_streq (mesh_setting_item (config, "ingress.routers", 2), "tcp://127.0.0.1:5569"));
    assert (mesh_streq (mesh_setting_item (config, "connector.routers", 1), "tcp://127.0.0.1:5563"));
    mesh_config_destroy (&config);
    config = s_test_config ("{\"ingress\":{\"routers\":[\"tcp://a:1\",\"ipc:///r\"]}}");
    assert (mesh_setting_count (config, "ingress.routers") == 2);
    assert (mesh_streq (mesh_setting_item (config, "ingress.routers", 1), "ipc:///r"));
    setenv ("SEEKMESH_CONNECTOR_ROUTERS", "tcp://x:5556, tcp://y:5556", 1);
    assert (mesh_setting_count (config, "connector.routers") == 2);
    assert (mesh_streq (mesh_setting_item (config, "connector.routers", 1), "tcp://y:5556"));
    unsetenv ("SEEKMESH_CONNECTOR_ROUTERS");
    assert (mesh_settings_check (config) == 0);
    mesh_config_destroy (&config);

    //  What is refused, named
    const char *bad [][2] = {
        { "{\"ingress\":{\"max_body_byte\":1}}", "ingress.max_body_byte" },
        { "{\"ingres\":{}}", "ingres" },
        { "{\"router\":{\"retry\":3}}", "router.retry" },
        { "{\"router\":{\"heartbeat_ms\":0}}", "between 10 and 60000" },
        { "{\"ingress\":{\"audit_when_full\":\"panic\"}}", "refuse|drop" },
        { "{\"ingress\":{\"admin_listen\":\"localhost\"}}", "host:port" },
        { "{\"router\":{\"listen\":\"127.0.0.1:5555\"}}", "tcp://host:port" },
        { "{\"connector\":{\"routers\":[\"x\"]}}", "connector.routers" },
        { "{\"mesh\":{\"instances\":{\"routr\":1}}}", "mesh.instances.routr" },
    };
    for (size_t i = 0; i < MESH_ARRAY_SIZE (bad); i++) {
        config = s_test_config (bad [i][0]);
        assert (mesh_settings_check (config) == -1);
        assert (strstr (mesh_config_failed (config), bad [i][1]));
        mesh_config_destroy (&config);
    }

    //  The effective configuration: moved, derived, keys redacted
    config = s_test_config ("{\"redis\":{\"url\":\"redis://u:pw@r:6379\"},"
                            "\"keys\":[{\"id\":\"k\",\"key\":\"sk-secret\"}]}");
    char *text = mesh_settings_effective (config);
    assert (text && !strstr (text, "sk-secret") && !strstr (text, "pw@"));
    json_t *effective = json_loads (text, 0, NULL);
    assert (json_integer_value (json_object_get (json_object_get (effective, "mesh"), "port_stride")) == 10);
    assert (json_array_size (json_object_get (json_object_get (effective, "ingress"), "routers")) == 1);
    assert (mesh_streq (json_string_value (json_object_get (json_array_get (json_object_get (effective, "keys"), 0), "id")), "k"));
    json_decref (effective);
    free (text);
    mesh_config_destroy (&config);
    text = mesh_settings_describe ();
    assert (text && strstr (text, "SEEKMESH_INGRESS_MAX_BODY_BYTES"));
    free (text);
}
