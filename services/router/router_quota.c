/*  router_quota: reservation and settlement scripts, and the local limiter
    that stands in while Redis is away.                                     */
#include "router_quota.h"
#include "router_keys.h"
#include "router_lease.h"
#include "mesh_id.h"
#include "mesh_log.h"
#include "mesh_map.h"
#include "mesh_redis.h"
#include "mesh_settings.h"
#include "mesh_time.h"
#include "mesh_util.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WINDOW_MS 60000         //  "per minute"

//  KEYS: rpm state, tpm state, model leases, budget counter, model blocks,
//        block expiries (router_lease.c: routers' blocks of slots count)
//  ARGV: the router's time (ms; not used: the script reads Redis's own clock,
//        so that routers whose clocks differ agree on one timeline, and
//        requests are timed in the order Redis runs them), request id, rpm,
//        tpm, estimate, concurrency, lease_ms, budget, budget ttl (s)
//  Returns { allowed, reason, retry_after_ms, rpm, rpm_remaining,
//            rpm_reset_ms, tpm, tpm_remaining, tpm_reset_ms }
//  Nothing is taken unless everything passes.
static mesh_redis_script_t s_reserve = { .body =
    "local clock = redis.call('TIME')\n"
    "local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)\n"
    "local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])\n"
    "local est, conc, lease = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])\n"
    "local budget, ttl = tonumber(ARGV[8]), tonumber(ARGV[9])\n"
    "local W = 60000\n"
    "local function gcra(key, limit, cost)\n"
    "  if limit <= 0 then return true, 0, 0, 0 end\n"
    "  if cost > limit then cost = limit end\n"
    "  local step = W / limit\n"
    "  local tat = tonumber(redis.call('GET', key) or '0')\n"
    "  if tat < now then tat = now end\n"
    "  local new = tat + cost * step\n"
    "  local wait = new - W - now\n"
    "  if wait > 0 then return false, math.ceil(wait), 0, math.ceil(tat - now) end\n"
    "  return true, new, math.floor((W - (new - now)) / step), math.ceil(new - now)\n"
    "end\n"
    "local okr, r1, rrem, rreset = gcra(KEYS[1], rpm, 1)\n"
    "local okt, t1, trem, treset = true, 0, 0, 0\n"
    "if okr then okt, t1, trem, treset = gcra(KEYS[2], tpm, est) end\n"
    "if not okr then return {0, 'rpm', r1, rpm, 0, rreset, tpm, 0, 0} end\n"
    "if not okt then return {0, 'tpm', t1, rpm, rrem, rreset, tpm, 0, treset} end\n"
    "if conc > 0 then\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)\n"
    "  for _, r in ipairs(redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)) do redis.call('HDEL', KEYS[5], r) end\n"
    "  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)\n"
    "  local used = redis.call('ZCARD', KEYS[3])\n"
    "  for _, v in ipairs(redis.call('HVALS', KEYS[5])) do used = used + tonumber(v) end\n"
    "  if used >= conc then\n"
    "    return {0, 'concurrency', 1000, rpm, rrem, rreset, tpm, trem, treset} end\n"
    "end\n"
    "if budget > 0 then\n"
    "  local used = tonumber(redis.call('GET', KEYS[4]) or '0')\n"
    "  if used >= budget then return {0, 'budget', 0, rpm, rrem, rreset, tpm, trem, treset} end\n"
    "end\n"
    "if rpm > 0 then redis.call('SET', KEYS[1], r1, 'PX', 2 * W) end\n"
    "if tpm > 0 then redis.call('SET', KEYS[2], t1, 'PX', 2 * W) end\n"
    "if conc > 0 then\n"
    "  redis.call('ZADD', KEYS[3], now + lease, ARGV[2])\n"
    "  redis.call('PEXPIRE', KEYS[3], 2 * lease) end\n"
    "if budget > 0 then\n"
    "  redis.call('INCRBY', KEYS[4], est)\n"
    "  redis.call('EXPIRE', KEYS[4], ttl) end\n"
    "return {1, 'ok', 0, rpm, rrem, rreset, tpm, trem, treset}\n"
};

//  KEYS: tpm state, model leases, budget counter
//  ARGV: the router's time (ms; not used, as above), request id, tpm,
//        estimate, actual tokens, budget ttl (s)
static mesh_redis_script_t s_settle = { .body =
    "local clock = redis.call('TIME')\n"
    "local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)\n"
    "local tpm = tonumber(ARGV[3])\n"
    "local est, used = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "if tpm > 0 then\n"
    "  local charged = est\n"
    "  if charged > tpm then charged = tpm end\n"
    "  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "  if tat > 0 then\n"
    "    tat = tat + (used - charged) * 60000 / tpm\n"
    "    if tat < now then tat = now end\n"
    "    redis.call('SET', KEYS[1], tat, 'PX', 120000)\n"
    "  end\n"
    "end\n"
    "redis.call('ZREM', KEYS[2], ARGV[2])\n"
    "if redis.call('EXISTS', KEYS[3]) == 1 then\n"
    "  local left = redis.call('INCRBY', KEYS[3], used - est)\n"
    "  if left < 0 then redis.call('SET', KEYS[3], 0, 'KEEPTTL') end\n"
    "end\n"
    "return 1\n"
};

//  KEYS: model leases; ARGV: expiry (ms), ids...
static mesh_redis_script_t s_renew = { .body =
    "for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i]) end\n"
    "if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], 2 * (ARGV[1] - redis.call('TIME')[1] * 1000)) end\n"
    "return 1\n"
};

//  Local limiter state of one key or model
typedef struct {
    char *name;
    double rpm_tat;
    double tpm_tat;
    int64_t inflight;
} local_t;

struct router_quota_t {
    mesh_loop_t *loop;
    mesh_redis_t *redis;
    int routers;
    int64_t lease_ms;
    mesh_map_t *local;          //  "k:<id>" / "m:<model>" -> local_t
    router_lease_t *lease;      //  quota taken ahead of busy keys' requests
    bool degraded;
    mesh_metric_t *degraded_gauge;
    mesh_metric_t *redis_fallbacks;
};

//  One reservation waiting for Redis
typedef struct {
    router_quota_t *quota;
    router_hold_t *hold;
    router_decision_fn *fn;
    void *arg;
} pending_t;

router_quota_t *
router_quota_new (mesh_config_t *config, mesh_loop_t *loop, mesh_metrics_t *metrics, int routers,
                  char *why, size_t why_size)
{
    router_quota_t *self = calloc (1, sizeof *self);
    assert (self);
    self->loop = loop;
    self->routers = routers > 0 ? routers : 1;
    self->lease_ms = mesh_setting_int (config, "router.quota.lease_ms");
    int64_t connect_ms = mesh_setting_int (config, "router.redis.connect_timeout_ms");
    int64_t command_ms = mesh_setting_int (config, "router.redis.command_timeout_ms");
    const char *url = getenv ("SEEKMESH_REDIS_URL");
    if (!url || !*url)
        url = mesh_setting_str (config, "redis.url");
    if (self->lease_ms < 1000 || connect_ms < 1 || command_ms < 1)
        mesh_config_invalid (config, "router.quota", "lease_ms >= 1000 and positive Redis timeouts");
    self->local = mesh_map_new ();
    if (metrics) {
        self->degraded_gauge = mesh_metrics_gauge (metrics, "seekmesh_ratelimit_degraded",
            "1 while Redis is away and limits are enforced by each router alone.", NULL);
        self->redis_fallbacks = mesh_metrics_counter (metrics, "seekmesh_router_quota_local_total",
            "Quota decisions made by the local limiter because Redis did not answer.", NULL);
    }
    if (*url) {
        self->redis = mesh_redis_open_configured (loop, config, url, connect_ms, command_ms,
                                                  metrics, why, why_size);
        if (!self->redis) {
            router_quota_destroy (&self);
            return NULL;
        }
    }
    //  Its concurrency blocks are named after the router: unique across
    //  hosts, where instance numbers and pids may repeat
    unsigned char nonce [4];
    mesh_random (nonce, sizeof nonce);
    char name [64];
    snprintf (name, sizeof name, "r%d-%d-%02x%02x%02x%02x", mesh_config_instance (), (int) getpid (),
              nonce [0], nonce [1], nonce [2], nonce [3]);
    router_lease_settings_t lease = {
        .slice_ms = mesh_setting_int (config, "router.quota.lease_slice_ms"),
        .max_percent = mesh_setting_int (config, "router.quota.lease_max_percent"),
        .reserve_percent = mesh_setting_int (config, "router.quota.lease_reserve_percent"),
        .lease_ms = self->lease_ms, .routers = self->routers, .name = name };
    self->lease = router_lease_new (loop, self->redis, &lease, metrics);
    return self;
}

void
router_quota_destroy (router_quota_t **self_p)
{
    assert (self_p);
    router_quota_t *self = *self_p;
    if (!self)
        return;
    mesh_redis_destroy (&self->redis);
    router_lease_destroy (&self->lease);
    size_t cursor = 0;
    local_t *local;
    while ((local = mesh_map_next (self->local, &cursor, NULL))) {
        free (local->name);
        free (local);
    }
    mesh_map_destroy (&self->local);
    free (self);
    *self_p = NULL;
}

void
router_quota_routers (router_quota_t *self, int routers)
{
    self->routers = routers > 0 ? routers : 1;
}

struct mesh_redis_t *
router_quota_redis (router_quota_t *self)
{
    return self->redis;
}

void
router_quota_release (router_quota_t *self)
{
    router_lease_release (self->lease);
}

int64_t
router_quota_lease_ms (router_quota_t *self)
{
    return self->lease_ms;
}

bool
router_quota_degraded (router_quota_t *self)
{
    return self->degraded;
}

static void
s_set_degraded (router_quota_t *self, bool degraded)
{
    if (self->degraded == degraded)
        return;
    self->degraded = degraded;
    if (self->degraded_gauge)
        mesh_metric_set (self->degraded_gauge, degraded ? 1 : 0);
    if (degraded)
        mesh_warn ("Redis away: limits enforced locally (limit / %d routers), budgets refused", self->routers);
    else
        mesh_info ("Redis back: limits are exact again");
}

void
router_quota_tick (router_quota_t *self)
{
    if (self->redis)
        s_set_degraded (self, !mesh_redis_ready (self->redis));
}

static bool
s_limited (const router_hold_t *hold)
{
    return hold->rpm > 0 || hold->tpm > 0 || hold->concurrency > 0 || hold->budget > 0;
}

static void
s_limits (router_decision_t *decision, const router_hold_t *hold, long long rpm_left, long long rpm_reset,
          long long tpm_left, long long tpm_reset)
{
    snprintf (decision->limits, sizeof decision->limits, "%lld,%lld,%lld,%lld,%lld,%lld",
              (long long) hold->rpm, rpm_left < 0 ? 0 : rpm_left, rpm_reset < 0 ? 0 : rpm_reset,
              (long long) hold->tpm, tpm_left < 0 ? 0 : tpm_left, tpm_reset < 0 ? 0 : tpm_reset);
}

static void
s_refuse (router_decision_t *decision, const router_hold_t *hold, const char *reason, int64_t wait_ms)
{
    decision->allowed = false;
    if (wait_ms > 60000)
        wait_ms = 60000;
    if (mesh_streq (reason, "budget")) {
        decision->status = 402;
        decision->type = "insufficient_quota";
        decision->code = "budget_exhausted";
        snprintf (decision->message, sizeof decision->message,
                  "This key has used its budget of %lld tokens per %s.", (long long) hold->budget,
                  router_keys_period_name (hold->budget_period_s > 0 ? hold->budget_period_s : 86400));
    }
    else
    if (mesh_streq (reason, "concurrency")) {
        decision->status = 429;
        decision->type = "rate_limit_error";
        decision->code = "concurrency_limit_exceeded";
        decision->retry_after_ms = (int) (wait_ms > 0 ? wait_ms : 1000);
        snprintf (decision->message, sizeof decision->message,
                  "The model %.120s is serving its limit of %lld requests at once; retry shortly.",
                  hold->model, (long long) hold->concurrency);
    }
    else
    if (mesh_streq (reason, "unverifiable")) {
        decision->status = 503;
        decision->type = "server_error";
        decision->code = "budget_unverifiable";
        decision->retry_after_ms = 1000;
        snprintf (decision->message, sizeof decision->message,
                  "This key has a budget that cannot be checked right now; retry shortly.");
    }
    else {
        bool tokens = mesh_streq (reason, "tpm");
        decision->status = 429;
        decision->type = "rate_limit_error";
        decision->code = "rate_limit_exceeded";
        decision->retry_after_ms = (int) (wait_ms > 0 ? wait_ms : 1);
        snprintf (decision->message, sizeof decision->message,
                  "Rate limit reached for %s per minute (limit %lld); retry in %.1f s.",
                  tokens ? "tokens" : "requests", (long long) (tokens ? hold->tpm : hold->rpm),
                  (double) decision->retry_after_ms / 1000);
    }
}

//  The local limiter: the same GCRA, in memory, with limit / routers
static local_t *
s_local (router_quota_t *self, char kind, const char *name)
{
    char key [300];
    snprintf (key, sizeof key, "%c:%s", kind, name);
    local_t *local = mesh_map_get (self->local, key);
    if (!local) {
        local = calloc (1, sizeof *local);
        assert (local);
        local->name = strdup (key);
        mesh_map_put (self->local, local->name, local);
    }
    return local;
}

static bool
s_gcra (double *tat, int64_t limit, double cost, double now, int64_t *wait_ms, int64_t *left, int64_t *reset)
{
    if (limit <= 0)
        return true;
    if (cost > (double) limit)
        cost = (double) limit;
    double step = (double) WINDOW_MS / (double) limit;
    double start = *tat < now ? now : *tat;
    double next = start + cost * step;
    if (next - WINDOW_MS - now > 0) {
        *wait_ms = (int64_t) ceil (next - WINDOW_MS - now);
        *reset = (int64_t) ceil (start - now);
        return false;
    }
    *tat = next;
    *left = (int64_t) floor ((WINDOW_MS - (next - now)) / step);
    *reset = (int64_t) ceil (next - now);
    return true;
}

static void
s_decide_locally (router_quota_t *self, router_hold_t *hold, router_decision_t *decision)
{
    memset (decision, 0, sizeof *decision);
    if (self->redis_fallbacks)
        mesh_metric_inc (self->redis_fallbacks);
    if (hold->budget > 0) {
        s_refuse (decision, hold, "unverifiable", 0);           //  fail closed
        return;
    }
    local_t *key = s_local (self, 'k', hold->key_id);
    local_t *model = s_local (self, 'm', hold->model);
    double now = (double) mesh_wall_ms ();
    int64_t rpm = hold->rpm > 0 ? (hold->rpm + self->routers - 1) / self->routers : 0;
    int64_t tpm = hold->tpm > 0 ? (hold->tpm + self->routers - 1) / self->routers : 0;
    int64_t concurrency = hold->concurrency > 0 ? (hold->concurrency + self->routers - 1) / self->routers : 0;
    double rpm_tat = key->rpm_tat, tpm_tat = key->tpm_tat;
    int64_t wait = 0, rpm_left = 0, rpm_reset = 0, tpm_left = 0, tpm_reset = 0;
    if (!s_gcra (&rpm_tat, rpm, 1, now, &wait, &rpm_left, &rpm_reset)) {
        s_refuse (decision, hold, "rpm", wait);
        return;
    }
    if (!s_gcra (&tpm_tat, tpm, hold->estimate, now, &wait, &tpm_left, &tpm_reset)) {
        s_refuse (decision, hold, "tpm", wait);
        return;
    }
    if (concurrency > 0 && model->inflight >= concurrency) {
        s_refuse (decision, hold, "concurrency", 1000);
        return;
    }
    key->rpm_tat = rpm_tat;
    key->tpm_tat = tpm_tat;
    model->inflight++;
    hold->held = hold->local = true;
    decision->allowed = true;
    s_limits (decision, hold, rpm_left, rpm_reset, tpm_left, tpm_reset);
}

static long long
s_int (redisReply *reply, size_t i)
{
    if (i >= reply->elements)
        return 0;
    redisReply *e = reply->element [i];
    return e->type == REDIS_REPLY_INTEGER ? e->integer
         : e->type == REDIS_REPLY_STRING ? atoll (e->str) : 0;
}

static void
s_on_reserved (void *arg, redisReply *reply)
{
    pending_t *pending = arg;
    router_quota_t *self = pending->quota;
    router_hold_t *hold = pending->hold;
    router_decision_t decision;
    memset (&decision, 0, sizeof decision);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 9) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            mesh_warn ("quota script failed: %s", reply->str);
        if (!reply)
            s_set_degraded (self, true);
        s_decide_locally (self, hold, &decision);
    }
    else {
        s_set_degraded (self, false);
        redisReply *reason = reply->element [1];
        if (s_int (reply, 0) == 1) {
            decision.allowed = true;
            hold->held = true;
            hold->local = false;
            s_limits (&decision, hold, s_int (reply, 4), s_int (reply, 5), s_int (reply, 7), s_int (reply, 8));
        }
        else {
            s_refuse (&decision, hold, reason->type == REDIS_REPLY_STRING ? reason->str : "rpm",
                      s_int (reply, 2));
            s_limits (&decision, hold, s_int (reply, 4), s_int (reply, 5), s_int (reply, 7), s_int (reply, 8));
        }
    }
    router_decision_fn *fn = pending->fn;
    void *fn_arg = pending->arg;
    free (pending);
    fn (fn_arg, &decision);
}

//  The key names one request touches (hash tags keep a key's state in one
//  slot, should the Redis ever be a cluster)
void
router_quota_names (const router_hold_t *hold, char rpm [300], char tpm [300], char leases [300],
                    char budget [320])
{
    snprintf (rpm, 300, "seekmesh:q:{%s}:rpm", hold->key_id);
    snprintf (tpm, 300, "seekmesh:q:{%s}:tpm", hold->key_id);
    snprintf (leases, 300, "seekmesh:c:{%s}", hold->model);
    int64_t period = hold->budget_period_s > 0 ? hold->budget_period_s : 86400;
    int64_t index;
    if (period >= 28 * 86400) {                 //  a calendar month, in UTC
        time_t now = time (NULL);
        struct tm tm;
        gmtime_r (&now, &tm);
        index = (int64_t) (tm.tm_year + 1900) * 12 + tm.tm_mon;
    }
    else
        index = (int64_t) time (NULL) / period;
    snprintf (budget, 320, "seekmesh:b:{%s}:%lld:%lld", hold->key_id, (long long) period, (long long) index);
}

void
router_quota_reserve (router_quota_t *self, router_hold_t *hold, const char *request_id,
                      router_decision_fn *fn, void *arg)
{
    router_decision_t decision;
    memset (&decision, 0, sizeof decision);
    if (!s_limited (hold)) {
        decision.allowed = true;
        fn (arg, &decision);
        return;
    }
    //  A busy key: from what this router leased ahead, without Redis
    if (router_lease_admit (self->lease, hold, &decision)) {
        fn (arg, &decision);
        return;
    }
    char rpm_key [300], tpm_key [300], lease_key [300], budget_key [320];
    router_quota_names (hold, rpm_key, tpm_key, lease_key, budget_key);
    char now [24], rpm [24], tpm [24], estimate [24], concurrency [24], lease [24], budget [24], ttl [24];
    snprintf (now, sizeof now, "%lld", (long long) mesh_wall_ms ());
    snprintf (rpm, sizeof rpm, "%lld", (long long) hold->rpm);
    snprintf (tpm, sizeof tpm, "%lld", (long long) hold->tpm);
    snprintf (estimate, sizeof estimate, "%u", hold->estimate);
    snprintf (concurrency, sizeof concurrency, "%lld", (long long) hold->concurrency);
    snprintf (lease, sizeof lease, "%lld", (long long) self->lease_ms);
    snprintf (budget, sizeof budget, "%lld", (long long) hold->budget);
    snprintf (ttl, sizeof ttl, "%lld", (long long) (hold->budget_period_s > 0 ? hold->budget_period_s : 86400) + 3600);
    char blocks_key [300], expiries_key [300];
    snprintf (blocks_key, sizeof blocks_key, "seekmesh:cb:{%s}", hold->model);
    snprintf (expiries_key, sizeof expiries_key, "seekmesh:cx:{%s}", hold->model);
    const char *argv [] = { rpm_key, tpm_key, lease_key, budget_key, blocks_key, expiries_key, now,
                            request_id, rpm, tpm, estimate, concurrency, lease, budget, ttl };
    pending_t *pending = calloc (1, sizeof *pending);
    assert (pending);
    *pending = (pending_t) { self, hold, fn, arg };
    if (!self->redis
    ||  mesh_redis_eval (self->redis, &s_reserve, s_on_reserved, pending, 6,
                         (int) MESH_ARRAY_SIZE (argv), argv, NULL) < 0) {
        free (pending);
        s_set_degraded (self, true);
        s_decide_locally (self, hold, &decision);
        fn (arg, &decision);
    }
}

static void
s_on_settled (void *arg, redisReply *reply)
{
    (void) arg;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        mesh_warn ("quota settle failed: %s", reply->str);
}

void
router_quota_settle (router_quota_t *self, router_hold_t *hold, const char *request_id, uint64_t tokens)
{
    if (!hold->held)
        return;
    if (hold->leased) {
        router_lease_settle (self->lease, hold, tokens);
        return;
    }
    hold->held = false;
    if (hold->local) {
        local_t *model = s_local (self, 'm', hold->model);
        if (model->inflight > 0)
            model->inflight--;
        if (hold->tpm > 0) {
            //  Correct the local token reservation, as Redis would
            local_t *key = s_local (self, 'k', hold->key_id);
            int64_t tpm = (hold->tpm + self->routers - 1) / self->routers;
            double charged = hold->estimate > tpm ? (double) tpm : (double) hold->estimate;
            key->tpm_tat += ((double) tokens - charged) * WINDOW_MS / (double) tpm;
        }
        return;
    }
    if (!self->redis)
        return;
    char rpm_key [300], tpm_key [300], lease_key [300], budget_key [320];
    router_quota_names (hold, rpm_key, tpm_key, lease_key, budget_key);
    char now [24], tpm [24], estimate [24], used [24], ttl [24];
    snprintf (now, sizeof now, "%lld", (long long) mesh_wall_ms ());
    snprintf (tpm, sizeof tpm, "%lld", (long long) hold->tpm);
    snprintf (estimate, sizeof estimate, "%u", hold->estimate);
    snprintf (used, sizeof used, "%llu", (unsigned long long) tokens);
    snprintf (ttl, sizeof ttl, "%lld", (long long) (hold->budget_period_s > 0 ? hold->budget_period_s : 86400) + 3600);
    const char *argv [] = { tpm_key, lease_key, budget_key, now, request_id, tpm, estimate, used, ttl };
    //  If Redis is away the lease expires by itself; the token correction
    //  is lost, which only ever errs towards admitting less
    mesh_redis_eval (self->redis, &s_settle, s_on_settled, NULL, 3, (int) MESH_ARRAY_SIZE (argv), argv, NULL);
}

uint64_t
router_quota_used (const router_hold_t *hold, uint64_t prompt_tokens, uint64_t output_tokens)
{
    if (prompt_tokens > 0)
        return prompt_tokens + output_tokens;
    uint64_t used = (uint64_t) hold->prompt_estimate + output_tokens;
    return used > 0 ? used : 1;
}

void
router_quota_renew (router_quota_t *self, const char *model, const char **ids, size_t count)
{
    if (!self->redis || count == 0 || !mesh_redis_ready (self->redis))
        return;
    char key [300], expiry [24];
    snprintf (key, sizeof key, "seekmesh:c:{%s}", model);
    snprintf (expiry, sizeof expiry, "%lld", (long long) (mesh_wall_ms () + self->lease_ms));
    const char **argv = calloc (count + 2, sizeof *argv);
    assert (argv);
    argv [0] = key;
    argv [1] = expiry;
    memcpy (argv + 2, ids, count * sizeof *argv);
    mesh_redis_eval (self->redis, &s_renew, s_on_settled, NULL, 1, (int) count + 2, argv, NULL);
    free (argv);
}

void
router_quota_test (bool verbose)
{
    (void) verbose;
    //  The local limiter (Redis is proven by the integration tests, against
    //  a real server): a burst of exactly limit / routers, then refusals
    //  with a wait; concurrency per model; budgets fail closed
    const char *text = "{ \"redis\": { \"url\": \"\" } }";
    char why [256];
    mesh_config_t *config = mesh_config_parse (text, strlen (text), "q.json", why, sizeof why);
    mesh_loop_t *loop = mesh_loop_new ();
    router_quota_t *quota = router_quota_new (config, loop, NULL, 2, why, sizeof why);
    assert (quota);
    router_hold_t hold = { .key_id = "k1", .model = "m", .rpm = 10, .estimate = 100 };
    int allowed = 0, refused = 0;
    router_decision_t last = { 0 };
    for (int i = 0; i < 8; i++) {
        router_decision_t decision;
        memset (&decision, 0, sizeof decision);
        router_hold_t h = hold;
        s_decide_locally (quota, &h, &decision);
        if (decision.allowed)
            allowed++;
        else {
            refused++;
            last = decision;
        }
    }
    assert (allowed == 5 && refused == 3);          //  10 / 2 routers
    assert (last.status == 429 && last.retry_after_ms > 0 && last.retry_after_ms <= 60000);
    assert (router_quota_degraded (quota) == false);

    router_hold_t busy = { .key_id = "k2", .model = "n", .concurrency = 2 };
    router_decision_t decision;
    router_hold_t holds [2] = { busy, busy };
    s_decide_locally (quota, &holds [0], &decision);
    assert (decision.allowed);
    router_hold_t third = busy;
    s_decide_locally (quota, &third, &decision);
    assert (!decision.allowed && mesh_streq (decision.code, "concurrency_limit_exceeded"));
    router_quota_settle (quota, &holds [0], "r1", 0);
    s_decide_locally (quota, &holds [1], &decision);
    assert (decision.allowed);

    router_hold_t spender = { .key_id = "k3", .model = "m", .budget = 1000 };
    s_decide_locally (quota, &spender, &decision);
    assert (!decision.allowed && decision.status == 503);
    router_quota_destroy (&quota);
    mesh_loop_destroy (&loop);
    mesh_config_destroy (&config);
}
